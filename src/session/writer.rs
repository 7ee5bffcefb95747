//! The writer task: owns the write half, drains the outbox, keeps the
//! connection's clocks, and says goodbye.
//!
//! It takes everything queued in one go and hands it to the kernel with
//! vectored writes of pre-encoded frame bytes (many frames per syscall), in
//! the same poll that took it: at 1,000 connections nearly every tick is its
//! own wake-up, so what a wake-up costs besides the `writev` is kept to one
//! outbox lock, one clock read for the latency and one for the heartbeat. Its
//! own frames (pings, heartbeats) go straight into the batch it is about to
//! write; only the idle timeout goes through the outbox, so that the first
//! close decision wins and is counted once. When the outbox says close, it
//! finishes a frame it had half written, sends the close frame, and
//! half-closes.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tickwire_protocol::Reply;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::clocks::{Deadlines, Liveness};
use super::Settings;
use crate::clock;
use crate::close::DisconnectReason;
use crate::metrics::Metrics;
use crate::outbox::{Closing, Delivered, FrameKind, FrameQueue, Next, Outbox};
use crate::wire::{self, OPCODE_PING};

/// How long a closing connection may take to deliver its close frame (and
/// the rest of a half-written frame before it) and to hear the client's
/// close back.
pub const CLOSE_GRACE: Duration = Duration::from_secs(3);

/// Most frame slices handed to one `writev` (Linux allows 1024).
const MAX_IOV: usize = 512;

/// Writes whatever the outbox hands over until it says close (or the socket
/// fails); returns why the connection ended.
pub async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    outbox: &Outbox,
    settings: &Settings,
    liveness: &Liveness,
) -> DisconnectReason {
    let clocks = &settings.clocks;
    let metrics = outbox.metrics().clone();
    let mut batch = FrameQueue::default();
    // Bytes of `batch[0]` already written: a frame must be finished before
    // anything else (a close frame) may follow it.
    let mut head_partial = false;
    let mut deadlines = Deadlines::new(clocks, clock::now_ms());
    let timer = tokio::time::sleep_until(clock::instant_at_ms(
        deadlines.next(liveness.last_heard_ms()),
    ));
    tokio::pin!(timer);

    // Whether the timer holds this task's waker since its last reset. It
    // keeps the waker of the poll that registered it, and this task's waker
    // does not change, so it is polled once per reset, not on every wake-up
    // (a timer poll was a sixth of the writer's instructions at one tick per
    // wake-up); between resets, `is_elapsed` says whether it fired.
    let mut timer_registered = false;
    let mut closing: Closing = loop {
        let step = std::future::poll_fn(|cx| {
            if let Poll::Ready(step) =
                poll_step(cx, &mut wr, outbox, &mut batch, &mut head_partial, &metrics)
            {
                return Poll::Ready(Some(step));
            }
            if timer_registered {
                return if timer.is_elapsed() {
                    Poll::Ready(None)
                } else {
                    Poll::Pending
                };
            }
            timer_registered = true;
            timer.as_mut().poll(cx).map(|()| None)
        })
        .await;
        match step {
            Some(Step::Wrote) => {
                deadlines.sent(clock::now_ms());
                continue;
            }
            Some(Step::Close(c)) => break c,
            Some(Step::Failed) => return DisconnectReason::Client,
            None => {}
        }
        // The timer fired: see which clocks are actually due.
        let now = clock::now_ms();
        let last_heard = liveness.last_heard_ms();
        let due = deadlines.due(now, last_heard, batch.is_empty());
        if due.idle {
            outbox.close(DisconnectReason::IdleTimeout);
            continue;
        }
        if due.heartbeat {
            let hb = Reply::Heartbeat {
                ts: clock::wall_us(),
            };
            batch.push(wire::reply_frame(&hb), FrameKind::Text);
        }
        if due.ping {
            batch.push(wire::frame(OPCODE_PING, b"tickwire"), FrameKind::Control);
        }
        timer.as_mut().reset(clock::instant_at_ms(
            deadlines.next(last_heard).max(now + 1),
        ));
        timer_registered = false;
    };

    if !closing.frame.is_empty() {
        // A half-written frame must be finished before anything may follow;
        // the rest of the batch goes only if the close says flush.
        if closing.flush.is_empty() {
            batch.truncate(usize::from(head_partial));
        }
        batch.append(&mut closing.flush);
        batch.push(closing.frame, FrameKind::Control);
        // A slow consumer may be stalled for a while yet: its queue is gone,
        // only the close frame is owed, so it gets a long grace to read it
        // (and learn why it was dropped), up to a bound on how many wait.
        let slot = (closing.reason == DisconnectReason::SlowConsumer)
            .then(|| SlowClosing::enter(&metrics, settings.slow_close.max))
            .flatten();
        let grace = if slot.is_some() {
            settings.slow_close.grace
        } else {
            CLOSE_GRACE
        };
        // Then half-close: the client sees the end of our stream after the
        // close frame.
        let _ = tokio::time::timeout(grace, async {
            write_batch(&mut wr, &mut batch, &mut head_partial, &metrics).await?;
            wr.shutdown().await
        })
        .await;
        drop(slot);
    }
    closing.reason
}

/// What one wake-up of the writer came to.
enum Step {
    /// Everything taken from the outbox is written.
    Wrote,
    Close(Closing),
    /// The socket failed: the client is gone.
    Failed,
}

/// Takes what the outbox holds (if the batch is empty) and writes it in the
/// same poll. Only when the socket is full does it watch for a close, which
/// must not wait for the client to drain: a writer whose writes go through
/// sees a close at its next take, one lock per wake-up instead of two.
/// Cancel-safe: progress lives in `batch` itself.
fn poll_step<W: AsyncWrite + Unpin>(
    cx: &mut Context<'_>,
    wr: &mut W,
    outbox: &Outbox,
    batch: &mut FrameQueue,
    head_partial: &mut bool,
    metrics: &Metrics,
) -> Poll<Step> {
    while batch.is_empty() {
        if let Next::Close(c) = ready!(outbox.poll_next(cx, batch)) {
            return Poll::Ready(Step::Close(c));
        }
    }
    match poll_write_batch(cx, wr, batch, head_partial, metrics) {
        Poll::Ready(Ok(())) => Poll::Ready(Step::Wrote),
        Poll::Ready(Err(_)) => Poll::Ready(Step::Failed),
        Poll::Pending => outbox.poll_closed(cx).map(Step::Close),
    }
}

/// Writes all of `batch`, many frames per `writev`, recording each written
/// frame. Cancel-safe: progress lives in `batch` itself.
async fn write_batch<W: AsyncWrite + Unpin>(
    wr: &mut W,
    batch: &mut FrameQueue,
    head_partial: &mut bool,
    metrics: &Metrics,
) -> io::Result<()> {
    std::future::poll_fn(|cx| poll_write_batch(cx, wr, batch, head_partial, metrics)).await
}

fn poll_write_batch<W: AsyncWrite + Unpin>(
    cx: &mut Context<'_>,
    wr: &mut W,
    batch: &mut FrameQueue,
    head_partial: &mut bool,
    metrics: &Metrics,
) -> Poll<io::Result<()>> {
    while !batch.is_empty() {
        // Most wake-ups carry a few slices: an array sized for the batch,
        // not for the most a writev takes (filling 512 empty slices, 8 KiB,
        // on every write was 40% of the writer's instructions at one tick
        // per wake-up; bench/README.md).
        let written = ready!(match batch.len() {
            0..=4 => poll_writev::<4, W>(cx, wr, batch),
            5..=32 => poll_writev::<32, W>(cx, wr, batch),
            _ => poll_writev::<MAX_IOV, W>(cx, wr, batch),
        })?;
        if written == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        let mut sent = Delivered::at(clock::wall_ns());
        let mut shard = metrics.shard();
        shard.writes += 1;
        shard.bytes_sent += written as u64;
        *head_partial = batch.consume(written, &mut sent, &mut shard);
        sent.finish(&mut shard);
    }
    Poll::Ready(Ok(()))
}

/// One `writev` of the first (up to `N`) frames of `batch`. The slices live
/// on the stack of this poll only, not in the task.
fn poll_writev<const N: usize, W: AsyncWrite + Unpin>(
    cx: &mut Context<'_>,
    wr: &mut W,
    batch: &FrameQueue,
) -> Poll<io::Result<usize>> {
    let mut slices = [IoSlice::new(&[]); N];
    let n = batch.io_slices(&mut slices);
    Pin::new(wr).poll_write_vectored(cx, &slices[..n])
}

/// One of the bounded number of slow consumers given the long close grace
/// (counted in `tickwire_closing_slow_consumers`); leaves on drop.
struct SlowClosing<'a>(&'a Metrics);

impl<'a> SlowClosing<'a> {
    fn enter(metrics: &'a Metrics, max: usize) -> Option<SlowClosing<'a>> {
        let before = metrics.closing_slow.fetch_add(1, Ordering::Relaxed);
        if before >= max as i64 {
            metrics.closing_slow.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(SlowClosing(metrics))
    }
}

impl Drop for SlowClosing<'_> {
    fn drop(&mut self) {
        self.0.closing_slow.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_closing_slots_are_bounded_and_given_back() {
        let m = Metrics::default();
        let a = SlowClosing::enter(&m, 2).expect("first");
        let b = SlowClosing::enter(&m, 2).expect("second");
        assert!(
            SlowClosing::enter(&m, 2).is_none(),
            "third is over the bound"
        );
        assert_eq!(m.closing_slow.load(Ordering::Relaxed), 2);
        drop(a);
        let c = SlowClosing::enter(&m, 2).expect("a slot was given back");
        drop((b, c));
        assert_eq!(m.closing_slow.load(Ordering::Relaxed), 0);
    }
}
