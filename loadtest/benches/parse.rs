//! The client's receive path (frame split + field scan + accounting) over a
//! buffer of real tickwire tick frames: how many messages one core can take.
//!
//! cargo bench -p tickwire-loadtest --bench parse

use divan::counter::{BytesCount, ItemsCount};
use divan::Bencher;
use tickwire::feed::{Generator, Universe};
use tickwire::tick::{TickFrame, TickKind};
use tickwire_loadtest::account::{TsUnit, WorkerStats};
use tickwire_loadtest::client::{wall_ns, BenchConn};

fn main() {
    divan::main();
}

/// `n` consecutive tick frames of a 100-symbol universe, as one read returns them.
fn frames(n: usize) -> Vec<u8> {
    let u = Universe::synthetic(100, 1000.0);
    let mut gen = Generator::new(&u, 7);
    let mut out = Vec::new();
    let mut count = 0;
    let mut now = 0u64;
    let ts = wall_ns() / 1000;
    while count < n {
        now += 100_000;
        gen.advance(now, ts, |t| {
            if count < n {
                out.extend_from_slice(&TickFrame::encode(t, u.get(t.sym), TickKind::Tick).bytes);
                count += 1;
            }
        });
    }
    out
}

/// A 256 KiB read's worth of frames, accounted as one connection.
#[divan::bench]
fn receive_path(b: Bencher) {
    let buf = frames(2300);
    let mut stats = WorkerStats::new(TsUnit::Us);
    let mut conn = BenchConn::new();
    let now = wall_ns();
    // Warm the per-symbol state so every pass sees in-order seqs once...
    conn.account(&buf, &mut stats, now);
    b.counter(ItemsCount::new(2300usize))
        .counter(BytesCount::new(buf.len()))
        .bench_local(|| {
            // ...after that each pass replays the same seqs: counted as
            // reordered, which takes the same path as in-order ticks.
            divan::black_box(conn.account(divan::black_box(&buf), &mut stats, now))
        });
}

/// The same with a fresh connection per pass (first-tick path included).
#[divan::bench]
fn receive_path_fresh_connection(b: Bencher) {
    let buf = frames(2300);
    let mut stats = WorkerStats::new(TsUnit::Us);
    let now = wall_ns();
    b.counter(ItemsCount::new(2300usize)).bench_local(|| {
        let mut conn = BenchConn::new();
        divan::black_box(conn.account(divan::black_box(&buf), &mut stats, now))
    });
}
