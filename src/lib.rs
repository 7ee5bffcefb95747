//! tickwire: a low-latency market-data WebSocket server.
//!
//! A tick travels through these components, one module each:
//!
//! ```text
//!  feed ──► hub ──────────► outbox ──────► session (writer) ──► socket
//!  (Generator) (Topic per   (bounded queue   one vectored write
//!   Poisson +   symbol: the  per connection:  per wake-up, many
//!   GBM prices) tick is      conflate or      frames per syscall)
//!               encoded once disconnect at
//!               here)        the limit)
//! ```
//!
//! - [`feed`]: instrument universes (TOML feed files, the embedded demo,
//!   synthetic ones), the price model and the Poisson tick generator. Pure,
//!   clock-free, deterministic with a seed.
//! - [`tick`]: the [`tick::Tick`] and its wire form: complete WebSocket frame
//!   bytes, encoded once per tick and shared by every subscriber.
//! - [`hub`]: one topic per symbol (subscribers + latest tick), the fan-out,
//!   the feed task, and the registry of open sessions.
//! - [`outbox`]: a connection's bounded queue and its slow-consumer policy.
//! - [`session`]: one WebSocket connection: a reader task (control messages,
//!   limits) and a writer task (batched writes, heartbeats, pings, idle
//!   timeout, close).
//! - [`protocol`]: the client requests and server replies of protocol v1
//!   (docs/PROTOCOL.md).
//! - [`server`]: the listener, HTTP routing and upgrade, connection limit,
//!   graceful shutdown; [`api`]: the plain HTTP endpoints.
//! - [`metrics`]: counters and latency histograms, recorded per thread and
//!   rolled each second; [`config`]: every knob; [`shutdown`]: the signal.
//! - [`dashboard`]: the browser dashboard's embedded files.

pub mod api;
pub mod config;
pub mod dashboard;
pub mod feed;
pub mod hub;
pub mod metrics;
pub mod outbox;
pub mod protocol;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod tick;
