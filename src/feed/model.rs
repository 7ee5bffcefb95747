//! How one instrument's price moves between two trades.
//!
//! The mid price follows geometric Brownian motion (zero drift), sampled at each
//! trade. Quotes sit on the tick grid around it with a random whole-tick spread,
//! and each trade takes the bid or the ask with a random lot quantity skewed
//! towards small sizes, as on real tapes.

use rand::RngExt;
use rand_distr::StandardNormal;

use super::{Instrument, SymbolId};

/// Length of a year for `volatility`: 252 trading days of 6.5 hours. One
/// clock for every asset class keeps feed files comparable.
pub const SECONDS_PER_YEAR: f64 = 252.0 * 6.5 * 3600.0;

/// One trade and the quote around it: the unit of market data. Prices and
/// quantity are fixed-point in the instrument's units; `ts_us` is the
/// wall-clock generation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    pub sym: SymbolId,
    pub seq: u64,
    pub ts_us: u64,
    pub px: i64,
    pub qty: i64,
    pub bid: i64,
    pub ask: i64,
}

/// A trade and the quote around it, in the instrument's fixed-point units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote {
    pub px: i64,
    pub qty: i64,
    pub bid: i64,
    pub ask: i64,
}

#[derive(Debug, Clone)]
pub struct PriceModel {
    /// Mid price in price units; continuous, never sent.
    mid: f64,
    /// Volatility per square root of a second.
    sigma: f64,
    tick: i64,
    spread_ticks: u32,
    lot: i64,
    max_lots: u32,
}

impl PriceModel {
    pub fn new(ins: &Instrument) -> PriceModel {
        PriceModel {
            mid: ins.start_price as f64,
            sigma: ins.volatility / SECONDS_PER_YEAR.sqrt(),
            tick: ins.tick,
            spread_ticks: ins.spread_ticks,
            lot: ins.lot,
            max_lots: ins.max_lots,
        }
    }

    /// Moves the mid by `dt` seconds of GBM and draws a trade.
    pub fn step(&mut self, dt: f64, rng: &mut impl RngExt) -> Quote {
        let z: f64 = rng.sample(StandardNormal);
        let var = self.sigma * self.sigma * dt;
        self.mid *= (-0.5 * var + var.sqrt() * z).exp();
        // Keep the quote meaningful far from zero: never below ten ticks.
        let floor = (10 * self.tick) as f64;
        if self.mid < floor {
            self.mid = floor;
        }
        let tick = self.tick as f64;
        let spread = rng.random_range(1..=self.spread_ticks) as i64;
        let bid_ticks = ((self.mid / tick) - spread as f64 / 2.0).floor() as i64;
        let bid = bid_ticks.max(1) * self.tick;
        let ask = bid + spread * self.tick;
        let px = if rng.random_bool(0.5) { ask } else { bid };
        // Cubing a uniform skews sizes small: most trades are a few lots.
        let u: f64 = rng.random();
        let lots = ((self.max_lots as f64 * u * u * u).ceil() as i64).max(1);
        Quote {
            px,
            qty: lots * self.lot,
            bid,
            ask,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::Universe;
    use rand::{rngs::SmallRng, SeedableRng};

    #[test]
    fn quotes_stay_on_the_tick_grid() {
        let u = Universe::from_toml(
            "[[instrument]]\nsymbol='X'\nclass='equity'\nprice=10.02\ntick_size=0.05\nlot_size=0.001\nvolatility=3.0\nrate=1\nspread_ticks=4\n",
            "t",
        )
        .unwrap();
        let ins = u.get(0);
        assert_eq!((ins.tick, ins.price_decimals), (5, 2));
        let mut m = PriceModel::new(ins);
        let mut rng = SmallRng::seed_from_u64(7);
        for _ in 0..10_000 {
            let q = m.step(0.5, &mut rng);
            assert_eq!(q.bid % 5, 0, "{q:?}");
            assert_eq!(q.ask % 5, 0, "{q:?}");
            assert!(q.ask > q.bid && q.ask - q.bid <= 20, "{q:?}");
            assert!(q.px == q.bid || q.px == q.ask);
            assert!(q.qty >= 1 && q.qty <= 50, "{q:?}");
        }
    }

    #[test]
    fn volatility_scales_moves() {
        let u = Universe::synthetic(1, 1.0);
        let mut calm = PriceModel::new(u.get(0));
        calm.sigma = 0.0;
        let mut rng = SmallRng::seed_from_u64(1);
        let q = calm.step(1.0, &mut rng);
        assert!((q.bid..=q.ask).contains(&10_000));
    }
}
