//! One measured run: start the workers, ramp the connections, warm up, measure, close
//! every connection cleanly, merge the workers' stats into a [`RunReport`].
//! Shows live progress on stderr while it goes.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::account::{new_histogram, TsUnit, WorkerStats};
use crate::client::{Shared, Target, CLOSE_TIMEOUT, CONNECT_TIMEOUT};
use crate::report::{Percentiles, RunReport, ServerUsage};
use crate::scenario::SymbolSet;
use crate::server;
use crate::worker::{self, ConnJob};

/// Everything one run needs to know.
#[derive(Debug, Clone)]
pub struct RunPlan {
    pub label: String,
    /// ws://host:port/path (the policy query is added here).
    pub url: String,
    pub connections: u32,
    pub stalled: u32,
    pub ramp: f64,
    pub subscribe: SymbolSet,
    pub stall_subscribe: SymbolSet,
    pub policy: String,
    /// Universe size and per-symbol rate of the server's feed (for
    /// first/random subscriptions and the offered load).
    pub server_symbols: u32,
    pub server_rate: f64,
    pub warmup: Duration,
    pub duration: Duration,
    pub workers: usize,
    pub ts_unit: TsUnit,
    pub seed: u64,
    pub progress: bool,
}

/// Who the server is, if the harness can watch it.
pub struct ServerWatch {
    pub pid: u32,
    pub command: String,
}

/// Raises RLIMIT_NOFILE's soft limit to the hard limit and checks that it
/// covers `connections` sockets plus some slack. Returns a warning if not.
pub fn raise_fd_limit(connections: u32) -> Option<String> {
    let need = connections as u64 + 64;
    let (soft, hard) = rlimit::Resource::NOFILE.get().unwrap_or((1024, 1024));
    if soft < need.min(hard) {
        let _ = rlimit::Resource::NOFILE.set(need.min(hard).max(soft), hard);
    }
    let (soft, hard) = rlimit::Resource::NOFILE.get().unwrap_or((soft, hard));
    (soft < need).then(|| {
        format!(
            "RLIMIT_NOFILE is {soft} (hard {hard}) but {connections} connections need about {need} file \
             descriptors: raise the hard limit (`ulimit -Hn {need}` as root, or LimitNOFILE= in systemd) \
             or run fewer connections"
        )
    })
}

/// Runs one plan to the end.
pub fn run(plan: &RunPlan, watch: Option<&ServerWatch>) -> anyhow::Result<RunReport> {
    let fd_warning = raise_fd_limit(plan.connections);
    if let Some(w) = &fd_warning {
        eprintln!("warning: {w}");
    }
    let mut target = Target::parse(&plan.url)?;
    if !plan.policy.is_empty() {
        target = target.with_query("policy", &plan.policy);
    }
    let shared = Arc::new(Shared::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers: Vec<worker::Worker> = (0..plan.workers.max(1))
        .map(|i| {
            worker::spawn(
                i,
                target.clone(),
                plan.ts_unit,
                shared.clone(),
                stop_rx.clone(),
            )
        })
        .collect::<Result<_, _>>()
        .context("starting worker threads")?;

    let bar = if plan.progress {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4))
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}").expect("valid template"),
    );
    let mut display = Display {
        bar: &bar,
        shared: &shared,
        workers: &workers,
        last_msgs: 0,
        last_at: Instant::now(),
        total: plan.connections,
        label: plan.label.clone(),
    };

    let sample = || watch.and_then(|w| server::sample(w.pid));
    let idle = sample();

    // Ramp: connection i is due at i / ramp seconds.
    let start = Instant::now();
    // Stalled connections are spread evenly through the ramp.
    let stall_every = plan
        .connections
        .checked_div(plan.stalled)
        .unwrap_or(u32::MAX)
        .max(1);
    for i in 0..plan.connections {
        let due = start + Duration::from_secs_f64(i as f64 / plan.ramp);
        while Instant::now() < due {
            std::thread::sleep((due - Instant::now()).min(Duration::from_millis(50)));
            display.show("ramp");
        }
        let stall = plan.stalled > 0
            && i % stall_every == stall_every - 1
            && i / stall_every < plan.stalled;
        let set = if stall {
            &plan.stall_subscribe
        } else {
            &plan.subscribe
        };
        let job = ConnJob {
            index: i,
            subscribe: set.subscribe_json(plan.server_symbols, i, plan.seed),
            stall,
        };
        let _ = workers[i as usize % workers.len()].jobs.send(job);
        if shared.os_limit.lock().unwrap().is_some() {
            break; // further connects would fail the same way
        }
    }
    // Wait until every connection is open or has failed.
    let settle = Instant::now();
    while (shared.open.load(Relaxed)
        + shared.connect_failed.load(Relaxed)
        + shared.ended.load(Relaxed))
        < plan.connections as u64
        && settle.elapsed() < CONNECT_TIMEOUT + Duration::from_secs(1)
        && shared.os_limit.lock().unwrap().is_none()
    {
        std::thread::sleep(Duration::from_millis(20));
        display.show("connecting");
    }
    let opened_at = Instant::now();
    while opened_at.elapsed() < plan.warmup {
        std::thread::sleep(Duration::from_millis(50));
        display.show("warm-up");
    }
    let connected = sample();

    // Measurement window.
    let cpu0 = server::self_cpu_secs();
    let srv0 = sample();
    let mut rss_max = srv0.map_or(0, |s| s.rss_kib);
    shared.measuring.store(true, Relaxed);
    let m0 = Instant::now();
    let mut next_sample = m0;
    while m0.elapsed() < plan.duration {
        std::thread::sleep(
            Duration::from_millis(50).min(plan.duration.saturating_sub(m0.elapsed())),
        );
        display.show("measuring");
        if Instant::now() >= next_sample {
            if let Some(s) = sample() {
                rss_max = rss_max.max(s.rss_kib);
            }
            next_sample += Duration::from_millis(500);
        }
    }
    shared.measuring.store(false, Relaxed);
    let measured_secs = m0.elapsed().as_secs_f64();
    let srv1 = sample();
    let client_cpu = server::self_cpu_secs() - cpu0;

    // Close everything cleanly and collect.
    let _ = stop_tx.send(true);
    let mut stats = WorkerStats::new(plan.ts_unit);
    let closing = Instant::now();
    let mut handles = Vec::new();
    for w in workers {
        drop(w.jobs);
        handles.push(w.thread);
    }
    while handles.iter().any(|h| !h.is_finished())
        && closing.elapsed() < CLOSE_TIMEOUT + Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(20));
        bar.set_message(format!(
            "{}: closing, {} open",
            plan.label,
            shared.open.load(Relaxed)
        ));
    }
    for h in handles {
        match h.join() {
            Ok(s) => stats.merge(&s),
            Err(_) => anyhow::bail!("a worker thread panicked"),
        }
    }
    bar.finish_and_clear();

    let reading = plan.connections.saturating_sub(plan.stalled) as f64;
    let offered = reading * plan.subscribe.count(plan.server_symbols) as f64 * plan.server_rate;
    let ticks_per_sec = stats.measured.ticks as f64 / measured_secs;
    let server = watch.map(|w| {
        let opened = shared_opened(&stats);
        let idle = idle.unwrap_or_default();
        let connected = connected.unwrap_or_default();
        let (s0, s1) = (srv0.unwrap_or_default(), srv1.unwrap_or_default());
        ServerUsage {
            command: w.command.clone(),
            pid: w.pid,
            cpu_percent: (s1.cpu_secs - s0.cpu_secs) / measured_secs * 100.0,
            rss_idle_kib: idle.rss_kib,
            rss_connected_kib: connected.rss_kib,
            rss_end_kib: s1.rss_kib,
            rss_max_kib: rss_max.max(s1.rss_kib),
            rss_per_connection_bytes: if opened > 0 {
                (connected.rss_kib as f64 - idle.rss_kib as f64) * 1024.0 / opened as f64
            } else {
                0.0
            },
        }
    });
    let os_limit = shared.os_limit.lock().unwrap().clone().or(fd_warning);
    Ok(RunReport {
        label: plan.label.clone(),
        url: plan.url.clone(),
        connections: plan.connections,
        stalled_connections: plan.stalled,
        workers: plan.workers,
        subscribe: plan.subscribe.clone().into(),
        stall_subscribe: plan.stall_subscribe.clone().into(),
        policy: plan.policy.clone(),
        server_symbols: plan.server_symbols,
        server_rate: plan.server_rate,
        offered_msgs_per_sec: offered,
        warmup_secs: plan.warmup.as_secs_f64(),
        measured_secs,
        opened: shared_opened(&stats),
        connect_failures: stats.connect_failures.clone(),
        closes_by_code: stats.closes_by_code.clone(),
        errors: stats.errors.clone(),
        os_limit,
        total: stats.total,
        measured: stats.measured,
        msgs_per_sec: stats.measured.msgs as f64 / measured_secs,
        ticks_per_sec,
        bytes_per_sec: stats.measured.bytes as f64 / measured_secs,
        delivery_ratio: if offered > 0.0 {
            ticks_per_sec / offered
        } else {
            0.0
        },
        latency: Percentiles::of(&stats.latency),
        connect: Percentiles::of(&stats.connect),
        negative_latency: stats.negative_latency,
        client_cpu_percent: client_cpu / measured_secs * 100.0,
        server,
        latency_hist: stats.latency.clone(),
    })
}

/// Connections that completed the upgrade: one connect-time sample each.
fn shared_opened(stats: &WorkerStats) -> u64 {
    stats.connect.len()
}

/// The live progress line.
struct Display<'a> {
    bar: &'a ProgressBar,
    shared: &'a Shared,
    workers: &'a [worker::Worker],
    last_msgs: u64,
    last_at: Instant,
    total: u32,
    label: String,
}

impl Display<'_> {
    fn show(&mut self, phase: &str) {
        let elapsed = self.last_at.elapsed();
        if elapsed < Duration::from_millis(500) {
            return;
        }
        let msgs = self.shared.msgs.load(Relaxed);
        let rate = (msgs - self.last_msgs) as f64 / elapsed.as_secs_f64();
        self.last_msgs = msgs;
        self.last_at = Instant::now();
        let mut recent = new_histogram();
        for w in self.workers {
            if let Ok(mut h) = w.recent.lock() {
                let _ = recent.add(&*h);
                h.reset();
            }
        }
        let lat = Percentiles::of(&recent);
        let limit = self.shared.os_limit.lock().unwrap().clone();
        self.bar.set_message(format!(
            "{} {phase}: {}/{} open, {} failed | {:.0} msgs/s | p50 {:.0} µs p99 {:.0} µs | {} errors{}",
            self.label,
            self.shared.open.load(Relaxed),
            self.total,
            self.shared.connect_failed.load(Relaxed),
            rate,
            lat.p50_us,
            lat.p99_us,
            self.shared.errors.load(Relaxed),
            limit.map(|l| format!(" | OS LIMIT: {l}")).unwrap_or_default()
        ));
        self.bar.tick();
    }
}
