//! `GET /metrics`: the Prometheus text exposition format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};

use hdrhistogram::Histogram;

use super::Metrics;

impl Metrics {
    /// `GET /metrics`: Prometheus text exposition format.
    /// `queued`: frames and bytes waiting in all outboxes.
    pub fn prometheus(&self, symbols: usize, queued: (usize, usize)) -> String {
        let t = self.snapshot_totals();
        let mut o = String::with_capacity(4096);
        let load = |a: &AtomicI64| a.load(Ordering::Relaxed) as u64;
        let series = [
            (
                "tickwire_connections",
                "gauge",
                "Open WebSocket connections and SSE streams.",
                load(&self.connections),
            ),
            (
                "tickwire_sse_streams",
                "gauge",
                "Open Server-Sent Events streams (counted in tickwire_connections too).",
                load(&self.sse_streams),
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
                "tickwire_copied_runs_total",
                "counter",
                "Runs of ticks copied into a lagging connection's queue instead of shared: the queue already kept its budget of feed chunks (256 KiB) alive.",
                t.copied_runs,
            ),
            (
                "tickwire_throttled_ticks_total",
                "counter",
                "Ticks folded by throttled views: replaced by a newer tick of the same symbol before the view's interval ended.",
                t.throttled,
            ),
            (
                "tickwire_throttled_delayed_ticks_total",
                "counter",
                "Ticks throttled views held until their interval ended.",
                t.throttled_delayed,
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
                "tickwire_closing_slow_consumers",
                "gauge",
                "Connections dropped as slow consumers whose client has not read the close frame yet.",
                load(&self.closing_slow),
            ),
            (
                "tickwire_replayed_ticks_total",
                "counter",
                "Ticks replayed from history to resuming clients.",
                t.replayed_ticks,
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
        let _ = writeln!(o, "# HELP tickwire_rejected_connections_total Connections and requests refused before they were served, by reason.\n# TYPE tickwire_rejected_connections_total counter");
        for (reason, n) in &t.rejected {
            let _ = writeln!(
                o,
                "tickwire_rejected_connections_total{{reason=\"{reason}\"}} {n}"
            );
        }
        let _ = writeln!(o, "# HELP tickwire_disconnects_total Connections ended, by reason.\n# TYPE tickwire_disconnects_total counter");
        for (reason, n) in &t.disconnects {
            let _ = writeln!(o, "tickwire_disconnects_total{{reason=\"{reason}\"}} {n}");
        }
        let _ = writeln!(
            o,
            "# HELP tickwire_resumes_total Symbols subscribed with `from`, by whether every missed tick was replayed.\n# TYPE tickwire_resumes_total counter\ntickwire_resumes_total{{recovered=\"true\"}} {}\ntickwire_resumes_total{{recovered=\"false\"}} {}",
            t.resumes_recovered, t.resumes_lost
        );
        let _ = writeln!(o, "# HELP tickwire_request_errors_total Error replies sent to clients, by code.\n# TYPE tickwire_request_errors_total counter");
        for (code, n) in &t.errors {
            let _ = writeln!(o, "tickwire_request_errors_total{{code=\"{code}\"}} {n}");
        }
        self.broker.prometheus(&mut o);
        let r = self.rollup.lock();
        histogram_text(&mut o, "tickwire_tick_latency_seconds",
            "Tick generation to its bytes handed to the kernel, per delivered tick (rolled each second).",
            &r.total.sent.latency);
        histogram_text(
            &mut o,
            "tickwire_fanout_seconds",
            "Time to deliver one batch of ticks due together to every subscriber queue, writers woken (rolled each second).",
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
