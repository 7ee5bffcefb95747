//! tickwire: a low-latency market-data WebSocket server.
//!
//! A tick travels through these components, one module each, in this order:
//!
//! ```text
//!  source ──► hub ───────────► outbox ──────► session writer ──► socket
//!  (local     (Topic per        (bounded queue  one vectored write
//!   generator  symbol: the      per connection: per wake-up, many
//!   or NATS)   tick is encoded  conflate or     frames per syscall)
//!              once here)       disconnect at
//!                               the limit)
//! ```
//!
//! and a connection through these:
//!
//! ```text
//!  listener ──► admission ──► http (route, upgrade) ──► session (reader + writer)
//!  (peer address, (Origin, token, └─► api (plain HTTP endpoints)
//!   TLS)          per-IP limits)  └─► /sse (Server-Sent Events)
//! ```
//!
//! The data path, from the ground up:
//! - [`feed`]: instrument universes (TOML feed files, the embedded demo,
//!   synthetic ones), the price model, the [`feed::Tick`] and the Poisson
//!   generator. Pure, clock-free, deterministic with a seed.
//! - [`tick`]: a tick's wire form, encoded once into complete WebSocket frame
//!   bytes shared by every subscriber ([`wire`]: frame bytes in general).
//! - [`outbox`]: a connection's bounded queue and its slow-consumer policy.
//! - [`hub`]: one topic per symbol (subscribers + latest tick), the fan-out
//!   through a [`hub::Publisher`], and the registry of open sessions.
//! - [`source`]: where ticks come from (the local generator, or a NATS
//!   subscriber in gateway mode, with the feed that publishes to it),
//!   publishing into the hub; throttled views are the hub's too
//!   (`hub::throttle`).
//! - [`session`]: one WebSocket connection: reader (frames, limits), requests
//!   (control messages), writer (batched writes, clocks, close); and its
//!   sibling, a Server-Sent Events stream (`GET /sse`, the same outbox
//!   drained by an HTTP response body).
//! - [`server`]: listener, admission, HTTP routing and upgrade, the reporter,
//!   graceful shutdown; [`api`]: the plain HTTP endpoints; [`state`]: what
//!   every connection shares; [`stream`]: plain TCP or TLS as one kind
//!   of byte stream.
//!
//! Beside it: [`auth`] (tokens and entitlements), [`metrics`] (counters and latency histograms recorded per
//! thread, rolled each second), [`clock`] (wall clock and connection clock),
//! [`close`] (why connections end), [`config`] (every knob),
//! [`shutdown`] (the signal), [`sync`] (the non-poisoning mutex),
//! [`dashboard`] (the browser dashboard's embedded files). The wire protocol
//! itself is the `tickwire-protocol` crate, shared with clients and the
//! load-test harness.
//!
//! Errors: start-up failures are typed ([`server::ServerError`],
//! [`feed::FeedError`]) with messages that say what to change; nothing a
//! client sends can panic the server: bad requests get an `error` reply,
//! protocol violations a close code.

// The module docs are the map of the tree, private modules included (they
// render with `cargo doc --document-private-items`).
#![allow(rustdoc::private_intra_doc_links)]

pub mod api;
pub mod auth;
pub mod clock;
pub mod close;
pub mod config;
pub mod dashboard;
pub mod feed;
pub mod hub;
pub mod metrics;
pub mod outbox;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod source;
pub mod state;
pub mod stream;
pub mod sync;
pub mod tick;
pub mod wire;
