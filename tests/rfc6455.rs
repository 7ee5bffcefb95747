//! Strict RFC 6455 on the read side, over raw sockets after a real
//! handshake: every violation ends its connection with the close code the
//! RFC names, every frame the server sends back is valid, and a canary
//! client keeps a contiguous stream throughout.

mod common;

use std::net::SocketAddr;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A WebSocket connection spoken byte by byte.
struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
}

const MASK: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

/// A client frame: first byte as given (FIN, RSV, opcode), masked unless
/// `masked` is false, with the length encoded as RFC 6455 says.
fn frame(b0: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let m = if masked { 0x80 } else { 0 };
    let mut f = vec![b0];
    match payload.len() {
        n if n < 126 => f.push(m | n as u8),
        n if n <= 0xFFFF => {
            f.push(m | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(m | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        f.extend_from_slice(&MASK);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i & 3]));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

impl Raw {
    /// Handshakes; `extra` goes out in the same write as the request.
    async fn connect(addr: SocketAddr, extra: &[u8]) -> Raw {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut req = format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .into_bytes();
        req.extend_from_slice(extra);
        s.write_all(&req).await.unwrap();
        let mut raw = Raw { s, buf: Vec::new() };
        let end = loop {
            if let Some(i) = raw.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            raw.fill().await.expect("handshake answer");
        };
        let head = String::from_utf8_lossy(&raw.buf[..end]).to_string();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(
            head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "the RFC's sample accept key"
        );
        raw.buf.drain(..end);
        raw
    }

    async fn fill(&mut self) -> Option<()> {
        let mut chunk = [0u8; 4096];
        let n = within(self.s.read(&mut chunk)).await.ok()?;
        (n > 0).then(|| self.buf.extend_from_slice(&chunk[..n]))
    }

    async fn send(&mut self, bytes: &[u8]) {
        // The server may already have closed: a reset here is fine.
        let _ = self.s.write_all(bytes).await;
    }

    /// The next server frame (opcode, payload), checked to be valid: FIN,
    /// unmasked, control frames within 125 bytes. `None` at the end.
    async fn next(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 2 {
                let (b0, b1) = (self.buf[0], self.buf[1]);
                assert_eq!(b0 & 0x70, 0, "no RSV bits from the server");
                assert_eq!(b1 & 0x80, 0, "server frames are unmasked");
                let (len, at) = match b1 & 0x7F {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => (
                        u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    126 | 127 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                if len != usize::MAX && self.buf.len() >= at + len {
                    let op = b0 & 0x0F;
                    assert!(b0 & 0x80 != 0, "server frames are not fragmented");
                    if op >= 8 {
                        assert!(len <= 125, "control frame of {len} bytes from the server");
                    }
                    let payload = self.buf[at..at + len].to_vec();
                    self.buf.drain(..at + len);
                    return Some((op, payload));
                }
            }
            self.fill().await?;
        }
    }

    /// Reads until the server's close frame: (code, reason). 1005 when it
    /// carried no code.
    async fn close_code(&mut self) -> (u16, String) {
        loop {
            let (op, p) = self.next().await.expect("a close frame before the end");
            if op == 0x8 {
                let code = if p.len() >= 2 {
                    u16::from_be_bytes([p[0], p[1]])
                } else {
                    1005
                };
                return (
                    code,
                    String::from_utf8(p[2.min(p.len())..].to_vec()).expect("UTF-8 reason"),
                );
            }
        }
    }
}

/// Streams S0 and checks it stays contiguous until told to stop.
fn canary(
    mut c: Client,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<u64>,
) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut check = SeqCheck::default();
        loop {
            tokio::select! {
                _ = &mut stopped => return check.ticks,
                v = c.json() => {
                    if v["type"] == "tick" || v["type"] == "snapshot" {
                        check.see(&v);
                    }
                }
            }
        }
    });
    (stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_frame_violation_gets_the_close_code_rfc_6455_names() {
    let server = start(&["--synthetic", "2", "--rate", "500"]).await;
    let (stop, canary) = canary(server.client("/ws?symbols=S0").await);
    let mut huge = vec![0x81, 0x80 | 127];
    huge.extend_from_slice(&(1u64 << 62).to_be_bytes());
    huge.extend_from_slice(&MASK);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "an unmasked text frame",
            frame(0x81, br#"{"op":"ping"}"#, false),
            1002,
        ),
        ("a 126-byte ping", frame(0x89, &[0; 126], true), 1002),
        ("a 126-byte pong", frame(0x8A, &[0; 126], true), 1002),
        (
            "a 126-byte close",
            frame(0x88, &close_payload(1000, &[b'x'; 124]), true),
            1002,
        ),
        (
            "a close with a 1-byte payload",
            frame(0x88, &[3], true),
            1002,
        ),
        (
            "close code 999",
            frame(0x88, &close_payload(999, b""), true),
            1002,
        ),
        (
            "close code 1004",
            frame(0x88, &close_payload(1004, b""), true),
            1002,
        ),
        (
            "close code 1005",
            frame(0x88, &close_payload(1005, b""), true),
            1002,
        ),
        (
            "close code 1006",
            frame(0x88, &close_payload(1006, b""), true),
            1002,
        ),
        (
            "close code 1015",
            frame(0x88, &close_payload(1015, b""), true),
            1002,
        ),
        (
            "close code 5000",
            frame(0x88, &close_payload(5000, b""), true),
            1002,
        ),
        (
            "a close reason that is not UTF-8",
            frame(0x88, &close_payload(1000, &[0xC3, 0x28]), true),
            1007,
        ),
        ("RSV1 without an extension", frame(0xC1, b"{}", true), 1002),
        ("RSV2", frame(0xA1, b"{}", true), 1002),
        ("RSV3", frame(0x91, b"{}", true), 1002),
        ("reserved data opcode 3", frame(0x83, b"", true), 1002),
        ("reserved control opcode 0xB", frame(0x8B, b"", true), 1002),
        ("a fragmented ping", frame(0x09, b"", true), 1002),
        (
            "a continuation with nothing to continue",
            frame(0x80, b"{}", true),
            1002,
        ),
        (
            "a text frame inside a fragmented message",
            [frame(0x01, b"{", true), frame(0x81, b"}", true)].concat(),
            1002,
        ),
        (
            "text that is not UTF-8",
            frame(0x81, &[0xFF, 0xFE], true),
            1007,
        ),
        (
            "fragmented text that is not UTF-8",
            [frame(0x01, &[0xE2, 0x82], true), frame(0x80, &[0x28], true)].concat(),
            1007,
        ),
        ("a binary frame", frame(0x82, b"\x00", true), 1003),
        (
            "a message over the size limit",
            frame(0x81, &[b' '; 4097], true),
            1009,
        ),
        (
            "a header announcing 2^62 bytes (nothing follows)",
            huge,
            1009,
        ),
    ];
    for (what, bytes, code) in cases {
        let mut raw = Raw::connect(server.addr, b"").await;
        raw.send(&bytes).await;
        assert_eq!(raw.close_code().await.0, code, "{what}");
    }
    // Meanwhile the canary kept a contiguous stream and was not closed.
    stop.send(()).unwrap();
    assert!(within(canary).await.unwrap() > 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_frames_are_answered_as_rfc_6455_says() {
    let server = start(&["--synthetic", "2", "--rate", "50"]).await;
    // A request sent in the same packet as the handshake is not lost, and a
    // frame split across writes is reassembled.
    let sub = frame(0x81, br#"{"op":"subscribe","symbols":["S1"],"id":1}"#, true);
    let mut raw = Raw::connect(server.addr, &sub[..5]).await;
    raw.send(&sub[5..]).await;
    let (op, welcome) = raw.next().await.unwrap();
    assert_eq!(op, 0x1);
    assert!(String::from_utf8(welcome).unwrap().contains("\"welcome\""));
    let (_, ack) = raw.next().await.unwrap();
    assert!(String::from_utf8(ack).unwrap().contains("\"subscribed\""));
    // A ping gets a pong with the same payload, between data frames.
    raw.send(&frame(0x89, b"are you there", true)).await;
    loop {
        let (op, p) = raw.next().await.unwrap();
        if op == 0xA {
            assert_eq!(p, b"are you there");
            break;
        }
    }
    // A fragmented message with a ping in the middle is one request.
    raw.send(
        &[
            frame(0x01, br#"{"op":"pi"#, true),
            frame(0x89, b"", true),
            frame(0x80, br#"ng","id":9}"#, true),
        ]
        .concat(),
    )
    .await;
    loop {
        let (op, p) = raw.next().await.unwrap();
        if op == 0x1 && String::from_utf8_lossy(&p).contains("\"pong\"") {
            assert!(String::from_utf8_lossy(&p).contains("\"id\":9"));
            break;
        }
    }
    // A close with a valid code and reason is echoed.
    raw.send(&frame(0x88, &close_payload(4000, b"bye now"), true))
        .await;
    assert_eq!(raw.close_code().await, (4000, "bye now".to_string()));
    assert!(
        raw.next().await.is_none(),
        "the server ends the stream after the close"
    );
    // An empty close is echoed empty.
    let mut raw = Raw::connect(server.addr, b"").await;
    raw.send(&frame(0x88, b"", true)).await;
    assert_eq!(raw.close_code().await.0, 1005);
    server.stop().await;
}
