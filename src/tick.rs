//! A tick's wire form, encoded once.
//!
//! The feed's [`Tick`] is encoded exactly once, by the source that publishes
//! it, into the complete bytes of an unmasked WebSocket text frame
//! ([`TickFrame`]). Every subscriber's [`Outbox`](crate::outbox::Outbox) then
//! holds a reference-counted clone of the same bytes, and the writer hands
//! them to the kernel as they are: no per-client serialization, copying or
//! framing. The JSON itself is the protocol crate's
//! ([`tickwire_protocol::TickRef::write_json`]).

use bytes::Bytes;
use tickwire_protocol::{Decimal, TickRef};

use crate::feed::{Instrument, SymbolId, Tick};
use crate::wire::{finish_frame, HEAD_ROOM, OPCODE_TEXT};

pub use tickwire_protocol::TickKind;

/// Appends the JSON text of `tick` (a `tick` or `snapshot` message).
#[inline]
pub fn write_json(out: &mut Vec<u8>, tick: &Tick, ins: &Instrument, kind: TickKind) {
    let price = |units| Decimal::new(units, ins.price_decimals as u8);
    TickRef {
        kind,
        sym: &ins.symbol,
        seq: tick.seq,
        ts: tick.ts_us,
        px: price(tick.px),
        qty: Decimal::new(tick.qty, ins.qty_decimals as u8),
        bid: price(tick.bid),
        ask: price(tick.ask),
    }
    .write_json(out);
}

/// A tick encoded once for every subscriber: the frame bytes, plus what the
/// outbox needs to conflate it and the writer to measure its latency.
#[derive(Debug, Clone)]
pub struct TickFrame {
    pub sym: SymbolId,
    /// Generation time in nanoseconds since the Unix epoch (the wire carries
    /// microseconds), for the server-side latency histogram.
    pub ts_ns: u64,
    pub bytes: Bytes,
}

/// Bytes allocated for one tick's frame: the header room, the fixed text, the
/// symbol and up to 20 digits for each number (so one allocation fits any).
pub fn frame_capacity(ins: &Instrument) -> usize {
    HEAD_ROOM + 48 + 4 * 20 + ins.symbol.len()
}

impl TickFrame {
    pub fn encode(tick: &Tick, ins: &Instrument, kind: TickKind) -> TickFrame {
        let mut buf = Vec::with_capacity(frame_capacity(ins));
        buf.resize(HEAD_ROOM, 0);
        write_json(&mut buf, tick, ins, kind);
        TickFrame {
            sym: tick.sym,
            ts_ns: tick.ts_us * 1000,
            bytes: finish_frame(buf, OPCODE_TEXT),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::Universe;
    use tickwire_protocol::TickMsg;

    #[test]
    fn tick_frame_is_a_complete_text_frame_of_the_protocol_json() {
        let u = Universe::demo();
        let id = u.id_of("AAPL").unwrap();
        let ins = u.get(id);
        let t = Tick {
            sym: id,
            seq: 1042,
            ts_us: 1763800000123456,
            px: 18723,
            qty: 100,
            bid: 18722,
            ask: 18724,
        };
        let f = TickFrame::encode(&t, ins, TickKind::Tick);
        assert_eq!(f.bytes[0], 0x81);
        let len = f.bytes[1] as usize;
        assert_eq!(len, f.bytes.len() - 2);
        let json = std::str::from_utf8(&f.bytes[2..]).unwrap();
        assert_eq!(
            json,
            r#"{"type":"tick","sym":"AAPL","seq":1042,"ts":1763800000123456,"px":187.23,"qty":100,"bid":187.22,"ask":187.24}"#
        );
        let back = TickMsg::parse(&f.bytes[2..]).unwrap();
        assert_eq!((back.seq, back.px), (1042, Decimal::new(18723, 2)));
    }
}
