//! Instrument universes: loaded from a TOML feed file, the embedded demo, or
//! made up (`--synthetic`).
//!
//! Prices and quantities are fixed-point integers (`units` of 10^-decimals) from
//! here on, so nothing downstream ever prints float noise like 187.23000000000002.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::Deserialize;
use tickwire_protocol::decimal::write_fixed;
use tickwire_protocol::{AssetClass, SymbolInfo};

/// Index of an instrument in its [`Universe`]; also the index of its topic.
pub type SymbolId = u32;

/// The demo universe compiled into the binary, so `cargo run --release` works
/// from any directory.
pub const DEMO_FEED: &str = include_str!("../../feeds/demo.toml");

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("cannot read feed file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("feed file {path} is not valid: {source}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
    #[error("instrument {symbol}: {problem}")]
    Instrument { symbol: String, problem: String },
    #[error("the feed has no instruments")]
    Empty,
    #[error("symbol {0} appears twice in the feed")]
    Duplicate(String),
}

/// One `[[instrument]]` table of a feed file, as written by people.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InstrumentSpec {
    symbol: String,
    #[serde(default)]
    name: String,
    class: AssetClass,
    /// Start price.
    price: f64,
    tick_size: f64,
    lot_size: f64,
    /// Annualised volatility (0.3 = 30 %), over a year of [`SECONDS_PER_YEAR`].
    volatility: f64,
    /// Mean trades per second (Poisson arrivals).
    rate: f64,
    /// Widest quoted spread, in ticks (each quote draws 1..=spread_ticks).
    #[serde(default = "default_spread")]
    spread_ticks: u32,
    /// Largest trade, in lots (each trade draws 1..=max_lots, skewed small).
    #[serde(default = "default_max_lots")]
    max_lots: u32,
}

fn default_spread() -> u32 {
    2
}
fn default_max_lots() -> u32 {
    50
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedFile {
    instrument: Vec<InstrumentSpec>,
}

/// An instrument, with prices and sizes as fixed-point integers.
#[derive(Debug, Clone)]
pub struct Instrument {
    pub symbol: String,
    pub name: String,
    pub class: AssetClass,
    /// Digits after the decimal point of every price of this instrument.
    pub price_decimals: u32,
    /// Tick size in price units (10^-price_decimals).
    pub tick: i64,
    /// Digits after the decimal point of every quantity.
    pub qty_decimals: u32,
    /// Lot size in quantity units (10^-qty_decimals).
    pub lot: i64,
    /// Start price in price units, on the tick grid.
    pub start_price: i64,
    pub volatility: f64,
    pub rate: f64,
    pub spread_ticks: u32,
    pub max_lots: u32,
}

impl Instrument {
    /// Decimal text of a price in this instrument's units.
    pub fn price_str(&self, units: i64) -> String {
        let mut s = Vec::new();
        write_fixed(&mut s, units, self.price_decimals);
        String::from_utf8(s).expect("ascii")
    }

    /// Decimal text of a quantity in this instrument's units.
    pub fn qty_str(&self, units: i64) -> String {
        let mut s = Vec::new();
        write_fixed(&mut s, units, self.qty_decimals);
        String::from_utf8(s).expect("ascii")
    }
}

/// What [`Universe::resolve`] made of a list of names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resolved {
    /// Known symbols, deduplicated, in request order.
    pub known: Vec<SymbolId>,
    /// Names that are not in the universe, as given.
    pub unknown: Vec<String>,
}

/// All instruments of a run. Fixed for the lifetime of the process.
#[derive(Debug)]
pub struct Universe {
    instruments: Vec<Instrument>,
    by_symbol: HashMap<String, SymbolId>,
}

/// Smallest number of decimals (at most 9) that writes `x` exactly; `None`
/// when `x` needs more.
fn decimals_of(x: f64) -> Option<u32> {
    (0..=9).find(|&d| {
        let scaled = x * 10f64.powi(d as i32);
        (scaled - scaled.round()).abs() < 1e-6 * scaled.abs().max(1.0)
    })
}

impl Universe {
    /// The embedded demo universe (`feeds/demo.toml`).
    pub fn demo() -> Universe {
        Universe::from_toml(DEMO_FEED, "feeds/demo.toml (embedded)")
            .expect("the embedded demo feed is valid")
    }

    pub fn load(path: &Path) -> Result<Universe, FeedError> {
        let text = std::fs::read_to_string(path).map_err(|source| FeedError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Universe::from_toml(&text, &path.display().to_string())
    }

    pub fn from_toml(text: &str, origin: &str) -> Result<Universe, FeedError> {
        let file: FeedFile = toml::from_str(text).map_err(|source| FeedError::Parse {
            path: origin.to_string(),
            source,
        })?;
        let instruments = file
            .instrument
            .into_iter()
            .map(Instrument::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        Universe::new(instruments)
    }

    /// `count` instruments named `S0`..`S{count-1}`, each trading `rate` times
    /// per second: the universe load tests and benchmarks use.
    pub fn synthetic(count: u32, rate: f64) -> Universe {
        let instruments = (0..count)
            .map(|i| Instrument {
                symbol: format!("S{i}"),
                name: format!("Synthetic {i}"),
                class: AssetClass::Synthetic,
                price_decimals: 2,
                tick: 1,
                qty_decimals: 0,
                lot: 1,
                // Spread the start prices so symbols are told apart at a glance.
                start_price: 10_000 + (i as i64 % 900) * 100,
                volatility: 0.4,
                rate,
                spread_ticks: 2,
                max_lots: 100,
            })
            .collect();
        Universe::new(instruments).expect("synthetic universe is valid")
    }

    fn new(instruments: Vec<Instrument>) -> Result<Universe, FeedError> {
        if instruments.is_empty() {
            return Err(FeedError::Empty);
        }
        let mut by_symbol = HashMap::with_capacity(instruments.len());
        for (i, ins) in instruments.iter().enumerate() {
            if by_symbol
                .insert(ins.symbol.clone(), i as SymbolId)
                .is_some()
            {
                return Err(FeedError::Duplicate(ins.symbol.clone()));
            }
        }
        Ok(Universe {
            instruments,
            by_symbol,
        })
    }

    pub fn len(&self) -> usize {
        self.instruments.len()
    }

    pub fn is_empty(&self) -> bool {
        self.instruments.is_empty()
    }

    pub fn get(&self, id: SymbolId) -> &Instrument {
        &self.instruments[id as usize]
    }

    pub fn id_of(&self, symbol: &str) -> Option<SymbolId> {
        self.by_symbol.get(symbol).copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = (SymbolId, &Instrument)> {
        self.instruments
            .iter()
            .enumerate()
            .map(|(i, ins)| (i as SymbolId, ins))
    }

    /// Sum of every instrument's mean tick rate.
    pub fn total_rate(&self) -> f64 {
        self.instruments.iter().map(|i| i.rate).sum()
    }

    /// Resolves names to symbols, as every request that names symbols does:
    /// `*` is every symbol; the known ones are deduplicated and kept in
    /// request order, the unknown names collected.
    pub fn resolve(&self, names: &[String]) -> Resolved {
        if names.iter().any(|n| n == "*") {
            return Resolved {
                known: self.iter().map(|(id, _)| id).collect(),
                unknown: Vec::new(),
            };
        }
        let mut seen = HashSet::with_capacity(names.len());
        let mut known = Vec::with_capacity(names.len());
        let mut unknown = Vec::new();
        for name in names {
            match self.id_of(name) {
                Some(id) => {
                    if seen.insert(id) {
                        known.push(id);
                    }
                }
                None => unknown.push(name.clone()),
            }
        }
        Resolved { known, unknown }
    }

    /// Every instrument's static data, as the protocol describes it.
    pub fn symbol_infos(&self) -> Vec<SymbolInfo> {
        self.iter()
            .map(|(id, i)| SymbolInfo {
                id,
                sym: i.symbol.clone(),
                name: i.name.clone(),
                class: i.class,
                tick_size: i.price_str(i.tick),
                lot_size: i.qty_str(i.lot),
                price_decimals: i.price_decimals,
                qty_decimals: i.qty_decimals,
                rate: i.rate,
            })
            .collect()
    }
}

impl TryFrom<InstrumentSpec> for Instrument {
    type Error = FeedError;

    fn try_from(s: InstrumentSpec) -> Result<Instrument, FeedError> {
        let bad = |problem: &str| FeedError::Instrument {
            symbol: s.symbol.clone(),
            problem: problem.to_string(),
        };
        if s.symbol.is_empty()
            || s.symbol.len() > 32
            || !s
                .symbol
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-/:".contains(&b))
        {
            return Err(bad(
                "symbol must be 1-32 characters of A-Z, a-z, 0-9 and . _ - / :",
            ));
        }
        if [s.tick_size, s.lot_size, s.price]
            .iter()
            .any(|v| v.is_nan() || *v <= 0.0)
        {
            return Err(bad("price, tick_size and lot_size must be positive"));
        }
        if s.rate.is_nan() || s.rate <= 0.0 || s.rate > 1_000_000.0 {
            return Err(bad("rate must be in (0, 1000000] trades per second"));
        }
        if !(0.0..=10.0).contains(&s.volatility) {
            return Err(bad("volatility must be in [0, 10] (annualised fraction)"));
        }
        if s.spread_ticks == 0 || s.max_lots == 0 {
            return Err(bad("spread_ticks and max_lots must be at least 1"));
        }
        let price_decimals =
            decimals_of(s.tick_size).ok_or_else(|| bad("tick_size needs more than 9 decimals"))?;
        let qty_decimals =
            decimals_of(s.lot_size).ok_or_else(|| bad("lot_size needs more than 9 decimals"))?;
        let price_scale = 10f64.powi(price_decimals as i32);
        let tick = (s.tick_size * price_scale).round() as i64;
        let lot = (s.lot_size * 10f64.powi(qty_decimals as i32)).round() as i64;
        // Snap the start price onto the tick grid.
        let start_price = ((s.price * price_scale / tick as f64).round() as i64).max(1) * tick;
        Ok(Instrument {
            name: if s.name.is_empty() {
                s.symbol.clone()
            } else {
                s.name.clone()
            },
            symbol: s.symbol,
            class: s.class,
            price_decimals,
            tick,
            qty_decimals,
            lot,
            start_price,
            volatility: s.volatility,
            rate: s.rate,
            spread_ticks: s.spread_ticks,
            max_lots: s.max_lots,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_exact() {
        assert_eq!(decimals_of(0.01), Some(2));
        assert_eq!(decimals_of(0.05), Some(2));
        assert_eq!(decimals_of(0.5), Some(1));
        assert_eq!(decimals_of(1.0), Some(0));
        assert_eq!(decimals_of(0.00001), Some(5));
        assert_eq!(decimals_of(0.1 + 0.2), Some(1));
    }

    #[test]
    fn demo_feed_is_realistic() {
        let u = Universe::demo();
        assert!((30..=50).contains(&u.len()), "{} instruments", u.len());
        for class in [AssetClass::Equity, AssetClass::Crypto, AssetClass::Fx] {
            assert!(u.iter().any(|(_, i)| i.class == class), "{class:?} missing");
        }
        let aapl = u.get(u.id_of("AAPL").unwrap());
        assert_eq!(aapl.price_decimals, 2);
        assert_eq!(aapl.start_price % aapl.tick, 0);
    }

    #[test]
    fn large_feed_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("feeds/large.toml");
        let u = Universe::load(&path).unwrap();
        assert!(u.len() >= 1000);
    }

    #[test]
    fn bad_instruments_are_named() {
        let err = Universe::from_toml(
            "[[instrument]]\nsymbol='X'\nclass='equity'\nprice=1\ntick_size=0\nlot_size=1\nvolatility=0.1\nrate=1\n",
            "t",
        )
        .unwrap_err();
        assert!(err.to_string().contains("instrument X"), "{err}");
        let err = Universe::from_toml("[[instrument]]\nsymbol='X'\n", "t").unwrap_err();
        assert!(err.to_string().contains("not valid"), "{err}");
    }

    #[test]
    fn names_resolve_once_each_in_order() {
        let u = Universe::synthetic(3, 1.0);
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let r = u.resolve(&names(&["S2", "X", "S0", "S2"]));
        assert_eq!(r.known, vec![2, 0]);
        assert_eq!(r.unknown, vec!["X".to_string()]);
        assert_eq!(u.resolve(&names(&["S1", "*"])).known, vec![0, 1, 2]);
    }

    #[test]
    fn synthetic_names() {
        let u = Universe::synthetic(3, 5.0);
        assert_eq!(u.id_of("S2"), Some(2));
        assert_eq!(u.total_rate(), 15.0);
    }
}
