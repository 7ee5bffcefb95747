//! One symbol's topic: who follows it, and its latest tick.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::history::History;
use crate::feed::Tick;
use crate::outbox::Outbox;
use crate::sync::{Mutex, MutexGuard};

/// What a topic's lock guards: changed by the publisher once per tick and by
/// (un)subscribes, always together with the fan-out or snapshot that must
/// not be separated from it.
/// One follower of a topic: its outbox and its registry slot, side by side
/// so that the fan-out reads the topic's own memory, not each outbox's.
pub(super) struct Subscriber {
    pub slot: u32,
    pub outbox: Arc<Outbox>,
}

pub(super) struct TopicState {
    pub subscribers: Vec<Subscriber>,
    pub latest: Option<Tick>,
    /// The latest ticks' frames, for resume.
    pub history: History,
}

impl TopicState {
    /// The latest seq (0: never traded).
    pub fn latest_seq(&self) -> u64 {
        self.latest.map_or(0, |t| t.seq)
    }
}

/// A symbol's subscribers, latest tick and history, under the topic's own
/// lock (there is no global one).
pub(super) struct Topic {
    state: Mutex<TopicState>,
    /// Subscribers that take binary frames; read without the lock, to know
    /// whether a tick needs its binary form at all.
    binary_subscribers: AtomicUsize,
}

impl Topic {
    pub fn new(history: usize) -> Topic {
        Topic {
            state: Mutex::new(TopicState {
                subscribers: Vec::new(),
                latest: None,
                history: History::new(history),
            }),
            binary_subscribers: AtomicUsize::new(0),
        }
    }

    pub fn has_binary_subscribers(&self) -> bool {
        self.binary_subscribers.load(Ordering::Relaxed) > 0
    }

    /// Counts a binary subscriber in (`+1`) or out (`-1`); call with the
    /// lock held, as the subscriber list changes.
    pub fn count_binary(&self, delta: isize) {
        if delta > 0 {
            self.binary_subscribers.fetch_add(1, Ordering::Relaxed);
        } else {
            self.binary_subscribers.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, TopicState> {
        self.state.lock()
    }
}
