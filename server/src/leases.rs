//! Worker leases, kept in bulk.
//!
//! A worker's lease is `workers.last_heartbeat_at`: the sweep of any replica ends the
//! attempts of a worker whose lease ran out. Writing it on every heartbeat of every stream
//! would cost one commit per worker per interval, so each stream only marks itself heard
//! ([`crate::hub::Session::heard`]) and this task, once per heartbeat interval, renews the
//! leases of every stream heard since the last round in one statement.
//!
//! The same round re-checks, in one query, that the tokens of this replica's streams are
//! still enabled and unexpired: a stream whose token was disabled, deleted or expired is
//! closed. Disabling and deleting also close streams at once through the hub; this round
//! is the backstop for expiry and for a lost `NOTIFY`.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::db::DbPool;
use crate::error::ApiResult;
use crate::hub::Hub;
use crate::schema::{tokens, workers};

/// Renews leases and re-checks tokens every `interval` until `shutdown`.
pub async fn run(pool: DbPool, hub: Arc<Hub>, interval: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = round(&pool, &hub).await {
            let status: tonic::Status = e.into();
            tracing::warn!(error = %status.message(), "lease renewal failed; retrying next interval");
        }
    }
}

/// One round: renew what was heard, close what lost its token.
async fn round(pool: &DbPool, hub: &Hub) -> ApiResult<()> {
    let sessions = hub.all_sessions();
    if sessions.is_empty() {
        return Ok(());
    }
    let heard: Vec<Uuid> = sessions
        .iter()
        .filter(|s| s.heard.swap(false, Ordering::Relaxed))
        .map(|s| s.worker_id)
        .collect();
    let token_ids: Vec<Uuid> = sessions
        .iter()
        .map(|s| s.token_id)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut conn = pool.get().await?;
    if !heard.is_empty() {
        diesel::update(workers::table.filter(workers::id.eq_any(&heard)))
            .set((
                workers::last_heartbeat_at.eq(chrono::Utc::now()),
                // A stream the sweep of another replica took for lost is back.
                workers::connected_at.eq(diesel::dsl::sql::<
                    diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
                >("coalesce(connected_at, now())")),
            ))
            .execute(&mut conn)
            .await?;
    }
    let usable: HashSet<Uuid> = tokens::table
        .filter(tokens::id.eq_any(&token_ids))
        .filter(tokens::enabled.eq(true))
        .filter(
            tokens::expires_at
                .is_null()
                .or(tokens::expires_at.gt(chrono::Utc::now())),
        )
        .select(tokens::id)
        .load::<Uuid>(&mut conn)
        .await?
        .into_iter()
        .collect();
    for session in sessions {
        if !usable.contains(&session.token_id) {
            tracing::info!(worker_id = %session.worker_id, "closing a worker stream: its token was disabled, deleted or expired");
            hub.close_token_local(session.token_id);
        }
    }
    Ok(())
}
