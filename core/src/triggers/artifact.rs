//! `artifact` rules: fire when an artifact of a category is completed in the workspace
//! and its data matches a predicate; the artifact becomes the run's input.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::triggers::{ArtifactInput, DataCondition};

/// An artifact rule as stored (the rule's `config`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactConfig {
    pub category: String,
    #[serde(default)]
    pub all_of: Vec<DataCondition>,
    #[serde(default)]
    pub any_of: Vec<DataCondition>,
}

impl ArtifactConfig {
    /// Reads a stored configuration.
    pub fn from_value(value: &serde_json::Value) -> Result<ArtifactConfig> {
        serde_json::from_value(value.clone())
            .map_err(|e| Error::internal(format!("stored artifact rule unreadable: {e}")))
    }

    /// Whether an artifact with `data` matches (its category is compared by the caller).
    pub fn matches(&self, data: &serde_json::Value) -> bool {
        let _ = data;
        false
    }
}

/// Checks an artifact rule; errors name the field (`artifact.category`…).
pub fn check(input: &ArtifactInput) -> Result<ArtifactConfig> {
    let _ = input;
    Err(Error::internal("artifact rules are not built yet"))
}
