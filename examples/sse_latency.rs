//! End-to-end latency of Server-Sent Events streams, for bench/README.md
//! ("Throttled views and SSE"): N streams of `GET /sse?symbols=...` read
//! at once for D seconds after a warm-up; each tick's latency is the
//! reader's wall clock minus the tick's `ts` (same machine, same clock).
//!
//! ```sh
//! cargo run --release --example sse_latency -- 127.0.0.1:8080 100 S0,S1,S2,S3,S4,S5,S6,S7,S8,S9 15
//! ```
//!
//! Prints count, p50, p99, p99.9 and max in microseconds, and the seq gaps
//! seen (0 unless the server conflated).

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tickwire_protocol::sse::Parser;
use tickwire_protocol::tick::{scan, Scanned};

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr = args.get(1).cloned().unwrap_or("127.0.0.1:8080".into());
    let streams: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100);
    let symbols = args.get(3).cloned().unwrap_or("S0".into());
    let secs: f64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(15.0);
    let warmup = Duration::from_secs(2);
    let start = Instant::now() + warmup;
    let end = start + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for _ in 0..streams {
        let (addr, symbols) = (addr.clone(), symbols.clone());
        tasks.push(tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect");
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            let req = hyper::Request::get(format!("/sse?symbols={symbols}"))
                .header("host", &addr)
                .body(Empty::<Bytes>::new())
                .unwrap();
            let mut body = send.send_request(req).await.expect("response").into_body();
            let mut parser = Parser::default();
            let mut hist = hdrhistogram::Histogram::<u64>::new(3).unwrap();
            let mut last: HashMap<Vec<u8>, u64> = HashMap::new();
            let mut gaps = 0u64;
            while Instant::now() < end {
                let Some(Ok(frame)) = body.frame().await else {
                    break;
                };
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                let now = now_us();
                let measuring = Instant::now() >= start;
                for e in parser.feed(&data) {
                    if let Scanned::Tick { sym, seq, ts } = scan(e.data.as_bytes()) {
                        if let Some(prev) = last.insert(sym.to_vec(), seq) {
                            gaps += u64::from(seq != prev + 1);
                        }
                        if measuring {
                            let _ = hist.record(now.saturating_sub(ts).max(1));
                        }
                    }
                }
            }
            (hist, gaps)
        }));
    }
    let mut all = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    let mut gaps = 0;
    for t in tasks {
        let (h, g) = t.await.expect("stream task");
        all.add(h).unwrap();
        gaps += g;
    }
    println!(
        "sse streams={streams} count={} p50={}us p99={}us p99.9={}us max={}us gaps={gaps}",
        all.len(),
        all.value_at_quantile(0.5),
        all.value_at_quantile(0.99),
        all.value_at_quantile(0.999),
        all.max()
    );
}
