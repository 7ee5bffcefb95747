//! The two clocks of the server.
//!
//! - **Wall clock** ([`wall_ns`], [`wall_us`]): ticks are stamped with it
//!   (`ts` on the wire) and latency is measured against it.
//! - **Connection clock** ([`now_ms`]): monotonic milliseconds on tokio's
//!   clock, for the heartbeat, ping, idle and rate-limit clocks of every
//!   connection. Being tokio time, it stands still under
//!   `tokio::time::pause()`, so timing tests need not sleep.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

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

/// Milliseconds on the connection clock.
pub fn now_ms() -> u64 {
    Instant::now()
        .saturating_duration_since(epoch())
        .as_millis() as u64
}

/// The instant `ms` milliseconds into [`now_ms`]'s clock.
pub fn instant_at_ms(ms: u64) -> Instant {
    epoch() + Duration::from_millis(ms)
}
