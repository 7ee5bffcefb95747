//! When ticks happen: every instrument trades as a Poisson process at its own
//! rate, scheduled on absolute (virtual) time so the count never drifts.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use super::{PriceModel, SymbolId, Tick, Universe};

struct SymbolClock {
    model: PriceModel,
    /// Mean seconds between trades.
    mean_gap: f64,
    /// Seconds since the generator started at which this symbol trades next.
    next_due: f64,
    last_due: f64,
    seq: u64,
}

/// Produces the ticks of a whole universe in time order.
///
/// Time is whatever the caller says it is: [`Generator::advance`] takes the
/// number of nanoseconds since start, so the server drives it from a monotonic
/// clock and tests from a counter.
pub struct Generator {
    symbols: Vec<SymbolClock>,
    /// Next due time of each symbol, in nanoseconds; the earliest on top.
    due: BinaryHeap<Reverse<(u64, SymbolId)>>,
    rng: SmallRng,
}

fn exp_gap(rng: &mut SmallRng, mean: f64) -> f64 {
    // 1 - u is in (0, 1], so ln never sees zero.
    let u: f64 = rng.random();
    -(1.0 - u).ln() * mean
}

impl Generator {
    /// A generator over `universe`; the same `seed` gives the same ticks for
    /// the same sequence of `advance` calls.
    pub fn new(universe: &Universe, seed: u64) -> Generator {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut due = BinaryHeap::with_capacity(universe.len());
        let symbols = universe
            .iter()
            .map(|(id, ins)| {
                let mean_gap = 1.0 / ins.rate;
                let next_due = exp_gap(&mut rng, mean_gap);
                due.push(Reverse(((next_due * 1e9) as u64, id)));
                SymbolClock {
                    model: PriceModel::new(ins),
                    mean_gap,
                    next_due,
                    last_due: 0.0,
                    seq: 0,
                }
            })
            .collect();
        Generator { symbols, due, rng }
    }

    /// Nanoseconds since start at which the next tick is due.
    pub fn next_due(&self) -> u64 {
        self.due.peek().map_or(u64::MAX, |Reverse((t, _))| *t)
    }

    /// Emits, in due order, every tick due at or before `now_ns` (nanoseconds
    /// since start), each stamped with the wall-clock time `ts_us`. Returns how
    /// many were emitted.
    pub fn advance(&mut self, now_ns: u64, ts_us: u64, mut emit: impl FnMut(&Tick)) -> usize {
        let mut n = 0;
        while let Some(&Reverse((due_ns, id))) = self.due.peek() {
            if due_ns > now_ns {
                break;
            }
            let s = &mut self.symbols[id as usize];
            let dt = s.next_due - s.last_due;
            let q = s.model.step(dt, &mut self.rng);
            s.seq += 1;
            s.last_due = s.next_due;
            s.next_due += exp_gap(&mut self.rng, s.mean_gap);
            let next_ns = (s.next_due * 1e9) as u64;
            let tick = Tick {
                sym: id,
                seq: s.seq,
                ts_us,
                px: q.px,
                qty: q.qty,
                bid: q.bid,
                ask: q.ask,
            };
            self.due.pop();
            self.due.push(Reverse((next_ns, id)));
            emit(&tick);
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(gen: &mut Generator, seconds: u64, step_ms: u64) -> Vec<Tick> {
        let mut out = Vec::new();
        let mut now = 0;
        while now < seconds * 1_000_000_000 {
            now += step_ms * 1_000_000;
            gen.advance(now, now / 1000, |t| out.push(*t));
        }
        out
    }

    #[test]
    fn rate_is_accurate_and_does_not_drift() {
        // 60 s at 100 ticks/s per symbol: each symbol about 6000 ticks. The
        // Poisson count has a standard deviation of sqrt(6000) ~ 77; 5 sigma.
        let u = Universe::synthetic(20, 100.0);
        let mut gen = Generator::new(&u, 42);
        let ticks = run(&mut gen, 60, 7);
        let mut counts = [0u64; 20];
        for t in &ticks {
            counts[t.sym as usize] += 1;
        }
        for (sym, c) in counts.iter().enumerate() {
            assert!((5615..=6385).contains(c), "S{sym}: {c} ticks");
        }
        let total: u64 = counts.iter().sum();
        assert!((119_000..=121_000).contains(&total), "total {total}");
    }

    #[test]
    fn seq_counts_from_one_without_holes() {
        let u = Universe::synthetic(5, 1000.0);
        let mut gen = Generator::new(&u, 1);
        let mut next = [1u64; 5];
        for t in run(&mut gen, 2, 3) {
            assert_eq!(t.seq, next[t.sym as usize]);
            next[t.sym as usize] += 1;
        }
    }

    #[test]
    fn same_seed_same_ticks() {
        let u = Universe::demo();
        let a = run(&mut Generator::new(&u, 9), 5, 10);
        let b = run(&mut Generator::new(&u, 9), 5, 10);
        let c = run(&mut Generator::new(&u, 10), 5, 10);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn advance_respects_due_time() {
        let u = Universe::synthetic(1, 10.0);
        let mut gen = Generator::new(&u, 3);
        let due = gen.next_due();
        assert_eq!(gen.advance(due - 1, 0, |_| {}), 0);
        assert_eq!(gen.advance(due, 0, |_| {}), 1);
        assert!(gen.next_due() > due);
    }
}
