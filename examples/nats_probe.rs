//! The broker hop on its own: how many messages of a given size one
//! publisher gets through nats-server to one subscriber, as fast as it can.
//! It is what bench/README.md ("Scale-out") compares one message per tick
//! (56 bytes) against one message per generator pass (many ticks) with.
//!
//!     cargo run --release --example nats_probe -- nats://127.0.0.1:4222 56 200000

use std::time::{Duration, Instant};

use futures_util::StreamExt;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let size: usize = args.next().map_or(Ok(56), |s| s.parse())?;
    let count: u64 = args.next().map_or(Ok(100_000), |s| s.parse())?;
    let publisher = async_nats::connect(&url).await?;
    let subscriber = async_nats::ConnectOptions::new()
        .subscription_capacity(1 << 20)
        .connect(&url)
        .await?;
    let mut sub = subscriber.subscribe("probe.ticks").await?;
    // One round trip, so the subscription is in place before publishing.
    subscriber.publish("probe.ticks", "".into()).await?;
    let _ = sub.next().await;
    let payload = bytes::Bytes::from(vec![7u8; size]);
    let started = Instant::now();
    let sending = tokio::spawn(async move {
        for _ in 0..count {
            publisher.publish("probe.ticks", payload.clone()).await?;
        }
        publisher.flush().await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    });
    let mut got = 0u64;
    while got < count {
        match tokio::time::timeout(Duration::from_secs(5), sub.next()).await {
            Ok(Some(_)) => got += 1,
            _ => break,
        }
    }
    let secs = started.elapsed().as_secs_f64();
    sending.await?.map_err(|e| e.to_string())?;
    println!(
        "{size} B x {count}: {got} received in {secs:.2} s: {:.0} msgs/s, {:.1} MB/s, {} lost",
        got as f64 / secs,
        got as f64 * size as f64 / secs / 1e6,
        count - got
    );
    Ok(())
}
