//! The reporter task: rolls the metrics every second (and with them the
//! `/api/stats` body and admission's per-address table) and logs a summary
//! line every `--summary` seconds.

use std::sync::Arc;
use std::time::Duration;

use super::admission::Admission;
use crate::shutdown::Shutdown;
use crate::state::AppState;

pub async fn run(state: Arc<AppState>, admission: Admission, shutdown: Shutdown) {
    let metrics = state.hub.metrics().clone();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let every = state.config.summary.as_secs().max(1);
    let mut n = 0u64;
    loop {
        tick.tick().await;
        if shutdown.is_triggered() {
            return;
        }
        metrics.roll();
        state.refresh_stats();
        admission.sweep();
        n += 1;
        if n.is_multiple_of(every) {
            let s = metrics.stats(state.hub.universe().len(), state.sessions.queued());
            tracing::info!(
                "{:.0} ticks/s, {:.0} msgs/s ({:.1} per write), {} connections, latency p50 {:.0} µs p99 {:.0} µs, conflated {}",
                s.rates.ticks_per_s,
                s.rates.msgs_per_s,
                s.rates.msgs_per_write,
                s.connections,
                s.latency_us.window_10s.p50,
                s.latency_us.window_10s.p99,
                s.totals.conflated,
            );
        }
    }
}
