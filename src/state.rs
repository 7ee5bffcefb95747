//! What every connection shares: the hub, the session registry, the
//! configuration and what is derived from it once at start.
//!
//! The WebSocket sessions and the plain HTTP endpoints both read it; neither
//! imports the other.

use std::sync::Arc;

use bytes::Bytes;
use tickwire_protocol::Id;

use crate::config::Config;
use crate::hub::{Hub, Sessions};
use crate::session;
use crate::wire::text_frame;

pub struct AppState {
    pub hub: Arc<Hub>,
    pub sessions: Sessions,
    pub config: Config,
    /// The knobs every session obeys.
    pub session: session::Settings,
    /// JSON array of every instrument's static data, built once (the
    /// universe never changes).
    pub symbols_json: Vec<u8>,
    /// The `/api/stats` body, rebuilt once per metrics roll
    /// ([`AppState::refresh_stats`]) so requests cost no computation.
    stats: crate::sync::Mutex<Bytes>,
    /// The token verifier when auth is on (the `auth` op needs it too).
    pub auth: Option<Arc<crate::auth::Auth>>,
}

impl AppState {
    pub fn new(hub: Arc<Hub>, config: Config) -> AppState {
        let symbols_json =
            simd_json::to_vec(&hub.universe().symbol_infos()).expect("symbols serialize");
        AppState {
            session: session::Settings::from_config(&config),
            hub,
            sessions: Sessions::default(),
            config,
            symbols_json,
            stats: crate::sync::Mutex::new(Bytes::new()),
            auth: None,
        }
    }

    /// Rebuilds the `/api/stats` body from the metrics as they are now.
    pub fn refresh_stats(&self) {
        let stats = self
            .hub
            .metrics()
            .stats(self.hub.universe().len(), self.sessions.queued());
        let body = Bytes::from(simd_json::to_vec(&stats).expect("stats serialize"));
        *self.stats.lock() = body;
    }

    /// The `/api/stats` body as of the last roll.
    pub fn stats_body(&self) -> Bytes {
        let body = self.stats.lock().clone();
        if body.is_empty() {
            // Before the first roll.
            self.refresh_stats();
            return self.stats.lock().clone();
        }
        body
    }

    /// `{"type":"symbols","id":..,"symbols":[...]}` around the prebuilt
    /// array (the same JSON as [`tickwire_protocol::Reply::Symbols`]).
    pub fn symbols_reply(&self, id: Option<&Id>) -> Bytes {
        let mut json = b"{\"type\":\"symbols\"".to_vec();
        if let Some(id) = id {
            json.extend_from_slice(b",\"id\":");
            json.extend_from_slice(&simd_json::to_vec(id).expect("ids serialize"));
        }
        json.extend_from_slice(b",\"symbols\":");
        json.extend_from_slice(&self.symbols_json);
        json.push(b'}');
        text_frame(&json)
    }
}
