//! The registry of open sessions, so that shutdown can close them all and
//! the stats can sum their queues. Each session holds a slot, a small dense
//! number reused after it ends: the publisher stages its share of a batch
//! by slot.

use std::sync::Arc;

use crate::close::DisconnectReason;
use crate::outbox::Outbox;
use crate::sync::{Mutex, MutexGuard};

/// Every open session's outbox.
#[derive(Default)]
pub struct Sessions {
    open: Mutex<SessionsState>,
}

#[derive(Default)]
struct SessionsState {
    /// By slot; `None` for free slots.
    slots: Vec<Option<Arc<Outbox>>>,
    free: Vec<u32>,
    open: usize,
    closed: bool,
}

impl SessionsState {
    fn outboxes(&self) -> Vec<Arc<Outbox>> {
        self.slots.iter().flatten().cloned().collect()
    }
}

impl Sessions {
    fn lock(&self) -> MutexGuard<'_, SessionsState> {
        self.open.lock()
    }

    /// Registers a new session and gives its outbox a slot (returned);
    /// `None` once shutdown has begun.
    pub fn register(&self, outbox: Arc<Outbox>) -> Option<u32> {
        let mut s = self.lock();
        if s.closed {
            return None;
        }
        let slot = match s.free.pop() {
            Some(slot) => slot,
            None => {
                s.slots.push(None);
                (s.slots.len() - 1) as u32
            }
        };
        outbox.set_slot(slot);
        s.slots[slot as usize] = Some(outbox);
        s.open += 1;
        Some(slot)
    }

    /// Ends a session's registration; its slot can be reused.
    pub fn remove(&self, slot: u32) {
        let mut s = self.lock();
        if s.slots[slot as usize].take().is_some() {
            s.free.push(slot);
            s.open -= 1;
        }
    }

    pub fn len(&self) -> usize {
        self.lock().open
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Frames and bytes waiting in each open session's outbox.
    pub fn backlogs(&self) -> Vec<(usize, usize)> {
        let outboxes = self.lock().outboxes();
        outboxes.iter().map(|o| o.backlog()).collect()
    }

    /// Frames and bytes waiting in all outboxes together.
    pub fn queued(&self) -> (usize, usize) {
        self.backlogs()
            .into_iter()
            .fold((0, 0), |(m, b), (m1, b1)| (m + m1, b + b1))
    }

    /// Queues `frame` (a reply, e.g. the shutdown notice) to every open
    /// session, behind what each has queued.
    pub fn notify_all(&self, frame: &bytes::Bytes) {
        let outboxes = self.lock().outboxes();
        for o in outboxes {
            o.push_reply(frame.clone(), crate::outbox::FrameKind::Text);
        }
    }

    /// Refuses new sessions and closes every open one with 1001.
    pub fn close_all(&self) {
        let outboxes: Vec<_> = {
            let mut s = self.lock();
            s.closed = true;
            s.outboxes()
        };
        for o in outboxes {
            o.close(DisconnectReason::Shutdown);
        }
    }
}
