//! When to try again after a lost connection: exponential backoff with full
//! jitter.
//!
//! The n-th attempt in a row waits a uniformly random time in
//! `[0, min(max, base × 2^n)]` ("full jitter", as in Marc Brooker's
//! "Exponential Backoff And Jitter"): a thousand bots that lost the same
//! server spread their reconnects over the whole window instead of arriving
//! together. The attempt count goes back to zero only once a connection has
//! stayed up for the stable period, so a server that accepts and then drops
//! connections at once still sees growing delays.

use std::time::Duration;

/// Exponential backoff with full jitter, bounded by `max`.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub(crate) fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max: max.max(base),
            attempt: 0,
        }
    }

    /// The upper bound of the next delay: `min(max, base × 2^attempt)`.
    pub(crate) fn ceiling(&self) -> Duration {
        // 2^31 × any base over a nanosecond already exceeds any sane max.
        let factor = 1u32 << self.attempt.min(31);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The next delay, drawn with `draw(ceiling_ns)` (uniform in `0..=ceiling_ns`),
    /// and counts the attempt.
    pub(crate) fn next_with(&mut self, draw: impl FnOnce(u64) -> u64) -> Duration {
        let ceiling = u64::try_from(self.ceiling().as_nanos()).unwrap_or(u64::MAX);
        self.attempt = self.attempt.saturating_add(1);
        Duration::from_nanos(draw(ceiling).min(ceiling))
    }

    /// The next delay, with full jitter from the thread's random generator.
    pub(crate) fn next(&mut self) -> Duration {
        self.next_with(|ceiling| rand::random_range(0..=ceiling))
    }

    /// After a stable connection: the next delay starts from `base` again.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn ceilings_double_up_to_the_max_and_stay_there() {
        let mut b = Backoff::new(100 * MS, 3000 * MS);
        let ceilings: Vec<Duration> = (0..8)
            .map(|_| {
                let c = b.ceiling();
                b.next_with(|c| c);
                c
            })
            .collect();
        let ms: Vec<u64> = ceilings.iter().map(|d| d.as_millis() as u64).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3000, 3000, 3000]);
        // Thousands of attempts later still bounded, no overflow.
        for _ in 0..10_000 {
            assert!(b.next() <= 3000 * MS);
        }
    }

    #[test]
    fn delays_are_drawn_from_zero_to_the_ceiling() {
        let mut b = Backoff::new(100 * MS, 1000 * MS);
        assert_eq!(
            b.next_with(|_| 0),
            Duration::ZERO,
            "full jitter starts at 0"
        );
        // A draw past the ceiling is clamped to it.
        assert_eq!(b.next_with(|_| u64::MAX), 200 * MS);
        let mut b = Backoff::new(100 * MS, 1000 * MS);
        for _ in 0..4 {
            b.next();
        }
        // The real generator: every delay within [0, ceiling], and spread.
        let draws: Vec<Duration> = (0..200).map(|_| b.clone().next()).collect();
        assert!(draws.iter().all(|d| *d <= 1000 * MS));
        let (lo, hi) = (draws.iter().min().unwrap(), draws.iter().max().unwrap());
        assert!(*hi - *lo > 500 * MS, "jittered, not fixed: {lo:?}..{hi:?}");
    }

    #[test]
    fn reset_starts_from_the_base_again() {
        let mut b = Backoff::new(50 * MS, 10_000 * MS);
        for _ in 0..6 {
            b.next();
        }
        assert_eq!(b.ceiling(), 3200 * MS);
        b.reset();
        assert_eq!(b.ceiling(), 50 * MS);
        assert!(b.next() <= 50 * MS);
    }

    #[test]
    fn a_max_below_the_base_is_the_base() {
        let mut b = Backoff::new(500 * MS, 100 * MS);
        assert_eq!(b.next_with(|c| c), 500 * MS);
        assert_eq!(b.next_with(|c| c), 500 * MS);
    }
}
