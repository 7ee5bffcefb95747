//! Protocol v1 over real sockets: subscriptions, replies and errors.

mod common;

use common::*;
use fastwebsockets::{Frame, OpCode, Payload};
use serde_json::json;

const FAST: &[&str] = &["--synthetic", "20", "--rate", "200"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_acks_then_snapshots_then_contiguous_ticks() {
    let server = start(FAST).await;
    let mut first = server.client("/ws").await;
    first
        .send(r#"{"op":"subscribe","symbols":["S1"],"id":7}"#)
        .await;
    let ack = first.json().await;
    assert_eq!(ack, json!({"type":"subscribed","id":7,"symbols":["S1"]}));
    // S1 has traded once the first client has a tick of it.
    let tick = first.json_of("tick").await;
    assert_eq!(tick["sym"], "S1");

    let mut second = server.client("/ws").await;
    second
        .send(r#"{"op":"subscribe","symbols":["S1"],"id":"x"}"#)
        .await;
    assert_eq!(
        second.json().await,
        json!({"type":"subscribed","id":"x","symbols":["S1"]})
    );
    let snap = second.json().await;
    assert_eq!(snap["type"], "snapshot");
    assert_eq!(snap["sym"], "S1");
    for field in ["seq", "ts", "px", "qty", "bid", "ask"] {
        assert!(snap[field].is_number(), "snapshot lacks {field}: {snap}");
    }
    // Then ticks continue right after the snapshot's seq, with no hole.
    let mut check = SeqCheck::default();
    check.see(&snap);
    while check.ticks < 100 {
        let t = second.json().await;
        assert_eq!(t["type"], "tick");
        check.see(&t);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_subscribed_symbols_arrive_in_order() {
    let server = start(FAST).await;
    let mut c = server.client("/ws?symbols=S0,S3").await;
    // Subscribing in the URL acks without an id.
    assert_eq!(
        c.json().await,
        json!({"type":"subscribed","symbols":["S0","S3"]})
    );
    let mut check = SeqCheck::default();
    let mut seen = std::collections::HashSet::new();
    while check.ticks < 400 {
        let t = c.json().await;
        let sym = t["sym"].as_str().unwrap().to_string();
        assert!(sym == "S0" || sym == "S3", "unexpected {t}");
        // Prices carry no float noise: at most the instrument's 2 decimals.
        let px = t["px"].to_string();
        assert!(px.split('.').nth(1).is_none_or(|d| d.len() <= 2), "px {px}");
        seen.insert(sym);
        check.see(&t);
    }
    assert_eq!(seen.len(), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_stops_the_stream_at_the_ack() {
    let server = start(FAST).await;
    let mut c = server.client("/ws?symbols=S0,S1").await;
    c.json_of("subscribed").await;
    let mut s0 = 0;
    while s0 < 20 {
        if c.json_of("tick").await["sym"] == "S0" {
            s0 += 1;
        }
    }
    c.send(r#"{"op":"unsubscribe","symbols":["S0"],"id":8}"#)
        .await;
    c.json_of("unsubscribed").await;
    // After the ack: S1 only, for a good while.
    for _ in 0..300 {
        let t = c.json().await;
        assert_eq!(t["sym"], "S1", "after unsubscribe: {t}");
    }
    server.stop().await;
}

/// The fan-out stages each batch before queueing it; an unsubscribe that
/// lands in between must still stop the stream at its ack. Many rounds of
/// subscribe/unsubscribe against a busy feed, with other sessions coming and
/// going (their registry slots are reused), find any tick that slips past.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_tick_follows_an_unsubscribe_ack_however_they_interleave() {
    let server = start(&[
        "--synthetic",
        "8",
        "--rate",
        "2000",
        "--control-rate",
        "1000",
    ])
    .await;
    let churn = {
        let addr = server.addr;
        tokio::spawn(async move {
            for _ in 0..40 {
                let mut c = Client::connect(addr, "/ws?symbols=*", None).await;
                c.json_of("tick").await;
            }
        })
    };
    let mut c = server.client("/ws?symbols=S1").await;
    c.json_of("subscribed").await;
    for round in 0..150 {
        c.send(r#"{"op":"subscribe","symbols":["S0"]}"#).await;
        // Up to the ack, then a few S0 ticks.
        let mut s0 = 0;
        while s0 < 2 {
            if c.json().await["sym"] == "S0" {
                s0 += 1;
            }
        }
        c.send(r#"{"op":"unsubscribe","symbols":["S0"]}"#).await;
        loop {
            if c.json().await["type"] == "unsubscribed" {
                break;
            }
        }
        // S1 keeps streaming; not one S0 tick until the next subscribe.
        for _ in 0..20 {
            let t = c.json().await;
            assert_ne!(
                t["sym"], "S0",
                "round {round}: a tick after the unsubscribe ack: {t}"
            );
        }
    }
    within(churn).await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn star_subscribes_every_symbol() {
    let server = start(FAST).await;
    let mut c = server.client("/ws").await;
    c.send(r#"{"op":"subscribe","symbols":["*"],"id":1}"#).await;
    let ack = c.json_of("subscribed").await;
    assert_eq!(ack["symbols"].as_array().unwrap().len(), 20);
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 20 {
        let t = c.json_of("tick").await;
        seen.insert(t["sym"].as_str().unwrap().to_string());
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symbols_and_ping_ops() {
    let server = start(&[]).await;
    let mut c = server.client("/ws").await;
    c.send(r#"{"op":"symbols","id":9}"#).await;
    let reply = c.json().await;
    assert_eq!(reply["type"], "symbols");
    assert_eq!(reply["id"], 9);
    let list = reply["symbols"].as_array().unwrap();
    assert_eq!(list.len(), 40);
    let aapl = list.iter().find(|s| s["sym"] == "AAPL").unwrap();
    assert_eq!(aapl["tick_size"], "0.01");
    assert_eq!(aapl["class"], "equity");

    c.send(r#"{"op":"ping","id":10}"#).await;
    let pong = c.json().await;
    assert_eq!(pong["type"], "pong");
    assert_eq!(pong["id"], 10);
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let ts = pong["ts"].as_u64().unwrap();
    assert!(
        now_us.abs_diff(ts) < 10_000_000,
        "pong ts {ts} vs now {now_us}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_errors_and_the_connection_stays_open() {
    let server = start(FAST).await;
    let mut c = server.client("/ws").await;

    c.send(r#"{"op":"subscribe","symbols":["S2","NOPE"],"id":5}"#)
        .await;
    assert_eq!(
        c.json().await,
        json!({"type":"subscribed","id":5,"symbols":["S2"]})
    );
    let err = c.json_of("error").await;
    assert_eq!(err["code"], "unknown_symbol");
    assert_eq!(err["id"], 5);
    assert!(err["message"].as_str().unwrap().contains("NOPE"));

    c.send("this is not json").await;
    let err = c.json_of("error").await;
    assert_eq!(err["code"], "bad_request");

    c.send(r#"{"op":"teleport","id":6}"#).await;
    let err = c.json_of("error").await;
    assert_eq!(
        (err["code"].as_str(), err["id"].as_i64()),
        (Some("unknown_op"), Some(6))
    );

    c.send(r#"{"op":"subscribe","id":7}"#).await;
    let err = c.json_of("error").await;
    assert_eq!(err["code"], "bad_request");

    // Still subscribed and streaming.
    assert_eq!(c.json_of("tick").await["sym"], "S2");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symbol_limit_refuses_the_whole_request() {
    let server = start(&["--synthetic", "20", "--rate", "10", "--max-symbols", "3"]).await;
    let mut c = server.client("/ws").await;
    c.send(r#"{"op":"subscribe","symbols":["S0","S1"],"id":1}"#)
        .await;
    c.json_of("subscribed").await;
    c.send(r#"{"op":"subscribe","symbols":["S2","S3"],"id":2}"#)
        .await;
    let err = c.json_of("error").await;
    assert_eq!(err["code"], "too_many_symbols");
    assert_eq!(err["id"], 2);
    // Re-subscribing what it already follows is fine.
    c.send(r#"{"op":"subscribe","symbols":["S0","S2"],"id":3}"#)
        .await;
    assert_eq!(
        c.json_of("subscribed").await["symbols"],
        json!(["S0", "S2"])
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_messages_are_reassembled() {
    let server = start(&[]).await;
    let mut c = server.client("/ws").await;
    let msg = br#"{"op":"ping","id":42}"#;
    c.send_frame(Frame::new(
        false,
        OpCode::Text,
        None,
        Payload::Owned(msg[..10].to_vec()),
    ))
    .await;
    c.send_frame(Frame::new(
        true,
        OpCode::Continuation,
        None,
        Payload::Owned(msg[10..].to_vec()),
    ))
    .await;
    assert_eq!(c.json_of("pong").await["id"], 42);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_oversized_and_garbled_frames_close_only_their_connection() {
    let server = start(FAST).await;
    let mut bystander = server.client("/ws?symbols=S0").await;
    bystander.json_of("subscribed").await;

    let mut binary = server.client("/ws").await;
    binary
        .send_frame(Frame::binary(Payload::Owned(vec![1, 2, 3])))
        .await;
    let (code, reason) = binary.closed().await;
    assert_eq!(code, 1003, "{reason}");

    let mut big = server.client("/ws").await;
    big.send(&format!(r#"{{"op":"ping","pad":"{}"}}"#, "x".repeat(5000)))
        .await;
    assert_eq!(big.closed().await.0, 1009);

    let mut garbled = server.client("/ws").await;
    garbled
        .send_frame(Frame::text(Payload::Owned(vec![b'{', 0xff, 0xfe, b'}'])))
        .await;
    assert_eq!(garbled.closed().await.0, 1007);

    // A message of exactly the limit is fine.
    let mut edge = server.client("/ws").await;
    let base = r#"{"op":"ping","id":1,"pad":""}"#;
    let msg = format!(
        r#"{{"op":"ping","id":1,"pad":"{}"}}"#,
        "x".repeat(4096 - base.len())
    );
    assert_eq!(msg.len(), 4096);
    edge.send(&msg).await;
    assert_eq!(edge.json_of("pong").await["id"], 1);

    // The others kept their stream.
    let mut check = SeqCheck::default();
    while check.ticks < 50 {
        check.see(&bystander.json_of("tick").await);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_storms_are_rate_limited_then_closed_with_1008() {
    let server = start(&["--control-rate", "5", "--max-errors", "20"]).await;
    let mut bystander = server.client("/ws").await;
    let mut abuser = server.client("/ws").await;
    for _ in 0..40 {
        abuser.send("{").await;
    }
    let mut codes = Vec::new();
    let close = loop {
        match abuser.next().await {
            Msg::Json(v) => codes.push(v["code"].as_str().unwrap().to_string()),
            Msg::Close(code, reason) => break (code, reason),
            Msg::Ping => {}
            Msg::Binary(t) => panic!("unexpected binary tick {t:?}"),
        }
    };
    assert_eq!(close, (1008, "too many errors".to_string()));
    assert!(codes.iter().any(|c| c == "bad_request"), "{codes:?}");
    assert!(codes.iter().any(|c| c == "rate_limited"), "{codes:?}");
    // A rate-limited request is named by its id.
    let mut pinger = server.client("/ws").await;
    for id in 0..12 {
        pinger.send(&format!(r#"{{"op":"ping","id":{id}}}"#)).await;
    }
    let err = pinger.json_of("error").await;
    assert_eq!(
        (err["code"].as_str(), err["id"].as_i64()),
        (Some("rate_limited"), Some(10))
    );
    let errors = server.hub.metrics().snapshot_totals().errors;
    assert!(
        errors["bad_request"] >= 1 && errors["rate_limited"] >= 1,
        "{errors:?}"
    );
    // The server keeps serving the others.
    bystander.send(r#"{"op":"ping","id":1}"#).await;
    assert_eq!(bystander.json_of("pong").await["id"], 1);
    server.stop().await;
}
