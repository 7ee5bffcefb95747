//! Plain HTTP endpoints: health, metrics, stats, symbols, snapshots, and the
//! dashboard's files. Everything here is read-only and cheap.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Response, StatusCode};

use crate::auth::Grant;
use crate::hub::Hub;
use crate::state::AppState;
use crate::tick::{write_json, TickKind};

pub type Body = Full<Bytes>;

const JSON: &str = "application/json";

pub fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_str(content_type).expect("valid content type"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    r
}

#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    symbols: Option<&'a [String]>,
}

/// `{"error":"..."}` with a status.
pub fn error(status: StatusCode, message: &str) -> Response<Body> {
    error_body(
        status,
        ErrorBody {
            error: message,
            reason: None,
            symbols: None,
        },
    )
}

/// `{"error":"...","reason":"..."}`: a refusal with its metric's label.
pub fn error_with_reason(status: StatusCode, message: &str, reason: &str) -> Response<Body> {
    error_body(
        status,
        ErrorBody {
            error: message,
            reason: Some(reason),
            symbols: None,
        },
    )
}

fn error_body(status: StatusCode, body: ErrorBody<'_>) -> Response<Body> {
    respond(status, JSON, simd_json::to_vec(&body).expect("serializes"))
}

/// 403 `{"error":"...","reason":"forbidden","symbols":[...]}`: symbols the
/// token does not entitle its holder to.
pub fn forbidden(symbols: &[String]) -> Response<Body> {
    error_body(
        StatusCode::FORBIDDEN,
        ErrorBody {
            error: "your token does not entitle you to these symbols",
            reason: Some("forbidden"),
            symbols: Some(symbols),
        },
    )
}

/// The value of query parameter `name`, percent-decoded.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Comma-separated names, without empty items.
pub fn split_symbols(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Answers every request that is not a WebSocket upgrade, for the holder
/// of `grant` (everything when auth is off).
pub fn handle(
    method: &Method,
    path: &str,
    query: Option<&str>,
    state: &AppState,
    grant: &Grant,
) -> Response<Body> {
    let hub = &state.hub;
    if method != Method::GET && method != Method::HEAD {
        return error(StatusCode::METHOD_NOT_ALLOWED, "only GET is supported");
    }
    match path {
        "/healthz" => respond(StatusCode::OK, "text/plain", "ok\n"),
        "/metrics" => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            hub.metrics()
                .prometheus(hub.universe().len(), state.sessions.queued()),
        ),
        // Built once per metrics roll by the reporter, not per request: a
        // flood of these costs a copy of a refcount each.
        "/api/stats" => respond(StatusCode::OK, JSON, state.stats_body()),
        "/api/symbols" => {
            let mut body = b"{\"symbols\":".to_vec();
            body.extend_from_slice(&state.symbols_json);
            body.push(b'}');
            respond(StatusCode::OK, JSON, body)
        }
        "/api/snapshot" => snapshot(query, hub, state.config.max_symbols, grant),
        "/api/history" => history(query, hub, grant),
        "/ws" => error(
            StatusCode::BAD_REQUEST,
            "this endpoint speaks WebSocket: connect with a WebSocket client (Upgrade: websocket)",
        ),
        _ => match crate::dashboard::asset(path) {
            Some(a) => respond(StatusCode::OK, a.content_type, Bytes::from_static(a.body)),
            None => error(
                StatusCode::NOT_FOUND,
                "no such endpoint; see docs/PROTOCOL.md",
            ),
        },
    }
}

/// `GET /api/snapshot?symbols=A,B`: the latest tick of each (all without
/// `symbols`, or with `*`: all the token entitles to; each once), as
/// `snapshot` messages; symbols that have not traded yet are left out,
/// unknown ones listed. More than `max_symbols` distinct names: 400, as a
/// WebSocket subscribe would be refused; names the token does not cover:
/// 403 listing them.
fn snapshot(query: Option<&str>, hub: &Hub, max_symbols: usize, grant: &Grant) -> Response<Body> {
    let universe = hub.universe();
    let mut names = query_param(query, "symbols")
        .map_or_else(|| vec!["*".to_string()], |list| split_symbols(&list));
    // Duplicates would each cost a full tick in the answer: one each.
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    drop(seen);
    let max = grant
        .max_symbols
        .map_or(max_symbols, |m| m.min(max_symbols));
    if names.len() > max {
        return error(
            StatusCode::BAD_REQUEST,
            "more distinct symbols than --max-symbols allows in one request",
        );
    }
    let mut resolved = universe.resolve(&names);
    let refused: Vec<String> = names
        .iter()
        .filter(|n| *n != "*" && universe.id_of(n).is_some() && !grant.allows(n))
        .cloned()
        .collect();
    if !refused.is_empty() {
        return forbidden(&refused);
    }
    resolved
        .known
        .retain(|&id| grant.allows(&universe.get(id).symbol));
    let mut body = b"{\"snapshots\":[".to_vec();
    let mut first = true;
    for id in resolved.known {
        if let Some(t) = hub.latest(id) {
            if !first {
                body.push(b',');
            }
            first = false;
            write_json(&mut body, &t, universe.get(id), TickKind::Snapshot);
        }
    }
    body.extend_from_slice(b"],\"unknown\":");
    body.extend_from_slice(&simd_json::to_vec(&resolved.unknown).expect("serializes"));
    body.push(b'}');
    respond(StatusCode::OK, JSON, body)
}

/// Most ticks one `/api/history` answer carries.
pub const HISTORY_PAGE_MAX: usize = 1000;

/// `GET /api/history?symbol=S[&from=SEQ][&limit=N]`: the ticks of `S` after
/// seq `from` (default 0: all the history holds), oldest first, at most
/// `limit` (default 100, at most [`HISTORY_PAGE_MAX`]), with the epoch.
fn history(query: Option<&str>, hub: &Hub, grant: &Grant) -> Response<Body> {
    let Some(name) = query_param(query, "symbol") else {
        return error(
            StatusCode::BAD_REQUEST,
            "history needs ?symbol=NAME (and optionally &from=SEQ&limit=N)",
        );
    };
    let Some(sym) = hub.universe().id_of(&name) else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown symbol; /api/symbols lists them all",
        );
    };
    if !grant.allows(&name) {
        return forbidden(std::slice::from_ref(&name));
    }
    let number = |key: &str, default: u64| match query_param(query, key) {
        None => Some(default),
        Some(v) => v.parse::<u64>().ok(),
    };
    let Some(from) = number("from", 0) else {
        return error(
            StatusCode::BAD_REQUEST,
            "from must be a seq (a whole number)",
        );
    };
    let limit = match number("limit", 100) {
        Some(n) if (1..=HISTORY_PAGE_MAX as u64).contains(&n) => n as usize,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "limit must be a whole number from 1 to 1000",
            )
        }
    };
    let page = hub.history_page(sym, from, limit);
    let mut body = Vec::with_capacity(128 + page.frames.iter().map(|f| f.len()).sum::<usize>());
    tickwire_protocol::HistoryPage::write(
        &mut body,
        &name,
        &hub.epoch(),
        page.first_seq,
        page.last_seq,
        page.complete,
        page.frames.iter().map(|f| crate::wire::payload(f)),
    );
    respond(StatusCode::OK, JSON, body)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use clap::Parser;
    use proptest::prelude::*;

    use super::*;
    use crate::config::Config;
    use crate::metrics::Metrics;

    fn state() -> AppState {
        let config = Config::parse_from(["tickwire", "--synthetic", "4", "--max-symbols", "3"]);
        let universe = Arc::new(config.universe().unwrap());
        let hub = Arc::new(Hub::new(
            universe,
            Arc::new(Metrics::default()),
            "e".into(),
            16,
        ));
        AppState::new(hub, config)
    }

    /// Query strings built from the pieces that matter, percent-escapes
    /// (good and broken) and noise.
    fn query() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("symbols=".to_string()),
            Just("symbol=".to_string()),
            Just("from=".to_string()),
            Just("limit=".to_string()),
            Just("token=".to_string()),
            Just("&".to_string()),
            Just("=".to_string()),
            Just(",".to_string()),
            Just("*".to_string()),
            Just("S0".to_string()),
            Just("S3".to_string()),
            Just("%2C".to_string()),
            Just("%".to_string()),
            Just("%ff%fe".to_string()),
            Just("18446744073709551616".to_string()),
            Just("-1".to_string()),
            "[ -~]{0,6}",
        ];
        proptest::collection::vec(piece, 0..30).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Any query string gets an answer from the documented set, never a
        /// panic, and JSON errors say why.
        #[test]
        fn any_query_gets_a_documented_answer(q in query(), path in prop_oneof![
            Just("/api/snapshot"), Just("/api/history"), Just("/api/symbols"),
        ]) {
            let state = state();
            let r = handle(&Method::GET, path, Some(&q), &state, &Grant::everything());
            prop_assert!([200u16, 400, 404].contains(&r.status().as_u16()), "{} {q}", r.status());
            let names = query_param(Some(&q), "symbols").map(|s| split_symbols(&s));
            if let Some(names) = names {
                prop_assert!(names.iter().all(|n| !n.is_empty() && n.trim() == n));
            }
        }
    }
}
