//! One WebSocket connection: a reader task and a writer task around an
//! [`Outbox`].
//!
//! - The **reader** owns the fastwebsockets read half. `read_frame` is not
//!   cancel-safe, so it runs alone in its own task and is never raced in a
//!   `select!`. It parses control messages, applies limits, and answers by
//!   pushing reply frames into the outbox; it is the only one changing this
//!   connection's subscriptions.
//! - The **writer** owns the raw TCP write half. It takes everything queued
//!   in one go and hands it to the kernel with vectored writes of pre-encoded
//!   frame bytes (many frames per syscall), and keeps the connection's clocks:
//!   heartbeats, pings, the idle timeout. When the outbox says close, it sends
//!   the close frame (after finishing a frame it had half written) and ends.
//!
//! Hyper's upgraded stream is unwrapped to the plain `TcpStream` and split
//! without a lock; bytes hyper had already read past the handshake are
//! replayed in front of the socket's.

use std::collections::{HashSet, VecDeque};
use std::io::{self, Cursor, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use fastwebsockets::{Frame, OpCode, Role, WebSocketError, WebSocketRead};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;

use crate::config::{Config, Policy};
use crate::feed::SymbolId;
use crate::hub::{Hub, Sessions};
use crate::metrics::{self, DisconnectReason};
use crate::outbox::{Closing, Kind, Limits, Next, Outbox, Outgoing};
use crate::protocol::{self, ErrorCode, Id, Reply, Request, RequestError};
use crate::tick::{self, OPCODE_PING};

/// How long a closing connection may take to deliver its close frame (and
/// the rest of a half-written frame before it) and to hear the client's
/// close back.
const CLOSE_GRACE: Duration = Duration::from_secs(3);

/// Most frame slices handed to one `writev` (Linux allows 1024).
const MAX_IOV: usize = 512;

/// What a session needs from the server.
#[derive(Clone)]
pub struct SessionContext {
    pub hub: Arc<Hub>,
    pub config: Arc<Config>,
    pub sessions: Arc<Sessions>,
}

/// The state the reader and writer share.
struct Session {
    outbox: Arc<Outbox>,
    /// Symbols this connection follows; changed only by the reader.
    subscriptions: Mutex<HashSet<SymbolId>>,
    ctx: SessionContext,
}

impl Session {
    fn subscriptions(&self) -> MutexGuard<'_, HashSet<SymbolId>> {
        self.subscriptions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs a connection whose HTTP upgrade has been answered, until it closes.
pub async fn run(
    upgrade: fastwebsockets::upgrade::UpgradeFut,
    ctx: SessionContext,
    policy: Policy,
    initial_symbols: Vec<String>,
) {
    let upgraded = match upgrade.await {
        Ok(ws) => ws.into_inner().into_inner(),
        Err(e) => {
            tracing::debug!("websocket upgrade failed: {e}");
            return;
        }
    };
    let parts = match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => parts,
        Err(_) => {
            tracing::error!("upgraded connection is not a TcpStream; dropping it");
            return;
        }
    };
    let (read_half, write_half) = parts.io.into_inner().into_split();
    // `read_buf` is a slice of hyper's whole read buffer: copy the (rare)
    // leftover bytes rather than keep that buffer alive per connection.
    let leftover = if parts.read_buf.is_empty() {
        Bytes::new()
    } else {
        Bytes::copy_from_slice(&parts.read_buf)
    };
    let read = AsyncReadExt::chain(Cursor::new(leftover), read_half);
    let (mut reader, _) =
        fastwebsockets::after_handshake_split(read, tokio::io::sink(), Role::Server);
    // fastwebsockets refuses frames of `>= max` bytes; we allow `max`.
    reader.set_max_message_size(ctx.config.max_message + 1);

    let config = &ctx.config;
    let metrics = ctx.hub.metrics().clone();
    let outbox = Arc::new(Outbox::new(
        Limits {
            max_msgs: config.queue_max_msgs as usize,
            max_bytes: config.queue_max_bytes as usize,
        },
        policy,
        metrics.clone(),
    ));
    let Some(session_id) = ctx.sessions.register(outbox.clone()) else {
        // Shutting down, so the registry refused us: close right away.
        outbox.close(1001, DisconnectReason::Shutdown);
        write_loop(write_half, &outbox, config).await;
        return;
    };
    metrics
        .connections
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);

    let session = Arc::new(Session {
        outbox: outbox.clone(),
        subscriptions: Mutex::new(HashSet::new()),
        ctx: ctx.clone(),
    });
    if !initial_symbols.is_empty() {
        session.subscribe(None, initial_symbols);
    }
    let mut reader_task = tokio::spawn(read_loop(reader, session.clone()));
    let reason = write_loop(write_half, &outbox, config).await;
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

    let subs: Vec<SymbolId> = session.subscriptions().drain().collect();
    ctx.hub.unsubscribe(&outbox, &subs);
    ctx.sessions.remove(session_id);
    metrics
        .connections
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
}

// ---------------------------------------------------------------- writer --

/// Writes whatever the outbox hands over until it says close (or the socket
/// fails); returns why the connection ended.
async fn write_loop(mut wr: OwnedWriteHalf, outbox: &Outbox, config: &Config) -> DisconnectReason {
    let metrics = outbox.metrics().clone();
    let mut batch: VecDeque<Outgoing> = VecDeque::new();
    // Bytes of `batch[0]` already written: a frame must be finished before
    // anything else (a close frame) may follow it.
    let mut head_partial = false;
    let heartbeat_ms = config.heartbeat.as_millis() as u64;
    let ping_ms = config.ping.as_millis() as u64;
    let idle_ms = config.idle_timeout.as_millis() as u64;
    let mut last_sent_ms = metrics::now_ms();
    let mut last_ping_ms = last_sent_ms;
    let next_deadline = |last_sent: u64, last_ping: u64, last_heard: u64| {
        (last_sent + heartbeat_ms)
            .min(last_ping + ping_ms)
            .min(last_heard + idle_ms)
    };
    let timer = tokio::time::sleep_until(metrics::instant_at_ms(next_deadline(
        last_sent_ms,
        last_ping_ms,
        outbox.last_heard_ms(),
    )));
    tokio::pin!(timer);

    let closing: Closing = loop {
        if batch.is_empty() {
            tokio::select! {
                biased;
                next = outbox.next(&mut batch) => match next {
                    Next::Frames => continue,
                    Next::Close(c) => break c,
                },
                () = &mut timer => {}
            }
        } else {
            tokio::select! {
                biased;
                c = outbox.closed() => break c,
                res = write_batch(&mut wr, &mut batch, &mut head_partial, &metrics) => {
                    match res {
                        Ok(()) => {
                            last_sent_ms = metrics::now_ms();
                            continue;
                        }
                        Err(_) => return DisconnectReason::Client,
                    }
                }
                () = &mut timer => {}
            }
        }
        // The timer fired: see which clocks are actually due.
        let now = metrics::now_ms();
        let last_heard = outbox.last_heard_ms();
        if now >= last_heard + idle_ms {
            outbox.close(1001, DisconnectReason::IdleTimeout);
            continue;
        }
        if now >= last_ping_ms + ping_ms {
            outbox.push_control(tick::frame(OPCODE_PING, b"tickwire"), Kind::Control);
            last_ping_ms = now;
        }
        if now >= last_sent_ms + heartbeat_ms && batch.is_empty() {
            let hb = Reply::Heartbeat {
                ts: metrics::wall_us(),
            };
            outbox.push_control(hb.frame(), Kind::Text);
            // Counts as sent for scheduling: the next one is due an interval
            // later, whether or not the client reads it.
            last_sent_ms = now;
        }
        timer.as_mut().reset(metrics::instant_at_ms(
            next_deadline(last_sent_ms, last_ping_ms, last_heard).max(now + 1),
        ));
    };

    if !closing.frame.is_empty() {
        // A half-written frame must be finished before anything may follow;
        // the rest of the batch goes only if the close says flush.
        if closing.flush.is_empty() {
            batch.truncate(usize::from(head_partial));
        }
        batch.extend(closing.flush);
        batch.push_back(Outgoing {
            bytes: closing.frame,
            kind: Kind::Control,
        });
        // Then half-close: the client sees the end of our stream after the
        // close frame.
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            write_batch(&mut wr, &mut batch, &mut head_partial, &metrics).await?;
            wr.shutdown().await
        })
        .await;
    }
    closing.reason
}

/// Writes all of `batch`, many frames per `writev`, recording each written
/// frame. Cancel-safe: progress lives in `batch` itself.
async fn write_batch(
    wr: &mut OwnedWriteHalf,
    batch: &mut VecDeque<Outgoing>,
    head_partial: &mut bool,
    metrics: &metrics::Metrics,
) -> io::Result<()> {
    std::future::poll_fn(|cx| poll_write_batch(cx, wr, batch, head_partial, metrics)).await
}

fn poll_write_batch(
    cx: &mut Context<'_>,
    wr: &mut OwnedWriteHalf,
    batch: &mut VecDeque<Outgoing>,
    head_partial: &mut bool,
    metrics: &metrics::Metrics,
) -> Poll<io::Result<()>> {
    while !batch.is_empty() {
        // The slices live on the stack of this poll only, not in the task.
        let mut slices = [IoSlice::new(&[]); MAX_IOV];
        let n = batch
            .iter()
            .zip(slices.iter_mut())
            .map(|(f, s)| *s = IoSlice::new(&f.bytes))
            .count();
        let written = ready!(Pin::new(&mut *wr).poll_write_vectored(cx, &slices[..n]))?;
        if written == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        let now_ns = metrics::wall_ns();
        let mut shard = metrics.shard();
        shard.writes += 1;
        shard.bytes_sent += written as u64;
        let mut left = written;
        while left > 0 {
            let head = batch.front_mut().expect("written bytes belong to frames");
            if left < head.bytes.len() {
                head.bytes.advance(left);
                *head_partial = true;
                break;
            }
            left -= head.bytes.len();
            *head_partial = false;
            match head.kind {
                Kind::Tick { ts_ns } => {
                    shard.msgs_sent += 1;
                    shard.ticks_sent += 1;
                    shard
                        .latency
                        .saturating_record(now_ns.saturating_sub(ts_ns).max(1));
                }
                Kind::Text => shard.msgs_sent += 1,
                Kind::Control => {}
            }
            batch.pop_front();
        }
    }
    Poll::Ready(Ok(()))
}

// ---------------------------------------------------------------- reader --

/// A token bucket on the millisecond clock.
struct Bucket {
    tokens: f64,
    capacity: f64,
    per_ms: f64,
    last_ms: u64,
}

impl Bucket {
    fn new(capacity: f64, per_second: f64) -> Bucket {
        Bucket {
            tokens: capacity,
            capacity,
            per_ms: per_second / 1000.0,
            last_ms: metrics::now_ms(),
        }
    }

    fn take(&mut self) -> bool {
        let now = metrics::now_ms();
        self.tokens = (self.tokens + (now - self.last_ms) as f64 * self.per_ms).min(self.capacity);
        self.last_ms = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Reader {
    session: Arc<Session>,
    /// simd-json scratch space, made on the first message.
    buffers: Option<simd_json::Buffers>,
    /// A fragmented text message being reassembled.
    fragments: Option<Vec<u8>>,
    requests: Bucket,
    errors: Bucket,
}

async fn read_loop<R: AsyncRead + Unpin>(mut ws: WebSocketRead<R>, session: Arc<Session>) {
    let cfg = session.ctx.config.clone();
    let outbox = session.outbox.clone();
    let mut reader = Reader {
        requests: Bucket::new(2.0 * cfg.control_rate as f64, cfg.control_rate as f64),
        errors: Bucket::new(cfg.max_errors as f64, cfg.max_errors as f64 / 10.0),
        session,
        buffers: None,
        fragments: None,
    };
    // The frames the protocol obliges us to send (pong, close echo).
    let mut send = |frame: Frame<'_>| {
        let bytes = tick::frame(frame.opcode as u8, &frame.payload);
        if frame.opcode == OpCode::Close {
            outbox.close_with_frame(bytes, DisconnectReason::Client);
        } else {
            outbox.push_control(bytes, Kind::Control);
        }
        std::future::ready(Ok::<(), io::Error>(()))
    };
    // Reads until the client's close frame or the end of the stream. After
    // the server decided to close, frames are read and dropped: leaving
    // them unread would make the kernel answer with a reset, which can
    // destroy the close frame before the client reads it.
    loop {
        let frame = match ws.read_frame(&mut send).await {
            Ok(frame) => frame,
            Err(e) => {
                reader.protocol_failure(e);
                return;
            }
        };
        reader.session.outbox.heard_from_client();
        if frame.opcode == OpCode::Close {
            return;
        }
        if !reader.session.outbox.is_closing() {
            reader.on_frame(frame);
        }
    }
}

impl Reader {
    fn close(&self, code: u16, reason: DisconnectReason) {
        self.session.outbox.close(code, reason);
    }

    fn protocol_failure(&self, e: WebSocketError) {
        match e {
            WebSocketError::FrameTooLarge => self.close(1009, DisconnectReason::MessageTooBig),
            WebSocketError::InvalidUTF8 => self.close(1007, DisconnectReason::InvalidPayload),
            WebSocketError::UnexpectedEOF | WebSocketError::IoError(_) => {
                // The peer is gone; there is nobody to send a close frame to.
                self.session
                    .outbox
                    .close_with_frame(Bytes::new(), DisconnectReason::Client)
            }
            WebSocketError::ConnectionClosed => {}
            other => {
                tracing::debug!("closing a connection for a protocol error: {other}");
                self.close(1002, DisconnectReason::ProtocolError)
            }
        }
    }

    /// Handles one data or control frame (close frames are the loop's).
    fn on_frame(&mut self, mut frame: Frame<'_>) {
        let max = self.session.ctx.config.max_message;
        match frame.opcode {
            OpCode::Text if frame.fin => {
                if self.fragments.is_some() {
                    self.close(1002, DisconnectReason::ProtocolError);
                    return;
                }
                self.on_text(frame.payload.to_mut());
            }
            OpCode::Text => {
                if self.fragments.is_some() {
                    self.close(1002, DisconnectReason::ProtocolError);
                    return;
                }
                self.fragments = Some(frame.payload.to_vec());
            }
            OpCode::Continuation => {
                let Some(buf) = self.fragments.as_mut() else {
                    self.close(1002, DisconnectReason::ProtocolError);
                    return;
                };
                if buf.len() + frame.payload.len() > max {
                    self.close(1009, DisconnectReason::MessageTooBig);
                    return;
                }
                buf.extend_from_slice(&frame.payload);
                if frame.fin {
                    let mut text = self.fragments.take().expect("checked above");
                    if std::str::from_utf8(&text).is_err() {
                        self.close(1007, DisconnectReason::InvalidPayload);
                    } else {
                        self.on_text(&mut text);
                    }
                }
            }
            OpCode::Binary => self.close(1003, DisconnectReason::UnsupportedData),
            OpCode::Close | OpCode::Ping | OpCode::Pong => {}
        }
    }

    fn on_text(&mut self, text: &mut [u8]) {
        let buffers = self
            .buffers
            .get_or_insert_with(|| simd_json::Buffers::new(text.len()));
        let request = protocol::parse_request(text, buffers);
        if !self.requests.take() {
            // Parsed anyway (a few hundred ns) so the error can name the
            // request it refuses; the error budget bounds such storms.
            let id = match &request {
                Ok(r) => r.id().cloned(),
                Err(e) => e.id.clone(),
            };
            self.reply_error(RequestError::new(
                id,
                ErrorCode::RateLimited,
                format!(
                    "more than {} control messages per second; this one was ignored",
                    self.session.ctx.config.control_rate
                ),
            ));
            return;
        }
        match request {
            Ok(Request::Subscribe { id, symbols }) => {
                if let Some(e) = self.session.subscribe(id, symbols) {
                    self.reply_error(e);
                }
            }
            Ok(Request::Unsubscribe { id, symbols }) => {
                if let Some(e) = self.session.unsubscribe(id, symbols) {
                    self.reply_error(e);
                }
            }
            Ok(Request::Symbols { id }) => self.session.outbox.push_control(
                protocol::symbols_reply(id.as_ref(), self.session.ctx.hub.symbols_json()),
                Kind::Text,
            ),
            Ok(Request::Ping { id }) => self.session.outbox.push_control(
                Reply::Pong {
                    id: id.as_ref(),
                    ts: metrics::wall_us(),
                }
                .frame(),
                Kind::Text,
            ),
            Err(e) => self.reply_error(e),
        }
    }

    /// Sends an error reply; a storm of them closes the connection.
    fn reply_error(&mut self, e: RequestError) {
        self.session.ctx.hub.metrics().count_error(e.code);
        if !self.errors.take() {
            self.close(1008, DisconnectReason::Abuse);
            return;
        }
        self.session.outbox.push_control(e.frame(), Kind::Text);
    }
}

impl Session {
    /// Resolves names to symbols: `*` is every symbol; returns the known ids
    /// (deduplicated, in request order) and the unknown names.
    fn resolve(&self, names: &[String]) -> (Vec<SymbolId>, Vec<String>) {
        let universe = self.ctx.hub.universe();
        if names.iter().any(|n| n == "*") {
            return (universe.iter().map(|(id, _)| id).collect(), Vec::new());
        }
        let mut seen = HashSet::with_capacity(names.len());
        let mut known = Vec::with_capacity(names.len());
        let mut unknown = Vec::new();
        for name in names {
            match universe.id_of(name) {
                Some(id) => {
                    if seen.insert(id) {
                        known.push(id);
                    }
                }
                None => unknown.push(name.clone()),
            }
        }
        (known, unknown)
    }

    fn names<'a>(&'a self, ids: &[SymbolId]) -> Vec<&'a str> {
        let u = self.ctx.hub.universe();
        ids.iter().map(|&id| u.get(id).symbol.as_str()).collect()
    }

    fn unknown_error(id: Option<Id>, unknown: &[String]) -> RequestError {
        let mut list: Vec<&str> = unknown.iter().take(20).map(String::as_str).collect();
        if unknown.len() > 20 {
            list.push("...");
        }
        RequestError::new(
            id,
            ErrorCode::UnknownSymbol,
            format!(
                "unknown symbols: {}; the op \"symbols\" lists them all",
                list.join(", ")
            ),
        )
    }

    /// Subscribes to the known names; the ack comes before the snapshots.
    fn subscribe(&self, id: Option<Id>, names: Vec<String>) -> Option<RequestError> {
        let (known, unknown) = self.resolve(&names);
        let max = self.ctx.config.max_symbols;
        let fresh: Vec<SymbolId> = {
            let mut subs = self.subscriptions();
            let fresh: Vec<SymbolId> = known
                .iter()
                .copied()
                .filter(|s| !subs.contains(s))
                .collect();
            if subs.len() + fresh.len() > max {
                return Some(RequestError::new(
                    id,
                    ErrorCode::TooManySymbols,
                    format!(
                        "this would follow {} symbols; a connection may follow at most {max}; nothing was subscribed",
                        subs.len() + fresh.len()
                    ),
                ));
            }
            subs.extend(&fresh);
            fresh
        };
        if !known.is_empty() {
            let reply = Reply::Subscribed {
                id: id.as_ref(),
                symbols: &self.names(&known),
            };
            self.outbox.push_control(reply.frame(), Kind::Text);
            self.ctx.hub.subscribe(&self.outbox, &fresh);
        }
        (!unknown.is_empty()).then(|| Session::unknown_error(id, &unknown))
    }

    /// Unsubscribes; no tick of those symbols follows the ack.
    fn unsubscribe(&self, id: Option<Id>, names: Vec<String>) -> Option<RequestError> {
        let (known, unknown) = if names.iter().any(|n| n == "*") {
            (self.subscriptions().iter().copied().collect(), Vec::new())
        } else {
            self.resolve(&names)
        };
        let followed: Vec<SymbolId> = {
            let mut subs = self.subscriptions();
            known.iter().copied().filter(|s| subs.remove(s)).collect()
        };
        self.ctx.hub.unsubscribe(&self.outbox, &followed);
        if !known.is_empty() || names.iter().any(|n| n == "*") {
            let reply = Reply::Unsubscribed {
                id: id.as_ref(),
                symbols: &self.names(&known),
            };
            self.outbox.push_control(reply.frame(), Kind::Text);
        }
        (!unknown.is_empty()).then(|| Session::unknown_error(id, &unknown))
    }
}
