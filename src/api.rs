//! Plain HTTP endpoints: health, metrics, stats, symbols, snapshots, and the
//! dashboard's files. Everything here is read-only and cheap.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Response, StatusCode};

use crate::hub::Hub;
use crate::session::SessionContext;
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
    ctx: &SessionContext,
) -> Response<Body> {
    let hub = &ctx.hub;
    if method != Method::GET && method != Method::HEAD {
        return error(StatusCode::METHOD_NOT_ALLOWED, "only GET is supported");
    }
    match path {
        "/healthz" => respond(StatusCode::OK, "text/plain", "ok\n"),
        "/metrics" => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            hub.metrics()
                .prometheus(hub.universe().len(), ctx.sessions.queued()),
        ),
        "/api/stats" => {
            let stats = hub
                .metrics()
                .stats(hub.universe().len(), ctx.sessions.queued());
            respond(
                StatusCode::OK,
                JSON,
                simd_json::to_vec(&stats).expect("stats serialize"),
            )
        }
        "/api/symbols" => {
            let mut body = b"{\"symbols\":".to_vec();
            body.extend_from_slice(hub.symbols_json());
            body.push(b'}');
            respond(StatusCode::OK, JSON, body)
        }
        "/api/snapshot" => snapshot(query, hub),
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
/// `symbols`), as `snapshot` messages; symbols that have not traded yet are
/// left out, unknown ones listed.
fn snapshot(query: Option<&str>, hub: &Hub) -> Response<Body> {
    let universe = hub.universe();
    let (ids, unknown): (Vec<_>, Vec<String>) = match query_param(query, "symbols") {
        Some(list) => {
            let mut ids = Vec::new();
            let mut unknown = Vec::new();
            for name in split_symbols(&list) {
                match universe.id_of(&name) {
                    Some(id) => ids.push(id),
                    None => unknown.push(name),
                }
            }
            (ids, unknown)
        }
        None => (universe.iter().map(|(id, _)| id).collect(), Vec::new()),
    };
    let mut body = b"{\"snapshots\":[".to_vec();
    let mut first = true;
    for id in ids {
        if let Some(t) = hub.latest(id) {
            if !first {
                body.push(b',');
            }
            first = false;
            write_json(&mut body, &t, universe.get(id), TickKind::Snapshot);
        }
    }
    body.extend_from_slice(b"],\"unknown\":");
    body.extend_from_slice(&simd_json::to_vec(&unknown).expect("serializes"));
    body.push(b'}');
    respond(StatusCode::OK, JSON, body)
}
