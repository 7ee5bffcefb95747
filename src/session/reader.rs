//! The reader task: owns the read half and turns the client's frames into
//! requests.
//!
//! fastwebsockets' `read_frame` is not cancel-safe (it consumes a frame's
//! header before awaiting its payload), so it runs alone in this task and is
//! never raced in a `select!`. Text messages (fragmented ones reassembled, up
//! to the size limit) go to [`Requests`]; protocol violations close the
//! connection with the code RFC 6455 names. The pong and close echo the
//! protocol owes the client go through the outbox: the reader has no write
//! half.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, WebSocketError, WebSocketRead};
use tokio::io::AsyncRead;

use super::requests::Requests;
use super::Session;
use crate::close::DisconnectReason;
use crate::outbox::FrameKind;
use crate::wire;

/// Reads until the client's close frame or the end of the stream.
pub async fn read_loop<R: AsyncRead + Unpin>(mut ws: WebSocketRead<R>, session: Arc<Session>) {
    let outbox = session.outbox.clone();
    let mut reader = Reader {
        requests: Requests::new(&session.settings.limits),
        session,
        fragments: None,
    };
    // The frames the protocol obliges us to send (pong, close echo).
    let mut send = |frame: Frame<'_>| {
        let bytes = wire::frame(frame.opcode as u8, &frame.payload);
        if frame.opcode == OpCode::Close {
            outbox.close_with_frame(bytes, DisconnectReason::Client);
        } else {
            outbox.push_reply(bytes, FrameKind::Control);
        }
        std::future::ready(Ok::<(), io::Error>(()))
    };
    // After the server decided to close, frames are read and dropped:
    // leaving them unread would make the kernel answer with a reset, which
    // can destroy the close frame before the client reads it.
    loop {
        let frame = match ws.read_frame(&mut send).await {
            Ok(frame) => frame,
            Err(e) => {
                reader.protocol_failure(e);
                return;
            }
        };
        reader.session.liveness.heard();
        if frame.opcode == OpCode::Close {
            return;
        }
        if !reader.session.outbox.is_closing() {
            reader.on_frame(frame);
        }
    }
}

struct Reader {
    session: Arc<Session>,
    requests: Requests,
    /// A fragmented text message being reassembled.
    fragments: Option<Vec<u8>>,
}

impl Reader {
    fn close(&self, reason: DisconnectReason) {
        self.session.outbox.close(reason);
    }

    fn protocol_failure(&self, e: WebSocketError) {
        match e {
            WebSocketError::FrameTooLarge => self.close(DisconnectReason::MessageTooBig),
            WebSocketError::InvalidUTF8 => self.close(DisconnectReason::InvalidPayload),
            WebSocketError::UnexpectedEOF | WebSocketError::IoError(_) => {
                // The peer is gone; there is nobody to send a close frame to.
                self.session
                    .outbox
                    .close_with_frame(Bytes::new(), DisconnectReason::Client)
            }
            WebSocketError::ConnectionClosed => {}
            other => {
                tracing::debug!("closing a connection for a protocol error: {other}");
                self.close(DisconnectReason::ProtocolError)
            }
        }
    }

    /// Handles one data or control frame (close frames are the loop's).
    fn on_frame(&mut self, mut frame: Frame<'_>) {
        let max = self.session.settings.limits.max_message;
        match frame.opcode {
            OpCode::Text if frame.fin => {
                if self.fragments.is_some() {
                    self.close(DisconnectReason::ProtocolError);
                    return;
                }
                self.requests.on_text(&self.session, frame.payload.to_mut());
            }
            OpCode::Text => {
                if self.fragments.is_some() {
                    self.close(DisconnectReason::ProtocolError);
                    return;
                }
                self.fragments = Some(frame.payload.to_vec());
            }
            OpCode::Continuation => {
                let Some(buf) = self.fragments.as_mut() else {
                    self.close(DisconnectReason::ProtocolError);
                    return;
                };
                if buf.len() + frame.payload.len() > max {
                    self.close(DisconnectReason::MessageTooBig);
                    return;
                }
                buf.extend_from_slice(&frame.payload);
                if frame.fin {
                    let mut text = self.fragments.take().expect("checked above");
                    if std::str::from_utf8(&text).is_err() {
                        self.close(DisconnectReason::InvalidPayload);
                    } else {
                        self.requests.on_text(&self.session, &mut text);
                    }
                }
            }
            OpCode::Binary => self.close(DisconnectReason::UnsupportedData),
            OpCode::Close | OpCode::Ping | OpCode::Pong => {}
        }
    }
}
