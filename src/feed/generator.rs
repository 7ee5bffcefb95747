//! When ticks happen: every instrument trades as a Poisson process at its own
//! rate, scheduled on absolute (virtual) time so the count never drifts.
//!
//! The universe's processes are generated as one: independent Poisson
//! processes superpose into a single Poisson process at the sum of their
//! rates, each event belonging to instrument `i` with probability
//! `rate_i / total`, independently of the rest. So a tick costs one
//! exponential gap and one draw from an alias table ([`Pick`]), O(1) however many
//! instruments there are, where a due-time heap over 10,000 symbols cost a
//! dozen cache-missing comparisons per tick (bench/README.md, "generator").

use rand::rngs::SmallRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Exp1};

use super::pick::Pick;
use super::{PriceModel, Tick, Universe};

struct SymbolClock {
    model: PriceModel,
    /// Seconds since the generator started at which this symbol last traded.
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
    /// Which instrument the next trade belongs to (weights: the rates).
    pick: Option<Pick>,
    /// Mean seconds between two trades of the whole universe.
    mean_gap: f64,
    /// Seconds since start at which the next trade happens.
    next_due: f64,
    rng: SmallRng,
}

impl Generator {
    /// A generator over `universe`; the same `seed` gives the same ticks for
    /// the same sequence of `advance` calls.
    pub fn new(universe: &Universe, seed: u64) -> Generator {
        let mut rng = SmallRng::seed_from_u64(seed);
        let symbols = universe
            .iter()
            .map(|(_, ins)| SymbolClock {
                model: PriceModel::new(ins),
                last_due: 0.0,
                seq: 0,
            })
            .collect();
        let rates: Vec<f64> = universe.iter().map(|(_, ins)| ins.rate).collect();
        // Rates are validated positive and finite, so only an empty universe
        // has no table (and never ticks).
        let pick = Pick::new(&rates);
        let total = universe.total_rate();
        let mean_gap = if total > 0.0 {
            1.0 / total
        } else {
            f64::INFINITY
        };
        let first: f64 = Exp1.sample(&mut rng);
        let next_due = first * mean_gap;
        Generator {
            symbols,
            pick,
            mean_gap,
            next_due,
            rng,
        }
    }

    /// Nanoseconds since start at which the next tick is due.
    pub fn next_due(&self) -> u64 {
        if self.pick.is_none() {
            return u64::MAX;
        }
        (self.next_due * 1e9) as u64
    }

    /// Emits, in due order, every tick due at or before `now_ns` (nanoseconds
    /// since start), each stamped with the wall-clock time `ts_us`. Returns how
    /// many were emitted.
    pub fn advance(&mut self, now_ns: u64, ts_us: u64, mut emit: impl FnMut(&Tick)) -> usize {
        let Some(pick) = &self.pick else {
            return 0;
        };
        let mut n = 0;
        while ((self.next_due * 1e9) as u64) <= now_ns {
            let id = pick.sample(&mut self.rng);
            let s = &mut self.symbols[id];
            let dt = self.next_due - s.last_due;
            let q = s.model.step(dt, &mut self.rng);
            s.seq += 1;
            s.last_due = self.next_due;
            let tick = Tick {
                sym: id as u32,
                seq: s.seq,
                ts_us,
                px: q.px,
                qty: q.qty,
                bid: q.bid,
                ask: q.ask,
            };
            let gap: f64 = Exp1.sample(&mut self.rng);
            self.next_due += gap * self.mean_gap;
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
    fn each_instrument_keeps_its_own_rate() {
        // The demo universe mixes rates; 30 s each: count within 5 sigma of
        // rate x 30 (sigma = sqrt of the mean, Poisson).
        let u = Universe::demo();
        let mut gen = Generator::new(&u, 7);
        let mut counts = vec![0u64; u.len()];
        for t in run(&mut gen, 30, 5) {
            counts[t.sym as usize] += 1;
        }
        for (id, ins) in u.iter() {
            let mean = ins.rate * 30.0;
            let got = counts[id as usize] as f64;
            assert!(
                (got - mean).abs() <= 5.0 * mean.sqrt() + 1.0,
                "{}: {got} ticks, expected about {mean}",
                ins.symbol
            );
        }
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
