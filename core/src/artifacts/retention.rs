//! Collection retention: which items stay active, and how long removed ones are kept.
//!
//! The policy of a collection (`collections.keep_last`, `keep_seconds`):
//! - keep the newest `keep_last` unpinned active items (pinned items do not count and are
//!   always kept), and/or
//! - keep unpinned items younger than `keep_seconds`;
//!
//! with both set an item goes when either says so. Items the policy no longer keeps are
//! removed (`removed_why = 'retention'`) and become history. A removed item keeps its
//! artifact alive for the collection's `history_seconds` after its removal (that is the
//! rule in [`super::live`]); after it the item lets go of its artifact (`artifact_id`
//! NULL: the artifact may then expire and be collected) and stays as metadata only for
//! `metadata_seconds` more; then the item row goes.
//!
//! [`apply`] runs on every add and policy change, in the caller's transaction (which has
//! locked the collection row). [`sweep`] runs in the collector's pass: the age rule, the
//! end of history periods and the end of metadata periods, in bounded batches with
//! `SKIP LOCKED`, so several replicas may sweep at once.
//!
//! This module changes `collection_items` only; it never deletes artifacts (the collector
//! does) and never decides whether one is alive (the rule in `live` does).

use diesel::sql_types::{BigInt, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::error::Result;

/// Removes the active items of collection `id` its policy no longer keeps; returns how
/// many. Call it with the collection row locked.
pub async fn apply(conn: &mut AsyncPgConnection, id: Uuid) -> Result<usize> {
    let removed = diesel::sql_query(
        "UPDATE collection_items SET removed_at = now(), removed_why = 'retention' \
         WHERE id IN ( \
           SELECT ranked.id FROM ( \
             SELECT ci.id, ci.added_at, \
                    row_number() OVER (ORDER BY ci.added_at DESC, ci.id DESC) AS rank \
             FROM collection_items ci \
             WHERE ci.collection_id = $1 AND ci.removed_at IS NULL AND NOT ci.pinned \
           ) ranked, collections c \
           WHERE c.id = $1 \
             AND ((c.keep_last IS NOT NULL AND ranked.rank > c.keep_last) \
               OR (c.keep_seconds IS NOT NULL \
                   AND ranked.added_at + c.keep_seconds * interval '1 second' <= now())))",
    )
    .bind::<SqlUuid, _>(id)
    .execute(conn)
    .await?;
    Ok(removed)
}

/// Removed items of any collection let go of artifact `id` before their history period
/// ends: an explicit delete of the artifact is stronger than the history. Active items
/// are left alone (they refuse the delete). Run it in the deleting transaction.
pub async fn release(conn: &mut AsyncPgConnection, id: Uuid) -> Result<usize> {
    let released = diesel::sql_query(
        "UPDATE collection_items SET artifact_id = NULL \
         WHERE artifact_id = $1 AND removed_at IS NOT NULL",
    )
    .bind::<SqlUuid, _>(id)
    .execute(conn)
    .await?;
    Ok(released)
}

/// What one [`sweep`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Items removed because they grew older than their collection keeps them.
    pub expired: usize,
    /// Removed items whose history period ended (they let go of their artifacts).
    pub released: usize,
    /// Removed items whose metadata period ended (deleted).
    pub forgotten: usize,
}

/// The time-driven part of retention for every collection, `batch` rows per statement,
/// until nothing is left to do.
pub async fn sweep(conn: &mut AsyncPgConnection, batch: i64) -> Result<Swept> {
    Ok(Swept {
        expired: repeat(conn, batch, EXPIRE_BY_AGE).await?,
        released: repeat(conn, batch, END_HISTORY).await?,
        forgotten: repeat(conn, batch, END_METADATA).await?,
    })
}

/// Runs a statement with a `$1` batch size until it touches fewer rows than that.
async fn repeat(conn: &mut AsyncPgConnection, batch: i64, statement: &str) -> Result<usize> {
    let mut total = 0;
    loop {
        let n = diesel::sql_query(statement)
            .bind::<BigInt, _>(batch)
            .execute(conn)
            .await?;
        total += n;
        if i64::try_from(n).unwrap_or(i64::MAX) < batch {
            return Ok(total);
        }
    }
}

/// Active unpinned items older than their collection's `keep_seconds`.
const EXPIRE_BY_AGE: &str = "UPDATE collection_items SET removed_at = now(), removed_why = 'retention' \
     WHERE id IN ( \
       SELECT ci.id FROM collection_items ci JOIN collections c ON c.id = ci.collection_id \
       WHERE ci.removed_at IS NULL AND NOT ci.pinned AND c.keep_seconds IS NOT NULL \
         AND ci.added_at + c.keep_seconds * interval '1 second' <= now() \
       LIMIT $1 FOR UPDATE OF ci SKIP LOCKED)";

/// Removed items past their history period let go of their artifacts.
const END_HISTORY: &str = "UPDATE collection_items SET artifact_id = NULL \
     WHERE id IN ( \
       SELECT ci.id FROM collection_items ci JOIN collections c ON c.id = ci.collection_id \
       WHERE ci.removed_at IS NOT NULL AND ci.artifact_id IS NOT NULL \
         AND ci.removed_at + c.history_seconds * interval '1 second' <= now() \
       LIMIT $1 FOR UPDATE OF ci SKIP LOCKED)";

/// Removed items past their metadata period go.
const END_METADATA: &str = "DELETE FROM collection_items \
     WHERE id IN ( \
       SELECT ci.id FROM collection_items ci JOIN collections c ON c.id = ci.collection_id \
       WHERE ci.removed_at IS NOT NULL \
         AND ci.removed_at + (c.history_seconds + c.metadata_seconds) * interval '1 second' <= now() \
       LIMIT $1 FOR UPDATE OF ci SKIP LOCKED)";
