//! Topics: who follows each symbol, and the fan-out of each tick to them.
//!
//! One [`Topic`] per instrument holds its subscribers' outboxes and its latest
//! tick (for snapshots). The feed task is the only publisher: it encodes a
//! tick once and pushes the same bytes into every subscriber's
//! [`Outbox`]. Each topic has its own lock, taken once per tick by the feed and
//! briefly by (un)subscribes; holding it across "store latest + fan out" and
//! "add subscriber + send snapshot" is what guarantees a new subscriber gets
//! the snapshot and then every later tick, with no gap and no duplicate.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::Instant;

use crate::feed::{Generator, SymbolId, Universe};
use crate::metrics::{self, Metrics};
use crate::outbox::{Kind, Outbox};
use crate::shutdown::Shutdown;
use crate::tick::{Tick, TickFrame, TickKind};

#[derive(Default)]
struct TopicState {
    subscribers: Vec<Arc<Outbox>>,
    latest: Option<Tick>,
}

#[derive(Default)]
pub struct Topic {
    state: Mutex<TopicState>,
}

impl Topic {
    fn lock(&self) -> MutexGuard<'_, TopicState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct Hub {
    universe: Arc<Universe>,
    topics: Vec<Topic>,
    metrics: Arc<Metrics>,
    /// JSON array of every instrument's static data, built once.
    symbols_json: Vec<u8>,
}

impl Hub {
    pub fn new(universe: Arc<Universe>, metrics: Arc<Metrics>) -> Hub {
        Hub {
            topics: (0..universe.len()).map(|_| Topic::default()).collect(),
            symbols_json: crate::protocol::symbols_json(&universe),
            universe,
            metrics,
        }
    }

    pub fn universe(&self) -> &Universe {
        &self.universe
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn symbols_json(&self) -> &[u8] {
        &self.symbols_json
    }

    /// Encodes `tick` once and queues it for every subscriber of its symbol,
    /// adding the writers to wake to `wake`. Returns how long the fan-out
    /// took, in nanoseconds.
    pub fn publish(&self, tick: &Tick, wake: &mut Vec<Waker>) -> u64 {
        let frame = TickFrame::encode(tick, self.universe.get(tick.sym), TickKind::Tick);
        let started = Instant::now();
        let mut topic = self.topics[tick.sym as usize].lock();
        topic.latest = Some(*tick);
        wake.extend(topic.subscribers.iter().filter_map(|o| o.push_tick(&frame)));
        drop(topic);
        started.elapsed().as_nanos() as u64
    }

    /// Adds `outbox` to the topics of `syms` (which it must not follow yet),
    /// queueing each topic's latest tick as a snapshot first.
    pub fn subscribe(&self, outbox: &Arc<Outbox>, syms: &[SymbolId]) {
        for &sym in syms {
            let mut topic = self.topics[sym as usize].lock();
            if let Some(latest) = &topic.latest {
                let snap = TickFrame::encode(latest, self.universe.get(sym), TickKind::Snapshot);
                outbox.push_control(snap.bytes, Kind::Text);
            }
            topic.subscribers.push(outbox.clone());
        }
        self.metrics
            .subscriptions
            .fetch_add(syms.len() as i64, Ordering::Relaxed);
    }

    /// Removes `outbox` from the topics of `syms`; once this returns, no tick
    /// of those symbols reaches it any more (undelivered overflow included).
    pub fn unsubscribe(&self, outbox: &Arc<Outbox>, syms: &[SymbolId]) {
        let mut removed = 0;
        for &sym in syms {
            let mut topic = self.topics[sym as usize].lock();
            if let Some(i) = topic
                .subscribers
                .iter()
                .position(|o| Arc::ptr_eq(o, outbox))
            {
                topic.subscribers.swap_remove(i);
                removed += 1;
            }
        }
        outbox.forget_overflow(syms);
        self.metrics
            .subscriptions
            .fetch_sub(removed, Ordering::Relaxed);
    }

    /// The latest tick of a symbol, if it has traded.
    pub fn latest(&self, sym: SymbolId) -> Option<Tick> {
        self.topics[sym as usize].lock().latest
    }
}

/// Drives `generator` on the real clock and publishes its ticks until
/// shutdown. Ticks due together are published together, so the writers they
/// wake find many frames to send at once.
pub async fn run_feed(hub: Arc<Hub>, mut generator: Generator, shutdown: Shutdown) {
    let start = tokio::time::Instant::now();
    let mut fanout_ns: Vec<u64> = Vec::with_capacity(1024);
    let mut writers: Vec<Waker> = Vec::new();
    loop {
        let now_ns = start.elapsed().as_nanos() as u64;
        let n = generator.advance(now_ns, metrics::wall_us(), |tick| {
            fanout_ns.push(hub.publish(tick, &mut writers));
        });
        // Writers start once the whole batch is queued: each then finds all
        // of its share, and none competes with the fan-out for the cores.
        for w in writers.drain(..) {
            w.wake();
        }
        if n > 0 {
            let m = hub.metrics();
            m.ticks_generated.fetch_add(n as u64, Ordering::Relaxed);
            let mut shard = m.shard();
            for ns in fanout_ns.drain(..) {
                shard.fanout.saturating_record(ns.max(1));
            }
        }
        let next = generator.next_due();
        if next <= start.elapsed().as_nanos() as u64 {
            // Behind schedule: let the writers run, then catch up.
            tokio::task::yield_now().await;
            if shutdown.is_triggered() {
                return;
            }
            continue;
        }
        let wake_at = start + std::time::Duration::from_nanos(next);
        tokio::select! {
            _ = tokio::time::sleep_until(wake_at) => {}
            _ = shutdown.triggered() => return,
        }
    }
}

/// Every open session's outbox, so that shutdown can close them all.
#[derive(Default)]
pub struct Sessions {
    next_id: AtomicU64,
    open: Mutex<SessionsState>,
}

#[derive(Default)]
struct SessionsState {
    by_id: HashMap<u64, Arc<Outbox>>,
    closed: bool,
}

impl Sessions {
    fn lock(&self) -> MutexGuard<'_, SessionsState> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new session; `None` once shutdown has begun.
    pub fn register(&self, outbox: Arc<Outbox>) -> Option<u64> {
        let mut s = self.lock();
        if s.closed {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        s.by_id.insert(id, outbox);
        Some(id)
    }

    pub fn remove(&self, id: u64) {
        self.lock().by_id.remove(&id);
    }

    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Frames and bytes waiting in each open session's outbox.
    pub fn backlogs(&self) -> Vec<(usize, usize)> {
        let outboxes: Vec<_> = self.lock().by_id.values().cloned().collect();
        outboxes.iter().map(|o| o.backlog()).collect()
    }

    /// Frames and bytes waiting in all outboxes together.
    pub fn queued(&self) -> (usize, usize) {
        self.backlogs()
            .into_iter()
            .fold((0, 0), |(m, b), (m1, b1)| (m + m1, b + b1))
    }

    /// Refuses new sessions and closes every open one with 1001.
    pub fn close_all(&self) {
        let outboxes: Vec<_> = {
            let mut s = self.lock();
            s.closed = true;
            s.by_id.values().cloned().collect()
        };
        for o in outboxes {
            o.close(1001, metrics::DisconnectReason::Shutdown);
        }
    }
}
