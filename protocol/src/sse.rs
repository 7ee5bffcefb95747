//! Server-Sent Events (`GET /sse`): the event names, the id that resumes a
//! stream, the `reset` event's data, and a parser of the stream for
//! clients (docs/PROTOCOL.md, "Server-Sent Events").
//!
//! Each tick is an event `tick` (`snapshot` for the latest state) whose
//! `data:` is the same JSON as the WebSocket message. Every event's `id:` is
//! `<epoch>-<counter>`: the epoch of the server's run and the tick's number
//! in the server's publish order (one counter for all symbols). A stream's
//! events go out in counter order, so one number says where a client is in
//! every symbol at once: the id stays under 40 bytes however many symbols
//! the stream carries.

use serde::{Deserialize, Serialize};

/// The reconnection delay the server asks for (`retry:`), in milliseconds.
pub const RETRY_MS: u32 = 1000;

/// Event names.
pub const EVENT_TICK: &str = "tick";
pub const EVENT_SNAPSHOT: &str = "snapshot";
pub const EVENT_RESET: &str = "reset";
/// An error that ends the stream (`token_expired`); its `data:` is the
/// WebSocket `error` reply's JSON. It has no `id:`, so a client's last id
/// still says where it is.
pub const EVENT_ERROR: &str = "error";

/// An event's id: where the stream is, in one server run's publish order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventId {
    pub epoch: String,
    /// Every tick published up to this number was delivered (or skipped on
    /// purpose: conflation, throttling).
    pub counter: u64,
}

impl EventId {
    /// Parses `<epoch>-<counter>`; `None` for anything else.
    pub fn parse(s: &str) -> Option<EventId> {
        let (epoch, counter) = s.trim().rsplit_once('-')?;
        if epoch.is_empty() || !epoch.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        Some(EventId {
            epoch: epoch.to_string(),
            counter: counter.parse().ok()?,
        })
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.epoch, self.counter)
    }
}

/// The data of a `reset` event: these symbols could not be resumed (their
/// missed ticks are no longer in the history, or the id was of another
/// run); their snapshots follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reset {
    pub symbols: Vec<String>,
}

/// One event of a stream, as a client sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// The last `id:` seen so far in the stream (EventSource's "last event
    /// ID"), not only this event's.
    pub id: String,
    /// `message` when the event named none.
    pub event: String,
    pub data: String,
}

/// An incremental parser of an event stream (the WHATWG rules, minus
/// nothing tickwire sends): feed it bytes as they come, take the events.
/// Comment lines (heartbeats) are counted; `retry:` is kept.
#[derive(Debug, Default)]
pub struct Parser {
    buf: Vec<u8>,
    last_id: String,
    event: String,
    data: Vec<String>,
    pub comments: u64,
    pub retry_ms: Option<u64>,
}

impl Parser {
    /// Adds `bytes`; returns the events they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Event> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&line[..nl]);
            let line = line.strip_suffix('\r').unwrap_or(&line);
            if line.is_empty() {
                if !self.data.is_empty() {
                    out.push(Event {
                        id: self.last_id.clone(),
                        event: if self.event.is_empty() {
                            "message".into()
                        } else {
                            std::mem::take(&mut self.event)
                        },
                        data: self.data.join("\n"),
                    });
                }
                self.data.clear();
                self.event.clear();
                continue;
            }
            if line.starts_with(':') {
                self.comments += 1;
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "id" => self.last_id = value.to_string(),
                "event" => self.event = value.to_string(),
                "data" => self.data.push(value.to_string()),
                "retry" => self.retry_ms = value.parse().ok(),
                _ => {}
            }
        }
        out
    }

    /// The last id seen (what an EventSource sends as `Last-Event-ID`).
    pub fn last_id(&self) -> &str {
        &self.last_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_garbage_is_none() {
        let id = EventId {
            epoch: "00ab12cd34ef5678".into(),
            counter: 18446744073709551615,
        };
        assert_eq!(EventId::parse(&id.to_string()), Some(id.clone()));
        assert!(id.to_string().len() < 40);
        for bad in ["", "-", "abc", "e-", "-5", "e-x", "e f-1", "e-1-2x"] {
            assert_eq!(EventId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_parser_takes_events_split_anywhere() {
        let stream =
            b"retry: 1000\n\n: hb\n\nid: e-1\nevent: tick\ndata: {\"a\":1}\n\ndata: x\ndata: y\n\n";
        for split in 0..stream.len() {
            let mut p = Parser::default();
            let mut events = p.feed(&stream[..split]);
            events.extend(p.feed(&stream[split..]));
            assert_eq!(
                events,
                vec![
                    Event {
                        id: "e-1".into(),
                        event: "tick".into(),
                        data: "{\"a\":1}".into()
                    },
                    Event {
                        id: "e-1".into(),
                        event: "message".into(),
                        data: "x\ny".into()
                    },
                ]
            );
            assert_eq!((p.comments, p.retry_ms), (1, Some(1000)));
        }
    }
}
