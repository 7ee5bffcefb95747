//! Throttled views: a subscription that gets at most one tick per symbol per
//! interval, always the newest (docs/PROTOCOL.md, "Throttled views").
//!
//! A throttled subscription is a [`View`]: one pending slot and a flag saying
//! whether its interval is running. It lives in its topic's list of
//! throttled views, apart from the unthrottled subscribers, so the
//! unthrottled fan-out does not even look at it. For each tick the publisher
//! does one of two things per view, under the topic lock:
//! - the interval is not running (the symbol was quiet): the tick goes to
//!   the outbox at once, and the interval starts: the view joins the
//!   deadline queue of its interval;
//! - the interval is running: the tick replaces the pending slot (a shared
//!   slice of the batch's encoded frame, no copy); a tick it replaces is
//!   counted as folded (`tickwire_throttled_ticks_total`).
//!
//! There is no timer per view. Views are grouped by interval, and since
//! every view of a group waits the same time, the group's deadlines are
//! queued in the order they fall due: one FIFO per distinct interval, and a
//! single timer task ([`run_timer`]) that sleeps until the earliest front of
//! all the FIFOs. At a view's deadline the task sends the pending tick (and
//! the view waits another interval) or, if nothing came, marks the view
//! quiet (the next tick goes at once).
//!
//! Ordering: every push of a view's ticks into its outbox (at once, at the
//! deadline, when the throttle changes) happens under the view's own lock,
//! and the ones made by subscribes and unsubscribes also under the topic
//! lock; a view marked dead (unsubscribed, or replaced by a re-subscribe
//! with another throttle) sends nothing more, so no tick follows an
//! `unsubscribed` ack and the symbol's ticks stay in seq order.
//!
//! Memory: a view is its slot (one frame handle) and flags, about 100 bytes,
//! plus one FIFO entry while its interval runs. A pending frame pins the
//! batch chunk it lies in ([`CHUNK_BYTES`](crate::tick::CHUNK_BYTES)); a
//! slot always holds its symbol's newest tick, so at most one chunk per
//! symbol and format is pinned by pending slots, however many views wait.
//! The FIFOs hold at most one entry per view; distinct intervals are at most
//! 60,000 - 10 + 1, and an emptied FIFO is removed.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::feed::SymbolId;
use crate::metrics::Metrics;
use crate::outbox::{wake, Outbox, Wakers};
use crate::sync::{Mutex, MutexGuard};

/// One throttled subscription: an outbox following a symbol at an interval.
pub struct View {
    pub outbox: Arc<Outbox>,
    pub sym: SymbolId,
    pub interval_ms: u32,
    state: Mutex<ViewState>,
}

/// A tick waiting for its view's interval to end.
#[derive(Debug, Clone)]
pub struct Pending {
    pub bytes: Bytes,
    pub ts_ns: u64,
}

#[derive(Default)]
pub struct ViewState {
    /// The newest tick not sent yet.
    pub pending: Option<Pending>,
    /// The interval runs (the view is in its group's deadline queue).
    pub running: bool,
    /// Unsubscribed or replaced: sends nothing more.
    pub dead: bool,
}

impl View {
    pub fn new(outbox: Arc<Outbox>, sym: SymbolId, interval_ms: u32) -> View {
        View {
            outbox,
            sym,
            interval_ms,
            state: Mutex::new(ViewState::default()),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, ViewState> {
        self.state.lock()
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(u64::from(self.interval_ms))
    }
}

/// Sends a view's pending tick now (the throttle changes or the interval
/// ended); call with the view's lock held.
pub fn send_pending(view: &View, state: &mut ViewState) -> Option<Wakers> {
    let p = state.pending.take()?;
    Some(view.outbox.push_delayed(view.sym, p.bytes, p.ts_ns))
}

/// Every interval's deadline queue, and the timer task's wake-up.
#[derive(Default)]
pub struct Throttles {
    wheel: Mutex<Wheel>,
    /// Wakes the timer task: an earlier deadline, or the hub is gone. Its
    /// own `Arc`, so the task can wait on it without keeping the hub alive.
    notify: Arc<Notify>,
    started: std::sync::OnceLock<()>,
}

#[derive(Default)]
struct Wheel {
    /// Per interval (ms), its views in deadline order.
    fifos: HashMap<u32, VecDeque<(Instant, Arc<View>)>>,
    /// The front deadline of every non-empty FIFO.
    fronts: BinaryHeap<Reverse<(Instant, u32)>>,
}

impl Wheel {
    fn push(&mut self, at: Instant, view: Arc<View>) -> bool {
        let interval = view.interval_ms;
        let fifo = self.fifos.entry(interval).or_default();
        let was_empty = fifo.is_empty();
        fifo.push_back((at, view));
        if was_empty {
            let earliest = self.fronts.peek().map(|Reverse((t, _))| *t);
            self.fronts.push(Reverse((at, interval)));
            return earliest.is_none_or(|t| at < t);
        }
        false
    }
}

impl Drop for Throttles {
    fn drop(&mut self) {
        // The timer task sees the hub is gone and ends.
        self.notify.notify_one();
    }
}

impl Throttles {
    /// Starts the timer task on the current tokio runtime (once; outside
    /// a runtime, as in benchmarks, not yet: pending ticks then wait).
    pub fn start(self: &Arc<Self>, metrics: Arc<Metrics>) {
        if self.started.get().is_some() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("throttled view outside a tokio runtime: its interval timer waits");
            return;
        };
        self.started.get_or_init(|| {
            runtime.spawn(run_timer(
                Arc::downgrade(self),
                self.notify.clone(),
                metrics,
            ));
        });
    }

    /// Starts the intervals of `views` (just sent a tick at once), now.
    pub fn begin(&self, views: &mut Vec<Arc<View>>) {
        if views.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut w = self.wheel.lock();
        let mut sooner = false;
        for v in views.drain(..) {
            let at = now + v.interval();
            sooner |= w.push(at, v);
        }
        drop(w);
        if sooner {
            self.notify.notify_one();
        }
    }

    /// Views due by `now`, removed from their FIFOs; and the next deadline.
    fn due(&self, now: Instant, out: &mut Vec<Arc<View>>) -> Option<Instant> {
        let mut w = self.wheel.lock();
        while let Some(&Reverse((at, interval))) = w.fronts.peek() {
            if at > now {
                return Some(at);
            }
            w.fronts.pop();
            let fifo = w.fifos.get_mut(&interval).expect("a front has its FIFO");
            while fifo.front().is_some_and(|(at, _)| *at <= now) {
                out.push(fifo.pop_front().expect("checked").1);
            }
            match fifo.front() {
                Some(&(next, _)) => w.fronts.push(Reverse((next, interval))),
                None => {
                    w.fifos.remove(&interval);
                }
            }
        }
        None
    }
}

/// The one timer of all throttled views: at each deadline, sends the
/// pending tick (and the view waits another interval) or marks the view
/// quiet. Ends when the hub is gone.
async fn run_timer(throttles: Weak<Throttles>, notify: Arc<Notify>, metrics: Arc<Metrics>) {
    let mut due = Vec::new();
    let mut again = Vec::new();
    let mut writers: Vec<Wakers> = Vec::new();
    loop {
        let Some(t) = throttles.upgrade() else { return };
        let next = t.due(Instant::now(), &mut due);
        let mut flushed = 0u64;
        for view in due.drain(..) {
            let mut s = view.lock();
            if s.dead {
                s.running = false;
                continue;
            }
            match send_pending(&view, &mut s) {
                Some(w) => {
                    flushed += 1;
                    writers.push(w);
                    drop(s);
                    again.push(view);
                }
                None => s.running = false,
            }
        }
        t.begin(&mut again);
        for w in writers.drain(..) {
            wake(w);
        }
        if flushed > 0 {
            metrics
                .throttled_delayed
                .fetch_add(flushed, Ordering::Relaxed);
        }
        // A `begin` after `due` wakes the wait below: notify_one keeps a
        // permit when nobody waits yet.
        drop(t);
        let notified = notify.notified();
        match next {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = notified => {}
                }
            }
            None => notified.await,
        }
    }
}
