//! [`WorkerStats`]: one worker thread's accounting of everything its
//! connections receive (the module is named for what it does to each frame):
//! message and byte counts, end-to-end latency, per-symbol sequence gaps and
//! reordering, close codes and failures.
//!
//! Each worker thread owns one [`WorkerStats`] and its connections update it
//! without locks; the run merges the workers' stats once at the end
//! ([`WorkerStats::merge`]). Histograms are per worker, never per connection
//! (one 1 ns–60 s histogram at 3 significant figures is ~216 KiB).

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use tickwire_protocol::tick::{scan, Scanned as Msg};
use tickwire_protocol::{BinaryTick, TickKind};

/// Largest latency or connect time recorded; larger values are clamped.
pub const HIST_MAX_NS: u64 = 60_000_000_000;

/// A histogram of nanoseconds, 1 ns to 60 s at 3 significant figures.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_NS, 3).expect("static histogram bounds are valid")
}

/// Unit of the `ts` field sent by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum TsUnit {
    /// Microseconds since the Unix epoch (tickwire).
    #[default]
    Us,
    /// Nanoseconds since the Unix epoch.
    Ns,
    /// Milliseconds since the Unix epoch.
    Ms,
}

impl TsUnit {
    #[inline]
    pub fn to_ns(self, ts: u64) -> u64 {
        match self {
            TsUnit::Us => ts.saturating_mul(1_000),
            TsUnit::Ns => ts,
            TsUnit::Ms => ts.saturating_mul(1_000_000),
        }
    }
}

/// Message counts over some span of the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Text messages of any kind.
    pub msgs: u64,
    /// Messages carrying `sym`, `seq`, `ts` (live ticks).
    pub ticks: u64,
    pub snapshots: u64,
    /// Bytes of all frames received, headers included.
    pub bytes: u64,
    /// Times a symbol's seq jumped forward by more than one.
    pub gaps: u64,
    /// Sum of the seq numbers skipped by those jumps.
    pub missing: u64,
    /// Ticks whose seq was not above the last one seen for the symbol.
    pub reordered: u64,
}

impl Counters {
    pub fn add(&mut self, o: &Counters) {
        self.msgs += o.msgs;
        self.ticks += o.ticks;
        self.snapshots += o.snapshots;
        self.bytes += o.bytes;
        self.gaps += o.gaps;
        self.missing += o.missing;
        self.reordered += o.reordered;
    }
}

/// FNV-1a: symbols are a few bytes long, where it beats SipHash handily.
#[derive(Default)]
pub struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf29ce484222325
        } else {
            self.0
        };
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        self.0 = h;
    }
}

/// Gives each symbol name seen by a worker a small dense id, so connections
/// can keep their last seq per symbol in a plain vector.
#[derive(Default)]
pub struct SymbolTable {
    ids: HashMap<Box<[u8]>, u32, BuildHasherDefault<Fnv>>,
}

impl SymbolTable {
    #[inline]
    pub fn id(&mut self, sym: &[u8]) -> u32 {
        if let Some(&id) = self.ids.get(sym) {
            return id;
        }
        let id = self.ids.len() as u32;
        self.ids.insert(sym.into(), id);
        id
    }
}

/// One connection's view of the sequence numbers: last seq per symbol id
/// (0 = not seen yet).
#[derive(Default, Debug)]
pub struct SeqTracker {
    last: Vec<u64>,
}

/// What one tick's seq says about delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqVerdict {
    /// First tick of the symbol on this connection: the baseline.
    First,
    InOrder,
    /// Jumped forward, skipping this many.
    Gap(u64),
    /// At or below the last seq seen.
    Reordered,
}

impl SeqTracker {
    #[inline]
    pub fn observe(&mut self, id: u32, seq: u64) -> SeqVerdict {
        let i = id as usize;
        if i >= self.last.len() {
            self.last.resize(i + 1, 0);
        }
        let last = self.last[i];
        if last == 0 {
            self.last[i] = seq;
            SeqVerdict::First
        } else if seq == last + 1 {
            self.last[i] = seq;
            SeqVerdict::InOrder
        } else if seq > last {
            self.last[i] = seq;
            SeqVerdict::Gap(seq - last - 1)
        } else {
            SeqVerdict::Reordered
        }
    }

    /// A snapshot sets the baseline: the next tick should follow it.
    #[inline]
    pub fn baseline(&mut self, id: u32, seq: u64) {
        let i = id as usize;
        if i >= self.last.len() {
            self.last.resize(i + 1, 0);
        }
        if seq > self.last[i] {
            self.last[i] = seq;
        }
    }
}

/// Everything one worker thread has counted.
pub struct WorkerStats {
    /// The whole run, warm-up and closing included.
    pub total: Counters,
    /// The measurement window only.
    pub measured: Counters,
    /// End-to-end latency of ticks received in the measurement window, ns.
    pub latency: Histogram<u64>,
    /// Latency since the progress display last took it, ns.
    pub interval: Histogram<u64>,
    /// TCP connect + WebSocket upgrade, ns.
    pub connect: Histogram<u64>,
    /// Ticks whose ts was ahead of the receive clock (clock trouble).
    pub negative_latency: u64,
    pub closes_by_code: BTreeMap<u16, u64>,
    pub connect_failures: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    pub symbols: SymbolTable,
    pub ts_unit: TsUnit,
}

impl WorkerStats {
    pub fn new(ts_unit: TsUnit) -> WorkerStats {
        WorkerStats {
            total: Counters::default(),
            measured: Counters::default(),
            latency: new_histogram(),
            interval: new_histogram(),
            connect: new_histogram(),
            negative_latency: 0,
            closes_by_code: BTreeMap::new(),
            connect_failures: BTreeMap::new(),
            errors: BTreeMap::new(),
            symbols: SymbolTable::default(),
            ts_unit,
        }
    }

    /// Accounts one text message received at `now_ns` (wall clock, ns since
    /// the epoch). `frame_len` includes the frame header. Latency is recorded
    /// only when `measuring` and `record_latency` (stalled clients drain a
    /// backlog at the end that says nothing about the server).
    #[inline]
    pub fn on_text(
        &mut self,
        seqs: &mut SeqTracker,
        payload: &[u8],
        frame_len: usize,
        now_ns: u64,
        measuring: bool,
        record_latency: bool,
    ) {
        self.on_message(
            seqs,
            scan(payload),
            frame_len,
            now_ns,
            measuring,
            record_latency,
        );
    }

    /// Accounts one binary frame: a tick of tickwire's binary layout
    /// (`?format=binary`); symbols are told apart by their numeric id.
    #[inline]
    pub fn on_binary(
        &mut self,
        seqs: &mut SeqTracker,
        payload: &[u8],
        frame_len: usize,
        now_ns: u64,
        measuring: bool,
        record_latency: bool,
    ) {
        let id;
        let msg = match BinaryTick::parse(payload) {
            Ok(t) => {
                id = t.symbol_id.to_le_bytes();
                match t.kind {
                    TickKind::Tick => Msg::Tick {
                        sym: &id,
                        seq: t.seq,
                        ts: t.ts,
                    },
                    TickKind::Snapshot => Msg::Snapshot {
                        sym: &id,
                        seq: t.seq,
                    },
                }
            }
            Err(_) => Msg::Other,
        };
        self.on_message(seqs, msg, frame_len, now_ns, measuring, record_latency);
    }

    #[inline]
    fn on_message(
        &mut self,
        seqs: &mut SeqTracker,
        msg: Msg<'_>,
        frame_len: usize,
        now_ns: u64,
        measuring: bool,
        record_latency: bool,
    ) {
        let mut c = Counters {
            msgs: 1,
            bytes: frame_len as u64,
            ..Counters::default()
        };
        match msg {
            Msg::Tick { sym, seq, ts } => {
                c.ticks = 1;
                let id = self.symbols.id(sym);
                match seqs.observe(id, seq) {
                    SeqVerdict::First | SeqVerdict::InOrder => {}
                    SeqVerdict::Gap(n) => {
                        c.gaps = 1;
                        c.missing = n;
                    }
                    SeqVerdict::Reordered => c.reordered = 1,
                }
                if record_latency {
                    let ts_ns = self.ts_unit.to_ns(ts);
                    let lat = if now_ns >= ts_ns {
                        now_ns - ts_ns
                    } else {
                        self.negative_latency += 1;
                        0
                    };
                    self.interval.saturating_record(lat);
                    if measuring {
                        self.latency.saturating_record(lat);
                    }
                }
            }
            Msg::Snapshot { sym, seq } => {
                c.snapshots = 1;
                let id = self.symbols.id(sym);
                seqs.baseline(id, seq);
            }
            Msg::Other => {}
        }
        self.total.add(&c);
        if measuring {
            self.measured.add(&c);
        }
    }

    /// Counts a non-text frame's bytes (binary, ping, pong, close).
    pub fn on_control(&mut self, frame_len: usize, measuring: bool) {
        self.total.bytes += frame_len as u64;
        if measuring {
            self.measured.bytes += frame_len as u64;
        }
    }

    pub fn error(&mut self, what: &str) {
        *self.errors.entry(what.to_string()).or_default() += 1;
    }

    pub fn connect_failure(&mut self, why: String) {
        *self.connect_failures.entry(why).or_default() += 1;
    }

    pub fn closed(&mut self, code: u16) {
        *self.closes_by_code.entry(code).or_default() += 1;
    }

    /// Folds another worker's stats into this one.
    pub fn merge(&mut self, o: &WorkerStats) {
        self.total.add(&o.total);
        self.measured.add(&o.measured);
        self.latency.add(&o.latency).expect("same histogram bounds");
        self.interval
            .add(&o.interval)
            .expect("same histogram bounds");
        self.connect.add(&o.connect).expect("same histogram bounds");
        self.negative_latency += o.negative_latency;
        for (k, v) in &o.closes_by_code {
            *self.closes_by_code.entry(*k).or_default() += v;
        }
        for (k, v) in &o.connect_failures {
            *self.connect_failures.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(sym: &str, seq: u64, ts: u64) -> Vec<u8> {
        format!(r#"{{"type":"tick","sym":"{sym}","seq":{seq},"ts":{ts},"px":1.0}}"#).into_bytes()
    }

    #[test]
    fn seq_tracker_classifies_gaps_and_reordering() {
        let mut t = SeqTracker::default();
        assert_eq!(t.observe(3, 10), SeqVerdict::First);
        assert_eq!(t.observe(3, 11), SeqVerdict::InOrder);
        assert_eq!(t.observe(3, 15), SeqVerdict::Gap(3));
        assert_eq!(t.observe(3, 14), SeqVerdict::Reordered);
        assert_eq!(t.observe(3, 15), SeqVerdict::Reordered);
        assert_eq!(t.observe(3, 16), SeqVerdict::InOrder);
        assert_eq!(t.observe(0, 1), SeqVerdict::First);
        t.baseline(7, 41);
        assert_eq!(t.observe(7, 42), SeqVerdict::InOrder);
    }

    #[test]
    fn on_text_counts_ticks_gaps_and_latency() {
        let mut w = WorkerStats::new(TsUnit::Us);
        let mut seqs = SeqTracker::default();
        let now_ns = 1_000_000_000_000u64;
        let ts_us = now_ns / 1000 - 250; // 250 µs old
        let snap = br#"{"type":"snapshot","sym":"A","seq":4,"ts":1,"px":1}"#;
        w.on_text(&mut seqs, snap, snap.len() + 2, now_ns, true, true);
        for seq in [5, 6, 9, 8, 10] {
            let m = tick("A", seq, ts_us);
            w.on_text(&mut seqs, &m, m.len() + 2, now_ns, true, true);
        }
        let hb = br#"{"type":"heartbeat","ts":5}"#;
        w.on_text(&mut seqs, hb, hb.len() + 2, now_ns, false, true);
        assert_eq!(w.total.msgs, 7);
        assert_eq!(w.measured.msgs, 6);
        assert_eq!(w.total.ticks, 5);
        assert_eq!(w.total.snapshots, 1);
        assert_eq!(w.total.gaps, 1);
        assert_eq!(w.total.missing, 2);
        assert_eq!(w.total.reordered, 1);
        assert_eq!(w.latency.len(), 5);
        assert!(w
            .latency
            .equivalent(w.latency.value_at_quantile(0.5), 250_000));
    }

    #[test]
    fn merge_adds_counts_and_histograms() {
        let mut a = WorkerStats::new(TsUnit::Ns);
        let mut b = WorkerStats::new(TsUnit::Ns);
        let (mut sa, mut sb) = (SeqTracker::default(), SeqTracker::default());
        let now = 10_000_000;
        for i in 1..=100u64 {
            let m = tick("X", i, now - i * 1000);
            a.on_text(&mut sa, &m, m.len(), now, true, true);
            let m = tick("Y", i * 2, now - 500_000);
            b.on_text(&mut sb, &m, m.len(), now, true, true);
        }
        b.closed(1000);
        b.closed(1000);
        a.closed(1001);
        b.connect_failure("refused".into());
        a.merge(&b);
        assert_eq!(a.total.ticks, 200);
        assert_eq!(a.latency.len(), 200);
        assert_eq!(a.total.gaps, 99);
        assert_eq!(a.total.missing, 99);
        assert!(a.latency.equivalent(a.latency.max(), 500_000));
        assert!(a.latency.equivalent(a.latency.min(), 1_000));
        assert_eq!(a.closes_by_code[&1000], 2);
        assert_eq!(a.closes_by_code[&1001], 1);
        assert_eq!(a.connect_failures["refused"], 1);
    }

    #[test]
    fn ts_units_scale_to_ns() {
        assert_eq!(TsUnit::Us.to_ns(3), 3_000);
        assert_eq!(TsUnit::Ns.to_ns(3), 3);
        assert_eq!(TsUnit::Ms.to_ns(3), 3_000_000);
    }
}
