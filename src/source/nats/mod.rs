//! Scaling out over NATS: one `tickwire feed` publishes every tick, any
//! number of `tickwire gateway`s serve clients from them.
//!
//! - [`feed`]: the generator's side: publishes each batch of ticks and
//!   answers gateways' sync requests from its per-symbol history.
//! - [`gateway`]: the broker-fed source of a gateway's hub: a sibling of
//!   [`local`](super::local) feeding the same
//!   [`Publisher`](crate::hub::Publisher).
//!
//! Subjects (`PREFIX` is `--nats-prefix`, default `tickwire`):
//! - `PREFIX.v1.ticks`: one message per generator pass (every tick due
//!   together, at most [`MAX_TICKS`]); all symbols on one subject, because
//!   a gateway serves every symbol and one message per tick would cost a
//!   broker message (and a syscall share) per tick (bench/README.md,
//!   "Scale-out").
//! - `PREFIX.v1.sync`: request/reply to the feed: "the ticks of these
//!   symbols after these seqs". A gateway asks at start (snapshots and
//!   history at once), after a reconnect, and for each hole it sees. The
//!   feed is the source of truth and already holds the state; a JetStream
//!   stream would copy every tick into a second store for the same answer.
//!
//! Encoding ([`wire`]): a 24-byte header (version, kind, count, the feed's
//! epoch, a fingerprint of its universe) and the ticks in the 56-byte binary
//! layout of `tickwire_protocol::binary`; seq and epoch are assigned at the
//! feed, so every gateway has the same (symbol, seq) for the same tick, and
//! a client's `from` + `epoch` mean the same on every gateway.

pub mod feed;
pub mod gateway;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use crate::config::NatsArgs;

/// Most ticks in one live broker message (57 KiB of payload).
pub const MAX_TICKS: usize = 1024;

/// Most ticks in one sync reply (896 KiB: under NATS's default 1 MiB
/// `max_payload`, which a broker serving tickwire must not lower).
pub const MAX_SYNC_TICKS: usize = 16 * 1024;

/// The subjects of one prefix.
#[derive(Debug, Clone)]
pub struct Subjects {
    pub ticks: String,
    pub sync: String,
}

impl Subjects {
    pub fn new(prefix: &str) -> Subjects {
        Subjects {
            ticks: format!("{prefix}.v1.ticks"),
            sync: format!("{prefix}.v1.sync"),
        }
    }
}

/// Reconnect delay: full jitter (a random delay up to an exponential
/// bound, 25 ms doubling to 2 s), so that many gateways that lost the same
/// server do not come back in lockstep; async-nats's default has no jitter.
pub fn reconnect_delay(attempts: usize) -> Duration {
    let bound_ms = 25u64 << attempts.min(7);
    Duration::from_millis(rand::random_range(0..=bound_ms.min(2_000)))
}

/// The connect options both sides use: a name, reconnects forever with
/// jitter, the first connect retried in the background (the broker may
/// start after us), and `events` for connection changes.
pub fn options(
    name: &str,
    events: impl Fn(async_nats::Event) + Send + Sync + 'static,
) -> async_nats::ConnectOptions {
    let events = Arc::new(events);
    async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(reconnect_delay)
        .connection_timeout(Duration::from_secs(2))
        .request_timeout(Some(Duration::from_secs(2)))
        .event_callback(move |event| {
            let events = events.clone();
            async move { events(event) }
        })
}

/// Connects to the servers of `args` (comma-separated URLs).
pub async fn connect(
    args: &NatsArgs,
    options: async_nats::ConnectOptions,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    let urls: Vec<async_nats::ServerAddr> = args
        .url
        .split(',')
        .filter_map(|u| u.trim().parse().ok())
        .collect();
    options.connect(urls).await
}

/// Whether `n` is worth a log line (1, 2, 4, 8, ...): floods of one event
/// (a slow consumer, a foreign publisher) are logged, not repeated.
pub fn log_worthy(n: u64) -> bool {
    n.is_power_of_two()
}
