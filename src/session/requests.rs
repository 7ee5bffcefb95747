//! A connection's control messages: parsing, the rate limits, and what each
//! request does (subscribe, unsubscribe, symbols, ping).
//!
//! Every answer goes into the outbox in order: an ack before the snapshots
//! it announces, an `error` after what a partly valid request did. Two token
//! buckets bound what a client can make the server do: `--control-rate`
//! requests per second (bursts of twice that) and `--max-errors` error
//! replies per ~10 s before the connection is closed as abusive.

use std::collections::{BTreeMap, HashMap};

use tickwire_protocol::{ErrorCode, Id, Reply, Request, RequestError, Welcome};

use super::{Limits, Session};
use crate::clock;
use crate::close::DisconnectReason;
use crate::feed::SymbolId;
use crate::hub::Start;
use crate::outbox::{FrameKind, Policy};
use crate::wire;

/// A token bucket on the connection clock.
struct Bucket {
    tokens: f64,
    capacity: f64,
    per_ms: f64,
    last_ms: u64,
}

impl Bucket {
    fn new(capacity: f64, per_second: f64) -> Bucket {
        Bucket {
            tokens: capacity,
            capacity,
            per_ms: per_second / 1000.0,
            last_ms: clock::now_ms(),
        }
    }

    fn take(&mut self) -> bool {
        let now = clock::now_ms();
        self.tokens = (self.tokens + (now - self.last_ms) as f64 * self.per_ms).min(self.capacity);
        self.last_ms = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

thread_local! {
    /// simd-json's scratch space, one per thread rather than per connection
    /// (most connections send a message or two in their life).
    static BUFFERS: std::cell::RefCell<simd_json::Buffers> =
        std::cell::RefCell::new(simd_json::Buffers::new(512));
}

/// The reader's request state.
pub struct Requests {
    requests: Bucket,
    errors: Bucket,
    control_rate: u32,
}

impl Requests {
    pub fn new(limits: &Limits) -> Requests {
        Requests {
            requests: Bucket::new(2.0 * limits.control_rate as f64, limits.control_rate as f64),
            errors: Bucket::new(limits.max_errors as f64, limits.max_errors as f64 / 10.0),
            control_rate: limits.control_rate,
        }
    }

    /// Handles one complete text message.
    pub fn on_text(&mut self, session: &Session, text: &mut [u8]) {
        let request = BUFFERS.with_borrow_mut(|buffers| Request::parse(text, buffers));
        if !self.requests.take() {
            // Parsed anyway (a few hundred ns) so the error can name the
            // request it refuses; the error budget bounds such storms.
            let id = match &request {
                Ok(r) => r.id().cloned(),
                Err(e) => e.id.clone(),
            };
            self.reply_error(
                session,
                RequestError::new(
                    id,
                    ErrorCode::RateLimited,
                    format!(
                        "more than {} control messages per second; this one was ignored",
                        self.control_rate
                    ),
                ),
            );
            return;
        }
        let error = match request {
            Ok(Request::Subscribe {
                id,
                symbols,
                from,
                epoch,
                throttle_ms,
            }) => session.subscribe(id, &symbols, from.as_ref(), epoch.as_deref(), throttle_ms),
            Ok(Request::Unsubscribe { id, symbols }) => session.unsubscribe(id, &symbols),
            Ok(Request::Symbols { id }) => {
                session
                    .outbox
                    .push_reply(session.state.symbols_reply(id.as_ref()), FrameKind::Text);
                None
            }
            Ok(Request::Auth { id, token }) => session.reauth(id, &token.0),
            Ok(Request::Ping { id }) => {
                session.reply(&Reply::Pong {
                    id,
                    ts: clock::wall_us(),
                });
                None
            }
            Err(e) => Some(e),
        };
        if let Some(e) = error {
            self.reply_error(session, e);
        }
    }

    /// Sends an error reply; a storm of them closes the connection.
    fn reply_error(&mut self, session: &Session, e: RequestError) {
        session.state.hub.metrics().count_error(e.code);
        if !self.errors.take() {
            session.outbox.close(DisconnectReason::Abuse);
            return;
        }
        session.reply(&Reply::from(e));
    }
}

fn unknown_error(id: Option<Id>, unknown: &[String]) -> RequestError {
    let mut list: Vec<&str> = unknown.iter().take(20).map(String::as_str).collect();
    if unknown.len() > 20 {
        list.push("...");
    }
    RequestError::new(
        id,
        ErrorCode::UnknownSymbol,
        format!(
            "unknown symbols: {}; the op \"symbols\" lists them all",
            list.join(", ")
        ),
    )
}

fn forbidden_error(id: Option<Id>, refused: Vec<String>) -> RequestError {
    let mut list: Vec<&str> = refused.iter().take(20).map(String::as_str).collect();
    if refused.len() > 20 {
        list.push("...");
    }
    let message = format!("not in your token's entitlement: {}", list.join(", "));
    RequestError::new(id, ErrorCode::Forbidden, message).with_symbols(refused)
}

impl Session {
    pub(super) fn reply(&self, reply: &Reply) {
        self.outbox
            .push_reply(wire::reply_frame(reply), FrameKind::Text);
    }

    fn names(&self, ids: &[SymbolId]) -> Vec<String> {
        let universe = self.state.hub.universe();
        ids.iter()
            .map(|&s| universe.get(s).symbol.clone())
            .collect()
    }

    /// The first message of every connection: version, epoch, limits.
    pub(super) fn welcome(&self, policy: Policy) {
        let limits = &self.settings.limits;
        self.reply(&Reply::Welcome(Welcome {
            version: tickwire_protocol::VERSION.to_string(),
            epoch: self.state.hub.epoch().to_string(),
            heartbeat_ms: self.settings.clocks.heartbeat.as_millis() as u64,
            max_symbols: self.max_symbols(),
            control_rate: limits.control_rate,
            max_message: limits.max_message,
            history: self.state.hub.history_depth(),
            policy: match policy {
                Policy::Conflate => "conflate",
                Policy::Disconnect => "disconnect",
            }
            .to_string(),
            format: self.outbox.format().label().to_string(),
        }));
    }

    /// Subscribes to the known names. The ack comes first, then per newly
    /// followed symbol its replay (resuming after `from[sym]` of `epoch`)
    /// or its snapshot. Every named symbol gets the subscribe's throttle
    /// (`throttle_ms`, else the connection's default); for symbols already
    /// followed that changes at once, with no snapshot.
    pub(super) fn subscribe(
        &self,
        id: Option<Id>,
        names: &[String],
        from: Option<&BTreeMap<String, u64>>,
        epoch: Option<&str>,
        throttle_ms: Option<u32>,
    ) -> Option<RequestError> {
        let hub = &self.state.hub;
        let universe = hub.universe();
        let mut resolved = universe.resolve(names);
        // The token's entitlement: `*` means all the holder may have; named
        // symbols outside it are refused (and listed) while the rest go on.
        let grant = self.grant.lock().clone();
        let all = names.iter().any(|n| n == "*");
        let mut refused = Vec::new();
        resolved.known.retain(|&sym| {
            let name = &universe.get(sym).symbol;
            let ok = grant.allows(name);
            if !ok && !all {
                refused.push(name.clone());
            }
            ok
        });
        let max = self.max_symbols();
        let throttle = throttle_ms.unwrap_or(self.default_throttle_ms);
        let (fresh, changed): (Vec<SymbolId>, Vec<SymbolId>) = {
            let mut subs = self.subscriptions();
            let fresh: Vec<SymbolId> = resolved
                .known
                .iter()
                .copied()
                .filter(|s| !subs.contains_key(s))
                .collect();
            if subs.len() + fresh.len() > max {
                return Some(RequestError::new(
                    id,
                    ErrorCode::TooManySymbols,
                    format!(
                        "this would follow {} symbols; a connection may follow at most {max}; nothing was subscribed",
                        subs.len() + fresh.len()
                    ),
                ));
            }
            let mut changed = Vec::new();
            for &sym in &resolved.known {
                if let Some(t) = subs.get_mut(&sym) {
                    if *t != throttle {
                        *t = throttle;
                        changed.push(sym);
                    }
                }
            }
            subs.extend(fresh.iter().map(|&s| (s, throttle)));
            (fresh, changed)
        };
        if !changed.is_empty() {
            hub.set_throttle(&self.outbox, &changed, throttle);
        }
        if !resolved.known.is_empty() {
            // A seq means something only in the epoch it came from.
            let same_epoch = epoch == Some(&*hub.epoch());
            let from_of = |sym: SymbolId| from.and_then(|f| f.get(&universe.get(sym).symbol));
            let starts: Vec<(SymbolId, Start)> = fresh
                .iter()
                .map(|&sym| match from_of(sym) {
                    Some(&seq) if same_epoch => (sym, Start::After(seq)),
                    Some(_) => (sym, Start::OtherEpoch),
                    None => (sym, Start::Snapshot),
                })
                .collect();
            let symbols = self.names(&resolved.known);
            hub.subscribe(&self.outbox, &starts, throttle, |outcome| {
                let recovered = from.map(|_| {
                    let fresh_outcome: BTreeMap<SymbolId, bool> = starts
                        .iter()
                        .zip(outcome)
                        .map(|(&(sym, _), r)| (sym, r.unwrap_or(false)))
                        .collect();
                    resolved
                        .known
                        .iter()
                        .filter(|&&sym| from_of(sym).is_some())
                        .map(|&sym| {
                            // A symbol this connection already follows goes
                            // on uninterrupted: nothing to recover.
                            let ok = fresh_outcome.get(&sym).copied().unwrap_or(true);
                            (universe.get(sym).symbol.clone(), ok)
                        })
                        .collect()
                });
                wire::reply_frame(&Reply::Subscribed {
                    id: id.clone(),
                    symbols,
                    recovered,
                })
            });
        }
        if !refused.is_empty() {
            return Some(forbidden_error(id, refused));
        }
        (!resolved.unknown.is_empty()).then(|| unknown_error(id, &resolved.unknown))
    }

    /// The `auth` op: a fresh token for the same `sub` replaces the
    /// session's; subscriptions it no longer covers are dropped (and
    /// listed in a `forbidden` error).
    pub(super) fn reauth(&self, id: Option<Id>, token: &str) -> Option<RequestError> {
        let Some(auth) = self.state.auth.clone() else {
            return Some(RequestError::new(
                id,
                ErrorCode::Unauthorized,
                "this server does not use tokens",
            ));
        };
        let fresh = match auth.verify(token) {
            Ok(g) => g,
            Err(e) => return Some(RequestError::new(id, ErrorCode::Unauthorized, e.message())),
        };
        let old_sub = self.grant.lock().sub.clone();
        if fresh.sub != old_sub {
            return Some(RequestError::new(
                id,
                ErrorCode::Unauthorized,
                "the new token is for another sub; reconnect to change who you are",
            ));
        }
        let (sub, exp) = (fresh.sub.clone(), fresh.exp);
        let fresh = std::sync::Arc::new(fresh);
        *self.grant.lock() = fresh.clone();
        self.regranted.notify_one();
        let universe = self.state.hub.universe();
        let dropped: Vec<SymbolId> = {
            let mut subs = self.subscriptions();
            let dropped: Vec<SymbolId> = subs
                .keys()
                .copied()
                .filter(|&s| !fresh.allows(&universe.get(s).symbol))
                .collect();
            for s in &dropped {
                subs.remove(s);
            }
            dropped
        };
        self.state.hub.unsubscribe(&self.outbox, &dropped);
        self.reply(&Reply::Authenticated {
            id: id.clone(),
            sub,
            exp,
        });
        (!dropped.is_empty()).then(|| {
            let mut e = forbidden_error(id, self.names(&dropped));
            e.message = format!(
                "the new token does not cover these; unsubscribed: {}",
                e.message
            );
            e
        })
    }

    /// The token expired: say so, then close 4001 (after the error).
    pub(super) fn expired(&self) {
        let e = RequestError::new(
            None,
            ErrorCode::TokenExpired,
            "your token expired; reconnect with a fresh one (or send {\"op\":\"auth\"} before exp)",
        );
        self.state.hub.metrics().count_error(e.code);
        self.reply(&Reply::from(e));
        self.outbox.close(DisconnectReason::TokenExpired);
    }

    /// Unsubscribes; no tick of those symbols follows the ack.
    pub(super) fn unsubscribe(&self, id: Option<Id>, names: &[String]) -> Option<RequestError> {
        let all = names.iter().any(|n| n == "*");
        let (known, unknown) = if all {
            (self.subscriptions().keys().copied().collect(), Vec::new())
        } else {
            let r = self.state.hub.universe().resolve(names);
            (r.known, r.unknown)
        };
        let followed: Vec<SymbolId> = {
            let mut subs = self.subscriptions();
            known
                .iter()
                .copied()
                .filter(|s| subs.remove(s).is_some())
                .collect()
        };
        self.state.hub.unsubscribe(&self.outbox, &followed);
        if !known.is_empty() || all {
            self.reply(&Reply::Unsubscribed {
                id: id.clone(),
                symbols: self.names(&known),
            });
        }
        (!unknown.is_empty()).then(|| unknown_error(id, &unknown))
    }

    /// The symbols this connection follows.
    fn subscriptions(&self) -> crate::sync::MutexGuard<'_, HashMap<SymbolId, u32>> {
        self.subscriptions.lock()
    }
}
