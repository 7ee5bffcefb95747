//! A bot that trades nothing but says what it would do: per symbol, the
//! volume-weighted average price (VWAP) of the last 50 trades, and a signal
//! each time the price crosses it by more than 2 basis points. It counts
//! what the client reports: gaps (and how many ticks they cover), reconnects,
//! symbols recovered or not.
//!
//! ```sh
//! cargo run --release                      # the server, in one terminal
//! cargo run --release -p tickwire-client --example vwap_bot -- \
//!     ws://127.0.0.1:8080/ws AAPL,MSFT,BTC-USD
//! ```
//!
//! Stop the server with Ctrl-C and start it again: the bot reconnects by
//! itself, is told the epoch changed, and goes on. Pass `disconnect` as a
//! third argument and suspend the bot for a few seconds (Ctrl-Z, then `fg`)
//! to watch a slow-consumer drop (1008) being resumed with no hole.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use tickwire_client::{Client, Decimal, Event, Policy};

/// Trades in each symbol's VWAP window.
const WINDOW: usize = 50;
/// How far from the VWAP the price must go for a signal, in basis points.
const THRESHOLD_BPS: f64 = 2.0;

/// A symbol's rolling VWAP, summed exactly in integer units.
#[derive(Default)]
struct Vwap {
    trades: VecDeque<(i128, i128)>,
    /// Σ px×qty and Σ qty, in units of 10^-(px scale + qty scale) and
    /// 10^-qty scale.
    sum_pq: i128,
    sum_q: i128,
    scale: u32,
    /// Last signal given: +1 above, -1 below, 0 none.
    side: i8,
}

impl Vwap {
    fn add(&mut self, px: Decimal, qty: Decimal) -> Option<f64> {
        let (p, q) = (i128::from(px.units()), i128::from(qty.units()));
        self.scale = u32::from(px.scale());
        self.trades.push_back((p * q, q));
        self.sum_pq += p * q;
        self.sum_q += q;
        if self.trades.len() > WINDOW {
            let (pq, q) = self.trades.pop_front().expect("non-empty");
            self.sum_pq -= pq;
            self.sum_q -= q;
        }
        (self.sum_q > 0)
            .then(|| self.sum_pq as f64 / self.sum_q as f64 / 10f64.powi(self.scale as i32))
    }

    fn clear(&mut self) {
        *self = Vwap::default();
    }
}

#[derive(Default)]
struct Counts {
    ticks: u64,
    signals: u64,
    gaps: u64,
    missed: u64,
    reconnects: u64,
    not_recovered: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "ws://127.0.0.1:8080/ws".into());
    let symbols = args.next().unwrap_or_else(|| "AAPL,MSFT,BTC-USD".into());
    let mut builder = Client::builder(&url).symbols(symbols.split(','));
    if args.next().as_deref() == Some("disconnect") {
        builder = builder.policy(Policy::Disconnect);
    }
    let mut client = match builder.connect() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vwap_bot: {e}");
            std::process::exit(2);
        }
    };
    let mut books: HashMap<String, Vwap> = HashMap::new();
    let mut counts = Counts::default();
    let mut report = Instant::now();
    while let Some(event) = client.next().await {
        match event {
            Event::Connected { url, epoch } => println!("connected to {url} (epoch {epoch})"),
            Event::Tick(t) => {
                counts.ticks += 1;
                let book = books.entry(t.symbol.clone()).or_default();
                let Some(vwap) = book.add(t.px, t.qty) else {
                    continue;
                };
                let bps = (t.px.to_f64() / vwap - 1.0) * 10_000.0;
                let side = if bps > THRESHOLD_BPS {
                    1
                } else if bps < -THRESHOLD_BPS {
                    -1
                } else {
                    0
                };
                if side != 0 && side != book.side && book.trades.len() == WINDOW {
                    counts.signals += 1;
                    println!(
                        "{:<8} #{:<8} px {} vs VWAP {vwap:.4} ({bps:+.1} bp): would {}",
                        t.symbol,
                        t.seq,
                        t.px,
                        if side > 0 {
                            "SELL (rich)"
                        } else {
                            "BUY (cheap)"
                        }
                    );
                }
                if side != 0 {
                    book.side = side;
                }
            }
            Event::Gap {
                symbol,
                from_seq,
                to_seq,
            } => {
                counts.gaps += 1;
                counts.missed += to_seq - from_seq + 1;
                println!(
                    "{symbol}: ticks {from_seq}..={to_seq} missed (the VWAP goes on without them)"
                );
            }
            Event::Reconnected {
                recovered,
                not_recovered,
                epoch_changed,
            } => {
                counts.reconnects += 1;
                counts.not_recovered += not_recovered.len() as u64;
                if epoch_changed {
                    // A new server run: its prices start a new history.
                    books.values_mut().for_each(Vwap::clear);
                }
                println!(
                    "reconnected: recovered {recovered:?}, not recovered {not_recovered:?}{}",
                    if epoch_changed {
                        " (server restarted: new epoch)"
                    } else {
                        ""
                    }
                );
            }
            Event::Refused { code, message } => println!("refused ({}): {message}", code.label()),
            Event::Closed {
                code,
                reason,
                reconnecting,
            } => {
                println!(
                    "closed {code} {reason:?}{}",
                    if reconnecting { ", reconnecting" } else { "" }
                );
            }
        }
        if report.elapsed() >= Duration::from_secs(5) {
            report = Instant::now();
            let c = &counts;
            println!(
                "-- {} ticks, {} signals, {} gaps ({} ticks missed), {} reconnects, {} symbols not recovered",
                c.ticks, c.signals, c.gaps, c.missed, c.reconnects, c.not_recovered
            );
        }
    }
}
