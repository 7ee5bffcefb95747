//! A gateway's source: ticks from NATS into the hub's
//! [`Publisher`], in each symbol's seq order, each
//! tick once.
//!
//! It keeps the next seq it expects per symbol and checks every tick
//! against it:
//! - the expected seq: published;
//! - an older one: a duplicate (a sync overlapping the live stream), dropped;
//! - a newer one: a hole (core NATS is at-most-once: a reconnect, or a
//!   full subscription buffer). The missing ticks are asked from the feed
//!   and published first, in order; those the feed no longer has are lost
//!   for good, and the symbol's subscribers get a `gap` message naming
//!   exactly them before the next tick (its history restarts after the
//!   hole, so no resume is recovered across it). Never a silent hole.
//!
//! The feed's epoch becomes the hub's ([`Hub::adopt_epoch`]), so seqs, history
//! and resume mean the same on every gateway. At start (and whenever the
//! epoch changes, and after a reconnect) the source syncs every symbol from
//! the feed: the server accepts connections only once the first sync is done,
//! so a gateway started late serves snapshots and history at once.
//!
//! The reader never waits for clients (the hub's fan-out only queues), so the
//! NATS client's buffer of [`SUBSCRIPTION_CAPACITY`] messages (at most
//! [`MAX_TICKS`](super::MAX_TICKS) ticks each) only fills if this thread is
//! starved; what it drops is counted and repaired like any hole.
//!
//! [`Hub::adopt_epoch`]: crate::hub::Hub::adopt_epoch

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, StreamExt};
use tokio::sync::{mpsc, oneshot};

use super::wire::{self, Kind, SyncRequest, Want};
use super::{Subjects, MAX_SYNC_TICKS};
use crate::clock;
use crate::config::NatsArgs;
use crate::feed::{SymbolId, Tick};
use crate::hub::Publisher;
use crate::metrics::{BrokerMetrics, Metrics};
use crate::shutdown::Shutdown;

/// Broker messages the NATS client buffers for the gateway before it drops
/// (async-nats's default is 65,536; with up to 57 KiB per message that is a
/// bound of 3.6 GiB, this one 230 MiB, far above a normal backlog).
pub const SUBSCRIPTION_CAPACITY: usize = 4096;

/// Broker messages handed to the hub as one batch at most (when they queued
/// up, one fan-out for all).
const MESSAGES_PER_BATCH: usize = 64;

/// The gateway's source, before it runs.
pub struct Gateway {
    pub nats: NatsArgs,
    /// Told once the first sync is done (or failed): the server accepts
    /// connections from then on.
    pub ready: Option<oneshot::Sender<()>>,
}

/// Connection changes, from the NATS client's callback.
enum Link {
    Connected,
    Disconnected,
}

struct State {
    publisher: Publisher,
    client: async_nats::Client,
    subjects: Subjects,
    fingerprint: u64,
    /// The feed's epoch (0: not heard from it yet).
    epoch: u64,
    /// Per symbol, the seq expected next (0: unknown, take what comes).
    next: Vec<u64>,
    /// Ticks asked per symbol in a sync.
    limit: u32,
    scratch: Vec<Tick>,
    metrics: Arc<Metrics>,
    /// After a sync request failed, no other is made before this instant:
    /// holes seen meanwhile are announced as gaps at once, so a dead feed
    /// never stalls the live stream for a request timeout per hole.
    feed_quiet_until: Option<Instant>,
    /// A sync found no feed to answer: the next live message (proof that
    /// the feed is back) syncs every symbol before its ticks are checked.
    resync: bool,
    shutdown: Shutdown,
}

/// How long the gateway stops asking a feed that did not answer.
const FEED_BACKOFF: Duration = Duration::from_secs(1);

/// How long a starting gateway keeps asking the feed for its state before
/// it serves anyway (from the live stream, whose first ticks then name the
/// epoch). Until then no connection is accepted: a gateway that welcomed
/// clients before its first sync would hand them its own epoch, which
/// changes under them a moment later.
const STARTUP_SYNC: Duration = Duration::from_secs(10);

fn broker(m: &Metrics) -> &BrokerMetrics {
    &m.broker
}

/// Runs until shutdown.
pub async fn run(gateway: Gateway, publisher: Publisher, shutdown: Shutdown) {
    let hub = publisher.hub().clone();
    let metrics = hub.metrics().clone();
    broker(&metrics).enable();
    let (links, mut link_events) = mpsc::unbounded_channel();
    let m = metrics.clone();
    let options = super::options("tickwire-gateway", move |event| {
        let b = broker(&m);
        match event {
            async_nats::Event::Connected => {
                b.connected.store(true, Ordering::Relaxed);
                let _ = links.send(Link::Connected);
            }
            async_nats::Event::Disconnected => {
                b.connected.store(false, Ordering::Relaxed);
                BrokerMetrics::add(&b.disconnects, 1);
                tracing::warn!("disconnected from NATS; reconnecting");
                let _ = links.send(Link::Disconnected);
            }
            async_nats::Event::SlowConsumer(_) => {
                let n = b.slow_consumer_drops.fetch_add(1, Ordering::Relaxed) + 1;
                if super::log_worthy(n) {
                    tracing::warn!(
                        dropped = n,
                        "the NATS client dropped messages (subscription buffer full); the holes are filled from the feed"
                    );
                }
            }
            other => tracing::warn!("NATS: {other}"),
        }
    })
    .subscription_capacity(SUBSCRIPTION_CAPACITY);
    let mut ready = gateway.ready;
    let client = match super::connect(&gateway.nats, options).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("cannot connect to NATS at {}: {e}", gateway.nats.url);
            return;
        }
    };
    let subjects = Subjects::new(&gateway.nats.prefix);
    let mut ticks = match client.subscribe(subjects.ticks.clone()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot subscribe to {}: {e}", subjects.ticks);
            return;
        }
    };
    let symbols = hub.universe().len();
    let mut st = State {
        publisher,
        client,
        subjects,
        fingerprint: wire::fingerprint(hub.universe()),
        epoch: 0,
        next: vec![0; symbols],
        limit: hub.history_depth().clamp(1, MAX_SYNC_TICKS) as u32,
        scratch: Vec::new(),
        metrics,
        feed_quiet_until: None,
        resync: false,
        shutdown: shutdown.clone(),
    };
    let give_up = Instant::now() + STARTUP_SYNC;
    loop {
        st.sync_all().await;
        // A feed just started may not have its sync responder registered
        // with the broker yet ("no responders"): ask again, briefly.
        if st.epoch != 0 || Instant::now() >= give_up || shutdown.is_triggered() {
            break;
        }
        st.feed_quiet_until = None;
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
            () = shutdown.triggered() => return,
        }
    }
    if let Some(r) = ready.take() {
        let _ = r.send(());
    }
    let mut connected_before = true;
    loop {
        tokio::select! {
            biased;
            () = shutdown.triggered() => return,
            link = link_events.recv() => match link {
                Some(Link::Connected) => {
                    if !connected_before {
                        BrokerMetrics::add(&broker(&st.metrics).reconnects, 1);
                        tracing::info!("reconnected to NATS; syncing with the feed");
                        // Whatever failed during the outage, ask again now.
                        st.feed_quiet_until = None;
                        st.sync_all().await;
                    } else {
                        tracing::info!("connected to NATS");
                    }
                    connected_before = true;
                }
                Some(Link::Disconnected) => connected_before = false,
                None => return,
            },
            msg = ticks.next() => {
                let Some(msg) = msg else { return };
                st.on_message(&msg.payload).await;
                // Whatever else is already here joins the same fan-out.
                for _ in 1..MESSAGES_PER_BATCH {
                    match ticks.next().now_or_never() {
                        Some(Some(msg)) => st.on_message(&msg.payload).await,
                        _ => break,
                    }
                }
                st.publisher.finish_batch();
            }
        }
    }
}

impl State {
    fn broker(&self) -> &BrokerMetrics {
        &self.metrics.broker
    }

    /// A batch of live ticks.
    async fn on_message(&mut self, payload: &[u8]) {
        let hub = self.publisher.hub().clone();
        let mut ticks = std::mem::take(&mut self.scratch);
        let header = wire::decode_ticks(
            payload,
            Kind::Ticks,
            hub.universe(),
            self.fingerprint,
            &mut ticks,
        );
        match header {
            Ok(h) => {
                let b = self.broker();
                BrokerMetrics::add(&b.messages, 1);
                BrokerMetrics::add(&b.ticks_received, ticks.len() as u64);
                if let Some(last) = ticks.last() {
                    b.record_lag(last.ts_us, clock::wall_us());
                }
                if h.epoch != self.epoch {
                    self.adopt(h.epoch);
                    self.resync = true;
                }
                if std::mem::take(&mut self.resync) {
                    self.sync_all().await;
                }
                for t in &ticks {
                    self.live(t).await;
                }
            }
            Err(e) => self.refuse(e),
        }
        self.scratch = ticks;
    }

    fn refuse(&self, e: wire::Error) {
        let n = self.broker().foreign.fetch_add(1, Ordering::Relaxed) + 1;
        if super::log_worthy(n) {
            tracing::error!(count = n, "dropped a broker message: {e}");
        }
    }

    /// Switches to the feed's `epoch`: what the hub held belongs to
    /// another seq space.
    fn adopt(&mut self, epoch: u64) {
        let hex = format!("{epoch:016x}");
        if self.publisher.hub().adopt_epoch(&hex) {
            tracing::info!(epoch = hex, "following the feed's epoch");
        }
        self.epoch = epoch;
        self.next.iter_mut().for_each(|n| *n = 0);
    }

    /// One live tick, checked against the seq expected next.
    async fn live(&mut self, t: &Tick) {
        let next = self.next[t.sym as usize];
        if next != 0 && t.seq < next {
            BrokerMetrics::add(&self.broker().duplicates, 1);
            return;
        }
        if next != 0 && t.seq > next {
            BrokerMetrics::add(&self.broker().holes, 1);
            self.fill(t.sym, next, t.seq).await;
        }
        self.accept(t);
    }

    /// Publishes `t`, the symbol's next tick.
    fn accept(&mut self, t: &Tick) {
        self.publisher.publish(t);
        self.next[t.sym as usize] = t.seq + 1;
    }

    /// Asks the feed for ticks `from..until` of `sym` and publishes them in
    /// order; what it no longer has is announced as a gap.
    async fn fill(&mut self, sym: SymbolId, from: u64, until: u64) {
        let want = Want {
            sym,
            after: from - 1,
            until,
        };
        let got = self.request(vec![want], (until - from) as u32).await;
        let mut got = match got {
            Some((epoch, ticks)) if epoch == self.epoch => ticks,
            _ => Vec::new(),
        };
        got.retain(|t| t.sym == sym && t.seq >= from && t.seq < until);
        let first = got.first().map_or(until, |t| t.seq);
        if first > from {
            self.gap(sym, from, first - 1);
        }
        let mut expected = first;
        for t in &got {
            if t.seq != expected {
                // The feed's ring is contiguous; anything else is a bug there.
                self.gap(sym, expected, t.seq - 1);
            }
            BrokerMetrics::add(&self.broker().ticks_filled, 1);
            self.accept(t);
            expected = t.seq + 1;
        }
    }

    /// Ticks `from..=to` of `sym` are lost: its subscribers are told.
    fn gap(&mut self, sym: SymbolId, from: u64, to: u64) {
        BrokerMetrics::add(&self.broker().ticks_missed, to + 1 - from);
        let name = self.publisher.hub().universe().get(sym).symbol.clone();
        tracing::warn!(
            symbol = name,
            from,
            to,
            "ticks lost on the broker and no longer held by the feed; clients are told"
        );
        self.publisher.gap(sym, from, to);
        self.next[sym as usize] = to + 1;
    }

    /// Syncs every symbol with the feed: the ticks after the ones this
    /// gateway has (the latest `limit` of each when it has none), in pages
    /// of at most [`MAX_SYNC_TICKS`] ticks. Tries twice when the feed's epoch
    /// turns out to be another.
    async fn sync_all(&mut self) {
        let symbols = self.next.len() as u32;
        let page = (MAX_SYNC_TICKS / self.limit as usize).max(1) as u32;
        let mut start = 0;
        let mut restarts = 0;
        while start < symbols {
            let end = (start + page).min(symbols);
            let wants = (start..end)
                .map(|sym| Want {
                    sym,
                    after: self.next[sym as usize].saturating_sub(1),
                    until: 0,
                })
                .collect();
            let Some((epoch, ticks)) = self.request(wants, self.limit).await else {
                break;
            };
            if epoch != self.epoch {
                self.adopt(epoch);
                if restarts == 0 {
                    restarts += 1;
                    start = 0;
                    continue;
                }
            }
            for t in &ticks {
                if t.sym < start || t.sym >= end {
                    continue;
                }
                let next = self.next[t.sym as usize];
                if next != 0 && t.seq < next {
                    continue;
                }
                if next != 0 && t.seq > next {
                    self.gap(t.sym, next, t.seq - 1);
                }
                if next != 0 {
                    // Not (yet) seen live: sent again by the feed.
                    BrokerMetrics::add(&self.broker().ticks_filled, 1);
                }
                self.accept(t);
            }
            for sym in start..end {
                // Nothing held at the feed: the symbol has not traded yet.
                let n = &mut self.next[sym as usize];
                if *n == 0 {
                    *n = 1;
                }
            }
            self.publisher.finish_batch();
            start = end;
        }
    }

    /// One sync request; `None` (counted) when the feed does not answer.
    async fn request(&mut self, wants: Vec<Want>, limit: u32) -> Option<(u64, Vec<Tick>)> {
        if self
            .feed_quiet_until
            .is_some_and(|until| Instant::now() < until)
            || self.shutdown.is_triggered()
        {
            return None;
        }
        let metrics = self.metrics.clone();
        let b = &metrics.broker;
        BrokerMetrics::add(&b.syncs, 1);
        let req = SyncRequest {
            epoch: self.epoch,
            fingerprint: self.fingerprint,
            limit: limit.max(1),
            wants,
        };
        let reply = tokio::select! {
            r = self.client.request(self.subjects.sync.clone(), req.encode().into()) => r,
            () = self.shutdown.triggered() => return None,
        };
        let reply = match reply {
            Ok(r) => {
                self.feed_quiet_until = None;
                r
            }
            Err(e) => {
                // A request that timed out cost a request timeout of waiting:
                // not again soon. "No responders" is instant (the feed is
                // not subscribed right now, e.g. still reconnecting): the
                // next live message (the feed is back) syncs again.
                if e.kind() == async_nats::client::RequestErrorKind::NoResponders {
                    self.resync = true;
                } else {
                    self.feed_quiet_until = Some(Instant::now() + FEED_BACKOFF);
                }
                let n = b.sync_failures.fetch_add(1, Ordering::Relaxed) + 1;
                if super::log_worthy(n) {
                    tracing::warn!(failures = n, "no sync from the feed: {e}");
                }
                return None;
            }
        };
        let hub = self.publisher.hub().clone();
        let mut ticks = Vec::new();
        match wire::decode_ticks(
            &reply.payload,
            Kind::SyncReply,
            hub.universe(),
            self.fingerprint,
            &mut ticks,
        ) {
            Ok(h) => Some((h.epoch, ticks)),
            Err(e) => {
                BrokerMetrics::add(&self.broker().sync_failures, 1);
                self.refuse(e);
                None
            }
        }
    }
}
