//! The hub: one topic per symbol, and the fan-out of each tick to its
//! subscribers.
//!
//! One [`Topic`](topic) per instrument holds its subscribers' outboxes and its
//! latest tick (for snapshots). A source of ticks is the only publisher: it
//! hands each tick to a [`Publisher`], which encodes it once and pushes the
//! same bytes into every subscriber's [`Outbox`]. Each topic has its own
//! lock, taken once per tick by the publisher and briefly by (un)subscribes;
//! holding it across "store latest + fan out" and "add subscriber + send
//! snapshot" is what guarantees a new subscriber gets the snapshot and then
//! every later tick, with no gap and no duplicate.
//!
//! Rooms for what comes: a per-topic history ring (resume from a seq) sits
//! next to `latest` in [`topic`], appended under the same lock.

mod sessions;
mod topic;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

pub use sessions::Sessions;

use crate::feed::{SymbolId, Tick, Universe};
use crate::metrics::Metrics;
use crate::outbox::{FrameKind, Outbox};
use crate::tick::{TickFrame, TickKind};
use topic::Topic;

/// Every symbol's topic.
pub struct Hub {
    universe: Arc<Universe>,
    topics: Vec<Topic>,
    metrics: Arc<Metrics>,
}

impl Hub {
    pub fn new(universe: Arc<Universe>, metrics: Arc<Metrics>) -> Hub {
        Hub {
            topics: (0..universe.len()).map(|_| Topic::default()).collect(),
            universe,
            metrics,
        }
    }

    pub fn universe(&self) -> &Arc<Universe> {
        &self.universe
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Encodes `tick` once and queues it for every subscriber of its symbol,
    /// adding the writers to wake to `wake`. Returns how long the fan-out
    /// took, in nanoseconds. Sources publish through a [`Publisher`].
    fn publish(&self, tick: &Tick, wake: &mut Vec<Waker>) -> u64 {
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
                outbox.push_reply(snap.bytes, FrameKind::Text);
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

/// How a source publishes: ticks one by one, then [`Publisher::finish_batch`]
/// once per batch of ticks that were due together.
///
/// Writers are woken once the whole batch is queued, not tick by tick: each
/// then finds all of its share, and none competes with the fan-out for the
/// cores. Owned by the source's task; it keeps its scratch space between
/// batches.
pub struct Publisher {
    hub: Arc<Hub>,
    writers: Vec<Waker>,
    fanout_ns: Vec<u64>,
}

impl Publisher {
    pub fn new(hub: Arc<Hub>) -> Publisher {
        Publisher {
            hub,
            writers: Vec::new(),
            fanout_ns: Vec::with_capacity(1024),
        }
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Queues `tick` for its subscribers (their writers wake at the end of
    /// the batch).
    pub fn publish(&mut self, tick: &Tick) {
        let ns = self.hub.publish(tick, &mut self.writers);
        self.fanout_ns.push(ns);
    }

    /// Wakes every writer the batch gave work to and records the batch.
    pub fn finish_batch(&mut self) {
        for w in self.writers.drain(..) {
            w.wake();
        }
        if self.fanout_ns.is_empty() {
            return;
        }
        let m = self.hub.metrics();
        m.ticks_generated
            .fetch_add(self.fanout_ns.len() as u64, Ordering::Relaxed);
        let mut shard = m.shard();
        for ns in self.fanout_ns.drain(..) {
            shard.fanout.saturating_record(ns.max(1));
        }
    }
}
