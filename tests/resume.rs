//! Protocol v1.1 over real sockets: the welcome, history, resume after a
//! reconnect (recovered or not, never a silent hole), `/api/history`, and the
//! slow consumer that learns why it was dropped.

mod common;

use common::*;
use serde_json::{json, Value};
use tickwire::close::DisconnectReason;
use tickwire_protocol::HistoryPage;

const FAST: &[&str] = &["--synthetic", "4", "--rate", "500"];

/// Reads until a tick of `sym` with seq >= `seq` is seen; returns its seq.
async fn read_to(c: &mut Client, sym: &str, seq: u64) -> u64 {
    loop {
        let v = c.json().await;
        if v["type"] == "tick" && v["sym"] == sym && v["seq"].as_u64().unwrap() >= seq {
            return v["seq"].as_u64().unwrap();
        }
    }
}

/// The seq a first client of `sym` has when it leaves, and the server's
/// latest seq once `ahead` more ticks have happened.
async fn missed(server: &TestServer, sym: &str, ahead: u64) -> u64 {
    let mut c = server.client(&format!("/ws?symbols={sym}")).await;
    let last = read_to(&mut c, sym, 1).await;
    drop(c);
    let id = server.hub.universe().id_of(sym).unwrap();
    server
        .until("the feed to move on", |hub| {
            hub.latest(id).is_some_and(|t| t.seq >= last + ahead)
        })
        .await;
    last
}

fn resume(sym: &str, from: u64, epoch: &Value) -> String {
    json!({"op":"subscribe","symbols":[sym],"from":{sym: from},"epoch":epoch,"id":1}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_starts_with_a_welcome_naming_the_epoch_and_limits() {
    let server = start(&["--history", "64", "--max-symbols", "7"]).await;
    let a = server.client("/ws?policy=disconnect").await;
    let b = server.client("/ws").await;
    let w = &a.welcome;
    assert_eq!(w["version"], "1.1");
    assert_eq!(w["epoch"].as_str().unwrap().len(), 16);
    assert_eq!(w["epoch"], b.welcome["epoch"], "one epoch per server run");
    assert_eq!(
        (
            &w["history"],
            &w["max_symbols"],
            &w["heartbeat_ms"],
            &w["policy"]
        ),
        (&json!(64), &json!(7), &json!(5000), &json!("disconnect"))
    );
    assert_eq!(b.welcome["policy"], "conflate");
    server.stop().await;
    // A new run numbers seqs from 1 again: a new epoch says so.
    let again = start(&[]).await;
    let c = again.client("/ws").await;
    assert_ne!(c.welcome["epoch"], a.welcome["epoch"]);
    again.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_within_the_history_replays_every_missed_tick_then_goes_live() {
    let server = start(FAST).await;
    let last = missed(&server, "S1", 50).await;
    let mut c = server.client("/ws").await;
    let epoch = c.welcome["epoch"].clone();
    c.send(&resume("S1", last, &epoch)).await;
    assert_eq!(
        c.json().await,
        json!({"type":"subscribed","id":1,"symbols":["S1"],"recovered":{"S1":true}})
    );
    // The missed ticks (original messages: type tick, no snapshot), then
    // the live stream, with no gap and no duplicate across the seam.
    let mut check = SeqCheck::default();
    let mut expected = last + 1;
    while check.ticks < 300 {
        let v = c.json().await;
        assert_eq!(v["type"], "tick", "{v}");
        assert_eq!(v["seq"], expected, "{v}");
        expected += 1;
        check.see(&v);
    }
    let totals = server.hub.metrics().snapshot_totals();
    assert_eq!((totals.resumes_recovered, totals.resumes_lost), (1, 0));
    assert!(totals.replayed_ticks >= 50);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_that_cannot_be_served_says_so_and_sends_the_snapshot() {
    // History of 8 ticks, queue of 16 frames.
    let server = start(&[
        "--synthetic",
        "4",
        "--rate",
        "500",
        "--history",
        "8",
        "--queue-max-msgs",
        "16",
    ])
    .await;
    let last = missed(&server, "S2", 40).await;
    let mut c = server.client("/ws").await;
    let epoch = c.welcome["epoch"].clone();
    for (from, epoch, why) in [
        (
            last,
            epoch.clone(),
            "the history no longer holds the missed ticks",
        ),
        (last + 30, json!("0000000000000000"), "another epoch's seq"),
        (u64::MAX - 1, epoch.clone(), "a seq this server never had"),
    ] {
        c.send(&resume("S2", from, &epoch)).await;
        let ack = c.json().await;
        assert_eq!(ack["recovered"], json!({"S2": false}), "{why}: {ack}");
        let snap = c.json().await;
        assert_eq!(snap["type"], "snapshot", "{why}: {snap}");
        assert!(snap["seq"].as_u64().unwrap() > last, "{why}");
        c.send(r#"{"op":"unsubscribe","symbols":["S2"]}"#).await;
        c.json_of("unsubscribed").await;
    }
    assert_eq!(server.hub.metrics().snapshot_totals().resumes_lost, 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_never_bypasses_the_queue_bounds() {
    // The history could serve 200 missed ticks, the queue holds 16.
    let server = start(&[
        "--synthetic",
        "2",
        "--rate",
        "500",
        "--queue-max-msgs",
        "16",
    ])
    .await;
    let last = missed(&server, "S0", 200).await;
    let mut c = server.client("/ws").await;
    let epoch = c.welcome["epoch"].clone();
    c.send(&resume("S0", last, &epoch)).await;
    assert_eq!(c.json().await["recovered"], json!({"S0": false}));
    assert_eq!(c.json().await["type"], "snapshot");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_a_symbol_already_followed_changes_nothing() {
    let server = start(FAST).await;
    let mut c = server.client("/ws?symbols=S3").await;
    c.json_of("subscribed").await;
    let seq = read_to(&mut c, "S3", 1).await;
    let epoch = c.welcome["epoch"].clone();
    c.send(&resume("S3", seq, &epoch)).await;
    let mut check = SeqCheck::default();
    check.see(&json!({"sym":"S3","seq":seq}));
    loop {
        let v = c.json().await;
        if v["type"] == "subscribed" {
            assert_eq!(v["recovered"], json!({"S3": true}));
            break;
        }
        check.see(&v);
    }
    // The stream goes on without a snapshot or a repeat.
    while check.ticks < 50 {
        let v = c.json().await;
        assert_eq!(v["type"], "tick");
        check.see(&v);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_requests_without_an_epoch_or_with_stray_symbols_are_bad_requests() {
    let server = start(FAST).await;
    let mut c = server.client("/ws").await;
    c.send(r#"{"op":"subscribe","symbols":["S0"],"from":{"S0":1},"id":4}"#)
        .await;
    let e = c.json().await;
    assert_eq!((&e["code"], &e["id"]), (&json!("bad_request"), &json!(4)));
    c.send(r#"{"op":"subscribe","symbols":["S0"],"from":{"S1":1},"epoch":"x","id":5}"#)
        .await;
    assert_eq!(c.json().await["code"], "bad_request");
    server.stop().await;
}

async fn history(server: &TestServer, query: &str) -> (u16, String) {
    http_get(server.addr, &format!("/api/history?{query}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_over_http_pages_through_the_same_ticks_the_stream_sent() {
    let server = start(&["--synthetic", "4", "--rate", "500", "--history", "100"]).await;
    // What a live client saw of S0.
    let mut c = server.client("/ws?symbols=S0").await;
    let mut seen = Vec::new();
    while seen.len() < 150 {
        let v = c.json().await;
        if v["type"] == "tick" {
            seen.push(v);
        }
    }
    let first = seen[60]["seq"].as_u64().unwrap();
    let (status, body) = history(&server, &format!("symbol=S0&from={first}&limit=20")).await;
    assert_eq!(status, 200, "{body}");
    let page = HistoryPage::parse(body.as_bytes()).unwrap();
    assert_eq!(page.epoch, c.welcome["epoch"].as_str().unwrap());
    assert!(page.complete);
    assert_eq!(page.ticks.len(), 20);
    assert!(page.last_seq >= seen[149]["seq"].as_u64().unwrap());
    for (i, t) in page.ticks.iter().enumerate() {
        let live: Value = seen[61 + i].clone();
        assert_eq!(t.seq, live["seq"].as_u64().unwrap());
        assert_eq!(
            serde_json::from_slice::<Value>(&t.to_json()).unwrap(),
            live,
            "the same message"
        );
    }
    // Too far back: what is left, marked incomplete.
    let (_, body) = history(&server, "symbol=S0&from=0&limit=1000").await;
    let page = HistoryPage::parse(body.as_bytes()).unwrap();
    assert!(!page.complete);
    assert_eq!(page.ticks.len(), 100);
    assert_eq!(page.ticks[0].seq, page.first_seq);
    // Bad requests.
    assert_eq!(history(&server, "symbol=NOPE").await.0, 404);
    assert_eq!(history(&server, "from=3").await.0, 400);
    assert_eq!(history(&server, "symbol=S0&from=x").await.0, 400);
    assert_eq!(history(&server, "symbol=S0&limit=0").await.0, 400);
    assert_eq!(history(&server, "symbol=S0&limit=1001").await.0, 400);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_stalled_past_the_old_grace_still_learns_it_was_dropped() {
    let server = start(&[
        "--synthetic",
        "10",
        "--rate",
        "2000",
        "--queue-max-msgs",
        "1024",
        "--queue-max-bytes",
        "262144",
    ])
    .await;
    let mut staller = Client::connect(
        server.addr,
        "/ws?symbols=*&policy=disconnect",
        Some(SMALL_RECV_BUFFER),
    )
    .await;
    // The disconnect is counted when it is decided; the grace slot is taken
    // when the writer wakes to send the close frame: both, then.
    server
        .until("the slow-consumer disconnect in its grace slot", |hub| {
            let m = hub.metrics();
            m.snapshot_totals()
                .disconnects_for(DisconnectReason::SlowConsumer)
                == 1
                && m.closing_slow.load(std::sync::atomic::Ordering::Relaxed) == 1
        })
        .await;
    // Stalled longer than the 3 s every other close gets: the point of the
    // test is that time passing does not cost the client its close frame.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    assert_eq!(staller.closed().await, (1008, "slow consumer".to_string()));
    server
        .until("the slot to be given back", |hub| {
            hub.metrics()
                .closing_slow
                .load(std::sync::atomic::Ordering::Relaxed)
                == 0
        })
        .await;
    server.stop().await;
}
