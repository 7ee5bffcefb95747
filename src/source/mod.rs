//! Where ticks come from: the seam between "what happened in the market" and
//! the hub that fans it out.
//!
//! A source runs as one task and is the hub's only publisher, through a
//! [`Publisher`] (ticks, then one wake-up of the
//! writers per batch). Two kinds:
//!
//! - [`local`]: the in-process generator, driven by the clock (the default:
//!   `cargo run --release` needs nothing else).
//! - [`nats`]: a gateway's ticks, from a `tickwire feed` over NATS (and the
//!   feed itself, which drives the same generator into the broker).
//!
//! Both feed the same `Publisher`, so the hub, outboxes and sessions do not
//! know which kind they serve.

pub mod local;
pub mod nats;

use std::sync::Arc;

use crate::feed::Generator;
use crate::hub::{Hub, Publisher};
use crate::shutdown::Shutdown;

/// A source of ticks, chosen at start.
pub enum Source {
    /// The in-process generator.
    Local(Generator),
    /// A feed, over NATS (a gateway).
    Nats(nats::gateway::Gateway),
}

impl Source {
    /// Publishes into `hub` until shutdown.
    pub async fn run(self, hub: Arc<Hub>, shutdown: Shutdown) {
        match self {
            Source::Local(generator) => local::run(generator, Publisher::new(hub), shutdown).await,
            Source::Nats(gateway) => {
                nats::gateway::run(gateway, Publisher::new(hub), shutdown).await
            }
        }
    }
}
