//! A TCP proxy in front of the test server, for the browser tests: it
//! refuses WebSocket upgrades (`GET /ws`: HTTP 403, the way a proxy that
//! strips upgrades fails them), forwards everything else, and can cut every
//! connection it carries at once (the network dropping mid-stream).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub struct Proxy {
    pub addr: SocketAddr,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    /// Upgrades refused so far.
    pub refused: Arc<AtomicUsize>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let refused = Arc::new(AtomicUsize::new(0));
        let (c, r) = (conns.clone(), refused.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let task = tokio::spawn(forward(client, upstream, r.clone()));
                let mut list = c.lock().unwrap();
                list.retain(|h| !h.is_finished());
                list.push(task.abort_handle());
            }
        });
        Proxy {
            addr,
            conns,
            refused,
            accept,
        }
    }

    /// Cuts every connection open now (both sockets closed).
    pub fn cut_all(&self) -> usize {
        let list = std::mem::take(&mut *self.conns.lock().unwrap());
        let n = list.iter().filter(|h| !h.is_finished()).count();
        for h in list {
            h.abort();
        }
        n
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut_all();
    }
}

async fn forward(mut client: TcpStream, upstream: SocketAddr, refused: Arc<AtomicUsize>) {
    // The first request's head decides: an upgrade to /ws is refused.
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    if head.starts_with(b"GET /ws") {
        refused.fetch_add(1, Ordering::Relaxed);
        let _ = client
            .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await;
        return;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    if server.write_all(&head).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}
