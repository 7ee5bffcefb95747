//! Protocol v1 (see docs/PROTOCOL.md): what clients may ask, and the replies.
//!
//! Requests are parsed with simd-json into a reusable [`simd_json::Buffers`]
//! per connection (it parses in place, so the frame's own bytes are the
//! scratch space). Replies are small and rare, so they go through serde; ticks
//! never do (see [`crate::tick`]).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::feed::{AssetClass, Universe};
use crate::tick::text_frame;

/// A request id, echoed in the reply: a number or a string, as the client sent it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Id {
    Int(i64),
    Str(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Subscribe {
        id: Option<Id>,
        symbols: Vec<String>,
    },
    Unsubscribe {
        id: Option<Id>,
        symbols: Vec<String>,
    },
    Symbols {
        id: Option<Id>,
    },
    Ping {
        id: Option<Id>,
    },
}

impl Request {
    pub fn id(&self) -> Option<&Id> {
        match self {
            Request::Subscribe { id, .. }
            | Request::Unsubscribe { id, .. }
            | Request::Symbols { id }
            | Request::Ping { id } => id.as_ref(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    UnknownOp,
    UnknownSymbol,
    RateLimited,
    TooManySymbols,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 5] = [
        ErrorCode::BadRequest,
        ErrorCode::UnknownOp,
        ErrorCode::UnknownSymbol,
        ErrorCode::RateLimited,
        ErrorCode::TooManySymbols,
    ];

    /// The `code` on the wire.
    pub fn label(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::UnknownSymbol => "unknown_symbol",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooManySymbols => "too_many_symbols",
        }
    }
}

/// A request that gets an `error` reply (and the connection stays open).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestError {
    pub id: Option<Id>,
    pub code: ErrorCode,
    pub message: String,
}

impl RequestError {
    pub fn new(id: Option<Id>, code: ErrorCode, message: impl Into<String>) -> RequestError {
        RequestError {
            id,
            code,
            message: message.into(),
        }
    }
}

/// The fields of any request; which ones matter depends on `op`.
#[derive(Deserialize)]
struct RawRequest {
    op: Option<String>,
    id: Option<Id>,
    symbols: Option<Vec<String>>,
}

/// Parses one text message. `text` is clobbered (simd-json parses in place).
pub fn parse_request(
    text: &mut [u8],
    buffers: &mut simd_json::Buffers,
) -> Result<Request, RequestError> {
    let raw: RawRequest = simd_json::serde::from_slice_with_buffers(text, buffers).map_err(|e| {
        RequestError::new(
            None,
            ErrorCode::BadRequest,
            format!("expected a JSON object like {{\"op\":\"subscribe\",\"symbols\":[\"AAPL\"]}}: {e}"),
        )
    })?;
    let id = raw.id;
    let Some(op) = raw.op else {
        return Err(RequestError::new(
            id,
            ErrorCode::BadRequest,
            "missing \"op\"",
        ));
    };
    let symbols = |id: Option<Id>| match raw.symbols {
        Some(s) if !s.is_empty() => Ok((id, s)),
        _ => Err(RequestError::new(
            id,
            ErrorCode::BadRequest,
            format!("\"{op}\" needs a non-empty \"symbols\" array, e.g. [\"AAPL\"] or [\"*\"]"),
        )),
    };
    match op.as_str() {
        "subscribe" => symbols(id).map(|(id, symbols)| Request::Subscribe { id, symbols }),
        "unsubscribe" => symbols(id).map(|(id, symbols)| Request::Unsubscribe { id, symbols }),
        "symbols" => Ok(Request::Symbols { id }),
        "ping" => Ok(Request::Ping { id }),
        other => Err(RequestError::new(
            id,
            ErrorCode::UnknownOp,
            format!("unknown op \"{other}\"; ops are subscribe, unsubscribe, symbols, ping"),
        )),
    }
}

/// Server messages other than ticks and snapshots.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Reply<'a> {
    Subscribed {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a Id>,
        symbols: &'a [&'a str],
    },
    Unsubscribed {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a Id>,
        symbols: &'a [&'a str],
    },
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a Id>,
        ts: u64,
    },
    Heartbeat {
        ts: u64,
    },
    Error {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a Id>,
        code: ErrorCode,
        message: &'a str,
    },
}

impl Reply<'_> {
    /// The reply as a complete text frame.
    pub fn frame(&self) -> Bytes {
        text_frame(&simd_json::to_vec(self).expect("replies serialize"))
    }
}

impl RequestError {
    pub fn frame(&self) -> Bytes {
        Reply::Error {
            id: self.id.as_ref(),
            code: self.code,
            message: &self.message,
        }
        .frame()
    }
}

/// Static data of one instrument, as `/api/symbols` and the `symbols` op give it.
#[derive(Debug, Serialize)]
pub struct SymbolInfo<'a> {
    pub sym: &'a str,
    pub name: &'a str,
    pub class: AssetClass,
    /// Decimal strings, exact.
    pub tick_size: String,
    pub lot_size: String,
    pub price_decimals: u32,
    pub qty_decimals: u32,
    /// Mean ticks per second.
    pub rate: f64,
}

/// The JSON array of every instrument's [`SymbolInfo`], built once at start.
pub fn symbols_json(universe: &Universe) -> Vec<u8> {
    let infos: Vec<SymbolInfo> = universe
        .iter()
        .map(|(_, i)| SymbolInfo {
            sym: &i.symbol,
            name: &i.name,
            class: i.class,
            tick_size: i.price_str(i.tick),
            lot_size: i.qty_str(i.lot),
            price_decimals: i.price_decimals,
            qty_decimals: i.qty_decimals,
            rate: i.rate,
        })
        .collect();
    simd_json::to_vec(&infos).expect("symbols serialize")
}

/// `{"type":"symbols","id":..,"symbols":[...]}` around the prebuilt array.
pub fn symbols_reply(id: Option<&Id>, symbols_array: &[u8]) -> Bytes {
    let mut json = b"{\"type\":\"symbols\"".to_vec();
    if let Some(id) = id {
        json.extend_from_slice(b",\"id\":");
        json.extend_from_slice(&simd_json::to_vec(id).expect("ids serialize"));
    }
    json.extend_from_slice(b",\"symbols\":");
    json.extend_from_slice(symbols_array);
    json.push(b'}');
    text_frame(&json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Request, RequestError> {
        let mut b = s.as_bytes().to_vec();
        parse_request(&mut b, &mut simd_json::Buffers::default())
    }

    #[test]
    fn requests_parse() {
        assert_eq!(
            parse(r#"{"op":"subscribe","symbols":["AAPL","MSFT"],"id":7}"#).unwrap(),
            Request::Subscribe {
                id: Some(Id::Int(7)),
                symbols: vec!["AAPL".into(), "MSFT".into()]
            }
        );
        assert_eq!(
            parse(r#"{"op":"ping","id":"abc"}"#).unwrap(),
            Request::Ping {
                id: Some(Id::Str("abc".into()))
            }
        );
        assert_eq!(
            parse(r#"{"op":"symbols"}"#).unwrap(),
            Request::Symbols { id: None }
        );
    }

    #[test]
    fn bad_requests_say_why_and_keep_the_id() {
        let e = parse("not json").unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        let e = parse(r#"{"op":"fly","id":3}"#).unwrap_err();
        assert_eq!((e.code, e.id), (ErrorCode::UnknownOp, Some(Id::Int(3))));
        let e = parse(r#"{"op":"subscribe","id":4}"#).unwrap_err();
        assert_eq!((e.code, e.id), (ErrorCode::BadRequest, Some(Id::Int(4))));
        let e = parse(r#"{"op":"subscribe","symbols":[]}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        let e = parse(r#"{"id":1}"#).unwrap_err();
        assert!(e.message.contains("op"));
        let e = parse(r#"[1,2]"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
    }

    #[test]
    fn replies_serialize() {
        let f = Reply::Subscribed {
            id: Some(&Id::Int(7)),
            symbols: &["AAPL"],
        }
        .frame();
        assert_eq!(
            &f[2..],
            br#"{"type":"subscribed","id":7,"symbols":["AAPL"]}"#
        );
        let f = RequestError::new(None, ErrorCode::UnknownSymbol, "x").frame();
        assert_eq!(
            &f[2..],
            br#"{"type":"error","code":"unknown_symbol","message":"x"}"#
        );
        let f = symbols_reply(Some(&Id::Str("q".into())), b"[]");
        assert_eq!(&f[2..], br#"{"type":"symbols","id":"q","symbols":[]}"#);
    }
}
