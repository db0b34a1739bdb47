//! What a release holds, as stored in `template_releases.spec` (JSON).
//!
//! A job release holds the whole resolved spec: everything `SubmitWorkRequest` takes but
//! the workspace and the per-run fields, validated and with the server's defaults filled
//! in when it was made, so a later change of the defaults does not change an old
//! release. Secret values are never here; they are sealed in the release's `secret_env`
//! column and only their names are in `secret_env_keys`.
//!
//! A workflow release holds its declared parameters and its steps as written: string
//! fields may still hold `${{ params.NAME }}`, so they are kept as text and checked again,
//! as a whole workflow, when a run binds the parameters.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::work::spec::{OutputSpec, StoredSpec};

/// The spec of a job template's release.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The container spec, resolved; its `outputs` and `output_category` are the
    /// template's outputs.
    pub spec: StoredSpec,
    /// Labels a worker must have.
    #[serde(default)]
    pub requirements: BTreeMap<String, String>,
    /// Base priority.
    #[serde(default)]
    pub priority: i32,
    /// Automatic retries on failure.
    #[serde(default)]
    pub retries: u32,
    /// Wait before an automatic retry, in milliseconds (`None`: the server's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_backoff_ms: Option<u64>,
    /// Artifacts to mount, resolved again at each run (a `COLLECTION/ITEM` follows the
    /// collection).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<StoredInput>,
}

/// An input of a job template: what to mount and where.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredInput {
    /// An artifact id or `COLLECTION/ITEM`.
    pub artifact: String,
    /// Relative to /in ('' for the artifact id).
    #[serde(default)]
    pub mount: String,
}

/// The type of a workflow template parameter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ParamType {
    /// Any text.
    #[default]
    String,
    /// A whole number.
    Integer,
    /// A number.
    Number,
    /// `true` or `false`.
    Boolean,
}

/// A declared parameter of a workflow template.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parameter {
    pub name: String,
    #[serde(rename = "type", default)]
    pub kind: ParamType,
    /// The value when a run gives none, as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// The spec of a workflow template's release: parameters and steps as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkflowSpec {
    #[serde(default)]
    pub parameters: Vec<Parameter>,
    pub steps: Vec<StepText>,
}

/// One workflow template step as written: every field a `WorkflowStep` has, with string
/// fields kept as text so they may name parameters. Secret env values are not here (they
/// are sealed in the release, keyed `STEP/KEY`); `secret_env_keys` names them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepText {
    pub name: String,
    /// `NAME` or `NAME@vK` of a job template, or ''.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub template: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Names of the step's secret env variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_env_keys: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_period_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub network: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<crate::work::spec::NetworkAttachment>,
    /// `always`, `if-not-present`, `never`, or '' for the default.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pull_policy: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requirements: BTreeMap<String, String>,
    #[serde(default)]
    pub allow_failure: bool,
    #[serde(default)]
    pub priority: i32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<StepInputText>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<OutputSpec>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output_category: String,
}

/// An input of a workflow template step, as written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepInputText {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub artifact: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mount: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from: String,
}

/// What a release holds, by the template's kind.
#[derive(Clone, Debug, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "a few per request, read and dropped; boxing would only add noise at every use"
)]
pub enum ReleaseSpec {
    Job(JobSpec),
    Workflow(WorkflowSpec),
}
