//! `tickwire feed`: the generator, publishing to NATS.
//!
//! The generator runs on a thread of its own, driven by the clock exactly as
//! in the single process ([`local::run`]), into a [`BrokerSink`]: per batch
//! it records the ticks in the feed's history, then hands the encoded
//! message to the publishing task through a bounded queue. The generator
//! never waits for the broker: when the queue is full (the broker is away
//! or slow) the message is dropped and counted, and gateways get those
//! ticks from the history when they see the hole.
//!
//! The history answers `PREFIX.v1.sync` requests (see [`super::wire`]):
//! gateways that start late, reconnect, or miss messages.
//!
//! Memory: the history holds at most `--history` ticks per symbol
//! (`size_of::<Tick>()` bytes each, logged at start); the queue to the
//! publisher at most [`QUEUE_MESSAGES`] messages of at most
//! [`MAX_TICKS`] ticks.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::wire::{self, Kind, SyncRequest};
use super::{Subjects, MAX_SYNC_TICKS, MAX_TICKS};
use crate::config::FeedConfig;
use crate::feed::{Generator, Tick, Universe};
use crate::shutdown::Shutdown;
use crate::source::local::{self, Sink};
use crate::sync::Mutex;

/// Messages waiting for the publishing task before the generator drops
/// more (about 4 s of demo ticks if each pass is one message).
pub const QUEUE_MESSAGES: usize = 4096;

/// How long a stopping feed waits for the broker to take what is queued.
const FLUSH_ON_EXIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The last ticks of each symbol.
pub struct History {
    rings: Vec<VecDeque<Tick>>,
    depth: usize,
}

impl History {
    pub fn new(symbols: usize, depth: usize) -> History {
        History {
            rings: (0..symbols).map(|_| VecDeque::new()).collect(),
            depth: depth.max(1),
        }
    }

    /// Most bytes the history of `symbols` takes at `depth`.
    pub fn bytes_bound(symbols: usize, depth: usize) -> usize {
        symbols * depth.max(1) * std::mem::size_of::<Tick>()
    }

    pub fn push(&mut self, t: &Tick) {
        let ring = &mut self.rings[t.sym as usize];
        if ring.len() == self.depth {
            ring.pop_front();
        }
        ring.push_back(*t);
    }

    /// The reply to `req`, for a feed of `epoch`: per entry, the newest
    /// ticks with `after < seq < until` (all of them from the start when the
    /// request names another epoch), oldest first, at most `limit` each and
    /// [`MAX_SYNC_TICKS`] in all.
    pub fn answer(&self, req: &SyncRequest, epoch: u64) -> Vec<Tick> {
        let same_epoch = req.epoch == epoch;
        let per_entry = (MAX_SYNC_TICKS / req.wants.len().max(1))
            .min(req.limit as usize)
            .max(1);
        let mut out = Vec::new();
        for w in &req.wants {
            let Some(ring) = self.rings.get(w.sym as usize) else {
                continue;
            };
            let (after, until) = if same_epoch {
                (w.after, if w.until == 0 { u64::MAX } else { w.until })
            } else {
                (0, u64::MAX)
            };
            let in_range: Vec<&Tick> = ring
                .iter()
                .filter(|t| t.seq > after && t.seq < until)
                .collect();
            let skip = in_range.len().saturating_sub(per_entry);
            if out.len() + in_range.len() - skip > MAX_SYNC_TICKS {
                break;
            }
            out.extend(in_range.into_iter().skip(skip).copied());
        }
        out
    }
}

/// What the feed did, for its summary line.
#[derive(Debug, Default)]
pub struct FeedStats {
    pub ticks: AtomicU64,
    pub messages: AtomicU64,
    /// Messages dropped because the publishing task was behind.
    pub dropped: AtomicU64,
    pub publish_errors: AtomicU64,
    pub syncs: AtomicU64,
}

/// The generator's sink in a feed: history, then the broker.
pub struct BrokerSink {
    ticks: Vec<Tick>,
    history: Arc<Mutex<History>>,
    universe: Arc<Universe>,
    fingerprint: u64,
    epoch: u64,
    queue: mpsc::Sender<Bytes>,
    stats: Arc<FeedStats>,
}

impl Sink for BrokerSink {
    fn publish(&mut self, tick: &Tick) {
        self.ticks.push(*tick);
    }

    fn finish_batch(&mut self) {
        if self.ticks.is_empty() {
            return;
        }
        {
            // Recorded before it is published: a gateway that sees the
            // message and asks for what it missed finds it here.
            let mut h = self.history.lock();
            for t in &self.ticks {
                h.push(t);
            }
        }
        for chunk in self.ticks.chunks(MAX_TICKS) {
            let msg = wire::encode_ticks(
                Kind::Ticks,
                self.epoch,
                &self.universe,
                self.fingerprint,
                chunk,
            );
            match self.queue.try_send(Bytes::from(msg)) {
                Ok(()) => {}
                Err(_) => {
                    let n = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    if super::log_worthy(n) {
                        tracing::warn!(
                            dropped = n,
                            "the broker is not taking messages; dropping (gateways fill from the feed's history)"
                        );
                    }
                }
            }
        }
        self.stats
            .ticks
            .fetch_add(self.ticks.len() as u64, Ordering::Relaxed);
        self.ticks.clear();
    }
}

/// Runs a feed until shutdown. Errors say what to change.
pub async fn run(cfg: FeedConfig, shutdown: Shutdown) -> Result<(), String> {
    let universe = Arc::new(cfg.market.universe().map_err(|e| e.to_string())?);
    let seed = cfg.market.seed.unwrap_or_else(rand::random);
    let epoch: u64 = rand::random::<u64>().max(1);
    let fingerprint = wire::fingerprint(&universe);
    let subjects = Subjects::new(&cfg.nats.prefix);
    let depth = cfg.history as usize;
    let history = Arc::new(Mutex::new(History::new(universe.len(), depth)));
    let stats = Arc::new(FeedStats::default());

    let options = super::options("tickwire-feed", |event| match event {
        async_nats::Event::Connected => tracing::info!("connected to NATS"),
        async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS; reconnecting"),
        other => tracing::warn!("NATS: {other}"),
    })
    .client_capacity(QUEUE_MESSAGES);
    let client = super::connect(&cfg.nats, options)
        .await
        .map_err(|e| format!("cannot connect to NATS at {}: {e}", cfg.nats.url))?;
    let mut requests = client
        .subscribe(subjects.sync.clone())
        .await
        .map_err(|e| format!("cannot subscribe to {}: {e}", subjects.sync))?;

    tracing::info!(
        symbols = universe.len(),
        ticks_per_s = universe.total_rate(),
        seed,
        epoch = format!("{epoch:016x}"),
        "history: {depth} ticks per symbol, at most {:.1} MiB (--history)",
        History::bytes_bound(universe.len(), depth) as f64 / (1 << 20) as f64
    );
    println!(
        "tickwire feed publishing {} symbols to {} on {} (epoch {epoch:016x})",
        universe.len(),
        cfg.nats.url,
        subjects.ticks
    );

    let (queue, mut outgoing) = mpsc::channel::<Bytes>(QUEUE_MESSAGES);
    let sink = BrokerSink {
        ticks: Vec::with_capacity(1024),
        history: history.clone(),
        universe: universe.clone(),
        fingerprint,
        epoch,
        queue,
        stats: stats.clone(),
    };
    let generator = Generator::new(&universe, seed);
    let gen_shutdown = shutdown.clone();
    let generator = std::thread::Builder::new()
        .name("tickwire-feed".into())
        .spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the feed's runtime starts")
                .block_on(local::run(generator, sink, gen_shutdown))
        })
        .map_err(|e| format!("cannot start the feed's thread: {e}"))?;

    // Publishing: in order, one message at a time (NATS keeps a publisher's
    // order on a subject).
    let publisher = {
        let client = client.clone();
        let stats = stats.clone();
        let subject = async_nats::Subject::from(subjects.ticks.as_str());
        tokio::spawn(async move {
            while let Some(msg) = outgoing.recv().await {
                match client.publish(subject.clone(), msg).await {
                    Ok(()) => {
                        stats.messages.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        let n = stats.publish_errors.fetch_add(1, Ordering::Relaxed) + 1;
                        if super::log_worthy(n) {
                            tracing::warn!(errors = n, "publish failed: {e}");
                        }
                    }
                }
            }
            // Bounded: with the broker gone, shutting down must not wait
            // for it.
            let _ = tokio::time::timeout(FLUSH_ON_EXIT, client.flush()).await;
        })
    };

    let mut summary = tokio::time::interval(cfg.summary);
    summary.tick().await;
    let mut last_ticks = 0;
    loop {
        tokio::select! {
            () = shutdown.triggered() => break,
            _ = summary.tick() => {
                let ticks = stats.ticks.load(Ordering::Relaxed);
                tracing::info!(
                    ticks_per_s = ((ticks - last_ticks) as f64 / cfg.summary.as_secs_f64()).round(),
                    messages = stats.messages.load(Ordering::Relaxed),
                    dropped = stats.dropped.load(Ordering::Relaxed),
                    publish_errors = stats.publish_errors.load(Ordering::Relaxed),
                    syncs = stats.syncs.load(Ordering::Relaxed),
                    "feed"
                );
                last_ticks = ticks;
            }
            req = requests.next() => {
                let Some(req) = req else { break };
                let Some(reply) = req.reply else { continue };
                let answer = match SyncRequest::decode(&req.payload) {
                    Ok(r) if r.fingerprint == fingerprint => history.lock().answer(&r, epoch),
                    Ok(r) => {
                        tracing::warn!(
                            "a gateway with another universe ({:016x}) asked for a sync; it needs this feed's flags",
                            r.fingerprint
                        );
                        Vec::new()
                    }
                    Err(e) => {
                        tracing::warn!("malformed sync request: {e}");
                        continue;
                    }
                };
                let msg = wire::encode_ticks(Kind::SyncReply, epoch, &universe, fingerprint, &answer);
                stats.syncs.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = client.publish(reply, Bytes::from(msg)).await {
                    tracing::warn!("cannot answer a sync request: {e}");
                }
            }
        }
    }
    let _ = tokio::task::spawn_blocking(move || generator.join()).await;
    // The generator's sink (the queue's only sender) is gone: the publisher
    // drains what is queued and flushes, unless the broker is away.
    if tokio::time::timeout(2 * FLUSH_ON_EXIT, publisher)
        .await
        .is_err()
    {
        tracing::warn!("the broker did not take the last messages; exiting without them");
    }
    tracing::info!("feed shut down");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::wire::Want;
    use super::*;

    fn tick(sym: u32, seq: u64) -> Tick {
        Tick {
            sym,
            seq,
            ts_us: seq,
            px: 1,
            qty: 1,
            bid: 1,
            ask: 1,
        }
    }

    #[test]
    fn the_history_answers_ranges_newest_first_within_limits() {
        let mut h = History::new(3, 4);
        for seq in 1..=10 {
            h.push(&tick(0, seq));
        }
        h.push(&tick(1, 1));
        let seqs = |req: &SyncRequest, epoch| -> Vec<(u32, u64)> {
            h.answer(req, epoch)
                .iter()
                .map(|t| (t.sym, t.seq))
                .collect()
        };
        let want = |sym, after, until| Want { sym, after, until };
        let mut req = SyncRequest {
            epoch: 5,
            fingerprint: 0,
            limit: 100,
            wants: vec![want(0, 7, 0), want(1, 0, 0), want(2, 0, 0)],
        };
        assert_eq!(seqs(&req, 5), vec![(0, 8), (0, 9), (0, 10), (1, 1)]);
        // Depth 4: seqs 7..=10 are held; asking after 2 gets what is left.
        req.wants = vec![want(0, 2, 9)];
        assert_eq!(seqs(&req, 5), vec![(0, 7), (0, 8)]);
        req.limit = 1;
        req.wants = vec![want(0, 0, 0)];
        assert_eq!(seqs(&req, 5), vec![(0, 10)], "the newest, within the limit");
        // Another epoch: everything from the start.
        req.limit = 100;
        req.wants = vec![want(0, 9, 10)];
        assert_eq!(seqs(&req, 6).len(), 4);
    }
}
