//! HTTP/1.1 on one connection: hyper serves it, `/ws` upgrades go through
//! admission to a session, `/sse` through admission to an SSE stream,
//! everything else (after admission's request checks) to the plain
//! endpoints.
//!
//! Bounds on what one connection costs before it is a session: the request
//! head must arrive within `--handshake-timeout` (hyper's header read
//! timeout, which needs the timer set here; it also ends idle keep-alive
//! connections) and fit in `--max-header-bytes` (else 431, and hyper's read
//! buffer is capped at the same size); after `--max-requests-per-connection`
//! requests the connection is closed (`Connection: close`), so a pipelining
//! client cannot queue up unbounded work.

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Either;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio_util::task::TaskTracker;

use super::admission::{Admission, RejectReason, SocketSlot};
use crate::api::{self, Body};
use crate::outbox::Policy;
use crate::session::sse::{self, SseBody, SseParams};
use crate::session::{self, Params};
use crate::shutdown::Shutdown;
use crate::state::AppState;
use crate::stream::Stream;
use crate::tick::Format;

/// What every connection's HTTP service needs.
#[derive(Clone)]
pub struct Http {
    pub state: Arc<AppState>,
    pub admission: Admission,
    pub tracker: TaskTracker,
    pub shutdown: Shutdown,
}

/// Serves HTTP/1.1 on one connection until it closes or upgrades. `slot`
/// is the connection's place under the pending limits, given back when it
/// ends or becomes a session.
pub async fn serve<S: Stream>(stream: S, peer: SocketAddr, http: Http, slot: SocketSlot) {
    let shutdown = http.shutdown.clone();
    let admission = http.admission.clone();
    let config = &http.state.config;
    let max_requests = config.max_requests_per_connection.max(1);
    let header_bytes = config.max_header_bytes as usize;
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.handshake_timeout)
        .max_header_size(header_bytes)
        .max_buf_size(header_bytes.max(8192))
        .max_headers(64);
    let served = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = served.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let mut res = if req.uri().path() == "/sse" {
            route_sse(req, peer, &http)
        } else {
            route::<S>(req, peer, &http).map(Either::Left)
        };
        if n >= max_requests {
            res.headers_mut().insert(
                hyper::header::CONNECTION,
                hyper::header::HeaderValue::from_static("close"),
            );
        }
        async move { Ok::<_, std::convert::Infallible>(res) }
    });
    let conn = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    let res = tokio::select! {
        res = conn.as_mut() => res,
        () = shutdown.triggered() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = res {
        // A connection that never got a request in is a refusal; an idle
        // kept-alive one timing out is not.
        let first = served.load(std::sync::atomic::Ordering::Relaxed) == 0;
        if e.is_timeout() && first {
            admission.count(RejectReason::HandshakeTimeout);
        } else if e.is_parse_too_large() {
            admission.count(RejectReason::HeaderTooLarge);
        }
        tracing::debug!(%peer, "http connection ended: {e}");
    }
    drop(slot);
}

fn route<S: Stream>(mut req: Request<Incoming>, peer: SocketAddr, http: &Http) -> Response<Body> {
    let path = req.uri().path();
    if path != "/ws" || !fastwebsockets::upgrade::is_upgrade_request(&req) {
        let client = match http.admission.check_request(&req, peer) {
            Ok(c) => c,
            Err(refusal) => return refusal.response(),
        };
        return api::handle(
            req.method(),
            path,
            req.uri().query(),
            &http.state,
            &client.grant,
        );
    }
    let query = req.uri().query();
    let policy = match api::query_param(query, "policy") {
        None => http.state.config.policy,
        Some(p) => match <Policy as clap::ValueEnum>::from_str(&p, false) {
            Ok(p) => p,
            Err(_) => {
                return api::error(
                    StatusCode::BAD_REQUEST,
                    "policy must be conflate or disconnect",
                )
            }
        },
    };
    let format = match api::query_param(query, "format") {
        None => Format::Json,
        Some(f) => match <Format as clap::ValueEnum>::from_str(&f, false) {
            Ok(f) => f,
            Err(_) => return api::error(StatusCode::BAD_REQUEST, "format must be json or binary"),
        },
    };
    let symbols = api::query_param(query, "symbols")
        .map(|s| api::split_symbols(&s))
        .unwrap_or_default();
    let throttle_ms = match throttle_param(query) {
        Ok(t) => t,
        Err(e) => return api::error(StatusCode::BAD_REQUEST, &e),
    };
    let admitted = match http.admission.admit(&req, peer) {
        Ok(a) => a,
        Err(refusal) => return refusal.response(),
    };
    let (response, upgrade) = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok(x) => x,
        Err(e) => return api::error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let state = http.state.clone();
    let params = Params {
        policy,
        format,
        symbols,
        throttle_ms,
        peer,
        grant: admitted.client.grant.clone(),
    };
    http.tracker.spawn(async move {
        session::run::<S>(upgrade, state, params).await;
        drop(admitted);
    });
    response.map(|_| Body::default())
}

/// `?throttle_ms=` of `/ws` and `/sse`: 0 (absent) or 10..=60000.
fn throttle_param(query: Option<&str>) -> Result<u32, String> {
    match api::query_param(query, "throttle_ms") {
        None => Ok(0),
        Some(t) => t
            .parse::<u64>()
            .map_err(|_| format!("throttle_ms must be a number of milliseconds, not {t:?}"))
            .and_then(tickwire_protocol::request::check_throttle_ms),
    }
}

/// `GET /sse?symbols=A,B[&throttle_ms=][&policy=]`: a Server-Sent Events
/// stream, admitted like a WebSocket session.
fn route_sse(
    req: Request<Incoming>,
    peer: SocketAddr,
    http: &Http,
) -> Response<Either<Body, SseBody>> {
    let refuse = |status, message: &str| api::error(status, message).map(Either::Left);
    if req.method() != hyper::Method::GET {
        return refuse(StatusCode::METHOD_NOT_ALLOWED, "only GET is supported");
    }
    let query = req.uri().query();
    let policy = match api::query_param(query, "policy") {
        None => http.state.config.policy,
        Some(p) => match <Policy as clap::ValueEnum>::from_str(&p, false) {
            Ok(p) => p,
            Err(_) => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "policy must be conflate or disconnect",
                )
            }
        },
    };
    let throttle_ms = match throttle_param(query) {
        Ok(t) => t,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &e),
    };
    let symbols = api::query_param(query, "symbols")
        .map(|s| api::split_symbols(&s))
        .unwrap_or_default();
    let last_event_id = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(String::from)
        .or_else(|| api::query_param(query, "last_event_id"));
    let admitted = match http.admission.admit(&req, peer) {
        Ok(a) => a,
        Err(refusal) => return refusal.response().map(Either::Left),
    };
    // With auth, the stream carries only what the token entitles to: `*`
    // is the entitled symbols, a named one outside the grant is a 403.
    let grant = admitted.client.grant.clone();
    let symbols = if http.state.auth.is_some() {
        let universe = http.state.hub.universe();
        let symbols: Vec<String> = if symbols.iter().any(|s| s == "*") {
            universe
                .iter()
                .map(|(_, i)| i.symbol.clone())
                .filter(|s| grant.allows(s))
                .collect()
        } else {
            symbols
        };
        let refused: Vec<String> = symbols
            .iter()
            .filter(|s| !grant.allows(s))
            .cloned()
            .collect();
        if !refused.is_empty() {
            return api::forbidden(&refused).map(Either::Left);
        }
        symbols
    } else {
        symbols
    };
    let params = SseParams {
        symbols,
        throttle_ms,
        policy,
        last_event_id,
        grant,
    };
    match sse::open(&http.state, params, Box::new(admitted)) {
        Ok(body) => {
            let mut r = Response::new(Either::Right(body));
            let h = r.headers_mut();
            h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            h.insert("x-accel-buffering", HeaderValue::from_static("no"));
            h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
            r
        }
        Err((status, message)) => refuse(status, &message),
    }
}
