//! Workflow templates: declared parameters, checking a definition, comparing two, and
//! binding parameters into a workflow at a run.
//!
//! A workflow template is today's workflow (steps forming a DAG) stored by name, plus
//! declared parameters. Any string field of a step may name a parameter as
//! `${{ params.NAME }}` (spaces inside the braces are optional): the image, command
//! arguments, env and secret env values, the working directory, the network and the
//! networks' names and aliases, requirement values, input artifacts and mounts, output
//! paths and the job template a step names. Typed fields (memory, CPUs, pids, timeouts,
//! priority, the pull policy, `allow_failure`) and structural ones (step names, `needs`,
//! map keys) hold no placeholders. Any `${{` starts a placeholder; one that is not
//! closed, or names anything but `params.NAME`, is refused.
//!
//! What it owns:
//! - [`check`]: a new definition is refused at create/set, not at run, when it is
//!   broken: every parameter declaration is checked, every reference must name a declared
//!   parameter, and the workflow, with each parameter bound to its default or a sample
//!   value of its type, must pass [`crate::work::workflow::validate`]. Errors name the
//!   step and field.
//! - [`compare`]: the differences between two definitions, per step and field; secret env
//!   variables by name only.
//! - [`run`]: binding a run's parameter values (unknown, missing required and ill-typed
//!   ones are refused naming them), substituting them, and submitting the workflow.
//!
//! What it must not touch: work requests (a run goes through
//! [`Templates::submit_workflow`], which resolves job templates named by steps and
//! checks the workflow exactly as `SubmitWorkflow` does) and template rows and releases
//! (the front in [`crate::templates::manage`] stores what [`check`] returns). Secret env
//! values are kept out of the stored spec (they are returned apart, keyed `STEP/KEY`, to
//! be sealed) and never appear in an error or a [`Change`].

use std::collections::{BTreeMap, HashMap};

use crate::access::auth::Identity;
use crate::error::{Error, Result};
use crate::templates::Templates;
use crate::templates::diff::{self, Change, ChangeKind};
use crate::templates::spec::{
    ParamType, Parameter, ReleaseSpec, StepInputText, StepText, WorkflowSpec,
};
use crate::templates::store::{ReleaseRow, TemplateRow};
use crate::work::requests::{Origin, RequestView};
use crate::work::spec::{InputInput, PullPolicy, RawDuration, SpecDefaults, SpecInput};
use crate::work::state::Kind;
use crate::work::workflow::{self, StepInput, WorkflowInput};

/// The most parameters one template may declare.
pub const MAX_PARAMETERS: usize = 100;
/// The longest parameter description, in characters.
const MAX_DESCRIPTION: usize = 1000;
/// The longest parameter default or value, in bytes (a step's fields have their own
/// limits after substitution; this keeps a single value from being absurd).
const MAX_VALUE: usize = 64 * 1024;

/// A workflow template's spec as a caller sent it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkflowSpecInput {
    pub parameters: Vec<Parameter>,
    pub steps: Vec<StepInput>,
}

fn invalid(message: String) -> Error {
    Error::InvalidArgument(message)
}

// ----- parameters -----

/// Whether `name` is a parameter name: a letter, then up to 62 letters, digits or `_`.
fn is_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn type_name(kind: ParamType) -> &'static str {
    match kind {
        ParamType::String => "string",
        ParamType::Integer => "integer",
        ParamType::Number => "number",
        ParamType::Boolean => "boolean",
    }
}

/// `value` read as `kind`, in the form substituted into steps (integers and booleans
/// normalised, numbers and strings as given); `None` when it is not of the type.
fn typed_value(kind: ParamType, value: &str) -> Option<String> {
    match kind {
        ParamType::String => Some(value.to_owned()),
        ParamType::Integer => value.trim().parse::<i64>().ok().map(|n| n.to_string()),
        ParamType::Number => {
            let text = value.trim();
            text.parse::<f64>()
                .ok()
                .filter(|n| n.is_finite())
                .map(|_| text.to_owned())
        }
        ParamType::Boolean => match value.trim() {
            "true" => Some("true".to_owned()),
            "false" => Some("false".to_owned()),
            _ => None,
        },
    }
}

fn type_hint(kind: ParamType) -> &'static str {
    match kind {
        ParamType::String => "any text",
        ParamType::Integer => "a whole number such as 42 or -3",
        ParamType::Number => "a number such as 0.5 or 1e3",
        ParamType::Boolean => "true or false",
    }
}

/// A value of `kind` that any field accepts where a value of that type fits, used to
/// check a definition's structure before a run gives real values.
fn sample(kind: ParamType) -> &'static str {
    match kind {
        ParamType::String => "sample",
        ParamType::Integer | ParamType::Number => "1",
        ParamType::Boolean => "true",
    }
}

/// Checks the declared parameters: names, uniqueness, count, defaults of their type, and
/// no `required` parameter with a default.
fn check_parameters(parameters: &[Parameter]) -> Result<()> {
    if parameters.len() > MAX_PARAMETERS {
        return Err(invalid(format!(
            "parameters: {} parameters; at most {MAX_PARAMETERS} are allowed",
            parameters.len()
        )));
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, p) in parameters.iter().enumerate() {
        if !is_param_name(&p.name) {
            return Err(invalid(format!(
                "parameters[{i}].name: {:?} is not a parameter name; use 1-63 letters, digits and '_', starting with a letter",
                p.name
            )));
        }
        if let Some(first) = seen.insert(p.name.as_str(), i) {
            return Err(invalid(format!(
                "parameters[{i}].name: {:?} is also the name of parameters[{first}]; parameter names must be unique",
                p.name
            )));
        }
        let at = format!("parameters[{:?}]", p.name);
        if p.description.chars().count() > MAX_DESCRIPTION {
            return Err(invalid(format!(
                "{at}.description: at most {MAX_DESCRIPTION} characters are allowed"
            )));
        }
        if let Some(default) = &p.default {
            if p.required {
                return Err(invalid(format!(
                    "{at}: is required and has a default; a required parameter must be given at every run, so its default would never be used — drop `required` or the default"
                )));
            }
            if default.len() > MAX_VALUE {
                return Err(invalid(format!(
                    "{at}.default: {} bytes; at most {MAX_VALUE} are allowed",
                    default.len()
                )));
            }
            if typed_value(p.kind, default).is_none() {
                return Err(invalid(format!(
                    "{at}.default: {default:?} is not of type {}; give {}",
                    type_name(p.kind),
                    type_hint(p.kind)
                )));
            }
        }
    }
    Ok(())
}

/// Binds a run's `given` values to the declared `parameters`: every given name must be
/// declared and of its type, every required parameter given; the others take their
/// default, or the empty text when they have none. Returns the values to substitute.
fn bind(
    parameters: &[Parameter],
    given: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>> {
    for name in given.keys() {
        if !parameters.iter().any(|p| &p.name == name) {
            let declared: Vec<&str> = parameters.iter().map(|p| p.name.as_str()).collect();
            let takes = if declared.is_empty() {
                "it declares none".to_owned()
            } else {
                format!("it declares {}", declared.join(", "))
            };
            return Err(invalid(format!(
                "params[{name:?}]: this template has no parameter {name:?}; {takes}"
            )));
        }
    }
    let mut values = BTreeMap::new();
    for p in parameters {
        let value = match (given.get(&p.name), &p.default) {
            (Some(value), _) => {
                if value.len() > MAX_VALUE {
                    return Err(invalid(format!(
                        "params[{:?}]: {} bytes; at most {MAX_VALUE} are allowed",
                        p.name,
                        value.len()
                    )));
                }
                typed_value(p.kind, value).ok_or_else(|| {
                    invalid(format!(
                        "params[{:?}]: {value:?} is not of type {}; give {}",
                        p.name,
                        type_name(p.kind),
                        type_hint(p.kind)
                    ))
                })?
            }
            (None, _) if p.required => {
                return Err(invalid(format!(
                    "params[{:?}]: is required ({}); give a value for it",
                    p.name,
                    type_name(p.kind)
                )));
            }
            // Checked at create/set: a stored default is of its type.
            (None, Some(default)) => typed_value(p.kind, default).unwrap_or_default(),
            (None, None) => String::new(),
        };
        values.insert(p.name.clone(), value);
    }
    Ok(values)
}

// ----- placeholders -----

/// Why a text's placeholders could not be substituted. Never holds the text itself (it
/// may be a secret value).
#[derive(Debug, PartialEq, Eq)]
enum Placeholder {
    /// A `${{` without `}}`.
    Unclosed,
    /// `${{ ... }}` that is not `params.NAME`; holds what is inside (never from a secret).
    NotAParameter(String),
    /// `${{ params.NAME }}` for an undeclared NAME.
    Unknown(String),
}

/// `text` with every `${{ params.NAME }}` replaced by `value(NAME)`, in one pass (a
/// substituted value is not scanned again).
fn expand<'v>(
    text: &str,
    value: impl Fn(&str) -> Option<&'v str>,
) -> std::result::Result<String, Placeholder> {
    const OPEN: &str = "${{";
    const CLOSE: &str = "}}";
    if !text.contains(OPEN) {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len()..];
        let end = after.find(CLOSE).ok_or(Placeholder::Unclosed)?;
        let inner = after[..end].trim();
        let name = inner
            .strip_prefix("params.")
            .filter(|n| is_param_name(n))
            .ok_or_else(|| Placeholder::NotAParameter(inner.chars().take(80).collect()))?;
        out.push_str(value(name).ok_or_else(|| Placeholder::Unknown(name.to_owned()))?);
        rest = &after[end + CLOSE.len()..];
    }
    out.push_str(rest);
    Ok(out)
}

fn placeholder_error(field: &str, secret: bool, problem: Placeholder) -> Error {
    invalid(match problem {
        Placeholder::Unclosed => format!(
            "{field}: a `${{{{` is not closed; write a parameter as `${{{{ params.NAME }}}}`"
        ),
        Placeholder::NotAParameter(_) if secret => format!(
            "{field}: holds a `${{{{ ... }}}}` that names no parameter; write a parameter as `${{{{ params.NAME }}}}`"
        ),
        Placeholder::NotAParameter(inner) => format!(
            "{field}: `${{{{ {inner} }}}}` names no parameter; write a parameter as `${{{{ params.NAME }}}}`"
        ),
        Placeholder::Unknown(name) => format!(
            "{field}: names parameter {name:?}, which is not declared; declare it under `parameters` or remove the reference"
        ),
    })
}

/// Calls `f` on every string field of `step` that may hold placeholders, with the field's
/// name as errors write it (`steps["build"].env["MODE"]`).
fn each_text(
    step: &mut StepText,
    f: &mut impl FnMut(&str, &mut String) -> Result<()>,
) -> Result<()> {
    let at = format!("steps[{:?}]", step.name);
    f(&format!("{at}.template"), &mut step.template)?;
    f(&format!("{at}.spec.image"), &mut step.image)?;
    for (i, arg) in step.command.iter_mut().enumerate() {
        f(&format!("{at}.spec.command[{i}]"), arg)?;
    }
    for (key, value) in &mut step.env {
        f(&format!("{at}.spec.env[{key:?}]"), value)?;
    }
    f(&format!("{at}.spec.working_dir"), &mut step.working_dir)?;
    f(&format!("{at}.spec.network"), &mut step.network)?;
    for (i, network) in step.networks.iter_mut().enumerate() {
        f(&format!("{at}.spec.networks[{i}].name"), &mut network.name)?;
        for (j, alias) in network.aliases.iter_mut().enumerate() {
            f(&format!("{at}.spec.networks[{i}].aliases[{j}]"), alias)?;
        }
    }
    for (key, value) in &mut step.requirements {
        f(&format!("{at}.requirements[{key:?}]"), value)?;
    }
    for (i, input) in step.inputs.iter_mut().enumerate() {
        f(&format!("{at}.inputs[{i}].artifact"), &mut input.artifact)?;
        f(&format!("{at}.inputs[{i}].mount"), &mut input.mount)?;
    }
    for (i, output) in step.outputs.iter_mut().enumerate() {
        f(&format!("{at}.outputs[{i}].path"), &mut output.path)?;
    }
    Ok(())
}

/// The secret key of `step`'s variable `key` in a release's sealed map.
fn secret_key(step: &str, key: &str) -> String {
    format!("{step}/{key}")
}

/// `steps` and their `secrets` with `values` substituted. An unknown or malformed
/// placeholder is INVALID_ARGUMENT naming the step and field (and, for a secret, never
/// its value).
fn substitute(
    steps: &[StepText],
    secrets: &BTreeMap<String, String>,
    values: &BTreeMap<String, String>,
) -> Result<(Vec<StepText>, BTreeMap<String, String>)> {
    let lookup = |name: &str| values.get(name).map(String::as_str);
    let mut bound = steps.to_vec();
    for step in &mut bound {
        each_text(step, &mut |field, text| {
            *text = expand(text, lookup).map_err(|p| placeholder_error(field, false, p))?;
            Ok(())
        })?;
    }
    let mut bound_secrets = BTreeMap::new();
    for (key, value) in secrets {
        let field = match key.split_once('/') {
            Some((step, name)) => format!("steps[{step:?}].spec.secret_env[{name:?}]"),
            None => format!("secret_env[{key:?}]"),
        };
        let value = expand(value, lookup).map_err(|p| placeholder_error(&field, true, p))?;
        bound_secrets.insert(key.clone(), value);
    }
    Ok((bound, bound_secrets))
}

// ----- steps as text and back -----

fn pull_policy_text(policy: Option<PullPolicy>) -> String {
    match policy {
        None => String::new(),
        Some(PullPolicy::Always) => "always".into(),
        Some(PullPolicy::IfNotPresent) => "if-not-present".into(),
        Some(PullPolicy::Never) => "never".into(),
    }
}

fn pull_policy_of(step: &str, text: &str) -> Result<Option<PullPolicy>> {
    match text {
        "" => Ok(None),
        "always" => Ok(Some(PullPolicy::Always)),
        "if-not-present" => Ok(Some(PullPolicy::IfNotPresent)),
        "never" => Ok(Some(PullPolicy::Never)),
        other => Err(Error::internal(format!(
            "stored workflow template step {step:?} has an unknown pull policy {other:?}"
        ))),
    }
}

/// Milliseconds of a duration, rounded up so a positive one never becomes zero.
fn millis(field: &str, d: Option<RawDuration>) -> Result<Option<u64>> {
    d.map(|raw| {
        let d = raw
            .to_std(field)
            .map_err(|e| invalid(format!("{}: {}", e.field, e.message)))?;
        let ms = d.as_millis() + u128::from(d.subsec_nanos() % 1_000_000 != 0);
        u64::try_from(ms).map_err(|_| invalid(format!("{field}: is too long")))
    })
    .transpose()
}

/// A step as sent, as stored text, with its secret values moved into `secrets`.
fn to_text(step: &StepInput, secrets: &mut BTreeMap<String, String>) -> Result<StepText> {
    let spec = step.spec.clone().unwrap_or_default();
    let at = format!("steps[{:?}].spec", step.name);
    let mut secret_env_keys: Vec<String> = spec.secret_env.keys().cloned().collect();
    secret_env_keys.sort();
    for (key, value) in &spec.secret_env {
        secrets.insert(secret_key(&step.name, key), value.clone());
    }
    Ok(StepText {
        name: step.name.clone(),
        template: step.template.clone(),
        image: spec.image,
        command: spec.command,
        env: spec.env.into_iter().collect(),
        secret_env_keys,
        working_dir: spec.working_dir,
        memory_bytes: spec.memory_bytes,
        cpus: spec.cpus,
        pids_limit: spec.pids_limit,
        timeout_ms: millis(&format!("{at}.timeout"), spec.timeout)?,
        stop_grace_period_ms: millis(&format!("{at}.stop_grace_period"), spec.stop_grace_period)?,
        network: spec.network,
        networks: spec.networks,
        pull_policy: pull_policy_text(spec.pull_policy),
        needs: step.needs.clone(),
        requirements: step.requirements.clone().into_iter().collect(),
        allow_failure: step.allow_failure,
        priority: step.priority,
        inputs: step
            .inputs
            .iter()
            .map(|i| StepInputText {
                artifact: i.artifact.clone(),
                mount: i.mount.clone(),
                from: i.from.clone(),
            })
            .collect(),
        outputs: step.outputs.clone(),
        output_category: step.output_category.clone(),
    })
}

/// A stored step (placeholders substituted) as a step to submit, with its secret values
/// taken from `secrets`. A step naming a job template carries a spec only when it
/// overrides something.
fn to_input(step: &StepText, secrets: &BTreeMap<String, String>) -> Result<StepInput> {
    let mut secret_env = HashMap::new();
    for key in &step.secret_env_keys {
        let value = secrets.get(&secret_key(&step.name, key)).ok_or_else(|| {
            Error::internal(format!(
                "workflow template step {:?}: sealed value of secret {key:?} missing",
                step.name
            ))
        })?;
        secret_env.insert(key.clone(), value.clone());
    }
    let spec = SpecInput {
        image: step.image.clone(),
        command: step.command.clone(),
        env: step.env.clone().into_iter().collect(),
        secret_env,
        working_dir: step.working_dir.clone(),
        memory_bytes: step.memory_bytes,
        cpus: step.cpus,
        pids_limit: step.pids_limit,
        timeout: step.timeout_ms.map(RawDuration::from_millis),
        stop_grace_period: step.stop_grace_period_ms.map(RawDuration::from_millis),
        network: step.network.clone(),
        pull_policy: pull_policy_of(&step.name, &step.pull_policy)?,
        networks: step.networks.clone(),
        ports: Vec::new(),
    };
    let spec = if !step.template.is_empty() && spec == SpecInput::default() {
        None
    } else {
        Some(spec)
    };
    Ok(StepInput {
        name: step.name.clone(),
        spec,
        needs: step.needs.clone(),
        requirements: step.requirements.clone().into_iter().collect(),
        priority: step.priority,
        allow_failure: step.allow_failure,
        inputs: step
            .inputs
            .iter()
            .map(|i| InputInput {
                artifact: i.artifact.clone(),
                mount: i.mount.clone(),
                from: i.from.clone(),
            })
            .collect(),
        outputs: step.outputs.clone(),
        output_category: step.output_category.clone(),
        template: step.template.clone(),
        origin: None,
    })
}

// ----- check -----

/// An artifact id that parses, standing in for an input whose artifact names a
/// parameter: which artifact it is is known only at a run.
const SAMPLE_ARTIFACT: &str = "00000000-0000-0000-0000-000000000000";
/// An image standing in for the one a step's job template gives it (resolved at a run).
const SAMPLE_IMAGE: &str = "sample";

/// Refuses, now rather than at a run, a step naming a job template (parameters bound to
/// samples) whose reference cannot be one or whose spec sets what the template fixes;
/// see [`Templates::submit_workflow`].
fn check_template_step(step: &StepText) -> Result<()> {
    let at = format!("steps[{:?}]", step.name);
    // The form `runs::parse_reference` reads at a run (that module runs this one, so it
    // is not imported here): NAME, NAME@vK or NAME@K with K from 1.
    let well_formed = match step.template.split_once('@') {
        None => true,
        Some((name, version)) => {
            !name.is_empty()
                && version
                    .strip_prefix('v')
                    .unwrap_or(version)
                    .parse::<i32>()
                    .is_ok_and(|k| k >= 1)
        }
    };
    if !well_formed {
        return Err(invalid(format!(
            "{at}.template: {:?} is not a template reference: write NAME, NAME@vK or NAME@K with K a release number from 1",
            step.template
        )));
    }
    let fixed = [
        ("image", !step.image.is_empty()),
        ("working_dir", !step.working_dir.is_empty()),
        ("pids_limit", step.pids_limit.is_some()),
        ("stop_grace_period", step.stop_grace_period_ms.is_some()),
        ("network", !step.network.is_empty()),
        ("networks", !step.networks.is_empty()),
        ("pull_policy", !step.pull_policy.is_empty()),
    ];
    if let Some((field, _)) = fixed.iter().find(|(_, set)| *set) {
        return Err(invalid(format!(
            "{at}.spec.{field}: is set by the job template the step names; remove it or drop `template`"
        )));
    }
    Ok(())
}

/// Checks a workflow template definition; returns the stored spec and its secret values
/// keyed `STEP/KEY` (to be sealed). See the module docs.
pub fn check(
    input: &WorkflowSpecInput,
    defaults: &SpecDefaults,
) -> Result<(WorkflowSpec, BTreeMap<String, String>)> {
    check_parameters(&input.parameters)?;
    if input.steps.is_empty() {
        return Err(invalid(
            "steps: a workflow needs at least one step".to_owned(),
        ));
    }
    if input.steps.len() > workflow::MAX_STEPS {
        return Err(invalid(format!(
            "steps: {} steps; at most {} are allowed",
            input.steps.len(),
            workflow::MAX_STEPS
        )));
    }
    let mut secrets = BTreeMap::new();
    let steps = input
        .steps
        .iter()
        .map(|step| to_text(step, &mut secrets))
        .collect::<Result<Vec<_>>>()?;
    // Every reference names a declared parameter (checked field by field, so the error
    // names the step and field), and the workflow is sound with each parameter bound to
    // its default or a sample of its type.
    let samples: BTreeMap<String, String> = input
        .parameters
        .iter()
        .map(|p| {
            let value = p
                .default
                .as_deref()
                .and_then(|d| typed_value(p.kind, d))
                .unwrap_or_else(|| sample(p.kind).to_owned());
            (p.name.clone(), value)
        })
        .collect();
    let (mut bound, bound_secrets) = substitute(&steps, &secrets, &samples)?;
    for (written, step) in steps.iter().zip(&mut bound) {
        for (original, input) in written.inputs.iter().zip(&mut step.inputs) {
            if original.artifact.contains("${{") {
                input.artifact = SAMPLE_ARTIFACT.to_owned();
            }
        }
        // A step naming a job template is resolved at a run; here its structure (needs,
        // inputs, outputs) is checked with a stand-in image.
        if !step.template.is_empty() {
            check_template_step(step)?;
            step.template.clear();
            step.image = SAMPLE_IMAGE.to_owned();
        }
    }
    let trial = WorkflowInput {
        name: "template".to_owned(),
        workspace: String::new(),
        steps: bound
            .iter()
            .map(|s| to_input(s, &bound_secrets))
            .collect::<Result<Vec<_>>>()?,
        origin: None,
        id: None,
    };
    workflow::validate(&trial, defaults)?;
    Ok((
        WorkflowSpec {
            parameters: input.parameters.clone(),
            steps,
        },
        secrets,
    ))
}

// ----- compare -----

fn describe_parameter(p: &Parameter) -> String {
    let mut text = type_name(p.kind).to_owned();
    if p.required {
        text.push_str(", required");
    }
    if let Some(default) = &p.default {
        text.push_str(&format!(", default {default:?}"));
    }
    if !p.description.is_empty() {
        text.push_str(&format!(", {:?}", p.description));
    }
    text
}

fn change(field: String, kind: ChangeKind, before: String, after: String) -> Change {
    Change {
        field,
        kind,
        before,
        after,
        secret: false,
    }
}

/// A list as a summary shows it: elements with spaces or quotes quoted, space-separated.
fn words(items: &[String]) -> String {
    items
        .iter()
        .map(|a| {
            if a.is_empty() || a.contains(char::is_whitespace) || a.contains('"') {
                format!("{a:?}")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn networks_text(step: &StepText) -> String {
    step.networks
        .iter()
        .map(|n| {
            if n.aliases.is_empty() {
                n.name.clone()
            } else {
                format!("{}:{}", n.name, n.aliases.join(","))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn inputs_text(step: &StepText) -> String {
    step.inputs
        .iter()
        .map(|i| {
            let what = if i.from.is_empty() {
                i.artifact.clone()
            } else {
                format!("from {}", i.from)
            };
            if i.mount.is_empty() {
                what
            } else {
                format!("{what}:{}", i.mount)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn outputs_text(step: &StepText) -> String {
    step.outputs
        .iter()
        .map(|o| match o.when {
            crate::work::spec::OutputWhen::Success => o.path.clone(),
            crate::work::spec::OutputWhen::Always => format!("{} (always)", o.path),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The secret env of one step, by key, from a release's sealed map (values only to
/// compare, never to show).
fn step_secrets(step: &StepText, secrets: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    step.secret_env_keys
        .iter()
        .filter_map(|key| {
            secrets
                .get(&secret_key(&step.name, key))
                .map(|value| (key.clone(), value.clone()))
        })
        .collect()
}

/// The fields of one step that differ, as `steps["NAME"].FIELD`, worded as a job
/// template's are (see [`diff`](crate::templates::diff)).
fn compare_steps(
    out: &mut Vec<Change>,
    old: &StepText,
    old_secrets: &BTreeMap<String, String>,
    new: &StepText,
    new_secrets: &BTreeMap<String, String>,
) {
    let at = format!("steps[{:?}]", new.name);
    let mut push = |name: &str, before: String, after: String| {
        out.extend(diff::scalar(&format!("{at}.{name}"), before, after));
    };
    let opt = |v: Option<String>| v.unwrap_or_default();
    push("template", old.template.clone(), new.template.clone());
    push("image", old.image.clone(), new.image.clone());
    push("command", words(&old.command), words(&new.command));
    push(
        "working_dir",
        old.working_dir.clone(),
        new.working_dir.clone(),
    );
    push(
        "memory_bytes",
        opt(old.memory_bytes.map(diff::bytes)),
        opt(new.memory_bytes.map(diff::bytes)),
    );
    push(
        "cpus",
        opt(old.cpus.map(|c| c.to_string())),
        opt(new.cpus.map(|c| c.to_string())),
    );
    push(
        "pids_limit",
        opt(old.pids_limit.map(|p| p.to_string())),
        opt(new.pids_limit.map(|p| p.to_string())),
    );
    push(
        "timeout",
        opt(old.timeout_ms.map(diff::millis)),
        opt(new.timeout_ms.map(diff::millis)),
    );
    push(
        "stop_grace_period",
        opt(old.stop_grace_period_ms.map(diff::millis)),
        opt(new.stop_grace_period_ms.map(diff::millis)),
    );
    push("network", old.network.clone(), new.network.clone());
    push("networks", networks_text(old), networks_text(new));
    push(
        "pull_policy",
        old.pull_policy.clone(),
        new.pull_policy.clone(),
    );
    push("needs", words(&old.needs), words(&new.needs));
    let flag = |set: bool| {
        if set {
            "true".to_owned()
        } else {
            String::new()
        }
    };
    push(
        "allow_failure",
        flag(old.allow_failure),
        flag(new.allow_failure),
    );
    push(
        "priority",
        old.priority.to_string(),
        new.priority.to_string(),
    );
    push("inputs", inputs_text(old), inputs_text(new));
    push("outputs", outputs_text(old), outputs_text(new));
    push(
        "output_category",
        old.output_category.clone(),
        new.output_category.clone(),
    );
    out.extend(diff::map(&format!("{at}.env"), &old.env, &new.env, false));
    out.extend(diff::map(
        &format!("{at}.secret_env"),
        &step_secrets(old, old_secrets),
        &step_secrets(new, new_secrets),
        true,
    ));
    out.extend(diff::map(
        &format!("{at}.requirements"),
        &old.requirements,
        &new.requirements,
        false,
    ));
}

/// What differs from `old` to `new`; secrets by name only.
pub fn compare(
    old: &WorkflowSpec,
    old_secrets: &BTreeMap<String, String>,
    new: &WorkflowSpec,
    new_secrets: &BTreeMap<String, String>,
) -> Vec<Change> {
    let mut out = Vec::new();
    let by_name = |ps: &[Parameter]| -> BTreeMap<String, String> {
        ps.iter()
            .map(|p| (p.name.clone(), describe_parameter(p)))
            .collect()
    };
    let (before, after) = (by_name(&old.parameters), by_name(&new.parameters));
    out.extend(diff::map("parameters", &before, &after, false));
    let shown_step = |s: &StepText| {
        if s.template.is_empty() {
            s.image.clone()
        } else {
            format!("template {}", s.template)
        }
    };
    for step in &old.steps {
        match new.steps.iter().find(|s| s.name == step.name) {
            None => out.push(change(
                format!("steps[{:?}]", step.name),
                ChangeKind::Removed,
                shown_step(step),
                String::new(),
            )),
            Some(after) => compare_steps(&mut out, step, old_secrets, after, new_secrets),
        }
    }
    for step in &new.steps {
        if !old.steps.iter().any(|s| s.name == step.name) {
            out.push(change(
                format!("steps[{:?}]", step.name),
                ChangeKind::Added,
                String::new(),
                shown_step(step),
            ));
        }
    }
    // The same steps in another order are a different definition (children are stored
    // in submitted order where needs allow), so a reordering is a change too.
    let names = |spec: &WorkflowSpec| -> Vec<String> {
        spec.steps.iter().map(|s| s.name.clone()).collect()
    };
    let (before, after) = (names(old), names(new));
    if out.is_empty() && before != after {
        out.push(change(
            "steps".to_owned(),
            ChangeKind::Changed,
            before.join(", "),
            after.join(", "),
        ));
    }
    out
}

// ----- run -----

/// Submits the workflow of `release` of `template` (in `workspace`) with `params` bound,
/// under `id` when the caller reserved one.
#[expect(
    clippy::too_many_arguments,
    reason = "each is a different piece of the run, already resolved by the caller"
)]
pub(crate) async fn run(
    templates: &Templates,
    caller: &Identity,
    template: &TemplateRow,
    workspace: &str,
    release: &ReleaseRow,
    secrets: BTreeMap<String, String>,
    params: &BTreeMap<String, String>,
    id: Option<crate::work::ids::WorkRequestId>,
) -> Result<RequestView> {
    let ReleaseSpec::Workflow(spec) = crate::templates::release_spec(Kind::Workflow, release)?
    else {
        return Err(Error::internal("a workflow release read as a job spec"));
    };
    let input = instantiate(
        template,
        workspace,
        release.version,
        &spec,
        &secrets,
        params,
    )?;
    templates
        .submit_workflow(caller, WorkflowInput { id, ..input })
        .await
}

/// The workflow a run of release `version` submits: parameters bound and substituted,
/// secret values restored, named after the template and recording the release.
fn instantiate(
    template: &TemplateRow,
    workspace: &str,
    version: i32,
    spec: &WorkflowSpec,
    secrets: &BTreeMap<String, String>,
    params: &BTreeMap<String, String>,
) -> Result<WorkflowInput> {
    let values = bind(&spec.parameters, params)?;
    let (steps, secrets) = substitute(&spec.steps, secrets, &values)?;
    Ok(WorkflowInput {
        name: template.name.clone(),
        workspace: workspace.to_owned(),
        steps: steps
            .iter()
            .map(|s| to_input(s, &secrets))
            .collect::<Result<Vec<_>>>()?,
        origin: Some(Origin {
            template_id: template.id,
            version,
        }),
        id: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::work::spec::{NetworkAttachment, OutputSpec, OutputWhen};

    fn param(name: &str, kind: ParamType, default: Option<&str>, required: bool) -> Parameter {
        Parameter {
            name: name.into(),
            kind,
            default: default.map(str::to_owned),
            required,
            description: String::new(),
        }
    }

    fn step(name: &str, image: &str) -> StepInput {
        StepInput {
            name: name.into(),
            spec: Some(SpecInput {
                image: image.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn refused(input: &WorkflowSpecInput) -> String {
        match check(input, &SpecDefaults::default()) {
            Err(Error::InvalidArgument(m)) => m,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    fn template_row() -> TemplateRow {
        TemplateRow {
            id: uuid::Uuid::new_v4(),
            workspace_id: uuid::Uuid::new_v4(),
            kind: Kind::Workflow,
            name: "nightly".into(),
            description: String::new(),
            active: true,
            latest_version: 1,
            created_by: uuid::Uuid::new_v4(),
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
            archived_at: None,
        }
    }

    #[test]
    fn placeholders_take_optional_spaces_and_are_substituted_once() {
        let values = BTreeMap::from([("a".to_owned(), "${{ params.b }}".to_owned())]);
        let lookup = |n: &str| values.get(n).map(String::as_str);
        assert_eq!(
            expand("x-${{params.a}}-${{ params.a }}-y", lookup),
            Ok("x-${{ params.b }}-${{ params.b }}-y".to_owned())
        );
        assert_eq!(
            expand("no placeholder {{ }}", lookup),
            Ok("no placeholder {{ }}".into())
        );
        assert_eq!(expand("${{ params.a", lookup), Err(Placeholder::Unclosed));
        assert_eq!(
            expand("${{ env.HOME }}", lookup),
            Err(Placeholder::NotAParameter("env.HOME".into()))
        );
        assert_eq!(
            expand("${{ params.nope }}", lookup),
            Err(Placeholder::Unknown("nope".into()))
        );
    }

    #[test]
    fn parameter_declarations_are_checked() {
        let with = |parameters: Vec<Parameter>| WorkflowSpecInput {
            parameters,
            steps: vec![step("a", "busybox")],
        };
        let m = refused(&with(vec![param("1x", ParamType::String, None, false)]));
        assert!(m.starts_with("parameters[0].name: \"1x\""), "{m}");
        let m = refused(&with(vec![param(
            &"a".repeat(64),
            ParamType::String,
            None,
            false,
        )]));
        assert!(m.starts_with("parameters[0].name:"), "{m}");
        let m = refused(&with(vec![
            param("x", ParamType::String, None, false),
            param("x", ParamType::Integer, None, false),
        ]));
        assert!(
            m.contains("parameters[0]; parameter names must be unique"),
            "{m}"
        );
        let m = refused(&with(vec![param(
            "n",
            ParamType::Integer,
            Some("4.5"),
            false,
        )]));
        assert!(
            m.starts_with("parameters[\"n\"].default: \"4.5\" is not of type integer"),
            "{m}"
        );
        let m = refused(&with(vec![param(
            "b",
            ParamType::Boolean,
            Some("yes"),
            false,
        )]));
        assert!(m.contains("is not of type boolean"), "{m}");
        let m = refused(&with(vec![param("r", ParamType::String, Some("x"), true)]));
        assert!(
            m.starts_with("parameters[\"r\"]: is required and has a default"),
            "{m}"
        );
        let many = (0..=MAX_PARAMETERS)
            .map(|i| param(&format!("p{i}"), ParamType::String, None, false))
            .collect();
        assert!(refused(&with(many)).starts_with("parameters: 101 parameters"));
        let ok = with(vec![
            param("Tag_1", ParamType::String, None, true),
            param("jobs", ParamType::Integer, Some("-3"), false),
            param("ratio", ParamType::Number, Some("1e3"), false),
            param("fast", ParamType::Boolean, Some("false"), false),
        ]);
        check(&ok, &SpecDefaults::default()).expect("valid parameters");
    }

    #[test]
    fn unknown_and_malformed_references_are_refused_naming_step_and_field() {
        let mut build = step("build", "busybox");
        if let Some(spec) = build.spec.as_mut() {
            spec.env.insert("MODE".into(), "${{ params.mode }}".into());
        }
        let input = WorkflowSpecInput {
            parameters: vec![param("other", ParamType::String, None, false)],
            steps: vec![step("a", "busybox"), build],
        };
        assert_eq!(
            refused(&input),
            "steps[\"build\"].spec.env[\"MODE\"]: names parameter \"mode\", which is not declared; declare it under `parameters` or remove the reference"
        );
        let mut bad = step("b", "busybox");
        bad.outputs = vec![OutputSpec {
            path: "${{ params.other".into(),
            when: OutputWhen::Success,
        }];
        let input = WorkflowSpecInput {
            parameters: vec![param("other", ParamType::String, None, false)],
            steps: vec![bad],
        };
        assert!(refused(&input).starts_with("steps[\"b\"].outputs[0].path: a `${{` is not closed"));
        // A secret value's text is never repeated in an error.
        let mut secret = step("s", "busybox");
        if let Some(spec) = secret.spec.as_mut() {
            spec.secret_env
                .insert("TOKEN".into(), "hunter2 ${{ secrets.hunter2 }}".into());
        }
        let m = refused(&WorkflowSpecInput {
            parameters: Vec::new(),
            steps: vec![secret],
        });
        assert!(
            m.starts_with("steps[\"s\"].spec.secret_env[\"TOKEN\"]:"),
            "{m}"
        );
        assert!(!m.contains("hunter2"), "{m}");
    }

    #[test]
    fn a_broken_definition_is_refused_at_check_with_sample_values() {
        // A cycle is found even though the images are parameters.
        let mut a = step("a", "${{ params.image }}");
        a.needs = vec!["b".into()];
        let mut b = step("b", "${{ params.image }}");
        b.needs = vec!["a".into()];
        let parameters = vec![param("image", ParamType::String, None, true)];
        let m = refused(&WorkflowSpecInput {
            parameters: parameters.clone(),
            steps: vec![a, b],
        });
        assert!(m.contains("steps form a cycle"), "{m}");
        // A default that makes a field invalid is refused now, not at a run.
        let mut w = step("w", "busybox");
        if let Some(spec) = w.spec.as_mut() {
            spec.working_dir = "${{ params.dir }}".into();
        }
        let m = refused(&WorkflowSpecInput {
            parameters: vec![param("dir", ParamType::String, Some("relative"), false)],
            steps: vec![w],
        });
        assert!(m.starts_with("steps[\"w\"].spec.working_dir"), "{m}");
    }

    fn full_step() -> StepInput {
        StepInput {
            name: "build".into(),
            spec: Some(SpecInput {
                image: "registry.example/${{ params.app }}:${{ params.tag }}".into(),
                command: vec!["make".into(), "-j${{ params.jobs }}".into()],
                env: HashMap::from([("FAST".into(), "${{params.fast}}".into())]),
                secret_env: HashMap::from([("TOKEN".into(), "tok-${{ params.app }}".into())]),
                working_dir: "/src/${{ params.app }}".into(),
                memory_bytes: Some(64 << 20),
                timeout: Some(RawDuration::from_millis(1500)),
                network: "net-${{ params.app }}".into(),
                networks: vec![NetworkAttachment {
                    name: "net-${{ params.app }}".into(),
                    aliases: vec!["${{ params.app }}-db".into()],
                }],
                pull_policy: Some(PullPolicy::Never),
                ..Default::default()
            }),
            requirements: HashMap::from([("arch".into(), "${{ params.arch }}".into())]),
            priority: 7,
            inputs: vec![InputInput {
                artifact: "${{ params.dataset }}".into(),
                mount: "data/${{ params.app }}".into(),
                from: String::new(),
            }],
            outputs: vec![OutputSpec {
                path: "dist/${{ params.app }}/**".into(),
                when: OutputWhen::Success,
            }],
            ..Default::default()
        }
    }

    fn full_parameters() -> Vec<Parameter> {
        vec![
            param("app", ParamType::String, None, true),
            param("tag", ParamType::String, Some("latest"), false),
            param("jobs", ParamType::Integer, Some("4"), false),
            param("fast", ParamType::Boolean, None, false),
            param("arch", ParamType::String, Some("amd64"), false),
            param("dataset", ParamType::String, None, true),
        ]
    }

    #[test]
    fn check_keeps_placeholders_as_text_and_moves_secrets_out() {
        let input = WorkflowSpecInput {
            parameters: full_parameters(),
            steps: vec![full_step()],
        };
        let (spec, secrets) = check(&input, &SpecDefaults::default()).expect("valid");
        let stored = &spec.steps[0];
        assert_eq!(
            stored.image,
            "registry.example/${{ params.app }}:${{ params.tag }}"
        );
        assert_eq!(stored.secret_env_keys, ["TOKEN"]);
        assert_eq!(stored.timeout_ms, Some(1500));
        assert_eq!(stored.pull_policy, "never");
        assert_eq!(
            secrets,
            BTreeMap::from([("build/TOKEN".to_owned(), "tok-${{ params.app }}".to_owned())])
        );
        let json = serde_json::to_string(&spec).expect("serialises");
        assert!(
            !json.contains("tok-"),
            "a secret value reached the stored spec: {json}"
        );
    }

    #[test]
    fn a_run_binds_parameters_into_every_field() {
        let input = WorkflowSpecInput {
            parameters: full_parameters(),
            steps: vec![full_step()],
        };
        let (spec, secrets) = check(&input, &SpecDefaults::default()).expect("valid");
        let row = template_row();
        let dataset = uuid::Uuid::new_v4().to_string();
        let params = BTreeMap::from([
            ("app".to_owned(), "web".to_owned()),
            ("jobs".to_owned(), " 08 ".to_owned()),
            ("fast".to_owned(), "true".to_owned()),
            ("dataset".to_owned(), dataset.clone()),
        ]);
        let wf = instantiate(&row, "team", 3, &spec, &secrets, &params).expect("binds");
        assert_eq!(wf.name, "nightly");
        assert_eq!(wf.workspace, "team");
        assert_eq!(
            wf.origin,
            Some(Origin {
                template_id: row.id,
                version: 3
            })
        );
        let s = &wf.steps[0];
        let spec = s.spec.as_ref().expect("spec");
        assert_eq!(spec.image, "registry.example/web:latest");
        assert_eq!(spec.command, ["make", "-j8"]);
        assert_eq!(spec.env.get("FAST").map(String::as_str), Some("true"));
        assert_eq!(
            spec.secret_env.get("TOKEN").map(String::as_str),
            Some("tok-web")
        );
        assert_eq!(spec.working_dir, "/src/web");
        assert_eq!(spec.network, "net-web");
        assert_eq!(spec.networks[0].name, "net-web");
        assert_eq!(spec.networks[0].aliases, ["web-db"]);
        assert_eq!(spec.pull_policy, Some(PullPolicy::Never));
        assert_eq!(spec.timeout, Some(RawDuration::from_millis(1500)));
        assert_eq!(spec.memory_bytes, Some(64 << 20));
        assert_eq!(
            s.requirements.get("arch").map(String::as_str),
            Some("amd64")
        );
        assert_eq!(s.inputs[0].artifact, dataset);
        assert_eq!(s.inputs[0].mount, "data/web");
        assert_eq!(s.outputs[0].path, "dist/web/**");
        assert_eq!(s.priority, 7);
        workflow::validate(&wf, &SpecDefaults::default()).expect("the bound workflow is valid");
    }

    #[test]
    fn run_parameters_are_refused_naming_them() {
        let parameters = full_parameters();
        let given = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let err = |pairs: &[(&str, &str)]| match bind(&parameters, &given(pairs)) {
            Err(Error::InvalidArgument(m)) => m,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        };
        let m = err(&[("app", "a"), ("dataset", "d"), ("nope", "1")]);
        assert!(
            m.starts_with("params[\"nope\"]: this template has no parameter"),
            "{m}"
        );
        let m = err(&[("dataset", "d")]);
        assert_eq!(
            m,
            "params[\"app\"]: is required (string); give a value for it"
        );
        let m = err(&[("app", "a"), ("dataset", "d"), ("jobs", "many")]);
        assert!(
            m.starts_with("params[\"jobs\"]: \"many\" is not of type integer"),
            "{m}"
        );
        let m = err(&[("app", "a"), ("dataset", "d"), ("fast", "yes")]);
        assert!(
            m.contains("is not of type boolean; give true or false"),
            "{m}"
        );
        let values = bind(&parameters, &given(&[("app", "a"), ("dataset", "d")])).expect("binds");
        assert_eq!(values["tag"], "latest", "defaults apply");
        assert_eq!(values["jobs"], "4");
        assert_eq!(
            values["fast"], "",
            "an optional parameter without default is empty"
        );
    }

    #[test]
    fn a_step_naming_a_job_template_is_kept_for_the_run_to_resolve() {
        let mut uses = StepInput {
            name: "deploy".into(),
            template: "${{ params.which }}@v2".into(),
            needs: vec!["build".into()],
            ..Default::default()
        };
        uses.spec = None;
        let input = WorkflowSpecInput {
            parameters: vec![param("which", ParamType::String, Some("web"), false)],
            steps: vec![step("build", "busybox"), uses],
        };
        let (spec, secrets) = check(&input, &SpecDefaults::default()).expect("valid");
        assert_eq!(spec.steps[1].template, "${{ params.which }}@v2");
        assert_eq!(spec.steps[1].image, "");
        let wf =
            instantiate(&template_row(), "", 1, &spec, &secrets, &BTreeMap::new()).expect("binds");
        assert_eq!(wf.steps[1].template, "web@v2");
        assert_eq!(wf.steps[1].spec, None, "nothing overridden");
        // What the job template fixes cannot be set by the step, nor a bad reference.
        let mut fixed = input.clone();
        fixed.steps[1].spec = Some(SpecInput {
            image: "alpine".into(),
            ..Default::default()
        });
        assert!(
            refused(&fixed).starts_with("steps[\"deploy\"].spec.image: is set by the job template")
        );
        let mut bad = input.clone();
        bad.steps[1].template = "web@vX".into();
        assert!(refused(&bad).starts_with("steps[\"deploy\"].template: "));
    }

    #[test]
    fn compare_names_steps_fields_and_parameters_and_hides_secrets() {
        let old_input = WorkflowSpecInput {
            parameters: vec![param("jobs", ParamType::Integer, Some("2"), false)],
            steps: vec![
                {
                    let mut s = step("build", "busybox:1.36");
                    if let Some(spec) = s.spec.as_mut() {
                        spec.secret_env.insert("TOKEN".into(), "old-secret".into());
                        spec.env.insert("A".into(), "1".into());
                    }
                    s
                },
                step("gone", "busybox"),
            ],
        };
        let new_input = WorkflowSpecInput {
            parameters: vec![
                param("jobs", ParamType::Integer, Some("4"), false),
                param("tag", ParamType::String, None, false),
            ],
            steps: vec![
                {
                    let mut s = step("build", "busybox:1.37");
                    if let Some(spec) = s.spec.as_mut() {
                        spec.secret_env.insert("TOKEN".into(), "new-secret".into());
                        spec.env.insert("B".into(), "2".into());
                        spec.memory_bytes = Some(512 << 20);
                    }
                    s
                },
                step("fresh", "alpine"),
            ],
        };
        let d = SpecDefaults::default();
        let (old, old_s) = check(&old_input, &d).expect("valid");
        let (new, new_s) = check(&new_input, &d).expect("valid");
        let changes = compare(&old, &old_s, &new, &new_s);
        let fields: Vec<(&str, ChangeKind)> =
            changes.iter().map(|c| (c.field.as_str(), c.kind)).collect();
        assert_eq!(
            fields,
            [
                ("parameters[\"jobs\"]", ChangeKind::Changed),
                ("parameters[\"tag\"]", ChangeKind::Added),
                ("steps[\"build\"].image", ChangeKind::Changed),
                ("steps[\"build\"].memory_bytes", ChangeKind::Added),
                ("steps[\"build\"].env[\"A\"]", ChangeKind::Removed),
                ("steps[\"build\"].env[\"B\"]", ChangeKind::Added),
                (
                    "steps[\"build\"].secret_env[\"TOKEN\"]",
                    ChangeKind::Changed
                ),
                ("steps[\"gone\"]", ChangeKind::Removed),
                ("steps[\"fresh\"]", ChangeKind::Added),
            ]
        );
        assert_eq!(changes[2].before, "busybox:1.36");
        assert_eq!(changes[2].after, "busybox:1.37");
        assert_eq!(changes[3].after, "512 MiB");
        let secret = &changes[6];
        assert_eq!(
            diff::summary(&changes, None),
            "parameter jobs changed; added parameter tag; \
             step build: image busybox:1.36 → busybox:1.37; step build: memory set to 512 MiB; \
             step build: removed env A; step build: added env B; step build: secret TOKEN changed; \
             removed step gone; added step fresh"
        );
        assert!(secret.secret && secret.before.is_empty() && secret.after.is_empty());
        let all = serde_json::to_string(&changes).expect("serialises");
        assert!(
            !all.contains("secret\":\"")
                && !all.contains("old-secret")
                && !all.contains("new-secret")
        );
        assert!(
            compare(&new, &new_s, &new, &new_s).is_empty(),
            "no change, no changes"
        );
        // The same secret value is no change.
        let same = compare(&old, &old_s, &old, &old_s.clone());
        assert!(same.is_empty());
    }
}
