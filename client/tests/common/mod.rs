//! What the client's fault tests share: a real tickwire server in this
//! process on 127.0.0.1 (port 0 or a given one, as the server's own tests
//! start theirs), a TCP proxy that cuts connections on command, and a
//! checker of the event stream's promises.
#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use tickwire::config::Config;
use tickwire::hub::Hub;
use tickwire::server::Server;
use tickwire::shutdown::Shutdown;
use tickwire_client::{Client, Event, TickKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// Every wait for an event is bounded by this.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub struct TestServer {
    pub addr: SocketAddr,
    pub shutdown: Shutdown,
    pub hub: Arc<Hub>,
    pub task: JoinHandle<()>,
}

/// A server on 127.0.0.1:`port` (0: a free one) with these extra flags.
/// A port just freed may still be held for a moment: binding is retried
/// until [`DEADLINE`].
pub async fn start_on(port: u16, args: &[&str]) -> TestServer {
    let listen = format!("127.0.0.1:{port}");
    let mut argv = vec!["tickwire", "--listen", &listen, "--seed", "7"];
    argv.extend_from_slice(args);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match Server::bind(Config::parse_from(&argv)).await {
            Ok(server) => {
                return TestServer {
                    addr: server.local_addr(),
                    shutdown: server.shutdown_handle(),
                    hub: server.hub().clone(),
                    task: tokio::spawn(server.run()),
                }
            }
            Err(e) if e.is_addr_in_use() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("tickwire does not bind {listen}: {e}"),
        }
    }
}

pub async fn start(args: &[&str]) -> TestServer {
    start_on(0, args).await
}

impl TestServer {
    /// Graceful shutdown: clients get 1001; returns once the server is gone.
    pub async fn stop(self) {
        self.shutdown.trigger();
        within(self.task).await.unwrap();
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// The server's latest seq of `sym`.
    pub fn latest(&self, sym: &str) -> u64 {
        let id = self.hub.universe().id_of(sym).expect("a known symbol");
        self.hub.latest(id).map_or(0, |t| t.seq)
    }

    /// Polls until the feed has moved on to `seq` of `sym` (server state has
    /// no event to await).
    pub async fn until_seq(&self, sym: &str, seq: u64) {
        within(async {
            while self.latest(sym) < seq {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
    }
}

pub async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(DEADLINE, f)
        .await
        .expect("timed out waiting for an event")
}

/// The connections a [`Proxy`] carries: each forwarder, and whether it
/// has gone silent.
type Carried = Arc<Mutex<Vec<(AbortHandle, Arc<AtomicBool>)>>>;

/// A TCP proxy in front of a server: forwards bytes both ways, and on
/// command cuts every connection it carries (both sockets dropped at once,
/// whatever was in flight is lost) or refuses new ones.
pub struct Proxy {
    pub addr: SocketAddr,
    conns: Carried,
    blocked: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Carried = Arc::default();
        let blocked = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (conns, blocked) = (conns.clone(), blocked.clone());
            async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    if blocked.load(Ordering::SeqCst) {
                        continue; // dropped: the client sees a reset
                    }
                    let silent = Arc::new(AtomicBool::new(false));
                    let forward = tokio::spawn(forward(inbound, target, silent.clone()));
                    let mut conns = conns.lock().unwrap();
                    conns.retain(|c| !c.0.is_finished());
                    conns.push((forward.abort_handle(), silent));
                }
            }
        });
        Proxy {
            addr,
            conns,
            blocked,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Cuts every connection carried now.
    pub fn cut(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            c.0.abort();
        }
    }

    /// Every connection carried now goes silent: both stay open, but what
    /// the server sends is thrown away (a half-dead route).
    pub fn silence(&self) {
        for c in self.conns.lock().unwrap().iter() {
            c.1.store(true, Ordering::SeqCst);
        }
    }

    /// While blocked, new connections are accepted and dropped at once.
    pub fn block(&self, on: bool) {
        self.blocked.store(on, Ordering::SeqCst);
    }
}

/// Carries one connection; once `silent`, drops what the server sends.
async fn forward(mut inbound: TcpStream, target: SocketAddr, silent: Arc<AtomicBool>) {
    let Ok(outbound) = TcpStream::connect(target).await else {
        return;
    };
    let (mut from_server, mut to_server) = outbound.into_split();
    let (mut from_client, mut to_client) = inbound.split();
    let up = tokio::io::copy(&mut from_client, &mut to_server);
    let down = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = from_server.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
            }
            if !silent.load(Ordering::SeqCst) {
                to_client.write_all(&buf[..n]).await?;
            }
        }
    };
    let _ = tokio::join!(up, down);
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

/// The next event, failing the test after [`DEADLINE`].
pub async fn next(client: &mut Client) -> Event {
    within(client.next()).await.expect("the client stopped")
}

/// Checks what the crate promises of every event stream, as it comes: per
/// symbol, each tick's seq is the last one plus one, or a `Gap` right before
/// it names exactly the seqs in between. So every seq is accounted for
/// once: delivered or reported missed.
#[derive(Default)]
pub struct Book {
    pub last: HashMap<String, u64>,
    gap: Option<(String, u64, u64)>,
    pub gaps: Vec<(String, u64, u64)>,
    pub ticks: u64,
    pub snapshots: u64,
}

impl Book {
    pub fn see(&mut self, e: &Event) {
        match e {
            Event::Gap {
                symbol,
                from_seq,
                to_seq,
            } => {
                let last = self.last[symbol];
                assert_eq!(
                    *from_seq,
                    last + 1,
                    "{symbol}: a gap starts after the last tick"
                );
                assert!(to_seq >= from_seq, "{e:?}");
                assert!(self.gap.is_none(), "two gaps in a row: {e:?}");
                self.gap = Some((symbol.clone(), *from_seq, *to_seq));
                self.gaps.push((symbol.clone(), *from_seq, *to_seq));
            }
            Event::Tick(t) => {
                if let Some((sym, _, to)) = self.gap.take() {
                    assert_eq!(
                        (&sym, t.seq),
                        (&t.symbol, to + 1),
                        "a gap ends at the next tick"
                    );
                } else if let Some(&last) = self.last.get(&t.symbol) {
                    assert_eq!(t.seq, last + 1, "{}: seq {} after {last}", t.symbol, t.seq);
                }
                self.last.insert(t.symbol.clone(), t.seq);
                if t.kind == TickKind::Snapshot {
                    self.snapshots += 1;
                } else {
                    self.ticks += 1;
                }
            }
            Event::Reconnected {
                epoch_changed: true,
                ..
            } => {
                // Another run's seqs: counting starts over.
                self.last.clear();
            }
            _ => {}
        }
    }
}
