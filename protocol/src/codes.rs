//! The protocol's vocabulary of failures: the `code` of an `error` reply
//! ([`ErrorCode`], the connection stays open) and the close codes that end a
//! connection ([`Close`], with their reason texts).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The `code` of an `{"type":"error",...}` reply. The connection stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Not a JSON object, no `op`, or a field of the wrong shape.
    BadRequest,
    /// `op` is not one the server knows.
    UnknownOp,
    /// Some requested symbols do not exist (the others were handled).
    UnknownSymbol,
    /// More control messages per second than allowed; this one was ignored.
    RateLimited,
    /// The subscribe would exceed the per-connection symbol limit.
    TooManySymbols,
    /// The token does not entitle the client to these symbols (listed in the
    /// error's `symbols`); the entitled ones of the request were handled.
    Forbidden,
    /// The `auth` op's token was refused (malformed, badly signed, expired,
    /// another `sub`); the session keeps its current token.
    Unauthorized,
    /// The session's token expired; close 4001 follows.
    TokenExpired,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 8] = [
        ErrorCode::BadRequest,
        ErrorCode::UnknownOp,
        ErrorCode::UnknownSymbol,
        ErrorCode::RateLimited,
        ErrorCode::TooManySymbols,
        ErrorCode::Forbidden,
        ErrorCode::Unauthorized,
        ErrorCode::TokenExpired,
    ];

    /// The `code` on the wire (also the label of the server's metric).
    pub fn label(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::UnknownSymbol => "unknown_symbol",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooManySymbols => "too_many_symbols",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::TokenExpired => "token_expired",
        }
    }

    /// The code whose wire name is `label`.
    pub fn from_label(label: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.label() == label)
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.label())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ErrorCode, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        ErrorCode::from_label(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown error code {s:?}")))
    }
}

/// Why the server closes a connection: the close frame's code and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Close {
    /// 1001: the server is shutting down.
    Shutdown,
    /// 1001: nothing was received from the client for the idle timeout.
    IdleTimeout,
    /// 1002: a WebSocket protocol violation.
    ProtocolError,
    /// 1003: a binary frame (only text is accepted from clients).
    UnsupportedData,
    /// 1007: text that is not valid UTF-8.
    InvalidPayload,
    /// 1008: the client did not keep up with its stream.
    SlowConsumer,
    /// 1008: too many error replies in a short time.
    TooManyErrors,
    /// 1009: a message over the size limit.
    MessageTooBig,
    /// 4001: the session's token expired and no fresh one came (`auth` op).
    TokenExpired,
}

impl Close {
    pub const ALL: [Close; 9] = [
        Close::Shutdown,
        Close::IdleTimeout,
        Close::ProtocolError,
        Close::UnsupportedData,
        Close::InvalidPayload,
        Close::SlowConsumer,
        Close::TooManyErrors,
        Close::MessageTooBig,
        Close::TokenExpired,
    ];

    /// The close frame's status code.
    pub fn code(self) -> u16 {
        match self {
            Close::Shutdown | Close::IdleTimeout => 1001,
            Close::ProtocolError => 1002,
            Close::UnsupportedData => 1003,
            Close::InvalidPayload => 1007,
            Close::SlowConsumer | Close::TooManyErrors => 1008,
            Close::MessageTooBig => 1009,
            Close::TokenExpired => 4001,
        }
    }

    /// The close frame's reason text.
    pub fn reason(self) -> &'static str {
        match self {
            Close::Shutdown => "server shutting down",
            Close::IdleTimeout => "idle timeout",
            Close::ProtocolError => "protocol error",
            Close::UnsupportedData => "binary frames are not supported",
            Close::InvalidPayload => "invalid utf-8",
            Close::SlowConsumer => "slow consumer",
            Close::TooManyErrors => "too many errors",
            Close::MessageTooBig => "message too big",
            Close::TokenExpired => "token expired",
        }
    }

    /// The close a received code and reason stand for, if it is one of ours.
    pub fn from_frame(code: u16, reason: &str) -> Option<Close> {
        Close::ALL
            .into_iter()
            .find(|c| c.code() == code && c.reason() == reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_have_one_spelling() {
        for c in ErrorCode::ALL {
            let json = simd_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.label()));
            let mut bytes = json.into_bytes();
            let back: ErrorCode = simd_json::from_slice(&mut bytes).unwrap();
            assert_eq!(back, c);
        }
    }

    #[test]
    fn closes_are_recognised_from_their_frames() {
        for c in Close::ALL {
            assert_eq!(Close::from_frame(c.code(), c.reason()), Some(c));
            assert!(
                c.reason().len() <= 123,
                "{c:?}: a close reason fits 123 bytes"
            );
        }
        assert_eq!(Close::from_frame(1000, ""), None);
    }
}
