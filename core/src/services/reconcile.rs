//! The reconciler: makes each service's slots match what is desired.
//!
//! One task per server replica ([`run`]) passes over the services every `interval` and
//! whenever the hub says something changed (a replica's request ended, started, or
//! reported health). A pass takes each live or deleted-but-not-empty service with
//! `FOR UPDATE SKIP LOCKED`, so replicas of the server share the work and never handle
//! one service at once, loads its [`ServiceState`] and, in that one transaction:
//!
//! 1. makes the slots the processes ask for, and stops the ones beyond them (scaled
//!    down: the highest indices; deleted: all), removing a slot once its containers are
//!    gone;
//! 2. for each slot whose current container ended, records why and starts the next one
//!    when the restart policy says so ([`crate::services::restart`]);
//! 3. notes replicas that became healthy, and replaces a replica its HEALTHCHECK calls
//!    unhealthy;
//! 4. advances a deploy under way ([`crate::services::deploy::advance`]).
//!
//! What must reach workers (stops) and the scheduler is collected in [`AfterCommit`] and
//! handed to the hub only once the transaction commits.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use tokio_util::sync::CancellationToken;
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

/// Passes over the services until `stop` is cancelled: every `manager.interval`, and
/// whenever the hub reports a change. A failed pass is logged and tried again next time.
pub async fn run(manager: ServiceManager, stop: CancellationToken) {
    let _ = (manager, stop);
}

/// One pass over every service that needs one. Returns how many services it handled.
pub async fn run_once(manager: &ServiceManager) -> Result<usize> {
    let _ = manager;
    Err(Error::internal(
        "services::reconcile::run_once is not built yet",
    ))
}

/// Loads `service`'s state (its slots with their current and next containers), in the
/// caller's transaction.
pub async fn load(conn: &mut AsyncPgConnection, service: ServiceRow) -> Result<ServiceState> {
    let _ = (conn, service);
    Err(Error::internal(
        "services::reconcile::load is not built yet",
    ))
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
        "services::reconcile::start_run is not built yet",
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
        "services::reconcile::stop_run is not built yet",
    ))
}
