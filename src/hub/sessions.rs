//! The registry of open sessions, so that shutdown can close them all and
//! the stats can sum their queues.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::close::DisconnectReason;
use crate::outbox::Outbox;
use crate::sync::{Mutex, MutexGuard};

/// Every open session's outbox.
#[derive(Default)]
pub struct Sessions {
    next_id: AtomicU64,
    open: Mutex<SessionsState>,
}

#[derive(Default)]
struct SessionsState {
    by_id: HashMap<u64, Arc<Outbox>>,
    closed: bool,
}

impl Sessions {
    fn lock(&self) -> MutexGuard<'_, SessionsState> {
        self.open.lock()
    }

    /// Registers a new session; `None` once shutdown has begun.
    pub fn register(&self, outbox: Arc<Outbox>) -> Option<u64> {
        let mut s = self.lock();
        if s.closed {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        s.by_id.insert(id, outbox);
        Some(id)
    }

    pub fn remove(&self, id: u64) {
        self.lock().by_id.remove(&id);
    }

    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Frames and bytes waiting in each open session's outbox.
    pub fn backlogs(&self) -> Vec<(usize, usize)> {
        let outboxes: Vec<_> = self.lock().by_id.values().cloned().collect();
        outboxes.iter().map(|o| o.backlog()).collect()
    }

    /// Frames and bytes waiting in all outboxes together.
    pub fn queued(&self) -> (usize, usize) {
        self.backlogs()
            .into_iter()
            .fold((0, 0), |(m, b), (m1, b1)| (m + m1, b + b1))
    }

    /// Refuses new sessions and closes every open one with 1001.
    pub fn close_all(&self) {
        let outboxes: Vec<_> = {
            let mut s = self.lock();
            s.closed = true;
            s.by_id.values().cloned().collect()
        };
        for o in outboxes {
            o.close(DisconnectReason::Shutdown);
        }
    }
}
