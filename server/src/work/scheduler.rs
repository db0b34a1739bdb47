//! Assignment of pending work to connected workers, and every state change an attempt
//! goes through afterwards.
//!
//! The database decides: assignment runs in one transaction that locks the worker row
//! (so one worker is never over-filled) and claims pending requests with
//! `FOR UPDATE SKIP LOCKED` (so two claimers never take the same request, and a request
//! no worker can run never blocks the ones behind it). Only after the commit is the
//! `Assign` sent; if it cannot be delivered the attempt is withdrawn and the request goes
//! back to pending.
//!
//! Every later write names its attempt and is checked against the request's current
//! attempt (fencing): a stale attempt changes nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use berth_common::proto::{self, AttemptRef, Outcome, ServerMessage, server_message};
use chrono::Utc;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bytea, Integer, Jsonb, Nullable, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::live::hub::Hub;
use crate::store::db::DbPool;
use crate::store::models::Status;
use crate::store::schema::{attempts, work_requests, workers};
use crate::store::secrets::SecretBox;
use crate::work::spec::StoredSpec;

/// How often the scheduler looks for work even when nobody woke it, unless configured
/// (`sweep_interval`).
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// What one assignment round did.
#[derive(Default)]
struct Round {
    /// Attempts handed out.
    assigned: usize,
    /// Whether any worker had a free slot.
    had_room: bool,
}

/// A claimed attempt, ready to send.
#[derive(QueryableByName)]
struct Claimed {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Integer)]
    attempt_count: i32,
    #[diesel(sql_type = Jsonb)]
    spec: serde_json::Value,
    #[diesel(sql_type = Nullable<Bytea>)]
    secret_env: Option<Vec<u8>>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    parent_id: Option<Uuid>,
}

/// Hands pending work to the workers connected to this replica, and takes work back
/// from workers that fell silent or never took what they were offered.
#[derive(Clone)]
pub struct Scheduler {
    pool: DbPool,
    hub: Arc<Hub>,
    secrets: SecretBox,
    lease_ttl: Duration,
    handoff_deadline: Duration,
    sweep_interval: Duration,
}

impl Scheduler {
    /// A scheduler over `pool`. A worker silent for `lease_ttl` is lost; an assignment
    /// not accepted within `handoff_deadline` is offered again.
    pub fn new(
        pool: DbPool,
        hub: Arc<Hub>,
        secrets: SecretBox,
        lease_ttl: Duration,
        handoff_deadline: Duration,
    ) -> Scheduler {
        Scheduler {
            pool,
            hub,
            secrets,
            lease_ttl,
            handoff_deadline,
            sweep_interval: SWEEP_INTERVAL,
        }
    }

    /// The same scheduler, sweeping every `interval` when nobody wakes it.
    pub fn with_sweep_interval(mut self, interval: Duration) -> Scheduler {
        self.sweep_interval = interval;
        self
    }

    /// Runs until `shutdown`: on every wake-up and every sweep interval, offers work to
    /// the connected workers, all of them in one transaction. Wake-ups that arrive while
    /// a round runs fold into the next round, so a burst of submissions or finishes costs
    /// a few rounds, not one each. The lease sweep runs in a task of its own
    /// ([`Scheduler::sweep_forever`]) so that it never delays a round.
    pub async fn run(self, shutdown: CancellationToken) {
        // Whether the last round handed anything out, or found no free slot: then the
        // pending check below would not save a claim transaction, and is skipped.
        let mut busy = false;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.hub.scheduler_woken() => {}
                () = tokio::time::sleep(self.sweep_interval) => {}
            }
            // One cheap read instead of a claim transaction when there is nothing to
            // hand out (the common case for an idle fleet).
            if !busy {
                match self.work_is_waiting().await {
                    Ok(false) => continue,
                    Ok(true) => {}
                    Err(e) => {
                        let status: tonic::Status = e.into();
                        tracing::debug!(error = %status.message(), "pending check failed");
                    }
                }
            }
            let workers = self.hub.connected_workers();
            busy = match self.assign_round(&workers).await {
                Ok(Round { assigned, had_room }) => assigned > 0 || !had_room,
                Err(e) => {
                    let status: tonic::Status = e.into();
                    tracing::debug!(error = %status.message(), "assignment round failed");
                    false
                }
            };
        }
    }

    /// Runs [`Scheduler::sweep`] every sweep interval until `shutdown`.
    pub async fn sweep_forever(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.sweep_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.sweep().await {
                let status: tonic::Status = e.into();
                tracing::warn!(error = %status.message(), "lease sweep failed");
            }
        }
    }

    /// Whether any job is pending and past its retry backoff.
    async fn work_is_waiting(&self) -> ApiResult<bool> {
        let mut conn = self.pool.get().await?;
        conn.transaction::<_, ApiError, _>(async |conn| {
            // Stops at the first pending row only when walking the queue index (see
            // `no_bitmap_scans`); a bitmap scan visits every entry, dead ones included.
            no_bitmap_scans(conn).await?;
            let waiting: bool = diesel::select(diesel::dsl::exists(
                work_requests::table
                    .filter(work_requests::status.eq("pending"))
                    .filter(work_requests::kind.eq("job"))
                    .filter(
                        work_requests::not_before
                            .is_null()
                            .or(work_requests::not_before.le(diesel::dsl::now)),
                    ),
            ))
            .get_result(conn)
            .await?;
            Ok(waiting)
        })
        .await
    }

    /// Ends the attempts of workers silent for longer than the lease TTL (their requests
    /// go back to pending within the retry budget) and withdraws assignments nobody
    /// accepted in time. Safe to run on every replica at once: each worker row is taken
    /// with `SKIP LOCKED` and each attempt ends at most once (fencing).
    pub async fn sweep(&self) -> ApiResult<()> {
        let mut conn = self.pool.get().await?;
        let ttl =
            chrono::TimeDelta::from_std(self.lease_ttl).unwrap_or(chrono::TimeDelta::seconds(30));
        let silent_since = Utc::now() - ttl;
        // Workers whose lease ran out that still hold attempts or still look connected.
        let expired: Vec<(Uuid, String)> = workers::table
            .filter(workers::last_heartbeat_at.lt(silent_since))
            .filter(
                workers::connected_at.is_not_null().or(diesel::dsl::exists(
                    attempts::table
                        .filter(attempts::worker_id.eq(workers::id.nullable()))
                        .filter(attempts::state.ne("finished")),
                )),
            )
            .select((workers::id, workers::name))
            .load(&mut conn)
            .await?;
        for (worker_id, name) in expired {
            // A stream on this replica that is still open keeps its worker.
            if self.hub.session(worker_id).is_some() {
                continue;
            }
            let claimed = conn
                .transaction::<_, ApiError, _>(async |conn| {
                    let locked: Option<Uuid> = workers::table
                        .find(worker_id)
                        .filter(workers::last_heartbeat_at.lt(silent_since))
                        .select(workers::id)
                        .for_update()
                        .skip_locked()
                        .first(conn)
                        .await
                        .optional()?;
                    if locked.is_none() {
                        return Ok(Vec::new());
                    }
                    diesel::update(workers::table.find(worker_id))
                        .set(workers::connected_at.eq(None::<chrono::DateTime<Utc>>))
                        .execute(conn)
                        .await?;
                    worker_lost(conn, worker_id, &[]).await
                })
                .await?;
            if !claimed.is_empty() {
                tracing::warn!(worker = %name, attempts = claimed.len(), ttl = ?self.lease_ttl, "worker lost: no heartbeat within the lease TTL; its attempts were ended");
                self.hub.changed();
                self.hub.wake_scheduler();
            }
        }
        let handoff = chrono::TimeDelta::from_std(self.handoff_deadline)
            .unwrap_or(chrono::TimeDelta::seconds(10));
        let unaccepted: Vec<(Uuid, i32)> = attempts::table
            .filter(attempts::state.eq("assigned"))
            .filter(attempts::assigned_at.lt(Utc::now() - handoff))
            .select((attempts::work_request_id, attempts::number))
            .load(&mut conn)
            .await?;
        for (id, attempt) in unaccepted {
            if withdraw(&mut conn, id, attempt, "not-accepted").await? {
                tracing::warn!(work_request = %id, attempt, deadline = ?self.handoff_deadline, "assignment not accepted in time; offering the request again");
                self.hub.wake_scheduler();
            }
        }
        Ok(())
    }

    /// Claims as much pending work as `worker_id` has room for and sends it.
    pub async fn assign_for(&self, worker_id: Uuid) -> ApiResult<usize> {
        self.assign(&[worker_id]).await
    }

    /// Claims as much pending work as each of `workers` (connected here, in id order) has
    /// room for, in one transaction, and sends it. Returns how many were assigned.
    pub async fn assign(&self, workers: &[Uuid]) -> ApiResult<usize> {
        Ok(self.assign_round(workers).await?.assigned)
    }

    async fn assign_round(&self, workers: &[Uuid]) -> ApiResult<Round> {
        let open: Vec<Uuid> = workers
            .iter()
            .copied()
            .filter(|id| {
                self.hub
                    .session(*id)
                    .is_some_and(|s| !AtomicBool::load(&s.going_away, Ordering::Relaxed))
            })
            .collect();
        if open.is_empty() {
            return Ok(Round::default());
        }
        let mut conn = self.pool.get().await?;
        let (claimed, had_room) = conn
            .transaction::<_, ApiError, _>(async |conn| claim(conn, &open).await)
            .await?;
        let count = claimed.len();
        for (worker_id, claim) in claimed {
            self.send_assignment(&mut conn, worker_id, claim).await?;
        }
        if count > 0 {
            self.hub.changed();
        }
        Ok(Round {
            assigned: count,
            had_room,
        })
    }

    /// Sends one committed claim to its worker; withdraws it if that fails.
    async fn send_assignment(
        &self,
        conn: &mut AsyncPgConnection,
        worker_id: Uuid,
        claim: Claimed,
    ) -> ApiResult<()> {
        let attempt = u32::try_from(claim.attempt_count).unwrap_or(0);
        let spec = match self.assignment_spec(&claim) {
            Ok(spec) => spec,
            Err(e) => {
                tracing::error!(work_request = %claim.id, error = %e, "cannot build the assignment");
                return finish_without_running(
                    conn,
                    claim.id,
                    claim.attempt_count,
                    Outcome::StartFailed,
                    &e.to_string(),
                )
                .await;
            }
        };
        let message = ServerMessage {
            msg: Some(server_message::Msg::Assign(proto::Assign {
                attempt: Some(AttemptRef {
                    work_request_id: claim.id.to_string(),
                    attempt,
                }),
                spec: Some(spec),
            })),
        };
        let sent = match self.hub.session(worker_id) {
            Some(session) => {
                matches!(
                    tokio::time::timeout(
                        Duration::from_secs(5),
                        session.tx.send(Box::new(message))
                    )
                    .await,
                    Ok(Ok(()))
                )
            }
            None => false,
        };
        if sent {
            tracing::info!(work_request = %claim.id, attempt, %worker_id, "assigned");
        } else {
            tracing::warn!(work_request = %claim.id, %worker_id, "could not hand the assignment to the worker; requeueing");
            withdraw(conn, claim.id, claim.attempt_count, "handoff-failed").await?;
        }
        Ok(())
    }

    fn assignment_spec(&self, claim: &Claimed) -> Result<proto::ContainerSpec, ApiError> {
        let stored: StoredSpec = serde_json::from_value(claim.spec.clone())
            .map_err(|e| ApiError::internal(format!("stored spec unreadable: {e}")))?;
        let mut spec = stored.to_proto();
        if let Some(sealed) = &claim.secret_env {
            spec.secret_env = self
                .secrets
                .open(sealed)
                .map_err(ApiError::internal)?
                .into_iter()
                .collect();
        }
        Ok(spec)
    }
}

/// In the caller's transaction: locks the workers that may take work (id order, so two
/// claimers never deadlock), counts their free slots, claims that many matching pending
/// requests for each and records an attempt for each claim.
/// Also says whether any of them had a free slot.
async fn claim(
    conn: &mut AsyncPgConnection,
    worker_ids: &[Uuid],
) -> ApiResult<(Vec<(Uuid, Claimed)>, bool)> {
    type WorkerGate = (Uuid, String, i32, serde_json::Value, serde_json::Value);
    no_bitmap_scans(conn).await?;
    let gates: Vec<WorkerGate> = workers::table
        .filter(workers::id.eq_any(worker_ids))
        .filter(workers::enabled.eq(true))
        .filter(workers::draining.eq(false))
        .filter(workers::connected_at.is_not_null())
        .order(workers::id)
        .select((
            workers::id,
            workers::name,
            workers::concurrency,
            workers::labels,
            workers::metadata,
        ))
        // Serializes claimers of the same worker without waiting for transactions that
        // only reference it (updating an attempt twice in one transaction re-checks
        // the attempt's foreign key with a key-share lock on the worker).
        .for_no_key_update()
        .load(conn)
        .await?;
    if gates.is_empty() {
        return Ok((Vec::new(), false));
    }
    let gated: Vec<Uuid> = gates.iter().map(|g| g.0).collect();
    let live: std::collections::HashMap<Option<Uuid>, i64> = attempts::table
        .filter(attempts::worker_id.eq_any(&gated))
        .filter(attempts::state.ne("finished"))
        .group_by(attempts::worker_id)
        .select((attempts::worker_id, diesel::dsl::count_star()))
        .load::<(Option<Uuid>, i64)>(conn)
        .await?
        .into_iter()
        .collect();
    // The server's clock, like the attempt's other times, read after the slot counts: a
    // finish committed during this transaction has an earlier finished_at than this.
    let assigned_at = Utc::now();
    let mut claimed: Vec<(Uuid, Claimed)> = Vec::new();
    let mut new_attempts = Vec::new();
    // Label sets that found less work than they had room for: another worker offering
    // the same labels would find nothing either, in this same transaction.
    let mut exhausted: Vec<(serde_json::Value, serde_json::Value)> = Vec::new();
    let mut had_room = false;
    for (worker_id, name, concurrency, labels, metadata) in &gates {
        let free = i64::from(*concurrency) - live.get(&Some(*worker_id)).copied().unwrap_or(0);
        if free <= 0 {
            continue;
        }
        had_room = true;
        let offer = match_labels(labels, metadata);
        if exhausted.contains(&offer) {
            continue;
        }
        let (matching, exclusive) = offer.clone();
        // Requirements must be a subset of what the worker has, and must name every
        // exclusive label of the worker. Never a workflow parent; never before a retry's
        // backoff has passed.
        let rows: Vec<Claimed> = diesel::sql_query(
            "WITH picked AS ( \
               SELECT wr.id FROM work_requests wr \
               WHERE wr.status = 'pending' AND wr.kind = 'job' \
                 AND (wr.not_before IS NULL OR wr.not_before <= now()) \
                 AND wr.requirements <@ $1 AND wr.requirements @> $2 \
               ORDER BY wr.priority_base + wr.priority_adjustment DESC, wr.created_at, wr.id \
               LIMIT $3 FOR UPDATE OF wr SKIP LOCKED) \
             UPDATE work_requests SET status = 'running', attempt_count = attempt_count + 1 \
             FROM picked WHERE work_requests.id = picked.id \
             RETURNING work_requests.id, work_requests.attempt_count, work_requests.spec, \
               work_requests.secret_env, work_requests.parent_id",
        )
        .bind::<Jsonb, _>(matching)
        .bind::<Jsonb, _>(exclusive)
        .bind::<BigInt, _>(free)
        .load(conn)
        .await?;
        if (rows.len() as i64) < free {
            exhausted.push(offer);
        }
        for row in rows {
            new_attempts.push((
                attempts::work_request_id.eq(row.id),
                attempts::number.eq(row.attempt_count),
                attempts::worker_id.eq(*worker_id),
                attempts::worker_name.eq(name.clone()),
                attempts::state.eq("assigned"),
                attempts::assigned_at.eq(assigned_at),
            ));
            claimed.push((*worker_id, row));
        }
    }
    if new_attempts.is_empty() {
        return Ok((claimed, had_room));
    }
    diesel::insert_into(attempts::table)
        .values(new_attempts)
        .execute(conn)
        .await?;
    let mut parents: Vec<Uuid> = claimed.iter().filter_map(|(_, c)| c.parent_id).collect();
    parents.sort_unstable();
    parents.dedup();
    for parent_id in parents {
        crate::work::workflow::refresh_parent(conn, parent_id).await?;
    }
    Ok((claimed, had_room))
}

/// Turns bitmap scans off for the rest of the caller's transaction.
///
/// The queue table grows and drains faster than statistics follow: with an estimate of a
/// handful of pending rows the planner reads (and for a claim, sorts) every entry of
/// `work_requests_queue`, including the dead ones a drained backlog leaves until vacuum,
/// instead of walking the index in order and stopping at the limit. A backlog is exactly
/// when claims must be cheap.
async fn no_bitmap_scans(conn: &mut AsyncPgConnection) -> ApiResult<()> {
    diesel::sql_query("SET LOCAL enable_bitmapscan = off")
        .execute(conn)
        .await?;
    Ok(())
}

/// What a worker offers to requirements: its reported facts with its static labels over
/// them (configuration wins), and separately its exclusive labels: a static label whose
/// value ends in `!` (e.g. `gpu=yes!`) matches as `gpu=yes` and admits only requests
/// that require it.
pub fn match_labels(
    labels: &serde_json::Value,
    metadata: &serde_json::Value,
) -> (serde_json::Value, serde_json::Value) {
    let mut matching = metadata.as_object().cloned().unwrap_or_default();
    let mut exclusive = serde_json::Map::new();
    for (key, value) in labels.as_object().into_iter().flatten() {
        let Some(text) = value.as_str() else { continue };
        match text.strip_suffix('!') {
            Some(stripped) => {
                matching.insert(key.clone(), stripped.into());
                exclusive.insert(key.clone(), stripped.into());
            }
            None => {
                matching.insert(key.clone(), text.into());
            }
        }
    }
    (matching.into(), exclusive.into())
}

/// The request an attempt belongs to, as [`lock_current`] found it.
struct Current {
    status: Status,
    parent_id: Option<Uuid>,
}

/// Whether `attempt` is the current, unfinished attempt of `id` on `worker_id`; locks the
/// request row (and the attempt's) for the caller's transaction, in one statement.
///
/// The lock is `FOR NO KEY UPDATE`: it serializes the writers of the request as `FOR
/// UPDATE` would, but does not wait for transactions that merely reference the row
/// (inserting attempts or log chunks takes a key-share lock for the foreign key).
async fn lock_current(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    attempt: i32,
    worker_id: Option<Uuid>,
) -> ApiResult<Option<Current>> {
    // (status, current attempt, parent, attempt's worker, attempt's state)
    type Row = (String, i32, Option<Uuid>, Option<Uuid>, String);
    let row: Option<Row> = work_requests::table
        .inner_join(attempts::table)
        .filter(work_requests::id.eq(id))
        .filter(attempts::number.eq(attempt))
        .select((
            work_requests::status,
            work_requests::attempt_count,
            work_requests::parent_id,
            attempts::worker_id,
            attempts::state,
        ))
        .for_no_key_update()
        .first(conn)
        .await
        .optional()?;
    match row {
        Some((status, current, parent_id, owner, state))
            if current == attempt
                && state != "finished"
                && (worker_id.is_none() || owner == worker_id) =>
        {
            Ok(Status::parse(&status).map(|status| Current { status, parent_id }))
        }
        _ => Ok(None),
    }
}

/// Ends an attempt that never ran and puts its request back in the queue.
pub async fn withdraw(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    attempt: i32,
    reason: &str,
) -> ApiResult<bool> {
    conn.transaction::<_, ApiError, _>(async |conn| {
        let Some(Current { status, parent_id }) = lock_current(conn, id, attempt, None).await?
        else {
            return Ok(false);
        };
        diesel::update(attempts::table.find((id, attempt)))
            .set((
                attempts::state.eq("finished"),
                attempts::reason.eq(reason),
                attempts::finished_at.eq(Utc::now()),
            ))
            .execute(conn)
            .await?;
        if status == Status::Running {
            diesel::update(work_requests::table.find(id))
                .set(work_requests::status.eq(Status::Pending.as_str()))
                .execute(conn)
                .await?;
            if let Some(parent_id) = parent_id {
                crate::work::workflow::refresh_parent(conn, parent_id).await?;
            }
        }
        Ok(true)
    })
    .await
}

async fn finish_without_running(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    attempt: i32,
    outcome: Outcome,
    message: &str,
) -> ApiResult<()> {
    let report = proto::Finished {
        attempt: Some(AttemptRef {
            work_request_id: id.to_string(),
            attempt: u32::try_from(attempt).unwrap_or(0),
        }),
        outcome: outcome as i32,
        message: message.to_owned(),
        ..Default::default()
    };
    finish(conn, None, &report).await.map(|_| ())
}

/// The attempt referred to by a worker message, parsed.
pub fn parse_ref(reference: Option<&AttemptRef>) -> ApiResult<(Uuid, i32)> {
    let reference =
        reference.ok_or_else(|| ApiError::InvalidArgument("attempt: is required".into()))?;
    let id = Uuid::parse_str(&reference.work_request_id)
        .map_err(|_| ApiError::InvalidArgument("attempt.work_request_id: not a valid id".into()))?;
    let attempt = i32::try_from(reference.attempt)
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| ApiError::InvalidArgument("attempt.attempt: must be 1 or more".into()))?;
    Ok((id, attempt))
}

/// The worker took the attempt.
pub async fn accepted(
    conn: &mut AsyncPgConnection,
    worker_id: Uuid,
    id: Uuid,
    attempt: i32,
) -> ApiResult<bool> {
    conn.transaction::<_, ApiError, _>(async |conn| accepted_in(conn, worker_id, id, attempt).await)
        .await
}

/// [`accepted`] inside the caller's transaction.
pub async fn accepted_in(
    conn: &mut AsyncPgConnection,
    worker_id: Uuid,
    id: Uuid,
    attempt: i32,
) -> ApiResult<bool> {
    {
        if lock_current(conn, id, attempt, Some(worker_id))
            .await?
            .is_none()
        {
            return Ok(false);
        }
        diesel::update(attempts::table.find((id, attempt)))
            .filter(attempts::state.eq("assigned"))
            .set((
                attempts::state.eq("accepted"),
                attempts::accepted_at.eq(Utc::now()),
            ))
            .execute(conn)
            .await?;
        Ok(true)
    }
}

/// The attempt's container started.
pub async fn started(
    conn: &mut AsyncPgConnection,
    worker_id: Uuid,
    report: &proto::Started,
) -> ApiResult<bool> {
    conn.transaction::<_, ApiError, _>(async |conn| started_in(conn, worker_id, report).await)
        .await
}

/// [`started`] inside the caller's transaction.
pub async fn started_in(
    conn: &mut AsyncPgConnection,
    worker_id: Uuid,
    report: &proto::Started,
) -> ApiResult<bool> {
    let (id, attempt) = parse_ref(report.attempt.as_ref())?;
    {
        if lock_current(conn, id, attempt, Some(worker_id))
            .await?
            .is_none()
        {
            return Ok(false);
        }
        let now = Utc::now();
        diesel::update(attempts::table.find((id, attempt)))
            .set((
                attempts::state.eq("running"),
                attempts::container_id.eq(&report.container_id),
                attempts::started_at.eq(now),
                attempts::pull_ms.eq(report.pull_duration.as_ref().map(duration_ms)),
            ))
            .execute(conn)
            .await?;
        diesel::update(work_requests::table.find(id))
            .filter(work_requests::started_at.is_null())
            .set(work_requests::started_at.eq(now))
            .execute(conn)
            .await?;
        Ok(true)
    }
}

/// The container id to record at the end: the Finished report's, else a folded
/// Started's.
fn container_id<'a>(
    report: &'a proto::Finished,
    started: Option<&'a proto::Started>,
) -> Option<&'a str> {
    [
        Some(report.container_id.as_str()),
        started.map(|s| s.container_id.as_str()),
    ]
    .into_iter()
    .flatten()
    .find(|c| !c.is_empty())
}

fn duration_ms(d: &prost_types::Duration) -> i64 {
    d.seconds.saturating_mul(1000) + i64::from(d.nanos / 1_000_000)
}

fn duration_ns(d: &prost_types::Duration) -> i64 {
    d.seconds.saturating_mul(1_000_000_000) + i64::from(d.nanos)
}

/// What a finished attempt means for its request: (status, result, reason).
fn verdict(
    outcome: Outcome,
    exit_code: Option<i32>,
) -> (Status, Option<&'static str>, &'static str) {
    match outcome {
        Outcome::Exited if exit_code == Some(0) => (Status::Completed, Some("success"), ""),
        Outcome::Exited => (Status::Completed, Some("failure"), ""),
        Outcome::TimedOut => (Status::Completed, Some("failure"), "timeout"),
        Outcome::OomKilled => (Status::Completed, Some("failure"), "oom"),
        Outcome::ImagePullFailed => (Status::Completed, Some("error"), "image-pull"),
        Outcome::StartFailed | Outcome::Unspecified => {
            (Status::Completed, Some("error"), "start-failed")
        }
        Outcome::Cancelled => (Status::Aborted, None, "cancelled"),
        Outcome::Interrupted => (Status::Pending, None, "interrupted"),
    }
}

/// Records a finished attempt and settles its request. `worker_id` None skips the
/// ownership check (server-side endings). Returns false for a stale attempt.
pub async fn finish(
    conn: &mut AsyncPgConnection,
    worker_id: Option<Uuid>,
    report: &proto::Finished,
) -> ApiResult<bool> {
    conn.transaction::<_, ApiError, _>(async |conn| finish_in(conn, worker_id, report).await)
        .await
}

/// [`finish`] inside the caller's transaction.
pub async fn finish_in(
    conn: &mut AsyncPgConnection,
    worker_id: Option<Uuid>,
    report: &proto::Finished,
) -> ApiResult<bool> {
    finish_folded_in(conn, worker_id, report, Folded::default()).await
}

/// Reports about an attempt that arrived together with its Finished and are recorded by
/// the same statements (see `crate::work::recorder`): the result is what applying them one
/// after the other in one transaction would give.
#[derive(Clone, Copy, Default)]
pub struct Folded<'a> {
    /// The worker's Accept came first.
    pub accepted: bool,
    /// The worker's Started came first.
    pub started: Option<&'a proto::Started>,
}

/// [`finish_in`], also recording the Accept and Started in `folded`.
pub async fn finish_folded_in(
    conn: &mut AsyncPgConnection,
    worker_id: Option<Uuid>,
    report: &proto::Finished,
    folded: Folded<'_>,
) -> ApiResult<bool> {
    let (id, attempt) = parse_ref(report.attempt.as_ref())?;
    let outcome = Outcome::try_from(report.outcome).unwrap_or(Outcome::Unspecified);
    let (status, result, reason) = verdict(outcome, report.exit_code);
    {
        let Some(Current {
            status: current,
            parent_id,
        }) = lock_current(conn, id, attempt, worker_id).await?
        else {
            return Ok(false);
        };
        let now = Utc::now();
        diesel::update(attempts::table.find((id, attempt)))
            .set((
                attempts::state.eq("finished"),
                attempts::outcome.eq(outcome.as_str_name()),
                attempts::exit_code.eq(report.exit_code),
                attempts::reason.eq(reason),
                attempts::message.eq(&report.message),
                attempts::finished_at.eq(now),
                attempts::peak_memory_bytes
                    .eq(report.peak_memory_bytes.and_then(|b| i64::try_from(b).ok())),
                attempts::cpu_time_ns.eq(report.cpu_time.as_ref().map(duration_ns)),
                attempts::run_ms.eq(report.run_duration.as_ref().map(duration_ms)),
                // Only what the reports carry; an earlier Started may have set them.
                container_id(report, folded.started).map(|c| attempts::container_id.eq(c)),
                report
                    .pull_duration
                    .as_ref()
                    .or(folded.started.and_then(|s| s.pull_duration.as_ref()))
                    .map(|d| attempts::pull_ms.eq(duration_ms(d))),
                folded.accepted.then_some(attempts::accepted_at.eq(now)),
                folded
                    .started
                    .is_some()
                    .then_some(attempts::started_at.eq(now)),
            ))
            .execute(conn)
            .await?;
        // The request's start time, when the Started was folded in here.
        let request_started =
            folded.started.is_some().then(|| {
                work_requests::started_at.eq(diesel::dsl::sql::<
                    Nullable<diesel::sql_types::Timestamptz>,
                >("coalesce(started_at, ")
                .bind::<diesel::sql_types::Timestamptz, _>(now)
                .sql(")"))
            });
        // A request cancelled while it ran is already aborted: keep that, record the exit.
        if current == Status::Aborted {
            diesel::update(work_requests::table.find(id))
                .set((
                    work_requests::exit_code.eq(report.exit_code),
                    request_started.clone(),
                ))
                .execute(conn)
                .await?;
            return Ok(true);
        }
        if let Some(started) = request_started.clone()
            && (current != Status::Running || result == Some("failure"))
        {
            // Paths below that may not write the request row themselves.
            diesel::update(work_requests::table.find(id))
                .set(started)
                .execute(conn)
                .await?;
        }
        if current != Status::Running {
            return Ok(true);
        }
        // A failure with automatic retries left goes back to the queue instead.
        if result == Some("failure")
            && crate::work::deps::auto_retry(conn, id, attempt, report.exit_code, &report.message)
                .await?
        {
            return Ok(true);
        }
        let completed_at = (status != Status::Pending).then_some(now);
        diesel::update(work_requests::table.find(id))
            .set((
                work_requests::status.eq(status.as_str()),
                work_requests::result.eq(result),
                work_requests::reason.eq(reason),
                work_requests::message.eq(&report.message),
                work_requests::exit_code.eq(report.exit_code),
                work_requests::completed_at.eq(completed_at),
                request_started,
            ))
            .execute(conn)
            .await?;
        if status.is_terminal() {
            crate::work::deps::settle(conn, id).await?;
        }
        if let Some(parent_id) = parent_id {
            crate::work::workflow::refresh_parent(conn, parent_id).await?;
        }
        Ok(true)
    }
}

/// Ends the live attempts of `worker_id` that the worker no longer runs: each request goes
/// back to pending while its retry budget lasts, else completes with `error`.
pub async fn worker_lost(
    conn: &mut AsyncPgConnection,
    worker_id: Uuid,
    keep: &[(Uuid, i32)],
) -> ApiResult<Vec<(Uuid, i32)>> {
    let live: Vec<(Uuid, i32)> = attempts::table
        .filter(attempts::worker_id.eq(worker_id))
        .filter(attempts::state.ne("finished"))
        .select((attempts::work_request_id, attempts::number))
        .load(conn)
        .await?;
    let mut lost = Vec::new();
    for (id, attempt) in live.into_iter().filter(|a| !keep.contains(a)) {
        let ended = conn
            .transaction::<_, ApiError, _>(async |conn| {
                let Some(Current { status, parent_id }) =
                    lock_current(conn, id, attempt, Some(worker_id)).await?
                else {
                    return Ok(false);
                };
                let now = Utc::now();
                diesel::update(attempts::table.find((id, attempt)))
                    .set((
                        attempts::state.eq("finished"),
                        attempts::reason.eq("worker-lost"),
                        attempts::finished_at.eq(now),
                    ))
                    .execute(conn)
                    .await?;
                if status != Status::Running {
                    return Ok(true);
                }
                let budget: i32 = work_requests::table
                    .find(id)
                    .select(work_requests::retry_budget)
                    .first(conn)
                    .await?;
                if budget > 0 {
                    diesel::update(work_requests::table.find(id))
                        .set((
                            work_requests::status.eq(Status::Pending.as_str()),
                            work_requests::retry_budget.eq(budget - 1),
                        ))
                        .execute(conn)
                        .await?;
                } else {
                    diesel::update(work_requests::table.find(id))
                        .set((
                            work_requests::status.eq(Status::Completed.as_str()),
                            work_requests::result.eq("error"),
                            work_requests::reason.eq("worker-lost"),
                            work_requests::message
                                .eq("the worker was lost and the retry budget is spent"),
                            work_requests::completed_at.eq(now),
                        ))
                        .execute(conn)
                        .await?;
                    crate::work::deps::settle(conn, id).await?;
                }
                if let Some(parent_id) = parent_id {
                    crate::work::workflow::refresh_parent(conn, parent_id).await?;
                }
                Ok(true)
            })
            .await?;
        if ended {
            lost.push((id, attempt));
        }
    }
    Ok(lost)
}

/// Which of the attempts a reconnecting worker reports are still current for it; the rest
/// it must abandon. Also returns current attempts whose request was aborted meanwhile
/// (the worker must stop those).
pub async fn reconcile(
    conn: &mut AsyncPgConnection,
    worker_id: Uuid,
    reported: &[(Uuid, i32)],
) -> ApiResult<(Vec<(Uuid, i32)>, Vec<(Uuid, i32)>, Vec<(Uuid, i32)>)> {
    let mut keep = Vec::new();
    let mut abandon = Vec::new();
    let mut cancel = Vec::new();
    for &(id, attempt) in reported {
        let row: Option<(String, i32, Option<Uuid>, String)> = work_requests::table
            .inner_join(attempts::table)
            .filter(work_requests::id.eq(id))
            .filter(attempts::number.eq(attempt))
            .select((
                work_requests::status,
                work_requests::attempt_count,
                attempts::worker_id,
                attempts::state,
            ))
            .first(conn)
            .await
            .optional()?;
        match row {
            Some((status, current, owner, state))
                if current == attempt && owner == Some(worker_id) && state != "finished" =>
            {
                keep.push((id, attempt));
                if status == Status::Aborted.as_str() {
                    cancel.push((id, attempt));
                }
            }
            _ => abandon.push((id, attempt)),
        }
    }
    Ok((keep, abandon, cancel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_labels_win_and_bang_marks_exclusive() {
        let labels = serde_json::json!({"arch": "arm64", "gpu": "yes!"});
        let metadata = serde_json::json!({"arch": "amd64", "os": "linux"});
        let (matching, exclusive) = match_labels(&labels, &metadata);
        assert_eq!(
            matching,
            serde_json::json!({"arch": "arm64", "os": "linux", "gpu": "yes"})
        );
        assert_eq!(exclusive, serde_json::json!({"gpu": "yes"}));
    }

    #[test]
    fn a_failed_attempt_maps_to_its_result() {
        assert_eq!(verdict(Outcome::Exited, Some(0)).1, Some("success"));
        assert_eq!(verdict(Outcome::Exited, Some(2)).1, Some("failure"));
        assert_eq!(verdict(Outcome::TimedOut, Some(143)).2, "timeout");
        assert_eq!(verdict(Outcome::OomKilled, Some(137)).2, "oom");
        assert_eq!(verdict(Outcome::ImagePullFailed, None).1, Some("error"));
        assert_eq!(verdict(Outcome::Cancelled, None).0, Status::Aborted);
        assert_eq!(verdict(Outcome::Interrupted, None).0, Status::Pending);
    }
}
