//! Job templates' specs: checking a new one, merging a change into the latest release,
//! and comparing two releases.
//!
//! A job template's spec is checked exactly as a submission is (the same validators, the
//! same defaults), so a release that was accepted is one `berth run` would accept; a
//! merged change is checked again as a whole. Inputs are kept as written (an artifact id
//! or `COLLECTION/ITEM`) because a run resolves them afresh.
//!
//! What it must not touch: the database and the secret key. It sees secret values only
//! as the caller opened them, and never puts one into a [`Change`].

use std::collections::{BTreeMap, HashMap};

use crate::error::{Error, Result};
use crate::templates::diff::{self, Change};
use crate::templates::spec::{JobSpec, StoredInput};
use crate::work::deps::Scheduling;
use crate::work::spec::{
    InputInput, NetworkAttachment, OutputSpec, OutputWhen, PullPolicy, RawDuration, SpecDefaults,
    SpecInput, StoredSpec, SubmitInput, validate_submission,
};
use crate::work::state::UnblockStrategy;

/// A job template's spec as a caller sent it (create).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobSpecInput {
    pub spec: SpecInput,
    pub requirements: HashMap<String, String>,
    pub priority: i32,
    pub retries: u32,
    pub retry_backoff: Option<RawDuration>,
    pub inputs: Vec<InputInput>,
    pub outputs: Vec<OutputSpec>,
    pub output_category: String,
}

/// A change to a job template's spec as a caller sent it: `Some`/non-empty fields
/// overwrite, `unset_*` and `reset` remove, the rest is kept.
#[derive(Clone, Default, PartialEq)]
pub struct JobChange {
    pub image: Option<String>,
    pub command: Option<Vec<String>>,
    pub env: HashMap<String, String>,
    pub unset_env: Vec<String>,
    /// Write-only values.
    pub secret_env: HashMap<String, String>,
    pub unset_secret_env: Vec<String>,
    pub working_dir: Option<String>,
    pub memory_bytes: Option<u64>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    pub timeout: Option<RawDuration>,
    pub stop_grace_period: Option<RawDuration>,
    pub networks: Option<Vec<NetworkAttachment>>,
    pub pull_policy: Option<PullPolicy>,
    pub requirements: HashMap<String, String>,
    pub unset_requirements: Vec<String>,
    pub priority: Option<i32>,
    pub retries: Option<u32>,
    pub retry_backoff: Option<RawDuration>,
    pub inputs: Option<Vec<InputInput>>,
    pub outputs: Option<Vec<OutputSpec>>,
    pub output_category: Option<String>,
    /// Field names reset to the default.
    pub reset: Vec<String>,
}

impl std::fmt::Debug for JobChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobChange")
            .field("image", &self.image)
            .field("env", &self.env)
            .field(
                "secret_env_keys",
                &self.secret_env.keys().collect::<Vec<_>>(),
            )
            .field("reset", &self.reset)
            .finish_non_exhaustive()
    }
}

/// The fields a change may reset, by the names `reset` takes.
pub const RESETTABLE: &[&str] = &[
    "command",
    "env",
    "secret_env",
    "working_dir",
    "memory_bytes",
    "cpus",
    "pids_limit",
    "timeout",
    "stop_grace_period",
    "networks",
    "pull_policy",
    "requirements",
    "priority",
    "retries",
    "retry_backoff",
    "inputs",
    "outputs",
    "output_category",
];

/// Checks a new job template's spec as `SubmitWorkRequest` would; returns the resolved
/// spec and its secret values (to be sealed).
pub fn check(
    input: &JobSpecInput,
    defaults: &SpecDefaults,
) -> Result<(JobSpec, BTreeMap<String, String>)> {
    let submission = SubmitInput {
        spec: Some(input.spec.clone()),
        requirements: input.requirements.clone(),
        priority: input.priority,
        inputs: input.inputs.clone(),
        outputs: input.outputs.clone(),
        output_category: input.output_category.clone(),
        retries: input.retries,
        retry_backoff: input.retry_backoff,
        ..SubmitInput::default()
    };
    let checked = validate_submission(&submission, defaults)
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    // The same rules as a submission's retries; a template has no dependencies.
    let scheduling = Scheduling::check(
        &[],
        UnblockStrategy::Deps,
        false,
        input.retries,
        input.retry_backoff,
    )?;
    let spec = JobSpec {
        spec: checked.spec,
        requirements: checked.requirements,
        priority: checked.priority,
        retries: input.retries,
        // Kept unset when not given, so a run follows the server's default of its day.
        retry_backoff_ms: input
            .retry_backoff
            .map(|_| u64::try_from(scheduling.retry_backoff_ms).unwrap_or(0)),
        inputs: input
            .inputs
            .iter()
            .map(|i| StoredInput {
                artifact: i.artifact.trim().to_owned(),
                mount: i.mount.clone(),
            })
            .collect(),
    };
    Ok((spec, checked.secret_env))
}

/// The input that [`check`] turns into `spec` again: the base of a merge.
fn to_input(spec: &JobSpec, secrets: &BTreeMap<String, String>) -> JobSpecInput {
    let mut container = spec.spec.to_input();
    container.secret_env = secrets
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    JobSpecInput {
        spec: container,
        requirements: spec
            .requirements
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        priority: spec.priority,
        retries: spec.retries,
        retry_backoff: spec.retry_backoff_ms.map(RawDuration::from_millis),
        inputs: spec
            .inputs
            .iter()
            .map(|i| InputInput {
                artifact: i.artifact.clone(),
                mount: i.mount.clone(),
                from: String::new(),
            })
            .collect(),
        outputs: spec.spec.outputs.clone(),
        output_category: spec.spec.output_category.clone().unwrap_or_default(),
    }
}

/// The fields `change` sets, by the names `reset` takes.
fn fields_set(change: &JobChange) -> Vec<&'static str> {
    let mut set = Vec::new();
    let mut mark = |given: bool, name: &'static str| {
        if given {
            set.push(name);
        }
    };
    mark(change.command.is_some(), "command");
    mark(
        !change.env.is_empty() || !change.unset_env.is_empty(),
        "env",
    );
    mark(
        !change.secret_env.is_empty() || !change.unset_secret_env.is_empty(),
        "secret_env",
    );
    mark(change.working_dir.is_some(), "working_dir");
    mark(change.memory_bytes.is_some(), "memory_bytes");
    mark(change.cpus.is_some(), "cpus");
    mark(change.pids_limit.is_some(), "pids_limit");
    mark(change.timeout.is_some(), "timeout");
    mark(change.stop_grace_period.is_some(), "stop_grace_period");
    mark(change.networks.is_some(), "networks");
    mark(change.pull_policy.is_some(), "pull_policy");
    mark(
        !change.requirements.is_empty() || !change.unset_requirements.is_empty(),
        "requirements",
    );
    mark(change.priority.is_some(), "priority");
    mark(change.retries.is_some(), "retries");
    mark(change.retry_backoff.is_some(), "retry_backoff");
    mark(change.inputs.is_some(), "inputs");
    mark(change.outputs.is_some(), "outputs");
    mark(change.output_category.is_some(), "output_category");
    set
}

/// Sets `set` and removes `unset` in `map` (the field `field`): a key both set and unset,
/// or unset but not there, is refused, so a typo in `--unset` does not pass as a change.
fn merge_map(
    field: &str,
    map: &mut HashMap<String, String>,
    set: &HashMap<String, String>,
    unset: &[String],
) -> Result<()> {
    for key in unset {
        if set.contains_key(key) {
            return Err(Error::InvalidArgument(format!(
                "{field}[{key:?}]: is both set and unset in one change; give one of them"
            )));
        }
        if map.remove(key).is_none() {
            let mut known: Vec<&String> = map.keys().collect();
            known.sort();
            return Err(Error::InvalidArgument(format!(
                "{field}[{key:?}]: cannot be unset: the latest release has no such key (it has: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )));
        }
    }
    map.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(())
}

/// Merges `change` into `base` (with its opened secrets) and checks the result.
pub fn merge(
    base: &JobSpec,
    base_secrets: &BTreeMap<String, String>,
    change: &JobChange,
    defaults: &SpecDefaults,
) -> Result<(JobSpec, BTreeMap<String, String>)> {
    for name in &change.reset {
        if !RESETTABLE.contains(&name.as_str()) {
            return Err(Error::InvalidArgument(format!(
                "reset: {name:?} is not a field that can be reset; give one of {}",
                RESETTABLE.join(", ")
            )));
        }
    }
    if let Some(both) = fields_set(change)
        .into_iter()
        .find(|f| change.reset.iter().any(|r| r == f))
    {
        return Err(Error::InvalidArgument(format!(
            "reset: {both:?} is also set in this change; either set it or reset it"
        )));
    }
    let mut next = to_input(base, base_secrets);
    for name in &change.reset {
        let spec = &mut next.spec;
        match name.as_str() {
            "command" => spec.command.clear(),
            "env" => spec.env.clear(),
            "secret_env" => spec.secret_env.clear(),
            "working_dir" => spec.working_dir.clear(),
            "memory_bytes" => spec.memory_bytes = None,
            "cpus" => spec.cpus = None,
            "pids_limit" => spec.pids_limit = None,
            "timeout" => spec.timeout = None,
            "stop_grace_period" => spec.stop_grace_period = None,
            "networks" => {
                spec.network.clear();
                spec.networks.clear();
            }
            "pull_policy" => spec.pull_policy = None,
            "requirements" => next.requirements.clear(),
            "priority" => next.priority = 0,
            "retries" => next.retries = 0,
            "retry_backoff" => next.retry_backoff = None,
            "inputs" => next.inputs.clear(),
            "outputs" => next.outputs.clear(),
            // Checked against RESETTABLE above; `output_category` is the last.
            _ => next.output_category.clear(),
        }
    }
    let spec = &mut next.spec;
    if let Some(image) = &change.image {
        spec.image.clone_from(image);
    }
    if let Some(command) = &change.command {
        spec.command.clone_from(command);
    }
    merge_map("env", &mut spec.env, &change.env, &change.unset_env)?;
    merge_map(
        "secret_env",
        &mut spec.secret_env,
        &change.secret_env,
        &change.unset_secret_env,
    )?;
    if let Some(dir) = &change.working_dir {
        spec.working_dir.clone_from(dir);
    }
    if let Some(memory) = change.memory_bytes {
        spec.memory_bytes = Some(memory);
    }
    if let Some(cpus) = change.cpus {
        spec.cpus = Some(cpus);
    }
    if let Some(pids) = change.pids_limit {
        spec.pids_limit = Some(pids);
    }
    if let Some(timeout) = change.timeout {
        spec.timeout = Some(timeout);
    }
    if let Some(grace) = change.stop_grace_period {
        spec.stop_grace_period = Some(grace);
    }
    if let Some(networks) = &change.networks {
        // The list replaces every network, the single `network` of older specs too.
        spec.network.clear();
        spec.networks.clone_from(networks);
    }
    if let Some(policy) = change.pull_policy {
        spec.pull_policy = Some(policy);
    }
    merge_map(
        "requirements",
        &mut next.requirements,
        &change.requirements,
        &change.unset_requirements,
    )?;
    if let Some(priority) = change.priority {
        next.priority = priority;
    }
    if let Some(retries) = change.retries {
        next.retries = retries;
    }
    if let Some(backoff) = change.retry_backoff {
        next.retry_backoff = Some(backoff);
    }
    if let Some(inputs) = &change.inputs {
        next.inputs.clone_from(inputs);
    }
    if let Some(outputs) = &change.outputs {
        next.outputs.clone_from(outputs);
    }
    if let Some(category) = &change.output_category {
        next.output_category.clone_from(category);
    }
    check(&next, defaults)
}

fn networks_text(spec: &StoredSpec) -> String {
    if spec.networks.is_empty() {
        return spec.network.clone();
    }
    spec.networks
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

fn pull_text(policy: PullPolicy) -> String {
    match policy {
        PullPolicy::Always => "always",
        PullPolicy::IfNotPresent => "if-not-present",
        PullPolicy::Never => "never",
    }
    .to_owned()
}

/// A command as a shell would read it (arguments with spaces quoted).
fn command_text(command: &[String]) -> String {
    command
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

/// What differs from `old` to `new`; secrets by name only.
pub fn compare(
    old: &JobSpec,
    old_secrets: &BTreeMap<String, String>,
    new: &JobSpec,
    new_secrets: &BTreeMap<String, String>,
) -> Vec<Change> {
    let (a, b) = (&old.spec, &new.spec);
    let mut changes = Vec::new();
    let mut push = |field: &str, before: String, after: String| {
        changes.extend(diff::scalar(field, before, after));
    };
    push("image", a.image.clone(), b.image.clone());
    push(
        "command",
        command_text(&a.command),
        command_text(&b.command),
    );
    push(
        "working_dir",
        a.working_dir.clone().unwrap_or_default(),
        b.working_dir.clone().unwrap_or_default(),
    );
    push(
        "memory_bytes",
        diff::bytes(a.memory_bytes),
        diff::bytes(b.memory_bytes),
    );
    push("cpus", a.cpus.to_string(), b.cpus.to_string());
    push(
        "pids_limit",
        a.pids_limit.to_string(),
        b.pids_limit.to_string(),
    );
    push(
        "timeout",
        diff::millis(a.timeout_ms),
        diff::millis(b.timeout_ms),
    );
    push(
        "stop_grace_period",
        diff::millis(a.stop_grace_period_ms),
        diff::millis(b.stop_grace_period_ms),
    );
    push("networks", networks_text(a), networks_text(b));
    push(
        "pull_policy",
        pull_text(a.pull_policy),
        pull_text(b.pull_policy),
    );
    push(
        "priority",
        old.priority.to_string(),
        new.priority.to_string(),
    );
    push("retries", old.retries.to_string(), new.retries.to_string());
    push(
        "retry_backoff",
        old.retry_backoff_ms.map(diff::millis).unwrap_or_default(),
        new.retry_backoff_ms.map(diff::millis).unwrap_or_default(),
    );
    let inputs = |spec: &JobSpec| {
        spec.inputs
            .iter()
            .map(|i| {
                if i.mount.is_empty() {
                    i.artifact.clone()
                } else {
                    format!("{}:{}", i.artifact, i.mount)
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    push("inputs", inputs(old), inputs(new));
    let outputs = |spec: &StoredSpec| {
        spec.outputs
            .iter()
            .map(|o| match o.when {
                OutputWhen::Success => o.path.clone(),
                OutputWhen::Always => format!("{} (always)", o.path),
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    push("outputs", outputs(a), outputs(b));
    push(
        "output_category",
        a.output_category.clone().unwrap_or_default(),
        b.output_category.clone().unwrap_or_default(),
    );
    changes.extend(diff::map("env", &a.env, &b.env, false));
    changes.extend(diff::map("secret_env", old_secrets, new_secrets, true));
    changes.extend(diff::map(
        "requirements",
        &old.requirements,
        &new.requirements,
        false,
    ));
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const SECRET: &str = "hunter2-unit-secret";

    fn input() -> JobSpecInput {
        JobSpecInput {
            spec: SpecInput {
                image: "busybox:1.36".into(),
                env: [("A".to_owned(), "1".to_owned())].into(),
                secret_env: [("KEY".to_owned(), SECRET.to_owned())].into(),
                memory_bytes: Some(512 * MIB),
                ..SpecInput::default()
            },
            requirements: [("arch".to_owned(), "amd64".to_owned())].into(),
            ..JobSpecInput::default()
        }
    }

    fn base() -> (JobSpec, BTreeMap<String, String>) {
        check(&input(), &SpecDefaults::default()).expect("a valid spec")
    }

    fn refused(result: Result<(JobSpec, BTreeMap<String, String>)>) -> String {
        match result {
            Err(Error::InvalidArgument(m)) => m,
            Err(other) => panic!("refused otherwise: {other:?}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn check_fills_defaults_keeps_secrets_apart_and_inputs_as_written() {
        let mut with_input = input();
        with_input.inputs = vec![InputInput {
            artifact: "releases/app.tar".into(),
            mount: "app".into(),
            from: String::new(),
        }];
        let (spec, secrets) = check(&with_input, &SpecDefaults::default()).expect("valid");
        assert_eq!(spec.spec.memory_bytes, 512 * MIB);
        assert_eq!(spec.spec.timeout_ms, 3_600_000);
        assert_eq!(spec.retry_backoff_ms, None, "the default is the run's");
        assert_eq!(secrets["KEY"], SECRET);
        assert!(!serde_json::to_string(&spec).expect("json").contains(SECRET));
        assert_eq!(spec.inputs[0].artifact, "releases/app.tar");
    }

    #[test]
    fn check_refuses_what_a_submission_would_naming_the_field() {
        let mut no_image = input();
        no_image.spec.image.clear();
        assert!(refused(check(&no_image, &SpecDefaults::default())).starts_with("spec.image"));
        let mut retries = input();
        retries.retries = 11;
        assert!(refused(check(&retries, &SpecDefaults::default())).starts_with("retries"));
        let mut from = input();
        from.inputs = vec![InputInput {
            from: "build".into(),
            ..InputInput::default()
        }];
        assert!(refused(check(&from, &SpecDefaults::default())).starts_with("inputs[0].from"));
    }

    #[test]
    fn merge_overwrites_what_is_given_removes_what_is_unset_and_keeps_the_rest() {
        let (spec, secrets) = base();
        let change = JobChange {
            env: [("B".to_owned(), "2".to_owned())].into(),
            unset_secret_env: vec!["KEY".into()],
            secret_env: [("OTHER".to_owned(), "x".to_owned())].into(),
            memory_bytes: Some(2048 * MIB),
            unset_requirements: vec!["arch".into()],
            ..JobChange::default()
        };
        let (merged, merged_secrets) =
            merge(&spec, &secrets, &change, &SpecDefaults::default()).expect("merges");
        assert_eq!(merged.spec.env.keys().collect::<Vec<_>>(), ["A", "B"]);
        assert_eq!(merged.spec.memory_bytes, 2048 * MIB);
        assert_eq!(merged.spec.image, "busybox:1.36");
        assert!(merged.requirements.is_empty());
        assert_eq!(merged_secrets.keys().collect::<Vec<_>>(), ["OTHER"]);
        let changes = compare(&spec, &secrets, &merged, &merged_secrets);
        assert_eq!(
            diff::summary(&changes, None),
            "memory 512 MiB → 2 GiB; added env B; removed secret KEY; added secret OTHER; removed requirement arch"
        );
        assert!(
            changes
                .iter()
                .all(|c| !c.before.contains(SECRET) && !c.after.contains(SECRET))
        );
    }

    #[test]
    fn merge_refuses_unknown_resets_double_naming_and_unsetting_what_is_absent() {
        let (spec, secrets) = base();
        let defaults = SpecDefaults::default();
        let unknown = JobChange {
            reset: vec!["colour".into()],
            ..JobChange::default()
        };
        let message = refused(merge(&spec, &secrets, &unknown, &defaults));
        assert!(message.contains("memory_bytes") && message.contains("output_category"));
        let both = JobChange {
            memory_bytes: Some(MIB * 64),
            reset: vec!["memory_bytes".into()],
            ..JobChange::default()
        };
        assert!(refused(merge(&spec, &secrets, &both, &defaults)).contains("either set it"));
        let absent = JobChange {
            unset_env: vec!["NOPE".into()],
            ..JobChange::default()
        };
        let message = refused(merge(&spec, &secrets, &absent, &defaults));
        assert!(message.starts_with("env[\"NOPE\"]") && message.contains("it has: A"));
        let reset = JobChange {
            reset: vec!["memory_bytes".into(), "env".into()],
            ..JobChange::default()
        };
        let (merged, _) = merge(&spec, &secrets, &reset, &defaults).expect("merges");
        assert_eq!(merged.spec.memory_bytes, defaults.memory_bytes);
        assert!(merged.spec.env.is_empty());
    }

    #[test]
    fn an_unchanged_merge_compares_equal() {
        let (spec, secrets) = base();
        let same = JobChange {
            env: [("A".to_owned(), "1".to_owned())].into(),
            secret_env: [("KEY".to_owned(), SECRET.to_owned())].into(),
            ..JobChange::default()
        };
        let (merged, merged_secrets) =
            merge(&spec, &secrets, &same, &SpecDefaults::default()).expect("merges");
        assert_eq!(merged, spec);
        assert!(compare(&spec, &secrets, &merged, &merged_secrets).is_empty());
        let changed = BTreeMap::from([("KEY".to_owned(), "new".to_owned())]);
        let secret = compare(&spec, &secrets, &spec, &changed);
        assert_eq!(secret.len(), 1);
        assert!(secret[0].secret && secret[0].before.is_empty() && secret[0].after.is_empty());
    }
}
