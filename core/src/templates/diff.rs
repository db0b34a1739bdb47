//! Differences between releases, and the summary the server writes from them.
//!
//! A release stores the structured difference from the release before it (`changes`)
//! and its wording (`summary`); `GetRelease` can compare any two versions the same way.
//! Secret env variables are compared by value (their sealed values opened in memory) but
//! reported by name only: a [`Change`] of a secret never carries a value.

use serde::{Deserialize, Serialize};

/// How a field differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    Added,
    Changed,
    Removed,
}

/// One difference between two releases.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The field as a user would write it: `memory_bytes`, `env["LOG_LEVEL"]`.
    pub field: String,
    pub kind: ChangeKind,
    /// The older value, readable ('' when added, and always for secrets).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub before: String,
    /// The newer value, readable ('' when removed, and always for secrets).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub after: String,
    /// A secret env variable: never a value.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
}
