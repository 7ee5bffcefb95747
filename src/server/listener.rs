//! The listening socket and the accept loop's one step: every accepted
//! connection comes with its peer address, which admission needs.
//!
//! Room for what comes: the TLS acceptor (with its handshake timeout) wraps
//! the accepted `TcpStream` here, before HTTP is spoken.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// The server's listening socket.
pub struct Listener {
    inner: TcpListener,
}

impl Listener {
    /// Binds `addr` with SO_REUSEADDR (a restarted server takes its port back
    /// at once) and a `backlog`-deep accept queue (tokio's default of 128
    /// stalls mass connects on SYN retransmits).
    pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<Listener> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        Ok(Listener {
            inner: socket.listen(backlog)?,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr().expect("a bound listener")
    }

    /// The next connection, with Nagle off (ticks must not wait for more).
    /// Accept errors (most likely out of file descriptors) are logged with
    /// what to do, and retried after a pause instead of spinning.
    pub async fn accept(&self) -> (TcpStream, SocketAddr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    return (stream, peer);
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e} (if this is 'too many open files', raise `ulimit -n` or lower --max-connections)");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}
