//! tickwire-loadtest: opens many WebSocket connections to a market-data
//! server, subscribes, and measures end-to-end latency, throughput, sequence
//! gaps and connection behaviour. Works against any server that accepts
//! `{"op":"subscribe","symbols":[...]}` and sends JSON objects with `sym`,
//! `seq` and `ts`.
//!
//! A load test runs down these components, one module each. The counts come
//! back up: one [`account::WorkerStats`] per worker thread, merged into a
//! [`report::RunReport`] per run, gathered into a [`report::ScenarioReport`].
//!
//! ```text
//!  main ──► runner ────► measure ─────► worker ─────► client ─────► frame
//!  (CLI)    (scenario:   (one run:      (thread: one  (connection:  scan
//!           its runs,    ramp, settle,  runtime, a    connect,      account
//!           a server     warm up,       share of the  upgrade,      (split
//!           per run)     measure,       connections)  subscribe,    frames,
//!                        close all)                   read, close)  read sym,
//!                                                                   seq, ts;
//!                                                                   count)
//! ```
//!
//! - [`runner`]: a whole scenario: one run, a baseline and a stalled run, or
//!   steps at rising rates, each against a freshly started server if asked;
//!   [`scenario`]: the scenario files (the four standard ones built in).
//! - [`measure`]: one measured run, one function per phase, on the calling
//!   thread; it hands each connection's [`client::ConnSpec`] to a worker.
//! - [`worker`]: a worker thread: a single-threaded runtime, its share of the
//!   connections and one `WorkerStats`, so the per-message path takes no lock.
//! - [`client`]: one connection's life (`client/mod.rs`): TCP connect, HTTP
//!   upgrade and OS-limit advice (`client/handshake.rs`), the frame-accounting
//!   state machine and the benchmark's `BenchConn` (`client/conn.rs`).
//! - [`frame`]: WebSocket frames, split without copying; the scan of `sym`,
//!   `seq` and `ts` out of a JSON text is the protocol crate's
//!   (`tickwire_protocol::tick::scan`); [`account`]: `WorkerStats`, what a
//!   worker's connections counted (messages, gaps, latency, closes).
//! - [`state`]: what connections share, per worker ([`state::WorkerCtx`]) and
//!   per run ([`state::Shared`]); [`target`]: the `ws://` URL they dial.
//! - Beside the flow: [`report`]: the table, JSON and .hgrm of the results;
//!   [`plot`]: the latency-by-percentile chart; [`server`]: the server under
//!   test as a process (start it, sample its CPU and RSS, stop it);
//!   [`host`]: the machine around it (the hypervisor's steal per window).
//!
//! The harness speaks the protocol through `tickwire-protocol` (the subscribe
//! request, the tick scan), the one definition of the wire format, but does
//! not depend on the `tickwire` server crate (only as a dev-dependency, for
//! the integration test and the benchmark), so it can measure any server;
//! that is why `wall_ns`, the percentiles and the 1 ns–60 s histogram exist
//! in both crates.

pub mod account;
pub mod client;
pub mod frame;
pub mod host;
pub mod measure;
pub mod plot;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod server;
pub mod state;
pub mod target;
pub mod worker;
