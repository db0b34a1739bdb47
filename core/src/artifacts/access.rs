//! Who may do what with an artifact.
//!
//! Users are judged by their standing in the artifact's workspace, which only
//! [`crate::access::roles`] decides: viewers read, contributors create, upload, relate,
//! delete and change expiry. A caller who may not see the workspace gets the same NOT_FOUND
//! as for an artifact that does not exist.
//!
//! Worker tokens have no standing anywhere; they reach artifacts only through the attempts
//! they hold now, with the notion of "current" the log appends use
//! ([`crate::work::logs`]): the attempt is the request's latest (`attempt_count`), it is
//! bound to this worker (`attempts.worker_id`), and it has not finished.
//! - outputs: CreateArtifact for such an attempt, UploadFile and QueryUpload on the
//!   artifacts it created;
//! - inputs: GetArtifact and ReadFile on artifacts that are inputs
//!   (`work_request_inputs`) of a request whose current attempt it holds.
//!
//! Anything else is PERMISSION_DENIED, or FAILED_PRECONDITION for an attempt of this
//! worker's that is no longer current. An artifact that is not alive
//! ([`crate::artifacts::live`]) is NOT_FOUND for everybody.
//!
//! What it must not touch: it reads and decides; it writes nothing.

use diesel::prelude::*;
use diesel::sql_types::{Bool, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::access::auth::Identity;
use crate::access::roles::{self, WorkspaceRole};
use crate::artifacts::live::alive;
use crate::error::{Error, Result};
use crate::store::schema::{artifacts, attempts, work_requests, workers, workspaces};
use crate::work::state::AttemptState;
use berth_token::TokenKind;

/// What the caller wants to do with an artifact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Get it or read its files: viewers; workers for the inputs of an attempt they hold.
    Read,
    /// Upload its files: contributors; workers for the outputs of an attempt they hold.
    Upload,
    /// Relate, delete, change expiry: contributors only.
    Change,
}

/// The parts of an alive artifact that access and the operations need.
#[derive(Clone, Debug)]
pub struct ArtifactRef {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub workspace: String,
    pub store_id: Uuid,
    pub complete: bool,
}

/// The NOT_FOUND for an artifact that does not exist, is not alive, or that the caller
/// may not see.
pub fn no_such_artifact(id: Uuid) -> Error {
    Error::NotFound(format!("artifact {id} not found"))
}

/// The workspace an attempt's outputs go to.
#[derive(Clone, Debug)]
pub struct HeldAttempt {
    pub workspace_id: Uuid,
    pub workspace: String,
}

/// The worker a worker token is bound to.
pub async fn worker_of(conn: &mut AsyncPgConnection, caller: &Identity) -> Result<Uuid> {
    workers::table
        .filter(workers::token_id.eq(caller.token_id))
        .select(workers::id)
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| {
            Error::PermissionDenied(
                "this worker token has no registered worker (connect first); it holds no \
                 attempt"
                    .into(),
            )
        })
}

/// Checks that `worker` holds attempt `attempt` of `request` now.
pub async fn held_attempt(
    conn: &mut AsyncPgConnection,
    worker: Uuid,
    request: Uuid,
    attempt: i32,
) -> Result<HeldAttempt> {
    type Row = (Option<Uuid>, AttemptState, i32, Uuid, String);
    let row: Option<Row> = attempts::table
        .inner_join(work_requests::table.inner_join(workspaces::table))
        .filter(attempts::work_request_id.eq(request))
        .filter(attempts::number.eq(attempt))
        .select((
            attempts::worker_id,
            attempts::state,
            work_requests::attempt_count,
            workspaces::id,
            workspaces::name,
        ))
        .first(conn)
        .await
        .optional()?;
    let not_held = || {
        Error::PermissionDenied(format!(
            "attempt {attempt} of work request {request} is not held by this worker; a worker \
             reaches only the inputs and outputs of the attempts it holds"
        ))
    };
    let Some((owner, state, current, workspace_id, workspace)) = row else {
        return Err(not_held());
    };
    if owner != Some(worker) {
        return Err(not_held());
    }
    if current != attempt || state == AttemptState::Finished {
        return Err(Error::FailedPrecondition(format!(
            "attempt {attempt} of work request {request} is no longer current (it finished or \
             was replaced); nothing was changed"
        )));
    }
    Ok(HeldAttempt {
        workspace_id,
        workspace,
    })
}

#[derive(QueryableByName)]
struct InputUse {
    #[diesel(sql_type = Bool)]
    current: bool,
}

/// Checks that `artifact` is an input of a request whose current attempt `worker` holds.
async fn input_of_held(conn: &mut AsyncPgConnection, worker: Uuid, artifact: Uuid) -> Result<()> {
    let uses: Vec<InputUse> = diesel::sql_query(
        "SELECT (a.number = wr.attempt_count AND a.state <> 'finished') AS current \
         FROM work_request_inputs wi \
         JOIN work_requests wr ON wr.id = wi.work_request_id \
         JOIN attempts a ON a.work_request_id = wr.id \
         WHERE wi.artifact_id = $1 AND a.worker_id = $2",
    )
    .bind::<SqlUuid, _>(artifact)
    .bind::<SqlUuid, _>(worker)
    .load(conn)
    .await?;
    if uses.iter().any(|u| u.current) {
        return Ok(());
    }
    if uses.is_empty() {
        return Err(Error::PermissionDenied(format!(
            "artifact {artifact} is not an input of an attempt this worker holds; a worker \
             reads only the inputs of its current attempts"
        )));
    }
    Err(Error::FailedPrecondition(format!(
        "artifact {artifact} is an input of an attempt of this worker's that is no longer \
         current; nothing was read"
    )))
}

type Row = (Uuid, Uuid, String, Uuid, bool, Option<Uuid>, Option<i32>);

/// The alive artifact `id`, if the caller may do `need` with it.
pub async fn artifact(
    conn: &mut AsyncPgConnection,
    caller: &Identity,
    id: Uuid,
    need: Need,
) -> Result<ArtifactRef> {
    let row: Option<Row> = artifacts::table
        .inner_join(workspaces::table)
        .filter(artifacts::id.eq(id))
        .filter(alive())
        .select((
            artifacts::id,
            artifacts::workspace_id,
            workspaces::name,
            artifacts::store_id,
            artifacts::complete,
            artifacts::work_request_id,
            artifacts::attempt,
        ))
        .first(conn)
        .await
        .optional()?;
    let Some((id, workspace_id, workspace, store_id, complete, request, attempt)) = row else {
        return Err(no_such_artifact(id));
    };
    let found = ArtifactRef {
        id,
        workspace_id,
        workspace,
        store_id,
        complete,
    };
    if caller.role == TokenKind::Worker {
        let worker = worker_of(conn, caller).await?;
        match need {
            Need::Read => input_of_held(conn, worker, id).await?,
            Need::Upload => {
                let (Some(request), Some(attempt)) = (request, attempt) else {
                    return Err(Error::PermissionDenied(format!(
                        "artifact {id} was not made by an attempt; a worker uploads only the \
                         outputs of the attempts it holds"
                    )));
                };
                held_attempt(conn, worker, request, attempt).await?;
            }
            Need::Change => {
                return Err(Error::PermissionDenied(
                    "workers may not change artifacts".into(),
                ));
            }
        }
        return Ok(found);
    }
    let standing = in_workspace(conn, caller, &found.workspace, id).await?;
    let (role, action) = match need {
        Need::Read => (WorkspaceRole::Viewer, "read artifacts of"),
        Need::Upload => (WorkspaceRole::Contributor, "upload artifact files to"),
        Need::Change => (WorkspaceRole::Contributor, "change artifacts of"),
    };
    standing.require(role, action)?;
    Ok(found)
}

/// The caller's standing in the workspace of artifact `id`, with a NOT_FOUND worded for
/// the artifact when the caller may not see it.
async fn in_workspace(
    conn: &mut AsyncPgConnection,
    caller: &Identity,
    workspace: &str,
    id: Uuid,
) -> Result<roles::Standing> {
    match roles::in_workspace(conn, caller, workspace).await {
        Err(Error::NotFound(_)) => Err(no_such_artifact(id)),
        other => other,
    }
}
