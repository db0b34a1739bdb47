//! When a replica counts as healthy: its container runs and has not restarted for
//! `min_healthy`, or, for an image with a Docker HEALTHCHECK, that check says `healthy`.
//! Decided from what the worker reported (the attempt's start, `has_healthcheck`, the
//! last `HealthChanged`); nothing here talks to a worker.

use chrono::{DateTime, Utc};

use crate::services::HealthSettings;
use crate::services::state::RunState;
use crate::work::state::Status;

/// What a replica's current container is, health-wise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// Not running yet, or running for less than `min_healthy`, or its HEALTHCHECK has
    /// not said `healthy` yet.
    Starting,
    /// Healthy since then.
    Healthy { since: DateTime<Utc> },
    /// Its HEALTHCHECK says `unhealthy` (since then).
    Unhealthy { since: DateTime<Utc> },
    /// Its request has ended.
    Ended,
}

/// Judges `run` at `now`.
pub fn judge(run: &RunState, settings: &HealthSettings, now: DateTime<Utc>) -> Judgement {
    if run.status.is_terminal() {
        return Judgement::Ended;
    }
    if run.status != Status::Running {
        return Judgement::Starting;
    }
    let Some(started) = run.started_at else {
        return Judgement::Starting;
    };
    if run.has_healthcheck {
        let at = run.health_at.unwrap_or(started);
        return match run.health.as_deref() {
            Some("healthy") => Judgement::Healthy { since: at },
            Some("unhealthy") => Judgement::Unhealthy { since: at },
            _ => Judgement::Starting,
        };
    }
    let min = chrono::Duration::from_std(settings.min_healthy).unwrap_or(chrono::Duration::MAX);
    match started.checked_add_signed(min) {
        Some(since) if since <= now => Judgement::Healthy { since },
        _ => Judgement::Starting,
    }
}
