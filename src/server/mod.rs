//! The server: binds the listener, runs the source of ticks and the reporter,
//! accepts connections and serves them, and shuts everything down.
//!
//! - [`listener`]: the listening socket; each accepted connection keeps its
//!   peer address.
//! - [`admission`]: the gate before a WebSocket upgrade (connection limit).
//! - [`http`]: HTTP/1.1 per connection, routing, the upgrade to a session.
//! - [`reporter`]: the per-second metrics roll and the summary log line.
//!
//! Shutdown ([`Shutdown::trigger`]) stops accepting, closes every session with
//! 1001, and waits (boundedly) for them to finish.

pub mod admission;
pub mod http;
pub mod listener;
pub mod reporter;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::task::TaskTracker;

use crate::config::{Config, NatsArgs};
use crate::feed::Universe;
use crate::feed::{FeedError, Generator};
use crate::hub::{self, history::History, Hub};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::source::nats::gateway::Gateway;
use crate::source::Source;
use crate::state::AppState;
use crate::tick::frame_capacity;
use admission::Admission;
use listener::Listener;

/// How long shutdown waits for sessions to say goodbye.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why the server could not start. Each message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "cannot listen on {addr}: {source}; pick another address with --listen or TICKWIRE_LISTEN"
    )]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Feed(#[from] FeedError),
}

impl ServerError {
    /// Whether the address was taken (a restarted server may retry).
    pub fn is_addr_in_use(&self) -> bool {
        matches!(self, ServerError::Listen { source, .. } if source.kind() == std::io::ErrorKind::AddrInUse)
    }
}

/// Runs the source on a thread of its own, with its own timer: nothing the
/// connections do (a flood of requests, thousands of writers) can delay the
/// feed, and the source never waits for a busy worker to be scheduled.
fn spawn_source(source: Source, hub: Arc<Hub>, shutdown: Shutdown) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("tickwire-source".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the source's runtime starts");
            runtime.block_on(source.run(hub, shutdown));
        })
        .expect("the source's thread starts")
}

/// The most memory the history of `universe` can take at `depth` ticks per
/// symbol (each frame is one allocation of [`frame_capacity`] bytes).
fn history_bound(universe: &Universe, depth: usize) -> usize {
    universe
        .iter()
        .map(|(_, ins)| History::bytes_bound(depth, frame_capacity(ins)))
        .sum()
}

/// A bound, not yet running server.
pub struct Server {
    listener: Listener,
    state: Arc<AppState>,
    source: Source,
    /// A gateway's source says when its first sync with the feed is done;
    /// connections are accepted from then on.
    ready: Option<tokio::sync::oneshot::Receiver<()>>,
    admission: Admission,
    shutdown: Shutdown,
}

impl Server {
    /// Loads the universe, prepares the source and binds the listener;
    /// nothing runs until [`Server::run`].
    pub async fn bind(config: Config) -> Result<Server, ServerError> {
        Server::bind_with(config, None).await
    }

    /// As [`Server::bind`], fed from a `tickwire feed` over NATS when `nats`
    /// is given (a gateway) instead of the local generator.
    pub async fn bind_with(config: Config, nats: Option<NatsArgs>) -> Result<Server, ServerError> {
        let universe = config.universe()?;
        let seed = config.market.seed.unwrap_or_else(rand::random);
        let (source, ready) = match nats {
            None => (Source::Local(Generator::new(&universe, seed)), None),
            Some(nats) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                tracing::info!(url = nats.url, "gateway: ticks come from NATS");
                (
                    Source::Nats(Gateway {
                        nats,
                        ready: Some(tx),
                    }),
                    Some(rx),
                )
            }
        };
        let listener = Listener::bind(config.listen, config.backlog).map_err(|source| {
            ServerError::Listen {
                addr: config.listen,
                source,
            }
        })?;
        let metrics = Arc::new(Metrics::default());
        let history = config.history as usize;
        let history_mib = history_bound(&universe, history) as f64 / (1 << 20) as f64;
        let hub = Arc::new(Hub::new(
            Arc::new(universe),
            metrics.clone(),
            hub::new_epoch(),
            history,
        ));
        tracing::info!(
            symbols = hub.universe().len(),
            ticks_per_s = hub.universe().total_rate(),
            seed,
            epoch = %hub.epoch(),
            "feed ready"
        );
        tracing::info!(
            "history: {history} ticks per symbol, at most {history_mib:.1} MiB for {} symbols (--history)",
            hub.universe().len()
        );
        Ok(Server {
            listener,
            admission: Admission::new(config.max_connections, metrics),
            state: Arc::new(AppState::new(hub, config)),
            source,
            ready,
            shutdown: Shutdown::new(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.state.hub
    }

    /// Serves until shutdown is triggered, then closes every session.
    pub async fn run(self) {
        let Server {
            listener,
            state,
            source,
            ready,
            admission,
            shutdown,
        } = self;
        let tracker = TaskTracker::new();
        // On a current-thread runtime the source is one more task beside the
        // connections (a thread of its own would wake them across threads);
        // on a multi-thread runtime it gets its own thread, so connection
        // work cannot delay the feed.
        let one_thread = tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::CurrentThread;
        let source = if one_thread {
            tokio::spawn(source.run(state.hub.clone(), shutdown.clone()));
            None
        } else {
            Some(spawn_source(source, state.hub.clone(), shutdown.clone()))
        };
        if let Some(ready) = ready {
            tokio::select! {
                _ = ready => {}
                () = shutdown.triggered() => {}
            }
        }
        let reporter = tokio::spawn(reporter::run(state.clone(), shutdown.clone()));
        let http = http::Http {
            state: state.clone(),
            admission,
            tracker: tracker.clone(),
            shutdown: shutdown.clone(),
        };

        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => accepted,
                () = shutdown.triggered() => break,
            };
            tokio::spawn(http::serve(stream, peer, http.clone()));
        }

        drop(listener);
        state.sessions.close_all();
        tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = state.sessions.len(),
                "sessions still open after the shutdown grace period; dropping them"
            );
        }
        if let Some(source) = source {
            let _ = tokio::task::spawn_blocking(move || source.join()).await;
        }
        reporter.abort();
        tracing::info!("shut down");
    }
}
