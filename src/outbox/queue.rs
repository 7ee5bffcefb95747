//! Frames waiting to be written, and what each one counts as once it is.
//!
//! A [`FrameQueue`] is what an outbox holds, what its writer takes in one
//! swap, and what a close flushes. Most of what it holds on the fan-out
//! path are slices of a feed pass's shared chunk. Instead of one reference
//! count per slice (a `Bytes` clone and drop per run per subscriber: at
//! 1,000 clients the largest item of the server's user-space profile), the
//! queue keeps one reference per *chunk* ([`FrameQueue::push_slice`]) and
//! its slices name that pin by index. The pins live exactly as long as the
//! items that point into them: they travel with the queue (swap, append)
//! and are dropped when it is emptied, which the writer does before it takes
//! the next one.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::Bytes;

use crate::metrics::Shard;

/// What a queued item is, for accounting once it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// `count` live ticks back to back, generated at `ts_ns`.
    Ticks { count: u32, ts_ns: u64 },
    /// A tick sent late on purpose: replayed from history on resume, or
    /// held until a throttled view's interval ended (counted as a tick, but
    /// its age is not the server's latency: no latency sample).
    Replay,
    /// Any other text message (replies, snapshots, heartbeats).
    Text,
    /// A control frame (ping, pong).
    Control,
}

impl FrameKind {
    /// Counts an item of this kind as delivered at `now_ns` (wall clock):
    /// messages, ticks and, for live ticks, one latency sample per tick.
    /// One definition for every writer (WebSocket and SSE).
    pub fn account_sent(self, shard: &mut Shard, now_ns: u64) {
        let mut sent = Delivered::at(now_ns);
        sent.add(self, shard);
        sent.finish(shard);
    }
}

/// The items one write delivered, counted as they go, with the latency of
/// their ticks recorded once per generation time: the runs of one feed pass
/// share it, so a write of dozens of runs costs a histogram update or two,
/// not one per run.
#[derive(Debug)]
pub struct Delivered {
    /// When the write went out (wall clock, ns).
    now_ns: u64,
    /// Live ticks not recorded yet, all generated at `ts_ns`.
    count: u64,
    ts_ns: u64,
}

impl Delivered {
    pub fn at(now_ns: u64) -> Delivered {
        Delivered {
            now_ns,
            count: 0,
            ts_ns: 0,
        }
    }

    /// Counts one written item.
    #[inline]
    pub fn add(&mut self, kind: FrameKind, shard: &mut Shard) {
        match kind {
            FrameKind::Ticks { count, ts_ns } => {
                shard.msgs_sent += u64::from(count);
                shard.ticks_sent += u64::from(count);
                if ts_ns != self.ts_ns {
                    self.finish(shard);
                    self.ts_ns = ts_ns;
                }
                self.count += u64::from(count);
            }
            FrameKind::Replay => {
                shard.msgs_sent += 1;
                shard.ticks_sent += 1;
            }
            FrameKind::Text => shard.msgs_sent += 1,
            FrameKind::Control => {}
        }
    }

    /// Records the latency samples still pending (one per tick, all at
    /// their run's age).
    pub fn finish(&mut self, shard: &mut Shard) {
        if self.count > 0 {
            let _ = shard.latency.record_n(
                self.now_ns
                    .saturating_sub(self.ts_ns)
                    .clamp(1, 60_000_000_000),
                std::mem::take(&mut self.count),
            );
        }
    }
}

/// One item (a frame, or a run of tick frames back to back): `start..end`
/// of the queue's pin number `pin`, and what it counts as. 24 bytes, two
/// and a half to a cache line: at 1,000 clients the fan-out's and the
/// writer's time per run goes mostly to missing the cache on these (the
/// kind is packed for that reason; `Bytes` and a `FrameKind` took 48).
#[derive(Debug, Clone, Copy)]
struct Item {
    pin: u32,
    start: u32,
    end: u32,
    /// The kind's tag in the top two bits, a `Ticks` count below.
    tag_count: u32,
    ts_ns: u64,
}

const _: () = assert!(std::mem::size_of::<Item>() == 24);

const TAG_SHIFT: u32 = 30;
const COUNT_MASK: u32 = (1 << TAG_SHIFT) - 1;

impl Item {
    fn new(pin: usize, start: usize, end: usize, kind: FrameKind) -> Item {
        let (tag, count, ts_ns) = match kind {
            FrameKind::Ticks { count, ts_ns } => {
                debug_assert!(count <= COUNT_MASK, "a run is one batch's frames");
                (0, count, ts_ns)
            }
            FrameKind::Replay => (1, 0, 0),
            FrameKind::Text => (2, 0, 0),
            FrameKind::Control => (3, 0, 0),
        };
        Item {
            pin: pin as u32,
            start: start as u32,
            end: end as u32,
            tag_count: (tag << TAG_SHIFT) | count,
            ts_ns,
        }
    }

    #[inline]
    fn kind(&self) -> FrameKind {
        match self.tag_count >> TAG_SHIFT {
            0 => FrameKind::Ticks {
                count: self.tag_count & COUNT_MASK,
                ts_ns: self.ts_ns,
            },
            1 => FrameKind::Replay,
            2 => FrameKind::Text,
            _ => FrameKind::Control,
        }
    }

    #[inline]
    fn len(&self) -> usize {
        (self.end - self.start) as usize
    }
}

/// Frames owed to one client, in order (see the module doc).
#[derive(Debug, Clone, Default)]
pub struct FrameQueue {
    items: VecDeque<Item>,
    /// What the items' bytes lie in: the shared chunks of feed passes, one
    /// reference each however many runs of them are queued, and the bytes of
    /// single frames (replies, snapshots, copies), one item each.
    pins: Vec<Bytes>,
    /// Bytes of the shared chunks among `pins`.
    pinned_bytes: usize,
}

impl FrameQueue {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes of the shared chunks this queue keeps alive.
    pub fn pinned_bytes(&self) -> usize {
        self.pinned_bytes
    }

    /// Queues `bytes` (a frame of its own).
    pub fn push(&mut self, bytes: Bytes, kind: FrameKind) {
        self.items
            .push_back(Item::new(self.pins.len(), 0, bytes.len(), kind));
        self.pins.push(bytes);
    }

    /// Queues `chunk[start..end]`, sharing `chunk`: it is pinned once (or
    /// was already, by the item before), unless pinning it would take the
    /// queue's shared chunks over `pin_budget` bytes: then the slice is
    /// copied. Returns whether it was.
    #[must_use = "copies are counted (tickwire_copied_runs_total)"]
    pub fn push_slice(
        &mut self,
        chunk: &Bytes,
        start: usize,
        end: usize,
        kind: FrameKind,
        pin_budget: usize,
    ) -> bool {
        // A pinned chunk is alive, so no other chunk has its address.
        let pinned_last = self
            .pins
            .last()
            .is_some_and(|p| p.as_ptr() == chunk.as_ptr() && p.len() == chunk.len());
        if !pinned_last {
            if self.pinned_bytes + chunk.len() > pin_budget {
                self.push(Bytes::copy_from_slice(&chunk[start..end]), kind);
                return true;
            }
            self.pins.push(chunk.clone());
            self.pinned_bytes += chunk.len();
        }
        self.items
            .push_back(Item::new(self.pins.len() - 1, start, end, kind));
        false
    }

    /// Moves every item of `other` to the end of this queue.
    pub fn append(&mut self, other: &mut FrameQueue) {
        let base = self.pins.len() as u32;
        self.items.extend(other.items.drain(..).map(|mut item| {
            item.pin += base;
            item
        }));
        self.pins.append(&mut other.pins);
        self.pinned_bytes += std::mem::take(&mut other.pinned_bytes);
    }

    /// Drops every item and what they pinned.
    pub fn clear(&mut self) {
        self.items.clear();
        self.pins.clear();
        self.pinned_bytes = 0;
    }

    /// Keeps the first `len` items.
    pub fn truncate(&mut self, len: usize) {
        self.items.truncate(len);
        if self.items.is_empty() {
            self.clear();
        }
    }

    #[inline]
    fn bytes_of(&self, item: &Item) -> &[u8] {
        &self.pins[item.pin as usize][item.start as usize..item.end as usize]
    }

    /// Fills `slices` with the first items' bytes; returns how many.
    #[inline]
    pub fn io_slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        self.items
            .iter()
            .zip(slices.iter_mut())
            .map(|(item, s)| *s = IoSlice::new(self.bytes_of(item)))
            .count()
    }

    /// `n` bytes from the front were written: drops the items they
    /// finished, counting each in `sent`, and advances into a half-written
    /// one. Returns whether the front item is now half written. Once the
    /// queue is empty, what it pinned is dropped.
    pub fn consume(&mut self, mut n: usize, sent: &mut Delivered, shard: &mut Shard) -> bool {
        let mut partial = false;
        while n > 0 {
            let head = self
                .items
                .front_mut()
                .expect("written bytes belong to items");
            if n < head.len() {
                head.start += n as u32;
                partial = true;
                break;
            }
            n -= head.len();
            sent.add(head.kind(), shard);
            self.items.pop_front();
        }
        if self.items.is_empty() {
            self.clear();
        }
        partial
    }

    /// Takes the front item as bytes of its own (a shared slice of what it
    /// lies in), for writers that hand frames on (an HTTP body).
    pub fn pop_front(&mut self) -> Option<(Bytes, FrameKind)> {
        let item = self.items.pop_front()?;
        let bytes = self.pins[item.pin as usize].slice(item.start as usize..item.end as usize);
        if self.items.is_empty() {
            self.clear();
        }
        Some((bytes, item.kind()))
    }

    /// Each item's bytes and kind, in order (tests and diagnostics).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], FrameKind)> {
        self.items
            .iter()
            .map(|item| (self.bytes_of(item), item.kind()))
    }

    /// Keeps the deque's capacity below `keep` items once it has grown past
    /// `above` (a burst should not be held forever).
    pub fn shrink(&mut self, above: usize, keep: usize) {
        if self.items.capacity() > above {
            self.items.shrink_to(keep);
            self.pins.shrink_to(keep);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(ts_ns: u64) -> FrameKind {
        FrameKind::Ticks { count: 1, ts_ns }
    }

    fn contents(q: &FrameQueue) -> Vec<Vec<u8>> {
        q.iter().map(|(b, _)| b.to_vec()).collect()
    }

    #[test]
    fn slices_of_one_chunk_pin_it_once_and_the_budget_copies_the_rest() {
        let a = Bytes::from_static(b"aaaabbbb");
        let b = Bytes::from(b"ccccdddd".to_vec());
        let mut q = FrameQueue::default();
        assert!(!q.push_slice(&a, 0, 4, tick(1), 12));
        assert!(!q.push_slice(&a, 4, 8, tick(1), 12));
        assert_eq!((q.pins.len(), q.pinned_bytes()), (1, 8));
        // A second chunk would take the pins to 16 bytes: copied (the copy
        // is a frame of its own, not a shared chunk).
        assert!(q.push_slice(&b, 0, 4, tick(1), 12));
        assert_eq!((q.pins.len(), q.pinned_bytes()), (2, 8));
        q.push(Bytes::from_static(b"reply"), FrameKind::Text);
        assert_eq!(contents(&q), [&b"aaaa"[..], b"bbbb", b"cccc", b"reply"]);
        let kinds: Vec<FrameKind> = q.iter().map(|(_, k)| k).collect();
        assert_eq!(kinds, [tick(1), tick(1), tick(1), FrameKind::Text]);
    }

    #[test]
    fn a_partial_write_advances_into_the_item_and_an_empty_queue_unpins() {
        let a = Bytes::from(b"aaaabbbb".to_vec());
        let mut q = FrameQueue::default();
        assert!(!q.push_slice(&a, 0, 4, tick(1), 64));
        assert!(!q.push_slice(&a, 4, 8, tick(1), 64));
        let mut shard = Shard::new();
        let mut sent = Delivered::at(10);
        assert!(q.consume(6, &mut sent, &mut shard));
        assert_eq!(contents(&q), [&b"bb"[..]]);
        assert!(!q.consume(2, &mut sent, &mut shard));
        sent.finish(&mut shard);
        assert!(q.is_empty());
        assert_eq!((q.pins.len(), q.pinned_bytes()), (0, 0));
        assert_eq!((shard.ticks_sent, shard.latency.len()), (2, 2));
    }

    #[test]
    fn appending_renumbers_the_pins() {
        let (a, b) = (Bytes::from(b"aaaa".to_vec()), Bytes::from(b"bbbb".to_vec()));
        let mut q = FrameQueue::default();
        assert!(!q.push_slice(&a, 0, 2, tick(1), 64));
        let mut r = FrameQueue::default();
        assert!(!r.push_slice(&b, 2, 4, tick(1), 64));
        q.append(&mut r);
        assert!(r.is_empty() && r.pins.is_empty());
        assert_eq!(contents(&q), [&b"aa"[..], b"bb"]);
        assert_eq!(q.pinned_bytes(), 8);
        assert_eq!(
            q.pop_front().map(|(b, _)| b),
            Some(Bytes::from_static(b"aa"))
        );
        assert_eq!(
            q.pop_front().map(|(b, _)| b),
            Some(Bytes::from_static(b"bb"))
        );
        assert_eq!(q.pinned_bytes(), 0);
    }

    #[test]
    fn one_latency_sample_per_generation_time_counts_every_tick() {
        let mut shard = Shard::new();
        let mut sent = Delivered::at(1_000);
        for kind in [
            FrameKind::Ticks {
                count: 3,
                ts_ns: 100,
            },
            FrameKind::Ticks {
                count: 2,
                ts_ns: 100,
            },
            FrameKind::Text,
            FrameKind::Ticks {
                count: 1,
                ts_ns: 400,
            },
            FrameKind::Replay,
        ] {
            sent.add(kind, &mut shard);
        }
        sent.finish(&mut shard);
        assert_eq!((shard.msgs_sent, shard.ticks_sent), (8, 7));
        let h = &shard.latency;
        assert_eq!(h.len(), 6);
        assert_eq!(h.count_at(900), 5);
        assert_eq!(h.count_at(600), 1);
    }
}
