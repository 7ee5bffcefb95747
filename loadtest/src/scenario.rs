//! Scenario files (loadtest/scenarios/*.toml): the server's feed, the client
//! load, and for stepped or compared runs how the runs relate. The standard
//! scenarios are compiled in, so the binary works from anywhere.

use std::path::Path;

use anyhow::{bail, Context};
use rand::{rngs::SmallRng, seq::index::sample, SeedableRng};
use serde::{Deserialize, Serialize};
use tickwire_protocol::{Id, Request};

/// The standard scenarios, by name.
pub const BUILTIN: &[(&str, &str)] = &[
    ("latency", include_str!("../scenarios/latency.toml")),
    ("throughput", include_str!("../scenarios/throughput.toml")),
    ("connections", include_str!("../scenarios/connections.toml")),
    (
        "slow-consumer",
        include_str!("../scenarios/slow-consumer.toml"),
    ),
    ("load-4m", include_str!("../scenarios/load-4m.toml")),
    ("cpu-1m", include_str!("../scenarios/cpu-1m.toml")),
    (
        "throughput-1000",
        include_str!("../scenarios/throughput-1000.toml"),
    ),
    (
        "connections-max",
        include_str!("../scenarios/connections-max.toml"),
    ),
];

/// One scenario file: the server's feed, the client load, and how its runs
/// relate (a baseline to compare with, or rate steps).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Run once without stalled clients first and compare.
    #[serde(default)]
    pub baseline: bool,
    pub server: ServerFeed,
    pub load: Load,
    pub steps: Option<Steps>,
}

/// The synthetic feed a spawned server is started with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFeed {
    /// Universe size: symbols S0..S{n-1}.
    pub symbols: u32,
    /// Ticks per second per symbol.
    pub rate: f64,
    /// Extra flags for tickwire only (reference servers take none).
    #[serde(default)]
    pub tickwire_args: Vec<String>,
}

/// The client load of each run: how many connections, how fast they open,
/// what they subscribe to, how long to warm up and to measure.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Load {
    pub connections: u32,
    /// Connections opened per second.
    pub ramp: f64,
    pub subscribe: SymbolSet,
    /// Sent as the `policy` query parameter; empty sends none.
    #[serde(default)]
    pub policy: String,
    /// Sent as the `format` query parameter (`binary` for tickwire's binary
    /// ticks); empty sends none.
    #[serde(default)]
    pub format: String,
    /// Share of the connections that stop reading after subscribing.
    #[serde(default)]
    pub stall_fraction: f64,
    /// What the stalled connections subscribe to (default: as the others).
    pub stall_subscribe: Option<SymbolSet>,
    pub warmup_secs: f64,
    pub duration_secs: f64,
}

/// Stepped load: one run per per-symbol rate, stopping at the first that is
/// not sustained.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Steps {
    pub rates: Vec<f64>,
    pub p99_bound_ms: f64,
    pub min_delivery: f64,
}

/// Which symbols a connection subscribes to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum SymbolSet {
    /// `["*"]`: the whole universe.
    All,
    /// The first K symbols of the universe.
    First(u32),
    /// K distinct symbols drawn per connection.
    Random(u32),
    List(Vec<String>),
}

impl TryFrom<String> for SymbolSet {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<SymbolSet> for String {
    fn from(s: SymbolSet) -> String {
        match s {
            SymbolSet::All => "all".into(),
            SymbolSet::First(k) => format!("first:{k}"),
            SymbolSet::Random(k) => format!("random:{k}"),
            SymbolSet::List(l) => format!("list:{}", l.join(",")),
        }
    }
}

impl std::str::FromStr for SymbolSet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let num = |k: &str| {
            k.parse::<u32>()
                .map_err(|_| format!("'{s}': expected a count after the colon"))
        };
        match s.split_once(':') {
            None if s == "all" || s == "*" => Ok(SymbolSet::All),
            Some(("first", k)) => Ok(SymbolSet::First(num(k)?)),
            Some(("random", k)) => Ok(SymbolSet::Random(num(k)?)),
            Some(("list", l)) => Ok(SymbolSet::List(
                l.split(',')
                    .filter(|x| !x.is_empty())
                    .map(String::from)
                    .collect(),
            )),
            _ => Err(format!(
                "'{s}': use all, first:K, random:K or list:SYM1,SYM2"
            )),
        }
    }
}

impl SymbolSet {
    /// Symbol names for connection `index` in a universe of `universe`
    /// symbols named `S0..`; `None` means all.
    pub fn names(&self, universe: u32, index: u32, seed: u64) -> Option<Vec<String>> {
        match self {
            SymbolSet::All => None,
            SymbolSet::First(k) => Some((0..(*k).min(universe)).map(|i| format!("S{i}")).collect()),
            SymbolSet::Random(k) => {
                let mut rng = SmallRng::seed_from_u64(
                    seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                );
                let k = (*k).min(universe) as usize;
                let mut ids: Vec<usize> = sample(&mut rng, universe as usize, k).into_vec();
                ids.sort_unstable();
                Some(ids.into_iter().map(|i| format!("S{i}")).collect())
            }
            SymbolSet::List(l) => Some(l.clone()),
        }
    }

    /// How many symbols a connection receives in a universe of `universe`.
    pub fn count(&self, universe: u32) -> u32 {
        match self {
            SymbolSet::All => universe,
            SymbolSet::First(k) | SymbolSet::Random(k) => (*k).min(universe),
            SymbolSet::List(l) => l.len() as u32,
        }
    }

    /// The subscribe message's JSON text.
    pub fn subscribe_json(&self, universe: u32, index: u32, seed: u64) -> Vec<u8> {
        let symbols = match self.names(universe, index, seed) {
            None => vec!["*".to_string()],
            Some(names) => names,
        };
        Request::Subscribe {
            id: Some(Id::Int(1)),
            symbols,
            from: None,
            epoch: None,
            throttle_ms: None,
        }
        .to_json()
    }
}

impl Scenario {
    /// A built-in scenario by name, or a TOML file by path.
    pub fn load(name_or_path: &str) -> anyhow::Result<Scenario> {
        if let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
            return Scenario::parse(text, name_or_path);
        }
        let path = Path::new(name_or_path);
        if !path.exists() {
            let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
            bail!(
                "no scenario '{name_or_path}': use one of {} or a path to a .toml file",
                names.join(", ")
            );
        }
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Scenario::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, origin: &str) -> anyhow::Result<Scenario> {
        let s: Scenario = toml::from_str(text).with_context(|| format!("scenario {origin}"))?;
        if s.load.connections == 0 || s.load.ramp <= 0.0 || s.load.duration_secs <= 0.0 {
            bail!("scenario {origin}: connections, ramp and duration_secs must be positive");
        }
        if !(0.0..=1.0).contains(&s.load.stall_fraction) {
            bail!("scenario {origin}: stall_fraction must be between 0 and 1");
        }
        Ok(s)
    }

    /// Connections that stall, out of the total (at least one if the
    /// fraction is non-zero).
    pub fn stalled(&self) -> u32 {
        if self.load.stall_fraction == 0.0 {
            return 0;
        }
        ((self.load.connections as f64 * self.load.stall_fraction).round() as u32).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_scenarios_parse() {
        for (name, text) in BUILTIN {
            let s = Scenario::parse(text, name).unwrap();
            assert_eq!(&s.name, name);
        }
        let sc = Scenario::load("slow-consumer").unwrap();
        assert_eq!(sc.stalled(), 1);
        assert!(sc.baseline);
        assert!(Scenario::load("throughput").unwrap().steps.is_some());
    }

    #[test]
    fn symbol_sets_parse_and_expand() {
        assert_eq!("all".parse::<SymbolSet>().unwrap(), SymbolSet::All);
        assert_eq!(
            "first:3"
                .parse::<SymbolSet>()
                .unwrap()
                .names(10, 0, 0)
                .unwrap(),
            ["S0", "S1", "S2"]
        );
        let r: SymbolSet = "random:4".parse().unwrap();
        let a = r.names(100, 7, 1).unwrap();
        assert_eq!(a.len(), 4);
        assert_eq!(a, r.names(100, 7, 1).unwrap());
        assert_ne!(a, r.names(100, 8, 1).unwrap());
        assert_eq!(
            "list:A,B"
                .parse::<SymbolSet>()
                .unwrap()
                .subscribe_json(0, 0, 0),
            br#"{"op":"subscribe","id":1,"symbols":["A","B"]}"#
        );
        assert_eq!(
            SymbolSet::All.subscribe_json(5, 0, 0),
            br#"{"op":"subscribe","id":1,"symbols":["*"]}"#
        );
        assert!("some:3".parse::<SymbolSet>().is_err());
    }
}
