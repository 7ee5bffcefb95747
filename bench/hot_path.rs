//! Micro-benchmarks of the hot path. Run: `cargo bench --bench hot_path`.
//! Figures and the machine are recorded in bench/README.md.

use std::sync::Arc;
use std::task::{Context, Waker};

use bytes::Bytes;
use divan::counter::ItemsCount;
use divan::Bencher;
use tickwire::feed::{Generator, Tick, Universe};
use tickwire::hub::{Hub, Publisher, Sessions, Start};
use tickwire::metrics::Metrics;
use tickwire::outbox::{Delivered, FrameQueue, Limits, Outbox, Policy};
use tickwire::tick::{EncodedBatch, TickFrame, TickKind};
use tickwire_protocol::Request;

fn main() {
    divan::main();
}

fn aapl() -> (Universe, Tick) {
    let u = Universe::demo();
    let sym = u.id_of("AAPL").unwrap();
    let t = Tick {
        sym,
        seq: 1042,
        ts_us: 1_763_800_000_123_456,
        px: 18723,
        qty: 100,
        bid: 18722,
        ask: 18724,
    };
    (u, t)
}

/// One tick to complete WebSocket frame bytes (done once per tick).
#[divan::bench]
fn encode_tick(bencher: Bencher) {
    let (u, t) = aapl();
    bencher.bench_local(|| TickFrame::encode(divan::black_box(&t), u.get(t.sym), TickKind::Tick));
}

/// A client reading one tick as JSON: the full, exact parse into a
/// [`TickMsg`](tickwire_protocol::TickMsg) (owned symbol, exact decimals).
#[divan::bench]
fn client_parse_tick_json(bencher: Bencher) {
    let (u, t) = aapl();
    let mut json = Vec::new();
    tickwire::tick::write_json(&mut json, &t, u.get(t.sym), TickKind::Tick);
    bencher
        .counter(divan::counter::BytesCount::new(json.len()))
        .bench_local(|| tickwire_protocol::TickMsg::parse(divan::black_box(&json)).unwrap());
}

/// A client reading the sym, seq and ts of a JSON tick (what the load-test
/// harness does: `tickwire_protocol::tick::scan`).
#[divan::bench]
fn client_scan_tick_json(bencher: Bencher) {
    let (u, t) = aapl();
    let mut json = Vec::new();
    tickwire::tick::write_json(&mut json, &t, u.get(t.sym), TickKind::Tick);
    bencher.bench_local(|| tickwire_protocol::tick::scan(divan::black_box(&json)));
}

/// A client reading the same tick in the binary layout (`?format=binary`).
#[divan::bench]
fn client_parse_tick_binary(bencher: Bencher) {
    let (u, t) = aapl();
    let mut bin = Vec::new();
    tickwire::tick::to_binary(&t, u.get(t.sym), TickKind::Tick).write(&mut bin);
    bencher
        .counter(divan::counter::BytesCount::new(bin.len()))
        .bench_local(|| tickwire_protocol::BinaryTick::parse(divan::black_box(&bin)).unwrap());
}

const SUBSCRIBE: &[u8] = br#"{"op":"subscribe","symbols":["AAPL","MSFT","BTC-USD"],"id":7}"#;

/// A control message, simd-json with the connection's reused buffers.
#[divan::bench]
fn parse_control_reused_buffers(bencher: Bencher) {
    let mut buffers = simd_json::Buffers::new(SUBSCRIBE.len());
    let mut buf = SUBSCRIBE.to_vec();
    bencher.bench_local(|| {
        buf.copy_from_slice(SUBSCRIBE);
        Request::parse(&mut buf, &mut buffers).unwrap()
    });
}

/// The same with fresh buffers each time (what reuse saves).
#[divan::bench]
fn parse_control_fresh_buffers(bencher: Bencher) {
    let mut buf = SUBSCRIBE.to_vec();
    bencher.bench_local(|| {
        buf.copy_from_slice(SUBSCRIBE);
        Request::parse(&mut buf, &mut simd_json::Buffers::default()).unwrap()
    });
}

const GEN_BATCH: u64 = 100_000;

/// A `symbols`-instrument universe trading 1M ticks/s in all (market time,
/// nominal), and its generator: the feed of the generator benches.
fn million_a_second(symbols: u32) -> (Universe, Generator) {
    let u = Universe::synthetic(symbols, 1_000_000.0 / symbols as f64);
    let gen = Generator::new(&u, 1);
    (u, gen)
}

/// [`million_a_second`], handing each tick to `per_tick`; each iteration
/// makes 100,000 ticks (0.1 s of market time).
fn bench_generator(bencher: Bencher, symbols: u32, mut per_tick: impl FnMut(&Universe, &Tick)) {
    let (u, mut gen) = million_a_second(symbols);
    let mut now = 0u64;
    bencher.counter(ItemsCount::new(GEN_BATCH)).bench_local(|| {
        let mut n = 0;
        while n < GEN_BATCH as usize {
            now += 1_000_000;
            n += gen.advance(now, now / 1000, |t| per_tick(&u, t));
        }
    });
}

/// The generator alone, over 100 and 10,000 symbols (1M ticks/s of market
/// time either way).
#[divan::bench(args = [100, 10_000])]
fn generate(bencher: Bencher, symbols: u32) {
    bench_generator(bencher, symbols, |_, t| {
        divan::black_box(t);
    });
}

/// What the feed does per pass with nobody subscribed: generate the due
/// ticks and encode each once into the pass's shared buffer
/// ([`EncodedBatch`], one pass per millisecond of market time, ~1,000 ticks).
#[divan::bench(args = [100, 10_000])]
fn generate_and_encode(bencher: Bencher, symbols: u32) {
    let (u, mut gen) = million_a_second(symbols);
    let mut batch = EncodedBatch::default();
    let mut now = 0u64;
    bencher.counter(ItemsCount::new(GEN_BATCH)).bench_local(|| {
        let mut n = 0;
        while n < GEN_BATCH as usize {
            now += 1_000_000;
            batch.clear();
            n += gen.advance(now, now / 1000, |t| batch.encode(t, u.get(t.sym)));
            batch.seal();
            divan::black_box(&batch);
        }
    });
}

/// Publishing one tick to N subscribers: encode once, push the shared bytes
/// into N outboxes. Every 64 publishes the batch is finished (the source's
/// once-per-batch wake-up and fan-out histogram) and each outbox is drained
/// the way its writer would (one swap), amortised in the figure; the
/// writers' tasks are not run.
///
/// `HISTORY` is the depth of the topic's history ring (0: off): what keeping
/// history costs the fan-out.
#[divan::bench(args = [1, 100, 1000], consts = [0, 1024])]
fn publish_to_subscribers<const HISTORY: usize>(bencher: Bencher, subscribers: usize) {
    let (_metrics, hub, _sessions, outboxes) = one_topic(HISTORY, subscribers, 0);
    let mut tick = FIRST_TICK;
    let mut batch = FrameQueue::default();
    let mut publisher = Publisher::new(hub.clone());
    let mut cx = Context::from_waker(Waker::noop());
    bencher
        .counter(ItemsCount::new(subscribers))
        .bench_local(|| {
            tick.seq += 1;
            publisher.publish(&tick);
            if tick.seq.is_multiple_of(64) {
                publisher.finish_batch();
                for o in &outboxes {
                    let _ = o.poll_next(&mut cx, &mut batch);
                    batch.clear();
                }
            }
        });
}

/// The 1,000-client case of the `throughput-1000` scenario, without the
/// sockets: 1,000 registered connections each following 10 of 100 symbols
/// (every symbol has 100 subscribers), one feed pass of `ticks` ticks of
/// random symbols published (encode, stage, queue, history), then every
/// connection's share taken and consumed the way its writer does around its
/// `writev` (the iovecs built, the written items counted and dropped). Per
/// delivered tick. At 1,000 connections this work runs out of the cache:
/// what it measures is mostly the misses on each connection's queue.
#[divan::bench(args = [45, 450])]
fn fan_out_and_drain_1000_connections(bencher: Bencher, ticks: usize) {
    let metrics = Arc::new(Metrics::default());
    let u = Arc::new(Universe::synthetic(100, 1.0));
    let hub = Arc::new(Hub::new(u, metrics.clone(), "bench".into(), 1024));
    let sessions = Sessions::default();
    let outboxes: Vec<Arc<Outbox>> = (0..1000)
        .map(|c| {
            let o = outbox(&metrics);
            sessions.register(o.clone());
            let starts: Vec<_> = (0..10)
                .map(|k| ((c + 10 * k) % 100, Start::Snapshot))
                .collect();
            hub.subscribe(&o, &starts, 0, |_| Bytes::new());
            o
        })
        .collect();
    let mut publisher = Publisher::new(hub.clone());
    let mut seqs = [0u64; 100];
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut batch = FrameQueue::default();
    let mut cx = Context::from_waker(Waker::noop());
    // Take the snapshots out of the queues first.
    for o in &outboxes {
        let _ = o.poll_next(&mut cx, &mut batch);
        batch.clear();
    }
    bencher
        .counter(ItemsCount::new(ticks * 100))
        .bench_local(|| {
            for _ in 0..ticks {
                // xorshift: cheap and the same sequence every run.
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let sym = (rng % 100) as u32;
                seqs[sym as usize] += 1;
                publisher.publish(&Tick {
                    sym,
                    seq: seqs[sym as usize],
                    ..FIRST_TICK
                });
            }
            publisher.finish_batch();
            for o in &outboxes {
                let _ = o.poll_next(&mut cx, &mut batch);
                drain_as_writer(&mut batch, &metrics);
            }
        });
}

/// What a writer does with a taken batch besides the `writev`: the iovecs,
/// then every item counted as written and dropped.
fn drain_as_writer(batch: &mut FrameQueue, metrics: &Metrics) {
    while !batch.is_empty() {
        // Sized for the batch, as the writer's (an 8 KiB array per take
        // would dominate the figure).
        let mut slices = [std::io::IoSlice::new(&[]); 64];
        let n = batch.io_slices(&mut slices);
        let written: usize = divan::black_box(&slices[..n]).iter().map(|s| s.len()).sum();
        let mut shard = metrics.shard();
        let mut sent = Delivered::at(FIRST_TICK.ts_us * 1000 + 1_000_000);
        batch.consume(written, &mut sent, &mut shard);
        sent.finish(&mut shard);
    }
}

/// Publishing one tick to N throttled views (250 ms) of one symbol, as
/// [`publish_to_subscribers`] does to unthrottled ones: the first tick of an
/// interval goes at once, every later one only replaces each view's pending
/// slot (the interval timer is not run here, so every tick after the first
/// is such a replacement: the per-tick cost of a throttled view).
#[divan::bench(args = [1000])]
fn publish_to_throttled_views(bencher: Bencher, views: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _in_runtime = runtime.enter();
    let (_metrics, hub, _sessions, _outboxes) = one_topic(0, views, 250);
    let mut tick = FIRST_TICK;
    let mut publisher = Publisher::new(hub.clone());
    bencher.counter(ItemsCount::new(views)).bench_local(|| {
        tick.seq += 1;
        publisher.publish(&tick);
        if tick.seq.is_multiple_of(64) {
            publisher.finish_batch();
        }
    });
}

/// The first tick of the one-topic benches (seq counts up from it).
const FIRST_TICK: Tick = Tick {
    sym: 0,
    seq: 0,
    ts_us: 1_763_800_000_000_000,
    px: 10_000,
    qty: 5,
    bid: 9_999,
    ask: 10_001,
};

/// A one-symbol hub with `history` ticks of history and `n` registered
/// outboxes subscribed to it (throttled to `throttle_ms`, 0 = every tick).
fn one_topic(
    history: usize,
    n: usize,
    throttle_ms: u32,
) -> (Arc<Metrics>, Arc<Hub>, Sessions, Vec<Arc<Outbox>>) {
    let metrics = Arc::new(Metrics::default());
    let u = Arc::new(Universe::synthetic(1, 1.0));
    let hub = Arc::new(Hub::new(u, metrics.clone(), "bench".into(), history));
    let sessions = Sessions::default();
    let outboxes: Vec<Arc<Outbox>> = (0..n)
        .map(|_| {
            let o = outbox(&metrics);
            sessions.register(o.clone());
            o
        })
        .collect();
    for o in &outboxes {
        hub.subscribe(o, &[(0, Start::Snapshot)], throttle_ms, |_| Bytes::new());
    }
    (metrics, hub, sessions, outboxes)
}

fn outbox(metrics: &Arc<Metrics>) -> Arc<Outbox> {
    Arc::new(Outbox::new(
        Limits {
            max_msgs: 4096,
            max_bytes: 1 << 20,
        },
        Policy::Conflate,
        metrics.clone(),
    ))
}

/// A resume that replays the whole default history (1,024 ticks) to one
/// client: the subscribe under the topic lock, the frames queued (not
/// written), then unsubscribe and drain for the next round.
#[divan::bench]
fn replay_1024_ticks(bencher: Bencher) {
    let metrics = Arc::new(Metrics::default());
    let u = Arc::new(Universe::synthetic(1, 1.0));
    let hub = Arc::new(Hub::new(u, metrics.clone(), "bench".into(), 1024));
    let mut publisher = Publisher::new(hub.clone());
    for seq in 1..=2048 {
        publisher.publish(&Tick {
            sym: 0,
            seq,
            ts_us: 1_763_800_000_000_000,
            px: 10_000,
            qty: 5,
            bid: 9_999,
            ask: 10_001,
        });
    }
    publisher.finish_batch();
    let o = outbox(&metrics);
    let mut batch = FrameQueue::default();
    let mut cx = Context::from_waker(Waker::noop());
    bencher.counter(ItemsCount::new(1024usize)).bench_local(|| {
        hub.subscribe(&o, &[(0, Start::After(1024))], 0, |r| {
            assert_eq!(r, [Some(true)]);
            Bytes::new()
        });
        hub.unsubscribe(&o, &[0]);
        let _ = o.poll_next(&mut cx, &mut batch);
        assert_eq!(batch.len(), 1025);
        batch.clear();
    });
}

/// Encoding alone: 1,000 ticks already generated, into one pass's batch.
#[divan::bench(args = [100, 10_000])]
fn encode_batch(bencher: Bencher, symbols: u32) {
    let (u, mut gen) = million_a_second(symbols);
    let mut ticks = Vec::new();
    let mut now = 0;
    while ticks.len() < 1000 {
        now += 1_000_000;
        gen.advance(now, now / 1000, |t| ticks.push(*t));
    }
    ticks.truncate(1000);
    let mut batch = EncodedBatch::default();
    bencher.counter(ItemsCount::new(1000u32)).bench_local(|| {
        batch.clear();
        for t in &ticks {
            batch.encode(t, u.get(t.sym));
        }
        batch.seal();
        divan::black_box(&batch);
    });
}
