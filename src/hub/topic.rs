//! One symbol's topic: who follows it, and its latest tick.

use std::sync::Arc;

use crate::feed::Tick;
use crate::outbox::Outbox;
use crate::sync::{Mutex, MutexGuard};

/// What a topic's lock guards: changed by the publisher once per tick and by
/// (un)subscribes, always together with the fan-out or snapshot that must
/// not be separated from it.
#[derive(Default)]
pub(super) struct TopicState {
    pub subscribers: Vec<Arc<Outbox>>,
    pub latest: Option<Tick>,
}

/// A symbol's subscribers and latest tick, under the topic's own lock (there
/// is no global one).
#[derive(Default)]
pub(super) struct Topic {
    state: Mutex<TopicState>,
}

impl Topic {
    pub fn lock(&self) -> MutexGuard<'_, TopicState> {
        self.state.lock()
    }
}
