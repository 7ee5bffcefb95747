//! Admission: every decision about who may connect, made in one place.
//!
//! Three gates, each a method here that the transports call:
//!
//! - [`Admission::admit_socket`] at accept, before a byte is read: at most
//!   `--max-pending` connections that are not sessions yet (plain HTTP,
//!   handshakes in progress), at most `--max-pending-per-ip` of them from
//!   one address. They are counted apart from `--max-connections`, so a
//!   flood of idle sockets cannot take a WebSocket client's room, and the
//!   file descriptors the process needs are bounded by the sum.
//! - [`Admission::check_request`] for every HTTP request: the shutdown
//!   notice (503), the per-address request rate (429), and the token on the
//!   endpoints that need one (401).
//! - [`Admission::admit`] for a stream (the `/ws` upgrade; `/sse` calls the
//!   same): the request checks, then the Origin (403), the per-address
//!   handshake rate and connection cap (429), the server's cap (503).
//!
//! Every refusal is an HTTP status with a JSON error (and a `Retry-After`
//! where waiting helps) and one count of
//! `tickwire_rejected_connections_total{reason}`.
//!
//! The client address is the peer's, or, when the peer is one of
//! `--trusted-proxies`, the one its `Forwarded` / `X-Forwarded-For` header
//! names. IPv6 clients are counted by /64 (one host usually owns one).
//! Memory: one small entry per address with open connections or a bucket
//! still refilling, at most [`MAX_TRACKED`] (beyond: refused as `per_ip`);
//! entries are swept every second by the reporter.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use hyper::header::{HeaderValue, HOST, ORIGIN, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Request, Response, StatusCode};
use ipnet::IpNet;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::api::{self, Body};
use crate::auth::{Auth, Grant};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::sync::Mutex;

/// Most client addresses tracked at once (about 100 bytes each).
pub const MAX_TRACKED: usize = 65_536;

/// Why a connection or request was refused: the `reason` label of
/// `tickwire_rejected_connections_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// `--max-connections` sessions are open (503).
    ConnectionLimit,
    /// `--max-pending` connections are waiting to become sessions (closed
    /// at accept).
    PendingLimit,
    /// `--max-pending-per-ip` from this address (closed at accept).
    PendingPerIp,
    /// `--max-connections-per-ip` streams from this address (429).
    PerIp,
    /// `--handshake-rate` exceeded by this address (429).
    HandshakeRate,
    /// `--request-rate` exceeded by this address (429).
    RequestRate,
    /// An Origin that is not trusted (403).
    Origin,
    /// A missing, invalid or expired token (401).
    Auth,
    /// No complete request head within `--handshake-timeout` (dropped).
    HandshakeTimeout,
    /// A request head over `--max-header-bytes` (431).
    HeaderTooLarge,
    /// During the shutdown notice (503).
    ShuttingDown,
    /// A TLS handshake that failed (dropped).
    Tls,
}

impl RejectReason {
    pub const ALL: [RejectReason; 12] = [
        RejectReason::ConnectionLimit,
        RejectReason::PendingLimit,
        RejectReason::PendingPerIp,
        RejectReason::PerIp,
        RejectReason::HandshakeRate,
        RejectReason::RequestRate,
        RejectReason::Origin,
        RejectReason::Auth,
        RejectReason::HandshakeTimeout,
        RejectReason::HeaderTooLarge,
        RejectReason::ShuttingDown,
        RejectReason::Tls,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RejectReason::ConnectionLimit => "connection_limit",
            RejectReason::PendingLimit => "pending_limit",
            RejectReason::PendingPerIp => "pending_per_ip",
            RejectReason::PerIp => "per_ip",
            RejectReason::HandshakeRate => "handshake_rate",
            RejectReason::RequestRate => "request_rate",
            RejectReason::Origin => "origin",
            RejectReason::Auth => "auth",
            RejectReason::HandshakeTimeout => "handshake_timeout",
            RejectReason::HeaderTooLarge => "header_too_large",
            RejectReason::ShuttingDown => "shutting_down",
            RejectReason::Tls => "tls",
        }
    }
}

/// Why a request was refused: the HTTP answer.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub reason: RejectReason,
    pub message: &'static str,
    /// Seconds worth waiting before a retry (`Retry-After`).
    pub retry_after: Option<u32>,
}

impl Refusal {
    /// `{"error":"...","reason":"..."}` with the status and headers.
    pub fn response(&self) -> Response<Body> {
        let mut r = api::error_with_reason(self.status, self.message, self.reason.label());
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(s.max(1)));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

/// A token bucket: `rate` per second, bursts of twice that.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: u32, now: Instant) -> Bucket {
        Bucket {
            tokens: 2.0 * rate as f64,
            at: now,
        }
    }

    fn refill(&mut self, rate: u32, now: Instant) {
        let cap = 2.0 * rate as f64;
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * rate as f64).min(cap);
        self.at = now;
    }

    /// Takes a token; `rate` 0 means unlimited.
    fn take(&mut self, rate: u32, now: Instant) -> bool {
        if rate == 0 {
            return true;
        }
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn is_full(&mut self, rate: u32, now: Instant) -> bool {
        self.refill(rate, now);
        rate == 0 || self.tokens >= 2.0 * rate as f64
    }
}

/// What is known of one client address.
struct PerIp {
    pending: usize,
    streams: usize,
    handshakes: Bucket,
    requests: Bucket,
}

/// The limits, from the configuration.
#[derive(Debug, Clone, Copy)]
struct Limits {
    pending_per_ip: usize,
    streams_per_ip: usize,
    handshake_rate: u32,
    request_rate: u32,
}

/// One trusted origin (`--allowed-origins`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum OriginRule {
    Any,
    /// `scheme://host[:port]`, the host either exact or `*.suffix`.
    Site {
        scheme: String,
        host: HostRule,
        port: Option<u16>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostRule {
    Exact(String),
    /// `*.b.example`: any subdomain of `b.example` (held as `.b.example`).
    Subdomains(String),
}

/// An origin split into what rules compare: scheme, host, port (the
/// scheme's default when absent).
#[derive(Debug, PartialEq, Eq)]
struct Site {
    scheme: String,
    host: String,
    port: u16,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// Splits `scheme://host[:port]` (no path); `None` for anything else,
/// including the opaque origin `null`.
fn parse_site(origin: &str) -> Option<Site> {
    let (scheme, rest) = origin.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return None;
    }
    let (host, port) = split_host_port(rest)?;
    let port = match port {
        Some(p) => p,
        None => default_port(&scheme)?,
    };
    Some(Site { scheme, host, port })
}

/// `host[:port]` or `[v6][:port]`, lower-cased.
fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        (format!("[{h}]"), port)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p.parse().ok()?)),
            None => (s.to_string(), None),
        }
    };
    (!host.is_empty()).then(|| (host.to_ascii_lowercase(), port))
}

impl OriginRule {
    fn parse(s: &str) -> Result<OriginRule, String> {
        let s = s.trim();
        if s == "*" {
            return Ok(OriginRule::Any);
        }
        let bad = || {
            format!("--allowed-origins: `{s}` is not an origin like https://a.example, https://*.b.example or *")
        };
        let (scheme, rest) = s.split_once("://").ok_or_else(bad)?;
        let (host, port) = split_host_port(rest).ok_or_else(bad)?;
        let host = match host.strip_prefix("*.") {
            Some(suffix) if !suffix.is_empty() && !suffix.contains('*') => {
                HostRule::Subdomains(format!(".{suffix}"))
            }
            Some(_) => return Err(bad()),
            None if host.contains('*') => return Err(bad()),
            None => HostRule::Exact(host),
        };
        Ok(OriginRule::Site {
            scheme: scheme.to_ascii_lowercase(),
            host,
            port,
        })
    }

    fn matches(&self, site: &Site) -> bool {
        match self {
            OriginRule::Any => true,
            OriginRule::Site { scheme, host, port } => {
                let port = port.or_else(|| default_port(scheme));
                *scheme == site.scheme
                    && port == Some(site.port)
                    && match host {
                        HostRule::Exact(h) => *h == site.host,
                        HostRule::Subdomains(suffix) => site.host.ends_with(suffix.as_str()),
                    }
            }
        }
    }
}

/// Who is asking, as admission sees them.
#[derive(Debug, Clone)]
pub struct Client {
    /// The client's address (the forwarded one behind a trusted proxy).
    pub ip: IpAddr,
    /// The verified token's grant; everything when auth is off.
    pub grant: Arc<Grant>,
}

/// What an admitted stream holds until it ends: its slots under the limits.
pub struct Admitted {
    pub client: Client,
    _slot: OwnedSemaphorePermit,
    _per_ip: Option<PerIpSlot>,
}

/// One count in an address's `streams` or `pending`, given back on drop.
struct PerIpSlot {
    inner: Arc<Inner>,
    key: IpAddr,
    pending: bool,
}

impl Drop for PerIpSlot {
    fn drop(&mut self) {
        let mut table = self.inner.table.lock();
        if let Some(e) = table.get_mut(&self.key) {
            if self.pending {
                e.pending -= 1;
            } else {
                e.streams -= 1;
            }
        }
    }
}

/// What an accepted socket holds until it becomes a session or closes.
pub struct SocketSlot {
    _slot: OwnedSemaphorePermit,
    _per_ip: Option<PerIpSlot>,
}

struct Inner {
    streams: Arc<Semaphore>,
    pending: Arc<Semaphore>,
    table: Mutex<HashMap<IpAddr, PerIp>>,
    limits: Limits,
    trusted: Vec<IpNet>,
    origins: Vec<OriginRule>,
    tls: bool,
    auth: Option<Arc<Auth>>,
    everything: Arc<Grant>,
    draining: AtomicBool,
    metrics: Arc<Metrics>,
}

/// Every check a connection or request must pass.
#[derive(Clone)]
pub struct Admission {
    inner: Arc<Inner>,
}

/// The endpoints that carry market data and so need a token when auth is
/// on; `/healthz`, `/metrics`, `/api/stats` (operations, no prices) and the
/// dashboard's files stay open.
pub fn needs_token(path: &str) -> bool {
    matches!(
        path,
        "/ws" | "/sse" | "/api/snapshot" | "/api/history" | "/api/symbols"
    )
}

/// The key an address is counted under: IPv6 by /64, IPv4-mapped as IPv4.
fn key_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

impl Admission {
    pub fn new(
        config: &Config,
        auth: Option<Arc<Auth>>,
        metrics: Arc<Metrics>,
    ) -> Result<Admission, String> {
        let origins = config
            .allowed_origins
            .iter()
            .filter(|o| !o.trim().is_empty())
            .map(|o| OriginRule::parse(o))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Admission {
            inner: Arc::new(Inner {
                streams: Arc::new(Semaphore::new(config.max_connections)),
                pending: Arc::new(Semaphore::new(config.max_pending.max(1))),
                table: Mutex::new(HashMap::new()),
                limits: Limits {
                    pending_per_ip: config.max_pending_per_ip,
                    streams_per_ip: config.max_connections_per_ip,
                    handshake_rate: config.handshake_rate,
                    request_rate: config.request_rate,
                },
                trusted: config.trusted_proxies.clone(),
                origins,
                tls: config.tls_cert.is_some(),
                auth,
                everything: Arc::new(Grant::everything()),
                draining: AtomicBool::new(false),
                metrics,
            }),
        })
    }

    /// The token verifier, when auth is on.
    pub fn auth(&self) -> Option<&Arc<Auth>> {
        self.inner.auth.as_ref()
    }

    /// Counts a refusal decided elsewhere (timeouts, oversized heads, TLS).
    pub fn count(&self, reason: RejectReason) {
        self.inner.metrics.count_rejected(reason);
    }

    /// From now on every request gets 503 (the shutdown notice).
    pub fn start_draining(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Relaxed)
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.inner.trusted.iter().any(|n| n.contains(&ip))
    }

    /// Takes a pending slot for a just-accepted socket from `peer`, or says
    /// why not (counted; the caller closes the socket).
    pub fn admit_socket(&self, peer: SocketAddr) -> Result<SocketSlot, RejectReason> {
        let inner = &self.inner;
        let Ok(slot) = inner.pending.clone().try_acquire_owned() else {
            return Err(self.refuse_socket(RejectReason::PendingLimit));
        };
        // A trusted proxy carries many clients: its sockets are bounded by
        // the global pending limit only.
        if inner.limits.pending_per_ip == 0 || self.is_trusted(peer.ip()) {
            return Ok(SocketSlot {
                _slot: slot,
                _per_ip: None,
            });
        }
        let key = key_of(peer.ip());
        {
            let mut table = inner.table.lock();
            let Some(e) = self.entry(&mut table, key) else {
                drop(table);
                return Err(self.refuse_socket(RejectReason::PendingPerIp));
            };
            if e.pending >= inner.limits.pending_per_ip {
                drop(table);
                return Err(self.refuse_socket(RejectReason::PendingPerIp));
            }
            e.pending += 1;
        }
        Ok(SocketSlot {
            _slot: slot,
            _per_ip: Some(PerIpSlot {
                inner: inner.clone(),
                key,
                pending: true,
            }),
        })
    }

    fn refuse_socket(&self, reason: RejectReason) -> RejectReason {
        self.count(reason);
        reason
    }

    /// The address's entry, created if there is room.
    fn entry<'t>(
        &self,
        table: &'t mut HashMap<IpAddr, PerIp>,
        key: IpAddr,
    ) -> Option<&'t mut PerIp> {
        if !table.contains_key(&key) {
            if table.len() >= MAX_TRACKED {
                self.sweep_locked(table);
                if table.len() >= MAX_TRACKED {
                    return None;
                }
            }
            let now = Instant::now();
            let l = &self.inner.limits;
            table.insert(
                key,
                PerIp {
                    pending: 0,
                    streams: 0,
                    handshakes: Bucket::full(l.handshake_rate, now),
                    requests: Bucket::full(l.request_rate, now),
                },
            );
        }
        table.get_mut(&key)
    }

    /// Forgets addresses with nothing open and full buckets (remembering
    /// them would change nothing). The reporter calls it every second.
    pub fn sweep(&self) {
        let mut table = self.inner.table.lock();
        self.sweep_locked(&mut table);
    }

    fn sweep_locked(&self, table: &mut HashMap<IpAddr, PerIp>) {
        let now = Instant::now();
        let l = self.inner.limits;
        table.retain(|_, e| {
            e.pending > 0
                || e.streams > 0
                || !e.handshakes.is_full(l.handshake_rate, now)
                || !e.requests.is_full(l.request_rate, now)
        });
    }

    /// The client's address: the peer's, or the one a trusted proxy names.
    pub fn client_ip<B>(&self, req: &Request<B>, peer: SocketAddr) -> IpAddr {
        if !self.is_trusted(peer.ip()) {
            return peer.ip();
        }
        forwarded_for(req, |ip| self.is_trusted(ip)).unwrap_or(peer.ip())
    }

    fn refuse(
        &self,
        status: StatusCode,
        reason: RejectReason,
        message: &'static str,
        retry_after: Option<u32>,
    ) -> Refusal {
        self.count(reason);
        Refusal {
            status,
            reason,
            message,
            retry_after,
        }
    }

    /// The checks of every HTTP request to `path`: the shutdown notice, the
    /// per-address request rate (plain requests; upgrades have their own),
    /// the token where one is needed.
    pub fn check_request<B>(&self, req: &Request<B>, peer: SocketAddr) -> Result<Client, Refusal> {
        let inner = &self.inner;
        if inner.draining.load(Ordering::Relaxed) {
            return Err(self.refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                RejectReason::ShuttingDown,
                "the server is shutting down; connect to another one",
                Some(1),
            ));
        }
        let ip = self.client_ip(req, peer);
        let path = req.uri().path();
        let is_stream = path == "/ws" || path == "/sse";
        if !is_stream && inner.limits.request_rate > 0 {
            let mut table = inner.table.lock();
            let ok = match self.entry(&mut table, key_of(ip)) {
                Some(e) => e.requests.take(inner.limits.request_rate, Instant::now()),
                None => false,
            };
            drop(table);
            if !ok {
                return Err(self.refuse(
                    StatusCode::TOO_MANY_REQUESTS,
                    RejectReason::RequestRate,
                    "too many requests from your address; slow down",
                    Some(1),
                ));
            }
        }
        let grant = match &inner.auth {
            Some(auth) if needs_token(path) => match auth.verify_request(req) {
                Ok(g) => Arc::new(g),
                Err(e) => {
                    return Err(self.refuse(
                        StatusCode::UNAUTHORIZED,
                        RejectReason::Auth,
                        e.message(),
                        None,
                    ))
                }
            },
            _ => inner.everything.clone(),
        };
        Ok(Client { ip, grant })
    }

    /// Whether the request's `Origin` (if any) may open a stream: none, the
    /// server's own (same host and scheme), or one of `--allowed-origins`.
    pub fn origin_allowed<B>(&self, req: &Request<B>) -> bool {
        let Some(origin) = req.headers().get(ORIGIN) else {
            return true;
        };
        let inner = &self.inner;
        if inner.origins.contains(&OriginRule::Any) {
            return true;
        }
        let Some(site) = origin.to_str().ok().and_then(parse_site) else {
            return false;
        };
        let own_scheme = if inner.tls { "https" } else { "http" };
        let same = req
            .headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(split_host_port)
            .is_some_and(|(host, port)| {
                site.scheme == own_scheme
                    && host == site.host
                    && port.or(default_port(own_scheme)) == Some(site.port)
            });
        same || inner.origins.iter().any(|r| r.matches(&site))
    }

    /// Admits a stream (the `/ws` upgrade, `/sse`) of `req` from `peer`, or
    /// says why not (and counts it). The returned slot is held for as long
    /// as the stream lives.
    pub fn admit<B>(&self, req: &Request<B>, peer: SocketAddr) -> Result<Admitted, Refusal> {
        let client = self.check_request(req, peer)?;
        if !self.origin_allowed(req) {
            return Err(self.refuse(
                StatusCode::FORBIDDEN,
                RejectReason::Origin,
                "this Origin may not open streams here (see --allowed-origins)",
                None,
            ));
        }
        let inner = &self.inner;
        let l = inner.limits;
        let key = key_of(client.ip);
        let per_ip = if l.streams_per_ip == 0 && l.handshake_rate == 0 {
            None
        } else {
            let mut table = inner.table.lock();
            let Some(e) = self.entry(&mut table, key) else {
                drop(table);
                return Err(self.refuse(
                    StatusCode::TOO_MANY_REQUESTS,
                    RejectReason::PerIp,
                    "too many client addresses at once; try again later",
                    Some(5),
                ));
            };
            if l.streams_per_ip > 0 && e.streams >= l.streams_per_ip {
                drop(table);
                return Err(self.refuse(
                    StatusCode::TOO_MANY_REQUESTS,
                    RejectReason::PerIp,
                    "too many connections from your address (--max-connections-per-ip)",
                    Some(5),
                ));
            }
            if !e.handshakes.take(l.handshake_rate, Instant::now()) {
                drop(table);
                return Err(self.refuse(
                    StatusCode::TOO_MANY_REQUESTS,
                    RejectReason::HandshakeRate,
                    "too many connects from your address per second; back off and retry",
                    Some(1),
                ));
            }
            e.streams += 1;
            Some(PerIpSlot {
                inner: inner.clone(),
                key,
                pending: false,
            })
        };
        // Taken last: a refusal above must not hold it, and `per_ip` gives
        // its count back on drop if this fails.
        let Ok(slot) = inner.streams.clone().try_acquire_owned() else {
            return Err(self.refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                RejectReason::ConnectionLimit,
                "too many connections; try again later",
                Some(5),
            ));
        };
        Ok(Admitted {
            client,
            _slot: slot,
            _per_ip: per_ip,
        })
    }
}

/// The client address a chain of proxies names: the `for=` of `Forwarded`
/// (RFC 7239) if present, else `X-Forwarded-For`; read from the right
/// (nearest hop), skipping `trusted` proxies; the first one that is not
/// trusted is the client. Unparsable or obfuscated entries end the walk.
fn forwarded_for<B>(req: &Request<B>, trusted: impl Fn(IpAddr) -> bool) -> Option<IpAddr> {
    let headers = req.headers();
    let mut hops: Vec<&str> = Vec::new();
    let forwarded = headers.get_all(hyper::header::FORWARDED);
    if forwarded.iter().next().is_some() {
        for v in forwarded {
            let v = v.to_str().ok()?;
            for element in v.split(',') {
                let f = element.split(';').find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    k.trim().eq_ignore_ascii_case("for").then(|| v.trim())
                });
                hops.push(f.unwrap_or(""));
            }
        }
    } else {
        for v in headers.get_all("x-forwarded-for") {
            hops.extend(v.to_str().ok()?.split(','));
        }
    }
    let mut last = None;
    for hop in hops.iter().rev() {
        let ip = parse_hop(hop)?;
        last = Some(ip);
        if !trusted(ip) {
            return Some(ip);
        }
    }
    last
}

/// `192.0.2.1`, `192.0.2.1:80`, `"[2001:db8::1]:4711"`, `2001:db8::1`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let h = hop.trim().trim_matches('"');
    if let Ok(ip) = h.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = h.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    h.strip_prefix('[')?.split(']').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().uri("/ws");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn origin_rules_parse_and_match() {
        let site = |s| parse_site(s).unwrap();
        let r = OriginRule::parse("https://*.b.example").unwrap();
        assert!(r.matches(&site("https://x.b.example")));
        assert!(r.matches(&site("https://y.x.b.example:443")));
        assert!(!r.matches(&site("https://b.example")));
        assert!(!r.matches(&site("http://x.b.example")));
        assert!(!r.matches(&site("https://x.b.example.evil")));
        assert!(!r.matches(&site("https://evilb.example")));
        let r = OriginRule::parse("https://a.example:8443").unwrap();
        assert!(r.matches(&site("https://A.example:8443")));
        assert!(!r.matches(&site("https://a.example")));
        assert!(OriginRule::parse("https://a.*.example").is_err());
        assert!(OriginRule::parse("a.example").is_err());
        assert_eq!(parse_site("null"), None);
        assert_eq!(parse_site("https://a.example/path"), None);
    }

    #[test]
    fn forwarded_addresses_are_read_from_the_nearest_hop() {
        let trusted = |ip: IpAddr| ip.to_string().starts_with("10.");
        let r = req(&[("x-forwarded-for", "1.2.3.4, 5.6.7.8, 10.0.0.2")]);
        assert_eq!(forwarded_for(&r, trusted), Some("5.6.7.8".parse().unwrap()));
        let r = req(&[(
            "forwarded",
            "for=1.2.3.4, for=\"[2001:db8::1]:4711\";proto=https",
        )]);
        assert_eq!(
            forwarded_for(&r, trusted),
            Some("2001:db8::1".parse().unwrap())
        );
        let r = req(&[("x-forwarded-for", "garbage")]);
        assert_eq!(forwarded_for(&r, trusted), None);
        let r = req(&[("x-forwarded-for", "10.0.0.9")]);
        assert_eq!(
            forwarded_for(&r, trusted),
            Some("10.0.0.9".parse().unwrap())
        );
    }

    #[test]
    fn ipv6_is_counted_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(key_of(a), key_of(b));
        let m: IpAddr = "::ffff:1.2.3.4".parse().unwrap();
        assert_eq!(key_of(m), "1.2.3.4".parse::<IpAddr>().unwrap());
    }
}
