//! `berth.v1.WorkRequestService`: submit, inspect, list and cancel work requests.
//!
//! Submission validates the whole spec (see `validate`), seals secret env values with the
//! server's key, and stores the request as `pending` (or `blocked`, with dependencies or
//! manual approval; see `crate::work::deps`). Responses never carry secret
//! values, only their names.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use berth_common::proto::work_request_service_server::WorkRequestService;
use berth_common::proto::{
    AdjustPriorityRequest, Attempt, CancelWorkRequestRequest, GetWorkRequestRequest,
    ListQueueRequest, ListQueueResponse, ListWorkRequestsRequest, ListWorkRequestsResponse,
    LogChunk, QueueEntry, RetryWorkRequestRequest, StreamLogsRequest, SubmitWorkRequestRequest,
    SubmitWorkflowRequest, UnblockStrategy, UnblockWorkRequestRequest, WorkRequest,
    WorkRequestStatus, WorkResult,
};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{duration_ms, parse_id, string_map, timestamp, timestamp_opt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::access::auth::{Identity, identity};
use crate::error::{ApiError, ApiResult};
use crate::live::hub::Hub;
use crate::store::db::DbPool;
use crate::store::models::{AttemptRow, NewWorkRequest, Status as WrStatus, WorkRequestRow};
use crate::store::schema::{attempts, users, work_request_dependencies, work_requests, workspaces};
use crate::store::secrets::SecretBox;
use crate::work::intake::Intake;
use crate::work::spec::{SpecDefaults, StoredSpec, validate_submission};

/// The WorkRequestService implementation.
#[derive(Clone)]
pub struct WorkRequestApi {
    pool: DbPool,
    secrets: SecretBox,
    defaults: SpecDefaults,
    hub: Arc<Hub>,
    intake: Intake,
    /// Workspace ids by name (see [`WorkRequestApi::workspace_id`]).
    workspaces: Arc<Mutex<HashMap<String, Uuid>>>,
}

impl WorkRequestApi {
    /// A service over `pool`, sealing secrets with `secrets` and filling `defaults`.
    pub fn new(
        pool: DbPool,
        secrets: SecretBox,
        defaults: SpecDefaults,
        hub: Arc<Hub>,
    ) -> WorkRequestApi {
        WorkRequestApi {
            intake: Intake::start(pool.clone()),
            pool,
            secrets,
            defaults,
            hub,
            workspaces: Arc::default(),
        }
    }
}

fn status_to_proto(status: &str) -> WorkRequestStatus {
    match WrStatus::parse(status) {
        Some(WrStatus::Blocked) => WorkRequestStatus::Blocked,
        Some(WrStatus::Pending) => WorkRequestStatus::Pending,
        Some(WrStatus::Running) => WorkRequestStatus::Running,
        Some(WrStatus::Completed) => WorkRequestStatus::Completed,
        Some(WrStatus::Aborted) => WorkRequestStatus::Aborted,
        None => WorkRequestStatus::Unspecified,
    }
}

fn status_from_proto(status: WorkRequestStatus) -> Option<WrStatus> {
    match status {
        WorkRequestStatus::Unspecified => None,
        WorkRequestStatus::Blocked => Some(WrStatus::Blocked),
        WorkRequestStatus::Pending => Some(WrStatus::Pending),
        WorkRequestStatus::Running => Some(WrStatus::Running),
        WorkRequestStatus::Completed => Some(WrStatus::Completed),
        WorkRequestStatus::Aborted => Some(WrStatus::Aborted),
    }
}

fn result_to_proto(result: Option<&str>) -> WorkResult {
    match result {
        Some("success") => WorkResult::Success,
        Some("failure") => WorkResult::Failure,
        Some("error") => WorkResult::Error,
        _ => WorkResult::Unspecified,
    }
}

fn attempt_to_proto(row: AttemptRow) -> Attempt {
    Attempt {
        number: u32::try_from(row.number).unwrap_or(0),
        worker: row.worker_name,
        container_id: row.container_id,
        exit_code: row.exit_code,
        reason: row.reason,
        assigned_at: Some(timestamp(row.assigned_at)),
        started_at: timestamp_opt(row.started_at),
        finished_at: timestamp_opt(row.finished_at),
        peak_memory_bytes: row.peak_memory_bytes.and_then(|b| u64::try_from(b).ok()),
        cpu_time: row.cpu_time_ns.map(|ns| prost_types::Duration {
            seconds: ns / 1_000_000_000,
            nanos: i32::try_from(ns % 1_000_000_000).unwrap_or(0),
        }),
        message: row.message,
        pull_duration: row
            .pull_ms
            .and_then(|ms| u64::try_from(ms).ok())
            .map(duration_ms),
        run_duration: row
            .run_ms
            .and_then(|ms| u64::try_from(ms).ok())
            .map(duration_ms),
    }
}

/// Converts a stored request (plus names looked up alongside it) to the wire type.
fn to_proto(
    row: WorkRequestRow,
    workspace: String,
    created_by: String,
    attempts: Vec<AttemptRow>,
) -> ApiResult<WorkRequest> {
    // A workflow parent runs nothing itself, so it has no spec (its column holds `{}`).
    let spec = if row.kind == "workflow" {
        None
    } else {
        let stored: StoredSpec = serde_json::from_value(row.spec).map_err(|e| {
            ApiError::internal(format!("stored spec of {} unreadable: {e}", row.id))
        })?;
        Some(stored.to_proto())
    };
    Ok(WorkRequest {
        id: row.id.to_string(),
        workspace,
        status: status_to_proto(&row.status) as i32,
        result: result_to_proto(row.result.as_deref()) as i32,
        spec,
        secret_env_keys: row.secret_env_keys,
        requirements: string_map(&row.requirements),
        priority_base: row.priority_base,
        priority_adjustment: row.priority_adjustment,
        priority: row.priority_base.saturating_add(row.priority_adjustment),
        created_by,
        created_at: Some(timestamp(row.created_at)),
        started_at: timestamp_opt(row.started_at),
        completed_at: timestamp_opt(row.completed_at),
        exit_code: row.exit_code,
        reason: row.reason,
        attempt_count: u32::try_from(row.attempt_count).unwrap_or(0),
        attempts: attempts.into_iter().map(attempt_to_proto).collect(),
        message: row.message,
        log_truncated: row.log_truncated,
        pending_reason: String::new(),
        queue_position: 0,
        depends_on: Vec::new(),
        parent_id: row.parent_id.map(|p| p.to_string()).unwrap_or_default(),
        children: Vec::new(),
        unblock: if row.unblock_strategy == "manual" {
            UnblockStrategy::Manual
        } else {
            UnblockStrategy::Deps
        } as i32,
        allow_failure: row.allow_failure,
        retries_left: u32::try_from(row.retries_left).unwrap_or(0),
        name: row.name,
    })
}

/// Loads one request with its names and attempts.
async fn load(conn: &mut AsyncPgConnection, id: Uuid) -> ApiResult<WorkRequest> {
    let (row, workspace, created_by): (WorkRequestRow, String, String) = work_requests::table
        .inner_join(workspaces::table)
        .inner_join(users::table)
        .filter(work_requests::id.eq(id))
        .select((WorkRequestRow::as_select(), workspaces::name, users::name))
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| ApiError::NotFound(format!("work request {id} not found")))?;
    let attempts: Vec<AttemptRow> = attempts::table
        .filter(attempts::work_request_id.eq(id))
        .select(AttemptRow::as_select())
        .order(attempts::number)
        .load(conn)
        .await?;
    let depends_on = crate::work::deps::depends_on(conn, id).await?;
    let is_workflow = row.kind == "workflow";
    let mut request = to_proto(row, workspace, created_by, attempts)?;
    request.depends_on = depends_on.iter().map(Uuid::to_string).collect();
    if is_workflow {
        request.children = load_children(conn, id).await?;
    }
    Ok(request)
}

/// The steps of a workflow parent, in creation order (an order they can run in), each
/// with its `depends_on` but without attempts.
async fn load_children(conn: &mut AsyncPgConnection, parent: Uuid) -> ApiResult<Vec<WorkRequest>> {
    let rows: Vec<(WorkRequestRow, String, String)> = work_requests::table
        .inner_join(workspaces::table)
        .inner_join(users::table)
        .filter(work_requests::parent_id.eq(parent))
        .select((WorkRequestRow::as_select(), workspaces::name, users::name))
        .order((work_requests::created_at, work_requests::id))
        .load(conn)
        .await?;
    let ids: Vec<Uuid> = rows.iter().map(|(row, _, _)| row.id).collect();
    let edges: Vec<(Uuid, Uuid)> = work_request_dependencies::table
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
    rows.into_iter()
        .map(|(row, workspace, by)| {
            let id = row.id;
            let mut child = to_proto(row, workspace, by, Vec::new())?;
            child.depends_on = edges
                .iter()
                .filter(|(from, _)| *from == id)
                .map(|(_, to)| to.to_string())
                .collect();
            Ok(child)
        })
        .collect()
}

/// The position after which the next page starts: the last row's (created_at, id).
fn encode_page_token(created_at: DateTime<Utc>, id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{id}", created_at.timestamp_micros()))
}

fn decode_page_token(token: &str) -> ApiResult<(DateTime<Utc>, Uuid)> {
    let bad = || {
        ApiError::InvalidArgument(
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
    Ok((at, id))
}

impl WorkRequestApi {
    async fn submit(
        &self,
        caller: &Identity,
        req: SubmitWorkRequestRequest,
    ) -> ApiResult<WorkRequest> {
        let submission = validate_submission(&req, &self.defaults)
            .map_err(|e| ApiError::InvalidArgument(e.to_string()))?;
        let scheduling = scheduling(&req)?;
        let creator = caller.user_id.ok_or_else(|| {
            ApiError::PermissionDenied("only users and admins may submit work requests".into())
        })?;
        let sealed = if submission.secret_env.is_empty() {
            None
        } else {
            Some(
                self.secrets
                    .seal(&submission.secret_env)
                    .map_err(ApiError::internal)?,
            )
        };
        let secret_keys: Vec<String> = submission.secret_env.keys().cloned().collect();
        let spec = serde_json::to_value(&submission.spec).map_err(ApiError::internal)?;
        let requirements =
            serde_json::to_value(&submission.requirements).map_err(ApiError::internal)?;
        let mut conn = self.pool.get().await?;
        let workspace_id = self.workspace_id(&mut conn, &submission.workspace).await?;
        drop(conn);
        let id = Uuid::now_v7();
        let new = NewWorkRequest {
            id,
            workspace_id,
            // Without dependencies this is final; with them `initial_status` decides.
            status: if scheduling.manual {
                WrStatus::Blocked
            } else {
                WrStatus::Pending
            }
            .as_str()
            .to_owned(),
            spec,
            secret_env: sealed,
            secret_env_keys: secret_keys,
            requirements,
            priority_base: submission.priority,
            created_by: creator,
            unblock_strategy: if scheduling.manual { "manual" } else { "deps" }.to_owned(),
            allow_failure: scheduling.allow_failure,
            retries_left: scheduling.retries,
            retry_backoff_ms: scheduling.retry_backoff_ms,
        };
        // The stored row comes back from the insert, so the answer costs no further reads.
        let row = if scheduling.after.is_empty() {
            // One row, inserted with whatever other submissions are queued (see `intake`).
            self.intake.insert(new).await?
        } else {
            // The request and its dependency rows are stored together or not at all.
            let mut conn = self.pool.get().await?;
            conn.transaction::<_, ApiError, _>(async |conn| {
                let status = crate::work::deps::initial_status(conn, &scheduling).await?;
                let row = diesel::insert_into(work_requests::table)
                    .values(NewWorkRequest {
                        status: status.as_str().to_owned(),
                        ..new
                    })
                    .returning(WorkRequestRow::as_returning())
                    .get_result(conn)
                    .await?;
                crate::work::deps::insert_dependencies(conn, id, &scheduling).await?;
                Ok(row)
            })
            .await?
        };
        let status = row.status.clone();
        tracing::info!(work_request = %id, image = %submission.spec.image, by = %caller.name, status = %status, "work request submitted");
        if status == WrStatus::Pending.as_str() {
            self.hub.wake_scheduler();
        }
        let mut request = to_proto(
            row,
            submission.workspace.clone(),
            caller.name.clone(),
            Vec::new(),
        )?;
        request.depends_on = scheduling.after.iter().map(Uuid::to_string).collect();
        Ok(request)
    }

    /// The id of the workspace named `name`. Workspaces are never renamed or removed, so
    /// a name once found is remembered.
    async fn workspace_id(&self, conn: &mut AsyncPgConnection, name: &str) -> ApiResult<Uuid> {
        if let Some(id) = self
            .workspaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return Ok(*id);
        }
        let id: Uuid = workspaces::table
            .filter(workspaces::name.eq(name))
            .select(workspaces::id)
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| ApiError::NotFound(format!("workspace: no workspace named {name:?}")))?;
        self.workspaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), id);
        Ok(id)
    }

    async fn list(&self, req: ListWorkRequestsRequest) -> ApiResult<ListWorkRequestsResponse> {
        let status = WorkRequestStatus::try_from(req.status).map_err(|_| {
            ApiError::InvalidArgument(format!("status: unknown status {}", req.status))
        })?;
        let page_size = match req.page_size {
            0 => 100,
            n @ 1..=1000 => i64::from(n),
            n => {
                return Err(ApiError::InvalidArgument(format!(
                    "page_size: {n} is out of range; use 1 to 1000"
                )));
            }
        };
        let mut query = work_requests::table
            .inner_join(workspaces::table)
            .inner_join(users::table)
            .select((WorkRequestRow::as_select(), workspaces::name, users::name))
            .order((work_requests::created_at.desc(), work_requests::id.desc()))
            .limit(page_size + 1)
            .into_boxed();
        if let Some(status) = status_from_proto(status) {
            query = query.filter(work_requests::status.eq(status.as_str()));
        }
        if !req.workspace.is_empty() {
            query = query.filter(workspaces::name.eq(req.workspace.clone()));
        }
        if !req.page_token.is_empty() {
            let (at, id) = decode_page_token(&req.page_token)?;
            query = query.filter(
                work_requests::created_at
                    .lt(at)
                    .or(work_requests::created_at
                        .eq(at)
                        .and(work_requests::id.lt(id))),
            );
        }
        let mut conn = self.pool.get().await?;
        let mut rows: Vec<(WorkRequestRow, String, String)> = query.load(&mut conn).await?;
        let more = rows.len() as i64 > page_size;
        rows.truncate(usize::try_from(page_size).unwrap_or(100));
        let next_page_token = match (more, rows.last()) {
            (true, Some((last, _, _))) => encode_page_token(last.created_at, last.id),
            _ => String::new(),
        };
        let work_requests = rows
            .into_iter()
            .map(|(row, workspace, by)| to_proto(row, workspace, by, Vec::new()))
            .collect::<ApiResult<Vec<_>>>()?;
        Ok(ListWorkRequestsResponse {
            work_requests,
            next_page_token,
        })
    }

    /// `SubmitWorkflow`: checks everything, stores the parent and its steps in one
    /// transaction (see `crate::work::workflow`), and returns the parent with its steps.
    async fn submit_workflow(
        &self,
        caller: &Identity,
        req: &SubmitWorkflowRequest,
    ) -> ApiResult<WorkRequest> {
        let workflow = crate::work::workflow::validate(req, &self.defaults)?;
        let creator = caller.user_id.ok_or_else(|| {
            ApiError::PermissionDenied("only users and admins may submit workflows".into())
        })?;
        let mut conn = self.pool.get().await?;
        let id =
            crate::work::workflow::create(&mut conn, &self.secrets, creator, &workflow).await?;
        tracing::info!(work_request = %id, workflow = %workflow.name, steps = workflow.steps.len(), by = %caller.name, "workflow submitted");
        self.hub.wake_scheduler();
        self.hub.changed();
        load(&mut conn, id).await
    }

    async fn cancel(&self, caller: &Identity, id: &str) -> ApiResult<WorkRequest> {
        let id = parse_id("id", id)?;
        let mut conn = self.pool.get().await?;
        let caller_ref = caller;
        let live = conn.transaction::<_, ApiError, _>(async |conn| {
                // A workflow's steps are locked before the workflow (see `crate::work::workflow`).
                crate::work::workflow::lock_children(conn, id).await?;
                let (status, created_by): (String, Uuid) = work_requests::table
                    .find(id)
                    .select((work_requests::status, work_requests::created_by))
                    .for_update()
                    .first(conn)
                    .await
                    .optional()?
                    .ok_or_else(|| ApiError::NotFound(format!("work request {id} not found")))?;
                if !caller_ref.is_admin() && caller_ref.user_id != Some(created_by) {
                    return Err(ApiError::PermissionDenied(format!(
                        "work request {id} was submitted by another user; only its submitter or an admin may cancel it"
                    )));
                }
                let status = WrStatus::parse(&status)
                    .ok_or_else(|| ApiError::internal(format!("unknown status {status:?}")))?;
                match status {
                    WrStatus::Completed | WrStatus::Aborted => {
                        Err(ApiError::FailedPrecondition(format!(
                            "work request {id} is already {}; only blocked, pending or running requests can be cancelled",
                            status.as_str()
                        )))
                    }
                    WrStatus::Blocked | WrStatus::Pending | WrStatus::Running => {
                        diesel::update(work_requests::table.find(id))
                            .set((
                                work_requests::status.eq(WrStatus::Aborted.as_str()),
                                work_requests::reason.eq("cancelled"),
                                work_requests::completed_at.eq(Utc::now()),
                            ))
                            .execute(conn)
                            .await?;
                        // Its blocked dependants are aborted too (or, with allow_failure, released).
                        crate::work::deps::settle(conn, id).await?;
                        // Cancelling a workflow aborts its steps that have not ended.
                        let (steps, mut stopping) = crate::work::workflow::abort_children(conn, id).await?;
                        for step in steps {
                            crate::work::deps::settle(conn, step).await?;
                        }
                        crate::work::workflow::refresh_parent_of(conn, id).await?;
                        // A live attempt's container must be stopped by its worker.
                        let live: Option<(Option<Uuid>, i32)> = attempts::table
                            .filter(attempts::work_request_id.eq(id))
                            .filter(attempts::state.ne("finished"))
                            .select((attempts::worker_id, attempts::number))
                            .first(conn)
                            .await
                            .optional()?;
                        if let Some((Some(worker_id), attempt)) = live {
                            stopping.push(crate::work::workflow::LiveAttempt { work_request_id: id, worker_id, attempt });
                        }
                        Ok(stopping)
                    }
                }
        })
        .await?;
        tracing::info!(work_request = %id, by = %caller.name, "work request cancelled");
        for stop in live {
            if !crate::api::agent::send_cancel(
                &self.hub,
                stop.worker_id,
                stop.work_request_id,
                stop.attempt,
            )
            .await
            {
                tracing::info!(work_request = %stop.work_request_id, worker_id = %stop.worker_id, "the worker is not connected here; asking the other replicas (else it stops the container when it reconnects)");
                self.hub.publish(crate::live::notify::Event::Cancel {
                    worker_id: stop.worker_id,
                    work_request_id: stop.work_request_id,
                    attempt: stop.attempt,
                });
            }
        }
        self.hub.changed();
        // Dependants released by an allow_failure request may be queued now.
        self.hub.wake_scheduler();
        load(&mut conn, id).await
    }

    async fn unblock(
        &self,
        caller: &Identity,
        req: &UnblockWorkRequestRequest,
    ) -> ApiResult<WorkRequest> {
        let id = parse_id("id", &req.id)?;
        let mut conn = self.pool.get().await?;
        let queued = crate::work::deps::unblock(&mut conn, caller, id, req.accept).await?;
        tracing::info!(work_request = %id, by = %caller.name, accept = req.accept, "manual unblock decided");
        if queued {
            self.hub.wake_scheduler();
        }
        self.hub.changed();
        load(&mut conn, id).await
    }

    async fn retry(&self, caller: &Identity, id: &str) -> ApiResult<WorkRequest> {
        let id = parse_id("id", id)?;
        let mut conn = self.pool.get().await?;
        if crate::work::deps::retry(&mut conn, caller, id).await? {
            self.hub.wake_scheduler();
        }
        self.hub.changed();
        load(&mut conn, id).await
    }
}

/// The scheduling fields of a submission (dependencies, unblock strategy, retries),
/// converted from the wire and checked.
fn scheduling(req: &SubmitWorkRequestRequest) -> ApiResult<crate::work::deps::Scheduling> {
    let manual = match UnblockStrategy::try_from(req.unblock) {
        Ok(UnblockStrategy::Unspecified | UnblockStrategy::Deps) => false,
        Ok(UnblockStrategy::Manual) => true,
        Err(_) => {
            return Err(ApiError::InvalidArgument(format!(
                "unblock: unknown strategy {}; use UNBLOCK_STRATEGY_DEPS or UNBLOCK_STRATEGY_MANUAL",
                req.unblock
            )));
        }
    };
    crate::work::deps::Scheduling::check(
        &req.after,
        manual,
        req.allow_failure,
        req.retries,
        req.retry_backoff.as_ref().map(|d| (d.seconds, d.nanos)),
    )
}

#[tonic::async_trait]
impl WorkRequestService for WorkRequestApi {
    type StreamLogsStream = futures::stream::BoxStream<'static, Result<LogChunk, Status>>;

    async fn adjust_priority(
        &self,
        request: Request<AdjustPriorityRequest>,
    ) -> Result<Response<WorkRequest>, Status> {
        let caller = identity(&request)?;
        Ok(Response::new(
            self.adjust_priority(&caller, request.get_ref()).await?,
        ))
    }

    async fn list_queue(
        &self,
        request: Request<ListQueueRequest>,
    ) -> Result<Response<ListQueueResponse>, Status> {
        Ok(Response::new(self.queue(request.get_ref()).await?))
    }

    async fn unblock_work_request(
        &self,
        request: Request<UnblockWorkRequestRequest>,
    ) -> Result<Response<WorkRequest>, Status> {
        let caller = identity(&request)?;
        Ok(Response::new(
            self.unblock(&caller, request.get_ref()).await?,
        ))
    }

    async fn retry_work_request(
        &self,
        request: Request<RetryWorkRequestRequest>,
    ) -> Result<Response<WorkRequest>, Status> {
        let caller = identity(&request)?;
        Ok(Response::new(
            self.retry(&caller, &request.get_ref().id).await?,
        ))
    }

    async fn submit_workflow(
        &self,
        request: Request<SubmitWorkflowRequest>,
    ) -> Result<Response<WorkRequest>, Status> {
        let caller = identity(&request)?;
        Ok(Response::new(
            self.submit_workflow(&caller, request.get_ref()).await?,
        ))
    }

    async fn stream_logs(
        &self,
        request: Request<StreamLogsRequest>,
    ) -> Result<Response<Self::StreamLogsStream>, Status> {
        let req = request.into_inner();
        let id = parse_id("id", &req.id)?;
        let attempt = i32::try_from(req.attempt)
            .map_err(|_| ApiError::InvalidArgument("attempt: out of range".into()))?;
        let mut conn = self.pool.get().await.map_err(ApiError::from)?;
        let found = load(&mut conn, id).await?;
        if attempt > 0 && req.attempt > found.attempt_count {
            return Err(ApiError::NotFound(format!(
                "work request {id} has {} attempts; there is no attempt {attempt}",
                found.attempt_count
            ))
            .into());
        }
        drop(conn);
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let follower = LogFollower {
            pool: self.pool.clone(),
            hub: self.hub.clone(),
            id,
            attempt,
            follow: req.follow,
            skip: [req.stdout_offset, req.stderr_offset, 0],
        };
        tokio::spawn(follower.run(tx));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn submit_work_request(
        &self,
        request: Request<SubmitWorkRequestRequest>,
    ) -> Result<Response<WorkRequest>, Status> {
        let caller = identity(&request)?;
        Ok(Response::new(
            self.submit(&caller, request.into_inner()).await?,
        ))
    }

    async fn get_work_request(
        &self,
        request: Request<GetWorkRequestRequest>,
    ) -> Result<Response<WorkRequest>, Status> {
        let id = parse_id("id", &request.get_ref().id)?;
        let mut conn = self.pool.get().await.map_err(ApiError::from)?;
        let mut found = load(&mut conn, id).await?;
        describe_wait(&mut conn, id, &mut found).await?;
        if found.status == WorkRequestStatus::Blocked as i32 {
            found.pending_reason = crate::work::deps::blocked_reason(&mut conn, id).await?;
        }
        Ok(Response::new(found))
    }

    async fn list_work_requests(
        &self,
        request: Request<ListWorkRequestsRequest>,
    ) -> Result<Response<ListWorkRequestsResponse>, Status> {
        Ok(Response::new(self.list(request.into_inner()).await?))
    }

    async fn cancel_work_request(
        &self,
        request: Request<CancelWorkRequestRequest>,
    ) -> Result<Response<WorkRequest>, Status> {
        let caller = identity(&request)?;
        Ok(Response::new(
            self.cancel(&caller, &request.get_ref().id).await?,
        ))
    }
}

// ----- the queue: priority adjustments, positions and reasons (see `crate::queue`) -----

/// Fills in why a blocked or pending request waits and, if pending, its place in line.
async fn describe_wait(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    request: &mut WorkRequest,
) -> ApiResult<()> {
    let pending = request.status == WorkRequestStatus::Pending as i32;
    if pending || request.status == WorkRequestStatus::Blocked as i32 {
        request.pending_reason = crate::work::queue::pending_reason(conn, id).await?;
    }
    if pending {
        request.queue_position = crate::work::queue::queue_position(conn, id).await?;
    }
    Ok(())
}

impl WorkRequestApi {
    async fn adjust_priority(
        &self,
        caller: &Identity,
        req: &AdjustPriorityRequest,
    ) -> ApiResult<WorkRequest> {
        // The auth rules already admit only admins; this keeps the handler safe on its own.
        if !caller.is_admin() {
            return Err(ApiError::PermissionDenied(
                "only admins may change a work request's priority".into(),
            ));
        }
        let id = parse_id("id", &req.id)?;
        let mut conn = self.pool.get().await?;
        let (delta, set) = (req.delta, req.set);
        let (before, after) = conn
            .transaction::<_, ApiError, _>(async |conn| {
                let (status, base, current): (String, i32, i32) = work_requests::table
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
                    .ok_or_else(|| ApiError::NotFound(format!("work request {id} not found")))?;
                if WrStatus::parse(&status).is_none_or(WrStatus::is_terminal) {
                    return Err(ApiError::FailedPrecondition(format!(
                        "work request {id} is already {status}; only blocked, pending or running requests can be reprioritised"
                    )));
                }
                let adjustment = crate::work::queue::new_adjustment(base, current, delta, set)?;
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
        let mut found = load(&mut conn, id).await?;
        describe_wait(&mut conn, id, &mut found).await?;
        Ok(found)
    }

    async fn queue(&self, req: &ListQueueRequest) -> ApiResult<ListQueueResponse> {
        let limit = match req.limit {
            0 => 100,
            n @ 1..=1000 => i64::from(n),
            n => {
                return Err(ApiError::InvalidArgument(format!(
                    "limit: {n} is out of range; use 1 to 1000"
                )));
            }
        };
        let mut conn = self.pool.get().await?;
        if !req.workspace.is_empty() {
            workspaces::table
                .filter(workspaces::name.eq(&req.workspace))
                .select(workspaces::id)
                .first::<Uuid>(&mut conn)
                .await
                .optional()?
                .ok_or_else(|| {
                    ApiError::NotFound(format!("workspace: no workspace named {:?}", req.workspace))
                })?;
        }
        let workspace = (!req.workspace.is_empty()).then_some(req.workspace.as_str());
        let items = crate::work::queue::list_queue(&mut conn, workspace, limit).await?;
        let entries = items
            .into_iter()
            .map(|item| {
                let mut request = to_proto(item.row, item.workspace, item.created_by, Vec::new())?;
                request.queue_position = item.position;
                request.pending_reason.clone_from(&item.reason);
                Ok(QueueEntry {
                    work_request: Some(request),
                    position: item.position,
                    pending_reason: item.reason,
                })
            })
            .collect::<ApiResult<Vec<_>>>()?;
        Ok(ListQueueResponse { entries })
    }
}

/// Most chunks a follower reads from the database at once.
const BATCH_CHUNKS: i64 = 64;
/// About the most log bytes a follower reads at once (one chunk more at most): chunks
/// are up to 4 MiB, and a follower should not hold 64 of them.
const BATCH_BYTES: i64 = 8 * 1024 * 1024;

/// Streams one request's log to one client.
struct LogFollower {
    pool: DbPool,
    hub: Arc<Hub>,
    id: Uuid,
    attempt: i32,
    follow: bool,
    /// Bytes to skip per stream (stdout, stderr, system).
    skip: [u64; 3],
}

impl LogFollower {
    /// Reads chunks in production order and sends them; when following, waits for more
    /// until the request is terminal and everything stored was sent. Ends quietly when
    /// the client goes away.
    async fn run(self, tx: tokio::sync::mpsc::Sender<Result<LogChunk, Status>>) {
        let mut changes = self.hub.subscribe();
        let mut after = 0i64;
        loop {
            // Read the status before the chunks: if it was terminal then, every chunk
            // written before it is in this read.
            let status: Result<String, ApiError> = async {
                let mut conn = self.pool.get().await?;
                Ok(work_requests::table
                    .find(self.id)
                    .select(work_requests::status)
                    .first::<String>(&mut conn)
                    .await?)
            }
            .await;
            let terminal = match status {
                Ok(status) => WrStatus::parse(&status).is_some_and(WrStatus::is_terminal),
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
            };
            loop {
                let batch = async {
                    let mut conn = self.pool.get().await?;
                    crate::work::logs::read_after(
                        &mut conn,
                        self.id,
                        self.attempt,
                        after,
                        BATCH_CHUNKS,
                        BATCH_BYTES,
                    )
                    .await
                }
                .await;
                let batch = match batch {
                    Ok(batch) => batch,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                };
                // A batch cut by size holds at least BATCH_BYTES.
                let bytes: usize = batch.iter().map(|(_, chunk)| chunk.data.len()).sum();
                let more = batch.len() as i64 == BATCH_CHUNKS || bytes as i64 >= BATCH_BYTES;
                for (seq, mut chunk) in batch {
                    after = seq;
                    let skip = self.skip[(chunk.stream as usize).saturating_sub(1).min(2)];
                    let end = chunk.offset + chunk.data.len() as u64;
                    if end <= skip {
                        continue;
                    }
                    if chunk.offset < skip {
                        chunk
                            .data
                            .drain(..usize::try_from(skip - chunk.offset).unwrap_or(0));
                        chunk.offset = skip;
                    }
                    if tx.send(Ok(chunk)).await.is_err() {
                        return;
                    }
                }
                if !more {
                    break;
                }
            }
            if !self.follow || terminal {
                return;
            }
            // Wait for a change here, or re-check after a while (another replica may
            // have stored the bytes), or stop when the client is gone.
            tokio::select! {
                _ = changes.changed() => {}
                () = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
                () = tx.closed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_garbage_is_refused() {
        let at = DateTime::<Utc>::from_timestamp_micros(1_700_000_000_123_456).expect("time");
        let id = Uuid::now_v7();
        let token = encode_page_token(at, id);
        assert_eq!(decode_page_token(&token).expect("decode"), (at, id));
        assert!(decode_page_token("garbage!").is_err());
        assert!(decode_page_token(&URL_SAFE_NO_PAD.encode("1:notauuid")).is_err());
    }

    #[test]
    fn statuses_map_both_ways() {
        for status in [
            WrStatus::Blocked,
            WrStatus::Pending,
            WrStatus::Running,
            WrStatus::Completed,
            WrStatus::Aborted,
        ] {
            assert_eq!(
                status_from_proto(status_to_proto(status.as_str())),
                Some(status)
            );
        }
    }
}
