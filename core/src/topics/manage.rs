//! Creating, reading, listing, changing and deleting topics and subscriptions, and
//! seeking: the front the API calls, and the internal subscriptions of trigger rules.
//!
//! A subscription is made (or sought) under its topic's row lock (`FOR UPDATE`), which
//! waits for publishes under way (they hold it `FOR KEY SHARE`) and holds new ones back:
//! every message is then either fanned out to the new subscription or already stored when
//! it is filled from what is stored. Filling takes each stored message `FOR KEY SHARE`,
//! so a message an accept is deleting meanwhile is skipped rather than owed.

use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::live::consumers::TopicSignal;
use crate::store::schema::subscriptions;
use crate::topics::publish::notify;
use crate::topics::store::{self, NewSubscription, SubscriptionRow, TopicRow};
use crate::topics::{SYSTEM_TOPICS, Start, StorePolicy, policy};

/// The defaults of a subscription.
pub const DEFAULT_ACK_DEADLINE: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_DELIVERIES: i32 = 5;
pub const DEFAULT_BACKOFF_MS: [i32; 3] = [1000, 5000, 30000];
pub const DEFAULT_MAX_IN_FLIGHT: i32 = 1000;

/// A subscription to make, checked.
#[derive(Clone, Debug)]
pub(crate) struct SubscriptionSpec {
    pub name: String,
    pub internal: bool,
    pub ack_deadline_ms: i32,
    pub max_deliveries: i32,
    pub backoff_ms: Vec<i32>,
    pub max_in_flight: i32,
    pub dead_letter_topic_id: Option<Uuid>,
    pub created_by: Option<Uuid>,
    pub start: Start,
}

/// Makes a subscription on `topic` (locked `FOR UPDATE` by the caller) and fills it from
/// what is stored, as its start says. A name in use is ALREADY_EXISTS.
pub(crate) async fn create_in(
    conn: &mut AsyncPgConnection,
    topic: &TopicRow,
    spec: SubscriptionSpec,
) -> Result<SubscriptionRow> {
    if store::find_subscription(conn, topic.id, &spec.name)
        .await?
        .is_some()
    {
        return Err(Error::AlreadyExists(format!(
            "name: topic {} already has a subscription {:?}",
            topic.slug, spec.name
        )));
    }
    let new = NewSubscription {
        id: Uuid::now_v7(),
        topic_id: topic.id,
        name: spec.name,
        internal: spec.internal,
        ack_deadline_ms: spec.ack_deadline_ms,
        max_deliveries: spec.max_deliveries,
        backoff_ms: spec.backoff_ms,
        max_in_flight: spec.max_in_flight,
        dead_letter_topic_id: spec.dead_letter_topic_id,
        created_by: spec.created_by,
    };
    let row: SubscriptionRow = diesel::insert_into(subscriptions::table)
        .values(&new)
        .returning(SubscriptionRow::as_returning())
        .get_result(conn)
        .await?;
    if topic.policy()? != StorePolicy::Disabled {
        fill(conn, topic, row.id, spec.start).await?;
    }
    Ok(row)
}

/// Owes `subscription` every stored message of `topic` from `start` on (nothing for
/// [`Start::New`]); rows it already has are made visible now, their leases ended and
/// their counts kept (so a late ack of an earlier delivery is `expired`). Returns how
/// many rows it wrote.
pub(crate) async fn fill(
    conn: &mut AsyncPgConnection,
    topic: &TopicRow,
    subscription: Uuid,
    start: Start,
) -> Result<usize> {
    let (from_seq, from_time) = match start {
        Start::New => return Ok(0),
        Start::All => (i64::MIN, None),
        Start::Seq(seq) => (seq, None),
        Start::Time(at) => (i64::MIN, Some(at)),
    };
    Ok(diesel::sql_query(
        "INSERT INTO subscription_messages (subscription_id, seq, topic_id, visible_at) \
         SELECT $1, m.seq, m.topic_id, now() FROM topic_messages m \
         WHERE m.topic_id = $2 AND m.seq >= $3 AND ($4::timestamptz IS NULL OR m.published_at >= $4) \
         FOR KEY SHARE OF m \
         ON CONFLICT (subscription_id, seq) DO UPDATE \
           SET visible_at = now(), leased_until = NULL, consumer_id = NULL",
    )
    .bind::<diesel::sql_types::Uuid, _>(subscription)
    .bind::<diesel::sql_types::Uuid, _>(topic.id)
    .bind::<BigInt, _>(from_seq)
    .bind::<diesel::sql_types::Nullable<Timestamptz>, _>(from_time)
    .execute(conn)
    .await?)
}

/// See [`crate::topics::open_internal`].
pub(crate) async fn open_internal(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    slug: &str,
    name: &str,
) -> Result<Uuid> {
    store::check_slug("name", name)?;
    let found = if SYSTEM_TOPICS.contains(&slug) {
        Some(store::ensure_system_topic(conn, workspace_id, slug).await?)
    } else {
        store::find_topic(conn, workspace_id, slug, false).await?
    };
    let Some(found) = found else {
        return Err(Error::NotFound(format!(
            "topic: the workspace has no topic {slug:?}"
        )));
    };
    if found.policy()? == StorePolicy::Disabled {
        return Err(Error::FailedPrecondition(format!(
            "topic: {slug} has store policy disabled: it stores no message a rule could take"
        )));
    }
    let topic = store::find_topic(conn, workspace_id, slug, true)
        .await?
        .ok_or_else(|| Error::NotFound(format!("topic: the workspace has no topic {slug:?}")))?;
    if let Some(existing) = store::find_subscription(conn, topic.id, name).await? {
        if existing.internal {
            return Ok(existing.id);
        }
        return Err(Error::AlreadyExists(format!(
            "name: topic {slug} already has a subscription {name:?} that is not Berth's own"
        )));
    }
    let row = create_in(
        conn,
        &topic,
        SubscriptionSpec {
            name: name.to_owned(),
            internal: true,
            ack_deadline_ms: super::millis_i32("ack_deadline", DEFAULT_ACK_DEADLINE)?,
            // Taken and accepted in one transaction: never leased, never counted.
            max_deliveries: 0,
            backoff_ms: DEFAULT_BACKOFF_MS.to_vec(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            dead_letter_topic_id: None,
            created_by: None,
            start: Start::New,
        },
    )
    .await?;
    Ok(row.id)
}

/// Deletes subscription `id` in the caller's transaction: what it owed goes with it (a
/// `cacheall` message nobody else owes goes too), and its consumers end everywhere.
pub(crate) async fn delete_in(conn: &mut AsyncPgConnection, sub: &SubscriptionRow) -> Result<()> {
    let Some(topic) = store::find_topic_by_id_locked(conn, sub.topic_id).await? else {
        return Ok(());
    };
    diesel::delete(subscriptions::table.find(sub.id))
        .execute(conn)
        .await?;
    if topic.policy()? == StorePolicy::CacheAll {
        policy::delete_unowed(conn, topic.id, None).await?;
    }
    notify(conn, &[TopicSignal::Closed(sub.id).encode()]).await
}

/// See [`crate::topics::drop_internal`].
pub(crate) async fn drop_internal(
    conn: &mut AsyncPgConnection,
    subscription_id: Uuid,
) -> Result<()> {
    let Some(sub) = store::subscription_by_id(conn, subscription_id).await? else {
        return Ok(());
    };
    if !sub.internal {
        return Err(Error::FailedPrecondition(format!(
            "subscription {} is not Berth's own; it is deleted through the API",
            sub.name
        )));
    }
    delete_in(conn, &sub).await
}
