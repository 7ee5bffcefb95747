//! Scale-out over NATS, with every component real: Debian's `nats-server` on
//! a free port of 127.0.0.1, `tickwire feed` and `tickwire gateway`s as
//! processes of the binary under test, and WebSocket clients on the
//! gateways.
//!
//! Needs `nats-server` on the PATH or in /usr/sbin (Debian: `apt-get install
//! nats-server`; override with `TICKWIRE_NATS_SERVER`). Without it the tests
//! are skipped with a loud message, unless `CI=true`, where they fail.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::{http_get, within, Client, SeqCheck, DEADLINE};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};

const TICKWIRE: &str = env!("CARGO_BIN_EXE_tickwire");

/// The nats-server binary, or `None` (outside CI) to skip.
fn nats_server_binary() -> Option<PathBuf> {
    let candidates = [
        std::env::var("TICKWIRE_NATS_SERVER")
            .ok()
            .map(PathBuf::from),
        Some(PathBuf::from("/usr/sbin/nats-server")),
        Some(PathBuf::from("/usr/bin/nats-server")),
    ];
    if let Some(p) = candidates.into_iter().flatten().find(|p| p.is_file()) {
        return Some(p);
    }
    let msg =
        "nats-server is not installed (apt-get install nats-server, or set TICKWIRE_NATS_SERVER)";
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("CI=true but {msg}");
    }
    let line = "=".repeat(72);
    eprintln!("\n{line}\nSKIPPED: {msg} (set CI=true to make this a failure)\n{line}\n");
    None
}

/// A real nats-server on 127.0.0.1.
struct Nats {
    bin: PathBuf,
    port: u16,
    child: Child,
}

impl Nats {
    async fn start() -> Option<Nats> {
        let bin = nats_server_binary()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Nats::spawn(&bin, port).await;
        Some(Nats { bin, port, child })
    }

    /// Starts the server on `port` and waits for its "ready" line.
    async fn spawn(bin: &PathBuf, port: u16) -> Child {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let mut child = Command::new(bin)
                .args(["-a", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("nats-server starts");
            let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
            let ready = within(async {
                while let Some(line) = lines.next_line().await.unwrap() {
                    if line.contains("Server is ready") {
                        return true;
                    }
                    if line.contains("address already in use") {
                        return false;
                    }
                }
                false
            })
            .await;
            if ready {
                // Keep draining its log so it never blocks on a full pipe.
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                return child;
            }
            // The port of a server just killed can take a moment to free.
            assert!(
                tokio::time::Instant::now() < deadline,
                "nats-server cannot listen on {port}"
            );
            let _ = child.kill().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (no goodbye to its clients) and starts it again on
    /// the same port once the gateways noticed (`until_down`).
    async fn kill(&mut self) {
        self.child.kill().await.unwrap();
    }

    async fn restart(&mut self) {
        self.child = Nats::spawn(&self.bin, self.port).await;
    }
}

/// A tickwire process; killed when dropped.
struct Tickwire {
    child: Child,
    /// The first line of its stdout that says it is up.
    banner: String,
    _out: Lines<BufReader<ChildStdout>>,
}

impl Tickwire {
    async fn start(args: &[&str]) -> Tickwire {
        let mut child = Command::new(TICKWIRE)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("tickwire starts");
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        drain_log(child.stderr.take().unwrap(), args[0]);
        let banner = within(out.next_line())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("tickwire {args:?} exited before it was up"));
        Tickwire {
            child,
            banner,
            _out: out,
        }
    }

    /// `tickwire feed`; returns it and its epoch.
    async fn feed(nats: &Nats, extra: &[&str]) -> (Tickwire, String) {
        let url = nats.url();
        let mut args = vec!["feed", "--nats", &url];
        args.extend_from_slice(extra);
        let feed = Tickwire::start(&args).await;
        let epoch = feed
            .banner
            .split("(epoch ")
            .nth(1)
            .and_then(|s| s.strip_suffix(')'))
            .unwrap_or_else(|| panic!("no epoch in {:?}", feed.banner))
            .to_string();
        (feed, epoch)
    }

    /// `tickwire gateway` on a free port.
    async fn gateway(nats: &Nats, extra: &[&str]) -> (Tickwire, SocketAddr) {
        let url = nats.url();
        let mut args = vec!["gateway", "--nats", &url, "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let gw = Tickwire::start(&args).await;
        let addr = gw
            .banner
            .strip_prefix("tickwire listening on http://")
            .unwrap_or_else(|| panic!("unexpected banner {:?}", gw.banner))
            .parse()
            .unwrap();
        (gw, addr)
    }

    async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }
}

/// Copies a child's log to the test's stderr (shown when a test fails),
/// prefixed with which process it is.
fn drain_log(err: ChildStderr, who: &str) {
    let who = who.to_string();
    tokio::spawn(async move {
        let mut lines = BufReader::new(err).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("[{who}] {line}");
        }
    });
}

async fn stats(addr: SocketAddr) -> Value {
    let (status, body) = http_get(addr, "/api/stats").await;
    assert_eq!(status, 200);
    serde_json::from_str(&body).unwrap()
}

/// Polls `/api/stats` until `f` holds (broker state has no event to await).
async fn until_stats(addr: SocketAddr, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let s = stats(addr).await;
        if f(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {s}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const SYMBOLS: usize = 8;

fn all_symbols() -> Vec<String> {
    (0..SYMBOLS).map(|i| format!("S{i}")).collect()
}

const MARKET: [&str; 4] = ["--synthetic", "8", "--rate", "40"];

/// Subscribes to every symbol (resuming after `from`, if given) and
/// returns the ack.
async fn subscribe(c: &mut Client, from: Option<(&BTreeMap<String, u64>, &str)>) -> Value {
    let mut req = json!({"op": "subscribe", "symbols": all_symbols(), "id": 1});
    if let Some((from, epoch)) = from {
        req["from"] = json!(from);
        req["epoch"] = json!(epoch);
    }
    c.send(&req.to_string()).await;
    c.json_of("subscribed").await
}

/// The next tick, snapshot or gap.
async fn next_data(c: &mut Client) -> Value {
    loop {
        let v = c.json().await;
        if matches!(v["type"].as_str(), Some("tick" | "snapshot" | "gap")) {
            return v;
        }
    }
}

/// A tick's content, without its type.
fn key_and_body(v: &Value) -> ((String, u64), Value) {
    let mut body = v.clone();
    body.as_object_mut().unwrap().remove("type");
    (
        (
            v["sym"].as_str().unwrap().to_string(),
            v["seq"].as_u64().unwrap(),
        ),
        body,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_send_identical_streams_and_a_client_fails_over_without_a_hole_or_a_duplicate()
{
    let Some(nats) = Nats::start().await else {
        return;
    };
    let (_feed, epoch) = Tickwire::feed(&nats, &[&MARKET[..], &["--seed", "3"]].concat()).await;
    let (gw_a, a) = Tickwire::gateway(&nats, &MARKET).await;
    let (_gw_b, b) = Tickwire::gateway(&nats, &MARKET).await;

    // Both speak the feed's epoch.
    let mut on_a = Client::connect(a, "/ws", None).await;
    let mut on_b = Client::connect(b, "/ws", None).await;
    assert_eq!(on_a.welcome["epoch"], epoch);
    assert_eq!(on_b.welcome["epoch"], epoch);

    // Identical streams: the same (symbol, seq) is the same tick on both,
    // and each stream is contiguous.
    subscribe(&mut on_a, None).await;
    subscribe(&mut on_b, None).await;
    let mut seen: [HashMap<(String, u64), Value>; 2] = Default::default();
    for (i, c) in [&mut on_a, &mut on_b].into_iter().enumerate() {
        let mut check = SeqCheck::default();
        while check.ticks < 200 {
            let v = next_data(c).await;
            assert_ne!(v["type"], "gap", "no tick is lost here: {v}");
            check.see(&v);
            let (k, body) = key_and_body(&v);
            seen[i].insert(k, body);
        }
    }
    let common: Vec<_> = seen[0]
        .keys()
        .filter(|k| seen[1].contains_key(*k))
        .collect();
    assert!(common.len() >= 100, "only {} ticks in common", common.len());
    for k in common {
        assert_eq!(seen[0][k], seen[1][k], "{k:?} differs between gateways");
    }
    drop((on_a, on_b));

    // Fail-over: a client of A loses A and resumes on B from its last seqs.
    let mut client = Client::connect(a, "/ws", None).await;
    subscribe(&mut client, None).await;
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    let mut check = SeqCheck::default();
    while check.ticks < 100 || last.len() < SYMBOLS {
        let v = next_data(&mut client).await;
        check.see(&v);
        last.insert(
            v["sym"].as_str().unwrap().into(),
            v["seq"].as_u64().unwrap(),
        );
    }
    gw_a.kill().await;
    drop(client);
    let mut client = Client::connect(b, "/ws", None).await;
    let ack = subscribe(&mut client, Some((&last, &epoch))).await;
    let all_recovered: BTreeMap<String, bool> =
        all_symbols().into_iter().map(|s| (s, true)).collect();
    assert_eq!(ack["recovered"], json!(all_recovered), "{ack}");
    // The replay continues each symbol right after its last seq, then live:
    // every tick once, in order.
    let mut fresh_ticks = 0;
    while fresh_ticks < 150 {
        let v = next_data(&mut client).await;
        assert_eq!(v["type"], "tick", "a resume replays ticks: {v}");
        let sym = v["sym"].as_str().unwrap().to_string();
        let seq = v["seq"].as_u64().unwrap();
        let prev = last.insert(sym.clone(), seq).unwrap();
        assert_eq!(
            seq,
            prev + 1,
            "{sym}: seq {seq} after {prev} across the fail-over"
        );
        fresh_ticks += 1;
    }
    let s = stats(b).await;
    assert_eq!(s["totals"]["resumes_recovered"], SYMBOLS as u64);
    assert_eq!(s["broker"]["ticks_missed"], 0);
}

/// Checks a stream that may contain gaps: each symbol's seqs go up by one,
/// or jump over exactly the range a `gap` message just named.
#[derive(Default)]
struct GapCheck {
    last: HashMap<String, u64>,
    /// A gap announced and not yet followed by its tick: (sym) -> to.
    pending: HashMap<String, u64>,
    ticks: u64,
    gapped: u64,
}

impl GapCheck {
    fn see(&mut self, v: &Value) {
        let sym = v["sym"].as_str().unwrap().to_string();
        if v["type"] == "gap" {
            let (from, to) = (v["from"].as_u64().unwrap(), v["to"].as_u64().unwrap());
            if let Some(&last) = self.last.get(&sym) {
                assert_eq!(from, last + 1, "{sym}: a gap from {from} after {last}");
            }
            assert!(to >= from, "{v}");
            assert!(self.pending.insert(sym, to).is_none(), "two gaps in a row");
            self.gapped += to + 1 - from;
            return;
        }
        let seq = v["seq"].as_u64().unwrap();
        let expected = match self.pending.remove(&sym) {
            Some(to) => Some(to + 1),
            None => self.last.get(&sym).map(|l| l + 1),
        };
        if let Some(e) = expected {
            assert_eq!(seq, e, "{sym}: seq {seq}, expected {e} ({v})");
        }
        self.last.insert(sym, seq);
        self.ticks += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_leaves_contiguous_streams_or_gaps_naming_exactly_the_lost_ticks() {
    let Some(mut nats) = Nats::start().await else {
        return;
    };
    // Two feeds on one broker: "fill" keeps the default history (what a
    // gateway misses is sent again), "lossy" keeps only the latest tick
    // (what a gateway misses is gone: its clients must be told).
    let (_fill, _) =
        Tickwire::feed(&nats, &[&MARKET[..], &["--nats-prefix", "fill"]].concat()).await;
    let (_lossy, _) = Tickwire::feed(
        &nats,
        &[&MARKET[..], &["--nats-prefix", "lossy", "--history", "1"]].concat(),
    )
    .await;
    let (_gw_fill, fill) =
        Tickwire::gateway(&nats, &[&MARKET[..], &["--nats-prefix", "fill"]].concat()).await;
    let (_gw_lossy, lossy) =
        Tickwire::gateway(&nats, &[&MARKET[..], &["--nats-prefix", "lossy"]].concat()).await;
    let mut clients = Vec::new();
    for addr in [fill, lossy] {
        let mut c = Client::connect(addr, "/ws", None).await;
        subscribe(&mut c, None).await;
        let mut check = GapCheck::default();
        while check.ticks < 50 {
            check.see(&next_data(&mut c).await);
        }
        clients.push((addr, c, check));
    }

    nats.kill().await;
    for addr in [fill, lossy] {
        until_stats(addr, "the gateway to see the broker go", |s| {
            s["broker"]["connected"] == false
        })
        .await;
    }
    nats.restart().await;
    for addr in [fill, lossy] {
        until_stats(addr, "the gateway to reconnect", |s| {
            s["broker"]["reconnects"].as_u64() >= Some(1) && s["broker"]["connected"] == true
        })
        .await;
    }
    // Well past the outage: every symbol has moved on by 40 ticks.
    for (_, c, check) in &mut clients {
        let start: HashMap<String, u64> = check.last.clone();
        let moved = |check: &GapCheck| {
            all_symbols().iter().all(|s| {
                check.last.get(s).copied().unwrap_or(0) >= start.get(s).copied().unwrap_or(0) + 40
            })
        };
        while !moved(check) {
            check.see(&next_data(c).await);
        }
    }
    let (fill_check, lossy_check) = (&clients[0].2, &clients[1].2);
    let fill_stats = stats(fill).await;
    let lossy_stats = stats(lossy).await;
    eprintln!(
        "fill: {}\nlossy: {}",
        fill_stats["broker"], lossy_stats["broker"]
    );
    for s in [&fill_stats, &lossy_stats] {
        assert!(s["broker"]["disconnects"].as_u64() >= Some(1), "{s}");
    }
    // With the feed's history, nothing is lost.
    assert_eq!(fill_check.gapped, 0);
    assert_eq!(fill_stats["broker"]["ticks_missed"], 0);
    // Without it, clients were told of exactly the ticks the gateway lost.
    assert_eq!(
        lossy_stats["broker"]["ticks_missed"].as_u64(),
        Some(lossy_check.gapped)
    );
    let (status, metrics) = http_get(lossy, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("tickwire_broker_reconnects_total "),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "tickwire_broker_ticks_missed_total {}",
            lossy_check.gapped
        )),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_started_late_serves_every_snapshot_and_the_history_at_once() {
    let Some(nats) = Nats::start().await else {
        return;
    };
    let (_feed, epoch) = Tickwire::feed(&nats, &MARKET).await;
    // Watch the feed through a first gateway until every symbol has traded
    // a few times.
    let (_early, early) = Tickwire::gateway(&nats, &MARKET).await;
    let mut watcher = Client::connect(early, "/ws", None).await;
    subscribe(&mut watcher, None).await;
    let mut seen: HashMap<String, u64> = HashMap::new();
    while seen.len() < SYMBOLS || seen.values().any(|&s| s < 5) {
        let v = next_data(&mut watcher).await;
        seen.insert(
            v["sym"].as_str().unwrap().into(),
            v["seq"].as_u64().unwrap(),
        );
    }

    let (_late, late) = Tickwire::gateway(&nats, &MARKET).await;
    let mut c = Client::connect(late, "/ws", None).await;
    assert_eq!(c.welcome["epoch"], epoch);
    subscribe(&mut c, None).await;
    // Right after the ack: a snapshot of every symbol, at least as recent
    // as what the first gateway had shown.
    let mut snapshots = HashMap::new();
    for _ in 0..SYMBOLS {
        let v = c.json().await;
        assert_eq!(v["type"], "snapshot", "{v}");
        let sym = v["sym"].as_str().unwrap().to_string();
        assert!(v["seq"].as_u64().unwrap() >= seen[&sym], "{v}");
        snapshots.insert(sym, v["seq"].as_u64().unwrap());
    }
    assert_eq!(snapshots.len(), SYMBOLS);
    // And the history since the feed started.
    for sym in all_symbols() {
        let (status, body) = http_get(late, &format!("/api/history?symbol={sym}&limit=1000")).await;
        assert_eq!(status, 200);
        let h: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(h["epoch"], epoch);
        assert_eq!(h["first_seq"], 1, "{sym}: {h}");
        assert!(h["last_seq"].as_u64().unwrap() >= snapshots[&sym]);
        let seqs: Vec<u64> = h["ticks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    }
}
