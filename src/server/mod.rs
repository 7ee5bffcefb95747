//! The server: binds the listener, runs the source of ticks and the reporter,
//! accepts connections and serves them, and shuts everything down.
//!
//! - [`listener`]: the listening socket; each accepted connection keeps its
//!   peer address.
//! - [`admission`]: every decision about who may connect: pending and
//!   per-address limits, Origin, tokens, the shutdown notice.
//! - [`tls`]: the TLS acceptor (`--tls-cert`, `--tls-key`).
//! - [`http`]: HTTP/1.1 per connection, routing, the upgrade to a session.
//! - [`reporter`]: the per-second metrics roll and the summary log line.
//!
//! Shutdown ([`Shutdown::trigger`]) stops accepting, closes every session with
//! 1001, and waits (boundedly) for them to finish. [`Goodbye`] comes first on
//! SIGTERM: every session is told `{"type":"shutdown","in_ms":N}` and keeps
//! streaming for `--shutdown-notice` while new connections get 503.

pub mod admission;
pub mod http;
pub mod listener;
pub mod reporter;
pub mod tls;

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
use tokio_rustls::TlsAcceptor;

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
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthSetupError),
    #[error("{0}")]
    Config(String),
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
    tls: Option<TlsAcceptor>,
    shutdown: Shutdown,
}

/// The goodbye with notice (SIGTERM): tell every client, keep streaming for
/// `--shutdown-notice` while refusing newcomers with 503, then shut down.
#[derive(Clone)]
pub struct Goodbye {
    state: Arc<AppState>,
    admission: Admission,
    shutdown: Shutdown,
}

impl Goodbye {
    /// Runs the notice, then triggers the shutdown. A second call (a second
    /// signal) during the notice shuts down at once.
    pub async fn run(&self) {
        let notice = std::time::Duration::from_millis(self.state.config.shutdown_notice);
        if notice.is_zero() || self.admission.is_draining() {
            self.shutdown.trigger();
            return;
        }
        self.admission.start_draining();
        let frame = crate::wire::reply_frame(&tickwire_protocol::Reply::Shutdown {
            in_ms: notice.as_millis() as u64,
        });
        self.state.sessions.notify_all(&frame);
        tracing::info!(
            "shutdown notice sent; closing every connection with 1001 in {} ms",
            notice.as_millis()
        );
        tokio::select! {
            () = tokio::time::sleep(notice) => {}
            () = self.shutdown.triggered() => {}
        }
        self.shutdown.trigger();
    }
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
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
            _ => None,
        };
        let auth = crate::auth::Auth::from_config(&config)?;
        let metrics = Arc::new(Metrics::default());
        let admission =
            Admission::new(&config, auth.clone(), metrics.clone()).map_err(ServerError::Config)?;
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
        let mut state = AppState::new(hub, config);
        state.auth = auth;
        Ok(Server {
            listener,
            admission,
            state: Arc::new(state),
            source,
            tls,
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

    /// The handle that shuts down with notice (what SIGTERM does).
    pub fn goodbye_handle(&self) -> Goodbye {
        Goodbye {
            state: self.state.clone(),
            admission: self.admission.clone(),
            shutdown: self.shutdown.clone(),
        }
    }

    pub fn admission(&self) -> &Admission {
        &self.admission
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
            tls,
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
        let reporter = tokio::spawn(reporter::run(
            state.clone(),
            admission.clone(),
            shutdown.clone(),
        ));
        let handshake_timeout = state.config.handshake_timeout;
        let http = http::Http {
            state: state.clone(),
            admission: admission.clone(),
            tracker: tracker.clone(),
            shutdown: shutdown.clone(),
        };

        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => accepted,
                () = shutdown.triggered() => break,
            };
            // Refused sockets are closed right here, before a byte is read.
            let Ok(slot) = admission.admit_socket(peer) else {
                continue;
            };
            let http = http.clone();
            match &tls {
                None => {
                    tokio::spawn(http::serve(stream, peer, http, slot));
                }
                Some(acceptor) => {
                    let accept = acceptor.accept(stream);
                    let admission = admission.clone();
                    tokio::spawn(async move {
                        match tokio::time::timeout(handshake_timeout, accept).await {
                            Ok(Ok(tls)) => http::serve(tls, peer, http, slot).await,
                            Ok(Err(e)) => {
                                admission.count(admission::RejectReason::Tls);
                                tracing::debug!(%peer, "tls handshake failed: {e}");
                            }
                            Err(_) => admission.count(admission::RejectReason::HandshakeTimeout),
                        }
                    });
                }
            }
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
