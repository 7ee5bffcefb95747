//! tickwire-client: a client of the tickwire market-data server for bots
//! that must never lose a tick silently.
//!
//! You say which symbols you want; the client hands you a stream of
//! [`Event`]s and deals with everything else:
//!
//! - **Exact ticks**: [`Tick`] carries `px`, `qty`, `bid`, `ask` as exact
//!   [`Decimal`]s (never float noise), parsed with the project's own
//!   `tickwire-protocol` types.
//! - **Reconnects**: a lost connection (cut, server shutdown 1001, slow
//!   consumer 1008, silence) is retried with exponential backoff and full
//!   jitter, bounded by [`ClientBuilder::backoff`], moving on to the next URL
//!   of the list each time.
//! - **Resume**: each reconnect resubscribes with `from` = the last seq you
//!   were given of each symbol and the last epoch. What the server replays is
//!   delivered as if nothing happened; what it cannot replay is fetched from
//!   `GET /api/history` when the history still holds it
//!   ([`ClientBuilder::recover_over_http`]); whatever is really lost is an
//!   [`Event::Gap`] with the exact seq range. You are never given a tick
//!   twice: a seq at or below the last one of its symbol is dropped.
//! - **Epochs**: a server restart numbers seqs from 1 again under a new
//!   epoch; the client forgets the old seqs (none is taken for a
//!   continuation) and says so in [`Event::Reconnected`].
//! - **Watchdog**: no message at all (ticks, heartbeats) for 3× the server's
//!   `heartbeat_ms` means a silent stall: the connection is dropped and
//!   resumed.
//! - **JSON or binary**: [`ClientBuilder::format`] picks the wire encoding
//!   (binary ticks are half the bytes); the events are the same.
//! - **Refusals are reported, not retried in a loop**: an `error` reply is an
//!   [`Event::Refused`]; unknown symbols are dropped from what the client asks
//!   for; a protocol close (1002, 1003, 1007, 1009, 4000-4999) or an HTTP
//!   refusal of the upgrade (400, 404, ...) ends the stream with a final
//!   [`Event::Closed`].
//!
//! ```no_run
//! use tickwire_client::{Client, Event};
//!
//! # async fn bot() -> Result<(), tickwire_client::Error> {
//! let mut client = Client::builder("ws://127.0.0.1:8080/ws")
//!     .symbols(["AAPL", "MSFT"])
//!     .connect()?;
//! while let Some(event) = client.next().await {
//!     match event {
//!         Event::Tick(t) => println!("{} #{} {} x {}", t.symbol, t.seq, t.px, t.qty),
//!         Event::Gap { symbol, from_seq, to_seq } => {
//!             eprintln!("{symbol}: ticks {from_seq}..={to_seq} are lost")
//!         }
//!         Event::Closed { code, reason, reconnecting: false } => {
//!             eprintln!("done: {code} {reason}");
//!         }
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Limits of recovery
//!
//! The server keeps the last `history` ticks of each symbol (its `--history`,
//! 1,024 by default; the `welcome` message says how many). A resume after a
//! short cut gets every missed tick; after a cut longer than the history
//! covers (at 30 ticks/s, 1,024 ticks are 34 s) the oldest missed ticks are
//! gone and you get a [`Event::Gap`] for exactly those. A server restart
//! starts a new epoch with empty history: nothing from before can be
//! recovered ([`Event::Reconnected::epoch_changed`](Event::Reconnected)).
//!
//! # Memory
//!
//! Everything is bounded: the event channel holds at most
//! [`ClientBuilder::event_buffer`] events (4,096 by default). **When the bot
//! does not read**, the client stops reading the socket, TCP pushes back, and
//! the server applies the connection's slow-consumer policy: with `conflate`
//! (the default) you later see seq jumps, reported as [`Event::Gap`]s; with
//! [`Policy::Disconnect`] the server drops the connection with 1008 and the
//! client resumes from your last seq (no hole while the history covers the
//! stall). Nothing piles up in the client. Besides that: one seq per followed
//! symbol, at most 64 queued requests, WebSocket messages of at most 4 MiB,
//! history pages of at most 1,000 ticks (4 MiB) fetched one at a time.
//! Connect attempts that fail are retried with the backoff and not reported;
//! only a connection that was up and ended gives an [`Event::Closed`].

mod backoff;
mod conn;
mod http;
mod track;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

pub use tickwire_protocol::{Decimal, ErrorCode, TickKind};
use tokio::sync::mpsc;

/// A tick, exactly as the server sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tick {
    pub symbol: String,
    /// The symbol's tick counter in this epoch: 1, 2, 3, ... The client
    /// delivers them in order, each once; a jump comes with an [`Event::Gap`]
    /// just before it.
    pub seq: u64,
    /// Generation time at the server, microseconds since the Unix epoch.
    pub ts: u64,
    pub px: Decimal,
    pub qty: Decimal,
    pub bid: Decimal,
    pub ask: Decimal,
    /// [`TickKind::Snapshot`]: the symbol's latest tick, sent when it is
    /// (re)subscribed without a resume; [`TickKind::Tick`]: a live or
    /// replayed tick.
    pub kind: TickKind,
}

/// What the client tells the bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A connection is up and the server said hello (`epoch` names its
    /// sequence space). Sent on every connection, before its
    /// [`Event::Reconnected`].
    Connected { url: String, epoch: String },
    /// A tick: delivered once, in seq order per symbol.
    Tick(Tick),
    /// Ticks `from_seq..=to_seq` (inclusive) of `symbol` are known to be
    /// missed and will not come: outside the history after a reconnect, or
    /// skipped by the server's `conflate` policy while the bot was slow.
    /// Comes just before the tick that follows the hole.
    Gap {
        symbol: String,
        from_seq: u64,
        to_seq: u64,
    },
    /// A reconnect has resubscribed everything. `recovered`: symbols that
    /// continue with no hole (replayed by the server or fetched from its
    /// history over HTTP); `not_recovered`: symbols with lost ticks (a
    /// [`Event::Gap`] tells which ones, unless the epoch changed, when seqs of
    /// the two runs cannot be compared and the next tick of the symbol is a
    /// fresh snapshot). When more than one resume request was needed (many
    /// symbols), some replayed ticks may come before this event.
    Reconnected {
        recovered: Vec<String>,
        not_recovered: Vec<String>,
        /// The server is another run (a restart): every seq was forgotten.
        epoch_changed: bool,
    },
    /// The server refused a request (an `error` reply). Symbols it does not
    /// know are dropped from the subscription; nothing is retried.
    Refused { code: ErrorCode, message: String },
    /// A connection ended. `reconnecting: true`: informational, the client
    /// reconnects and resumes (1001 shutdown or idle, 1008 slow consumer,
    /// 1006 for a lost connection or a silent stall, any other code not
    /// listed below). `reconnecting: false`: final, the stream ends after it
    /// (a protocol error 1002/1003/1007/1009/1010/4xxx, an HTTP refusal of
    /// the upgrade, given as `code` 0 with the status in `reason`, or
    /// [`Client::close`], 1000).
    Closed {
        code: u16,
        reason: String,
        reconnecting: bool,
    },
}

/// The server's slow-consumer policy for this connection (`?policy=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Keep the newest tick of each symbol; a stalled bot sees seq jumps
    /// ([`Event::Gap`]).
    Conflate,
    /// Close with 1008 at the queue limit; the client resumes from the last
    /// seq, so a stall shorter than the history costs no tick.
    Disconnect,
}

impl Policy {
    fn as_str(self) -> &'static str {
        match self {
            Policy::Conflate => "conflate",
            Policy::Disconnect => "disconnect",
        }
    }
}

/// How the server encodes ticks for this connection (`?format=`). Events
/// are the same either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// JSON text frames (the default).
    #[default]
    Json,
    /// 56-byte binary frames, half the bytes: the client asks for the
    /// instrument list on each connection to name symbol ids and scale
    /// prices (so the universe's `symbols` reply must fit 4 MiB, about
    /// 25,000 symbols).
    Binary,
}

/// Why a client could not be built or used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`{0}` is not a ws:// URL with a host (wss:// is not supported yet)")]
    BadUrl(String),
    #[error("no server URL given")]
    NoUrl,
    #[error("not inside a tokio runtime")]
    NoRuntime,
    #[error("the client has stopped")]
    Stopped,
}

/// The smallest receive buffer [`ClientBuilder::recv_buffer`] sets: 256 KiB.
///
/// Linux cuts its segments to half the largest window the peer has offered,
/// and computes the window from the buffer and the measured overhead of
/// what arrives. With a 4 KiB buffer we saw the server's segments settle at
/// 2,048 bytes and the window at 2,044: nothing fits, so the data moved only
/// by window probes, one every 200 ms, about 10 KB/s against a feed of
/// 890 KB/s: a resumed bot read only old, duplicate ticks for the 28 s we
/// watched, with 2.6 MB still queued in the kernel. From 256 KiB (512 KiB
/// once the kernel doubles it) the window stays well above the largest
/// segment, 64 KiB on loopback.
pub const MIN_RECV_BUFFER: u32 = 256 * 1024;

/// Settings of a [`Client`]; start with [`Client::builder`].
///
/// ```no_run
/// use std::time::Duration;
/// use tickwire_client::{Client, Format, Policy};
///
/// # async fn f() -> Result<(), tickwire_client::Error> {
/// let client = Client::builder("ws://10.0.0.1:8080/ws")
///     .url("ws://10.0.0.2:8080/ws") // the next reconnect goes here
///     .symbols(["AAPL", "MSFT"])
///     .policy(Policy::Disconnect) // every tick or a resume, never a skip
///     .format(Format::Binary)
///     .backoff(Duration::from_millis(100), Duration::from_secs(5))
///     .event_buffer(1024)
///     .connect()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    urls: Vec<String>,
    symbols: Vec<String>,
    policy: Option<Policy>,
    format: Format,
    event_buffer: usize,
    backoff_base: Duration,
    backoff_max: Duration,
    stable_after: Duration,
    recover_over_http: bool,
    max_http_recovery: usize,
    recv_buffer: Option<u32>,
    connect_timeout: Duration,
}

impl ClientBuilder {
    fn new(url: &str) -> ClientBuilder {
        ClientBuilder {
            urls: vec![url.to_string()],
            symbols: Vec::new(),
            policy: None,
            format: Format::Json,
            event_buffer: 4096,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(20),
            stable_after: Duration::from_secs(10),
            recover_over_http: true,
            max_http_recovery: 65_536,
            recv_buffer: None,
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// Another server to fail over to: each reconnect tries the next URL of
    /// the list, round robin.
    pub fn url(mut self, url: &str) -> ClientBuilder {
        self.urls.push(url.to_string());
        self
    }

    /// Symbols to follow from the start (`"*"`: every symbol).
    pub fn symbols<I, S>(mut self, symbols: I) -> ClientBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.symbols.extend(symbols.into_iter().map(Into::into));
        self
    }

    /// The slow-consumer policy to ask for (default: the server's).
    pub fn policy(mut self, policy: Policy) -> ClientBuilder {
        self.policy = Some(policy);
        self
    }

    /// How ticks travel (default [`Format::Json`]).
    pub fn format(mut self, format: Format) -> ClientBuilder {
        self.format = format;
        self
    }

    /// Most events waiting for the bot (default 4,096, at least 1). When it
    /// is full the client stops reading the socket (see the crate docs).
    pub fn event_buffer(mut self, events: usize) -> ClientBuilder {
        self.event_buffer = events.max(1);
        self
    }

    /// Reconnect delays: the n-th attempt in a row waits a random time in
    /// `[0, min(max, base × 2^n)]` (default 250 ms and 20 s).
    pub fn backoff(mut self, base: Duration, max: Duration) -> ClientBuilder {
        self.backoff_base = base;
        self.backoff_max = max;
        self
    }

    /// How long a connection must last for the backoff to start from `base`
    /// again (default 10 s).
    pub fn stable_after(mut self, period: Duration) -> ClientBuilder {
        self.stable_after = period;
        self
    }

    /// Whether ticks the server could not replay on a resume are fetched
    /// from `GET /api/history` (default true). The server replays over the
    /// socket only what fits the connection's queue, so after a long stall
    /// this is what still gets every missed tick.
    pub fn recover_over_http(mut self, on: bool) -> ClientBuilder {
        self.recover_over_http = on;
        self
    }

    /// Most ticks fetched over HTTP per symbol and resume (default 65,536,
    /// in pages of 1,000); beyond it the rest is a [`Event::Gap`].
    pub fn max_http_recovery(mut self, ticks: usize) -> ClientBuilder {
        self.max_http_recovery = ticks;
        self
    }

    /// The socket's receive buffer in bytes (default: the system's, which
    /// Linux grows to many MiB). A smaller one makes the server notice a
    /// stalled bot sooner. Values below [`MIN_RECV_BUFFER`] are raised to
    /// it: a tiny buffer can leave the stream crawling after any backlog.
    pub fn recv_buffer(mut self, bytes: u32) -> ClientBuilder {
        self.recv_buffer = Some(bytes.max(MIN_RECV_BUFFER));
        self
    }

    /// How long a connect, WebSocket handshake and `welcome` may take
    /// (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.connect_timeout = timeout;
        self
    }

    /// Starts the client on the current tokio runtime. It connects in the
    /// background; the first event is [`Event::Connected`].
    pub fn connect(self) -> Result<Client, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        if self.urls.is_empty() {
            return Err(Error::NoUrl);
        }
        let mut query = Vec::new();
        if let Some(p) = self.policy {
            query.push(("policy", p.as_str()));
        }
        if self.format == Format::Binary {
            query.push(("format", "binary"));
        }
        let endpoints = self
            .urls
            .iter()
            .map(|u| conn::Endpoint::parse(u, &query))
            .collect::<Result<Vec<_>, _>>()?;
        let (events_tx, events) = mpsc::channel(self.event_buffer);
        let (commands, commands_rx) = mpsc::channel(COMMANDS);
        let mut wanted = track::Wanted::default();
        wanted.add(&self.symbols);
        let settings = conn::Settings {
            endpoints,
            backoff: backoff::Backoff::new(self.backoff_base, self.backoff_max),
            stable_after: self.stable_after,
            recover_over_http: self.recover_over_http,
            max_http_recovery: self.max_http_recovery,
            recv_buffer: self.recv_buffer,
            connect_timeout: self.connect_timeout,
        };
        runtime.spawn(conn::run(settings, wanted, commands_rx, events_tx));
        Ok(Client { events, commands })
    }
}

/// Commands waiting for the connection task.
const COMMANDS: usize = 64;

/// What the bot asks of the connection task.
#[derive(Debug)]
enum Command {
    Subscribe(Vec<String>),
    Unsubscribe(Vec<String>),
    Close,
}

/// A running client: a stream of [`Event`]s (also as a
/// [`futures_core::Stream`]) and a handle to change the subscription.
///
/// Dropping it stops the client (the connection is closed with 1000).
#[derive(Debug)]
pub struct Client {
    events: mpsc::Receiver<Event>,
    commands: mpsc::Sender<Command>,
}

impl Client {
    /// A builder for a client of the server at `url`
    /// (`ws://host:port/ws`).
    pub fn builder(url: &str) -> ClientBuilder {
        ClientBuilder::new(url)
    }

    /// The next event; `None` once the client has stopped (after a final
    /// [`Event::Closed`]).
    pub async fn next(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// Follows more symbols (`"*"`: every symbol), now and after every
    /// reconnect. Unknown symbols are reported ([`Event::Refused`]) and
    /// forgotten.
    ///
    /// ```no_run
    /// # async fn f(client: &tickwire_client::Client) -> Result<(), tickwire_client::Error> {
    /// client.subscribe(["BTCUSD"]).await?;
    /// client.unsubscribe(["AAPL"]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn subscribe<I, S>(&self, symbols: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let symbols = symbols.into_iter().map(Into::into).collect();
        self.command(Command::Subscribe(symbols)).await
    }

    /// Stops following symbols (`"*"`: all), now and after every reconnect.
    /// Ticks of them already waiting in the event channel are still
    /// delivered; none read from the socket after the command is.
    pub async fn unsubscribe<I, S>(&self, symbols: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let symbols = symbols.into_iter().map(Into::into).collect();
        self.command(Command::Unsubscribe(symbols)).await
    }

    /// Closes the connection (1000) and stops; the events still queued and a
    /// final [`Event::Closed`] can still be read with [`Client::next`].
    pub async fn close(&self) -> Result<(), Error> {
        self.command(Command::Close).await
    }

    async fn command(&self, c: Command) -> Result<(), Error> {
        self.commands.send(c).await.map_err(|_| Error::Stopped)
    }
}

impl futures_core::Stream for Client {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.events.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receive_buffer_below_the_floor_is_raised_to_it() {
        let b = Client::builder("ws://127.0.0.1:1/ws");
        assert_eq!(b.recv_buffer, None, "the system's by default");
        assert_eq!(
            b.clone().recv_buffer(4096).recv_buffer,
            Some(MIN_RECV_BUFFER)
        );
        assert_eq!(b.recv_buffer(1 << 20).recv_buffer, Some(1 << 20));
    }
}
