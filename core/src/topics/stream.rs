//! A consumer's `Subscribe` session, independent of the wire.
//!
//! (The session itself comes with the API; this holds what the background pass needs.)

use std::collections::HashSet;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use crate::error::Result;
use crate::store::schema::topic_consumers;
use crate::topics::Topics;

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
    .set(topic_consumers::seen_at.eq(diesel::dsl::now))
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
