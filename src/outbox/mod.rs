//! A connection's bounded outbound queue, and what happens when it is full.
//!
//! The publisher pushes its share of each batch of ticks in with one lock
//! ([`Outbox::push_batch`]): consecutive frames of the batch come as one run,
//! a single shared slice, admitted whole when it fits. The connection's writer task takes everything
//! queued in one go ([`Outbox::next`]) and writes it with one vectored
//! syscall. The lock is per connection and held for a push or a swap, never
//! across I/O.
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
//! A queued run references its batch's chunk, which stays allocated until the
//! run is written; the queue ([`FrameQueue`], in [`queue`]) holds one
//! reference per chunk, not per run. So that a lagging connection cannot pin
//! many chunks, the chunks its queue references may add up to
//! [`PIN_BUDGET_BYTES`]; runs of further chunks are copied instead. A
//! connection pins at most that beyond its own queue bytes, plus what its
//! writer is busy writing.
//!
//! Frames owed to the client (replies, snapshots, pongs) are never dropped or
//! conflated; a client that lets more than twice `max_bytes` pile up without
//! reading is a slow consumer under either policy.
//!
//! The queue and the close state share one lock on purpose: "closing" and
//! "nothing more is queued" must change together, or a tick could slip in
//! behind a close frame. The same lock orders an unsubscribe against a
//! batch staged before it ([`Outbox::unsubscribed`]).

mod queue;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

use crate::close::DisconnectReason;
use crate::feed::SymbolId;
use crate::metrics::Metrics;
use crate::sync::{Mutex, MutexGuard};
use crate::tick::{EncodedBatch, Format, FrameRun, TickFrame};
use crate::wire::close_frame;
pub use queue::{Delivered, FrameKind, FrameQueue};

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

/// Bytes of batch chunks one connection's queue may keep alive; runs of
/// chunks past it are copied (see the module doc), one allocation per run
/// (counted in `tickwire_copied_runs_total`). Sixteen chunks at their
/// largest ([`CHUNK_BYTES`](crate::tick::CHUNK_BYTES)): at 1,000 clients
/// and 3M msgs/s one feed pass is three or four full chunks of which a
/// connection wants a tenth, and a writer a pass or two behind is not a
/// lagging one; with four, it copied most of its runs and the allocator
/// took 4–13% of the server's CPU (bench/README.md).
pub const PIN_BUDGET_BYTES: usize = 16 * crate::tick::CHUNK_BYTES;

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
    pub flush: FrameQueue,
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

/// A tick that did not fit, kept (copied) until the writer drains.
#[derive(Debug, Clone)]
struct Overflowed {
    bytes: Bytes,
    ts_ns: u64,
}

#[derive(Default)]
struct State {
    /// Its pins (the chunks its runs lie in) stay within `PIN_BUDGET_BYTES`.
    queue: FrameQueue,
    /// Frames in `queue` (a run is several).
    queued_msgs: usize,
    /// Bytes of everything in `queue`.
    queued_bytes: usize,
    /// Newest tick of each symbol that did not fit (conflate policy only).
    overflow: HashMap<SymbolId, Overflowed>,
    /// Symbols of `overflow` in the order they first overflowed.
    overflow_order: Vec<SymbolId>,
    /// Writer waiting for frames.
    waker: Option<Waker>,
    /// Writer busy writing, waiting only to hear about a close.
    close_waker: Option<Waker>,
    closing: Option<Closing>,
}

impl State {
    /// `queue` was emptied (taken by the writer, or dropped at a close): its
    /// counts start over.
    fn forget_queued(&mut self) {
        self.queued_msgs = 0;
        self.queued_bytes = 0;
    }
}

/// The writer's two wakers (waiting for frames; busy, waiting for a close).
pub type Wakers = (Option<Waker>, Option<Waker>);

/// A batch staged for this outbox was overtaken by an unsubscribe: nothing
/// was queued; deliver tick by tick under the topic locks instead.
#[derive(Debug, PartialEq, Eq)]
pub struct Fenced;

/// One connection's bounded queue of frames owed to the client, and its
/// close state, under one lock.
pub struct Outbox {
    state: Mutex<State>,
    limits: Limits,
    policy: Policy,
    format: Format,
    metrics: Arc<Metrics>,
    /// This connection's slot in the session registry: the publisher's
    /// index for staging its share of a batch.
    slot: AtomicU32,
    /// Bumped (under the lock) by every unsubscribe; see
    /// [`Outbox::push_batch`].
    unsubscribes: AtomicU64,
}

impl Outbox {
    pub fn new(limits: Limits, policy: Policy, metrics: Arc<Metrics>) -> Outbox {
        Outbox {
            state: Mutex::new(State::default()),
            limits,
            policy,
            format: Format::Json,
            metrics,
            slot: AtomicU32::new(u32::MAX),
            unsubscribes: AtomicU64::new(0),
        }
    }

    /// The same outbox for a connection whose ticks are encoded in `format`.
    pub fn with_format(mut self, format: Format) -> Outbox {
        self.format = format;
        self
    }

    pub fn format(&self) -> Format {
        self.format
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Whether a tick of `len` bytes of `sym` goes to the queue; if not, the
    /// policy has dealt with it (overflow, counted, or the close).
    fn admit(
        &self,
        s: &mut State,
        sym: SymbolId,
        len: usize,
        ts_ns: u64,
        bytes: impl FnOnce() -> Bytes,
    ) -> Admit {
        let full =
            s.queued_msgs >= self.limits.max_msgs || s.queued_bytes + len > self.limits.max_bytes;
        // Once a symbol has overflowed, its newer ticks must follow it there,
        // or they would overtake it.
        if !full && (s.overflow.is_empty() || !s.overflow.contains_key(&sym)) {
            s.queued_msgs += 1;
            s.queued_bytes += len;
            return Admit::Queue;
        }
        match self.policy {
            Policy::Conflate => {
                let kept = Overflowed {
                    bytes: bytes(),
                    ts_ns,
                };
                if s.overflow.insert(sym, kept).is_some() {
                    self.metrics.add_conflated(1);
                } else {
                    s.overflow_order.push(sym);
                }
                Admit::Overflowed
            }
            Policy::Disconnect => {
                Admit::Closed(self.close_locked(s, DisconnectReason::SlowConsumer))
            }
        }
    }

    /// Queues one tick frame on its own (paths that have no batch to share).
    pub fn push_frame(&self, tick: &TickFrame) -> Wakers {
        let mut s = self.lock();
        if s.closing.is_some() {
            return (None, None);
        }
        match self.admit(&mut s, tick.sym, tick.bytes.len(), tick.ts_ns, || {
            tick.bytes.clone()
        }) {
            Admit::Queue => {
                s.queue.push(
                    tick.bytes.clone(),
                    FrameKind::Ticks {
                        count: 1,
                        ts_ns: tick.ts_ns,
                    },
                );
                (s.waker.take(), None)
            }
            Admit::Overflowed => (None, None),
            Admit::Closed(w) => w,
        }
    }

    /// Queues a tick that a throttled view held until its interval ended
    /// (under the same policy as any tick).
    pub fn push_delayed(&self, sym: SymbolId, bytes: Bytes, ts_ns: u64) -> Wakers {
        let mut s = self.lock();
        if s.closing.is_some() {
            return (None, None);
        }
        match self.admit(&mut s, sym, bytes.len(), ts_ns, || bytes.clone()) {
            Admit::Queue => {
                s.queue.push(bytes, FrameKind::Replay);
                (s.waker.take(), None)
            }
            Admit::Overflowed => (None, None),
            Admit::Closed(w) => w,
        }
    }

    /// The registry slot (set once, when the session registers).
    pub fn slot(&self) -> u32 {
        self.slot.load(Ordering::Relaxed)
    }

    pub(crate) fn set_slot(&self, slot: u32) {
        self.slot.store(slot, Ordering::Relaxed);
    }

    /// How many unsubscribes this connection has made; a publisher notes it
    /// when it first stages a batch for the connection.
    pub fn unsubscribes(&self) -> u64 {
        self.unsubscribes.load(Ordering::Acquire)
    }

    /// Queues the frames `runs` of `batch` (in order) for this connection:
    /// the fan-out path, one lock per connection per batch. Returns the
    /// writer's wakers instead of waking them, so that the publisher wakes
    /// every writer once the whole batch is queued.
    ///
    /// When the whole share fits under the queue bounds and nothing of this
    /// connection is in overflow (the common case), each run is queued as
    /// it is, one slice, with no per-frame work; otherwise frame by frame
    /// under the policy, a run splitting where a frame overflows.
    ///
    /// `staged_at`: the [`Outbox::unsubscribes`] count read when the batch
    /// was staged (under the topic locks). If an unsubscribe happened since,
    /// one of these ticks may belong to a symbol whose unsubscribe ack is
    /// already queued, and delivering it would put a tick after the ack: the
    /// batch is refused ([`Fenced`]) and the publisher delivers tick by tick
    /// under the topic locks. `None`: the caller holds the topic lock.
    pub fn push_batch(
        &self,
        batch: &EncodedBatch,
        runs: &[FrameRun],
        staged_at: Option<u64>,
    ) -> Result<Wakers, Fenced> {
        let mut s = self.lock();
        if staged_at.is_some_and(|n| n != self.unsubscribes.load(Ordering::Relaxed)) {
            return Err(Fenced);
        }
        if s.closing.is_some() {
            return Ok((None, None));
        }
        let msgs: usize = runs.iter().map(|r| r.count() as usize).sum();
        let bytes: usize = runs.iter().map(|&r| batch.run_len(r)).sum();
        if s.overflow.is_empty()
            && s.queued_msgs + msgs <= self.limits.max_msgs
            && s.queued_bytes + bytes <= self.limits.max_bytes
        {
            // Every frame would be admitted: admit them all at once.
            s.queued_msgs += msgs;
            s.queued_bytes += bytes;
            let copied = runs
                .iter()
                .filter(|&&r| queue_run(&mut s, batch, r))
                .count();
            let wakers = (s.waker.take(), None);
            drop(s);
            self.count_copied(copied);
            return Ok(wakers);
        }
        let mut copied = 0;
        for &run in runs {
            let mut from = run.start;
            for i in run.start..=run.end {
                // Frames `from..i` are admitted; `i` ends the run, or is
                // the next frame to admit.
                let overflowed = i < run.end && {
                    let f = batch.frame(i);
                    match self.admit(&mut s, f.sym, f.len(), f.ts_ns, || {
                        Bytes::copy_from_slice(batch.bytes(i))
                    }) {
                        Admit::Queue => false,
                        Admit::Overflowed => true,
                        Admit::Closed(w) => return Ok(w),
                    }
                };
                if (i == run.end || overflowed) && from < i {
                    // The frames before an overflowed one go as one run;
                    // those after it start another.
                    let part = FrameRun {
                        start: from,
                        end: i,
                    };
                    copied += usize::from(queue_run(&mut s, batch, part));
                }
                if overflowed {
                    from = i + 1;
                }
            }
        }
        let wakers = (s.waker.take(), None);
        drop(s);
        self.count_copied(copied);
        Ok(wakers)
    }

    fn count_copied(&self, runs: usize) {
        if runs > 0 {
            self.metrics.add_copied_runs(runs as u64);
        }
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
        s.queued_msgs += 1;
        s.queued_bytes += bytes.len();
        s.queue.push(bytes, kind);
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

    /// The fence of an unsubscribe, called once the connection has left the
    /// topics of `syms`: drops their undelivered overflow, and counts the
    /// unsubscribe so that a batch staged before it is not delivered after
    /// its ack (see [`Outbox::push_batch`]). Queue the ack after this.
    pub fn unsubscribed(&self, syms: &[SymbolId]) {
        let mut s = self.lock();
        self.unsubscribes.fetch_add(1, Ordering::Release);
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
            flush: FrameQueue::default(),
            frame,
            reason,
        });
        s.queue.clear();
        s.forget_queued();
        let wakers = (s.waker.take(), s.close_waker.take());
        drop(s);
        wake(wakers);
    }

    fn close_locked(&self, s: &mut State, reason: DisconnectReason) -> Wakers {
        if s.closing.is_some() {
            return (None, None);
        }
        self.metrics.count_disconnect(reason);
        let flush = if reason.flushes_queue() {
            std::mem::take(&mut s.queue)
        } else {
            FrameQueue::default()
        };
        s.closing = Some(Closing {
            flush,
            frame: reason.close().map(close_frame).unwrap_or_default(),
            reason,
        });
        s.queue = FrameQueue::default();
        s.forget_queued();
        s.overflow = HashMap::new();
        s.overflow_order = Vec::new();
        (s.waker.take(), s.close_waker.take())
    }

    pub fn is_closing(&self) -> bool {
        self.lock().closing.is_some()
    }

    /// Moves everything queued into `batch` (queue first, then overflow), or
    /// reports a close; registers the writer to be woken otherwise.
    pub fn poll_next(&self, cx: &mut Context<'_>, batch: &mut FrameQueue) -> Poll<Next> {
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
        s.forget_queued();
        if !s.overflow_order.is_empty() {
            let State {
                overflow,
                overflow_order,
                ..
            } = &mut *s;
            for sym in overflow_order.drain(..) {
                if let Some(t) = overflow.remove(&sym) {
                    batch.push(
                        t.bytes,
                        FrameKind::Ticks {
                            count: 1,
                            ts_ns: t.ts_ns,
                        },
                    );
                }
            }
        }
        // A burst can grow the queue; do not keep its peak forever.
        s.queue.shrink(1024, 64);
        Poll::Ready(Next::Frames)
    }

    /// Waits for [`Outbox::poll_next`].
    pub async fn next(&self, batch: &mut FrameQueue) -> Next {
        std::future::poll_fn(|cx| self.poll_next(cx, batch)).await
    }

    /// Ready when the connection must close. For a writer busy writing,
    /// which must not be woken by every new frame.
    pub fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<Closing> {
        let mut s = self.lock();
        match &mut s.closing {
            Some(c) => Poll::Ready(c.take()),
            None => {
                register(&mut s.close_waker, cx);
                Poll::Pending
            }
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Frames and bytes waiting (for tests and diagnostics).
    pub fn backlog(&self) -> (usize, usize) {
        let s = self.lock();
        (s.queued_msgs + s.overflow.len(), s.queued_bytes)
    }
}

/// What the policy made of one tick.
enum Admit {
    Queue,
    Overflowed,
    Closed(Wakers),
}

/// Queues `run` of `batch` as one item (its frames already admitted): a
/// slice of its chunk, or a copy once the queue pins `PIN_BUDGET_BYTES` of
/// chunks (a lagging connection). Returns whether it was copied.
fn queue_run(s: &mut State, batch: &EncodedBatch, run: FrameRun) -> bool {
    let (chunk, start, end, ts_ns) = batch.run_in_chunk(run);
    s.queue.push_slice(
        chunk,
        start,
        end,
        FrameKind::Ticks {
            count: run.count(),
            ts_ns,
        },
        PIN_BUDGET_BYTES,
    )
}

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
            limits.max_msgs.saturating_sub(s.queued_msgs),
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
            s.queued_msgs += 1;
            s.queued_bytes += f.len();
            s.queue.push(f.clone(), FrameKind::Replay);
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

/// Wakes the writer's wakers.
pub fn wake((a, b): Wakers) {
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
    use crate::feed::{Tick, Universe};
    use tickwire_protocol::tick::{scan, Scanned};

    /// A batch of ticks (symbol, seq) of a synthetic universe.
    fn batch(ticks: &[(SymbolId, u64)]) -> (EncodedBatch, Vec<u32>) {
        let u = Universe::synthetic(4, 1.0);
        let mut b = EncodedBatch::default();
        for &(sym, seq) in ticks {
            let t = Tick {
                sym,
                seq,
                ts_us: 1,
                px: 100,
                qty: 1,
                bid: 99,
                ask: 101,
            };
            b.encode(&t, u.get(sym));
        }
        b.seal();
        (b, (0..ticks.len() as u32).collect())
    }

    /// The frames `idxs` of `b` as the publisher stages them.
    fn runs(b: &EncodedBatch, idxs: &[u32]) -> Vec<FrameRun> {
        let mut runs = Vec::new();
        for &i in idxs {
            FrameRun::push(&mut runs, i, b.joins(i));
        }
        runs
    }

    fn outbox(policy: Policy, max_msgs: usize, max_bytes: usize) -> Outbox {
        Outbox::new(
            Limits {
                max_msgs,
                max_bytes,
            },
            policy,
            Arc::new(Metrics::default()),
        )
    }

    fn push(o: &Outbox, ticks: &[(SymbolId, u64)]) {
        let (b, idxs) = batch(ticks);
        let _ = o.push_batch(&b, &runs(&b, &idxs), None).unwrap();
    }

    /// The seqs the writer would get, and how many queue items carried them.
    fn drain(o: &Outbox) -> (Vec<u64>, usize) {
        let mut batch = FrameQueue::default();
        let mut cx = Context::from_waker(Waker::noop());
        match o.poll_next(&mut cx, &mut batch) {
            Poll::Ready(Next::Frames) => {
                let mut seqs = Vec::new();
                for (bytes, _) in batch.iter() {
                    let mut rest = bytes;
                    while !rest.is_empty() {
                        let len = rest[1] as usize;
                        if let Scanned::Tick { seq, .. } = scan(&rest[2..2 + len]) {
                            seqs.push(seq);
                        }
                        rest = &rest[2 + len..];
                    }
                }
                (seqs, batch.len())
            }
            Poll::Ready(Next::Close(c)) => (vec![u64::from(c.frame[3])], 0),
            Poll::Pending => (vec![], 0),
        }
    }

    #[test]
    fn a_batch_is_one_run_per_stretch_of_consecutive_frames() {
        let o = outbox(Policy::Conflate, 100, 1 << 20);
        let (b, _) = batch(&[(0, 1), (1, 1), (2, 1), (0, 2), (1, 2)]);
        // Frames 0, 1, 2 and 4 of the batch: two runs.
        let _ = o.push_batch(&b, &runs(&b, &[0, 1, 2, 4]), None).unwrap();
        assert_eq!(o.backlog().0, 4);
        assert_eq!(drain(&o), (vec![1, 1, 1, 2], 2));
    }

    #[test]
    fn conflation_keeps_the_newest_tick_per_symbol_in_order() {
        let o = outbox(Policy::Conflate, 4, 1 << 20);
        push(&o, &[(0, 1), (0, 2), (0, 3), (0, 4)]);
        // Full: sym 0 seq 5..7 conflate into one slot, sym 1 gets its own.
        push(&o, &[(0, 5), (1, 100), (0, 7)]);
        assert_eq!(drain(&o).0, vec![1, 2, 3, 4, 7, 100]);
        assert_eq!(o.metrics.snapshot_totals().conflated, 1);
        // Room again: the stream goes on in the queue.
        push(&o, &[(0, 8)]);
        assert_eq!(drain(&o).0, vec![8]);
    }

    #[test]
    fn an_overflowed_symbol_stays_in_overflow_until_drained() {
        let o = outbox(Policy::Conflate, 4, 1 << 20);
        push(&o, &[(0, 1), (0, 2), (0, 3), (0, 4), (0, 5)]);
        o.unsubscribed(&[1]);
        assert_eq!(o.backlog().0, 5);
        o.unsubscribed(&[0]);
        assert_eq!(drain(&o).0, vec![1, 2, 3, 4]);
    }

    #[test]
    fn disconnect_policy_closes_with_1008() {
        let o = outbox(Policy::Disconnect, 4, 1 << 20);
        push(&o, &[(0, 1), (0, 2), (0, 3), (0, 4), (0, 5)]);
        assert!(o.is_closing());
        assert_eq!(drain(&o).0, vec![0xF0]); // 1008 = 0x03F0
        assert_eq!(o.backlog(), (0, 0));
        o.close(DisconnectReason::Shutdown);
        let totals = o.metrics.snapshot_totals();
        assert_eq!(totals.disconnects_for(DisconnectReason::SlowConsumer), 1);
        assert_eq!(totals.disconnects_for(DisconnectReason::Shutdown), 0);
    }

    #[test]
    fn byte_bound_applies_too() {
        let (b, idxs) = batch(&[(0, 1), (1, 1), (2, 1)]);
        let each = b.frame(0).len();
        let o = outbox(Policy::Conflate, 1000, 2 * each + each / 2);
        let _ = o.push_batch(&b, &runs(&b, &idxs), None).unwrap();
        // Two fit in the byte bound, the third overflows.
        assert_eq!(o.backlog(), (3, 2 * each));
    }

    #[test]
    fn a_batch_staged_before_an_unsubscribe_is_refused() {
        let o = outbox(Policy::Conflate, 100, 1 << 20);
        let (b, idxs) = batch(&[(0, 1)]);
        let staged = o.unsubscribes();
        o.unsubscribed(&[0]);
        assert!(matches!(
            o.push_batch(&b, &runs(&b, &idxs), Some(staged)),
            Err(Fenced)
        ));
        assert_eq!(o.backlog().0, 0);
        assert!(o
            .push_batch(&b, &runs(&b, &idxs), Some(o.unsubscribes()))
            .is_ok());
    }

    #[test]
    fn a_lagging_connection_copies_instead_of_pinning_chunks() {
        let o = outbox(Policy::Conflate, 1 << 20, 1 << 30);
        // Batches of 100 frames, each its own chunk of ~10 KB: the budget
        // holds a few dozen of them, whichever runs of them are queued.
        const BATCHES: usize = 40;
        let batches: Vec<EncodedBatch> = (0..BATCHES).map(|_| batch(&[(0, 1); 100]).0).collect();
        let chunk_of = |b: &EncodedBatch| {
            let chunk = b.run_in_chunk(FrameRun::one(0)).0;
            chunk.as_ptr() as usize..chunk.as_ptr() as usize + chunk.len()
        };
        let chunk_len = chunk_of(&batches[0]).len();
        let shared_chunks = PIN_BUDGET_BYTES / chunk_len;
        assert!(
            (2..BATCHES).contains(&shared_chunks),
            "{chunk_len} bytes a chunk"
        );
        for b in &batches {
            // Two runs of the same chunk pin it once.
            let _ = o
                .push_batch(b, &[FrameRun::one(0), FrameRun::one(2)], None)
                .unwrap();
        }
        let mut items = FrameQueue::default();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(o.poll_next(&mut cx, &mut items).is_ready());
        assert_eq!(items.pinned_bytes(), shared_chunks * chunk_len);
        let pinning: Vec<bool> = items
            .iter()
            .zip(batches.iter().flat_map(|b| [b, b]))
            .map(|((bytes, _), b)| chunk_of(b).contains(&(bytes.as_ptr() as usize)))
            .collect();
        let mut expected = vec![true; 2 * shared_chunks];
        expected.resize(2 * BATCHES, false);
        assert_eq!(pinning, expected);
        let copied = 2 * (BATCHES - shared_chunks) as u64;
        assert_eq!(o.metrics.snapshot_totals().copied_runs, copied);
        // Taken by the writer, the queue pins nothing: sharing starts over.
        let last = &batches[BATCHES - 1];
        let _ = o.push_batch(last, &[FrameRun::one(0)], None).unwrap();
        items.clear();
        assert!(o.poll_next(&mut cx, &mut items).is_ready());
        let (bytes, _) = items.iter().next().expect("one item");
        assert!(chunk_of(last).contains(&(bytes.as_ptr() as usize)));
        assert_eq!(items.pinned_bytes(), chunk_len);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// Admitting whole runs (the fast path) or splitting them at the
        /// frames that overflow gives the writer exactly what admitting the
        /// same frames one by one would: the same ticks in the same order,
        /// the same backlog, the same close.
        #[test]
        fn runs_are_admitted_as_their_frames_would_be(
            disconnect: bool,
            max_msgs in 1usize..12,
            max_frames_of_bytes in 1usize..12,
            ops in proptest::collection::vec(
                proptest::option::of(proptest::collection::vec((0u32..4, proptest::bool::ANY), 1..10)),
                1..8,
            ),
        ) {
            let policy = if disconnect { Policy::Disconnect } else { Policy::Conflate };
            let each = batch(&[(0, 1)]).0.frame(0).len();
            let max_bytes = max_frames_of_bytes * each;
            let (by_run, by_frame) = (outbox(policy, max_msgs, max_bytes), outbox(policy, max_msgs, max_bytes));
            let mut seq = [0u64; 4];
            for op in ops {
                let Some(ticks) = op else {
                    proptest::prop_assert_eq!(drain(&by_run).0, drain(&by_frame).0);
                    continue;
                };
                let marks: Vec<bool> = ticks.iter().map(|&(_, mine)| mine).collect();
                let ticks: Vec<(SymbolId, u64)> = ticks
                    .iter()
                    .map(|&(sym, _)| {
                        seq[sym as usize] += 1;
                        (sym as SymbolId, seq[sym as usize])
                    })
                    .collect();
                let (b, all) = batch(&ticks);
                // The subscriber's share: the frames marked in `ops`.
                let mine: Vec<u32> = all.into_iter().zip(marks).filter(|&(_, m)| m).map(|(i, _)| i).collect();
                let _ = by_run.push_batch(&b, &runs(&b, &mine), None).unwrap();
                for &i in &mine {
                    let _ = by_frame.push_batch(&b, &[FrameRun::one(i)], None).unwrap();
                }
                proptest::prop_assert_eq!(by_run.backlog(), by_frame.backlog());
            }
            proptest::prop_assert_eq!(drain(&by_run).0, drain(&by_frame).0);
        }
    }
}
