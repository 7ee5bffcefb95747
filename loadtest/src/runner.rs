//! Runs a whole scenario: one run, a baseline and a stalled run, or a series
//! of steps at rising rates, starting the server for each run when asked to
//! (so every run starts from a fresh server), and sums up the headline
//! figures.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::bail;
use serde_json::json;

use crate::measure::{self, ClientOptions, RunPlan, ServerWatch};
use crate::report::{Machine, RunReport, ScenarioReport};
use crate::scenario::Scenario;
use crate::server::{self, ServerProcess};

/// Where the server is and how the client behaves, beyond the scenario.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Server to connect to when not spawning one.
    pub url: Option<String>,
    /// Command template to start the server for each run (see
    /// [`server::expand`]); `--spawn` uses the release tickwire.
    pub server_cmd: Option<String>,
    /// Pid of an already running server to sample CPU and RSS from.
    pub server_pid: Option<u32>,
    /// Names the server in labels (default: tickwire or the command's name).
    pub label: Option<String>,
    /// How the harness behaves in every run.
    pub client: ClientOptions,
    /// Path appended to ws://ADDR for spawned servers.
    pub ws_path: String,
}

/// The default spawn command: the release tickwire with the scenario's feed.
pub fn tickwire_cmd(sc: &Scenario) -> String {
    let mut cmd = format!(
        "{{tickwire}} --listen {{listen}} --synthetic {{symbols}} --rate {{rate}} {}",
        crate::server::TICKWIRE_UNLIMITED
    );
    for a in &sc.server.tickwire_args {
        cmd.push(' ');
        cmd.push_str(a);
    }
    cmd
}

fn server_name(opts: &Options) -> String {
    if let Some(l) = &opts.label {
        return l.clone();
    }
    match &opts.server_cmd {
        Some(c) if c.contains("{tickwire}") => "tickwire".into(),
        Some(c) => c
            .split_whitespace()
            .next()
            .and_then(|p| p.rsplit('/').next())
            .unwrap_or("server")
            .to_string(),
        None => "server".into(),
    }
}

fn one(
    sc: &Scenario,
    opts: &Options,
    rate: f64,
    stalled: u32,
    label: &str,
) -> anyhow::Result<RunReport> {
    let plan = |url: String| RunPlan {
        label: label.to_string(),
        url,
        connections: sc.load.connections,
        stalled,
        ramp: sc.load.ramp,
        subscribe: sc.load.subscribe.clone(),
        stall_subscribe: sc
            .load
            .stall_subscribe
            .clone()
            .unwrap_or(sc.load.subscribe.clone()),
        policy: sc.load.policy.clone(),
        format: sc.load.format.clone(),
        server_symbols: sc.server.symbols,
        server_rate: rate,
        warmup: Duration::from_secs_f64(sc.load.warmup_secs),
        duration: Duration::from_secs_f64(sc.load.duration_secs),
        client: ClientOptions {
            workers: opts.client.workers.max(1),
            ..opts.client
        },
    };
    match &opts.server_cmd {
        Some(template) => {
            let argv = server::expand(template, sc.server.symbols, rate)?;
            let mut srv = ServerProcess::start(&argv)?;
            let url = format!("ws://{}{}", srv.addr, opts.ws_path);
            let watch = ServerWatch {
                pid: srv.pid(),
                command: srv.command.clone(),
            };
            let r = measure::run(&plan(url), Some(&watch));
            srv.stop();
            r
        }
        None => {
            let Some(url) = &opts.url else {
                bail!("say where the server is: --url ws://127.0.0.1:8080/ws, or --spawn to start tickwire");
            };
            let watch = opts.server_pid.map(|pid| ServerWatch {
                pid,
                command: format!("pid {pid}"),
            });
            measure::run(&plan(url.clone()), watch.as_ref())
        }
    }
}

/// Runs `sc` and returns its report.
pub fn run_scenario(sc: &Scenario, opts: &Options) -> anyhow::Result<ScenarioReport> {
    let name = server_name(opts);
    let mut runs = Vec::new();
    let mut summary = BTreeMap::new();
    summary.insert("server".to_string(), json!(name));
    if let Some(steps) = &sc.steps {
        if opts.server_cmd.is_none() {
            bail!(
                "scenario {} restarts the server at each rate: add --spawn (tickwire) or --server-cmd",
                sc.name
            );
        }
        let mut best: Option<usize> = None;
        for &rate in &steps.rates {
            let r = one(sc, opts, rate, 0, &format!("{name} @{rate}/s/sym"))?;
            let sustained = r.latency.count > 0
                && r.latency.p99_us <= steps.p99_bound_ms * 1000.0
                && r.delivery_ratio >= steps.min_delivery
                && r.opened == r.connections as u64;
            if opts.client.progress {
                eprintln!(
                    "  step {rate}/s/sym: {:.0} msgs/s ({:.1}% of offered), p99 {:.0} µs -> {}",
                    r.msgs_per_sec,
                    r.delivery_ratio * 100.0,
                    r.latency.p99_us,
                    if sustained {
                        "sustained"
                    } else {
                        "NOT sustained"
                    }
                );
            }
            runs.push(r);
            if !sustained {
                summary.insert(
                    "first_unsustained_rate".into(),
                    json!({"rate_per_symbol": rate, "p99_us": runs.last().unwrap().latency.p99_us,
                           "delivery_ratio": runs.last().unwrap().delivery_ratio,
                           "msgs_per_sec": runs.last().unwrap().msgs_per_sec}),
                );
                break;
            }
            best = Some(runs.len() - 1);
        }
        match best {
            Some(i) => {
                let b = &runs[i];
                summary.insert("best_sustained_msgs_per_sec".into(), json!(b.msgs_per_sec));
                summary.insert(
                    "best_sustained_rate_per_symbol".into(),
                    json!(b.server_rate),
                );
                summary.insert("best_sustained_p99_us".into(), json!(b.latency.p99_us));
                if let Some(s) = &b.server {
                    summary.insert(
                        "best_sustained_server_cpu_percent".into(),
                        json!(s.cpu_percent),
                    );
                }
                summary.insert("primary_run".into(), json!(i));
            }
            None => {
                summary.insert("best_sustained_msgs_per_sec".into(), json!(0.0));
            }
        }
    } else if sc.baseline {
        let base = one(sc, opts, sc.server.rate, 0, &format!("{name} baseline"))?;
        let stalled = one(
            sc,
            opts,
            sc.server.rate,
            sc.stalled(),
            &format!("{name} {} stalled", sc.stalled()),
        )?;
        summary.insert("baseline_p99_us".into(), json!(base.latency.p99_us));
        summary.insert("stalled_run_p99_us".into(), json!(stalled.latency.p99_us));
        summary.insert(
            "p99_ratio".into(),
            json!(if base.latency.p99_us > 0.0 {
                stalled.latency.p99_us / base.latency.p99_us
            } else {
                0.0
            }),
        );
        summary.insert("stalled_run_gaps".into(), json!(stalled.measured.gaps));
        if let (Some(b), Some(s)) = (&base.server, &stalled.server) {
            summary.insert("baseline_server_rss_max_kib".into(), json!(b.rss_max_kib));
            summary.insert("stalled_server_rss_max_kib".into(), json!(s.rss_max_kib));
            summary.insert(
                "stalled_server_rss_growth_kib".into(),
                json!(s.rss_end_kib as i64 - s.rss_connected_kib as i64),
            );
        }
        summary.insert("primary_run".into(), json!(1));
        runs.push(base);
        runs.push(stalled);
    } else {
        let r = one(sc, opts, sc.server.rate, sc.stalled(), &name)?;
        summary.insert("p99_us".into(), json!(r.latency.p99_us));
        summary.insert("msgs_per_sec".into(), json!(r.msgs_per_sec));
        summary.insert("opened".into(), json!(r.opened));
        if let Some(s) = &r.server {
            summary.insert(
                "server_rss_per_connection_bytes".into(),
                json!(s.rss_per_connection_bytes),
            );
            summary.insert("server_cpu_percent".into(), json!(s.cpu_percent));
        }
        summary.insert("primary_run".into(), json!(0));
        runs.push(r);
    }
    Ok(ScenarioReport {
        scenario: sc.name.clone(),
        description: sc.description.clone(),
        machine: Machine::detect(),
        runs,
        summary,
    })
}
