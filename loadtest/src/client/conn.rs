//! The frame-accounting state machine of one connection: what it keeps
//! between reads (a partial frame, a fragmented message, the frames it owes
//! the server) and what it does with each frame (ticks and other text to
//! [`WorkerStats`], pings answered, close echoed).
//!
//! Reads go into the worker's shared buffer (large reads, many frames per
//! read, no per-connection read buffer): a connection keeps only the bytes of
//! a partial frame between reads. Nothing is allocated per message.
//! [`BenchConn`] runs the same path without a socket, for the benchmark.

use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::net::TcpStream;

use crate::account::{SeqTracker, WorkerStats};
use crate::frame::{self, Frame};
use crate::state::WorkerCtx;

/// Size of each worker's shared read buffer.
pub const READ_BUF: usize = 256 * 1024;

/// Wall-clock time in ns since the Unix epoch (what `ts` is compared with).
#[inline]
pub fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A connection's state between reads.
pub(super) struct Conn {
    seqs: SeqTracker,
    /// Bytes of a partial frame left over from the last read.
    leftover: Vec<u8>,
    /// A fragmented text message being reassembled (rare).
    fragments: Vec<u8>,
    /// Frames owed to the server (subscribe, pongs, close); the caller writes
    /// them out and clears this.
    pub(super) out: Vec<u8>,
    sent_close: bool,
    record_latency: bool,
    mask_seed: u32,
}

/// What the last frames or read mean for the connection.
pub(super) enum Step {
    /// Keep reading.
    Continue,
    /// The server closed the TCP connection without a close frame.
    Eof,
    /// The close handshake is done (the server's close frame arrived).
    Closed,
    /// A read error or a malformed frame, with its description.
    Failed(String),
}

impl Conn {
    /// A connection that has just been upgraded. `first_bytes` are what the
    /// upgrade read past the HTTP response; `index` (the connection's place
    /// in the ramp) seeds its masks.
    pub(super) fn new(index: u32, first_bytes: Vec<u8>, record_latency: bool) -> Conn {
        Conn {
            seqs: SeqTracker::default(),
            leftover: first_bytes,
            fragments: Vec::new(),
            out: Vec::new(),
            sent_close: false,
            record_latency,
            mask_seed: index.wrapping_mul(2654435761) | 1,
        }
    }

    fn mask(&mut self) -> [u8; 4] {
        // xorshift: masks only need to vary (RFC 6455 §10.3).
        let mut x = self.mask_seed;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.mask_seed = x;
        x.to_le_bytes()
    }

    /// Queues a masked frame to send (see `out`).
    pub(super) fn queue(&mut self, opcode: u8, payload: &[u8]) {
        let mask = self.mask();
        frame::write_client_frame(&mut self.out, opcode, payload, mask);
    }

    /// Starts the close handshake: queues a 1000 (normal) close frame.
    pub(super) fn start_close(&mut self) {
        self.queue(frame::OP_CLOSE, &1000u16.to_be_bytes());
        self.sent_close = true;
    }

    /// Accounts the frames that arrived with the upgrade response, before
    /// the first read; returns a step when the connection must end.
    pub(super) fn account_first_bytes(&mut self, ctx: &WorkerCtx) -> Option<Step> {
        if self.leftover.is_empty() {
            return None;
        }
        let pending = std::mem::take(&mut self.leftover);
        let mut stats = ctx.stats.borrow_mut();
        let measuring = ctx.shared.measuring.load(Relaxed);
        let now = wall_ns();
        let mut pos = 0;
        while let Ok(Some((f, used))) = frame::parse(&pending[pos..]) {
            pos += used;
            if let Some(step) = self.on_frame(f, used, &mut stats, now, measuring) {
                return Some(step);
            }
        }
        self.leftover.extend_from_slice(&pending[pos..]);
        None
    }

    /// Reads what the socket has and accounts every complete frame.
    pub(super) fn read_and_account(&mut self, stream: &TcpStream, ctx: &WorkerCtx) -> Step {
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
            frame::OP_BINARY => stats.on_binary(
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
    /// A fresh connection that records latency (mask seed 1, as connection 0).
    pub fn new() -> BenchConn {
        BenchConn(Conn::new(0, Vec::new(), true))
    }

    /// Accounts every complete frame of `data` received at `now_ns`, inside
    /// the measurement window; returns the bytes they took.
    pub fn account(&mut self, data: &[u8], stats: &mut WorkerStats, now_ns: u64) -> usize {
        self.0.account(data, stats, now_ns, true).0
    }
}

impl Default for BenchConn {
    fn default() -> Self {
        BenchConn::new()
    }
}
