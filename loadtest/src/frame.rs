//! The WebSocket wire format, as much of it as a load client needs: splitting a
//! byte buffer into server frames (unmasked) without copying, and writing the
//! masked frames a client sends (subscribe, pong, close).

/// Opcodes from RFC 6455 §5.2.
pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// One frame borrowed from the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub fin: bool,
    pub opcode: u8,
    pub payload: &'a [u8],
}

/// Why a buffer could not be split into frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The server masked a frame (servers must not, RFC 6455 §5.1).
    MaskedServerFrame,
    /// A frame longer than the client accepts.
    TooLong(u64),
}

/// Longest frame the client accepts; longer ones end the connection.
pub const MAX_FRAME: u64 = 16 << 20;

/// Parses the frame at the start of `buf`. Returns the frame and the number
/// of bytes it occupies, or `Ok(None)` if `buf` holds only part of it.
#[inline]
pub fn parse(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let b0 = buf[0];
    let b1 = buf[1];
    if b1 & 0x80 != 0 {
        return Err(FrameError::MaskedServerFrame);
    }
    let (len, head) = match b1 & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut n = [0u8; 8];
            n.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(n), 10)
        }
        n => (n as u64, 2),
    };
    if len > MAX_FRAME {
        return Err(FrameError::TooLong(len));
    }
    let end = head + len as usize;
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some((
        Frame {
            fin: b0 & 0x80 != 0,
            opcode: b0 & 0x0f,
            payload: &buf[head..end],
        },
        end,
    )))
}

/// Appends a masked client frame with FIN set. The mask key only has to be
/// unpredictable to intermediaries (RFC 6455 §10.3); a load client on
/// loopback uses a cheap counter-derived one.
pub fn write_client_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= u16::MAX as usize {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
}

/// Close code carried by a close frame's payload; 1005 ("no status") if empty.
pub fn close_code(payload: &[u8]) -> u16 {
    if payload.len() >= 2 {
        u16::from_be_bytes([payload[0], payload[1]])
    } else {
        1005
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0x80 | opcode];
        if payload.len() < 126 {
            v.push(payload.len() as u8);
        } else if payload.len() <= 65535 {
            v.push(126);
            v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        } else {
            v.push(127);
            v.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        }
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn parses_all_length_forms_and_partial_frames() {
        for n in [0usize, 5, 125, 126, 300, 65535, 70_000] {
            let payload = vec![b'x'; n];
            let f = server_frame(OP_TEXT, &payload);
            let (frame, used) = parse(&f).unwrap().unwrap();
            assert_eq!(used, f.len());
            assert_eq!(frame.payload.len(), n);
            assert!(frame.fin);
            assert_eq!(frame.opcode, OP_TEXT);
            for cut in [0, 1, f.len() / 2, f.len() - 1] {
                if cut < f.len() {
                    assert_eq!(parse(&f[..cut]).unwrap(), None, "n={n} cut={cut}");
                }
            }
        }
    }

    #[test]
    fn rejects_masked_and_huge_frames() {
        assert_eq!(
            parse(&[0x81, 0x85, 0, 0]),
            Err(FrameError::MaskedServerFrame)
        );
        let mut huge = vec![0x81, 127];
        huge.extend_from_slice(&(MAX_FRAME + 1).to_be_bytes());
        assert_eq!(parse(&huge), Err(FrameError::TooLong(MAX_FRAME + 1)));
    }

    #[test]
    fn client_frames_are_masked() {
        let mut out = Vec::new();
        write_client_frame(&mut out, OP_TEXT, b"hello", [1, 2, 3, 4]);
        assert_eq!(out[0], 0x81);
        assert_eq!(out[1], 0x85);
        let unmasked: Vec<u8> = out[6..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ [1, 2, 3, 4][i & 3])
            .collect();
        assert_eq!(unmasked, b"hello");
        assert_eq!(close_code(&[0x03, 0xE8]), 1000);
        assert_eq!(close_code(&[]), 1005);
    }
}
