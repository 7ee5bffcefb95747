//! Connection lifecycle and the HTTP side: pings, idle timeout, heartbeats,
//! shutdown, restarts, limits, mass connects, and the plain endpoints.

mod common;

use common::*;
use fastwebsockets::{Frame, Payload};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_keep_answering_clients_and_the_idle_are_closed() {
    let server = start(&["--ping", "0.2", "--idle-timeout", "1"]).await;
    let mut silent = server.client("/ws").await;
    silent.ws.set_auto_pong(false);
    let mut live = server.client("/ws").await;
    live.ws.set_auto_pong(false);

    // `live` answers pings by hand, for longer than the idle timeout.
    let mut pings = 0;
    while pings < 7 {
        if let Msg::Ping = live.next().await {
            pings += 1;
            live.send_frame(Frame::pong(Payload::Owned(b"tickwire".to_vec())))
                .await;
        }
    }
    // `silent` never answered: pinged, then closed for being idle.
    let mut silent_pings = 0;
    let close = loop {
        match silent.next().await {
            Msg::Ping => silent_pings += 1,
            Msg::Close(code, reason) => break (code, reason),
            Msg::Json(v) => panic!("unexpected {v}"),
            Msg::Binary(t) => panic!("unexpected binary tick {t:?}"),
        }
    };
    assert_eq!(close, (1001, "idle timeout".to_string()));
    assert!(silent_pings >= 3, "{silent_pings} pings before the close");
    // `live` is still open.
    live.send(r#"{"op":"ping","id":1}"#).await;
    assert_eq!(live.json_of("pong").await["id"], 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_connections_get_heartbeats() {
    let server = start(&["--heartbeat", "0.2"]).await;
    let mut c = server.client("/ws").await;
    let hb = c.json().await;
    assert_eq!(hb["type"], "heartbeat");
    assert!(hb["ts"].as_u64().unwrap() > 1_700_000_000_000_000);
    assert_eq!(c.json().await["type"], "heartbeat");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_everyone_with_1001_and_frees_the_port() {
    let server = start(&["--synthetic", "5", "--rate", "500"]).await;
    let addr = server.addr;
    let mut a = server.client("/ws?symbols=*").await;
    let mut b = server.client("/ws").await;
    a.json_of("tick").await;
    server.stop().await;
    assert_eq!(a.closed().await, (1001, "server shutting down".to_string()));
    assert_eq!(b.closed().await, (1001, "server shutting down".to_string()));
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());

    // A new server takes the same port back at once.
    let config = <tickwire::config::Config as clap::Parser>::parse_from([
        "tickwire",
        "--listen",
        &addr.to_string(),
    ]);
    let again = start_with(config).await;
    assert_eq!(again.addr, addr);
    assert_eq!(http_get(addr, "/healthz").await.0, 200);
    again.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_endpoints_return_well_formed_data() {
    let server = start(&["--synthetic", "5", "--rate", "500"]).await;
    let mut c = server.client("/ws?symbols=S0").await;
    c.json_of("tick").await;
    let addr = server.addr;

    assert_eq!(http_get(addr, "/healthz").await, (200, "ok\n".to_string()));

    let (status, body) = http_get(addr, "/api/symbols").await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["symbols"].as_array().unwrap().len(), 5);
    assert_eq!(v["symbols"][0]["sym"], "S0");

    let (status, body) = http_get(addr, "/api/snapshot?symbols=S0,NOPE").await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["snapshots"][0]["sym"], "S0");
    assert_eq!(v["snapshots"][0]["type"], "snapshot");
    assert!(v["snapshots"][0]["seq"].as_u64().unwrap() >= 1);
    assert_eq!(v["unknown"], serde_json::json!(["NOPE"]));

    // Stats roll every second: wait for a roll that saw our ticks.
    let stats = within(async {
        loop {
            let (status, body) = http_get(addr, "/api/stats").await;
            assert_eq!(status, 200);
            let v: Value = serde_json::from_str(&body).unwrap();
            // The feed counts a batch after publishing it, so the first
            // rolled second can hold deliveries but no generated ticks yet.
            if v["latency_us"]["window_10s"]["count"].as_u64().unwrap() > 0
                && v["rates"]["ticks_per_s"].as_f64().unwrap() > 0.0
            {
                break v;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(stats["connections"], 1);
    assert_eq!(stats["subscriptions"], 1);
    assert_eq!(stats["symbols"], 5);
    assert!(stats["totals"]["ticks_sent"].as_u64().unwrap() > 0);
    assert!(stats["rates"]["ticks_per_s"].as_f64().unwrap() > 0.0);
    let lat = &stats["latency_us"]["window_10s"];
    for p in ["p50", "p90", "p99", "p999", "max"] {
        assert!(lat[p].as_f64().unwrap() > 0.0, "{p} in {lat}");
    }
    assert!(lat["p50"].as_f64() <= lat["p99"].as_f64());
    assert!(stats["fanout_us"]["since_start"]["count"].as_u64().unwrap() > 0);

    let (status, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200);
    for needle in [
        "tickwire_connections 1",
        "tickwire_ticks_generated_total ",
        "tickwire_conflated_ticks_total 0",
        "tickwire_disconnects_total{reason=\"slow_consumer\"} 0",
        "tickwire_request_errors_total{code=\"rate_limited\"} 0",
        "tickwire_tick_latency_seconds_bucket{le=\"+Inf\"}",
        "tickwire_fanout_seconds_count",
    ] {
        assert!(body.contains(needle), "/metrics lacks {needle}");
    }

    let (status, body) = http_get(addr, "/ws").await;
    assert_eq!(status, 400);
    assert!(body.contains("WebSocket"));
    let (status, body) = http_get(addr, "/nope").await;
    assert_eq!(status, 404);
    assert!(serde_json::from_str::<Value>(&body).unwrap()["error"].is_string());
    server.stop().await;
}

/// Sends a WebSocket upgrade by hand and returns the status line.
async fn raw_upgrade(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = vec![0; 1024];
    let n = within(s.read(&mut buf)).await.unwrap();
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_and_bad_policy_are_refused_over_http() {
    let server = start(&["--max-connections", "2"]).await;
    let _a = server.client("/ws").await;
    let _b = server.client("/ws").await;
    assert!(raw_upgrade(server.addr, "/ws").await.contains(" 503 "));
    assert_eq!(
        server.hub.metrics().snapshot_totals().rejected_connections,
        1
    );
    assert!(raw_upgrade(server.addr, "/ws?policy=drop")
        .await
        .contains(" 400 "));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_simultaneous_connects_all_get_in() {
    const N: usize = 500;
    // All from 127.0.0.1 at once: lift the per-address limits.
    let server = start(&[
        "--synthetic",
        "10",
        "--rate",
        "20",
        "--max-connections-per-ip",
        "0",
        "--handshake-rate",
        "0",
        "--max-pending-per-ip",
        "0",
    ])
    .await;
    let addr = server.addr;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..N {
        set.spawn(async move {
            let mut c = Client::connect(addr, &format!("/ws?symbols=S{}", i % 10), None).await;
            c.json_of("subscribed").await;
            c
        });
    }
    let clients = within(set.join_all()).await;
    assert_eq!(clients.len(), N);
    server
        .until("every connection counted", |hub| {
            hub.metrics()
                .connections
                .load(std::sync::atomic::Ordering::Relaxed)
                == N as i64
        })
        .await;
    drop(clients);
    server
        .until("every connection gone", |hub| {
            let m = hub.metrics();
            m.connections.load(std::sync::atomic::Ordering::Relaxed) == 0
                && m.subscriptions.load(std::sync::atomic::Ordering::Relaxed) == 0
        })
        .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_match_messages_received() {
    let server = start(&["--synthetic", "5", "--rate", "500"]).await;
    let mut c = server.client("/ws?symbols=S0,S1").await;
    let mut text = 1u64; // the welcome, read by connect

    let mut ticks = 0u64;
    while ticks < 300 {
        let v = c.json().await;
        text += 1;
        if v["type"] == "tick" {
            ticks += 1;
        }
    }
    // Stop the stream, count through its ack, then close: after the ack
    // nothing but the close echo comes.
    c.send(r#"{"op":"unsubscribe","symbols":["*"],"id":1}"#)
        .await;
    loop {
        let v = c.json().await;
        text += 1;
        match v["type"].as_str() {
            Some("tick") => ticks += 1,
            Some("unsubscribed") => break,
            _ => {}
        }
    }
    c.send_frame(Frame::close(1000, b"done")).await;
    assert_eq!(c.closed().await.0, 1000);
    server
        .until("the connection to close", |hub| {
            hub.metrics()
                .connections
                .load(std::sync::atomic::Ordering::Relaxed)
                == 0
        })
        .await;
    let totals = server.hub.metrics().snapshot_totals();
    assert_eq!((totals.msgs_sent, totals.ticks_sent), (text, ticks));
    assert_eq!(
        totals.disconnects_for(tickwire::close::DisconnectReason::Client),
        1
    );
    server.stop().await;
}
