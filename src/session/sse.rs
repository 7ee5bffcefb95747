//! One Server-Sent Events stream (`GET /sse`): the same outbox as a
//! WebSocket session, drained by a different writer.
//!
//! An SSE stream is a session without a reader: its symbols and throttle
//! come in the URL, and it is an HTTP response whose body ([`SseBody`])
//! pulls from the connection's [`Outbox`] (bounded, with the same
//! conflate/disconnect policy and queue limits as any WebSocket client; its
//! ticks are pre-encoded once per tick as SSE events by the publisher, only
//! for topics that have SSE subscribers). Hyper writes what the body
//! yields; when the client goes away hyper drops the body, and the drop
//! unsubscribes and unregisters the stream.
//!
//! Resume: an EventSource that reconnects sends `Last-Event-ID`, the id of
//! the last event it got (`<epoch>-<counter>`, see
//! [`tickwire_protocol::sse`]); [`Hub::subscribe_sse`](crate::hub::Hub::subscribe_sse)
//! replays what the stream missed, or sends a `reset` and snapshots.
//!
//! Clocks: a comment line (`: heartbeat`) after each heartbeat interval of
//! silence keeps proxies and the client's own timeouts from cutting a
//! quiet stream. There is no idle timeout: the client cannot send anything;
//! a vanished client is seen when a write fails.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::Frame;
use tickwire_protocol::sse::{EventId, Reset, EVENT_ERROR, EVENT_RESET, RETRY_MS};
use tickwire_protocol::{ErrorCode, Reply, RequestError};

use crate::auth::Grant;
use crate::clock;
use crate::close::DisconnectReason;
use crate::feed::SymbolId;
use crate::hub::SseResume;
use crate::outbox::{FrameKind, FrameQueue, Next, Outbox, Policy};
use crate::state::AppState;
use crate::tick::Format;

/// What the request asked for.
#[derive(Debug, Clone)]
pub struct SseParams {
    pub symbols: Vec<String>,
    pub throttle_ms: u32,
    pub policy: Policy,
    /// The `Last-Event-ID` header (or `?last_event_id=`).
    pub last_event_id: Option<String>,
    /// What the token entitles to (everything when auth is off): its
    /// `max_symbols` lowers the limit, its `exp` ends the stream.
    pub grant: Arc<Grant>,
}

/// Why a stream was not opened: the HTTP answer's status and message.
pub type Refused = (hyper::StatusCode, String);

/// The body of an SSE response: the stream's events as they are due.
pub struct SseBody {
    outbox: Arc<Outbox>,
    state: Arc<AppState>,
    session_id: u32,
    symbols: Vec<SymbolId>,
    batch: FrameQueue,
    heartbeat: Pin<Box<tokio::time::Sleep>>,
    /// Fires at the token's `exp` (none without auth): an SSE client
    /// cannot send a fresh token, so the stream ends with `token_expired`
    /// and the client reconnects with a new one.
    expiry: Option<Pin<Box<tokio::time::Sleep>>>,
    done: bool,
    /// Held until the stream ends (its place under the connection limit).
    _admitted: Box<dyn Send + Sync>,
}

/// Opens a stream: registers it, subscribes its symbols (with resume), and
/// returns the body that streams them.
pub fn open(
    state: &Arc<AppState>,
    params: SseParams,
    admitted: Box<dyn Send + Sync>,
) -> Result<SseBody, Refused> {
    let hub = &state.hub;
    let universe = hub.universe();
    let resolved = universe.resolve(&params.symbols);
    if !resolved.unknown.is_empty() {
        return Err((
            hyper::StatusCode::BAD_REQUEST,
            format!(
                "unknown symbols: {}; /api/symbols lists them all",
                resolved.unknown.join(",")
            ),
        ));
    }
    if resolved.known.is_empty() {
        return Err((
            hyper::StatusCode::BAD_REQUEST,
            "/sse needs ?symbols=A,B with at least one known symbol (see /api/symbols)".into(),
        ));
    }
    let max = params
        .grant
        .max_symbols_within(state.session.limits.max_symbols);
    let mut symbols = resolved.known;
    symbols.sort_unstable();
    symbols.dedup();
    if symbols.len() > max {
        return Err((
            hyper::StatusCode::BAD_REQUEST,
            format!(
                "{} symbols; a stream may follow at most {max}",
                symbols.len()
            ),
        ));
    }
    let metrics = hub.metrics().clone();
    let outbox = Arc::new(
        Outbox::new(state.session.queue, params.policy, metrics.clone()).with_format(Format::Sse),
    );
    let Some(session_id) = state.sessions.register(outbox.clone()) else {
        return Err((
            hyper::StatusCode::SERVICE_UNAVAILABLE,
            "shutting down".into(),
        ));
    };
    metrics.connections.fetch_add(1, Ordering::Relaxed);
    metrics.sse_streams.fetch_add(1, Ordering::Relaxed);

    let mut hello = format!(
        "retry: {RETRY_MS}\n: tickwire {} epoch {}\n\n",
        tickwire_protocol::VERSION,
        hub.epoch()
    );
    if params.throttle_ms > 0 {
        hello.insert_str(
            hello.len() - 1,
            &format!(": throttle_ms {}\n", params.throttle_ms),
        );
    }
    outbox.push_reply(Bytes::from(hello), FrameKind::Text);
    let resume = match params.last_event_id.as_deref().filter(|s| !s.is_empty()) {
        None => SseResume::Fresh,
        Some(id) => match EventId::parse(id) {
            Some(id) if *id.epoch == *hub.epoch() => SseResume::After(id.counter),
            _ => SseResume::Lost,
        },
    };
    let epoch = hub.epoch().to_string();
    hub.subscribe_sse(
        &outbox,
        &symbols,
        resume,
        params.throttle_ms,
        |unrecovered| {
            let reset = Reset {
                symbols: unrecovered
                    .iter()
                    .map(|&s| universe.get(s).symbol.clone())
                    .collect(),
            };
            let at = match resume {
                SseResume::After(n) => n,
                _ => 0,
            };
            let data = serde_json_data(&reset);
            Bytes::from(format!(
                "id: {}\nevent: {EVENT_RESET}\ndata: {data}\n\n",
                EventId {
                    epoch: epoch.clone(),
                    counter: at
                }
            ))
        },
    );
    Ok(SseBody {
        outbox,
        state: state.clone(),
        session_id,
        symbols,
        batch: FrameQueue::default(),
        heartbeat: Box::pin(tokio::time::sleep(state.session.clocks.heartbeat)),
        expiry: params
            .grant
            .expires_in()
            .map(|d| Box::pin(tokio::time::sleep(d))),
        done: false,
        _admitted: admitted,
    })
}

fn serde_json_data(reset: &Reset) -> String {
    String::from_utf8(simd_json::to_vec(reset).expect("serializes")).expect("JSON is UTF-8")
}

impl SseBody {
    /// Accounts one event as sent (handed to hyper, which writes it next).
    fn sent(&self, bytes: &Bytes, kind: FrameKind) {
        let mut shard = self.outbox.metrics().shard();
        shard.bytes_sent += bytes.len() as u64;
        kind.account_sent(&mut shard, clock::wall_ns());
    }

    /// The token expired: the `error` event (as the WebSocket session's
    /// `token_expired` reply), then the end of the stream.
    fn expired(&mut self) {
        let e = RequestError::new(
            None,
            ErrorCode::TokenExpired,
            "your token expired; reconnect with a fresh one",
        );
        self.state.hub.metrics().count_error(e.code);
        let data = String::from_utf8(Reply::from(e).to_json()).expect("JSON is UTF-8");
        self.outbox.push_reply(
            Bytes::from(format!("event: {EVENT_ERROR}\ndata: {data}\n\n")),
            FrameKind::Text,
        );
        self.outbox.close(DisconnectReason::TokenExpired);
    }

    fn reset_heartbeat(&mut self) {
        let at = tokio::time::Instant::now() + self.state.session.clocks.heartbeat;
        self.heartbeat.as_mut().reset(at);
    }
}

impl hyper::body::Body for SseBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        loop {
            if let Some((bytes, kind)) = this.batch.pop_front() {
                this.sent(&bytes, kind);
                this.reset_heartbeat();
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match this.outbox.poll_next(cx, &mut this.batch) {
                Poll::Ready(Next::Frames) => continue,
                Poll::Ready(Next::Close(mut c)) => {
                    // The end of the stream; a comment says why (an
                    // EventSource reconnects by itself, and resumes).
                    // The frames owed before the close (the error event
                    // that explains it) go first.
                    this.done = true;
                    this.batch.append(&mut c.flush);
                    if c.reason != DisconnectReason::Client {
                        this.batch.push(
                            Bytes::from(format!(": closing: {}\n\n", c.reason.label())),
                            FrameKind::Control,
                        );
                    }
                    continue;
                }
                Poll::Pending => {}
            }
            if let Some(expiry) = this.expiry.as_mut() {
                if expiry.as_mut().poll(cx).is_ready() {
                    this.expiry = None;
                    this.expired();
                    continue;
                }
            }
            if this.heartbeat.as_mut().poll(cx).is_ready() {
                this.batch.push(
                    Bytes::from(format!(": heartbeat {}\n\n", clock::wall_us())),
                    FrameKind::Control,
                );
                this.reset_heartbeat();
                continue;
            }
            return Poll::Pending;
        }
    }
}

impl Drop for SseBody {
    fn drop(&mut self) {
        // A stream that ends without a close decision: the client left.
        self.outbox
            .close_with_frame(Bytes::new(), DisconnectReason::Client);
        self.state.hub.unsubscribe(&self.outbox, &self.symbols);
        self.state.sessions.remove(self.session_id);
        let metrics = self.state.hub.metrics();
        metrics.connections.fetch_sub(1, Ordering::Relaxed);
        metrics.sse_streams.fetch_sub(1, Ordering::Relaxed);
    }
}
