//! Slow consumers: a client that stops reading costs only itself.

mod common;

use common::*;
use tickwire::close::DisconnectReason;

/// 10 symbols at 2,000 ticks/s each. A client of all ten that stops reading
/// fills its queue within a second; a reader of one symbol has half a second
/// of scheduling slack before its queue would fill.
const BUSY: &[&str] = &[
    "--synthetic",
    "10",
    "--rate",
    "2000",
    "--queue-max-msgs",
    "1024",
    "--queue-max-bytes",
    "262144",
];

/// Reads `count` ticks from a client, asserting per-symbol contiguity.
fn fast_reader(mut c: Client, count: u64) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut check = SeqCheck::default();
        while check.ticks < count {
            let v = c.json().await;
            if v["type"] == "tick" || v["type"] == "snapshot" {
                check.see(&v);
            }
        }
        check.ticks
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_policy_closes_a_stalled_client_with_1008() {
    let server = start(BUSY).await;
    let reader = server.client("/ws?symbols=S0&policy=disconnect").await;
    let reader = fast_reader(reader, 4000);

    // Subscribes to everything, then stops reading.
    let mut staller = Client::connect(
        server.addr,
        "/ws?symbols=*&policy=disconnect",
        Some(SMALL_RECV_BUFFER),
    )
    .await;
    server
        .until("the slow-consumer disconnect", |hub| {
            hub.metrics()
                .snapshot_totals()
                .disconnects_for(DisconnectReason::SlowConsumer)
                == 1
        })
        .await;
    // Reading again, it finds what was in flight, then the close.
    assert_eq!(staller.closed().await, (1008, "slow consumer".to_string()));

    // Meanwhile the fast reader kept a contiguous stream and was not closed.
    assert_eq!(within(reader).await.unwrap(), 4000);
    let totals = server.hub.metrics().snapshot_totals();
    assert_eq!(totals.disconnects_for(DisconnectReason::SlowConsumer), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflate_policy_bounds_a_stalled_client_and_resumes_fresh() {
    let server = start(BUSY).await;
    let reader = fast_reader(server.client("/ws?symbols=S9").await, 4000);

    let mut staller = Client::connect(
        server.addr,
        "/ws?symbols=*&policy=conflate",
        Some(SMALL_RECV_BUFFER),
    )
    .await;
    server
        .until("conflation", |hub| {
            hub.metrics().snapshot_totals().conflated > 2000
        })
        .await;
    // Stalled and conflating: its backlog is at most the queue bound plus one
    // tick per subscribed symbol, however long it stalls.
    let worst = server.state.sessions.backlogs().into_iter().max().unwrap();
    assert!(worst.0 <= 1024 + 10, "backlog {worst:?}");
    assert!(worst.1 <= 262_144 + 10 * 200, "backlog {worst:?}");
    let mark = server
        .hub
        .latest(server.hub.universe().id_of("S0").unwrap())
        .unwrap()
        .seq;

    // Resumes: every symbol still in seq order, with jumps where ticks were
    // conflated, and the stream catches up with the present.
    let mut last = std::collections::HashMap::new();
    let mut jumps = 0;
    loop {
        let t = staller.json().await;
        if t["type"] != "tick" && t["type"] != "snapshot" {
            continue;
        }
        let sym = t["sym"].as_str().unwrap().to_string();
        let seq = t["seq"].as_u64().unwrap();
        if let Some(prev) = last.insert(sym.clone(), seq) {
            assert!(seq > prev, "{sym}: {seq} after {prev}");
            if seq > prev + 1 {
                jumps += 1;
            }
        }
        if sym == "S0" && seq >= mark {
            break;
        }
    }
    assert!(jumps > 0, "a conflated stream shows seq jumps");
    assert_eq!(within(reader).await.unwrap(), 4000);
    assert_eq!(
        server
            .hub
            .metrics()
            .snapshot_totals()
            .disconnects_for(DisconnectReason::SlowConsumer),
        0
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_replies_is_closed() {
    // Each `symbols` reply is ~6 KiB; the queue allows 8 KiB of ticks, so
    // unread replies hit the 16 KiB hard cap after a few dozen requests
    // (once the kernel buffers are full too).
    let server = start(&[
        "--queue-max-bytes",
        "8192",
        "--control-rate",
        "1000",
        "--max-errors",
        "1000",
    ])
    .await;
    let mut bystander = server.client("/ws?symbols=AAPL").await;
    bystander.json_of("subscribed").await;
    let mut flooder = Client::connect(server.addr, "/ws", Some(SMALL_RECV_BUFFER)).await;
    let mut sent = 0;
    while server
        .hub
        .metrics()
        .snapshot_totals()
        .disconnects_for(DisconnectReason::SlowConsumer)
        == 0
    {
        assert!(sent < 20_000, "never closed after {sent} requests");
        flooder.send(r#"{"op":"symbols"}"#).await;
        sent += 1;
        if sent % 100 == 0 {
            tokio::task::yield_now().await;
        }
    }
    assert_eq!(flooder.closed().await, (1008, "slow consumer".to_string()));
    bystander.send(r#"{"op":"ping","id":2}"#).await;
    assert_eq!(bystander.json_of("pong").await["id"], 2);
    server.stop().await;
}
