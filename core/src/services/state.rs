//! What a reconcile pass works on — a service with its slots and their containers — and
//! the primitives that change slots' containers, shared by the pass
//! ([`crate::services::reconcile`]) and deploys ([`crate::services::deploy`]): loading a
//! service's state, starting a slot's next container, stopping one. Changes are made in
//! the caller's transaction; what must reach workers waits in [`AfterCommit`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::services::store::{ServiceRow, SlotRow};
use crate::services::{Backoff, HealthSettings, Process, RestartPolicy, ServiceManager};
use crate::work::ids::WorkRequestId;
use crate::work::lifecycle::LiveAttempt;
use crate::work::own::Placement;
use crate::work::spec::PortMapping;
use crate::work::state::{Reason, Status, WorkResult};

/// One container of a slot: its request and what its latest attempt reported.
#[derive(Clone, Debug)]
pub struct RunState {
    pub request_id: WorkRequestId,
    /// The release it runs.
    pub version: i32,
    pub status: Status,
    pub result: Option<WorkResult>,
    pub reason: Reason,
    pub exit_code: Option<i32>,
    /// The request's message (for an ending: why).
    pub message: String,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Its latest attempt's number, worker (id and name) and container start.
    pub attempt: Option<i32>,
    pub worker_id: Option<Uuid>,
    pub worker_name: String,
    pub started_at: Option<DateTime<Utc>>,
    /// The latest attempt's ending reason (`worker-lost`, `oom`, ...).
    pub attempt_reason: Reason,
    /// Its image has a Docker HEALTHCHECK, and what it last said.
    pub has_healthcheck: bool,
    pub health: Option<String>,
    pub health_at: Option<DateTime<Utc>>,
    /// The ports Docker published for it, as bound.
    pub ports: Vec<PortMapping>,
}

/// A slot with its current container and, during a deploy, its replacement.
#[derive(Clone, Debug)]
pub struct SlotState {
    pub row: SlotRow,
    pub current: Option<RunState>,
    pub next: Option<RunState>,
}

/// A service with its settings read and its slots loaded, as one pass sees it.
#[derive(Clone, Debug)]
pub struct ServiceState {
    pub row: ServiceRow,
    pub processes: BTreeMap<String, Process>,
    pub policy: RestartPolicy,
    pub backoff: Backoff,
    pub health: HealthSettings,
    pub ports: Vec<PortMapping>,
    /// By process type, then index.
    pub slots: Vec<SlotState>,
}

/// What a pass hands on once its transaction commits.
#[derive(Debug, Default)]
pub struct AfterCommit {
    /// Containers to stop (through the hub).
    pub stops: Vec<LiveAttempt>,
    /// Requests were made: wake the scheduler.
    pub wake_scheduler: bool,
}

impl AfterCommit {
    /// Hands everything to the hub.
    pub(crate) fn deliver(self, manager: &ServiceManager) {
        for stop in self.stops {
            manager.hub.cancel(stop.worker_id, stop.key);
        }
        if self.wake_scheduler {
            manager.hub.wake_scheduler();
        }
        manager.hub.changed();
    }
}

/// Loads `service`'s state (its slots with their current and next containers), in the
/// caller's transaction.
pub async fn load(conn: &mut AsyncPgConnection, service: ServiceRow) -> Result<ServiceState> {
    let _ = (conn, service);
    Err(Error::internal("services::state::load is not built yet"))
}

/// Makes the next container of `slot`: a request from release `version` of the
/// service's template (the process's command, the service's ports, no timeout, retry
/// budget 0), linked to the slot in `service_runs`, offered from `not_before` on and
/// placed by `placement`; records a `started` event with `reason`. In the caller's
/// transaction; the caller sets the slot's `request_id` or `next_request_id` and marks
/// `after.wake_scheduler`.
#[allow(clippy::too_many_arguments)]
pub async fn start_run(
    manager: &ServiceManager,
    conn: &mut AsyncPgConnection,
    state: &ServiceState,
    process: &str,
    index: i32,
    version: i32,
    not_before: Option<DateTime<Utc>>,
    placement: Placement,
    reason: &str,
) -> Result<WorkRequestId> {
    let _ = (
        manager, conn, state, process, index, version, not_before, placement, reason,
    );
    Err(Error::internal(
        "services::state::start_run is not built yet",
    ))
}

/// Stops `request` (a container of one of the service's slots) with `why` as its
/// message and records a `stopping` event, in the caller's transaction; its live attempt
/// goes into `after.stops`.
pub async fn stop_run(
    conn: &mut AsyncPgConnection,
    state: &ServiceState,
    slot: &SlotRow,
    request: WorkRequestId,
    why: &str,
    after: &mut AfterCommit,
) -> Result<()> {
    let _ = (conn, state, slot, request, why, after);
    Err(Error::internal(
        "services::state::stop_run is not built yet",
    ))
}
