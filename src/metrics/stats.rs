//! The body of `GET /api/stats`: rates and percentiles over the last 10 s
//! and since start, and the exact counters.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::sync::atomic::Ordering;

use super::{Metrics, Slice};
use crate::close::DisconnectReason;

/// Exact counters since start.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Totals {
    pub ticks_generated: u64,
    pub msgs_sent: u64,
    pub ticks_sent: u64,
    pub bytes_sent: u64,
    pub writes: u64,
    pub conflated: u64,
    /// Runs of ticks a lagging connection's queue copied instead of
    /// sharing (it already kept its budget of feed chunks alive).
    pub copied_runs: u64,
    /// Ticks folded by throttled views (a newer tick replaced them before
    /// the interval ended); apart from `conflated`.
    pub throttled: u64,
    /// Ticks throttled views held until their interval ended.
    pub throttled_delayed: u64,
    /// Connections and requests refused by admission, all reasons.
    pub rejected_connections: u64,
    /// The same by reason (`tickwire_rejected_connections_total{reason}`).
    pub rejected: std::collections::BTreeMap<&'static str, u64>,
    /// Symbols resumed with every missed tick replayed.
    pub resumes_recovered: u64,
    /// Symbols that asked to resume but got a snapshot instead.
    pub resumes_lost: u64,
    /// Ticks replayed from history by resumes.
    pub replayed_ticks: u64,
    pub disconnects: std::collections::BTreeMap<&'static str, u64>,
    /// `error` replies sent, by code.
    pub errors: std::collections::BTreeMap<&'static str, u64>,
}

impl Totals {
    pub fn disconnects_for(&self, r: DisconnectReason) -> u64 {
        self.disconnects.get(r.label()).copied().unwrap_or(0)
    }
}

/// Percentiles of a histogram, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    pub(crate) fn of(h: &Histogram<u64>) -> Percentiles {
        let us = |ns: u64| ns as f64 / 1000.0;
        if h.is_empty() {
            return Percentiles {
                count: 0,
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                p999: 0.0,
                max: 0.0,
            };
        }
        Percentiles {
            count: h.len(),
            p50: us(h.value_at_quantile(0.5)),
            p90: us(h.value_at_quantile(0.9)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Windowed {
    pub window_10s: Percentiles,
    pub since_start: Percentiles,
}

#[derive(Debug, Clone, Serialize)]
pub struct Rates {
    pub ticks_per_s: f64,
    pub msgs_per_s: f64,
    pub bytes_per_s: f64,
    /// Messages per write syscall: how well writes are batched.
    pub msgs_per_write: f64,
}

/// The body of `GET /api/stats`.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub uptime_s: f64,
    pub connections: i64,
    pub subscriptions: i64,
    /// Slow consumers still given time to read their close frame.
    pub closing_slow: i64,
    pub symbols: usize,
    /// Frames and bytes waiting in all connections' queues right now.
    pub queued_msgs: usize,
    pub queued_bytes: usize,
    pub rates: Rates,
    pub totals: Totals,
    pub latency_us: Windowed,
    pub fanout_us: Windowed,
    /// Only on a gateway: its NATS link.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker: Option<super::broker::BrokerStats>,
}

impl Metrics {
    pub fn stats(&self, symbols: usize, queued: (usize, usize)) -> Stats {
        let totals = self.snapshot_totals();
        let r = self.rollup.lock();
        let mut window = Slice::new();
        for s in &r.window {
            window.add(s);
        }
        let secs = window.secs.max(1e-9);
        let rates = Rates {
            ticks_per_s: window.ticks_generated as f64 / secs,
            msgs_per_s: window.sent.msgs_sent as f64 / secs,
            bytes_per_s: window.sent.bytes_sent as f64 / secs,
            msgs_per_write: if window.sent.writes == 0 {
                0.0
            } else {
                window.sent.msgs_sent as f64 / window.sent.writes as f64
            },
        };
        Stats {
            uptime_s: self.started.elapsed().as_secs_f64(),
            connections: self.connections.load(Ordering::Relaxed),
            subscriptions: self.subscriptions.load(Ordering::Relaxed),
            closing_slow: self.closing_slow.load(Ordering::Relaxed),
            symbols,
            queued_msgs: queued.0,
            queued_bytes: queued.1,
            rates,
            totals,
            latency_us: Windowed {
                window_10s: Percentiles::of(&window.sent.latency),
                since_start: Percentiles::of(&r.total.sent.latency),
            },
            fanout_us: Windowed {
                window_10s: Percentiles::of(&window.sent.fanout),
                since_start: Percentiles::of(&r.total.sent.fanout),
            },
            broker: self.broker.stats(),
        }
    }
}
