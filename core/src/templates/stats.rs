//! What the requests made from a template did, over a window.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::access::auth::Identity;
use crate::error::{Error, Result};
use crate::templates::{TemplateRef, Templates};
use crate::work::spec::RawDuration;

/// Counts and times of a template's runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    pub template: String,
    pub since: DateTime<Utc>,
    pub runs: u64,
    pub successes: u64,
    pub failures: u64,
    pub errors: u64,
    pub aborted: u64,
    pub unfinished: u64,
    /// `None` when no run has both started and completed.
    pub average: Option<Duration>,
    pub p95: Option<Duration>,
    /// Newest version first.
    pub by_version: Vec<VersionStats>,
}

/// Runs of one release.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VersionStats {
    pub version: i32,
    pub runs: u64,
    pub successes: u64,
}

impl Templates {
    /// `GetTemplateStats`: `since` unset means 7 days.
    pub async fn stats(
        &self,
        _caller: &Identity,
        _template: TemplateRef,
        _since: Option<RawDuration>,
    ) -> Result<Stats> {
        Err(Error::FailedPrecondition(
            "template statistics are not available yet".into(),
        ))
    }
}
