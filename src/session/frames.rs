//! Client frames as RFC 6455 defines them, parsed and held to the letter.
//!
//! The server reads frames itself rather than through fastwebsockets'
//! reader for two reasons. One is strictness: fastwebsockets 0.10 accepts
//! unmasked client frames, control frames over 125 bytes and invalid close
//! payloads, which a server must refuse (RFC 6455 §5.1, §5.5, §7.4). The
//! other is memory: its reader keeps an 8 KiB buffer per connection for a
//! client that, on a market-data feed, mostly sends nothing at all. Here a
//! connection keeps only the bytes of a frame that arrived in pieces; reads
//! go into one scratch buffer per thread (see [`super::reader`]).
//!
//! [`parse`] looks at bytes already read; it never asks for more than it
//! needs, and it checks an announced length against the limit before any
//! buffer grows, so a header announcing 2^63 bytes costs nothing.

use crate::close::DisconnectReason;

/// A frame's opcode, as far as the server cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    fn from_bits(b: u8) -> Option<Opcode> {
        Some(match b {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// One frame, its payload unmasked in place.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub fin: bool,
    pub opcode: Opcode,
    pub payload: &'a mut [u8],
}

/// What [`parse`] found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A whole frame, and how many bytes of the buffer it took.
    Frame(Frame<'a>, usize),
    /// Not a whole frame yet; at least this many bytes are needed in all.
    Incomplete(usize),
    /// A violation: close the connection for this reason.
    Invalid(DisconnectReason),
}

/// Longest frame header a client sends: 2 + 8 (length) + 4 (mask).
pub const MAX_HEADER: usize = 14;

/// Parses the frame at the start of `buf`; a payload over `max_payload`
/// bytes is refused (1009) from its header alone.
pub fn parse(buf: &mut [u8], max_payload: usize) -> Parsed<'_> {
    if buf.len() < 2 {
        return Parsed::Incomplete(2);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let fin = b0 & 0x80 != 0;
    // RSV1-3 mean an extension, and none was negotiated.
    if b0 & 0x70 != 0 {
        return Parsed::Invalid(DisconnectReason::ProtocolError);
    }
    let Some(opcode) = Opcode::from_bits(b0 & 0x0F) else {
        return Parsed::Invalid(DisconnectReason::ProtocolError);
    };
    // Every client frame must be masked (§5.1).
    if b1 & 0x80 == 0 {
        return Parsed::Invalid(DisconnectReason::ProtocolError);
    }
    let (len, len_bytes) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Parsed::Incomplete(4);
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as u64, 2)
        }
        127 => {
            if buf.len() < 10 {
                return Parsed::Incomplete(10);
            }
            let n = u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes"));
            // The most significant bit must be 0 (§5.2).
            if n >> 63 != 0 {
                return Parsed::Invalid(DisconnectReason::ProtocolError);
            }
            (n, 8)
        }
        n => (n as u64, 0),
    };
    if opcode.is_control() && (!fin || len > 125) {
        // Control frames are never fragmented and carry at most 125 bytes.
        return Parsed::Invalid(DisconnectReason::ProtocolError);
    }
    if len > max_payload as u64 {
        return Parsed::Invalid(DisconnectReason::MessageTooBig);
    }
    let head = 2 + len_bytes + 4;
    let total = head + len as usize;
    if buf.len() < total {
        return Parsed::Incomplete(total);
    }
    let mask: [u8; 4] = buf[head - 4..head].try_into().expect("4 bytes");
    let payload = &mut buf[head..total];
    unmask(payload, mask);
    Parsed::Frame(
        Frame {
            fin,
            opcode,
            payload,
        },
        total,
    )
}

/// XORs `payload` with the repeating 4-byte `mask`, eight bytes at a time.
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes(c.try_into().expect("8 bytes")) ^ wide;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// Checks a close frame's payload (§5.5.1, §7.4): empty, or a status code a
/// peer may send followed by UTF-8 text. Returns the close to echo.
pub fn check_close(payload: &[u8]) -> Result<(), DisconnectReason> {
    match payload.len() {
        0 => Ok(()),
        1 => Err(DisconnectReason::ProtocolError),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            // 1004-1006 and 1015 are reserved for reporting, never sent;
            // 3000-4999 belong to libraries and applications.
            let sendable = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            if !sendable {
                return Err(DisconnectReason::ProtocolError);
            }
            std::str::from_utf8(&payload[2..])
                .map(|_| ())
                .map_err(|_| DisconnectReason::InvalidPayload)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut f = vec![b0];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        f
    }

    fn reason(mut bytes: Vec<u8>, max: usize) -> Option<DisconnectReason> {
        match parse(&mut bytes, max) {
            Parsed::Invalid(r) => Some(r),
            _ => None,
        }
    }

    #[test]
    fn frames_parse_and_unmask_at_every_length() {
        for n in [0usize, 1, 7, 8, 9, 125, 126, 300, 70_000] {
            let payload: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            let mut bytes = client_frame(0x81, &payload);
            let total = bytes.len();
            match parse(&mut bytes, 1 << 20) {
                Parsed::Frame(f, used) => {
                    assert_eq!((f.fin, f.opcode, used), (true, Opcode::Text, total));
                    assert_eq!(f.payload, &payload[..]);
                }
                other => panic!("{n}: {other:?}"),
            }
        }
    }

    #[test]
    fn partial_frames_ask_for_what_they_need() {
        let full = client_frame(0x81, &[7; 300]);
        for cut in [0, 1, 2, 3, 4, 8, 100, full.len() - 1] {
            let mut part = full[..cut].to_vec();
            assert!(
                matches!(parse(&mut part, 4096), Parsed::Incomplete(n) if n > cut),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn violations_get_the_close_rfc_6455_names() {
        let max = 4096;
        let mut unmasked = client_frame(0x81, b"hi");
        unmasked[1] &= 0x7F;
        assert_eq!(reason(unmasked, max), Some(DisconnectReason::ProtocolError));
        for b0 in [0xC1, 0xA1, 0x91] {
            assert_eq!(
                reason(client_frame(b0, b"x"), max),
                Some(DisconnectReason::ProtocolError),
                "rsv {b0:x}"
            );
        }
        for op in [0x3, 0x7, 0xB, 0xF] {
            assert_eq!(
                reason(client_frame(0x80 | op, b""), max),
                Some(DisconnectReason::ProtocolError),
                "opcode {op}"
            );
        }
        assert_eq!(
            reason(client_frame(0x89, &[0; 126]), max),
            Some(DisconnectReason::ProtocolError),
            "long ping"
        );
        assert_eq!(
            reason(client_frame(0x8A, &[0; 126]), max),
            Some(DisconnectReason::ProtocolError),
            "long pong"
        );
        assert_eq!(
            reason(client_frame(0x88, &[3; 126]), max),
            Some(DisconnectReason::ProtocolError),
            "long close"
        );
        assert_eq!(
            reason(client_frame(0x09, b""), max),
            Some(DisconnectReason::ProtocolError),
            "fragmented ping"
        );
        assert_eq!(
            reason(client_frame(0x81, &[0; 4097]), max),
            Some(DisconnectReason::MessageTooBig)
        );
        // A header announcing 2^62 bytes is refused before anything is read.
        let mut huge = vec![0x81, 0x80 | 127];
        huge.extend_from_slice(&(1u64 << 62).to_be_bytes());
        assert_eq!(reason(huge, max), Some(DisconnectReason::MessageTooBig));
        let mut msb = vec![0x81, 0x80 | 127];
        msb.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert_eq!(reason(msb, max), Some(DisconnectReason::ProtocolError));
    }

    #[test]
    fn close_payloads_are_checked() {
        let code = |c: u16, reason: &[u8]| {
            let mut p = c.to_be_bytes().to_vec();
            p.extend_from_slice(reason);
            check_close(&p)
        };
        assert_eq!(check_close(b""), Ok(()));
        assert_eq!(check_close(b"\x03"), Err(DisconnectReason::ProtocolError));
        for ok in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999,
        ] {
            assert_eq!(code(ok, b"bye"), Ok(()), "{ok}");
        }
        for bad in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            assert_eq!(
                code(bad, b""),
                Err(DisconnectReason::ProtocolError),
                "{bad}"
            );
        }
        assert_eq!(
            code(1000, &[0xff, 0xfe]),
            Err(DisconnectReason::InvalidPayload)
        );
    }
}
