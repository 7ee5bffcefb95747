//! Every knob of a tickwire process, from flags or `TICKWIRE_*` variables.
//!
//! The command line is a [`Cli`]: `tickwire [serve] [server flags]` (the
//! single process), `tickwire feed --nats URL [feed flags]` or `tickwire
//! gateway --nats URL [server flags]` (scaled out over a broker). One
//! [`Config`] is parsed at start and shared read-only; tests build theirs
//! with `Config::parse_from([...])`, so there is a single source of defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::feed::{FeedError, Universe};
use crate::outbox::Policy;

fn secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(v > 0.0 && v <= 86_400.0) {
        return Err(format!("{s} s is outside (0, 86400]"));
    }
    Ok(Duration::from_secs_f64(v))
}

/// The server's flags (`tickwire`, `tickwire serve`, `tickwire gateway`).
#[derive(Debug, Clone, Parser)]
pub struct Config {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "TICKWIRE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// What the generator simulates (the feed flags; a gateway gives the
    /// same ones as its feed, so that both agree on the instruments).
    #[command(flatten)]
    pub market: MarketArgs,

    /// Slow-consumer policy of connections that do not ask for one.
    #[arg(long, env = "TICKWIRE_POLICY", value_enum, default_value_t = Policy::Conflate)]
    pub policy: Policy,

    /// Most messages waiting in one connection's queue before its policy applies.
    #[arg(long, env = "TICKWIRE_QUEUE_MAX_MSGS", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(16..))]
    pub queue_max_msgs: u32,

    /// Most bytes waiting in one connection's queue before its policy applies.
    #[arg(long, env = "TICKWIRE_QUEUE_MAX_BYTES", default_value_t = 1 << 20,
          value_parser = clap::value_parser!(u64).range(4096..))]
    pub queue_max_bytes: u64,

    /// Most open WebSocket connections; more are refused with HTTP 503.
    #[arg(long, env = "TICKWIRE_MAX_CONNECTIONS", default_value_t = 16_000)]
    pub max_connections: usize,

    /// Most symbols one connection may follow.
    #[arg(long, env = "TICKWIRE_MAX_SYMBOLS", default_value_t = 1024)]
    pub max_symbols: usize,

    /// Control messages a connection may send per second (bursts of twice
    /// that are allowed); more get `rate_limited`.
    #[arg(long, env = "TICKWIRE_CONTROL_RATE", default_value_t = 10)]
    pub control_rate: u32,

    /// Largest message a client may send, in bytes; larger ones get close 1009.
    #[arg(long, env = "TICKWIRE_MAX_MESSAGE", default_value_t = 4096)]
    pub max_message: usize,

    /// Errors a connection may cause in a row of 10 s before it is closed
    /// with 1008.
    #[arg(long, env = "TICKWIRE_MAX_ERRORS", default_value_t = 20)]
    pub max_errors: u32,

    /// Ticks of history kept per symbol, for clients that resume after a
    /// reconnect (0 turns history off).
    #[arg(long, env = "TICKWIRE_HISTORY", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub history: u32,

    /// Seconds a client dropped as a slow consumer has to read its close
    /// frame (1008) before its socket is dropped.
    #[arg(long, env = "TICKWIRE_SLOW_CONSUMER_GRACE", default_value = "30", value_parser = secs)]
    pub slow_consumer_grace: Duration,

    /// Most slow consumers given that grace at once; beyond it they get 3 s.
    #[arg(long, env = "TICKWIRE_MAX_SLOW_CLOSING", default_value_t = 1000)]
    pub max_slow_closing: usize,

    /// Seconds of silence towards a client before a heartbeat message.
    #[arg(long, env = "TICKWIRE_HEARTBEAT", default_value = "5", value_parser = secs)]
    pub heartbeat: Duration,

    /// Seconds between ping frames.
    #[arg(long, env = "TICKWIRE_PING", default_value = "20", value_parser = secs)]
    pub ping: Duration,

    /// Seconds without any frame from a client (pongs count) before it is closed.
    #[arg(long, env = "TICKWIRE_IDLE_TIMEOUT", default_value = "60", value_parser = secs)]
    pub idle_timeout: Duration,

    /// Seconds between the one-line summaries in the log.
    #[arg(long, env = "TICKWIRE_SUMMARY", default_value = "10", value_parser = secs)]
    pub summary: Duration,

    /// Listen backlog: connects the kernel queues before accept.
    #[arg(long, env = "TICKWIRE_BACKLOG", default_value_t = 4096)]
    pub backlog: u32,

    /// Worker threads serving connections (default: one per core but one,
    /// at least one). With one, connections and the source share a single
    /// thread (the default on 2 cores, which measured best there); with
    /// more, the source gets a thread of its own.
    #[arg(long, env = "TICKWIRE_THREADS")]
    pub threads: Option<usize>,
}

/// The feed flags: which instruments, at what rates, from which seed. The
/// single process, `tickwire feed` and `tickwire gateway` share them.
#[derive(Debug, Clone, clap::Args)]
pub struct MarketArgs {
    /// Feed file (TOML) describing the instruments; default: the embedded
    /// feeds/demo.toml.
    #[arg(long, env = "TICKWIRE_FEED", conflicts_with = "synthetic")]
    pub feed: Option<PathBuf>,

    /// Seed of the price and arrival processes; the same seed replays the same
    /// ticks. Default: random.
    #[arg(long, env = "TICKWIRE_SEED")]
    pub seed: Option<u64>,

    /// Replace the feed with COUNT symbols named S0..S{COUNT-1}.
    #[arg(long, env = "TICKWIRE_SYNTHETIC", value_name = "COUNT",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub synthetic: Option<u32>,

    /// Ticks per second of each synthetic symbol.
    #[arg(
        long,
        env = "TICKWIRE_RATE",
        default_value_t = 10.0,
        requires = "synthetic"
    )]
    pub rate: f64,
}

impl MarketArgs {
    /// The universe these flags ask for.
    pub fn universe(&self) -> Result<Universe, FeedError> {
        if let Some(count) = self.synthetic {
            return Ok(Universe::synthetic(count, self.rate));
        }
        match &self.feed {
            Some(path) => Universe::load(path),
            None => Ok(Universe::demo()),
        }
    }
}

/// How a feed or a gateway reaches the broker.
#[derive(Debug, Clone, clap::Args)]
pub struct NatsArgs {
    /// NATS server URL(s), comma-separated, e.g. nats://127.0.0.1:4222.
    #[arg(long = "nats", env = "TICKWIRE_NATS", value_name = "URL")]
    pub url: String,

    /// First token of every subject, so several feeds can share one broker.
    #[arg(long = "nats-prefix", env = "TICKWIRE_NATS_PREFIX", default_value = "tickwire",
          value_parser = subject_token)]
    pub prefix: String,
}

fn subject_token(s: &str) -> Result<String, String> {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(s.to_string())
    } else {
        Err(format!(
            "`{s}` is not a subject token (letters, digits, - and _ only)"
        ))
    }
}

/// `tickwire feed`: the generator, publishing to NATS.
#[derive(Debug, Clone, clap::Args)]
pub struct FeedConfig {
    #[command(flatten)]
    pub nats: NatsArgs,

    #[command(flatten)]
    pub market: MarketArgs,

    /// Ticks per symbol the feed keeps to answer gateways that start late or
    /// missed messages (at least 1: the latest tick is every snapshot).
    #[arg(long, env = "TICKWIRE_HISTORY", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub history: u32,

    /// Seconds between the one-line summaries in the log.
    #[arg(long, env = "TICKWIRE_SUMMARY", default_value = "10", value_parser = secs)]
    pub summary: Duration,
}

/// `tickwire gateway`: the server, fed from NATS.
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayConfig {
    #[command(flatten)]
    pub nats: NatsArgs,

    #[command(flatten)]
    pub server: Config,
}

/// What the process runs.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Generator and server in one process (the default, needs no broker).
    Serve(Config),
    /// The generator alone, publishing every tick to NATS.
    Feed(FeedConfig),
    /// The server alone, fed from NATS by a `tickwire feed`.
    Gateway(GatewayConfig),
}

/// The command line: a subcommand, or the server's flags alone (which means
/// `serve`, as before subcommands existed).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "tickwire",
    version,
    about = "Streams simulated market data to WebSocket clients with low latency",
    args_conflicts_with_subcommands = true,
    after_help = "Connect with a WebSocket client to ws://ADDR/ws?symbols=AAPL,MSFT or open http://ADDR/ in a browser.\nEvery flag can also be set with the environment variable shown.\nScaling out: `tickwire feed --nats URL` once, `tickwire gateway --nats URL` per gateway (README, \"Scaling out\")."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub serve: Config,
}

impl Cli {
    /// The subcommand, `serve` when none was given.
    pub fn command(self) -> Command {
        self.command.unwrap_or(Command::Serve(self.serve))
    }
}

impl Config {
    /// Worker threads of the connections' runtime.
    pub fn worker_threads(&self) -> usize {
        self.threads
            .unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1))
            })
            .max(1)
    }

    /// The universe this configuration asks for.
    pub fn universe(&self) -> Result<Universe, FeedError> {
        self.market.universe()
    }
}
