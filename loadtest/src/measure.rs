//! One measured run, one function per phase: start the workers, ramp the
//! connections, let them settle, warm up, measure, close every connection
//! cleanly, and merge the workers' stats into a [`RunReport`]. The phases run
//! on the calling thread, which only sleeps, samples and draws the live
//! progress line on stderr; the connections run on the worker threads.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::account::{new_histogram, TsUnit, WorkerStats};
use crate::client::{ConnSpec, CLOSE_TIMEOUT, CONNECT_TIMEOUT};
use crate::host::CpuTimes;
use crate::report::{Percentiles, RunReport, ServerUsage};
use crate::scenario::SymbolSet;
use crate::server::{self, ProcSample};
use crate::state::Shared;
use crate::target::Target;
use crate::worker::{self, Worker};

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
    /// `format` query parameter (empty: none).
    pub format: String,
    /// Universe size and per-symbol rate of the server's feed (for
    /// first/random subscriptions and the offered load).
    pub server_symbols: u32,
    pub server_rate: f64,
    pub warmup: Duration,
    pub duration: Duration,
    /// How the harness behaves: the same for every run of a scenario.
    pub client: ClientOptions,
}

/// How the harness itself behaves, whatever the server and the scenario
/// (set on the command line, shared by [`RunPlan`] and
/// [`crate::runner::Options`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientOptions {
    /// Worker threads, each a single-threaded runtime (at least one runs).
    pub workers: usize,
    /// Unit of the server's `ts` field.
    pub ts_unit: TsUnit,
    /// Seed for random subscriptions.
    pub seed: u64,
    /// Draw the live progress line on stderr.
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

/// Runs one plan to the end, one phase after another: start the workers,
/// `ramp`, `settle`, `warm_up`, `measure`, `close_all`, `into_report`.
pub fn run(plan: &RunPlan, watch: Option<&ServerWatch>) -> anyhow::Result<RunReport> {
    let fd_warning = raise_fd_limit(plan.connections);
    if let Some(w) = &fd_warning {
        eprintln!("warning: {w}");
    }
    let mut target = Target::parse(&plan.url)?;
    if !plan.format.is_empty() {
        target = target.with_query("format", &plan.format);
    }
    if !plan.policy.is_empty() {
        target = target.with_query("policy", &plan.policy);
    }
    let shared = Arc::new(Shared::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers = start_workers(plan, &target, &shared, &stop_rx)?;
    let bar = progress_bar(plan.client.progress);
    let mut display = Display::new(&bar, &shared, &workers, plan);

    let idle = sample(watch);
    ramp(plan, &workers, &shared, &mut display);
    settle(plan.connections, &shared, &mut display);
    warm_up(plan.warmup, &mut display);
    let connected = sample(watch);
    let window = measure(plan.duration, watch, &shared, &mut display);
    let stats = close_all(plan, workers, &stop_tx, &shared, &bar)?;

    let server = watch.map(|w| server_usage(w, shared_opened(&stats), idle, connected, &window));
    let os_limit = shared.os_limit.lock().unwrap().clone().or(fd_warning);
    Ok(into_report(plan, &stats, &window, server, os_limit))
}

/// Starts the worker threads. They wait for the connections `ramp` sends
/// them and run until `stop` is set.
fn start_workers(
    plan: &RunPlan,
    target: &Target,
    shared: &Arc<Shared>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Vec<Worker>> {
    (0..plan.client.workers.max(1))
        .map(|i| {
            worker::spawn(
                i,
                target.clone(),
                plan.client.ts_unit,
                shared.clone(),
                stop.clone(),
            )
        })
        .collect::<Result<_, _>>()
        .context("starting worker threads")
}

/// The live progress bar on stderr (hidden with `--quiet`).
fn progress_bar(progress: bool) -> ProgressBar {
    let bar = if progress {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4))
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}").expect("valid template"),
    );
    bar
}

/// CPU time and RSS of the server, if the harness can watch it.
fn sample(watch: Option<&ServerWatch>) -> Option<ProcSample> {
    watch.and_then(|w| server::sample(w.pid))
}

/// Opens the connections at `plan.ramp` per second (connection i is due at
/// i / ramp seconds), handing them round-robin to the workers, with the
/// stalled ones spread evenly through the ramp. Stops early once an OS limit
/// has stopped a connect: further connects would fail the same way.
fn ramp(plan: &RunPlan, workers: &[Worker], shared: &Shared, display: &mut Display) {
    let start = Instant::now();
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
        let spec = ConnSpec {
            index: i,
            subscribe: set
                .subscribe_json(plan.server_symbols, i, plan.client.seed)
                .into(),
            stall,
        };
        let _ = workers[i as usize % workers.len()].jobs.send(spec);
        if shared.os_limit.lock().unwrap().is_some() {
            break;
        }
    }
}

/// Waits until every connection is open or has failed: at most the connect
/// timeout plus a second, and no longer once an OS limit has stopped the
/// ramp.
fn settle(connections: u32, shared: &Shared, display: &mut Display) {
    let settle = Instant::now();
    while (shared.open.load(Relaxed)
        + shared.connect_failed.load(Relaxed)
        + shared.ended.load(Relaxed))
        < connections as u64
        && settle.elapsed() < CONNECT_TIMEOUT + Duration::from_secs(1)
        && shared.os_limit.lock().unwrap().is_none()
    {
        std::thread::sleep(Duration::from_millis(20));
        display.show("connecting");
    }
}

/// Lets the open connections receive for `warmup` before anything counts,
/// so the start-up transients stay out of the figures.
fn warm_up(warmup: Duration, display: &mut Display) {
    let opened_at = Instant::now();
    while opened_at.elapsed() < warmup {
        std::thread::sleep(Duration::from_millis(50));
        display.show("warm-up");
    }
}

/// What the measurement window saw, beside the workers' stats.
struct Window {
    /// Length of the window as it ran, in seconds.
    secs: f64,
    /// CPU seconds the client used in the window.
    client_cpu_secs: f64,
    /// The hypervisor's share of the machine's CPU time in the window.
    host_steal_percent: f64,
    /// The server at the window's start and end.
    server_start: Option<ProcSample>,
    server_end: Option<ProcSample>,
    /// Largest server RSS seen in the window (sampled every 500 ms).
    server_rss_max_kib: u64,
}

/// The measurement window: ticks received while `shared.measuring` is set
/// count in the measured figures and the latency histogram. Samples the
/// server's RSS every 500 ms, and the CPU of both sides at the edges.
fn measure(
    duration: Duration,
    watch: Option<&ServerWatch>,
    shared: &Shared,
    display: &mut Display,
) -> Window {
    let cpu0 = server::self_cpu_secs();
    let host0 = CpuTimes::now();
    let srv0 = sample(watch);
    let mut rss_max = srv0.map_or(0, |s| s.rss_kib);
    shared.measuring.store(true, Relaxed);
    let m0 = Instant::now();
    let mut next_sample = m0;
    while m0.elapsed() < duration {
        std::thread::sleep(Duration::from_millis(50).min(duration.saturating_sub(m0.elapsed())));
        display.show("measuring");
        if Instant::now() >= next_sample {
            if let Some(s) = sample(watch) {
                rss_max = rss_max.max(s.rss_kib);
            }
            next_sample += Duration::from_millis(500);
        }
    }
    shared.measuring.store(false, Relaxed);
    let secs = m0.elapsed().as_secs_f64();
    let srv1 = sample(watch);
    let client_cpu_secs = server::self_cpu_secs() - cpu0;
    let host_steal_percent = match (host0, CpuTimes::now()) {
        (Some(a), Some(b)) => a.steal_percent_until(&b),
        _ => 0.0,
    };
    Window {
        secs,
        client_cpu_secs,
        host_steal_percent,
        server_start: srv0,
        server_end: srv1,
        server_rss_max_kib: rss_max,
    }
}

/// Tells every connection to close (each sends a close frame and waits for
/// the server's), waits for the worker threads, at most the close timeout
/// plus 5 s, and merges their stats.
fn close_all(
    plan: &RunPlan,
    workers: Vec<Worker>,
    stop: &tokio::sync::watch::Sender<bool>,
    shared: &Shared,
    bar: &ProgressBar,
) -> anyhow::Result<WorkerStats> {
    let _ = stop.send(true);
    let mut stats = WorkerStats::new(plan.client.ts_unit);
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
    Ok(stats)
}

/// The server's CPU and memory use, from the samples taken before the ramp
/// (`idle`), after the warm-up (`connected`) and in the window.
fn server_usage(
    w: &ServerWatch,
    opened: u64,
    idle: Option<ProcSample>,
    connected: Option<ProcSample>,
    window: &Window,
) -> ServerUsage {
    let idle = idle.unwrap_or_default();
    let connected = connected.unwrap_or_default();
    let (s0, s1) = (
        window.server_start.unwrap_or_default(),
        window.server_end.unwrap_or_default(),
    );
    ServerUsage {
        command: w.command.clone(),
        pid: w.pid,
        cpu_percent: (s1.cpu_secs - s0.cpu_secs) / window.secs * 100.0,
        rss_idle_kib: idle.rss_kib,
        rss_connected_kib: connected.rss_kib,
        rss_end_kib: s1.rss_kib,
        rss_max_kib: window.server_rss_max_kib.max(s1.rss_kib),
        rss_per_connection_bytes: if opened > 0 {
            (connected.rss_kib as f64 - idle.rss_kib as f64) * 1024.0 / opened as f64
        } else {
            0.0
        },
    }
}

/// Turns the merged stats and the window into the run's figures.
fn into_report(
    plan: &RunPlan,
    stats: &WorkerStats,
    window: &Window,
    server: Option<ServerUsage>,
    os_limit: Option<String>,
) -> RunReport {
    let measured_secs = window.secs;
    let reading = plan.connections.saturating_sub(plan.stalled) as f64;
    let offered = reading * plan.subscribe.count(plan.server_symbols) as f64 * plan.server_rate;
    let ticks_per_sec = stats.measured.ticks as f64 / measured_secs;
    RunReport {
        label: plan.label.clone(),
        url: plan.url.clone(),
        connections: plan.connections,
        stalled_connections: plan.stalled,
        workers: plan.client.workers,
        subscribe: plan.subscribe.clone().into(),
        stall_subscribe: plan.stall_subscribe.clone().into(),
        policy: plan.policy.clone(),
        format: plan.format.clone(),
        server_symbols: plan.server_symbols,
        server_rate: plan.server_rate,
        offered_msgs_per_sec: offered,
        warmup_secs: plan.warmup.as_secs_f64(),
        measured_secs,
        opened: shared_opened(stats),
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
        client_cpu_percent: window.client_cpu_secs / measured_secs * 100.0,
        host_steal_percent: window.host_steal_percent,
        server,
        latency_hist: stats.latency.clone(),
    }
}

/// Connections that completed the upgrade: one connect-time sample each.
fn shared_opened(stats: &WorkerStats) -> u64 {
    stats.connect.len()
}

/// The live progress line.
struct Display<'a> {
    bar: &'a ProgressBar,
    shared: &'a Shared,
    workers: &'a [Worker],
    last_msgs: u64,
    last_at: Instant,
    total: u32,
    label: String,
}

impl<'a> Display<'a> {
    fn new(
        bar: &'a ProgressBar,
        shared: &'a Shared,
        workers: &'a [Worker],
        plan: &RunPlan,
    ) -> Display<'a> {
        Display {
            bar,
            shared,
            workers,
            last_msgs: 0,
            last_at: Instant::now(),
            total: plan.connections,
            label: plan.label.clone(),
        }
    }

    /// Redraws the line, at most twice a second.
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
