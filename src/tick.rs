//! The unit of market data and its wire form.
//!
//! A [`Tick`] is encoded exactly once, by the feed task, into the complete bytes
//! of an unmasked WebSocket text frame ([`TickFrame`]). Every subscriber's
//! [`Outbox`](crate::outbox::Outbox) then holds a reference-counted clone of the
//! same bytes, and the writer hands them to the kernel as they are: no
//! per-client serialization, copying or framing.

use bytes::Bytes;

use crate::feed::{Instrument, SymbolId};

/// One trade and the quote around it. Prices and quantity are fixed-point in
/// the instrument's units; `ts_us` is the wall-clock generation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    pub sym: SymbolId,
    pub seq: u64,
    pub ts_us: u64,
    pub px: i64,
    pub qty: i64,
    pub bid: i64,
    pub ask: i64,
}

/// Which message type a tick is sent as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickKind {
    /// A live update.
    Tick,
    /// The latest tick, replayed to a new subscriber.
    Snapshot,
}

/// Writes `units` scaled by 10^-decimals as an exact decimal number.
pub fn write_fixed(out: &mut Vec<u8>, units: i64, decimals: u32) {
    if units < 0 {
        out.push(b'-');
    }
    let abs = units.unsigned_abs();
    let mut buf = itoa::Buffer::new();
    if decimals == 0 {
        out.extend_from_slice(buf.format(abs).as_bytes());
        return;
    }
    let scale = 10u64.pow(decimals);
    out.extend_from_slice(buf.format(abs / scale).as_bytes());
    out.push(b'.');
    let frac = buf.format(abs % scale).as_bytes();
    out.extend(std::iter::repeat_n(b'0', decimals as usize - frac.len()));
    out.extend_from_slice(frac);
}

/// Appends the JSON text of `tick` (a `tick` or `snapshot` message).
pub fn write_json(out: &mut Vec<u8>, tick: &Tick, ins: &Instrument, kind: TickKind) {
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(match kind {
        TickKind::Tick => b"{\"type\":\"tick\",\"sym\":\"",
        TickKind::Snapshot => b"{\"type\":\"snapshot\",\"sym\":\"",
    });
    // Symbols are validated to need no JSON escaping (see feed::universe).
    out.extend_from_slice(ins.symbol.as_bytes());
    out.extend_from_slice(b"\",\"seq\":");
    out.extend_from_slice(n.format(tick.seq).as_bytes());
    out.extend_from_slice(b",\"ts\":");
    out.extend_from_slice(n.format(tick.ts_us).as_bytes());
    out.extend_from_slice(b",\"px\":");
    write_fixed(out, tick.px, ins.price_decimals);
    out.extend_from_slice(b",\"qty\":");
    write_fixed(out, tick.qty, ins.qty_decimals);
    out.extend_from_slice(b",\"bid\":");
    write_fixed(out, tick.bid, ins.price_decimals);
    out.extend_from_slice(b",\"ask\":");
    write_fixed(out, tick.ask, ins.price_decimals);
    out.push(b'}');
}

/// Room kept in front of a payload for the longest server frame header we
/// write (2 + 8 bytes: server frames are unmasked).
const HEAD_ROOM: usize = 10;

/// Bytes of a complete, unmasked WebSocket frame with FIN set.
pub fn frame(opcode: u8, payload: &[u8]) -> Bytes {
    let mut buf = Vec::with_capacity(HEAD_ROOM + payload.len());
    buf.resize(HEAD_ROOM, 0);
    buf.extend_from_slice(payload);
    finish_frame(buf, opcode)
}

/// Turns `buf` (HEAD_ROOM spare bytes, then the payload) into frame bytes by
/// writing the header right before the payload.
fn finish_frame(mut buf: Vec<u8>, opcode: u8) -> Bytes {
    let len = buf.len() - HEAD_ROOM;
    let start = if len < 126 {
        buf[HEAD_ROOM - 1] = len as u8;
        HEAD_ROOM - 2
    } else if len <= u16::MAX as usize {
        buf[HEAD_ROOM - 3] = 126;
        buf[HEAD_ROOM - 2..HEAD_ROOM].copy_from_slice(&(len as u16).to_be_bytes());
        HEAD_ROOM - 4
    } else {
        buf[HEAD_ROOM - 9] = 127;
        buf[HEAD_ROOM - 8..HEAD_ROOM].copy_from_slice(&(len as u64).to_be_bytes());
        HEAD_ROOM - 10
    };
    buf[start] = 0x80 | opcode;
    let mut bytes = Bytes::from(buf);
    bytes = bytes.split_off(start);
    bytes
}

pub const OPCODE_TEXT: u8 = 0x1;
pub const OPCODE_CLOSE: u8 = 0x8;
pub const OPCODE_PING: u8 = 0x9;

/// A text frame carrying a JSON message.
pub fn text_frame(json: &[u8]) -> Bytes {
    frame(OPCODE_TEXT, json)
}

/// A close frame with a status code and a reason (at most 123 bytes).
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(&reason.as_bytes()[..reason.len().min(123)]);
    frame(OPCODE_CLOSE, &payload)
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

impl TickFrame {
    pub fn encode(tick: &Tick, ins: &Instrument, kind: TickKind) -> TickFrame {
        let mut buf = Vec::with_capacity(HEAD_ROOM + 48 + 4 * 20 + ins.symbol.len());
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

    fn fixed(units: i64, d: u32) -> String {
        let mut v = Vec::new();
        write_fixed(&mut v, units, d);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn fixed_point_is_exact() {
        assert_eq!(fixed(18723, 2), "187.23");
        assert_eq!(fixed(18720, 2), "187.20");
        assert_eq!(fixed(5, 2), "0.05");
        assert_eq!(fixed(-5, 2), "-0.05");
        assert_eq!(fixed(100, 0), "100");
        assert_eq!(fixed(123456789, 5), "1234.56789");
    }

    #[test]
    fn tick_frame_is_a_complete_text_frame() {
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
    }

    #[test]
    fn long_frames_use_extended_lengths() {
        let f = text_frame(&[b'a'; 300]);
        assert_eq!(&f[..4], &[0x81, 126, 1, 44]);
        assert_eq!(f.len(), 304);
        let f = text_frame(&vec![b'a'; 70_000]);
        assert_eq!(f[1], 127);
        assert_eq!(f.len(), 70_010);
        let c = close_frame(1008, "slow consumer");
        assert_eq!(&c[..4], &[0x88, 15, 0x03, 0xF0]);
    }
}
