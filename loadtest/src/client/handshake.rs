//! Opening a connection: TCP connect, the HTTP/1.1 upgrade request and the
//! `101 Switching Protocols` answer, and the words for a failed connect,
//! naming the OS limit (file descriptors, local ports) and its fix when one
//! is the cause.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::target::Target;

/// Explains a connect error, naming the OS limit when one is the cause.
pub(super) fn classify(e: &io::Error) -> (String, Option<String>) {
    match e.raw_os_error() {
        Some(libc::EMFILE) | Some(libc::ENFILE) => (
            "too many open files (EMFILE)".into(),
            Some(
                "the client ran out of file descriptors: raise the hard limit (ulimit -Hn) \
                 or run fewer connections"
                    .into(),
            ),
        ),
        Some(libc::EADDRNOTAVAIL) => (
            "no free local port (EADDRNOTAVAIL)".into(),
            Some(
                "ephemeral ports exhausted: widen net.ipv4.ip_local_port_range or use \
                 several 127.0.0.x addresses"
                    .into(),
            ),
        ),
        Some(libc::ECONNREFUSED) => ("connection refused".into(), None),
        Some(libc::ECONNRESET) => ("reset during handshake".into(), None),
        _ => match e.kind() {
            io::ErrorKind::TimedOut => ("timed out".into(), None),
            io::ErrorKind::UnexpectedEof => ("closed during handshake".into(), None),
            io::ErrorKind::InvalidData => (e.to_string(), None),
            k => (format!("{k:?}"), None),
        },
    }
}

/// Connects and upgrades; returns the stream and any bytes read past the
/// HTTP response (the first frames).
pub(super) async fn connect_ws(target: &Target) -> io::Result<(TcpStream, Vec<u8>)> {
    let mut stream = TcpStream::connect(target.addr).await?;
    stream.set_nodelay(true)?;
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        target.path, target.host
    );
    stream.write_all(req.as_bytes()).await?;
    let mut resp = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        resp.extend_from_slice(&chunk[..n]);
        if let Some(end) = memchr::memmem::find(&resp, b"\r\n\r\n") {
            let status = resp.split(|&b| b == b'\r').next().unwrap_or_default();
            if !status.starts_with(b"HTTP/1.1 101") {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("upgrade refused: {}", String::from_utf8_lossy(status)),
                ));
            }
            return Ok((stream, resp[end + 4..].to_vec()));
        }
        if resp.len() > 64 * 1024 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "HTTP response headers too long",
            ));
        }
    }
}
