//! The store policies made precise, retention, the dedupe window, collecting topics past
//! their time, stale consumers, and the background pass that does it all.
//!
//! **After an accept** ([`after_removal`]): `cache` deletes the message (and with it,
//! through the foreign key, every other subscription's row of it); `cacheall` deletes it
//! once no `subscription_messages` row of it is left, which also counts rows gone to the
//! dead letters; `store` and `disabled` delete nothing. Two subscriptions accepting the
//! last two rows of a `cacheall` message at once must not both see the other's row, so
//! the message rows are locked (`FOR UPDATE`, in seq order) before any row of them is
//! removed ([`lock_for_removal`]) and the check runs after, in its own statement.
//!
//! **The pass** (run by `background`), on every replica every `gc_interval`, each step in batches
//! that replicas may run at once (`SKIP LOCKED`, or statements whose second run finds
//! nothing):
//! 1. retention: messages older than their topic's max age, and beyond its max messages
//!    (the oldest first), are deleted; what subscriptions still owed of them goes too;
//! 2. deliveries whose last lease ran out on their last allowed delivery go to the dead
//!    letters (a consumer claiming them would do the same);
//! 3. `cacheall` messages no row refers to any more are deleted (a backstop);
//! 4. message ids older than the dedupe window (or the topic's max age, whichever is
//!    longer) are forgotten, unless their message is still stored;
//! 5. topics whose `garbage_collect_at` has passed (response topics) are dropped with
//!    everything they hold;
//! 6. consumer rows not seen for three heartbeats are deleted.
//!

use std::collections::BTreeMap;
use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::topics::store::TopicRow;
use crate::topics::{DeadLetterReason, StorePolicy, Topics};

/// How many rows one statement of the pass deletes at most.
const BATCH: i64 = 1000;

#[derive(QueryableByName)]
struct Seq {
    #[diesel(sql_type = BigInt)]
    #[expect(
        dead_code,
        reason = "only the lock is wanted, but a row must be read into something"
    )]
    seq: i64,
}

/// Deletes messages `seqs` of `topic_id` (their rows in subscriptions go with them).
pub(crate) async fn delete_messages(
    conn: &mut AsyncPgConnection,
    topic_id: Uuid,
    seqs: &[i64],
) -> Result<usize> {
    if seqs.is_empty() {
        return Ok(0);
    }
    Ok(diesel::sql_query(
        "DELETE FROM topic_messages WHERE topic_id = $1 AND seq = ANY($2::int8[])",
    )
    .bind::<diesel::sql_types::Uuid, _>(topic_id)
    .bind::<Array<BigInt>, _>(seqs)
    .execute(conn)
    .await?)
}

/// Locks the messages `seqs` of `topic` before rows of them are removed, when its policy
/// deletes messages on acks (see the module docs); in seq order, so removers never wait
/// on each other in a circle.
pub(crate) async fn lock_for_removal(
    conn: &mut AsyncPgConnection,
    topic: &TopicRow,
    seqs: &[i64],
) -> Result<()> {
    if seqs.is_empty() || !matches!(topic.policy()?, StorePolicy::Cache | StorePolicy::CacheAll) {
        return Ok(());
    }
    let _: Vec<Seq> = diesel::sql_query(
        "SELECT seq FROM topic_messages WHERE topic_id = $1 AND seq = ANY($2::int8[]) \
         ORDER BY seq FOR UPDATE",
    )
    .bind::<diesel::sql_types::Uuid, _>(topic.id)
    .bind::<Array<BigInt>, _>(seqs)
    .load(conn)
    .await?;
    Ok(())
}

/// Applies `topic`'s store policy after rows were removed from a subscription: those of
/// `accepted` by an accept, those of `removed` otherwise (dead letters, a seek). The
/// caller took [`lock_for_removal`] on all of them first.
pub(crate) async fn after_removal(
    conn: &mut AsyncPgConnection,
    topic: &TopicRow,
    accepted: &[i64],
    removed: &[i64],
) -> Result<()> {
    match topic.policy()? {
        StorePolicy::Cache => {
            delete_messages(conn, topic.id, accepted).await?;
        }
        StorePolicy::CacheAll => {
            let all: Vec<i64> = accepted.iter().chain(removed).copied().collect();
            delete_unowed(conn, topic.id, Some(&all)).await?;
        }
        StorePolicy::Store | StorePolicy::Disabled => {}
    }
    Ok(())
}

/// Deletes messages of `topic_id` (among `seqs`, or any) that no subscription owes.
pub(crate) async fn delete_unowed(
    conn: &mut AsyncPgConnection,
    topic_id: Uuid,
    seqs: Option<&[i64]>,
) -> Result<usize> {
    let sql = "DELETE FROM topic_messages m WHERE m.topic_id = $1 \
               AND ($2::int8[] IS NULL OR m.seq = ANY($2::int8[])) \
               AND NOT EXISTS (SELECT 1 FROM subscription_messages sm \
                               WHERE sm.topic_id = m.topic_id AND sm.seq = m.seq)";
    Ok(diesel::sql_query(sql)
        .bind::<diesel::sql_types::Uuid, _>(topic_id)
        .bind::<diesel::sql_types::Nullable<Array<BigInt>>, _>(seqs)
        .execute(conn)
        .await?)
}

/// What one pass did, for tests and the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Messages deleted by max age or max messages.
    pub expired: usize,
    /// `cacheall` messages nobody owed any more.
    pub unowed: usize,
    /// Message ids forgotten.
    pub ids_pruned: usize,
    /// Topics collected.
    pub topics_collected: usize,
    /// Consumer rows found stale.
    pub stale_consumers: usize,
}

impl Topics {
    /// One pass of the collector (see the module docs), but for the dead letters of
    /// run-out leases, which `background` sends first.
    pub async fn collect_once(&self) -> Result<PassReport> {
        let mut conn = self.pool.get().await?;
        let conn = &mut *conn;
        let mut report = PassReport::default();
        report.expired += expire_by_age(conn).await?;
        report.expired += expire_by_count(conn).await?;
        report.unowed += collect_unowed(conn).await?;
        let window_ms = i64::try_from(self.settings.dedupe_window.as_millis()).unwrap_or(i64::MAX);
        report.ids_pruned += diesel::sql_query(
            "DELETE FROM topic_message_ids WHERE ctid IN ( \
               SELECT i.ctid FROM topic_message_ids i JOIN topics t ON t.id = i.topic_id \
               WHERE i.published_at < now() - greatest($1, coalesce(t.max_age_ms, 0)) * interval '1 millisecond' \
                 AND NOT EXISTS (SELECT 1 FROM topic_messages m WHERE m.topic_id = i.topic_id AND m.seq = i.seq) \
               LIMIT $2)",
        )
        .bind::<BigInt, _>(window_ms)
        .bind::<BigInt, _>(BATCH)
        .execute(conn)
        .await?;
        report.topics_collected += collect_topics(conn).await?;
        let stale_ms =
            i64::try_from(self.settings.consumer_stale_after().as_millis()).unwrap_or(i64::MAX);
        report.stale_consumers += diesel::sql_query(
            "DELETE FROM topic_consumers WHERE seen_at < now() - $1 * interval '1 millisecond'",
        )
        .bind::<BigInt, _>(stale_ms)
        .execute(conn)
        .await?;
        Ok(report)
    }
}

/// Deletes messages older than their topic's max age.
async fn expire_by_age(conn: &mut AsyncPgConnection) -> Result<usize> {
    Ok(diesel::sql_query(
        "DELETE FROM topic_messages WHERE (topic_id, seq) IN ( \
           SELECT m.topic_id, m.seq FROM topics t JOIN topic_messages m ON m.topic_id = t.id \
           WHERE t.max_age_ms IS NOT NULL \
             AND m.published_at < now() - t.max_age_ms * interval '1 millisecond' \
           LIMIT $1 FOR UPDATE OF m SKIP LOCKED)",
    )
    .bind::<BigInt, _>(BATCH)
    .execute(conn)
    .await?)
}

#[derive(QueryableByName)]
struct Limited {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = BigInt)]
    max_messages: i64,
}

/// Deletes the oldest messages of topics holding more than their max messages.
async fn expire_by_count(conn: &mut AsyncPgConnection) -> Result<usize> {
    let limited: Vec<Limited> =
        diesel::sql_query("SELECT id, max_messages FROM topics WHERE max_messages IS NOT NULL")
            .load(conn)
            .await?;
    let mut deleted = 0;
    for topic in limited {
        deleted += diesel::sql_query(
            "DELETE FROM topic_messages WHERE (topic_id, seq) IN ( \
               SELECT topic_id, seq FROM topic_messages WHERE topic_id = $1 \
                 AND seq < (SELECT seq FROM topic_messages WHERE topic_id = $1 \
                            ORDER BY seq DESC OFFSET $2 - 1 LIMIT 1) \
               ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED)",
        )
        .bind::<diesel::sql_types::Uuid, _>(topic.id)
        .bind::<BigInt, _>(topic.max_messages)
        .bind::<BigInt, _>(BATCH)
        .execute(conn)
        .await?;
    }
    Ok(deleted)
}

/// Deletes `cacheall` messages no subscription owes.
async fn collect_unowed(conn: &mut AsyncPgConnection) -> Result<usize> {
    Ok(diesel::sql_query(
        "DELETE FROM topic_messages WHERE (topic_id, seq) IN ( \
           SELECT m.topic_id, m.seq FROM topics t JOIN topic_messages m ON m.topic_id = t.id \
           WHERE t.store_policy = 'cacheall' \
             AND NOT EXISTS (SELECT 1 FROM subscription_messages sm \
                             WHERE sm.topic_id = m.topic_id AND sm.seq = m.seq) \
           LIMIT $1 FOR UPDATE OF m SKIP LOCKED)",
    )
    .bind::<BigInt, _>(BATCH)
    .execute(conn)
    .await?)
}

#[derive(QueryableByName)]
struct Collected {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
}

/// Drops topics past their `garbage_collect_at`, ending their consumers everywhere.
async fn collect_topics(conn: &mut AsyncPgConnection) -> Result<usize> {
    conn.transaction::<_, Error, _>(async |conn| {
        let gone: Vec<Collected> = diesel::sql_query(
            "DELETE FROM topics WHERE id IN ( \
               SELECT id FROM topics WHERE garbage_collect_at < now() \
               LIMIT 100 FOR UPDATE SKIP LOCKED) RETURNING id",
        )
        .load(conn)
        .await?;
        let closed: Vec<String> = gone
            .iter()
            .map(|t| crate::live::consumers::TopicSignal::Closed(t.id).encode())
            .collect();
        crate::topics::store::notify(conn, &closed).await?;
        if !gone.is_empty() {
            tracing::info!(
                topics = gone.len(),
                "collected topics past their time to live"
            );
        }
        Ok(gone.len())
    })
    .await
}

/// Groups `(subscription, seq)` pairs by subscription.
pub(crate) fn by_subscription(pairs: Vec<(Uuid, i64)>) -> BTreeMap<Uuid, Vec<i64>> {
    let mut grouped: BTreeMap<Uuid, Vec<i64>> = BTreeMap::new();
    for (subscription, seq) in pairs {
        grouped.entry(subscription).or_default().push(seq);
    }
    grouped
}

/// How long to wait, per a subscription's backoff, before delivery `count + 1` after
/// `count` deliveries; at least `asked`.
pub fn backoff_after(backoff_ms: &[i32], count: i32, asked: Duration) -> Duration {
    let from_list = match usize::try_from(count).ok().filter(|&c| c > 0) {
        Some(c) => backoff_ms
            .get(c - 1)
            .or(backoff_ms.last())
            .map_or(Duration::ZERO, |ms| {
                Duration::from_millis(u64::try_from(*ms).unwrap_or(0))
            }),
        None => Duration::ZERO,
    };
    from_list.max(asked)
}

/// The reason to give when a delivery's last allowed attempt ran out.
pub(crate) const RUN_OUT: DeadLetterReason = DeadLetterReason::MaxDeliveries;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_takes_the_attempts_entry_repeats_the_last_and_never_goes_below_the_ask() {
        let list = [1000, 5000, 30000];
        let s = Duration::from_secs;
        assert_eq!(backoff_after(&list, 1, Duration::ZERO), s(1));
        assert_eq!(backoff_after(&list, 2, Duration::ZERO), s(5));
        assert_eq!(backoff_after(&list, 3, Duration::ZERO), s(30));
        assert_eq!(backoff_after(&list, 9, Duration::ZERO), s(30));
        assert_eq!(backoff_after(&list, 1, s(10)), s(10));
        assert_eq!(backoff_after(&list, 3, s(10)), s(30));
        assert_eq!(backoff_after(&[], 4, Duration::ZERO), Duration::ZERO);
    }
}
