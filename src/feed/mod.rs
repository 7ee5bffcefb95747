//! The simulated market: what instruments exist ([`Universe`]), how each one's
//! price moves ([`PriceModel`]), and when ticks happen ([`Generator`]).
//!
//! This module is pure: it never reads a clock or touches the network. The
//! local source (`crate::source::local`) drives a [`Generator`] with the real
//! clock; tests and benchmarks drive it with a virtual one, which is what
//! makes rate accuracy and reproducibility testable without sleeping.

mod generator;
mod model;
mod pick;
mod universe;

pub use generator::Generator;
pub use model::{PriceModel, Quote, Tick};
pub use tickwire_protocol::AssetClass;
pub use universe::{FeedError, Instrument, Resolved, SymbolId, Universe};
