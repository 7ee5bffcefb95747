//! tickwire: a low-latency market-data WebSocket server.
pub mod dashboard;
pub mod feed;
pub mod tick;
