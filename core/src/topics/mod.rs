//! Topics: publish/subscribe inside a workspace on PostgreSQL, with durable named
//! subscriptions, acknowledged and fenced deliveries, store policies, retention,
//! availability by ping/pong, and response topics.
//!
//! A topic belongs to a workspace and is named by its slug. A message published on it
//! gets a `seq` (growing within the topic) and keeps the publisher's message id, unique
//! in the topic: a second publish of an id is ALREADY_EXISTS and stores nothing, also
//! after the first message was deleted (the ids are kept for the dedupe window). Each
//! message is written once to `topic_messages` and **fanned out on write**: one
//! `subscription_messages` row per subscription the topic has then, which is what the
//! subscription still owes. A consumer claims rows (`FOR UPDATE SKIP LOCKED`, so the
//! consumers of one subscription share it and no row goes to two at once), which leases
//! them; its ack (accept, release, reject, renew) is fenced by the delivery count and the
//! lease, so an ack that comes after the lease ran out is answered `expired`. A message
//! delivered `max_deliveries` times without an accept, or rejected, goes to the
//! subscription's dead-letter topic (or is dropped). The store policy says when the
//! message itself goes: see [`StorePolicy`] and [`policy`].
//!
//! Publishing notifies every replica in its transaction (`pg_notify`), so a consumer on
//! any replica is woken at once; consumers also look on a timer, so a lost notification
//! costs latency only. Nothing a consumer holds lives only in memory: a stream that ends,
//! or a server that stops, leaves its leases to run out, and the messages are delivered
//! again.
//!
//! What it owns:
//! - [`store`]: rows, finding topics and subscriptions, the slug rule, system topics;
//! - [`access`]: who may read, manage, produce on and consume from a topic;
//! - [`publish`]: checking and publishing messages, fan-out, response topics;
//! - [`deliver`]: claims, leases, acks, fencing, backoff, dead letters, and the internal
//!   subscriptions of topic trigger rules;
//! - [`policy`]: the store policies after an ack, retention, the dedupe window, collecting
//!   topics past their time, stale consumers;
//! - [`background`]: the task that runs the passes on every replica;
//! - [`ping`]: availability (ping, pong, `online|offline|unknown`);
//! - [`stream`]: a consumer's `Subscribe` session, independent of the wire;
//! - [`manage`]: creating, reading, listing, changing and deleting topics and
//!   subscriptions, and seeking.
//!
//! The contract other rooms use: the system events relay publishes through
//! [`publish_system`], and topic trigger rules consume through an internal subscription
//! with [`open_internal`], [`take_internal`] and [`accept_internal`] (and
//! [`drop_internal`]), all inside the caller's transaction.
//!
//! What it must not touch: the rows of other rooms (it reads workspaces, memberships and
//! user names, and decides roles only through [`crate::access::roles`]), and the wire
//! protocol.

pub mod access;
pub mod background;
pub mod deliver;
pub mod manage;
pub mod ping;
pub mod policy;
pub mod publish;
pub mod store;
pub mod stream;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::live::hub::Hub;
use crate::store::db::DbPool;

use self::store::{SubscriptionRow, TopicRow};

/// When a message row is deleted. Retention (max age, max messages) applies to every
/// policy that stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StorePolicy {
    /// Never stored: delivered to consumers connected now, at most once (one live consumer
    /// per subscription), and not to subscriptions without one.
    Disabled,
    /// Deleted at the first accept by any subscription (its other subscriptions' rows go
    /// with it). Otherwise kept until retention removes it.
    Cache,
    /// Deleted once every subscription that existed when it was published has accepted
    /// it or sent it to its dead letters (its last `subscription_messages` row is gone);
    /// a message published while the topic had no subscription is not kept.
    CacheAll,
    /// Kept until retention removes it.
    Store,
}

impl StorePolicy {
    /// Every policy.
    pub const ALL: [StorePolicy; 4] = [
        StorePolicy::Disabled,
        StorePolicy::Cache,
        StorePolicy::CacheAll,
        StorePolicy::Store,
    ];

    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            StorePolicy::Disabled => "disabled",
            StorePolicy::Cache => "cache",
            StorePolicy::CacheAll => "cacheall",
            StorePolicy::Store => "store",
        }
    }

    /// The stored text back; `None` for anything else.
    pub fn parse(text: &str) -> Option<StorePolicy> {
        match text {
            "disabled" => Some(StorePolicy::Disabled),
            "cache" => Some(StorePolicy::Cache),
            "cacheall" => Some(StorePolicy::CacheAll),
            "store" => Some(StorePolicy::Store),
            _ => None,
        }
    }
}

/// The system topics, one per kind of Berth object, in every workspace. Their slugs
/// start `berth.`, which no user topic may.
pub const SYSTEM_TOPICS: [&str; 8] = [
    "berth.work-requests",
    "berth.workflows",
    "berth.workers",
    "berth.artifacts",
    "berth.templates",
    "berth.services",
    "berth.triggers",
    "berth.notifications",
];

/// A message handed to an internal (server-side) subscription.
#[derive(Clone, Debug, PartialEq)]
pub struct InternalMessage {
    /// Its place in its topic.
    pub seq: i64,
    /// The publisher's id for it (unique in its topic).
    pub message_id: Uuid,
    pub context: String,
    pub content: serde_json::Value,
    pub properties: serde_json::Value,
    /// Who published it (user name, or `berth` for system events).
    pub producer: String,
    pub published_at: DateTime<Utc>,
}

/// Publishes a system event on `slug` (one of [`SYSTEM_TOPICS`]) in `workspace_id`,
/// inside the caller's transaction, creating the topic (policy `store`) when it does not
/// exist yet. Returns the message's seq, or `None` when `message_id` was already
/// published there (nothing new is stored).
pub async fn publish_system(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    slug: &str,
    message_id: Uuid,
    content: &serde_json::Value,
) -> Result<Option<i64>> {
    publish::system(conn, workspace_id, slug, message_id, content).await
}

/// Publishes several system events (`(message_id, content)`, in order) on `slug` of
/// `workspace_id` at once, inside the caller's transaction: what [`publish_system`] does
/// for each, in a few statements for all of them (the relay publishes hundreds per
/// transaction). Returns each one's seq, or `None` for an id already published there
/// (the others are still published, in order).
pub async fn publish_system_many(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    slug: &str,
    messages: &[(Uuid, serde_json::Value)],
) -> Result<Vec<Option<i64>>> {
    use diesel_async::AsyncConnection;

    if messages.is_empty() {
        return Ok(Vec::new());
    }
    if !SYSTEM_TOPICS.contains(&slug) {
        return Err(Error::InvalidArgument(format!(
            "{slug:?} is not a system topic; they are {}",
            SYSTEM_TOPICS.join(", ")
        )));
    }
    let made = store::ensure_system_topic(conn, workspace_id, slug).await?;
    let topic = store::share_topic(conn, made.id)
        .await?
        .ok_or_else(|| Error::internal(format!("system topic {slug} vanished")))?;
    let outgoing: Vec<publish::Outgoing> = messages
        .iter()
        .map(|(message_id, content)| publish::Outgoing {
            message_id: *message_id,
            context: String::new(),
            content: content.clone(),
            properties: serde_json::json!({}),
        })
        .collect();
    let producer = publish::Producer {
        id: None,
        name: "berth".to_owned(),
    };
    // In a savepoint: a duplicate leaves the other ids taken, which must be undone
    // before they are published one by one.
    let all = conn
        .transaction::<_, Error, _>(async |conn| {
            match publish::publish_in(conn, &topic, &producer, &outgoing, Duration::ZERO).await? {
                publish::Outcome::Published(published) => {
                    Ok(published.into_iter().map(|p| Some(p.seq)).collect())
                }
                publish::Outcome::Duplicate(..) => Err(Error::Aborted(DUPLICATE.to_owned())),
            }
        })
        .await;
    match all {
        Err(Error::Aborted(m)) if m == DUPLICATE => {
            let mut seqs = Vec::with_capacity(messages.len());
            for (message_id, content) in messages {
                seqs.push(publish_system(conn, workspace_id, slug, *message_id, content).await?);
            }
            Ok(seqs)
        }
        other => other,
    }
}

/// Why [`publish_system_many`] rolls back its savepoint.
const DUPLICATE: &str = "topics: a system event was published before";

/// Opens (creates, or finds again) the internal subscription `name` on topic `slug` of
/// `workspace_id`, starting at new messages, inside the caller's transaction. NOT_FOUND
/// when the topic does not exist; FAILED_PRECONDITION when it stores nothing
/// (`disabled`). Returns the subscription's id.
pub async fn open_internal(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    slug: &str,
    name: &str,
) -> Result<Uuid> {
    manage::open_internal(conn, workspace_id, slug, name).await
}

/// Locks and returns up to `limit` messages the internal subscription may take now
/// (`FOR UPDATE SKIP LOCKED`, oldest first), inside the caller's transaction; the caller
/// acks them in the same transaction with [`accept_internal`].
pub async fn take_internal(
    conn: &mut AsyncPgConnection,
    subscription_id: Uuid,
    limit: i64,
) -> Result<Vec<InternalMessage>> {
    deliver::take_internal(conn, subscription_id, limit).await
}

/// Acks `seqs` on the internal subscription, applying the topic's store policy.
pub async fn accept_internal(
    conn: &mut AsyncPgConnection,
    subscription_id: Uuid,
    seqs: &[i64],
) -> Result<()> {
    deliver::accept_internal(conn, subscription_id, seqs).await
}

/// Deletes the internal subscription (its rule was archived); gone already is fine.
pub async fn drop_internal(conn: &mut AsyncPgConnection, subscription_id: Uuid) -> Result<()> {
    manage::drop_internal(conn, subscription_id).await
}

/// Timings of the topics room (the `topic_*` keys of the server's configuration).
#[derive(Clone, Debug)]
pub struct TopicSettings {
    /// How often topics with live consumers are pinged.
    pub ping_interval: Duration,
    /// A topic whose last ping is older than this (or that was never pinged) is
    /// `unknown`.
    pub unknown_after: Duration,
    /// The grace before the last ping within which a pong still counts: `online` needs a
    /// pong no older than `last_ping - offline_after`.
    pub offline_after: Duration,
    /// How long a published message id is remembered after its message is gone (at least
    /// as long as the topic's max age): a second publish of it is ALREADY_EXISTS.
    pub dedupe_window: Duration,
    /// How often the background pass applies retention, collects topics past their time,
    /// prunes message ids and stale consumers, and dead-letters run-out deliveries.
    pub gc_interval: Duration,
    /// How long a response topic lives after its last use when the request does not say
    /// (`response_ttl`).
    pub response_ttl: Duration,
    /// How often a replica marks its live consumers as seen; a consumer row not seen for
    /// three of these is stale.
    pub consumer_heartbeat: Duration,
    /// The longest a consumer waits before looking for messages again when nothing woke
    /// it.
    pub poll_interval: Duration,
}

impl Default for TopicSettings {
    fn default() -> Self {
        TopicSettings {
            ping_interval: Duration::from_secs(60),
            unknown_after: Duration::from_secs(120),
            offline_after: Duration::from_secs(10),
            dedupe_window: Duration::from_secs(24 * 3600),
            gc_interval: Duration::from_secs(5),
            response_ttl: Duration::from_secs(3600),
            consumer_heartbeat: Duration::from_secs(5),
            poll_interval: Duration::from_secs(2),
        }
    }
}

impl TopicSettings {
    /// How long a consumer row may go unseen before it counts as gone.
    pub fn consumer_stale_after(&self) -> Duration {
        self.consumer_heartbeat * 3
    }
}

/// See the module docs. The API's front for topics, and what the passes share.
#[derive(Clone)]
pub struct Topics {
    pub(crate) pool: DbPool,
    pub(crate) hub: Arc<Hub>,
    pub(crate) settings: TopicSettings,
}

impl Topics {
    /// Topics stored in `pool`, consumers of this replica registered with `hub`.
    pub fn new(pool: DbPool, hub: Arc<Hub>) -> Self {
        Topics {
            pool,
            hub,
            settings: TopicSettings::default(),
        }
    }

    /// With these timings.
    #[must_use]
    pub fn with_settings(mut self, settings: TopicSettings) -> Self {
        self.settings = settings;
        self
    }

    /// The timings in force.
    pub fn settings(&self) -> &TopicSettings {
        &self.settings
    }
}

/// Names a topic: its workspace ('' for `default`) and its slug.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicRef {
    pub workspace: String,
    pub slug: String,
}

/// A grant as a caller gives it: `principal` is `user:<name>` or `role:<role>`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GrantInput {
    pub principal: String,
    pub produce: bool,
    pub consume: bool,
}

/// Retention as a caller gives it; `None` is no limit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionInput {
    pub max_age: Option<Duration>,
    pub max_messages: Option<u64>,
}

/// A new topic as a caller gives it.
#[derive(Clone, Debug, Default)]
pub struct CreateTopicInput {
    pub topic: TopicRef,
    pub description: String,
    pub public: bool,
    /// `None`: `cache`.
    pub policy: Option<StorePolicy>,
    pub retention: RetentionInput,
    /// A JSON object, as text; '' for `{}`.
    pub api_info: String,
    pub grants: Vec<GrantInput>,
}

/// A change to a topic: `None` keeps what it has.
#[derive(Clone, Debug, Default)]
pub struct TopicChange {
    pub description: Option<String>,
    pub public: Option<bool>,
    pub retention: Option<RetentionInput>,
    /// A JSON object, as text.
    pub api_info: Option<String>,
    /// Replaces every grant.
    pub grants: Option<Vec<GrantInput>>,
}

/// A grant as shown: `user:<name>` or `role:<role>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantView {
    pub principal: String,
    pub produce: bool,
    pub consume: bool,
}

/// Whether a topic's consumers answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Availability {
    /// A pong (or an ack) came after the last ping, less its grace.
    Online,
    /// No pong since the last ping, less its grace.
    Offline,
    /// No ping recently enough to tell.
    Unknown,
}

impl Availability {
    /// As shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Availability::Online => "online",
            Availability::Offline => "offline",
            Availability::Unknown => "unknown",
        }
    }
}

/// A topic's availability with its evidence.
#[derive(Clone, Debug)]
pub struct AvailabilityView {
    pub state: Availability,
    pub last_ping_at: Option<DateTime<Utc>>,
    pub last_pong_at: Option<DateTime<Utc>>,
    /// Consumer streams open now, on every replica.
    pub live_consumers: i64,
    pub unknown_after: Duration,
    pub offline_after: Duration,
}

/// A topic as callers see it.
#[derive(Clone, Debug)]
pub struct TopicView {
    pub row: TopicRow,
    pub workspace: String,
    pub grants: Vec<GrantView>,
    /// The requester of a response topic ('' otherwise).
    pub owner: String,
    pub created_by: String,
    /// The slug of the topic a response topic answers ('').
    pub response_for: String,
    pub availability: AvailabilityView,
    /// Messages stored now (GetTopic only; `None` in lists).
    pub stored_messages: Option<i64>,
}

/// Where a new subscription starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Start {
    /// Messages published from now on.
    #[default]
    New,
    /// Every message still stored, and what comes.
    All,
    /// Stored messages from this seq on.
    Seq(i64),
    /// Stored messages published at or after this time.
    Time(DateTime<Utc>),
}

/// A new subscription as a caller gives it; `None` takes the default.
#[derive(Clone, Debug, Default)]
pub struct SubscriptionInput {
    pub topic: TopicRef,
    pub name: String,
    pub start: Start,
    /// Default 30 s.
    pub ack_deadline: Option<Duration>,
    /// Default 5; 0: unlimited.
    pub max_deliveries: Option<u32>,
    /// Default 1 s, 5 s, 30 s.
    pub backoff: Option<Vec<Duration>>,
    /// Default 1000.
    pub max_in_flight: Option<u32>,
    /// A topic of the same workspace; '' for none.
    pub dead_letter_topic: String,
}

/// Where a seek goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeekTo {
    /// Stored messages from this seq on are owed again; earlier ones count as accepted.
    Seq(i64),
    /// The same from the first message published at or after this time.
    Time(DateTime<Utc>),
}

/// A subscription as callers see it.
#[derive(Clone, Debug)]
pub struct SubscriptionView {
    pub row: SubscriptionRow,
    pub workspace: String,
    pub topic: String,
    /// The dead-letter topic's slug ('' for none).
    pub dead_letter_topic: String,
    pub created_by: String,
    /// Messages owed (not yet accepted or dead-lettered), in flight or not.
    pub backlog: i64,
    /// Of those, leased to a consumer now.
    pub in_flight: i64,
    /// How long the oldest owed message has waited since it was published.
    pub oldest_unacked: Option<Duration>,
    /// Consumer streams open now, on every replica.
    pub live_consumers: i64,
}

/// A message as a caller gives it.
#[derive(Clone, Debug, Default)]
pub struct MessageInput {
    /// A UUID; '' for one the server picks (a v7).
    pub message_id: String,
    pub context: String,
    /// JSON text: an object or any JSON value.
    pub content: String,
    pub properties: BTreeMap<String, String>,
}

/// A message as published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Published {
    pub message_id: Uuid,
    pub seq: i64,
}

/// The reason a dead letter gives in `dead_letter_reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadLetterReason {
    /// Delivered `max_deliveries` times without an accept.
    MaxDeliveries,
    /// A consumer rejected it.
    Rejected,
}

impl DeadLetterReason {
    /// As written in the property.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::MaxDeliveries => "max-deliveries",
            DeadLetterReason::Rejected => "rejected",
        }
    }
}

/// The database's clock.
pub(crate) async fn db_now(conn: &mut AsyncPgConnection) -> Result<DateTime<Utc>> {
    use diesel_async::RunQueryDsl;
    Ok(
        diesel::select(diesel::dsl::sql::<diesel::sql_types::Timestamptz>("now()"))
            .get_result(conn)
            .await?,
    )
}

/// Milliseconds of `d` as stored (i32), refusing more than fits.
pub(crate) fn millis_i32(field: &str, d: Duration) -> Result<i32> {
    i32::try_from(d.as_millis())
        .map_err(|_| Error::InvalidArgument(format!("{field}: {d:?} is too long")))
}
