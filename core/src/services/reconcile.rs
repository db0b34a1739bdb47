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
//! What it works on and the primitives it changes containers with are in
//! [`crate::services::state`] (shared with deploys). What must reach workers (stops) and
//! the scheduler is collected in [`crate::services::state::AfterCommit`] and handed to the
//! hub only once the transaction commits.
//!
//! Imports go one way: `reconcile` → `deploy`, `health` → `state`; `state`, `health` and
//! `deploy` never import `reconcile` (`tests/tests/layers.rs` refuses cycles).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::services::health::{self, Judgement};
use crate::services::restart::{self, Counters, Decision, Ending};
use crate::services::state::{self, AfterCommit, RunState, ServiceState, SlotState};
use crate::services::store::{self, EventKind, NewEvent, SlotRow};
use crate::services::{ServiceManager, deploy, history};
use crate::store::schema::{request_placement, service_slots, services, workers};
use crate::work::own::{self, Placement};
use crate::work::state::{Reason, Status, WorkResult};

/// How long a pending request keeps off a worker before the avoid is lifted when no
/// other worker took it.
const AVOID_FOR: Duration = Duration::from_secs(30);

/// The shortest time between two passes woken by changes (a busy log stream changes
/// often; a pass per chunk would be waste).
const MIN_GAP: Duration = Duration::from_millis(100);

/// Passes over the services until `stop` is cancelled: every `manager.interval`, and
/// whenever the hub reports a change. A failed pass is logged and tried again next time.
pub async fn run(manager: ServiceManager, stop: CancellationToken) {
    let mut changes = manager.hub.subscribe();
    loop {
        if let Err(e) = run_once(&manager).await {
            tracing::warn!(error = %e, "services: reconcile pass failed; trying again");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(manager.interval) => {}
            changed = changes.changed() => {
                if changed.is_err() {
                    // The hub is gone: the server is shutting down.
                    stop.cancelled().await;
                    return;
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(MIN_GAP) => {}
                }
            }
        }
    }
}

/// One pass over every service that needs one. Returns how many services it handled.
pub async fn run_once(manager: &ServiceManager) -> Result<usize> {
    let ids: Vec<Uuid> = {
        let mut conn = manager.pool.get().await?;
        services::table
            .filter(services::deleted_at.is_null().or(diesel::dsl::exists(
                service_slots::table.filter(service_slots::service_id.eq(services::id)),
            )))
            .order(services::id)
            .select(services::id)
            .load(&mut conn)
            .await?
    };
    let mut handled = 0;
    for id in ids {
        let mut conn = manager.pool.get().await?;
        let mut after = AfterCommit::default();
        let done = conn
            .transaction::<_, Error, _>(async |conn| {
                pass_one(manager, conn, id, &mut after).await
            })
            .await;
        match done {
            Ok(true) => {
                handled += 1;
                after.deliver(manager);
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(service = %id, error = %e, "services: pass over a service failed");
            }
        }
    }
    Ok(handled)
}

/// The workers by id: name and whether connected now.
type Fleet = HashMap<Uuid, (String, bool)>;

async fn fleet(conn: &mut AsyncPgConnection) -> Result<Fleet> {
    let rows: Vec<(Uuid, String, Option<DateTime<Utc>>)> = workers::table
        .select((workers::id, workers::name, workers::connected_at))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name, connected)| (id, (name, connected.is_some())))
        .collect())
}

/// One service's pass, in its own transaction; false when another replica holds it.
async fn pass_one(
    manager: &ServiceManager,
    conn: &mut AsyncPgConnection,
    id: Uuid,
    after: &mut AfterCommit,
) -> Result<bool> {
    let row = services::table
        .find(id)
        .select(store::ServiceRow::as_select())
        .for_update()
        .skip_locked()
        .first(conn)
        .await
        .optional()?;
    let Some(row) = row else {
        return Ok(false);
    };
    let mut state = state::load(conn, row).await?;
    let fleet = fleet(conn).await?;
    let now = Utc::now();
    pass(manager, conn, &mut state, &fleet, now, after).await?;
    deploy::advance(manager, conn, &mut state, now, after).await?;
    Ok(true)
}

/// How many replicas of `process` are wanted (0 once deleted).
fn wanted(state: &ServiceState, process: &str) -> i32 {
    if state.row.deleted_at.is_some() {
        return 0;
    }
    state
        .processes
        .get(process)
        .map_or(0, |p| i32::try_from(p.replicas).unwrap_or(i32::MAX))
}

/// Steps 1–3 of the module docs.
async fn pass(
    manager: &ServiceManager,
    conn: &mut AsyncPgConnection,
    state: &mut ServiceState,
    fleet: &Fleet,
    now: DateTime<Utc>,
    after: &mut AfterCommit,
) -> Result<()> {
    // 1a. Slots beyond what is wanted: stopped, highest indices first, removed once
    // their containers have ended.
    let mut beyond: Vec<usize> = (0..state.slots.len())
        .filter(|&i| state.slots[i].row.slot_index >= wanted(state, &state.slots[i].row.process))
        .collect();
    beyond.sort_by_key(|&i| {
        (
            state.slots[i].row.process.clone(),
            std::cmp::Reverse(state.slots[i].row.slot_index),
        )
    });
    let why = if state.row.deleted_at.is_some() {
        "service deleted"
    } else {
        "scaled down"
    };
    let mut removed = Vec::new();
    for i in beyond {
        let slot = state.slots[i].clone();
        let mut live = false;
        for run in [&slot.current, &slot.next].into_iter().flatten() {
            if !run.status.is_terminal() {
                state::stop_run(conn, state, &slot.row, run.request_id, why, after).await?;
                live = true;
            }
        }
        let ids: Vec<_> = [&slot.current, &slot.next]
            .into_iter()
            .flatten()
            .map(|r| r.request_id)
            .collect();
        if !live && crate::work::lifecycle::live_attempts(conn, &ids).await?.is_empty() {
            diesel::delete(service_slots::table.find((
                slot.row.service_id,
                slot.row.process.clone(),
                slot.row.slot_index,
            )))
            .execute(conn)
            .await?;
            removed.push(i);
        }
    }
    for i in removed.into_iter().rev() {
        state.slots.remove(i);
    }
    // 1b. Slots the processes ask for that do not exist yet.
    if state.row.deleted_at.is_none() {
        let processes: Vec<(String, i32)> = state
            .processes
            .keys()
            .map(|p| (p.clone(), wanted(state, p)))
            .collect();
        for (process, count) in processes {
            for index in 0..count {
                let exists = state
                    .slots
                    .iter()
                    .any(|s| s.row.process == process && s.row.slot_index == index);
                if exists {
                    continue;
                }
                let row = SlotRow {
                    service_id: state.row.id,
                    process: process.clone(),
                    slot_index: index,
                    request_id: None,
                    version: state.row.version,
                    next_request_id: None,
                    next_version: None,
                    failures: 0,
                    local_failures: 0,
                    last_worker_id: None,
                    restart_at: None,
                    healthy_since: None,
                    exited: false,
                };
                diesel::insert_into(service_slots::table)
                    .values(&row)
                    .execute(conn)
                    .await?;
                state.slots.push(SlotState {
                    row,
                    current: None,
                    next: None,
                });
            }
        }
        state
            .slots
            .sort_by(|a, b| (&a.row.process, a.row.slot_index).cmp(&(&b.row.process, b.row.slot_index)));
    }
    // 2 and 3, for each wanted slot.
    for i in 0..state.slots.len() {
        let slot = &state.slots[i];
        if slot.row.slot_index >= wanted(state, &slot.row.process) {
            continue;
        }
        tend(manager, conn, state, i, fleet, now, after).await?;
    }
    Ok(())
}

/// Why a container ended, in words: "exit 1", "exit 137 (OOM killed)", "worker w1
/// lost", "cancelled: …", "start failed: …".
pub fn ending_reason(run: &RunState) -> String {
    let worker = if run.worker_name.is_empty() {
        "its worker".to_owned()
    } else {
        format!("worker {}", run.worker_name)
    };
    let with_message = |what: &str| {
        if run.message.is_empty() {
            what.to_owned()
        } else {
            format!("{what}: {}", run.message)
        }
    };
    if run.reason == Reason::WorkerLost || run.attempt_reason == Reason::WorkerLost {
        return format!("{worker} lost");
    }
    match run.reason {
        Reason::Oom => format!("exit {} (OOM killed)", run.exit_code.unwrap_or(137)),
        Reason::Cancelled => {
            if run.message.is_empty() {
                "cancelled by a user".to_owned()
            } else {
                format!("cancelled: {}", run.message)
            }
        }
        Reason::StartFailed => with_message("start failed"),
        Reason::ImagePull => with_message("image pull failed"),
        Reason::Interrupted => format!("{worker} shut down"),
        Reason::Timeout => "timed out".to_owned(),
        Reason::NotAccepted | Reason::HandoffFailed | Reason::Rejected => {
            format!("{worker} did not take it ({})", run.reason.as_str())
        }
        _ => match run.exit_code {
            Some(137) => "exit 137 (killed)".to_owned(),
            Some(code) => format!("exit {code}"),
            None => with_message(if run.reason.as_str().is_empty() {
                "ended"
            } else {
                run.reason.as_str()
            }),
        },
    }
}

/// Records the ending of a slot's current container and starts the next one when the
/// policy says so; notes health; replaces an unhealthy replica; lifts placements whose
/// reason is gone.
async fn tend(
    manager: &ServiceManager,
    conn: &mut AsyncPgConnection,
    state: &mut ServiceState,
    i: usize,
    fleet: &Fleet,
    now: DateTime<Utc>,
    after: &mut AfterCommit,
) -> Result<()> {
    let slot = state.slots[i].clone();
    let mut row = slot.row.clone();
    let Some(current) = slot.current.clone() else {
        if row.exited || row.request_id.is_some() {
            return Ok(());
        }
        // A new slot: its first container.
        let version = state.row.version;
        let id = state::start_run(
            manager,
            conn,
            state,
            &row.process,
            row.slot_index,
            version,
            None,
            Placement::Any,
            "new replica",
        )
        .await?;
        row.request_id = Some(id.0);
        row.version = version;
        after.wake_scheduler = true;
        return save(conn, state, i, row).await;
    };
    if current.status.is_terminal() {
        if row.exited {
            return Ok(());
        }
        return ended(manager, conn, state, i, &current, fleet, now, after).await;
    }
    if current.status == Status::Pending {
        return check_placement(conn, state, &row, &current, fleet, now, after).await;
    }
    match health::judge(&current, &state.health, now) {
        Judgement::Healthy { since } if row.healthy_since.is_none() => {
            row.healthy_since = Some(since);
            history::record(
                conn,
                NewEvent {
                    request_id: Some(current.request_id.0),
                    worker_id: current.worker_id,
                    version: Some(current.version),
                    ..NewEvent::slot(&row, EventKind::Healthy, "healthy")
                },
            )
            .await?;
            after.changed = true;
            save(conn, state, i, row).await
        }
        Judgement::Unhealthy { since }
            if now.signed_duration_since(since).to_std().unwrap_or_default()
                >= state.health.min_healthy =>
        {
            state::stop_run(conn, state, &row, current.request_id, "unhealthy", after).await
        }
        _ => Ok(()),
    }
}

async fn save(
    conn: &mut AsyncPgConnection,
    state: &mut ServiceState,
    i: usize,
    row: SlotRow,
) -> Result<()> {
    store::save_slot(conn, &row).await?;
    let ids: Vec<Uuid> = [row.request_id, row.next_request_id].into_iter().flatten().collect();
    let mut found = state::runs(conn, &ids).await?;
    let slot = &mut state.slots[i];
    slot.current = row.request_id.and_then(|id| found.remove(&id));
    slot.next = row.next_request_id.and_then(|id| found.remove(&id));
    slot.row = row;
    Ok(())
}

/// The current container of slot `i` ended: record why, and restart per the policy.
#[expect(clippy::too_many_arguments, reason = "the pass's context")]
async fn ended(
    manager: &ServiceManager,
    conn: &mut AsyncPgConnection,
    state: &mut ServiceState,
    i: usize,
    run: &RunState,
    fleet: &Fleet,
    now: DateTime<Utc>,
    after: &mut AfterCommit,
) -> Result<()> {
    let mut row = state.slots[i].row.clone();
    let why = ending_reason(run);
    let lost = run.reason == Reason::WorkerLost || run.attempt_reason == Reason::WorkerLost;
    after.changed = true;
    let base = row.clone();
    let event = |kind: EventKind, reason: String| NewEvent {
        request_id: Some(run.request_id.0),
        worker_id: run.worker_id,
        exit_code: run.exit_code,
        version: Some(run.version),
        ..NewEvent::slot(&base, kind, reason)
    };
    history::record(conn, event(EventKind::Exited, why.clone())).await?;
    if lost {
        history::record(conn, event(EventKind::Lost, why.clone())).await?;
    }
    let uptime = match (run.started_at, run.completed_at) {
        (Some(start), Some(end)) => end.signed_duration_since(start).to_std().unwrap_or_default(),
        _ => Duration::ZERO,
    };
    let worker = run
        .worker_id
        .map(|id| (id, fleet.get(&id).map_or_else(|| run.worker_name.clone(), |w| w.0.clone())));
    let ending = Ending {
        success: run.result == Some(WorkResult::Success),
        lost,
        uptime,
        worker_connected: run.worker_id.is_some_and(|id| fleet.get(&id).is_some_and(|w| w.1)),
        worker,
    };
    let counters = Counters {
        failures: row.failures,
        local_failures: row.local_failures,
        last_worker: row.last_worker_id,
    };
    let decision = restart::decide(
        state.policy,
        &state.backoff,
        counters,
        &ending,
        rand::random::<f64>(),
    );
    row.healthy_since = None;
    match decision {
        Decision::Stay { counters } => {
            apply(&mut row, counters);
            row.exited = true;
            row.restart_at = None;
            history::record(
                conn,
                event(
                    EventKind::Exited,
                    format!("not restarted: restart policy {}", state.policy),
                ),
            )
            .await?;
            save(conn, state, i, row).await
        }
        Decision::Restart {
            delay,
            placement,
            counters,
            moved,
        } => {
            apply(&mut row, counters);
            if let Some(moved) = moved {
                history::record(conn, event(EventKind::Moved, moved)).await?;
            }
            let at = now + chrono::Duration::from_std(delay).unwrap_or_default();
            let not_before = (!delay.is_zero()).then_some(at);
            let reason = if lost {
                format!("replacing the replica on {}", ending.worker.as_ref().map_or("its worker", |w| w.1.as_str()))
            } else {
                format!("restart after {why}")
            };
            if !delay.is_zero() {
                history::record(
                    conn,
                    event(
                        EventKind::Restarting,
                        format!("in {} ({why})", human(delay)),
                    ),
                )
                .await?;
            }
            let version = state.row.version;
            let id = state::start_run(
                manager,
                conn,
                state,
                &row.process,
                row.slot_index,
                version,
                not_before,
                placement,
                &reason,
            )
            .await?;
            row.request_id = Some(id.0);
            row.version = version;
            row.restart_at = not_before;
            after.wake_scheduler = true;
            save(conn, state, i, row).await
        }
    }
}

fn apply(row: &mut SlotRow, counters: Counters) {
    row.failures = counters.failures;
    row.local_failures = counters.local_failures;
    row.last_worker_id = counters.last_worker;
}

/// A delay in words: "1.5s", "2m 5s".
fn human(delay: Duration) -> String {
    let ms = delay.as_millis();
    if ms < 60_000 {
        let tenths = ms.div_ceil(100);
        if tenths % 10 == 0 {
            format!("{}s", tenths / 10)
        } else {
            format!("{}.{}s", tenths / 10, tenths % 10)
        }
    } else {
        let s = delay.as_secs();
        format!("{}m {}s", s / 60, s % 60)
    }
}

/// A pending container pinned to a worker that is not connected may run anywhere; one
/// that avoids a worker and that no other worker took for [`AVOID_FOR`] too.
async fn check_placement(
    conn: &mut AsyncPgConnection,
    state: &ServiceState,
    row: &SlotRow,
    run: &RunState,
    fleet: &Fleet,
    now: DateTime<Utc>,
    after: &mut AfterCommit,
) -> Result<()> {
    let _ = state;
    let placed: Option<(Option<Uuid>, Option<Uuid>)> = request_placement::table
        .find(run.request_id)
        .select((request_placement::pin_worker_id, request_placement::avoid_worker_id))
        .first(conn)
        .await
        .optional()?;
    let name = |id: &Uuid| fleet.get(id).map_or_else(|| id.to_string(), |w| w.0.clone());
    let lift = match placed {
        Some((Some(pin), _)) if !fleet.get(&pin).is_some_and(|w| w.1) => Some(format!(
            "worker {} is not connected; the restart may run on any worker",
            name(&pin)
        )),
        Some((_, Some(avoid))) => {
            let since = row.restart_at.unwrap_or(run.created_at).max(run.created_at);
            let waited = now.signed_duration_since(since).to_std().unwrap_or_default();
            (waited >= AVOID_FOR).then(|| {
                format!(
                    "no other worker took it in {}s; worker {} may run it again",
                    AVOID_FOR.as_secs(),
                    name(&avoid)
                )
            })
        }
        _ => None,
    };
    if let Some(why) = lift
        && own::lift_placement(conn, run.request_id).await?
    {
        history::record(
            conn,
            NewEvent {
                request_id: Some(run.request_id.0),
                ..NewEvent::slot(row, EventKind::Moved, why)
            },
        )
        .await?;
        after.changed = true;
        after.wake_scheduler = true;
    }
    Ok(())
}
