//! Services: long-running containers from a job template's release, scaled per process
//! type, restarted with backoff, moved off crashing or lost workers and rolled forward to
//! new releases one replica at a time.
//!
//! A service runs one release of a job template. Each replica is a **slot**
//! (process type, index; written `web.1`) whose container is an ordinary work request of
//! its own, made through [`crate::work::own::insert`] and linked to the slot in
//! `service_runs`. So a replica is placed by the claim query, fenced by attempt numbers,
//! lost with its worker's lease, stopped with TERM → grace → KILL and logged exactly like
//! a job, takes a worker slot and counts against the workspace's `max_running`. A restart
//! is a new request for the slot, made only once the previous one has ended (the
//! previous container is gone, or its worker is cut off and fences itself), so a slot
//! never has two live containers — except during a deploy, whose replacement
//! (`next_request_id`) starts before the old one is stopped.
//!
//! Nothing here runs on a call's behalf but the bookkeeping of what the caller asked
//! (desired replicas, a deploy, settings); the **reconciler** ([`reconcile`]) makes the
//! replicas match, on every replica of the server, one service at a time under its row
//! lock (`FOR UPDATE SKIP LOCKED`), level-triggered from the database, so a server
//! restart or a lost notification costs only latency.
//!
//! What it owns:
//! - [`store`]: service, slot, run and event rows.
//! - [`manage`]: creating, reading, listing, changing, scaling and deleting services (the
//!   front the API calls).
//! - [`state`]: a service with its slots and containers as a pass sees it, and the
//!   primitives that start and stop a slot's containers.
//! - [`reconcile`]: the pass that makes slots match what is desired; [`restart`] decides
//!   when and where a replica that ended starts again; [`history`] records every event
//!   with its reason and reads it back.
//! - [`deploy`]: rolling deploys and auto-revert; [`health`]: when a replica counts as
//!   healthy; [`endpoints`]: where published ports are reached.
//! - [`logs`]: the replicas' logs interleaved; [`oneoff`]: one-off commands.
//!
//! What it must not touch: work requests' rows and states (it makes and stops them only
//! through the doors in [`crate::work::own`]),
//! templates' rows (it reads releases through [`crate::templates`]), roles (decided by
//! [`crate::access::roles`]), and the wire protocol.

pub mod deploy;
pub mod endpoints;
pub mod health;
pub mod history;
pub mod logs;
pub mod manage;
pub mod oneoff;
pub mod reconcile;
pub mod restart;
pub mod state;
pub mod store;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::live::hub::Hub;
use crate::store::db::DbPool;
use crate::store::secrets::SecretBox;
use crate::templates::Templates;
use crate::work::ids::WorkRequestId;
use crate::work::spec::{PortMapping, RawDuration, SpecDefaults};

use self::store::{EventRow, ServiceRow};

/// Names a service: its workspace ('' for `default`) and its name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceRef {
    pub workspace: String,
    pub name: String,
}

/// When a replica whose container ended is started again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Always: after `success_delay` when it exited with 0, with backoff otherwise.
    #[default]
    Always,
    /// Only after a failure.
    OnFailure,
    /// Never (a lost worker's replica is still moved: it did not end, it was lost).
    Never,
}

impl RestartPolicy {
    /// As stored and shown: `always`, `on-failure`, `never`.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Never => "never",
        }
    }

    /// The stored text back; `None` for anything else.
    pub fn parse(text: &str) -> Option<RestartPolicy> {
        match text {
            "always" => Some(RestartPolicy::Always),
            "on-failure" => Some(RestartPolicy::OnFailure),
            "never" => Some(RestartPolicy::Never),
            _ => None,
        }
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Restart timing, resolved (see [`BackoffInput`] for the defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub stable_after: Duration,
    pub success_delay: Duration,
    pub max_local_restarts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            stable_after: Duration::from_secs(10 * 60),
            success_delay: Duration::from_secs(1),
            max_local_restarts: 3,
        }
    }
}

/// Restart timing as a caller sent it; `None` keeps the current value (on create: the
/// default: 1 s initial, 60 s max, 10 min stable, 1 s after success, 3 local restarts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackoffInput {
    pub initial: Option<RawDuration>,
    pub max: Option<RawDuration>,
    pub stable_after: Option<RawDuration>,
    pub success_delay: Option<RawDuration>,
    pub max_local_restarts: Option<u32>,
}

/// Health and deploy timing, resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthSettings {
    pub min_healthy: Duration,
    pub deploy_deadline: Duration,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            min_healthy: Duration::from_secs(10),
            deploy_deadline: Duration::from_secs(5 * 60),
        }
    }
}

/// Health and deploy timing as a caller sent it; `None` keeps the current value (on
/// create: 10 s and 5 min).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HealthInput {
    pub min_healthy: Option<RawDuration>,
    pub deploy_deadline: Option<RawDuration>,
}

/// One process type: how many replicas, and its command (empty: the release's).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Process {
    pub replicas: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
}

/// `CreateService` as a caller sent it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CreateInput {
    pub workspace: String,
    pub name: String,
    pub template: String,
    /// `None`: the template's latest release.
    pub version: Option<i32>,
    /// Empty: `web` with one replica.
    pub processes: BTreeMap<String, Process>,
    /// `None`: `always`.
    pub restart_policy: Option<RestartPolicy>,
    pub backoff: BackoffInput,
    pub health: HealthInput,
    pub ports: Vec<PortMapping>,
}

/// `UpdateService` as a caller sent it; `None` keeps a setting.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UpdateInput {
    pub service: ServiceRef,
    pub restart_policy: Option<RestartPolicy>,
    pub backoff: BackoffInput,
    pub health: HealthInput,
    /// `Some`: replaces the published ports (empty clears them).
    pub ports: Option<Vec<PortMapping>>,
    /// Process type → command to set (empty: the release's own).
    pub commands: BTreeMap<String, Vec<String>>,
}

/// `DeployService` as a caller sent it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeployInput {
    pub service: ServiceRef,
    /// `None`: the template's latest release.
    pub version: Option<i32>,
    pub auto_revert: bool,
    /// `None`: the service's deploy deadline.
    pub deadline: Option<RawDuration>,
}

/// A replica's name: process type and index, written `web.1`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplicaName {
    pub process: String,
    pub index: u32,
}

impl ReplicaName {
    /// Reads `web.1`; the error says what is wrong, for the caller's field.
    pub fn parse(text: &str) -> std::result::Result<ReplicaName, String> {
        let Some((process, index)) = text.rsplit_once('.') else {
            return Err(format!(
                "{text:?} is not a replica; write PROCESS.INDEX, such as web.0"
            ));
        };
        let index: u32 = index.parse().map_err(|_| {
            format!("{text:?} is not a replica: {index:?} is not an index (0, 1, ...)")
        })?;
        if process.is_empty() {
            return Err(format!(
                "{text:?} is not a replica: the process type is empty"
            ));
        }
        Ok(ReplicaName {
            process: process.to_owned(),
            index,
        })
    }
}

impl fmt::Display for ReplicaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.process, self.index)
    }
}

/// What a replica is doing, as callers see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaState {
    /// Its container is pending or running but not yet healthy.
    Starting,
    Healthy,
    /// Its image's HEALTHCHECK says unhealthy.
    Unhealthy,
    /// Waiting out its backoff before the next container.
    Restarting,
    /// Ended and not restarted under the restart policy.
    Exited,
    /// Scaled away or deleted; its container is being stopped.
    Stopping,
}

impl ReplicaState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicaState::Starting => "starting",
            ReplicaState::Healthy => "healthy",
            ReplicaState::Unhealthy => "unhealthy",
            ReplicaState::Restarting => "restarting",
            ReplicaState::Exited => "exited",
            ReplicaState::Stopping => "stopping",
        }
    }
}

/// One replica as callers see it.
#[derive(Clone, Debug)]
pub struct ReplicaView {
    pub name: ReplicaName,
    pub state: ReplicaState,
    pub version: i32,
    pub request_id: Option<WorkRequestId>,
    /// The worker running it (its name).
    pub worker: Option<String>,
    pub failures: i32,
    pub restart_at: Option<DateTime<Utc>>,
    pub healthy_since: Option<DateTime<Utc>>,
    pub next_request_id: Option<WorkRequestId>,
}

/// A service as callers see it.
#[derive(Clone, Debug)]
pub struct ServiceView {
    pub row: ServiceRow,
    /// Its workspace's name.
    pub workspace: String,
    /// Its template's name.
    pub template: String,
    /// Its creator's name.
    pub created_by: String,
    /// Every slot, by process type then index.
    pub replicas: Vec<ReplicaView>,
}

/// One event as callers see it.
#[derive(Clone, Debug)]
pub struct EventView {
    pub row: EventRow,
    /// The worker's name, if one is concerned.
    pub worker: Option<String>,
    /// Who caused it (a user's name), if a user did.
    pub by: Option<String>,
}

/// `GetServiceHistory`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistoryQuery {
    pub service: ServiceRef,
    /// As sent (`web.1`); '' for all.
    pub replica: String,
    /// 0: 100; at most 1000.
    pub limit: u32,
    /// Events older than this id; 0: from the newest.
    pub before: i64,
}

/// A page of history, newest first.
#[derive(Clone, Debug)]
pub struct HistoryPage {
    pub events: Vec<EventView>,
    /// `before` for the next page; `None` when there is none.
    pub next_before: Option<i64>,
}

/// Where one published port of one running replica is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointView {
    pub replica: ReplicaName,
    pub worker: String,
    /// The worker's advertised address, else its name.
    pub host: String,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
    pub request_id: WorkRequestId,
}

/// `StreamServiceLogs`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogsQuery {
    pub service: ServiceRef,
    /// As sent (`web.1`); '' for all.
    pub replica: String,
    pub follow: bool,
    /// Without `follow`: every container each replica ran, not only the current one.
    pub all: bool,
}

/// A piece of one replica's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceLogChunk {
    pub replica: ReplicaName,
    pub request_id: WorkRequestId,
    pub attempt: u32,
    pub stream: u32,
    pub offset: u64,
    pub data: Vec<u8>,
}

/// `RunServiceCommand`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunInput {
    pub service: ServiceRef,
    /// Required.
    pub command: Vec<String>,
    /// '' for the release itself.
    pub process: String,
}

/// See the module docs. The API's front for services, and the reconciler's state.
#[derive(Clone)]
pub struct ServiceManager {
    pub(crate) pool: DbPool,
    pub(crate) secrets: SecretBox,
    pub(crate) defaults: SpecDefaults,
    pub(crate) hub: Arc<Hub>,
    pub(crate) templates: Templates,
    /// How often the reconciler looks even when nothing woke it.
    pub(crate) interval: Duration,
}

impl ServiceManager {
    /// Services stored in `pool`; replicas made from `templates`' releases (secrets
    /// opened and sealed again with `secrets`), one-off runs submitted as runs of
    /// `templates`, workers told through `hub`.
    pub fn new(
        pool: DbPool,
        secrets: SecretBox,
        defaults: SpecDefaults,
        hub: Arc<Hub>,
        templates: Templates,
    ) -> ServiceManager {
        ServiceManager {
            pool,
            secrets,
            defaults,
            hub,
            templates,
            interval: Duration::from_secs(1),
        }
    }

    /// Makes the reconciler look every `interval` (1 s by default) at least.
    pub fn with_interval(mut self, interval: Duration) -> ServiceManager {
        self.interval = interval;
        self
    }
}
