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
//! Each topic also keeps its [`history`]: the frames of its latest ticks, so
//! that a client that reconnects with the last seq it has (in this hub's
//! epoch) gets exactly the ticks it missed, replayed under the same lock that
//! orders them before the live stream: no gap, no duplicate.

pub mod history;
mod sessions;
mod topic;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

use bytes::Bytes;
pub use sessions::Sessions;

use crate::feed::{SymbolId, Tick, Universe};
use crate::metrics::Metrics;
use crate::outbox::{FrameKind, Outbox};
use crate::sync::MutexGuard;
use crate::tick::{TickFrame, TickKind};
use history::Replay;
use topic::{Topic, TopicState};

/// Every symbol's topic.
pub struct Hub {
    universe: Arc<Universe>,
    topics: Vec<Topic>,
    metrics: Arc<Metrics>,
    /// Names this run's seq space (see [`new_epoch`]).
    epoch: String,
    /// Ticks of history per topic.
    history: usize,
}

/// How a newly followed symbol starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// With its latest tick as a snapshot.
    Snapshot,
    /// After this seq (of the hub's epoch): the ticks missed since, if the
    /// history still has every one, else a snapshot.
    After(u64),
    /// Asked to resume, but from a seq of another epoch: a snapshot, and
    /// not recovered.
    OtherEpoch,
}

/// A fresh epoch: 16 hex digits from the OS's randomness, so two runs (or
/// two feeds) never share one.
pub fn new_epoch() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl Hub {
    pub fn new(
        universe: Arc<Universe>,
        metrics: Arc<Metrics>,
        epoch: String,
        history: usize,
    ) -> Hub {
        Hub {
            topics: (0..universe.len()).map(|_| Topic::new(history)).collect(),
            universe,
            metrics,
            epoch,
            history,
        }
    }

    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Ticks of history kept per symbol.
    pub fn history_depth(&self) -> usize {
        self.history
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
        topic.history.push(tick.seq, &frame.bytes);
        wake.extend(topic.subscribers.iter().filter_map(|o| o.push_tick(&frame)));
        drop(topic);
        started.elapsed().as_nanos() as u64
    }

    /// Adds `outbox` to the topics of `starts` (symbols it does not follow
    /// yet, each once), and queues, in this order and with no tick in
    /// between: the ack that `ack` builds from what was recovered (one entry
    /// per start, `None` for plain snapshot starts), then per symbol its replay or
    /// its snapshot. Live ticks follow.
    ///
    /// Every topic involved is locked (in id order, so concurrent subscribes
    /// cannot deadlock) for the whole operation: that is what makes "replay,
    /// then live" gap- and duplicate-free. A replay that would not fit the
    /// connection's queue bounds is not attempted (never partial): the
    /// symbol starts from a snapshot and counts as not recovered.
    pub fn subscribe(
        &self,
        outbox: &Arc<Outbox>,
        starts: &[(SymbolId, Start)],
        ack: impl FnOnce(&[Option<bool>]) -> Bytes,
    ) {
        let mut order: Vec<usize> = (0..starts.len()).collect();
        order.sort_unstable_by_key(|&i| starts[i].0);
        let mut locked: Vec<Option<MutexGuard<'_, TopicState>>> =
            (0..starts.len()).map(|_| None).collect();
        for i in order {
            locked[i] = Some(self.topics[starts[i].0 as usize].lock());
        }
        let topics: Vec<&TopicState> = locked
            .iter()
            .map(|t| &**t.as_ref().expect("locked"))
            .collect();

        let mut queue = outbox.subscribing();
        let (mut msgs_left, mut bytes_left) = queue.room();
        let mut snapshots: Vec<Option<Bytes>> = Vec::with_capacity(starts.len());
        let mut recovered: Vec<Option<bool>> = Vec::with_capacity(starts.len());
        for (&(sym, start), topic) in starts.iter().zip(&topics) {
            let snapshot = || {
                topic.latest.map(|t| {
                    TickFrame::encode(&t, self.universe.get(sym), TickKind::Snapshot).bytes
                })
            };
            match start {
                Start::Snapshot => {
                    recovered.push(None);
                    snapshots.push(snapshot());
                }
                Start::After(seq) => {
                    let fits = match topic.history.after(seq, topic.latest_seq()) {
                        Replay::Recovered(frames) => {
                            let (n, b) = (frames.len(), frames.bytes());
                            let fits = n <= msgs_left && b <= bytes_left;
                            if fits {
                                msgs_left -= n;
                                bytes_left -= b;
                            }
                            fits
                        }
                        Replay::Lost => false,
                    };
                    recovered.push(Some(fits));
                    snapshots.push(if fits { None } else { snapshot() });
                }
                Start::OtherEpoch => {
                    recovered.push(Some(false));
                    snapshots.push(snapshot());
                }
            }
        }
        queue.push_reply(ack(&recovered), FrameKind::Text);
        let mut replayed = 0u64;
        for ((&(_, start), topic), (snapshot, recovered)) in starts
            .iter()
            .zip(&topics)
            .zip(snapshots.into_iter().zip(&recovered))
        {
            match (start, recovered) {
                (Start::After(seq), Some(true)) => {
                    if let Replay::Recovered(frames) = topic.history.after(seq, topic.latest_seq())
                    {
                        replayed += frames.len() as u64;
                        queue.push_replay(frames.iter());
                    }
                }
                _ => {
                    if let Some(snap) = snapshot {
                        queue.push_reply(snap, FrameKind::Text);
                    }
                }
            }
        }
        drop(queue);
        drop(topics);
        for t in locked.iter_mut() {
            t.as_mut().expect("locked").subscribers.push(outbox.clone());
        }
        drop(locked);
        self.metrics.count_resumes(&recovered, replayed);
        self.metrics
            .subscriptions
            .fetch_add(starts.len() as i64, Ordering::Relaxed);
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

    /// Up to `limit` ticks of `sym` after seq `from` (as frame bytes), with
    /// the oldest seq held, the latest seq, and whether the ticks start right
    /// after `from`.
    pub fn history_page(&self, sym: SymbolId, from: u64, limit: usize) -> HistoryPage {
        let topic = self.topics[sym as usize].lock();
        let (frames, complete) = topic.history.page(from, limit);
        HistoryPage {
            first_seq: topic.history.first_seq(),
            last_seq: topic.latest_seq(),
            complete,
            frames: frames.into_iter().cloned().collect(),
        }
    }
}

/// What [`Hub::history_page`] found.
pub struct HistoryPage {
    pub first_seq: u64,
    pub last_seq: u64,
    pub complete: bool,
    pub frames: Vec<Bytes>,
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
