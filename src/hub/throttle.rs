//! Throttled views: a subscription that gets at most one tick per symbol per
//! interval, always the newest (docs/PROTOCOL.md, "Throttled views").
//!
//! Intervals are windows of a fixed grid, one grid per interval value: the
//! windows of `throttle_ms = 250` are the successive 250 ms since the hub
//! started, the same for every connection. A throttled subscription is a
//! [`View`]: one pending slot, the window it last sent in, and its
//! [`Group`] (the views of one interval value). It lives in its topic's list
//! of throttled views, apart from the unthrottled subscribers, so the
//! unthrottled fan-out does not even look at it. For each tick the
//! publisher does one of two things per view, under the topic lock:
//! - the view sent nothing in the current window nor in the one before (a
//!   quiet interval): the tick goes to the outbox at once;
//! - else: the tick replaces the pending slot (a shared slice of the
//!   batch's encoded frame, no copy; a tick it replaces is counted as
//!   folded, `tickwire_throttled_ticks_total`), and the view is put on its
//!   group's list for the window's end (once per window).
//!
//! There is no timer per view: one task per interval value in use
//! ([`run_group`]) wakes at each window's end and sends the pending tick of
//! every view on the list (that send is the view's message of the new
//! window). So a throttled client lags the market by at most one interval,
//! and all the views of one connection and interval are flushed together:
//! one wake-up and one write for all of them, not one per symbol.
//!
//! Ordering: every push of a view's ticks into its outbox (at once, at the
//! window's end, when the throttle changes) happens under the view's own
//! lock; a view marked dead (unsubscribed, or replaced by a re-subscribe
//! with another throttle) sends nothing more, so no tick follows an
//! `unsubscribed` ack and a symbol's ticks stay in seq order.
//!
//! Memory: a view is its slot (one frame handle), a few counters and two
//! `Arc`s, about 120 bytes, plus at most one list entry, for at most one
//! window. A pending frame pins the batch chunk it lies in
//! ([`CHUNK_BYTES`](crate::tick::CHUNK_BYTES)); a slot always holds its
//! symbol's newest tick, so at most one chunk per symbol and format is
//! pinned by pending slots, however many views wait. A group (and its task)
//! ends when its last view does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::{Instant, MissedTickBehavior};

use crate::feed::SymbolId;
use crate::metrics::Metrics;
use crate::outbox::{wake, Outbox, Wakers};
use crate::sync::{Mutex, MutexGuard};

/// One throttled subscription: an outbox following a symbol at an interval.
pub struct View {
    pub outbox: Arc<Outbox>,
    pub sym: SymbolId,
    pub group: Arc<Group>,
    state: Mutex<ViewState>,
}

/// A tick waiting for its window's end.
#[derive(Debug, Clone)]
pub struct Pending {
    pub bytes: Bytes,
    pub ts_ns: u64,
}

#[derive(Default)]
pub struct ViewState {
    /// The newest tick not sent yet.
    pub pending: Option<Pending>,
    /// The window this view last sent a tick in (0: never).
    pub sent_in: u64,
    /// On its group's list for the current window's end.
    pub listed: bool,
    /// Unsubscribed or replaced: sends nothing more.
    pub dead: bool,
}

impl View {
    pub fn lock(&self) -> MutexGuard<'_, ViewState> {
        self.state.lock()
    }

    pub fn interval_ms(&self) -> u32 {
        self.group.interval_ms
    }

    /// Ends the view: it sends nothing more, and leaves its group. A tick
    /// it holds is sent first when `flush`.
    pub fn end(&self, flush: bool) {
        let mut s = self.lock();
        if s.dead {
            return;
        }
        if flush {
            if let Some(w) = send_pending(self, &mut s) {
                wake(w);
            }
        }
        s.pending = None;
        s.dead = true;
        self.group.views.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Sends a view's pending tick now; call with the view's lock held.
pub fn send_pending(view: &View, state: &mut ViewState) -> Option<Wakers> {
    let p = state.pending.take()?;
    Some(view.outbox.push_delayed(view.sym, p.bytes, p.ts_ns))
}

/// The views of one interval value, and the list of those holding a tick
/// for the current window's end.
pub struct Group {
    pub interval_ms: u32,
    /// Where window 1 starts.
    origin: Instant,
    /// Live views of this interval (the group ends at 0).
    views: AtomicUsize,
    due: Mutex<Due>,
}

#[derive(Default)]
struct Due {
    /// The last window whose end has been flushed.
    flushed: u64,
    views: Vec<Arc<View>>,
}

impl Group {
    /// The window `now` falls in (1, 2, ...).
    pub fn window(&self, now: Instant) -> u64 {
        let ms = now.saturating_duration_since(self.origin).as_millis() as u64;
        ms / u64::from(self.interval_ms) + 1
    }

    fn window_end(&self, window: u64) -> Instant {
        self.origin + Duration::from_millis(window * u64::from(self.interval_ms))
    }
}

/// What the publisher does with a tick for a view (its lock held) in
/// window `w`: send it at once (the caller does) after a quiet interval (no
/// message in this window nor the one before), or hold it as the pending
/// tick, the view listed for the window's end (once per window). An active
/// symbol's ticks thus all go at window ends, together with the
/// connection's other symbols: one write per window, not one per symbol.
pub fn admit(
    view: &Arc<View>,
    s: &mut ViewState,
    w: u64,
    pending: impl FnOnce() -> Pending,
) -> Admit {
    if s.sent_in == 0 || s.sent_in + 1 < w {
        // A quiet interval: at once.
        let folded = s.pending.take().is_some();
        s.sent_in = w;
        return Admit::Now { folded };
    }
    if !s.listed {
        let mut due = view.group.due.lock();
        if due.flushed >= w && s.sent_in < due.flushed {
            // Window `w` ended (and was flushed) while the batch was on its
            // way: the tick is in the next window, after a quiet one.
            let next = due.flushed + 1;
            drop(due);
            let folded = s.pending.take().is_some();
            s.sent_in = next;
            return Admit::Now { folded };
        }
        s.listed = true;
        due.views.push(view.clone());
    }
    let folded = s.pending.replace(pending()).is_some();
    Admit::Held { folded }
}

/// What [`admit`] decided; `folded`: a held tick was replaced.
pub enum Admit {
    /// Send the tick now.
    Now { folded: bool },
    /// Held until the window's end.
    Held { folded: bool },
}

/// Every interval value's group.
pub struct Throttles {
    /// Where every grid's window 1 starts (the hub's start).
    origin: Instant,
    groups: Mutex<HashMap<u32, Arc<Group>>>,
}

impl Default for Throttles {
    fn default() -> Throttles {
        Throttles {
            origin: Instant::now(),
            groups: Mutex::default(),
        }
    }
}

impl Throttles {
    /// A new view of `sym` for `outbox` at `interval_ms`; starts the
    /// interval's group (and its task, on the current tokio runtime) if it
    /// is the first.
    pub fn view(
        self: &Arc<Self>,
        outbox: Arc<Outbox>,
        sym: SymbolId,
        interval_ms: u32,
        metrics: &Arc<Metrics>,
    ) -> Arc<View> {
        let mut groups = self.groups.lock();
        let group = match groups.get(&interval_ms) {
            Some(g) => g.clone(),
            None => {
                let g = Arc::new(Group {
                    interval_ms,
                    origin: self.origin,
                    views: AtomicUsize::new(0),
                    due: Mutex::new(Due::default()),
                });
                match tokio::runtime::Handle::try_current() {
                    Ok(runtime) => {
                        runtime.spawn(run_group(Arc::downgrade(self), g.clone(), metrics.clone()));
                    }
                    Err(_) => tracing::warn!(
                        "throttled view outside a tokio runtime: its ticks wait for nothing"
                    ),
                }
                groups.insert(interval_ms, g.clone());
                g
            }
        };
        group.views.fetch_add(1, Ordering::Relaxed);
        drop(groups);
        Arc::new(View {
            outbox,
            sym,
            group,
            state: Mutex::new(ViewState::default()),
        })
    }
}

/// One interval's timer: at each window's end, sends the pending tick of
/// every listed view. Ends with the group's last view (or the hub).
async fn run_group(throttles: Weak<Throttles>, group: Arc<Group>, metrics: Arc<Metrics>) {
    let first = group.window(Instant::now());
    let mut ticker = tokio::time::interval_at(
        group.window_end(first),
        Duration::from_millis(u64::from(group.interval_ms)),
    );
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut views = Vec::new();
    let mut writers: Vec<Wakers> = Vec::new();
    loop {
        ticker.tick().await;
        let current = group.window(Instant::now());
        {
            let mut due = group.due.lock();
            due.flushed = current - 1;
            std::mem::swap(&mut due.views, &mut views);
        }
        let mut sent = 0u64;
        for view in views.drain(..) {
            let mut s = view.lock();
            s.listed = false;
            if s.dead {
                continue;
            }
            if let Some(w) = send_pending(&view, &mut s) {
                s.sent_in = current;
                sent += 1;
                writers.push(w);
            }
        }
        for w in writers.drain(..) {
            wake(w);
        }
        if sent > 0 {
            metrics.throttled_delayed.fetch_add(sent, Ordering::Relaxed);
        }
        if group.views.load(Ordering::Relaxed) == 0 {
            let Some(t) = throttles.upgrade() else { return };
            let mut groups = t.groups.lock();
            // Re-checked under the map's lock, which new views take.
            if group.views.load(Ordering::Relaxed) == 0 {
                groups.remove(&group.interval_ms);
                return;
            }
        }
        if throttles.strong_count() == 0 {
            return;
        }
    }
}
