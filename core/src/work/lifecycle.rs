//! Every change of a work request's state, and of its attempts' states.
//!
//! This module is the only writer of `work_requests.status` (the scheduler's claim query,
//! which moves a batch of pending requests to running in one statement, is the one other
//! place, and it refreshes workflow parents through here). Two doors matter most:
//!
//! - [`end`] is the **one door to a terminal state**. Whatever makes a request completed
//!   or aborted (a finished attempt, a cancel, a failed dependency, a manual reject, a
//!   workflow that is done, a worker lost for good) goes through it. In the caller's
//!   transaction it records the verdict, then settles the request's blocked dependants
//!   (released when their dependencies are satisfied, aborted through this same door when
//!   one failed) and refreshes its workflow parent (which, when the parent is done, ends
//!   the parent through this same door too). Nothing is left waiting on a request that
//!   has already ended.
//! - The **fenced attempt transitions** ([`accepted`], [`started`], [`finish`],
//!   [`withdraw`], [`worker_lost`], [`containers_stopped`], [`stop_unconfirmed`]) each name an attempt and change nothing unless it is
//!   the request's current, unfinished attempt (and, for a worker's report, that worker's).
//!   Attempt numbers are fencing tokens: a stale report is answered `false`, not applied.
//!
//! Locks: every transition locks the request row (and the attempt's) first with
//! [`lock_current`]; a transition that ends a request then locks its dependants and its
//! parent, always in that order, so two transitions never wait on each other in opposite
//! orders. Callers that cancel a workflow lock its steps before the workflow (see
//! `workflow`).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Nullable, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::access::auth::Identity;
use crate::access::roles::{self, WorkspaceRole};
use crate::artifacts::inputs;
use crate::error::{Error, Result};
use crate::observe;
use crate::store::schema::{attempts, work_requests};
use crate::work::deps::{self, Fate};
use crate::work::ids::{AttemptKey, WorkRequestId};
use crate::work::logs;
use crate::work::report::{Finished, Health, Started};
use crate::work::spec::PortMapping;
use crate::work::state::{
    AttemptState, Closing, Ending, Kind, Outcome, Reason, Status, UnblockStrategy, Verdict,
    WorkResult, verdict,
};
use crate::work::workflow;

/// **The one door to a terminal state.** Ends `id` (whose row the caller has locked and
/// found not terminal) as `closing` says, settles its dependants, and refreshes its
/// workflow parent, all in the caller's transaction. `parent_id` is the request's
/// workflow parent, as the caller's locking read found it.
pub(crate) async fn end(
    conn: &mut AsyncPgConnection,
    id: WorkRequestId,
    parent_id: Option<WorkRequestId>,
    closing: &Closing,
) -> Result<()> {
    end_all(conn, &[(id, parent_id)], closing).await
}

/// [`end`] for several requests at once: all of them are written as ended before any of
/// them is settled, so one of them is never aborted as a failed dependency of another
/// (cancelling a workflow ends all its open steps as cancelled).
pub(crate) async fn end_all(
    conn: &mut AsyncPgConnection,
    requests: &[(WorkRequestId, Option<WorkRequestId>)],
    closing: &Closing,
) -> Result<()> {
    let ids: Vec<WorkRequestId> = requests.iter().map(|(id, _)| *id).collect();
    write_end(conn, &ids, closing).await?;
    settle(conn, requests.to_vec()).await
}

/// Writes a terminal state on the request rows.
async fn write_end(
    conn: &mut AsyncPgConnection,
    ids: &[WorkRequestId],
    closing: &Closing,
) -> Result<()> {
    let Closing {
        ending,
        message,
        exit_code,
        started_at,
    } = closing;
    let now = Utc::now();
    let ended: Vec<(DateTime<Utc>, Option<DateTime<Utc>>, String)> =
        diesel::update(work_requests::table.filter(work_requests::id.eq_any(ids)))
            .set((
                work_requests::status.eq(ending.status),
                work_requests::result.eq(ending.result),
                work_requests::reason.eq(ending.reason),
                message.as_ref().map(|m| work_requests::message.eq(m)),
                exit_code.map(|c| work_requests::exit_code.eq(c)),
                work_requests::completed_at.eq(now),
                started_at.map(|at| {
                    work_requests::started_at.eq(coalesce(work_requests::started_at, at))
                }),
            ))
            .returning((
                work_requests::created_at,
                work_requests::started_at,
                work_requests::kind,
            ))
            .get_results(conn)
            .await?;
    for (created_at, started_at, kind) in ended {
        // A workflow parent is the sum of its steps: counting it too would count twice.
        if kind == Kind::Workflow.as_str() {
            continue;
        }
        observe::finished(
            ending.result.map(WorkResult::as_str),
            ending.reason.as_str(),
            created_at,
            started_at,
            now,
        );
    }
    Ok(())
}

/// Moves along what depends on requests that just ended: each blocked dependant is
/// released, or aborted when a dependency failed; each workflow parent is refreshed.
/// Whatever ends in consequence is settled in turn.
async fn settle(
    conn: &mut AsyncPgConnection,
    mut ended: Vec<(WorkRequestId, Option<WorkRequestId>)>,
) -> Result<()> {
    while let Some((done, parent)) = ended.pop() {
        for (dependant, dependant_parent, fate) in deps::fates_of_dependants(conn, done).await? {
            match fate {
                Fate::Abort(message) => {
                    let closing = Closing::new(Ending::aborted(Reason::DependencyFailed), message);
                    write_end(conn, &[dependant], &closing).await?;
                    tracing::info!(work_request = %dependant, dependency = %done, "aborted: a dependency did not succeed");
                    // Its own dependants and parent are settled when it is taken.
                    ended.push((dependant, dependant_parent));
                    continue;
                }
                Fate::Release => {
                    set_status(conn, dependant, Status::Pending).await?;
                    tracing::info!(work_request = %dependant, "dependencies done; queued");
                }
                Fate::Wait => continue,
            }
            if let Some(parent) = dependant_parent {
                refresh_parent_into(conn, parent, &mut ended).await?;
            }
        }
        if let Some(parent) = parent {
            refresh_parent_into(conn, parent, &mut ended).await?;
        }
    }
    Ok(())
}

diesel::define_sql_function! {
    /// SQL's `coalesce` for a start time: keeps an earlier one.
    fn coalesce(earlier: Nullable<Timestamptz>, now: Timestamptz) -> Nullable<Timestamptz>;
}

/// Sets a non-terminal status.
async fn set_status(conn: &mut AsyncPgConnection, id: WorkRequestId, status: Status) -> Result<()> {
    debug_assert!(!status.is_terminal(), "terminal states go through `end`");
    diesel::update(work_requests::table.find(id))
        .set(work_requests::status.eq(status))
        .execute(conn)
        .await?;
    Ok(())
}

/// Refreshes a workflow parent from its steps; a parent that is now done is written as
/// ended and queued in `ended` to be settled like any other request.
async fn refresh_parent_into(
    conn: &mut AsyncPgConnection,
    parent: WorkRequestId,
    ended: &mut Vec<(WorkRequestId, Option<WorkRequestId>)>,
) -> Result<()> {
    if let Some(closing) = workflow::refresh_parent(conn, parent).await? {
        write_end(conn, &[parent], &closing).await?;
        // Workflows do not nest: a parent has no parent of its own.
        ended.push((parent, None));
    }
    Ok(())
}

/// Refreshes the workflow parent of a step whose status changed without ending.
pub(crate) async fn refresh_parent(
    conn: &mut AsyncPgConnection,
    parent: WorkRequestId,
) -> Result<()> {
    let mut ended = Vec::new();
    refresh_parent_into(conn, parent, &mut ended).await?;
    settle(conn, ended).await
}

/// The request an attempt belongs to, as [`lock_current`] found it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Current {
    /// The request's status.
    pub status: Status,
    /// Its workflow parent.
    pub parent_id: Option<WorkRequestId>,
}

/// Whether `key` is the current, unfinished attempt of its request on `worker_id` (any
/// worker for `None`); locks the request row (and the attempt's) for the caller's
/// transaction, in one statement.
///
/// The lock is `FOR NO KEY UPDATE`: it serializes the writers of the request as `FOR
/// UPDATE` would, but does not wait for transactions that merely reference the row
/// (inserting attempts or log chunks takes a key-share lock for the foreign key).
pub(crate) async fn lock_current(
    conn: &mut AsyncPgConnection,
    key: AttemptKey,
    worker_id: Option<Uuid>,
) -> Result<Option<Current>> {
    type Row = (
        Status,
        i32,
        Option<WorkRequestId>,
        Option<Uuid>,
        AttemptState,
    );
    let row: Option<Row> = work_requests::table
        .inner_join(attempts::table)
        .filter(work_requests::id.eq(key.id))
        .filter(attempts::number.eq(key.attempt))
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
    Ok(match row {
        Some((status, current, parent_id, owner, state))
            if current == key.attempt
                && state != AttemptState::Finished
                && (worker_id.is_none() || owner == worker_id) =>
        {
            Some(Current { status, parent_id })
        }
        _ => None,
    })
}

/// The worker took the attempt. In the caller's transaction; false for a stale attempt.
pub(crate) async fn accepted(
    conn: &mut AsyncPgConnection,
    worker_id: Uuid,
    key: AttemptKey,
) -> Result<bool> {
    if lock_current(conn, key, Some(worker_id)).await?.is_none() {
        return Ok(false);
    }
    diesel::update(attempts::table.find((key.id, key.attempt)))
        .filter(attempts::state.eq(AttemptState::Assigned))
        .set((
            attempts::state.eq(AttemptState::Accepted),
            attempts::accepted_at.eq(Utc::now()),
        ))
        .execute(conn)
        .await?;
    Ok(true)
}

/// The attempt's container started. In the caller's transaction; false for a stale
/// attempt.
pub(crate) async fn started(
    conn: &mut AsyncPgConnection,
    worker_id: Uuid,
    key: AttemptKey,
    report: &Started,
) -> Result<bool> {
    if lock_current(conn, key, Some(worker_id)).await?.is_none() {
        return Ok(false);
    }
    let now = Utc::now();
    diesel::update(attempts::table.find((key.id, key.attempt)))
        .set((
            attempts::state.eq(AttemptState::Running),
            attempts::container_id.eq(&report.container_id),
            attempts::started_at.eq(now),
            attempts::pull_ms.eq(report.pull_ms),
            attempts::ports.eq(ports_json(&report.ports)),
            attempts::has_healthcheck.eq(report.has_healthcheck),
        ))
        .execute(conn)
        .await?;
    diesel::update(work_requests::table.find(key.id))
        .filter(work_requests::started_at.is_null())
        .set(work_requests::started_at.eq(now))
        .execute(conn)
        .await?;
    Ok(true)
}

/// The bound ports as `attempts.ports` stores them.
fn ports_json(ports: &[PortMapping]) -> serde_json::Value {
    serde_json::to_value(ports).unwrap_or_else(|_| serde_json::Value::Array(Vec::new()))
}

/// Records a running container's HEALTHCHECK status on its attempt, in the caller's
/// transaction: fenced like every report (the current attempt, held by `worker_id`), so a
/// replaced attempt's container cannot make its slot look healthy. Returns false for a
/// stale attempt. Written only on a change (the worker sends only changes), so `health_at`
/// is when the status became what it is.
pub(crate) async fn health_changed(
    conn: &mut AsyncPgConnection,
    worker_id: Uuid,
    key: AttemptKey,
    report: &Health,
) -> Result<bool> {
    if lock_current(conn, key, Some(worker_id)).await?.is_none() {
        return Ok(false);
    }
    diesel::update(attempts::table.find((key.id, key.attempt)))
        .set((
            attempts::health.eq(report.status.as_str()),
            attempts::health_output.eq(&report.output),
            attempts::health_at.eq(Utc::now()),
        ))
        .execute(conn)
        .await?;
    Ok(true)
}

/// Reports about an attempt that arrived together with its Finished and are recorded by
/// the same statements (see `recorder`): the result is what applying them one after the
/// other in one transaction would give.
#[derive(Clone, Copy, Default)]
pub(crate) struct Folded<'a> {
    /// The worker's Accept came first.
    pub accepted: bool,
    /// The worker's Started came first.
    pub started: Option<&'a Started>,
}

/// Records a finished attempt and settles its request, in the caller's transaction.
/// `worker_id` None skips the ownership check (server-side endings). `folded` are the
/// Accept and Started of the same attempt recorded by the same statements. Returns false
/// for a stale attempt.
pub(crate) async fn finish(
    conn: &mut AsyncPgConnection,
    worker_id: Option<Uuid>,
    key: AttemptKey,
    report: &Finished,
    folded: Folded<'_>,
) -> Result<bool> {
    let Some(Current {
        status: current,
        parent_id,
    }) = lock_current(conn, key, worker_id).await?
    else {
        return Ok(false);
    };
    let verdict = verdict(
        report.outcome,
        report.exit_code,
        !report.output_error.is_empty(),
    );
    let now = Utc::now();
    // Only what the reports carry; an earlier Started may have set them.
    let container_id = [
        Some(report.container_id.as_str()),
        folded.started.map(|s| s.container_id.as_str()),
    ]
    .into_iter()
    .flatten()
    .find(|c| !c.is_empty());
    let pull_ms = report.pull_ms.or(folded.started.and_then(|s| s.pull_ms));
    // A failure to collect outputs is said on the attempt, after Docker's message.
    let message = match (report.message.as_str(), report.output_error.as_str()) {
        (m, "") => m.to_owned(),
        ("", e) => format!("collecting outputs failed: {e}"),
        (m, e) => format!("{m}; collecting outputs failed: {e}"),
    };
    let output_artifact = match report.output_artifact_id {
        Some(id) => inputs::output_of_attempt(conn, key, id).await?,
        None => None,
    };
    diesel::update(attempts::table.find((key.id, key.attempt)))
        .set((
            attempts::state.eq(AttemptState::Finished),
            attempts::outcome.eq(report.outcome),
            attempts::exit_code.eq(report.exit_code),
            attempts::reason.eq(verdict.reason()),
            attempts::message.eq(&message),
            attempts::finished_at.eq(now),
            output_artifact.map(|id| attempts::output_artifact_id.eq(id)),
            attempts::peak_memory_bytes.eq(report.peak_memory_bytes),
            attempts::cpu_time_ns.eq(report.cpu_time_ns),
            attempts::run_ms.eq(report.run_ms),
            container_id.map(|c| attempts::container_id.eq(c)),
            pull_ms.map(|ms| attempts::pull_ms.eq(ms)),
            folded.accepted.then_some(attempts::accepted_at.eq(now)),
            folded
                .started
                .is_some()
                .then_some(attempts::started_at.eq(now)),
        ))
        .execute(conn)
        .await?;
    if !report.log_incomplete.is_empty() {
        logs::note_incomplete(conn, key, &report.log_incomplete).await?;
    }
    if let Some(artifact) = output_artifact {
        inputs::pin_step_output(conn, key.id, artifact).await?;
    }
    // The request's start time, when the Started was folded in here.
    let started_at = folded.started.is_some().then_some(now);
    if current != Status::Running {
        // A request cancelled while it ran is already aborted: keep that, record the
        // exit. Anything else (a stale status) keeps its state.
        let aborted = current == Status::Aborted;
        if aborted || started_at.is_some() {
            diesel::update(work_requests::table.find(key.id))
                .set((
                    work_requests::exit_code.eq(report.exit_code),
                    started_at.map(|at| {
                        work_requests::started_at.eq(coalesce(work_requests::started_at, at))
                    }),
                ))
                .execute(conn)
                .await?;
        }
        return Ok(true);
    }
    match verdict {
        Verdict::Requeue(reason) => {
            observe::requeued(reason.as_str());
            diesel::update(work_requests::table.find(key.id))
                .set((
                    work_requests::status.eq(Status::Pending),
                    work_requests::reason.eq(reason),
                    work_requests::message.eq(&report.message),
                    work_requests::exit_code.eq(report.exit_code),
                    started_at.map(|at| {
                        work_requests::started_at.eq(coalesce(work_requests::started_at, at))
                    }),
                ))
                .execute(conn)
                .await?;
            if let Some(parent) = parent_id {
                refresh_parent(conn, parent).await?;
            }
        }
        Verdict::Ends(ending) => {
            // A failure with automatic retries left goes back to the queue instead.
            if ending.result == Some(WorkResult::Failure)
                && let Some(plan) = deps::retry_plan(conn, key, report).await?
            {
                let again = StartOver {
                    status: Status::Pending,
                    message: &plan.message,
                    exit_code: report.exit_code,
                    not_before: Some(plan.not_before),
                    automatic: true,
                    started_at,
                };
                start_over(conn, key.id, again).await?;
                observe::requeued("retry");
                if let Some(parent) = parent_id {
                    refresh_parent(conn, parent).await?;
                }
                return Ok(true);
            }
            let closing = Closing {
                ending,
                message: Some(message.clone()),
                exit_code: Some(report.exit_code),
                started_at,
            };
            end(conn, key.id, parent_id, &closing).await?;
        }
    }
    Ok(true)
}

/// Ends an attempt that never ran and puts its request back in the queue (a Reject, an
/// assignment not accepted in time or not deliverable). In a transaction of its own when
/// `conn` has none open. Returns false for a stale attempt.
pub(crate) async fn withdraw(
    conn: &mut AsyncPgConnection,
    key: AttemptKey,
    reason: Reason,
) -> Result<bool> {
    conn.transaction::<_, Error, _>(async |conn| {
        let Some(Current { status, parent_id }) = lock_current(conn, key, None).await? else {
            return Ok(false);
        };
        end_attempt(conn, key, reason).await?;
        if status == Status::Running {
            set_status(conn, key.id, Status::Pending).await?;
            observe::requeued(reason.as_str());
            if let Some(parent) = parent_id {
                refresh_parent(conn, parent).await?;
            }
        }
        Ok(true)
    })
    .await
}

/// Marks an attempt finished with `reason` and nothing else known.
async fn end_attempt(conn: &mut AsyncPgConnection, key: AttemptKey, reason: Reason) -> Result<()> {
    diesel::update(attempts::table.find((key.id, key.attempt)))
        .set((
            attempts::state.eq(AttemptState::Finished),
            attempts::reason.eq(reason),
            attempts::finished_at.eq(Utc::now()),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Ends an assigned attempt as if its worker reported `outcome` without running it (the
/// assignment could not even be built). In a transaction of its own.
pub async fn finish_without_running(
    conn: &mut AsyncPgConnection,
    key: AttemptKey,
    outcome: Outcome,
    message: &str,
) -> Result<()> {
    let report = Finished::without_running(outcome, message);
    conn.transaction::<_, Error, _>(async |conn| {
        finish(conn, None, key, &report, Folded::default()).await
    })
    .await
    .map(|_| ())
}

/// Ends the live attempts of `worker_id` that the worker no longer runs (all but `keep`):
/// each request goes back to pending while its retry budget lasts, else completes with
/// `error`. One transaction per attempt. Returns the attempts ended.
///
/// Attempts waiting for another worker to stop their container ([`await_stop`]) are left
/// to [`containers_stopped`] and [`stop_unconfirmed`]: only a confirmed stop or the end
/// of the wait lets their requests run again.
pub async fn worker_lost(
    conn: &mut AsyncPgConnection,
    worker_id: Uuid,
    keep: &[AttemptKey],
) -> Result<Vec<AttemptKey>> {
    let live: Vec<(WorkRequestId, i32)> = attempts::table
        .filter(attempts::worker_id.eq(worker_id))
        .filter(attempts::state.ne(AttemptState::Finished))
        .filter(attempts::stop_requested_at.is_null())
        .select((attempts::work_request_id, attempts::number))
        .load(conn)
        .await?;
    let mut lost = Vec::new();
    for key in live
        .into_iter()
        .map(|(id, n)| AttemptKey::new(id, n))
        .filter(|key| !keep.contains(key))
    {
        if lose(conn, key, Some(worker_id), None).await? {
            lost.push(key);
        }
    }
    Ok(lost)
}

/// Ends `key` as `worker-lost` (owned by `owner`, when given), noting `message` on the
/// attempt: its request goes back to pending while its retry budget lasts, else completes
/// with `error`. In a transaction of its own; false for a stale attempt.
async fn lose(
    conn: &mut AsyncPgConnection,
    key: AttemptKey,
    owner: Option<Uuid>,
    message: Option<&str>,
) -> Result<bool> {
    conn.transaction::<_, Error, _>(async |conn| {
        let Some(Current { status, parent_id }) = lock_current(conn, key, owner).await? else {
            return Ok(false);
        };
        end_attempt(conn, key, Reason::WorkerLost).await?;
        if let Some(message) = message {
            diesel::update(attempts::table.find((key.id, key.attempt)))
                .set(attempts::message.eq(message))
                .execute(conn)
                .await?;
        }
        if status != Status::Running {
            return Ok(true);
        }
        let budget: i32 = work_requests::table
            .find(key.id)
            .select(work_requests::retry_budget)
            .first(conn)
            .await?;
        if budget > 0 {
            diesel::update(work_requests::table.find(key.id))
                .set((
                    work_requests::status.eq(Status::Pending),
                    work_requests::retry_budget.eq(budget - 1),
                ))
                .execute(conn)
                .await?;
            observe::requeued(Reason::WorkerLost.as_str());
            if let Some(parent) = parent_id {
                refresh_parent(conn, parent).await?;
            }
        } else {
            let why = message.map_or_else(
                || "the worker was lost and the retry budget is spent".to_owned(),
                |m| format!("{m}; the retry budget is spent"),
            );
            let closing = Closing::new(
                Ending::completed(WorkResult::Error, Reason::WorkerLost),
                &why,
            );
            end(conn, key.id, parent_id, &closing).await?;
        }
        Ok(true)
    })
    .await
}

/// The lost worker `worker_id` shares its Docker engine with a live worker: instead of
/// running its live attempts again at once, mark them as waiting until that worker
/// confirms their containers are gone ([`containers_stopped`]) or the wait runs out
/// ([`stop_unconfirmed`]). In the caller's transaction. Returns the attempts newly marked.
pub async fn await_stop(conn: &mut AsyncPgConnection, worker_id: Uuid) -> Result<Vec<AttemptKey>> {
    let marked: Vec<(WorkRequestId, i32)> = diesel::update(
        attempts::table
            .filter(attempts::worker_id.eq(worker_id))
            .filter(attempts::state.ne(AttemptState::Finished))
            .filter(attempts::stop_requested_at.is_null()),
    )
    .set(attempts::stop_requested_at.eq(Utc::now()))
    .returning((attempts::work_request_id, attempts::number))
    .get_results(conn)
    .await?;
    Ok(marked
        .into_iter()
        .map(|(id, n)| AttemptKey::new(id, n))
        .collect())
}

/// Worker `helper` says the containers of `stopped` are gone from its Docker engine (it
/// found and removed them), and that it found no container of `none_found`. Each of them
/// that is still current, waiting for that ([`await_stop`]), and owned by a worker on
/// the same engine as `helper` (`helper` itself, back after a reconnect, included) ends
/// as `worker-lost` and its request may run again. The rest change nothing (a repeat, or
/// a confirmation from a worker elsewhere).
///
/// Finding no container proves the attempt cannot run on only when its container is
/// known to have existed (the attempt was reported started, so the container was made
/// and is gone now), or when the lost worker says so itself, back again with the attempt
/// given up. Otherwise the lost worker, cut off but alive, may still be pulling the image
/// or creating the container, and another worker's look came too early: such attempts
/// keep waiting, for the owner's return, a later look, or the stop wait.
///
/// One transaction per attempt; returns the attempts ended.
pub async fn containers_stopped(
    conn: &mut AsyncPgConnection,
    helper: Uuid,
    stopped: &[AttemptKey],
    none_found: &[AttemptKey],
) -> Result<Vec<AttemptKey>> {
    #[derive(QueryableByName)]
    struct Owner {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        owner: Uuid,
        #[diesel(sql_type = diesel::sql_types::Text)]
        owner_name: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        helper_name: String,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        started: bool,
    }
    let mut ended = Vec::new();
    let reports = stopped
        .iter()
        .map(|key| (*key, true))
        .chain(none_found.iter().map(|key| (*key, false)));
    for (key, found) in reports {
        let owner: Option<Owner> = diesel::sql_query(
            "SELECT a.worker_id AS owner, o.name AS owner_name, h.name AS helper_name, \
               a.started_at IS NOT NULL AS started \
             FROM attempts a \
             JOIN workers o ON o.id = a.worker_id \
             JOIN workers h ON h.id = $3 \
             WHERE a.work_request_id = $1 AND a.number = $2 \
               AND a.stop_requested_at IS NOT NULL AND a.state <> 'finished' \
               AND o.metadata->>'docker_engine_id' = h.metadata->>'docker_engine_id'",
        )
        .bind::<diesel::sql_types::Uuid, _>(key.id)
        .bind::<diesel::sql_types::Integer, _>(key.attempt)
        .bind::<diesel::sql_types::Uuid, _>(helper)
        .get_result(conn)
        .await
        .optional()?;
        let Some(owner) = owner else { continue };
        if !found && !owner.started && owner.owner != helper {
            tracing::info!(%key, helper = %owner.helper_name, owner = %owner.owner_name, "no container found for a lost worker's attempt that never reported starting; it may still be made, so the request keeps waiting");
            continue;
        }
        let message = if owner.owner == helper {
            format!(
                "worker {} was lost; back again, it stopped its container",
                owner.owner_name
            )
        } else {
            format!(
                "worker {} was lost; worker {} on the same Docker engine stopped its container",
                owner.owner_name, owner.helper_name
            )
        };
        if lose(conn, key, Some(owner.owner), Some(&message)).await? {
            ended.push(key);
        }
    }
    Ok(ended)
}

/// Nobody confirmed within `waited` that the container of `key` (waiting since
/// [`await_stop`]) is gone: end it as `worker-lost` anyway, saying so on the attempt, and
/// let its request run again. In a transaction of its own; false for a stale attempt.
pub async fn stop_unconfirmed(
    conn: &mut AsyncPgConnection,
    key: AttemptKey,
    waited: std::time::Duration,
) -> Result<bool> {
    let message = format!(
        "the worker was lost and no worker on its Docker engine confirmed within {} that its container stopped; it may still be running there",
        humantime::format_duration(waited)
    );
    lose(conn, key, None, Some(&message)).await
}

/// What a reconnecting worker is told about the attempts it says it still runs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Still current: it goes on running them.
    pub keep: Vec<AttemptKey>,
    /// No longer current: it must stop them and report nothing more.
    pub abandon: Vec<AttemptKey>,
    /// Current, but their request was cancelled meanwhile: it must stop them.
    pub cancel: Vec<AttemptKey>,
}

/// Sorts the attempts a reconnecting worker reports (see [`Reconciled`]).
pub async fn reconcile(
    conn: &mut AsyncPgConnection,
    worker_id: Uuid,
    reported: &[AttemptKey],
) -> Result<Reconciled> {
    let mut out = Reconciled::default();
    for &key in reported {
        type Row = (
            Status,
            i32,
            Option<Uuid>,
            AttemptState,
            Option<DateTime<Utc>>,
        );
        let row: Option<Row> = work_requests::table
            .inner_join(attempts::table)
            .filter(work_requests::id.eq(key.id))
            .filter(attempts::number.eq(key.attempt))
            .select((
                work_requests::status,
                work_requests::attempt_count,
                attempts::worker_id,
                attempts::state,
                attempts::stop_requested_at,
            ))
            .first(conn)
            .await
            .optional()?;
        match row {
            // An attempt the server already gave up on (another worker on the engine was
            // asked to stop its container) is not taken back.
            Some((status, current, owner, state, None))
                if current == key.attempt
                    && owner == Some(worker_id)
                    && state != AttemptState::Finished =>
            {
                out.keep.push(key);
                if status == Status::Aborted {
                    out.cancel.push(key);
                }
            }
            _ => out.abandon.push(key),
        }
    }
    Ok(out)
}

/// A live attempt whose worker must stop its container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveAttempt {
    /// The attempt.
    pub key: AttemptKey,
    /// The worker running it.
    pub worker_id: Uuid,
}

/// The live attempts of `ids` (at most one per request), with their workers.
pub async fn live_attempts(
    conn: &mut AsyncPgConnection,
    ids: &[WorkRequestId],
) -> Result<Vec<LiveAttempt>> {
    let live: Vec<(WorkRequestId, Option<Uuid>, i32)> = attempts::table
        .filter(attempts::work_request_id.eq_any(ids))
        .filter(attempts::state.ne(AttemptState::Finished))
        .select((
            attempts::work_request_id,
            attempts::worker_id,
            attempts::number,
        ))
        .load(conn)
        .await?;
    Ok(live
        .into_iter()
        .filter_map(|(id, worker, attempt)| {
            worker.map(|worker_id| LiveAttempt {
                key: AttemptKey::new(id, attempt),
                worker_id,
            })
        })
        .collect())
}

/// `CancelWorkRequest`, in one transaction: aborts a blocked, pending or running request
/// (reason `cancelled`) and, for a workflow, every step that has not ended. Returns the
/// live attempts whose containers must be stopped.
pub async fn cancel(
    conn: &mut AsyncPgConnection,
    caller: &Identity,
    id: WorkRequestId,
) -> Result<Vec<LiveAttempt>> {
    conn.transaction::<_, Error, _>(async |conn| {
        // A workflow's steps are locked before the workflow (see `workflow`).
        let steps = workflow::lock_children(conn, id).await?;
        let (status, parent_id, kind): (Status, Option<WorkRequestId>, Kind) =
            work_requests::table
                .find(id)
                .select((
                    work_requests::status,
                    work_requests::parent_id,
                    work_requests::kind,
                ))
                .for_update()
                .first(conn)
                .await
                .optional()?
                .ok_or_else(|| Error::NotFound(format!("work request {id} not found")))?;
        roles::require_on_request(conn, caller, id, WorkspaceRole::Contributor, "cancel").await?;
        if status.is_terminal() {
            return Err(Error::FailedPrecondition(format!(
                "work request {id} is already {status}; only blocked, pending or running requests can be cancelled"
            )));
        }
        let cancelled = Closing::bare(Ending::aborted(Reason::Cancelled));
        let mut ending = vec![(id, parent_id)];
        if kind == Kind::Workflow {
            // Cancelling a workflow aborts its steps that have not ended, all written
            // before any is settled; the parent's steps are its own, it has no parent.
            ending.extend(
                steps
                    .into_iter()
                    .filter(|(_, status)| !status.is_terminal())
                    .map(|(step, _)| (step, None)),
            );
        }
        end_all(conn, &ending, &cancelled).await?;
        let ids: Vec<WorkRequestId> = ending.iter().map(|(id, _)| *id).collect();
        // A live attempt's container must be stopped by its worker.
        live_attempts(conn, &ids).await
    })
    .await
}

/// `berth unblock --reject`: aborts a blocked request (reason `rejected`) through the
/// door, in the caller's transaction.
async fn reject(
    conn: &mut AsyncPgConnection,
    id: WorkRequestId,
    parent_id: Option<WorkRequestId>,
    by: &str,
) -> Result<()> {
    let closing = Closing::new(
        Ending::aborted(Reason::Rejected),
        format!("rejected by {by}"),
    );
    end(conn, id, parent_id, &closing).await
}

/// A blocked request leaves `blocked` for the queue (dependencies done, or accepted).
async fn release(
    conn: &mut AsyncPgConnection,
    id: WorkRequestId,
    parent_id: Option<WorkRequestId>,
) -> Result<()> {
    set_status(conn, id, Status::Pending).await?;
    if let Some(parent) = parent_id {
        refresh_parent(conn, parent).await?;
    }
    Ok(())
}

/// A request that starts over without a verdict: `berth retry` (from a terminal state,
/// the only way out of one, and only on a user's word) or an automatic retry (from
/// running).
struct StartOver<'a> {
    /// Pending, or blocked while dependencies or approval are outstanding.
    status: Status,
    /// Said to the user.
    message: &'a str,
    /// The exit code kept on the request (the failed attempt's, for an automatic retry).
    exit_code: Option<i32>,
    /// Not offered before this (an automatic retry's backoff).
    not_before: Option<DateTime<Utc>>,
    /// Uses up one automatic retry.
    automatic: bool,
    /// The start time to record unless an earlier one was.
    started_at: Option<DateTime<Utc>>,
}

/// Writes a [`StartOver`]. The caller refreshes the workflow parent.
async fn start_over(
    conn: &mut AsyncPgConnection,
    id: WorkRequestId,
    again: StartOver<'_>,
) -> Result<()> {
    debug_assert!(!again.status.is_terminal());
    diesel::update(work_requests::table.find(id))
        .set((
            work_requests::status.eq(again.status),
            work_requests::result.eq(None::<WorkResult>),
            work_requests::reason.eq(Reason::None),
            work_requests::message.eq(again.message),
            work_requests::exit_code.eq(again.exit_code),
            work_requests::completed_at.eq(None::<DateTime<Utc>>),
            work_requests::not_before.eq(again.not_before),
            again
                .automatic
                .then(|| work_requests::retries_left.eq(work_requests::retries_left - 1)),
            again
                .started_at
                .map(|at| work_requests::started_at.eq(coalesce(work_requests::started_at, at))),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// `UnblockWorkRequest`: accepts (pending) or rejects (aborted, through the door, which
/// settles its dependants) a blocked request with the `manual` strategy. Returns whether
/// it became pending.
pub async fn unblock(
    conn: &mut AsyncPgConnection,
    caller: &Identity,
    id: WorkRequestId,
    accept: bool,
) -> Result<bool> {
    conn.transaction::<_, Error, _>(async |conn| {
        type Row = (Status, UnblockStrategy, Option<WorkRequestId>);
        let (status, strategy, parent_id): Row = work_requests::table
            .find(id)
            .select((
                work_requests::status,
                work_requests::unblock_strategy,
                work_requests::parent_id,
            ))
            .for_update()
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| Error::NotFound(format!("work request {id} not found")))?;
        roles::require_on_request(conn, caller, id, WorkspaceRole::Contributor, "unblock").await?;
        if status != Status::Blocked {
            return Err(Error::FailedPrecondition(format!(
                "work request {id} is {status}, not blocked; only a blocked request submitted with --unblock manual can be unblocked"
            )));
        }
        if strategy != UnblockStrategy::Manual {
            return Err(Error::FailedPrecondition(format!(
                "work request {id} is blocked on its dependencies, not on approval (unblock strategy {strategy}); it is queued when they complete"
            )));
        }
        if !accept {
            reject(conn, id, parent_id, &caller.name).await?;
            return Ok(false);
        }
        let deps = deps::dependencies_of(conn, id).await?;
        if let Some(waiting) = deps.iter().find(|d| d.state != deps::DepState::Satisfied) {
            return Err(Error::FailedPrecondition(format!(
                "work request {id} is still waiting on dependency {} ({}); accept it once its dependencies have completed",
                waiting.id, waiting.status
            )));
        }
        release(conn, id, parent_id).await?;
        Ok(true)
    })
    .await
}

/// `RetryWorkRequest`: puts a failed (result failure or error) or aborted request back,
/// as pending, or as blocked when its dependencies are not all satisfied yet or it still
/// needs approval. Returns whether it became pending.
pub async fn retry(
    conn: &mut AsyncPgConnection,
    caller: &Identity,
    id: WorkRequestId,
) -> Result<bool> {
    conn.transaction::<_, Error, _>(async |conn| {
        type Row = (
            Status,
            Option<WorkResult>,
            UnblockStrategy,
            i32,
            Kind,
            Option<WorkRequestId>,
        );
        let (status, result, strategy, attempt_count, kind, parent_id): Row =
            work_requests::table
                .find(id)
                .select((
                    work_requests::status,
                    work_requests::result,
                    work_requests::unblock_strategy,
                    work_requests::attempt_count,
                    work_requests::kind,
                    work_requests::parent_id,
                ))
                .for_update()
                .first(conn)
                .await
                .optional()?
                .ok_or_else(|| Error::NotFound(format!("work request {id} not found")))?;
        roles::require_on_request(conn, caller, id, WorkspaceRole::Contributor, "retry").await?;
        if kind != Kind::Job {
            return Err(Error::FailedPrecondition(format!(
                "work request {id} is a workflow; retry its failed steps instead"
            )));
        }
        let retryable = match status {
            Status::Aborted => true,
            Status::Completed => result != Some(WorkResult::Success),
            _ => false,
        };
        if !retryable {
            let what = if status == Status::Completed {
                "completed successfully".to_owned()
            } else {
                format!("{status} and has not completed")
            };
            return Err(Error::FailedPrecondition(format!(
                "work request {id} {what}; only failed or aborted requests can be retried"
            )));
        }
        // An aborted request's container may still be stopping; its attempt must end
        // first, or it would hold its worker's slot with no request to fence it.
        let live: i64 = attempts::table
            .filter(attempts::work_request_id.eq(id))
            .filter(attempts::state.ne(AttemptState::Finished))
            .count()
            .get_result(conn)
            .await?;
        if live > 0 {
            return Err(Error::FailedPrecondition(format!(
                "work request {id} is still stopping its last attempt's container; retry in a few seconds"
            )));
        }
        let deps = deps::dependencies_of(conn, id).await?;
        if let Some(failed) = deps.iter().find(|d| d.state == deps::DepState::Failed) {
            return Err(Error::FailedPrecondition(format!(
                "dependency {} of work request {id} {}; retry it first (berth retry {})",
                failed.id,
                failed.ending(),
                failed.id
            )));
        }
        let waiting = deps.iter().any(|d| d.state == deps::DepState::Waiting);
        // A manual request that never ran was never accepted: it needs approval again.
        let next = if waiting || (strategy == UnblockStrategy::Manual && attempt_count == 0) {
            Status::Blocked
        } else {
            Status::Pending
        };
        let message = format!("retried by {}", caller.name);
        let again = StartOver {
            status: next,
            message: &message,
            exit_code: None,
            not_before: None,
            automatic: false,
            started_at: None,
        };
        start_over(conn, id, again).await?;
        if let Some(parent) = parent_id {
            refresh_parent(conn, parent).await?;
        }
        tracing::info!(work_request = %id, by = %caller.name, status = %next, "work request retried");
        Ok(next == Status::Pending)
    })
    .await
}
