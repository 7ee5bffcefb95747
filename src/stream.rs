//! The byte streams a connection can run on, and how each splits into a read
//! half (the session's reader task) and a write half (its writer task).
//!
//! Plain TCP splits without a lock (`TcpStream::into_split`). A TLS stream
//! cannot (one TLS state machine serves both directions), so it splits
//! through `tokio::io::split` (a lock per read or write: uncontended, as the
//! reader mostly waits); the session is generic over [`Stream`] and does not
//! care which it got.

use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// A connection's byte stream, as accepted by the listener.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {
    type Read: AsyncRead + Send + Unpin + 'static;
    type Write: AsyncWrite + Send + Unpin + 'static;

    /// Independent halves for the reader and the writer task.
    fn split(self) -> (Self::Read, Self::Write);
}

impl Stream for TcpStream {
    type Read = OwnedReadHalf;
    type Write = OwnedWriteHalf;

    fn split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        self.into_split()
    }
}

/// HTTPS / WSS (`--tls-cert`).
pub type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

impl Stream for TlsStream {
    type Read = ReadHalf<TlsStream>;
    type Write = WriteHalf<TlsStream>;

    fn split(self) -> (ReadHalf<TlsStream>, WriteHalf<TlsStream>) {
        tokio::io::split(self)
    }
}
