//! Plain HTTP endpoints: health, metrics, stats, symbols, snapshots, and the
//! dashboard's files. Everything here is read-only and cheap.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Response, StatusCode};

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
}

/// `{"error":"..."}` with a status.
pub fn error(status: StatusCode, message: &str) -> Response<Body> {
    let body = simd_json::to_vec(&ErrorBody { error: message }).expect("serializes");
    respond(status, JSON, body)
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

/// Answers every request that is not a WebSocket upgrade.
pub fn handle(
    method: &Method,
    path: &str,
    query: Option<&str>,
    state: &AppState,
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
        "/api/stats" => {
            let stats = hub
                .metrics()
                .stats(hub.universe().len(), state.sessions.queued());
            respond(
                StatusCode::OK,
                JSON,
                simd_json::to_vec(&stats).expect("stats serialize"),
            )
        }
        "/api/symbols" => {
            let mut body = b"{\"symbols\":".to_vec();
            body.extend_from_slice(&state.symbols_json);
            body.push(b'}');
            respond(StatusCode::OK, JSON, body)
        }
        "/api/snapshot" => snapshot(query, hub),
        "/api/history" => history(query, hub),
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
/// `symbols`; each once), as `snapshot` messages; symbols that have not
/// traded yet are left out, unknown ones listed.
fn snapshot(query: Option<&str>, hub: &Hub) -> Response<Body> {
    let universe = hub.universe();
    let names = query_param(query, "symbols")
        .map_or_else(|| vec!["*".to_string()], |list| split_symbols(&list));
    let resolved = universe.resolve(&names);
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
fn history(query: Option<&str>, hub: &Hub) -> Response<Body> {
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
