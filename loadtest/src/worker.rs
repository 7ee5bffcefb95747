//! Worker threads: each runs a single-threaded tokio runtime that owns a share
//! of the connections and one [`WorkerStats`], so the per-message path takes
//! no locks. The progress display gets a copy of the recent-latency histogram
//! through a mutex taken twice a second, not per message.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::sync::{mpsc, watch};

use crate::account::{new_histogram, TsUnit, WorkerStats};
use crate::client::{self, ConnSpec, READ_BUF};
use crate::state::{Shared, WorkerCtx};
use crate::target::Target;

/// The controller's handle on one worker thread.
pub struct Worker {
    /// The connections to open, in ramp order.
    pub jobs: mpsc::UnboundedSender<ConnSpec>,
    /// Latency recorded since the display last emptied it.
    pub recent: Arc<Mutex<Histogram<u64>>>,
    /// The thread; it returns its stats once every connection has ended.
    pub thread: JoinHandle<WorkerStats>,
}

/// Starts a worker thread. It opens each connection as its spec arrives and
/// returns its stats once `stop` is set and every connection has ended.
pub fn spawn(
    id: usize,
    target: Target,
    ts_unit: TsUnit,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) -> std::io::Result<Worker> {
    let (jobs, mut rx) = mpsc::unbounded_channel::<ConnSpec>();
    let recent = Arc::new(Mutex::new(new_histogram()));
    let recent_w = recent.clone();
    let thread = std::thread::Builder::new()
        .name(format!("loadtest-worker-{id}"))
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async move {
                let ctx = Rc::new(WorkerCtx {
                    stats: RefCell::new(WorkerStats::new(ts_unit)),
                    buf: RefCell::new(vec![0; READ_BUF]),
                    target,
                    shared,
                });
                let flusher =
                    tokio::task::spawn_local(flush_recent(ctx.clone(), recent_w, stop.clone()));
                let mut conns = Vec::new();
                while let Some(spec) = rx.recv().await {
                    conns.push(tokio::task::spawn_local(client::run(
                        ctx.clone(),
                        spec,
                        stop.clone(),
                    )));
                }
                for c in conns {
                    let _ = c.await;
                }
                let _ = flusher.await;
                let ctx = Rc::try_unwrap(ctx)
                    .ok()
                    .expect("all connection tasks ended");
                ctx.stats.into_inner()
            })
        })?;
    Ok(Worker {
        jobs,
        recent,
        thread,
    })
}

/// Moves the worker's recent-latency histogram to where the display reads
/// it, every 250 ms until the run stops.
async fn flush_recent(
    ctx: Rc<WorkerCtx>,
    slot: Arc<Mutex<Histogram<u64>>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let mut stats = ctx.stats.borrow_mut();
        if stats.interval.is_empty() {
            continue;
        }
        if let Ok(mut h) = slot.lock() {
            let _ = h.add(&stats.interval);
        }
        stats.interval.reset();
    }
}
