//! Runs a short load test against an in-process tickwire on a real socket and
//! checks the report is complete and consistent with what the server says it
//! sent. Performance is not asserted here; that is what scenarios are for.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::Value;
use tickwire::config::Config;
use tickwire::server::Server;
use tickwire_loadtest::account::TsUnit;
use tickwire_loadtest::measure::{self, ClientOptions, RunPlan};
use tickwire_loadtest::report::{Machine, ScenarioReport};
use tickwire_loadtest::scenario::SymbolSet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bound on every wait for the server to reach a state.
const DEADLINE: Duration = Duration::from_secs(15);

/// GET /api/stats as JSON.
async fn stats(addr: SocketAddr) -> Value {
    let mut s = TcpStream::connect(addr)
        .await
        .expect("connect for /api/stats");
    s.write_all(b"GET /api/stats HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.unwrap();
    let text = String::from_utf8_lossy(&resp);
    let body = &text[text.find('{').expect("JSON body")..=text.rfind('}').expect("JSON body")];
    serde_json::from_str(body).expect("stats are JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_run_is_complete_and_matches_server_counts() {
    let mut argv = vec![
        "tickwire",
        "--listen",
        "127.0.0.1:0",
        "--synthetic",
        "20",
        "--rate",
        "100",
        "--seed",
        "3",
    ];
    // Every harness client comes from 127.0.0.1: lift the per-address limits.
    argv.extend(tickwire_loadtest::server::TICKWIRE_UNLIMITED.split_whitespace());
    let config = Config::parse_from(argv);
    let server = Server::bind(config).await.expect("tickwire binds");
    let addr = server.local_addr();
    let shutdown = server.shutdown_handle();
    let task = tokio::spawn(server.run());

    let plan = RunPlan {
        label: "in-process".into(),
        url: format!("ws://{addr}/ws"),
        connections: 4,
        stalled: 0,
        ramp: 1000.0,
        subscribe: SymbolSet::First(5),
        stall_subscribe: SymbolSet::All,
        policy: "conflate".into(),
        format: String::new(),
        server_symbols: 20,
        server_rate: 100.0,
        warmup: Duration::from_millis(300),
        duration: Duration::from_millis(1500),
        client: ClientOptions {
            workers: 2,
            ts_unit: TsUnit::Us,
            seed: 1,
            progress: false,
        },
    };
    let r = tokio::task::spawn_blocking(move || measure::run(&plan, None))
        .await
        .unwrap()
        .expect("run completes");

    // Every connection opened, subscribed, and closed cleanly by us.
    assert_eq!(r.opened, 4);
    assert!(r.connect_failures.is_empty(), "{:?}", r.connect_failures);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.closes_by_code, BTreeMap::from([(1000, 4)]));
    assert!(r.os_limit.is_none());
    // A fast client on a light feed sees every tick, in order.
    assert!(r.total.ticks > 0);
    assert_eq!(r.total.gaps, 0, "a fast client saw gaps");
    assert_eq!(r.total.reordered, 0);
    assert!(r.measured.ticks > 0 && r.measured.ticks <= r.total.ticks);
    assert_eq!(r.latency.count, r.measured.ticks);
    assert!(r.latency.p50_us <= r.latency.p99_us && r.latency.p99_us <= r.latency.max_us);
    assert_eq!(r.connect.count, 4);
    // Subscribe replies (and snapshots) are messages but not ticks.
    assert!(r.total.msgs >= r.total.ticks + 4);

    // The server's counts are final once every connection has gone.
    let started = Instant::now();
    let s = loop {
        let s = stats(addr).await;
        if s["connections"].as_u64() == Some(0) {
            break s;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "connections never reached 0: {s}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(s["totals"]["msgs_sent"].as_u64(), Some(r.total.msgs), "{s}");
    assert_eq!(
        s["totals"]["ticks_sent"].as_u64(),
        Some(r.total.ticks),
        "{s}"
    );

    // The JSON report carries every figure.
    let rep = ScenarioReport {
        scenario: "test".into(),
        description: String::new(),
        machine: Machine::detect(),
        runs: vec![r],
        summary: BTreeMap::new(),
    };
    let json: Value = serde_json::to_value(&rep).unwrap();
    let run = &json["runs"][0];
    for key in [
        "msgs_per_sec",
        "delivery_ratio",
        "closes_by_code",
        "connect_failures",
        "total",
        "measured",
        "latency",
        "connect",
        "client_cpu_percent",
    ] {
        assert!(!run[key].is_null(), "report JSON lacks {key}");
    }
    assert_eq!(run["total"]["msgs"].as_u64(), Some(rep.runs[0].total.msgs));
    assert!(run["latency"]["p99_us"].as_f64().unwrap() > 0.0);
    assert!(rep.table().contains("| in-process | 4/4 |"));

    shutdown.trigger();
    let _ = task.await;
}
