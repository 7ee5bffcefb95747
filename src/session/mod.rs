//! One WebSocket connection, from the answered upgrade to the last byte.
//!
//! A session is two tasks around one [`Outbox`]:
//!
//! ```text
//!   socket ─► reader task ─► requests ─► hub (subscribe) / outbox (replies)
//!   hub (ticks) ─► outbox ─► writer task ─► socket
//! ```
//!
//! - [`reader`]: owns the read half; frames, fragments, protocol closes
//!   (frames are parsed by [`frames`], strict RFC 6455).
//! - [`requests`]: what each control message does, and the rate limits.
//! - [`writer`]: owns the write half; batched writes, heartbeats, pings,
//!   the idle timeout, the close.
//! - [`clocks`]: when the client was last heard from, and the writer's
//!   deadlines.
//! - [`sse`]: the other kind of session, a Server-Sent Events stream: the
//!   same outbox, drained by an HTTP response body instead of a writer task.
//!
//! The session is generic over the byte stream ([`Stream`]: plain TCP or
//! TLS). Bytes hyper had already read past the handshake are replayed in
//! front of the stream's.

mod clocks;
mod frames;
mod reader;
mod requests;
pub mod sse;
mod writer;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper_util::rt::TokioIo;

pub use clocks::Clocks;

use crate::auth::Grant;
use crate::close::DisconnectReason;
use crate::config::Config;
use crate::feed::SymbolId;
use crate::outbox::{self, Outbox, Policy};
use crate::state::AppState;
use crate::stream::Stream;
use crate::sync::Mutex;
use crate::tick::Format;
use clocks::Liveness;
use writer::{write_loop, CLOSE_GRACE};

/// What a client may make one connection do.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest client message in bytes (fragments included); more: 1009.
    pub max_message: usize,
    /// Most symbols followed at once.
    pub max_symbols: usize,
    /// Control messages per second (bursts of twice that).
    pub control_rate: u32,
    /// Error replies per ~10 s before close 1008.
    pub max_errors: u32,
}

/// How long a slow consumer's close frame may wait for its client to read,
/// and for how many connections at once.
#[derive(Debug, Clone, Copy)]
pub struct SlowClose {
    pub grace: Duration,
    pub max: usize,
}

/// Every knob a session obeys, derived once from the [`Config`].
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub queue: outbox::Limits,
    pub limits: Limits,
    pub clocks: Clocks,
    pub slow_close: SlowClose,
}

impl Settings {
    pub fn from_config(c: &Config) -> Settings {
        Settings {
            queue: outbox::Limits {
                max_msgs: c.queue_max_msgs as usize,
                max_bytes: c.queue_max_bytes as usize,
            },
            limits: Limits {
                max_message: c.max_message,
                max_symbols: c.max_symbols,
                control_rate: c.control_rate,
                max_errors: c.max_errors,
            },
            clocks: Clocks {
                heartbeat: c.heartbeat,
                ping: c.ping,
                idle: c.idle_timeout,
            },
            slow_close: SlowClose {
                grace: c.slow_consumer_grace,
                max: c.max_slow_closing,
            },
        }
    }
}

/// What the upgrade request asked for, and who asked.
#[derive(Debug, Clone)]
pub struct Params {
    pub policy: Policy,
    /// How ticks are encoded for this connection.
    pub format: Format,
    /// Symbols named in the URL, subscribed at connect.
    pub symbols: Vec<String>,
    /// The connection's default throttle (`?throttle_ms=`, 0: off), for
    /// subscribes that do not name one.
    pub throttle_ms: u32,
    pub peer: SocketAddr,
    /// What the client's token entitles it to (everything when auth is off).
    pub grant: Arc<Grant>,
}

/// The state the reader and writer share.
struct Session {
    outbox: Arc<Outbox>,
    /// Symbols this connection follows, each with its throttle (ms, 0:
    /// every tick); changed only by the reader.
    subscriptions: Mutex<HashMap<SymbolId, u32>>,
    /// The throttle of subscribes that do not name one.
    default_throttle_ms: u32,
    liveness: Liveness,
    settings: Settings,
    state: Arc<AppState>,
    /// The token the session runs on; the `auth` op replaces it.
    grant: Mutex<Arc<Grant>>,
    /// Woken when `grant` changes, so the expiry watch re-reads it.
    regranted: tokio::sync::Notify,
}

impl Session {
    /// The symbols limit of this session: the server's, or the token's if lower.
    fn max_symbols(&self) -> usize {
        self.grant
            .lock()
            .max_symbols_within(self.settings.limits.max_symbols)
    }
}

/// Ends the session when its token expires: an `error` `token_expired`,
/// then close 4001. An `auth` op with a fresh token moves the deadline.
async fn expire_at_exp(session: Arc<Session>) {
    loop {
        let left = session.grant.lock().expires_in();
        match left {
            Some(left) if left.is_zero() => break,
            Some(left) => tokio::select! {
                () = tokio::time::sleep(left) => {}
                () = session.regranted.notified() => {}
            },
            None => session.regranted.notified().await,
        }
    }
    session.expired();
}

/// Runs a connection whose HTTP upgrade has been answered, until it closes.
pub async fn run<S: Stream>(
    upgrade: fastwebsockets::upgrade::UpgradeFut,
    state: Arc<AppState>,
    params: Params,
) {
    let upgraded = match upgrade.await {
        Ok(ws) => ws.into_inner().into_inner(),
        Err(e) => {
            tracing::debug!(peer = %params.peer, "websocket upgrade failed: {e}");
            return;
        }
    };
    let parts = match upgraded.downcast::<TokioIo<S>>() {
        Ok(parts) => parts,
        Err(_) => {
            tracing::error!("upgraded connection is not the listener's stream type; dropping it");
            return;
        }
    };
    let hyper::upgrade::Parts { io, read_buf, .. } = parts;
    let (read_half, write_half) = io.into_inner().split();
    // `read_buf` is a slice of hyper's whole read buffer (8 KiB and more),
    // empty or not: copy the (rare) leftover bytes and drop the slice now,
    // or the buffer stays allocated for as long as the connection lives.
    let leftover = if read_buf.is_empty() {
        Bytes::new()
    } else {
        Bytes::copy_from_slice(&read_buf)
    };
    drop(read_buf);
    let settings = state.session;

    let metrics = state.hub.metrics().clone();
    let outbox = Arc::new(
        Outbox::new(settings.queue, params.policy, metrics.clone()).with_format(params.format),
    );
    let liveness = Liveness::new();
    let Some(session_id) = state.sessions.register(outbox.clone()) else {
        // Shutting down, so the registry refused us: close right away.
        outbox.close(DisconnectReason::Shutdown);
        write_loop(write_half, &outbox, &settings, &liveness).await;
        return;
    };
    metrics.connections.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(peer = %params.peer, session_id, sub = %params.grant.sub, "session open");

    let session = Arc::new(Session {
        outbox: outbox.clone(),
        subscriptions: Mutex::new(HashMap::new()),
        default_throttle_ms: params.throttle_ms,
        liveness,
        settings,
        state: state.clone(),
        grant: Mutex::new(params.grant.clone()),
        regranted: tokio::sync::Notify::new(),
    });
    let expiry = state
        .auth
        .is_some()
        .then(|| tokio::spawn(expire_at_exp(session.clone())));
    session.welcome(params.policy);
    if !params.symbols.is_empty() {
        // Unknown names in the URL are ignored; the ack lists what was
        // taken. Symbols the token does not cover get a `forbidden` error.
        if let Some(e) = session.subscribe(None, &params.symbols, None, None, None) {
            if e.code == tickwire_protocol::ErrorCode::Forbidden {
                session.reply(&tickwire_protocol::Reply::from(e));
            }
        }
    }
    let mut reader_task = tokio::spawn(reader::read_loop(read_half, leftover, session.clone()));
    let reason = write_loop(write_half, &outbox, &settings, &session.liveness).await;
    // A failed write ends the connection without a close decision: the
    // client went away. (A no-op when a close was decided; that one counted.)
    outbox.close_with_frame(Bytes::new(), DisconnectReason::Client);
    // Keep reading (and dropping) what the client sends until it answers our
    // close or the grace runs out: closing with unread input makes the kernel
    // reset the connection, which can destroy the close frame in flight.
    // Shutdown does not wait: the whole server is going away.
    if reason == DisconnectReason::Shutdown
        || tokio::time::timeout(CLOSE_GRACE, &mut reader_task)
            .await
            .is_err()
    {
        reader_task.abort();
    }

    if let Some(expiry) = expiry {
        expiry.abort();
    }
    let subs: Vec<SymbolId> = session.subscriptions.lock().drain().map(|s| s.0).collect();
    state.hub.unsubscribe(&outbox, &subs);
    state.sessions.remove(session_id);
    metrics.connections.fetch_sub(1, Ordering::Relaxed);
    tracing::debug!(peer = %params.peer, session_id, reason = reason.label(), "session closed");
}
