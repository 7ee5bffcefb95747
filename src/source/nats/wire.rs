//! The bytes between feed and gateways (internal: clients never see them).
//!
//! Every message starts with the same 24-byte header, little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | version: 1 |
//! | 1 | 1 | kind: 1 ticks, 2 sync request, 3 sync reply |
//! | 2 | 2 | reserved, 0 |
//! | 4 | 4 | count: ticks (1, 3) or sync entries (2) |
//! | 8 | 8 | epoch: the feed's (1, 3), the one the gateway has (2; 0: none) |
//! | 16 | 8 | fingerprint of the sender's universe ([`fingerprint`]) |
//!
//! Kinds 1 and 3 continue with `count` ticks in the 56-byte layout of
//! `tickwire_protocol::binary` (prices in ticks, sizes in lots, the symbol
//! by id). Kind 2 continues with `u32 limit, u32 reserved` and `count`
//! entries of `u32 symbol, u32 reserved, u64 after, u64 until`: "at most
//! `limit` ticks of `symbol` with `after < seq < until` (`until` 0: no
//! bound), the newest ones". The reply holds each entry's ticks oldest
//! first, entries in request order, at most [`MAX_SYNC_TICKS`] in all.
//!
//! Anything malformed is an [`Error`]; the receiver counts and drops it.

use tickwire_protocol::binary::TICK_LEN;
use tickwire_protocol::{BinaryTick, TickKind};

use super::MAX_SYNC_TICKS;
use crate::feed::{SymbolId, Tick, Universe};
use crate::tick::to_binary;

pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 24;
const ENTRY_LEN: usize = 24;

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ticks = 1,
    SyncRequest = 2,
    SyncReply = 3,
}

/// Why a message was not understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("{0} bytes is not a tickwire broker message")]
    Short(usize),
    #[error("broker message version {0}, this build speaks {VERSION}")]
    Version(u8),
    #[error("broker message kind {0:?} where {1:?} was expected")]
    Kind(u8, Kind),
    #[error("broker message says {0} items but has {1} bytes")]
    Length(usize, usize),
    #[error("a tick of another universe (fingerprint {0:016x}): feed and gateway need the same feed flags")]
    Foreign(u64),
    #[error("bad tick: {0}")]
    Tick(String),
}

/// A message's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub count: usize,
    pub epoch: u64,
    pub fingerprint: u64,
}

/// A stable 64-bit FNV-1a hash of what both sides must agree on: each
/// instrument's symbol, tick, lot and decimals, in id order.
pub fn fingerprint(universe: &Universe) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for (_, ins) in universe.iter() {
        eat(ins.symbol.as_bytes());
        eat(&[0]);
        eat(&ins.tick.to_le_bytes());
        eat(&ins.lot.to_le_bytes());
        eat(&[ins.price_decimals as u8, ins.qty_decimals as u8]);
    }
    h
}

fn put_header(out: &mut Vec<u8>, kind: Kind, h: Header) {
    out.push(VERSION);
    out.push(kind as u8);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&(h.count as u32).to_le_bytes());
    out.extend_from_slice(&h.epoch.to_le_bytes());
    out.extend_from_slice(&h.fingerprint.to_le_bytes());
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}

/// Reads the header of a message of `kind` and checks the length for
/// `item_len` bytes per item after `extra` bytes.
fn header(b: &[u8], kind: Kind, extra: usize, item_len: usize) -> Result<Header, Error> {
    if b.len() < HEADER_LEN + extra {
        return Err(Error::Short(b.len()));
    }
    if b[0] != VERSION {
        return Err(Error::Version(b[0]));
    }
    if b[1] != kind as u8 {
        return Err(Error::Kind(b[1], kind));
    }
    let count = u32_at(b, 4) as usize;
    if b.len() != HEADER_LEN + extra + count * item_len {
        return Err(Error::Length(count, b.len()));
    }
    Ok(Header {
        count,
        epoch: u64_at(b, 8),
        fingerprint: u64_at(b, 16),
    })
}

/// Encodes ticks (a batch, or a sync reply).
pub fn encode_ticks(
    kind: Kind,
    epoch: u64,
    universe: &Universe,
    fingerprint: u64,
    ticks: &[Tick],
) -> Vec<u8> {
    debug_assert!(ticks.len() <= MAX_SYNC_TICKS);
    let mut out = Vec::with_capacity(HEADER_LEN + ticks.len() * TICK_LEN);
    put_header(
        &mut out,
        kind,
        Header {
            count: ticks.len(),
            epoch,
            fingerprint,
        },
    );
    for t in ticks {
        to_binary(t, universe.get(t.sym), TickKind::Tick).write(&mut out);
    }
    out
}

/// Decodes the ticks of a batch or a sync reply sent for `universe`
/// (whose fingerprint is `fingerprint`).
pub fn decode_ticks(
    b: &[u8],
    kind: Kind,
    universe: &Universe,
    fingerprint: u64,
    out: &mut Vec<Tick>,
) -> Result<Header, Error> {
    let h = header(b, kind, 0, TICK_LEN)?;
    if h.fingerprint != fingerprint {
        return Err(Error::Foreign(h.fingerprint));
    }
    out.clear();
    for i in 0..h.count {
        let o = HEADER_LEN + i * TICK_LEN;
        let t = BinaryTick::parse(&b[o..o + TICK_LEN]).map_err(|e| Error::Tick(e.0))?;
        if t.symbol_id as usize >= universe.len() || t.seq == 0 {
            return Err(Error::Tick(format!("symbol {} seq {}", t.symbol_id, t.seq)));
        }
        let ins = universe.get(t.symbol_id);
        out.push(Tick {
            sym: t.symbol_id,
            seq: t.seq,
            ts_us: t.ts,
            px: t.px_ticks.wrapping_mul(ins.tick),
            qty: t.qty_lots.wrapping_mul(ins.lot),
            bid: t.bid_ticks.wrapping_mul(ins.tick),
            ask: t.ask_ticks.wrapping_mul(ins.tick),
        });
    }
    Ok(h)
}

/// One entry of a sync request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    pub sym: SymbolId,
    pub after: u64,
    /// 0: no upper bound.
    pub until: u64,
}

/// A sync request: the entries, at most `limit` ticks each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    pub epoch: u64,
    pub fingerprint: u64,
    pub limit: u32,
    pub wants: Vec<Want>,
}

impl SyncRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + 8 + self.wants.len() * ENTRY_LEN);
        put_header(
            &mut out,
            Kind::SyncRequest,
            Header {
                count: self.wants.len(),
                epoch: self.epoch,
                fingerprint: self.fingerprint,
            },
        );
        out.extend_from_slice(&self.limit.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        for w in &self.wants {
            out.extend_from_slice(&w.sym.to_le_bytes());
            out.extend_from_slice(&[0; 4]);
            out.extend_from_slice(&w.after.to_le_bytes());
            out.extend_from_slice(&w.until.to_le_bytes());
        }
        out
    }

    pub fn decode(b: &[u8]) -> Result<SyncRequest, Error> {
        let h = header(b, Kind::SyncRequest, 8, ENTRY_LEN)?;
        let wants = (0..h.count)
            .map(|i| {
                let o = HEADER_LEN + 8 + i * ENTRY_LEN;
                Want {
                    sym: u32_at(b, o),
                    after: u64_at(b, o + 8),
                    until: u64_at(b, o + 16),
                }
            })
            .collect();
        Ok(SyncRequest {
            epoch: h.epoch,
            fingerprint: h.fingerprint,
            limit: u32_at(b, HEADER_LEN),
            wants,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(sym: SymbolId, seq: u64, u: &Universe) -> Tick {
        let ins = u.get(sym);
        Tick {
            sym,
            seq,
            ts_us: 1_763_800_000_123_456 + seq,
            px: ins.start_price,
            qty: ins.lot * 3,
            bid: ins.start_price - ins.tick,
            ask: ins.start_price,
        }
    }

    #[test]
    fn ticks_round_trip_and_foreign_or_broken_messages_are_refused() {
        let u = Universe::demo();
        let fp = fingerprint(&u);
        let ticks: Vec<Tick> = (0..5).map(|i| tick(i % 3, 10 + i as u64, &u)).collect();
        let b = encode_ticks(Kind::Ticks, 42, &u, fp, &ticks);
        assert_eq!(b.len(), HEADER_LEN + 5 * TICK_LEN);
        let mut out = Vec::new();
        let h = decode_ticks(&b, Kind::Ticks, &u, fp, &mut out).unwrap();
        assert_eq!((h.count, h.epoch), (5, 42));
        assert_eq!(out, ticks);
        let other = Universe::synthetic(3, 1.0);
        assert_ne!(fingerprint(&other), fp);
        assert_eq!(
            decode_ticks(&b, Kind::Ticks, &other, fingerprint(&other), &mut out),
            Err(Error::Foreign(fp))
        );
        assert_eq!(
            decode_ticks(&b, Kind::SyncReply, &u, fp, &mut out),
            Err(Error::Kind(1, Kind::SyncReply))
        );
        assert!(matches!(
            decode_ticks(&b[..b.len() - 1], Kind::Ticks, &u, fp, &mut out),
            Err(Error::Length(5, _))
        ));
        assert_eq!(
            decode_ticks(&b[..3], Kind::Ticks, &u, fp, &mut out),
            Err(Error::Short(3))
        );
        let mut bad = b.clone();
        bad[HEADER_LEN + 4] = 200; // symbol id 200
        assert!(matches!(
            decode_ticks(&bad, Kind::Ticks, &u, fp, &mut out),
            Err(Error::Tick(_))
        ));
    }

    #[test]
    fn sync_requests_round_trip() {
        let r = SyncRequest {
            epoch: 7,
            fingerprint: 9,
            limit: 100,
            wants: vec![
                Want {
                    sym: 1,
                    after: 5,
                    until: 0,
                },
                Want {
                    sym: 3,
                    after: 0,
                    until: 12,
                },
            ],
        };
        assert_eq!(SyncRequest::decode(&r.encode()), Ok(r.clone()));
        assert!(SyncRequest::decode(&r.encode()[..40]).is_err());
    }
}
