//! WebSocket frame bytes as the server sends them: complete, unmasked, FIN
//! set, built once and then only referenced (a tick's frame is shared by
//! every subscriber; see [`crate::tick`]).

use bytes::Bytes;
use tickwire_protocol::{Close, Reply};

pub const OPCODE_TEXT: u8 = 0x1;
pub const OPCODE_BINARY: u8 = 0x2;
pub const OPCODE_CLOSE: u8 = 0x8;
pub const OPCODE_PING: u8 = 0x9;
pub const OPCODE_PONG: u8 = 0xA;

/// Room kept in front of a payload for the longest server frame header
/// (2 + 8 bytes: server frames are unmasked).
pub const HEAD_ROOM: usize = 10;

/// Bytes of a complete frame with FIN set.
pub fn frame(opcode: u8, payload: &[u8]) -> Bytes {
    let mut buf = Vec::with_capacity(HEAD_ROOM + payload.len());
    buf.resize(HEAD_ROOM, 0);
    buf.extend_from_slice(payload);
    finish_frame(buf, opcode)
}

/// Turns `buf` (HEAD_ROOM spare bytes, then the payload) into frame bytes by
/// writing the header right before the payload: a frame is built without
/// copying its payload.
pub fn finish_frame(mut buf: Vec<u8>, opcode: u8) -> Bytes {
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
    Bytes::from(buf).split_off(start)
}

/// The payload of a frame built here (server frames are unmasked).
pub fn payload(frame: &[u8]) -> &[u8] {
    let start = match frame.get(1).map(|b| b & 0x7f) {
        Some(126) => 4,
        Some(127) => 10,
        Some(_) => 2,
        None => return &[],
    };
    frame.get(start..).unwrap_or(&[])
}

/// A text frame carrying a JSON message.
pub fn text_frame(json: &[u8]) -> Bytes {
    frame(OPCODE_TEXT, json)
}

/// A reply as a complete text frame.
pub fn reply_frame(reply: &Reply) -> Bytes {
    text_frame(&reply.to_json())
}

/// The close frame of `close`: its code and reason text.
pub fn close_frame(close: Close) -> Bytes {
    let reason = close.reason();
    let mut payload = close.code().to_be_bytes().to_vec();
    payload.extend_from_slice(&reason.as_bytes()[..reason.len().min(123)]);
    frame(OPCODE_CLOSE, &payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_frames_use_extended_lengths() {
        let f = text_frame(&[b'a'; 300]);
        assert_eq!(&f[..4], &[0x81, 126, 1, 44]);
        assert_eq!(f.len(), 304);
        let f = text_frame(&vec![b'a'; 70_000]);
        assert_eq!(f[1], 127);
        assert_eq!(f.len(), 70_010);
        assert_eq!(payload(&f).len(), 70_000);
        assert_eq!(payload(&text_frame(b"{}")), b"{}");
        let c = close_frame(Close::SlowConsumer);
        assert_eq!(&c[..4], &[0x88, 15, 0x03, 0xF0]);
    }
}
