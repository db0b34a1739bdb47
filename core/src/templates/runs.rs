//! Runs from a template: an ordinary work request (or workflow) made from a release.

use std::collections::{BTreeMap, HashMap};

use crate::access::auth::Identity;
use crate::error::{Error, Result};
use crate::templates::{TemplateRef, Templates};
use crate::work::requests::RequestView;
use crate::work::spec::RawDuration;

/// What a run from a job template may change of the release's spec.
#[derive(Clone, Default, PartialEq)]
pub struct Overrides {
    /// Replaces the command when non-empty.
    pub command: Vec<String>,
    pub env: HashMap<String, String>,
    /// Write-only values.
    pub secret_env: HashMap<String, String>,
    pub memory_bytes: Option<u64>,
    pub cpus: Option<f64>,
    pub timeout: Option<RawDuration>,
    pub priority: Option<i32>,
}

impl std::fmt::Debug for Overrides {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overrides")
            .field("command", &self.command)
            .field("env", &self.env)
            .field(
                "secret_env_keys",
                &self.secret_env.keys().collect::<Vec<_>>(),
            )
            .field("memory_bytes", &self.memory_bytes)
            .field("cpus", &self.cpus)
            .field("timeout", &self.timeout)
            .field("priority", &self.priority)
            .finish()
    }
}

/// A run as a caller asked for it.
#[derive(Clone, Debug, Default)]
pub struct RunInput {
    pub template: TemplateRef,
    /// `None` runs the latest release.
    pub version: Option<i32>,
    /// Job templates.
    pub overrides: Overrides,
    /// Workflow templates: parameter values as text.
    pub params: BTreeMap<String, String>,
}

impl Templates {
    /// `RunTemplate`.
    pub async fn run(&self, _caller: &Identity, _input: RunInput) -> Result<RequestView> {
        Err(Error::FailedPrecondition(
            "template runs are not available yet".into(),
        ))
    }
}
