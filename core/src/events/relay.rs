//! The relay: outbox rows onto the system topics and to the notification channels, in
//! `seq` order, each exactly once.
//!
//! Every replica runs [`run`]. A pass takes batches in turn, each in one transaction:
//! 1. `pg_try_advisory_xact_lock`: only one replica relays at a time; the others find the
//!    lock held and wait for their next pass (the holder drains the outbox meanwhile).
//! 2. the oldest rows not relayed, in `seq` order, up to the batch size (locked);
//! 3. published on their topics in their workspaces ([`topics::publish_system_many`], a
//!    run of events of one topic at a time, in `seq` order), the event id as the message
//!    id, content `{id, type, time, object_id, workspace, data}`;
//! 4. all of them handed to [`notifications::fanout_in`];
//! 5. marked relayed.
//!
//! The transaction commits all of that or none of it: a relay that dies (or a replica
//! killed) mid-batch leaves the rows as they were, and the next pass of any replica
//! relays them again from scratch — a publish that found its message id already taken
//! (it cannot happen unless the topics' rows were changed by hand) is skipped with its
//! fan-out, so nothing is published or notified twice.
//!
//! A batch that fails for a reason other than the database being away is tried again
//! one event at a time, each in a savepoint, committing the events before the one that
//! fails. An event that fails where the one after it would pass (tried in a savepoint
//! rolled back at once, so order is kept) is its own trouble; once it has failed so
//! [`POISON_AFTER`] passes in a row it is marked with its error and passed over, so one
//! bad event never holds back every event after it. When the next event fails too, the
//! trouble is the relay's (a bug, a broken dependency): nothing is passed over, and the
//! relay tries again each pass until it is fixed.
//!
//! Waking: every `interval` (default 200 ms), and sooner after the hub says something
//! changed. The changing transactions do not `NOTIFY`: a notifying commit takes a
//! database-wide lock in PostgreSQL, which would serialize every state change of Berth.
//!
//! Relayed rows are kept for `retention` (default 1 h; operators and tests read recent
//! events there), then deleted by any replica's pass, a bounded number at a time.
//!
//! What it must not touch: the rows events report on; topics' and notifications' rows
//! other than through their contracts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Interval};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::events::SystemEvent;
use crate::live::hub::Hub;
use crate::notifications;
use crate::store::db::DbPool;
use crate::store::schema::{system_events, workspaces};
use crate::topics;

/// The advisory lock only the relaying replica holds (`berth` + `relay` in ASCII).
pub const RELAY_LOCK: i64 = 0x6265_7274_6872_6c79;

/// Passes in a row an event may fail to publish before it is passed over.
pub const POISON_AFTER: u32 = 5;

/// The shortest gap between a change announced by the hub and the next pass, so a burst
/// of changes makes one pass.
const MIN_GAP: Duration = Duration::from_millis(20);

/// How often relayed rows older than the retention are deleted, and how many at a time.
const PRUNE_EVERY: Duration = Duration::from_secs(10);
const PRUNE_BATCH: i64 = 10_000;

/// How the relay runs (`[events]` in the server's configuration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelaySettings {
    /// The longest time between two passes.
    pub interval: Duration,
    /// Events per transaction.
    pub batch: u32,
    /// How long relayed events stay in the outbox.
    pub retention: Duration,
}

impl Default for RelaySettings {
    fn default() -> Self {
        RelaySettings {
            interval: Duration::from_millis(200),
            batch: 500,
            retention: Duration::from_secs(3600),
        }
    }
}

/// See the module docs.
#[derive(Clone)]
pub struct Relay {
    pool: DbPool,
    hub: Arc<Hub>,
    settings: RelaySettings,
}

/// An outbox row as the relay reads it.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = system_events)]
struct OutboxRow {
    seq: i64,
    id: Uuid,
    workspace_id: Uuid,
    topic: String,
    event_type: String,
    object_id: Uuid,
    occurred_at: DateTime<Utc>,
    data: serde_json::Value,
}

impl From<OutboxRow> for SystemEvent {
    fn from(row: OutboxRow) -> Self {
        SystemEvent {
            id: row.id,
            seq: row.seq,
            workspace_id: row.workspace_id,
            topic: row.topic,
            event_type: row.event_type,
            object_id: row.object_id,
            occurred_at: row.occurred_at,
            data: row.data,
        }
    }
}

/// What one batch came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Batch {
    /// Another replica holds the relay lock.
    Busy,
    /// This many rows were taken (relayed, or passed over as poisoned).
    Took(usize),
    /// Relayed this many rows, then stopped at one that failed (it is tried again next
    /// pass).
    Stopped(usize),
}

impl Relay {
    /// A relay over `pool`, woken early by `hub`'s changes.
    pub fn new(pool: DbPool, hub: Arc<Hub>, settings: RelaySettings) -> Self {
        Relay {
            pool,
            hub,
            settings,
        }
    }

    /// Relays batches until the outbox holds fewer than a batch, another replica holds
    /// the lock, or an event fails. Returns how many events it relayed (or passed over).
    pub async fn pass(&self) -> Result<usize> {
        let mut failures = HashMap::new();
        self.pass_counting(&mut failures).await
    }

    /// Like [`Relay::pass`], counting in `failures` the passes each failing event failed
    /// (by seq), so a poisoned one is passed over after [`POISON_AFTER`].
    async fn pass_counting(&self, failures: &mut HashMap<i64, u32>) -> Result<usize> {
        let limit = i64::from(self.settings.batch.max(1));
        let mut conn = self.pool.get().await?;
        let mut relayed = 0;
        loop {
            let outcome = match batch(&mut conn, limit, None).await {
                Ok(outcome) => outcome,
                Err(e @ Error::Database(_)) => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "system events: a batch failed; relaying it one event at a time");
                    batch(&mut conn, limit, Some(failures)).await?
                }
            };
            match outcome {
                Batch::Busy => return Ok(relayed),
                Batch::Stopped(n) => return Ok(relayed + n),
                Batch::Took(n) => {
                    relayed += n;
                    if i64::try_from(n).unwrap_or(i64::MAX) < limit {
                        return Ok(relayed);
                    }
                }
            }
        }
    }

    /// Deletes relayed events older than the retention, at most [`PRUNE_BATCH`]; returns
    /// how many.
    pub async fn prune(&self) -> Result<usize> {
        let mut conn = self.pool.get().await?;
        let retention = diesel::data_types::PgInterval::from_microseconds(
            i64::try_from(self.settings.retention.as_micros()).unwrap_or(i64::MAX),
        );
        Ok(diesel::sql_query(
            "DELETE FROM system_events WHERE seq IN ( \
               SELECT seq FROM system_events \
               WHERE relayed_at IS NOT NULL AND relayed_at < now() - $1 \
               ORDER BY relayed_at LIMIT $2)",
        )
        .bind::<Interval, _>(retention)
        .bind::<BigInt, _>(PRUNE_BATCH)
        .execute(&mut conn)
        .await?)
    }
}

/// Runs the relay until `stop` is cancelled. A failed pass is logged and tried again.
pub async fn run(relay: Relay, stop: CancellationToken) {
    let mut changes = relay.hub.subscribe();
    let mut failures: HashMap<i64, u32> = HashMap::new();
    let mut pruned_at: Option<Instant> = None;
    loop {
        match relay.pass_counting(&mut failures).await {
            Ok(n) if n > 0 => tracing::debug!(events = n, "system events relayed"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "system events: relay pass failed; trying again"),
        }
        if pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            match relay.prune().await {
                Ok(n) if n > 0 => tracing::debug!(events = n, "relayed system events pruned"),
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "system events: pruning failed; trying again later")
                }
            }
            pruned_at = Some(Instant::now());
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(relay.settings.interval) => {}
            changed = changes.changed() => {
                if changed.is_err() {
                    // The hub is gone: the server is shutting down.
                    stop.cancelled().await;
                    return;
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(MIN_GAP) => {}
                }
            }
        }
    }
}

/// One batch in one transaction (see the module docs). With `careful` set, each event is
/// published in a savepoint and a failing one stops the batch (its count in `careful`
/// raised; at [`POISON_AFTER`] it is marked with its error and passed over).
async fn batch(
    conn: &mut AsyncPgConnection,
    limit: i64,
    careful: Option<&mut HashMap<i64, u32>>,
) -> Result<Batch> {
    conn.transaction::<_, Error, _>(async |conn| {
        let locked: bool = diesel::select(diesel::dsl::sql::<Bool>(&format!(
            "pg_try_advisory_xact_lock({RELAY_LOCK})"
        )))
        .get_result(conn)
        .await?;
        if !locked {
            return Ok(Batch::Busy);
        }
        let rows: Vec<OutboxRow> = system_events::table
            .filter(system_events::relayed_at.is_null())
            .order(system_events::seq)
            .limit(limit)
            .select(OutboxRow::as_select())
            .for_update()
            .load(conn)
            .await?;
        if rows.is_empty() {
            return Ok(Batch::Took(0));
        }
        let names = workspace_names(conn, &rows).await?;
        let events: Vec<SystemEvent> = rows.into_iter().map(SystemEvent::from).collect();
        match careful {
            None => {
                let handed = publish_all(conn, &events, &names).await?;
                notifications::fanout_in(conn, &handed).await?;
                let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
                mark_relayed(conn, &seqs, None).await?;
                Ok(Batch::Took(events.len()))
            }
            Some(failures) => {
                let mut taken = 0;
                for (i, event) in events.iter().enumerate() {
                    let one = conn
                        .transaction::<_, Error, _>(async |conn| {
                            hand_on(conn, event, &names).await?;
                            mark_relayed(conn, &[event.seq], None).await
                        })
                        .await;
                    match one {
                        Ok(()) => {
                            failures.remove(&event.seq);
                            taken += 1;
                        }
                        Err(e @ Error::Database(_)) => return Err(e),
                        Err(e) => {
                            // Only an event that fails where the one after it would not
                            // is this event's own trouble; when the next fails too (or
                            // there is none to tell by), it is the relay's, and nothing
                            // is passed over for it.
                            let next_would_pass = match events.get(i + 1) {
                                Some(next) => probe(conn, next, &names).await?,
                                None => false,
                            };
                            if !next_would_pass {
                                tracing::warn!(seq = event.seq, event = %event.id, error = %e,
                                    "system events: relaying is failing; trying again next pass");
                                return Ok(Batch::Stopped(taken));
                            }
                            let count = failures.entry(event.seq).or_insert(0);
                            *count += 1;
                            if *count < POISON_AFTER {
                                tracing::warn!(seq = event.seq, event = %event.id, r#type = %event.event_type,
                                    failures = *count, error = %e,
                                    "system events: an event could not be relayed; trying again next pass");
                                return Ok(Batch::Stopped(taken));
                            }
                            tracing::error!(seq = event.seq, event = %event.id, r#type = %event.event_type,
                                error = %e,
                                "system events: an event failed to relay {POISON_AFTER} passes in a row; passed over (its error is kept on its row)");
                            failures.remove(&event.seq);
                            mark_relayed(conn, &[event.seq], Some(&e.to_string())).await?;
                            taken += 1;
                        }
                    }
                }
                Ok(Batch::Took(taken))
            }
        }
    })
    .await
}

/// Publishes `event` and hands it to the notifications (only when it was new on its
/// topic).
async fn hand_on(
    conn: &mut AsyncPgConnection,
    event: &SystemEvent,
    names: &HashMap<Uuid, String>,
) -> Result<()> {
    if publish(conn, event, names).await? {
        notifications::fanout_in(conn, std::slice::from_ref(event)).await?;
    }
    Ok(())
}

/// Whether `event` could be handed on now: tried in a savepoint that is rolled back
/// whatever happens. The outer error is the database's.
async fn probe(
    conn: &mut AsyncPgConnection,
    event: &SystemEvent,
    names: &HashMap<Uuid, String>,
) -> Result<bool> {
    const PROBE: &str = "system events: probe rolled back";
    let tried = conn
        .transaction::<(), Error, _>(async |conn| {
            hand_on(conn, event, names).await?;
            Err(Error::Aborted(PROBE.to_owned()))
        })
        .await;
    match tried {
        Err(Error::Aborted(m)) if m == PROBE => Ok(true),
        Err(e @ Error::Database(_)) => Err(e),
        Ok(()) | Err(_) => Ok(false),
    }
}

/// The names of the workspaces the rows belong to.
async fn workspace_names(
    conn: &mut AsyncPgConnection,
    rows: &[OutboxRow],
) -> Result<HashMap<Uuid, String>> {
    let mut ids: Vec<Uuid> = rows.iter().map(|r| r.workspace_id).collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(workspaces::table
        .filter(workspaces::id.eq_any(&ids))
        .select((workspaces::id, workspaces::name))
        .load::<(Uuid, String)>(conn)
        .await?
        .into_iter()
        .collect())
}

/// Publishes `events` on their system topics, each run of events of one topic and
/// workspace in one go (in `seq` order, so one object's events keep their order); returns
/// those that were new there (only they are handed to the notifications).
async fn publish_all(
    conn: &mut AsyncPgConnection,
    events: &[SystemEvent],
    names: &HashMap<Uuid, String>,
) -> Result<Vec<SystemEvent>> {
    let mut handed = Vec::with_capacity(events.len());
    for run in events.chunk_by(|a, b| a.workspace_id == b.workspace_id && a.topic == b.topic) {
        let first = &run[0];
        let workspace = workspace_name(names, first)?;
        let messages: Vec<(Uuid, serde_json::Value)> =
            run.iter().map(|e| (e.id, e.content(workspace))).collect();
        let seqs =
            topics::publish_system_many(conn, first.workspace_id, &first.topic, &messages).await?;
        for (event, seq) in run.iter().zip(seqs) {
            match seq {
                Some(_) => handed.push(event.clone()),
                None => {
                    tracing::debug!(event = %event.id, topic = %event.topic, "system event already published; not handed on again");
                }
            }
        }
    }
    Ok(handed)
}

fn workspace_name<'a>(names: &'a HashMap<Uuid, String>, event: &SystemEvent) -> Result<&'a str> {
    names
        .get(&event.workspace_id)
        .map(String::as_str)
        .ok_or_else(|| {
            Error::internal(format!(
                "system event {} names workspace {}, which does not exist",
                event.id, event.workspace_id
            ))
        })
}

/// Publishes `event` on its system topic; whether it was new there (only then is it
/// handed to the notifications).
async fn publish(
    conn: &mut AsyncPgConnection,
    event: &SystemEvent,
    names: &HashMap<Uuid, String>,
) -> Result<bool> {
    let content = event.content(workspace_name(names, event)?);
    let published =
        topics::publish_system(conn, event.workspace_id, &event.topic, event.id, &content).await?;
    if published.is_none() {
        tracing::debug!(event = %event.id, topic = %event.topic, "system event already published; not handed on again");
    }
    Ok(published.is_some())
}

async fn mark_relayed(
    conn: &mut AsyncPgConnection,
    seqs: &[i64],
    error: Option<&str>,
) -> Result<()> {
    diesel::update(system_events::table.filter(system_events::seq.eq_any(seqs)))
        .set((
            system_events::relayed_at.eq(diesel::dsl::now),
            system_events::relay_error.eq(error),
        ))
        .execute(conn)
        .await?;
    Ok(())
}
