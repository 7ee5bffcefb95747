//! One WebSocket client connection: TCP connect, HTTP upgrade, subscribe,
//! then read and account every frame until told to stop, then close cleanly.
//!
//! Reads go into the worker's shared buffer (large reads, many frames per
//! read, no per-connection read buffer): a connection keeps only the bytes of
//! a partial frame between reads. Nothing is allocated per message.

use std::io;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::account::{SeqTracker, WorkerStats};
use crate::frame::{self, Frame};
use crate::state::WorkerCtx;
use crate::target::Target;

/// How long connect + upgrade may take before it counts as a failure.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long to wait for the server's close frame after sending ours.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Size of each worker's shared read buffer.
pub const READ_BUF: usize = 256 * 1024;

/// One connection of a run: built by the ramp, sent to a worker thread, run
/// by [`run`].
#[derive(Debug, Clone)]
pub struct ConnSpec {
    /// Its place in the ramp (0, 1, ...); seeds the connection's masks.
    pub index: u32,
    /// JSON text of the subscribe message (empty: send none).
    pub subscribe: Box<[u8]>,
    /// Stops reading after subscribing (slow-consumer scenario).
    pub stall: bool,
}

/// Wall-clock time in ns since the Unix epoch (what `ts` is compared with).
#[inline]
pub fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Explains a connect error, naming the OS limit when one is the cause.
fn classify(e: &io::Error) -> (String, Option<String>) {
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
async fn connect_ws(target: &Target) -> io::Result<(TcpStream, Vec<u8>)> {
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

/// A connection's state between reads.
struct Conn {
    seqs: SeqTracker,
    /// Bytes of a partial frame left over from the last read.
    leftover: Vec<u8>,
    /// A fragmented text message being reassembled (rare).
    fragments: Vec<u8>,
    /// Frames owed to the server (pongs, close echo).
    out: Vec<u8>,
    sent_close: bool,
    record_latency: bool,
    mask_seed: u32,
}

enum Step {
    Continue,
    Eof,
    Closed,
    Failed(String),
}

impl Conn {
    fn mask(&mut self) -> [u8; 4] {
        // xorshift: masks only need to vary (RFC 6455 §10.3).
        let mut x = self.mask_seed;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.mask_seed = x;
        x.to_le_bytes()
    }

    fn queue(&mut self, opcode: u8, payload: &[u8]) {
        let mask = self.mask();
        frame::write_client_frame(&mut self.out, opcode, payload, mask);
    }

    /// Reads what the socket has and accounts every complete frame.
    fn read_and_account(&mut self, stream: &TcpStream, ctx: &WorkerCtx) -> Step {
        let mut buf = ctx.buf.borrow_mut();
        let lo = self.leftover.len();
        if buf.len() < lo + READ_BUF / 2 {
            let want = (lo + READ_BUF / 2).max(READ_BUF);
            buf.resize(want, 0);
        }
        buf[..lo].copy_from_slice(&self.leftover);
        let n = match stream.try_read(&mut buf[lo..]) {
            Ok(0) => return Step::Eof,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Continue,
            Err(e) => return Step::Failed(format!("read: {:?}", e.kind())),
        };
        let now_ns = wall_ns();
        let measuring = ctx.shared.measuring.load(Relaxed);
        let mut stats = ctx.stats.borrow_mut();
        let msgs_before = stats.total.msgs;
        let data = &buf[..lo + n];
        let (pos, step) = self.account(data, &mut stats, now_ns, measuring);
        self.leftover.clear();
        self.leftover.extend_from_slice(&data[pos..]);
        ctx.shared
            .msgs
            .fetch_add(stats.total.msgs - msgs_before, Relaxed);
        step
    }

    /// Accounts every complete frame at the start of `data`; returns how
    /// many bytes they took and whether the connection must end.
    fn account(
        &mut self,
        data: &[u8],
        stats: &mut WorkerStats,
        now_ns: u64,
        measuring: bool,
    ) -> (usize, Step) {
        let mut pos = 0;
        loop {
            match frame::parse(&data[pos..]) {
                Ok(Some((f, used))) => {
                    pos += used;
                    if let Some(s) = self.on_frame(f, used, stats, now_ns, measuring) {
                        return (pos, s);
                    }
                }
                Ok(None) => return (pos, Step::Continue),
                Err(e) => return (pos, Step::Failed(format!("bad frame: {e:?}"))),
            }
        }
    }

    /// Accounts one frame; returns a step when the connection must end.
    #[inline]
    fn on_frame(
        &mut self,
        f: Frame<'_>,
        len: usize,
        stats: &mut WorkerStats,
        now_ns: u64,
        measuring: bool,
    ) -> Option<Step> {
        match f.opcode {
            frame::OP_TEXT if f.fin => stats.on_text(
                &mut self.seqs,
                f.payload,
                len,
                now_ns,
                measuring,
                self.record_latency,
            ),
            frame::OP_TEXT => {
                self.fragments.clear();
                self.fragments.extend_from_slice(f.payload);
            }
            frame::OP_CONT => {
                self.fragments.extend_from_slice(f.payload);
                if f.fin {
                    let msg = std::mem::take(&mut self.fragments);
                    stats.on_text(
                        &mut self.seqs,
                        &msg,
                        msg.len(),
                        now_ns,
                        measuring,
                        self.record_latency,
                    );
                    self.fragments = msg;
                }
            }
            frame::OP_PING => {
                stats.on_control(len, measuring);
                self.queue(frame::OP_PONG, f.payload);
            }
            frame::OP_CLOSE => {
                stats.on_control(len, measuring);
                let code = frame::close_code(f.payload);
                stats.closed(code);
                if !self.sent_close {
                    let echo = if code == 1005 {
                        vec![]
                    } else {
                        code.to_be_bytes().to_vec()
                    };
                    self.queue(frame::OP_CLOSE, &echo);
                    self.sent_close = true;
                }
                return Some(Step::Closed);
            }
            _ => stats.on_control(len, measuring),
        }
        None
    }
}

/// The receive path without a socket, for benchmarks: accounts every frame
/// in `data` as one connection would and returns the bytes consumed.
pub struct BenchConn(Conn);

impl BenchConn {
    pub fn new() -> BenchConn {
        BenchConn(Conn {
            seqs: SeqTracker::default(),
            leftover: Vec::new(),
            fragments: Vec::new(),
            out: Vec::new(),
            sent_close: false,
            record_latency: true,
            mask_seed: 1,
        })
    }

    pub fn account(&mut self, data: &[u8], stats: &mut WorkerStats, now_ns: u64) -> usize {
        self.0.account(data, stats, now_ns, true).0
    }
}

impl Default for BenchConn {
    fn default() -> Self {
        BenchConn::new()
    }
}

/// Runs one connection to the end. Failures are counted, never returned.
pub async fn run(ctx: Rc<WorkerCtx>, spec: ConnSpec, mut stop: watch::Receiver<bool>) {
    let shared = ctx.shared.clone();
    let started = Instant::now();
    let connected = tokio::select! {
        r = tokio::time::timeout(CONNECT_TIMEOUT, connect_ws(&ctx.target)) => r,
        _ = stop.wait_for(|s| *s) => return,
    };
    let (mut stream, first_bytes) = match connected {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let (why, limit) = classify(&e);
            if let Some(limit) = limit {
                shared.os_limit.lock().unwrap().get_or_insert(limit);
            }
            ctx.stats.borrow_mut().connect_failure(why);
            shared.connect_failed.fetch_add(1, Relaxed);
            return;
        }
        Err(_) => {
            ctx.stats.borrow_mut().connect_failure("timed out".into());
            shared.connect_failed.fetch_add(1, Relaxed);
            return;
        }
    };
    ctx.stats
        .borrow_mut()
        .connect
        .saturating_record(started.elapsed().as_nanos() as u64);
    let mut conn = Conn {
        seqs: SeqTracker::default(),
        leftover: first_bytes,
        fragments: Vec::new(),
        out: Vec::new(),
        sent_close: false,
        record_latency: !spec.stall,
        mask_seed: spec.index.wrapping_mul(2654435761) | 1,
    };
    if !spec.subscribe.is_empty() {
        conn.queue(frame::OP_TEXT, &spec.subscribe);
    }
    shared.open.fetch_add(1, Relaxed);
    let outcome = serve(&ctx, &mut conn, &mut stream, &spec, &mut stop).await;
    shared.open.fetch_sub(1, Relaxed);
    shared.ended.fetch_add(1, Relaxed);
    let mut stats = ctx.stats.borrow_mut();
    match outcome {
        Step::Closed | Step::Continue => {}
        Step::Eof => {
            stats.closed(1006);
        }
        Step::Failed(why) => {
            stats.error(&why);
            shared.errors.fetch_add(1, Relaxed);
        }
    }
}

async fn serve(
    ctx: &WorkerCtx,
    conn: &mut Conn,
    stream: &mut TcpStream,
    spec: &ConnSpec,
    stop: &mut watch::Receiver<bool>,
) -> Step {
    if let Err(e) = stream.write_all(&conn.out).await {
        return Step::Failed(format!("write: {:?}", e.kind()));
    }
    conn.out.clear();
    if spec.stall {
        // Never read again; at the end just drop the socket (the server
        // sees a reset, as it would from a vanished client).
        let _ = stop.wait_for(|s| *s).await;
        return Step::Continue;
    }
    // Frames that arrived with the upgrade response.
    if !conn.leftover.is_empty() {
        let pending = std::mem::take(&mut conn.leftover);
        let mut stats = ctx.stats.borrow_mut();
        let measuring = ctx.shared.measuring.load(Relaxed);
        let now = wall_ns();
        let mut pos = 0;
        while let Ok(Some((f, used))) = frame::parse(&pending[pos..]) {
            pos += used;
            if let Some(step) = conn.on_frame(f, used, &mut stats, now, measuring) {
                return step;
            }
        }
        conn.leftover.extend_from_slice(&pending[pos..]);
    }
    let mut close_deadline: Option<tokio::time::Instant> = None;
    loop {
        if !conn.out.is_empty() {
            if let Err(e) = stream.write_all(&conn.out).await {
                return Step::Failed(format!("write: {:?}", e.kind()));
            }
            conn.out.clear();
        }
        match close_deadline {
            None => {
                tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s) => {
                        conn.queue(frame::OP_CLOSE, &1000u16.to_be_bytes());
                        conn.sent_close = true;
                        close_deadline = Some(tokio::time::Instant::now() + CLOSE_TIMEOUT);
                        continue;
                    }
                    r = stream.readable() => if let Err(e) = r {
                        return Step::Failed(format!("read: {:?}", e.kind()));
                    },
                }
            }
            Some(deadline) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => {
                        return Step::Failed("no close frame from server within 10 s".into());
                    }
                    r = stream.readable() => if let Err(e) = r {
                        return Step::Failed(format!("read: {:?}", e.kind()));
                    },
                }
            }
        }
        match conn.read_and_account(stream, ctx) {
            Step::Continue => {}
            Step::Closed => {
                if !conn.out.is_empty() {
                    let _ = stream.write_all(&conn.out).await;
                }
                let _ = stream.shutdown().await;
                return Step::Closed;
            }
            other => return other,
        }
    }
}
