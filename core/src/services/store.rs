//! Service, slot, run and event rows, and finding and locking a service.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use crate::store::schema::{service_events, service_runs, service_slots, services};

/// A service row.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = services)]
pub struct ServiceRow {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub name: String,
    pub template_id: Uuid,
    /// The release its replicas run (the target while a deploy is under way).
    pub version: i32,
    pub stable_version: Option<i32>,
    /// Process type → [`crate::services::Process`], as JSON.
    pub processes: serde_json::Value,
    /// `always`, `on-failure` or `never` ([`crate::services::RestartPolicy`]).
    pub restart_policy: String,
    pub backoff_initial_ms: i64,
    pub backoff_max_ms: i64,
    pub stable_after_ms: i64,
    pub success_delay_ms: i64,
    pub max_local_restarts: i32,
    pub min_healthy_ms: i64,
    pub deploy_deadline_ms: i64,
    /// A list of [`crate::work::spec::PortMapping`] as JSON.
    pub ports: serde_json::Value,
    /// '', `rolling`, `done`, `failed` or `reverting`.
    pub deploy_state: String,
    pub deploy_from: Option<i32>,
    pub deploy_auto_revert: bool,
    pub deploy_started_at: Option<DateTime<Utc>>,
    pub deploy_deadline_at: Option<DateTime<Utc>>,
    pub deploy_message: String,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// A replica slot row.
#[derive(Clone, Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = service_slots)]
pub struct SlotRow {
    pub service_id: Uuid,
    pub process: String,
    pub slot_index: i32,
    /// Its current container's request.
    pub request_id: Option<Uuid>,
    /// The release `request_id` runs.
    pub version: i32,
    /// During a deploy: the replacement being started, and its release.
    pub next_request_id: Option<Uuid>,
    pub next_version: Option<i32>,
    /// Failures in a row (the backoff's exponent).
    pub failures: i32,
    /// Failures in a row on `last_worker_id`.
    pub local_failures: i32,
    pub last_worker_id: Option<Uuid>,
    /// While restarting: when it may start again.
    pub restart_at: Option<DateTime<Utc>>,
    pub healthy_since: Option<DateTime<Utc>>,
    /// Ended and not restarted under the restart policy.
    pub exited: bool,
}

/// Which slot a request is a container of.
#[derive(Clone, Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = service_runs)]
pub struct RunRow {
    pub request_id: Uuid,
    pub service_id: Uuid,
    pub process: String,
    pub slot_index: i32,
    pub version: i32,
}

/// An event row.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = service_events)]
pub struct EventRow {
    pub id: i64,
    pub service_id: Uuid,
    pub process: Option<String>,
    pub slot_index: Option<i32>,
    pub at: DateTime<Utc>,
    /// An [`EventKind`]'s text.
    pub kind: String,
    pub reason: String,
    pub version: Option<i32>,
    pub request_id: Option<Uuid>,
    pub worker_id: Option<Uuid>,
    pub exit_code: Option<i32>,
    pub by_user: Option<Uuid>,
}

/// An event to record (see [`crate::services::history::record`]).
#[derive(Clone, Debug, Insertable)]
#[diesel(table_name = service_events)]
pub struct NewEvent {
    pub service_id: Uuid,
    pub process: Option<String>,
    pub slot_index: Option<i32>,
    pub kind: String,
    pub reason: String,
    pub version: Option<i32>,
    pub request_id: Option<Uuid>,
    pub worker_id: Option<Uuid>,
    pub exit_code: Option<i32>,
    pub by_user: Option<Uuid>,
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Created,
    /// A container for a slot was made (its request), first or again.
    Started,
    Healthy,
    /// A container ended (the reason says how).
    Exited,
    /// The slot waits out its backoff before the next container.
    Restarting,
    /// The next container avoids the worker the slot kept failing on, or the one it was
    /// pinned to is gone.
    Moved,
    /// The worker running it was lost.
    Lost,
    /// Its container is being stopped (scaled away, deleted, replaced, unhealthy).
    Stopping,
    Scaled,
    Updated,
    DeployStarted,
    DeployStep,
    DeployDone,
    DeployFailed,
    Reverting,
    Deleted,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::Started => "started",
            EventKind::Healthy => "healthy",
            EventKind::Exited => "exited",
            EventKind::Restarting => "restarting",
            EventKind::Moved => "moved",
            EventKind::Lost => "lost",
            EventKind::Stopping => "stopping",
            EventKind::Scaled => "scaled",
            EventKind::Updated => "updated",
            EventKind::DeployStarted => "deploy-started",
            EventKind::DeployStep => "deploy-step",
            EventKind::DeployDone => "deploy-done",
            EventKind::DeployFailed => "deploy-failed",
            EventKind::Reverting => "reverting",
            EventKind::Deleted => "deleted",
        }
    }
}
