//! A tick's JSON: the one message type on the hot path.
//!
//! ```json
//! {"type":"tick","sym":"AAPL","seq":1042,"ts":1763800000123456,"px":187.23,"qty":100,"bid":187.22,"ask":187.24}
//! ```
//!
//! - [`TickRef::write_json`] is how the server encodes a tick, once per tick
//!   for every subscriber, with a fixed field order and no allocation.
//! - [`TickMsg::parse`] reads one back exactly (prices as [`Decimal`]s, in any
//!   field order) for clients that want every field.
//! - [`scan`] pulls only `sym`, `seq` and `ts` out, for clients that count
//!   and time millions of messages a second (the load-test harness).

use memchr::memmem;

use crate::decimal::Decimal;
use crate::digits::{put_fixed, put_lit, put_u64, FIXED_LEN, U64_LEN};
use crate::ParseError;

/// Which message type a tick is sent as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TickKind {
    /// A live update.
    Tick,
    /// The latest tick, replayed to a new subscriber.
    Snapshot,
}

impl TickKind {
    /// The `type` on the wire.
    pub fn label(self) -> &'static str {
        match self {
            TickKind::Tick => "tick",
            TickKind::Snapshot => "snapshot",
        }
    }
}

/// A tick's fields, borrowed: what the server writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickRef<'a> {
    pub kind: TickKind,
    pub sym: &'a str,
    /// The symbol's tick counter: 1, 2, 3, ... with no holes at the source.
    pub seq: u64,
    /// Generation time, microseconds since the Unix epoch.
    pub ts: u64,
    pub px: Decimal,
    pub qty: Decimal,
    pub bid: Decimal,
    pub ask: Decimal,
}

impl TickRef<'_> {
    /// Appends the tick's JSON text. `sym` must need no JSON escaping (the
    /// server's feed validates symbols to `A-Z a-z 0-9 . _ - / :`).
    ///
    /// The numbers go into one stack buffer, each written in place
    /// (the crate's private `digits` module), and the buffer is appended once: one copy for
    /// the whole tail instead of one per piece.
    #[inline]
    pub fn write_json(&self, out: &mut Vec<u8>) {
        self.write_json_reusing(out, &mut TsDigits::default());
    }

    /// [`TickRef::write_json`] for an encoder that writes many ticks of the
    /// same `ts` (the ticks of one feed pass share their timestamp): `ts`'s
    /// digits are written once into `last_ts` and copied from there while
    /// it stays the same.
    #[inline]
    pub fn write_json_reusing(&self, out: &mut Vec<u8>, last_ts: &mut TsDigits) {
        match self.kind {
            TickKind::Tick => out.extend_from_slice(b"{\"type\":\"tick\",\"sym\":\""),
            TickKind::Snapshot => out.extend_from_slice(b"{\"type\":\"snapshot\",\"sym\":\""),
        }
        out.extend_from_slice(self.sym.as_bytes());
        let mut b = [0u8; TAIL_LEN];
        let mut i = put_lit(&mut b, 0, b"\",\"seq\":");
        i = put_u64(&mut b, i, self.seq);
        i = put_lit(&mut b, i, b",\"ts\":");
        i = last_ts.put(&mut b, i, self.ts);
        i = put_lit(&mut b, i, b",\"px\":");
        i = put_fixed(&mut b, i, self.px.units(), self.px.scale().into());
        i = put_lit(&mut b, i, b",\"qty\":");
        i = put_fixed(&mut b, i, self.qty.units(), self.qty.scale().into());
        i = put_lit(&mut b, i, b",\"bid\":");
        i = put_fixed(&mut b, i, self.bid.units(), self.bid.scale().into());
        i = put_lit(&mut b, i, b",\"ask\":");
        i = put_fixed(&mut b, i, self.ask.units(), self.ask.scale().into());
        i = put_lit(&mut b, i, b"}");
        out.extend_from_slice(&b[..i]);
    }
}

/// The digits of the last timestamp written (see
/// [`TickRef::write_json_reusing`]): 16 digits written once per feed pass
/// instead of once per tick, a tenth of a tick's encoding (callgrind).
#[derive(Debug, Clone, Default)]
pub struct TsDigits {
    ts: Option<u64>,
    len: usize,
    digits: [u8; U64_LEN],
}

impl TsDigits {
    /// Writes `ts` at `buf[at..]`, returns the end; `buf` needs [`U64_LEN`]
    /// bytes of room after `at` (all of them are copied: a fixed-size copy
    /// is two moves, a variable-length one a `memcpy` call).
    #[inline]
    fn put(&mut self, buf: &mut [u8], at: usize, ts: u64) -> usize {
        if self.ts != Some(ts) {
            self.len = put_u64(&mut self.digits, 0, ts);
            self.ts = Some(ts);
        }
        buf[at..at + U64_LEN].copy_from_slice(&self.digits);
        at + self.len
    }
}

/// Longest tail of a tick's JSON after the symbol: `","seq":` and `,"ts":`
/// with two `u64`s, four named fixed-point numbers, and the closing brace.
const TAIL_LEN: usize = 8 + U64_LEN + 6 + U64_LEN + 4 * (7 + FIXED_LEN) + 1;

/// A tick, owned: what a client reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TickMsg {
    pub kind: TickKind,
    pub sym: String,
    pub seq: u64,
    pub ts: u64,
    pub px: Decimal,
    pub qty: Decimal,
    pub bid: Decimal,
    pub ask: Decimal,
}

impl TickMsg {
    pub fn as_ref(&self) -> TickRef<'_> {
        TickRef {
            kind: self.kind,
            sym: &self.sym,
            seq: self.seq,
            ts: self.ts,
            px: self.px,
            qty: self.qty,
            bid: self.bid,
            ask: self.ask,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        self.as_ref().write_json(&mut out);
        out
    }

    /// Parses a `tick` or `snapshot` message exactly. Fields may come in any
    /// order, with whitespace; unknown fields are ignored.
    pub fn parse(json: &[u8]) -> Result<TickMsg, ParseError> {
        let mut kind = None;
        let mut sym = None;
        let (mut seq, mut ts) = (None, None);
        let (mut px, mut qty, mut bid, mut ask) = (None, None, None, None);
        for field in FlatObject::new(json) {
            let (key, value) = field?;
            let number = || match value {
                Value::Number(n) => Ok(n),
                _ => Err(ParseError(format!(
                    "\"{}\" must be a number",
                    String::from_utf8_lossy(key)
                ))),
            };
            let decimal = || {
                let n = number()?;
                Decimal::parse(n).ok_or_else(|| {
                    ParseError(format!(
                        "\"{}\" is not an exact decimal: {}",
                        String::from_utf8_lossy(key),
                        String::from_utf8_lossy(n)
                    ))
                })
            };
            let integer = || {
                let n = number()?;
                digits(n)
                    .filter(|&(_, used)| used == n.len())
                    .map(|(v, _)| v)
                    .ok_or_else(|| {
                        ParseError(format!(
                            "\"{}\" must be a whole number",
                            String::from_utf8_lossy(key)
                        ))
                    })
            };
            match key {
                b"type" => {
                    kind = match value {
                        Value::Str(b"tick") => Some(TickKind::Tick),
                        Value::Str(b"snapshot") => Some(TickKind::Snapshot),
                        _ => return Err(ParseError("not a tick or snapshot message".into())),
                    }
                }
                b"sym" => match value {
                    Value::Str(s) => {
                        sym = Some(
                            std::str::from_utf8(s)
                                .map_err(|_| ParseError("\"sym\" is not UTF-8".into()))?
                                .to_string(),
                        )
                    }
                    _ => return Err(ParseError("\"sym\" must be a string".into())),
                },
                b"seq" => seq = Some(integer()?),
                b"ts" => ts = Some(integer()?),
                b"px" => px = Some(decimal()?),
                b"qty" => qty = Some(decimal()?),
                b"bid" => bid = Some(decimal()?),
                b"ask" => ask = Some(decimal()?),
                _ => {}
            }
        }
        let missing = |f: &str| ParseError(format!("tick message without \"{f}\""));
        Ok(TickMsg {
            kind: kind.ok_or_else(|| missing("type"))?,
            sym: sym.ok_or_else(|| missing("sym"))?,
            seq: seq.ok_or_else(|| missing("seq"))?,
            ts: ts.ok_or_else(|| missing("ts"))?,
            px: px.ok_or_else(|| missing("px"))?,
            qty: qty.ok_or_else(|| missing("qty"))?,
            bid: bid.ok_or_else(|| missing("bid"))?,
            ask: ask.ok_or_else(|| missing("ask"))?,
        })
    }
}

/// A value of a flat JSON object: a string (without escapes) or the text of
/// a number; nested values are skipped as [`Value::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value<'a> {
    Str(&'a [u8]),
    Number(&'a [u8]),
    Other,
}

/// Iterates the `"key": value` pairs of one JSON object whose values are
/// strings, numbers, `true`/`false`/`null`, or nested values to be skipped.
/// Strings with escapes are refused: tick messages never need them.
struct FlatObject<'a> {
    rest: &'a [u8],
    started: bool,
    done: bool,
}

impl<'a> FlatObject<'a> {
    fn new(json: &'a [u8]) -> FlatObject<'a> {
        FlatObject {
            rest: json,
            started: false,
            done: false,
        }
    }

    fn skip_ws(&mut self) {
        self.rest = self.rest.trim_ascii_start();
    }

    fn eat(&mut self, b: u8) -> bool {
        self.skip_ws();
        match self.rest.split_first() {
            Some((&c, rest)) if c == b => {
                self.rest = rest;
                true
            }
            _ => false,
        }
    }

    fn string(&mut self) -> Result<&'a [u8], ParseError> {
        if !self.eat(b'"') {
            return Err(ParseError("expected a string".into()));
        }
        let end = memchr::memchr2(b'"', b'\\', self.rest)
            .ok_or_else(|| ParseError("unterminated string".into()))?;
        if self.rest[end] == b'\\' {
            return Err(ParseError("escaped strings are not expected here".into()));
        }
        let s = &self.rest[..end];
        self.rest = &self.rest[end + 1..];
        Ok(s)
    }

    fn value(&mut self) -> Result<Value<'a>, ParseError> {
        self.skip_ws();
        match self.rest.first() {
            Some(b'"') => self.string().map(Value::Str),
            Some(b'-' | b'0'..=b'9') => {
                let end = self
                    .rest
                    .iter()
                    .position(|b| !matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                    .unwrap_or(self.rest.len());
                let n = &self.rest[..end];
                self.rest = &self.rest[end..];
                Ok(Value::Number(n))
            }
            Some(b'[' | b'{') => {
                // Skip a nested value, minding strings.
                let mut depth = 0usize;
                let mut i = 0;
                while i < self.rest.len() {
                    match self.rest[i] {
                        b'[' | b'{' => depth += 1,
                        b']' | b'}' => {
                            depth -= 1;
                            if depth == 0 {
                                self.rest = &self.rest[i + 1..];
                                return Ok(Value::Other);
                            }
                        }
                        b'"' => {
                            i += 1;
                            while i < self.rest.len() && self.rest[i] != b'"' {
                                i += if self.rest[i] == b'\\' { 2 } else { 1 };
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                Err(ParseError("unterminated nested value".into()))
            }
            _ => {
                for word in [&b"true"[..], b"false", b"null"] {
                    if let Some(rest) = self.rest.strip_prefix(word) {
                        self.rest = rest;
                        return Ok(Value::Other);
                    }
                }
                Err(ParseError("expected a JSON value".into()))
            }
        }
    }

    fn pair(&mut self) -> Result<Option<(&'a [u8], Value<'a>)>, ParseError> {
        if !self.started {
            self.started = true;
            if !self.eat(b'{') {
                return Err(ParseError("expected a JSON object".into()));
            }
            if self.eat(b'}') {
                return Ok(None);
            }
        } else if self.eat(b'}') {
            return Ok(None);
        } else if !self.eat(b',') {
            return Err(ParseError("expected , or } in the object".into()));
        }
        let key = self.string()?;
        if !self.eat(b':') {
            return Err(ParseError("expected : after a key".into()));
        }
        Ok(Some((key, self.value()?)))
    }
}

impl<'a> Iterator for FlatObject<'a> {
    type Item = Result<(&'a [u8], Value<'a>), ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.pair() {
            Ok(Some(p)) => Some(Ok(p)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// What [`scan`] found in a text message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scanned<'a> {
    /// A live update.
    Tick { sym: &'a [u8], seq: u64, ts: u64 },
    /// The latest state replayed on subscribe (its `ts` is old).
    Snapshot { sym: &'a [u8], seq: u64 },
    /// Anything else (replies, heartbeats, errors).
    Other,
}

const TICK_PREFIX: &[u8] = b"{\"type\":\"tick\",\"sym\":\"";

/// Pulls `sym`, `seq` and `ts` out of a text message without parsing the
/// rest. tickwire writes ticks in a fixed field order, so the fast path
/// matches the prefix `{"type":"tick","sym":"` and reads on from there;
/// anything else goes through a slower key search that tolerates other
/// field orders and whitespace (so other servers can be measured too).
#[inline]
pub fn scan(json: &[u8]) -> Scanned<'_> {
    if let Some(rest) = json.strip_prefix(TICK_PREFIX) {
        if let Some(m) = fast_tick(rest) {
            return m;
        }
    }
    scan_slow(json)
}

/// `rest` follows `"sym":"`: `S3","seq":17,"ts":1763...,...`.
#[inline]
fn fast_tick(rest: &[u8]) -> Option<Scanned<'_>> {
    let q = memchr::memchr(b'"', rest)?;
    let sym = &rest[..q];
    let rest = rest[q..].strip_prefix(b"\",\"seq\":")?;
    let (seq, used) = digits(rest)?;
    let rest = rest[used..].strip_prefix(b",\"ts\":")?;
    let (ts, _) = digits(rest)?;
    Some(Scanned::Tick { sym, seq, ts })
}

/// Reads an unsigned decimal integer; returns it and the digits consumed.
#[inline]
fn digits(s: &[u8]) -> Option<(u64, usize)> {
    let mut n: u64 = 0;
    let mut i = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        n = n.checked_mul(10)?.checked_add((s[i] - b'0') as u64)?;
        i += 1;
    }
    (i > 0).then_some((n, i))
}

/// The value after `"key"` and a colon, with surrounding whitespace skipped.
fn value_after<'a>(json: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let at = memmem::find(json, key)?;
    let rest = &json[at + key.len()..];
    let rest = rest.trim_ascii_start().strip_prefix(b":")?;
    Some(rest.trim_ascii_start())
}

fn string_after<'a>(json: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let v = value_after(json, key)?.strip_prefix(b"\"")?;
    let q = memchr::memchr(b'"', v)?;
    Some(&v[..q])
}

fn number_after(json: &[u8], key: &[u8]) -> Option<u64> {
    digits(value_after(json, key)?).map(|(n, _)| n)
}

#[cold]
fn scan_slow(json: &[u8]) -> Scanned<'_> {
    let kind = string_after(json, b"\"type\"");
    let (Some(sym), Some(seq)) = (
        string_after(json, b"\"sym\""),
        number_after(json, b"\"seq\""),
    ) else {
        return Scanned::Other;
    };
    match kind {
        Some(b"snapshot") => Scanned::Snapshot { sym, seq },
        Some(b"tick") | None => match number_after(json, b"\"ts\"") {
            Some(ts) => Scanned::Tick { sym, seq, ts },
            None => Scanned::Other,
        },
        Some(_) => Scanned::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AAPL: &[u8] = br#"{"type":"tick","sym":"AAPL","seq":1042,"ts":1763800000123456,"px":187.23,"qty":100,"bid":187.22,"ask":187.24}"#;

    #[test]
    fn ticks_round_trip_exactly() {
        let t = TickMsg::parse(AAPL).unwrap();
        assert_eq!(t.sym, "AAPL");
        assert_eq!((t.seq, t.ts), (1042, 1763800000123456));
        assert_eq!(t.px, Decimal::new(18723, 2));
        assert_eq!(t.to_json(), AAPL);
        let snap = TickMsg {
            kind: TickKind::Snapshot,
            qty: Decimal::new(1500, 3),
            ..t
        };
        assert_eq!(TickMsg::parse(&snap.to_json()).unwrap(), snap);
    }

    #[test]
    fn reusing_the_ts_digits_writes_the_same_bytes() {
        let mut last_ts = TsDigits::default();
        let mut t = TickMsg::parse(AAPL).unwrap();
        for ts in [
            1_763_800_000_123_456,
            1_763_800_000_123_456,
            7,
            7,
            0,
            u64::MAX,
            12,
        ] {
            t.ts = ts;
            t.seq += 1;
            let mut reused = Vec::new();
            t.as_ref().write_json_reusing(&mut reused, &mut last_ts);
            assert_eq!(reused, t.to_json(), "ts {ts}");
            assert_eq!(TickMsg::parse(&reused).unwrap(), t);
        }
    }

    #[test]
    fn ticks_parse_in_any_order_with_whitespace() {
        let t = TickMsg::parse(
            br#" { "ask": 1.30, "bid" :1.10,"qty":5, "px":1.2, "ts":9, "seq": 3, "x":[1,{"y":"]"}], "sym":"BTC-USD", "type":"snapshot" } "#,
        )
        .unwrap();
        assert_eq!(t.kind, TickKind::Snapshot);
        assert_eq!(t.ask, Decimal::new(130, 2));
        assert_eq!(t.sym, "BTC-USD");
    }

    #[test]
    fn broken_ticks_are_refused() {
        for bad in [
            &br#"{"type":"tick","sym":"A","seq":1,"ts":1,"px":1,"qty":1,"bid":1}"#[..],
            br#"{"type":"tick","sym":"A","seq":-1,"ts":1,"px":1,"qty":1,"bid":1,"ask":1}"#,
            br#"{"type":"tick","sym":"A","seq":1,"ts":1,"px":1e3,"qty":1,"bid":1,"ask":1}"#,
            br#"{"type":"heartbeat","ts":1}"#,
            br#"{"type":"tick""#,
            b"not json",
        ] {
            assert!(
                TickMsg::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn scan_fast_path_reads_tickwire_ticks() {
        assert_eq!(
            scan(AAPL),
            Scanned::Tick {
                sym: b"AAPL",
                seq: 1042,
                ts: 1763800000123456
            }
        );
    }

    #[test]
    fn scan_slow_path_tolerates_order_and_whitespace() {
        let m = scan(br#"{ "ts" : 5, "seq": 2, "sym" : "BTC-USD", "px": 1 }"#);
        assert_eq!(
            m,
            Scanned::Tick {
                sym: b"BTC-USD",
                seq: 2,
                ts: 5
            }
        );
        let m = scan(br#"{"type":"snapshot","sym":"S1","seq":9,"ts":1,"px":1}"#);
        assert_eq!(m, Scanned::Snapshot { sym: b"S1", seq: 9 });
    }

    #[test]
    fn scan_says_other_messages_are_not_ticks() {
        assert_eq!(scan(br#"{"type":"heartbeat","ts":1}"#), Scanned::Other);
        assert_eq!(
            scan(br#"{"type":"subscribed","id":1,"symbols":["S1"]}"#),
            Scanned::Other
        );
        assert_eq!(
            scan(br#"{"type":"error","code":"x","sym":"S1","seq":1,"ts":1}"#),
            Scanned::Other
        );
        assert_eq!(scan(b"not json"), Scanned::Other);
    }
}
