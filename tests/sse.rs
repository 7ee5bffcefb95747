//! Server-Sent Events over real sockets (docs/PROTOCOL.md, "Server-Sent
//! Events"), read by a plain HTTP client (hyper) through the protocol
//! crate's stream parser: the headers and `retry:`, snapshots then ticks
//! with the WebSocket tick's JSON and ids in publish order, heartbeats, a
//! resume with `Last-Event-ID` that continues with no hole and no duplicate,
//! the `reset` when it cannot, throttled streams, bad requests, and the
//! bounded queue's disconnect policy.

mod common;

use std::collections::HashMap;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tickwire_protocol::sse::{Event, EventId, Parser, Reset};
use tickwire_protocol::TickMsg;

/// A client reading one event stream.
struct Stream {
    body: Incoming,
    parser: Parser,
    ready: std::collections::VecDeque<Event>,
    /// Keeps the connection task alive.
    _conn: tokio::task::JoinHandle<()>,
}

async fn open(server: &TestServer, path: &str, last_event_id: Option<&str>) -> Stream {
    let (status, headers, stream) = request(server, path, last_event_id).await;
    assert_eq!(status, 200, "{path}");
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-cache");
    stream
}

async fn request(
    server: &TestServer,
    path: &str,
    last_event_id: Option<&str>,
) -> (u16, HashMap<String, String>, Stream) {
    let tcp = within(tokio::net::TcpStream::connect(server.addr))
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = hyper::Request::get(path)
        .header("host", server.addr.to_string())
        .header("accept", "text/event-stream");
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    let res = within(send.send_request(req.body(Empty::<Bytes>::new()).unwrap()))
        .await
        .unwrap();
    let status = res.status().as_u16();
    let headers = res
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
        .collect();
    (
        status,
        headers,
        Stream {
            body: res.into_body(),
            parser: Parser::default(),
            ready: Default::default(),
            _conn: conn,
        },
    )
}

impl Stream {
    /// The next event; `None` when the stream ends.
    async fn next(&mut self) -> Option<Event> {
        within(async {
            loop {
                if let Some(e) = self.ready.pop_front() {
                    return Some(e);
                }
                let frame = self.body.frame().await?.expect("the stream reads");
                if let Ok(data) = frame.into_data() {
                    self.ready.extend(self.parser.feed(&data));
                }
            }
        })
        .await
    }

    async fn event(&mut self) -> Event {
        self.next().await.expect("the stream goes on")
    }

    /// The body as text until the stream ends.
    async fn rest(&mut self) -> String {
        let mut text = String::new();
        within(async {
            while let Some(frame) = self.body.frame().await {
                if let Ok(data) = frame.expect("reads").into_data() {
                    text.push_str(&String::from_utf8_lossy(&data));
                }
            }
        })
        .await;
        text
    }
}

/// A tick or snapshot event's JSON, checked against the protocol crate.
fn tick_of(e: &Event) -> (Value, u64) {
    assert!(
        e.event == "tick" || e.event == "snapshot",
        "not a tick: {e:?}"
    );
    let msg = TickMsg::parse(e.data.as_bytes()).expect("the WebSocket tick's JSON");
    let v: Value = serde_json::from_str(&e.data).unwrap();
    assert_eq!(v["type"], e.event);
    assert_eq!(v["seq"], msg.seq);
    let id = EventId::parse(&e.id).expect("every event has an id");
    (v, id.counter)
}

/// Waits until every one of `syms` has traded.
async fn traded(server: &TestServer, syms: &[&str]) {
    let ids: Vec<_> = syms
        .iter()
        .map(|s| server.hub.universe().id_of(s).unwrap())
        .collect();
    server
        .until("every symbol to trade", |hub| {
            ids.iter().all(|&id| hub.latest(id).is_some())
        })
        .await;
}

const FAST: &[&str] = &["--synthetic", "4", "--rate", "300"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_sends_snapshots_then_every_tick_in_publish_order_each_with_an_id() {
    let server = start(FAST).await;
    traded(&server, &["S0", "S1"]).await;
    let mut s = open(&server, "/sse?symbols=S1,S0", None).await;
    let epoch = server.hub.epoch().to_string();
    let mut snapshots = Vec::new();
    let mut check = SeqCheck::default();
    let mut last_counter = 0;
    while check.ticks < 300 {
        let e = s.event().await;
        let (v, counter) = tick_of(&e);
        assert_eq!(EventId::parse(&e.id).unwrap().epoch, epoch);
        assert!(counter > last_counter, "ids in publish order: {e:?}");
        last_counter = counter;
        if e.event == "snapshot" {
            assert_eq!(check.ticks, 0, "snapshots come first");
            snapshots.push(v["sym"].as_str().unwrap().to_string());
        }
        check.see(&v);
    }
    snapshots.sort();
    assert_eq!(snapshots, ["S0", "S1"]);
    assert_eq!(s.parser.retry_ms, Some(1000), "a retry: hint");
    let (_, metrics) = http_get(server.addr, "/metrics").await;
    assert!(metrics.contains("\ntickwire_sse_streams 1\n"), "{metrics}");
    drop(s);
    server
        .until("the stream to be gone", |hub| {
            hub.metrics()
                .sse_streams
                .load(std::sync::atomic::Ordering::Relaxed)
                == 0
        })
        .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_with_last_event_id_continues_with_no_hole_and_no_duplicate() {
    let server = start(FAST).await;
    traded(&server, &["S0", "S1", "S2"]).await;
    let mut s = open(&server, "/sse?symbols=S0,S1,S2", None).await;
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut seen = 0;
    // The id of the last event this client took (events parsed but not
    // taken are lost with the connection, as in a browser).
    let mut id = String::new();
    while seen < 100 {
        let e = s.event().await;
        let (v, _) = tick_of(&e);
        last.insert(
            v["sym"].as_str().unwrap().into(),
            v["seq"].as_u64().unwrap(),
        );
        id = e.id;
        seen += 1;
    }
    drop(s);
    // The feed moves on while the client is away.
    let s0 = server.hub.universe().id_of("S0").unwrap();
    let gone = server.hub.latest(s0).unwrap().seq;
    server
        .until("the feed to move on", |hub| {
            hub.latest(s0).unwrap().seq >= gone + 30
        })
        .await;
    let mut s = open(&server, "/sse?symbols=S0,S1,S2", Some(&id)).await;
    let mut replayed = 0;
    let mut counter = EventId::parse(&id).unwrap().counter;
    while replayed < 400 {
        let e = s.event().await;
        assert_eq!(e.event, "tick", "no snapshot, no reset: {e:?}");
        let (v, c) = tick_of(&e);
        assert!(c > counter, "publish order across the seam: {e:?}");
        counter = c;
        let sym = v["sym"].as_str().unwrap().to_string();
        let seq = v["seq"].as_u64().unwrap();
        let prev = last
            .insert(sym.clone(), seq)
            .expect("a symbol of the stream");
        assert_eq!(seq, prev + 1, "{sym}: no hole, no duplicate");
        replayed += 1;
    }
    let t = server.hub.metrics().snapshot_totals();
    assert_eq!((t.resumes_recovered, t.resumes_lost), (3, 0));
    assert!(t.replayed_ticks >= 30, "{t:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_that_cannot_be_served_sends_a_reset_naming_the_symbols_then_snapshots() {
    let server = start(&["--synthetic", "4", "--rate", "300", "--history", "8"]).await;
    traded(&server, &["S0", "S1"]).await;
    let mut s = open(&server, "/sse?symbols=S0,S1", None).await;
    let mut id = String::new();
    for _ in 0..10 {
        id = s.event().await.id;
    }
    drop(s);
    let s0 = server.hub.universe().id_of("S0").unwrap();
    let s1 = server.hub.universe().id_of("S1").unwrap();
    let gone = (
        server.hub.latest(s0).unwrap().seq,
        server.hub.latest(s1).unwrap().seq,
    );
    server
        .until("the history to forget", |hub| {
            hub.latest(s0).unwrap().seq > gone.0 + 20 && hub.latest(s1).unwrap().seq > gone.1 + 20
        })
        .await;
    let other_epoch = "00000000deadbeef-5";
    for (id, why) in [(id.as_str(), "evicted"), (other_epoch, "another run")] {
        let mut s = open(&server, "/sse?symbols=S0,S1", Some(id)).await;
        let reset = s.event().await;
        assert_eq!(reset.event, "reset", "{why}: {reset:?}");
        let mut named: Reset = serde_json::from_str(&reset.data).unwrap();
        named.symbols.sort();
        assert_eq!(named.symbols, ["S0", "S1"], "{why}");
        assert!(
            EventId::parse(&reset.id).is_some(),
            "the reset has an id too"
        );
        let mut snaps: Vec<String> = Vec::new();
        for _ in 0..2 {
            let e = s.event().await;
            assert_eq!(e.event, "snapshot", "{why}: {e:?}");
            snaps.push(tick_of(&e).0["sym"].as_str().unwrap().into());
        }
        snaps.sort();
        assert_eq!(snaps, ["S0", "S1"]);
        // Then live, in order.
        let mut check = SeqCheck::default();
        while check.ticks < 50 {
            check.see(&tick_of(&s.event().await).0);
        }
    }
    assert_eq!(server.hub.metrics().snapshot_totals().resumes_lost, 4);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_stream_gets_heartbeat_comments() {
    let server = start(&["--synthetic", "1", "--rate", "0.001", "--heartbeat", "0.2"]).await;
    let mut s = open(&server, "/sse?symbols=S0", None).await;
    within(async {
        while s.parser.comments < 4 {
            let frame = s.body.frame().await.unwrap().unwrap();
            let data = frame.into_data().unwrap();
            let events = s.parser.feed(&data);
            assert!(events.is_empty(), "nothing but comments: {events:?}");
        }
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_stream_sends_at_most_the_newest_tick_per_interval() {
    let server = start(&["--synthetic", "1", "--rate", "500"]).await;
    traded(&server, &["S0"]).await;
    let mut s = open(&server, "/sse?symbols=S0&throttle_ms=100", None).await;
    let mut prev = None;
    let mut jumps = 0;
    let started = tokio::time::Instant::now();
    let mut events = 0u32;
    while events < 8 {
        let (v, _) = tick_of(&s.event().await);
        let seq = v["seq"].as_u64().unwrap();
        if let Some(p) = prev {
            assert!(seq > p);
            if seq > p + 1 {
                jumps += 1;
            }
        }
        prev = Some(seq);
        events += 1;
    }
    // 8 events (a snapshot, one tick at once, then one at each 100 ms
    // window's end) take at least 5 windows; at 500 ticks/s the seqs jump.
    assert!(started.elapsed() >= std::time::Duration::from_millis(500));
    assert!(jumps >= 5, "{jumps}");
    assert!(server.hub.metrics().snapshot_totals().throttled > 100);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_streams_are_refused_with_a_status_and_why() {
    let server = start(&["--synthetic", "2", "--max-symbols", "1"]).await;
    for (path, why) in [
        ("/sse", "symbols"),
        ("/sse?symbols=", "symbols"),
        ("/sse?symbols=NOPE", "NOPE"),
        ("/sse?symbols=S0,S1", "at most 1"),
        ("/sse?symbols=S0&throttle_ms=5", "throttle_ms"),
        ("/sse?symbols=S0&policy=drop", "policy"),
    ] {
        let (status, body) = http_get(server.addr, path).await;
        assert_eq!(status, 400, "{path}");
        assert!(body.contains(why), "{path}: {body}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_is_not_read_is_ended_by_its_bounded_queue() {
    // Queue bound of 16 frames, disconnect policy: a client that stops
    // reading is cut once its queue (and the socket's buffers) fill up.
    let server = start(&[
        "--synthetic",
        "8",
        "--rate",
        "2000",
        "--queue-max-msgs",
        "16",
    ])
    .await;
    let (status, _, mut s) = request(
        &server,
        "/sse?symbols=S0,S1,S2,S3,S4,S5,S6,S7&policy=disconnect",
        None,
    )
    .await;
    assert_eq!(status, 200);
    server
        .until("the slow consumer to be cut", |hub| {
            hub.metrics()
                .snapshot_totals()
                .disconnects_for(tickwire::close::DisconnectReason::SlowConsumer)
                == 1
        })
        .await;
    // What was written before the cut, then the reason, then the end.
    let rest = s.rest().await;
    assert!(
        rest.ends_with(": closing: slow_consumer\n\n"),
        "{}",
        &rest[rest.len().saturating_sub(200)..]
    );
    server.stop().await;
}

const SECRET: &str = "sse-test-secret-sse-test-secret!";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_honours_its_tokens_max_symbols_and_ends_with_token_expired_at_exp() {
    let server = start(&["--synthetic", "4", "--rate", "50", "--auth-secret", SECRET]).await;
    let now = jsonwebtoken::get_current_timestamp();

    // The token's `max_symbols` lowers the server's limit for its streams.
    let small = jwt(
        SECRET,
        &serde_json::json!({"sub":"ann","exp":now+60,"symbols":["*"],"max_symbols":2}),
    );
    let (status, body) =
        http_get(server.addr, &format!("/sse?symbols=S0,S1,S2&token={small}")).await;
    assert_eq!(status, 400);
    assert!(body.contains("at most 2"), "{body}");

    // A token that expires within about a second: ticks, then the error
    // event (no id: the last id still says where the client is), then the
    // end of the stream with the reason.
    let short = jwt(
        SECRET,
        &serde_json::json!({"sub":"ann","exp":now+1,"symbols":["*"]}),
    );
    let mut s = open(&server, &format!("/sse?symbols=S0&token={short}"), None).await;
    let mut last_id = String::new();
    let error = loop {
        let e = s.event().await;
        if e.event == "error" {
            break e;
        }
        tick_of(&e);
        last_id = e.id.clone();
    };
    assert_eq!(error.event, tickwire_protocol::sse::EVENT_ERROR);
    assert_eq!(error.id, last_id, "the error event carries no id");
    let v: Value = serde_json::from_str(&error.data).unwrap();
    assert_eq!(
        (v["type"].as_str(), v["code"].as_str()),
        (Some("error"), Some("token_expired"))
    );
    assert_eq!(s.rest().await, ": closing: token_expired\n\n");
    let totals = server.hub.metrics().snapshot_totals();
    assert_eq!(
        totals.disconnects_for(tickwire::close::DisconnectReason::TokenExpired),
        1
    );
    // The browser's EventSource reconnects with the same URL: a 401 ends it.
    let (status, _) = http_get(server.addr, &format!("/sse?symbols=S0&token={short}")).await;
    assert_eq!(status, 401);
    server.stop().await;
}
