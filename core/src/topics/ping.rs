//! Availability: whether a topic's consumers answer, by ping and pong (as dasf does),
//! with the evidence.
//!
//! `Ping(topic)` (by hand, or the pass every `ping_interval` for topics with live
//! consumers) sets `last_ping_at` and sends a Ping frame to the topic's live consumers on
//! every replica (NOTIFY `topic-ping:<id>`). A Pong frame, or any ack on the topic, sets
//! `last_pong_at` (a consumer stream writes it at most once a second unless a ping came
//! since). Then, at time `now`:
//! - **unknown**: never pinged, or the last ping is older than `unknown_after`
//!   (default 2 min): too old to tell;
//! - **online**: a pong no older than `last_ping_at - offline_after` (default 10 s: a
//!   pong a little before the ping still counts, since consumers that just acked are
//!   alive);
//! - **offline**: otherwise — pinged recently, and no pong since (less the grace).
//!
//! Right after a ping of a topic with no earlier pong it is `offline` until the first
//! pong arrives, usually within milliseconds.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::access::auth::Identity;
use crate::access::roles;
use crate::error::{Error, Result};
use crate::live::consumers::TopicSignal;
use crate::store::schema::topics;
use crate::templates::workspace_name;
use crate::topics::access::{self, Use};
use crate::topics::{Availability, SYSTEM_TOPICS, TopicRef, TopicSettings, Topics, store};

/// Availability at `now` from the evidence (see the module docs).
pub fn availability(
    last_ping_at: Option<DateTime<Utc>>,
    last_pong_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    settings: &TopicSettings,
) -> Availability {
    let window = |d: Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    let Some(ping) = last_ping_at else {
        return Availability::Unknown;
    };
    if now - ping > window(settings.unknown_after) {
        return Availability::Unknown;
    }
    match last_pong_at {
        Some(pong) if pong >= ping - window(settings.offline_after) => Availability::Online,
        _ => Availability::Offline,
    }
}

/// What a ping did.
#[derive(Clone, Debug)]
pub struct PingView {
    pub pinged_at: DateTime<Utc>,
    /// Consumer streams open now, on every replica, that were sent the ping.
    pub live_consumers: i64,
}

/// Consumer streams open now on topic `topic_id`, on every replica.
pub(crate) async fn live_consumers(
    conn: &mut AsyncPgConnection,
    topic_id: Uuid,
    settings: &TopicSettings,
) -> Result<i64> {
    let stale_ms = i64::try_from(settings.consumer_stale_after().as_millis()).unwrap_or(i64::MAX);
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let counted: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM topic_consumers \
         WHERE topic_id = $1 AND seen_at > now() - $2 * interval '1 millisecond'",
    )
    .bind::<diesel::sql_types::Uuid, _>(topic_id)
    .bind::<BigInt, _>(stale_ms)
    .get_result(conn)
    .await?;
    Ok(counted.n)
}

/// Notes a sign of life from a consumer of `topic_id`.
pub(crate) async fn record_pong(conn: &mut AsyncPgConnection, topic_id: Uuid) -> Result<()> {
    diesel::update(topics::table.find(topic_id))
        .set(topics::last_pong_at.eq(diesel::dsl::sql::<
            diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
        >("now()")))
        .execute(conn)
        .await?;
    Ok(())
}

impl Topics {
    /// Pings `topic`'s live consumers as `caller`, who must be allowed to publish on it.
    pub async fn ping(&self, caller: &Identity, topic: &TopicRef) -> Result<PingView> {
        let mut conn = self.pool.get().await?;
        let settings = self.settings.clone();
        let (topic_id, view) = conn
            .transaction::<_, Error, _>(async |conn| {
                let standing =
                    roles::in_workspace(conn, caller, workspace_name(&topic.workspace)).await?;
                let found = if SYSTEM_TOPICS.contains(&topic.slug.as_str()) {
                    Some(
                        store::ensure_system_topic(conn, standing.workspace.id, &topic.slug)
                            .await?,
                    )
                } else {
                    store::find_topic(conn, standing.workspace.id, &topic.slug, false).await?
                };
                let row = found
                    .ok_or_else(|| store::no_such_topic(&standing.workspace.name, &topic.slug))?;
                access::refuse_system(&row, "ping")?;
                let grants = store::grants_of(conn, row.id).await?;
                let source_consumer = match row.response_for {
                    Some(source) => {
                        access::may_consume_source(conn, &standing, caller.user_id, source).await?
                    }
                    None => false,
                };
                access::require_use(
                    &standing,
                    caller.user_id,
                    &row,
                    &grants,
                    Use::Produce,
                    source_consumer,
                )?;
                let pinged_at: Option<DateTime<Utc>> = diesel::update(topics::table.find(row.id))
                    .set(topics::last_ping_at.eq(diesel::dsl::sql::<
                        diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
                    >("now()")))
                    .returning(topics::last_ping_at)
                    .get_result(conn)
                    .await?;
                let live = live_consumers(conn, row.id, &settings).await?;
                store::notify(conn, &[TopicSignal::Ping(row.id).encode()]).await?;
                Ok((
                    row.id,
                    PingView {
                        pinged_at: pinged_at.unwrap_or_else(Utc::now),
                        live_consumers: live,
                    },
                ))
            })
            .await?;
        // The NOTIFY reaches this replica too; its own consumers need not wait for it.
        self.hub.consumers().apply(TopicSignal::Ping(topic_id));
        Ok(view)
    }
}

#[derive(QueryableByName)]
struct Pinged {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
}

/// Pings every topic with live consumers whose last ping is older than most of the
/// interval; replicas running it at once ping each topic once (the second finds it just
/// pinged).
pub(crate) async fn ping_pass(topics: &Topics) -> Result<usize> {
    let interval_ms = i64::try_from(topics.settings.ping_interval.as_millis()).unwrap_or(i64::MAX);
    let stale_ms =
        i64::try_from(topics.settings.consumer_stale_after().as_millis()).unwrap_or(i64::MAX);
    let mut conn = topics.pool.get().await?;
    let pinged = conn
        .transaction::<_, Error, _>(async |conn| {
            let pinged: Vec<Pinged> = diesel::sql_query(
                "UPDATE topics SET last_ping_at = now() \
                 WHERE id IN (SELECT topic_id FROM topic_consumers \
                              WHERE seen_at > now() - $2 * interval '1 millisecond') \
                   AND (last_ping_at IS NULL \
                        OR last_ping_at < now() - $1 * 9 / 10 * interval '1 millisecond') \
                 RETURNING id",
            )
            .bind::<BigInt, _>(interval_ms)
            .bind::<BigInt, _>(stale_ms)
            .load(conn)
            .await?;
            let payloads: Vec<String> = pinged
                .iter()
                .map(|p| TopicSignal::Ping(p.id).encode())
                .collect();
            store::notify(conn, &payloads).await?;
            Ok(pinged)
        })
        .await?;
    Ok(pinged.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_800_000_000 + seconds, 0).expect("a time")
    }

    #[test]
    fn availability_follows_the_last_ping_and_pong() {
        let s = TopicSettings::default();
        // Never pinged, or pinged too long ago.
        assert_eq!(
            availability(None, Some(at(0)), at(0), &s),
            Availability::Unknown
        );
        assert_eq!(
            availability(Some(at(0)), Some(at(1)), at(121), &s),
            Availability::Unknown
        );
        // Pinged, no pong: offline.
        assert_eq!(
            availability(Some(at(0)), None, at(5), &s),
            Availability::Offline
        );
        // A pong after the ping, or within the grace before it: online.
        assert_eq!(
            availability(Some(at(0)), Some(at(1)), at(5), &s),
            Availability::Online
        );
        assert_eq!(
            availability(Some(at(0)), Some(at(-10)), at(5), &s),
            Availability::Online
        );
        // A pong from before the grace: offline.
        assert_eq!(
            availability(Some(at(0)), Some(at(-11)), at(5), &s),
            Availability::Offline
        );
        // Still within two minutes of the ping.
        assert_eq!(
            availability(Some(at(0)), Some(at(1)), at(120), &s),
            Availability::Online
        );
    }
}
