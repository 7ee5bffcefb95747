//! The ceiling: the least a server must do to fan ticks out over WebSocket.
//!
//! The due ticks of one feed pass are encoded once, back to back, into one
//! shared buffer (`EncodedBatch`); each subscriber gets one slice per run of
//! consecutive frames it subscribed to (one iovec and one reference count per
//! run, not per tick), one queue lock and at most one wake-up per connection
//! per pass; each connection's writer sends everything queued with one
//! vectored write per wake-up. One runtime worker by default. No policies, no
//! limits, no metrics, no heartbeats: queues are unbounded. Same universe,
//! rates and Poisson generator as tickwire (`tickwire::feed`).
//!
//! Usage: tickwire-ceiling --listen 127.0.0.1:0 --synthetic 100 --rate 100 [--seed 1] [--threads 1]

use std::io::IoSlice;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use sha1::{Digest, Sha1};
use tickwire::feed::{Generator, Universe};
use tickwire::tick::EncodedBatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Notify;

/// One subscriber: what the feed queued for it, and how to wake its writer.
struct Conn {
    queue: Mutex<Vec<Bytes>>,
    wake: Notify,
    closing: AtomicBool,
}

/// Who wants which symbol. Changed only on subscribe and disconnect.
struct Registry {
    conns: Vec<Option<Arc<Conn>>>,
    by_symbol: Vec<Vec<usize>>,
}

struct Args {
    listen: String,
    symbols: u32,
    rate: f64,
    seed: u64,
    threads: usize,
}

fn args() -> Args {
    let mut a = Args {
        listen: "127.0.0.1:8090".into(),
        symbols: 100,
        rate: 100.0,
        seed: 1,
        threads: 1,
    };
    let v: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i + 1 < v.len() {
        match v[i].as_str() {
            "--listen" => a.listen = v[i + 1].clone(),
            "--synthetic" => a.symbols = v[i + 1].parse().expect("--synthetic N"),
            "--rate" => a.rate = v[i + 1].parse().expect("--rate R"),
            "--seed" => a.seed = v[i + 1].parse().expect("--seed N"),
            "--threads" => a.threads = v[i + 1].parse().expect("--threads N"),
            other => panic!("unknown flag {other}"),
        }
        i += 2;
    }
    a
}

fn main() -> std::io::Result<()> {
    let a = args();
    // 10,000 connections need more than the usual soft limit of 1024.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let universe = Arc::new(Universe::synthetic(a.symbols, a.rate));
    let registry = Arc::new(Mutex::new(Registry {
        conns: Vec::new(),
        by_symbol: vec![Vec::new(); universe.len()],
    }));
    // One worker by default: on 2 shared cores a second runtime thread adds
    // cross-thread wake-ups and contention on the queues (bench/README.md).
    let rt = if a.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(a.threads)
            .enable_all()
            .build()?
    };
    rt.block_on(async move {
        tokio::spawn(feed(universe.clone(), registry.clone(), a.seed));
        let addr: std::net::SocketAddr = a.listen.parse().expect("--listen ADDR");
        let sock = TcpSocket::new_v4()?;
        sock.set_reuseaddr(true)?;
        sock.bind(addr)?;
        let listener = sock.listen(4096)?;
        println!("ceiling listening on http://{}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            let (u, r) = (universe.clone(), registry.clone());
            tokio::spawn(async move {
                let _ = serve(stream, u, r).await;
            });
        }
    })
}

fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A stretch of consecutive frames of one pass's buffer: one iovec.
#[derive(Clone, Copy)]
struct Run {
    chunk: u32,
    start: u32,
    end: u32,
}

/// The feed task: sleeps on the tokio timer until the next tick is due (the
/// same cadence as tickwire's feed, so both publish the same batches),
/// encodes the pass's due ticks back to back into one shared buffer, and
/// hands every subscriber one slice per run of consecutive frames it wants,
/// with one lock and at most one wake-up per connection per pass.
async fn feed(universe: Arc<Universe>, registry: Arc<Mutex<Registry>>, seed: u64) {
    let mut gen = Generator::new(&universe, seed);
    let start = tokio::time::Instant::now();
    let mut batch = EncodedBatch::default();
    let mut staged: Vec<Vec<Run>> = Vec::new();
    let mut touched: Vec<usize> = Vec::new();
    loop {
        let now_ns = start.elapsed().as_nanos() as u64;
        batch.clear();
        gen.advance(now_ns, wall_us(), |t| batch.encode(t, universe.get(t.sym)));
        batch.seal();
        if !batch.is_empty() {
            let reg = registry.lock().unwrap();
            if staged.len() < reg.conns.len() {
                staged.resize_with(reg.conns.len(), Vec::new);
            }
            for i in 0..batch.len() as u32 {
                let f = batch.frame(i);
                for &c in &reg.by_symbol[f.sym as usize] {
                    let runs = &mut staged[c];
                    match runs.last_mut() {
                        Some(r) if r.chunk == f.chunk && r.end == f.start => r.end = f.end,
                        last => {
                            if last.is_none() {
                                touched.push(c);
                            }
                            runs.push(Run {
                                chunk: f.chunk,
                                start: f.start,
                                end: f.end,
                            });
                        }
                    }
                }
            }
            for &c in &touched {
                if let Some(conn) = &reg.conns[c] {
                    let mut q = conn.queue.lock().unwrap();
                    let was_empty = q.is_empty();
                    q.extend(
                        staged[c]
                            .iter()
                            .map(|r| batch.slice(r.chunk, r.start, r.end)),
                    );
                    drop(q);
                    if was_empty {
                        conn.wake.notify_one();
                    }
                }
                staged[c].clear();
            }
            touched.clear();
        }
        let next = gen.next_due();
        if next <= start.elapsed().as_nanos() as u64 {
            // Behind schedule: let the writers run, then catch up.
            tokio::task::yield_now().await;
            continue;
        }
        tokio::time::sleep_until(start + Duration::from_nanos(next)).await;
    }
}

async fn serve(
    mut stream: TcpStream,
    universe: Arc<Universe>,
    registry: Arc<Mutex<Registry>>,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let leftover = upgrade(&mut stream).await?;
    let (mut rd, wr) = stream.into_split();
    let mut buf = leftover;
    let sub = read_client_frame(&mut rd, &mut buf).await?;
    let Some((0x1, payload)) = sub else {
        return Ok(());
    };
    let wanted = parse_symbols(&payload, &universe);
    let conn = Arc::new(Conn {
        queue: Mutex::new(Vec::new()),
        wake: Notify::new(),
        closing: AtomicBool::new(false),
    });
    let slot = {
        let mut reg = registry.lock().unwrap();
        let slot = reg
            .conns
            .iter()
            .position(|c| c.is_none())
            .unwrap_or(reg.conns.len());
        if slot == reg.conns.len() {
            reg.conns.push(None);
        }
        reg.conns[slot] = Some(conn.clone());
        for s in &wanted {
            reg.by_symbol[*s as usize].push(slot);
        }
        slot
    };
    let writer = tokio::spawn(write_loop(wr, conn.clone()));
    // Read until the client closes (or vanishes).
    while let Ok(Some((op, _))) = read_client_frame(&mut rd, &mut buf).await {
        if op == 0x8 {
            break;
        }
    }
    {
        let mut reg = registry.lock().unwrap();
        for s in &wanted {
            reg.by_symbol[*s as usize].retain(|&c| c != slot);
        }
        reg.conns[slot] = None;
    }
    conn.closing.store(true, Ordering::Release);
    conn.wake.notify_one();
    let _ = writer.await;
    Ok(())
}

/// Writes whatever is queued, one vectored write per wake-up (more only
/// when the kernel takes part of it or the batch exceeds IOV_MAX).
async fn write_loop(mut wr: OwnedWriteHalf, conn: Arc<Conn>) {
    let mut batch: Vec<Bytes> = Vec::new();
    loop {
        conn.wake.notified().await;
        std::mem::swap(&mut batch, &mut *conn.queue.lock().unwrap());
        let closing = conn.closing.load(Ordering::Acquire);
        if !batch.is_empty() && write_all_vectored(&mut wr, &batch).await.is_err() {
            return;
        }
        batch.clear();
        if closing {
            let _ = wr.write_all(&[0x88, 2, 0x03, 0xE8]).await;
            let _ = wr.shutdown().await;
            return;
        }
    }
}

async fn write_all_vectored(wr: &mut OwnedWriteHalf, frames: &[Bytes]) -> std::io::Result<()> {
    let (mut i, mut off) = (0usize, 0usize);
    while i < frames.len() {
        let end = (i + 1024).min(frames.len());
        let mut slices: Vec<IoSlice> = Vec::with_capacity(end - i);
        slices.push(IoSlice::new(&frames[i][off..]));
        slices.extend(frames[i + 1..end].iter().map(|b| IoSlice::new(b)));
        let mut n = wr.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 && i < frames.len() {
            let left = frames[i].len() - off;
            if n >= left {
                n -= left;
                i += 1;
                off = 0;
            } else {
                off += n;
                n = 0;
            }
        }
    }
    Ok(())
}

/// Reads the HTTP upgrade request, answers 101, returns any bytes past it.
async fn upgrade(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut req = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        req.extend_from_slice(&chunk[..n]);
        if let Some(e) = memchr::memmem::find(&req, b"\r\n\r\n") {
            break e;
        }
    };
    let head = String::from_utf8_lossy(&req[..end]);
    let key = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("sec-websocket-key")
                .then(|| v.trim().to_string())
        })
        .ok_or(std::io::ErrorKind::InvalidData)?;
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let accept = base64::engine::general_purpose::STANDARD.encode(sha.finalize());
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    stream.write_all(resp.as_bytes()).await?;
    Ok(req[end + 4..].to_vec())
}

/// Reads one (masked) client frame: opcode and unmasked payload.
async fn read_client_frame(
    rd: &mut OwnedReadHalf,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    loop {
        if buf.len() >= 2 {
            let op = buf[0] & 0x0f;
            let masked = buf[1] & 0x80 != 0;
            let (len, mut at) = match buf[1] & 0x7f {
                126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                127 if buf.len() >= 10 => (
                    u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                126 | 127 => (usize::MAX, 0),
                n => (n as usize, 2),
            };
            if len != usize::MAX {
                let mask_len = if masked { 4 } else { 0 };
                if buf.len() >= at + mask_len + len {
                    let mask: [u8; 4] = if masked {
                        buf[at..at + 4].try_into().unwrap()
                    } else {
                        [0; 4]
                    };
                    at += mask_len;
                    let payload: Vec<u8> = buf[at..at + len]
                        .iter()
                        .enumerate()
                        .map(|(i, b)| b ^ mask[i & 3])
                        .collect();
                    buf.drain(..at + len);
                    return Ok(Some((op, payload)));
                }
            }
        }
        let mut chunk = [0u8; 4096];
        let n = rd.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Symbol ids named in `{"op":"subscribe","symbols":[...]}`; `*` is all.
fn parse_symbols(json: &[u8], universe: &Universe) -> Vec<u32> {
    let text = String::from_utf8_lossy(json);
    let Some(list) = text
        .split_once("\"symbols\"")
        .and_then(|(_, r)| r.split_once('['))
        .and_then(|(_, r)| r.split_once(']'))
        .map(|(l, _)| l.to_string())
    else {
        return Vec::new();
    };
    let mut ids = Vec::new();
    for name in list.split(',').map(|s| s.trim().trim_matches('"')) {
        if name == "*" {
            return (0..universe.len() as u32).collect();
        }
        if let Some(id) = universe.id_of(name) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    ids
}
