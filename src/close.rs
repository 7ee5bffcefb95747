//! Why a connection ended: the label of the disconnect counter, and the close
//! frame the client gets (codes and reason texts are the protocol's:
//! [`tickwire_protocol::Close`]).

use tickwire_protocol::Close;

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client closed, or its socket went away.
    Client,
    SlowConsumer,
    IdleTimeout,
    Shutdown,
    /// A binary frame (close 1003).
    UnsupportedData,
    /// A message over the size limit (close 1009).
    MessageTooBig,
    /// Invalid UTF-8 text (close 1007).
    InvalidPayload,
    /// A WebSocket protocol violation (close 1002).
    ProtocolError,
    /// Error or rate-limit storms (close 1008).
    Abuse,
    /// The token expired without a fresh one (close 4001).
    TokenExpired,
}

impl DisconnectReason {
    pub const ALL: [DisconnectReason; 10] = [
        DisconnectReason::Client,
        DisconnectReason::SlowConsumer,
        DisconnectReason::IdleTimeout,
        DisconnectReason::Shutdown,
        DisconnectReason::UnsupportedData,
        DisconnectReason::MessageTooBig,
        DisconnectReason::InvalidPayload,
        DisconnectReason::ProtocolError,
        DisconnectReason::Abuse,
        DisconnectReason::TokenExpired,
    ];

    /// The `reason` label of `tickwire_disconnects_total`.
    pub fn label(self) -> &'static str {
        match self {
            DisconnectReason::Client => "client",
            DisconnectReason::SlowConsumer => "slow_consumer",
            DisconnectReason::IdleTimeout => "idle_timeout",
            DisconnectReason::Shutdown => "shutdown",
            DisconnectReason::UnsupportedData => "binary_frame",
            DisconnectReason::MessageTooBig => "message_too_big",
            DisconnectReason::InvalidPayload => "invalid_utf8",
            DisconnectReason::ProtocolError => "protocol_error",
            DisconnectReason::Abuse => "abuse",
            DisconnectReason::TokenExpired => "token_expired",
        }
    }

    /// The close the server sends for it; `None` when the client ended it.
    pub fn close(self) -> Option<Close> {
        Some(match self {
            DisconnectReason::Client => return None,
            DisconnectReason::SlowConsumer => Close::SlowConsumer,
            DisconnectReason::IdleTimeout => Close::IdleTimeout,
            DisconnectReason::Shutdown => Close::Shutdown,
            DisconnectReason::UnsupportedData => Close::UnsupportedData,
            DisconnectReason::MessageTooBig => Close::MessageTooBig,
            DisconnectReason::InvalidPayload => Close::InvalidPayload,
            DisconnectReason::ProtocolError => Close::ProtocolError,
            DisconnectReason::Abuse => Close::TooManyErrors,
            DisconnectReason::TokenExpired => Close::TokenExpired,
        })
    }

    /// Whether the queued replies that explain the close are delivered
    /// before it: yes for protocol closes; a slow consumer gets nothing more,
    /// and shutdown does not wait on data.
    pub fn flushes_queue(self) -> bool {
        !matches!(
            self,
            DisconnectReason::SlowConsumer | DisconnectReason::Shutdown
        )
    }
}
