//! What one replica tells the others, and how it is written as a NOTIFY payload.
//!
//! The hub hands these to the outbox that `notify::publish` sends; `notify::listen`
//! parses what it hears and applies it to its own hub.

use uuid::Uuid;

use crate::work::ids::{AttemptKey, WorkRequestId};

/// Something other replicas should hear about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// There may be new pending work: every replica runs an assignment round.
    Work,
    /// Logs or statuses changed: log followers re-read.
    Changed,
    /// The attempt `key` was cancelled: the replica holding `worker_id`'s stream sends
    /// it a Cancel.
    Cancel {
        /// The worker running the attempt.
        worker_id: Uuid,
        /// The cancelled attempt.
        key: AttemptKey,
    },
    /// The token was disabled or deleted: every replica closes the streams using it.
    CloseToken(Uuid),
    /// The user was disabled or deleted: every replica forgets their tokens and ends
    /// their streams.
    CloseUser(Uuid),
}

impl Event {
    /// The NOTIFY payload: `work`, `changed`, `cancel:<worker>:<request>:<attempt>` or
    /// `close-token:<token>` or `close-user:<user>`.
    pub(crate) fn encode(&self) -> String {
        match self {
            Event::Work => "work".into(),
            Event::Changed => "changed".into(),
            Event::Cancel { worker_id, key } => {
                format!("cancel:{worker_id}:{}:{}", key.id, key.attempt)
            }
            Event::CloseToken(id) => format!("close-token:{id}"),
            Event::CloseUser(id) => format!("close-user:{id}"),
        }
    }

    /// Reads a payload written by [`Event::encode`]; `None` for anything else (a newer
    /// replica may send events this one does not know).
    pub(crate) fn parse(payload: &str) -> Option<Event> {
        match payload {
            "work" => return Some(Event::Work),
            "changed" => return Some(Event::Changed),
            _ => {}
        }
        if let Some(rest) = payload.strip_prefix("cancel:") {
            let mut parts = rest.split(':');
            let worker_id = Uuid::parse_str(parts.next()?).ok()?;
            let work_request_id = Uuid::parse_str(parts.next()?).ok()?;
            let attempt = parts.next()?.parse().ok()?;
            if parts.next().is_some() {
                return None;
            }
            return Some(Event::Cancel {
                worker_id,
                key: AttemptKey::new(WorkRequestId(work_request_id), attempt),
            });
        }
        if let Some(user) = payload.strip_prefix("close-user:") {
            return Uuid::parse_str(user).ok().map(Event::CloseUser);
        }
        let token = payload.strip_prefix("close-token:")?;
        Uuid::parse_str(token).ok().map(Event::CloseToken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_garbage_is_ignored() {
        let cancel = Event::Cancel {
            worker_id: Uuid::now_v7(),
            key: AttemptKey::new(WorkRequestId::new(), 3),
        };
        for event in [
            Event::Work,
            Event::Changed,
            cancel,
            Event::CloseToken(Uuid::now_v7()),
            Event::CloseUser(Uuid::now_v7()),
        ] {
            assert_eq!(Event::parse(&event.encode()), Some(event));
        }
        assert_eq!(Event::parse("cancel:x:y:1"), None);
        assert_eq!(Event::parse(&format!("{}:extra", cancel.encode())), None);
        assert_eq!(Event::parse("close-token:nope"), None);
        assert_eq!(Event::parse("close-user:nope"), None);
        assert_eq!(Event::parse("something-new"), None);
    }
}
