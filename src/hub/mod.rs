//! The hub: one topic per symbol, and the fan-out of each tick to its
//! subscribers.
//!
//! One [`Topic`](topic) per instrument holds its subscribers' outboxes and its
//! latest tick (for snapshots). A source of ticks is the only publisher: it
//! hands each batch of ticks that were due together to a [`Publisher`],
//! which encodes each tick once, back to back into a few shared chunks,
//! stages every subscriber's share of the batch under each topic's lock, then
//! queues each connection's share with one outbox lock and wakes each writer
//! once. A share is staged as runs ([`FrameRun`]): a frame that lies right
//! after the previous one in the same chunk extends the run, so a connection
//! subscribed to most of a batch stages a few ranges, not a list of frames,
//! and the outbox admits a run whole (one slice of the shared chunk) when its
//! limits have room for all of it. Each topic has its own lock,
//! taken once per tick by the publisher and briefly by (un)subscribes;
//! holding it across "store latest + stage" and "add subscriber + send
//! snapshot" is what guarantees a new subscriber gets the snapshot and then
//! every later tick, with no gap and no duplicate. An unsubscribe is fenced
//! against batches staged before it (see [`Outbox::push_batch`]), so no tick
//! follows its ack.
//!
//! Throttled subscriptions ([`throttle`]) are kept apart from the
//! unthrottled subscribers, one view each: per tick the publisher either
//! sends at once (the view sent nothing in the current window) or replaces
//! the view's pending slot, and one task per interval value sends the held
//! ticks at each window's end.
//!
//! Every tick also gets the next number of the hub's publish counter: the
//! position an SSE event's id names, so that an SSE stream of any number of
//! symbols resumes from one number ([`Hub::subscribe_sse`]).
//!
//! Each topic also keeps its [`history`]: the frames of its latest ticks, so
//! that a client that reconnects with the last seq it has (in this hub's
//! epoch) gets exactly the ticks it missed, replayed under the same lock that
//! orders them before the live stream: no gap, no duplicate.

pub mod history;
mod sessions;
mod throttle;
mod topic;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

use bytes::Bytes;
pub use sessions::Sessions;
use tickwire_protocol::TickMsg;

use crate::feed::{SymbolId, Tick, Universe};
use crate::metrics::Metrics;
use crate::outbox::{Fenced, FrameKind, Outbox, Wakers};
use crate::sync::{Mutex, MutexGuard};
use crate::tick::{EncodedBatch, Format, FrameRun, TickFrame, TickKind};
use history::{History, Replay};
use throttle::{Admit, Pending, Throttles};
use topic::{Subscriber, Topic, TopicState};

/// Every symbol's topic.
pub struct Hub {
    universe: Arc<Universe>,
    topics: Vec<Topic>,
    metrics: Arc<Metrics>,
    /// Names the seq space of the ticks (see [`new_epoch`]): this run's, or
    /// the feed's when a broker feeds the hub ([`Hub::adopt_epoch`]).
    epoch: Mutex<Arc<str>>,
    /// Ticks of history per topic.
    history: usize,
    /// The deadline queues of throttled views.
    throttles: Arc<Throttles>,
}

/// Where an SSE stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SseResume {
    /// A new stream: snapshots.
    Fresh,
    /// A reconnect whose last event id was this publish counter of this
    /// epoch.
    After(u64),
    /// A reconnect with an id of another epoch (or not one of ours):
    /// nothing can be resumed.
    Lost,
}

/// What [`Hub::subscribe_sse`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SseStart {
    /// Symbols whose missed ticks could not be replayed (they got a
    /// snapshot): the `reset` event names them.
    pub unrecovered: Vec<SymbolId>,
    /// Ticks replayed.
    pub replayed: usize,
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
            epoch: Mutex::new(epoch.into()),
            history,
            throttles: Arc::default(),
        }
    }

    pub fn epoch(&self) -> Arc<str> {
        self.epoch.lock().clone()
    }

    /// Takes the epoch of an external source (a feed, over a broker). When it
    /// differs from the current one, every topic's latest tick and history
    /// belong to another seq space and are forgotten: a resume from the old
    /// epoch gets `recovered:false`, and the source sends the new epoch's
    /// state next. Returns whether the epoch changed.
    pub fn adopt_epoch(&self, epoch: &str) -> bool {
        let mut current = self.epoch.lock();
        if &**current == epoch {
            return false;
        }
        for topic in &self.topics {
            let mut t = topic.lock();
            t.latest = None;
            t.latest_published = 0;
            t.history = History::new(self.history);
        }
        *current = epoch.into();
        true
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
    ///
    /// `throttle_ms` (0: every tick) makes these throttled views.
    pub fn subscribe(
        &self,
        outbox: &Arc<Outbox>,
        starts: &[(SymbolId, Start)],
        throttle_ms: u32,
        ack: impl FnOnce(&[Option<bool>]) -> Bytes,
    ) {
        let syms: Vec<SymbolId> = starts.iter().map(|s| s.0).collect();
        let mut locked = self.lock_topics(&syms);
        let topics: Vec<&TopicState> = locked.iter().map(|t| &**t).collect();

        let format = outbox.format();
        debug_assert_ne!(format, Format::Sse, "SSE streams: Hub::subscribe_sse");
        let mut queue = outbox.subscribing();
        let (mut msgs_left, mut bytes_left) = queue.room();
        let mut snapshots: Vec<Option<Bytes>> = Vec::with_capacity(starts.len());
        let mut recovered: Vec<Option<bool>> = Vec::with_capacity(starts.len());
        for (&(sym, start), topic) in starts.iter().zip(&topics) {
            let snapshot = || {
                topic.latest.map(|t| {
                    TickFrame::encode_as(format, &t, self.universe.get(sym), TickKind::Snapshot)
                        .bytes
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
                            let n = frames.len();
                            let b = match format {
                                Format::Json | Format::Sse => frames.bytes(),
                                Format::Binary => n * BINARY_FRAME_LEN,
                            };
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
                        match format {
                            Format::Json | Format::Sse => queue.push_replay(frames.iter()),
                            Format::Binary => {
                                let binary: Vec<Bytes> =
                                    frames.iter().map(|f| self.binary_replay(f)).collect();
                                queue.push_replay(binary.iter());
                            }
                        }
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
        for (t, &sym) in locked.iter_mut().zip(&syms) {
            self.add_subscriber(t, outbox, sym, throttle_ms);
        }
        drop(locked);
        self.metrics.count_resumes(&recovered, replayed);
        self.metrics
            .subscriptions
            .fetch_add(starts.len() as i64, Ordering::Relaxed);
    }

    /// Locks the topics of `syms` (distinct), in id order so that
    /// concurrent subscribes cannot deadlock; the guards come back in the
    /// order of `syms`.
    fn lock_topics(&self, syms: &[SymbolId]) -> Vec<MutexGuard<'_, TopicState>> {
        let mut order: Vec<usize> = (0..syms.len()).collect();
        order.sort_unstable_by_key(|&i| syms[i]);
        let mut locked: Vec<Option<MutexGuard<'_, TopicState>>> =
            (0..syms.len()).map(|_| None).collect();
        for i in order {
            locked[i] = Some(self.topics[syms[i] as usize].lock());
        }
        locked.into_iter().map(|t| t.expect("locked")).collect()
    }

    /// Adds `outbox` to a locked topic: to its subscribers, or as a
    /// throttled view.
    fn add_subscriber(
        &self,
        topic: &mut TopicState,
        outbox: &Arc<Outbox>,
        sym: SymbolId,
        throttle_ms: u32,
    ) {
        if throttle_ms == 0 {
            topic.subscribers.push(Subscriber {
                slot: outbox.slot(),
                format: outbox.format(),
                outbox: outbox.clone(),
            });
        } else {
            topic.throttled.push(self.throttles.view(
                outbox.clone(),
                sym,
                throttle_ms,
                &self.metrics,
            ));
        }
        self.topics[sym as usize].count_format(outbox.format(), 1);
    }

    /// Takes `outbox` out of a locked topic (either list); a throttled
    /// view's pending tick is sent first when `flush`, else dropped.
    /// Returns whether it was there, and the interval it had.
    fn remove_subscriber(
        &self,
        topic: &mut TopicState,
        outbox: &Arc<Outbox>,
        sym: SymbolId,
        flush: bool,
    ) -> Option<u32> {
        let found = if let Some(i) = topic
            .subscribers
            .iter()
            .position(|s| Arc::ptr_eq(&s.outbox, outbox))
        {
            topic.subscribers.swap_remove(i);
            Some(0)
        } else if let Some(i) = topic
            .throttled
            .iter()
            .position(|v| Arc::ptr_eq(&v.outbox, outbox))
        {
            let view = topic.throttled.swap_remove(i);
            view.end(flush);
            Some(view.interval_ms())
        } else {
            None
        };
        if found.is_some() {
            self.topics[sym as usize].count_format(outbox.format(), -1);
        }
        found
    }

    /// Changes the throttle of symbols `outbox` already follows, at once: a
    /// tick a view was holding is sent now, and the new view starts quiet
    /// (its next tick goes at once).
    pub fn set_throttle(&self, outbox: &Arc<Outbox>, syms: &[SymbolId], throttle_ms: u32) {
        for &sym in syms {
            let mut topic = self.topics[sym as usize].lock();
            let current = topic
                .throttled
                .iter()
                .find(|v| Arc::ptr_eq(&v.outbox, outbox))
                .map_or(0, |v| v.interval_ms());
            if current == throttle_ms {
                continue;
            }
            if self
                .remove_subscriber(&mut topic, outbox, sym, true)
                .is_some()
            {
                self.add_subscriber(&mut topic, outbox, sym, throttle_ms);
            }
        }
    }

    /// Adds an SSE stream's `outbox` to the topics of `syms` (distinct),
    /// every one at `throttle_ms`, and queues with no tick in between:
    /// - a fresh stream: each symbol's snapshot;
    /// - a stream of another epoch: a `reset` naming every symbol, then
    ///   the snapshots;
    /// - a stream resuming after a publish counter (its
    ///   `Last-Event-ID`, of this epoch): unthrottled, each symbol's ticks
    ///   published since, when the history still has all of them and they
    ///   fit the queue bounds, else its snapshot (and it is named in the
    ///   result, for the `reset` event, which the caller's `reset` builds
    ///   and which goes first); throttled, each symbol's snapshot (a
    ///   throttled view promises the newest price, not every tick).
    ///
    /// Snapshots and replayed ticks go in publish order, each event with
    /// its own counter as id: wherever the stream is cut, its last id is a
    /// position to resume from with no hole and no duplicate.
    pub fn subscribe_sse(
        &self,
        outbox: &Arc<Outbox>,
        syms: &[SymbolId],
        resume: SseResume,
        throttle_ms: u32,
        reset: impl FnOnce(&[SymbolId]) -> Bytes,
    ) -> SseStart {
        debug_assert_eq!(outbox.format(), Format::Sse);
        let epoch = self.epoch();
        let mut locked = self.lock_topics(syms);
        let mut queue = outbox.subscribing();
        let (mut msgs_left, mut bytes_left) = queue.room();
        let mut events: Vec<(u64, Bytes, FrameKind)> = Vec::new();
        let mut result = SseStart::default();
        for (topic, &sym) in locked.iter().zip(syms) {
            let ins = self.universe.get(sym);
            let snapshot = |events: &mut Vec<(u64, Bytes, FrameKind)>| {
                if let Some(t) = &topic.latest {
                    let g = topic.latest_published;
                    let ev = TickFrame::encode_sse(t, ins, TickKind::Snapshot, &epoch, g);
                    events.push((g, ev.bytes, FrameKind::Text));
                }
            };
            let from = match resume {
                SseResume::Fresh => {
                    snapshot(&mut events);
                    continue;
                }
                SseResume::Lost => {
                    result.unrecovered.push(sym);
                    snapshot(&mut events);
                    continue;
                }
                SseResume::After(from) => from,
            };
            if throttle_ms > 0 {
                snapshot(&mut events);
                continue;
            }
            let replay = topic
                .history
                .after_published(from, topic.latest_published)
                .filter(|frames| {
                    let n = frames.len();
                    let b: usize = frames
                        .iter()
                        .map(|(_, f)| f.len() + crate::tick::sse_head_capacity(epoch.len()))
                        .sum();
                    let fits = n <= msgs_left && b <= bytes_left;
                    if fits {
                        msgs_left -= n;
                        bytes_left -= b;
                    }
                    fits
                });
            match replay {
                Some(frames) => {
                    result.replayed += frames.len();
                    for (g, frame) in frames {
                        events.push((g, sse_replay(&epoch, g, frame), FrameKind::Replay));
                    }
                }
                None => {
                    result.unrecovered.push(sym);
                    snapshot(&mut events);
                }
            }
        }
        if !result.unrecovered.is_empty() {
            queue.push_reply(reset(&result.unrecovered), FrameKind::Text);
        }
        events.sort_by_key(|e| e.0);
        for (_, bytes, kind) in events {
            match kind {
                FrameKind::Replay => queue.push_replay(std::iter::once(&bytes)),
                _ => queue.push_reply(bytes, kind),
            }
        }
        drop(queue);
        for (t, &sym) in locked.iter_mut().zip(syms) {
            self.add_subscriber(t, outbox, sym, throttle_ms);
        }
        drop(locked);
        if resume != SseResume::Fresh {
            let outcome: Vec<Option<bool>> = syms
                .iter()
                .map(|s| Some(!result.unrecovered.contains(s)))
                .collect();
            self.metrics.count_resumes(&outcome, result.replayed as u64);
        }
        self.metrics
            .subscriptions
            .fetch_add(syms.len() as i64, Ordering::Relaxed);
        result
    }

    /// Removes `outbox` from the topics of `syms`; once this returns, no tick
    /// of those symbols reaches it any more (undelivered overflow included).
    pub fn unsubscribe(&self, outbox: &Arc<Outbox>, syms: &[SymbolId]) {
        let mut removed = 0;
        for &sym in syms {
            let mut topic = self.topics[sym as usize].lock();
            if self
                .remove_subscriber(&mut topic, outbox, sym, false)
                .is_some()
            {
                removed += 1;
            }
        }
        outbox.unsubscribed(syms);
        self.metrics
            .subscriptions
            .fetch_sub(removed, Ordering::Relaxed);
    }

    /// A history frame (JSON, as sent live) in the binary layout, for a
    /// binary client that resumes: history keeps one form only, and
    /// resumes are rare next to live ticks.
    fn binary_replay(&self, json_frame: &Bytes) -> Bytes {
        let t =
            TickMsg::parse(crate::wire::payload(json_frame)).expect("history holds our own ticks");
        let sym = self
            .universe
            .id_of(&t.sym)
            .expect("a symbol of this universe");
        let ins = self.universe.get(sym);
        let units = |d: tickwire_protocol::Decimal, scale: u32| {
            d.rescale(scale as u8)
                .expect("on the instrument's grid")
                .units()
        };
        let tick = Tick {
            sym,
            seq: t.seq,
            ts_us: t.ts,
            px: units(t.px, ins.price_decimals),
            qty: units(t.qty, ins.qty_decimals),
            bid: units(t.bid, ins.price_decimals),
            ask: units(t.ask, ins.price_decimals),
        };
        TickFrame::encode_as(Format::Binary, &tick, ins, TickKind::Tick).bytes
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
/// The batch is encoded once into shared chunks, each subscriber's share is
/// staged under each topic's lock, and each connection then gets its whole
/// share with one outbox lock and one wake-up, once everything is queued:
/// writers start with all of their share, and none competes with the fan-out
/// for the cores. Owned by the source's task; it keeps its scratch space
/// between batches.
pub struct Publisher {
    hub: Arc<Hub>,
    ticks: Vec<Tick>,
    /// The batch's ticks, encoded.
    enc: Encoded,
    /// The hub's publish counter: ticks published so far.
    published: u64,
    /// Writers of throttled views woken by this batch.
    throttled_writers: Vec<Waker>,
    /// Each connection's share of the batch, by registry slot.
    stage: Vec<Stage>,
    /// Slots with a share in this batch.
    touched: Vec<u32>,
    writers: Vec<Waker>,
}

/// A batch's ticks in every format some subscriber takes.
#[derive(Default)]
struct Encoded {
    /// Every tick's JSON frame.
    batch: EncodedBatch,
    /// Binary frames of the ticks whose topics have binary subscribers.
    binary: EncodedBatch,
    /// Per tick, its frame in `binary` (or [`NOT_ENCODED`]).
    binary_at: Vec<u32>,
    /// SSE events of the ticks whose topics have SSE subscribers.
    sse: EncodedBatch,
    /// Per tick, its event in `sse` (or [`NOT_ENCODED`]).
    sse_at: Vec<u32>,
}

impl Encoded {
    /// The batch that holds frames of `format`, and tick `i`'s frame in it.
    fn get(&self, format: Format, i: u32) -> (&EncodedBatch, u32) {
        match format {
            Format::Json => (&self.batch, i),
            Format::Binary => (&self.binary, self.binary_at[i as usize]),
            Format::Sse => (&self.sse, self.sse_at[i as usize]),
        }
    }

    /// Tick `i`'s frame in the batch of `format` ([`NOT_ENCODED`] if
    /// none), and whether it joins the frame before it there.
    #[inline]
    fn at(&self, format: Format, i: u32) -> (u32, bool) {
        let (batch, at) = self.get(format, i);
        (at, at != NOT_ENCODED && batch.joins(at))
    }

    fn of(&self, format: Format) -> &EncodedBatch {
        match format {
            Format::Json => &self.batch,
            Format::Binary => &self.binary,
            Format::Sse => &self.sse,
        }
    }
}

/// A history frame (a WebSocket frame of the tick's JSON) as the SSE event
/// it was sent as live.
fn sse_replay(epoch: &str, published: u64, json_frame: &Bytes) -> Bytes {
    let json = crate::wire::payload(json_frame);
    let mut out = Vec::with_capacity(crate::tick::sse_head_capacity(epoch.len()) + json.len() + 2);
    crate::tick::write_sse_head(&mut out, epoch, published, TickKind::Tick);
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// A tick's frame in a format the batch did not encode it in (its
/// subscriber arrived after the batch was encoded).
fn encode_late(hub: &Hub, format: Format, tick: &Tick, published: u64) -> TickFrame {
    let ins = hub.universe.get(tick.sym);
    match format {
        Format::Sse => TickFrame::encode_sse(tick, ins, TickKind::Tick, &hub.epoch(), published),
        f => TickFrame::encode_as(f, tick, ins, TickKind::Tick),
    }
}

/// Tick `i` of the batch for a topic's throttled views (topic locked), at
/// `now`: at once to a view that sent nothing in the current window, else
/// into its pending slot. Returns how many held ticks were replaced
/// (folded).
#[allow(clippy::too_many_arguments)]
fn throttled(
    hub: &Hub,
    enc: &Encoded,
    topic: &TopicState,
    tick: &Tick,
    i: u32,
    published: u64,
    now: tokio::time::Instant,
    writers: &mut Vec<Waker>,
) -> u64 {
    let mut folded = 0;
    for view in &topic.throttled {
        let format = view.outbox.format();
        let (batch, at) = enc.get(format, i);
        let mut s = view.lock();
        if s.dead {
            continue;
        }
        let window = view.group.window(now);
        let pending = || {
            if at == NOT_ENCODED {
                let f = encode_late(hub, format, tick, published);
                Pending {
                    bytes: f.bytes,
                    ts_ns: f.ts_ns,
                }
            } else {
                let f = batch.frame(at);
                Pending {
                    bytes: batch.slice(f.chunk, f.start, f.end),
                    ts_ns: f.ts_ns,
                }
            }
        };
        match throttle::admit(view, &mut s, window, pending) {
            Admit::Now { folded: f } => {
                folded += u64::from(f);
                let w = if at == NOT_ENCODED {
                    view.outbox
                        .push_frame(&encode_late(hub, format, tick, published))
                } else {
                    view.outbox
                        .push_batch(batch, &[FrameRun::one(at)], None)
                        .unwrap_or_default()
                };
                push_wakers(writers, w);
            }
            Admit::Held { folded: f } => folded += u64::from(f),
        }
    }
    folded
}

/// One connection's share of a batch.
#[derive(Default)]
struct Stage {
    outbox: Option<Arc<Outbox>>,
    /// Its unsubscribe count when first staged (the fence).
    unsubscribes: u64,
    /// Its frames of the batch, as the slices they will go out as.
    runs: Vec<FrameRun>,
}

impl Publisher {
    pub fn new(hub: Arc<Hub>) -> Publisher {
        Publisher {
            hub,
            ticks: Vec::with_capacity(1024),
            enc: Encoded::default(),
            published: 0,
            throttled_writers: Vec::new(),
            stage: Vec::new(),
            touched: Vec::new(),
            writers: Vec::new(),
        }
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Adds `tick` to the batch (its subscribers get it at the end of the
    /// batch).
    pub fn publish(&mut self, tick: &Tick) {
        self.ticks.push(*tick);
    }

    /// Tells every subscriber of `sym` that its ticks `from..=to` are lost
    /// at the source (a broker dropped them and the feed no longer has
    /// them), between the ticks before and after the hole: the batch so far
    /// is delivered first. The message is encoded once for all.
    pub fn gap(&mut self, sym: SymbolId, from: u64, to: u64) {
        self.finish_batch();
        let frame = crate::wire::reply_frame(&tickwire_protocol::Reply::Gap {
            sym: self.hub.universe.get(sym).symbol.clone(),
            from,
            to,
        });
        let topic = self.hub.topics[sym as usize].lock();
        for sub in &topic.subscribers {
            sub.outbox.push_reply(frame.clone(), FrameKind::Text);
        }
    }

    /// Delivers the batch: encode once, stage per topic, queue per
    /// connection, wake each writer once, record the batch.
    pub fn finish_batch(&mut self) {
        if self.ticks.is_empty() {
            return;
        }
        let started = Instant::now();
        self.stage();
        self.queue();
        for w in self.writers.drain(..) {
            w.wake();
        }
        let m = self.hub.metrics();
        m.ticks_generated
            .fetch_add(self.ticks.len() as u64, Ordering::Relaxed);
        self.ticks.clear();
        m.shard()
            .fanout
            .saturating_record((started.elapsed().as_nanos() as u64).max(1));
    }

    /// Encodes the batch and, under each topic's lock, records each tick
    /// (latest, history) and notes which connections get it.
    fn stage(&mut self) {
        let hub = &*self.hub;
        let enc = &mut self.enc;
        enc.batch.clear();
        enc.binary.clear();
        enc.binary_at.clear();
        enc.sse.clear();
        enc.sse_at.clear();
        let first = self.published + 1;
        // The epoch names SSE events; read (under its lock) only when some
        // tick of the batch has SSE subscribers.
        let mut epoch: Option<Arc<str>> = None;
        for (i, t) in self.ticks.iter().enumerate() {
            let ins = hub.universe.get(t.sym);
            enc.batch.encode(t, ins);
            // The binary and SSE forms only for topics that have such
            // subscribers.
            let topic = &hub.topics[t.sym as usize];
            enc.binary_at.push(if topic.has_binary_subscribers() {
                enc.binary.encode_binary(t, ins);
                enc.binary.len() as u32 - 1
            } else {
                NOT_ENCODED
            });
            enc.sse_at.push(if topic.has_sse_subscribers() {
                let epoch = epoch.get_or_insert_with(|| hub.epoch());
                enc.sse.encode_sse(t, ins, epoch, first + i as u64);
                enc.sse.len() as u32 - 1
            } else {
                NOT_ENCODED
            });
        }
        self.published += self.ticks.len() as u64;
        enc.batch.seal();
        enc.binary.seal();
        enc.sse.seal();
        let enc = &self.enc;
        let mut folded = 0u64;
        let now = tokio::time::Instant::now();
        let mut woken = std::mem::take(&mut self.throttled_writers);
        for (i, tick) in self.ticks.iter().enumerate() {
            let published = first + i as u64;
            let i = i as u32;
            let mut topic = hub.topics[tick.sym as usize].lock();
            topic.latest = Some(*tick);
            topic.latest_published = published;
            topic.history.push(tick.seq, published, enc.batch.bytes(i));
            if !topic.throttled.is_empty() {
                folded += throttled(hub, enc, &topic, tick, i, published, now, &mut woken);
            }
            // Where this tick lies in each format's batch, once for all of
            // its subscribers.
            let json = (i, enc.batch.joins(i));
            let binary = enc.at(Format::Binary, i);
            let sse = enc.at(Format::Sse, i);
            for sub in &topic.subscribers {
                let (at, joins) = match sub.format {
                    Format::Json => json,
                    Format::Binary => binary,
                    Format::Sse => sse,
                };
                if sub.slot == u32::MAX || at == NOT_ENCODED {
                    // Not registered (only tests and benchmarks), or a binary
                    // or SSE subscriber that arrived after the batch was
                    // encoded: deliver this one directly, under the topic lock.
                    let w = if at == NOT_ENCODED {
                        sub.outbox
                            .push_frame(&encode_late(hub, sub.format, tick, published))
                    } else {
                        sub.outbox
                            .push_batch(enc.of(sub.format), &[FrameRun::one(at)], None)
                            .unwrap_or_default()
                    };
                    push_wakers(&mut self.writers, w);
                    continue;
                }
                let slot = sub.slot as usize;
                if slot >= self.stage.len() {
                    self.stage.resize_with(slot + 1, Stage::default);
                }
                let st = &mut self.stage[slot];
                match &st.outbox {
                    None => {
                        st.unsubscribes = sub.outbox.unsubscribes();
                        st.outbox = Some(sub.outbox.clone());
                        self.touched.push(sub.slot);
                    }
                    Some(o) if Arc::ptr_eq(o, &sub.outbox) => {}
                    Some(_) => {
                        // The slot changed hands within this batch (a session
                        // ended, another took its slot): deliver this one
                        // directly, under the topic lock.
                        let w = sub
                            .outbox
                            .push_batch(enc.of(sub.format), &[FrameRun::one(at)], None)
                            .unwrap_or_default();
                        push_wakers(&mut self.writers, w);
                        continue;
                    }
                }
                FrameRun::push(&mut st.runs, at, joins);
            }
        }
        self.writers.append(&mut woken);
        self.throttled_writers = woken;
        if folded > 0 {
            hub.metrics.throttled.fetch_add(folded, Ordering::Relaxed);
        }
    }

    /// Queues each staged connection's share with one outbox lock.
    fn queue(&mut self) {
        let hub = &*self.hub;
        for slot in self.touched.drain(..) {
            let st = &mut self.stage[slot as usize];
            let outbox = st.outbox.take().expect("touched slots are staged");
            let batch = self.enc.of(outbox.format());
            match outbox.push_batch(batch, &st.runs, Some(st.unsubscribes)) {
                Ok(w) => push_wakers(&mut self.writers, w),
                Err(Fenced) => {
                    // An unsubscribe overtook the batch: deliver what is
                    // still subscribed tick by tick, under each topic's
                    // lock, where the unsubscribe cannot interleave.
                    for i in st.runs.iter().flat_map(|r| r.start..r.end) {
                        let sym = batch.frame(i).sym;
                        let topic = hub.topics[sym as usize].lock();
                        if topic
                            .subscribers
                            .iter()
                            .any(|s| Arc::ptr_eq(&s.outbox, &outbox))
                        {
                            if let Ok(w) = outbox.push_batch(batch, &[FrameRun::one(i)], None) {
                                push_wakers(&mut self.writers, w);
                            }
                        }
                    }
                }
            }
            st.runs.clear();
        }
    }
}

/// Bytes of a binary tick frame (header and payload).
const BINARY_FRAME_LEN: usize = 2 + tickwire_protocol::binary::TICK_LEN;

/// A tick with no binary frame in the batch.
const NOT_ENCODED: u32 = u32::MAX;

fn push_wakers(writers: &mut Vec<Waker>, (a, b): Wakers) {
    writers.extend(a);
    writers.extend(b);
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Poll};

    use super::*;
    use crate::outbox::{FrameQueue, Limits, Next, Policy};

    fn tick(sym: SymbolId, seq: u64) -> Tick {
        Tick {
            sym,
            seq,
            ts_us: 1,
            px: 100,
            qty: 1,
            bid: 99,
            ask: 101,
        }
    }

    /// Frames the writer would get: (number of ticks, of them the replies).
    fn drain(o: &Outbox) -> Vec<FrameKind> {
        let mut batch = FrameQueue::default();
        let mut cx = Context::from_waker(Waker::noop());
        match o.poll_next(&mut cx, &mut batch) {
            Poll::Ready(Next::Frames) => batch.iter().map(|(_, kind)| kind).collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn an_unsubscribe_between_staging_and_queueing_stops_the_stream_at_its_ack() {
        let metrics = Arc::new(Metrics::default());
        let hub = Arc::new(Hub::new(
            Arc::new(Universe::synthetic(2, 1.0)),
            metrics.clone(),
            "e".into(),
            0,
        ));
        let sessions = Sessions::default();
        let o = Arc::new(Outbox::new(
            Limits {
                max_msgs: 100,
                max_bytes: 1 << 20,
            },
            Policy::Conflate,
            metrics,
        ));
        sessions.register(o.clone());
        hub.subscribe(&o, &[(0, Start::Snapshot), (1, Start::Snapshot)], 0, |_| {
            Bytes::new()
        });
        let _ = drain(&o);
        let mut p = Publisher::new(hub.clone());
        p.publish(&tick(0, 1));
        p.publish(&tick(1, 1));
        p.stage();
        // The session unsubscribes S0 and queues its ack before the batch
        // is queued.
        hub.unsubscribe(&o, &[0]);
        o.push_reply(Bytes::from_static(b"ack"), FrameKind::Text);
        p.queue();
        // The ack, then S1's tick only: S0's staged tick was dropped.
        assert_eq!(
            drain(&o),
            vec![
                FrameKind::Text,
                FrameKind::Ticks {
                    count: 1,
                    ts_ns: 1000
                }
            ]
        );
    }
}
