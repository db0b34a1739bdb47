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
//! Between workspaces the claim shares fairly: a free slot goes to the workspace running
//! the least for its weight, never past a workspace's `max_running`, and a worker
//! restricted to workspaces is offered only theirs (see [`FAIR_CLAIM`]). A request with a
//! placement (`request_placement`: a service replica's local restart or move) is offered
//! only to its pinned worker, or to any worker but the one it avoids.
//!
//! Every later change of an attempt goes through `lifecycle`, fenced by its attempt
//! number.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{
    Array, BigInt, Bytea, Integer, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::artifacts::inputs;
use crate::error::{Error, Result};
use crate::live::health::DbHealth;
use crate::live::hub::{Assignment, Delivery, Hub, ToWorker};
use crate::observe::traces;
use crate::store::db::DbPool;
use crate::store::schema::{attempts, request_placement, work_requests, workers, workspaces};
use crate::store::secrets::SecretBox;
use crate::work::ids::{AttemptKey, WorkRequestId};
use crate::work::lifecycle;
use crate::work::spec::StoredSpec;
use crate::work::state::{AttemptState, Kind, Outcome, Reason, Status};

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

/// What the lease sweep did with a lost worker's live attempts.
#[derive(Default)]
struct Lost {
    /// Ended, their requests back in the queue (or ended for good).
    ended: Vec<AttemptKey>,
    /// Waiting for another worker on the engine to stop their containers.
    awaiting: Vec<AttemptKey>,
}

/// An attempt of a lost worker waiting for its container to be stopped.
#[derive(QueryableByName)]
struct Awaiting {
    #[diesel(sql_type = SqlUuid)]
    work_request_id: WorkRequestId,
    #[diesel(sql_type = Integer)]
    number: i32,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    worker_id: Option<Uuid>,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    stop_requested_at: chrono::DateTime<Utc>,
}

#[derive(QueryableByName)]
struct WorkerIdRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

/// The live workers (connected, heard from since `heard_since`) that share the Docker
/// engine of `worker_id` (`docker_engine_id` in their facts). A lost worker is not live
/// itself; once it is back (it reconnected), it may stop its own marked attempts, which
/// its Hello abandoned, and confirm that like any other worker on the engine.
pub(crate) async fn helpers(
    conn: &mut AsyncPgConnection,
    worker_id: Uuid,
    heard_since: chrono::DateTime<Utc>,
) -> Result<Vec<Uuid>> {
    let rows: Vec<WorkerIdRow> = diesel::sql_query(
        "SELECT h.id FROM workers h JOIN workers o ON o.id = $1 \
         WHERE h.connected_at IS NOT NULL AND h.last_heartbeat_at >= $2 \
           AND o.metadata->>'docker_engine_id' <> '' \
           AND h.metadata->>'docker_engine_id' = o.metadata->>'docker_engine_id' \
         ORDER BY h.id",
    )
    .bind::<SqlUuid, _>(worker_id)
    .bind::<diesel::sql_types::Timestamptz, _>(heard_since)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// A claimed attempt, ready to send.
#[derive(QueryableByName)]
struct Claimed {
    #[diesel(sql_type = SqlUuid)]
    id: WorkRequestId,
    #[diesel(sql_type = Integer)]
    attempt_count: i32,
    #[diesel(sql_type = Jsonb)]
    spec: serde_json::Value,
    #[diesel(sql_type = Nullable<Bytea>)]
    secret_env: Option<Vec<u8>>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    parent_id: Option<WorkRequestId>,
    /// When it was stored, and the trace it was submitted in (`observe::traces`).
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Text>)]
    traceparent: Option<String>,
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
    stop_wait: Duration,
    /// Whether the database answers; gates the sweep after an outage.
    health: Arc<DbHealth>,
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
            stop_wait: Duration::from_secs(60),
            health: DbHealth::new(),
        }
    }

    /// The same scheduler, letting the requests of a lost worker wait up to `wait` for
    /// another worker on its Docker engine to confirm its containers are stopped.
    pub fn with_stop_wait(mut self, wait: Duration) -> Scheduler {
        self.stop_wait = wait;
        self
    }

    /// The same scheduler, holding its sweep after the database was away (as `health`
    /// tells); see [`Scheduler::sweep_forever`].
    pub fn with_health(mut self, health: Arc<DbHealth>) -> Scheduler {
        self.health = health;
        self
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
                        tracing::debug!(error = %e, "pending check failed; trying a round anyway")
                    }
                }
            }
            let workers = self.hub.connected_workers();
            busy = match self.assign_round(&workers).await {
                Ok(Round { assigned, had_room }) => assigned > 0 || !had_room,
                Err(e) => {
                    // Retried on the next wake-up or sweep interval. A database that is
                    // away would say so every second; other failures are worth a warning.
                    if matches!(e, Error::Database(_)) {
                        tracing::debug!(error = %e, "assignment round failed");
                    } else {
                        tracing::warn!(error = %e, "assignment round failed");
                    }
                    false
                }
            };
        }
    }

    /// Runs [`Scheduler::sweep`] every sweep interval until `shutdown`.
    ///
    /// After the database was away, the sweep holds off until it has been back for a
    /// lease TTL (see `live::health`): no lease was renewed meanwhile, and worker reports
    /// sent meanwhile (an Accept past the hand-off deadline, say) are still being applied.
    /// Sweeping at once would take every live worker for lost and run its attempts a
    /// second time; after the hold, a worker still silent has had a full lease TTL.
    pub async fn sweep_forever(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.sweep_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut holding = false;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if !self.health.settled(self.lease_ttl) {
                if !holding && self.health.reachable() {
                    tracing::info!(hold = ?self.lease_ttl, "the database is back; the lease sweep waits for workers to renew their leases");
                }
                holding = self.health.reachable();
                continue;
            }
            holding = false;
            if let Err(e) = self.sweep().await {
                tracing::warn!(error = %e, "lease sweep failed; retrying next interval");
            }
        }
    }

    /// Whether any job is pending and past its retry backoff.
    async fn work_is_waiting(&self) -> Result<bool> {
        let mut conn = self.pool.get().await?;
        conn.transaction::<_, Error, _>(async |conn| {
            // Stops at the first pending row only when walking the queue index (see
            // `no_bitmap_scans`); a bitmap scan visits every entry, dead ones included.
            no_bitmap_scans(conn).await?;
            let waiting: bool = diesel::select(diesel::dsl::exists(
                work_requests::table
                    .filter(work_requests::status.eq(Status::Pending))
                    .filter(work_requests::kind.eq(Kind::Job))
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
    pub(crate) async fn sweep(&self) -> Result<()> {
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
                        .filter(attempts::state.ne(AttemptState::Finished)),
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
                .transaction::<_, Error, _>(async |conn| {
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
                        return Ok(Lost::default());
                    }
                    diesel::update(workers::table.find(worker_id))
                        .set(workers::connected_at.eq(None::<chrono::DateTime<Utc>>))
                        .execute(conn)
                        .await?;
                    // Another live worker on the same Docker engine can stop this one's
                    // containers: its requests wait for that instead of running twice.
                    if helpers(conn, worker_id, silent_since).await?.is_empty() {
                        let ended = lifecycle::worker_lost(conn, worker_id, &[]).await?;
                        Ok(Lost {
                            ended,
                            awaiting: Vec::new(),
                        })
                    } else {
                        let awaiting = lifecycle::await_stop(conn, worker_id).await?;
                        Ok(Lost {
                            ended: Vec::new(),
                            awaiting,
                        })
                    }
                })
                .await?;
            if !claimed.ended.is_empty() {
                tracing::warn!(worker = %name, attempts = claimed.ended.len(), ttl = ?self.lease_ttl, "worker lost: no heartbeat within the lease TTL; its attempts were ended");
                self.hub.changed();
                self.hub.wake_scheduler();
            }
            if !claimed.awaiting.is_empty() {
                tracing::warn!(worker = %name, attempts = claimed.awaiting.len(), ttl = ?self.lease_ttl, wait = ?self.stop_wait, "worker lost: no heartbeat within the lease TTL; its requests run again once a worker on its Docker engine has stopped its containers");
            }
        }
        self.settle_stops(&mut conn, silent_since).await?;
        let handoff = chrono::TimeDelta::from_std(self.handoff_deadline)
            .unwrap_or(chrono::TimeDelta::seconds(10));
        let unaccepted: Vec<(WorkRequestId, i32)> = attempts::table
            .filter(attempts::state.eq(AttemptState::Assigned))
            .filter(attempts::assigned_at.lt(Utc::now() - handoff))
            .select((attempts::work_request_id, attempts::number))
            .load(&mut conn)
            .await?;
        for (id, attempt) in unaccepted {
            let key = AttemptKey::new(id, attempt);
            if lifecycle::withdraw(&mut conn, key, Reason::NotAccepted).await? {
                tracing::warn!(%key, deadline = ?self.handoff_deadline, "assignment not accepted in time; offering the request again");
                self.hub.wake_scheduler();
            }
        }
        Ok(())
    }

    /// The attempts of lost workers that wait for their containers to be stopped: those
    /// waiting longer than `stop_wait` run again anyway (the reason is noted on the
    /// attempt); for the rest, every live worker on the same engine whose stream is on this
    /// replica is told (again) to stop them. Every replica does this for its own streams,
    /// so the worker hears it wherever it is connected; it ignores a repeat.
    async fn settle_stops(
        &self,
        conn: &mut AsyncPgConnection,
        silent_since: chrono::DateTime<Utc>,
    ) -> Result<()> {
        let waiting: Vec<Awaiting> = diesel::sql_query(
            "SELECT a.work_request_id, a.number, a.worker_id, a.stop_requested_at \
             FROM attempts a \
             WHERE a.stop_requested_at IS NOT NULL AND a.state <> 'finished' \
             ORDER BY a.worker_id, a.work_request_id, a.number",
        )
        .load(conn)
        .await?;
        let wait =
            chrono::TimeDelta::from_std(self.stop_wait).unwrap_or(chrono::TimeDelta::seconds(60));
        let now = Utc::now();
        let mut by_owner: Vec<(Uuid, Vec<AttemptKey>)> = Vec::new();
        for waiting in waiting {
            let key = AttemptKey::new(waiting.work_request_id, waiting.number);
            if now - waiting.stop_requested_at > wait {
                if lifecycle::stop_unconfirmed(conn, key, self.stop_wait).await? {
                    tracing::warn!(%key, wait = ?self.stop_wait, "no worker confirmed that the lost worker's container stopped; running the request again anyway");
                    self.hub.changed();
                    self.hub.wake_scheduler();
                }
                continue;
            }
            let Some(owner) = waiting.worker_id else {
                continue;
            };
            match by_owner.last_mut() {
                Some((last, keys)) if *last == owner => keys.push(key),
                _ => by_owner.push((owner, vec![key])),
            }
        }
        for (owner, keys) in by_owner {
            let local: Vec<Uuid> = helpers(conn, owner, silent_since)
                .await?
                .into_iter()
                .filter(|helper| self.hub.session(*helper).is_some())
                .collect();
            // One is enough: they all see the same engine.
            if let Some(helper) = local.into_iter().next() {
                self.hub.send(helper, ToWorker::StopContainers(keys));
            }
        }
        Ok(())
    }

    /// Claims as much pending work as `worker_id` has room for and sends it.
    pub(crate) async fn assign_for(&self, worker_id: Uuid) -> Result<usize> {
        Ok(self.assign_round(&[worker_id]).await?.assigned)
    }

    /// Claims as much pending work as each of `workers` (connected here, in id order) has
    /// room for, in one transaction, and sends it.
    async fn assign_round(&self, workers: &[Uuid]) -> Result<Round> {
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
            .transaction::<_, Error, _>(async |conn| claim(conn, &open).await)
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

    /// Hands one committed claim to its worker's stream; withdraws it if that fails.
    /// Never waits on the stream (see `hub`).
    async fn send_assignment(
        &self,
        conn: &mut AsyncPgConnection,
        worker_id: Uuid,
        claim: Claimed,
    ) -> Result<()> {
        let key = AttemptKey::new(claim.id, claim.attempt_count);
        // A request submitted in a trace goes on in it here: the time it waited, then
        // this hand-off, whose context the worker continues. Without one, no span at all.
        let (span, traceparent) = match claim.traceparent.as_deref() {
            Some(stored) => {
                traces::record_queued(
                    stored,
                    claim.created_at.into(),
                    std::time::SystemTime::now(),
                    claim.attempt_count,
                );
                let span = tracing::info_span!(
                    "dispatch",
                    berth.work_request = %claim.id,
                    berth.attempt = claim.attempt_count,
                    berth.worker = %worker_id,
                );
                traces::continue_trace(&span, Some(stored));
                let traceparent = traces::traceparent_of_span(&span);
                (span, traceparent)
            }
            None => (tracing::Span::none(), None),
        };
        self.hand_over(conn, worker_id, claim, key, traceparent)
            .instrument(span)
            .await
    }

    async fn hand_over(
        &self,
        conn: &mut AsyncPgConnection,
        worker_id: Uuid,
        claim: Claimed,
        key: AttemptKey,
        traceparent: Option<String>,
    ) -> Result<()> {
        let assignment = match self.assignment(conn, key, &claim, traceparent).await {
            Ok(assignment) => assignment,
            // Unsent, the attempt is withdrawn at the hand-off deadline and runs again.
            Err(e @ Error::Database(_)) => return Err(e),
            Err(e) => {
                tracing::error!(%key, error = %e, "cannot build the assignment");
                return lifecycle::finish_without_running(
                    conn,
                    key,
                    Outcome::StartFailed,
                    &e.public_message(),
                )
                .await;
            }
        };
        match self
            .hub
            .send(worker_id, ToWorker::Assign(Box::new(assignment)))
        {
            Delivery::Queued => tracing::info!(%key, %worker_id, "assigned"),
            delivery => {
                tracing::warn!(%key, %worker_id, ?delivery, "could not hand the assignment to the worker; requeueing");
                lifecycle::withdraw(conn, key, Reason::HandoffFailed).await?;
            }
        }
        Ok(())
    }

    /// The assignment of a committed claim: the spec, the secrets opened, and the inputs
    /// with their files. An input that cannot be had (a needed step made no output) is an
    /// error whose message the attempt ends with.
    async fn assignment(
        &self,
        conn: &mut AsyncPgConnection,
        key: AttemptKey,
        claim: &Claimed,
        traceparent: Option<String>,
    ) -> Result<Assignment> {
        let spec = StoredSpec::deserialize(&claim.spec)
            .map_err(|e| Error::internal(format!("stored spec of {key} unreadable: {e}")))?;
        let inputs = inputs::for_assignment(conn, key.id).await?;
        let secret_env = match &claim.secret_env {
            Some(sealed) => self.secrets.open(sealed).map_err(Error::internal)?,
            None => Default::default(),
        };
        Ok(Assignment {
            key,
            spec,
            secret_env,
            inputs,
            traceparent,
        })
    }
}

/// One worker's claim as the fair-share query returns it: how many requests it chose,
/// and one row per request it could lock and mark running (none when every chosen row
/// was taken meanwhile, or nothing was chosen).
#[derive(QueryableByName)]
struct ClaimRow {
    #[diesel(sql_type = BigInt)]
    chosen: i64,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    id: Option<WorkRequestId>,
    #[diesel(sql_type = Nullable<Integer>)]
    attempt_count: Option<i32>,
    #[diesel(sql_type = Nullable<Jsonb>)]
    spec: Option<serde_json::Value>,
    #[diesel(sql_type = Nullable<Bytea>)]
    secret_env: Option<Vec<u8>>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    parent_id: Option<WorkRequestId>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    created_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    not_before: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Text>)]
    traceparent: Option<String>,
}

/// The claim of one worker with `$3` free slots, offering `$1` (matching labels) and
/// `$2` (exclusive labels), restricted to the workspaces in `$4` (NULL: all of them).
///
/// Fair share between workspaces, and a cost that does not grow with the queue, however
/// much of it this worker cannot run:
///
/// - `ws`: every workspace the worker may serve, with its running jobs (through
///   `work_requests_running_by_workspace`; the running set is as small as the fleet).
///   A workspace at its `max_running` takes no part.
/// - `sets`: every (workspace, requirement set) that has pending requests, found by a
///   skip scan over `work_requests_queue_by_requirements` (a recursive step jumps from
///   one pair to the next with one index probe), so its cost is the number of distinct
///   pairs, not of requests. Only the pairs of a served workspace whose set this worker
///   satisfies go on: requests for other pools, architectures or workspaces are never
///   read.
/// - `cand`: for each such pair, its first `free` requests in queue order, walked through
///   the same index with a LATERAL LIMIT, then ranked within their workspace across its
///   sets. A workspace's first `free` matching requests are among these. Workspace and
///   set are matched as ranges (`>= AND <=`) and lead the ORDER BY: with an equality the
///   planner drops them from the order and may sort instead of walking the index. The
///   LIMIT is a plain parameter so the planner knows it is small. Rows still stepped
///   over are only those waiting for a retry's backoff or placed on another worker.
/// - `chosen`: candidates within their workspace's `max_running` (its running jobs plus
///   the rank), the `free` ones with the least share first, then priority, then age. A
///   candidate's share is `(running + rank - 1) / weight`: what the workspace would run,
///   relative to its weight, if it got this one next.
/// - `picked`: the chosen rows locked `FOR UPDATE SKIP LOCKED`, re-checked as pending.
///   Locking only after choosing, not inside the lateral, locks at most `free` rows:
///   locking in the lateral would hold up to `free` rows of every set until commit, and
///   another replica's claim would skip all of them, handing its workers rows further
///   down each queue than fair share says. A row skipped here (another claim has it) is
///   simply not claimed this time; `chosen` tells the caller the worker did find work,
///   so the `exhausted` shortcut is not taken for its labels.
///
/// Running counts read in this statement include the claims of workers earlier in the
/// same round (same transaction), so a round over many workers shares out as it goes.
const FAIR_CLAIM: &str = "\
WITH RECURSIVE ws AS MATERIALIZED ( \
  SELECT w.id, w.weight, w.max_running, \
         (SELECT count(*) FROM work_requests r \
           WHERE r.workspace_id = w.id AND r.status = 'running' AND r.kind = 'job') AS running \
  FROM workspaces w \
  WHERE $4::uuid[] IS NULL OR w.id = ANY($4)), \
pairs AS ( \
  (SELECT wr.workspace_id, wr.requirements FROM work_requests wr \
    WHERE wr.status = 'pending' ORDER BY wr.workspace_id, wr.requirements LIMIT 1) \
  UNION ALL \
  SELECT n.workspace_id, n.requirements FROM pairs p CROSS JOIN LATERAL ( \
    SELECT wr.workspace_id, wr.requirements FROM work_requests wr \
    WHERE wr.status = 'pending' \
      AND (wr.workspace_id, wr.requirements) > (p.workspace_id, p.requirements) \
    ORDER BY wr.workspace_id, wr.requirements LIMIT 1) n), \
sets AS MATERIALIZED ( \
  SELECT ws.id, ws.running, ws.max_running, ws.weight, pairs.requirements \
  FROM pairs JOIN ws ON ws.id = pairs.workspace_id \
  WHERE pairs.requirements <@ $1 AND pairs.requirements @> $2 \
    AND (ws.max_running IS NULL OR ws.running < ws.max_running)), \
cand AS ( \
  SELECT c.id, c.prio, c.created_at, sets.running, sets.max_running, sets.weight, \
         row_number() OVER (PARTITION BY sets.id \
             ORDER BY c.prio DESC, c.created_at, c.id) AS rank \
  FROM sets CROSS JOIN LATERAL ( \
    SELECT wr.id, wr.priority_base + wr.priority_adjustment AS prio, wr.created_at \
    FROM work_requests wr \
    WHERE wr.workspace_id >= sets.id AND wr.workspace_id <= sets.id \
      AND wr.requirements >= sets.requirements AND wr.requirements <= sets.requirements \
      AND wr.status = 'pending' AND wr.kind = 'job' \
      AND (wr.not_before IS NULL OR wr.not_before <= now()) \
      AND NOT EXISTS (SELECT 1 FROM request_placement p WHERE p.request_id = wr.id \
        AND (p.pin_worker_id <> $5 OR p.avoid_worker_id = $5)) \
    ORDER BY wr.workspace_id, wr.requirements, \
      wr.priority_base + wr.priority_adjustment DESC, wr.created_at, wr.id \
    LIMIT $3) c), \
chosen AS ( \
  SELECT id FROM cand \
  WHERE max_running IS NULL OR running + rank <= max_running \
  ORDER BY (running + rank - 1)::float8 / weight, prio DESC, created_at, id LIMIT $3), \
picked AS ( \
  SELECT wr.id FROM work_requests wr JOIN chosen ON chosen.id = wr.id \
  WHERE wr.status = 'pending' AND wr.kind = 'job' \
  FOR UPDATE OF wr SKIP LOCKED), \
claimed AS ( \
  UPDATE work_requests SET status = 'running', attempt_count = attempt_count + 1 \
  FROM picked WHERE work_requests.id = picked.id \
  RETURNING work_requests.id, work_requests.attempt_count, work_requests.spec, \
    work_requests.secret_env, work_requests.parent_id, work_requests.created_at, \
    work_requests.not_before, work_requests.traceparent) \
SELECT (SELECT count(*) FROM chosen) AS chosen, claimed.id, claimed.attempt_count, \
  claimed.spec, claimed.secret_env, claimed.parent_id, claimed.created_at, \
  claimed.not_before, claimed.traceparent \
FROM (SELECT 1) AS one LEFT JOIN claimed ON true";

/// In the caller's transaction: locks the workers that may take work (id order, so two
/// claimers never deadlock), counts their free slots, claims that many matching pending
/// requests for each (fair share between workspaces, see [`FAIR_CLAIM`]) and records an
/// attempt for each claim. Also says whether any of them had a free slot.
async fn claim(
    conn: &mut AsyncPgConnection,
    worker_ids: &[Uuid],
) -> Result<(Vec<(Uuid, Claimed)>, bool)> {
    type WorkerGate = (
        Uuid,
        String,
        i32,
        serde_json::Value,
        serde_json::Value,
        Option<Vec<Uuid>>,
    );
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
            workers::workspaces,
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
        .filter(attempts::state.ne(AttemptState::Finished))
        .group_by(attempts::worker_id)
        .select((attempts::worker_id, diesel::dsl::count_star()))
        .load::<(Option<Uuid>, i64)>(conn)
        .await?
        .into_iter()
        .collect();
    let free_of = |worker_id: &Uuid, concurrency: i32| {
        i64::from(concurrency) - live.get(&Some(*worker_id)).copied().unwrap_or(0)
    };
    let had_room = gates.iter().any(|g| free_of(&g.0, g.2) > 0);
    if !had_room {
        return Ok((Vec::new(), false));
    }
    lock_limited_workspaces(conn).await?;
    // The server's clock, like the attempt's other times, read after the slot counts: a
    // finish committed during this transaction has an earlier finished_at than this.
    let assigned_at = Utc::now();
    let mut claimed: Vec<(Uuid, Claimed)> = Vec::new();
    let mut new_attempts = Vec::new();
    // Offers (label sets and workspaces) that found less work than they had room for:
    // another worker offering the same would find nothing either, in this transaction.
    type Offer = (serde_json::Value, serde_json::Value, Option<Vec<Uuid>>);
    let mut exhausted: Vec<Offer> = Vec::new();
    let placed: bool = diesel::select(diesel::dsl::exists(
        request_placement::table
            .inner_join(work_requests::table)
            .filter(work_requests::status.eq(Status::Pending)),
    ))
    .get_result(conn)
    .await?;
    for (worker_id, name, concurrency, labels, metadata, served) in &gates {
        let free = free_of(worker_id, *concurrency);
        if free <= 0 {
            continue;
        }
        let (matching, exclusive) = match_labels(labels, metadata);
        let mut served = served.clone();
        if let Some(ids) = served.as_mut() {
            ids.sort_unstable();
        }
        let offer = (matching, exclusive, served);
        // A request placed on (or off) a worker makes two workers with the same offer
        // see different work: the shortcut holds only while none is pending.
        if !placed && exhausted.contains(&offer) {
            continue;
        }
        // Requirements must be a subset of what the worker has, and must name every
        // exclusive label of the worker. Never a workflow parent; never before a retry's
        // backoff has passed; only the workspaces the worker serves.
        let rows: Vec<ClaimRow> = diesel::sql_query(FAIR_CLAIM)
            .bind::<Jsonb, _>(&offer.0)
            .bind::<Jsonb, _>(&offer.1)
            .bind::<BigInt, _>(free)
            .bind::<Nullable<Array<SqlUuid>>, _>(&offer.2)
            .bind::<SqlUuid, _>(*worker_id)
            .load(conn)
            .await?;
        let chosen = rows.as_slice().first().map_or(0, |r| r.chosen);
        if chosen < free {
            exhausted.push(offer);
        }
        for row in rows {
            let (Some(id), Some(attempt_count), Some(spec), Some(created_at)) =
                (row.id, row.attempt_count, row.spec, row.created_at)
            else {
                continue;
            };
            let ready_at = row.not_before.map_or(created_at, |at| at.max(created_at));
            crate::observe::assigned(ready_at, assigned_at);
            new_attempts.push((
                attempts::work_request_id.eq(id),
                attempts::number.eq(attempt_count),
                attempts::worker_id.eq(*worker_id),
                attempts::worker_name.eq(name.clone()),
                attempts::state.eq(AttemptState::Assigned),
                attempts::assigned_at.eq(assigned_at),
            ));
            claimed.push((
                *worker_id,
                Claimed {
                    id,
                    attempt_count,
                    spec,
                    secret_env: row.secret_env,
                    parent_id: row.parent_id,
                    created_at,
                    traceparent: row.traceparent,
                },
            ));
        }
    }
    if new_attempts.is_empty() {
        return Ok((claimed, had_room));
    }
    diesel::insert_into(attempts::table)
        .values(new_attempts)
        .execute(conn)
        .await?;
    let mut parents: Vec<WorkRequestId> = claimed.iter().filter_map(|(_, c)| c.parent_id).collect();
    parents.sort_unstable();
    parents.dedup();
    for parent_id in parents {
        lifecycle::refresh_parent(conn, parent_id).await?;
    }
    Ok((claimed, had_room))
}

/// Locks the rows of the workspaces with a `max_running` limit, in id order, for the
/// rest of the claim.
///
/// Two replicas claiming at once would otherwise each count a limited workspace's
/// running jobs before the other's claims commit, and together pass the limit. With the
/// lock, the second claimer waits until the first commits and then counts its claims
/// (each statement reads what is committed). `FOR NO KEY UPDATE` does not conflict with
/// the key-share lock a submission's foreign key takes on its workspace, so submissions
/// go on meanwhile.
///
/// No deadlock: every claimer takes worker rows first, then these rows, each in id
/// order, and takes no other workspace lock; a submission under `max_pending`
/// (`limits::admit`) takes only workspace rows, in id order, and then inserts, which
/// waits for no lock a claimer holds (new rows, and key-share on its own workspace).
async fn lock_limited_workspaces(conn: &mut AsyncPgConnection) -> Result<()> {
    let _: Vec<Uuid> = workspaces::table
        .filter(workspaces::max_running.is_not_null())
        .order(workspaces::id)
        .select(workspaces::id)
        .for_no_key_update()
        .load(conn)
        .await?;
    Ok(())
}

/// Turns bitmap scans and JIT compilation off for the rest of the caller's transaction.
///
/// The queue table grows and drains faster than statistics follow: with an estimate of a
/// handful of pending rows the planner reads (and for a claim, sorts) every entry of
/// `work_requests_queue`, including the dead ones a drained backlog leaves until vacuum,
/// instead of walking the index in order and stopping at the limit. A backlog is exactly
/// when claims must be cheap. The fair-share claim's estimates (a LATERAL per workspace)
/// can pass `jit_above_cost` although it reads a few rows per workspace; compiling it
/// would cost tens of milliseconds for a query that runs in one.
async fn no_bitmap_scans(conn: &mut AsyncPgConnection) -> Result<()> {
    diesel::sql_query(
        "SELECT set_config('enable_bitmapscan', 'off', true), set_config('jit', 'off', true)",
    )
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
}
