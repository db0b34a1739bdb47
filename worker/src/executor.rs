//! Runs one attempt of a work request as a Docker container, from image to removal.
//!
//! [`DockerExecutor::run`] is the whole life of a container: make the image available
//! (per the pull policy), create the container, attach to its output *before* starting it
//! (so a container that exits at once loses nothing), start it, forward its output frame by
//! frame, wait for it to exit, and hand its removal to the caller (a [`Cleanup`]). Every
//! way this can go wrong ends in a [`RunReport`] rather than an error or a panic: the
//! session code reports what happened to the server, and the server decides what it means.
//!
//! # Security defaults, and why
//!
//! A work request is code from a user of the cluster, and the worker's Docker engine is
//! root on the worker's host. The container therefore gets as little as it can work with:
//!
//! - **Not privileged; all capabilities dropped but a small set** (see [`ADDED_CAPABILITIES`]).
//!   Docker's default set includes `NET_RAW`, `MKNOD`, `SYS_CHROOT`, `AUDIT_WRITE`, ... which
//!   ordinary batch jobs do not need and which widen the kernel surface an escape can use.
//! - **`no-new-privileges`**: set-uid binaries in the image cannot raise privileges again.
//! - **No network** (`none`) unless the job names one; `host` and `container:<id>` are
//!   refused here too (the server refuses them first), since both share a namespace with
//!   something that is not the job.
//! - **Limits**: memory with swap equal to memory (no swap, so the limit is real and an OOM
//!   kill is visible), CPU, and a pids limit against fork bombs. The OOM killer stays enabled.
//! - **No binds but the attempt's own dirs**, so never the Docker socket nor any other
//!   host path: the worker's per-attempt input dirs, read-only at `/in/<mount>`, and the
//!   per-attempt working dir when outputs are collected (see `inputs` and `outputs`); they
//!   are given as mounts (not `binds` strings, which a `:` in a path would break).
//!   (Anonymous volumes an image declares are removed together with the container.)
//! - **An init process** (`init = true`): it reaps zombies and forwards SIGTERM to the
//!   command, which as PID 1 would otherwise ignore signals it has no handler for, making
//!   every graceful stop wait out the grace period.
//!
//! Secret environment variables reach the container like ordinary ones (there is no other
//! way to hand them to an arbitrary image), so anyone who can `docker inspect` on the worker
//! sees them; they never appear in this module's `Debug` output or logs.
//!
//! # Stopping
//!
//! On timeout, cancel, or when the receiver of the output goes away, the container gets
//! SIGTERM, then SIGKILL once the stop grace period is over. This module sends the signals
//! itself instead of calling `docker stop`, because a grace period may be up to an hour and a
//! single API request that long would outlive the client's request timeout.
//!
//! # Service replicas: ports, health, no timeout
//!
//! A spec with `ports` publishes them on every host address (host port 0: one Docker
//! picks); after the start one inspect reads the ports as bound and whether a HEALTHCHECK
//! applies (the container's or its image's), both sent with [`OutputEvent::Started`].
//! With a HEALTHCHECK the container is inspected every [`HEALTH_POLL`] and each change of
//! its status is sent as [`OutputEvent::Health`]. A zero timeout means none: the
//! container gets no `berth.timeout-ms` label, so no reaper stops it for its age.
//!
//! # Clean-up
//!
//! Containers carry the labels [`LABEL_MANAGED`], [`LABEL_WORKER`], [`LABEL_WORK_REQUEST`],
//! [`LABEL_ATTEMPT`], [`LABEL_STOP_GRACE`] and (with a timeout) [`LABEL_TIMEOUT`]. `run` returns, with its report, a [`Cleanup`] that force-removes the
//! container whatever happened; the worker reports first and removes after, so the removal
//! holds up neither the result nor the next job. If the `run` future is dropped half-way,
//! or the `Cleanup` unused, a best-effort removal is started from `Drop`, and the worker's
//! `reaper`, which judges every Berth container on the engine at start and periodically
//! ([`DockerExecutor::berth_containers`], [`DockerExecutor::stop_and_remove`]), removes
//! whatever is still left.
//!
//! # Docker requests per attempt
//!
//! An attempt costs the requests `docker run` makes (create, attach, start, wait, remove)
//! plus a statistics stream for the resource figures and one inspect of the exited
//! container for the OOM verdict. The image is not inspected beforehand: the create itself
//! says when it is missing, and only then is it looked at and, if the pull policy allows,
//! pulled (with `always`, it is pulled before the create). A job on networks costs one
//! inspect of each (for its driver, see below) and, beyond the first network, one connect
//! each before the start.
//!
//! # Networks
//!
//! The first network of the spec is the container's network mode, joined at the create
//! with its aliases; the others are connected, with theirs, after the create and before
//! the start, so the job's command never runs without them. Each named network is
//! inspected first and refused when its driver is `host` or `null`: the server refuses
//! those by name, but Docker also accepts a network's id, which only its driver gives
//! away.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use berth_common::proto::{ContainerSpec, Outcome, PortMapping, PullPolicy};
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStatsResponse, ContainerSummary,
    EndpointSettings, HealthStatusEnum, HostConfig, Mount, MountType, NetworkConnectRequest,
    NetworkingConfig, PortBinding, PortMap,
};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder,
    KillContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    StatsOptionsBuilder, WaitContainerOptionsBuilder,
};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Label on everything Berth creates; always `"true"`.
pub const LABEL_MANAGED: &str = "berth.managed";
/// Label naming the worker that created the container.
pub const LABEL_WORKER: &str = "berth.worker";
/// Label holding the work request's id.
pub const LABEL_WORK_REQUEST: &str = "berth.work-request";
/// Label holding the attempt number.
pub const LABEL_ATTEMPT: &str = "berth.attempt";
/// Label holding the attempt's stop grace period in milliseconds, so whichever worker
/// reaps the container stops it as gently as its own worker would have.
pub const LABEL_STOP_GRACE: &str = "berth.stop-grace-ms";
/// Label holding the attempt's timeout in milliseconds (absent without one), so a worker
/// that finds the container after its own worker is gone still ends it on time.
pub const LABEL_TIMEOUT: &str = "berth.timeout-ms";

/// Capabilities a job keeps after `cap_drop: ALL`. They let the usual image set-up steps
/// work (package managers and entrypoints that `chown` files, switch users with
/// `su`/`gosu`, or signal their own children) without granting anything that reaches
/// beyond the container: no raw sockets, no device nodes, no chroot, no audit writes.
pub const ADDED_CAPABILITIES: [&str; 6] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "SETGID",
    "SETUID",
    "KILL",
];

/// Docker's own default stop grace period, used when a spec carries none.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// How long to wait for the exit after SIGKILL before giving up on the container.
const KILL_WAIT: Duration = Duration::from_secs(30);
/// How often a running container's HEALTHCHECK status is read.
const HEALTH_POLL: Duration = Duration::from_secs(1);
/// How long the output stream may stay silent after the container exited before the
/// rest of the output is given up on. Docker closes it as soon as the container's output
/// pipes close, so this only matters when the engine misbehaves.
const DRAIN_IDLE: Duration = Duration::from_secs(30);
/// Docker's default local socket.
const DEFAULT_LOCAL_HOST: &str = "unix:///var/run/docker.sock";
/// Timeout (seconds) for each Docker API request to answer with its headers. Streams
/// (attach, wait, stats, pull) are not limited once the answer has begun.
const REQUEST_TIMEOUT_SECS: u64 = 120;

/// Why the executor could not do what was asked; the message names the host and the step.
///
/// The underlying error is part of the message rather than a `source`, so the one line is
/// complete wherever it is printed.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// The Docker host setting cannot be used.
    #[error("invalid Docker host {host:?}: {reason}")]
    InvalidHost {
        /// The host as configured.
        host: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The engine did not answer.
    #[error("cannot reach the Docker engine at {host}: {cause}")]
    Unreachable {
        /// The host tried.
        host: String,
        /// Docker's or the transport's error.
        cause: String,
    },
    /// The engine answered a request with an error.
    #[error("Docker {operation} failed on {host}: {cause}")]
    Docker {
        /// The request that failed, e.g. `list containers`.
        operation: &'static str,
        /// The engine's host.
        host: String,
        /// Docker's message.
        cause: String,
    },
}

/// One attempt to run: what the session code hands to [`DockerExecutor::run`].
#[derive(Clone)]
pub struct Job {
    /// The work request's id.
    pub work_request_id: String,
    /// The attempt number (1, 2, ...).
    pub attempt: u32,
    /// What to run, with `secret_env` filled in.
    pub spec: ContainerSpec,
    /// Host dirs of this attempt to bind-mount: (host path, container path, read-only).
    pub mounts: Vec<(std::path::PathBuf, String, bool)>,
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut spec = self.spec.clone();
        for value in spec.secret_env.values_mut() {
            *value = "[REDACTED]".to_owned();
        }
        f.debug_struct("Job")
            .field("work_request_id", &self.work_request_id)
            .field("attempt", &self.attempt)
            .field("spec", &spec)
            .finish()
    }
}

/// What [`DockerExecutor::run`] reports while the attempt runs, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputEvent {
    /// The container has started; sent once, before any output.
    Started {
        /// Docker's id for the container.
        container_id: String,
        /// Time spent making the image available.
        pull_duration: Duration,
        /// The ports Docker published, as bound (a host port asked as 0 carries the one
        /// Docker picked).
        ports: Vec<PortMapping>,
        /// Whether the container has a Docker HEALTHCHECK (its own or its image's); if
        /// so, [`OutputEvent::Health`] follows on every change of its status.
        has_healthcheck: bool,
    },
    /// The container's HEALTHCHECK status changed (`starting`, `healthy`, `unhealthy`),
    /// with the last probe's output as Docker keeps it (not yet cut or masked).
    Health {
        /// Docker's status.
        status: String,
        /// The last probe's output.
        output: String,
    },
    /// Bytes the container wrote to standard output, as Docker delivered them.
    Stdout(Bytes),
    /// Bytes the container wrote to standard error, as Docker delivered them.
    Stderr(Bytes),
    /// The worker's own notes (pulls, timeouts, stops).
    System(String),
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The outcome the server derives status, result and reason from.
    pub outcome: Outcome,
    /// The container's exit code, when it ran and the code is known.
    pub exit_code: Option<i32>,
    /// Docker's or the worker's message; empty for a plain exit.
    pub message: String,
    /// Peak memory use, when Docker's statistics caught it.
    pub peak_memory_bytes: Option<u64>,
    /// CPU time used, when Docker's statistics caught it.
    pub cpu_time: Option<Duration>,
    /// Time spent making the image available.
    pub pull_duration: Duration,
    /// Time from container start to exit.
    pub run_duration: Duration,
    /// Docker's id for the container; empty when none was created.
    pub container_id: String,
}

impl RunReport {
    /// A report for an attempt that ended before a container existed.
    fn without_container(outcome: Outcome, message: String, pull_duration: Duration) -> Self {
        RunReport {
            outcome,
            exit_code: None,
            message,
            peak_memory_bytes: None,
            cpu_time: None,
            pull_duration,
            run_duration: Duration::ZERO,
            container_id: String::new(),
        }
    }
}

/// Runs attempts on one Docker engine, on behalf of one worker.
#[derive(Debug, Clone)]
pub struct DockerExecutor {
    docker: Docker,
    worker_name: String,
    /// The engine's address, for messages.
    host: String,
}

impl DockerExecutor {
    /// Connects to the engine and checks that it answers.
    ///
    /// `docker_host`: `None` uses the local default (`DOCKER_HOST` honoured, as the docker
    /// CLI does); `unix:///path`; `tcp://host:port`, over TLS with the client certificates
    /// `ca.pem`, `cert.pem` and `key.pem` from `DOCKER_CERT_PATH` (else `~/.docker`) when
    /// `tls` is set, plain HTTP otherwise. The API version is negotiated with the engine.
    pub async fn connect(
        docker_host: Option<&str>,
        tls: bool,
        worker_name: &str,
    ) -> Result<DockerExecutor, ExecutorError> {
        let env_host = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty());
        let host = docker_host
            .map(str::to_owned)
            .or(env_host)
            .unwrap_or_else(|| DEFAULT_LOCAL_HOST.to_owned());
        let docker = if docker_host.is_none() && !tls {
            Docker::connect_with_defaults()
        } else {
            client_for(&host, tls)?
        }
        .map_err(|e| match e {
            // bollard looks for the socket file before any request; its absence is the
            // usual face of an engine that is not running.
            DockerError::SocketNotFoundError(path) => ExecutorError::Unreachable {
                host: host.clone(),
                cause: format!("no socket at {path}"),
            },
            e => ExecutorError::InvalidHost {
                host: host.clone(),
                reason: error_chain(&e),
            },
        })?;
        let unreachable = |e: DockerError| ExecutorError::Unreachable {
            host: host.clone(),
            cause: error_chain(&e),
        };
        // Engines older than the client's API version refuse every request until the
        // version is lowered to theirs; negotiating also proves the engine answers.
        let docker = docker.negotiate_version().await.map_err(unreachable)?;
        docker.ping().await.map_err(unreachable)?;
        Ok(DockerExecutor {
            docker,
            worker_name: worker_name.to_owned(),
            host,
        })
    }

    /// The engine's facts for `Hello.metadata`: `docker_version`, `os`, `arch`, `cpus`,
    /// `memory_bytes`, and `docker_engine_id` (the engine's own ID from `docker info`, the
    /// same for every worker that shares the engine). Facts the engine does not report are
    /// left out.
    pub async fn host_facts(&self) -> Result<HashMap<String, String>, ExecutorError> {
        let version = self
            .docker
            .version()
            .await
            .map_err(|e| self.docker_error("version", &e))?;
        let info = self
            .docker
            .info()
            .await
            .map_err(|e| self.docker_error("info", &e))?;
        let facts = [
            ("docker_version", version.version),
            ("os", version.os),
            ("arch", version.arch),
            ("cpus", info.ncpu.map(|n| n.to_string())),
            ("memory_bytes", info.mem_total.map(|n| n.to_string())),
            ("docker_engine_id", info.id.filter(|id| !id.is_empty())),
        ];
        Ok(facts
            .into_iter()
            .filter_map(|(key, value)| Some((key.to_owned(), value?)))
            .collect())
    }

    /// Runs one attempt to its end and reports how it ended; the container is left for the
    /// caller to remove with the returned [`Cleanup`].
    ///
    /// Sends [`OutputEvent::Started`], then the output as Docker delivers it (standard
    /// output and error apart, each in order) and the worker's notes, on `output`; every
    /// event is sent before this returns. Cancelling `cancel` stops the container
    /// (`CANCELLED`), so does `spec.timeout` elapsing (`TIMED_OUT`), and so does the
    /// receiver of `output` going away (`INTERRUPTED`).
    ///
    /// The report is final when this returns: the container has exited (or was given up
    /// on) and has been inspected, so removing it cannot change what is reported. That is
    /// why the removal is the caller's next step rather than part of this call: the
    /// caller can report first and remove after, so the removal (tens of milliseconds, more
    /// on a busy engine) delays neither the result nor the next job.
    pub async fn run(
        &self,
        job: &Job,
        output: mpsc::Sender<OutputEvent>,
        cancel: CancellationToken,
    ) -> (RunReport, Cleanup) {
        let plan = match Plan::for_job(job, &self.worker_name) {
            Ok(plan) => plan,
            Err(message) => {
                let report =
                    RunReport::without_container(Outcome::StartFailed, message, Duration::ZERO);
                return (report, Cleanup::nothing());
            }
        };
        if let Err(message) = self.check_networks(&plan).await {
            let report =
                RunReport::without_container(Outcome::StartFailed, message, Duration::ZERO);
            return (report, Cleanup::nothing());
        }
        let (id, pull_duration) = match self.create(job, &plan, &output, &cancel).await {
            Ok(created) => created,
            Err(report) => return (report, Cleanup::nothing()),
        };
        let cleanup = Cleanup {
            removal: Some(Removal::new(self.docker.clone(), id.clone())),
        };
        if let Err(message) = self.connect_networks(&id, &plan).await {
            let mut report =
                RunReport::without_container(Outcome::StartFailed, message, pull_duration);
            report.container_id = id;
            return (report, cleanup);
        }
        let report = self
            .run_container(&id, &plan, pull_duration, &output, &cancel)
            .await;
        (report, cleanup)
    }

    /// Makes the image available per the pull policy and creates the container; returns
    /// its id and the time spent pulling, or the report of an attempt that ends here.
    ///
    /// Unless the policy is `always`, the container is created straight away, as
    /// `docker run` does: the image is looked at (and pulled, if the policy allows) only
    /// when the engine says it is missing. A present image, the usual case, so costs no
    /// request beyond the create.
    async fn create(
        &self,
        job: &Job,
        plan: &Plan,
        output: &mpsc::Sender<OutputEvent>,
        cancel: &CancellationToken,
    ) -> Result<(String, Duration), RunReport> {
        let image = job.spec.image.as_str();
        let mut pull_duration = Duration::ZERO;
        let mut pulled = false;
        if plan.pull_policy == PullPolicy::Always {
            pull_duration = self.pull_unless_cancelled(image, output, cancel).await?;
            pulled = true;
        }
        let name = container_name(&job.work_request_id, job.attempt);
        loop {
            if cancel.is_cancelled() {
                return Err(RunReport::without_container(
                    Outcome::Cancelled,
                    "cancelled before the container was created".to_owned(),
                    pull_duration,
                ));
            }
            let options = CreateContainerOptionsBuilder::default().name(&name).build();
            let refused = match self
                .docker
                .create_container(Some(options), plan.config.clone())
                .await
            {
                Ok(created) => return Ok((created.id, pull_duration)),
                Err(e) => e,
            };
            // 404 is also the answer for a missing network; only the image's own inspect
            // tells the two apart, whatever words the engine chose.
            let image_missing = !pulled
                && matches!(
                    refused,
                    DockerError::DockerResponseServerError {
                        status_code: 404,
                        ..
                    }
                )
                && self.docker.inspect_image(image).await.is_err();
            if !image_missing {
                return Err(RunReport::without_container(
                    Outcome::StartFailed,
                    format!(
                        "Docker refused to create the container: {}",
                        docker_message(&refused)
                    ),
                    pull_duration,
                ));
            }
            if plan.pull_policy == PullPolicy::Never {
                return Err(RunReport::without_container(
                    Outcome::ImagePullFailed,
                    format!(
                        "image {image} is not present on this worker and the pull policy is never"
                    ),
                    pull_duration,
                ));
            }
            pull_duration = self.pull_unless_cancelled(image, output, cancel).await?;
            pulled = true;
        }
    }

    /// Refuses a network whose driver would share a namespace with the worker (`host`) or
    /// give no network at all (`null`), whatever name or id the spec used. A network the
    /// engine does not know is left to the create, which reports it as it does today.
    async fn check_networks(&self, plan: &Plan) -> Result<(), String> {
        for name in &plan.networks {
            let Ok(network) = self.docker.inspect_network(name, None).await else {
                continue;
            };
            if let Some(driver @ ("host" | "null")) = network.driver.as_deref() {
                return Err(format!(
                    "network {name} uses the {driver} driver, which jobs may not join"
                ));
            }
        }
        Ok(())
    }

    /// Joins the created container `id` to its networks beyond the first, with aliases.
    async fn connect_networks(&self, id: &str, plan: &Plan) -> Result<(), String> {
        for (name, aliases) in &plan.connect {
            let request = NetworkConnectRequest {
                container: id.to_owned(),
                endpoint_config: Some(EndpointSettings {
                    aliases: (!aliases.is_empty()).then(|| aliases.clone()),
                    ..EndpointSettings::default()
                }),
            };
            self.docker
                .connect_network(name, request)
                .await
                .map_err(|e| {
                    format!(
                        "Docker refused to connect the container to network {name}: {}",
                        docker_message(&e)
                    )
                })?;
        }
        Ok(())
    }

    /// [`Self::pull`], given up when `cancel` is cancelled; returns the time it took.
    async fn pull_unless_cancelled(
        &self,
        image: &str,
        output: &mpsc::Sender<OutputEvent>,
        cancel: &CancellationToken,
    ) -> Result<Duration, RunReport> {
        let started = Instant::now();
        let pulled = tokio::select! {
            biased;
            () = cancel.cancelled() => Err((
                Outcome::Cancelled,
                "cancelled while making the image available".to_owned(),
            )),
            pulled = self.pull(image, output) => pulled,
        };
        let pull_duration = started.elapsed();
        match pulled {
            Ok(()) => Ok(pull_duration),
            Err((outcome, message)) => Err(RunReport::without_container(
                outcome,
                message,
                pull_duration,
            )),
        }
    }

    /// Force-removes this worker's containers whose (work request, attempt) is not in
    /// `live`, and those whose labels cannot be read. Returns how many were removed; a
    /// container that cannot be removed is logged and left for the next round.
    pub async fn reap_orphans(
        &self,
        live: &HashSet<(String, u32)>,
    ) -> Result<usize, ExecutorError> {
        let mut removed = 0;
        for container in self.list_own_containers(true).await? {
            let Some(id) = container.id.as_deref() else {
                continue;
            };
            let keep = attempt_of(&container).is_some_and(|attempt| live.contains(&attempt));
            if keep {
                continue;
            }
            info!(container_id = id, "removing an orphaned container");
            if remove_container(&self.docker, id).await {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// This worker's containers that still run: (work request id, attempt, container id).
    pub async fn running_attempts(&self) -> Result<Vec<(String, u32, String)>, ExecutorError> {
        Ok(self
            .list_own_containers(false)
            .await?
            .iter()
            .filter_map(|container| {
                let (work_request_id, attempt) = attempt_of(container)?;
                Some((work_request_id, attempt, container.id.clone()?))
            })
            .collect())
    }

    /// Every Berth container on the engine, whichever worker created it, running or not.
    pub async fn berth_containers(&self) -> Result<Vec<Found>, ExecutorError> {
        let filters = HashMap::from([("label", vec![format!("{LABEL_MANAGED}=true")])]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let listed = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| self.docker_error("list containers", &e))?;
        Ok(listed.iter().filter_map(Found::from_summary).collect())
    }

    /// Berth containers of one attempt on the engine.
    pub async fn containers_of(
        &self,
        work_request_id: &str,
        attempt: u32,
    ) -> Result<Vec<Found>, ExecutorError> {
        Ok(self
            .berth_containers()
            .await?
            .into_iter()
            .filter(|found| {
                found
                    .attempt
                    .as_ref()
                    .is_some_and(|(id, n)| id == work_request_id && *n == attempt)
            })
            .collect())
    }

    /// When the container started, if it ever did and the engine says so.
    pub async fn started_at(&self, id: &str) -> Option<std::time::SystemTime> {
        let inspected = self.docker.inspect_container(id, None).await.ok()?;
        let started = inspected.state?.started_at?;
        // Docker reports 0001-01-01 for a container that never started: before the epoch,
        // so not a time here.
        let started = humantime::parse_rfc3339_weak(&started).ok()?;
        (started > std::time::UNIX_EPOCH).then_some(started)
    }

    /// Stops a container the way an attempt is stopped (SIGTERM, up to `grace` for the
    /// exit, SIGKILL) and removes it; true when it is gone. A container that never started
    /// or already exited is just removed.
    pub async fn stop_and_remove(&self, id: &str, grace: Duration) -> bool {
        let running = match self.docker.inspect_container(id, None).await {
            Ok(inspected) => inspected.state.and_then(|s| s.running).unwrap_or(false),
            Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => return true,
            Err(_) => true,
        };
        if running {
            self.signal(id, "SIGTERM").await;
            let wait = self.wait_for_exit(id);
            if tokio::time::timeout(grace, wait).await.is_err() {
                self.signal(id, "SIGKILL").await;
                let _ = tokio::time::timeout(KILL_WAIT, self.wait_for_exit(id)).await;
            }
        }
        remove_container(&self.docker, id).await
    }

    /// Containers labelled for this worker; with `all`, stopped ones too.
    async fn list_own_containers(&self, all: bool) -> Result<Vec<ContainerSummary>, ExecutorError> {
        let filters = HashMap::from([(
            "label",
            vec![
                format!("{LABEL_MANAGED}=true"),
                format!("{LABEL_WORKER}={}", self.worker_name),
            ],
        )]);
        let options = ListContainersOptionsBuilder::default()
            .all(all)
            .filters(&filters)
            .build();
        self.docker
            .list_containers(Some(options))
            .await
            .map_err(|e| self.docker_error("list containers", &e))
    }

    fn docker_error(&self, operation: &'static str, e: &DockerError) -> ExecutorError {
        ExecutorError::Docker {
            operation,
            host: self.host.clone(),
            cause: docker_message(e),
        }
    }

    /// Pulls `image`, with notes on `output`; the error is the outcome and message to
    /// report.
    async fn pull(
        &self,
        image: &str,
        output: &mpsc::Sender<OutputEvent>,
    ) -> Result<(), (Outcome, String)> {
        let receiver_gone = || {
            (
                Outcome::Interrupted,
                "the receiver of the output went away".to_owned(),
            )
        };
        let started = Instant::now();
        emit(
            output,
            OutputEvent::System(format!("pulling image {image}")),
        )
        .await
        .map_err(|ReceiverGone| receiver_gone())?;
        let (from_image, tag) = split_reference(image);
        let options = CreateImageOptionsBuilder::default()
            .from_image(from_image)
            .tag(tag)
            .build();
        let mut progress = self.docker.create_image(Some(options), None, None);
        while let Some(step) = progress.next().await {
            if let Err(e) = step {
                let message = format!("pulling image {image} failed: {}", docker_message(&e));
                // The report carries the message; the note only completes the log.
                let _ = emit(output, OutputEvent::System(message.clone())).await;
                return Err((Outcome::ImagePullFailed, message));
            }
        }
        let note = format!(
            "pulled image {image} in {}",
            humantime::format_duration(round_to_millis(started.elapsed()))
        );
        emit(output, OutputEvent::System(note))
            .await
            .map_err(|ReceiverGone| receiver_gone())
    }

    /// Attaches, starts, supervises and reports on the created container `id`; the caller
    /// removes it.
    async fn run_container(
        &self,
        id: &str,
        plan: &Plan,
        pull_duration: Duration,
        output: &mpsc::Sender<OutputEvent>,
        cancel: &CancellationToken,
    ) -> RunReport {
        let mut report = RunReport {
            container_id: id.to_owned(),
            ..RunReport::without_container(Outcome::StartFailed, String::new(), pull_duration)
        };

        // Attached before the start, so not even the first byte of a container that exits
        // at once is missed: the engine connects the container's output pipes to this
        // attachment before it answers the request. `logs` stays off on purpose: there are
        // no logs before the start, and the engine replays them from the log file *after*
        // connecting the pipes, so output written while that replay is still reading would
        // arrive twice.
        let options = AttachContainerOptionsBuilder::default()
            .stream(true)
            .stdout(true)
            .stderr(true)
            .logs(false)
            .build();
        let attached = match self.docker.attach_container(id, Some(options)).await {
            Ok(attached) => attached,
            Err(e) => {
                report.message = format!("cannot attach to the container: {}", docker_message(&e));
                return report;
            }
        };
        // The input half stays open until the end: closing it early may close the whole
        // connection on some transports.
        let (frames, _stdin) = (attached.output, attached.input);

        if cancel.is_cancelled() {
            report.outcome = Outcome::Cancelled;
            report.message = "cancelled before the container started".to_owned();
            return report;
        }
        let starting = Instant::now();
        if let Err(e) = self.docker.start_container(id, None).await {
            report.message = format!(
                "Docker refused to start the container: {}",
                docker_message(&e)
            );
            return report;
        }
        metrics::histogram!(crate::metrics::CONTAINER_START)
            .record(starting.elapsed().as_secs_f64());
        let started = Instant::now();

        // One inspect after the start tells the ports as bound and whether a HEALTHCHECK
        // applies; a failed inspect only costs those facts, not the attempt.
        let (ports, has_healthcheck) = match self.docker.inspect_container(id, None).await {
            Ok(inspected) => (bound_ports(&inspected), declares_healthcheck(&inspected)),
            Err(e) => {
                let error = error_chain(&e);
                warn!(container_id = id, %error, "cannot inspect the started container");
                (Vec::new(), false)
            }
        };
        let receiver_gone = CancellationToken::new();
        let started_event = OutputEvent::Started {
            container_id: id.to_owned(),
            pull_duration,
            ports,
            has_healthcheck,
        };
        if emit(output, started_event).await.is_err() {
            receiver_gone.cancel();
        }

        let exited = CancellationToken::new();
        let mut usage = ResourceUsage::default();
        let (supervised, pumped) = {
            let supervise =
                self.supervise(id, plan, started, output, cancel, &receiver_gone, &exited);
            let pump = pump_output(frames, output, &receiver_gone, &exited);
            let both = async { tokio::join!(supervise, pump) };
            let collect = self.collect_stats(id, &mut usage);
            let health = self.watch_health(id, has_healthcheck, output);
            tokio::pin!(both, collect, health);
            let mut collecting = true;
            let mut watching = true;
            loop {
                tokio::select! {
                    done = &mut both => break done,
                    () = &mut collect, if collecting => collecting = false,
                    () = &mut health, if watching => watching = false,
                }
            }
        };

        report.run_duration = supervised.run_duration;
        report.peak_memory_bytes = usage.peak_memory_bytes;
        report.cpu_time = usage.cpu_time;

        // The exit code from `wait` is the truth; inspect adds the OOM verdict and stands
        // in for the code when `wait` could not deliver it.
        let state = match self.docker.inspect_container(id, None).await {
            Ok(inspected) => inspected.state,
            Err(e) => {
                let error = error_chain(&e);
                warn!(container_id = id, %error, "cannot inspect the exited container");
                None
            }
        };
        let mut oom_killed = state.as_ref().and_then(|s| s.oom_killed).unwrap_or(false);
        let exit_code = match &supervised.exit {
            Ok(code) => Some(*code),
            Err(_) => state.as_ref().and_then(|s| s.exit_code),
        };
        // The engine records an OOM kill when it handles the kernel's OOM event, which can
        // come after it handled the exit (seen with cgroup v1 under load, by more than a
        // second on a busy 2-core host). A SIGKILL exit (137) that Berth did not cause is
        // worth a second look before the verdict: ask again for up to five seconds. Only
        // such exits wait, and an OOM kill usually shows on the first or second look.
        // (A job killed for memory within milliseconds of its start can escape the engine's
        // notice altogether, and is then reported as a plain exit 137.)
        if !oom_killed && exit_code == Some(137) && supervised.stop.is_none() {
            for _ in 0..50 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let again = self
                    .docker
                    .inspect_container(id, None)
                    .await
                    .ok()
                    .and_then(|inspected| inspected.state)
                    .and_then(|state| state.oom_killed)
                    .unwrap_or(false);
                if again {
                    oom_killed = true;
                    break;
                }
            }
        }
        report.exit_code = exit_code.and_then(|code| i32::try_from(code).ok());

        let mut notes = Vec::new();
        report.outcome = match supervised.stop {
            Some(StopReason::TimedOut) => {
                let timeout = plan.timeout.unwrap_or_default();
                notes.push(format!(
                    "timed out after {}",
                    humantime::format_duration(timeout)
                ));
                Outcome::TimedOut
            }
            Some(StopReason::Cancelled) => {
                notes.push("cancelled".to_owned());
                Outcome::Cancelled
            }
            Some(StopReason::ReceiverGone) => {
                notes.push(
                    "the receiver of the output went away; the container was stopped".to_owned(),
                );
                Outcome::Interrupted
            }
            None if oom_killed => {
                notes.push(match plan.memory_bytes {
                    Some(limit) => {
                        format!("killed for exceeding its memory limit of {limit} bytes")
                    }
                    None => "killed by the kernel for lack of memory".to_owned(),
                });
                Outcome::OomKilled
            }
            // Lost track of the container: it may or may not have finished its work.
            None if report.exit_code.is_none() => Outcome::Interrupted,
            None => Outcome::Exited,
        };
        if let Err(why) = &supervised.exit {
            notes.push(why.clone());
        }
        if let Err(why) = pumped {
            warn!(container_id = id, "{why}");
            notes.push(format!("output may be incomplete: {why}"));
        }
        report.message = notes.join("; ");
        report
    }

    /// Waits for the container to exit, stopping it on timeout, cancel or when the output
    /// receiver goes away. Cancels `exited` once the exit is known.
    #[expect(
        clippy::too_many_arguments,
        reason = "one private call site; each is distinct"
    )]
    async fn supervise(
        &self,
        id: &str,
        plan: &Plan,
        started: Instant,
        output: &mpsc::Sender<OutputEvent>,
        cancel: &CancellationToken,
        receiver_gone: &CancellationToken,
        exited: &CancellationToken,
    ) -> Supervised {
        let wait = self.wait_for_exit(id);
        tokio::pin!(wait);
        let deadline = async {
            match plan.timeout {
                // Relative, not `started + timeout`: tokio caps a far-off sleep, while
                // adding to an Instant would overflow (and panic) for absurd timeouts.
                Some(timeout) => {
                    tokio::time::sleep(timeout.saturating_sub(started.elapsed())).await
                }
                None => std::future::pending().await,
            }
        };
        let grace = humantime::format_duration(plan.grace);
        let (stop, note) = tokio::select! {
            biased;
            exit = &mut wait => {
                let run_duration = started.elapsed();
                exited.cancel();
                return Supervised { stop: None, exit, run_duration };
            }
            () = receiver_gone.cancelled() => (StopReason::ReceiverGone, None),
            () = cancel.cancelled() => (
                StopReason::Cancelled,
                Some(format!("cancelled: stopping (SIGTERM, then SIGKILL after {grace})")),
            ),
            () = deadline => (
                StopReason::TimedOut,
                Some(format!(
                    "timeout after {}: stopping (SIGTERM, then SIGKILL after {grace})",
                    humantime::format_duration(plan.timeout.unwrap_or_default()),
                )),
            ),
        };
        let exit = self.stop(id, plan.grace, wait, note, output).await;
        let run_duration = started.elapsed();
        exited.cancel();
        Supervised {
            stop: Some(stop),
            exit,
            run_duration,
        }
    }

    /// SIGTERM, up to `grace` for the exit, then SIGKILL; returns the exit code.
    async fn stop(
        &self,
        id: &str,
        grace: Duration,
        mut wait: Pin<&mut impl Future<Output = Result<i64, String>>>,
        note: Option<String>,
        output: &mpsc::Sender<OutputEvent>,
    ) -> Result<i64, String> {
        let term_sent = Instant::now();
        self.signal(id, "SIGTERM").await;
        if let Some(note) = note {
            // Nobody to tell if the receiver is gone; the stop goes on regardless.
            let _ = emit(output, OutputEvent::System(note)).await;
        }
        // The grace period counts from SIGTERM, however long telling the receiver took.
        let grace_left = grace.saturating_sub(term_sent.elapsed());
        if let Ok(exit) = tokio::time::timeout(grace_left, wait.as_mut()).await {
            return exit;
        }
        self.signal(id, "SIGKILL").await;
        let note = format!(
            "still running after the grace period of {}: sent SIGKILL",
            humantime::format_duration(grace)
        );
        let _ = emit(output, OutputEvent::System(note)).await;
        match tokio::time::timeout(KILL_WAIT, wait).await {
            Ok(exit) => exit,
            Err(_) => Err(format!(
                "the container did not exit within {} of SIGKILL",
                humantime::format_duration(KILL_WAIT)
            )),
        }
    }

    /// Sends `signal` to the container; a container that already stopped is no error.
    async fn signal(&self, id: &str, signal: &str) {
        let options = KillContainerOptionsBuilder::default()
            .signal(signal)
            .build();
        match self.docker.kill_container(id, Some(options)).await {
            Ok(()) => {}
            // 409: not running any more, which is what the signal was for.
            Err(DockerError::DockerResponseServerError {
                status_code: 409, ..
            }) => {}
            Err(e) => {
                let error = error_chain(&e);
                warn!(container_id = id, signal, %error, "cannot signal the container");
            }
        }
    }

    /// Waits until the container is not running and returns its exit code.
    ///
    /// Called after the start: the `not-running` condition answers at once for a container
    /// that has already exited, so an instant exit is caught as well.
    async fn wait_for_exit(&self, id: &str) -> Result<i64, String> {
        loop {
            let options = WaitContainerOptionsBuilder::default()
                .condition("not-running")
                .build();
            let trouble = match self.docker.wait_container(id, Some(options)).next().await {
                Some(Ok(response)) => return Ok(response.status_code),
                // bollard turns every non-zero exit into this error; the code is the answer.
                Some(Err(DockerError::DockerContainerWaitError { code, .. })) => return Ok(code),
                Some(Err(e)) => error_chain(&e),
                None => "the wait ended without an answer".to_owned(),
            };
            // The wait failed (the connection broke, say): ask whether the container runs.
            match self.docker.inspect_container(id, None).await {
                Ok(inspected) => {
                    let state = inspected.state.unwrap_or_default();
                    if state.running != Some(true) {
                        return state.exit_code.ok_or_else(|| {
                            format!("waiting for the container failed ({trouble}) and Docker reports no exit code")
                        });
                    }
                    let error = &trouble;
                    warn!(container_id = id, %error, "waiting for the container failed; again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    return Err(format!(
                        "cannot learn how the container ended: {trouble}; inspect: {}",
                        docker_message(&e)
                    ));
                }
            }
        }
    }

    /// Follows Docker's statistics of the running container, keeping the peaks. Returns
    /// when the stream ends (the container stopped) or fails; the figures are best effort.
    /// Polls the container's HEALTHCHECK status every [`HEALTH_POLL`] and emits
    /// [`OutputEvent::Health`] on every change, until the container is gone or the
    /// receiver is. Without a HEALTHCHECK it does nothing.
    async fn watch_health(
        &self,
        id: &str,
        has_healthcheck: bool,
        output: &mpsc::Sender<OutputEvent>,
    ) {
        if !has_healthcheck {
            return;
        }
        let mut last: Option<String> = None;
        loop {
            let inspected = match self.docker.inspect_container(id, None).await {
                Ok(inspected) => inspected,
                Err(e) => {
                    let error = error_chain(&e);
                    debug!(container_id = id, %error, "health polling ended");
                    return;
                }
            };
            if let Some((status, probe_output)) = health_of(&inspected)
                && last.as_deref() != Some(status.as_str())
            {
                last = Some(status.clone());
                let event = OutputEvent::Health {
                    status,
                    output: probe_output,
                };
                if emit(output, event).await.is_err() {
                    return;
                }
            }
            tokio::time::sleep(HEALTH_POLL).await;
        }
    }

    async fn collect_stats(&self, id: &str, usage: &mut ResourceUsage) {
        let options = StatsOptionsBuilder::default().stream(true).build();
        let mut stats = self.docker.stats(id, Some(options));
        while let Some(sample) = stats.next().await {
            match sample {
                Ok(sample) => usage.record(&sample),
                Err(e) => {
                    let error = error_chain(&e);
                    debug!(container_id = id, %error, "container statistics ended");
                    return;
                }
            }
        }
    }
}

/// What the executor makes of a job's spec before touching Docker.
#[derive(Debug)]
struct Plan {
    config: ContainerCreateBody,
    pull_policy: PullPolicy,
    timeout: Option<Duration>,
    grace: Duration,
    memory_bytes: Option<u64>,
    /// Every network the container joins, the first (its network mode) included; empty
    /// for `none`.
    networks: Vec<String>,
    /// The networks joined after the create, with their aliases.
    connect: Vec<(String, Vec<String>)>,
}

impl Plan {
    /// Builds the container configuration; the error names what is wrong with the spec.
    fn for_job(job: &Job, worker_name: &str) -> Result<Plan, String> {
        let spec = &job.spec;
        if spec.image.is_empty() {
            return Err("the spec names no image".to_owned());
        }
        // Zero means none: only service replicas have it, and they run until stopped.
        let timeout = spec
            .timeout
            .map(|d| std_duration(d, "timeout"))
            .transpose()?
            .filter(|t| !t.is_zero());
        let grace = spec
            .stop_grace_period
            .map(|d| std_duration(d, "stop grace period"))
            .transpose()?
            .unwrap_or(DEFAULT_GRACE);
        let memory = spec
            .memory_bytes
            .map(|m| i64::try_from(m).map_err(|_| format!("memory limit {m} is too large")))
            .transpose()?;
        let nano_cpus = spec.cpus.map(nano_cpus).transpose()?;
        let refuse = |name: &str| match name {
            "host" => Err("network host is not allowed".to_owned()),
            other if other.starts_with("container:") => {
                Err(format!("network {other} is not allowed"))
            }
            _ => Ok(()),
        };
        refuse(&spec.network)?;
        for attachment in &spec.networks {
            refuse(&attachment.name)?;
            if attachment.name.is_empty() || attachment.name == "none" {
                return Err(format!(
                    "network {:?} cannot be joined with aliases",
                    attachment.name
                ));
            }
        }
        let network = match (spec.networks.first(), spec.network.as_str()) {
            (Some(first), "") => first.name.as_str(),
            (Some(first), named) if named == first.name => named,
            (Some(first), named) => {
                return Err(format!(
                    "network {named} differs from the first of the networks ({})",
                    first.name
                ));
            }
            (None, "") => "none",
            (None, named) => named,
        };
        let networking_config = spec.networks.first().map(|first| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                first.name.clone(),
                EndpointSettings {
                    aliases: (!first.aliases.is_empty()).then(|| first.aliases.clone()),
                    ..EndpointSettings::default()
                },
            )])),
        });
        let connect: Vec<(String, Vec<String>)> = spec
            .networks
            .iter()
            .skip(1)
            .map(|n| (n.name.clone(), n.aliases.clone()))
            .collect();
        let mut networks: Vec<String> = Vec::new();
        if network != "none" {
            networks.push(network.to_owned());
        }
        networks.extend(connect.iter().map(|(name, _)| name.clone()));

        // Sorted so the same spec always gives the same container; a secret overrides an
        // ordinary variable of the same name (Docker keeps the last).
        let mut plain: Vec<_> = spec.env.iter().collect();
        plain.sort();
        let mut secret: Vec<_> = spec.secret_env.iter().collect();
        secret.sort();
        let mut env = Vec::with_capacity(plain.len() + secret.len());
        for (key, value) in plain.into_iter().chain(secret) {
            if key.is_empty() || key.contains('=') {
                return Err(format!("invalid environment variable name {key:?}"));
            }
            env.push(format!("{key}={value}"));
        }

        let labels = HashMap::from([
            (LABEL_MANAGED.to_owned(), "true".to_owned()),
            (LABEL_WORKER.to_owned(), worker_name.to_owned()),
            (LABEL_WORK_REQUEST.to_owned(), job.work_request_id.clone()),
            (LABEL_ATTEMPT.to_owned(), job.attempt.to_string()),
            (LABEL_STOP_GRACE.to_owned(), grace.as_millis().to_string()),
        ]);
        let mut labels = labels;
        if let Some(timeout) = timeout {
            labels.insert(LABEL_TIMEOUT.to_owned(), timeout.as_millis().to_string());
        }
        let host_config = HostConfig {
            memory,
            memory_swap: memory,
            nano_cpus,
            pids_limit: spec.pids_limit,
            network_mode: Some(network.to_owned()),
            init: Some(true),
            privileged: Some(false),
            cap_drop: Some(vec!["ALL".to_owned()]),
            cap_add: Some(ADDED_CAPABILITIES.iter().map(|c| (*c).to_owned()).collect()),
            security_opt: Some(vec!["no-new-privileges".to_owned()]),
            binds: None,
            mounts: (!job.mounts.is_empty()).then(|| {
                job.mounts
                    .iter()
                    .map(|(host, target, read_only)| Mount {
                        source: Some(host.to_string_lossy().into_owned()),
                        target: Some(target.clone()),
                        typ: Some(MountType::BIND),
                        read_only: Some(*read_only),
                        ..Mount::default()
                    })
                    .collect()
            }),
            auto_remove: Some(false),
            readonly_rootfs: Some(false),
            oom_kill_disable: Some(false),
            publish_all_ports: Some(false),
            port_bindings: (!spec.ports.is_empty()).then(|| port_bindings(&spec.ports)),
            ..HostConfig::default()
        };
        let config = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
            env: Some(env),
            working_dir: (!spec.working_dir.is_empty()).then(|| spec.working_dir.clone()),
            labels: Some(labels),
            exposed_ports: (!spec.ports.is_empty())
                .then(|| spec.ports.iter().map(port_key).collect()),
            attach_stdin: Some(false),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            open_stdin: Some(false),
            tty: Some(false),
            // Should the engine itself stop the container (on its own shutdown, say), it
            // gives the same grace.
            stop_timeout: Some(i64::try_from(grace.as_secs()).unwrap_or(i64::MAX)),
            host_config: Some(host_config),
            networking_config,
            ..ContainerCreateBody::default()
        };
        Ok(Plan {
            config,
            pull_policy: PullPolicy::try_from(spec.pull_policy).unwrap_or(PullPolicy::Unspecified),
            timeout,
            grace,
            memory_bytes: spec.memory_bytes,
            networks,
            connect,
        })
    }
}

/// Why the worker stopped a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    TimedOut,
    Cancelled,
    ReceiverGone,
}

/// How the supervision of a running container ended.
#[derive(Debug)]
struct Supervised {
    /// Why the worker stopped it; `None` when it exited by itself.
    stop: Option<StopReason>,
    /// The exit code, or why it is not known.
    exit: Result<i64, String>,
    run_duration: Duration,
}

/// Peaks from Docker's statistics.
#[derive(Debug, Default)]
struct ResourceUsage {
    peak_memory_bytes: Option<u64>,
    cpu_time: Option<Duration>,
}

impl ResourceUsage {
    fn record(&mut self, sample: &ContainerStatsResponse) {
        // cgroup v1 keeps a high-water mark; cgroup v2 only the current use. The last
        // sample of a stopping container may be all zeros, hence the filter on zero.
        let memory = sample
            .memory_stats
            .as_ref()
            .and_then(|m| m.max_usage.or(m.usage))
            .filter(|&bytes| bytes > 0);
        if let Some(bytes) = memory {
            self.peak_memory_bytes = Some(self.peak_memory_bytes.map_or(bytes, |p| p.max(bytes)));
        }
        let cpu_nanos = sample
            .cpu_stats
            .as_ref()
            .and_then(|c| c.cpu_usage.as_ref())
            .and_then(|u| u.total_usage)
            .filter(|&nanos| nanos > 0);
        if let Some(nanos) = cpu_nanos {
            let used = Duration::from_nanos(nanos);
            self.cpu_time = Some(self.cpu_time.map_or(used, |c| c.max(used)));
        }
    }
}

/// The receiver of the output events has gone away.
#[derive(Debug)]
struct ReceiverGone;

async fn emit(output: &mpsc::Sender<OutputEvent>, event: OutputEvent) -> Result<(), ReceiverGone> {
    output.send(event).await.map_err(|_| ReceiverGone)
}

/// Forwards the container's output frames until Docker closes the stream. Cancels
/// `receiver_gone` if the receiver goes away; the error says why output may be missing.
async fn pump_output(
    mut frames: Pin<Box<dyn Stream<Item = Result<LogOutput, DockerError>> + Send>>,
    output: &mpsc::Sender<OutputEvent>,
    receiver_gone: &CancellationToken,
    exited: &CancellationToken,
) -> Result<(), String> {
    loop {
        let frame = if exited.is_cancelled() {
            match tokio::time::timeout(DRAIN_IDLE, frames.next()).await {
                Ok(frame) => frame,
                Err(_) => {
                    return Err(format!(
                        "the output stream was still open {} after the container exited",
                        humantime::format_duration(DRAIN_IDLE)
                    ));
                }
            }
        } else {
            tokio::select! {
                frame = frames.next() => frame,
                // Re-enter the loop to read with the idle limit from now on.
                () = exited.cancelled() => continue,
            }
        };
        let event = match frame {
            None => return Ok(()),
            Some(Err(e)) => return Err(format!("the output stream broke: {}", error_chain(&e))),
            Some(Ok(LogOutput::StdOut { message })) => OutputEvent::Stdout(message),
            Some(Ok(LogOutput::StdErr { message })) => OutputEvent::Stderr(message),
            // Only a container with a TTY produces unframed output; Berth never asks for one.
            Some(Ok(LogOutput::Console { message })) => OutputEvent::Stdout(message),
            Some(Ok(LogOutput::StdIn { .. })) => continue,
        };
        if emit(output, event).await.is_err() {
            receiver_gone.cancel();
            return Ok(());
        }
    }
}

/// What is left of an attempt once [`DockerExecutor::run`] has reported: its container,
/// exited or given up on, to be removed.
///
/// [`Cleanup::remove`] removes it. Dropped without that (its task aborted, say), it starts
/// the removal in the background; [`DockerExecutor::reap_orphans`] is the backstop for
/// both.
#[derive(Debug)]
#[must_use = "the container is left on the host until removed"]
pub struct Cleanup {
    removal: Option<Removal>,
}

impl Cleanup {
    /// For an attempt that never created a container.
    fn nothing() -> Self {
        Cleanup { removal: None }
    }

    /// The container to remove, if one was created.
    pub fn container_id(&self) -> Option<&str> {
        self.removal.as_ref().and_then(|r| r.id.as_deref())
    }

    /// Force-removes the container with its anonymous volumes; true when it is gone (or
    /// there was none). A container that cannot be removed is logged and left for the
    /// reaper.
    pub async fn remove(mut self) -> bool {
        match self.removal.take() {
            Some(removal) => removal.remove().await,
            None => true,
        }
    }
}

/// Force-removes a container created by `run`; dropped without `remove`, it starts the
/// removal in the background.
#[derive(Debug)]
struct Removal {
    docker: Docker,
    id: Option<String>,
}

impl Removal {
    fn new(docker: Docker, id: String) -> Self {
        Removal {
            docker,
            id: Some(id),
        }
    }

    async fn remove(mut self) -> bool {
        match self.id.take() {
            Some(id) => remove_container(&self.docker, &id).await,
            None => true,
        }
    }
}

impl Drop for Removal {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else {
            return;
        };
        // `run` was dropped half-way, or its `Cleanup` was dropped unused (a task aborted).
        // Drop cannot await, so the removal runs detached: the one place this module lets
        // a task go unowned, because the alternative is a container nobody removes until
        // the next reaping round, which stays the backstop should this fail or no runtime
        // be left.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let docker = self.docker.clone();
                runtime.spawn(async move {
                    remove_container(&docker, &id).await;
                });
            }
            Err(_) => {
                warn!(container_id = %id, "no runtime to remove the container; left to the reaper");
            }
        }
    }
}

/// Force-removes a container with its anonymous volumes; true when it is gone. Retries
/// briefly, since Docker refuses while a removal of the same container is under way.
async fn remove_container(docker: &Docker, id: &str) -> bool {
    let options = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    let mut attempts_left = 3;
    loop {
        attempts_left -= 1;
        match docker.remove_container(id, Some(options.clone())).await {
            Ok(()) => return true,
            Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => return true,
            Err(e) if attempts_left > 0 => {
                let error = error_chain(&e);
                debug!(container_id = id, %error, "removing the container failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                let error = error_chain(&e);
                warn!(container_id = id, %error, "cannot remove the container; left to the reaper");
                return false;
            }
        }
    }
}

/// A Berth container found on the engine, as its labels and state describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// Docker's id.
    pub id: String,
    /// The worker that created it (`berth.worker`).
    pub worker: String,
    /// Its (work request, attempt), when the labels can be read.
    pub attempt: Option<(String, u32)>,
    /// Whether it is running now (not created, exited or dead).
    pub running: bool,
    /// Its attempt's stop grace period ([`DEFAULT_GRACE`] without the label).
    pub grace: Duration,
    /// Its attempt's timeout, when it has one.
    pub timeout: Option<Duration>,
}

impl Found {
    fn from_summary(container: &ContainerSummary) -> Option<Found> {
        let id = container.id.clone()?;
        let labels = container.labels.clone().unwrap_or_default();
        let millis = |label: &str| {
            labels
                .get(label)
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_millis)
        };
        use bollard::models::ContainerSummaryStateEnum as State;
        let running = container
            .state
            .is_some_and(|s| matches!(s, State::RUNNING | State::PAUSED | State::RESTARTING));
        Some(Found {
            id,
            worker: labels.get(LABEL_WORKER).cloned().unwrap_or_default(),
            attempt: attempt_of(container),
            running,
            grace: millis(LABEL_STOP_GRACE).unwrap_or(DEFAULT_GRACE),
            // A zero timeout is none (a service replica): never reaped for its age.
            timeout: millis(LABEL_TIMEOUT).filter(|t| !t.is_zero()),
        })
    }
}

/// The (work request, attempt) a listed container belongs to, from its labels.
fn attempt_of(container: &ContainerSummary) -> Option<(String, u32)> {
    let labels = container.labels.as_ref()?;
    let work_request_id = labels.get(LABEL_WORK_REQUEST)?.clone();
    let attempt = labels.get(LABEL_ATTEMPT)?.parse().ok()?;
    Some((work_request_id, attempt))
}

/// `berth-<first 12 of the request id>-<attempt>-<random>`: readable in `docker ps`,
/// unique even when an attempt is retried on the same engine.
fn container_name(work_request_id: &str, attempt: u32) -> String {
    let prefix: String = work_request_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(12)
        .collect();
    format!("berth-{prefix}-{attempt}-{:08x}", rand::random::<u32>())
}

/// Splits an image reference into the name and the tag or digest for a pull. Docker pulls
/// every tag of a name given without one, so a missing tag means `latest`, as for the CLI.
fn split_reference(image: &str) -> (&str, &str) {
    if let Some((name, digest)) = image.split_once('@') {
        return (name, digest);
    }
    let last_component = image.rfind('/').map_or(0, |slash| slash + 1);
    match image[last_component..].rfind(':') {
        Some(colon) => {
            let at = last_component + colon;
            (&image[..at], &image[at + 1..])
        }
        None => (image, "latest"),
    }
}

/// Docker's key for a container port: `80/tcp`.
fn port_key(port: &PortMapping) -> String {
    let protocol = if port.protocol.is_empty() {
        "tcp"
    } else {
        port.protocol.as_str()
    };
    format!("{}/{protocol}", port.container_port)
}

/// The bindings for `ports`: on every host address, the asked host port or (0) any.
fn port_bindings(ports: &[PortMapping]) -> PortMap {
    let mut map = PortMap::new();
    for port in ports {
        let host_port = if port.host_port == 0 {
            String::new()
        } else {
            port.host_port.to_string()
        };
        map.entry(port_key(port))
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: Some("0.0.0.0".to_owned()),
                host_port: Some(host_port),
            });
    }
    map
}

/// The ports Docker bound for a started container, sorted by container port: one per
/// container port and protocol (the IPv4 binding when Docker also made an IPv6 one).
fn bound_ports(inspected: &ContainerInspectResponse) -> Vec<PortMapping> {
    let Some(map) = inspected
        .network_settings
        .as_ref()
        .and_then(|n| n.ports.as_ref())
    else {
        return Vec::new();
    };
    let mut ports: Vec<PortMapping> = Vec::new();
    for (key, bindings) in map {
        let Some((container_port, protocol)) = key.split_once('/') else {
            continue;
        };
        let Ok(container_port) = container_port.parse::<u32>() else {
            continue;
        };
        let host_port = bindings
            .iter()
            .flatten()
            .filter_map(|b| b.host_port.as_deref()?.parse::<u32>().ok())
            .next();
        if let Some(host_port) = host_port {
            ports.push(PortMapping {
                container_port,
                host_port,
                protocol: protocol.to_owned(),
            });
        }
    }
    ports.sort_by(|a, b| (a.container_port, &a.protocol).cmp(&(b.container_port, &b.protocol)));
    ports
}

/// Whether a HEALTHCHECK applies to the container: Docker tracks its health, or its
/// configuration (its own or the image's, merged at the create) names a test.
fn declares_healthcheck(inspected: &ContainerInspectResponse) -> bool {
    let tracked = inspected
        .state
        .as_ref()
        .and_then(|s| s.health.as_ref())
        .and_then(|h| h.status)
        .is_some_and(|s| !matches!(s, HealthStatusEnum::NONE | HealthStatusEnum::EMPTY));
    let configured = inspected
        .config
        .as_ref()
        .and_then(|c| c.healthcheck.as_ref())
        .and_then(|h| h.test.as_ref())
        .is_some_and(|test| test.first().is_some_and(|t| t != "NONE"));
    tracked || configured
}

/// The container's HEALTHCHECK status and its last probe's output, when Docker has one.
fn health_of(inspected: &ContainerInspectResponse) -> Option<(String, String)> {
    let health = inspected.state.as_ref()?.health.as_ref()?;
    let status = match health.status? {
        HealthStatusEnum::NONE | HealthStatusEnum::EMPTY => return None,
        other => other.to_string(),
    };
    let output = health
        .log
        .as_ref()
        .and_then(|log| log.last())
        .and_then(|probe| probe.output.clone())
        .unwrap_or_default();
    Some((status, output))
}

fn std_duration(d: prost_types::Duration, what: &str) -> Result<Duration, String> {
    Duration::try_from(d).map_err(|_| format!("the {what} is negative or out of range"))
}

fn nano_cpus(cpus: f64) -> Result<i64, String> {
    if !cpus.is_finite() || cpus <= 0.0 || cpus > 1_000_000.0 {
        return Err(format!("CPU limit {cpus} is out of range"));
    }
    // In range by the check above, so the conversion neither saturates nor truncates.
    Ok(((cpus * 1e9).round() as i64).max(1))
}

fn round_to_millis(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Docker's own message when the engine sent one, else the error with its causes.
fn docker_message(e: &DockerError) -> String {
    match e {
        DockerError::DockerResponseServerError { message, .. } => message.clone(),
        DockerError::DockerStreamError { error } => error.clone(),
        other => error_chain(other),
    }
}

/// The error and its sources on one line, skipping a source its parent already quotes.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

/// A client for an explicitly configured host.
fn client_for(host: &str, tls: bool) -> Result<Result<Docker, DockerError>, ExecutorError> {
    let invalid = |reason: &str| ExecutorError::InvalidHost {
        host: host.to_owned(),
        reason: reason.to_owned(),
    };
    if host.starts_with("unix://") {
        if tls {
            return Err(invalid("TLS applies to tcp:// hosts, not to a unix socket"));
        }
        return Ok(Docker::connect_with_unix(
            host,
            REQUEST_TIMEOUT_SECS,
            bollard::API_DEFAULT_VERSION,
        ));
    }
    if !(host.starts_with("tcp://") || host.starts_with("http://") || host.starts_with("https://"))
    {
        return Err(invalid("expected unix:///path or tcp://host:port"));
    }
    if !tls {
        if host.starts_with("https://") {
            return Err(invalid("an https:// host needs TLS to be enabled"));
        }
        return Ok(Docker::connect_with_http(
            host,
            REQUEST_TIMEOUT_SECS,
            bollard::API_DEFAULT_VERSION,
        ));
    }
    let cert_dir = match std::env::var_os("DOCKER_CERT_PATH").filter(|p| !p.is_empty()) {
        Some(dir) => std::path::PathBuf::from(dir),
        None => match std::env::var_os("HOME") {
            Some(home) => std::path::PathBuf::from(home).join(".docker"),
            None => {
                return Err(invalid(
                    "TLS needs DOCKER_CERT_PATH (or HOME) to find ca.pem, cert.pem and key.pem",
                ));
            }
        },
    };
    let [ca, cert, key] = ["ca.pem", "cert.pem", "key.pem"].map(|file| cert_dir.join(file));
    for path in [&ca, &cert, &key] {
        if !path.is_file() {
            return Err(invalid(&format!(
                "TLS certificate file {} is missing (set DOCKER_CERT_PATH)",
                path.display()
            )));
        }
    }
    Ok(Docker::connect_with_ssl(
        host,
        &key,
        &cert,
        &ca,
        REQUEST_TIMEOUT_SECS,
        bollard::API_DEFAULT_VERSION,
    ))
}

#[cfg(test)]
mod tests {
    //! These tests run real containers on the local Docker engine; they fail (never skip)
    //! when it is unreachable. The image `berth-test/busybox:latest` is built from the
    //! host's static busybox when missing. Each test uses its own worker name and checks
    //! that no container labelled with it is left behind.

    #![expect(clippy::unwrap_used, reason = "tests")]

    use super::*;

    const TEST_IMAGE: &str = "berth-test/busybox:latest";
    const MIB: u64 = 1024 * 1024;

    async fn executor(test: &str) -> DockerExecutor {
        let worker = format!("test-{test}-{:08x}", rand::random::<u32>());
        let executor = DockerExecutor::connect(None, false, &worker)
            .await
            .unwrap_or_else(|e| {
                panic!("these tests need a Docker engine, and it is unreachable: {e}")
            });
        ensure_test_image(&executor).await;
        executor
    }

    async fn ensure_test_image(executor: &DockerExecutor) {
        if executor.docker.inspect_image(TEST_IMAGE).await.is_ok() {
            return;
        }
        let built = tokio::task::spawn_blocking(|| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::copy("/bin/busybox", dir.path().join("busybox"))
                .expect("a static busybox at /bin/busybox (Debian's busybox-static) to build the test image");
            std::fs::write(
                dir.path().join("Dockerfile"),
                "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nCMD [\"sh\"]\n",
            )
            .unwrap();
            std::process::Command::new("docker")
                .args(["build", "-q", "-t", TEST_IMAGE])
                .arg(dir.path())
                .status()
        })
        .await
        .unwrap();
        assert!(
            matches!(built, Ok(status) if status.success()),
            "cannot build the test image {TEST_IMAGE}: {built:?}"
        );
    }

    fn random_id() -> String {
        let hex = format!("{:032x}", rand::random::<u128>());
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        )
    }

    fn secs(seconds: i64) -> prost_types::Duration {
        prost_types::Duration { seconds, nanos: 0 }
    }

    fn job(command: &[&str]) -> Job {
        Job {
            work_request_id: random_id(),
            attempt: 1,
            spec: ContainerSpec {
                image: TEST_IMAGE.to_owned(),
                command: command.iter().map(|s| (*s).to_owned()).collect(),
                memory_bytes: Some(64 * MIB),
                cpus: Some(1.0),
                pids_limit: Some(64),
                timeout: Some(secs(60)),
                stop_grace_period: Some(secs(1)),
                pull_policy: PullPolicy::Never as i32,
                ..ContainerSpec::default()
            },
            mounts: Vec::new(),
        }
    }

    /// Everything `run` sent, sorted by kind.
    #[derive(Debug, Default)]
    struct Collected {
        events: Vec<OutputEvent>,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
        system: Vec<String>,
    }

    impl Collected {
        fn from_events(events: Vec<OutputEvent>) -> Self {
            let mut collected = Collected::default();
            for event in &events {
                match event {
                    OutputEvent::Stdout(bytes) => collected.stdout.extend_from_slice(bytes),
                    OutputEvent::Stderr(bytes) => collected.stderr.extend_from_slice(bytes),
                    OutputEvent::System(note) => collected.system.push(note.clone()),
                    OutputEvent::Started { .. } | OutputEvent::Health { .. } => {}
                }
            }
            collected.events = events;
            collected
        }

        fn stdout(&self) -> String {
            String::from_utf8_lossy(&self.stdout).into_owned()
        }

        fn stderr(&self) -> String {
            String::from_utf8_lossy(&self.stderr).into_owned()
        }
    }

    async fn run(
        executor: &DockerExecutor,
        job: &Job,
        cancel: CancellationToken,
    ) -> (RunReport, Collected) {
        let (tx, mut rx) = mpsc::channel(16);
        let collector = tokio::spawn(async move {
            let mut events = Vec::new();
            while let Some(event) = rx.recv().await {
                events.push(event);
            }
            events
        });
        let report = run_and_remove(executor, job, tx, cancel).await;
        // `run` has dropped the sender, so the collector has everything once it ends.
        let events = collector.await.unwrap();
        (report, Collected::from_events(events))
    }

    /// `run`, then the removal it leaves to its caller, as the worker does.
    async fn run_and_remove(
        executor: &DockerExecutor,
        job: &Job,
        output: mpsc::Sender<OutputEvent>,
        cancel: CancellationToken,
    ) -> RunReport {
        let (report, cleanup) = executor.run(job, output, cancel).await;
        let expected = (!report.container_id.is_empty()).then_some(report.container_id.as_str());
        assert_eq!(cleanup.container_id(), expected, "{report:?}");
        assert!(cleanup.remove().await, "{report:?}");
        report
    }

    async fn assert_container_gone(executor: &DockerExecutor, id: &str) {
        assert!(!id.is_empty(), "the report names no container");
        match executor.docker.inspect_container(id, None).await {
            Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            other => panic!("container {id} still exists: {other:?}"),
        }
    }

    async fn assert_nothing_left(executor: &DockerExecutor) {
        let left = executor.list_own_containers(true).await.unwrap();
        assert!(left.is_empty(), "containers left behind: {left:?}");
    }

    fn assert_started_first(collected: &Collected, report: &RunReport) {
        match collected.events.first() {
            Some(OutputEvent::Started { container_id, .. }) => {
                assert_eq!(container_id, &report.container_id)
            }
            other => panic!("the first event is not Started: {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn exit_zero_reports_exited_with_output() {
        let executor = executor("exit-zero").await;
        let job = job(&["sh", "-c", "echo hello"]);
        let (report, collected) = run(&executor, &job, CancellationToken::new()).await;
        assert_eq!(report.outcome, Outcome::Exited, "{report:?}");
        assert_eq!(report.exit_code, Some(0));
        assert_eq!(report.message, "");
        assert_eq!(collected.stdout(), "hello\n");
        assert_started_first(&collected, &report);
        assert_container_gone(&executor, &report.container_id).await;
        assert_nothing_left(&executor).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn nonzero_exit_code_is_reported_with_output() {
        let executor = executor("exit-three").await;
        let job = job(&["sh", "-c", "echo before; echo failing >&2; exit 3"]);
        let (report, collected) = run(&executor, &job, CancellationToken::new()).await;
        assert_eq!(report.outcome, Outcome::Exited, "{report:?}");
        assert_eq!(report.exit_code, Some(3));
        assert_eq!(collected.stdout(), "before\n");
        assert_eq!(collected.stderr(), "failing\n");
        assert_container_gone(&executor, &report.container_id).await;
        assert_nothing_left(&executor).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn instant_exit_code_is_truthful() {
        let executor = executor("instant-exit").await;
        for (command, code) in [("exit 3", 3), ("exit 0", 0), ("exit 255", 255)] {
            let job = job(&["sh", "-c", command]);
            let (report, collected) = run(&executor, &job, CancellationToken::new()).await;
            assert_eq!(report.outcome, Outcome::Exited, "{command}: {report:?}");
            assert_eq!(report.exit_code, Some(code), "{command}: {report:?}");
            assert!(collected.stdout.is_empty() && collected.stderr.is_empty());
            assert_container_gone(&executor, &report.container_id).await;
        }
        // A command that is not in the image: the init process reports it and exits 127.
        let (report, collected) = run(
            &executor,
            &job(&["no-such-command"]),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(report.outcome, Outcome::Exited, "{report:?}");
        assert_eq!(report.exit_code, Some(127), "{report:?}");
        assert!(
            collected.stderr().contains("no-such-command"),
            "{collected:?}"
        );
        assert_nothing_left(&executor).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn instant_output_is_not_lost() {
        let executor = executor("instant-output").await;
        for _ in 0..5 {
            let job = job(&["echo", "quick"]);
            let (report, collected) = run(&executor, &job, CancellationToken::new()).await;
            assert_eq!(report.exit_code, Some(0), "{report:?}");
            assert_eq!(collected.stdout(), "quick\n");
        }
        assert_nothing_left(&executor).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn stdout_and_stderr_are_separate_and_ordered() {
        let executor = executor("streams").await;
        let script = "i=1; while [ $i -le 200 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done";
        let (report, collected) = run(
            &executor,
            &job(&["sh", "-c", script]),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(report.exit_code, Some(0), "{report:?}");
        let expected = |stream: &str| {
            (1..=200)
                .map(|i| format!("{stream}{i}\n"))
                .collect::<String>()
        };
        assert_eq!(collected.stdout(), expected("out"));
        assert_eq!(collected.stderr(), expected("err"));
        assert_nothing_left(&executor).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn large_output_arrives_whole_and_in_order() {
        let executor = executor("large-output").await;
        let (report, collected) = run(
            &executor,
            &job(&["seq", "1", "1500000"]),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(report.exit_code, Some(0), "{report:?}");
        let expected: String = (1..=1_500_000).map(|i| format!("{i}\n")).collect();
        assert!(expected.len() > 10 * 1024 * 1024);
        assert_eq!(collected.stdout.len(), expected.len());
        assert!(
            collected.stdout == expected.as_bytes(),
            "the output differs from seq's"
        );
        assert_nothing_left(&executor).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn timeout_stops_the_container() {
        let executor = executor("timeout").await;
        let mut job = job(&["sleep", "60"]);
        job.spec.timeout = Some(secs(1));
        let began = std::time::Instant::now();
        let (report, collected) = run(&executor, &job, CancellationToken::new()).await;
        let took = began.elapsed();
        assert_eq!(report.outcome, Outcome::TimedOut, "{report:?}");
        assert!(took < Duration::from_secs(10), "took {took:?}");
        // The init process passes SIGTERM on to `sleep`, which dies of it: 128 + 15.
        assert_eq!(report.exit_code, Some(143), "{report:?}");
        assert!(report.run_duration >= Duration::from_secs(1), "{report:?}");
        assert!(
            collected
                .system
                .iter()
                .any(|n| n == "timeout after 1s: stopping (SIGTERM, then SIGKILL after 1s)"),
            "{:?}",
            collected.system
        );
        assert_container_gone(&executor, &report.container_id).await;
        assert_nothing_left(&executor).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn timeout_escalates_to_sigkill_when_sigterm_is_ignored() {
        let executor = executor("sigkill").await;
        let mut job = job(&["sh", "-c", "trap '' TERM; sleep 60"]);
        job.spec.timeout = Some(secs(1));
        job.spec.stop_grace_period = Some(secs(2));
        let began = std::time::Instant::now();
        let (report, collected) = run(&executor, &job, CancellationToken::new()).await;
        let took = began.elapsed();
        assert_eq!(report.outcome, Outcome::TimedOut, "{report:?}");
        assert_eq!(report.exit_code, Some(137), "{report:?}");
        assert!(
            took >= Duration::from_secs(3) && took < Duration::from_secs(15),
            "took {took:?}"
        );
        assert!(
            collected.system.iter().any(|n| n.contains("SIGKILL")),
            "{:?}",
            collected.system
        );
        assert_container_gone(&executor, &report.container_id).await;
        assert_nothing_left(&executor).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn cancel_stops_the_container() {
        let executor = executor("cancel").await;
        let job = job(&["sh", "-c", "echo running; sleep 60"]);
        let cancel = CancellationToken::new();
        let (tx, mut rx) = mpsc::channel(16);
        let runner = {
            let executor = executor.clone();
            let job = job.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move { run_and_remove(&executor, &job, tx, cancel).await })
        };
        let mut events = Vec::new();
        while let Some(event) = rx.recv().await {
            let running = event == OutputEvent::Stdout(Bytes::from_static(b"running\n"));
            events.push(event);
            if running {
                break;
            }
        }
        let began = std::time::Instant::now();
        cancel.cancel();
        while let Some(event) = rx.recv().await {
            events.push(event);
        }
        let report = runner.await.unwrap();
        assert_eq!(report.outcome, Outcome::Cancelled, "{report:?}");
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "took {:?}",
            began.elapsed()
        );
        assert_eq!(report.message, "cancelled");
        let collected = Collected::from_events(events);
        assert!(
            collected
                .system
                .iter()
                .any(|n| n.starts_with("cancelled: stopping")),
            "{collected:?}"
        );
        assert_container_gone(&executor, &report.container_id).await;
        assert_nothing_left(&executor).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn cancel_before_start_creates_nothing() {
        let executor = executor("cancel-early").await;
        let cancel = CancellationToken::new();
        cancel.cancel();
        let (report, collected) = run(&executor, &job(&["true"]), cancel).await;
        assert_eq!(report.outcome, Outcome::Cancelled, "{report:?}");
        assert!(
            !collected
                .events
                .iter()
                .any(|e| matches!(e, OutputEvent::Started { .. }))
        );
        assert_nothing_left(&executor).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn receiver_going_away_stops_and_removes_the_container() {
        let executor = executor("receiver-gone").await;
        let (tx, rx) = mpsc::channel(16);
        drop(rx);
        let began = std::time::Instant::now();
        let report = run_and_remove(
            &executor,
            &job(&["sleep", "60"]),
            tx,
            CancellationToken::new(),
        )
        .await;
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "took {:?}",
            began.elapsed()
        );
        assert_eq!(report.outcome, Outcome::Interrupted, "{report:?}");
        assert_container_gone(&executor, &report.container_id).await;
        assert_nothing_left(&executor).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn report_comes_before_the_removal_and_cleanup_removes_the_container() {
        let executor = executor("cleanup").await;
        let (tx, mut rx) = mpsc::channel(16);
        let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let (report, cleanup) = executor
            .run(&job(&["sh", "-c", "exit 3"]), tx, CancellationToken::new())
            .await;
        drain.await.unwrap();
        assert_eq!(report.outcome, Outcome::Exited, "{report:?}");
        assert_eq!(report.exit_code, Some(3), "{report:?}");
        // The report is final while the container still exists, exited: removing it is
        // all that is left, and it is the caller's to do.
        assert_eq!(cleanup.container_id(), Some(report.container_id.as_str()));
        let state = executor
            .docker
            .inspect_container(&report.container_id, None)
            .await
            .unwrap()
            .state
            .unwrap();
        assert_eq!(state.running, Some(false), "{state:?}");
        assert_eq!(state.exit_code, Some(3), "{state:?}");
        assert!(cleanup.remove().await);
        assert_container_gone(&executor, &report.container_id).await;
        assert_nothing_left(&executor).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn dropping_an_unused_cleanup_still_removes_the_container() {
        let executor = executor("cleanup-dropped").await;
        let (tx, mut rx) = mpsc::channel(16);
        let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let (report, cleanup) = executor
            .run(&job(&["true"]), tx, CancellationToken::new())
            .await;
        drain.await.unwrap();
        assert_eq!(report.exit_code, Some(0), "{report:?}");
        drop(cleanup);
        let deadline = Instant::now() + Duration::from_secs(15);
        while !executor.list_own_containers(true).await.unwrap().is_empty() {
            assert!(Instant::now() < deadline, "the container was not removed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn present_image_is_used_without_a_pull_under_if_not_present() {
        let executor = executor("pull-if-not-present").await;
        let mut job = job(&["echo", "hi"]);
        job.spec.pull_policy = PullPolicy::IfNotPresent as i32;
        let (report, collected) = run(&executor, &job, CancellationToken::new()).await;
        assert_eq!(report.exit_code, Some(0), "{report:?}");
        assert_eq!(report.pull_duration, Duration::ZERO, "{report:?}");
        assert_eq!(collected.stdout(), "hi\n");
        assert!(collected.system.is_empty(), "{collected:?}");
        assert_nothing_left(&executor).await;
    }

    /// A job on two user-defined networks is reachable by each network's alias from
    /// another container on that network: the first network (joined at the create) and
    /// the second (connected before the start) both carry their aliases.
    #[tokio::test(flavor = "multi_thread")]
    async fn aliases_on_every_network_reach_the_job() {
        use berth_common::proto::NetworkAttachment;
        use bollard::models::NetworkCreateRequest;

        let executor = executor("aliases").await;
        let suffix = format!("{:08x}", rand::random::<u32>());
        let front = format!("berth-test-front-{suffix}");
        let back = format!("berth-test-back-{suffix}");
        for name in [&front, &back] {
            executor
                .docker
                .create_network(NetworkCreateRequest {
                    name: name.clone(),
                    driver: Some("bridge".to_owned()),
                    ..NetworkCreateRequest::default()
                })
                .await
                .unwrap();
        }
        let attach = |name: &str, alias: &str| NetworkAttachment {
            name: name.to_owned(),
            aliases: vec![alias.to_owned()],
        };
        let mut server = job(&[
            "sh",
            "-c",
            "mkdir -p /tmp/www && echo pong > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www",
        ]);
        server.spec.networks = vec![attach(&front, "web-front"), attach(&back, "web-back")];
        let stop = CancellationToken::new();
        let serving = tokio::spawn({
            let executor = executor.clone();
            let stop = stop.clone();
            async move { run(&executor, &server, stop).await }
        });
        // Polls until the server listens; the job's own timeout bounds it.
        let fetch = |network: &str, alias: &str| {
            let mut client = job(&[
                "sh",
                "-c",
                &format!(
                    "for i in $(seq 300); do wget -q -O - http://{alias}:8080/ && exit 0; sleep 0.1; done; exit 1"
                ),
            ]);
            client.spec.network = network.to_owned();
            client
        };
        let mut outputs = Vec::new();
        for (network, alias) in [(&front, "web-front"), (&back, "web-back")] {
            let (report, collected) =
                run(&executor, &fetch(network, alias), CancellationToken::new()).await;
            outputs.push((alias, report.exit_code, collected.stdout()));
        }
        // An alias is known only on its own network.
        let (cross, _) = run(
            &executor,
            &{
                let mut client = job(&["sh", "-c", "exec wget -q -T 2 -O - http://web-back:8080/"]);
                client.spec.network = front.clone();
                client
            },
            CancellationToken::new(),
        )
        .await;
        stop.cancel();
        let (served, _) = serving.await.unwrap();
        for name in [&front, &back] {
            executor.docker.remove_network(name).await.unwrap();
        }
        for (alias, code, stdout) in outputs {
            assert_eq!((code, stdout.as_str()), (Some(0), "pong\n"), "{alias}");
        }
        assert_ne!(cross.exit_code, Some(0), "{cross:?}");
        assert_eq!(served.outcome, Outcome::Cancelled, "{served:?}");
        assert_nothing_left(&executor).await;
    }

    /// Runs `job` in the background, handing its events over as they come; cancelling
    /// `stop` ends it.
    fn run_streaming(
        executor: &DockerExecutor,
        job: Job,
        stop: CancellationToken,
    ) -> (
        tokio::task::JoinHandle<RunReport>,
        mpsc::Receiver<OutputEvent>,
    ) {
        let (tx, rx) = mpsc::channel(64);
        let executor = executor.clone();
        let handle = tokio::spawn(async move { run_and_remove(&executor, &job, tx, stop).await });
        (handle, rx)
    }

    #[test]
    fn zero_timeout_plans_no_timeout_and_no_timeout_label() {
        let mut replica = job(&["sleep", "1"]);
        replica.spec.timeout = Some(secs(0));
        let plan = Plan::for_job(&replica, "w").unwrap();
        assert_eq!(plan.timeout, None);
        let labels = plan.config.labels.as_ref().unwrap();
        assert!(!labels.contains_key(LABEL_TIMEOUT), "{labels:?}");
        // A timed job keeps its label, which the reapers read.
        let timed = Plan::for_job(&job(&["true"]), "w").unwrap();
        assert_eq!(timed.config.labels.unwrap()[LABEL_TIMEOUT], "60000");
    }

    /// A zero timeout taken literally would stop the container at once (TIMED_OUT).
    #[tokio::test(flavor = "multi_thread")]
    async fn zero_timeout_runs_until_the_container_exits() {
        let executor = executor("no-timeout").await;
        let mut replica = job(&["sh", "-c", "sleep 2; echo done"]);
        replica.spec.timeout = Some(secs(0));
        let (report, collected) = run(&executor, &replica, CancellationToken::new()).await;
        assert_eq!(report.outcome, Outcome::Exited, "{report:?}");
        assert_eq!(report.exit_code, Some(0), "{report:?}");
        assert_eq!(collected.stdout(), "done\n");
        assert!(report.run_duration >= Duration::from_secs(2), "{report:?}");
        assert_nothing_left(&executor).await;
    }

    #[test]
    fn ports_plan_exposed_ports_and_bindings_on_every_address() {
        let mut replica = job(&[]);
        replica.spec.ports = vec![
            PortMapping {
                container_port: 8080,
                host_port: 0,
                protocol: String::new(),
            },
            PortMapping {
                container_port: 53,
                host_port: 5353,
                protocol: "udp".to_owned(),
            },
        ];
        let plan = Plan::for_job(&replica, "w").unwrap();
        let mut exposed = plan.config.exposed_ports.clone().unwrap();
        exposed.sort();
        assert_eq!(exposed, vec!["53/udp".to_owned(), "8080/tcp".to_owned()]);
        let bindings = plan.config.host_config.unwrap().port_bindings.unwrap();
        let binding = |key: &str| bindings[key].clone().unwrap();
        assert_eq!(
            binding("8080/tcp"),
            vec![PortBinding {
                host_ip: Some("0.0.0.0".to_owned()),
                host_port: Some(String::new()),
            }]
        );
        assert_eq!(binding("53/udp")[0].host_port.as_deref(), Some("5353"));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn published_port_is_bound_reported_and_reachable() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let executor = executor("ports").await;
        let mut server = job(&[
            "sh",
            "-c",
            "mkdir -p /tmp/www && echo pong > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www",
        ]);
        server.spec.network = "bridge".to_owned();
        server.spec.ports = vec![PortMapping {
            container_port: 8080,
            host_port: 0,
            protocol: "tcp".to_owned(),
        }];
        let stop = CancellationToken::new();
        let (serving, mut events) = run_streaming(&executor, server, stop.clone());
        let (ports, has_healthcheck) = loop {
            match events.recv().await {
                Some(OutputEvent::Started {
                    ports,
                    has_healthcheck,
                    ..
                }) => break (ports, has_healthcheck),
                Some(_) => {}
                None => panic!("the run ended before it started: {:?}", serving.await),
            }
        };
        assert!(!has_healthcheck, "the test image has no HEALTHCHECK");
        assert_eq!(ports.len(), 1, "{ports:?}");
        assert_eq!(
            (ports[0].container_port, ports[0].protocol.as_str()),
            (8080, "tcp")
        );
        let host_port = u16::try_from(ports[0].host_port).unwrap();
        assert_ne!(host_port, 0, "Docker picked a port");
        // Polls until httpd listens (bounded: 300 tries, 0.1 s apart).
        let mut answer = String::new();
        for _ in 0..300 {
            if let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", host_port)).await {
                let _ = stream.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").await;
                answer.clear();
                let mut bytes = Vec::new();
                let _ = stream.read_to_end(&mut bytes).await;
                answer = String::from_utf8_lossy(&bytes).into_owned();
                if answer.contains("pong") {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop.cancel();
        let report = serving.await.unwrap();
        assert!(answer.contains("pong"), "{answer:?}");
        assert_eq!(report.outcome, Outcome::Cancelled, "{report:?}");
        assert_nothing_left(&executor).await;
    }

    /// `berth-test/healthy:latest`: the test image with a HEALTHCHECK that passes once
    /// `/tmp/ok` exists, probed every second.
    async fn ensure_healthcheck_image(executor: &DockerExecutor) -> &'static str {
        const IMAGE: &str = "berth-test/healthy:latest";
        if executor.docker.inspect_image(IMAGE).await.is_ok() {
            return IMAGE;
        }
        let built = tokio::task::spawn_blocking(|| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(
                dir.path().join("Dockerfile"),
                format!(
                    "FROM {TEST_IMAGE}\nHEALTHCHECK --interval=1s --timeout=2s --retries=30 CMD [\"sh\", \"-c\", \"echo probing; test -f /tmp/ok\"]\n"
                ),
            )
            .unwrap();
            std::process::Command::new("docker")
                .args(["build", "-q", "-t", IMAGE])
                .arg(dir.path())
                .status()
        })
        .await
        .unwrap();
        assert!(
            matches!(built, Ok(status) if status.success()),
            "cannot build {IMAGE}: {built:?}"
        );
        IMAGE
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn healthcheck_is_reported_and_its_changes_follow() {
        let executor = executor("health").await;
        let image = ensure_healthcheck_image(&executor).await;
        let mut replica = job(&[
            "sh",
            "-c",
            "sleep 3; mkdir -p /tmp && touch /tmp/ok; exec sleep 60",
        ]);
        replica.spec.image = image.to_owned();
        replica.spec.timeout = Some(secs(0));
        let stop = CancellationToken::new();
        let (running, mut events) = run_streaming(&executor, replica, stop.clone());
        let mut has_healthcheck = None;
        let mut statuses: Vec<(String, String)> = Vec::new();
        // Bounded by the image: probes every second, healthy after about 3 s.
        while let Some(event) = tokio::time::timeout(Duration::from_secs(60), events.recv())
            .await
            .unwrap()
        {
            match event {
                OutputEvent::Started {
                    has_healthcheck: has,
                    ..
                } => has_healthcheck = Some(has),
                OutputEvent::Health { status, output } => {
                    let healthy = status == "healthy";
                    statuses.push((status, output));
                    if healthy {
                        break;
                    }
                }
                _ => {}
            }
        }
        stop.cancel();
        let report = running.await.unwrap();
        assert_eq!(has_healthcheck, Some(true));
        let names: Vec<&str> = statuses.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(names, vec!["starting", "healthy"], "{statuses:?}");
        assert!(statuses[1].1.contains("probing"), "{statuses:?}");
        assert_eq!(report.outcome, Outcome::Cancelled, "{report:?}");
        assert_nothing_left(&executor).await;
    }

    #[test]
    fn networks_plan_the_first_as_the_mode_and_connect_the_others() {
        use berth_common::proto::NetworkAttachment;
        let mut spec_job = job(&[]);
        spec_job.spec.networks = vec![
            NetworkAttachment {
                name: "front".to_owned(),
                aliases: vec!["web".to_owned()],
            },
            NetworkAttachment {
                name: "back".to_owned(),
                aliases: Vec::new(),
            },
        ];
        let plan = Plan::for_job(&spec_job, "w").unwrap();
        let host = plan.config.host_config.as_ref().unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("front"));
        let endpoints = plan
            .config
            .networking_config
            .as_ref()
            .and_then(|n| n.endpoints_config.as_ref())
            .unwrap();
        assert_eq!(endpoints["front"].aliases, Some(vec!["web".to_owned()]));
        assert_eq!(plan.connect, vec![("back".to_owned(), Vec::new())]);
        assert_eq!(plan.networks, vec!["front".to_owned(), "back".to_owned()]);
        spec_job.spec.network = "other".to_owned();
        assert!(
            Plan::for_job(&spec_job, "w")
                .unwrap_err()
                .contains("differs")
        );
        spec_job.spec.network = String::new();
        spec_job.spec.networks[1].name = "host".to_owned();
        assert_eq!(
            Plan::for_job(&spec_job, "w").unwrap_err(),
            "network host is not allowed"
        );
    }

    /// Engines answer 404 for a missing network too: at the create (newer ones) or at the
    /// start (20.10). Either way it must not be taken for a missing image.
    #[tokio::test(flavor = "multi_thread")]
    async fn missing_network_is_a_start_failure_not_a_missing_image() {
        let executor = executor("no-network").await;
        for policy in [PullPolicy::Never, PullPolicy::IfNotPresent] {
            let mut job = job(&["true"]);
            job.spec.network = format!("berth-test-missing-{:08x}", rand::random::<u32>());
            job.spec.pull_policy = policy as i32;
            let (report, collected) = run(&executor, &job, CancellationToken::new()).await;
            assert_eq!(report.outcome, Outcome::StartFailed, "{report:?}");
            assert!(
                report.message.starts_with("Docker refused to ")
                    && report.message.contains(&job.spec.network),
                "{report:?}"
            );
            assert!(collected.system.is_empty(), "{collected:?}");
        }
        assert_nothing_left(&executor).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn dropping_run_midway_still_removes_the_container() {
        let executor = executor("dropped").await;
        let (tx, mut rx) = mpsc::channel(16);
        let runner = {
            let executor = executor.clone();
            tokio::spawn(async move {
                executor
                    .run(&job(&["sleep", "60"]), tx, CancellationToken::new())
                    .await
            })
        };
        let started = rx.recv().await;
        assert!(
            matches!(started, Some(OutputEvent::Started { .. })),
            "{started:?}"
        );
        runner.abort();
        assert!(runner.await.unwrap_err().is_cancelled());
        let deadline = Instant::now() + Duration::from_secs(15);
        while !executor.list_own_containers(true).await.unwrap().is_empty() {
            assert!(Instant::now() < deadline, "the container was not removed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn memory_hog_is_reported_oom_killed() {
        let executor = executor("oom").await;
        // The engine learns of an OOM kill from an event it subscribes to just after the
        // start; a job killed in its first milliseconds, before that subscription, exits
        // 137 with no OOM verdict on a busy host (a second was too short with the
        // machine's two cores loaded by the rest of the suite). So the hog waits first.
        let mut job = job(&["sh", "-c", "sleep 3; tail /dev/zero"]);
        job.spec.memory_bytes = Some(8 * MIB);
        let (report, _) = run(&executor, &job, CancellationToken::new()).await;
        assert_eq!(report.outcome, Outcome::OomKilled, "{report:?}");
        assert_eq!(report.exit_code, Some(137), "{report:?}");
        assert!(report.message.contains("memory limit"), "{report:?}");
        assert_container_gone(&executor, &report.container_id).await;
        assert_nothing_left(&executor).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn resource_figures_are_collected_for_a_running_container() {
        let executor = executor("stats").await;
        // Busy for about three seconds, so Docker's statistics get a few samples.
        let script = "end=$(($(date +%s) + 3)); while [ $(date +%s) -lt $end ]; do :; done";
        let (report, _) = run(
            &executor,
            &job(&["sh", "-c", script]),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(report.exit_code, Some(0), "{report:?}");
        let peak = report.peak_memory_bytes.expect("a peak memory figure");
        assert!(peak > 0 && peak <= 64 * MIB, "{report:?}");
        let cpu = report.cpu_time.expect("a CPU time figure");
        assert!(cpu > Duration::from_millis(500), "{report:?}");
        assert_nothing_left(&executor).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn pull_policy_never_with_missing_image_fails_clearly() {
        let executor = executor("pull-never").await;
        let mut job = job(&["true"]);
        job.spec.image = "berth-test/does-not-exist:never".to_owned();
        let (report, collected) = run(&executor, &job, CancellationToken::new()).await;
        assert_eq!(report.outcome, Outcome::ImagePullFailed, "{report:?}");
        assert_eq!(
            report.message,
            "image berth-test/does-not-exist:never is not present on this worker and the pull policy is never"
        );
        assert_eq!(report.container_id, "");
        assert!(collected.events.is_empty(), "{collected:?}");
        assert_nothing_left(&executor).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn failed_pull_reports_dockers_message() {
        let executor = executor("pull-fails").await;
        let mut job = job(&["true"]);
        // Nothing listens on the discard port, so the pull fails fast.
        job.spec.image = "127.0.0.1:9/berth-test/missing:1".to_owned();
        job.spec.pull_policy = PullPolicy::IfNotPresent as i32;
        let (report, collected) = run(&executor, &job, CancellationToken::new()).await;
        assert_eq!(report.outcome, Outcome::ImagePullFailed, "{report:?}");
        assert!(
            report
                .message
                .starts_with("pulling image 127.0.0.1:9/berth-test/missing:1 failed: "),
            "{report:?}"
        );
        assert!(report.message.contains("127.0.0.1:9"), "{report:?}");
        assert_eq!(
            collected.system.first().map(String::as_str),
            Some("pulling image 127.0.0.1:9/berth-test/missing:1")
        );
        assert_nothing_left(&executor).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn refused_create_is_start_failed() {
        let executor = executor("start-failed").await;
        let mut job = job(&["true"]);
        job.spec.working_dir = "relative/dir".to_owned();
        let (report, _) = run(&executor, &job, CancellationToken::new()).await;
        assert_eq!(report.outcome, Outcome::StartFailed, "{report:?}");
        assert!(report.message.contains("working directory"), "{report:?}");
        assert_nothing_left(&executor).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn env_and_secret_env_reach_the_container() {
        let executor = executor("env").await;
        let mut job = job(&["sh", "-c", "echo \"$PLAIN/$SECRET\""]);
        job.spec
            .env
            .insert("PLAIN".to_owned(), "visible value".to_owned());
        job.spec
            .secret_env
            .insert("SECRET".to_owned(), "s3cr3t-value".to_owned());
        let (report, collected) = run(&executor, &job, CancellationToken::new()).await;
        assert_eq!(report.exit_code, Some(0), "{report:?}");
        assert_eq!(collected.stdout(), "visible value/s3cr3t-value\n");
        assert_nothing_left(&executor).await;
    }

    #[test]
    fn job_debug_does_not_show_secret_values() {
        let mut job = job(&["true"]);
        job.spec
            .env
            .insert("PLAIN".to_owned(), "visible value".to_owned());
        job.spec
            .secret_env
            .insert("SECRET".to_owned(), "s3cr3t-value".to_owned());
        let printed = format!("{job:?}");
        assert!(!printed.contains("s3cr3t-value"), "{printed}");
        assert!(
            printed.contains("SECRET") && printed.contains("[REDACTED]"),
            "{printed}"
        );
        assert!(printed.contains("visible value"), "{printed}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn security_defaults_are_applied() {
        let executor = executor("security").await;
        let job = job(&["sleep", "60"]);
        let cancel = CancellationToken::new();
        let (tx, mut rx) = mpsc::channel(16);
        let runner = {
            let executor = executor.clone();
            let job = job.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move { run_and_remove(&executor, &job, tx, cancel).await })
        };
        let container_id = loop {
            match rx.recv().await {
                Some(OutputEvent::Started { container_id, .. }) => break container_id,
                Some(_) => {}
                None => panic!("run ended without starting: {:?}", runner.await),
            }
        };
        let inspected = executor
            .docker
            .inspect_container(&container_id, None)
            .await
            .unwrap();
        cancel.cancel();
        while rx.recv().await.is_some() {}
        let report = runner.await.unwrap();
        assert_eq!(report.outcome, Outcome::Cancelled, "{report:?}");

        let host = inspected.host_config.unwrap();
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
        let mut added = host.cap_add.unwrap();
        added.sort();
        assert_eq!(
            added,
            [
                "CHOWN",
                "DAC_OVERRIDE",
                "FOWNER",
                "KILL",
                "SETGID",
                "SETUID"
            ]
        );
        assert_eq!(
            host.security_opt,
            Some(vec!["no-new-privileges".to_owned()])
        );
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        assert_eq!(host.pids_limit, Some(64));
        assert_eq!(host.memory, Some(64 * 1024 * 1024));
        assert_eq!(host.memory_swap, Some(64 * 1024 * 1024));
        assert_eq!(host.nano_cpus, Some(1_000_000_000));
        assert_eq!(host.init, Some(true));
        assert_eq!(host.privileged, Some(false));
        assert_eq!(host.oom_kill_disable, Some(false));
        assert!(host.binds.unwrap_or_default().is_empty());
        assert!(host.mounts.unwrap_or_default().is_empty());
        assert!(inspected.mounts.unwrap_or_default().is_empty());
        let labels = inspected.config.unwrap().labels.unwrap();
        assert_eq!(labels.get(LABEL_MANAGED).map(String::as_str), Some("true"));
        assert_eq!(labels.get(LABEL_WORKER), Some(&executor.worker_name));
        assert_eq!(labels.get(LABEL_WORK_REQUEST), Some(&job.work_request_id));
        assert_eq!(labels.get(LABEL_ATTEMPT).map(String::as_str), Some("1"));
        // What a worker reaping the container without its job needs to stop it properly.
        let grace = job.spec.stop_grace_period.map_or(DEFAULT_GRACE, |d| {
            Duration::from_secs(u64::try_from(d.seconds).unwrap())
        });
        assert_eq!(
            labels.get(LABEL_STOP_GRACE),
            Some(&grace.as_millis().to_string())
        );
        let timeout = job
            .spec
            .timeout
            .map(|d| (u64::try_from(d.seconds).unwrap() * 1000).to_string());
        assert_eq!(labels.get(LABEL_TIMEOUT), timeout.as_ref());
        let name = inspected.name.unwrap();
        assert!(
            name.starts_with(&format!("/berth-{}-1-", &job.work_request_id[..12])),
            "{name}"
        );
        assert_container_gone(&executor, &container_id).await;
        assert_nothing_left(&executor).await;
    }

    /// Creates and starts a labelled container the way an earlier worker process would have.
    async fn leftover(executor: &DockerExecutor, work_request_id: &str, attempt: &str) -> String {
        let labels = HashMap::from([
            (LABEL_MANAGED.to_owned(), "true".to_owned()),
            (LABEL_WORKER.to_owned(), executor.worker_name.clone()),
            (LABEL_WORK_REQUEST.to_owned(), work_request_id.to_owned()),
            (LABEL_ATTEMPT.to_owned(), attempt.to_owned()),
        ]);
        let config = ContainerCreateBody {
            image: Some(TEST_IMAGE.to_owned()),
            cmd: Some(vec!["sleep".to_owned(), "60".to_owned()]),
            labels: Some(labels),
            host_config: Some(HostConfig {
                network_mode: Some("none".to_owned()),
                init: Some(true),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        let id = executor
            .docker
            .create_container(None, config)
            .await
            .unwrap()
            .id;
        executor.docker.start_container(&id, None).await.unwrap();
        id
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn reap_orphans_removes_only_containers_without_a_live_attempt() {
        let other = executor("reap-other").await;
        let executor = executor("reap").await;
        let live_id = leftover(&executor, "live-request", "2").await;
        let orphan_id = leftover(&executor, "dead-request", "1").await;
        let unreadable_id = leftover(&executor, "odd-request", "not-a-number").await;
        let foreign_id = leftover(&other, "dead-request", "1").await;

        let mut running = executor.running_attempts().await.unwrap();
        running.sort();
        assert_eq!(
            running,
            [
                ("dead-request".to_owned(), 1, orphan_id.clone()),
                ("live-request".to_owned(), 2, live_id.clone()),
            ]
        );

        let live = HashSet::from([("live-request".to_owned(), 2)]);
        assert_eq!(executor.reap_orphans(&live).await.unwrap(), 2);
        assert_container_gone(&executor, &orphan_id).await;
        assert_container_gone(&executor, &unreadable_id).await;
        assert_eq!(
            executor.running_attempts().await.unwrap(),
            [("live-request".to_owned(), 2, live_id.clone())]
        );
        // Another worker's containers are not this worker's business.
        assert_eq!(other.running_attempts().await.unwrap().len(), 1);

        assert_eq!(executor.reap_orphans(&HashSet::new()).await.unwrap(), 1);
        assert_eq!(other.reap_orphans(&HashSet::new()).await.unwrap(), 1);
        assert_container_gone(&executor, &foreign_id).await;
        assert_nothing_left(&executor).await;
        assert_nothing_left(&other).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn host_facts_describe_the_engine() {
        let executor = executor("facts").await;
        let facts = executor.host_facts().await.unwrap();
        for key in ["docker_version", "os", "arch", "cpus", "memory_bytes"] {
            assert!(
                facts.get(key).is_some_and(|v| !v.is_empty()),
                "{key} missing: {facts:?}"
            );
        }
        assert!(facts["cpus"].parse::<u32>().unwrap() > 0);
        assert!(facts["memory_bytes"].parse::<u64>().unwrap() > 0);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn unreachable_engine_is_named_in_the_error() {
        let error = DockerExecutor::connect(Some("unix:///nonexistent/docker.sock"), false, "w")
            .await
            .unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("unix:///nonexistent/docker.sock"),
            "{message}"
        );
        assert!(
            message.starts_with("cannot reach the Docker engine"),
            "{message}"
        );

        let error = DockerExecutor::connect(Some("tcp://127.0.0.1:9"), false, "w")
            .await
            .unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with("cannot reach the Docker engine at tcp://127.0.0.1:9: "),
            "{message}"
        );

        let error = DockerExecutor::connect(Some("ftp://example"), false, "w")
            .await
            .unwrap_err();
        assert!(error.to_string().contains("ftp://example"), "{error}");
    }

    #[test]
    fn image_references_split_into_name_and_tag() {
        assert_eq!(split_reference("busybox"), ("busybox", "latest"));
        assert_eq!(split_reference("busybox:1.36"), ("busybox", "1.36"));
        assert_eq!(
            split_reference("registry.example:5000/team/app"),
            ("registry.example:5000/team/app", "latest")
        );
        assert_eq!(
            split_reference("registry.example:5000/team/app:v2"),
            ("registry.example:5000/team/app", "v2")
        );
        assert_eq!(
            split_reference("team/app@sha256:abc"),
            ("team/app", "sha256:abc")
        );
    }

    #[test]
    fn spec_problems_are_named() {
        let mut bad = job(&["true"]);
        bad.spec.network = "host".to_owned();
        assert_eq!(
            Plan::for_job(&bad, "w").unwrap_err(),
            "network host is not allowed"
        );
        let mut bad = job(&["true"]);
        bad.spec.cpus = Some(-1.0);
        assert!(Plan::for_job(&bad, "w").unwrap_err().contains("CPU limit"));
        let mut bad = job(&["true"]);
        bad.spec.timeout = Some(secs(-5));
        assert!(Plan::for_job(&bad, "w").unwrap_err().contains("timeout"));
        let plan = Plan::for_job(&job(&[]), "w").unwrap();
        assert_eq!(
            plan.config.cmd, None,
            "an empty command keeps the image's default"
        );
    }
}
