//! The one mutex the server uses: `std::sync::Mutex` without poisoning.
//!
//! Every lock in tickwire guards plain data (queues, subscriber lists,
//! counters) that stays consistent at every await-free step, so a panic on
//! another thread leaves nothing half-done worth refusing; recovering the
//! guard is always right, and call sites need no `unwrap`.

use std::sync::PoisonError;

pub use std::sync::MutexGuard;

#[derive(Debug, Default)]
pub struct Mutex<T>(std::sync::Mutex<T>);

impl<T> Mutex<T> {
    pub const fn new(value: T) -> Mutex<T> {
        Mutex(std::sync::Mutex::new(value))
    }

    /// Locks, ignoring poison (see the module doc).
    #[inline]
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
