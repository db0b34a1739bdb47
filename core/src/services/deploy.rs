//! Rolling deploys: one replica at a time, start the new release's container beside the
//! old one, wait until it has been healthy for `min_healthy`, stop the old one (TERM →
//! grace → KILL), go on; past the deadline, stop, and with `auto_revert` roll back to the
//! last release that was healthy.
//!
//! A deploy is state on the service's row (`deploy_state`, `deploy_from`,
//! `deploy_deadline_at`, `version` = the target) and on its slots (`next_request_id` and
//! `next_version`: the replacement being started). [`advance`] runs at the end of each
//! reconcile pass, in its transaction, and does what can be done now; what to do is
//! decided by [`decide`], a pure function of the pass's state and the clock, so the rules
//! are unit-tested without a database.
//!
//! Surge is 1: only the first slot (process order, then index order) not on the target
//! has a replacement, so a process never has more than N+1 containers. The reconcile pass
//! restarts a slot's *current* container when it ends; the *next* one is this module's:
//! when it ends, another is started after the restart backoff. The deadline counts from
//! the deploy's start and again from each replaced replica (a progress deadline), so the
//! reason of a failure names the replica that did not become healthy in time.
//!
//! `stable_version` — what auto-revert goes back to — is set here too: when every slot
//! runs `version` and is healthy, outside a deploy as well (a new service's first
//! release).

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::access::auth::Identity;
use crate::access::roles::{self, Standing, WorkspaceRole};
use crate::error::{Error, Result};
use crate::services::health::{self, Judgement};
use crate::services::history;
use crate::services::state::{self, AfterCommit, RunState, ServiceState, SlotState};
use crate::services::store::{self, EventKind, NewEvent, ServiceRow};
use crate::services::{DeployInput, ServiceManager, ServiceRef, ServiceView};
use crate::store::schema::services;
use crate::templates::workspace_name;
use crate::work::own::Placement;

/// `deploy_state` values.
pub const ROLLING: &str = "rolling";
pub const REVERTING: &str = "reverting";
pub const DONE: &str = "done";
pub const FAILED: &str = "failed";

/// The longest deadline a deploy may be given.
const MAX_DEADLINE: Duration = Duration::from_secs(24 * 3600);

/// What a deploy does next, decided from a pass's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing now: no deploy, or waiting for a replacement to start or become healthy.
    Wait,
    /// Start a replacement on the target release for the slot at this index of
    /// `state.slots` (from `not_before`, the backoff after an earlier one ended).
    StartNext {
        slot: usize,
        not_before: Option<DateTime<Utc>>,
    },
    /// The slot's replacement is healthy: stop its current container and make the
    /// replacement current.
    Promote { slot: usize },
    /// Past the deadline: stop the replacement of this slot (if any) and fail, with why.
    Fail { slot: Option<usize>, reason: String },
    /// Every slot runs the target and is healthy.
    Done,
    /// Outside a deploy: every slot runs `version` and is healthy, which becomes the
    /// stable release.
    MarkStable,
}

/// Decides the next step for `state` at `now`.
pub fn decide(state: &ServiceState, now: DateTime<Utc>) -> Step {
    let row = &state.row;
    if row.deleted_at.is_some() {
        return Step::Wait;
    }
    let target = row.version;
    let deploying = row.deploy_state == ROLLING || row.deploy_state == REVERTING;
    if !deploying {
        let mut active = state
            .slots
            .iter()
            .filter(|slot| wanted(state, slot))
            .peekable();
        let all_healthy = active.peek().is_some()
            && active.all(|slot| slot.row.version == target && current_healthy(slot, state, now));
        return if all_healthy && row.stable_version != Some(target) {
            Step::MarkStable
        } else {
            Step::Wait
        };
    }
    let Some(index) = state
        .slots
        .iter()
        .position(|slot| wanted(state, slot) && slot.row.version != target)
    else {
        let all_healthy = state
            .slots
            .iter()
            .filter(|slot| wanted(state, slot))
            .all(|slot| current_healthy(slot, state, now));
        return if all_healthy {
            Step::Done
        } else if past_deadline(row, now) {
            let slot = state
                .slots
                .iter()
                .position(|slot| wanted(state, slot) && !current_healthy(slot, state, now));
            Step::Fail {
                slot: None,
                reason: not_healthy_reason(state, slot, now),
            }
        } else {
            Step::Wait
        };
    };
    let slot = &state.slots[index];
    let next = slot
        .next
        .as_ref()
        .filter(|_| slot.row.next_version == Some(target));
    if past_deadline(row, now) {
        return Step::Fail {
            slot: Some(index),
            reason: not_healthy_reason(state, Some(index), now),
        };
    }
    match next.map(|run| health::judge(run, &state.health, now)) {
        None => Step::StartNext {
            slot: index,
            not_before: slot.row.restart_at.filter(|at| *at > now),
        },
        Some(Judgement::Healthy { .. }) => Step::Promote { slot: index },
        Some(Judgement::Ended) => Step::StartNext {
            slot: index,
            not_before: Some(now + backoff_after(state, slot)),
        },
        Some(Judgement::Starting | Judgement::Unhealthy { .. }) => Step::Wait,
    }
}

/// Whether the slot is one the processes still ask for (not being scaled away).
fn wanted(state: &ServiceState, slot: &SlotState) -> bool {
    state
        .processes
        .get(&slot.row.process)
        .is_some_and(|p| i64::from(slot.row.slot_index) < i64::from(p.replicas))
}

fn current_healthy(slot: &SlotState, state: &ServiceState, now: DateTime<Utc>) -> bool {
    slot.current.as_ref().is_some_and(|run| {
        matches!(
            health::judge(run, &state.health, now),
            Judgement::Healthy { .. }
        )
    })
}

/// How long each step of the deploy under way may take: what the deploy was given, else
/// the service's deploy deadline.
fn step_deadline(state: &ServiceState) -> Duration {
    state
        .row
        .deploy_step_ms
        .map_or(state.health.deploy_deadline, state::millis)
}

fn past_deadline(row: &ServiceRow, now: DateTime<Utc>) -> bool {
    row.deploy_deadline_at.is_some_and(|at| now >= at)
}

/// Why the slot at `index` failed the deploy: "web.1 v3 not healthy within 2m: exit 1".
fn not_healthy_reason(state: &ServiceState, index: Option<usize>, now: DateTime<Utc>) -> String {
    let within = humantime::format_duration(step_deadline(state));
    let Some(slot) = index.and_then(|i| state.slots.get(i)) else {
        return format!("v{} not healthy within {within}", state.row.version);
    };
    let run = slot
        .next
        .as_ref()
        .filter(|_| slot.row.next_version == Some(state.row.version))
        .or(slot.current.as_ref());
    let why = match run {
        None => "no container started".to_owned(),
        Some(run) => match health::judge(run, &state.health, now) {
            Judgement::Ended => ended_reason(run),
            Judgement::Unhealthy { .. } => "health check unhealthy".to_owned(),
            Judgement::Starting if run.started_at.is_none() => "not started yet".to_owned(),
            Judgement::Starting | Judgement::Healthy { .. } => "health deadline".to_owned(),
        },
    };
    format!(
        "{}.{} v{} not healthy within {within}: {why}",
        slot.row.process, slot.row.slot_index, state.row.version
    )
}

/// How a replacement ended, for a reason: "exit 1", "exit 137 (OOM killed)", or its message.
fn ended_reason(run: &RunState) -> String {
    match (run.exit_code, run.attempt_reason.to_string().as_str()) {
        (Some(code), "oom") => format!("exit {code} (OOM killed)"),
        (Some(code), _) => format!("exit {code}"),
        (None, _) if !run.message.is_empty() => run.message.clone(),
        (None, reason) => reason.to_owned(),
    }
}

/// The backoff before another replacement: the service's initial delay, doubled per
/// failure of the slot in a row, up to its max.
fn backoff_after(state: &ServiceState, slot: &SlotState) -> chrono::Duration {
    let failures = u32::try_from(slot.row.failures.max(0)).unwrap_or(0).min(20);
    let delay = state
        .backoff
        .initial
        .saturating_mul(2u32.saturating_pow(failures))
        .min(state.backoff.max);
    chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX)
}

/// Advances the deploy under way on `state` (if any) by what can be done now, in the
/// pass's transaction. Several steps may follow in one pass (a promote, then the next
/// slot's start).
pub async fn advance(
    manager: &ServiceManager,
    conn: &mut AsyncPgConnection,
    state: &mut ServiceState,
    now: DateTime<Utc>,
    after: &mut AfterCommit,
) -> Result<()> {
    // Bounded: each step changes the state so that the same step is not decided again.
    for _ in 0..=state.slots.len() * 2 + 2 {
        match decide(state, now) {
            Step::Wait => return Ok(()),
            Step::MarkStable => {
                set_row(conn, state, |row| row.stable_version = Some(row.version)).await?;
                return Ok(());
            }
            Step::StartNext { slot, not_before } => {
                start_next(manager, conn, state, slot, not_before, after).await?;
                return Ok(());
            }
            Step::Promote { slot } => promote(conn, state, slot, now, after).await?,
            Step::Done => {
                finish(conn, state).await?;
                return Ok(());
            }
            Step::Fail { slot, reason } => {
                fail(conn, state, slot, &reason, now, after).await?;
                if state.row.deploy_state != REVERTING {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

async fn start_next(
    manager: &ServiceManager,
    conn: &mut AsyncPgConnection,
    state: &mut ServiceState,
    index: usize,
    not_before: Option<DateTime<Utc>>,
    after: &mut AfterCommit,
) -> Result<()> {
    let target = state.row.version;
    let (process, slot_index, from) = {
        let slot = &state.slots[index].row;
        (slot.process.clone(), slot.slot_index, slot.version)
    };
    // A replacement that ended is recorded as the slot's current containers are: an
    // exit with its reason, so that history says why the deploy started another.
    let ended = state.slots[index]
        .next
        .clone()
        .filter(|run| run.status.is_terminal());
    if let Some(run) = ended {
        history::record(
            conn,
            NewEvent {
                version: Some(run.version),
                request_id: Some(run.request_id.0),
                worker_id: run.worker_id,
                exit_code: run.exit_code,
                ..NewEvent::slot(
                    &state.slots[index].row,
                    EventKind::Exited,
                    format!("deploy replacement: {}", ended_reason(&run)),
                )
            },
        )
        .await?;
    }
    let reason = format!("deploy: replaces {process}.{slot_index} v{from} with v{target}");
    let request = state::start_run(
        manager,
        conn,
        state,
        &process,
        slot_index,
        target,
        not_before,
        Placement::default(),
        &reason,
    )
    .await?;
    let slot = &mut state.slots[index];
    slot.row.next_request_id = Some(request.0);
    slot.row.next_version = Some(target);
    store::save_slot(conn, &slot.row).await?;
    // Seen as pending until the next load; `decide` then waits for it.
    slot.next = None;
    after.wake_scheduler = true;
    Ok(())
}

async fn promote(
    conn: &mut AsyncPgConnection,
    state: &mut ServiceState,
    index: usize,
    now: DateTime<Utc>,
    after: &mut AfterCommit,
) -> Result<()> {
    let target = state.row.version;
    let slot = state.slots[index].clone();
    let from = slot.row.version;
    let name = format!("{}.{}", slot.row.process, slot.row.slot_index);
    if let Some(old) = slot
        .current
        .as_ref()
        .filter(|run| !run.status.is_terminal())
    {
        let why = format!("replaced by v{target}");
        state::stop_run(conn, state, &slot.row, old.request_id, &why, after).await?;
    }
    let next = slot.next.clone();
    let updated = &mut state.slots[index];
    updated.row.request_id = updated.row.next_request_id.take();
    updated.row.version = target;
    updated.row.next_version = None;
    updated.row.failures = 0;
    updated.row.restart_at = None;
    updated.row.healthy_since = Some(now);
    updated.current = next;
    updated.next = None;
    store::save_slot(conn, &updated.row).await?;
    history::record(
        conn,
        NewEvent {
            version: Some(target),
            request_id: updated.row.request_id,
            ..NewEvent::slot(
                &updated.row,
                EventKind::DeployStep,
                format!("{name} v{from} → v{target}"),
            )
        },
    )
    .await?;
    // A progress deadline: the next replica has as long as the first.
    let deadline =
        now + chrono::Duration::from_std(step_deadline(state)).unwrap_or(chrono::Duration::MAX);
    set_row(conn, state, |row| row.deploy_deadline_at = Some(deadline)).await
}

async fn finish(conn: &mut AsyncPgConnection, state: &mut ServiceState) -> Result<()> {
    let target = state.row.version;
    let (kind, state_word, message) = if state.row.deploy_state == REVERTING {
        let message = format!("{}; reverted to v{target}", state.row.deploy_message);
        (EventKind::DeployDone, FAILED, message)
    } else {
        (
            EventKind::DeployDone,
            DONE,
            format!("every replica runs v{target}"),
        )
    };
    let reason = message.clone();
    set_row(conn, state, |row| {
        row.deploy_state = state_word.to_owned();
        row.stable_version = Some(target);
        row.deploy_deadline_at = None;
        row.deploy_message = message;
    })
    .await?;
    history::record(
        conn,
        NewEvent {
            version: Some(target),
            ..NewEvent::service(state.row.id, kind, reason)
        },
    )
    .await
}

async fn fail(
    conn: &mut AsyncPgConnection,
    state: &mut ServiceState,
    index: Option<usize>,
    reason: &str,
    now: DateTime<Utc>,
    after: &mut AfterCommit,
) -> Result<()> {
    let target = state.row.version;
    if let Some(index) = index {
        let slot = state.slots[index].clone();
        if let Some(next) = slot.row.next_request_id {
            let live = slot
                .next
                .as_ref()
                .is_none_or(|run| !run.status.is_terminal());
            if live {
                let why = format!("deploy of v{target} failed: {reason}");
                state::stop_run(
                    conn,
                    state,
                    &slot.row,
                    crate::work::ids::WorkRequestId(next),
                    &why,
                    after,
                )
                .await?;
            }
            let updated = &mut state.slots[index];
            updated.row.next_request_id = None;
            updated.row.next_version = None;
            updated.next = None;
            store::save_slot(conn, &updated.row).await?;
        }
    }
    history::record(
        conn,
        NewEvent {
            version: Some(target),
            ..NewEvent::service(state.row.id, EventKind::DeployFailed, reason)
        },
    )
    .await?;
    let revert_to = state.row.stable_version.filter(|v| {
        state.row.deploy_auto_revert && state.row.deploy_state == ROLLING && *v != target
    });
    match revert_to {
        Some(stable) => {
            let deadline = now
                + chrono::Duration::from_std(step_deadline(state)).unwrap_or(chrono::Duration::MAX);
            let message = format!("v{target} failed: {reason}");
            set_row(conn, state, |row| {
                row.deploy_state = REVERTING.to_owned();
                row.deploy_from = Some(target);
                row.version = stable;
                row.deploy_deadline_at = Some(deadline);
                row.deploy_message = message;
            })
            .await?;
            history::record(
                conn,
                NewEvent {
                    version: Some(stable),
                    ..NewEvent::service(
                        state.row.id,
                        EventKind::Reverting,
                        format!("back to v{stable}, the last healthy release"),
                    )
                },
            )
            .await
        }
        None => {
            let message = format!("v{target} failed: {reason}");
            set_row(conn, state, |row| {
                row.deploy_state = FAILED.to_owned();
                row.deploy_deadline_at = None;
                row.deploy_message = message;
            })
            .await
        }
    }
}

/// Changes the deploy columns of the service's row as `change` says, in memory and in
/// the database.
async fn set_row(
    conn: &mut AsyncPgConnection,
    state: &mut ServiceState,
    change: impl FnOnce(&mut ServiceRow),
) -> Result<()> {
    change(&mut state.row);
    let row = &state.row;
    diesel::update(services::table.find(row.id))
        .set((
            services::version.eq(row.version),
            services::stable_version.eq(row.stable_version),
            services::deploy_state.eq(&row.deploy_state),
            services::deploy_from.eq(row.deploy_from),
            services::deploy_deadline_at.eq(row.deploy_deadline_at),
            services::deploy_message.eq(&row.deploy_message),
            services::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// The caller's standing in the service's workspace, checked for `role`, and the row.
pub(super) async fn find_for(
    conn: &mut AsyncPgConnection,
    caller: &Identity,
    service: &ServiceRef,
    role: WorkspaceRole,
    action: &str,
) -> Result<(Standing, ServiceRow)> {
    let workspace = workspace_name(&service.workspace);
    let standing = roles::in_workspace(conn, caller, workspace).await?;
    standing.require(role, action)?;
    let row = store::find(conn, standing.workspace.id, workspace, &service.name).await?;
    Ok((standing, row))
}

impl ServiceManager {
    /// `DeployService`: rolls the service to `input.version` (the template's latest
    /// release when unset). Contributors; FAILED_PRECONDITION when a deploy is under way
    /// or the service already runs that release.
    pub async fn deploy(&self, caller: &Identity, input: DeployInput) -> Result<ServiceView> {
        let by: Uuid = caller.user_id.ok_or_else(|| {
            Error::PermissionDenied("only users and admins may deploy services".into())
        })?;
        if let Some(v) = input.version
            && v < 1
        {
            return Err(Error::InvalidArgument(
                "version: releases are numbered from 1; leave it unset for the latest".into(),
            ));
        }
        let deadline = match input.deadline {
            None => None,
            Some(raw) => {
                let d = raw
                    .to_std("deadline")
                    .map_err(|e| Error::InvalidArgument(format!("{}: {}", e.field, e.message)))?;
                if d.is_zero() || d > MAX_DEADLINE {
                    return Err(Error::InvalidArgument(format!(
                        "deadline: {} is out of range; give more than 0 and at most 24h, or leave it unset for the service's deploy deadline",
                        humantime::format_duration(d)
                    )));
                }
                Some(d)
            }
        };
        let mut conn = self.pool.get().await?;
        let (standing, found) = find_for(
            &mut conn,
            caller,
            &input.service,
            WorkspaceRole::Contributor,
            "deploy services of",
        )
        .await?;
        standing.require_open()?;
        let template: crate::templates::store::TemplateRow = crate::store::schema::templates::table
            .find(found.template_id)
            .select(crate::templates::store::TemplateRow::as_select())
            .first(&mut conn)
            .await?;
        let target = input.version.unwrap_or(template.latest_version);
        // NOT_FOUND names the release when it does not exist.
        crate::templates::job_release(&mut conn, &self.secrets, template.id, target).await?;
        let row = conn
            .transaction::<_, Error, _>(async |conn| {
                let row = store::lock(conn, found.id).await?;
                if row.deploy_state == ROLLING || row.deploy_state == REVERTING {
                    return Err(Error::FailedPrecondition(format!(
                        "service {}: a deploy to v{} is under way ({}); wait until it is done or failed",
                        row.name, row.version, row.deploy_state
                    )));
                }
                if row.version == target && row.deploy_state != FAILED {
                    return Err(Error::FailedPrecondition(format!(
                        "service {} already runs v{target}; release a new version of template {} first, or name another with --release",
                        row.name, template.name
                    )));
                }
                let step_ms = deadline.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                let deadline = deadline
                    .unwrap_or_else(|| state::millis(row.deploy_deadline_ms));
                let deadline_at = Utc::now()
                    + chrono::Duration::from_std(deadline).unwrap_or(chrono::Duration::MAX);
                let row: ServiceRow = diesel::update(services::table.find(row.id))
                    .set((
                        services::deploy_state.eq(ROLLING),
                        services::deploy_from.eq(row.version),
                        services::version.eq(target),
                        services::deploy_auto_revert.eq(input.auto_revert),
                        services::deploy_started_at.eq(diesel::dsl::now),
                        services::deploy_deadline_at.eq(deadline_at),
                        services::deploy_step_ms.eq(step_ms),
                        services::deploy_message.eq(""),
                        services::updated_at.eq(diesel::dsl::now),
                    ))
                    .returning(ServiceRow::as_returning())
                    .get_result(conn)
                    .await?;
                let from = row.deploy_from.unwrap_or(row.version);
                history::record(
                    conn,
                    NewEvent {
                        by_user: Some(by),
                        version: Some(target),
                        ..NewEvent::service(
                            row.id,
                            EventKind::DeployStarted,
                            format!(
                                "v{from} → v{target}{}",
                                if input.auto_revert { " (auto-revert)" } else { "" }
                            ),
                        )
                    },
                )
                .await?;
                Ok(row)
            })
            .await?;
        self.hub.changed();
        self.view(&mut conn, row).await
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use std::collections::BTreeMap;

    use super::*;
    use crate::services::store::SlotRow;
    use crate::services::{Backoff, HealthSettings, Process, RestartPolicy};
    use crate::work::ids::WorkRequestId;
    use crate::work::state::{Reason, Status};

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn row(version: i32, deploy_state: &str) -> ServiceRow {
        ServiceRow {
            id: Uuid::nil(),
            workspace_id: Uuid::nil(),
            name: "web".into(),
            template_id: Uuid::nil(),
            version,
            stable_version: Some(1),
            processes: serde_json::Value::Null,
            restart_policy: "always".into(),
            backoff_initial_ms: 1000,
            backoff_max_ms: 60_000,
            stable_after_ms: 600_000,
            success_delay_ms: 1000,
            max_local_restarts: 3,
            min_healthy_ms: 10_000,
            deploy_deadline_ms: 120_000,
            ports: serde_json::Value::Null,
            deploy_state: deploy_state.into(),
            deploy_from: Some(1),
            deploy_auto_revert: true,
            deploy_started_at: Some(at(0)),
            deploy_deadline_at: Some(at(120)),
            deploy_step_ms: None,
            deploy_message: String::new(),
            created_by: Uuid::nil(),
            created_at: at(0),
            updated_at: at(0),
            deleted_at: None,
        }
    }

    /// A container of release `version`, running since `started` (None: pending), or
    /// ended with `exit`.
    fn run(version: i32, started: Option<i64>, exit: Option<i32>) -> RunState {
        RunState {
            request_id: WorkRequestId(Uuid::new_v4()),
            version,
            status: match (started, exit) {
                (_, Some(_)) => Status::Completed,
                (Some(_), None) => Status::Running,
                (None, None) => Status::Pending,
            },
            result: None,
            reason: Reason::None,
            exit_code: exit,
            message: String::new(),
            created_at: at(0),
            completed_at: None,
            attempt: Some(1),
            worker_id: None,
            worker_name: "w1".into(),
            started_at: started.map(at),
            attempt_reason: Reason::None,
            has_healthcheck: false,
            health: None,
            health_at: None,
            ports: Vec::new(),
        }
    }

    fn slot(index: i32, current: RunState, next: Option<RunState>) -> SlotState {
        SlotState {
            row: SlotRow {
                service_id: Uuid::nil(),
                process: "web".into(),
                slot_index: index,
                request_id: Some(current.request_id.0),
                version: current.version,
                next_request_id: next.as_ref().map(|n| n.request_id.0),
                next_version: next.as_ref().map(|n| n.version),
                failures: 0,
                local_failures: 0,
                last_worker_id: None,
                restart_at: None,
                healthy_since: None,
                exited: false,
            },
            current: Some(current),
            next,
        }
    }

    fn service(row: ServiceRow, slots: Vec<SlotState>) -> ServiceState {
        let replicas = u32::try_from(slots.len()).unwrap();
        ServiceState {
            row,
            processes: BTreeMap::from([(
                "web".to_owned(),
                Process {
                    replicas,
                    command: Vec::new(),
                },
            )]),
            policy: RestartPolicy::Always,
            backoff: Backoff::default(),
            health: HealthSettings {
                min_healthy: Duration::from_secs(10),
                deploy_deadline: Duration::from_secs(120),
            },
            ports: Vec::new(),
            slots,
        }
    }

    fn healthy_old(index: i32) -> SlotState {
        slot(index, run(1, Some(-100), None), None)
    }

    #[test]
    fn the_first_slot_not_on_the_target_gets_a_replacement_and_only_it() {
        let state = service(
            row(2, ROLLING),
            vec![healthy_old(0), healthy_old(1), healthy_old(2)],
        );
        assert_eq!(
            decide(&state, at(1)),
            Step::StartNext {
                slot: 0,
                not_before: None
            }
        );
        // While web.0's replacement starts, nothing else is started: surge 1.
        let mut state = state;
        state.slots[0] = slot(0, run(1, Some(-100), None), Some(run(2, Some(2), None)));
        assert_eq!(decide(&state, at(5)), Step::Wait);
    }

    #[test]
    fn a_replacement_healthy_for_min_healthy_is_promoted() {
        let state = service(
            row(2, ROLLING),
            vec![
                slot(0, run(1, Some(-100), None), Some(run(2, Some(2), None))),
                healthy_old(1),
            ],
        );
        assert_eq!(
            decide(&state, at(11)),
            Step::Wait,
            "healthy only after 10 s"
        );
        assert_eq!(decide(&state, at(12)), Step::Promote { slot: 0 });
    }

    #[test]
    fn once_every_slot_runs_the_target_healthy_the_deploy_is_done() {
        let on_target = |i| slot(i, run(2, Some(0), None), None);
        let state = service(row(2, ROLLING), vec![on_target(0), on_target(1)]);
        assert_eq!(decide(&state, at(11)), Step::Done);
        assert_eq!(
            decide(&state, at(5)),
            Step::Wait,
            "not healthy for long enough yet"
        );
    }

    #[test]
    fn an_ended_replacement_is_started_again_after_the_backoff() {
        let state = service(
            row(2, ROLLING),
            vec![slot(
                0,
                run(1, Some(-100), None),
                Some(run(2, Some(2), Some(1))),
            )],
        );
        match decide(&state, at(3)) {
            Step::StartNext {
                slot: 0,
                not_before: Some(when),
            } => assert!(when > at(3)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn past_the_deadline_the_deploy_fails_naming_the_replica_and_why() {
        let state = service(
            row(2, ROLLING),
            vec![
                healthy_old(0),
                slot(
                    1,
                    run(1, Some(-100), None),
                    Some(run(2, Some(100), Some(1))),
                ),
            ],
        );
        let mut state = state;
        // web.0 already runs v2.
        state.slots[0] = slot(0, run(2, Some(0), None), None);
        assert_eq!(
            decide(&state, at(121)),
            Step::Fail {
                slot: Some(1),
                reason: "web.1 v2 not healthy within 2m: exit 1".into()
            }
        );
        state.slots[1] = slot(1, run(1, Some(-100), None), Some(run(2, Some(100), None)));
        state.slots[1].next.as_mut().unwrap().has_healthcheck = true;
        assert_eq!(
            decide(&state, at(121)),
            Step::Fail {
                slot: Some(1),
                reason: "web.1 v2 not healthy within 2m: health deadline".into()
            }
        );
    }

    #[test]
    fn a_replacement_from_an_abandoned_target_is_not_taken_for_the_new_one() {
        // Reverting to v1: web.0 runs v2 (promoted), with a stale next of v2.
        let mut state = service(
            row(1, REVERTING),
            vec![slot(0, run(2, Some(0), None), Some(run(2, Some(5), None)))],
        );
        state.row.deploy_deadline_at = Some(at(500));
        assert_eq!(
            decide(&state, at(100)),
            Step::StartNext {
                slot: 0,
                not_before: None
            }
        );
    }

    #[test]
    fn outside_a_deploy_a_release_all_healthy_on_becomes_stable() {
        let mut fresh = row(1, "");
        fresh.stable_version = None;
        let state = service(fresh, vec![healthy_old(0), healthy_old(1)]);
        assert_eq!(decide(&state, at(0)), Step::MarkStable);
        let mut state = state;
        state.row.stable_version = Some(1);
        assert_eq!(decide(&state, at(0)), Step::Wait);
        state.row.stable_version = None;
        state.slots[1].current = Some(run(1, None, None));
        assert_eq!(
            decide(&state, at(0)),
            Step::Wait,
            "web.1 is not running yet"
        );
    }

    #[test]
    fn a_deleted_service_is_not_deployed() {
        let mut gone = row(2, ROLLING);
        gone.deleted_at = Some(at(0));
        let state = service(gone, vec![healthy_old(0)]);
        assert_eq!(decide(&state, at(1)), Step::Wait);
    }
}
