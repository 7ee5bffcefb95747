//! Admission: the one gate a WebSocket upgrade passes before it is answered.
//!
//! Today it holds the connection limit (`--max-connections`: more get HTTP
//! 503). It is where per-IP limits, the Origin check and token auth go: each
//! is a check on the request and the peer address, each refusal an HTTP
//! status with a JSON error and a `tickwire_rejected_connections_total`
//! count.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use hyper::{Request, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;

/// At most `max` WebSocket sessions at once.
#[derive(Clone)]
pub struct ConnectionLimit(Arc<Semaphore>);

impl ConnectionLimit {
    pub fn new(max: usize) -> ConnectionLimit {
        ConnectionLimit(Arc::new(Semaphore::new(max)))
    }
}

/// What an admitted session holds until it ends: its slot under the limits.
pub struct Admitted {
    _slot: OwnedSemaphorePermit,
}

/// Why an upgrade was refused: the HTTP answer.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: &'static str,
}

/// Every check an upgrade must pass.
#[derive(Clone)]
pub struct Admission {
    limit: ConnectionLimit,
    metrics: Arc<Metrics>,
}

impl Admission {
    pub fn new(max_connections: usize, metrics: Arc<Metrics>) -> Admission {
        Admission {
            limit: ConnectionLimit::new(max_connections),
            metrics,
        }
    }

    /// Admits the upgrade `req` from `peer`, or says why not (and counts it).
    pub fn admit<B>(&self, _req: &Request<B>, _peer: SocketAddr) -> Result<Admitted, Refusal> {
        match self.limit.0.clone().try_acquire_owned() {
            Ok(slot) => Ok(Admitted { _slot: slot }),
            Err(_) => {
                self.metrics
                    .rejected_connections
                    .fetch_add(1, Ordering::Relaxed);
                Err(Refusal {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    message: "too many connections; try again later",
                })
            }
        }
    }
}
