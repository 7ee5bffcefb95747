//! tickwire-client against a real tickwire server, under the faults a bot
//! meets: connections cut (through a TCP proxy that drops them on command),
//! cuts longer than the history, a server restart (new epoch), and a bot
//! that stalls on the `disconnect` policy.

mod common;

use std::time::Duration;

use common::*;
use tickwire_client::{Client, Event, Policy, TickKind, MIN_RECV_BUFFER};

const MS: Duration = Duration::from_millis(1);

fn syms(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("S{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_cuts_lose_no_tick_and_repeat_none() {
    // A history of 8 s at this rate: a reconnect that a busy machine delays
    // is still well inside it.
    let server = start(&["--synthetic", "4", "--rate", "1000", "--history", "8192"]).await;
    let proxy = Proxy::start(server.addr).await;
    let mut client = Client::builder(&proxy.url())
        .symbols(syms(4))
        .backoff(5 * MS, 50 * MS)
        .connect()
        .unwrap();
    let mut book = Book::default();
    // Ticks since the last resume: events still queued from before a cut
    // do not count.
    let (mut cuts, mut since_resume, mut reconnects, mut connects) = (0, 0u64, 0, 0);
    let started = std::time::Instant::now();
    while reconnects < 20 || since_resume < 1000 {
        let e = next(&mut client).await;
        book.see(&e);
        match &e {
            Event::Tick(_) => since_resume += 1,
            Event::Connected { .. } => connects += 1,
            Event::Reconnected {
                recovered,
                not_recovered,
                epoch_changed,
            } => {
                reconnects += 1;
                since_resume = 0;
                assert_eq!(
                    (recovered, not_recovered, *epoch_changed),
                    (&syms(4), &vec![], false),
                    "within the history every symbol is resumed"
                );
            }
            Event::Closed { reconnecting, .. } => assert!(*reconnecting, "{e:?}"),
            Event::Gap { .. } | Event::Refused { .. } => panic!("{e:?}"),
        }
        // A cut every 2,000 ticks of a resumed connection (half a second at
        // 4,000 ticks/s).
        if cuts < 20 && cuts == reconnects && since_resume >= 2000 {
            proxy.cut();
            cuts += 1;
        }
    }
    assert_eq!((reconnects, connects), (20, 21));
    assert!(book.gaps.is_empty());
    assert!(
        book.snapshots <= 4,
        "a snapshot per symbol at most, at the start"
    );
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");
    eprintln!("20 cuts, {} ticks, each once, in {elapsed:?}", book.ticks);
    server.stop().await;
}

/// Reads events into `book` until `done` says so (within [`DEADLINE`] in
/// all); returns what it read.
async fn read_until(
    client: &mut Client,
    book: &mut Book,
    done: impl FnMut(&Event, &Book) -> bool,
) -> Vec<Event> {
    read_until_for(DEADLINE, client, book, done).await
}

/// [`read_until`] within `limit`.
async fn read_until_for(
    limit: Duration,
    client: &mut Client,
    book: &mut Book,
    mut done: impl FnMut(&Event, &Book) -> bool,
) -> Vec<Event> {
    let mut seen = Vec::new();
    tokio::time::timeout(limit, async {
        loop {
            let e = next(client).await;
            book.see(&e);
            let stop = done(&e, book);
            seen.push(e);
            if stop {
                return;
            }
        }
    })
    .await
    .expect("timed out waiting for events");
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_longer_than_the_history_is_a_gap_of_exactly_the_lost_seqs() {
    let server = start(&["--synthetic", "2", "--rate", "500", "--history", "16"]).await;
    let proxy = Proxy::start(server.addr).await;
    let builder = Client::builder(&proxy.url())
        .symbols(syms(2))
        .backoff(5 * MS, 50 * MS);
    // Without HTTP recovery: the snapshot right after the hole; with it:
    // the 16 ticks the history still holds, then the live stream.
    let mut plain = builder.clone().recover_over_http(false).connect().unwrap();
    let mut fill = builder.connect().unwrap();
    let (mut plain_book, mut fill_book) = (Book::default(), Book::default());
    for (c, b) in [(&mut plain, &mut plain_book), (&mut fill, &mut fill_book)] {
        read_until(c, b, |_, b| b.ticks >= 100 && b.last.len() == 2).await;
    }
    proxy.block(true);
    proxy.cut();
    // The long cut: the feed moves on far past the history.
    let ahead = plain_book
        .last
        .values()
        .chain(fill_book.last.values())
        .max()
        .unwrap()
        + 200;
    server.until_seq("S0", ahead).await;
    server.until_seq("S1", ahead).await;
    proxy.block(false);

    for (client, book, over_http) in [
        (&mut plain, &mut plain_book, false),
        (&mut fill, &mut fill_book, true),
    ] {
        let before = book.last.clone();
        let events = read_until(client, book, |e, b| {
            matches!(e, Event::Tick(_)) && b.gaps.len() == 2 && b.ticks >= 300
        })
        .await;
        let reconnected = events
            .iter()
            .find(|e| matches!(e, Event::Reconnected { .. }))
            .expect("reconnected");
        assert_eq!(
            reconnected,
            &Event::Reconnected {
                recovered: vec![],
                not_recovered: syms(2),
                epoch_changed: false
            }
        );
        for sym in syms(2) {
            let gap = book.gaps.iter().find(|g| g.0 == sym).expect("a gap");
            // The book checked the range is exact: it starts right after the
            // last tick delivered (some were still queued for the bot at the
            // cut) and ends right before the next one.
            assert!(gap.1 > before[&sym], "{gap:?}");
            assert!(gap.2 - gap.1 >= 150, "{gap:?}");
            let after_gap = events
                .iter()
                .filter_map(|e| match e {
                    Event::Tick(t) if t.symbol == sym && t.seq == gap.2 + 1 => Some(t),
                    _ => None,
                })
                .next()
                .expect("the tick after the gap");
            if over_http {
                // From /api/history: the 16 ticks it still held.
                assert_eq!(after_gap.kind, TickKind::Tick);
            } else {
                assert_eq!(after_gap.kind, TickKind::Snapshot, "{after_gap:?}");
            }
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_is_a_new_epoch_and_no_stale_seq_continues() {
    let mut server = start(&["--synthetic", "2", "--rate", "500"]).await;
    let port = server.addr.port();
    let mut client = Client::builder(&server.url())
        .symbols(syms(2))
        .backoff(10 * MS, 100 * MS)
        .connect()
        .unwrap();
    let mut book = Book::default();
    let mut epoch = String::new();
    read_until(&mut client, &mut book, |e, b| {
        if let Event::Connected { epoch: e, .. } = e {
            epoch = e.clone();
        }
        b.last.len() == 2 && b.last.values().all(|&s| s >= 1000)
    })
    .await;
    server.stop().await;
    // The ticks already on their way, then the close.
    let events = read_until(&mut client, &mut book, |e, _| {
        matches!(e, Event::Closed { .. })
    })
    .await;
    let old = book.last.clone();
    assert_eq!(
        events.last().unwrap(),
        &Event::Closed {
            code: 1001,
            reason: "server shutting down".into(),
            reconnecting: true
        }
    );
    // The new run trades slowly: however long the reconnect takes on a busy
    // machine, its seqs stay far below the old run's.
    server = start_on(port, &["--synthetic", "2", "--rate", "50"]).await;
    let mut fresh = std::collections::HashMap::new();
    let events = read_until(&mut client, &mut book, |e, _| {
        if let Event::Tick(t) = e {
            fresh.entry(t.symbol.clone()).or_insert(t.clone());
        }
        fresh.len() == 2
    })
    .await;
    let new_epoch = events
        .iter()
        .find_map(|e| match e {
            Event::Connected { epoch, .. } => Some(epoch.clone()),
            _ => None,
        })
        .expect("connected again");
    assert_ne!(new_epoch, epoch);
    assert!(events.contains(&Event::Reconnected {
        recovered: vec![],
        not_recovered: syms(2),
        epoch_changed: true
    }));
    assert!(
        !events.iter().any(|e| matches!(e, Event::Gap { .. })),
        "no gap across epochs"
    );
    for (sym, t) in &fresh {
        // The new run's first tick (its snapshot, or its very first trade if
        // it had none yet), taken as it is: its seq is far below the old
        // run's, and neither dropped as a duplicate nor called a gap.
        assert!(t.kind == TickKind::Snapshot || t.seq == 1, "{t:?}");
        assert!(t.seq < old[sym], "{sym}: {} vs {}", t.seq, old[sym]);
    }
    // And the new run's ticks go on from there.
    read_until(&mut client, &mut book, |_, b| {
        b.last.iter().all(|(s, &q)| q >= fresh[s].seq + 20)
    })
    .await;
    assert!(book.gaps.is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_stalled_on_the_disconnect_policy_learns_why_and_resumes_with_no_hole() {
    // 8,000 ticks/s (890 KB/s) fill the socket buffers (the server's at
    // most 4 MiB, the bot's 512 KiB) and the queue within 6 s of the 10 s
    // stall, so the server drops the bot; the stall misses at most 20,000
    // ticks per symbol: a history of 32,768 covers it.
    let server = start(&["--synthetic", "4", "--rate", "2000", "--history", "32768"]).await;
    let mut client = Client::builder(&server.url())
        .symbols(syms(4))
        .policy(Policy::Disconnect)
        .event_buffer(16)
        .recv_buffer(MIN_RECV_BUFFER)
        .connect()
        .unwrap();
    let mut book = Book::default();
    read_until(&mut client, &mut book, |_, b| b.ticks >= 100).await;
    // The stall is the point of the test: the bot reads nothing for 10 s.
    tokio::time::sleep(Duration::from_secs(10)).await;
    // What was buffered, the close, then about 80,000 ticks fetched from
    // the history: a minute at most, even in a debug build on a busy box.
    let events = read_until_for(Duration::from_secs(60), &mut client, &mut book, |e, _| {
        matches!(e, Event::Reconnected { .. })
    })
    .await;
    assert!(
        events.contains(&Event::Closed {
            code: 1008,
            reason: "slow consumer".into(),
            reconnecting: true
        }),
        "{:?}",
        events
            .iter()
            .filter(|e| !matches!(e, Event::Tick(_)))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        events.last().unwrap(),
        &Event::Reconnected {
            recovered: syms(4),
            not_recovered: vec![],
            epoch_changed: false
        }
    );
    let resumed_at = book.last.clone();
    read_until(&mut client, &mut book, |_, b| {
        b.last.iter().all(|(s, &q)| q >= resumed_at[s] + 500)
    })
    .await;
    // Every seq from the first to the last, each once: the book checked it.
    assert!(book.gaps.is_empty(), "{:?}", book.gaps);
    assert!(book.snapshots <= 4, "snapshots only at the start");
    eprintln!(
        "stalled, dropped with 1008, resumed: {} ticks, no hole",
        book.ticks
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_dropped_by_the_watchdog_and_resumed() {
    // Heartbeats every 200 ms: three of them missed is a stall.
    let server = start(&["--synthetic", "2", "--rate", "200", "--heartbeat", "0.2"]).await;
    let proxy = Proxy::start(server.addr).await;
    let mut client = Client::builder(&proxy.url())
        .symbols(syms(2))
        .backoff(5 * MS, 50 * MS)
        .connect()
        .unwrap();
    let mut book = Book::default();
    read_until(&mut client, &mut book, |_, b| b.ticks >= 50).await;
    proxy.silence();
    let events = read_until(&mut client, &mut book, |e, _| {
        matches!(e, Event::Reconnected { .. })
    })
    .await;
    let closed = events
        .iter()
        .find(|e| matches!(e, Event::Closed { .. }))
        .unwrap();
    let Event::Closed {
        code: 1006,
        reason,
        reconnecting: true,
    } = closed
    else {
        panic!("{closed:?}")
    };
    assert!(reason.contains("no message for 600 ms"), "{reason}");
    assert_eq!(
        events.last().unwrap(),
        &Event::Reconnected {
            recovered: syms(2),
            not_recovered: vec![],
            epoch_changed: false
        }
    );
    // What was thrown away during the silence is replayed: no hole.
    let at = book.ticks;
    read_until(&mut client, &mut book, |_, b| b.ticks >= at + 100).await;
    assert!(book.gaps.is_empty(), "{:?}", book.gaps);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_reported_once_and_never_retried() {
    let server = start(&["--synthetic", "2", "--rate", "200"]).await;
    let proxy = Proxy::start(server.addr).await;
    let mut client = Client::builder(&proxy.url())
        .symbols(["S0", "NOPE"])
        .backoff(5 * MS, 50 * MS)
        .connect()
        .unwrap();
    let mut book = Book::default();
    let events = read_until(&mut client, &mut book, |_, b| b.ticks >= 20).await;
    let refused: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, Event::Refused { .. }))
        .collect();
    assert!(
        matches!(
            refused[..],
            [Event::Refused {
                code: tickwire_client::ErrorCode::UnknownSymbol,
                ..
            }]
        ),
        "{refused:?}"
    );
    // After a reconnect the unknown name is not asked for again.
    proxy.cut();
    let events = read_until(&mut client, &mut book, |e, _| {
        matches!(e, Event::Reconnected { .. })
    })
    .await;
    assert!(!events.iter().any(|e| matches!(e, Event::Refused { .. })));
    assert_eq!(
        events.last().unwrap(),
        &Event::Reconnected {
            recovered: vec!["S0".into()],
            not_recovered: vec![],
            epoch_changed: false
        }
    );
    // An upgrade the server refuses (wrong path) ends the client at once.
    let mut wrong = Client::builder(&format!("ws://{}/nope", server.addr))
        .connect()
        .unwrap();
    match next(&mut wrong).await {
        Event::Closed {
            code: 0,
            reason,
            reconnecting: false,
        } => assert!(reason.starts_with("HTTP 404"), "{reason}"),
        e => panic!("{e:?}"),
    }
    assert_eq!(within(wrong.next()).await, None);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_ticks_give_the_same_events_and_resume_too() {
    let server = start(&["--synthetic", "2", "--rate", "500"]).await;
    let proxy = Proxy::start(server.addr).await;
    let mut json = Client::builder(&server.url())
        .symbols(["S1"])
        .connect()
        .unwrap();
    let mut binary = Client::builder(&proxy.url())
        .symbols(["S1"])
        .format(tickwire_client::Format::Binary)
        .backoff(5 * MS, 50 * MS)
        .connect()
        .unwrap();
    let ticks = |events: Vec<Event>| -> Vec<tickwire_client::Tick> {
        events
            .into_iter()
            .filter_map(|e| match e {
                Event::Tick(t) if t.kind == TickKind::Tick => Some(t),
                _ => None,
            })
            .collect()
    };
    let (mut jb, mut bb) = (Book::default(), Book::default());
    let mut from_binary = ticks(read_until(&mut binary, &mut bb, |_, b| b.ticks >= 100).await);
    proxy.cut();
    let events = read_until(&mut binary, &mut bb, |e, _| {
        matches!(e, Event::Reconnected { .. })
    })
    .await;
    assert_eq!(
        events.last().unwrap(),
        &Event::Reconnected {
            recovered: vec!["S1".into()],
            not_recovered: vec![],
            epoch_changed: false
        }
    );
    from_binary.extend(ticks(events));
    let upto = bb.last["S1"] + 100;
    from_binary.extend(ticks(
        read_until(&mut binary, &mut bb, |_, b| b.last["S1"] >= upto).await,
    ));
    let from_json = ticks(
        read_until(&mut json, &mut jb, |_, b| {
            b.last.get("S1").is_some_and(|&s| s >= upto)
        })
        .await,
    );
    // Every seq both saw is the same tick, to the last decimal.
    let by_seq: std::collections::HashMap<u64, &tickwire_client::Tick> =
        from_json.iter().map(|t| (t.seq, t)).collect();
    let common: Vec<_> = from_binary
        .iter()
        .filter(|t| by_seq.contains_key(&t.seq))
        .collect();
    assert!(common.len() >= 100, "{}", common.len());
    for t in common {
        assert_eq!(&t, &by_seq[&t.seq]);
    }
    assert!(bb.gaps.is_empty() && jb.gaps.is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_of_many_symbols_is_split_under_the_limits() {
    // 600 symbols: one resume request would be about 21 KB, over the 4 KiB
    // message limit (a 1009 close); it is sent as several, paced under the
    // control rate.
    let server = start(&["--synthetic", "600", "--rate", "4"]).await;
    let proxy = Proxy::start(server.addr).await;
    let mut client = Client::builder(&proxy.url())
        .symbols(syms(600))
        .backoff(5 * MS, 50 * MS)
        .connect()
        .unwrap();
    let mut book = Book::default();
    read_until(&mut client, &mut book, |_, b| b.last.len() == 600).await;
    proxy.cut();
    let events = read_until(&mut client, &mut book, |e, _| {
        matches!(e, Event::Reconnected { .. })
    })
    .await;
    let mut all = syms(600);
    all.sort_unstable();
    assert_eq!(
        events.last().unwrap(),
        &Event::Reconnected {
            recovered: all,
            not_recovered: vec![],
            epoch_changed: false
        }
    );
    for e in &events {
        assert!(
            !matches!(
                e,
                Event::Refused { .. }
                    | Event::Closed {
                        reconnecting: false,
                        ..
                    }
            ),
            "{e:?}"
        );
    }
    let closes = events
        .iter()
        .filter(|e| matches!(e, Event::Closed { .. }))
        .count();
    assert_eq!(closes, 1, "one cut, one close");
    let at = book.ticks;
    read_until(&mut client, &mut book, |_, b| b.ticks >= at + 500).await;
    assert!(
        book.gaps.is_empty(),
        "{:?}",
        &book.gaps[..book.gaps.len().min(3)]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_fail_over_to_the_next_url() {
    let server = start(&["--synthetic", "1", "--rate", "200"]).await;
    let proxy = Proxy::start(server.addr).await;
    // A port nobody listens on: connecting there is refused.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut client = Client::builder(&format!("ws://{dead}/ws"))
        .url(&proxy.url())
        .symbols(["S0"])
        .backoff(5 * MS, 50 * MS)
        .connect()
        .unwrap();
    let mut book = Book::default();
    let events = read_until(&mut client, &mut book, |_, b| b.ticks >= 20).await;
    assert!(events.contains(&Event::Connected {
        url: proxy.url(),
        epoch: server.hub.epoch().to_string()
    }));
    // Cut: the next try goes to the dead URL, the one after to the proxy.
    proxy.cut();
    let events = read_until(&mut client, &mut book, |e, _| {
        matches!(e, Event::Reconnected { .. })
    })
    .await;
    assert_eq!(
        events.last().unwrap(),
        &Event::Reconnected {
            recovered: vec!["S0".into()],
            not_recovered: vec![],
            epoch_changed: false
        }
    );
    assert!(book.gaps.is_empty());
    server.stop().await;
}
