//! Goodbye with notice: on SIGTERM every client gets
//! `{"type":"shutdown","in_ms":N}`, the stream goes on for the notice while
//! newcomers get 503, then every connection is closed with 1001.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tickwire::server::admission::RejectReason;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_are_told_and_keep_streaming_until_the_close() {
    let server = start(&[
        "--synthetic",
        "2",
        "--rate",
        "200",
        "--shutdown-notice",
        "600",
    ])
    .await;
    let mut c = server.client("/ws?symbols=*").await;
    c.json_of("subscribed").await;
    let goodbye = server.goodbye.clone();
    let notice = tokio::spawn(async move { goodbye.run().await });
    let n = c.json_of("shutdown").await;
    let told = Instant::now();
    assert_eq!(n["in_ms"], 600);
    // Newcomers are turned away during the notice.
    let r = request(server.addr, "/ws", true, &[]).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["reason"], "shutting_down");
    assert!(r.header("retry-after").is_some());
    assert_eq!(
        request(server.addr, "/api/symbols", false, &[])
            .await
            .status,
        503
    );
    assert!(server.hub.metrics().rejected(RejectReason::ShuttingDown) >= 2);
    // Ticks keep coming, then 1001 once the notice is over.
    let mut ticks = 0;
    let (code, _) = loop {
        match c.next().await {
            Msg::Json(v) if v["type"] == "tick" => ticks += 1,
            Msg::Close(code, reason) => break (code, reason),
            _ => {}
        }
    };
    assert_eq!(code, 1001);
    assert!(ticks > 0, "no tick during the notice");
    assert!(
        told.elapsed() >= Duration::from_millis(500),
        "closed after {:?}",
        told.elapsed()
    );
    within(notice).await.unwrap();
    within(server.task).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_notice_closes_at_once() {
    let server = start(&["--shutdown-notice", "0"]).await;
    let mut c = server.client("/ws?symbols=*").await;
    server.goodbye.run().await;
    loop {
        match c.next().await {
            Msg::Json(v) => assert_ne!(v["type"], "shutdown"),
            Msg::Close(code, _) => break assert_eq!(code, 1001),
            _ => {}
        }
    }
    within(server.task).await.unwrap();
}

/// The binary itself: SIGTERM starts the notice, the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_sends_the_notice_then_exits() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tickwire"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--shutdown-notice",
            "300",
            "--synthetic",
            "2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr: std::net::SocketAddr = first
        .rsplit("http://")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut c = Client::connect(addr, "/ws?symbols=*", None).await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(c.json_of("shutdown").await["in_ms"], 300);
    assert_eq!(c.closed().await.0, 1001);
    let exit = within(tokio::task::spawn_blocking(move || child.wait()))
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}
