//! The compact binary encoding (`GET /ws?format=binary`): ticks, snapshots
//! and replays as 56-byte little-endian frames, control messages as JSON.

mod common;

use common::*;
use serde_json::{json, Value};
use tickwire_protocol::{BinaryTick, Decimal, TickKind};

/// The next binary tick, skipping pings; panics on anything else.
async fn binary(c: &mut Client) -> BinaryTick {
    loop {
        match c.next().await {
            Msg::Binary(b) => return b,
            Msg::Ping => {}
            other => panic!("expected a binary tick, got {other:?}"),
        }
    }
}

fn decimal(units: i64, size: &str) -> Decimal {
    let size: Decimal = size.parse().unwrap();
    Decimal::new(units * size.units(), size.scale())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_clients_get_the_same_ticks_in_56_bytes() {
    let server = start(&["--synthetic", "4", "--rate", "300"]).await;
    let (_, body) = http_get(server.addr, "/api/symbols").await;
    let symbols: Value = serde_json::from_str(&body).unwrap();
    let s2 = symbols["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sym"] == "S2")
        .unwrap()
        .clone();
    let id = s2["id"].as_u64().unwrap() as u32;
    let tick_size = s2["tick_size"].as_str().unwrap().to_string();
    let lot_size = s2["lot_size"].as_str().unwrap().to_string();

    let mut text = server.client("/ws?symbols=S2").await;
    let mut bin = server.client("/ws?symbols=S2&format=binary").await;
    assert_eq!(bin.welcome["format"], "binary");
    assert_eq!(text.welcome["format"], "json");
    // Control messages stay JSON: the ack, then the snapshot as binary.
    assert_eq!(
        bin.json().await,
        json!({"type":"subscribed","symbols":["S2"]})
    );
    // A symbol that has not ticked yet since the start has no snapshot: then
    // the first live tick comes first.
    let snap = binary(&mut bin).await;
    assert_eq!(snap.symbol_id, id);
    assert!(matches!(snap.kind, TickKind::Snapshot | TickKind::Tick));
    // Ticks follow the snapshot without a hole, and say what the JSON
    // stream says for the same seq, exactly.
    let mut json_by_seq = std::collections::HashMap::new();
    text.json_of("subscribed").await;
    let mut next = snap.seq + 1;
    while next < snap.seq + 200 {
        let b = binary(&mut bin).await;
        assert_eq!((b.kind, b.symbol_id, b.seq), (TickKind::Tick, id, next));
        next += 1;
        while !json_by_seq.contains_key(&b.seq) {
            let v = text.json().await;
            if v["type"] == "tick" {
                json_by_seq.insert(v["seq"].as_u64().unwrap(), v);
            }
        }
        let v = &json_by_seq[&b.seq];
        assert_eq!(v["ts"].as_u64().unwrap(), b.ts);
        let text_px: Decimal = v["px"].to_string().parse().unwrap();
        assert_eq!(decimal(b.px_ticks, &tick_size), text_px);
        let text_qty: Decimal = v["qty"].to_string().parse().unwrap();
        assert_eq!(decimal(b.qty_lots, &lot_size), text_qty);
        assert!(b.bid_ticks < b.ask_ticks);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_clients_resume_with_binary_replays() {
    let server = start(&["--synthetic", "2", "--rate", "500"]).await;
    let mut first = server.client("/ws?symbols=S1&format=binary").await;
    first.json_of("subscribed").await;
    let last = loop {
        let b = binary(&mut first).await;
        if b.kind == TickKind::Tick {
            break b.seq;
        }
    };
    drop(first);
    server
        .until("the feed to move on", |hub| {
            hub.latest(1).is_some_and(|t| t.seq >= last + 30)
        })
        .await;
    let mut c = server.client("/ws?format=binary").await;
    let epoch = c.welcome["epoch"].clone();
    c.send(
        &json!({"op":"subscribe","symbols":["S1"],"from":{"S1":last},"epoch":epoch}).to_string(),
    )
    .await;
    assert_eq!(c.json().await["recovered"], json!({"S1": true}));
    for seq in last + 1..last + 100 {
        let b = binary(&mut c).await;
        assert_eq!((b.kind, b.seq), (TickKind::Tick, seq));
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_format_is_refused_over_http() {
    let server = start(&[]).await;
    let (status, body) = http_get(server.addr, "/ws?format=xml").await;
    // Not an upgrade request: the plain endpoint says to use WebSocket.
    assert_eq!(status, 400, "{body}");
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET /ws?format=xml HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").await.unwrap();
    let mut buf = vec![0; 512];
    let n = within(s.read(&mut buf)).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(head.contains("format must be json or binary"), "{head}");
    server.stop().await;
}
