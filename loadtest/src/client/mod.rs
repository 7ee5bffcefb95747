//! One WebSocket client connection, from start to end: TCP connect and HTTP
//! upgrade (`handshake`), subscribe, then read and account every frame
//! (`conn`) until told to stop, then close cleanly. A connection is a task
//! on its worker thread's runtime; its failures are counted, never returned.

mod conn;
mod handshake;

use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::frame;
use crate::state::WorkerCtx;

pub use conn::{wall_ns, BenchConn, READ_BUF};
use conn::{Conn, Step};
use handshake::{classify, connect_ws};

/// How long connect + upgrade may take before it counts as a failure.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long to wait for the server's close frame after sending ours.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

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
    let mut conn = Conn::new(spec.index, first_bytes, !spec.stall);
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

/// An open connection until it ends: sends the subscribe, then reads and
/// accounts until `stop`, then sends a close frame and reads on until the
/// server's close frame (at most [`CLOSE_TIMEOUT`]). A stalled connection
/// never reads after the subscribe.
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
    if let Some(step) = conn.account_first_bytes(ctx) {
        return step;
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
                        conn.start_close();
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
