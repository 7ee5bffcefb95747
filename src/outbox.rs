//! A connection's bounded outbound queue, and what happens when it is full.
//!
//! The feed task pushes shared tick frames in ([`Outbox::push_tick`]); the
//! connection's writer task takes everything queued in one go
//! ([`Outbox::next`]) and writes it with one vectored syscall. The lock is per
//! connection and held for a push or a swap, never across I/O.
//!
//! Limits: at most `max_msgs` frames and `max_bytes` bytes of ticks wait in the
//! queue. At the limit the connection's [`Policy`] decides:
//! - `Conflate`: the tick goes to a one-slot-per-symbol overflow map, replacing
//!   an older undelivered tick of the same symbol (counted as conflated). The
//!   writer sends the overflow right after the queue, so each symbol stays in
//!   seq order and the client sees a seq jump where ticks were skipped. Worst
//!   case memory: the queue bound plus one frame per subscribed symbol.
//! - `Disconnect`: the queue is dropped and the connection closes with 1008
//!   "slow consumer".
//!
//! Frames owed to the client (replies, snapshots, pongs) are never dropped or
//! conflated; a client that lets more than twice `max_bytes` pile up without
//! reading is a slow consumer under either policy.
//!
//! The queue and the close state share one lock on purpose: "closing" and
//! "nothing more is queued" must change together, or a tick could slip in
//! behind a close frame.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

use crate::close::DisconnectReason;
use crate::feed::SymbolId;
use crate::metrics::Metrics;
use crate::sync::{Mutex, MutexGuard};
use crate::tick::TickFrame;
use crate::wire::close_frame;

/// What the server does when a client cannot keep up with its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Policy {
    /// Keep only the newest undelivered tick of each symbol; the seq jump
    /// tells the client what it skipped.
    #[default]
    Conflate,
    /// Close the connection with 1008 "slow consumer".
    Disconnect,
}

/// What a queued frame is, for accounting once it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A live tick; `ts_ns` is its generation time.
    Tick { ts_ns: u64 },
    /// A tick replayed from history on resume (counted as a tick, but it is
    /// old: no latency sample).
    Replay,
    /// Any other text message (replies, snapshots, heartbeats).
    Text,
    /// A control frame (ping, pong).
    Control,
}

/// Frame bytes waiting to be written, shared with other connections.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub bytes: Bytes,
    pub kind: FrameKind,
}

/// Queue bounds of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_msgs: usize,
    pub max_bytes: usize,
}

/// Why a connection is closing, and what to send before it ends.
#[derive(Debug, Clone)]
pub struct Closing {
    /// Queued frames still owed to the client before the close frame (the
    /// replies that explain a protocol close); empty for slow consumers and
    /// shutdown, whose queues are dropped.
    pub flush: VecDeque<Outgoing>,
    /// The close frame; empty when the peer is already gone.
    pub frame: Bytes,
    pub reason: DisconnectReason,
}

impl Closing {
    /// Hands out the close, moving the frames to flush to the caller.
    fn take(&mut self) -> Closing {
        Closing {
            flush: std::mem::take(&mut self.flush),
            frame: self.frame.clone(),
            reason: self.reason,
        }
    }
}

/// What the writer gets from [`Outbox::next`].
#[derive(Debug)]
pub enum Next {
    /// Frames were moved into the writer's batch.
    Frames,
    /// Stop writing data; send this close frame and end.
    Close(Closing),
}

#[derive(Default)]
struct State {
    queue: VecDeque<Outgoing>,
    /// Bytes of everything in `queue`.
    queued_bytes: usize,
    /// Newest tick of each symbol that did not fit (conflate policy only).
    overflow: HashMap<SymbolId, TickFrame>,
    /// Symbols of `overflow` in the order they first overflowed.
    overflow_order: Vec<SymbolId>,
    /// Writer waiting for frames.
    waker: Option<Waker>,
    /// Writer busy writing, waiting only to hear about a close.
    close_waker: Option<Waker>,
    closing: Option<Closing>,
}

/// One connection's bounded queue of frames owed to the client, and its
/// close state, under one lock.
pub struct Outbox {
    state: Mutex<State>,
    limits: Limits,
    policy: Policy,
    metrics: Arc<Metrics>,
}

impl Outbox {
    pub fn new(limits: Limits, policy: Policy, metrics: Arc<Metrics>) -> Outbox {
        Outbox {
            state: Mutex::new(State::default()),
            limits,
            policy,
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Queues a tick for this connection (the fan-out path). Returns the
    /// writer's waker instead of waking it, so that the feed can wake every
    /// writer once its whole batch is queued, rather than have writers start
    /// while it is still fanning out.
    #[must_use = "wake the returned writer once the batch is queued"]
    pub fn push_tick(&self, tick: &TickFrame) -> Option<Waker> {
        let mut s = self.lock();
        if s.closing.is_some() {
            return None;
        }
        let full = s.queue.len() >= self.limits.max_msgs
            || s.queued_bytes + tick.bytes.len() > self.limits.max_bytes;
        // Once a symbol has overflowed, its newer ticks must follow it there,
        // or they would overtake it.
        if full || (!s.overflow.is_empty() && s.overflow.contains_key(&tick.sym)) {
            match self.policy {
                Policy::Conflate => {
                    if s.overflow.insert(tick.sym, tick.clone()).is_some() {
                        self.metrics.add_conflated(1);
                    } else {
                        s.overflow_order.push(tick.sym);
                    }
                    return None;
                }
                Policy::Disconnect => {
                    let wakers = self.close_locked(&mut s, DisconnectReason::SlowConsumer);
                    drop(s);
                    wake(wakers);
                    return None;
                }
            }
        }
        s.queued_bytes += tick.bytes.len();
        s.queue.push_back(Outgoing {
            bytes: tick.bytes.clone(),
            kind: FrameKind::Tick { ts_ns: tick.ts_ns },
        });
        s.waker.take()
    }

    /// Queues a frame owed to the client (a reply, snapshot or pong). These
    /// are never dropped; a client that does not read them is eventually
    /// disconnected.
    pub fn push_reply(&self, bytes: Bytes, kind: FrameKind) {
        let mut s = self.lock();
        let wakers = self.queue_reply(&mut s, bytes, kind);
        drop(s);
        wake(wakers);
    }

    fn queue_reply(&self, s: &mut State, bytes: Bytes, kind: FrameKind) -> Wakers {
        if s.closing.is_some() {
            return (None, None);
        }
        if s.queued_bytes > 2 * self.limits.max_bytes {
            return self.close_locked(s, DisconnectReason::SlowConsumer);
        }
        s.queued_bytes += bytes.len();
        s.queue.push_back(Outgoing { bytes, kind });
        (s.waker.take(), None)
    }

    /// Locks the queue for a subscribe: its ack, then the snapshots and
    /// replays it announces, queued without a tick in between. Hold it only
    /// with the topic locks of the symbols being subscribed (topic before
    /// outbox, the fan-out's order); the writer is woken when it drops.
    pub fn subscribing(&self) -> Subscribing<'_> {
        Subscribing {
            outbox: self,
            state: Some(self.lock()),
            wakers: (None, None),
        }
    }

    /// Drops undelivered overflow of `syms`, so that no tick of an
    /// unsubscribed symbol follows the unsubscribe ack.
    pub fn forget_overflow(&self, syms: &[SymbolId]) {
        let mut s = self.lock();
        if s.overflow.is_empty() {
            return;
        }
        for sym in syms {
            s.overflow.remove(sym);
        }
        let State {
            overflow,
            overflow_order,
            ..
        } = &mut *s;
        overflow_order.retain(|sym| overflow.contains_key(sym));
    }

    /// Closes the connection with `reason`'s close frame. The first close
    /// wins, and is the one counted in the disconnect metrics.
    pub fn close(&self, reason: DisconnectReason) {
        let mut s = self.lock();
        let wakers = self.close_locked(&mut s, reason);
        drop(s);
        wake(wakers);
    }

    /// Closes with a ready-made close frame (the echo of the client's close).
    pub fn close_with_frame(&self, frame: Bytes, reason: DisconnectReason) {
        let mut s = self.lock();
        if s.closing.is_some() {
            return;
        }
        self.metrics.count_disconnect(reason);
        s.closing = Some(Closing {
            flush: VecDeque::new(),
            frame,
            reason,
        });
        s.queue.clear();
        s.queued_bytes = 0;
        let wakers = (s.waker.take(), s.close_waker.take());
        drop(s);
        wake(wakers);
    }

    fn close_locked(
        &self,
        s: &mut State,
        reason: DisconnectReason,
    ) -> (Option<Waker>, Option<Waker>) {
        if s.closing.is_some() {
            return (None, None);
        }
        self.metrics.count_disconnect(reason);
        let flush = if reason.flushes_queue() {
            std::mem::take(&mut s.queue)
        } else {
            VecDeque::new()
        };
        s.closing = Some(Closing {
            flush,
            frame: reason.close().map(close_frame).unwrap_or_default(),
            reason,
        });
        s.queue = VecDeque::new();
        s.queued_bytes = 0;
        s.overflow = HashMap::new();
        s.overflow_order = Vec::new();
        (s.waker.take(), s.close_waker.take())
    }

    pub fn is_closing(&self) -> bool {
        self.lock().closing.is_some()
    }

    /// Moves everything queued into `batch` (queue first, then overflow), or
    /// reports a close; registers the writer to be woken otherwise.
    pub fn poll_next(&self, cx: &mut Context<'_>, batch: &mut VecDeque<Outgoing>) -> Poll<Next> {
        let mut s = self.lock();
        if let Some(closing) = &mut s.closing {
            return Poll::Ready(Next::Close(closing.take()));
        }
        if s.queue.is_empty() && s.overflow_order.is_empty() {
            register(&mut s.waker, cx);
            return Poll::Pending;
        }
        debug_assert!(batch.is_empty());
        // Swap rather than copy: the writer's empty deque keeps its capacity
        // for the next round.
        std::mem::swap(&mut s.queue, batch);
        s.queued_bytes = 0;
        if !s.overflow_order.is_empty() {
            let State {
                overflow,
                overflow_order,
                ..
            } = &mut *s;
            for sym in overflow_order.drain(..) {
                if let Some(t) = overflow.remove(&sym) {
                    batch.push_back(Outgoing {
                        bytes: t.bytes,
                        kind: FrameKind::Tick { ts_ns: t.ts_ns },
                    });
                }
            }
        }
        // A burst can grow the queue; do not keep its peak forever.
        if s.queue.capacity() > 1024 {
            s.queue.shrink_to(64);
        }
        Poll::Ready(Next::Frames)
    }

    /// Waits for [`Outbox::poll_next`].
    pub async fn next(&self, batch: &mut VecDeque<Outgoing>) -> Next {
        std::future::poll_fn(|cx| self.poll_next(cx, batch)).await
    }

    /// Completes when the connection must close. For a writer busy writing,
    /// which must not be woken by every new frame.
    pub async fn closed(&self) -> Closing {
        std::future::poll_fn(|cx| {
            let mut s = self.lock();
            match &mut s.closing {
                Some(c) => Poll::Ready(c.take()),
                None => {
                    register(&mut s.close_waker, cx);
                    Poll::Pending
                }
            }
        })
        .await
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Frames and bytes waiting (for tests and diagnostics).
    pub fn backlog(&self) -> (usize, usize) {
        let s = self.lock();
        (s.queue.len() + s.overflow.len(), s.queued_bytes)
    }
}

/// The writer's two wakers (waiting for frames; busy, waiting for a close).
type Wakers = (Option<Waker>, Option<Waker>);

/// The outbox locked for a subscribe ([`Outbox::subscribing`]).
pub struct Subscribing<'a> {
    outbox: &'a Outbox,
    state: Option<MutexGuard<'a, State>>,
    wakers: Wakers,
}

impl Subscribing<'_> {
    fn state(&mut self) -> &mut State {
        self.state.as_mut().expect("held until drop")
    }

    /// Frames and bytes of ticks that still fit under the queue bounds.
    pub fn room(&mut self) -> (usize, usize) {
        let limits = self.outbox.limits;
        let s = self.state();
        (
            limits.max_msgs.saturating_sub(s.queue.len()),
            limits.max_bytes.saturating_sub(s.queued_bytes),
        )
    }

    /// As [`Outbox::push_reply`].
    pub fn push_reply(&mut self, bytes: Bytes, kind: FrameKind) {
        let outbox = self.outbox;
        let s = self.state.as_mut().expect("held until drop");
        let w = outbox.queue_reply(s, bytes, kind);
        self.wakers = (self.wakers.0.take().or(w.0), self.wakers.1.take().or(w.1));
    }

    /// Queues replayed ticks (the caller checked [`Subscribing::room`]).
    pub fn push_replay<'f>(&mut self, frames: impl Iterator<Item = &'f Bytes>) {
        let s = self.state();
        if s.closing.is_some() {
            return;
        }
        for f in frames {
            s.queued_bytes += f.len();
            s.queue.push_back(Outgoing {
                bytes: f.clone(),
                kind: FrameKind::Replay,
            });
        }
        let w = s.waker.take();
        self.wakers.0 = self.wakers.0.take().or(w);
    }
}

impl Drop for Subscribing<'_> {
    fn drop(&mut self) {
        drop(self.state.take());
        wake((self.wakers.0.take(), self.wakers.1.take()));
    }
}

fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

fn wake((a, b): Wakers) {
    if let Some(w) = a {
        w.wake();
    }
    if let Some(w) = b {
        w.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::text_frame;

    fn tick(sym: SymbolId, seq: u8) -> TickFrame {
        TickFrame {
            sym,
            ts_ns: 1,
            bytes: text_frame(&[seq; 10]),
        }
    }

    fn outbox(policy: Policy) -> Outbox {
        Outbox::new(
            Limits {
                max_msgs: 4,
                max_bytes: 1 << 20,
            },
            policy,
            Arc::new(Metrics::default()),
        )
    }

    fn drain(o: &Outbox) -> Vec<u8> {
        let mut batch = VecDeque::new();
        let mut cx = Context::from_waker(Waker::noop());
        match o.poll_next(&mut cx, &mut batch) {
            Poll::Ready(Next::Frames) => batch.iter().map(|f| f.bytes[2]).collect(),
            Poll::Ready(Next::Close(c)) => vec![0, c.frame[3]],
            Poll::Pending => vec![],
        }
    }

    #[test]
    fn conflation_keeps_the_newest_tick_per_symbol_in_order() {
        let o = outbox(Policy::Conflate);
        for seq in 1..=4 {
            let _ = o.push_tick(&tick(0, seq));
        }
        // Full: sym 0 seq 5..7 conflate into one slot, sym 1 gets its own.
        let _ = o.push_tick(&tick(0, 5));
        let _ = o.push_tick(&tick(1, 100));
        let _ = o.push_tick(&tick(0, 7));
        assert_eq!(drain(&o), vec![1, 2, 3, 4, 7, 100]);
        assert_eq!(o.metrics.snapshot_totals().conflated, 1);
        // Room again: the stream goes on in the queue.
        let _ = o.push_tick(&tick(0, 8));
        assert_eq!(drain(&o), vec![8]);
    }

    #[test]
    fn an_overflowed_symbol_stays_in_overflow_until_drained() {
        let o = outbox(Policy::Conflate);
        for seq in 1..=4 {
            let _ = o.push_tick(&tick(0, seq));
        }
        let _ = o.push_tick(&tick(0, 5));
        o.forget_overflow(&[1]);
        assert_eq!(o.backlog().0, 5);
        o.forget_overflow(&[0]);
        assert_eq!(drain(&o), vec![1, 2, 3, 4]);
    }

    #[test]
    fn disconnect_policy_closes_with_1008() {
        let o = outbox(Policy::Disconnect);
        for seq in 1..=5 {
            let _ = o.push_tick(&tick(0, seq));
        }
        assert!(o.is_closing());
        let close = drain(&o);
        assert_eq!(close, vec![0, 0xF0]); // 1008 = 0x03F0
        assert_eq!(o.backlog(), (0, 0));
        o.close(DisconnectReason::Shutdown);
        let totals = o.metrics.snapshot_totals();
        assert_eq!(totals.disconnects_for(DisconnectReason::SlowConsumer), 1);
        assert_eq!(totals.disconnects_for(DisconnectReason::Shutdown), 0);
    }

    #[test]
    fn byte_bound_applies_too() {
        let o = Outbox::new(
            Limits {
                max_msgs: 1000,
                max_bytes: 30,
            },
            Policy::Conflate,
            Arc::new(Metrics::default()),
        );
        for seq in 1..=3 {
            let _ = o.push_tick(&tick(seq as u32, seq));
        }
        // 12-byte frames: two fit in 30 bytes, the third overflows.
        assert_eq!(o.backlog(), (3, 24));
    }
}
