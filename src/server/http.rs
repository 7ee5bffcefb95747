//! HTTP/1.1 on one connection: hyper serves it, `/ws` upgrades go through
//! admission to a session, everything else (after admission's request
//! checks) to the plain endpoints.
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

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio_util::task::TaskTracker;

use super::admission::{Admission, RejectReason, SocketSlot};
use crate::api::{self, Body};
use crate::outbox::Policy;
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
    let service = service_fn(move |req| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let mut res = route::<S>(req, peer, &http);
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
        peer,
        grant: admitted.client.grant.clone(),
    };
    http.tracker.spawn(async move {
        session::run::<S>(upgrade, state, params).await;
        drop(admitted);
    });
    response.map(|_| Body::default())
}
