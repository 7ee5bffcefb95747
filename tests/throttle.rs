//! Throttled views (docs/PROTOCOL.md, "Throttled views").
//!
//! The timing rules are checked on the hub itself with tokio's clock paused
//! (time moves only when the test says so, so "within the interval" and "at
//! its end" are exact, not raced): at most one tick per interval, always the
//! newest; the first tick after a quiet interval at once; the seq jump and
//! the folded count; a change of throttle at once; an unsubscribe drops what
//! was held. Over a real socket: `throttle_ms` on subscribe and on `/ws`,
//! the `bad_request` for values out of range, and a switch from a throttled
//! view to every tick with no hole and no duplicate at the seam.

mod common;

use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use serde_json::json;
use tickwire::feed::{Tick, Universe};
use tickwire::hub::{Hub, Publisher, Start};
use tickwire::metrics::Metrics;
use tickwire::outbox::{FrameQueue, Limits, Next, Outbox, Policy};
use tickwire_protocol::tick::{scan, Scanned};

fn tick(seq: u64) -> Tick {
    tick_of(0, seq)
}

fn tick_of(sym: u32, seq: u64) -> Tick {
    Tick {
        sym,
        seq,
        ts_us: 1,
        px: 100,
        qty: 1,
        bid: 99,
        ask: 101,
    }
}

struct Rig {
    hub: Arc<Hub>,
    publisher: Publisher,
    outbox: Arc<Outbox>,
}

impl Rig {
    fn new() -> Rig {
        let metrics = Arc::new(Metrics::default());
        let hub = Arc::new(Hub::new(
            Arc::new(Universe::synthetic(2, 1.0)),
            metrics.clone(),
            "e".into(),
            16,
        ));
        let outbox = Arc::new(Outbox::new(
            Limits {
                max_msgs: 100,
                max_bytes: 1 << 20,
            },
            Policy::Conflate,
            metrics,
        ));
        Rig {
            publisher: Publisher::new(hub.clone()),
            hub,
            outbox,
        }
    }

    fn publish(&mut self, seq: u64) {
        self.publisher.publish(&tick(seq));
        self.publisher.finish_batch();
    }

    fn publish_of(&mut self, sym: u32, seq: u64) {
        self.publisher.publish(&tick_of(sym, seq));
        self.publisher.finish_batch();
    }

    /// The seqs of the ticks the writer would get now.
    fn drain(&self) -> Vec<u64> {
        self.drain_of().into_iter().map(|(_, seq)| seq).collect()
    }

    /// (symbol id, seq) of the ticks the writer would get now, in order.
    fn drain_of(&self) -> Vec<(u32, u64)> {
        let mut batch = FrameQueue::default();
        let mut cx = Context::from_waker(Waker::noop());
        let mut seqs = Vec::new();
        if let Poll::Ready(Next::Frames) = self.outbox.poll_next(&mut cx, &mut batch) {
            for (bytes, _) in batch.iter() {
                let mut rest = bytes;
                while !rest.is_empty() {
                    let len = rest[1] as usize;
                    if let Scanned::Tick { sym, seq, .. } = scan(&rest[2..2 + len]) {
                        let sym = std::str::from_utf8(&sym[1..]).unwrap().parse().unwrap();
                        seqs.push((sym, seq));
                    }
                    rest = &rest[2 + len..];
                }
            }
        }
        seqs
    }

    fn folded(&self) -> (u64, u64) {
        let t = self.hub.metrics().snapshot_totals();
        (t.throttled, t.throttled_delayed)
    }
}

/// Lets time pass (paused clock) and the timer task run.
async fn pass(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    // The timer task runs on this same thread: let it finish its round.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn at_most_one_tick_per_interval_always_the_newest_and_the_first_after_quiet_at_once() {
    let mut r = Rig::new();
    r.hub
        .subscribe(&r.outbox, &[(0, Start::Snapshot)], 100, |_| Bytes::new());
    // Quiet so far: the first tick goes at once, and the interval starts.
    r.publish(1);
    assert_eq!(r.drain(), vec![1]);
    // Within the interval: held, each replacing the one before.
    for seq in 2..=5 {
        pass(10).await;
        r.publish(seq);
        assert_eq!(r.drain(), Vec::<u64>::new(), "seq {seq} waits");
    }
    // t = 40 ms. Nothing until the interval ends at 100 ms...
    pass(55).await;
    assert_eq!(r.drain(), Vec::<u64>::new());
    // ...then the newest only: the seq jump (1 -> 5) says 3 were folded.
    pass(10).await;
    assert_eq!(r.drain(), vec![5]);
    assert_eq!(r.folded(), (3, 1));
    // A tick within the next interval (100..200 ms) waits for its end.
    pass(20).await;
    r.publish(6);
    assert_eq!(r.drain(), Vec::<u64>::new());
    pass(90).await;
    assert_eq!(r.drain(), vec![6]);
    // Window 300..400 ms has no tick at all but 300..365 would not do: the
    // window before it (200..300) had its message (6, sent at 200), so a
    // tick now waits for the window's end...
    pass(150).await;
    assert_eq!(r.drain(), Vec::<u64>::new());
    r.publish(7);
    assert_eq!(r.drain(), Vec::<u64>::new());
    pass(40).await;
    assert_eq!(r.drain(), vec![7]);
    // ...while after a whole quiet window (500..600 ms) the next tick goes at
    // once, whenever it comes.
    pass(250).await;
    r.publish(8);
    assert_eq!(r.drain(), vec![8], "the first tick after a quiet interval");
    r.publish(9);
    assert_eq!(r.drain(), Vec::<u64>::new());
    assert_eq!(r.folded(), (3, 3));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_held_ticks_of_all_a_connections_symbols_go_out_together_at_the_window_end() {
    let mut r = Rig::new();
    r.hub.subscribe(
        &r.outbox,
        &[(0, Start::Snapshot), (1, Start::Snapshot)],
        100,
        |_| Bytes::new(),
    );
    // Both symbols start quiet: their first ticks go at once, at different
    // moments of the first window (0 and 30 ms)...
    r.publish_of(0, 1);
    assert_eq!(r.drain_of(), vec![(0, 1)]);
    pass(30).await;
    r.publish_of(1, 1);
    assert_eq!(r.drain_of(), vec![(1, 1)]);
    // ...and from then on both wait for the same window ends: each end
    // finds the writer both ticks at once.
    for seq in 2..=4 {
        r.publish_of(0, seq);
        r.publish_of(1, seq);
        assert_eq!(r.drain_of(), vec![]);
        pass(100).await;
        assert_eq!(r.drain_of(), vec![(0, seq), (1, seq)], "window {seq}");
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_new_throttle_takes_effect_at_once_and_an_unsubscribe_drops_what_was_held() {
    let mut r = Rig::new();
    r.hub
        .subscribe(&r.outbox, &[(0, Start::Snapshot)], 1000, |_| Bytes::new());
    r.publish(1);
    r.publish(2);
    r.publish(3);
    assert_eq!(r.drain(), vec![1]);
    // Every tick from now on: the held tick goes now, then each tick.
    r.hub.set_throttle(&r.outbox, &[0], 0);
    assert_eq!(r.drain(), vec![3]);
    r.publish(4);
    r.publish(5);
    assert_eq!(r.drain(), vec![4, 5]);
    // Throttled again, at another interval: it starts quiet.
    r.hub.set_throttle(&r.outbox, &[0], 50);
    r.publish(6);
    r.publish(7);
    assert_eq!(r.drain(), vec![6]);
    pass(50).await;
    assert_eq!(r.drain(), vec![7]);
    // The old 1000 ms view is gone: nothing comes at its deadline.
    r.publish(8);
    pass(2000).await;
    assert_eq!(r.drain(), vec![8]);
    // An unsubscribe drops a held tick: nothing after the ack.
    r.publish(9);
    r.publish(10);
    assert_eq!(r.drain(), vec![9]);
    r.hub.unsubscribe(&r.outbox, &[0]);
    pass(100).await;
    r.publish(11);
    pass(100).await;
    assert_eq!(r.drain(), Vec::<u64>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttle_ms_out_of_range_is_a_bad_request_on_subscribe_and_on_connect() {
    let server = start(&["--synthetic", "2"]).await;
    let mut c = server.client("/ws").await;
    for bad in ["5", "9", "60001"] {
        c.send(&format!(
            r#"{{"op":"subscribe","symbols":["S0"],"throttle_ms":{bad},"id":9}}"#
        ))
        .await;
        let e = c.json_of("error").await;
        assert_eq!(
            (&e["code"], &e["id"]),
            (&json!("bad_request"), &json!(9)),
            "{e}"
        );
    }
    for bad in ["5", "60001", "x", "-1"] {
        let (status, body) = http_get_upgrade(server.addr, &format!("/ws?throttle_ms={bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.contains("throttle_ms"), "{body}");
    }
    server.stop().await;
}

/// A WebSocket upgrade request that is refused: its status and body.
async fn http_get_upgrade(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    within(async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!(
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: upgrade, close\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8_lossy(&raw).to_string();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        (head.split(' ').nth(1).unwrap().parse().unwrap(), body.to_string())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_connection_folds_ticks_and_a_resubscribe_switches_to_every_tick_seamlessly() {
    // One symbol at 500 ticks/s; the connection's default throttle is long
    // enough that nothing but the first tick comes while the test looks.
    let server = start(&["--synthetic", "1", "--rate", "500"]).await;
    let mut c = server.client("/ws?throttle_ms=60000").await;
    c.send(r#"{"op":"subscribe","symbols":["S0"],"id":1}"#)
        .await;
    assert_eq!(c.json().await["type"], "subscribed");
    // The snapshot (if the feed has ticked), then the first tick at once.
    let first = loop {
        let v = c.json().await;
        if v["type"] == "tick" {
            break v["seq"].as_u64().unwrap();
        }
    };
    // Let the feed move on: those ticks are held, each replacing the last.
    server
        .until("ticks to be folded", |hub| {
            hub.metrics().snapshot_totals().throttled >= 20
        })
        .await;
    let before = server.hub.latest(0).unwrap().seq;
    // Every tick from now: the held tick (the newest, so at least `before`)
    // comes at once, before the ack, then every tick with no hole.
    c.send(r#"{"op":"subscribe","symbols":["S0"],"throttle_ms":0,"id":2}"#)
        .await;
    let held = c.json().await;
    assert_eq!(held["type"], "tick", "{held}");
    let held = held["seq"].as_u64().unwrap();
    assert!(
        held >= before && held > first + 20,
        "{first} {before} {held}"
    );
    // The ack comes once, and live ticks may already precede it: the ticks
    // go on from the held one with no hole and no duplicate.
    let mut acked = false;
    let mut expected = held + 1;
    while expected < held + 200 {
        let v = c.json().await;
        if v["type"] == "subscribed" {
            assert_eq!(v, json!({"type":"subscribed","id":2,"symbols":["S0"]}));
            assert!(!acked);
            acked = true;
            continue;
        }
        assert_eq!(
            (&v["type"], &v["seq"]),
            (&json!("tick"), &json!(expected)),
            "{v}"
        );
        expected += 1;
    }
    assert!(acked);
    let (_, metrics) = http_get(server.addr, "/metrics").await;
    let folded: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tickwire_throttled_ticks_total "))
        .expect("the folded ticks counter")
        .parse()
        .unwrap();
    assert!(folded >= 20, "{folded}");
    server.stop().await;
}
