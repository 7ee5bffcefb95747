//! Bodies of the HTTP endpoints that carry ticks.
//!
//! [`HistoryPage`] is `GET /api/history?symbol=S&from=SEQ&limit=N`: the
//! ticks of one symbol after a seq, for bots that recover over HTTP. The
//! server writes the ticks last, as the exact tick messages of the stream,
//! so they parse with [`TickMsg::parse`] and prices stay exact.

use serde::{Deserialize, Serialize};

use crate::tick::TickMsg;
use crate::ParseError;

/// `GET /api/history`'s body.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPage {
    pub symbol: String,
    /// The epoch the seqs belong to (as in the `welcome` message).
    pub epoch: String,
    /// Oldest seq the server still holds for this symbol (0: none).
    pub first_seq: u64,
    /// Newest seq of this symbol (0: it has not traded).
    pub last_seq: u64,
    /// Whether `ticks` starts right after the requested seq: nothing between
    /// `from` and the first tick returned is missing.
    pub complete: bool,
    /// Oldest first; at most the requested limit. More may follow: ask again
    /// from the last seq returned.
    pub ticks: Vec<TickMsg>,
}

/// Everything but the ticks, which are written (and parsed) as tick messages.
#[derive(Serialize, Deserialize)]
struct Envelope {
    symbol: String,
    epoch: String,
    first_seq: u64,
    last_seq: u64,
    complete: bool,
}

impl HistoryPage {
    /// Writes the body, with `ticks` given as the JSON texts of tick messages
    /// (the server has them encoded already).
    pub fn write<'a>(
        out: &mut Vec<u8>,
        symbol: &str,
        epoch: &str,
        first_seq: u64,
        last_seq: u64,
        complete: bool,
        ticks: impl Iterator<Item = &'a [u8]>,
    ) {
        let env = Envelope {
            symbol: symbol.into(),
            epoch: epoch.into(),
            first_seq,
            last_seq,
            complete,
        };
        let mut head = simd_json::to_vec(&env).expect("envelope serializes");
        head.pop(); // the closing brace: the ticks follow
        out.extend_from_slice(&head);
        out.extend_from_slice(b",\"ticks\":[");
        for (i, t) in ticks.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(t);
        }
        out.extend_from_slice(b"]}");
    }

    pub fn to_json(&self) -> Vec<u8> {
        let ticks: Vec<Vec<u8>> = self.ticks.iter().map(TickMsg::to_json).collect();
        let mut out = Vec::new();
        HistoryPage::write(
            &mut out,
            &self.symbol,
            &self.epoch,
            self.first_seq,
            self.last_seq,
            self.complete,
            ticks.iter().map(Vec::as_slice),
        );
        out
    }

    /// Parses a body written by [`HistoryPage::write`].
    pub fn parse(json: &[u8]) -> Result<HistoryPage, ParseError> {
        let at = memchr::memmem::find(json, b",\"ticks\":[")
            .ok_or_else(|| ParseError("no \"ticks\" array".into()))?;
        let mut head = json[..at].to_vec();
        head.push(b'}');
        let env: Envelope = simd_json::serde::from_slice(&mut head)
            .map_err(|e| ParseError(format!("history page: {e}")))?;
        let mut rest = &json[at + 10..];
        let mut ticks = Vec::new();
        loop {
            rest = rest.trim_ascii_start();
            match rest.first() {
                Some(b']') => break,
                Some(b',') if !ticks.is_empty() => rest = &rest[1..],
                Some(b'{') => {
                    // Tick objects are flat: the first '}' ends one.
                    let end = memchr::memchr(b'}', rest)
                        .ok_or_else(|| ParseError("unterminated tick".into()))?;
                    ticks.push(TickMsg::parse(&rest[..=end])?);
                    rest = &rest[end + 1..];
                }
                _ => return Err(ParseError("malformed \"ticks\" array".into())),
            }
        }
        Ok(HistoryPage {
            symbol: env.symbol,
            epoch: env.epoch,
            first_seq: env.first_seq,
            last_seq: env.last_seq,
            complete: env.complete,
            ticks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Decimal, TickKind};

    #[test]
    fn history_pages_round_trip() {
        let tick = |seq| TickMsg {
            kind: TickKind::Tick,
            sym: "AAPL".into(),
            seq,
            ts: 1,
            px: Decimal::new(18723, 2),
            qty: Decimal::new(1, 0),
            bid: Decimal::new(18722, 2),
            ask: Decimal::new(18724, 2),
        };
        for ticks in [vec![], vec![tick(5)], vec![tick(5), tick(6), tick(7)]] {
            let page = HistoryPage {
                symbol: "AAPL".into(),
                epoch: "e".into(),
                first_seq: 3,
                last_seq: 9,
                complete: true,
                ticks,
            };
            assert_eq!(HistoryPage::parse(&page.to_json()).unwrap(), page);
        }
    }
}
