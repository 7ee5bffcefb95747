//! `tickwire-loadtest`: command-line front end. Picks a scenario (built-in
//! name or TOML path), applies flag overrides, runs it, and writes the
//! table, JSON, .hgrm and chart.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tickwire_loadtest::account::TsUnit;
use tickwire_loadtest::measure::ClientOptions;
use tickwire_loadtest::runner::{self, Options};
use tickwire_loadtest::scenario::{Scenario, SymbolSet};
use tickwire_loadtest::{plot, report};

/// Load-test a market-data WebSocket server: end-to-end latency, throughput,
/// sequence gaps, connection limits.
///
/// Examples:
///   tickwire-loadtest --scenario latency --spawn
///   tickwire-loadtest --url ws://127.0.0.1:8080/ws --connections 500 --subscribe first:20 --duration 30
///   tickwire-loadtest --scenario throughput --server-cmd "node bench/reference/node-ws/server.js --listen {listen} --synthetic {symbols} --rate {rate}"
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    /// Scenario: latency, throughput, connections, slow-consumer, or a path to a TOML file.
    #[arg(long, default_value = "latency")]
    scenario: String,
    /// Server to test (when not spawning one).
    #[arg(long)]
    url: Option<String>,
    /// Start the release tickwire (next to this binary, or $TICKWIRE_BIN) with the scenario's feed for each run.
    #[arg(long)]
    spawn: bool,
    /// Start this server for each run instead; placeholders {listen} {symbols} {rate} {tickwire}.
    /// It must print "listening on http://ADDR" on stdout.
    #[arg(long)]
    server_cmd: Option<String>,
    /// Path of the WebSocket endpoint on a spawned server.
    #[arg(long, default_value = "/ws")]
    ws_path: String,
    /// Sample CPU and RSS of this already-running server process.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Name of the server in the report.
    #[arg(long)]
    label: Option<String>,

    /// Override: number of connections.
    #[arg(long)]
    connections: Option<u32>,
    /// Override: connections opened per second.
    #[arg(long)]
    ramp: Option<f64>,
    /// Override: all | first:K | random:K | list:A,B
    #[arg(long)]
    subscribe: Option<SymbolSet>,
    /// Override: slow-consumer policy asked for in the URL (conflate|disconnect; "" for none).
    #[arg(long)]
    policy: Option<String>,

    /// Override: tick encoding asked for in the URL (json|binary; "" for none).
    #[arg(long)]
    format: Option<String>,
    /// Override: warm-up seconds before measuring.
    #[arg(long)]
    warmup: Option<f64>,
    /// Override: measured seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Override: universe size of the server's feed (S0..S{n-1}).
    #[arg(long)]
    symbols: Option<u32>,
    /// Override: ticks/s per symbol of the server's feed.
    #[arg(long)]
    rate: Option<f64>,
    /// Override: share of connections that stop reading.
    #[arg(long)]
    stall_fraction: Option<f64>,
    /// Override (throughput): per-symbol rates to step through, comma-separated.
    #[arg(long, value_delimiter = ',')]
    steps: Option<Vec<f64>>,

    /// Client worker threads (each a single-threaded runtime).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Unit of the server's `ts` field.
    #[arg(long, value_enum, default_value_t = TsUnit::Us)]
    ts_unit: TsUnit,
    /// Seed for random subscriptions.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write every figure as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the HDR percentile distribution of the latency (ms).
    #[arg(long)]
    hgrm: Option<PathBuf>,
    /// Write a latency-by-percentile chart (.svg).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// No live progress.
    #[arg(long, short)]
    quiet: bool,
}

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut sc = Scenario::load(&cli.scenario)?;
    let l = &mut sc.load;
    if let Some(v) = cli.connections {
        l.connections = v;
    }
    if let Some(v) = cli.ramp {
        l.ramp = v;
    }
    if let Some(v) = cli.subscribe.clone() {
        l.subscribe = v;
    }
    if let Some(v) = cli.policy.clone() {
        l.policy = v;
    }
    if let Some(v) = cli.format.clone() {
        l.format = v;
    }
    if let Some(v) = cli.warmup {
        l.warmup_secs = v;
    }
    if let Some(v) = cli.duration {
        l.duration_secs = v;
    }
    if let Some(v) = cli.stall_fraction {
        l.stall_fraction = v;
    }
    if let Some(v) = cli.symbols {
        sc.server.symbols = v;
    }
    if let Some(v) = cli.rate {
        sc.server.rate = v;
    }
    if let (Some(steps), Some(v)) = (sc.steps.as_mut(), cli.steps.clone()) {
        steps.rates = v;
    }
    let server_cmd = match (&cli.server_cmd, cli.spawn) {
        (Some(c), _) => Some(c.clone()),
        (None, true) => Some(runner::tickwire_cmd(&sc)),
        (None, false) => None,
    };
    let opts = Options {
        url: cli.url.clone(),
        server_cmd,
        server_pid: cli.server_pid,
        label: cli.label.clone(),
        client: ClientOptions {
            workers: cli.workers,
            ts_unit: cli.ts_unit,
            seed: cli.seed,
            progress: !cli.quiet,
        },
        ws_path: cli.ws_path.clone(),
    };
    let rep = runner::run_scenario(&sc, &opts)?;
    println!("{}", rep.table());
    if let Some(p) = &cli.json {
        std::fs::write(p, serde_json::to_string_pretty(&rep)?)?;
        eprintln!("wrote {}", p.display());
    }
    if let Some(p) = &cli.hgrm {
        if let Some(r) = rep.primary() {
            std::fs::write(p, report::hgrm(&r.latency_hist))?;
            eprintln!("wrote {} ({})", p.display(), r.label);
        }
    }
    if let Some(p) = &cli.plot {
        let series: Vec<plot::Series> = rep
            .runs
            .iter()
            .map(|r| plot::Series {
                label: format!("{} (p99 {:.0} µs)", r.label, r.latency.p99_us),
                hist: &r.latency_hist,
            })
            .collect();
        plot::draw(p, &format!("tickwire-loadtest: {}", rep.scenario), &series)?;
        eprintln!("wrote {}", p.display());
    }
    if let Some(r) = rep.runs.iter().find(|r| r.os_limit.is_some()) {
        eprintln!(
            "note: an OS limit stopped connections: {}",
            r.os_limit.as_deref().unwrap_or_default()
        );
    }
    Ok(())
}
