//! tickwire-loadtest: opens many WebSocket connections to a market-data
//! server, subscribes, and measures end-to-end latency, throughput, sequence
//! gaps and connection behaviour. Works against any server that accepts
//! `{"op":"subscribe","symbols":[...]}` and sends JSON objects with `sym`,
//! `seq` and `ts`.

pub mod account;
pub mod client;
pub mod frame;
pub mod measure;
pub mod plot;
pub mod report;
pub mod runner;
pub mod scan;
pub mod scenario;
pub mod server;
pub mod state;
pub mod target;
pub mod worker;
