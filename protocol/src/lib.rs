//! tickwire-protocol: tickwire's wire protocol, defined once and used by the
//! server, the client crate and the load-test harness.
//!
//! docs/PROTOCOL.md is the prose; this crate is the same thing as types. Every
//! message serializes and parses both ways, so a client never has to define
//! the protocol a second time:
//!
//! - [`request`]: what a client sends ([`Request`]), and the parser the server
//!   answers with (a [`RequestError`] names what was wrong and keeps the id).
//! - [`reply`]: every server message that is not a tick ([`Reply`]).
//! - [`tick`]: a tick's JSON ([`TickMsg`]): the writer the server encodes each
//!   tick with (once per tick, shared by every subscriber), an exact parser,
//!   and the fast header scan the harness uses.
//! - [`message`]: [`ServerMessage`], any text message from the server.
//! - [`http`]: bodies of the HTTP endpoints that carry ticks
//!   ([`HistoryPage`]).
//! - [`binary`]: the compact binary layout of ticks (`?format=binary`).
//! - [`sse`]: Server-Sent Events (`GET /sse`): event names, the resumable
//!   event id, the `reset` event, and a stream parser for clients.
//! - [`decimal`]: exact fixed-point decimals; prices never carry float noise.
//! - [`codes`]: [`ErrorCode`] (the `code` of `error` replies) and [`Close`]
//!   (close codes with their reason texts, and whether a client should
//!   reconnect).
//!
//! JSON goes through simd-json, which parses in place: parsers take
//! `&mut [u8]` (the frame's own bytes are the scratch space) and, on the
//! server's hot paths, a reusable [`simd_json::Buffers`].

pub mod binary;
pub mod codes;
pub mod decimal;
mod digits;
pub mod http;
pub mod message;
pub mod reply;
pub mod request;
pub mod sse;
pub mod tick;

pub use binary::BinaryTick;
pub use codes::{Close, ErrorCode};
pub use decimal::Decimal;
pub use http::HistoryPage;
pub use message::ServerMessage;
pub use reply::{AssetClass, Reply, SymbolInfo, Welcome};
pub use request::{Id, Request, RequestError, Token};
pub use tick::{TickKind, TickMsg, TickRef, TsDigits};

/// The protocol version this crate speaks.
pub const VERSION: &str = "1.1";

/// Why a server message could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}
