//! A topic's history: the most recent ticks of one symbol, as the frame bytes
//! that were sent live, so that a resume replays them without encoding
//! anything.
//!
//! Rules (docs/PROTOCOL.md, "Resume"): the ring holds at most `depth` ticks
//! with contiguous seqs ending at the topic's latest. A client that has seq
//! `from` of this epoch is recovered when every tick after `from` is still
//! here (`from >= first_seq - 1`), or when it missed nothing (`from` equals
//! the latest seq). A recovery is never partial: either every missed tick is
//! replayed, or none is and the client gets a snapshot (and `recovered:
//! false`). A hole in the seqs (a source that lost ticks) empties the ring,
//! so nothing before the hole can be recovered across it.
//!
//! Each entry also keeps the tick's place in the hub's publish order (its
//! publish counter, the number in an SSE event's id), so that an SSE stream
//! resumes from one number for all of its symbols ([`History::after_published`]).
//!
//! Memory: at most `depth` entries per symbol. The frames are copied (once
//! per tick, never per subscriber) out of the publish batch into this
//! topic's own arena of [`ARENA_BYTES`] blocks, so the history never pins a
//! batch's chunks; an entry costs its frame's bytes plus a 32-byte handle,
//! and a block is freed once its last entry is evicted. The bound for a
//! universe is [`History::bytes_bound`] per symbol, logged at start-up.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

/// Size of one block of a topic's arena.
pub const ARENA_BYTES: usize = 4096;

/// Bytes of bookkeeping per entry on top of the frame itself: the `Bytes`
/// handle in the ring and the tick's publish counter.
pub const ENTRY_OVERHEAD: usize = 40;

/// The last `depth` ticks of a symbol.
#[derive(Debug, Default)]
pub struct History {
    frames: VecDeque<Bytes>,
    /// The publish counter of each of `frames`, ascending.
    published: VecDeque<u64>,
    /// Seq of `frames[0]`.
    first_seq: u64,
    depth: usize,
    /// Where the next frame is copied to.
    arena: BytesMut,
}

/// What a resume from a seq gets.
#[derive(Debug, PartialEq, Eq)]
pub enum Replay<'a> {
    /// Every tick after the seq, oldest first (possibly none).
    Recovered(ReplayFrames<'a>),
    /// Ticks after the seq are gone (or the seq is not one of ours).
    Lost,
}

/// The frames of a recovery, oldest first.
#[derive(Debug, PartialEq, Eq)]
pub struct ReplayFrames<'a> {
    a: &'a [Bytes],
    b: &'a [Bytes],
}

impl<'a> ReplayFrames<'a> {
    pub fn len(&self) -> usize {
        self.a.len() + self.b.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total bytes of the frames.
    pub fn bytes(&self) -> usize {
        self.iter().map(Bytes::len).sum()
    }

    pub fn iter(&self) -> impl Iterator<Item = &'a Bytes> + 'a {
        self.a.iter().chain(self.b.iter())
    }
}

impl History {
    pub fn new(depth: usize) -> History {
        History {
            frames: VecDeque::with_capacity(depth.min(64)),
            published: VecDeque::with_capacity(depth.min(64)),
            first_seq: 0,
            depth,
            arena: BytesMut::new(),
        }
    }

    /// Records the frame of the tick with `seq` and publish counter
    /// `published`, the topic's new latest.
    pub fn push(&mut self, seq: u64, published: u64, frame: &[u8]) {
        if self.depth == 0 {
            return;
        }
        if self.arena.capacity() - self.arena.len() < frame.len() {
            self.arena = BytesMut::with_capacity(ARENA_BYTES.max(frame.len()));
        }
        self.arena.extend_from_slice(frame);
        let frame = self.arena.split().freeze();
        let expected = self.first_seq + self.frames.len() as u64;
        if self.frames.is_empty() || seq != expected {
            // First tick, or a hole: nothing older can be recovered across it.
            self.frames.clear();
            self.published.clear();
            self.first_seq = seq;
        } else if self.frames.len() == self.depth {
            self.frames.pop_front();
            self.published.pop_front();
            self.first_seq += 1;
        }
        self.frames.push_back(frame);
        self.published.push_back(published);
    }

    /// What a client that has every tick published up to counter `from`
    /// (an SSE event id) gets, when the topic's latest tick has counter
    /// `latest` (0: never traded): with each frame, its counter.
    ///
    /// Recovered when the ring holds every tick after `from`: nothing was
    /// published since, or the oldest tick held is at or before `from`, or
    /// it is the symbol's first tick ever (seq 1).
    pub fn after_published(&self, from: u64, latest: u64) -> Option<Vec<(u64, &Bytes)>> {
        if latest <= from {
            return Some(Vec::new());
        }
        let oldest = *self.published.front()?;
        if oldest > from && self.first_seq != 1 {
            return None;
        }
        let skip = self.published.partition_point(|&p| p <= from);
        Some(
            self.published
                .iter()
                .copied()
                .zip(self.frames.iter())
                .skip(skip)
                .collect(),
        )
    }

    /// Oldest seq held (0: none).
    pub fn first_seq(&self) -> u64 {
        if self.frames.is_empty() {
            0
        } else {
            self.first_seq
        }
    }

    /// What a client that has seq `from` gets, when the topic's latest seq
    /// is `latest` (0: never traded).
    pub fn after(&self, from: u64, latest: u64) -> Replay<'_> {
        if from == latest {
            return Replay::Recovered(ReplayFrames { a: &[], b: &[] });
        }
        if from > latest || self.frames.is_empty() || from + 1 < self.first_seq {
            return Replay::Lost;
        }
        debug_assert_eq!(self.first_seq + self.frames.len() as u64 - 1, latest);
        let skip = (from + 1 - self.first_seq) as usize;
        let (a, b) = self.frames.as_slices();
        let (a, b) = if skip <= a.len() {
            (&a[skip..], b)
        } else {
            (&[][..], &b[skip - a.len()..])
        };
        Replay::Recovered(ReplayFrames { a, b })
    }

    /// Up to `limit` frames after seq `from`, oldest first, and whether they
    /// start right after `from` (nothing between is missing).
    pub fn page(&self, from: u64, limit: usize) -> (Vec<&Bytes>, bool) {
        if self.frames.is_empty() {
            return (Vec::new(), true);
        }
        let last = self.first_seq + self.frames.len() as u64 - 1;
        let complete = from + 1 >= self.first_seq || from >= last;
        let skip = from.saturating_add(1).saturating_sub(self.first_seq) as usize;
        (
            self.frames.iter().skip(skip).take(limit).collect(),
            complete,
        )
    }

    /// Bytes one symbol's full ring takes, for frames of `frame_len` bytes
    /// (and the arena block being filled).
    pub fn bytes_bound(depth: usize, frame_len: usize) -> usize {
        if depth == 0 {
            return 0;
        }
        depth * (frame_len + ENTRY_OVERHEAD) + ARENA_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(r: &Replay<'_>) -> Vec<u8> {
        match r {
            Replay::Recovered(f) => f.iter().map(|b| b[0]).collect(),
            Replay::Lost => vec![0xFF],
        }
    }

    fn ring(depth: usize, seqs: std::ops::RangeInclusive<u64>) -> History {
        let mut h = History::new(depth);
        for s in seqs {
            h.push(s, 10 * s, &[s as u8]);
        }
        h
    }

    #[test]
    fn replays_exactly_what_was_missed_or_nothing() {
        let h = ring(4, 1..=10); // holds 7..=10
        assert_eq!(h.first_seq(), 7);
        assert_eq!(frames(&h.after(6, 10)), vec![7, 8, 9, 10]);
        assert_eq!(frames(&h.after(8, 10)), vec![9, 10]);
        assert_eq!(frames(&h.after(10, 10)), Vec::<u8>::new());
        assert_eq!(h.after(5, 10), Replay::Lost, "seq 6 was evicted");
        assert_eq!(h.after(11, 10), Replay::Lost, "a seq from the future");
        // The ring wraps: slices are stitched in order.
        let mut h = ring(3, 1..=3);
        h.push(4, 40, &[4]);
        h.push(5, 50, &[5]);
        assert_eq!(frames(&h.after(2, 5)), vec![3, 4, 5]);
        assert_eq!(frames(&h.after(3, 5)), vec![4, 5]);
    }

    #[test]
    fn a_hole_empties_the_ring_and_depth_zero_keeps_nothing() {
        let mut h = ring(8, 1..=5);
        h.push(9, 90, &[9]);
        assert_eq!(h.first_seq(), 9);
        assert_eq!(h.after(5, 9), Replay::Lost);
        assert_eq!(frames(&h.after(8, 9)), vec![9]);
        let h = ring(0, 1..=5);
        assert_eq!(h.after(4, 5), Replay::Lost);
        assert_eq!(frames(&h.after(5, 5)), Vec::<u8>::new());
    }

    #[test]
    fn resumes_by_publish_counter_replay_everything_after_it_or_nothing() {
        let seqs = |r: Option<Vec<(u64, &Bytes)>>| {
            r.map(|v| v.iter().map(|(_, b)| b[0]).collect::<Vec<_>>())
        };
        let h = ring(4, 1..=10); // holds seqs 7..=10, counters 70..=100
        assert_eq!(seqs(h.after_published(75, 100)), Some(vec![8, 9, 10]));
        assert_eq!(seqs(h.after_published(70, 100)), Some(vec![8, 9, 10]));
        assert_eq!(seqs(h.after_published(100, 100)), Some(vec![]));
        assert_eq!(seqs(h.after_published(500, 100)), Some(vec![]));
        assert_eq!(seqs(h.after_published(69, 100)), None, "seq 6 was evicted");
        // A symbol whose first tick ever is still held recovers from anywhere.
        let h = ring(4, 1..=3);
        assert_eq!(seqs(h.after_published(0, 30)), Some(vec![1, 2, 3]));
        // A hole: nothing before it.
        let mut h = ring(8, 1..=5);
        h.push(9, 90, &[9]);
        assert_eq!(seqs(h.after_published(50, 90)), None);
        assert_eq!(seqs(h.after_published(0, 0)), Some(vec![]));
    }

    #[test]
    fn pages_say_whether_they_are_complete() {
        let h = ring(4, 1..=10);
        let (p, complete) = h.page(6, 2);
        assert_eq!(
            (p.iter().map(|b| b[0]).collect::<Vec<_>>(), complete),
            (vec![7, 8], true)
        );
        let (p, complete) = h.page(0, 100);
        assert_eq!((p.len(), complete), (4, false));
        let (p, complete) = h.page(10, 100);
        assert_eq!((p.len(), complete), (0, true));
    }
}
