//! `completion` rules: fire when a work request from a template (or with given
//! requirement labels) ends with one of the given results; the run gets the ended
//! request's id and outputs.

use std::collections::BTreeMap;

use diesel_async::AsyncPgConnection;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::triggers::CompletionInput;

/// A completion rule as stored (the rule's `config`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletionConfig {
    /// The template's name ('' for any request).
    pub template: String,
    /// Its id, found when the rule was made.
    pub template_id: Option<Uuid>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `success`, `failure`, `cancelled`.
    pub results: Vec<String>,
}

impl CompletionConfig {
    /// Reads a stored configuration.
    pub fn from_value(value: &serde_json::Value) -> Result<CompletionConfig> {
        serde_json::from_value(value.clone())
            .map_err(|e| Error::internal(format!("stored completion rule unreadable: {e}")))
    }
}

/// Checks a completion rule of workspace `workspace_id` (its template must exist there);
/// errors name the field (`completion.results[0]`…).
pub async fn check(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    input: &CompletionInput,
) -> Result<CompletionConfig> {
    let _ = (conn, workspace_id, input);
    Err(Error::internal("completion rules are not built yet"))
}
