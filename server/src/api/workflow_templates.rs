//! Workflow template specs on the wire: `WorkflowTemplateSpec` to the domain's
//! `WorkflowSpecInput`, and a stored `WorkflowSpec` back.

use berth_common::proto::WorkflowTemplateSpec;
use berth_core::error::{Error, Result};
use berth_core::templates::spec::WorkflowSpec;
use berth_core::templates::workflows::WorkflowSpecInput;

/// A workflow template spec as sent.
pub(crate) fn spec_from_proto(_spec: WorkflowTemplateSpec) -> Result<WorkflowSpecInput> {
    Err(Error::FailedPrecondition(
        "workflow templates are not available yet".into(),
    ))
}

/// A stored workflow template spec as the API returns it (no secret values).
pub(crate) fn spec_to_proto(_spec: &WorkflowSpec) -> WorkflowTemplateSpec {
    WorkflowTemplateSpec::default()
}
