//! Workflow templates: declared parameters, checking a definition, comparing two, and
//! binding parameters into a workflow at a run.

use std::collections::BTreeMap;

use crate::access::auth::Identity;
use crate::error::{Error, Result};
use crate::templates::Templates;
use crate::templates::diff::Change;
use crate::templates::spec::{Parameter, WorkflowSpec};
use crate::templates::store::{ReleaseRow, TemplateRow};
use crate::work::requests::RequestView;
use crate::work::spec::SpecDefaults;
use crate::work::workflow::StepInput;

/// A workflow template's spec as a caller sent it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkflowSpecInput {
    pub parameters: Vec<Parameter>,
    pub steps: Vec<StepInput>,
}

/// Checks a workflow template definition; returns the stored spec and its secret values
/// keyed `STEP/KEY` (to be sealed).
pub fn check(
    _input: &WorkflowSpecInput,
    _defaults: &SpecDefaults,
) -> Result<(WorkflowSpec, BTreeMap<String, String>)> {
    Err(Error::FailedPrecondition(
        "workflow templates are not available yet".into(),
    ))
}

/// What differs from `old` to `new`; secrets by name only.
pub fn compare(
    _old: &WorkflowSpec,
    _old_secrets: &BTreeMap<String, String>,
    _new: &WorkflowSpec,
    _new_secrets: &BTreeMap<String, String>,
) -> Vec<Change> {
    Vec::new()
}

/// Submits the workflow of `release` of `template` (in `workspace`) with `params` bound.
pub(crate) async fn run(
    _templates: &Templates,
    _caller: &Identity,
    _template: &TemplateRow,
    _workspace: &str,
    _release: &ReleaseRow,
    _secrets: BTreeMap<String, String>,
    _params: &BTreeMap<String, String>,
) -> Result<RequestView> {
    Err(Error::FailedPrecondition(
        "workflow templates are not available yet".into(),
    ))
}
