//! One symbol's topic: who follows it (every tick, or through a throttled
//! view), and its latest tick.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::history::History;
use super::throttle::View;
use crate::feed::Tick;
use crate::outbox::Outbox;
use crate::sync::{Mutex, MutexGuard};
use crate::tick::Format;

/// What a topic's lock guards: changed by the publisher once per tick and by
/// (un)subscribes, always together with the fan-out or snapshot that must
/// not be separated from it.
/// One follower of a topic: its outbox and its registry slot, side by side
/// so that the fan-out reads the topic's own memory, not each outbox's.
pub(super) struct Subscriber {
    pub slot: u32,
    /// The outbox's format (fixed for its life), read per tick.
    pub format: Format,
    pub outbox: Arc<Outbox>,
}

pub(super) struct TopicState {
    pub subscribers: Vec<Subscriber>,
    /// Throttled subscriptions, apart: the unthrottled fan-out never looks
    /// at them.
    pub throttled: Vec<Arc<View>>,
    pub latest: Option<Tick>,
    /// The hub's publish counter of `latest` (0: never traded).
    pub latest_published: u64,
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
    /// Likewise for SSE streams (their ticks are encoded as SSE events).
    sse_subscribers: AtomicUsize,
}

impl Topic {
    pub fn new(history: usize) -> Topic {
        Topic {
            state: Mutex::new(TopicState {
                subscribers: Vec::new(),
                throttled: Vec::new(),
                latest: None,
                latest_published: 0,
                history: History::new(history),
            }),
            binary_subscribers: AtomicUsize::new(0),
            sse_subscribers: AtomicUsize::new(0),
        }
    }

    pub fn has_binary_subscribers(&self) -> bool {
        self.binary_subscribers.load(Ordering::Relaxed) > 0
    }

    pub fn has_sse_subscribers(&self) -> bool {
        self.sse_subscribers.load(Ordering::Relaxed) > 0
    }

    /// Counts a subscriber of `format` in (`+1`) or out (`-1`); call with
    /// the lock held, as the subscriber lists change.
    pub fn count_format(&self, format: Format, delta: isize) {
        let counter = match format {
            Format::Json => return,
            Format::Binary => &self.binary_subscribers,
            Format::Sse => &self.sse_subscribers,
        };
        if delta > 0 {
            counter.fetch_add(1, Ordering::Relaxed);
        } else {
            counter.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, TopicState> {
        self.state.lock()
    }
}
