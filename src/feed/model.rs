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
        self.mid *= exp_small(-0.5 * var + var.sqrt() * z);
        // Keep the quote meaningful far from zero: never below ten ticks.
        let floor = (10 * self.tick) as f64;
        if self.mid < floor {
            self.mid = floor;
        }
        let tick = self.tick as f64;
        // One 64-bit draw for the spread (low 32 bits, multiply-shifted onto
        // 1..=spread_ticks: bias below spread_ticks / 2^32), the size (31
        // bits) and the side (the top bit): three draws cost 30 instructions
        // more.
        let r = rng.next_u64();
        let spread = 1 + (((r & 0xffff_ffff) * self.spread_ticks as u64) >> 32) as i64;
        // `as` truncates toward zero, which is the floor for every value the
        // `max(1)` keeps: [1, inf) truncates to its floor and anything below 1
        // ends at 1 either way. (`f64::floor` is a software routine on
        // baseline x86-64, without SSE4.1: 25 instructions a tick.)
        let bid_ticks = ((self.mid / tick) - spread as f64 / 2.0) as i64;
        let bid = bid_ticks.max(1) * self.tick;
        let ask = bid + spread * self.tick;
        let px = if r >> 63 == 1 { ask } else { bid };
        // Cubing a uniform skews sizes small: most trades are a few lots.
        let u = ((r >> 32) & 0x7fff_ffff) as f64 * (1.0 / 2_147_483_648.0);
        let lots = ceil_non_negative(self.max_lots as f64 * u * u * u).max(1);
        Quote {
            px,
            qty: lots * self.lot,
            bid,
            ask,
        }
    }
}

/// e^x, for the log-return of one trade: tiny (|x| ~ 1e-6 to 1e-3 at the
/// universes' volatilities and rates), where four terms of the series are
/// exact to half an ulp and cost seven multiplies and adds, against 53
/// instructions a tick for libm's `exp` under callgrind; anything larger
/// goes to `exp`.
fn exp_small(x: f64) -> f64 {
    if x.abs() < 1.0 / 1024.0 {
        // Remainder below |x|^5 / 120 < 7.4e-18, under half an ulp of 1.
        // Estrin's grouping keeps the dependency chain short.
        let x2 = x * x;
        (1.0 + x) + x2 * ((0.5 + x * (1.0 / 6.0)) + x2 * (1.0 / 24.0))
    } else {
        x.exp()
    }
}

/// `v.ceil() as i64` for 0 <= v < 2^53, without `f64::ceil`'s software
/// routine (21 instructions on baseline x86-64).
fn ceil_non_negative(v: f64) -> i64 {
    let t = v as i64;
    t + ((t as f64) < v) as i64
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
    fn exp_small_matches_exp() {
        let mut rng = SmallRng::seed_from_u64(11);
        for _ in 0..100_000 {
            // Log-uniform magnitudes from 1e-12 to 1e-2, both signs: the
            // series below 2^-10, exp above.
            let mag = 10f64.powf(rng.random_range(-12.0..-2.0));
            let x = if rng.random_bool(0.5) { mag } else { -mag };
            let (got, want) = (exp_small(x), x.exp());
            assert!(
                (got - want).abs() <= 2.0 * f64::EPSILON * want,
                "{x}: {got} vs {want}"
            );
        }
        assert_eq!(exp_small(0.0), 1.0);
    }

    #[test]
    fn ceil_non_negative_is_ceil() {
        for v in [0.0, 0.2, 1.0, 1.0000001, 49.999, 50.0, 1e15 + 0.5] {
            assert_eq!(ceil_non_negative(v), v.ceil() as i64, "{v}");
        }
        let mut rng = SmallRng::seed_from_u64(5);
        for _ in 0..100_000 {
            let v: f64 = rng.random::<f64>() * 1000.0;
            assert_eq!(ceil_non_negative(v), v.ceil() as i64, "{v}");
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
