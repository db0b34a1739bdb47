//! `completion` rules: fire when a work request from a template (or with given
//! requirement labels) ends with one of the given results; the run gets the ended
//! request's id and outputs.
//!
//! The results are the words a user sees for how a request ended: `success`, `failure`
//! and `error` (it completed with that result), `cancelled` (a user cancelled it) and
//! `aborted` (it ended without running to a result for another reason: a dependency
//! did not succeed, or it was rejected). [`EndedAs`] is the one mapping from a request's
//! stored status, result and reason to these words, in Rust and in SQL.
//!
//! What it owns: checking a completion rule's configuration. It reads the workspace's
//! templates to find the one named, and nothing else; [`super::watch`] finds the ended
//! requests.

use std::collections::BTreeMap;

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::store::schema::workspaces;
use crate::templates::store as templates;
use crate::triggers::CompletionInput;
use crate::work::spec::validate_label;
use crate::work::state::{Reason, Status, WorkResult};

/// At most this many labels (as many as a request may have requirements).
const MAX_LABELS: usize = 64;

/// A completion rule as stored (the rule's `config`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletionConfig {
    /// The template's name ('' for any request).
    pub template: String,
    /// Its id, found when the rule was made.
    pub template_id: Option<Uuid>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `success`, `failure`, `error`, `cancelled`, `aborted` (see [`EndedAs`]).
    pub results: Vec<String>,
}

impl CompletionConfig {
    /// Reads a stored configuration.
    pub fn from_value(value: &serde_json::Value) -> Result<CompletionConfig> {
        serde_json::from_value(value.clone())
            .map_err(|e| Error::internal(format!("stored completion rule unreadable: {e}")))
    }
}

/// How a request ended, as a completion rule names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndedAs {
    Success,
    Failure,
    Error,
    Cancelled,
    Aborted,
}

impl EndedAs {
    /// Every one, in the order they are listed to users.
    pub const ALL: [EndedAs; 5] = [
        EndedAs::Success,
        EndedAs::Failure,
        EndedAs::Error,
        EndedAs::Cancelled,
        EndedAs::Aborted,
    ];

    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            EndedAs::Success => "success",
            EndedAs::Failure => "failure",
            EndedAs::Error => "error",
            EndedAs::Cancelled => "cancelled",
            EndedAs::Aborted => "aborted",
        }
    }

    /// The text back; `None` for anything else.
    pub fn parse(text: &str) -> Option<EndedAs> {
        EndedAs::ALL.into_iter().find(|e| e.as_str() == text)
    }

    /// How a request with this stored status, result and reason ended; `None` while it
    /// has not.
    pub(crate) fn of(status: Status, result: Option<WorkResult>, reason: Reason) -> Option<Self> {
        match (status, result) {
            (Status::Completed, Some(WorkResult::Success)) => Some(EndedAs::Success),
            (Status::Completed, Some(WorkResult::Failure)) => Some(EndedAs::Failure),
            (Status::Completed, Some(WorkResult::Error)) => Some(EndedAs::Error),
            (Status::Aborted, _) if reason == Reason::Cancelled => Some(EndedAs::Cancelled),
            (Status::Aborted, _) => Some(EndedAs::Aborted),
            _ => None,
        }
    }

    /// The same mapping as an SQL condition over a row of `work_requests` aliased `wr`,
    /// written from the stored texts of the typed states.
    pub(crate) fn sql_condition(self) -> String {
        let completed = |result: WorkResult| {
            format!(
                "(wr.status = '{}' AND wr.result = '{}')",
                Status::Completed.as_str(),
                result.as_str()
            )
        };
        let aborted = |op: &str| {
            format!(
                "(wr.status = '{}' AND wr.reason {op} '{}')",
                Status::Aborted.as_str(),
                Reason::Cancelled.as_str()
            )
        };
        match self {
            EndedAs::Success => completed(WorkResult::Success),
            EndedAs::Failure => completed(WorkResult::Failure),
            EndedAs::Error => completed(WorkResult::Error),
            EndedAs::Cancelled => aborted("="),
            EndedAs::Aborted => aborted("<>"),
        }
    }
}

fn words() -> String {
    EndedAs::ALL
        .iter()
        .map(|e| e.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks what needs no database: labels and results, normalized (results deduplicated
/// in the order given; none means `failure`).
fn check_plain(input: &CompletionInput) -> Result<(BTreeMap<String, String>, Vec<String>)> {
    if input.template.is_empty() && input.labels.is_empty() {
        return Err(Error::InvalidArgument(
            "completion.template: give a template (its requests fire the rule) or labels (requests carrying them fire it), or both".into(),
        ));
    }
    if input.labels.len() > MAX_LABELS {
        return Err(Error::InvalidArgument(format!(
            "completion.labels: has {} labels; at most {MAX_LABELS} are allowed",
            input.labels.len()
        )));
    }
    for (key, value) in &input.labels {
        validate_label(key, value)
            .map_err(|m| Error::InvalidArgument(format!("completion.labels[{key:?}]: {m}")))?;
    }
    let mut results: Vec<String> = Vec::new();
    for (i, text) in input.results.iter().enumerate() {
        let Some(ended) = EndedAs::parse(text) else {
            return Err(Error::InvalidArgument(format!(
                "completion.results[{i}]: {text:?} is not a result; use one of {}",
                words()
            )));
        };
        if !results.iter().any(|r| r == ended.as_str()) {
            results.push(ended.as_str().to_owned());
        }
    }
    if results.is_empty() {
        results.push(EndedAs::Failure.as_str().to_owned());
    }
    Ok((input.labels.clone(), results))
}

/// Checks a completion rule of workspace `workspace_id` (its template must exist there);
/// errors name the field (`completion.results[0]`…).
pub async fn check(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    input: &CompletionInput,
) -> Result<CompletionConfig> {
    let (labels, results) = check_plain(input)?;
    let template_id = if input.template.is_empty() {
        None
    } else {
        let workspace: String = workspaces::table
            .find(workspace_id)
            .select(workspaces::name)
            .first(conn)
            .await?;
        let row = templates::find(conn, workspace_id, &workspace, &input.template, None)
            .await
            .map_err(|e| match e {
                Error::NotFound(m) => Error::NotFound(format!("completion.template: {m}")),
                Error::FailedPrecondition(m) => {
                    Error::FailedPrecondition(format!("completion.template: {m}"))
                }
                other => other,
            })?;
        Some(row.id)
    };
    Ok(CompletionConfig {
        template: input.template.clone(),
        template_id,
        labels,
        results,
    })
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

    use super::*;

    fn input(template: &str, labels: &[(&str, &str)], results: &[&str]) -> CompletionInput {
        CompletionInput {
            template: template.into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            results: results.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    fn refusal(input: &CompletionInput) -> String {
        match check_plain(input) {
            Err(Error::InvalidArgument(m)) => m,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn a_template_or_labels_are_required() {
        let m = refusal(&input("", &[], &["failure"]));
        assert!(m.starts_with("completion.template: "), "{m}");
        check_plain(&input("nightly", &[], &[])).unwrap();
        check_plain(&input("", &[("os", "linux")], &[])).unwrap();
    }

    #[test]
    fn results_default_to_failure_and_are_deduplicated() {
        let (_, results) = check_plain(&input("t", &[], &[])).unwrap();
        assert_eq!(results, ["failure"]);
        let (_, results) =
            check_plain(&input("t", &[], &["cancelled", "success", "cancelled"])).unwrap();
        assert_eq!(results, ["cancelled", "success"]);
        for word in ["success", "failure", "error", "cancelled", "aborted"] {
            check_plain(&input("t", &[], &[word])).unwrap();
        }
    }

    #[test]
    fn an_unknown_result_is_refused_by_its_index() {
        let m = refusal(&input("t", &[], &["success", "FAILURE"]));
        assert!(
            m.starts_with("completion.results[1]: \"FAILURE\" is not a result"),
            "{m}"
        );
        assert!(
            m.contains("success, failure, error, cancelled, aborted"),
            "{m}"
        );
        let m = refusal(&input("t", &[], &["failed"]));
        assert!(m.starts_with("completion.results[0]: "), "{m}");
    }

    #[test]
    fn labels_follow_the_requirement_rules() {
        let m = refusal(&input("", &[("bad key", "x")], &[]));
        assert!(m.starts_with("completion.labels[\"bad key\"]: "), "{m}");
        let long = "v".repeat(256);
        let m = refusal(&input("", &[("os", &long)], &[]));
        assert!(m.starts_with("completion.labels[\"os\"]: "), "{m}");
        let many: Vec<(String, String)> = (0..=MAX_LABELS)
            .map(|i| (format!("k{i}"), "v".into()))
            .collect();
        let refs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let m = refusal(&input("", &refs, &[]));
        assert!(m.starts_with("completion.labels: has 65 labels"), "{m}");
    }

    #[test]
    fn every_ending_has_its_word() {
        use Reason as R;
        use Status as S;
        use WorkResult as W;
        assert_eq!(
            EndedAs::of(S::Completed, Some(W::Success), R::None),
            Some(EndedAs::Success)
        );
        assert_eq!(
            EndedAs::of(S::Completed, Some(W::Failure), R::Timeout),
            Some(EndedAs::Failure)
        );
        assert_eq!(
            EndedAs::of(S::Completed, Some(W::Error), R::ImagePull),
            Some(EndedAs::Error)
        );
        assert_eq!(
            EndedAs::of(S::Aborted, None, R::Cancelled),
            Some(EndedAs::Cancelled)
        );
        assert_eq!(
            EndedAs::of(S::Aborted, None, R::DependencyFailed),
            Some(EndedAs::Aborted)
        );
        for open in [S::Blocked, S::Pending, S::Running] {
            assert_eq!(EndedAs::of(open, None, R::None), None);
        }
    }

    #[test]
    fn the_sql_names_the_stored_states() {
        assert_eq!(
            EndedAs::Failure.sql_condition(),
            "(wr.status = 'completed' AND wr.result = 'failure')"
        );
        assert_eq!(
            EndedAs::Cancelled.sql_condition(),
            "(wr.status = 'aborted' AND wr.reason = 'cancelled')"
        );
        assert_eq!(
            EndedAs::Aborted.sql_condition(),
            "(wr.status = 'aborted' AND wr.reason <> 'cancelled')"
        );
    }
}
