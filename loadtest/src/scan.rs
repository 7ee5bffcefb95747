//! Pulls the three fields the harness needs (`sym`, `seq`, `ts`) and the
//! message type out of a JSON text message, without parsing the rest.
//!
//! tickwire and the reference servers write ticks with a fixed field order, so
//! the fast path matches the prefix `{"type":"tick","sym":"` and reads on from
//! there. Anything else goes through a slower key search that tolerates other
//! field orders and whitespace, so other servers can be measured too.

use memchr::memmem;

/// What a text message is, as far as the accounting cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg<'a> {
    /// A live update: counts towards latency and sequence tracking.
    Tick { sym: &'a [u8], seq: u64, ts: u64 },
    /// The latest state replayed on subscribe: sets the sequence baseline
    /// but its timestamp is old, so it is not a latency sample.
    Snapshot { sym: &'a [u8], seq: u64 },
    /// Anything else (replies, heartbeats, errors).
    Other,
}

const TICK_PREFIX: &[u8] = b"{\"type\":\"tick\",\"sym\":\"";

/// Classifies one text message.
#[inline]
pub fn scan(json: &[u8]) -> Msg<'_> {
    if let Some(rest) = json.strip_prefix(TICK_PREFIX) {
        if let Some(m) = fast_tick(rest) {
            return m;
        }
    }
    slow(json)
}

/// `rest` follows `"sym":"`: `S3","seq":17,"ts":1763...,...`.
#[inline]
fn fast_tick(rest: &[u8]) -> Option<Msg<'_>> {
    let q = memchr::memchr(b'"', rest)?;
    let sym = &rest[..q];
    let rest = rest[q..].strip_prefix(b"\",\"seq\":")?;
    let (seq, used) = digits(rest)?;
    let rest = rest[used..].strip_prefix(b",\"ts\":")?;
    let (ts, _) = digits(rest)?;
    Some(Msg::Tick { sym, seq, ts })
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
fn slow(json: &[u8]) -> Msg<'_> {
    let kind = string_after(json, b"\"type\"");
    let (Some(sym), Some(seq)) = (
        string_after(json, b"\"sym\""),
        number_after(json, b"\"seq\""),
    ) else {
        return Msg::Other;
    };
    match kind {
        Some(b"snapshot") => Msg::Snapshot { sym, seq },
        Some(b"tick") | None => match number_after(json, b"\"ts\"") {
            Some(ts) => Msg::Tick { sym, seq, ts },
            None => Msg::Other,
        },
        Some(_) => Msg::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_path_reads_tickwire_ticks() {
        let m = scan(br#"{"type":"tick","sym":"S3","seq":17,"ts":1763800000123456,"px":101.23,"qty":7,"bid":101.22,"ask":101.24}"#);
        assert_eq!(
            m,
            Msg::Tick {
                sym: b"S3",
                seq: 17,
                ts: 1763800000123456
            }
        );
    }

    #[test]
    fn slow_path_tolerates_order_and_whitespace() {
        let m = scan(br#"{ "ts" : 5, "seq": 2, "sym" : "BTC-USD", "px": 1 }"#);
        assert_eq!(
            m,
            Msg::Tick {
                sym: b"BTC-USD",
                seq: 2,
                ts: 5
            }
        );
        let m = scan(br#"{"type":"snapshot","sym":"S1","seq":9,"ts":1,"px":1}"#);
        assert_eq!(m, Msg::Snapshot { sym: b"S1", seq: 9 });
    }

    #[test]
    fn other_messages_are_not_ticks() {
        assert_eq!(scan(br#"{"type":"heartbeat","ts":1}"#), Msg::Other);
        assert_eq!(
            scan(br#"{"type":"subscribed","id":1,"symbols":["S1"]}"#),
            Msg::Other
        );
        assert_eq!(
            scan(br#"{"type":"error","code":"x","sym":"S1","seq":1,"ts":1}"#),
            Msg::Other
        );
        assert_eq!(scan(b"not json"), Msg::Other);
    }
}
