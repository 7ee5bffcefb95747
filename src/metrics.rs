//! Counters and latency histograms, kept off the hot path's critical section.
//!
//! Writers and the feed record into one of a few [`Shard`]s chosen by thread,
//! taking its (practically uncontended) lock once per write batch, never per
//! message and never a global one. A reporter calls [`Metrics::roll`] every
//! second: it folds the shards into a ring of ten one-second slices (the 10 s
//! window of `/api/stats`) and into since-start totals. Rare events
//! (connections, conflations, disconnects) are plain atomics.
//!
//! Latency is measured in nanoseconds from a tick's generation time to the
//! moment the syscall that wrote its bytes returned; fan-out time is how long
//! the feed took to queue one tick for all of its subscribers.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

use crate::protocol::ErrorCode;
use serde::Serialize;

/// Wall-clock nanoseconds since the Unix epoch.
pub fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Wall-clock microseconds since the Unix epoch (the wire's `ts`).
pub fn wall_us() -> u64 {
    wall_ns() / 1000
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Milliseconds on a process-wide monotonic clock: the connections' clocks
/// (heartbeat, ping, idle) are kept on it.
pub fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

/// The instant `ms` milliseconds into [`now_ms`]'s clock.
pub fn instant_at_ms(ms: u64) -> tokio::time::Instant {
    (epoch() + std::time::Duration::from_millis(ms)).into()
}

/// Why the server ended a connection (the label of the disconnect counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client closed, or its socket went away.
    Client,
    SlowConsumer,
    IdleTimeout,
    Shutdown,
    /// A binary frame (close 1003).
    UnsupportedData,
    /// A message over the size limit (close 1009).
    MessageTooBig,
    /// Invalid UTF-8 text (close 1007).
    InvalidPayload,
    /// A WebSocket protocol violation (close 1002).
    ProtocolError,
    /// Error or rate-limit storms (close 1008).
    Abuse,
}

impl DisconnectReason {
    pub const ALL: [DisconnectReason; 9] = [
        DisconnectReason::Client,
        DisconnectReason::SlowConsumer,
        DisconnectReason::IdleTimeout,
        DisconnectReason::Shutdown,
        DisconnectReason::UnsupportedData,
        DisconnectReason::MessageTooBig,
        DisconnectReason::InvalidPayload,
        DisconnectReason::ProtocolError,
        DisconnectReason::Abuse,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DisconnectReason::Client => "client",
            DisconnectReason::SlowConsumer => "slow_consumer",
            DisconnectReason::IdleTimeout => "idle_timeout",
            DisconnectReason::Shutdown => "shutdown",
            DisconnectReason::UnsupportedData => "binary_frame",
            DisconnectReason::MessageTooBig => "message_too_big",
            DisconnectReason::InvalidPayload => "invalid_utf8",
            DisconnectReason::ProtocolError => "protocol_error",
            DisconnectReason::Abuse => "abuse",
        }
    }

    /// The reason text of the close frame.
    pub fn close_reason(self) -> &'static str {
        match self {
            DisconnectReason::Client => "",
            DisconnectReason::SlowConsumer => "slow consumer",
            DisconnectReason::IdleTimeout => "idle timeout",
            DisconnectReason::Shutdown => "server shutting down",
            DisconnectReason::UnsupportedData => "binary frames are not supported",
            DisconnectReason::MessageTooBig => "message too big",
            DisconnectReason::InvalidPayload => "invalid utf-8",
            DisconnectReason::ProtocolError => "protocol error",
            DisconnectReason::Abuse => "too many errors",
        }
    }
}

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
    fn new() -> Shard {
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
struct Slice {
    sent: Shard,
    ticks_generated: u64,
    secs: f64,
}

impl Slice {
    fn new() -> Slice {
        Slice {
            sent: Shard::new(),
            ticks_generated: 0,
            secs: 0.0,
        }
    }

    fn add(&mut self, o: &Slice) {
        self.sent.add(&o.sent);
        self.ticks_generated += o.ticks_generated;
        self.secs += o.secs;
    }
}

const WINDOW_SECS: usize = 10;

struct Rollup {
    window: VecDeque<Slice>,
    total: Slice,
    last_roll: Instant,
    ticks_generated_at_roll: u64,
}

pub struct Metrics {
    shards: Vec<Mutex<Shard>>,
    rollup: Mutex<Rollup>,
    started: Instant,
    pub connections: AtomicI64,
    pub subscriptions: AtomicI64,
    pub ticks_generated: AtomicU64,
    pub rejected_connections: AtomicU64,
    conflated: AtomicU64,
    disconnects: [AtomicU64; DisconnectReason::ALL.len()],
    errors: [AtomicU64; ErrorCode::ALL.len()],
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
            rejected_connections: AtomicU64::new(0),
            conflated: AtomicU64::new(0),
            disconnects: Default::default(),
            errors: Default::default(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Exact counters since start.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Totals {
    pub ticks_generated: u64,
    pub msgs_sent: u64,
    pub ticks_sent: u64,
    pub bytes_sent: u64,
    pub writes: u64,
    pub conflated: u64,
    pub rejected_connections: u64,
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
    fn of(h: &Histogram<u64>) -> Percentiles {
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
    pub symbols: usize,
    /// Frames and bytes waiting in all connections' queues right now.
    pub queued_msgs: usize,
    pub queued_bytes: usize,
    pub rates: Rates,
    pub totals: Totals,
    pub latency_us: Windowed,
    pub fanout_us: Windowed,
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
        lock(&self.shards[i])
    }

    pub fn add_conflated(&self, n: u64) {
        self.conflated.fetch_add(n, Ordering::Relaxed);
    }

    pub fn count_error(&self, code: ErrorCode) {
        let i = ErrorCode::ALL.iter().position(|x| *x == code).unwrap();
        self.errors[i].fetch_add(1, Ordering::Relaxed);
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
            let mut s = lock(shard);
            slice.sent.add(&s);
            s.reset();
        }
        let mut r = lock(&self.rollup);
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
            let r = lock(&self.rollup);
            Totals {
                ticks_generated: self.ticks_generated.load(Ordering::Relaxed),
                msgs_sent: r.total.sent.msgs_sent,
                ticks_sent: r.total.sent.ticks_sent,
                bytes_sent: r.total.sent.bytes_sent,
                writes: r.total.sent.writes,
                conflated: self.conflated.load(Ordering::Relaxed),
                rejected_connections: self.rejected_connections.load(Ordering::Relaxed),
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
            let s = lock(shard);
            t.msgs_sent += s.msgs_sent;
            t.ticks_sent += s.ticks_sent;
            t.bytes_sent += s.bytes_sent;
            t.writes += s.writes;
        }
        t
    }

    pub fn stats(&self, symbols: usize, queued: (usize, usize)) -> Stats {
        let totals = self.snapshot_totals();
        let r = lock(&self.rollup);
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
        }
    }

    /// `GET /metrics`: Prometheus text exposition format.
    /// `queued`: frames and bytes waiting in all outboxes.
    pub fn prometheus(&self, symbols: usize, queued: (usize, usize)) -> String {
        let t = self.snapshot_totals();
        let mut o = String::with_capacity(4096);
        let load = |a: &AtomicI64| a.load(Ordering::Relaxed) as u64;
        let series: [(&str, &str, &str, u64); 13] = [
            (
                "tickwire_connections",
                "gauge",
                "Open WebSocket connections.",
                load(&self.connections),
            ),
            (
                "tickwire_subscriptions",
                "gauge",
                "Symbol subscriptions over all connections.",
                load(&self.subscriptions),
            ),
            (
                "tickwire_symbols",
                "gauge",
                "Instruments in the feed.",
                symbols as u64,
            ),
            (
                "tickwire_ticks_generated_total",
                "counter",
                "Ticks produced by the feed.",
                t.ticks_generated,
            ),
            (
                "tickwire_messages_sent_total",
                "counter",
                "Text messages written to clients.",
                t.msgs_sent,
            ),
            (
                "tickwire_ticks_sent_total",
                "counter",
                "Tick messages written to clients.",
                t.ticks_sent,
            ),
            (
                "tickwire_bytes_sent_total",
                "counter",
                "Bytes written to clients.",
                t.bytes_sent,
            ),
            (
                "tickwire_writes_total",
                "counter",
                "Write syscalls to client sockets.",
                t.writes,
            ),
            (
                "tickwire_conflated_ticks_total",
                "counter",
                "Undelivered ticks replaced by a newer tick of the same symbol.",
                t.conflated,
            ),
            (
                "tickwire_rejected_connections_total",
                "counter",
                "WebSocket upgrades refused at the connection limit.",
                t.rejected_connections,
            ),
            (
                "tickwire_queued_messages",
                "gauge",
                "Frames waiting in all connections' queues.",
                queued.0 as u64,
            ),
            (
                "tickwire_queued_bytes",
                "gauge",
                "Bytes waiting in all connections' queues.",
                queued.1 as u64,
            ),
            (
                "tickwire_uptime_seconds",
                "gauge",
                "Seconds since start.",
                self.started.elapsed().as_secs(),
            ),
        ];
        for (name, kind, help, value) in series {
            let _ = writeln!(
                o,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        let _ = writeln!(o, "# HELP tickwire_disconnects_total Connections ended, by reason.\n# TYPE tickwire_disconnects_total counter");
        for (reason, n) in &t.disconnects {
            let _ = writeln!(o, "tickwire_disconnects_total{{reason=\"{reason}\"}} {n}");
        }
        let _ = writeln!(o, "# HELP tickwire_request_errors_total Error replies sent to clients, by code.\n# TYPE tickwire_request_errors_total counter");
        for (code, n) in &t.errors {
            let _ = writeln!(o, "tickwire_request_errors_total{{code=\"{code}\"}} {n}");
        }
        let r = lock(&self.rollup);
        histogram_text(&mut o, "tickwire_tick_latency_seconds",
            "Tick generation to its bytes handed to the kernel, per delivered tick (rolled each second).",
            &r.total.sent.latency);
        histogram_text(
            &mut o,
            "tickwire_fanout_seconds",
            "Time to queue one tick for all its subscribers (rolled each second).",
            &r.total.sent.fanout,
        );
        o
    }
}

const BUCKETS_S: [f64; 14] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
    0.5, 1.0,
];

fn histogram_text(o: &mut String, name: &str, help: &str, h: &Histogram<u64>) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} histogram");
    for le in BUCKETS_S {
        let ns = (le * 1e9) as u64;
        let n = if h.is_empty() {
            0
        } else {
            h.count_between(0, ns)
        };
        let _ = writeln!(o, "{name}_bucket{{le=\"{le}\"}} {n}");
    }
    let _ = writeln!(o, "{name}_bucket{{le=\"+Inf\"}} {}", h.len());
    let sum: f64 = h
        .iter_recorded()
        .map(|v| v.value_iterated_to() as f64 * v.count_at_value() as f64)
        .sum();
    let _ = writeln!(o, "{name}_sum {}", sum / 1e9);
    let _ = writeln!(o, "{name}_count {}", h.len());
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
