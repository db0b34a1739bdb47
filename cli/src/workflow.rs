//! Workflow files for `berth workflow submit FILE` and `berth workflow template create|set
//! NAME -f FILE`: a DAG of named steps in YAML or JSON.
//!
//! ```yaml
//! name: release                 # the workflow's name (required to submit)
//! workspace: default            # optional; --workspace overrides it
//! parameters:                   # workflow templates only
//!   - name: tag                 # 1-63 of [A-Za-z0-9_], starting with a letter
//!     type: string              # string (default) | integer | number | boolean
//!     default: "1.36"           # used when a run gives none
//!   - name: jobs
//!     type: integer
//!     required: true            # a run must give it (then no default)
//! steps:
//!   - name: build               # unique; 1-63 of [A-Za-z0-9._-]
//!     image: busybox:${{ params.tag }}  # required, unless `template` is given
//!     template: NAME@v2         # instead of image: run a job template's release
//!     command: [sh, -c, "make"] # optional; the image's default command otherwise
//!     env: {MODE: release}      # values are strings: quote numbers ("1")
//!     secret_env_from: [TOKEN]  # secret values come from berth's own environment
//!     memory: 512M              # or a number of bytes
//!     cpus: 2
//!     pids: 256
//!     timeout: 30m
//!     grace_period: 10s
//!     network: build
//!     pull: if-not-present      # always | if-not-present | never
//!     workdir: /src
//!     requires: {arch: amd64}   # worker labels
//!     priority: 10
//!     allow_failure: false      # if true, its failure neither stops dependants nor fails the workflow
//!     outputs: [dist/**]        # collected from workdir after exit 0 (or {path: x, when: always})
//!     output_category: package  # default: output
//!   - name: test
//!     image: busybox:1.36
//!     needs: [build]            # runs once these steps completed successfully
//!     inputs:                   # mounted read-only under /in
//!       - {from: build, mount: dist}        # the output of a step it needs
//!       - {artifact: ARTIFACT_ID}           # or COLLECTION/ITEM with a mount
//! ```
//!
//! In a workflow template, any string field of a step (image, command arguments, env and
//! secret values, workdir, network, requirement values, input artifacts and mounts,
//! output paths, template) may name a parameter as `${{ params.NAME }}`; the server
//! substitutes the run's values (`berth workflow run NAME --param KEY=VALUE`). Numbers
//! such as memory, cpus or priority are typed and cannot.
//!
//! A file named `*.json` is read as JSON, `*.yaml`/`*.yml` as YAML; any other name is
//! read as JSON if it starts with `{`, else as YAML. Unknown keys are refused (a typo
//! such as `need:` must not silently drop a dependency). Secret values are never written
//! in a file: `secret_env` is refused, and `secret_env_from: [NAME]` takes the value of
//! the environment variable NAME of the `berth` process.
//!
//! YAML is parsed with `serde-saphyr`: pure Rust, free of panics on malformed input, and
//! maintained (`serde_yaml` is archived, and its forks sit on a C-to-Rust translation of
//! libyaml full of `unsafe`).

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::path::Path;

use berth_common::proto;
use serde::Deserialize;

use crate::args::PullArg;
use crate::values::{parse_duration, parse_size, to_proto_duration};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowFile {
    /// Required to submit; a template's file may leave it out (the template names it).
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub workspace: Option<String>,
    /// Workflow templates only.
    #[serde(default)]
    pub parameters: Vec<ParameterFile>,
    pub steps: Vec<StepFile>,
}

/// A declared parameter of a workflow template.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParameterFile {
    pub name: String,
    /// `string` (the default), `integer`, `number` or `boolean`.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub default: Option<ScalarValue>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub description: String,
}

/// A parameter default as written: YAML `4`, `true` or `"text"` alike, sent as text.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ScalarValue {
    Bool(bool),
    Integer(i64),
    Number(f64),
    Text(String),
}

impl ScalarValue {
    fn text(&self) -> String {
        match self {
            ScalarValue::Bool(b) => b.to_string(),
            ScalarValue::Integer(n) => n.to_string(),
            ScalarValue::Number(n) => n.to_string(),
            ScalarValue::Text(t) => t.clone(),
        }
    }
}

/// A memory size: `512M` or a number of bytes.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum SizeValue {
    Bytes(u64),
    Text(String),
}

/// One step as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepFile {
    pub name: String,
    /// Required unless `template` names a job template.
    #[serde(default)]
    pub image: String,
    /// A job template of the workspace, `NAME` or `NAME@vK`, instead of an image.
    #[serde(default)]
    pub template: String,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Present only to refuse it with a helpful message.
    #[serde(default)]
    pub secret_env: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub secret_env_from: Vec<String>,
    #[serde(default)]
    pub memory: Option<SizeValue>,
    #[serde(default)]
    pub cpus: Option<f64>,
    #[serde(default)]
    pub pids: Option<i64>,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub grace_period: Option<String>,
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub pull: Option<String>,
    #[serde(default)]
    pub workdir: Option<String>,
    #[serde(default)]
    pub needs: Vec<String>,
    #[serde(default)]
    pub requires: BTreeMap<String, String>,
    #[serde(default)]
    pub allow_failure: bool,
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub inputs: Vec<InputFile>,
    #[serde(default)]
    pub outputs: Vec<OutputFile>,
    #[serde(default)]
    pub output_category: Option<String>,
}

/// One input of a step.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputFile {
    #[serde(default)]
    pub artifact: String,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub mount: String,
}

/// One output of a step: a path, or a path with `when`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OutputFile {
    Path(String),
    Full(OutputEntry),
}

/// `{path: ..., when: success|always}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputEntry {
    pub path: String,
    #[serde(default)]
    pub when: Option<String>,
}

/// Parses a workflow file's text; `path` picks the format (see the module docs).
pub fn parse(path: &Path, text: &str) -> Result<WorkflowFile, String> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let json = match extension.as_deref() {
        Some("json") => true,
        Some("yaml" | "yml") => false,
        _ => text.trim_start().starts_with('{'),
    };
    if json {
        serde_json::from_str(text).map_err(|e| format!("not a valid workflow (JSON): {e}"))
    } else {
        serde_saphyr::from_str(text).map_err(|e| format!("not a valid workflow (YAML): {e}"))
    }
}

/// Builds the request from a parsed file. `workspace` (the flag) beats the file's;
/// `secret_env_from` names are looked up with `lookup` (the process environment in real
/// use). Errors name the step and the key.
pub fn submit_request(
    file: &WorkflowFile,
    workspace: Option<&str>,
    lookup: impl Fn(&str) -> Option<OsString>,
) -> Result<proto::SubmitWorkflowRequest, String> {
    if !file.parameters.is_empty() {
        return Err(
            "parameters: only workflow templates take parameters; store the file with \
             `berth workflow template create NAME -f FILE` and run it with `berth workflow run NAME --param KEY=VALUE`"
                .to_owned(),
        );
    }
    if file.name.is_empty() {
        return Err("name: is required; give the workflow a name".to_owned());
    }
    Ok(proto::SubmitWorkflowRequest {
        name: file.name.clone(),
        steps: steps_request(file, &lookup)?,
        workspace: workspace
            .map(str::to_owned)
            .or_else(|| file.workspace.clone())
            .unwrap_or_default(),
    })
}

fn steps_request(
    file: &WorkflowFile,
    lookup: &impl Fn(&str) -> Option<OsString>,
) -> Result<Vec<proto::WorkflowStep>, String> {
    let mut steps = Vec::with_capacity(file.steps.len());
    for (i, step) in file.steps.iter().enumerate() {
        let at = if step.name.is_empty() {
            format!("steps[{i}]")
        } else {
            format!("steps[{i}] ({:?})", step.name)
        };
        steps.push(step_request(step, &at, lookup)?);
    }
    Ok(steps)
}

/// Builds a workflow template's spec from a parsed file: its parameters and steps.
/// `template` is the template's name: a `name` in the file must agree with it. The file's
/// `workspace` is returned for the caller to weigh against `--workspace`.
pub fn template_spec(
    file: &WorkflowFile,
    template: &str,
    lookup: impl Fn(&str) -> Option<OsString>,
) -> Result<proto::WorkflowTemplateSpec, String> {
    if !file.name.is_empty() && file.name != template {
        return Err(format!(
            "name: the file names workflow {:?} but the template is {template:?}; drop `name` or make them agree",
            file.name
        ));
    }
    let mut parameters = Vec::with_capacity(file.parameters.len());
    for (i, p) in file.parameters.iter().enumerate() {
        let kind = match p.kind.as_deref() {
            None | Some("string") => proto::ParameterType::String,
            Some("integer") => proto::ParameterType::Integer,
            Some("number") => proto::ParameterType::Number,
            Some("boolean") => proto::ParameterType::Boolean,
            Some(other) => {
                return Err(format!(
                    "parameters[{i}].type: {other:?} is not a parameter type; use string, integer, number or boolean"
                ));
            }
        };
        parameters.push(proto::TemplateParameter {
            name: p.name.clone(),
            r#type: kind.into(),
            default: p.default.as_ref().map(ScalarValue::text),
            required: p.required,
            description: p.description.clone(),
        });
    }
    Ok(proto::WorkflowTemplateSpec {
        parameters,
        steps: steps_request(file, &lookup)?,
    })
}

/// A template named with an optional release, `NAME`, `NAME@vK` or `NAME@K`: the name
/// and the version (0 for the latest).
pub fn parse_reference(text: &str) -> Result<(String, u32), String> {
    match text.split_once('@') {
        None => Ok((text.to_owned(), 0)),
        Some((name, version)) if !name.is_empty() => Ok((name.to_owned(), parse_version(version)?)),
        Some(_) => Err(format!("{text:?} is not NAME, NAME@vK or NAME@K")),
    }
}

/// A release number, `vK` or `K`, K from 1.
pub fn parse_version(text: &str) -> Result<u32, String> {
    text.strip_prefix('v')
        .unwrap_or(text)
        .parse::<u32>()
        .ok()
        .filter(|&k| k >= 1)
        .ok_or_else(|| format!("{text:?} is not a release: write vK or K, K from 1 (v1, v2, ...)"))
}

/// A `--param KEY=VALUE`.
pub fn parse_param(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

fn step_request(
    step: &StepFile,
    at: &str,
    lookup: &impl Fn(&str) -> Option<OsString>,
) -> Result<proto::WorkflowStep, String> {
    if step.secret_env.is_some() {
        return Err(format!(
            "{at}.secret_env: secret values do not belong in a file; list their names in \
             secret_env_from and set them in berth's environment"
        ));
    }
    let mut secret_env = HashMap::new();
    for key in &step.secret_env_from {
        let value = lookup(key)
            .ok_or_else(|| format!("{at}.secret_env_from: environment variable {key} is not set"))?
            .into_string()
            .map_err(|_| {
                format!("{at}.secret_env_from: environment variable {key} is not valid UTF-8")
            })?;
        secret_env.insert(key.clone(), value);
    }
    let memory_bytes = match &step.memory {
        None => None,
        Some(SizeValue::Bytes(bytes)) => Some(*bytes),
        Some(SizeValue::Text(text)) => {
            Some(parse_size(text).map_err(|e| format!("{at}.memory: {e}"))?)
        }
    };
    let duration = |key: &str, value: &Option<String>| -> Result<_, String> {
        value
            .as_deref()
            .map(|text| parse_duration(text).map(to_proto_duration))
            .transpose()
            .map_err(|e| format!("{at}.{key}: {e}"))
    };
    let pull = match step.pull.as_deref() {
        None => proto::PullPolicy::Unspecified,
        Some(text) => {
            let arg = <PullArg as clap::ValueEnum>::from_str(text, true).map_err(|_| {
                format!(
                    "{at}.pull: {text:?} is not a pull policy; use always, if-not-present or never"
                )
            })?;
            proto::PullPolicy::from(arg)
        }
    };
    let spec = proto::ContainerSpec {
        ports: Vec::new(),
        image: step.image.clone(),
        command: step.command.clone(),
        env: step
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        secret_env,
        working_dir: step.workdir.clone().unwrap_or_default(),
        memory_bytes,
        cpus: step.cpus,
        pids_limit: step.pids,
        timeout: duration("timeout", &step.timeout)?,
        network: step.network.clone().unwrap_or_default(),
        pull_policy: pull.into(),
        stop_grace_period: duration("grace_period", &step.grace_period)?,
        networks: Vec::new(),
    };
    // A step naming a job template sends a spec only for what it overrides.
    let spec =
        (step.template.is_empty() || spec != proto::ContainerSpec::default()).then_some(spec);
    Ok(proto::WorkflowStep {
        name: step.name.clone(),
        spec,
        needs: step.needs.clone(),
        requirements: step
            .requires
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        allow_failure: step.allow_failure,
        priority: step.priority,
        inputs: step
            .inputs
            .iter()
            .map(|input| proto::Input {
                artifact: input.artifact.clone(),
                mount: input.mount.clone(),
                from: input.from.clone(),
            })
            .collect(),
        outputs: step
            .outputs
            .iter()
            .enumerate()
            .map(|(i, output)| {
                let (path, when) = match output {
                    OutputFile::Path(path) => (path.clone(), proto::OutputWhen::Success),
                    OutputFile::Full(entry) => {
                        let when = match entry.when.as_deref() {
                            None | Some("success") => proto::OutputWhen::Success,
                            Some("always") => proto::OutputWhen::Always,
                            Some(other) => {
                                return Err(format!(
                                    "{at}.outputs[{i}].when: {other:?} is not one of success, always"
                                ));
                            }
                        };
                        (entry.path.clone(), when)
                    }
                };
                Ok(proto::Output {
                    path,
                    when: when.into(),
                })
            })
            .collect::<Result<_, String>>()?,
        output_category: step.output_category.clone().unwrap_or_default(),
        template: step.template.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "
name: release
steps:
  - name: build
    image: busybox:1.36
    command: [sh, -c, 'echo hi']
    env: {MODE: release}
    secret_env_from: [API_KEY]
    memory: 512M
    timeout: 30m
    pull: never
    requires: {arch: amd64}
    priority: 5
  - name: test
    image: busybox:1.36
    memory: 1048576
    needs: [build]
    allow_failure: true
";

    fn lookup(key: &str) -> Option<OsString> {
        (key == "API_KEY").then(|| OsString::from("s3cret"))
    }

    #[test]
    fn yaml_files_become_requests() {
        let file = parse(Path::new("wf.yaml"), YAML).expect("valid");
        let request = submit_request(&file, Some("team"), lookup).expect("valid");
        assert_eq!(request.name, "release");
        assert_eq!(request.workspace, "team");
        let build = &request.steps[0];
        let spec = build.spec.as_ref().expect("spec");
        assert_eq!(spec.command, ["sh", "-c", "echo hi"]);
        assert_eq!(spec.memory_bytes, Some(512 << 20));
        assert_eq!(spec.timeout.map(|d| d.seconds), Some(1800));
        assert_eq!(spec.pull_policy, proto::PullPolicy::Never as i32);
        assert_eq!(
            spec.secret_env.get("API_KEY").map(String::as_str),
            Some("s3cret")
        );
        assert_eq!(
            build.requirements.get("arch").map(String::as_str),
            Some("amd64")
        );
        assert_eq!(build.priority, 5);
        let test = &request.steps[1];
        assert_eq!(test.needs, ["build"]);
        assert!(test.allow_failure);
        assert_eq!(
            test.spec.as_ref().and_then(|s| s.memory_bytes),
            Some(1 << 20)
        );
    }

    #[test]
    fn steps_carry_inputs_from_needed_steps_and_outputs() {
        let text = "name: wf\nsteps:\n  - name: build\n    image: busybox\n    workdir: /w\n    outputs: [dist/**, {path: log.txt, when: always}]\n    output_category: package\n  - name: use\n    image: busybox\n    needs: [build]\n    inputs:\n      - {from: build, mount: dist}\n      - {artifact: pkgs/latest, mount: p}\n";
        let file = parse(Path::new("wf.yaml"), text).expect("valid");
        let request = submit_request(&file, None, lookup).expect("valid");
        let build = &request.steps[0];
        let outputs: Vec<(&str, i32)> = build
            .outputs
            .iter()
            .map(|o| (o.path.as_str(), o.when))
            .collect();
        assert_eq!(
            outputs,
            [
                ("dist/**", proto::OutputWhen::Success as i32),
                ("log.txt", proto::OutputWhen::Always as i32)
            ]
        );
        assert_eq!(build.output_category, "package");
        let inputs: Vec<(&str, &str, &str)> = request.steps[1]
            .inputs
            .iter()
            .map(|i| (i.from.as_str(), i.artifact.as_str(), i.mount.as_str()))
            .collect();
        assert_eq!(inputs, [("build", "", "dist"), ("", "pkgs/latest", "p")]);
        let bad = "name: wf\nsteps:\n  - name: a\n    image: busybox\n    outputs: [{path: x, when: sometimes}]\n";
        let file = parse(Path::new("wf.yaml"), bad).expect("parses");
        let err = submit_request(&file, None, lookup).expect_err("refused");
        assert!(err.contains("outputs[0].when"), "{err}");
    }

    #[test]
    fn json_files_are_read_by_extension_or_content() {
        let text = r#"{"name": "wf", "steps": [{"name": "a", "image": "busybox"}]}"#;
        for name in ["wf.json", "wf.txt"] {
            let file = parse(Path::new(name), text).expect("valid");
            assert_eq!(file.steps[0].name, "a");
        }
    }

    #[test]
    fn mistakes_are_refused_naming_the_place() {
        let typo = "name: wf\nsteps:\n  - name: a\n    image: busybox\n    need: [b]\n";
        let error = parse(Path::new("wf.yml"), typo).expect_err("refused");
        assert!(error.contains("need"), "{error}");
        let secret = "name: wf\nsteps:\n  - name: a\n    image: busybox\n    secret_env: {A: b}\n";
        let file = parse(Path::new("wf.yml"), secret).expect("parses");
        let error = submit_request(&file, None, lookup).expect_err("refused");
        assert!(error.starts_with("steps[0] (\"a\").secret_env:"), "{error}");
        let unset =
            "name: wf\nsteps:\n  - name: a\n    image: busybox\n    secret_env_from: [NOPE]\n";
        let file = parse(Path::new("wf.yml"), unset).expect("parses");
        let error = submit_request(&file, None, lookup).expect_err("refused");
        assert!(error.contains("NOPE is not set"), "{error}");
        let bad = "name: wf\nsteps:\n  - name: a\n    image: busybox\n    memory: lots\n";
        let file = parse(Path::new("wf.yml"), bad).expect("parses");
        let error = submit_request(&file, None, lookup).expect_err("refused");
        assert!(error.starts_with("steps[0] (\"a\").memory:"), "{error}");
    }

    const TEMPLATE: &str = "
parameters:
  - name: tag
    default: '1.36'
  - name: jobs
    type: integer
    default: 4
  - name: fast
    type: boolean
    required: true
steps:
  - name: build
    image: busybox:${{ params.tag }}
    command: [make, '-j${{ params.jobs }}']
    secret_env_from: [API_KEY]
  - name: deploy
    template: web@v2
    needs: [build]
";

    #[test]
    fn template_files_carry_parameters_and_template_steps() {
        let file = parse(Path::new("t.yaml"), TEMPLATE).expect("valid");
        let spec = template_spec(&file, "nightly", lookup).expect("valid");
        let kinds: Vec<(&str, i32, Option<&str>, bool)> = spec
            .parameters
            .iter()
            .map(|p| (p.name.as_str(), p.r#type, p.default.as_deref(), p.required))
            .collect();
        assert_eq!(
            kinds,
            [
                (
                    "tag",
                    proto::ParameterType::String as i32,
                    Some("1.36"),
                    false
                ),
                (
                    "jobs",
                    proto::ParameterType::Integer as i32,
                    Some("4"),
                    false
                ),
                ("fast", proto::ParameterType::Boolean as i32, None, true),
            ]
        );
        let build = spec.steps[0].spec.as_ref().expect("spec");
        assert_eq!(build.image, "busybox:${{ params.tag }}");
        assert_eq!(build.command, ["make", "-j${{ params.jobs }}"]);
        assert_eq!(
            build.secret_env.get("API_KEY").map(String::as_str),
            Some("s3cret")
        );
        assert_eq!(spec.steps[1].template, "web@v2");
        assert_eq!(
            spec.steps[1].spec, None,
            "a template step overriding nothing sends no spec"
        );
    }

    #[test]
    fn template_files_are_checked_before_sending() {
        let file = parse(Path::new("t.yaml"), TEMPLATE).expect("valid");
        let err = submit_request(&file, None, lookup).expect_err("refused");
        assert!(
            err.starts_with("parameters: only workflow templates take parameters"),
            "{err}"
        );
        let named = format!("name: other\n{TEMPLATE}");
        let file = parse(Path::new("t.yaml"), &named).expect("valid");
        let err = template_spec(&file, "nightly", lookup).expect_err("refused");
        assert!(
            err.starts_with("name: the file names workflow \"other\""),
            "{err}"
        );
        let bad =
            "parameters:\n  - {name: n, type: float}\nsteps:\n  - {name: a, image: busybox}\n";
        let file = parse(Path::new("t.yaml"), bad).expect("parses");
        let err = template_spec(&file, "t", lookup).expect_err("refused");
        assert!(err.starts_with("parameters[0].type: \"float\""), "{err}");
        let unnamed = "steps:\n  - {name: a, image: busybox}\n";
        let file = parse(Path::new("t.yaml"), unnamed).expect("parses");
        let err = submit_request(&file, None, lookup).expect_err("refused");
        assert!(err.starts_with("name: is required"), "{err}");
    }

    #[test]
    fn references_versions_and_params_parse() {
        assert_eq!(parse_reference("web"), Ok(("web".into(), 0)));
        assert_eq!(parse_reference("web@v3"), Ok(("web".into(), 3)));
        assert_eq!(parse_reference("web@3"), Ok(("web".into(), 3)));
        assert!(parse_reference("web@v0").is_err());
        assert!(parse_reference("@v1").is_err());
        assert_eq!(parse_version("v12"), Ok(12));
        assert!(parse_version("x").is_err());
        assert_eq!(parse_param("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_param("a="), Ok(("a".into(), String::new())));
        assert!(parse_param("=b").is_err());
        assert!(parse_param("ab").is_err());
    }
}
