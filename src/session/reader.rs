//! The reader task: owns the read half and turns the client's frames into
//! requests.
//!
//! Reads go into one scratch buffer per thread, never a buffer per
//! connection: an idle connection (most of them, on a market-data feed)
//! holds no read buffer at all, and only the bytes of a frame that arrived
//! in pieces are kept between reads. Frames are parsed and checked by
//! [`frames`](super::frames) (strict RFC 6455). Text messages (fragmented
//! ones reassembled, up to the size limit) go to [`Requests`]; a violation
//! closes the connection with the code RFC 6455 names, after which input is
//! read and dropped until the client's close or the end of the stream
//! (closing with unread input would make the kernel reset the connection,
//! which can destroy the close frame in flight). The pongs and the close
//! echo the protocol owes the client go through the outbox: the reader has
//! no write half.

use std::cell::RefCell;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, ReadBuf};

use super::frames::{self, Frame, Opcode, Parsed, MAX_HEADER};
use super::requests::Requests;
use super::Session;
use crate::close::DisconnectReason;
use crate::outbox::FrameKind;
use crate::wire::{self, OPCODE_CLOSE, OPCODE_PONG};

/// Bytes read per read call beyond the largest frame the scratch must hold.
const READ_CHUNK: usize = 16 * 1024;

thread_local! {
    /// Where every connection served by this thread reads into.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Reads until the client's close frame or the end of the stream.
/// `leftover`: bytes hyper had read past the handshake.
pub async fn read_loop<R: AsyncRead + Unpin>(mut rd: R, leftover: Bytes, session: Arc<Session>) {
    let mut reader = Reader {
        requests: Requests::new(&session.settings.limits),
        max_message: session.settings.limits.max_message,
        session,
        fragments: None,
        pending: leftover.to_vec(),
        draining: false,
    };
    poll_fn(|cx| reader.poll(cx, &mut rd)).await
}

struct Reader {
    session: Arc<Session>,
    requests: Requests,
    max_message: usize,
    /// A fragmented text message being reassembled.
    fragments: Option<Vec<u8>>,
    /// The start of a frame that has not fully arrived.
    pending: Vec<u8>,
    /// After a violation: input is no longer trusted to be frames.
    draining: bool,
}

/// What handling a frame asks of the read loop.
enum Then {
    Go,
    /// The client closed (or went away): stop reading.
    Stop,
}

impl Reader {
    fn poll<R: AsyncRead + Unpin>(&mut self, cx: &mut Context<'_>, rd: &mut R) -> Poll<()> {
        SCRATCH.with_borrow_mut(|scratch| {
            let need = self.max_message + MAX_HEADER + READ_CHUNK;
            if scratch.len() < need {
                scratch.resize(need, 0);
            }
            let mut filled = self.pending.len();
            scratch[..filled].copy_from_slice(&self.pending);
            self.pending = Vec::new();
            loop {
                match self.consume(&mut scratch[..filled]) {
                    (_, Then::Stop) => return Poll::Ready(()),
                    (used, Then::Go) => {
                        scratch.copy_within(used..filled, 0);
                        filled -= used;
                    }
                }
                let mut buf = ReadBuf::new(&mut scratch[filled..]);
                match Pin::new(&mut *rd).poll_read(cx, &mut buf) {
                    Poll::Pending => {
                        if filled > 0 {
                            self.pending = scratch[..filled].to_vec();
                        }
                        return Poll::Pending;
                    }
                    Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                        filled += buf.filled().len();
                    }
                    Poll::Ready(_) => {
                        // The end of the stream, or an error: the peer is
                        // gone, there is nobody to send a close frame to.
                        self.session
                            .outbox
                            .close_with_frame(Bytes::new(), DisconnectReason::Client);
                        return Poll::Ready(());
                    }
                }
            }
        })
    }

    /// Handles the whole frames at the start of `buf`; returns how many bytes
    /// they took.
    fn consume(&mut self, buf: &mut [u8]) -> (usize, Then) {
        let mut used = 0;
        loop {
            let (len, then) = match frames::parse(&mut buf[used..], self.max_message) {
                Parsed::Incomplete(_) => return (used, Then::Go),
                Parsed::Invalid(reason) => {
                    self.violation(reason);
                    return (buf.len(), Then::Go);
                }
                Parsed::Frame(frame, len) => {
                    self.session.liveness.heard();
                    (len, self.on_frame(frame))
                }
            };
            used += len;
            if let Then::Stop = then {
                return (used, Then::Stop);
            }
        }
    }

    /// Closes for a violation; what follows is read and dropped.
    fn violation(&mut self, reason: DisconnectReason) {
        if !self.draining {
            tracing::debug!(
                reason = reason.label(),
                "closing a connection for a protocol violation"
            );
        }
        self.draining = true;
        self.fragments = None;
        self.session.outbox.close(reason);
    }

    fn on_frame(&mut self, frame: Frame<'_>) -> Then {
        let outbox = &self.session.outbox;
        if frame.opcode == Opcode::Close {
            return match frames::check_close(frame.payload) {
                Ok(()) => {
                    // Echo the client's close (its code and reason), the
                    // answer RFC 6455 asks for; then stop reading.
                    outbox.close_with_frame(
                        wire::frame(OPCODE_CLOSE, frame.payload),
                        DisconnectReason::Client,
                    );
                    Then::Stop
                }
                Err(reason) => {
                    self.violation(reason);
                    Then::Go
                }
            };
        }
        if self.draining || outbox.is_closing() {
            return Then::Go;
        }
        match frame.opcode {
            Opcode::Ping => {
                outbox.push_reply(wire::frame(OPCODE_PONG, frame.payload), FrameKind::Control)
            }
            Opcode::Pong => {}
            Opcode::Binary => self.violation(DisconnectReason::UnsupportedData),
            Opcode::Text if self.fragments.is_some() => {
                self.violation(DisconnectReason::ProtocolError)
            }
            Opcode::Text if frame.fin => self.on_message(frame.payload),
            Opcode::Text => self.fragments = Some(frame.payload.to_vec()),
            Opcode::Continuation => {
                let Some(buf) = self.fragments.as_mut() else {
                    self.violation(DisconnectReason::ProtocolError);
                    return Then::Go;
                };
                if buf.len() + frame.payload.len() > self.max_message {
                    self.violation(DisconnectReason::MessageTooBig);
                    return Then::Go;
                }
                buf.extend_from_slice(frame.payload);
                if frame.fin {
                    let mut text = self.fragments.take().expect("checked above");
                    self.on_message(&mut text);
                }
            }
            Opcode::Close => unreachable!("handled above"),
        }
        Then::Go
    }

    /// One complete text message.
    fn on_message(&mut self, text: &mut [u8]) {
        if std::str::from_utf8(text).is_err() {
            self.violation(DisconnectReason::InvalidPayload);
            return;
        }
        self.requests.on_text(&self.session, text);
    }
}
