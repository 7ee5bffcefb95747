//! Every server message that is not a tick or a snapshot: acks, errors,
//! heartbeats, pongs and the instrument list. They are small and rare, so
//! they go through serde (ticks never do: see [`crate::tick`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::codes::ErrorCode;
use crate::request::{Id, RequestError};

/// A server message other than a tick or snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Reply {
    /// The first message on every connection (v1.1): the protocol version,
    /// the epoch of the seq numbers, and the limits a client needs.
    Welcome(Welcome),
    /// The answer to `subscribe`: every known symbol of the request,
    /// followed or not before.
    Subscribed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<Id>,
        symbols: Vec<String>,
        /// Only when the request had `from`: per symbol of `from`, whether the
        /// missed ticks follow (`true`) or a snapshot does (`false`) (v1.1).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recovered: Option<BTreeMap<String, bool>>,
    },
    /// The answer to `unsubscribe`; no tick of these symbols follows it.
    Unsubscribed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<Id>,
        symbols: Vec<String>,
    },
    /// The answer to the `ping` op; `ts` is the server's clock (µs).
    Pong {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<Id>,
        ts: u64,
    },
    /// Sent after a quiet interval, so silence never means a dead connection.
    Heartbeat { ts: u64 },
    /// Ticks `from..=to` of `sym` were lost at the source (a gateway missed
    /// them on its broker and its feed no longer had them); the next tick of
    /// `sym` has seq `to + 1`. Sent in order, between the ticks around the
    /// hole.
    Gap { sym: String, from: u64, to: u64 },
    /// The answer to the `symbols` op.
    Symbols {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<Id>,
        symbols: Vec<SymbolInfo>,
    },
    /// A request that was refused in whole or in part; the connection stays open.
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<Id>,
        code: ErrorCode,
        message: String,
    },
}

impl Reply {
    /// The reply's JSON text.
    pub fn to_json(&self) -> Vec<u8> {
        simd_json::to_vec(self).expect("replies serialize")
    }
}

impl From<RequestError> for Reply {
    fn from(e: RequestError) -> Reply {
        Reply::Error {
            id: e.id,
            code: e.code,
            message: e.message,
        }
    }
}

/// The body of the `welcome` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The protocol version the server speaks, e.g. `"1.1"`.
    pub version: String,
    /// Names this server run's sequence space: it changes whenever seq
    /// numbering starts over (a restart), so "seq 1042" of one epoch is not
    /// "seq 1042" of another. Resume with `from` needs it.
    pub epoch: String,
    /// A connection that is sent nothing for this long gets a heartbeat; no
    /// message at all for three times this means the connection is stalled.
    pub heartbeat_ms: u64,
    /// Most symbols one connection may follow.
    pub max_symbols: usize,
    /// Control messages per second (bursts of twice that).
    pub control_rate: u32,
    /// Largest client message in bytes.
    pub max_message: usize,
    /// Ticks of history kept per symbol: how far back `from` can resume.
    pub history: usize,
    /// This connection's slow-consumer policy: `conflate` or `disconnect`.
    pub policy: String,
    /// How this connection's ticks are encoded: `json` or `binary`.
    pub format: String,
}

/// Kind of instrument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AssetClass {
    Equity,
    Crypto,
    Fx,
    Synthetic,
}

/// Static data of one instrument, as `/api/symbols` and the `symbols` op give it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SymbolInfo {
    /// The symbol's number, as binary ticks name it (`?format=binary`).
    pub id: u32,
    pub sym: String,
    pub name: String,
    pub class: AssetClass,
    /// Exact decimal strings.
    pub tick_size: String,
    pub lot_size: String,
    /// Digits after the decimal point of every price (and of `tick_size`).
    pub price_decimals: u32,
    /// Digits after the decimal point of every quantity.
    pub qty_decimals: u32,
    /// Mean ticks per second.
    pub rate: f64,
}
