//! A consumer's `Subscribe` session, independent of the wire.
//!
//! [`Topics::open_consumer`] checks the caller may consume from the topic, finds the
//! subscription, inserts the consumer's `topic_consumers` row (this replica's id, so a
//! `disabled` topic's publisher can address it and a ping can count it) and registers it
//! with the hub; [`Session::run`] then drives it until the client goes, the server stops,
//! the caller's token is closed or the subscription is deleted, and deletes the row. The
//! edge turns wire frames into [`ClientFrame`]s and [`ServerFrame`]s into wire frames,
//! and nothing else.
//!
//! Flow control: every delivery uses one credit (the client grants more with
//! [`ClientFrame::Credit`]), and the stream never holds more than the subscription's
//! `max_in_flight` unacked deliveries whose leases are still running. Within that room
//! the session claims (up to [`CLAIM_BATCH`] at once) whenever it may find something:
//! when woken by a publish on any replica, after credit or acks free room, and on a timer
//! (the next row's visibility, at most `poll_interval` away), which also catches leases
//! that ran out and releases whose backoff ended.
//!
//! Ending the stream releases nothing: its leases run out by themselves, so a message
//! whose ack never came is delivered again — after a cut connection or a server restart
//! just the same. Messages of `disabled` topics need no credit and no ack; they are
//! delivered as they come (at most once) and dropped if the stream's queue is full.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::Timestamptz;
use diesel_async::RunQueryDsl;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::access::auth::{self, Identity};
use crate::error::{Error, Result};
use crate::live::consumers::Registration;
use crate::store::schema::topic_consumers;
use crate::topics::access::{self, Use};
use crate::topics::deliver::{self, AckOp, AckStatus, Claimed, DeliveryId, MAX_DELAY, MAX_EXTEND};
use crate::topics::publish::LiveMessage;
use crate::topics::store::{self, SubscriptionRow, TopicRow};
use crate::topics::{StorePolicy, TopicRef, Topics, manage, ping};

/// The most deliveries one claim takes.
pub const CLAIM_BATCH: i64 = 256;
/// The most acks one frame may carry.
pub const MAX_ACKS: usize = 10_000;
/// How often a pong (or an ack) is written at most, unless a ping came since.
const PONG_EVERY: Duration = Duration::from_secs(1);

/// What a consumer opens.
#[derive(Clone, Debug, Default)]
pub struct OpenInput {
    pub topic: TopicRef,
    pub subscription: String,
    /// Deliveries before the first credit frame.
    pub initial_credit: u32,
}

/// What an ack asks for, as the client said it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckKind {
    Accept,
    Release,
    Reject,
    Renew,
}

/// One ack as the client sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckInput {
    pub delivery_id: String,
    pub kind: AckKind,
    /// Release only.
    pub delay: Option<Duration>,
    /// Renew only; `None`: the ack deadline.
    pub extend: Option<Duration>,
}

/// A client frame after the open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientFrame {
    Credit(u32),
    Ack(Vec<AckInput>),
    Pong,
}

/// The answer to the open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    pub subscription_id: Uuid,
    pub consumer_id: Uuid,
    pub ack_deadline: Duration,
    pub max_in_flight: u32,
}

/// A message delivered to the consumer.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryOut {
    /// `SEQ.COUNT`; '' for a `disabled` topic's message.
    pub delivery_id: String,
    pub seq: i64,
    pub message_id: Uuid,
    pub context: String,
    pub content: serde_json::Value,
    pub properties: BTreeMap<String, String>,
    pub producer: String,
    pub published_at: DateTime<Utc>,
    pub delivery_count: u32,
    /// When the lease ends; `None` for a `disabled` topic's message.
    pub deadline: Option<DateTime<Utc>>,
}

/// A server frame.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerFrame {
    Opened(Opened),
    Delivery(Box<DeliveryOut>),
    Ping,
    AckResult {
        delivery_id: String,
        status: AckStatus,
    },
}

/// An open consumer; see the module docs.
pub struct Session {
    topics: Topics,
    caller: Identity,
    topic: TopicRow,
    sub: SubscriptionRow,
    registration: Registration,
    credit: u64,
    /// This stream's unacked deliveries whose leases may still run: seq → (count,
    /// lease end).
    in_flight: HashMap<i64, (i32, DateTime<Utc>)>,
    last_pong: Option<tokio::time::Instant>,
    pinged: bool,
}

/// The properties of a message as a map of strings (other values are dropped).
fn properties_map(value: &serde_json::Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .map(|object| {
            object
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

fn delivery_of(claimed: Claimed) -> DeliveryOut {
    DeliveryOut {
        delivery_id: claimed.id.to_string(),
        seq: claimed.id.seq,
        message_id: claimed.message_id,
        context: claimed.context,
        properties: properties_map(&claimed.properties),
        content: claimed.content,
        producer: claimed.producer,
        published_at: claimed.published_at,
        delivery_count: u32::try_from(claimed.id.count).unwrap_or(0),
        deadline: Some(claimed.leased_until),
    }
}

fn live_delivery(live: LiveMessage) -> DeliveryOut {
    DeliveryOut {
        delivery_id: String::new(),
        seq: live.seq,
        message_id: live.message_id,
        context: live.context,
        properties: properties_map(&live.properties),
        content: live.content,
        producer: live.producer,
        published_at: live.published_at,
        delivery_count: 1,
        deadline: None,
    }
}

/// Checks acks and turns them into operations; `None` where the id names no delivery.
fn ack_ops(acks: &[AckInput], ack_deadline: Duration) -> Result<Vec<(Option<DeliveryId>, AckOp)>> {
    if acks.len() > MAX_ACKS {
        return Err(Error::InvalidArgument(format!(
            "ack.acks: {} acks in one frame; at most {MAX_ACKS}",
            acks.len()
        )));
    }
    acks.iter()
        .enumerate()
        .map(|(i, ack)| {
            let field = |name: &str| format!("ack.acks[{i}].{name}");
            let misplaced = |name: &str, kind: &str| {
                Error::InvalidArgument(format!("{}: only a {kind} takes it", field(name)))
            };
            if ack.delay.is_some() && ack.kind != AckKind::Release {
                return Err(misplaced("delay", "RELEASE"));
            }
            if ack.extend.is_some() && ack.kind != AckKind::Renew {
                return Err(misplaced("extend", "RENEW"));
            }
            let op = match ack.kind {
                AckKind::Accept => AckOp::Accept,
                AckKind::Reject => AckOp::Reject,
                AckKind::Release => {
                    let delay = ack.delay.unwrap_or_default();
                    if delay > MAX_DELAY {
                        return Err(Error::InvalidArgument(format!(
                            "{}: {delay:?}; at most 1 day",
                            field("delay")
                        )));
                    }
                    AckOp::Release(delay)
                }
                AckKind::Renew => {
                    let extend = ack.extend.unwrap_or(ack_deadline);
                    if extend.is_zero() || extend > MAX_EXTEND {
                        return Err(Error::InvalidArgument(format!(
                            "{}: {extend:?}; use more than 0 and at most 1 hour",
                            field("extend")
                        )));
                    }
                    AckOp::Renew(extend)
                }
            };
            Ok((DeliveryId::parse(&ack.delivery_id), op))
        })
        .collect()
}

impl Topics {
    /// Opens a consumer of `open.subscription` for `caller` (who must be allowed to
    /// consume from the topic): registered here and in `topic_consumers`.
    pub async fn open_consumer(&self, caller: &Identity, open: OpenInput) -> Result<Session> {
        let mut conn = self.pool.get().await?;
        let (standing, topic) = manage::resolve(&mut conn, caller, &open.topic).await?;
        access::require_use_in(&mut conn, &standing, caller, &topic, Use::Consume).await?;
        if open.subscription.is_empty() {
            return Err(Error::InvalidArgument(
                "open.subscription: is required; name a subscription of the topic (berth subscription create makes one)".into(),
            ));
        }
        let sub = store::find_subscription(&mut conn, topic.id, &open.subscription)
            .await?
            .ok_or_else(|| store::no_such_subscription(&topic.slug, &open.subscription))?;
        if sub.internal {
            return Err(Error::FailedPrecondition(format!(
                "subscription {} is Berth's own (a topic trigger rule's); make one of your own",
                sub.name
            )));
        }
        let consumer_id = Uuid::now_v7();
        let consumers = self.hub.consumers();
        diesel::insert_into(topic_consumers::table)
            .values((
                topic_consumers::id.eq(consumer_id),
                topic_consumers::subscription_id.eq(sub.id),
                topic_consumers::topic_id.eq(topic.id),
                topic_consumers::replica_id.eq(consumers.replica_id()),
                topic_consumers::user_id.eq(caller.user_id),
            ))
            .execute(&mut conn)
            .await?;
        // After the row: a consumer registered here always has one (see `mark_seen`).
        let registration = consumers.register(consumer_id, topic.id, sub.id);
        Ok(Session {
            topics: self.clone(),
            caller: caller.clone(),
            credit: u64::from(open.initial_credit),
            topic,
            sub,
            registration,
            in_flight: HashMap::new(),
            last_pong: None,
            pinged: false,
        })
    }
}

/// Why a session is told to end, beyond the client going away.
fn subscription_gone(sub: &SubscriptionRow) -> Error {
    Error::NotFound(format!(
        "subscription {} (or its topic) was deleted; the stream ends",
        sub.name
    ))
}

impl Session {
    /// What the open answers.
    pub fn opened(&self) -> Opened {
        Opened {
            subscription_id: self.sub.id,
            consumer_id: self.registration.consumer.id,
            ack_deadline: Duration::from_millis(
                u64::try_from(self.sub.ack_deadline_ms).unwrap_or(0),
            ),
            max_in_flight: u32::try_from(self.sub.max_in_flight).unwrap_or(0),
        }
    }

    /// Drives the session (see the module docs) until the client closes `inbound` or
    /// stops reading `out` (`Ok`), or it must end (`Err`: the reason for the client). The
    /// consumer's row is deleted however it ends. `Opened` is sent first.
    pub async fn run<S>(
        mut self,
        inbound: S,
        out: mpsc::Sender<ServerFrame>,
        shutdown: CancellationToken,
    ) -> Result<()>
    where
        S: Stream<Item = Result<ClientFrame>> + Unpin + Send,
    {
        let ended = self.drive(inbound, &out, &shutdown).await;
        if let Err(e) = self.forget().await {
            tracing::debug!(error = %e, consumer = %self.registration.consumer.id, "could not delete a consumer row; the pass will");
        }
        ended
    }

    async fn forget(&self) -> Result<()> {
        let mut conn = self.topics.pool.get().await?;
        diesel::delete(topic_consumers::table.find(self.registration.consumer.id))
            .execute(&mut conn)
            .await?;
        Ok(())
    }

    async fn drive<S>(
        &mut self,
        mut inbound: S,
        out: &mpsc::Sender<ServerFrame>,
        shutdown: &CancellationToken,
    ) -> Result<()>
    where
        S: Stream<Item = Result<ClientFrame>> + Unpin + Send,
    {
        if out.send(ServerFrame::Opened(self.opened())).await.is_err() {
            return Ok(());
        }
        let settings = self.topics.settings.clone();
        let live_only = self.topic.policy()? == StorePolicy::Disabled;
        let consumer = self.registration.consumer.clone();
        let mut closed = self.topics.hub.subscribe_closed();
        let mut recheck = tokio::time::interval(settings.consumer_heartbeat);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut want = !live_only;
        let mut next_look = tokio::time::Instant::now() + settings.poll_interval;
        loop {
            if want && !live_only {
                want = false;
                match self.claim(out).await? {
                    Look::Again => want = true,
                    Look::At(at) => next_look = at,
                    Look::ClientGone => return Ok(()),
                }
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    return Err(Error::Unavailable("the server is shutting down; reconnect (to another replica, or to this one once it is back)".into()));
                }
                () = consumer.close.cancelled() => return Err(subscription_gone(&self.sub)),
                () = out.closed() => return Ok(()),
                frame = inbound.next() => match frame {
                    None => return Ok(()),
                    Some(Err(e)) => return Err(e),
                    Some(Ok(frame)) => {
                        if !self.handle(frame, out).await? {
                            return Ok(());
                        }
                        want = true;
                    }
                },
                () = consumer.wake.notified() => want = true,
                () = consumer.ping.notified() => {
                    self.pinged = true;
                    if out.send(ServerFrame::Ping).await.is_err() {
                        return Ok(());
                    }
                }
                live = self.registration.direct.recv() => {
                    if let Some(json) = live {
                        match serde_json::from_str::<LiveMessage>(&json) {
                            Ok(live) => {
                                // At most once: a full queue drops it rather than wait.
                                if out.try_send(ServerFrame::Delivery(Box::new(live_delivery(live)))).is_err() {
                                    tracing::debug!(consumer = %consumer.id, "a live message was dropped: the stream's queue is full");
                                }
                            }
                            Err(e) => tracing::warn!(error = %e, "an unreadable live message was ignored"),
                        }
                    }
                }
                heard = closed.recv() => {
                    let ours = match heard {
                        Ok(what) => what.concerns(self.caller.token_id, self.caller.user_id),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
                    };
                    if ours {
                        self.recheck_token().await?;
                    }
                }
                _ = recheck.tick() => {
                    self.recheck_token().await?;
                    self.prune_expired();
                    want = true;
                }
                () = tokio::time::sleep_until(next_look), if !live_only => want = true,
            }
        }
    }

    async fn recheck_token(&self) -> Result<()> {
        let mut conn = self.topics.pool.get().await?;
        auth::token_usable(&mut conn, self.caller.token_id).await
    }

    /// Forgets deliveries whose leases have run out: they are no longer this stream's.
    fn prune_expired(&mut self) {
        let now = Utc::now();
        self.in_flight.retain(|_, (_, until)| *until > now);
    }

    /// How many more deliveries may go out now.
    fn room(&mut self) -> i64 {
        self.prune_expired();
        let max = usize::try_from(self.sub.max_in_flight).unwrap_or(0);
        let free = max.saturating_sub(self.in_flight.len());
        let room = self.credit.min(u64::try_from(free).unwrap_or(0));
        i64::try_from(room).unwrap_or(i64::MAX).min(CLAIM_BATCH)
    }

    /// Claims what it may and sends it.
    async fn claim(&mut self, out: &mpsc::Sender<ServerFrame>) -> Result<Look> {
        let room = self.room();
        let poll = tokio::time::Instant::now() + self.topics.settings.poll_interval;
        if room <= 0 {
            // Credit or acks wake it; the timer catches leases that ran out meanwhile.
            return Ok(Look::At(poll));
        }
        let claimed = {
            let mut conn = self.topics.pool.get().await?;
            deliver::claim(
                &mut conn,
                &self.topic,
                &self.sub,
                self.registration.consumer.id,
                room,
            )
            .await?
        };
        let got = i64::try_from(claimed.len()).unwrap_or(i64::MAX);
        for delivery in claimed {
            self.credit = self.credit.saturating_sub(1);
            self.in_flight
                .insert(delivery.id.seq, (delivery.id.count, delivery.leased_until));
            if out
                .send(ServerFrame::Delivery(Box::new(delivery_of(delivery))))
                .await
                .is_err()
            {
                return Ok(Look::ClientGone);
            }
        }
        if got == room {
            return Ok(Look::Again);
        }
        // Nothing more visible now: look again when the next row becomes visible (a
        // lease running out, a backoff ending), or at the poll at the latest.
        let next: Option<DateTime<Utc>> = {
            let mut conn = self.topics.pool.get().await?;
            crate::store::schema::subscription_messages::table
                .filter(
                    crate::store::schema::subscription_messages::subscription_id.eq(self.sub.id),
                )
                .select(diesel::dsl::min(
                    crate::store::schema::subscription_messages::visible_at,
                ))
                .first(&mut conn)
                .await?
        };
        let at = match next {
            Some(at) => {
                let wait = (at - Utc::now())
                    .to_std()
                    .unwrap_or(Duration::from_millis(100));
                let wait = wait.max(Duration::from_millis(20));
                (tokio::time::Instant::now() + wait).min(poll)
            }
            None => poll,
        };
        Ok(Look::At(at))
    }

    /// Handles a client frame; `false` when the client is gone.
    async fn handle(
        &mut self,
        frame: ClientFrame,
        out: &mpsc::Sender<ServerFrame>,
    ) -> Result<bool> {
        match frame {
            ClientFrame::Credit(n) => {
                self.credit = self.credit.saturating_add(u64::from(n));
            }
            ClientFrame::Pong => self.pong().await?,
            ClientFrame::Ack(acks) => {
                let deadline =
                    Duration::from_millis(u64::try_from(self.sub.ack_deadline_ms).unwrap_or(0));
                let ops = ack_ops(&acks, deadline)?;
                if ops.is_empty() {
                    return Ok(true);
                }
                let statuses = {
                    let mut conn = self.topics.pool.get().await?;
                    deliver::ack(&mut conn, &self.topic, &self.sub, &ops).await?
                };
                for ((id, op), status) in ops.iter().zip(&statuses) {
                    let Some(id) = id else { continue };
                    match (op, status) {
                        // Still this stream's, for longer.
                        (AckOp::Renew(extend), AckStatus::Ok) => {
                            let until = Utc::now()
                                + chrono::Duration::from_std(*extend)
                                    .unwrap_or(chrono::Duration::zero());
                            self.in_flight.insert(id.seq, (id.count, until));
                        }
                        // Settled, or not this stream's any more.
                        _ => {
                            self.in_flight.remove(&id.seq);
                        }
                    }
                }
                // An ack is a sign of life; noted before the results go out, so a client
                // that reads the topic after them sees it.
                self.pong().await?;
                for (ack, status) in acks.into_iter().zip(statuses) {
                    let frame = ServerFrame::AckResult {
                        delivery_id: ack.delivery_id,
                        status,
                    };
                    if out.send(frame).await.is_err() {
                        return Ok(false);
                    }
                }
            }
        }
        Ok(true)
    }

    /// Notes a sign of life on the topic: always after a ping, else at most once per
    /// [`PONG_EVERY`] (acks count too).
    async fn pong(&mut self) -> Result<()> {
        let now = tokio::time::Instant::now();
        let due = self.pinged
            || self
                .last_pong
                .is_none_or(|at| now.duration_since(at) >= PONG_EVERY);
        if !due {
            return Ok(());
        }
        let mut conn = self.topics.pool.get().await?;
        ping::record_pong(&mut conn, self.topic.id).await?;
        self.last_pong = Some(now);
        self.pinged = false;
        Ok(())
    }
}

/// When a session looks for messages next.
enum Look {
    /// Now: the claim was full, there may be more.
    Again,
    /// At this instant, unless something wakes it first.
    At(tokio::time::Instant),
    /// The client stopped reading.
    ClientGone,
}

/// Marks this replica's consumer rows seen, and ends the local consumers whose row is
/// gone (their subscription or topic was deleted, or the row was found stale).
pub(crate) async fn mark_seen(topics: &Topics) -> Result<()> {
    let consumers = topics.hub.consumers();
    let local = consumers.all();
    if local.is_empty() {
        return Ok(());
    }
    let mut conn = topics.pool.get().await?;
    let seen: Vec<Uuid> = diesel::update(
        topic_consumers::table.filter(topic_consumers::replica_id.eq(consumers.replica_id())),
    )
    .set(topic_consumers::seen_at.eq(diesel::dsl::sql::<Timestamptz>("now()")))
    .returning(topic_consumers::id)
    .get_results(&mut conn)
    .await?;
    let seen: HashSet<Uuid> = seen.into_iter().collect();
    for consumer in local {
        // A consumer's row goes in before it registers here, so a missing row is gone.
        if !seen.contains(&consumer.id) {
            consumer.close.cancel();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(kind: AckKind) -> AckInput {
        AckInput {
            delivery_id: "7.1".into(),
            kind,
            delay: None,
            extend: None,
        }
    }

    #[test]
    fn acks_become_operations_with_their_defaults_and_bounds() {
        let deadline = Duration::from_secs(30);
        let ops = ack_ops(
            &[
                ack(AckKind::Accept),
                ack(AckKind::Renew),
                AckInput {
                    delay: Some(Duration::from_secs(2)),
                    ..ack(AckKind::Release)
                },
                AckInput {
                    delivery_id: "garbage".into(),
                    ..ack(AckKind::Reject)
                },
            ],
            deadline,
        )
        .expect("valid");
        let id = Some(DeliveryId { seq: 7, count: 1 });
        assert_eq!(ops[0], (id, AckOp::Accept));
        assert_eq!(ops[1], (id, AckOp::Renew(deadline)));
        assert_eq!(ops[2], (id, AckOp::Release(Duration::from_secs(2))));
        assert_eq!(ops[3], (None, AckOp::Reject));
        let Err(Error::InvalidArgument(m)) = ack_ops(
            &[
                ack(AckKind::Accept),
                AckInput {
                    extend: Some(Duration::from_secs(7200)),
                    ..ack(AckKind::Renew)
                },
            ],
            deadline,
        ) else {
            panic!("a renew beyond an hour is refused");
        };
        assert!(m.starts_with("ack.acks[1].extend:"), "{m}");
        let Err(Error::InvalidArgument(m)) = ack_ops(
            &[AckInput {
                delay: Some(Duration::from_secs(1)),
                ..ack(AckKind::Accept)
            }],
            deadline,
        ) else {
            panic!("a delay on an accept is refused");
        };
        assert!(m.starts_with("ack.acks[0].delay:"), "{m}");
    }
}
