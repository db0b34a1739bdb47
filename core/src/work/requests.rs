//! What callers do with work requests: submit one or a workflow, read, list, cancel,
//! unblock, retry, reprioritise, look at the queue, read logs.
//!
//! [`WorkRequests`] is the domain's front for the API: it takes plain inputs (the API
//! converts wire messages to them), checks them, changes state through `lifecycle`,
//! `deps` and `workflow`, tells the hub whom to wake and what to send, and answers with
//! [`RequestView`]s, which the API converts back. Nothing here knows the wire.
//!
//! Submission validates the whole spec (see `spec`), seals secret env values with the
//! server's key, and stores the request as `pending` (or `blocked`, with dependencies or
//! manual approval; see `deps`). Views never carry secret values, only their names.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Deserialize;
use uuid::Uuid;

use crate::access::auth::Identity;
use crate::access::roles::{self, WorkspaceRole};
use crate::artifacts::inputs::{self, Pinned};
use crate::error::{Error, Result};
use crate::live::hub::Hub;
use crate::observe::traces;
use crate::store::db::DbPool;
use crate::store::models::{AttemptRow, NewWorkRequest, WorkRequestRow};
use crate::store::schema::{
    attempts, service_runs, services, templates, trigger_events, trigger_rules, users,
    work_request_dependencies, work_requests, workspaces,
};
use crate::store::secrets::SecretBox;
use crate::work::deps::{self, Scheduling};
pub use crate::work::ids::Origin;
use crate::work::ids::WorkRequestId;
use crate::work::intake::Intake;
use crate::work::lifecycle;
use crate::work::limits;
use crate::work::logs::{self, Chunk, Follow};
use crate::work::queue;
use crate::work::spec::{SpecDefaults, StoredSpec, SubmitInput, validate_submission};
use crate::work::state::{Kind, Status, UnblockStrategy};
use crate::work::workflow::{self, WorkflowInput};

/// The most requests one page of a listing (or of the queue) holds.
const MAX_PAGE: u32 = 1000;
/// A page's size when none is asked for.
const DEFAULT_PAGE: u32 = 100;

/// A work request as callers see it: the row, the names shown with it, and what is
/// derived from other rows.
#[derive(Clone, Debug)]
pub struct RequestView {
    /// The stored request.
    pub row: WorkRequestRow,
    /// Its workspace's name.
    pub workspace: String,
    /// Its submitter's name.
    pub created_by: String,
    /// Its attempts, oldest first (empty in listings).
    pub attempts: Vec<AttemptRow>,
    /// What it depends on.
    pub depends_on: Vec<WorkRequestId>,
    /// A workflow's steps, in an order they can run in (empty for a job).
    pub children: Vec<RequestView>,
    /// Why a blocked or pending request waits ('' otherwise).
    pub pending_reason: String,
    /// A pending request's place in the queue (0 otherwise).
    pub queue_position: u32,
    /// Its inputs by mount (empty in listings).
    pub inputs: Vec<Pinned>,
    /// The name of the template it was made from, if any.
    pub template: Option<String>,
    /// For a service replica's container: the service's name and the replica (`web.1`);
    /// only read for a single request.
    pub service: Option<(String, String)>,
    /// For a request a trigger rule made: the rule's name and the event that made it;
    /// only read for a single request.
    pub trigger: Option<(String, Uuid)>,
}

/// A request row with the names shown with it: its workspace's, its submitter's and,
/// when it was made from one, its template's.
type Named = (WorkRequestRow, String, String, Option<String>);

impl RequestView {
    fn named((row, workspace, created_by, template): Named) -> RequestView {
        RequestView {
            template,
            ..RequestView::new(row, workspace, created_by)
        }
    }

    fn new(row: WorkRequestRow, workspace: String, created_by: String) -> RequestView {
        RequestView {
            row,
            workspace,
            created_by,
            attempts: Vec::new(),
            depends_on: Vec::new(),
            children: Vec::new(),
            pending_reason: String::new(),
            queue_position: 0,
            inputs: Vec::new(),
            template: None,
            service: None,
            trigger: None,
        }
    }

    /// The spec the request runs, without secret values; `None` for a workflow parent,
    /// which runs nothing itself (its column holds `{}`).
    pub fn spec(&self) -> Result<Option<StoredSpec>> {
        if self.row.kind == Kind::Workflow {
            return Ok(None);
        }
        // Read from the stored JSON in place: no copy of it per answer.
        StoredSpec::deserialize(&self.row.spec)
            .map(Some)
            .map_err(|e| Error::internal(format!("stored spec of {} unreadable: {e}", self.row.id)))
    }
}

/// What to list.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    /// Only requests in this status.
    pub status: Option<Status>,
    /// Only this workspace's requests ('' for all).
    pub workspace: String,
    /// At most this many (0 for the default of 100).
    pub page_size: u32,
    /// Where the previous page ended ('' for the first page).
    pub page_token: String,
}

/// One page of a listing.
#[derive(Clone, Debug)]
pub struct Page {
    /// Newest first.
    pub requests: Vec<RequestView>,
    /// Pass this to get the next page; '' on the last one.
    pub next_page_token: String,
}

/// A change of an admin's priority adjustment.
#[derive(Clone, Copy, Debug)]
pub struct PriorityChange {
    /// Added to the current adjustment (ignored when `set` is given).
    pub delta: i32,
    /// The new adjustment.
    pub set: Option<i32>,
}

/// What to read of a request's log.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogQuery {
    /// Only this attempt (0 for every attempt).
    pub attempt: u32,
    /// Wait for more until the request is terminal.
    pub follow: bool,
    /// Bytes of stdout the reader already has.
    pub stdout_offset: u64,
    /// Bytes of stderr the reader already has.
    pub stderr_offset: u64,
}

/// See the module docs.
#[derive(Clone)]
pub struct WorkRequests {
    pool: DbPool,
    secrets: SecretBox,
    defaults: SpecDefaults,
    hub: Arc<Hub>,
    intake: Intake,
}

impl WorkRequests {
    /// Work requests stored in `pool`, secrets sealed with `secrets`, unset limits
    /// filled from `defaults`, the scheduler woken through `hub`.
    pub fn new(pool: DbPool, secrets: SecretBox, defaults: SpecDefaults, hub: Arc<Hub>) -> Self {
        WorkRequests {
            intake: Intake::start(pool.clone()),
            pool,
            secrets,
            defaults,
            hub,
        }
    }

    /// `SubmitWorkRequest`.
    pub async fn submit(&self, caller: &Identity, req: SubmitInput) -> Result<RequestView> {
        self.submit_from(caller, req, None, None).await
    }

    /// Submits a request made from a template release (`origin`), or from none, under
    /// `id` when the caller reserved one (a trigger's firing: a retry then meets the
    /// request it made, as ALREADY_EXISTS, instead of making a second), or a new id.
    pub async fn submit_from(
        &self,
        caller: &Identity,
        req: SubmitInput,
        origin: Option<Origin>,
        id: Option<WorkRequestId>,
    ) -> Result<RequestView> {
        let submission = validate_submission(&req, &self.defaults)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let scheduling = Scheduling::check(
            &req.after,
            req.unblock,
            req.allow_failure,
            req.retries,
            req.retry_backoff,
        )?;
        let creator = caller.user_id.ok_or_else(|| {
            Error::PermissionDenied("only users and admins may submit work requests".into())
        })?;
        let sealed = if submission.secret_env.is_empty() {
            None
        } else {
            Some(
                self.secrets
                    .seal(&submission.secret_env)
                    .map_err(Error::internal)?,
            )
        };
        let secret_keys: Vec<String> = submission.secret_env.keys().cloned().collect();
        let spec = serde_json::to_value(&submission.spec).map_err(Error::internal)?;
        let requirements =
            serde_json::to_value(&submission.requirements).map_err(Error::internal)?;
        let workspace_id = {
            let mut conn = self.pool.get().await?;
            let standing = roles::in_workspace(&mut conn, caller, &submission.workspace).await?;
            standing.require(WorkspaceRole::Contributor, "submit to")?;
            standing.require_open()?;
            standing.workspace.id
        };
        let id = id.unwrap_or_default();
        let mut inputs_view = Vec::new();
        let manual = scheduling.unblock == UnblockStrategy::Manual;
        let new = NewWorkRequest {
            id,
            workspace_id,
            // Without dependencies this is final; with them `initial_status` decides.
            status: if manual {
                Status::Blocked
            } else {
                Status::Pending
            },
            spec,
            secret_env: sealed,
            secret_env_keys: secret_keys,
            requirements,
            priority_base: submission.priority,
            created_by: creator,
            unblock_strategy: scheduling.unblock,
            allow_failure: scheduling.allow_failure,
            retries_left: scheduling.retries,
            retry_backoff_ms: scheduling.retry_backoff_ms,
            template_id: origin.map(|o| o.template_id),
            template_version: origin.map(|o| o.version),
            traceparent: traces::current_traceparent(),
        };
        // The stored row comes back from the insert, so the answer costs no further reads.
        let row = if scheduling.after.is_empty() && submission.inputs.is_empty() {
            // One row, inserted with whatever other submissions are queued (see `intake`).
            self.intake.insert(new).await?
        } else {
            // The request, its dependency rows and its inputs (resolved and pinned here,
            // each artifact locked until the rows are in) are stored together or not at all.
            let mut conn = self.pool.get().await?;
            let (row, pinned) = conn
                .transaction::<_, Error, _>(async |conn| {
                    limits::admit_one(conn, workspace_id, 1).await?;
                    let pinned = inputs::resolve(
                        conn,
                        workspace_id,
                        &submission.inputs,
                        &Default::default(),
                        "inputs",
                    )
                    .await?;
                    let status = if scheduling.after.is_empty() {
                        new.status
                    } else {
                        deps::initial_status(conn, workspace_id, &scheduling).await?
                    };
                    let row = diesel::insert_into(work_requests::table)
                        .values(NewWorkRequest { status, ..new })
                        .returning(WorkRequestRow::as_returning())
                        .get_result(conn)
                        .await?;
                    deps::insert_dependencies(conn, id, &scheduling).await?;
                    inputs::insert(conn, id, &pinned).await?;
                    Ok((row, pinned))
                })
                .await?;
            inputs_view = pinned;
            row
        };
        tracing::info!(work_request = %id, image = %submission.spec.image, by = %caller.name, status = %row.status, "work request submitted");
        if row.status == Status::Pending {
            self.hub.wake_scheduler();
        }
        let mut view = RequestView::new(row, submission.workspace, caller.name.clone());
        view.depends_on = scheduling.after;
        view.inputs = inputs_view;
        Ok(view)
    }

    /// `SubmitWorkflow`: checks everything, stores the parent and its steps in one
    /// transaction (see `workflow`), and returns the parent with its steps.
    pub async fn submit_workflow(
        &self,
        caller: &Identity,
        req: &WorkflowInput,
    ) -> Result<RequestView> {
        let workflow = workflow::validate(req, &self.defaults)?;
        let creator = caller.user_id.ok_or_else(|| {
            Error::PermissionDenied("only users and admins may submit workflows".into())
        })?;
        let mut conn = self.pool.get().await?;
        let standing = roles::in_workspace(&mut conn, caller, &workflow.workspace).await?;
        standing.require(WorkspaceRole::Contributor, "submit to")?;
        standing.require_open()?;
        let id = workflow::create(&mut conn, &self.secrets, creator, &workflow, req.id).await?;
        tracing::info!(work_request = %id, workflow = %workflow.name, steps = workflow.steps.len(), by = %caller.name, "workflow submitted");
        self.hub.wake_scheduler();
        self.hub.changed();
        load(&mut conn, id).await
    }

    /// `GetWorkRequest`: the request with its attempts, steps and why it waits.
    pub async fn get(&self, caller: &Identity, id: WorkRequestId) -> Result<RequestView> {
        let mut conn = self.pool.get().await?;
        roles::of_request(&mut conn, caller, id).await?;
        let mut view = load(&mut conn, id).await?;
        describe_wait(&mut conn, &mut view).await?;
        Ok(view)
    }

    /// `ListWorkRequests`: newest first, a page at a time.
    pub async fn list(&self, caller: &Identity, query: ListQuery) -> Result<Page> {
        let page_size = i64::from(page_size("page_size", query.page_size)?);
        let mut conn = self.pool.get().await?;
        let scope = scope(&mut conn, caller, &query.workspace).await?;
        let mut select = work_requests::table
            .inner_join(workspaces::table)
            .inner_join(users::table)
            .left_join(templates::table)
            .select((
                WorkRequestRow::as_select(),
                workspaces::name,
                users::name,
                templates::name.nullable(),
            ))
            .order((work_requests::created_at.desc(), work_requests::id.desc()))
            .limit(page_size + 1)
            .into_boxed();
        if let Some(status) = query.status {
            select = select.filter(work_requests::status.eq(status));
        }
        if let Some(ids) = scope {
            select = select.filter(work_requests::workspace_id.eq_any(ids));
        }
        if !query.page_token.is_empty() {
            let (at, id) = decode_page_token(&query.page_token)?;
            select = select.filter(
                work_requests::created_at
                    .lt(at)
                    .or(work_requests::created_at
                        .eq(at)
                        .and(work_requests::id.lt(id))),
            );
        }
        let mut rows: Vec<Named> = select.load(&mut conn).await?;
        let more = rows.len() as i64 > page_size;
        rows.truncate(usize::try_from(page_size).unwrap_or(100));
        let next_page_token = match (more, rows.last()) {
            (true, Some((last, _, _, _))) => encode_page_token(last.created_at, last.id),
            _ => String::new(),
        };
        Ok(Page {
            requests: rows.into_iter().map(RequestView::named).collect(),
            next_page_token,
        })
    }

    /// `CancelWorkRequest`: aborts the request (and a workflow's open steps) and tells
    /// the workers running them to stop.
    pub async fn cancel(&self, caller: &Identity, id: WorkRequestId) -> Result<RequestView> {
        let mut conn = self.pool.get().await?;
        let live = lifecycle::cancel(&mut conn, caller, id).await?;
        tracing::info!(work_request = %id, by = %caller.name, "work request cancelled");
        for stop in live {
            self.hub.cancel(stop.worker_id, stop.key);
        }
        self.hub.changed();
        // Dependants released by an allow_failure request may be queued now.
        self.hub.wake_scheduler();
        load(&mut conn, id).await
    }

    /// `UnblockWorkRequest`: accepts or rejects a request waiting for manual approval.
    pub async fn unblock(
        &self,
        caller: &Identity,
        id: WorkRequestId,
        accept: bool,
    ) -> Result<RequestView> {
        let mut conn = self.pool.get().await?;
        let queued = lifecycle::unblock(&mut conn, caller, id, accept).await?;
        tracing::info!(work_request = %id, by = %caller.name, accept, "manual unblock decided");
        if queued {
            self.hub.wake_scheduler();
        }
        self.hub.changed();
        load(&mut conn, id).await
    }

    /// `RetryWorkRequest`.
    pub async fn retry(&self, caller: &Identity, id: WorkRequestId) -> Result<RequestView> {
        let mut conn = self.pool.get().await?;
        if lifecycle::retry(&mut conn, caller, id).await? {
            self.hub.wake_scheduler();
        }
        self.hub.changed();
        load(&mut conn, id).await
    }

    /// `AdjustPriority`: an admin moves a request up or down the queue.
    pub async fn adjust_priority(
        &self,
        caller: &Identity,
        id: WorkRequestId,
        change: PriorityChange,
    ) -> Result<RequestView> {
        // The auth rules already admit only admins; this keeps the operation safe on its
        // own.
        if !caller.is_admin() {
            return Err(Error::PermissionDenied(
                "only admins may change a work request's priority".into(),
            ));
        }
        let mut conn = self.pool.get().await?;
        let (before, after) = conn
            .transaction::<_, Error, _>(async |conn| {
                let (status, base, current): (Status, i32, i32) = work_requests::table
                    .find(id)
                    .select((
                        work_requests::status,
                        work_requests::priority_base,
                        work_requests::priority_adjustment,
                    ))
                    .for_update()
                    .first(conn)
                    .await
                    .optional()?
                    .ok_or_else(|| Error::NotFound(format!("work request {id} not found")))?;
                if status.is_terminal() {
                    return Err(Error::FailedPrecondition(format!(
                        "work request {id} is already {status}; only blocked, pending or running requests can be reprioritised"
                    )));
                }
                let adjustment = queue::new_adjustment(base, current, change.delta, change.set)?;
                diesel::update(work_requests::table.find(id))
                    .set(work_requests::priority_adjustment.eq(adjustment))
                    .execute(conn)
                    .await?;
                Ok((current, adjustment))
            })
            .await?;
        tracing::info!(work_request = %id, by = %caller.name, before, after, "priority adjustment changed");
        self.hub.wake_scheduler();
        self.hub.changed();
        let mut view = load(&mut conn, id).await?;
        describe_wait(&mut conn, &mut view).await?;
        Ok(view)
    }

    /// `ListQueue`: the first `limit` pending jobs (0 for 100) in queue order, with their
    /// places and why each waits; only `workspace`'s when one is named.
    pub async fn queue(
        &self,
        caller: &Identity,
        workspace: &str,
        limit: u32,
    ) -> Result<Vec<RequestView>> {
        let limit = i64::from(page_size("limit", limit)?);
        let mut conn = self.pool.get().await?;
        let scope = scope(&mut conn, caller, workspace).await?;
        let items = queue::list_queue(&mut conn, scope.as_deref(), limit).await?;
        Ok(items
            .into_iter()
            .map(|item| {
                let mut view = RequestView::new(item.row, item.workspace, item.created_by);
                view.queue_position = item.position;
                view.pending_reason = item.reason;
                view
            })
            .collect())
    }

    /// `StreamLogs`: the request's log in production order, followed until the request
    /// is terminal when `query.follow`.
    pub async fn logs(
        &self,
        caller: &Identity,
        id: WorkRequestId,
        query: LogQuery,
    ) -> Result<tokio::sync::mpsc::Receiver<Result<Chunk>>> {
        let attempt = i32::try_from(query.attempt)
            .map_err(|_| Error::InvalidArgument("attempt: out of range".into()))?;
        let attempts: i32 = {
            let mut conn = self.pool.get().await?;
            roles::of_request(&mut conn, caller, id).await?;
            work_requests::table
                .find(id)
                .select(work_requests::attempt_count)
                .first(&mut conn)
                .await
                .optional()?
                .ok_or_else(|| Error::NotFound(format!("work request {id} not found")))?
        };
        if attempt > attempts {
            return Err(Error::NotFound(format!(
                "work request {id} has {attempts} attempts; there is no attempt {attempt}"
            )));
        }
        Ok(logs::follow(
            self.pool.clone(),
            self.hub.clone(),
            caller,
            Follow {
                id,
                attempt,
                follow: query.follow,
                skip_stdout: query.stdout_offset,
                skip_stderr: query.stderr_offset,
            },
        ))
    }
}

/// A page size as asked for (0 for the default), or why it is refused.
fn page_size(field: &str, asked: u32) -> Result<u32> {
    match asked {
        0 => Ok(DEFAULT_PAGE),
        n @ 1..=MAX_PAGE => Ok(n),
        n => Err(Error::InvalidArgument(format!(
            "{field}: {n} is out of range; use 1 to {MAX_PAGE}"
        ))),
    }
}

/// The workspaces a listing covers: the one named (NOT_FOUND if the caller may not see
/// it), else every workspace the caller may see; `None` means all of them (admins).
async fn scope(
    conn: &mut AsyncPgConnection,
    caller: &Identity,
    workspace: &str,
) -> Result<Option<Vec<Uuid>>> {
    if workspace.is_empty() {
        return roles::visible(conn, caller).await;
    }
    let standing = roles::in_workspace(conn, caller, workspace).await?;
    Ok(Some(vec![standing.workspace.id]))
}

/// Loads one request with its names, attempts, dependencies and (for a workflow) steps.
/// The request with its attempts, dependencies, inputs and steps, read from one snapshot:
/// the request row and its attempts are written together (an attempt ending and its
/// request requeued, say), so reading them in separate snapshots could show an attempt
/// that ended beside a request still running on it.
async fn load(conn: &mut AsyncPgConnection, id: WorkRequestId) -> Result<RequestView> {
    conn.transaction::<_, Error, _>(async |conn| {
        diesel::sql_query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(conn)
            .await?;
        load_in_snapshot(conn, id).await
    })
    .await
}

async fn load_in_snapshot(conn: &mut AsyncPgConnection, id: WorkRequestId) -> Result<RequestView> {
    let named: Named = work_requests::table
        .inner_join(workspaces::table)
        .inner_join(users::table)
        .left_join(templates::table)
        .filter(work_requests::id.eq(id))
        .select((
            WorkRequestRow::as_select(),
            workspaces::name,
            users::name,
            templates::name.nullable(),
        ))
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("work request {id} not found")))?;
    let is_workflow = named.0.kind == Kind::Workflow;
    let mut view = RequestView::named(named);
    view.attempts = attempts::table
        .filter(attempts::work_request_id.eq(id))
        .select(AttemptRow::as_select())
        .order(attempts::number)
        .load(conn)
        .await?;
    view.depends_on = deps::depends_on(conn, id).await?;
    view.inputs = inputs::of_request(conn, id).await?;
    view.service = service_runs::table
        .inner_join(services::table)
        .filter(service_runs::request_id.eq(id))
        .select((
            services::name,
            service_runs::process,
            service_runs::slot_index,
        ))
        .first::<(String, String, i32)>(conn)
        .await
        .optional()?
        .map(|(name, process, index)| (name, format!("{process}.{index}")));
    view.trigger = trigger_events::table
        .inner_join(trigger_rules::table)
        .filter(trigger_events::work_request_id.eq(id))
        .select((trigger_rules::name, trigger_events::id))
        .first::<(String, Uuid)>(conn)
        .await
        .optional()?;
    if is_workflow {
        view.children = load_children(conn, id).await?;
    }
    Ok(view)
}

/// The steps of a workflow parent, in creation order (an order they can run in), each
/// with its `depends_on` but without attempts.
async fn load_children(
    conn: &mut AsyncPgConnection,
    parent: WorkRequestId,
) -> Result<Vec<RequestView>> {
    let rows: Vec<Named> = work_requests::table
        .inner_join(workspaces::table)
        .inner_join(users::table)
        .left_join(templates::table)
        .filter(work_requests::parent_id.eq(parent))
        .select((
            WorkRequestRow::as_select(),
            workspaces::name,
            users::name,
            templates::name.nullable(),
        ))
        .order((work_requests::created_at, work_requests::id))
        .load(conn)
        .await?;
    let ids: Vec<WorkRequestId> = rows.iter().map(|(row, _, _, _)| row.id).collect();
    let edges: Vec<(WorkRequestId, WorkRequestId)> = work_request_dependencies::table
        .filter(work_request_dependencies::work_request_id.eq_any(&ids))
        .select((
            work_request_dependencies::work_request_id,
            work_request_dependencies::depends_on_id,
        ))
        .order((
            work_request_dependencies::work_request_id,
            work_request_dependencies::depends_on_id,
        ))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|named| {
            let id = named.0.id;
            let mut child = RequestView::named(named);
            child.depends_on = edges
                .iter()
                .filter(|(from, _)| *from == id)
                .map(|(_, to)| *to)
                .collect();
            child
        })
        .collect())
}

/// Fills in why a blocked or pending request waits and, if pending, its place in line.
async fn describe_wait(conn: &mut AsyncPgConnection, view: &mut RequestView) -> Result<()> {
    let id = view.row.id;
    if matches!(view.row.status, Status::Pending | Status::Blocked) {
        view.pending_reason = queue::pending_reason(conn, id).await?;
    }
    if view.row.status == Status::Pending {
        view.queue_position = queue::queue_position(conn, id).await?;
    }
    Ok(())
}

/// The position after which the next page starts: the last row's (created_at, id).
fn encode_page_token(created_at: DateTime<Utc>, id: WorkRequestId) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{id}", created_at.timestamp_micros()))
}

fn decode_page_token(token: &str) -> Result<(DateTime<Utc>, WorkRequestId)> {
    let bad = || {
        Error::InvalidArgument(
            "page_token: not a token returned by ListWorkRequests; pass next_page_token unchanged"
                .into(),
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (micros, id) = text.split_once(':').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    let at = DateTime::<Utc>::from_timestamp_micros(micros).ok_or_else(bad)?;
    let id = Uuid::parse_str(id).map_err(|_| bad())?;
    Ok((at, WorkRequestId(id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_garbage_is_refused() {
        let at = DateTime::<Utc>::from_timestamp_micros(1_700_000_000_123_456).expect("time");
        let id = WorkRequestId::new();
        let token = encode_page_token(at, id);
        assert_eq!(decode_page_token(&token).expect("decode"), (at, id));
        assert!(decode_page_token("garbage!").is_err());
        assert!(decode_page_token(&URL_SAFE_NO_PAD.encode("1:notauuid")).is_err());
    }

    #[test]
    fn page_sizes_default_and_are_bounded() {
        assert_eq!(page_size("limit", 0).expect("default"), DEFAULT_PAGE);
        assert_eq!(page_size("limit", 1000).expect("max"), 1000);
        assert!(matches!(
            page_size("page_size", 1001),
            Err(Error::InvalidArgument(m)) if m.starts_with("page_size: 1001")
        ));
    }
}
