//! This replica's live topic consumers (open `Subscribe` streams), and the signals that
//! reach them from any replica through `NOTIFY`.
//!
//! A consumer stream registers here while it is open and gets a [`Registration`]; when
//! that is dropped (the stream ended, however it ended) it is gone from here. What the
//! signals mean is the topics room's business; this module only routes them:
//! - `topic:<topic>`: messages were published: every local consumer of the topic is woken
//!   (it claims what it may take; wake-ups coalesce);
//! - `topic-ping:<topic>`: a ping: every local consumer of the topic sends a Ping frame;
//! - `topic-msg:<consumer>:<json>`: a message of a `disabled` topic for one consumer,
//!   handed to it if it is here (a full queue drops it: such messages are at most once);
//! - `topic-closed:<id>`: the subscription or topic with this id was deleted: its local
//!   consumers end.
//!
//! The domain sends these with `pg_notify` inside the transaction that makes the change
//! (so they are heard only if it commits), on the channel every replica listens on
//! (`notify::CHANNEL`); `notify::listen` hands what it hears to [`Consumers::apply`].
//! Like every wake-up, a lost one costs latency only: consumers also look on a timer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How many messages of `disabled` topics may wait for one consumer stream.
pub const DIRECT_CAPACITY: usize = 1024;

/// A signal for topic consumers, as carried in a NOTIFY payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicSignal {
    /// Messages were published on the topic.
    Published(Uuid),
    /// A ping for the topic's live consumers.
    Ping(Uuid),
    /// A message of a `disabled` topic (JSON) for one consumer.
    Direct { consumer: Uuid, message: String },
    /// The subscription or topic with this id is gone.
    Closed(Uuid),
}

impl TopicSignal {
    /// The NOTIFY payload.
    pub fn encode(&self) -> String {
        match self {
            TopicSignal::Published(topic) => format!("topic:{topic}"),
            TopicSignal::Ping(topic) => format!("topic-ping:{topic}"),
            TopicSignal::Direct { consumer, message } => format!("topic-msg:{consumer}:{message}"),
            TopicSignal::Closed(id) => format!("topic-closed:{id}"),
        }
    }

    /// Reads a payload written by [`TopicSignal::encode`]; `None` for anything else.
    pub fn parse(payload: &str) -> Option<TopicSignal> {
        if let Some(rest) = payload.strip_prefix("topic-msg:") {
            let (consumer, message) = rest.split_once(':')?;
            return Some(TopicSignal::Direct {
                consumer: Uuid::parse_str(consumer).ok()?,
                message: message.to_owned(),
            });
        }
        let id = |rest: &str| Uuid::parse_str(rest).ok();
        if let Some(rest) = payload.strip_prefix("topic-ping:") {
            return id(rest).map(TopicSignal::Ping);
        }
        if let Some(rest) = payload.strip_prefix("topic-closed:") {
            return id(rest).map(TopicSignal::Closed);
        }
        let rest = payload.strip_prefix("topic:")?;
        id(rest).map(TopicSignal::Published)
    }
}

/// One live consumer on this replica, as the signals reach it.
#[derive(Clone)]
pub struct LocalConsumer {
    /// Its `topic_consumers` row.
    pub id: Uuid,
    pub topic_id: Uuid,
    pub subscription_id: Uuid,
    /// Notified when there may be messages to claim.
    pub wake: Arc<Notify>,
    /// Notified when a ping should go out.
    pub ping: Arc<Notify>,
    /// Cancelled when the stream must end: its subscription or topic is gone (or its
    /// `topic_consumers` row was found missing, which comes to the same).
    pub close: CancellationToken,
    direct: mpsc::Sender<String>,
}

/// A consumer's place in the registry; dropping it removes the consumer.
pub struct Registration {
    pub consumer: LocalConsumer,
    /// Messages of `disabled` topics for this consumer, as JSON.
    pub direct: mpsc::Receiver<String>,
    registry: Arc<Mutex<HashMap<Uuid, LocalConsumer>>>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.registry).remove(&self.consumer.id);
    }
}

fn lock(
    map: &Mutex<HashMap<Uuid, LocalConsumer>>,
) -> std::sync::MutexGuard<'_, HashMap<Uuid, LocalConsumer>> {
    // Only single inserts and removes happen under the lock: consistent after a panic.
    map.lock().unwrap_or_else(|e| e.into_inner())
}

/// See the module docs.
pub struct Consumers {
    replica_id: Uuid,
    by_id: Arc<Mutex<HashMap<Uuid, LocalConsumer>>>,
}

impl Default for Consumers {
    fn default() -> Self {
        Consumers::new()
    }
}

impl Consumers {
    /// An empty registry for a replica with a new id.
    pub fn new() -> Self {
        Consumers {
            replica_id: Uuid::now_v7(),
            by_id: Arc::default(),
        }
    }

    /// This replica's id, for its `topic_consumers` rows; new at every start.
    pub fn replica_id(&self) -> Uuid {
        self.replica_id
    }

    /// Registers consumer `id` of `subscription_id` on `topic_id`.
    pub fn register(&self, id: Uuid, topic_id: Uuid, subscription_id: Uuid) -> Registration {
        let (tx, rx) = mpsc::channel(DIRECT_CAPACITY);
        let consumer = LocalConsumer {
            id,
            topic_id,
            subscription_id,
            wake: Arc::new(Notify::new()),
            ping: Arc::new(Notify::new()),
            close: CancellationToken::new(),
            direct: tx,
        };
        lock(&self.by_id).insert(id, consumer.clone());
        Registration {
            consumer,
            direct: rx,
            registry: self.by_id.clone(),
        }
    }

    /// Every live consumer on this replica.
    pub fn all(&self) -> Vec<LocalConsumer> {
        lock(&self.by_id).values().cloned().collect()
    }

    fn of_topic(&self, topic_id: Uuid) -> Vec<LocalConsumer> {
        lock(&self.by_id)
            .values()
            .filter(|c| c.topic_id == topic_id)
            .cloned()
            .collect()
    }

    /// Wakes this replica's consumers of `topic_id`.
    pub fn wake(&self, topic_id: Uuid) {
        for consumer in self.of_topic(topic_id) {
            consumer.wake.notify_one();
        }
    }

    /// Applies a signal heard from any replica (this one included).
    pub fn apply(&self, signal: TopicSignal) {
        match signal {
            TopicSignal::Published(topic) => self.wake(topic),
            TopicSignal::Ping(topic) => {
                for consumer in self.of_topic(topic) {
                    consumer.ping.notify_one();
                }
            }
            TopicSignal::Direct { consumer, message } => {
                let found = lock(&self.by_id).get(&consumer).cloned();
                if let Some(found) = found
                    && found.direct.try_send(message).is_err()
                {
                    tracing::debug!(%consumer, "a consumer's queue of live messages is full; one was dropped");
                }
            }
            TopicSignal::Closed(id) => {
                for consumer in self.all() {
                    if consumer.subscription_id == id || consumer.topic_id == id {
                        consumer.close.cancel();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_round_trip_and_garbage_is_ignored() {
        let id = Uuid::now_v7();
        for signal in [
            TopicSignal::Published(id),
            TopicSignal::Ping(id),
            TopicSignal::Closed(id),
            TopicSignal::Direct {
                consumer: id,
                message: r#"{"a":"b:c"}"#.into(),
            },
        ] {
            assert_eq!(TopicSignal::parse(&signal.encode()), Some(signal));
        }
        assert_eq!(TopicSignal::parse("topic:nope"), None);
        assert_eq!(TopicSignal::parse("topic-msg:nope"), None);
        assert_eq!(TopicSignal::parse("work"), None);
    }

    #[tokio::test]
    async fn signals_reach_the_consumers_they_name_and_a_dropped_registration_is_gone() {
        let consumers = Consumers::new();
        let (topic, other) = (Uuid::now_v7(), Uuid::now_v7());
        let sub = Uuid::now_v7();
        let mut mine = consumers.register(Uuid::now_v7(), topic, sub);
        let theirs = consumers.register(Uuid::now_v7(), other, Uuid::now_v7());
        consumers.apply(TopicSignal::Published(topic));
        tokio::time::timeout(
            std::time::Duration::from_secs(1),
            mine.consumer.wake.notified(),
        )
        .await
        .expect("the topic's consumer is woken");
        consumers.apply(TopicSignal::Direct {
            consumer: mine.consumer.id,
            message: "{}".into(),
        });
        assert_eq!(mine.direct.try_recv().ok().as_deref(), Some("{}"));
        consumers.apply(TopicSignal::Closed(sub));
        assert!(mine.consumer.close.is_cancelled());
        assert!(!theirs.consumer.close.is_cancelled());
        assert_eq!(consumers.all().len(), 2);
        drop(mine);
        assert_eq!(consumers.all().len(), 1);
    }
}
