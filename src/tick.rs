//! A tick's wire form, encoded once.
//!
//! The feed's [`Tick`] is encoded exactly once, by the source that publishes
//! it, into the complete bytes of an unmasked WebSocket text frame
//! ([`TickFrame`]), on the fan-out path back to back with the rest of its
//! pass in a shared chunk ([`EncodedBatch`]). Every subscriber's
//! [`Outbox`](crate::outbox::Outbox) then holds a slice of the same bytes
//! (one reference per queue per chunk), and the writer hands them to the
//! kernel as they are: no per-client serialization, copying or framing. The
//! JSON itself is the protocol crate's
//! [`TickRef::write_json`](tickwire_protocol::TickRef::write_json).

use bytes::Bytes;
use tickwire_protocol::{BinaryTick, Decimal, TickRef, TsDigits};

use crate::feed::{Instrument, SymbolId, Tick};
use crate::wire::{finish_frame, HEAD_ROOM, OPCODE_BINARY, OPCODE_TEXT};

pub use tickwire_protocol::TickKind;

/// Appends the JSON text of `tick` (a `tick` or `snapshot` message).
#[inline]
pub fn write_json(out: &mut Vec<u8>, tick: &Tick, ins: &Instrument, kind: TickKind) {
    tick_ref(tick, ins, kind).write_json(out);
}

/// The protocol's view of `tick`: prices and quantity as decimals.
#[inline]
fn tick_ref<'a>(tick: &Tick, ins: &'a Instrument, kind: TickKind) -> TickRef<'a> {
    let price = |units| Decimal::new(units, ins.price_decimals as u8);
    TickRef {
        kind,
        sym: &ins.symbol,
        seq: tick.seq,
        ts: tick.ts_us,
        px: price(tick.px),
        qty: Decimal::new(tick.qty, ins.qty_decimals as u8),
        bid: price(tick.bid),
        ask: price(tick.ask),
    }
}

/// A tick in the binary layout's terms: prices in ticks, quantity in lots.
pub fn to_binary(tick: &Tick, ins: &Instrument, kind: TickKind) -> BinaryTick {
    BinaryTick {
        kind,
        symbol_id: tick.sym,
        seq: tick.seq,
        ts: tick.ts_us,
        px_ticks: tick.px / ins.tick,
        qty_lots: tick.qty / ins.lot,
        bid_ticks: tick.bid / ins.tick,
        ask_ticks: tick.ask / ins.tick,
    }
}

/// How a connection's ticks are encoded (`GET /ws?format=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// JSON text frames (the default).
    #[default]
    Json,
    /// The compact binary layout of `tickwire_protocol::binary`.
    Binary,
    /// Server-Sent Events (`GET /sse`): each tick an `event: tick` with its
    /// `id:` ([`write_sse`]); not a WebSocket format.
    #[value(skip)]
    Sse,
}

impl Format {
    pub fn label(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Binary => "binary",
            Format::Sse => "sse",
        }
    }
}

/// Appends a tick as one Server-Sent Event: `id: <epoch>-<published>`,
/// `event: tick` or `snapshot`, and the tick's JSON (the same text as the
/// WebSocket message) in `data:`. `published` is the hub's publish counter
/// of this tick (docs/PROTOCOL.md, "Server-Sent Events").
pub fn write_sse(
    out: &mut Vec<u8>,
    tick: &Tick,
    ins: &Instrument,
    kind: TickKind,
    epoch: &str,
    published: u64,
) {
    write_sse_head(out, epoch, published, kind);
    write_json(out, tick, ins, kind);
    out.extend_from_slice(b"\n\n");
}

/// The lines of an SSE tick event before its JSON: `id:`, `event:`, `data: `.
pub fn write_sse_head(out: &mut Vec<u8>, epoch: &str, published: u64, kind: TickKind) {
    use std::io::Write;
    let _ = write!(
        out,
        "id: {epoch}-{published}\nevent: {}\ndata: ",
        match kind {
            TickKind::Tick => "tick",
            TickKind::Snapshot => "snapshot",
        }
    );
}

/// Bytes of an SSE event head for an epoch of `epoch_len` bytes (the
/// counter has at most 20 digits).
pub fn sse_head_capacity(epoch_len: usize) -> usize {
    "id: -\nevent: snapshot\ndata: ".len() + epoch_len + 20
}

/// A tick encoded once for every subscriber: the frame bytes, plus what the
/// outbox needs to conflate it and the writer to measure its latency.
#[derive(Debug, Clone)]
pub struct TickFrame {
    pub sym: SymbolId,
    /// Generation time in nanoseconds since the Unix epoch (the wire carries
    /// microseconds), for the server-side latency histogram.
    pub ts_ns: u64,
    pub bytes: Bytes,
}

/// Bytes allocated for one tick's frame: the header room, the fixed text, the
/// symbol and up to 21 characters for each of the six numbers (so one
/// allocation fits any).
pub fn frame_capacity(ins: &Instrument) -> usize {
    HEAD_ROOM + 48 + 6 * 21 + ins.symbol.len()
}

impl TickFrame {
    /// The tick's frame in `format` (SSE events need more: see
    /// [`TickFrame::encode_sse`]).
    pub fn encode_as(format: Format, tick: &Tick, ins: &Instrument, kind: TickKind) -> TickFrame {
        match format {
            Format::Sse => unreachable!("SSE events carry an id: TickFrame::encode_sse"),
            Format::Json => TickFrame::encode(tick, ins, kind),
            Format::Binary => {
                let mut buf = Vec::with_capacity(HEAD_ROOM + tickwire_protocol::binary::TICK_LEN);
                buf.resize(HEAD_ROOM, 0);
                to_binary(tick, ins, kind).write(&mut buf);
                TickFrame {
                    sym: tick.sym,
                    ts_ns: tick.ts_us * 1000,
                    bytes: finish_frame(buf, OPCODE_BINARY),
                }
            }
        }
    }

    /// The tick as one SSE event (see [`write_sse`]).
    pub fn encode_sse(
        tick: &Tick,
        ins: &Instrument,
        kind: TickKind,
        epoch: &str,
        published: u64,
    ) -> TickFrame {
        let mut buf = Vec::with_capacity(sse_head_capacity(epoch.len()) + frame_capacity(ins));
        write_sse(&mut buf, tick, ins, kind, epoch, published);
        TickFrame {
            sym: tick.sym,
            ts_ns: tick.ts_us * 1000,
            bytes: Bytes::from(buf),
        }
    }

    pub fn encode(tick: &Tick, ins: &Instrument, kind: TickKind) -> TickFrame {
        let mut buf = Vec::with_capacity(frame_capacity(ins));
        buf.resize(HEAD_ROOM, 0);
        write_json(&mut buf, tick, ins, kind);
        TickFrame {
            sym: tick.sym,
            ts_ns: tick.ts_us * 1000,
            bytes: finish_frame(buf, OPCODE_TEXT),
        }
    }
}

/// Most bytes of one chunk of an [`EncodedBatch`]. Queued runs pin their
/// chunk until written, so chunks stay small (see [`crate::outbox`]); a
/// chunk is allocated at the size of its frames, not of this bound.
pub const CHUNK_BYTES: usize = 16 * 1024;

/// Where one frame of an [`EncodedBatch`] lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameAt {
    pub sym: SymbolId,
    pub chunk: u32,
    pub start: u32,
    pub end: u32,
    /// Generation time in nanoseconds since the Unix epoch.
    pub ts_ns: u64,
}

impl FrameAt {
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// Frames `start..end` of an [`EncodedBatch`] that go out as one shared
/// slice (one queue item, one iovec): consecutive frames of which every
/// one after the first [`joins`](EncodedBatch::joins) the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRun {
    pub start: u32,
    pub end: u32,
}

impl FrameRun {
    /// Frame `i` alone.
    pub fn one(i: u32) -> FrameRun {
        FrameRun {
            start: i,
            end: i + 1,
        }
    }

    /// Frames in the run.
    pub fn count(&self) -> u32 {
        self.end - self.start
    }

    /// Appends frame `i` to `runs`: the last run grows when `i` follows it
    /// and `joins` ([`EncodedBatch::joins`]), else `i` starts a run.
    /// The fan-out's inner step, once per tick per subscriber.
    #[inline]
    pub fn push(runs: &mut Vec<FrameRun>, i: u32, joins: bool) {
        match runs.last_mut() {
            Some(r) if joins && r.end == i => r.end += 1,
            _ => runs.push(FrameRun::one(i)),
        }
    }
}

/// The ticks of one publish batch, each encoded once into complete frame
/// bytes, back to back in a few shared chunks: a connection subscribed to
/// consecutive ticks of the batch gets one slice (one queue item, one iovec)
/// for all of them.
#[derive(Debug, Default)]
pub struct EncodedBatch {
    chunks: Vec<Bytes>,
    /// Where frames are encoded; sealing copies them out into a chunk of
    /// their own size. Kept across batches, so a pass costs one allocation
    /// of what it holds, not one of `CHUNK_BYTES`.
    building: Vec<u8>,
    frames: Vec<FrameAt>,
    /// The pass's ticks share their `ts`: its digits are written once.
    last_ts: TsDigits,
}

impl EncodedBatch {
    /// Forgets the previous batch (its chunks live on where still queued).
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.frames.clear();
    }

    /// Appends the binary frame of `tick` (56 bytes of payload: the 2-byte
    /// header always fits).
    pub fn encode_binary(&mut self, tick: &Tick, ins: &Instrument) {
        if self.building.len() + 2 + tickwire_protocol::binary::TICK_LEN > CHUNK_BYTES {
            self.seal_chunk();
        }
        if self.building.capacity() == 0 {
            self.building.reserve(CHUNK_BYTES);
        }
        let start = self.building.len();
        self.building.extend_from_slice(&[
            0x80 | OPCODE_BINARY,
            tickwire_protocol::binary::TICK_LEN as u8,
        ]);
        to_binary(tick, ins, TickKind::Tick).write(&mut self.building);
        self.push_frame(tick, start, self.building.len());
    }

    /// Appends the SSE event of `tick` (see [`write_sse`]).
    pub fn encode_sse(&mut self, tick: &Tick, ins: &Instrument, epoch: &str, published: u64) {
        if self.building.len() + sse_head_capacity(epoch.len()) + frame_capacity(ins) > CHUNK_BYTES
        {
            self.seal_chunk();
        }
        if self.building.capacity() == 0 {
            self.building.reserve(CHUNK_BYTES);
        }
        let start = self.building.len();
        write_sse(
            &mut self.building,
            tick,
            ins,
            TickKind::Tick,
            epoch,
            published,
        );
        self.push_frame(tick, start, self.building.len());
    }

    /// Appends the frame of `tick`.
    pub fn encode(&mut self, tick: &Tick, ins: &Instrument) {
        if self.building.len() + frame_capacity(ins) > CHUNK_BYTES {
            self.seal_chunk();
        }
        if self.building.capacity() == 0 {
            self.building.reserve(CHUNK_BYTES);
        }
        let buf = &mut self.building;
        let start = buf.len();
        // Two header bytes fit every payload under 126 bytes, most ticks;
        // longer ones are shifted to make room for the 16-bit length.
        buf.extend_from_slice(&[0x80 | OPCODE_TEXT, 0]);
        tick_ref(tick, ins, TickKind::Tick).write_json_reusing(buf, &mut self.last_ts);
        let len = buf.len() - start - 2;
        if len < 126 {
            buf[start + 1] = len as u8;
        } else {
            buf.splice(start + 2..start + 2, (len as u16).to_be_bytes());
            buf[start + 1] = 126;
        }
        let end = buf.len();
        self.push_frame(tick, start, end);
    }

    /// Records where the frame of `tick` just written to the building chunk
    /// lies.
    fn push_frame(&mut self, tick: &Tick, start: usize, end: usize) {
        let chunk = self.chunks.len() as u32;
        let ts_ns = tick.ts_us * 1000;
        self.frames.push(FrameAt {
            sym: tick.sym,
            chunk,
            start: start as u32,
            end: end as u32,
            ts_ns,
        });
    }

    fn seal_chunk(&mut self) {
        // One copy of the pass's bytes, once per batch: a chunk that kept the
        // building buffer's capacity would pin 16 KiB wherever one frame of
        // it waits, and allocating 16 KiB per pass made glibc consolidate its
        // free lists on every pass (with the per-frame copies of lagging
        // queues, 18% of the server's CPU at 1,000 clients, bench/README.md).
        if !self.building.is_empty() {
            self.chunks.push(Bytes::copy_from_slice(&self.building));
            self.building.clear();
        }
    }

    /// Ends the batch: every frame encoded is now addressable.
    pub fn seal(&mut self) {
        self.seal_chunk();
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn frame(&self, i: u32) -> FrameAt {
        self.frames[i as usize]
    }

    /// The bytes of frame `i` (after [`EncodedBatch::seal`]).
    pub fn bytes(&self, i: u32) -> &[u8] {
        let f = self.frames[i as usize];
        &self.chunks[f.chunk as usize][f.start as usize..f.end as usize]
    }

    /// A shared slice of `chunk` from `start` to `end`.
    pub fn slice(&self, chunk: u32, start: u32, end: u32) -> Bytes {
        self.chunks[chunk as usize].slice(start as usize..end as usize)
    }

    /// Whether frame `i` continues the one before it as one slice: same
    /// chunk (so its bytes follow on) and same `ts_ns` (so one latency
    /// sample stands for both). Asked once per tick, not per subscriber.
    #[inline]
    pub fn joins(&self, i: u32) -> bool {
        let f = &self.frames[i as usize];
        i > 0 && {
            let p = &self.frames[i as usize - 1];
            p.chunk == f.chunk && p.ts_ns == f.ts_ns
        }
    }

    /// Bytes of `run`'s frames together.
    #[inline]
    pub fn run_len(&self, run: FrameRun) -> usize {
        (self.frames[run.end as usize - 1].end - self.frames[run.start as usize].start) as usize
    }

    /// Where `run`'s frames lie: their chunk, the byte range in it, and
    /// their generation time (a run's frames share it).
    #[inline]
    pub fn run_in_chunk(&self, run: FrameRun) -> (&Bytes, usize, usize, u64) {
        let first = self.frames[run.start as usize];
        let last = self.frames[run.end as usize - 1];
        debug_assert_eq!(first.chunk, last.chunk, "a run lies in one chunk");
        (
            &self.chunks[first.chunk as usize],
            first.start as usize,
            last.end as usize,
            first.ts_ns,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::Universe;
    use tickwire_protocol::TickMsg;

    #[test]
    fn tick_frame_is_a_complete_text_frame_of_the_protocol_json() {
        let u = Universe::demo();
        let id = u.id_of("AAPL").unwrap();
        let ins = u.get(id);
        let t = Tick {
            sym: id,
            seq: 1042,
            ts_us: 1763800000123456,
            px: 18723,
            qty: 100,
            bid: 18722,
            ask: 18724,
        };
        let f = TickFrame::encode(&t, ins, TickKind::Tick);
        assert_eq!(f.bytes[0], 0x81);
        let len = f.bytes[1] as usize;
        assert_eq!(len, f.bytes.len() - 2);
        let json = std::str::from_utf8(&f.bytes[2..]).unwrap();
        assert_eq!(
            json,
            r#"{"type":"tick","sym":"AAPL","seq":1042,"ts":1763800000123456,"px":187.23,"qty":100,"bid":187.22,"ask":187.24}"#
        );
        let back = TickMsg::parse(&f.bytes[2..]).unwrap();
        assert_eq!((back.seq, back.px), (1042, Decimal::new(18723, 2)));
    }

    #[test]
    fn binary_frames_carry_ticks_and_lots() {
        let u = Universe::demo();
        let id = u.id_of("AAPL").unwrap();
        let t = Tick {
            sym: id,
            seq: 9,
            ts_us: 5,
            px: 18723,
            qty: 300,
            bid: 18722,
            ask: 18724,
        };
        let f = TickFrame::encode_as(Format::Binary, &t, u.get(id), TickKind::Snapshot);
        assert_eq!(&f.bytes[..2], &[0x82, 56]);
        let b = BinaryTick::parse(&f.bytes[2..]).unwrap();
        assert_eq!(
            (b.symbol_id, b.seq, b.px_ticks, b.qty_lots),
            (id, 9, 18723, 300)
        );
        assert_eq!(b.kind, TickKind::Snapshot);
        let mut batch = EncodedBatch::default();
        batch.encode_binary(&t, u.get(id));
        batch.seal();
        assert_eq!(
            &batch.bytes(0)[2..],
            &TickFrame::encode_as(Format::Binary, &t, u.get(id), TickKind::Tick).bytes[2..]
        );
    }

    #[test]
    fn a_batch_holds_the_same_frames_back_to_back_in_chunks() {
        let u = Universe::demo();
        let mut batch = EncodedBatch::default();
        let mut singles = Vec::new();
        for seq in 1..=400u64 {
            for (sym, ins) in u.iter().take(3) {
                let t = Tick {
                    sym,
                    seq,
                    ts_us: 1763800000123456,
                    px: ins.start_price,
                    qty: ins.lot,
                    bid: ins.start_price,
                    ask: ins.start_price + ins.tick,
                };
                batch.encode(&t, ins);
                singles.push(TickFrame::encode(&t, ins, TickKind::Tick).bytes);
            }
        }
        batch.seal();
        assert!(batch.chunks.len() > 1, "1,200 frames take several chunks");
        for (i, single) in singles.iter().enumerate() {
            assert_eq!(batch.bytes(i as u32), &single[..], "frame {i}");
        }
        // A frame over 125 bytes gets the 16-bit length.
        let mut long = Universe::synthetic(1, 1.0).get(0).clone();
        long.symbol = "X".repeat(32);
        let t = Tick {
            sym: 0,
            seq: u64::MAX,
            ts_us: u64::MAX / 1000,
            px: i64::MAX,
            qty: i64::MAX,
            bid: i64::MIN,
            ask: i64::MAX,
        };
        batch.clear();
        batch.encode(&t, &long);
        batch.seal();
        assert_eq!(
            batch.bytes(0),
            &TickFrame::encode(&t, &long, TickKind::Tick).bytes[..]
        );
        assert_eq!(batch.bytes(0)[1], 126);
    }
}
