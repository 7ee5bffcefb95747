//! What a client sends: one JSON object per text frame, with an `op` and an
//! optional `id` that the reply echoes.
//!
//! [`Request::parse`] is the server's parser: every way a message can be
//! wrong becomes a [`RequestError`] that says what a right one looks like and
//! keeps the request's `id`, so a client can match the error to its request.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::codes::ErrorCode;

/// A request id, echoed in the reply: a number or a string, as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Id {
    Int(i64),
    Str(String),
}

/// A client's request.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    /// Follow these symbols (`*` = all); answered by `subscribed`, then a
    /// snapshot per newly followed symbol, or, for symbols in `from`, the
    /// ticks missed since that seq when the server still has them (resume).
    Subscribe {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<Id>,
        symbols: Vec<String>,
        /// Resume: the last seq the client has of each symbol (v1.1).
        #[serde(skip_serializing_if = "Option::is_none")]
        from: Option<BTreeMap<String, u64>>,
        /// The epoch those seqs belong to, from the `welcome` message; needed
        /// with `from` (v1.1).
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<String>,
        /// A throttled view of these symbols: at most one tick per symbol
        /// per this many milliseconds, always the newest (0: every tick;
        /// absent: the connection's default). See [`check_throttle_ms`].
        #[serde(skip_serializing_if = "Option::is_none")]
        throttle_ms: Option<u32>,
    },
    /// Stop following these symbols (`*` = all followed); no tick of them
    /// follows the `unsubscribed` ack.
    Unsubscribe {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<Id>,
        symbols: Vec<String>,
    },
    /// The static data of every instrument.
    Symbols {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<Id>,
    },
    /// An application-level ping (browsers cannot send ping frames).
    Ping {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<Id>,
    },
    /// A fresh token (same `sub`) for a session whose token nears its
    /// `exp`; answered by `authenticated`, or `error` `unauthorized`.
    Auth {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<Id>,
        token: Token,
    },
}

/// A bearer token: a secret, so its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(pub String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// A request that gets an `error` reply (the connection stays open).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestError {
    pub id: Option<Id>,
    pub code: ErrorCode,
    pub message: String,
    /// The symbols a `forbidden` error refused.
    pub symbols: Option<Vec<String>>,
}

impl RequestError {
    pub fn new(id: Option<Id>, code: ErrorCode, message: impl Into<String>) -> RequestError {
        RequestError {
            id,
            code,
            message: message.into(),
            symbols: None,
        }
    }

    /// The same error, listing `symbols`.
    pub fn with_symbols(mut self, symbols: Vec<String>) -> RequestError {
        self.symbols = Some(symbols);
        self
    }
}

/// The fields of any request; which ones matter depends on `op`.
#[derive(Deserialize)]
struct RawRequest {
    op: Option<String>,
    id: Option<Id>,
    symbols: Option<Vec<String>>,
    from: Option<BTreeMap<String, u64>>,
    epoch: Option<String>,
    token: Option<String>,
    throttle_ms: Option<u64>,
}

/// Shortest throttle interval, in milliseconds (below it a throttled view
/// would save nothing).
pub const THROTTLE_MIN_MS: u64 = 10;
/// Longest throttle interval, in milliseconds.
pub const THROTTLE_MAX_MS: u64 = 60_000;

/// Checks a throttle interval (`throttle_ms` of a subscribe, or of
/// `GET /ws?throttle_ms=` and `GET /sse?throttle_ms=`): 0 (off) or
/// [`THROTTLE_MIN_MS`]..=[`THROTTLE_MAX_MS`]; the error says so.
pub fn check_throttle_ms(ms: u64) -> Result<u32, String> {
    if ms == 0 || (THROTTLE_MIN_MS..=THROTTLE_MAX_MS).contains(&ms) {
        Ok(ms as u32)
    } else {
        Err(format!(
            "throttle_ms must be 0 (every tick) or {THROTTLE_MIN_MS}..={THROTTLE_MAX_MS} milliseconds, not {ms}"
        ))
    }
}

impl Request {
    pub fn id(&self) -> Option<&Id> {
        match self {
            Request::Subscribe { id, .. }
            | Request::Unsubscribe { id, .. }
            | Request::Symbols { id }
            | Request::Ping { id }
            | Request::Auth { id, .. } => id.as_ref(),
        }
    }

    /// The request as the JSON text a client sends.
    pub fn to_json(&self) -> Vec<u8> {
        simd_json::to_vec(self).expect("requests serialize")
    }

    /// Parses one text message. `text` is clobbered (simd-json parses in
    /// place); `buffers` is scratch space worth keeping per connection.
    pub fn parse(
        text: &mut [u8],
        buffers: &mut simd_json::Buffers,
    ) -> Result<Request, RequestError> {
        let raw: RawRequest =
            simd_json::serde::from_slice_with_buffers(text, buffers).map_err(|e| {
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
        let (from, epoch) = (raw.from, raw.epoch);
        let throttle_ms = raw.throttle_ms;
        match op.as_str() {
            "subscribe" => {
                let (id, symbols) = symbols(id)?;
                if let Some(from) = &from {
                    if epoch.is_none() {
                        return Err(RequestError::new(
                            id,
                            ErrorCode::BadRequest,
                            "\"from\" needs the \"epoch\" its seqs belong to (from the welcome message)",
                        ));
                    }
                    let all = symbols.iter().any(|s| s == "*");
                    if let Some(stray) = from.keys().find(|k| !all && !symbols.contains(k)) {
                        return Err(RequestError::new(
                            id,
                            ErrorCode::BadRequest,
                            format!("\"from\" names {stray}, which is not in \"symbols\""),
                        ));
                    }
                }
                let throttle_ms = match throttle_ms.map(check_throttle_ms) {
                    None => None,
                    Some(Ok(ms)) => Some(ms),
                    Some(Err(message)) => {
                        return Err(RequestError::new(id, ErrorCode::BadRequest, message))
                    }
                };
                Ok(Request::Subscribe {
                    id,
                    symbols,
                    from,
                    epoch,
                    throttle_ms,
                })
            }
            "unsubscribe" => symbols(id).map(|(id, symbols)| Request::Unsubscribe { id, symbols }),
            "symbols" => Ok(Request::Symbols { id }),
            "ping" => Ok(Request::Ping { id }),
            "auth" => match raw.token {
                Some(t) if !t.is_empty() => Ok(Request::Auth {
                    id,
                    token: Token(t),
                }),
                _ => Err(RequestError::new(
                    id,
                    ErrorCode::BadRequest,
                    "\"auth\" needs a \"token\": a fresh JWT",
                )),
            },
            other => Err(RequestError::new(
                id,
                ErrorCode::UnknownOp,
                format!(
                    "unknown op \"{other}\"; ops are subscribe, unsubscribe, symbols, ping, auth"
                ),
            )),
        }
    }

    /// [`Request::parse`] on a copy of `text`, with fresh scratch space.
    pub fn parse_str(text: &str) -> Result<Request, RequestError> {
        let mut bytes = text.as_bytes().to_vec();
        Request::parse(&mut bytes, &mut simd_json::Buffers::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Request, RequestError> {
        Request::parse_str(s)
    }

    #[test]
    fn requests_parse() {
        assert_eq!(
            parse(r#"{"op":"subscribe","symbols":["AAPL","MSFT"],"id":7}"#).unwrap(),
            Request::Subscribe {
                id: Some(Id::Int(7)),
                symbols: vec!["AAPL".into(), "MSFT".into()],
                from: None,
                epoch: None,
                throttle_ms: None,
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
    fn requests_round_trip() {
        for r in [
            Request::Subscribe {
                id: Some(Id::Int(7)),
                symbols: vec!["AAPL".into(), "*".into()],
                from: None,
                epoch: None,
                throttle_ms: None,
            },
            Request::Subscribe {
                id: None,
                symbols: vec!["AAPL".into(), "MSFT".into()],
                from: Some([("AAPL".to_string(), 1042)].into()),
                epoch: Some("e1".into()),
                throttle_ms: Some(250),
            },
            Request::Unsubscribe {
                id: Some(Id::Str("u".into())),
                symbols: vec!["AAPL".into()],
            },
            Request::Symbols { id: None },
            Request::Ping {
                id: Some(Id::Int(-1)),
            },
            Request::Auth {
                id: Some(Id::Int(3)),
                token: Token("a.b.c".into()),
            },
        ] {
            let json = String::from_utf8(r.to_json()).unwrap();
            assert_eq!(parse(&json).unwrap(), r, "{json}");
        }
        assert_eq!(
            Request::Subscribe {
                id: None,
                symbols: vec!["S1".into()],
                from: None,
                epoch: None,
                throttle_ms: None,
            }
            .to_json(),
            br#"{"op":"subscribe","symbols":["S1"]}"#
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
        let e = parse(r#"{"op":"subscribe","symbols":["A"],"from":{"A":1},"id":5}"#).unwrap_err();
        assert_eq!((e.code, e.id), (ErrorCode::BadRequest, Some(Id::Int(5))));
        assert!(e.message.contains("epoch"), "{}", e.message);
        let e =
            parse(r#"{"op":"subscribe","symbols":["A"],"from":{"B":1},"epoch":"x"}"#).unwrap_err();
        assert!(e.message.contains("B"), "{}", e.message);
        let e =
            parse(r#"{"op":"subscribe","symbols":["A"],"from":{"A":-1},"epoch":"x"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        for bad in ["5", "9", "60001", "18446744073709551615"] {
            let e = parse(&format!(
                r#"{{"op":"subscribe","symbols":["A"],"throttle_ms":{bad},"id":6}}"#
            ))
            .unwrap_err();
            assert_eq!(
                (e.code, e.id),
                (ErrorCode::BadRequest, Some(Id::Int(6))),
                "{bad}"
            );
            assert!(e.message.contains("throttle_ms"), "{}", e.message);
        }
        // Not a whole number of milliseconds: not a request at all.
        for bad in ["-1", "\"250\"", "2.5"] {
            let e = parse(&format!(
                r#"{{"op":"subscribe","symbols":["A"],"throttle_ms":{bad},"id":6}}"#
            ))
            .unwrap_err();
            assert_eq!(e.code, ErrorCode::BadRequest, "{bad}");
        }
        for ok in [0, 10, 250, 60_000] {
            let r = parse(&format!(
                r#"{{"op":"subscribe","symbols":["A"],"throttle_ms":{ok}}}"#
            ))
            .unwrap();
            assert!(
                matches!(r, Request::Subscribe { throttle_ms: Some(t), .. } if t == ok),
                "{ok}"
            );
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// A JSON-ish text: fragments of requests glued at random, so the
        /// parser sees near-misses as well as noise.
        fn jsonish() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                Just("{".to_string()),
                Just("}".to_string()),
                Just("[".to_string()),
                Just("]".to_string()),
                Just(",".to_string()),
                Just(":".to_string()),
                Just("\"op\"".to_string()),
                Just("\"subscribe\"".to_string()),
                Just("\"auth\"".to_string()),
                Just("\"symbols\"".to_string()),
                Just("\"from\"".to_string()),
                Just("\"epoch\"".to_string()),
                Just("\"token\"".to_string()),
                Just("\"id\"".to_string()),
                Just("null".to_string()),
                Just("1e999".to_string()),
                Just("-0".to_string()),
                Just("\"\\u0000\"".to_string()),
                "[a-zA-Z0-9*\"\\\\ ]{0,8}",
            ];
            proptest::collection::vec(piece, 0..40).prop_map(|v| v.concat())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1000))]

            /// Arbitrary bytes never panic the parser; a refusal always has a
            /// documented code and a message.
            #[test]
            fn arbitrary_bytes_get_an_answer(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                let mut b = bytes.clone();
                if let Err(e) = Request::parse(&mut b, &mut simd_json::Buffers::default()) {
                    prop_assert!(ErrorCode::ALL.contains(&e.code));
                    prop_assert!(!e.message.is_empty());
                }
            }

            #[test]
            fn near_miss_json_gets_an_answer(text in jsonish()) {
                match Request::parse_str(&text) {
                    Ok(r) => {
                        // What parses re-serializes to something that parses the same.
                        let again = String::from_utf8(r.to_json()).unwrap();
                        prop_assert_eq!(Request::parse_str(&again).unwrap(), r);
                    }
                    Err(e) => prop_assert!(
                        matches!(e.code, ErrorCode::BadRequest | ErrorCode::UnknownOp),
                        "{:?}", e
                    ),
                }
            }
        }
    }
}
