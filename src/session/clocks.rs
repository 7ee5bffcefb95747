//! A connection's clocks: when the client was last heard from
//! ([`Liveness`], written by the reader), and the writer's three deadlines
//! ([`Deadlines`]: heartbeat, ping, idle timeout).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::clock;

/// The intervals of every connection, from `--heartbeat`, `--ping` and
/// `--idle-timeout`.
#[derive(Debug, Clone, Copy)]
pub struct Clocks {
    /// Silence towards the client before a heartbeat message.
    pub heartbeat: Duration,
    /// Between ping frames.
    pub ping: Duration,
    /// Silence from the client before it is closed.
    pub idle: Duration,
}

/// When the client last sent a frame (any, pongs included), on the
/// connection clock ([`clock::now_ms`]). The reader writes it; the writer
/// reads it for the idle timeout.
pub struct Liveness(AtomicU64);

impl Liveness {
    pub fn new() -> Liveness {
        Liveness(AtomicU64::new(clock::now_ms()))
    }

    /// Notes that the client sent something.
    pub fn heard(&self) {
        self.0.store(clock::now_ms(), Ordering::Relaxed);
    }

    pub fn last_heard_ms(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What is due when the writer's timer fires.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Due {
    /// Nothing heard for the idle timeout: close.
    pub idle: bool,
    /// Send a heartbeat message.
    pub heartbeat: bool,
    /// Send a ping frame.
    pub ping: bool,
}

/// The writer's deadlines, in connection-clock milliseconds.
pub struct Deadlines {
    heartbeat_ms: u64,
    ping_ms: u64,
    idle_ms: u64,
    last_sent_ms: u64,
    last_ping_ms: u64,
}

impl Deadlines {
    pub fn new(clocks: &Clocks, now_ms: u64) -> Deadlines {
        Deadlines {
            heartbeat_ms: clocks.heartbeat.as_millis() as u64,
            ping_ms: clocks.ping.as_millis() as u64,
            idle_ms: clocks.idle.as_millis() as u64,
            last_sent_ms: now_ms,
            last_ping_ms: now_ms,
        }
    }

    /// Something reached the client at `now_ms`: the heartbeat waits anew.
    pub fn sent(&mut self, now_ms: u64) {
        self.last_sent_ms = now_ms;
    }

    /// The earliest deadline, given when the client was last heard from.
    pub fn next(&self, last_heard_ms: u64) -> u64 {
        (self.last_sent_ms + self.heartbeat_ms)
            .min(self.last_ping_ms + self.ping_ms)
            .min(last_heard_ms + self.idle_ms)
    }

    /// What is due at `now_ms`, counting what it returns as done. A heartbeat
    /// is due only when the writer has nothing else to send (`idle_writer`);
    /// it counts as sent for scheduling whether or not the client reads it.
    pub fn due(&mut self, now_ms: u64, last_heard_ms: u64, idle_writer: bool) -> Due {
        if now_ms >= last_heard_ms + self.idle_ms {
            return Due {
                idle: true,
                ..Due::default()
            };
        }
        let heartbeat = idle_writer && now_ms >= self.last_sent_ms + self.heartbeat_ms;
        if heartbeat {
            self.last_sent_ms = now_ms;
        }
        let ping = now_ms >= self.last_ping_ms + self.ping_ms;
        if ping {
            self.last_ping_ms = now_ms;
        }
        Due {
            idle: false,
            heartbeat,
            ping,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_come_in_order() {
        let clocks = Clocks {
            heartbeat: Duration::from_millis(50),
            ping: Duration::from_millis(200),
            idle: Duration::from_millis(1000),
        };
        let mut d = Deadlines::new(&clocks, 0);
        assert_eq!(d.next(0), 50);
        assert_eq!(d.due(50, 0, false), Due::default());
        assert_eq!(
            d.due(50, 0, true),
            Due {
                heartbeat: true,
                ..Due::default()
            }
        );
        assert_eq!(d.next(0), 100);
        d.sent(180);
        assert_eq!(d.next(0), 200);
        assert!(d.due(200, 0, true).ping);
        assert!(d.due(1000, 0, true).idle);
        assert!(!d.due(1000, 500, true).idle);
    }
}
