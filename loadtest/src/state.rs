//! What the connections share, and with whom: with their worker thread
//! ([`WorkerCtx`]: the stats and the read buffer, never across threads) and
//! with the whole run ([`Shared`]: atomics that the controller in
//! [`crate::measure`] sets and reads).
//!
//! [`crate::worker`] builds these and [`crate::client`] uses them; they live
//! below both so the imports run one way: measure → worker → client → state.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};

use crate::account::WorkerStats;
use crate::target::Target;

/// Live figures the progress display and the run controller read. Updated
/// once per read (not per message) with relaxed atomics.
#[derive(Default)]
pub struct Shared {
    /// Whether ticks received now fall in the measurement window.
    pub measuring: AtomicBool,
    /// Text messages received so far, by every connection.
    pub msgs: AtomicU64,
    /// Connections open now (upgraded, not yet ended).
    pub open: AtomicU64,
    /// Connections whose connect or upgrade failed.
    pub connect_failed: AtomicU64,
    /// Connections that opened and have ended since.
    pub ended: AtomicU64,
    /// Connections that ended on an error.
    pub errors: AtomicU64,
    /// Set when an OS limit (file descriptors, local ports) stopped a connect.
    pub os_limit: Mutex<Option<String>>,
}

/// What a worker's connections share: the stats, the read buffer. One per
/// worker thread, behind an `Rc`; `RefCell` because the connections are tasks
/// of one thread and none holds a borrow across an `.await`.
pub struct WorkerCtx {
    /// Everything this worker's connections have counted.
    pub stats: RefCell<WorkerStats>,
    /// The one read buffer all of this worker's connections read into.
    pub buf: RefCell<Vec<u8>>,
    /// Where every connection connects.
    pub target: Target,
    /// The run's live figures.
    pub shared: Arc<Shared>,
}
