//! Graceful shutdown: one signal that every task can wait on.
//!
//! Triggered by SIGINT/SIGTERM in the binary, or by tests. Sessions answer it
//! by sending close 1001 to their client; the server waits for them to finish.

use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Default)]
pub struct Shutdown(CancellationToken);

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Starts the graceful shutdown of everything holding a clone.
    pub fn trigger(&self) {
        self.0.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Completes once shutdown has been triggered.
    pub async fn triggered(&self) {
        self.0.cancelled().await
    }
}
