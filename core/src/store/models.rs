//! Rows as diesel reads them. State columns read as the typed enums of `work::state`, ids
//! of work requests as `work::ids::WorkRequestId`.
//!
//! These are the core's types; the API edge converts them to and from the wire types.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use crate::store::schema::{attempts, tokens, work_requests, workers};
use crate::work::ids::WorkRequestId;
use crate::work::state::{AttemptState, Kind, Reason, Status, UnblockStrategy, WorkResult};

/// A token row (the hash is never read back out).
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = tokens)]
pub struct TokenRow {
    pub id: Uuid,
    pub role: String,
    pub user_id: Option<Uuid>,
    pub worker_name: String,
    pub comment: String,
    pub enabled: bool,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A worker row.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = workers)]
pub struct WorkerRow {
    pub id: Uuid,
    pub name: String,
    pub token_id: Option<Uuid>,
    pub labels: serde_json::Value,
    pub metadata: serde_json::Value,
    pub concurrency: i32,
    pub enabled: bool,
    pub draining: bool,
    pub connected_at: Option<DateTime<Utc>>,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A work request row, without the sealed secrets.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = work_requests)]
pub struct WorkRequestRow {
    pub id: WorkRequestId,
    pub workspace_id: Uuid,
    pub status: Status,
    pub result: Option<WorkResult>,
    pub spec: serde_json::Value,
    pub secret_env_keys: Vec<String>,
    pub requirements: serde_json::Value,
    pub priority_base: i32,
    pub priority_adjustment: i32,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub exit_code: Option<i32>,
    pub reason: Reason,
    pub parent_id: Option<WorkRequestId>,
    pub attempt_count: i32,
    pub message: String,
    pub log_truncated: bool,
    pub unblock_strategy: UnblockStrategy,
    pub allow_failure: bool,
    pub retries_left: i32,
    pub name: String,
    /// A job, or a workflow parent whose status follows its steps (never run).
    pub kind: Kind,
    /// The template it was made from, if any (a record of origin: the spec is its own).
    pub template_id: Option<Uuid>,
    /// That template's release version.
    pub template_version: Option<i32>,
}

/// A work request as submitted, ready to insert.
#[derive(Clone, Debug, Insertable)]
#[diesel(table_name = work_requests)]
pub(crate) struct NewWorkRequest {
    pub id: WorkRequestId,
    pub workspace_id: Uuid,
    pub status: Status,
    pub spec: serde_json::Value,
    /// Sealed with the server's key (`crate::secrets`), never plain.
    pub secret_env: Option<Vec<u8>>,
    pub secret_env_keys: Vec<String>,
    pub requirements: serde_json::Value,
    pub priority_base: i32,
    pub created_by: Uuid,
    pub unblock_strategy: UnblockStrategy,
    pub allow_failure: bool,
    pub retries_left: i32,
    pub retry_backoff_ms: i64,
    /// The template release it was made from, if any.
    pub template_id: Option<Uuid>,
    pub template_version: Option<i32>,
    /// The trace it was submitted in (`observe::traces`), when traces are exported.
    pub traceparent: Option<String>,
}

/// An attempt row.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = attempts)]
pub struct AttemptRow {
    pub work_request_id: WorkRequestId,
    pub number: i32,
    pub worker_name: String,
    pub state: AttemptState,
    pub container_id: String,
    pub exit_code: Option<i32>,
    pub reason: Reason,
    pub assigned_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub peak_memory_bytes: Option<i64>,
    pub cpu_time_ns: Option<i64>,
    pub message: String,
    pub pull_ms: Option<i64>,
    pub run_ms: Option<i64>,
    /// Why its stored log misses output; empty when complete.
    pub log_incomplete: String,
    /// The artifact its outputs were collected into.
    pub output_artifact_id: Option<Uuid>,
}
