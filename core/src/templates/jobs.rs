//! Job templates' specs: checking a new one, merging a change into the latest release,
//! and comparing two releases.

use std::collections::{BTreeMap, HashMap};

use crate::error::{Error, Result};
use crate::templates::diff::Change;
use crate::templates::spec::JobSpec;
use crate::work::spec::{
    InputInput, NetworkAttachment, OutputSpec, PullPolicy, RawDuration, SpecDefaults, SpecInput,
};

/// A job template's spec as a caller sent it (create).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobSpecInput {
    pub spec: SpecInput,
    pub requirements: HashMap<String, String>,
    pub priority: i32,
    pub retries: u32,
    pub retry_backoff: Option<RawDuration>,
    pub inputs: Vec<InputInput>,
    pub outputs: Vec<OutputSpec>,
    pub output_category: String,
}

/// A change to a job template's spec as a caller sent it: `Some`/non-empty fields
/// overwrite, `unset_*` and `reset` remove, the rest is kept.
#[derive(Clone, Default, PartialEq)]
pub struct JobChange {
    pub image: Option<String>,
    pub command: Option<Vec<String>>,
    pub env: HashMap<String, String>,
    pub unset_env: Vec<String>,
    /// Write-only values.
    pub secret_env: HashMap<String, String>,
    pub unset_secret_env: Vec<String>,
    pub working_dir: Option<String>,
    pub memory_bytes: Option<u64>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    pub timeout: Option<RawDuration>,
    pub stop_grace_period: Option<RawDuration>,
    pub networks: Option<Vec<NetworkAttachment>>,
    pub pull_policy: Option<PullPolicy>,
    pub requirements: HashMap<String, String>,
    pub unset_requirements: Vec<String>,
    pub priority: Option<i32>,
    pub retries: Option<u32>,
    pub retry_backoff: Option<RawDuration>,
    pub inputs: Option<Vec<InputInput>>,
    pub outputs: Option<Vec<OutputSpec>>,
    pub output_category: Option<String>,
    /// Field names reset to the default.
    pub reset: Vec<String>,
}

impl std::fmt::Debug for JobChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobChange")
            .field("image", &self.image)
            .field("env", &self.env)
            .field(
                "secret_env_keys",
                &self.secret_env.keys().collect::<Vec<_>>(),
            )
            .field("reset", &self.reset)
            .finish_non_exhaustive()
    }
}

/// Checks a new job template's spec as `SubmitWorkRequest` would; returns the resolved
/// spec and its secret values (to be sealed).
pub fn check(
    _input: &JobSpecInput,
    _defaults: &SpecDefaults,
) -> Result<(JobSpec, BTreeMap<String, String>)> {
    Err(Error::FailedPrecondition(
        "job templates are not available yet".into(),
    ))
}

/// Merges `change` into `base` (with its opened secrets) and checks the result.
pub fn merge(
    _base: &JobSpec,
    _base_secrets: &BTreeMap<String, String>,
    _change: &JobChange,
    _defaults: &SpecDefaults,
) -> Result<(JobSpec, BTreeMap<String, String>)> {
    Err(Error::FailedPrecondition(
        "job templates are not available yet".into(),
    ))
}

/// What differs from `old` to `new`; secrets by name only.
pub fn compare(
    _old: &JobSpec,
    _old_secrets: &BTreeMap<String, String>,
    _new: &JobSpec,
    _new_secrets: &BTreeMap<String, String>,
) -> Vec<Change> {
    Vec::new()
}
