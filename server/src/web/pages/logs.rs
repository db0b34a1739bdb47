//! A request's live log as server-sent events:
//! `GET /ui/work-requests/{id}/logs/stream`.
//!
//! Each event is one chunk of one stream, `event:` naming the stream (`stdout`, `stderr`,
//! `system`, `notes`), `data:` the text as a JSON string (so carriage returns and blank
//! lines arrive exactly), and `id:` the position *after* the chunk:
//! `attempt.stdout.stderr.system.notes`, each a byte offset into that attempt's stream.
//! A reconnecting `EventSource` sends it back as `Last-Event-ID` (or a link passes it as
//! `?from=`) and the stream resumes exactly there: nothing lost, nothing repeated. When
//! the request is terminal and its log is all sent, a last `end` event comes and the
//! stream closes. A read that fails (the viewer's token disabled, say) sends `failed`
//! with the reason.
//!
//! It reads through `WorkRequests::logs`, the same follower the gRPC `StreamLogs` uses,
//! with the viewer's identity. Bytes are sent only up to a whole UTF-8 character; the
//! rest waits for the next chunk, so a character split across chunks is never mangled.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State as Extract};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use berth_core::error::Error;
use berth_core::work::logs::{Chunk, LogStream};
use berth_core::work::requests::LogQuery;
use futures::Stream;
use serde::Deserialize;

use crate::web::State;
use crate::web::error::PageError;
use crate::web::pages::request::parse_id;
use crate::web::session::Viewer;

/// The live log's routes.
pub fn routes() -> Router<State> {
    Router::new().route("/ui/work-requests/{id}/logs/stream", get(stream))
}

const STREAMS: [LogStream; 4] = [
    LogStream::Stdout,
    LogStream::Stderr,
    LogStream::System,
    LogStream::Notes,
];

fn index(stream: LogStream) -> usize {
    STREAMS.iter().position(|s| *s == stream).unwrap_or(0)
}

fn name(stream: LogStream) -> &'static str {
    match stream {
        LogStream::Stdout => "stdout",
        LogStream::Stderr => "stderr",
        LogStream::System => "system",
        LogStream::Notes => "notes",
    }
}

/// Where a reader is: the attempt and the bytes of each of its streams it has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    pub attempt: i32,
    pub offsets: [u64; 4],
}

impl Position {
    /// Reads `attempt.stdout.stderr.system.notes`.
    pub fn parse(field: &str, text: &str) -> Result<Position, Error> {
        let bad = || {
            Error::InvalidArgument(format!(
                "{field}: {text:?} is not a log position; use attempt.stdout.stderr.system.notes \
                 byte offsets, e.g. 1.120.0.0.0, as sent in the events' ids"
            ))
        };
        let parts: Vec<&str> = text.trim().split('.').collect();
        if parts.len() != 5 {
            return Err(bad());
        }
        let attempt: i32 = parts[0].parse().map_err(|_| bad())?;
        if attempt < 0 {
            return Err(bad());
        }
        let mut offsets = [0u64; 4];
        for (slot, part) in offsets.iter_mut().zip(&parts[1..]) {
            *slot = part.parse().map_err(|_| bad())?;
        }
        Ok(Position { attempt, offsets })
    }

    /// The text form, an event's id.
    pub fn id(&self) -> String {
        let [a, b, c, d] = self.offsets;
        format!("{}.{a}.{b}.{c}.{d}", self.attempt)
    }
}

/// Turns chunks into events from a position on: what the reader has is cut off, a new
/// attempt starts its offsets at 0, and only whole UTF-8 characters are sent.
#[derive(Debug)]
pub struct Cursor {
    at: Position,
    /// Bytes after `at` held back until their character is whole, per stream.
    held: [Vec<u8>; 4],
}

impl Cursor {
    pub fn new(at: Position) -> Cursor {
        Cursor {
            at,
            held: Default::default(),
        }
    }

    pub fn position(&self) -> Position {
        self.at
    }

    /// The text this chunk adds for the reader, with its stream; `None` if nothing new.
    pub fn take(&mut self, chunk: Chunk) -> Option<(LogStream, String)> {
        if chunk.attempt < self.at.attempt {
            return None;
        }
        if chunk.attempt > self.at.attempt {
            self.at = Position {
                attempt: chunk.attempt,
                offsets: [0; 4],
            };
            self.held = Default::default();
        }
        let slot = index(chunk.stream);
        let have = self.at.offsets[slot] + self.held[slot].len() as u64;
        let end = chunk.offset + chunk.data.len() as u64;
        if end <= have || chunk.offset > have {
            // Already sent, or a gap the store never has (chunks come in order).
            return None;
        }
        let skip = usize::try_from(have - chunk.offset).unwrap_or(0);
        let mut bytes = std::mem::take(&mut self.held[slot]);
        bytes.extend_from_slice(&chunk.data[skip..]);
        let whole = match std::str::from_utf8(&bytes) {
            Ok(_) => bytes.len(),
            // Incomplete at the end: hold the tail back for the next chunk.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            // Invalid in the middle: send it all, replaced where invalid.
            Err(_) => bytes.len(),
        };
        self.held[slot] = bytes.split_off(whole);
        if bytes.is_empty() {
            return None;
        }
        self.at.offsets[slot] += bytes.len() as u64;
        Some((chunk.stream, String::from_utf8_lossy(&bytes).into_owned()))
    }
}

#[derive(Deserialize, Default)]
struct From {
    #[serde(default)]
    from: String,
}

/// How often a quiet stream sends a comment so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

async fn stream(
    viewer: Viewer,
    Extract(state): Extract<State>,
    Path(id): Path<String>,
    Query(from): Query<From>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, PageError> {
    let id = parse_id(&id)?;
    let resumed = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty());
    let at = match (resumed, from.from.trim()) {
        (Some(last), _) => Position::parse("Last-Event-ID", last)?,
        (None, "") => Position::default(),
        (None, text) => Position::parse("from", text)?,
    };
    let mut chunks = state
        .requests
        .logs(
            &viewer.identity,
            id,
            LogQuery {
                attempt: 0,
                follow: true,
                stdout_offset: 0,
                stderr_offset: 0,
            },
        )
        .await?;
    let events = async_stream(move |tx| async move {
        let mut cursor = Cursor::new(at);
        while let Some(next) = chunks.recv().await {
            let event = match next {
                Ok(chunk) => match cursor.take(chunk) {
                    None => continue,
                    Some((stream, text)) => Event::default()
                        .event(name(stream))
                        .id(cursor.position().id())
                        .data(serde_json::to_string(&text).unwrap_or_else(|_| "\"\"".into())),
                },
                Err(e) => {
                    let message = e.public_message();
                    let _ = tx
                        .send(
                            Event::default()
                                .event("failed")
                                .data(serde_json::to_string(&message).unwrap_or_default()),
                        )
                        .await;
                    return;
                }
            };
            if tx.send(event).await.is_err() {
                return;
            }
        }
        // The follower closes only when the request is terminal and everything is sent.
        let _ = tx
            .send(
                Event::default()
                    .event("end")
                    .id(cursor.position().id())
                    .data("\"end\""),
            )
            .await;
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// A stream fed by a task through a small channel.
fn async_stream<F, Fut>(produce: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Event>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(produce(tx));
    futures::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(attempt: i32, stream: LogStream, offset: u64, data: &[u8]) -> Chunk {
        Chunk {
            attempt,
            stream,
            offset,
            data: data.to_vec(),
        }
    }

    #[test]
    fn positions_read_back() {
        let at = Position {
            attempt: 2,
            offsets: [10, 3, 0, 7],
        };
        assert_eq!(Position::parse("from", &at.id()).expect("valid"), at);
        for bad in ["", "1.2.3", "x.0.0.0.0", "-1.0.0.0.0", "1.0.0.0.0.0"] {
            assert!(Position::parse("from", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn resuming_skips_what_the_reader_has_and_nothing_more() {
        let mut cursor = Cursor::new(Position {
            attempt: 1,
            offsets: [3, 0, 0, 0],
        });
        assert_eq!(cursor.take(chunk(1, LogStream::Stdout, 0, b"ab")), None);
        assert_eq!(
            cursor.take(chunk(1, LogStream::Stdout, 2, b"cdef")),
            Some((LogStream::Stdout, "def".into()))
        );
        assert_eq!(
            cursor.take(chunk(1, LogStream::Stderr, 0, b"oops")),
            Some((LogStream::Stderr, "oops".into()))
        );
        assert_eq!(cursor.position().id(), "1.6.4.0.0");
        // A new attempt starts its streams at 0.
        assert_eq!(
            cursor.take(chunk(2, LogStream::Stdout, 0, b"again")),
            Some((LogStream::Stdout, "again".into()))
        );
        assert_eq!(cursor.position().id(), "2.5.0.0.0");
        assert_eq!(cursor.take(chunk(1, LogStream::Stdout, 6, b"late")), None);
    }

    #[test]
    fn a_character_split_across_chunks_arrives_whole() {
        let mut cursor = Cursor::new(Position::default());
        let text = "é!".as_bytes();
        assert_eq!(
            cursor.take(chunk(1, LogStream::Stdout, 0, &text[..1])),
            None
        );
        assert_eq!(
            cursor.take(chunk(1, LogStream::Stdout, 1, &text[1..])),
            Some((LogStream::Stdout, "é!".into()))
        );
        assert_eq!(cursor.position().offsets[0], 3);
    }
}
