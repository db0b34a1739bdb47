//! What a worker reports about an attempt, in the domain's terms: values only.

use crate::work::spec::PortMapping;
use crate::work::state::Outcome;

/// A worker's report that an attempt's container started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Started {
    /// Docker's container id.
    pub container_id: String,
    /// Time spent making the image available.
    pub pull_ms: Option<i64>,
    /// The ports Docker published on the worker's host, as bound (service replicas).
    pub ports: Vec<PortMapping>,
    /// Whether the container has a Docker HEALTHCHECK; its status follows in [`Health`].
    pub has_healthcheck: bool,
}

/// A Docker HEALTHCHECK status, as a worker reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthStatus {
    /// Not yet judged (Docker's start period, or too few probes).
    Starting,
    /// The check passes.
    Healthy,
    /// The check failed its retries.
    Unhealthy,
}

impl HealthStatus {
    /// Docker's word for it, as `attempts.health` stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }

    /// Docker's word read back; `None` for anything else.
    pub fn parse(word: &str) -> Option<HealthStatus> {
        match word {
            "starting" => Some(HealthStatus::Starting),
            "healthy" => Some(HealthStatus::Healthy),
            "unhealthy" => Some(HealthStatus::Unhealthy),
            _ => None,
        }
    }
}

/// A worker's report that a running container's HEALTHCHECK status changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// The new status.
    pub status: HealthStatus,
    /// The last probe's output, cut and masked by the worker.
    pub output: String,
}

/// A worker's report that an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    /// How it ended.
    pub outcome: Outcome,
    /// The container's exit code, when it ran.
    pub exit_code: Option<i32>,
    /// Docker's or the worker's message for failures.
    pub message: String,
    /// The container id, when one was created ('' when not known).
    pub container_id: String,
    /// Peak memory use in bytes, when known.
    pub peak_memory_bytes: Option<i64>,
    /// CPU time used, when known.
    pub cpu_time_ns: Option<i64>,
    /// Time spent making the image available.
    pub pull_ms: Option<i64>,
    /// Time from container start to exit.
    pub run_ms: Option<i64>,
    /// Why the log the server holds misses output (the worker could not spool all of
    /// it, say); empty when the log is complete.
    pub log_incomplete: String,
    /// The artifact the worker collected the attempt's outputs into.
    pub output_artifact_id: Option<uuid::Uuid>,
    /// Why collecting the outputs failed; empty when it did not.
    pub output_error: String,
}

impl Finished {
    /// An attempt that ended before anything ran, with `message` saying why.
    pub fn without_running(outcome: Outcome, message: impl Into<String>) -> Finished {
        Finished {
            outcome,
            exit_code: None,
            message: message.into(),
            container_id: String::new(),
            peak_memory_bytes: None,
            cpu_time_ns: None,
            pull_ms: None,
            run_ms: None,
            log_incomplete: String::new(),
            output_artifact_id: None,
            output_error: String::new(),
        }
    }
}
