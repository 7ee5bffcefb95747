//! The compact binary encoding of ticks (`GET /ws?format=binary`).
//!
//! Ticks, snapshots and replayed ticks go out as WebSocket binary frames of
//! exactly [`TICK_LEN`] bytes, little-endian; every other message stays JSON
//! text. Integers replace decimals: a price is a whole number of the
//! instrument's ticks (`tick_size`), a quantity a whole number of lots
//! (`lot_size`), and the symbol is its numeric `id` from the `symbols` reply
//! or `/api/symbols`. So `px = px_ticks × tick_size` exactly.
//!
//! | offset | size | type | field |
//! |---|---|---|---|
//! | 0 | 1 | u8 | message type: 1 = tick, 2 = snapshot |
//! | 1 | 1 | u8 | layout version: 1 |
//! | 2 | 2 | u16 | reserved, 0 |
//! | 4 | 4 | u32 | symbol id |
//! | 8 | 8 | u64 | seq |
//! | 16 | 8 | u64 | ts, µs since the Unix epoch |
//! | 24 | 8 | i64 | px, in ticks |
//! | 32 | 8 | i64 | qty, in lots |
//! | 40 | 8 | i64 | bid, in ticks |
//! | 48 | 8 | i64 | ask, in ticks |
//!
//! 56 bytes (58 on the wire with the frame header) against about 110 for the
//! JSON text of the same tick.

use crate::tick::TickKind;
use crate::ParseError;

/// Bytes of one binary tick.
pub const TICK_LEN: usize = 56;

/// The layout version this crate writes and reads.
pub const LAYOUT_VERSION: u8 = 1;

/// A tick in the binary layout's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BinaryTick {
    pub kind: TickKind,
    pub symbol_id: u32,
    pub seq: u64,
    pub ts: u64,
    pub px_ticks: i64,
    pub qty_lots: i64,
    pub bid_ticks: i64,
    pub ask_ticks: i64,
}

impl BinaryTick {
    /// Appends the 56 bytes.
    #[inline]
    pub fn write(&self, out: &mut Vec<u8>) {
        let mut b = [0u8; TICK_LEN];
        b[0] = match self.kind {
            TickKind::Tick => 1,
            TickKind::Snapshot => 2,
        };
        b[1] = LAYOUT_VERSION;
        b[4..8].copy_from_slice(&self.symbol_id.to_le_bytes());
        b[8..16].copy_from_slice(&self.seq.to_le_bytes());
        b[16..24].copy_from_slice(&self.ts.to_le_bytes());
        b[24..32].copy_from_slice(&self.px_ticks.to_le_bytes());
        b[32..40].copy_from_slice(&self.qty_lots.to_le_bytes());
        b[40..48].copy_from_slice(&self.bid_ticks.to_le_bytes());
        b[48..56].copy_from_slice(&self.ask_ticks.to_le_bytes());
        out.extend_from_slice(&b);
    }

    /// Reads one binary tick (the payload of a binary frame).
    #[inline]
    pub fn parse(b: &[u8]) -> Result<BinaryTick, ParseError> {
        if b.len() != TICK_LEN {
            return Err(ParseError(format!(
                "a binary tick is {TICK_LEN} bytes, not {}",
                b.len()
            )));
        }
        if b[1] != LAYOUT_VERSION {
            return Err(ParseError(format!(
                "unknown binary layout version {}",
                b[1]
            )));
        }
        let kind = match b[0] {
            1 => TickKind::Tick,
            2 => TickKind::Snapshot,
            t => return Err(ParseError(format!("unknown binary message type {t}"))),
        };
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        Ok(BinaryTick {
            kind,
            symbol_id: u32::from_le_bytes(b[4..8].try_into().expect("4 bytes")),
            seq: u64_at(8),
            ts: u64_at(16),
            px_ticks: u64_at(24) as i64,
            qty_lots: u64_at(32) as i64,
            bid_ticks: u64_at(40) as i64,
            ask_ticks: u64_at(48) as i64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_is_the_documented_one_byte_for_byte() {
        let t = BinaryTick {
            kind: TickKind::Tick,
            symbol_id: 3,
            seq: 1042,
            ts: 1_763_800_000_123_456,
            px_ticks: 18723,
            qty_lots: 100,
            bid_ticks: 18722,
            ask_ticks: -1,
        };
        let mut out = Vec::new();
        t.write(&mut out);
        let golden: [u8; TICK_LEN] = [
            1, 1, 0, 0, // type, version, reserved
            3, 0, 0, 0, // symbol id
            0x12, 0x04, 0, 0, 0, 0, 0, 0, // seq 1042
            0x40, 0x52, 0x76, 0xB0, 0x2A, 0x44, 0x06, 0x00, // ts
            0x23, 0x49, 0, 0, 0, 0, 0, 0, // px 18723
            100, 0, 0, 0, 0, 0, 0, 0, // qty
            0x22, 0x49, 0, 0, 0, 0, 0, 0, // bid
            0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, // ask -1
        ];
        assert_eq!(out, golden);
        assert_eq!(BinaryTick::parse(&out).unwrap(), t);
        let snap = BinaryTick {
            kind: TickKind::Snapshot,
            ..t
        };
        out.clear();
        snap.write(&mut out);
        assert_eq!(BinaryTick::parse(&out).unwrap(), snap);
        assert!(BinaryTick::parse(&out[..55]).is_err());
        out[1] = 9;
        assert!(BinaryTick::parse(&out).is_err());
    }
}
