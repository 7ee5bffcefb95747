//! Counters and latency histograms, kept off the hot path's critical section.
//!
//! Writers and the source record into one of a few [`Shard`]s chosen by
//! thread, taking its (practically uncontended) lock once per write batch,
//! never per message and never a global one. The reporter calls
//! [`Metrics::roll`] every second: it folds the shards into a ring of ten
//! one-second slices (the 10 s window of `/api/stats`) and into since-start
//! totals. Rare events (connections, conflations, disconnects, errors) are
//! plain atomics.
//!
//! Latency is measured in nanoseconds from a tick's generation time to the
//! moment the syscall that wrote its bytes returned; fan-out time is how long
//! the source took to deliver one batch of ticks (those due together) into
//! every subscriber's queue and wake the writers.
//!
//! - [`stats`]: the `/api/stats` body, assembled from a snapshot.
//! - [`prometheus`]: the `/metrics` text.
//! - [`broker`]: a gateway's NATS link.

pub mod broker;
mod prometheus;
pub mod stats;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use hdrhistogram::Histogram;
use tickwire_protocol::ErrorCode;

use crate::close::DisconnectReason;
use crate::server::admission::RejectReason;
use crate::sync::{Mutex, MutexGuard};
pub use broker::BrokerMetrics;
pub use stats::{Percentiles, Rates, Stats, Totals, Windowed};

fn histogram() -> Histogram<u64> {
    // 1 ns .. 60 s at 3 significant figures (~216 KiB): per shard and per
    // rolled second, never per connection.
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

/// What one thread recorded since the last roll.
pub struct Shard {
    pub latency: Histogram<u64>,
    pub fanout: Histogram<u64>,
    pub msgs_sent: u64,
    pub ticks_sent: u64,
    pub bytes_sent: u64,
    pub writes: u64,
}

impl Shard {
    pub(crate) fn new() -> Shard {
        Shard {
            latency: histogram(),
            fanout: histogram(),
            msgs_sent: 0,
            ticks_sent: 0,
            bytes_sent: 0,
            writes: 0,
        }
    }

    fn add(&mut self, o: &Shard) {
        self.latency.add(&o.latency).expect("same bounds");
        self.fanout.add(&o.fanout).expect("same bounds");
        self.msgs_sent += o.msgs_sent;
        self.ticks_sent += o.ticks_sent;
        self.bytes_sent += o.bytes_sent;
        self.writes += o.writes;
    }

    fn reset(&mut self) {
        self.latency.reset();
        self.fanout.reset();
        self.msgs_sent = 0;
        self.ticks_sent = 0;
        self.bytes_sent = 0;
        self.writes = 0;
    }
}

/// One rolled interval (a second, or everything since start): what the
/// shards recorded in it, plus the feed's count and the interval's length.
pub(crate) struct Slice {
    pub(crate) sent: Shard,
    pub(crate) ticks_generated: u64,
    pub(crate) secs: f64,
}

impl Slice {
    pub(crate) fn new() -> Slice {
        Slice {
            sent: Shard::new(),
            ticks_generated: 0,
            secs: 0.0,
        }
    }

    pub(crate) fn add(&mut self, o: &Slice) {
        self.sent.add(&o.sent);
        self.ticks_generated += o.ticks_generated;
        self.secs += o.secs;
    }
}

const WINDOW_SECS: usize = 10;

pub(crate) struct Rollup {
    pub(crate) window: VecDeque<Slice>,
    pub(crate) total: Slice,
    last_roll: Instant,
    ticks_generated_at_roll: u64,
}

/// Every counter and histogram of the server.
pub struct Metrics {
    shards: Vec<Mutex<Shard>>,
    pub(crate) rollup: Mutex<Rollup>,
    pub(crate) started: Instant,
    pub connections: AtomicI64,
    pub subscriptions: AtomicI64,
    pub ticks_generated: AtomicU64,
    /// Refusals by admission, by [`RejectReason`].
    pub(crate) rejected: [AtomicU64; RejectReason::ALL.len()],
    /// Connections dropped as slow consumers still waiting for their client
    /// to read the close frame.
    pub closing_slow: AtomicI64,
    pub(crate) resumes_recovered: AtomicU64,
    pub(crate) resumes_lost: AtomicU64,
    pub(crate) replayed_ticks: AtomicU64,
    pub(crate) conflated: AtomicU64,
    /// Runs of ticks copied into a queue instead of shared, because the
    /// queue already kept its budget of feed chunks alive
    /// ([`PIN_BUDGET_BYTES`](crate::outbox::PIN_BUDGET_BYTES)).
    pub(crate) copied_runs: AtomicU64,
    /// Ticks a throttled view replaced before its interval ended (folded).
    pub(crate) throttled: AtomicU64,
    /// Ticks a throttled view sent at the end of an interval.
    pub(crate) throttled_delayed: AtomicU64,
    /// Open Server-Sent Events streams (also counted in `connections`).
    pub sse_streams: AtomicI64,
    pub(crate) disconnects: [AtomicU64; DisconnectReason::ALL.len()],
    pub(crate) errors: [AtomicU64; ErrorCode::ALL.len()],
    /// A gateway's broker link (reported only by gateways).
    pub broker: BrokerMetrics,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;
        Metrics {
            shards: (0..n.max(4)).map(|_| Mutex::new(Shard::new())).collect(),
            rollup: Mutex::new(Rollup {
                window: VecDeque::with_capacity(WINDOW_SECS + 1),
                total: Slice::new(),
                last_roll: Instant::now(),
                ticks_generated_at_roll: 0,
            }),
            started: Instant::now(),
            connections: AtomicI64::new(0),
            subscriptions: AtomicI64::new(0),
            ticks_generated: AtomicU64::new(0),
            rejected: Default::default(),
            closing_slow: AtomicI64::new(0),
            resumes_recovered: AtomicU64::new(0),
            resumes_lost: AtomicU64::new(0),
            replayed_ticks: AtomicU64::new(0),
            conflated: AtomicU64::new(0),
            copied_runs: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            throttled_delayed: AtomicU64::new(0),
            sse_streams: AtomicI64::new(0),
            disconnects: Default::default(),
            errors: Default::default(),
            broker: BrokerMetrics::default(),
        }
    }
}

thread_local! {
    static SHARD_INDEX: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed)
    };
}

impl Metrics {
    /// This thread's shard, locked. Hold it for one batch, not across awaits.
    pub fn shard(&self) -> MutexGuard<'_, Shard> {
        let i = SHARD_INDEX.with(|i| *i) % self.shards.len();
        self.shards[i].lock()
    }

    pub fn add_conflated(&self, n: u64) {
        self.conflated.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_copied_runs(&self, n: u64) {
        self.copied_runs.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts the symbols of a subscribe that asked to resume (`Some`), by
    /// outcome, and the ticks replayed for them.
    pub fn count_resumes(&self, recovered: &[Option<bool>], replayed: u64) {
        let yes = recovered.iter().filter(|r| **r == Some(true)).count() as u64;
        let no = recovered.iter().filter(|r| **r == Some(false)).count() as u64;
        if yes + no > 0 {
            self.resumes_recovered.fetch_add(yes, Ordering::Relaxed);
            self.resumes_lost.fetch_add(no, Ordering::Relaxed);
            self.replayed_ticks.fetch_add(replayed, Ordering::Relaxed);
        }
    }

    pub fn count_error(&self, code: ErrorCode) {
        let i = ErrorCode::ALL.iter().position(|x| *x == code).unwrap();
        self.errors[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_rejected(&self, r: RejectReason) {
        let i = RejectReason::ALL.iter().position(|x| *x == r).unwrap();
        self.rejected[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Refusals of `r` so far.
    pub fn rejected(&self, r: RejectReason) -> u64 {
        let i = RejectReason::ALL.iter().position(|x| *x == r).unwrap();
        self.rejected[i].load(Ordering::Relaxed)
    }

    pub fn count_disconnect(&self, r: DisconnectReason) {
        let i = DisconnectReason::ALL.iter().position(|x| *x == r).unwrap();
        self.disconnects[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Folds the shards into the rolling window; the server calls it every
    /// second.
    pub fn roll(&self) {
        let mut slice = Slice::new();
        for shard in &self.shards {
            let mut s = shard.lock();
            slice.sent.add(&s);
            s.reset();
        }
        let mut r = self.rollup.lock();
        let generated = self.ticks_generated.load(Ordering::Relaxed);
        slice.ticks_generated = generated - r.ticks_generated_at_roll;
        r.ticks_generated_at_roll = generated;
        slice.secs = r.last_roll.elapsed().as_secs_f64();
        r.last_roll = Instant::now();
        r.total.add(&slice);
        r.window.push_back(slice);
        if r.window.len() > WINDOW_SECS {
            r.window.pop_front();
        }
    }

    /// Exact counters: rolled totals plus what the shards hold now.
    pub fn snapshot_totals(&self) -> Totals {
        let mut t = {
            let r = self.rollup.lock();
            Totals {
                ticks_generated: self.ticks_generated.load(Ordering::Relaxed),
                msgs_sent: r.total.sent.msgs_sent,
                ticks_sent: r.total.sent.ticks_sent,
                bytes_sent: r.total.sent.bytes_sent,
                writes: r.total.sent.writes,
                conflated: self.conflated.load(Ordering::Relaxed),
                copied_runs: self.copied_runs.load(Ordering::Relaxed),
                throttled: self.throttled.load(Ordering::Relaxed),
                throttled_delayed: self.throttled_delayed.load(Ordering::Relaxed),
                rejected_connections: self
                    .rejected
                    .iter()
                    .map(|c| c.load(Ordering::Relaxed))
                    .sum(),
                rejected: RejectReason::ALL
                    .iter()
                    .zip(&self.rejected)
                    .map(|(r, c)| (r.label(), c.load(Ordering::Relaxed)))
                    .collect(),
                resumes_recovered: self.resumes_recovered.load(Ordering::Relaxed),
                resumes_lost: self.resumes_lost.load(Ordering::Relaxed),
                replayed_ticks: self.replayed_ticks.load(Ordering::Relaxed),
                disconnects: DisconnectReason::ALL
                    .iter()
                    .zip(&self.disconnects)
                    .map(|(r, c)| (r.label(), c.load(Ordering::Relaxed)))
                    .collect(),
                errors: ErrorCode::ALL
                    .iter()
                    .zip(&self.errors)
                    .map(|(e, c)| (e.label(), c.load(Ordering::Relaxed)))
                    .collect(),
            }
        };
        for shard in &self.shards {
            let s = shard.lock();
            t.msgs_sent += s.msgs_sent;
            t.ticks_sent += s.ticks_sent;
            t.bytes_sent += s.bytes_sent;
            t.writes += s.writes;
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roll_moves_shards_into_window_and_totals() {
        let m = Metrics::default();
        {
            let mut s = m.shard();
            s.latency.record(1_000).unwrap();
            s.latency.record(3_000_000).unwrap();
            s.msgs_sent += 2;
            s.writes += 1;
        }
        assert_eq!(m.snapshot_totals().msgs_sent, 2);
        m.roll();
        m.shard().msgs_sent += 1;
        let st = m.stats(1, (0, 0));
        assert_eq!(st.totals.msgs_sent, 3);
        assert_eq!(st.latency_us.window_10s.count, 2);
        assert!((st.latency_us.window_10s.max - 3000.0).abs() < 5.0);
        let text = m.prometheus(1, (0, 0));
        assert!(text.contains("tickwire_messages_sent_total 3"));
        assert!(text.contains("tickwire_tick_latency_seconds_bucket{le=\"0.001\"} 1"));
        assert!(text.contains("tickwire_tick_latency_seconds_count 2"));
    }
}
