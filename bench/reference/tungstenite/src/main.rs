//! A naive tokio-tungstenite server, the way tutorials build one: one tokio
//! `broadcast` channel per symbol; each connection subscribes to the channels
//! it wants, one forwarding task per symbol pushes into the connection's
//! writer, and the writer sends each message with `SinkExt::send` (a write
//! and a flush per message). A lagging receiver skips what it missed (tokio
//! broadcast's `Lagged`). Ticks are encoded once per tick as JSON text, with
//! the same universe, rates and Poisson generator as tickwire.
//!
//! Usage: tickwire-ref-tungstenite --listen 127.0.0.1:0 --synthetic 100 --rate 100 [--seed 1]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use tickwire::feed::{Generator, Universe};
use tickwire::tick::{write_json, TickKind};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Per-symbol channel capacity: how far a receiver may fall behind.
const CHANNEL_CAPACITY: usize = 1024;

fn main() -> std::io::Result<()> {
    let v: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: &str| -> String {
        v.iter()
            .position(|a| a == name)
            .and_then(|i| v.get(i + 1).cloned())
            .unwrap_or_else(|| default.to_string())
    };
    let listen = flag("--listen", "127.0.0.1:8091");
    let symbols: u32 = flag("--synthetic", "100").parse().expect("--synthetic N");
    let rate: f64 = flag("--rate", "100").parse().expect("--rate R");
    let seed: u64 = flag("--seed", "1").parse().expect("--seed N");
    let _ = rlimit::increase_nofile_limit(u64::MAX);

    let universe = Arc::new(Universe::synthetic(symbols, rate));
    let channels: Arc<Vec<broadcast::Sender<Utf8Bytes>>> = Arc::new(
        (0..symbols)
            .map(|_| broadcast::channel(CHANNEL_CAPACITY).0)
            .collect(),
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        tokio::spawn(feed(universe.clone(), channels.clone(), seed));
        let listener = TcpListener::bind(&listen).await?;
        println!(
            "tungstenite-ref listening on http://{}",
            listener.local_addr()?
        );
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(serve(stream, universe.clone(), channels.clone()));
        }
    })
}

fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Sleeps until the next tick is due (tokio timer), then publishes every due
/// tick on its symbol's channel.
async fn feed(
    universe: Arc<Universe>,
    channels: Arc<Vec<broadcast::Sender<Utf8Bytes>>>,
    seed: u64,
) {
    let mut gen = Generator::new(&universe, seed);
    let start = Instant::now();
    let mut json = Vec::with_capacity(256);
    loop {
        let due = start + Duration::from_nanos(gen.next_due());
        tokio::time::sleep_until(due.into()).await;
        let now = start.elapsed().as_nanos() as u64;
        gen.advance(now, wall_us(), |t| {
            json.clear();
            write_json(&mut json, t, universe.get(t.sym), TickKind::Tick);
            let text = String::from_utf8(json.clone()).expect("JSON is UTF-8");
            let _ = channels[t.sym as usize].send(Utf8Bytes::from(text));
        });
    }
}

async fn serve(
    stream: TcpStream,
    universe: Arc<Universe>,
    channels: Arc<Vec<broadcast::Sender<Utf8Bytes>>>,
) {
    let _ = stream.set_nodelay(true);
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if sink.send(msg).await.is_err() {
                break;
            }
        }
        // After the peer's Close, tungstenite has queued the reply: flush it.
        let _ = sink.close().await;
    });
    let mut forwarders = Vec::new();
    while let Some(Ok(msg)) = source.next().await {
        match msg {
            Message::Text(text) => {
                for id in subscribed(&text, &universe) {
                    let mut sub = channels[id as usize].subscribe();
                    let tx = tx.clone();
                    forwarders.push(tokio::spawn(async move {
                        loop {
                            match sub.recv().await {
                                Ok(text) => {
                                    if tx.send(Message::Text(text)).is_err() {
                                        return;
                                    }
                                }
                                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                                Err(broadcast::error::RecvError::Closed) => return,
                            }
                        }
                    }));
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    for f in &forwarders {
        f.abort();
    }
    drop(tx);
    let _ = writer.await;
}

/// Symbol ids named by `{"op":"subscribe","symbols":[...]}`; `*` is all.
fn subscribed(text: &str, universe: &Universe) -> Vec<u32> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return Vec::new();
    };
    let names = v["symbols"].as_array().cloned().unwrap_or_default();
    if names.iter().any(|n| n == "*") {
        return (0..universe.len() as u32).collect();
    }
    names
        .iter()
        .filter_map(|n| universe.id_of(n.as_str()?))
        .collect()
}
