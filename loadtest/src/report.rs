//! What a run found, in the forms people read: a terminal table, a JSON file
//! with every figure, an HdrHistogram percentile distribution (.hgrm), and a
//! latency-by-percentile chart (see [`crate::plot`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::account::Counters;

/// Latency or connect-time summary in microseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub min_us: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub p9999_us: f64,
    pub max_us: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            min_us: us(h.min()),
            mean_us: h.mean() / 1000.0,
            p50_us: us(h.value_at_quantile(0.5)),
            p90_us: us(h.value_at_quantile(0.9)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            p9999_us: us(h.value_at_quantile(0.9999)),
            max_us: us(h.max()),
        }
    }
}

/// The server process's resource use, when the harness knows its pid.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerUsage {
    pub command: String,
    pub pid: u32,
    /// CPU use during the measurement window, % of one core.
    pub cpu_percent: f64,
    /// RSS before any connection was opened.
    pub rss_idle_kib: u64,
    /// RSS once every connection was open and subscribed (end of warm-up).
    pub rss_connected_kib: u64,
    pub rss_end_kib: u64,
    pub rss_max_kib: u64,
    /// (rss_connected - rss_idle) / open connections.
    pub rss_per_connection_bytes: f64,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub label: String,
    pub url: String,
    pub connections: u32,
    pub stalled_connections: u32,
    pub workers: usize,
    pub subscribe: String,
    pub stall_subscribe: String,
    pub policy: String,
    #[serde(default)]
    pub format: String,
    pub server_symbols: u32,
    pub server_rate: f64,
    /// Ticks/s the feed offers to all reading clients together.
    pub offered_msgs_per_sec: f64,
    pub warmup_secs: f64,
    pub measured_secs: f64,
    pub opened: u64,
    pub connect_failures: BTreeMap<String, u64>,
    pub closes_by_code: BTreeMap<u16, u64>,
    pub errors: BTreeMap<String, u64>,
    /// OS limit that stopped connections, with what to do about it.
    pub os_limit: Option<String>,
    pub total: Counters,
    pub measured: Counters,
    pub msgs_per_sec: f64,
    pub ticks_per_sec: f64,
    pub bytes_per_sec: f64,
    /// Ticks received / ticks offered over the measurement window.
    pub delivery_ratio: f64,
    pub latency: Percentiles,
    pub connect: Percentiles,
    pub negative_latency: u64,
    /// Client CPU during the measurement window, % of one core.
    pub client_cpu_percent: f64,
    /// CPU time the hypervisor took from this machine during the window, %
    /// of all its CPU time ([`crate::host`]): above a few %, the window
    /// measured the host more than the server.
    pub host_steal_percent: f64,
    pub server: Option<ServerUsage>,
    #[serde(skip)]
    pub latency_hist: Histogram<u64>,
}

/// A scenario's runs and its headline figures.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub scenario: String,
    pub description: String,
    pub machine: Machine,
    pub runs: Vec<RunReport>,
    pub summary: BTreeMap<String, serde_json::Value>,
}

/// The machine the report was made on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub mem_gib: f64,
    pub kernel: String,
    /// /proc/loadavg when the report was made: other work on the machine
    /// skews every figure, so say how busy it was.
    pub loadavg: String,
}

impl Machine {
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_default();
        let mem_kib: f64 = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            mem_gib: (mem_kib / 1048576.0 * 10.0).round() / 10.0,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            loadavg: std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

fn ms(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

fn si(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

impl ScenarioReport {
    /// The run whose histogram goes into --hgrm.
    pub fn primary(&self) -> Option<&RunReport> {
        let i = self
            .summary
            .get("primary_run")
            .and_then(|v| v.as_u64())
            .unwrap_or(0) as usize;
        self.runs.get(i).or(self.runs.last())
    }

    /// The human-readable report.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "\n== scenario {}: {}", self.scenario, self.description);
        let m = &self.machine;
        let _ = writeln!(
            s,
            "   machine: {} x {}, {} GiB, Linux {}",
            m.cpus, m.cpu_model, m.mem_gib, m.kernel
        );
        let _ = writeln!(
            s,
            "\n| run | conns open | msgs/s | delivered | p50 | p99 | p99.9 | max | gaps | closes | srv CPU | srv RSS | client CPU |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for r in &self.runs {
            let closes: Vec<String> = r
                .closes_by_code
                .iter()
                .map(|(c, n)| format!("{c}:{n}"))
                .collect();
            let (cpu, rss) = r.server.as_ref().map_or(("-".into(), "-".into()), |u| {
                (
                    format!("{:.0}%", u.cpu_percent),
                    format!("{:.1} MiB", u.rss_max_kib as f64 / 1024.0),
                )
            });
            let _ = writeln!(
                s,
                "| {} | {}/{} | {} | {:.1}% | {} | {} | {} | {} | {} | {} | {} | {} | {:.0}% |",
                r.label,
                r.opened,
                r.connections,
                si(r.msgs_per_sec),
                r.delivery_ratio * 100.0,
                ms(r.latency.p50_us),
                ms(r.latency.p99_us),
                ms(r.latency.p999_us),
                ms(r.latency.max_us),
                r.measured.gaps,
                if closes.is_empty() {
                    "-".into()
                } else {
                    closes.join(" ")
                },
                cpu,
                rss,
                r.client_cpu_percent,
            );
        }
        for r in &self.runs {
            let mut notes = Vec::new();
            if !r.connect_failures.is_empty() {
                notes.push(format!("connect failures: {:?}", r.connect_failures));
            }
            if !r.errors.is_empty() {
                notes.push(format!("errors: {:?}", r.errors));
            }
            if let Some(l) = &r.os_limit {
                notes.push(format!("OS LIMIT: {l}"));
            }
            if r.negative_latency > 0 {
                notes.push(format!(
                    "{} ticks stamped in the future (clock?)",
                    r.negative_latency
                ));
            }
            if let Some(u) = &r.server {
                if r.opened > 0 {
                    notes.push(format!(
                        "server RSS idle {:.1} MiB -> connected {:.1} MiB ({:.1} KiB/connection)",
                        u.rss_idle_kib as f64 / 1024.0,
                        u.rss_connected_kib as f64 / 1024.0,
                        u.rss_per_connection_bytes / 1024.0
                    ));
                }
            }
            notes.push(format!(
                "connect p50 {} p99 {}; {} msgs, {} ticks total, {:.1} MB/s; host steal {:.1}%",
                ms(r.connect.p50_us),
                ms(r.connect.p99_us),
                r.total.msgs,
                r.total.ticks,
                r.bytes_per_sec / 1e6,
                r.host_steal_percent
            ));
            let _ = writeln!(s, "  {}: {}", r.label, notes.join("; "));
        }
        if !self.summary.is_empty() {
            let _ = writeln!(s, "\nsummary:");
            for (k, v) in &self.summary {
                let _ = writeln!(s, "  {k}: {v}");
            }
        }
        s
    }
}

/// The standard HdrHistogram percentile distribution text, values in ms.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    let scale = 1e6; // ns -> ms
    for v in h.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        if q < 1.0 {
            let _ = writeln!(
                s,
                "{:>12.3} {:>14.12} {:>10} {:>14.2}",
                v.value_iterated_to() as f64 / scale,
                q,
                total,
                1.0 / (1.0 - q)
            );
        } else {
            let _ = writeln!(
                s,
                "{:>12.3} {:>14.12} {:>10}",
                v.value_iterated_to() as f64 / scale,
                q,
                total
            );
        }
    }
    let _ = writeln!(
        s,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        h.mean() / scale,
        h.stdev() / scale
    );
    let _ = writeln!(
        s,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        h.max() as f64 / scale,
        h.len()
    );
    let _ = writeln!(
        s,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        h.distinct_values()
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::new_histogram;

    #[test]
    fn hgrm_has_the_standard_shape() {
        let mut h = new_histogram();
        for i in 1..=1000u64 {
            h.record(i * 1000).unwrap();
        }
        let text = hgrm(&h);
        assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"));
        assert!(text.contains("#[Max     =        1.000, Total count    =         1000]"));
        let last_count: u64 = text
            .lines()
            .rfind(|l| !l.starts_with('#') && !l.trim().is_empty())
            .unwrap()
            .split_whitespace()
            .nth(2)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(last_count, 1000);
    }

    #[test]
    fn percentiles_are_in_microseconds() {
        let mut h = new_histogram();
        h.record(2_000_000).unwrap();
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 1);
        assert!((p.p99_us - 2000.0).abs() < 2.0);
    }
}
