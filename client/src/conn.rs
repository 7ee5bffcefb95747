//! The connection task: one per [`Client`](crate::Client), it owns the
//! socket and every piece of state that must survive a reconnect.
//!
//! ```text
//!  connect ─► welcome ─► resubscribe (resume `from`) ─► read loop ─┐
//!     ▲            (epoch check)      (acks: recovered or HTTP fill)│
//!     └──── backoff (full jitter) ◄── lost: cut, 1001, 1008, silence┘
//! ```
//!
//! The read loop races the socket, the bot's commands, the paced sending of
//! requests (never faster than the welcome's `control_rate`) and the
//! watchdog. Events go to the bot through a bounded channel; while it is
//! full the task waits, so it stops reading and TCP backpressure reaches the
//! server, whose slow-consumer policy then applies. Nothing piles up here.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tickwire_protocol::{
    BinaryTick, Close, Decimal, ErrorCode, Id, Reply, Request, ServerMessage, TickMsg,
};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::backoff::Backoff;
use crate::track::{plan, Planned, Seen, Tracker, Wanted};
use crate::{Command, Error, Event, Tick};

/// Largest message accepted from the server (an ack of `*` names every
/// followed symbol; ticks are about 110 bytes).
const MAX_MESSAGE: usize = 4 << 20;

/// Requests waiting to be sent; commands are not taken beyond it.
const MAX_QUEUED: usize = 64;

/// Ticks per `/api/history` page (the server's maximum).
const PAGE: u32 = 1000;

/// Longest wait for a close frame to go out when a connection ends.
const GOODBYE: Duration = Duration::from_secs(1);

/// A rate-limited request is tried this often before it is reported.
const TRIES: u8 = 3;

/// One server: where to connect and what to ask for.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// The WebSocket URL, with `policy` added to the query.
    pub(crate) url: String,
    /// `host:port`, for the TCP connect and HTTP requests.
    pub(crate) authority: String,
}

impl Endpoint {
    pub(crate) fn parse(url: &str, query: &[(&str, &str)]) -> Result<Endpoint, Error> {
        let bad = || Error::BadUrl(url.to_string());
        let uri: http::Uri = url.parse().map_err(|_| bad())?;
        if uri.scheme_str() != Some("ws") {
            return Err(bad());
        }
        let host = uri.host().ok_or_else(bad)?;
        let authority = format!("{host}:{}", uri.port_u16().unwrap_or(80));
        let mut url = url.to_string();
        let mut has_query = uri.query().is_some();
        for (key, value) in query {
            url.push(if has_query { '&' } else { '?' });
            has_query = true;
            url.push_str(key);
            url.push('=');
            url.push_str(value);
        }
        Ok(Endpoint { url, authority })
    }
}

/// Everything the builder decided.
pub(crate) struct Settings {
    pub(crate) endpoints: Vec<Endpoint>,
    pub(crate) backoff: Backoff,
    pub(crate) stable_after: Duration,
    pub(crate) recover_over_http: bool,
    pub(crate) max_http_recovery: usize,
    pub(crate) recv_buffer: Option<u32>,
    pub(crate) connect_timeout: Duration,
}

/// How a connection (or the attempt at one) ended.
#[derive(Debug)]
enum End {
    /// The bot closed the client or dropped it: stop, quietly.
    Stop,
    /// The bot called close: a final `Closed` 1000.
    Closed,
    /// Lost: reconnect (an event says so when `code` is given).
    Lost { code: u16, reason: String },
    /// Could not connect at all: try again later, no event.
    Failed,
    /// Never retried: a protocol error or an HTTP refusal.
    Terminal { code: u16, reason: String },
}

/// What a close frame from the server means for the client.
fn on_close(code: u16, reason: &str) -> End {
    let lost = || End::Lost {
        code,
        reason: reason.to_string(),
    };
    let terminal = || End::Terminal {
        code,
        reason: reason.to_string(),
    };
    match Close::from_frame(code, reason) {
        Some(Close::Shutdown | Close::IdleTimeout | Close::SlowConsumer | Close::TooManyErrors) => {
            lost()
        }
        Some(
            Close::ProtocolError
            | Close::UnsupportedData
            | Close::InvalidPayload
            | Close::MessageTooBig
            // The same token would be refused again: the application must
            // get a fresh one.
            | Close::TokenExpired,
        ) => terminal(),
        None => match code {
            1002 | 1003 | 1007 | 1009 | 1010 | 4000..=4999 => terminal(),
            _ => lost(),
        },
    }
}

/// Paces requests to the server's `control_rate` (with a burst of that
/// many; the server allows twice), so the client never earns `rate_limited`
/// by itself.
struct Pacer {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Pacer {
    fn new(rate: u32) -> Pacer {
        let rate = f64::from(rate.max(1));
        Pacer {
            rate,
            tokens: rate,
            at: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.rate);
        self.at = now;
    }

    /// When the next request may go.
    fn ready_at(&mut self) -> Instant {
        let now = Instant::now();
        self.refill(now);
        if self.tokens >= 1.0 {
            now
        } else {
            now + Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        }
    }

    fn take(&mut self) {
        self.refill(Instant::now());
        self.tokens -= 1.0;
    }

    /// The server said `rate_limited`: wait a full interval.
    fn drain(&mut self) {
        self.tokens = self.tokens.min(0.0);
    }
}

/// A request on its way or waiting for its reply.
#[derive(Debug, Clone)]
struct Pending {
    planned: Planned,
    /// Symbols this request added to what the bot wants (a refusal takes
    /// them back).
    added: Vec<String>,
    /// Part of the resubscription after a reconnect.
    resume: bool,
    tries: u8,
}

/// The resubscription after a reconnect, until every request is answered.
#[derive(Debug, Default)]
struct Resume {
    outstanding: usize,
    recovered: Vec<String>,
    not_recovered: Vec<String>,
    epoch_changed: bool,
}

/// The task's state across connections.
struct Task {
    settings: Settings,
    wanted: Wanted,
    tracker: Tracker,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    next_id: i64,
    connected_before: bool,
}

pub(crate) async fn run(
    settings: Settings,
    wanted: Wanted,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
) {
    let mut task = Task {
        settings,
        wanted,
        tracker: Tracker::default(),
        commands,
        events,
        next_id: 1,
        connected_before: false,
    };
    task.run().await;
}

type Ws = WebSocketStream<TcpStream>;

impl Task {
    async fn run(&mut self) {
        let mut turn = 0;
        loop {
            let endpoint = self.settings.endpoints[turn % self.settings.endpoints.len()].clone();
            turn += 1;
            let started = Instant::now();
            let end = match self.connect(&endpoint).await {
                Ok(ws) => self.session(ws, &endpoint).await,
                Err(end) => end,
            };
            match end {
                End::Stop => return,
                End::Closed => {
                    let _ = self.emit(closed(1000, "closed by the client", false)).await;
                    return;
                }
                End::Terminal { code, reason } => {
                    let _ = self.emit(closed(code, &reason, false)).await;
                    return;
                }
                End::Lost { code, reason } => {
                    if self.emit(closed(code, &reason, true)).await.is_err() {
                        return;
                    }
                    if started.elapsed() >= self.settings.stable_after {
                        self.settings.backoff.reset();
                    }
                }
                End::Failed => {}
            }
            let until = Instant::now() + self.settings.backoff.next();
            // Waiting: the bot may still change its subscription or close.
            loop {
                tokio::select! {
                    _ = sleep_until(until) => break,
                    cmd = self.commands.recv() => match cmd {
                        None => return,
                        Some(Command::Close) => {
                            let _ = self.emit(closed(1000, "closed by the client", false)).await;
                            return;
                        }
                        Some(Command::Subscribe(s)) => {
                            self.wanted.add(&s);
                        }
                        Some(Command::Unsubscribe(s)) => self.unwant(&s),
                    },
                }
            }
        }
    }

    async fn emit(&self, event: Event) -> Result<(), End> {
        self.events.send(event).await.map_err(|_| End::Stop)
    }

    fn unwant(&mut self, symbols: &[String]) {
        self.wanted.remove(symbols);
        if symbols.iter().any(|s| s == "*") {
            self.tracker.forget_all();
        } else {
            symbols.iter().for_each(|s| self.tracker.forget(s));
        }
    }

    /// TCP connect, WebSocket handshake; bounded by the connect timeout.
    async fn connect(&self, endpoint: &Endpoint) -> Result<Ws, End> {
        let work = async {
            let addr = tokio::net::lookup_host(&endpoint.authority)
                .await
                .map_err(|_| End::Failed)?
                .next()
                .ok_or(End::Failed)?;
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            }
            .map_err(|_| End::Failed)?;
            if let Some(n) = self.settings.recv_buffer {
                socket.set_recv_buffer_size(n).map_err(|_| End::Failed)?;
            }
            let tcp = socket.connect(addr).await.map_err(|_| End::Failed)?;
            tcp.set_nodelay(true).ok();
            let config = WebSocketConfig::default()
                .max_message_size(Some(MAX_MESSAGE))
                .max_frame_size(Some(MAX_MESSAGE));
            match tokio_tungstenite::client_async_with_config(
                endpoint.url.as_str(),
                tcp,
                Some(config),
            )
            .await
            {
                Ok((ws, _)) => Ok(ws),
                Err(WsError::Http(res)) => {
                    let status = res.status();
                    let body = res
                        .body()
                        .as_deref()
                        .map(String::from_utf8_lossy)
                        .unwrap_or_default()
                        .into_owned();
                    let reason = format!("HTTP {status}: {body}");
                    // Overload and server trouble pass; a refusal of what
                    // we asked for (a bad policy, a wrong path) does not.
                    if status.is_client_error() && status.as_u16() != 429 {
                        Err(End::Terminal { code: 0, reason })
                    } else {
                        Err(End::Failed)
                    }
                }
                Err(_) => Err(End::Failed),
            }
        };
        tokio::time::timeout(self.settings.connect_timeout, work)
            .await
            .unwrap_or(Err(End::Failed))
    }

    /// One connection, from its welcome to its end.
    async fn session(&mut self, mut ws: Ws, endpoint: &Endpoint) -> End {
        let welcome = match tokio::time::timeout(self.settings.connect_timeout, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => match ServerMessage::parse(t.as_bytes()) {
                Ok(ServerMessage::Reply(Reply::Welcome(w))) => w,
                _ => {
                    return End::Terminal {
                        code: 0,
                        reason: format!(
                            "the server did not start with a v1.1 welcome: {}",
                            t.as_str()
                        ),
                    }
                }
            },
            Ok(Some(Ok(Message::Close(f)))) => {
                let (code, reason) = close_parts(f);
                return on_close(code, &reason);
            }
            _ => return End::Failed,
        };
        let lost_by_epoch = self.tracker.welcome(&welcome.epoch);
        if let Err(end) = self
            .emit(Event::Connected {
                url: endpoint.url.clone(),
                epoch: welcome.epoch.clone(),
            })
            .await
        {
            return end;
        }
        let mut conn = Connection {
            ws,
            authority: endpoint.authority.clone(),
            epoch: welcome.epoch.clone(),
            pacer: Pacer::new(welcome.control_rate),
            queue: VecDeque::new(),
            sent: HashMap::new(),
            resume: None,
            max_message: welcome.max_message,
            instruments: HashMap::new(),
            watchdog: Duration::from_millis(welcome.heartbeat_ms.max(1)).saturating_mul(3),
        };
        let plan = plan(&self.wanted, &self.tracker, welcome.max_message);
        if self.connected_before {
            let mut resume = Resume {
                outstanding: plan.len(),
                epoch_changed: lost_by_epoch.is_some(),
                ..Resume::default()
            };
            if let Some(lost) = lost_by_epoch {
                resume.not_recovered = lost.into_iter().filter(|s| self.wanted.wants(s)).collect();
            }
            conn.resume = Some(resume);
        }
        self.connected_before = true;
        if welcome.format == "binary" {
            // Answered before any tick: requests are handled in order.
            conn.queue.push_back(Pending {
                planned: Planned::Symbols,
                added: Vec::new(),
                resume: false,
                tries: 0,
            });
        }
        for planned in plan {
            conn.queue.push_back(Pending {
                planned,
                added: Vec::new(),
                resume: true,
                tries: 0,
            });
        }
        let end = match self.check_resume(&mut conn).await {
            Ok(()) => self.serve(&mut conn).await,
            Err(end) => end,
        };
        // Say goodbye properly, but never wait long on a peer that is gone
        // or stalled: our close frame, or the echo of the server's, which
        // tungstenite has queued.
        let goodbye = async {
            if matches!(end, End::Closed | End::Stop) {
                let _ = conn
                    .ws
                    .close(Some(CloseFrame {
                        code: CloseCode::Normal,
                        reason: "".into(),
                    }))
                    .await;
            } else {
                let _ = conn.ws.flush().await;
            }
        };
        let _ = tokio::time::timeout(GOODBYE, goodbye).await;
        end
    }

    async fn serve(&mut self, conn: &mut Connection) -> End {
        let mut deadline = Instant::now() + conn.watchdog;
        loop {
            let send_at = conn.pacer.ready_at();
            let result = tokio::select! {
                msg = conn.ws.next() => match msg {
                    Some(Ok(m)) => self.on_message(conn, m).await,
                    Some(Err(e)) => Err(End::Lost { code: 1006, reason: format!("connection lost: {e}") }),
                    None => Err(End::Lost { code: 1006, reason: "connection lost".into() }),
                },
                _ = sleep_until(send_at), if !conn.queue.is_empty() => self.send_next(conn).await,
                cmd = self.commands.recv(), if conn.queue.len() < MAX_QUEUED => match cmd {
                    None => Err(End::Stop),
                    Some(Command::Close) => Err(End::Closed),
                    Some(Command::Subscribe(s)) => {
                        let added = self.wanted.add(&s);
                        for planned in crate::track::chunks(s, false, 0, conn.max_message)
                            .into_iter()
                            .map(|symbols| Planned::Subscribe { symbols, from: None })
                        {
                            conn.queue.push_back(Pending { planned, added: added.clone(), resume: false, tries: 0 });
                        }
                        Ok(false)
                    }
                    Some(Command::Unsubscribe(s)) => {
                        self.unwant(&s);
                        for planned in crate::track::chunks(s, false, 0, conn.max_message)
                            .into_iter()
                            .map(|symbols| Planned::Unsubscribe { symbols })
                        {
                            conn.queue.push_back(Pending { planned, added: Vec::new(), resume: false, tries: 0 });
                        }
                        Ok(false)
                    }
                },
                _ = sleep_until(deadline) => Err(End::Lost {
                    code: 1006,
                    reason: format!("no message for {} ms (3 heartbeats): a silent stall", conn.watchdog.as_millis()),
                }),
            };
            match result {
                // Time spent waiting for the bot or on HTTP is not the
                // server's silence: the watchdog counts from here.
                Ok(true) => deadline = Instant::now() + conn.watchdog,
                Ok(false) => {}
                Err(end) => return end,
            }
        }
    }
}

/// One live connection.
struct Connection {
    ws: Ws,
    authority: String,
    epoch: String,
    pacer: Pacer,
    /// Requests not sent yet (at most [`MAX_QUEUED`] plus one command's).
    queue: VecDeque<Pending>,
    /// Requests sent, by id, until their reply.
    sent: HashMap<i64, Pending>,
    resume: Option<Resume>,
    max_message: usize,
    watchdog: Duration,
    /// Binary ticks' symbol ids, from the `symbols` reply (empty for JSON).
    instruments: HashMap<u32, Instrument>,
}

fn closed(code: u16, reason: &str, reconnecting: bool) -> Event {
    Event::Closed {
        code,
        reason: reason.to_string(),
        reconnecting,
    }
}

fn close_parts(frame: Option<CloseFrame>) -> (u16, String) {
    match frame {
        Some(f) => (u16::from(f.code), f.reason.as_str().to_string()),
        None => (1005, String::new()),
    }
}

fn symbols_of(p: &Planned) -> &[String] {
    match p {
        Planned::Subscribe { symbols, .. } | Planned::Unsubscribe { symbols } => symbols,
        Planned::Symbols => &[],
    }
}

/// What a binary tick's symbol id stands for: the name, and the sizes that
/// turn its integer prices and quantities into exact decimals.
#[derive(Debug, Clone)]
struct Instrument {
    symbol: String,
    tick_size: Decimal,
    lot_size: Decimal,
}

/// `units × size`, exactly, if it fits.
fn times(units: i64, size: Decimal) -> Option<Decimal> {
    Some(Decimal::new(units.checked_mul(size.units())?, size.scale()))
}

impl Instrument {
    fn tick(&self, b: &BinaryTick) -> Option<TickMsg> {
        Some(TickMsg {
            kind: b.kind,
            sym: self.symbol.clone(),
            seq: b.seq,
            ts: b.ts,
            px: times(b.px_ticks, self.tick_size)?,
            qty: times(b.qty_lots, self.lot_size)?,
            bid: times(b.bid_ticks, self.tick_size)?,
            ask: times(b.ask_ticks, self.tick_size)?,
        })
    }
}

impl Task {
    /// Sends the next queued request. `Ok(false)`: not a server message.
    async fn send_next(&mut self, conn: &mut Connection) -> Result<bool, End> {
        let Some(pending) = conn.queue.pop_front() else {
            return Ok(false);
        };
        let id = self.next_id;
        self.next_id += 1;
        let request = match &pending.planned {
            Planned::Subscribe { symbols, from } => Request::Subscribe {
                id: Some(Id::Int(id)),
                symbols: symbols.clone(),
                epoch: from.as_ref().map(|_| conn.epoch.clone()),
                from: from.clone(),
                throttle_ms: None,
            },
            Planned::Unsubscribe { symbols } => Request::Unsubscribe {
                id: Some(Id::Int(id)),
                symbols: symbols.clone(),
            },
            Planned::Symbols => Request::Symbols {
                id: Some(Id::Int(id)),
            },
        };
        conn.pacer.take();
        conn.sent.insert(id, pending);
        let text = String::from_utf8(request.to_json()).expect("requests are JSON text");
        conn.ws
            .send(Message::text(text))
            .await
            .map_err(|e| End::Lost {
                code: 1006,
                reason: format!("connection lost: {e}"),
            })?;
        Ok(false)
    }

    /// Handles one message from the server. `Ok(true)`: it counts for the
    /// watchdog.
    async fn on_message(&mut self, conn: &mut Connection, m: Message) -> Result<bool, End> {
        match m {
            Message::Text(t) => {
                // A type this client does not know is skipped, as v1.1
                // asks of clients.
                match ServerMessage::parse(t.as_bytes()) {
                    Ok(ServerMessage::Tick(tick)) => self.tick(tick).await?,
                    Ok(ServerMessage::Reply(r)) => self.reply(conn, r).await?,
                    Err(_) => {}
                }
            }
            Message::Close(f) => {
                let (code, reason) = close_parts(f);
                return Err(on_close(code, &reason));
            }
            Message::Binary(b) => {
                // A binary tick (`?format=binary`), named by the instrument
                // list asked for before any subscribe.
                let tick = BinaryTick::parse(&b)
                    .ok()
                    .and_then(|t| Some((conn.instruments.get(&t.symbol_id)?, t)))
                    .and_then(|(i, t)| i.tick(&t));
                if let Some(t) = tick {
                    self.tick(t).await?;
                }
            }
            // Pings are answered by tungstenite on the next read or write.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
        Ok(true)
    }

    /// Delivers a tick unless it is unwanted or a duplicate; a hole before it
    /// is a `Gap` first.
    async fn tick(&mut self, t: TickMsg) -> Result<(), End> {
        if !self.wanted.wants(&t.sym) {
            return Ok(());
        }
        match self.tracker.see(&t.sym, t.seq) {
            Seen::Duplicate => return Ok(()),
            Seen::First | Seen::Next => {}
            Seen::After { from, to } => {
                self.emit(Event::Gap {
                    symbol: t.sym.clone(),
                    from_seq: from,
                    to_seq: to,
                })
                .await?
            }
        }
        self.emit(Event::Tick(Tick {
            symbol: t.sym,
            seq: t.seq,
            ts: t.ts,
            px: t.px,
            qty: t.qty,
            bid: t.bid,
            ask: t.ask,
            kind: t.kind,
        }))
        .await
    }

    async fn reply(&mut self, conn: &mut Connection, r: Reply) -> Result<(), End> {
        let id_of = |id: &Option<Id>| match id {
            Some(Id::Int(i)) => Some(*i),
            _ => None,
        };
        match r {
            Reply::Subscribed {
                id,
                symbols,
                recovered,
            } => {
                let Some(pending) = id_of(&id).and_then(|i| conn.sent.remove(&i)) else {
                    return Ok(());
                };
                // Names the ack leaves out are unknown to the server (an
                // error reply says so): never asked for again.
                let unknown: Vec<String> = symbols_of(&pending.planned)
                    .iter()
                    .filter(|s| *s != "*" && !symbols.contains(s))
                    .cloned()
                    .collect();
                self.wanted.drop_unknown(&unknown);
                for (sym, ok) in recovered.unwrap_or_default() {
                    let ok = ok || self.recover_over_http(conn, &sym).await?;
                    if let Some(res) = conn.resume.as_mut() {
                        if ok {
                            res.recovered.push(sym);
                        } else {
                            res.not_recovered.push(sym);
                        }
                    }
                }
                if pending.resume {
                    self.answered(conn).await?;
                }
            }
            // A gateway's announcement of ticks lost at the source: the next
            // tick of the symbol jumps over exactly them, and the tracker
            // turns that jump into the same `Event::Gap`.
            Reply::Gap { .. } => {}
            Reply::Unsubscribed { id, .. } => {
                if let Some(pending) = id_of(&id).and_then(|i| conn.sent.remove(&i)) {
                    if pending.resume {
                        self.answered(conn).await?;
                    }
                }
            }
            Reply::Error {
                id, code, message, ..
            } => {
                let pending = id_of(&id).and_then(|i| conn.sent.remove(&i));
                if let Some(mut p) = pending {
                    if code == ErrorCode::RateLimited && p.tries + 1 < TRIES {
                        // Ignored by the server: again, after a full interval.
                        p.tries += 1;
                        conn.pacer.drain();
                        conn.queue.push_front(p);
                        return Ok(());
                    }
                    match code {
                        // No ack came: none of the names is known.
                        ErrorCode::UnknownSymbol => {
                            self.wanted.drop_unknown(symbols_of(&p.planned))
                        }
                        // Refused whole: what it added is not followed.
                        ErrorCode::TooManySymbols => self.wanted.remove(&p.added),
                        _ => {}
                    }
                    if p.resume {
                        if let (
                            Some(res),
                            Planned::Subscribe {
                                symbols,
                                from: Some(_),
                            },
                        ) = (conn.resume.as_mut(), &p.planned)
                        {
                            res.not_recovered.extend(symbols.iter().cloned());
                        }
                        self.answered(conn).await?;
                    }
                }
                self.emit(Event::Refused { code, message }).await?;
            }
            Reply::Symbols { id, symbols } => {
                if id_of(&id).and_then(|i| conn.sent.remove(&i)).is_some() {
                    conn.instruments = symbols
                        .into_iter()
                        .filter_map(|s| {
                            let instrument = Instrument {
                                tick_size: s.tick_size.parse().ok()?,
                                lot_size: s.lot_size.parse().ok()?,
                                symbol: s.sym,
                            };
                            Some((s.id, instrument))
                        })
                        .collect();
                }
            }
            Reply::Welcome(_) | Reply::Pong { .. } | Reply::Heartbeat { .. } => {}
            // This client sends no `auth` op; a shutdown notice is followed
            // by close 1001, which reconnects (acting on the notice earlier
            // is left to the client's own work).
            Reply::Authenticated { .. } | Reply::Shutdown { .. } => {}
        }
        Ok(())
    }

    /// One request of the resubscription is answered.
    async fn answered(&mut self, conn: &mut Connection) -> Result<(), End> {
        if let Some(res) = conn.resume.as_mut() {
            res.outstanding = res.outstanding.saturating_sub(1);
        }
        self.check_resume(conn).await
    }

    /// Once every request of the resubscription is answered: `Reconnected`.
    async fn check_resume(&mut self, conn: &mut Connection) -> Result<(), End> {
        if conn.resume.as_ref().is_some_and(|r| r.outstanding == 0) {
            let mut res = conn.resume.take().expect("checked");
            res.recovered.sort_unstable();
            res.not_recovered.sort_unstable();
            self.emit(Event::Reconnected {
                recovered: res.recovered,
                not_recovered: res.not_recovered,
                epoch_changed: res.epoch_changed,
            })
            .await?;
        }
        Ok(())
    }

    /// The server could not replay `sym` (its replay would not fit the
    /// connection's queue, or its history no longer reaches back): fetch the
    /// missed ticks from `/api/history` and deliver them now, before the
    /// snapshot that follows the ack (which, being older than what was
    /// fetched, is then a duplicate). True if nothing is missing.
    ///
    /// Ticks the history no longer holds become a `Gap` through the tracker,
    /// like any hole. Bounded: `max_http_recovery` ticks, pages of 1,000.
    async fn recover_over_http(&mut self, conn: &mut Connection, sym: &str) -> Result<bool, End> {
        if !self.settings.recover_over_http {
            return Ok(false);
        }
        let Some(mut from) = self.tracker.last(sym) else {
            return Ok(false);
        };
        let mut fetched = 0;
        let mut first = true;
        let mut whole = true;
        loop {
            let page = match crate::http::history(&conn.authority, sym, from, PAGE).await {
                Ok(page) if page.epoch == conn.epoch => page,
                _ => return Ok(false),
            };
            if first && !page.complete {
                whole = false;
            }
            first = false;
            let Some(last) = page.ticks.last().map(|t| t.seq) else {
                return Ok(whole && from >= page.last_seq);
            };
            fetched += page.ticks.len();
            for t in page.ticks {
                self.tick(t).await?;
            }
            if last >= page.last_seq {
                return Ok(whole);
            }
            if fetched >= self.settings.max_http_recovery {
                return Ok(false);
            }
            from = last;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_that_reconnect_and_closes_that_end() {
        let lost = |code, reason| matches!(on_close(code, reason), End::Lost { .. });
        assert!(lost(1001, "server shutting down"));
        assert!(lost(1001, "idle timeout"));
        assert!(lost(1008, "slow consumer"));
        assert!(lost(1000, ""));
        assert!(lost(1011, "internal error"));
        for c in [
            Close::ProtocolError,
            Close::UnsupportedData,
            Close::InvalidPayload,
            Close::MessageTooBig,
        ] {
            assert!(!lost(c.code(), c.reason()), "{c:?}");
        }
        assert!(!lost(4001, "app says no"));
    }

    #[test]
    fn endpoints_take_the_policy_and_refuse_what_is_not_ws() {
        let e = Endpoint::parse("ws://127.0.0.1:9000/ws", &[("policy", "disconnect")]).unwrap();
        assert_eq!(e.url, "ws://127.0.0.1:9000/ws?policy=disconnect");
        assert_eq!(e.authority, "127.0.0.1:9000");
        let e = Endpoint::parse(
            "ws://localhost/ws?x=1",
            &[("policy", "conflate"), ("format", "binary")],
        )
        .unwrap();
        assert_eq!(e.url, "ws://localhost/ws?x=1&policy=conflate&format=binary");
        assert_eq!(e.authority, "localhost:80");
        assert!(Endpoint::parse("http://h/ws", &[]).is_err());
        assert!(Endpoint::parse("wss://h/ws", &[]).is_err());
        assert!(Endpoint::parse("nonsense", &[]).is_err());
    }

    #[test]
    fn binary_ticks_become_exact_decimals() {
        let eurusd = Instrument {
            symbol: "EURUSD".into(),
            tick_size: "0.00001".parse().unwrap(),
            lot_size: "1000".parse().unwrap(),
        };
        let b = BinaryTick {
            kind: tickwire_protocol::TickKind::Tick,
            symbol_id: 7,
            seq: 3,
            ts: 4,
            px_ticks: 108_421,
            qty_lots: 5,
            bid_ticks: 108_420,
            ask_ticks: 108_421,
        };
        let t = eurusd.tick(&b).unwrap();
        assert_eq!(t.px.to_string(), "1.08421");
        assert_eq!(t.qty, "5000".parse().unwrap());
        assert_eq!((t.sym.as_str(), t.seq, t.ts), ("EURUSD", 3, 4));
        let huge = BinaryTick {
            px_ticks: i64::MAX,
            ..b
        };
        let lots = Instrument {
            tick_size: "10".parse().unwrap(),
            ..eurusd
        };
        assert!(
            lots.tick(&huge).is_none(),
            "overflow is refused, not wrapped"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_pacer_keeps_under_the_control_rate() {
        let mut p = Pacer::new(10);
        let start = Instant::now();
        for _ in 0..30 {
            sleep_until(p.ready_at()).await;
            p.take();
        }
        // A burst of 10, then 10 per second: 30 requests take 2 s.
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(1990) && took < Duration::from_millis(2100),
            "{took:?}"
        );
        p.drain();
        assert!(p.ready_at() > Instant::now());
    }
}
