//! Which instrument the next trade belongs to: a draw from the rates,
//! O(1) however many instruments there are (Walker's alias method, built
//! with Vose's algorithm).
//!
//! `rand_distr::WeightedAliasIndex` is the same method; this one exists
//! because a tick's pick is on the generator's hot path and the crate's costs
//! two draws (a rejection-sampled index, a float threshold) and 69
//! instructions under callgrind, where one 64-bit draw split in two halves
//! and an integer compare do it in about 15 (bench/README.md, "generator").

use rand::Rng;

/// One column of the table: keep it when the draw's low half is below
/// `keep`, else take `alias`. Eight bytes, so that 10,000 instruments' table
/// (80 KB) stays within the L2 cache.
#[derive(Clone, Copy, Debug)]
struct Column {
    /// Probability of keeping this column, scaled to 2^32.
    keep: u32,
    /// A full column is its own alias: whichever way the draw falls, it is
    /// kept (so `keep` needs no 2^32).
    alias: u32,
}

/// A discrete distribution over `0..n` with the given weights.
#[derive(Debug)]
pub struct Pick {
    columns: Vec<Column>,
}

impl Pick {
    /// The table for `weights` (each finite and >= 0); `None` when there are
    /// none, they sum to zero, or there are more than `u32::MAX`.
    pub fn new(weights: &[f64]) -> Option<Pick> {
        let n = weights.len();
        let sum: f64 = weights.iter().sum();
        if n == 0 || n > u32::MAX as usize || !(sum > 0.0 && sum.is_finite()) {
            return None;
        }
        // Each column's share, scaled so that the mean is 1.
        let mut scaled: Vec<f64> = weights.iter().map(|w| w * n as f64 / sum).collect();
        let (mut small, mut large): (Vec<u32>, Vec<u32>) =
            (0..n as u32).partition(|&i| scaled[i as usize] < 1.0);
        let mut columns: Vec<Column> = (0..n as u32)
            .map(|i| Column {
                keep: u32::MAX,
                alias: i,
            })
            .collect();
        // Vose: fill each small column up to 1 from a large one, which may
        // then become small itself.
        while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
            small.pop();
            columns[s as usize] = Column {
                keep: (scaled[s as usize] * 4_294_967_296.0) as u32,
                alias: l,
            };
            scaled[l as usize] -= 1.0 - scaled[s as usize];
            if scaled[l as usize] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        // What is left is 1 up to rounding: always kept (the default).
        Some(Pick { columns })
    }

    /// Draws an index. The column comes from the high 32 bits by a
    /// multiply-shift (bias below n / 2^32: 2.3e-6 at 10,000 instruments),
    /// the keep-or-alias choice from the low 32.
    #[inline]
    pub fn sample(&self, rng: &mut impl Rng) -> usize {
        let r = rng.next_u64();
        let column = (((r >> 32) * self.columns.len() as u64) >> 32) as usize;
        let c = self.columns[column];
        if (r as u32) < c.keep {
            column
        } else {
            c.alias as usize
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    /// Each index's frequency over `draws` is within 5 sigma of its weight.
    fn check(weights: &[f64], draws: u32) {
        let pick = Pick::new(weights).unwrap();
        let mut rng = SmallRng::seed_from_u64(3);
        let mut counts = vec![0u64; weights.len()];
        for _ in 0..draws {
            counts[pick.sample(&mut rng)] += 1;
        }
        let sum: f64 = weights.iter().sum();
        for (i, (&w, &c)) in weights.iter().zip(&counts).enumerate() {
            let p = w / sum;
            let mean = p * draws as f64;
            let sigma = (mean * (1.0 - p)).sqrt();
            assert!(
                (c as f64 - mean).abs() <= 5.0 * sigma + 1.0,
                "index {i}: {c} draws, expected {mean:.0} ± {sigma:.0}"
            );
        }
    }

    #[test]
    fn frequencies_follow_the_weights() {
        check(&[1.0], 10_000);
        check(&[1.0, 1.0], 100_000);
        check(&[1.0, 2.0, 3.0, 4.0], 400_000);
        check(&[100.0, 0.5, 0.5, 7.0, 0.01, 30.0], 1_000_000);
        let many: Vec<f64> = (1..=1000).map(|i| (i % 17 + 1) as f64).collect();
        check(&many, 2_000_000);
    }

    #[test]
    fn a_zero_weight_is_never_drawn() {
        let pick = Pick::new(&[0.0, 1.0, 0.0, 3.0]).unwrap();
        let mut rng = SmallRng::seed_from_u64(1);
        for _ in 0..100_000 {
            let i = pick.sample(&mut rng);
            assert!(i == 1 || i == 3, "drew {i}");
        }
    }

    #[test]
    fn no_table_without_weight() {
        assert!(Pick::new(&[]).is_none());
        assert!(Pick::new(&[0.0, 0.0]).is_none());
        assert!(Pick::new(&[f64::INFINITY]).is_none());
    }
}
