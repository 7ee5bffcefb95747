//! Any text message from the server: a tick (or snapshot), or a [`Reply`].

use crate::reply::Reply;
use crate::tick::TickMsg;
use crate::ParseError;

/// One text message from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    /// A `tick` or a `snapshot` ([`TickMsg::kind`] says which).
    Tick(TickMsg),
    Reply(Reply),
}

impl ServerMessage {
    /// Parses one text message: ticks exactly (prices as decimals), every
    /// other type with serde.
    pub fn parse(json: &[u8]) -> Result<ServerMessage, ParseError> {
        match message_type(json) {
            Some(b"tick" | b"snapshot") => TickMsg::parse(json).map(ServerMessage::Tick),
            _ => {
                let mut copy = json.to_vec();
                simd_json::serde::from_slice::<Reply>(&mut copy)
                    .map(ServerMessage::Reply)
                    .map_err(|e| ParseError(format!("not a tickwire server message: {e}")))
            }
        }
    }

    /// The message's JSON text.
    pub fn to_json(&self) -> Vec<u8> {
        match self {
            ServerMessage::Tick(t) => t.to_json(),
            ServerMessage::Reply(r) => r.to_json(),
        }
    }
}

/// The value of the top-level `"type"` key, found cheaply: tickwire writes it
/// first; otherwise the first `"type":"..."` in the text.
fn message_type(json: &[u8]) -> Option<&[u8]> {
    let at = memchr::memmem::find(json, b"\"type\"")?;
    let rest = json[at + 6..].trim_ascii_start().strip_prefix(b":")?;
    let rest = rest.trim_ascii_start().strip_prefix(b"\"")?;
    let end = memchr::memchr(b'"', rest)?;
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AssetClass, Decimal, ErrorCode, Id, SymbolInfo, TickKind};

    fn round_trip(m: ServerMessage) {
        let json = m.to_json();
        assert_eq!(
            ServerMessage::parse(&json).unwrap(),
            m,
            "{}",
            String::from_utf8_lossy(&json)
        );
    }

    #[test]
    fn every_message_round_trips() {
        round_trip(ServerMessage::Tick(TickMsg {
            kind: TickKind::Snapshot,
            sym: "AAPL".into(),
            seq: 3,
            ts: 4,
            px: Decimal::new(18723, 2),
            qty: Decimal::new(100, 0),
            bid: Decimal::new(18722, 2),
            ask: Decimal::new(18724, 2),
        }));
        for r in [
            Reply::Welcome(crate::Welcome {
                version: crate::VERSION.into(),
                epoch: "3f9a".into(),
                heartbeat_ms: 5000,
                max_symbols: 1024,
                control_rate: 10,
                max_message: 4096,
                history: 1024,
                policy: "conflate".into(),
                format: "json".into(),
            }),
            Reply::Subscribed {
                id: Some(Id::Int(7)),
                symbols: vec!["AAPL".into()],
                recovered: None,
            },
            Reply::Subscribed {
                id: None,
                symbols: vec!["AAPL".into(), "MSFT".into()],
                recovered: Some([("AAPL".to_string(), true), ("MSFT".to_string(), false)].into()),
            },
            Reply::Unsubscribed {
                id: None,
                symbols: vec![],
            },
            Reply::Pong {
                id: Some(Id::Str("p".into())),
                ts: 9,
            },
            Reply::Heartbeat { ts: 1 },
            Reply::Gap {
                sym: "AAPL".into(),
                from: 7,
                to: 9,
            },
            Reply::Symbols {
                id: None,
                symbols: vec![SymbolInfo {
                    id: 7,
                    sym: "EURUSD".into(),
                    name: "Euro".into(),
                    class: AssetClass::Fx,
                    tick_size: "0.00001".into(),
                    lot_size: "1000".into(),
                    price_decimals: 5,
                    qty_decimals: 0,
                    rate: 12.5,
                }],
            },
            Reply::Error {
                id: Some(Id::Int(1)),
                code: ErrorCode::RateLimited,
                message: "slow down".into(),
            },
        ] {
            round_trip(ServerMessage::Reply(r));
        }
    }

    #[test]
    fn replies_have_the_documented_shape() {
        let ack = Reply::Subscribed {
            id: Some(Id::Int(7)),
            symbols: vec!["AAPL".into()],
            recovered: None,
        };
        assert_eq!(
            ack.to_json(),
            br#"{"type":"subscribed","id":7,"symbols":["AAPL"]}"#
        );
        let e = Reply::Error {
            id: None,
            code: ErrorCode::UnknownSymbol,
            message: "x".into(),
        };
        assert_eq!(
            e.to_json(),
            br#"{"type":"error","code":"unknown_symbol","message":"x"}"#
        );
    }

    #[test]
    fn foreign_messages_are_refused() {
        assert!(ServerMessage::parse(br#"{"type":"nonsense"}"#).is_err());
        assert!(ServerMessage::parse(b"[]").is_err());
    }
}
