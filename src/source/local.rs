//! The local source: the feed's [`Generator`] driven by the real clock.
//!
//! It sleeps on the tokio timer until the next tick is due, publishes every
//! tick due by now as one batch (stamped with one wall-clock time), and when
//! it falls behind it yields to the writers before catching up, so a burst
//! never starves delivery.

use std::time::Duration;

use crate::clock;
use crate::feed::{Generator, Tick};
use crate::hub::Publisher;
use crate::shutdown::Shutdown;

/// Where the generator's ticks go: the hub (the single process) or the
/// broker (`tickwire feed`). Ticks one by one, then one call per batch of
/// ticks that were due together.
pub trait Sink {
    fn publish(&mut self, tick: &Tick);
    fn finish_batch(&mut self);
}

impl Sink for Publisher {
    #[inline]
    fn publish(&mut self, tick: &Tick) {
        Publisher::publish(self, tick)
    }

    #[inline]
    fn finish_batch(&mut self) {
        Publisher::finish_batch(self)
    }
}

/// Drives `generator` on the clock and publishes its ticks until shutdown.
pub async fn run(mut generator: Generator, mut publisher: impl Sink, shutdown: Shutdown) {
    let start = tokio::time::Instant::now();
    loop {
        let now_ns = start.elapsed().as_nanos() as u64;
        generator.advance(now_ns, clock::wall_us(), |tick| publisher.publish(tick));
        publisher.finish_batch();
        let next = generator.next_due();
        if next <= start.elapsed().as_nanos() as u64 {
            // Behind schedule: let the writers run, then catch up.
            tokio::task::yield_now().await;
            if shutdown.is_triggered() {
                return;
            }
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(start + Duration::from_nanos(next)) => {}
            _ = shutdown.triggered() => return,
        }
    }
}
