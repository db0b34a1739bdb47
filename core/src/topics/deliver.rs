//! Deliveries: claims, leases, acks, fencing, backoff and dead letters, and the internal
//! subscriptions of topic trigger rules.
//!
//! A `subscription_messages` row is what a subscription still owes. [`claim`] takes the
//! visible rows of a subscription (oldest first, `FOR UPDATE SKIP LOCKED`, so consumers
//! sharing it never take the same row), raises each one's `delivery_count` and leases it
//! until now + the ack deadline (`visible_at` moves with the lease, so a lease that runs
//! out makes the row visible again with nothing written). A delivery is named by
//! [`DeliveryId`]: its seq and its count. An ack is applied only while that row still
//! has that count and its lease has not run out; otherwise it is answered
//! [`AckStatus::Expired`] (the message was, or will be, delivered again) or
//! [`AckStatus::Unknown`] (nothing is owed under that id).
//!
//! - accept: the row goes, and the store policy decides about the message;
//! - release (with a delay or none): the lease ends and the row becomes visible after the
//!   delay or the subscription's `backoff[delivery]`, whichever is longer, so releases
//!   cannot burn through the deliveries in milliseconds;
//! - reject: to the dead letters now;
//! - renew: the lease is extended (by the ack deadline unless said).
//!
//! A row delivered `max_deliveries` times goes to the dead letters when its last delivery
//! is released or its lease runs out (a claim finding it, or the pass, sends it): a new
//! message on the dead-letter topic with the properties `dead_letter_from_topic`,
//! `dead_letter_seq`, `dead_letter_reason` and `delivery_count`, or, without a
//! dead-letter topic, dropped with a log line.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::topics::publish::{self, Outgoing, Producer};
use crate::topics::store::{self, SubscriptionRow, TopicRow};
use crate::topics::{DeadLetterReason, InternalMessage, policy};

/// The longest a renew may extend a lease by.
pub const MAX_EXTEND: Duration = Duration::from_secs(3600);
/// The longest a release may ask to wait.
pub const MAX_DELAY: Duration = Duration::from_secs(24 * 3600);

/// Names one delivery: the message's seq and how many times it had been delivered with
/// this one. Written `SEQ.COUNT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryId {
    pub seq: i64,
    pub count: i32,
}

impl DeliveryId {
    /// Reads `SEQ.COUNT`; `None` for anything else.
    pub fn parse(text: &str) -> Option<DeliveryId> {
        let (seq, count) = text.split_once('.')?;
        let seq = seq.parse().ok()?;
        let count = count.parse().ok().filter(|c: &i32| *c > 0)?;
        Some(DeliveryId { seq, count })
    }
}

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.seq, self.count)
    }
}

/// What an ack asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckOp {
    Accept,
    /// Redeliver after at least this (and at least the backoff).
    Release(Duration),
    /// To the dead letters now.
    Reject,
    /// Extend the lease by this.
    Renew(Duration),
}

/// How an ack went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckStatus {
    /// Applied.
    Ok,
    /// The lease had run out (or the message was delivered again since): the ack changed
    /// nothing, and the message is or will be delivered again.
    Expired,
    /// Nothing is owed under this id (never delivered, malformed, or settled already).
    Unknown,
}

impl AckStatus {
    /// As shown.
    pub fn as_str(self) -> &'static str {
        match self {
            AckStatus::Ok => "ok",
            AckStatus::Expired => "expired",
            AckStatus::Unknown => "unknown",
        }
    }
}

/// A leased delivery, with its message.
#[derive(Clone, Debug, PartialEq)]
pub struct Claimed {
    pub id: DeliveryId,
    pub leased_until: DateTime<Utc>,
    pub message_id: Uuid,
    pub context: String,
    pub content: serde_json::Value,
    pub properties: serde_json::Value,
    pub producer: String,
    pub published_at: DateTime<Utc>,
}

#[derive(QueryableByName)]
struct ClaimRow {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Integer)]
    delivery_count: i32,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    leased_until: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<diesel::sql_types::Uuid>)]
    message_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Text>)]
    context: Option<String>,
    #[diesel(sql_type = Nullable<Jsonb>)]
    content: Option<serde_json::Value>,
    #[diesel(sql_type = Nullable<Jsonb>)]
    properties: Option<serde_json::Value>,
    #[diesel(sql_type = Nullable<Text>)]
    producer: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    published_at: Option<DateTime<Utc>>,
}

/// Leases up to `limit` visible rows of `sub` to `consumer`, in one statement. Rows that
/// had their last allowed delivery already are not leased; they are sent to the dead
/// letters here, after the claim.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    topic: &TopicRow,
    sub: &SubscriptionRow,
    consumer: Uuid,
    limit: i64,
) -> Result<Vec<Claimed>> {
    let rows: Vec<ClaimRow> = diesel::sql_query(
        "WITH picked AS ( \
           SELECT seq, delivery_count FROM subscription_messages \
           WHERE subscription_id = $1 AND visible_at <= now() \
           ORDER BY visible_at, seq LIMIT $2 FOR UPDATE SKIP LOCKED), \
         leased AS ( \
           UPDATE subscription_messages sm \
           SET delivery_count = sm.delivery_count + 1, \
               leased_until = now() + $3 * interval '1 millisecond', \
               visible_at = now() + $3 * interval '1 millisecond', \
               consumer_id = $4 \
           FROM picked p \
           WHERE sm.subscription_id = $1 AND sm.seq = p.seq \
             AND ($5 = 0 OR p.delivery_count < $5) \
           RETURNING sm.seq, sm.delivery_count, sm.leased_until) \
         SELECT l.seq, l.delivery_count, l.leased_until, m.message_id, m.context, m.content, \
                m.properties, m.producer, m.published_at \
         FROM leased l JOIN topic_messages m ON m.topic_id = $6 AND m.seq = l.seq \
         UNION ALL \
         SELECT p.seq, p.delivery_count, NULL, NULL, NULL, NULL, NULL, NULL, NULL \
         FROM picked p WHERE $5 > 0 AND p.delivery_count >= $5 \
         ORDER BY 1",
    )
    .bind::<diesel::sql_types::Uuid, _>(sub.id)
    .bind::<BigInt, _>(limit)
    .bind::<Integer, _>(sub.ack_deadline_ms)
    .bind::<diesel::sql_types::Uuid, _>(consumer)
    .bind::<Integer, _>(sub.max_deliveries)
    .bind::<diesel::sql_types::Uuid, _>(topic.id)
    .load(conn)
    .await?;
    let mut claimed = Vec::with_capacity(rows.len());
    let mut exhausted = Vec::new();
    for row in rows {
        match (
            row.leased_until,
            row.message_id,
            row.content,
            row.published_at,
        ) {
            (Some(leased_until), Some(message_id), Some(content), Some(published_at)) => {
                claimed.push(Claimed {
                    id: DeliveryId {
                        seq: row.seq,
                        count: row.delivery_count,
                    },
                    leased_until,
                    message_id,
                    context: row.context.unwrap_or_default(),
                    content,
                    properties: row.properties.unwrap_or_else(|| serde_json::json!({})),
                    producer: row.producer.unwrap_or_default(),
                    published_at,
                });
            }
            _ => exhausted.push(row.seq),
        }
    }
    if !exhausted.is_empty() {
        conn.transaction::<_, Error, _>(async |conn| {
            dead_letter(
                conn,
                topic,
                sub,
                Pick::RunOut(&exhausted),
                DeadLetterReason::MaxDeliveries,
            )
            .await
            .map(|_| ())
        })
        .await?;
    }
    Ok(claimed)
}

/// Which rows a dead-lettering takes.
#[derive(Clone, Copy, Debug)]
enum Pick<'a> {
    /// These deliveries, if still leased under these counts.
    Fenced(&'a [DeliveryId]),
    /// These rows, if still visible with their last allowed delivery made.
    RunOut(&'a [i64]),
}

#[derive(QueryableByName)]
struct Removed {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Integer)]
    delivery_count: i32,
}

#[derive(QueryableByName)]
struct MessageRow {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Text)]
    context: String,
    #[diesel(sql_type = Jsonb)]
    content: serde_json::Value,
    #[diesel(sql_type = Jsonb)]
    properties: serde_json::Value,
    #[diesel(sql_type = Nullable<diesel::sql_types::Uuid>)]
    producer_id: Option<Uuid>,
    #[diesel(sql_type = Text)]
    producer: String,
}

/// Takes the rows `pick` names out of `sub` and sends their messages to its dead-letter
/// topic (or drops them), in the caller's transaction. Returns the seqs it took.
async fn dead_letter(
    conn: &mut AsyncPgConnection,
    topic: &TopicRow,
    sub: &SubscriptionRow,
    pick: Pick<'_>,
    reason: DeadLetterReason,
) -> Result<Vec<i64>> {
    let seqs: Vec<i64> = match pick {
        Pick::Fenced(ids) => ids.iter().map(|d| d.seq).collect(),
        Pick::RunOut(seqs) => seqs.to_vec(),
    };
    policy::lock_for_removal(conn, topic, &seqs).await?;
    let removed: Vec<Removed> = match pick {
        Pick::Fenced(ids) => {
            let counts: Vec<i32> = ids.iter().map(|d| d.count).collect();
            diesel::sql_query(
                "DELETE FROM subscription_messages sm USING unnest($2::int8[], $3::int4[]) AS u(seq, n) \
                 WHERE sm.subscription_id = $1 AND sm.seq = u.seq AND sm.delivery_count = u.n \
                   AND sm.leased_until > now() \
                 RETURNING sm.seq, sm.delivery_count",
            )
            .bind::<diesel::sql_types::Uuid, _>(sub.id)
            .bind::<Array<BigInt>, _>(&seqs)
            .bind::<Array<Integer>, _>(&counts)
            .load(conn)
            .await?
        }
        Pick::RunOut(_) => {
            diesel::sql_query(
                "DELETE FROM subscription_messages \
                 WHERE subscription_id = $1 AND seq = ANY($2::int8[]) AND visible_at <= now() \
                   AND $3 > 0 AND delivery_count >= $3 \
                 RETURNING seq, delivery_count",
            )
            .bind::<diesel::sql_types::Uuid, _>(sub.id)
            .bind::<Array<BigInt>, _>(&seqs)
            .bind::<Integer, _>(sub.max_deliveries)
            .load(conn)
            .await?
        }
    };
    if removed.is_empty() {
        return Ok(Vec::new());
    }
    let taken: Vec<i64> = removed.iter().map(|r| r.seq).collect();
    let counts: HashMap<i64, i32> = removed.iter().map(|r| (r.seq, r.delivery_count)).collect();
    let target = match sub.dead_letter_topic_id {
        Some(id) => store::share_topic(conn, id).await?,
        None => None,
    };
    match target {
        Some(target) => {
            let messages: Vec<MessageRow> = diesel::sql_query(
                "SELECT seq, context, content, properties, producer_id, producer FROM topic_messages \
                 WHERE topic_id = $1 AND seq = ANY($2::int8[]) ORDER BY seq",
            )
            .bind::<diesel::sql_types::Uuid, _>(topic.id)
            .bind::<Array<BigInt>, _>(&taken)
            .load(conn)
            .await?;
            for message in messages {
                let mut properties = match message.properties {
                    serde_json::Value::Object(map) => map,
                    _ => serde_json::Map::new(),
                };
                let count = counts.get(&message.seq).copied().unwrap_or_default();
                for (key, value) in [
                    ("dead_letter_from_topic", topic.slug.clone()),
                    ("dead_letter_seq", message.seq.to_string()),
                    ("dead_letter_reason", reason.as_str().to_owned()),
                    ("delivery_count", count.to_string()),
                ] {
                    properties.insert(key.to_owned(), serde_json::Value::String(value));
                }
                let outgoing = Outgoing {
                    message_id: Uuid::now_v7(),
                    context: message.context,
                    content: message.content,
                    properties: serde_json::Value::Object(properties),
                };
                let producer = Producer {
                    id: message.producer_id,
                    name: message.producer,
                };
                // A fresh id is never taken; a dead-letter topic stores (checked when the
                // subscription was made), so no live window is needed.
                publish::publish_in(conn, &target, &producer, &[outgoing], Duration::ZERO).await?;
            }
            tracing::info!(topic = %topic.slug, subscription = %sub.name, dead_letter_topic = %target.slug, seqs = ?taken, reason = reason.as_str(), "messages sent to the dead-letter topic");
        }
        None => {
            tracing::warn!(topic = %topic.slug, subscription = %sub.name, seqs = ?taken, reason = reason.as_str(), "messages dropped: the subscription has no dead-letter topic");
        }
    }
    policy::after_removal(conn, topic, &[], &taken).await?;
    Ok(taken)
}

#[derive(QueryableByName)]
struct Applied {
    #[diesel(sql_type = BigInt)]
    seq: i64,
}

/// Applies `acks` for `sub` in one transaction, returning each one's status in order. An
/// ack without an id (it did not parse) is [`AckStatus::Unknown`].
pub async fn ack(
    conn: &mut AsyncPgConnection,
    topic: &TopicRow,
    sub: &SubscriptionRow,
    acks: &[(Option<DeliveryId>, AckOp)],
) -> Result<Vec<AckStatus>> {
    conn.transaction::<_, Error, _>(async |conn| ack_in(conn, topic, sub, acks).await)
        .await
}

async fn ack_in(
    conn: &mut AsyncPgConnection,
    topic: &TopicRow,
    sub: &SubscriptionRow,
    acks: &[(Option<DeliveryId>, AckOp)],
) -> Result<Vec<AckStatus>> {
    let mut statuses = vec![AckStatus::Unknown; acks.len()];
    let mut accepts = Vec::new();
    let mut releases = Vec::new();
    let mut rejects = Vec::new();
    let mut renews = Vec::new();
    for (i, (id, op)) in acks.iter().enumerate() {
        let Some(id) = id else { continue };
        match op {
            AckOp::Accept => accepts.push((i, *id)),
            AckOp::Release(delay) => {
                let last = sub.max_deliveries > 0 && id.count >= sub.max_deliveries;
                if last {
                    rejects.push((i, *id, DeadLetterReason::MaxDeliveries));
                } else {
                    releases.push((
                        i,
                        *id,
                        policy::backoff_after(&sub.backoff_ms, id.count, *delay),
                    ));
                }
            }
            AckOp::Reject => rejects.push((i, *id, DeadLetterReason::Rejected)),
            AckOp::Renew(extend) => renews.push((i, *id, *extend)),
        }
    }
    let mut applied: Vec<(usize, bool)> = Vec::new();
    if !accepts.is_empty() {
        let ids: Vec<DeliveryId> = accepts.iter().map(|(_, id)| *id).collect();
        let seqs: Vec<i64> = ids.iter().map(|d| d.seq).collect();
        let counts: Vec<i32> = ids.iter().map(|d| d.count).collect();
        policy::lock_for_removal(conn, topic, &seqs).await?;
        let done: Vec<Applied> = diesel::sql_query(
            "DELETE FROM subscription_messages sm USING unnest($2::int8[], $3::int4[]) AS u(seq, n) \
             WHERE sm.subscription_id = $1 AND sm.seq = u.seq AND sm.delivery_count = u.n \
               AND sm.leased_until > now() \
             RETURNING sm.seq",
        )
        .bind::<diesel::sql_types::Uuid, _>(sub.id)
        .bind::<Array<BigInt>, _>(&seqs)
        .bind::<Array<Integer>, _>(&counts)
        .load(conn)
        .await?;
        let done: Vec<i64> = done.into_iter().map(|a| a.seq).collect();
        policy::after_removal(conn, topic, &done, &[]).await?;
        for (i, id) in &accepts {
            applied.push((*i, done.contains(&id.seq)));
        }
    }
    for reason in [DeadLetterReason::Rejected, DeadLetterReason::MaxDeliveries] {
        let group: Vec<(usize, DeliveryId)> = rejects
            .iter()
            .filter(|(_, _, why)| *why == reason)
            .map(|(i, id, _)| (*i, *id))
            .collect();
        if group.is_empty() {
            continue;
        }
        let ids: Vec<DeliveryId> = group.iter().map(|(_, id)| *id).collect();
        let taken = dead_letter(conn, topic, sub, Pick::Fenced(&ids), reason).await?;
        for (i, id) in group {
            applied.push((i, taken.contains(&id.seq)));
        }
    }
    if !releases.is_empty() {
        let seqs: Vec<i64> = releases.iter().map(|(_, id, _)| id.seq).collect();
        let counts: Vec<i32> = releases.iter().map(|(_, id, _)| id.count).collect();
        let waits: Vec<i64> = releases
            .iter()
            .map(|(_, _, wait)| i64::try_from(wait.as_millis()).unwrap_or(i64::MAX))
            .collect();
        let done: Vec<Applied> = diesel::sql_query(
            "UPDATE subscription_messages sm \
             SET visible_at = now() + u.wait * interval '1 millisecond', leased_until = NULL, consumer_id = NULL \
             FROM unnest($2::int8[], $3::int4[], $4::int8[]) AS u(seq, n, wait) \
             WHERE sm.subscription_id = $1 AND sm.seq = u.seq AND sm.delivery_count = u.n \
               AND sm.leased_until > now() \
             RETURNING sm.seq",
        )
        .bind::<diesel::sql_types::Uuid, _>(sub.id)
        .bind::<Array<BigInt>, _>(&seqs)
        .bind::<Array<Integer>, _>(&counts)
        .bind::<Array<BigInt>, _>(&waits)
        .load(conn)
        .await?;
        let done: Vec<i64> = done.into_iter().map(|a| a.seq).collect();
        for (i, id, _) in &releases {
            applied.push((*i, done.contains(&id.seq)));
        }
    }
    if !renews.is_empty() {
        let seqs: Vec<i64> = renews.iter().map(|(_, id, _)| id.seq).collect();
        let counts: Vec<i32> = renews.iter().map(|(_, id, _)| id.count).collect();
        let extends: Vec<i64> = renews
            .iter()
            .map(|(_, _, extend)| i64::try_from(extend.as_millis()).unwrap_or(i64::MAX))
            .collect();
        let done: Vec<Applied> = diesel::sql_query(
            "UPDATE subscription_messages sm \
             SET leased_until = now() + u.ext * interval '1 millisecond', \
                 visible_at = now() + u.ext * interval '1 millisecond' \
             FROM unnest($2::int8[], $3::int4[], $4::int8[]) AS u(seq, n, ext) \
             WHERE sm.subscription_id = $1 AND sm.seq = u.seq AND sm.delivery_count = u.n \
               AND sm.leased_until > now() \
             RETURNING sm.seq",
        )
        .bind::<diesel::sql_types::Uuid, _>(sub.id)
        .bind::<Array<BigInt>, _>(&seqs)
        .bind::<Array<Integer>, _>(&counts)
        .bind::<Array<BigInt>, _>(&extends)
        .load(conn)
        .await?;
        let done: Vec<i64> = done.into_iter().map(|a| a.seq).collect();
        for (i, id, _) in &renews {
            applied.push((*i, done.contains(&id.seq)));
        }
    }
    let missed: Vec<i64> = applied
        .iter()
        .filter(|(_, ok)| !ok)
        .filter_map(|(i, _)| acks[*i].0.map(|d| d.seq))
        .collect();
    let owed: HashMap<i64, i32> = if missed.is_empty() {
        HashMap::new()
    } else {
        let rows: Vec<Removed> = diesel::sql_query(
            "SELECT seq, delivery_count FROM subscription_messages \
             WHERE subscription_id = $1 AND seq = ANY($2::int8[])",
        )
        .bind::<diesel::sql_types::Uuid, _>(sub.id)
        .bind::<Array<BigInt>, _>(&missed)
        .load(conn)
        .await?;
        rows.into_iter()
            .map(|r| (r.seq, r.delivery_count))
            .collect()
    };
    for (i, ok) in applied {
        statuses[i] = match acks[i].0 {
            _ if ok => AckStatus::Ok,
            // Still owed, and delivered at least as often as this id says: it was this
            // delivery, and its lease ran out (or it went out again since).
            Some(id) if owed.get(&id.seq).is_some_and(|count| *count >= id.count) => {
                AckStatus::Expired
            }
            _ => AckStatus::Unknown,
        };
    }
    Ok(statuses)
}

#[derive(QueryableByName)]
struct RunOut {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    subscription_id: Uuid,
    #[diesel(sql_type = BigInt)]
    seq: i64,
}

/// Sends to the dead letters every row whose last allowed delivery's lease ran out and
/// that no consumer has claimed since (the pass's step 2). Returns how many it sent.
pub(crate) async fn dead_letter_run_out(conn: &mut AsyncPgConnection) -> Result<usize> {
    let found: Vec<RunOut> = diesel::sql_query(
        "SELECT sm.subscription_id, sm.seq FROM subscription_messages sm \
         JOIN subscriptions s ON s.id = sm.subscription_id \
         WHERE sm.leased_until IS NOT NULL AND sm.leased_until <= now() \
           AND s.max_deliveries > 0 AND sm.delivery_count >= s.max_deliveries \
         ORDER BY sm.leased_until LIMIT 500",
    )
    .load(conn)
    .await?;
    let mut sent = 0;
    let grouped = policy::by_subscription(
        found
            .into_iter()
            .map(|r| (r.subscription_id, r.seq))
            .collect(),
    );
    for (subscription, seqs) in grouped {
        sent += conn
            .transaction::<_, Error, _>(async |conn| {
                let Some(sub) = store::subscription_by_id(conn, subscription).await? else {
                    return Ok(0);
                };
                let Some(topic) = store::share_topic(conn, sub.topic_id).await? else {
                    return Ok(0);
                };
                let taken =
                    dead_letter(conn, &topic, &sub, Pick::RunOut(&seqs), policy::RUN_OUT).await?;
                Ok(taken.len())
            })
            .await?;
    }
    Ok(sent)
}

#[derive(QueryableByName)]
struct InternalRow {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    message_id: Uuid,
    #[diesel(sql_type = Text)]
    context: String,
    #[diesel(sql_type = Jsonb)]
    content: serde_json::Value,
    #[diesel(sql_type = Jsonb)]
    properties: serde_json::Value,
    #[diesel(sql_type = Text)]
    producer: String,
    #[diesel(sql_type = Timestamptz)]
    published_at: DateTime<Utc>,
}

/// See [`crate::topics::take_internal`].
pub(crate) async fn take_internal(
    conn: &mut AsyncPgConnection,
    subscription_id: Uuid,
    limit: i64,
) -> Result<Vec<InternalMessage>> {
    let rows: Vec<InternalRow> = diesel::sql_query(
        "SELECT sm.seq, m.message_id, m.context, m.content, m.properties, m.producer, m.published_at \
         FROM subscription_messages sm \
         JOIN topic_messages m ON m.topic_id = sm.topic_id AND m.seq = sm.seq \
         WHERE sm.subscription_id = $1 AND sm.visible_at <= now() \
         ORDER BY sm.visible_at, sm.seq LIMIT $2 \
         FOR UPDATE OF sm SKIP LOCKED",
    )
    .bind::<diesel::sql_types::Uuid, _>(subscription_id)
    .bind::<BigInt, _>(limit.max(0))
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| InternalMessage {
            seq: r.seq,
            message_id: r.message_id,
            context: r.context,
            content: r.content,
            properties: r.properties,
            producer: r.producer,
            published_at: r.published_at,
        })
        .collect())
}

/// See [`crate::topics::accept_internal`].
pub(crate) async fn accept_internal(
    conn: &mut AsyncPgConnection,
    subscription_id: Uuid,
    seqs: &[i64],
) -> Result<()> {
    if seqs.is_empty() {
        return Ok(());
    }
    let sub = store::subscription_by_id(conn, subscription_id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no subscription {subscription_id}")))?;
    let topic = store::share_topic(conn, sub.topic_id)
        .await?
        .ok_or_else(|| {
            Error::NotFound(format!(
                "the topic of subscription {subscription_id} is gone"
            ))
        })?;
    let mut sorted = seqs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    policy::lock_for_removal(conn, &topic, &sorted).await?;
    let done: Vec<Applied> = diesel::sql_query(
        "DELETE FROM subscription_messages WHERE subscription_id = $1 AND seq = ANY($2::int8[]) \
         RETURNING seq",
    )
    .bind::<diesel::sql_types::Uuid, _>(sub.id)
    .bind::<Array<BigInt>, _>(&sorted)
    .load(conn)
    .await?;
    let done: Vec<i64> = done.into_iter().map(|a| a.seq).collect();
    policy::after_removal(conn, &topic, &done, &[]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_ids_are_seq_dot_count() {
        let id = DeliveryId { seq: 42, count: 3 };
        assert_eq!(id.to_string(), "42.3");
        assert_eq!(DeliveryId::parse("42.3"), Some(id));
        for bad in ["", "42", "42.", ".3", "a.b", "42.0", "42.-1", "42.3.1"] {
            assert_eq!(DeliveryId::parse(bad), None, "{bad:?}");
        }
    }
}
