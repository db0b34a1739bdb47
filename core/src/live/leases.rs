//! Worker leases, kept in bulk.
//!
//! A worker's lease is `workers.last_heartbeat_at`: the sweep of any replica ends the
//! attempts of a worker whose lease ran out. Writing it on every heartbeat of every stream
//! would cost one commit per worker per interval, so each stream only notes when it last
//! heard from its worker ([`crate::live::hub::Session::last_heard`]) and this task, once per
//! heartbeat interval, renews the leases of every stream heard since its last round in
//! one statement.
//!
//! The same round sends the server's heartbeat to every stream and ends the streams whose
//! worker has been silent for longer than the lease TTL: one timer for the whole replica
//! instead of one per stream, which is most of what an idle stream costs.
//!
//! A round that cannot write (the database is away) renews nothing; the next round that
//! can renews every worker heard since the last round that did, so a worker whose stream
//! stayed open through an outage keeps its lease.
//!
//! The same round re-checks, in one query, that the tokens of this replica's streams are
//! still enabled and unexpired: a stream whose token was disabled, deleted or expired is
//! closed. Disabling and deleting also close streams at once through the hub; this round
//! is the backstop for expiry and for a lost `NOTIFY`.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::Result;
use crate::live::hub::{Hub, Session, ToWorker, now_ms};
use crate::store::db::DbPool;
use crate::store::schema::{tokens, workers};

/// Every `interval` until `shutdown`: heartbeats to every stream of this replica, ends the
/// streams silent for longer than `lease_ttl`, renews the leases of the rest and
/// re-checks their tokens.
pub async fn run(
    pool: DbPool,
    hub: Arc<Hub>,
    interval: Duration,
    lease_ttl: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Start of the last round whose renewal was written. A round that fails (the database
    // is away) renews nothing, so the next one renews everyone heard since this.
    let mut last_renewed = now_ms();
    let mut failing = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let sessions = hub.all_sessions();
        let started = now_ms();
        let heard = beat(&sessions, last_renewed, lease_ttl);
        match renew(&pool, &hub, &sessions, &heard).await {
            Ok(()) => {
                if failing {
                    tracing::info!(renewed = heard.len(), "leases renewed again");
                }
                failing = false;
                last_renewed = started;
            }
            Err(e) => {
                // Once per outage: the database watcher says the rest.
                if !failing {
                    tracing::warn!(error = %e, "lease renewal failed; retrying every interval, for every worker heard meanwhile");
                }
                failing = true;
            }
        }
    }
}

/// Sends every stream a heartbeat, ends those silent for longer than `lease_ttl`, and
/// returns the workers heard from since `since` (a [`now_ms`] reading).
fn beat(sessions: &[Session], since: u64, lease_ttl: Duration) -> Vec<Uuid> {
    let now = now_ms();
    let ttl = u64::try_from(lease_ttl.as_millis()).unwrap_or(u64::MAX);
    let mut heard = Vec::new();
    for session in sessions {
        let last = AtomicU64::load(&session.last_heard, Ordering::Relaxed);
        if now.saturating_sub(last) > ttl {
            session.lapsed.cancel();
            continue;
        }
        if last >= since {
            heard.push(session.worker_id);
        }
        // A worker that does not read its stream gets its stream closed once its queue is
        // full (see `hub`); a closed stream is ending anyway.
        session.send(ToWorker::Heartbeat);
    }
    heard
}

/// Renews the leases of the `heard` workers and closes the streams whose token is no
/// longer usable.
async fn renew(pool: &DbPool, hub: &Hub, sessions: &[Session], heard: &[Uuid]) -> Result<()> {
    if sessions.is_empty() {
        return Ok(());
    }
    let token_ids: Vec<Uuid> = sessions
        .iter()
        .map(|s| s.token_id)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut conn = pool.get().await?;
    if !heard.is_empty() {
        diesel::update(workers::table.filter(workers::id.eq_any(heard)))
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
