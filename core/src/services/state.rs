//! What a reconcile pass works on — a service with its slots and their containers — and
//! the primitives that change slots' containers, shared by the pass
//! ([`crate::services::reconcile`]) and deploys ([`crate::services::deploy`]): loading a
//! service's state, starting a slot's next container, stopping one. Changes are made in
//! the caller's transaction; what must reach workers waits in [`AfterCommit`].

use std::collections::BTreeMap;

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::services::history;
use crate::services::store::{EventKind, NewEvent, RunRow, ServiceRow, SlotRow};
use crate::services::{Backoff, HealthSettings, Process, RestartPolicy, ServiceManager};
use crate::store::schema::{attempts, service_runs, work_requests, workspaces};
use crate::work::ids::{Origin, WorkRequestId};
use crate::work::lifecycle::LiveAttempt;
use crate::work::own::{self, OwnRequest, Placement};
use crate::work::spec::{PortMapping, validate_submission};
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
    /// Something callers see changed (an event was recorded): tell followers. A pass
    /// that changed nothing says nothing, or every pass would wake the next one.
    pub changed: bool,
}

impl AfterCommit {
    /// Hands everything to the hub.
    pub(crate) fn deliver(self, manager: &ServiceManager) {
        let changed = self.changed || self.wake_scheduler || !self.stops.is_empty();
        for stop in self.stops {
            manager.hub.cancel(stop.worker_id, stop.key);
        }
        if self.wake_scheduler {
            manager.hub.wake_scheduler();
        }
        if changed {
            manager.hub.changed();
        }
    }
}

/// Milliseconds as stored, as a duration (a negative value, which the checks refuse, as 0).
pub(crate) fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// Reads a service row's settings.
pub fn settings(
    row: &ServiceRow,
) -> Result<(
    BTreeMap<String, Process>,
    RestartPolicy,
    Backoff,
    HealthSettings,
    Vec<PortMapping>,
)> {
    let bad = |what: &str, e: serde_json::Error| {
        Error::internal(format!("stored {what} of service {} unreadable: {e}", row.id))
    };
    let processes: BTreeMap<String, Process> =
        serde_json::from_value(row.processes.clone()).map_err(|e| bad("processes", e))?;
    let ports: Vec<PortMapping> =
        serde_json::from_value(row.ports.clone()).map_err(|e| bad("ports", e))?;
    let policy = RestartPolicy::parse(&row.restart_policy).ok_or_else(|| {
        Error::internal(format!(
            "stored restart policy {:?} of service {} unknown",
            row.restart_policy, row.id
        ))
    })?;
    let backoff = Backoff {
        initial: millis(row.backoff_initial_ms),
        max: millis(row.backoff_max_ms),
        stable_after: millis(row.stable_after_ms),
        success_delay: millis(row.success_delay_ms),
        max_local_restarts: u32::try_from(row.max_local_restarts).unwrap_or(0),
    };
    let health = HealthSettings {
        min_healthy: millis(row.min_healthy_ms),
        deploy_deadline: millis(row.deploy_deadline_ms),
    };
    Ok((processes, policy, backoff, health, ports))
}

type RequestFacts = (
    WorkRequestId,
    Status,
    Option<WorkResult>,
    Reason,
    Option<i32>,
    String,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    i32,
);

type AttemptFacts = (
    WorkRequestId,
    i32,
    Option<Uuid>,
    String,
    Option<DateTime<Utc>>,
    Reason,
    bool,
    Option<String>,
    Option<DateTime<Utc>>,
    serde_json::Value,
);

/// What `ids` (containers of services' slots) are doing, by request id.
pub async fn runs(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, RunState>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let requests: Vec<RequestFacts> = work_requests::table
        .filter(work_requests::id.eq_any(ids))
        .select((
            work_requests::id,
            work_requests::status,
            work_requests::result,
            work_requests::reason,
            work_requests::exit_code,
            work_requests::message,
            work_requests::created_at,
            work_requests::completed_at,
            work_requests::attempt_count,
        ))
        .load(conn)
        .await?;
    let versions: HashMap<Uuid, i32> = service_runs::table
        .filter(service_runs::request_id.eq_any(ids))
        .select((service_runs::request_id, service_runs::version))
        .load::<(Uuid, i32)>(conn)
        .await?
        .into_iter()
        .collect();
    let mut latest: HashMap<Uuid, AttemptFacts> = HashMap::new();
    let found: Vec<AttemptFacts> = attempts::table
        .filter(attempts::work_request_id.eq_any(ids))
        .select((
            attempts::work_request_id,
            attempts::number,
            attempts::worker_id,
            attempts::worker_name,
            attempts::started_at,
            attempts::reason,
            attempts::has_healthcheck,
            attempts::health,
            attempts::health_at,
            attempts::ports,
        ))
        .load(conn)
        .await?;
    for facts in found {
        let newer = latest.get(&facts.0.0).is_none_or(|held| held.1 < facts.1);
        if newer {
            latest.insert(facts.0.0, facts);
        }
    }
    let mut out = HashMap::new();
    for (id, status, result, reason, exit_code, message, created_at, completed_at, _) in requests
    {
        let attempt = latest.remove(&id.0);
        let mut run = RunState {
            request_id: id,
            version: versions.get(&id.0).copied().unwrap_or(0),
            status,
            result,
            reason,
            exit_code,
            message,
            created_at,
            completed_at,
            attempt: None,
            worker_id: None,
            worker_name: String::new(),
            started_at: None,
            attempt_reason: Reason::None,
            has_healthcheck: false,
            health: None,
            health_at: None,
            ports: Vec::new(),
        };
        if let Some((_, number, worker_id, worker_name, started_at, reason, hc, health, at, ports)) =
            attempt
        {
            run.attempt = Some(number);
            run.worker_id = worker_id;
            run.worker_name = worker_name;
            run.started_at = started_at;
            run.attempt_reason = reason;
            run.has_healthcheck = hc;
            run.health = health;
            run.health_at = at;
            run.ports = serde_json::from_value(ports).unwrap_or_default();
        }
        out.insert(id.0, run);
    }
    Ok(out)
}

/// Loads `service`'s state (its slots with their current and next containers), in the
/// caller's transaction.
pub async fn load(conn: &mut AsyncPgConnection, service: ServiceRow) -> Result<ServiceState> {
    let (processes, policy, backoff, health, ports) = settings(&service)?;
    let rows = crate::services::store::slots(conn, service.id).await?;
    let ids: Vec<Uuid> = rows
        .iter()
        .flat_map(|r| [r.request_id, r.next_request_id])
        .flatten()
        .collect();
    let mut found = runs(conn, &ids).await?;
    let slots = rows
        .into_iter()
        .map(|row| SlotState {
            current: row.request_id.and_then(|id| found.remove(&id)),
            next: row.next_request_id.and_then(|id| found.remove(&id)),
            row,
        })
        .collect();
    Ok(ServiceState {
        row: service,
        processes,
        policy,
        backoff,
        health,
        ports,
        slots,
    })
}

/// Makes the next container of `slot`: a request from release `version` of the
/// service's template (the process's command, the service's ports, no timeout, retry
/// budget 0), linked to the slot in `service_runs`, offered from `not_before` on and
/// placed by `placement`; records a `started` event with `reason`. In the caller's
/// transaction; the caller sets the slot's `request_id` or `next_request_id` and marks
/// `after.wake_scheduler`.
#[expect(clippy::too_many_arguments, reason = "the contract deploys call")]
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
    let service = &state.row;
    let (_, job, secrets) =
        crate::templates::job_release(conn, &manager.secrets, service.template_id, version)
            .await?;
    let workspace: String = workspaces::table
        .find(service.workspace_id)
        .select(workspaces::name)
        .first(conn)
        .await?;
    let mut submit = crate::templates::runs::job_submission(&job, &secrets, &workspace);
    // A replica is not retried by the queue: the reconciler decides what follows.
    submit.retries = 0;
    submit.retry_backoff = None;
    if let Some(spec) = submit.spec.as_mut()
        && let Some(command) = state
            .processes
            .get(process)
            .map(|p| &p.command)
            .filter(|c| !c.is_empty())
    {
        spec.command.clone_from(command);
    }
    let mut submission = validate_submission(&submit, &manager.defaults).map_err(|e| {
        Error::FailedPrecondition(format!(
            "release v{version} of service {}'s template cannot run as a replica: {}: {}",
            service.name, e.field, e.message
        ))
    })?;
    submission.spec.timeout_ms = 0;
    submission.spec.ports.clone_from(&state.ports);
    let row = own::insert(
        conn,
        &manager.secrets,
        OwnRequest {
            workspace_id: service.workspace_id,
            created_by: service.created_by,
            submission,
            origin: Some(Origin {
                template_id: service.template_id,
                version,
            }),
            not_before,
            placement,
            retry_budget: 0,
        },
    )
    .await?;
    let id = row.id;
    diesel::insert_into(service_runs::table)
        .values(RunRow {
            request_id: id.0,
            service_id: service.id,
            process: process.to_owned(),
            slot_index: index,
            version,
        })
        .execute(conn)
        .await?;
    history::record(
        conn,
        NewEvent {
            process: Some(process.to_owned()),
            slot_index: Some(index),
            version: Some(version),
            request_id: Some(id.0),
            ..NewEvent::service(service.id, EventKind::Started, reason)
        },
    )
    .await?;
    Ok(id)
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
    let live = own::stop(conn, request, why).await?;
    let worker = live.iter().next().map(|l| l.worker_id);
    after.stops.extend(live);
    after.changed = true;
    history::record(
        conn,
        NewEvent {
            request_id: Some(request.0),
            worker_id: worker,
            version: Some(state.row.version),
            ..NewEvent::slot(slot, EventKind::Stopping, why)
        },
    )
    .await
}
