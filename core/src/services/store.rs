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
    /// The deadline of each step of the deploy under way, when it was given one.
    pub deploy_step_ms: Option<i64>,
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

use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::error::{Error, Result};

/// The live (not deleted) service `name` of a workspace; NOT_FOUND names it.
pub async fn find(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    workspace: &str,
    name: &str,
) -> Result<ServiceRow> {
    services::table
        .filter(services::workspace_id.eq(workspace_id))
        .filter(services::name.eq(name))
        .filter(services::deleted_at.is_null())
        .select(ServiceRow::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| {
            Error::NotFound(format!(
                "workspace {workspace} has no service named {name:?}"
            ))
        })
}

/// Locks a service's row for the rest of the transaction and returns it as it is now.
pub async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> Result<ServiceRow> {
    Ok(services::table
        .find(id)
        .select(ServiceRow::as_select())
        .for_update()
        .first(conn)
        .await?)
}

/// The slots of a service, by process type then index.
pub async fn slots(conn: &mut AsyncPgConnection, service_id: Uuid) -> Result<Vec<SlotRow>> {
    Ok(service_slots::table
        .filter(service_slots::service_id.eq(service_id))
        .order((service_slots::process, service_slots::slot_index))
        .select(SlotRow::as_select())
        .load(conn)
        .await?)
}

/// Writes a slot's row back as it is in `slot`.
pub async fn save_slot(conn: &mut AsyncPgConnection, slot: &SlotRow) -> Result<()> {
    diesel::update(service_slots::table.find((
        slot.service_id,
        slot.process.clone(),
        slot.slot_index,
    )))
    .set((
        service_slots::request_id.eq(slot.request_id),
        service_slots::version.eq(slot.version),
        service_slots::next_request_id.eq(slot.next_request_id),
        service_slots::next_version.eq(slot.next_version),
        service_slots::failures.eq(slot.failures),
        service_slots::local_failures.eq(slot.local_failures),
        service_slots::last_worker_id.eq(slot.last_worker_id),
        service_slots::restart_at.eq(slot.restart_at),
        service_slots::healthy_since.eq(slot.healthy_since),
        service_slots::exited.eq(slot.exited),
    ))
    .execute(conn)
    .await?;
    Ok(())
}

impl NewEvent {
    /// An event of the whole service.
    pub fn service(service_id: Uuid, kind: EventKind, reason: impl Into<String>) -> NewEvent {
        NewEvent {
            service_id,
            process: None,
            slot_index: None,
            kind: kind.as_str().to_owned(),
            reason: reason.into(),
            version: None,
            request_id: None,
            worker_id: None,
            exit_code: None,
            by_user: None,
        }
    }

    /// An event of one slot.
    pub fn slot(slot: &SlotRow, kind: EventKind, reason: impl Into<String>) -> NewEvent {
        NewEvent {
            process: Some(slot.process.clone()),
            slot_index: Some(slot.slot_index),
            ..NewEvent::service(slot.service_id, kind, reason)
        }
    }
}
