//! Requests another room makes and stops on its own account, in its own transaction: a
//! service's replica containers. They are ordinary jobs once stored (claimed, fenced,
//! logged and ended like any other); what differs is only how they come and go.
//!
//! - [`insert`] stores one, already validated, as `pending` (with `not_before` for a
//!   backoff), with a retry budget of its own (0 for replicas: a lost worker ends the
//!   request, and the owner decides what comes next), and with a [`Placement`] the claim
//!   honours.
//! - [`stop`] aborts one (reason `cancelled`, with the owner's words as its message)
//!   through the one door, and returns its live attempt for the caller to hand to the hub
//!   once its transaction commits.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::artifacts::inputs;
use crate::error::{Error, Result};
use crate::observe::traces;
use crate::store::models::WorkRequestRow;
use crate::store::schema::{request_placement, work_requests};
use crate::store::secrets::SecretBox;
use crate::work::ids::{Origin, WorkRequestId};
use crate::work::lifecycle::{self, LiveAttempt};
use crate::work::spec::Submission;
use crate::work::state::{Closing, Ending, Reason, Status, UnblockStrategy};

/// Where a request may run besides what its requirements say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Placement {
    /// Any worker its requirements admit.
    #[default]
    Any,
    /// Only this worker (a local restart); `why` is shown while it waits.
    Pin { worker_id: Uuid, why: String },
    /// Any worker but this one (a move off a worker it kept failing on).
    Avoid { worker_id: Uuid, why: String },
}

/// A request made on another room's account.
pub struct OwnRequest {
    pub workspace_id: Uuid,
    /// The user it runs for (shown as its submitter).
    pub created_by: Uuid,
    /// Validated (with `validate_submission`) and then adjusted by the owner (for a
    /// replica: no timeout, published ports, the process's command).
    pub submission: Submission,
    pub origin: Option<Origin>,
    /// Not offered to workers before this.
    pub not_before: Option<DateTime<Utc>>,
    pub placement: Placement,
    /// Worker losses it survives by going back to the queue.
    pub retry_budget: i32,
}

/// Stores `request` as `pending` in the caller's transaction and returns its row. Its
/// secret values are sealed with `secrets`; its inputs are resolved and pinned here. The
/// caller wakes the scheduler once its transaction commits.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    secrets: &SecretBox,
    request: OwnRequest,
) -> Result<WorkRequestRow> {
    let OwnRequest {
        workspace_id,
        created_by,
        submission,
        origin,
        not_before,
        placement,
        retry_budget,
    } = request;
    let sealed = if submission.secret_env.is_empty() {
        None
    } else {
        Some(
            secrets
                .seal(&submission.secret_env)
                .map_err(Error::internal)?,
        )
    };
    let secret_keys: Vec<String> = submission.secret_env.keys().cloned().collect();
    let spec = serde_json::to_value(&submission.spec).map_err(Error::internal)?;
    let requirements = serde_json::to_value(&submission.requirements).map_err(Error::internal)?;
    let id = WorkRequestId::new();
    let pinned = inputs::resolve(
        conn,
        workspace_id,
        &submission.inputs,
        &Default::default(),
        "inputs",
    )
    .await?;
    let row = diesel::insert_into(work_requests::table)
        .values((
            work_requests::id.eq(id),
            work_requests::workspace_id.eq(workspace_id),
            work_requests::status.eq(Status::Pending),
            work_requests::spec.eq(spec),
            work_requests::secret_env.eq(sealed),
            work_requests::secret_env_keys.eq(secret_keys),
            work_requests::requirements.eq(requirements),
            work_requests::priority_base.eq(submission.priority),
            work_requests::created_by.eq(created_by),
            work_requests::unblock_strategy.eq(UnblockStrategy::Deps),
            work_requests::retry_budget.eq(retry_budget),
            work_requests::not_before.eq(not_before),
            work_requests::template_id.eq(origin.map(|o| o.template_id)),
            work_requests::template_version.eq(origin.map(|o| o.version)),
            work_requests::traceparent.eq(traces::current_traceparent()),
        ))
        .returning(WorkRequestRow::as_returning())
        .get_result(conn)
        .await?;
    inputs::insert(conn, id, &pinned).await?;
    let (pin, avoid, why) = match placement {
        Placement::Any => (None, None, String::new()),
        Placement::Pin { worker_id, why } => (Some(worker_id), None, why),
        Placement::Avoid { worker_id, why } => (None, Some(worker_id), why),
    };
    if pin.is_some() || avoid.is_some() {
        diesel::insert_into(request_placement::table)
            .values((
                request_placement::request_id.eq(id),
                request_placement::pin_worker_id.eq(pin),
                request_placement::avoid_worker_id.eq(avoid),
                request_placement::why.eq(why),
            ))
            .execute(conn)
            .await?;
    }
    Ok(row)
}

/// Lifts a pending request's placement (its pinned worker is gone, or no other worker
/// took it): it may run anywhere its requirements admit. False when it had none.
pub async fn lift_placement(conn: &mut AsyncPgConnection, id: WorkRequestId) -> Result<bool> {
    let removed = diesel::delete(request_placement::table.find(id))
        .execute(conn)
        .await?;
    Ok(removed > 0)
}

/// Aborts `id` (reason `cancelled`, `message` said to the user) through the one door in
/// the caller's transaction, unless it has already ended. Returns its live attempt, whose
/// container the caller has the hub stop once the transaction commits.
pub async fn stop(
    conn: &mut AsyncPgConnection,
    id: WorkRequestId,
    message: &str,
) -> Result<Vec<LiveAttempt>> {
    let found: Option<(Status, Option<WorkRequestId>)> = work_requests::table
        .find(id)
        .select((work_requests::status, work_requests::parent_id))
        .for_update()
        .first(conn)
        .await
        .optional()?;
    let Some((status, parent_id)) = found else {
        return Ok(Vec::new());
    };
    if status.is_terminal() {
        return Ok(Vec::new());
    }
    let closing = Closing::new(Ending::aborted(Reason::Cancelled), message);
    lifecycle::end(conn, id, parent_id, &closing).await?;
    lifecycle::live_attempts(conn, &[id]).await
}
