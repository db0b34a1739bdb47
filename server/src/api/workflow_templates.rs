//! Workflow template specs on the wire: `WorkflowTemplateSpec` to the domain's
//! `WorkflowSpecInput`, and a stored `WorkflowSpec` back.
//!
//! Steps are read exactly as `SubmitWorkflow` reads them
//! ([`crate::api::work_requests::step_from_proto`]); what a stored step holds is written
//! back as a `WorkflowStep` whose string fields may still name parameters. Secret env
//! values are never written back: `ContainerSpec.secret_env` stays empty and the release's
//! `secret_env_keys` names them (`STEP/KEY`).

use berth_common::proto::{self, WorkflowTemplateSpec};
use berth_core::error::{Error, Result};
use berth_core::templates::spec::{ParamType, Parameter, StepText, WorkflowSpec};
use berth_core::templates::workflows::WorkflowSpecInput;

use crate::api::duration_ms;
use crate::api::work_requests::{outputs_to_proto, step_from_proto};

fn parameter_from_proto(i: usize, p: proto::TemplateParameter) -> Result<Parameter> {
    let kind = match proto::ParameterType::try_from(p.r#type) {
        Ok(proto::ParameterType::Unspecified | proto::ParameterType::String) => ParamType::String,
        Ok(proto::ParameterType::Integer) => ParamType::Integer,
        Ok(proto::ParameterType::Number) => ParamType::Number,
        Ok(proto::ParameterType::Boolean) => ParamType::Boolean,
        Err(_) => {
            return Err(Error::InvalidArgument(format!(
                "parameters[{i}].type: unknown value {}; use PARAMETER_TYPE_STRING, PARAMETER_TYPE_INTEGER, PARAMETER_TYPE_NUMBER or PARAMETER_TYPE_BOOLEAN",
                p.r#type
            )));
        }
    };
    Ok(Parameter {
        name: p.name,
        kind,
        default: p.default,
        required: p.required,
        description: p.description,
    })
}

fn parameter_to_proto(p: &Parameter) -> proto::TemplateParameter {
    proto::TemplateParameter {
        name: p.name.clone(),
        r#type: match p.kind {
            ParamType::String => proto::ParameterType::String,
            ParamType::Integer => proto::ParameterType::Integer,
            ParamType::Number => proto::ParameterType::Number,
            ParamType::Boolean => proto::ParameterType::Boolean,
        } as i32,
        default: p.default.clone(),
        required: p.required,
        description: p.description.clone(),
    }
}

/// A workflow template spec as sent.
pub(crate) fn spec_from_proto(spec: WorkflowTemplateSpec) -> Result<WorkflowSpecInput> {
    Ok(WorkflowSpecInput {
        parameters: spec
            .parameters
            .into_iter()
            .enumerate()
            .map(|(i, p)| parameter_from_proto(i, p))
            .collect::<Result<_>>()?,
        steps: spec
            .steps
            .into_iter()
            .map(step_from_proto)
            .collect::<Result<_>>()?,
    })
}

fn pull_policy_to_proto(text: &str) -> proto::PullPolicy {
    match text {
        "always" => proto::PullPolicy::Always,
        "if-not-present" => proto::PullPolicy::IfNotPresent,
        "never" => proto::PullPolicy::Never,
        _ => proto::PullPolicy::Unspecified,
    }
}

fn step_to_proto(step: &StepText) -> proto::WorkflowStep {
    let spec = proto::ContainerSpec {
        ports: Vec::new(),
        image: step.image.clone(),
        command: step.command.clone(),
        env: step
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        // Write-only: the release lists the names.
        secret_env: Default::default(),
        working_dir: step.working_dir.clone(),
        memory_bytes: step.memory_bytes,
        cpus: step.cpus,
        pids_limit: step.pids_limit,
        timeout: step.timeout_ms.map(duration_ms),
        network: step.network.clone(),
        pull_policy: pull_policy_to_proto(&step.pull_policy) as i32,
        stop_grace_period: step.stop_grace_period_ms.map(duration_ms),
        networks: step
            .networks
            .iter()
            .map(|n| proto::NetworkAttachment {
                name: n.name.clone(),
                aliases: n.aliases.clone(),
            })
            .collect(),
    };
    // A step naming a job template that overrides nothing has no spec, as it was sent.
    let spec = (step.template.is_empty()
        || spec != proto::ContainerSpec::default()
        || !step.secret_env_keys.is_empty())
    .then_some(spec);
    proto::WorkflowStep {
        name: step.name.clone(),
        spec,
        needs: step.needs.clone(),
        requirements: step
            .requirements
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        allow_failure: step.allow_failure,
        priority: step.priority,
        inputs: step
            .inputs
            .iter()
            .map(|i| proto::Input {
                artifact: i.artifact.clone(),
                mount: i.mount.clone(),
                from: i.from.clone(),
            })
            .collect(),
        outputs: outputs_to_proto(&step.outputs),
        output_category: step.output_category.clone(),
        template: step.template.clone(),
    }
}

/// A stored workflow template spec as the API returns it (no secret values).
pub(crate) fn spec_to_proto(spec: &WorkflowSpec) -> WorkflowTemplateSpec {
    WorkflowTemplateSpec {
        parameters: spec.parameters.iter().map(parameter_to_proto).collect(),
        steps: spec.steps.iter().map(step_to_proto).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::templates::workflows::check;
    use berth_core::work::spec::SpecDefaults;

    fn sent() -> WorkflowTemplateSpec {
        WorkflowTemplateSpec {
            parameters: vec![proto::TemplateParameter {
                name: "tag".into(),
                r#type: proto::ParameterType::String as i32,
                default: Some("1.36".into()),
                required: false,
                description: "image tag".into(),
            }],
            steps: vec![
                proto::WorkflowStep {
                    name: "build".into(),
                    spec: Some(proto::ContainerSpec {
                        image: "busybox:${{ params.tag }}".into(),
                        command: vec!["true".into()],
                        working_dir: "/work".into(),
                        secret_env: [("TOKEN".to_owned(), "s3cret-value".to_owned())].into(),
                        timeout: Some(duration_ms(30_000)),
                        pull_policy: proto::PullPolicy::Never as i32,
                        ..Default::default()
                    }),
                    outputs: vec![proto::Output {
                        path: "dist/**".into(),
                        when: proto::OutputWhen::Always as i32,
                    }],
                    ..Default::default()
                },
                proto::WorkflowStep {
                    name: "deploy".into(),
                    needs: vec!["build".into()],
                    template: "web".into(),
                    ..Default::default()
                },
            ],
        }
    }

    #[test]
    fn a_stored_spec_reads_back_as_sent_without_secret_values() {
        let input = spec_from_proto(sent()).expect("reads");
        let (stored, secrets) = check(&input, &SpecDefaults::default()).expect("valid");
        assert_eq!(secrets.len(), 1);
        let back = spec_to_proto(&stored);
        let mut expected = sent();
        if let Some(spec) = expected.steps[0].spec.as_mut() {
            spec.secret_env.clear();
        }
        assert_eq!(back, expected);
        assert!(!format!("{back:?}").contains("s3cret-value"));
    }

    #[test]
    fn an_unknown_parameter_type_is_refused_naming_it() {
        let mut spec = sent();
        spec.parameters[0].r#type = 99;
        let Err(Error::InvalidArgument(m)) = spec_from_proto(spec) else {
            panic!("expected INVALID_ARGUMENT");
        };
        assert!(m.starts_with("parameters[0].type: unknown value 99"), "{m}");
    }
}
