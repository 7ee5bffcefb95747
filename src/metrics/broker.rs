//! What a gateway's broker link did: connection state, reconnects, what
//! arrived, what was missing and how it was repaired. Only a gateway (a
//! process fed from NATS) reports them: `/api/stats` has a `broker` object
//! and `/metrics` the `tickwire_broker_*` series then, and neither otherwise.
//!
//! All plain atomics: each is touched once per broker message or per rare
//! event, never per client.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::Serialize;

/// The broker link's counters.
#[derive(Debug, Default)]
pub struct BrokerMetrics {
    /// Set once by a broker-fed source; the rest is reported only then.
    enabled: AtomicBool,
    pub connected: AtomicBool,
    pub disconnects: AtomicU64,
    pub reconnects: AtomicU64,
    /// Tick batches received from the broker.
    pub messages: AtomicU64,
    pub ticks_received: AtomicU64,
    /// Ticks received twice (a sync overlapping the live stream): dropped.
    pub duplicates: AtomicU64,
    /// Holes in a symbol's seqs seen on the live stream.
    pub holes: AtomicU64,
    /// Ticks missing from the live stream that the feed sent again.
    pub ticks_filled: AtomicU64,
    /// Ticks lost for good (the feed no longer had them): clients were told
    /// with a `gap` message.
    pub ticks_missed: AtomicU64,
    /// Messages the NATS client dropped because the gateway's subscription
    /// buffer was full (the holes they leave are then filled or reported).
    pub slow_consumer_drops: AtomicU64,
    /// Sync requests to the feed (start, reconnect, holes) and how many failed.
    pub syncs: AtomicU64,
    pub sync_failures: AtomicU64,
    /// Ticks received with a universe that is not this gateway's: dropped.
    pub foreign: AtomicU64,
    /// Microseconds from generation (at the feed) to arrival here, of the
    /// latest batch and the most seen.
    pub lag_us: AtomicU64,
    pub lag_max_us: AtomicU64,
}

/// The `broker` object of `/api/stats`.
#[derive(Debug, Clone, Serialize)]
pub struct BrokerStats {
    pub connected: bool,
    pub disconnects: u64,
    pub reconnects: u64,
    pub messages: u64,
    pub ticks_received: u64,
    pub duplicates: u64,
    pub holes: u64,
    pub ticks_filled: u64,
    pub ticks_missed: u64,
    pub slow_consumer_drops: u64,
    pub syncs: u64,
    pub sync_failures: u64,
    pub foreign: u64,
    pub lag_us: u64,
    pub lag_max_us: u64,
}

impl BrokerMetrics {
    /// Marks this process as broker-fed.
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::Relaxed);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Records the lag of a batch whose newest tick was generated at `ts_us`.
    pub fn record_lag(&self, ts_us: u64, now_us: u64) {
        let lag = now_us.saturating_sub(ts_us);
        self.lag_us.store(lag, Ordering::Relaxed);
        self.lag_max_us.fetch_max(lag, Ordering::Relaxed);
    }

    /// The counters, if this process is broker-fed.
    pub fn stats(&self) -> Option<BrokerStats> {
        if !self.enabled.load(Ordering::Relaxed) {
            return None;
        }
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Some(BrokerStats {
            connected: self.connected.load(Ordering::Relaxed),
            disconnects: l(&self.disconnects),
            reconnects: l(&self.reconnects),
            messages: l(&self.messages),
            ticks_received: l(&self.ticks_received),
            duplicates: l(&self.duplicates),
            holes: l(&self.holes),
            ticks_filled: l(&self.ticks_filled),
            ticks_missed: l(&self.ticks_missed),
            slow_consumer_drops: l(&self.slow_consumer_drops),
            syncs: l(&self.syncs),
            sync_failures: l(&self.sync_failures),
            foreign: l(&self.foreign),
            lag_us: l(&self.lag_us),
            lag_max_us: l(&self.lag_max_us),
        })
    }

    /// The `tickwire_broker_*` series, if this process is broker-fed.
    pub fn prometheus(&self, o: &mut String) {
        let Some(s) = self.stats() else { return };
        let series = [
            (
                "connected",
                "gauge",
                "1 while connected to the NATS server.",
                s.connected as u64,
            ),
            (
                "disconnects_total",
                "counter",
                "Connections to the NATS server lost.",
                s.disconnects,
            ),
            (
                "reconnects_total",
                "counter",
                "Connections to the NATS server made again after a loss.",
                s.reconnects,
            ),
            (
                "messages_total",
                "counter",
                "Tick batches received from NATS.",
                s.messages,
            ),
            (
                "ticks_received_total",
                "counter",
                "Ticks received from NATS.",
                s.ticks_received,
            ),
            (
                "duplicate_ticks_total",
                "counter",
                "Ticks received twice and dropped.",
                s.duplicates,
            ),
            (
                "holes_total",
                "counter",
                "Holes in a symbol's seqs on the live stream.",
                s.holes,
            ),
            (
                "ticks_filled_total",
                "counter",
                "Missing ticks sent again by the feed.",
                s.ticks_filled,
            ),
            (
                "ticks_missed_total",
                "counter",
                "Ticks lost for good; clients got a gap message.",
                s.ticks_missed,
            ),
            (
                "slow_consumer_drops_total",
                "counter",
                "Messages dropped by the NATS client (subscription buffer full).",
                s.slow_consumer_drops,
            ),
            (
                "syncs_total",
                "counter",
                "Sync requests to the feed.",
                s.syncs,
            ),
            (
                "sync_failures_total",
                "counter",
                "Sync requests to the feed that failed.",
                s.sync_failures,
            ),
            (
                "foreign_ticks_total",
                "counter",
                "Ticks of another universe, dropped.",
                s.foreign,
            ),
            (
                "lag_microseconds",
                "gauge",
                "Generation at the feed to arrival here, latest batch.",
                s.lag_us,
            ),
        ];
        for (name, kind, help, value) in series {
            let _ = writeln!(
                o,
                "# HELP tickwire_broker_{name} {help}\n# TYPE tickwire_broker_{name} {kind}\ntickwire_broker_{name} {value}"
            );
        }
    }
}
