//! Creating, reading, listing, changing, scaling and deleting services: the front the
//! API calls. It records what the caller asked for and wakes the reconciler; it starts
//! and stops no container itself.
//!
//! Every change is checked whole before anything is written, and written with its event
//! in one transaction under the service's row lock, so the reconciler (which takes the
//! same lock) sees either all of it or none.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::access::auth::Identity;
use crate::access::roles::{self, Standing, WorkspaceRole};
use crate::error::{Error, Result};
use crate::services::health::{self, Judgement};
use crate::services::state::{self, ServiceState};
use crate::services::store::{self, EventKind, NewEvent, ServiceRow};
use crate::services::{
    Backoff, BackoffInput, CreateInput, HealthInput, HealthSettings, Process, ReplicaName,
    ReplicaState, ReplicaView, ServiceManager, ServiceRef, ServiceView,
    UpdateInput, history,
};
use crate::store::schema::{services, templates, users, workers};
use crate::templates::workspace_name;
use crate::work::spec::{PortMapping, RawDuration, validate_command};
use crate::work::state::{Kind, Status};

/// Process types a service may have, and replicas of each.
pub const MAX_PROCESSES: usize = 16;
pub const MAX_REPLICAS: u32 = 100;
/// Published ports a service may have.
pub const MAX_PORTS: usize = 32;

/// Service names refused besides the template rule's: the `berth service` words.
pub const RESERVED: &[&str] = &[
    "deploy",
    "endpoints",
    "get",
    "history",
    "logs",
    "scale",
    "service",
    "services",
    "update",
];

const HOUR: Duration = Duration::from_secs(3600);

fn invalid(field: &str, message: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("{field}: {message}"))
}

/// Checks a service name: the template slug rule and its reserved words, plus
/// [`RESERVED`].
pub fn validate_name(name: &str) -> Result<()> {
    crate::templates::names::validate(name)?;
    if RESERVED.contains(&name) {
        return Err(invalid(
            "name",
            format!(
                "{name:?} is reserved (it reads as a `berth service` command); pick another, e.g. \"{name}-svc\""
            ),
        ));
    }
    Ok(())
}

/// Checks process types and their commands; empty means `web` with one replica.
pub fn check_processes(processes: &BTreeMap<String, Process>) -> Result<BTreeMap<String, Process>> {
    if processes.is_empty() {
        return Ok(BTreeMap::from([(
            "web".to_owned(),
            Process {
                replicas: 1,
                command: Vec::new(),
            },
        )]));
    }
    if processes.len() > MAX_PROCESSES {
        return Err(invalid(
            "processes",
            format!(
                "{} process types; at most {MAX_PROCESSES} are allowed",
                processes.len()
            ),
        ));
    }
    for (name, process) in processes {
        let field = format!("processes[{name:?}]");
        crate::templates::names::validate(name).map_err(|e| match e {
            Error::InvalidArgument(m) => Error::InvalidArgument(format!(
                "{field}: a process type is a slug like a name ({})",
                m.trim_start_matches("name: ")
            )),
            other => other,
        })?;
        if process.replicas > MAX_REPLICAS {
            return Err(invalid(
                &format!("{field}.replicas"),
                format!(
                    "{} replicas; at most {MAX_REPLICAS} are allowed",
                    process.replicas
                ),
            ));
        }
        check_command(&field, &process.command)?;
    }
    Ok(processes.clone())
}

fn check_command(field: &str, command: &[String]) -> Result<()> {
    validate_command(command).map_err(|e| {
        let at = e.field.trim_start_matches("spec.command");
        invalid(&format!("{field}.command{at}"), e.message)
    })
}

/// Checks published ports ('' protocol → `tcp`).
pub fn check_ports(ports: &[PortMapping]) -> Result<Vec<PortMapping>> {
    if ports.len() > MAX_PORTS {
        return Err(invalid(
            "ports",
            format!("{} ports; at most {MAX_PORTS} are allowed", ports.len()),
        ));
    }
    let mut out: Vec<PortMapping> = Vec::with_capacity(ports.len());
    for (i, port) in ports.iter().enumerate() {
        let field = format!("ports[{i}]");
        if port.container_port == 0 {
            return Err(invalid(
                &format!("{field}.container_port"),
                "must be 1-65535",
            ));
        }
        let protocol = match port.protocol.as_str() {
            "" | "tcp" => "tcp",
            "udp" => "udp",
            other => {
                return Err(invalid(
                    &format!("{field}.protocol"),
                    format!("{other:?} is not a protocol; use tcp or udp"),
                ));
            }
        };
        let port = PortMapping {
            container_port: port.container_port,
            host_port: port.host_port,
            protocol: protocol.to_owned(),
        };
        if out
            .iter()
            .any(|p| p.container_port == port.container_port && p.protocol == port.protocol)
        {
            return Err(invalid(
                &field,
                format!(
                    "container port {}/{} is published twice",
                    port.container_port, port.protocol
                ),
            ));
        }
        if port.host_port != 0
            && out
                .iter()
                .any(|p| p.host_port == port.host_port && p.protocol == port.protocol)
        {
            return Err(invalid(
                &format!("{field}.host_port"),
                format!(
                    "host port {}/{} is used twice; give each its own (or 0 to let Docker pick)",
                    port.host_port, port.protocol
                ),
            ));
        }
        out.push(port);
    }
    Ok(out)
}

fn duration(field: &str, raw: RawDuration) -> Result<Duration> {
    raw.to_std(field)
        .map_err(|e| Error::InvalidArgument(format!("{}: {}", e.field, e.message)))
}

/// Lays `input` over `current` and checks the ranges.
pub fn check_backoff(current: Backoff, input: &BackoffInput) -> Result<Backoff> {
    let mut b = current;
    if let Some(raw) = input.initial {
        b.initial = duration("backoff.initial", raw)?;
    }
    if let Some(raw) = input.max {
        b.max = duration("backoff.max", raw)?;
    }
    if let Some(raw) = input.stable_after {
        b.stable_after = duration("backoff.stable_after", raw)?;
    }
    if let Some(raw) = input.success_delay {
        b.success_delay = duration("backoff.success_delay", raw)?;
    }
    if let Some(n) = input.max_local_restarts {
        if n > 100 {
            return Err(invalid(
                "backoff.max_local_restarts",
                format!("{n}; at most 100 (0 never moves a crashing replica)"),
            ));
        }
        b.max_local_restarts = n;
    }
    if b.initial.is_zero() {
        return Err(invalid("backoff.initial", "must be greater than 0 (e.g. 1s)"));
    }
    if b.max < b.initial {
        return Err(invalid(
            "backoff.max",
            format!(
                "{:?} is less than backoff.initial {:?}; make it at least that",
                b.max, b.initial
            ),
        ));
    }
    for (field, d) in [
        ("backoff.initial", b.initial),
        ("backoff.max", b.max),
        ("backoff.success_delay", b.success_delay),
    ] {
        if d > HOUR {
            return Err(invalid(field, format!("{d:?} is longer than 1h")));
        }
    }
    if b.stable_after > Duration::from_secs(24 * 3600) {
        return Err(invalid("backoff.stable_after", "is longer than 24h"));
    }
    Ok(b)
}

/// Lays `input` over `current` and checks the ranges.
pub fn check_health(current: HealthSettings, input: &HealthInput) -> Result<HealthSettings> {
    let mut h = current;
    if let Some(raw) = input.min_healthy {
        h.min_healthy = duration("health.min_healthy", raw)?;
    }
    if let Some(raw) = input.deploy_deadline {
        h.deploy_deadline = duration("health.deploy_deadline", raw)?;
    }
    if h.min_healthy > HOUR {
        return Err(invalid("health.min_healthy", "is longer than 1h"));
    }
    if h.deploy_deadline < Duration::from_secs(10)
        || h.deploy_deadline > Duration::from_secs(24 * 3600)
    {
        return Err(invalid(
            "health.deploy_deadline",
            format!("{:?} is outside 10s..24h", h.deploy_deadline),
        ));
    }
    Ok(h)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn json<T: serde::Serialize>(value: &T) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(Error::internal)
}

fn user_id(caller: &Identity, action: &str) -> Result<Uuid> {
    caller
        .user_id
        .ok_or_else(|| Error::PermissionDenied(format!("only users and admins may {action}")))
}

/// The caller's standing in the service's workspace, checked for `role`, and the
/// service's row (locked when `lock`).
async fn find_for(
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

/// The ports refusal when the release has no network.
fn refuse_ports_without_network(
    template: &str,
    network: &str,
    has_networks: bool,
    ports: &[PortMapping],
) -> Result<()> {
    if !ports.is_empty() && network == "none" && !has_networks {
        return Err(Error::FailedPrecondition(format!(
            "ports need a network; set --network bridge on template {template}"
        )));
    }
    Ok(())
}

impl ServiceManager {
    /// Wakes the reconcilers (after a commit).
    fn poke(&self) {
        self.hub.changed();
    }

    /// `CreateService`.
    pub async fn create(&self, caller: &Identity, input: CreateInput) -> Result<ServiceView> {
        validate_name(&input.name)?;
        if input.template.is_empty() {
            return Err(invalid("template", "is required; name a job template"));
        }
        let processes = check_processes(&input.processes)?;
        let backoff = check_backoff(Backoff::default(), &input.backoff)?;
        let health = check_health(HealthSettings::default(), &input.health)?;
        let ports = check_ports(&input.ports)?;
        let policy = input.restart_policy.unwrap_or_default();
        if let Some(v) = input.version
            && v < 1
        {
            return Err(invalid("version", "releases are numbered from 1"));
        }
        let creator = user_id(caller, "create services")?;
        let mut conn = self.pool.get().await?;
        let workspace = workspace_name(&input.workspace).to_owned();
        let standing = roles::in_workspace(&mut conn, caller, &workspace).await?;
        standing.require(WorkspaceRole::Contributor, "create services in")?;
        standing.require_open()?;
        let template = crate::templates::store::find(
            &mut conn,
            standing.workspace.id,
            &workspace,
            &input.template,
            Some(Kind::Job),
        )
        .await?;
        if template.archived_at.is_some() {
            return Err(Error::FailedPrecondition(format!(
                "template {} is archived: a service cannot run it; use another template",
                template.name
            )));
        }
        if !template.active {
            return Err(Error::FailedPrecondition(format!(
                "template {} is inactive: make it active again (berth template set {} --active) to run it as a service",
                template.name, template.name
            )));
        }
        let version = input.version.unwrap_or(template.latest_version);
        let (_, job, _) =
            crate::templates::job_release(&mut conn, &self.secrets, template.id, version).await?;
        refuse_ports_without_network(
            &template.name,
            &job.spec.network,
            !job.spec.networks.is_empty(),
            &ports,
        )?;
        let id = Uuid::now_v7();
        let summary = processes
            .iter()
            .map(|(p, v)| format!("{p}={}", v.replicas))
            .collect::<Vec<_>>()
            .join(" ");
        let row = conn
            .transaction::<_, Error, _>(async |conn| {
                let inserted = diesel::insert_into(services::table)
                    .values((
                        services::id.eq(id),
                        services::workspace_id.eq(standing.workspace.id),
                        services::name.eq(&input.name),
                        services::template_id.eq(template.id),
                        services::version.eq(version),
                        services::processes.eq(json(&processes)?),
                        services::restart_policy.eq(policy.as_str()),
                        services::backoff_initial_ms.eq(ms(backoff.initial)),
                        services::backoff_max_ms.eq(ms(backoff.max)),
                        services::stable_after_ms.eq(ms(backoff.stable_after)),
                        services::success_delay_ms.eq(ms(backoff.success_delay)),
                        services::max_local_restarts
                            .eq(i32::try_from(backoff.max_local_restarts).unwrap_or(i32::MAX)),
                        services::min_healthy_ms.eq(ms(health.min_healthy)),
                        services::deploy_deadline_ms.eq(ms(health.deploy_deadline)),
                        services::ports.eq(json(&ports)?),
                        services::created_by.eq(creator),
                    ))
                    .on_conflict_do_nothing()
                    .returning(ServiceRow::as_returning())
                    .get_result(conn)
                    .await
                    .optional()?;
                let Some(row) = inserted else {
                    return Err(Error::AlreadyExists(format!(
                        "a service named {:?} already exists in workspace {workspace}; pick another name, or change that one (berth service update / scale / deploy)",
                        input.name
                    )));
                };
                history::record(
                    conn,
                    NewEvent {
                        version: Some(version),
                        by_user: Some(creator),
                        ..NewEvent::service(
                            id,
                            EventKind::Created,
                            format!("from {}@v{version}: {summary}", template.name),
                        )
                    },
                )
                .await?;
                Ok(row)
            })
            .await?;
        tracing::info!(service = %row.id, name = %row.name, by = %caller.name, "service created");
        self.poke();
        self.view(&mut conn, row).await
    }

    /// `GetService`.
    pub async fn get(&self, caller: &Identity, service: &ServiceRef) -> Result<ServiceView> {
        let mut conn = self.pool.get().await?;
        let (_, row) = find_for(
            &mut conn,
            caller,
            service,
            WorkspaceRole::Viewer,
            "read services of",
        )
        .await?;
        self.view(&mut conn, row).await
    }

    /// `ListServices`: the workspace's services ('' for `default`) by name.
    pub async fn list(&self, caller: &Identity, workspace: &str) -> Result<Vec<ServiceView>> {
        let mut conn = self.pool.get().await?;
        let standing = roles::in_workspace(&mut conn, caller, workspace_name(workspace)).await?;
        standing.require(WorkspaceRole::Viewer, "read services of")?;
        let rows: Vec<ServiceRow> = services::table
            .filter(services::workspace_id.eq(standing.workspace.id))
            .filter(services::deleted_at.is_null())
            .order(services::name)
            .select(ServiceRow::as_select())
            .load(&mut conn)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(self.view(&mut conn, row).await?);
        }
        Ok(out)
    }

    /// `UpdateService`.
    pub async fn update(&self, caller: &Identity, input: UpdateInput) -> Result<ServiceView> {
        let by = user_id(caller, "change services")?;
        let mut conn = self.pool.get().await?;
        let (standing, found) = find_for(
            &mut conn,
            caller,
            &input.service,
            WorkspaceRole::Contributor,
            "change services of",
        )
        .await?;
        standing.require_open()?;
        let ports = input.ports.as_deref().map(check_ports).transpose()?;
        let row = conn
            .transaction::<_, Error, _>(async |conn| {
                let row = store::lock(conn, found.id).await?;
                let (mut processes, policy, backoff, health, old_ports) = state::settings(&row)?;
                let new_backoff = check_backoff(backoff, &input.backoff)?;
                let new_health = check_health(health, &input.health)?;
                let new_policy = input.restart_policy.unwrap_or(policy);
                let mut changed = Vec::new();
                for (process, command) in &input.commands {
                    let Some(p) = processes.get_mut(process) else {
                        return Err(unknown_process(process, &processes));
                    };
                    check_command(&format!("commands[{process:?}]"), command)?;
                    if &p.command != command {
                        p.command.clone_from(command);
                        changed.push(format!("{process} command"));
                    }
                }
                if new_policy != policy {
                    changed.push(format!("restart policy {policy} → {new_policy}"));
                }
                if new_backoff != backoff {
                    changed.push("backoff".to_owned());
                }
                if new_health != health {
                    changed.push("health".to_owned());
                }
                let ports = ports.clone().unwrap_or_else(|| old_ports.clone());
                if ports != old_ports {
                    let (template, job, _) = crate::templates::job_release(
                        conn,
                        &self.secrets,
                        row.template_id,
                        row.version,
                    )
                    .await?;
                    refuse_ports_without_network(
                        &template.name,
                        &job.spec.network,
                        !job.spec.networks.is_empty(),
                        &ports,
                    )?;
                    changed.push("ports (from the next container on)".to_owned());
                }
                if changed.is_empty() {
                    return Ok(row);
                }
                let row = diesel::update(services::table.find(row.id))
                    .set((
                        services::processes.eq(json(&processes)?),
                        services::restart_policy.eq(new_policy.as_str()),
                        services::backoff_initial_ms.eq(ms(new_backoff.initial)),
                        services::backoff_max_ms.eq(ms(new_backoff.max)),
                        services::stable_after_ms.eq(ms(new_backoff.stable_after)),
                        services::success_delay_ms.eq(ms(new_backoff.success_delay)),
                        services::max_local_restarts
                            .eq(i32::try_from(new_backoff.max_local_restarts).unwrap_or(i32::MAX)),
                        services::min_healthy_ms.eq(ms(new_health.min_healthy)),
                        services::deploy_deadline_ms.eq(ms(new_health.deploy_deadline)),
                        services::ports.eq(json(&ports)?),
                        services::updated_at.eq(diesel::dsl::now),
                    ))
                    .returning(ServiceRow::as_returning())
                    .get_result(conn)
                    .await?;
                history::record(
                    conn,
                    NewEvent {
                        by_user: Some(by),
                        ..NewEvent::service(row.id, EventKind::Updated, changed.join(", "))
                    },
                )
                .await?;
                Ok(row)
            })
            .await?;
        self.poke();
        self.view(&mut conn, row).await
    }

    /// `ScaleService`: process type → desired replicas.
    pub async fn scale(
        &self,
        caller: &Identity,
        service: &ServiceRef,
        replicas: &BTreeMap<String, u32>,
    ) -> Result<ServiceView> {
        let by = user_id(caller, "scale services")?;
        if replicas.is_empty() {
            return Err(invalid(
                "replicas",
                "is empty; give PROCESS=N, e.g. web=3",
            ));
        }
        let mut conn = self.pool.get().await?;
        let (standing, found) = find_for(
            &mut conn,
            caller,
            service,
            WorkspaceRole::Contributor,
            "scale services of",
        )
        .await?;
        standing.require_open()?;
        let row = conn
            .transaction::<_, Error, _>(async |conn| {
                let row = store::lock(conn, found.id).await?;
                let (mut processes, ..) = state::settings(&row)?;
                let mut steps = Vec::new();
                for (process, n) in replicas {
                    let Some(p) = processes.get_mut(process) else {
                        return Err(unknown_process(process, &processes));
                    };
                    if *n > MAX_REPLICAS {
                        return Err(invalid(
                            &format!("replicas[{process:?}]"),
                            format!("{n} replicas; at most {MAX_REPLICAS} are allowed"),
                        ));
                    }
                    if p.replicas != *n {
                        steps.push(format!("{process} {} → {n}", p.replicas));
                        p.replicas = *n;
                    }
                }
                if steps.is_empty() {
                    return Ok(row);
                }
                let row = diesel::update(services::table.find(row.id))
                    .set((
                        services::processes.eq(json(&processes)?),
                        services::updated_at.eq(diesel::dsl::now),
                    ))
                    .returning(ServiceRow::as_returning())
                    .get_result(conn)
                    .await?;
                history::record(
                    conn,
                    NewEvent {
                        by_user: Some(by),
                        ..NewEvent::service(row.id, EventKind::Scaled, steps.join(", "))
                    },
                )
                .await?;
                Ok(row)
            })
            .await?;
        self.poke();
        self.view(&mut conn, row).await
    }

    /// `DeleteService`.
    pub async fn delete(&self, caller: &Identity, service: &ServiceRef) -> Result<()> {
        let by = user_id(caller, "delete services")?;
        let mut conn = self.pool.get().await?;
        let (standing, found) = find_for(
            &mut conn,
            caller,
            service,
            WorkspaceRole::Contributor,
            "delete services of",
        )
        .await?;
        standing.require_open()?;
        conn.transaction::<_, Error, _>(async |conn| {
            store::lock(conn, found.id).await?;
            diesel::update(services::table.find(found.id))
                .set((
                    services::deleted_at.eq(diesel::dsl::now),
                    services::updated_at.eq(diesel::dsl::now),
                ))
                .execute(conn)
                .await?;
            history::record(
                conn,
                NewEvent {
                    by_user: Some(by),
                    ..NewEvent::service(found.id, EventKind::Deleted, "every replica is stopped")
                },
            )
            .await
        })
        .await?;
        tracing::info!(service = %found.id, name = %found.name, by = %caller.name, "service deleted");
        self.poke();
        Ok(())
    }

    /// The view of `row`: names and each replica's state.
    pub(crate) async fn view(
        &self,
        conn: &mut AsyncPgConnection,
        row: ServiceRow,
    ) -> Result<ServiceView> {
        let workspace: String = crate::store::schema::workspaces::table
            .find(row.workspace_id)
            .select(crate::store::schema::workspaces::name)
            .first(conn)
            .await?;
        let template: String = templates::table
            .find(row.template_id)
            .select(templates::name)
            .first(conn)
            .await?;
        let created_by: String = users::table
            .find(row.created_by)
            .select(users::name)
            .first(conn)
            .await
            .optional()?
            .unwrap_or_default();
        let state = state::load(conn, row).await?;
        let worker_ids: Vec<Uuid> = state
            .slots
            .iter()
            .filter_map(|s| s.current.as_ref().and_then(|r| r.worker_id))
            .collect();
        let names: HashMap<Uuid, String> = workers::table
            .filter(workers::id.eq_any(&worker_ids))
            .select((workers::id, workers::name))
            .load::<(Uuid, String)>(conn)
            .await?
            .into_iter()
            .collect();
        let replicas = replica_views(&state, &names);
        Ok(ServiceView {
            row: state.row,
            workspace,
            template,
            created_by,
            replicas,
        })
    }
}

fn unknown_process(process: &str, processes: &BTreeMap<String, Process>) -> Error {
    Error::InvalidArgument(format!(
        "replicas[{process:?}]: the service has no process type {process:?}; it has {}",
        processes.keys().cloned().collect::<Vec<_>>().join(", ")
    ))
}

fn replica_views(state: &ServiceState, names: &HashMap<Uuid, String>) -> Vec<ReplicaView> {
    let now = Utc::now();
    state
        .slots
        .iter()
        .map(|slot| {
            let wanted = state.row.deleted_at.is_none()
                && state.processes.get(&slot.row.process).is_some_and(|p| {
                    i64::from(p.replicas) > i64::from(slot.row.slot_index)
                });
            let current = slot.current.as_ref();
            let replica_state = if !wanted {
                ReplicaState::Stopping
            } else if slot.row.exited {
                ReplicaState::Exited
            } else {
                match current {
                    None => ReplicaState::Starting,
                    Some(run)
                        if run.status == Status::Pending
                            && slot.row.restart_at.is_some_and(|at| at > now) =>
                    {
                        ReplicaState::Restarting
                    }
                    Some(run) => match health::judge(run, &state.health, now) {
                        Judgement::Starting => ReplicaState::Starting,
                        Judgement::Healthy { .. } => ReplicaState::Healthy,
                        Judgement::Unhealthy { .. } => ReplicaState::Unhealthy,
                        Judgement::Ended => ReplicaState::Restarting,
                    },
                }
            };
            ReplicaView {
                name: ReplicaName {
                    process: slot.row.process.clone(),
                    index: u32::try_from(slot.row.slot_index).unwrap_or(0),
                },
                state: replica_state,
                version: slot.row.version,
                request_id: current.map(|r| r.request_id),
                worker: current
                    .filter(|r| !r.status.is_terminal())
                    .and_then(|r| r.worker_id)
                    .and_then(|id| names.get(&id).cloned()),
                failures: slot.row.failures,
                restart_at: slot.row.restart_at,
                healthy_since: slot.row.healthy_since,
                next_request_id: slot.next.as_ref().map(|r| r.request_id),
            }
        })
        .collect()
}
