//! Validation of what users submit: container specs, requirements, names.
//!
//! Everything a user sends is checked here, once, before it is stored, so that the rest
//! of the server and every worker can trust a stored spec. A bad field is refused up
//! front with INVALID_ARGUMENT and a message that names the field and says what to
//! change, instead of failing minutes later on a worker as an opaque Docker error.
//!
//! Why the limits are what they are:
//!
//! - **Memory at least 6 MiB**: Docker refuses smaller limits; at most 1 TiB, beyond
//!   which a value is a typo rather than a request.
//! - **CPUs greater than 0, at most 1024; pids 1 to 4,194,304** (the kernel's
//!   `PID_MAX_LIMIT`): larger values are meaningless on any machine.
//! - **Timeout at most 7 days, stop grace period at most 1 hour**: a forgotten job must
//!   not hold a worker slot for ever, nor a cancel take longer than an hour.
//! - **Environment at most 64 KiB, command at most 1,000 arguments**: specs are stored in
//!   the database and sent on every assignment; the bound keeps rows and messages small
//!   and stays well inside the kernel's limits on `execve` arguments.
//! - **No NUL bytes** in environment values, arguments or the working directory: they
//!   cannot cross `execve` and Docker would refuse them at run time.
//! - **Network**: empty means `none`, so a job gets no network unless it asks for one.
//!   `host` is refused because it would share the worker's network namespace (and with
//!   it every service listening on the worker's loopback); `container:<id>` is refused
//!   because it would join another container's namespace. Both are refused by name
//!   only; the worker must still check the driver of the network it resolves, since
//!   Docker also accepts network ids. **Networks with aliases** (`networks`): at most 8
//!   user-defined networks, each once, with at most 16 DNS aliases each (RFC 1123 labels,
//!   dots allowed); `none`, `host` and `container:*` cannot be listed. `network` must be
//!   empty or the first of them, and is stored as the first.
//! - **Requirements**: at most 64 labels, keys 1-63 characters, values at most 255
//!   characters without control characters, so they print cleanly and index well.
//! - **Priority -1000 to 1000**: leaves room for admin adjustments without overflow.
//!
//! Secret environment values never appear in an error message or in `Debug` output:
//! errors name keys only.
//!
//! When several fields are bad, the first one is reported, in a fixed order (spec,
//! image, command, env, secret_env, working_dir, limits, network, pull policy,
//! requirements, priority, workspace; map keys in sorted order), so the same request
//! always gets the same answer.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;

use crate::work::state::UnblockStrategy;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;
const TIB: u64 = 1024 * GIB;

/// Docker's own minimum memory limit.
const MIN_MEMORY_BYTES: u64 = 6 * MIB;
const MAX_MEMORY_BYTES: u64 = TIB;
const MAX_CPUS: f64 = 1024.0;
/// Docker refuses less than a hundredth of a CPU; refusing it here says so at submission
/// rather than as a start failure on the worker.
const MIN_CPUS: f64 = 0.01;
/// The kernel's `PID_MAX_LIMIT` on 64-bit systems.
const MAX_PIDS_LIMIT: i64 = 4_194_304;
const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 60 * 60);
const MAX_STOP_GRACE_PERIOD: Duration = Duration::from_secs(60 * 60);
const MAX_COMMAND_ARGS: usize = 1000;
/// Keys and values of `env` and `secret_env` together.
const MAX_ENV_BYTES: usize = 64 * 1024;
const MAX_WORKING_DIR_BYTES: usize = 4096;
/// Docker's limit on the name part (registry host and path) of an image reference.
const MAX_IMAGE_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;
const MAX_REQUIREMENTS: usize = 64;
const MAX_LABEL_VALUE_CHARS: usize = 255;
const MIN_PRIORITY: i32 = -1000;
const MAX_PRIORITY: i32 = 1000;
/// The largest `google.protobuf.Duration` (10,000 years).
const MAX_PROTO_DURATION_SECONDS: i64 = 315_576_000_000;
const DEFAULT_NETWORK: &str = "none";
/// Networks one container may join: each is an endpoint the worker connects before the
/// start, so the bound keeps a start quick; real jobs need one or two.
const MAX_NETWORKS: usize = 8;
/// DNS aliases on one network, as many as any service needs.
const MAX_ALIASES: usize = 16;
const DEFAULT_WORKSPACE: &str = "default";
/// Inputs per request, and outputs.
pub const MAX_INPUTS: usize = 100;
const MAX_OUTPUTS: usize = 100;
/// The category of collected outputs unless one is given.
pub const DEFAULT_OUTPUT_CATEGORY: &str = "output";

fn static_regex(pattern: &str) -> Regex {
    Regex::new(pattern).expect("static regex literal is valid (compiled by the unit tests)")
}

/// One component of an image's repository path.
static IMAGE_PATH_COMPONENT: LazyLock<Regex> =
    LazyLock::new(|| static_regex(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$"));
/// A registry host: a host name, an IPv4 address or a bracketed IPv6 address, with an
/// optional port.
static IMAGE_DOMAIN: LazyLock<Regex> = LazyLock::new(|| {
    static_regex(
        r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$",
    )
});
static IMAGE_TAG: LazyLock<Regex> =
    LazyLock::new(|| static_regex(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"));
static IMAGE_DIGEST: LazyLock<Regex> =
    LazyLock::new(|| static_regex(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-f0-9]{32,}$"));
static ENV_NAME: LazyLock<Regex> = LazyLock::new(|| static_regex(r"^[A-Za-z_][A-Za-z0-9_]*$"));
static NETWORK_NAME: LazyLock<Regex> =
    LazyLock::new(|| static_regex(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$"));
static NETWORK_ALIAS: LazyLock<Regex> =
    LazyLock::new(|| static_regex(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,61}[A-Za-z0-9])?$"));
static LABEL_KEY: LazyLock<Regex> =
    LazyLock::new(|| static_regex(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$"));
static NAME: LazyLock<Regex> = LazyLock::new(|| static_regex(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"));

/// Server-side defaults for unset limits (from server config). Trusted: the server
/// checks its configuration at start-up, not here.
#[derive(Clone, Debug)]
pub struct SpecDefaults {
    pub memory_bytes: u64,
    pub cpus: f64,
    pub pids_limit: i64,
    pub timeout: Duration,
    pub stop_grace_period: Duration,
}

impl Default for SpecDefaults {
    fn default() -> Self {
        Self {
            memory_bytes: GIB,
            cpus: 1.0,
            pids_limit: 1024,
            timeout: Duration::from_secs(60 * 60),
            stop_grace_period: Duration::from_secs(10),
        }
    }
}

/// A duration as a caller sent it (seconds and nanoseconds, each possibly out of range),
/// checked by [`RawDuration::to_std`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawDuration {
    pub seconds: i64,
    pub nanos: i32,
}

impl RawDuration {
    /// A duration of whole milliseconds.
    pub fn from_millis(millis: u64) -> RawDuration {
        RawDuration {
            // u64::MAX / 1000 fits an i64, and the remainder in nanoseconds fits an i32;
            // the fallbacks only satisfy the types.
            seconds: i64::try_from(millis / 1000).unwrap_or(i64::MAX),
            nanos: i32::try_from((millis % 1000) * 1_000_000).unwrap_or(0),
        }
    }

    /// The duration, refusing negative or out-of-range values with `field` named.
    pub(crate) fn to_std(self, field: &str) -> Result<Duration, InvalidField> {
        duration_from_raw(field, self)
    }
}

/// A container spec as a caller sent it, before any check. Unset limits are `None`; the
/// server's defaults fill them in. Its `Debug` shows secret env keys, never values.
#[derive(Clone, Default, PartialEq)]
pub struct SpecInput {
    pub image: String,
    pub command: Vec<String>,
    pub env: HashMap<String, String>,
    /// Write-only values: never logged, never returned.
    pub secret_env: HashMap<String, String>,
    pub working_dir: String,
    pub memory_bytes: Option<u64>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    pub timeout: Option<RawDuration>,
    pub stop_grace_period: Option<RawDuration>,
    /// Empty means no network.
    pub network: String,
    /// `None` means the default (if not present).
    pub pull_policy: Option<PullPolicy>,
    /// Networks with aliases; empty means just `network`.
    pub networks: Vec<NetworkAttachment>,
    /// Ports to publish: only service replicas have them (a submission is refused).
    pub ports: Vec<PortMapping>,
}

/// A container port published on the worker's host (service replicas only).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortMapping {
    /// 1-65535.
    pub container_port: u16,
    /// 0 lets Docker pick a free port.
    #[serde(default)]
    pub host_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// One network a container joins, with its DNS aliases there.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NetworkAttachment {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

impl fmt::Debug for SpecInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret_keys: BTreeMap<String, String> = self
            .secret_env
            .keys()
            .map(|k| (k.clone(), String::new()))
            .collect();
        f.debug_struct("SpecInput")
            .field("image", &self.image)
            .field("command", &self.command)
            .field("env", &self.env)
            .field("secret_env", &RedactedValues(&secret_keys))
            .field("working_dir", &self.working_dir)
            .field("memory_bytes", &self.memory_bytes)
            .field("cpus", &self.cpus)
            .field("pids_limit", &self.pids_limit)
            .field("timeout", &self.timeout)
            .field("stop_grace_period", &self.stop_grace_period)
            .field("network", &self.network)
            .field("pull_policy", &self.pull_policy)
            .field("networks", &self.networks)
            .field("ports", &self.ports)
            .finish()
    }
}

/// A work request as a caller submitted it, before any check.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SubmitInput {
    pub spec: Option<SpecInput>,
    pub requirements: HashMap<String, String>,
    pub priority: i32,
    /// Empty means `default`.
    pub workspace: String,
    /// Ids of the requests this one waits for, as sent.
    pub after: Vec<String>,
    pub unblock: UnblockStrategy,
    pub allow_failure: bool,
    pub retries: u32,
    pub retry_backoff: Option<RawDuration>,
    /// Artifacts to mount under /in, as sent.
    pub inputs: Vec<InputInput>,
    /// Files to collect after the container exits, as sent.
    pub outputs: Vec<OutputSpec>,
    /// The collected artifact's category ('' for `output`).
    pub output_category: String,
}

/// An input as a caller sent it: an artifact (id or `COLLECTION/ITEM`), or for workflow
/// steps the name of a needed step whose output to take, and where to mount it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InputInput {
    /// An artifact id or `COLLECTION/ITEM`; '' with `from`.
    pub artifact: String,
    /// Relative to /in; '' for the artifact id (or the step's name).
    pub mount: String,
    /// Workflow steps only: a needed step's name.
    pub from: String,
}

/// A checked input: where it is mounted and what it names, not yet resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedInput {
    /// Relative to /in, checked by the path validator.
    pub mount: String,
    /// What it takes.
    pub source: InputSource,
}

/// What an input takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputSource {
    /// An artifact by id.
    Artifact(uuid::Uuid),
    /// The active item of a collection of the request's workspace.
    Item { collection: String, item: String },
    /// The output of a step of the same workflow, by name.
    Step(String),
}

/// One file of an input, as a worker needs it to fetch and lay it out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputFile {
    pub path: String,
    /// SHA-256 in lower-case hex ('' for a symlink).
    pub sha256: String,
    pub size: u64,
    pub mode: u32,
    /// A symlink's target ('' for a regular file).
    pub symlink: String,
}

/// An input of an assigned attempt: the artifact, where it goes, and its files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssignedInput {
    pub artifact_id: uuid::Uuid,
    pub mount: String,
    pub files: Vec<InputFile>,
}

/// When outputs are collected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputWhen {
    /// Only after an exit with code 0 (the default).
    #[default]
    Success,
    /// Whenever the container ran.
    Always,
}

/// One declared output: a path or glob relative to the working directory.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutputSpec {
    pub path: String,
    #[serde(default)]
    pub when: OutputWhen,
}

/// The validated, defaults-filled spec as stored in the database (as JSON, column
/// `spec`), without secret values: those are stored encrypted, apart.
///
/// Durations are kept in whole milliseconds, rounded up, so a positive timeout never
/// becomes zero.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredSpec {
    pub image: String,
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub working_dir: Option<String>,
    pub memory_bytes: u64,
    pub cpus: f64,
    pub pids_limit: i64,
    pub timeout_ms: u64,
    pub stop_grace_period_ms: u64,
    /// `none` when the user left it unset; the first of `networks` when those are given.
    pub network: String,
    /// Every network with its aliases, when the user gave aliases or more than one
    /// network (empty otherwise, and in older rows).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<NetworkAttachment>,
    pub pull_policy: PullPolicy,
    /// What to collect after the container exits (none for older rows).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<OutputSpec>,
    /// The collected artifact's category; set when there are outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_category: Option<String>,
    /// Ports published on the worker's host: set by the services room for replicas only
    /// (a submission cannot), as is `timeout_ms` 0 (no timeout).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortMapping>,
}

/// When a worker pulls the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PullPolicy {
    /// Before every run.
    Always,
    /// Only when the worker does not have it (the default).
    IfNotPresent,
    /// Never: the image must be on the worker already.
    Never,
}

impl StoredSpec {
    /// The spec as the API returns it: defaults filled in, no secret values.
    pub fn to_input(&self) -> SpecInput {
        SpecInput {
            image: self.image.clone(),
            command: self.command.clone(),
            env: self
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            secret_env: HashMap::new(),
            working_dir: self.working_dir.clone().unwrap_or_default(),
            memory_bytes: Some(self.memory_bytes),
            cpus: Some(self.cpus),
            pids_limit: Some(self.pids_limit),
            timeout: Some(RawDuration::from_millis(self.timeout_ms)),
            network: self.network.clone(),
            pull_policy: Some(self.pull_policy),
            stop_grace_period: Some(RawDuration::from_millis(self.stop_grace_period_ms)),
            networks: self.networks.clone(),
            ports: self.ports.clone(),
        }
    }
}

/// A validated submission, ready to store.
#[derive(Clone, PartialEq)]
pub struct Submission {
    pub spec: StoredSpec,
    /// Write-only: never logged, never returned, stored encrypted.
    pub secret_env: BTreeMap<String, String>,
    pub requirements: BTreeMap<String, String>,
    pub priority: i32,
    /// `default` when the user left it empty.
    pub workspace: String,
    /// Its inputs, checked but not yet resolved.
    pub inputs: Vec<CheckedInput>,
}

impl fmt::Debug for Submission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Submission")
            .field("spec", &self.spec)
            .field("secret_env", &RedactedValues(&self.secret_env))
            .field("requirements", &self.requirements)
            .field("priority", &self.priority)
            .field("workspace", &self.workspace)
            .field("inputs", &self.inputs)
            .finish()
    }
}

/// Prints a map's keys with every value replaced by `<redacted>`.
struct RedactedValues<'a>(&'a BTreeMap<String, String>);

impl fmt::Debug for RedactedValues<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, format_args!("<redacted>"))))
            .finish()
    }
}

/// An invalid field: `field` is the path as a user would write it, e.g.
/// `spec.env["1BAD"]`, `spec.memory_bytes`, `requirements["a b"]`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidField {
    pub field: String,
    pub message: String,
}

impl InvalidField {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The path of one map entry, e.g. `spec.env["PATH"]`; the key is quoted and escaped so
/// odd keys stay readable.
fn entry_field(map: &str, key: &str) -> String {
    format!("{map}[{key:?}]")
}

/// A checked spec: what is stored, and the secret values, which are stored apart.
#[derive(Clone, PartialEq)]
pub struct CheckedSpec {
    pub spec: StoredSpec,
    /// Write-only: never logged, never returned, stored encrypted.
    pub secret_env: BTreeMap<String, String>,
}

impl fmt::Debug for CheckedSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckedSpec")
            .field("spec", &self.spec)
            .field("secret_env", &RedactedValues(&self.secret_env))
            .finish()
    }
}

/// Checks a container spec and fills in `defaults`. Errors name the field under `spec.`.
pub fn validate_spec(
    spec: &SpecInput,
    defaults: &SpecDefaults,
) -> Result<CheckedSpec, InvalidField> {
    if spec.image.is_empty() {
        return Err(InvalidField::new(
            "spec.image",
            "is required; give an image reference such as \"busybox:1.36\"",
        ));
    }
    validate_image_reference(&spec.image).map_err(|m| InvalidField::new("spec.image", m))?;
    if !spec.ports.is_empty() {
        return Err(InvalidField::new(
            "spec.ports",
            "only service replicas publish ports; give them to the service (berth service create --port)",
        ));
    }

    validate_command(&spec.command)?;
    let env = sorted(&spec.env);
    let secret_env = sorted(&spec.secret_env);
    validate_env(&env, &secret_env)?;
    let working_dir = validate_working_dir(&spec.working_dir)?;

    let memory_bytes = validate_memory(spec.memory_bytes.unwrap_or(defaults.memory_bytes))?;
    let cpus = validate_cpus(spec.cpus.unwrap_or(defaults.cpus))?;
    let pids_limit = validate_pids_limit(spec.pids_limit.unwrap_or(defaults.pids_limit))?;
    let timeout = match spec.timeout {
        Some(d) => validate_timeout(d.to_std("spec.timeout")?, defaults)?,
        None => defaults.timeout,
    };
    let stop_grace_period = match spec.stop_grace_period {
        Some(d) => validate_stop_grace_period(d.to_std("spec.stop_grace_period")?)?,
        None => defaults.stop_grace_period,
    };
    let (network, networks) = validate_networks(&spec.network, &spec.networks)?;
    Ok(CheckedSpec {
        spec: StoredSpec {
            image: spec.image.clone(),
            command: spec.command.clone(),
            env,
            working_dir,
            memory_bytes,
            cpus,
            pids_limit,
            timeout_ms: millis_rounded_up(timeout),
            stop_grace_period_ms: millis_rounded_up(stop_grace_period),
            network,
            networks,
            pull_policy: spec.pull_policy.unwrap_or(PullPolicy::IfNotPresent),
            outputs: Vec::new(),
            output_category: None,
            ports: Vec::new(),
        },
        secret_env,
    })
}

/// Checks a submission and fills in defaults. The workspace's existence is checked by
/// the caller, against the database; the scheduling fields by `deps::Scheduling::check`.
pub fn validate_submission(
    req: &SubmitInput,
    defaults: &SpecDefaults,
) -> Result<Submission, InvalidField> {
    let spec = req
        .spec
        .as_ref()
        .ok_or_else(|| InvalidField::new("spec", "is required"))?;
    let CheckedSpec {
        mut spec,
        secret_env,
    } = validate_spec(spec, defaults)?;
    let inputs = validate_inputs("inputs", &req.inputs, false)?;
    validate_outputs("outputs", &req.outputs, &req.output_category, &mut spec)?;
    let requirements = validate_requirements(&req.requirements)?;
    let priority = validate_priority(req.priority)?;
    let workspace = validate_workspace(&req.workspace)?;
    Ok(Submission {
        spec,
        secret_env,
        requirements,
        priority,
        workspace,
        inputs,
    })
}

/// Checks a request's inputs (at most [`MAX_INPUTS`], mounts through the one path
/// validator and unique). `steps` allows `from` (workflow steps); its name is checked
/// against the step's needs by the workflow. Errors name the field under `field`.
pub fn validate_inputs(
    field: &str,
    inputs: &[InputInput],
    steps: bool,
) -> Result<Vec<CheckedInput>, InvalidField> {
    if inputs.len() > MAX_INPUTS {
        return Err(InvalidField::new(
            field,
            format!(
                "has {} inputs; at most {MAX_INPUTS} are allowed",
                inputs.len()
            ),
        ));
    }
    let mut checked: Vec<CheckedInput> = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let source = match (input.artifact.trim(), input.from.trim()) {
            ("", "") => {
                return Err(InvalidField::new(
                    format!("{at}.artifact"),
                    if steps {
                        "is required unless `from` names a needed step; give an artifact id or COLLECTION/ITEM"
                    } else {
                        "is required; give an artifact id or COLLECTION/ITEM"
                    },
                ));
            }
            (_, from) if !from.is_empty() && !steps => {
                return Err(InvalidField::new(
                    format!("{at}.from"),
                    "is only for workflow steps; give an artifact instead",
                ));
            }
            (artifact, from) if !artifact.is_empty() && !from.is_empty() => {
                return Err(InvalidField::new(
                    at.clone(),
                    "names both an artifact and a step (`from`); give one of them",
                ));
            }
            ("", from) => InputSource::Step(from.to_owned()),
            (artifact, _) => parse_artifact_ref(artifact)
                .map_err(|m| InvalidField::new(format!("{at}.artifact"), m))?,
        };
        let mount = match (input.mount.as_str(), &source) {
            ("", InputSource::Artifact(id)) => id.to_string(),
            ("", InputSource::Step(name)) => name.clone(),
            ("", InputSource::Item { .. }) => {
                return Err(InvalidField::new(
                    format!("{at}.mount"),
                    "is required for a COLLECTION/ITEM input (the item's name may hold a `/`); give a relative path under /in",
                ));
            }
            (mount, _) => mount.trim_end_matches('/').to_owned(),
        };
        berth_files::paths::validate_path(&mount)
            .map_err(|e| InvalidField::new(format!("{at}.mount"), e.to_string()))?;
        if let Some(other) = checked
            .iter()
            .find(|c| c.mount == mount || nested(&c.mount, &mount) || nested(&mount, &c.mount))
        {
            return Err(InvalidField::new(
                format!("{at}.mount"),
                format!(
                    "{mount:?} clashes with the mount {:?} of another input; give each input a mount of its own",
                    other.mount
                ),
            ));
        }
        checked.push(CheckedInput { mount, source });
    }
    Ok(checked)
}

/// Whether `inner` lies beneath `outer`.
fn nested(outer: &str, inner: &str) -> bool {
    inner.len() > outer.len()
        && inner.starts_with(outer)
        && inner.as_bytes().get(outer.len()) == Some(&b'/')
}

/// An artifact id, or `COLLECTION/ITEM` (the collection a slug, the item the rest).
fn parse_artifact_ref(artifact: &str) -> Result<InputSource, String> {
    if let Ok(id) = uuid::Uuid::parse_str(artifact) {
        return Ok(InputSource::Artifact(id));
    }
    match artifact.split_once('/') {
        Some((collection, item)) if !collection.is_empty() && !item.is_empty() => {
            validate_name("collection", collection)?;
            if item.chars().any(char::is_control) || item.chars().count() > 255 {
                return Err(format!(
                    "{artifact:?}: the item name must be 1-255 characters without control characters"
                ));
            }
            Ok(InputSource::Item {
                collection: collection.to_owned(),
                item: item.to_owned(),
            })
        }
        _ => Err(format!(
            "{artifact:?} is neither an artifact id (a UUID) nor COLLECTION/ITEM"
        )),
    }
}

/// Checks the outputs and their category and puts them into `spec`.
pub fn validate_outputs(
    field: &str,
    outputs: &[OutputSpec],
    category: &str,
    spec: &mut StoredSpec,
) -> Result<(), InvalidField> {
    if outputs.len() > MAX_OUTPUTS {
        return Err(InvalidField::new(
            field,
            format!(
                "has {} outputs; at most {MAX_OUTPUTS} are allowed",
                outputs.len()
            ),
        ));
    }
    let mut checked = Vec::with_capacity(outputs.len());
    for (i, output) in outputs.iter().enumerate() {
        let at = format!("{field}[{i}].path");
        let path = output.path.trim_end_matches('/');
        berth_files::paths::validate_path(path).map_err(|e| {
            InvalidField::new(
                &at,
                format!("{e}; give a path or glob relative to the working directory"),
            )
        })?;
        globset::GlobBuilder::new(path)
            .literal_separator(true)
            .build()
            .map_err(|e| InvalidField::new(&at, format!("is not a valid glob: {e}")))?;
        checked.push(OutputSpec {
            path: path.to_owned(),
            when: output.when,
        });
    }
    let category = match category {
        "" => DEFAULT_OUTPUT_CATEGORY.to_owned(),
        other => {
            validate_category(other).map_err(|m| InvalidField::new("output_category", m))?;
            other.to_owned()
        }
    };
    if !checked.is_empty() {
        match spec.working_dir.as_deref() {
            None => {
                return Err(InvalidField::new(
                    "spec.working_dir",
                    "is required with outputs: they are collected from the working directory, so give one (e.g. /work)",
                ));
            }
            Some(dir) if dir == "/" || dir == "/in" || dir.starts_with("/in/") => {
                return Err(InvalidField::new(
                    "spec.working_dir",
                    format!(
                        "{dir:?} cannot hold outputs: it is / or lies in /in, where inputs are mounted; give another (e.g. /work)"
                    ),
                ));
            }
            Some(_) => {}
        }
        spec.output_category = Some(category);
    }
    spec.outputs = checked;
    Ok(())
}

/// An artifact category: 1-63 characters of [a-z0-9-], starting with a letter or digit.
fn validate_category(category: &str) -> Result<(), String> {
    let ok = !category.is_empty()
        && category.len() <= 63
        && category
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !category.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{category:?} is not a category: use 1-63 characters of [a-z0-9-], starting with a letter or digit"
        ))
    }
}

/// The workspace named in a submission: `default` when none is named.
pub fn validate_workspace(workspace: &str) -> Result<String, InvalidField> {
    if workspace.is_empty() {
        return Ok(DEFAULT_WORKSPACE.to_owned());
    }
    validate_name("workspace", workspace).map_err(|m| InvalidField::new("workspace", m))?;
    Ok(workspace.to_owned())
}

fn sorted(map: &HashMap<String, String>) -> BTreeMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

pub(crate) fn validate_command(command: &[String]) -> Result<(), InvalidField> {
    if command.len() > MAX_COMMAND_ARGS {
        return Err(InvalidField::new(
            "spec.command",
            format!(
                "{} arguments; at most {MAX_COMMAND_ARGS} are allowed",
                command.len()
            ),
        ));
    }
    for (i, arg) in command.iter().enumerate() {
        let field = || format!("spec.command[{i}]");
        if arg.is_empty() {
            return Err(InvalidField::new(field(), "must not be empty"));
        }
        if arg.contains('\0') {
            return Err(InvalidField::new(field(), "must not contain a NUL byte"));
        }
    }
    Ok(())
}

/// Checks `env` then `secret_env`, then their combined size. Messages name keys only:
/// a value, secret or not, is never echoed.
fn validate_env(
    env: &BTreeMap<String, String>,
    secret_env: &BTreeMap<String, String>,
) -> Result<(), InvalidField> {
    for (map, entries) in [("spec.env", env), ("spec.secret_env", secret_env)] {
        for (key, value) in entries {
            let field = || entry_field(map, key);
            validate_env_name(key).map_err(|m| InvalidField::new(field(), m))?;
            if value.contains('\0') {
                return Err(InvalidField::new(
                    field(),
                    "value must not contain a NUL byte",
                ));
            }
            if map == "spec.secret_env" && env.contains_key(key) {
                return Err(InvalidField::new(
                    field(),
                    format!(
                        "is also set in spec.env; set {key} in only one of spec.env and spec.secret_env"
                    ),
                ));
            }
        }
    }
    let total: usize = env
        .iter()
        .chain(secret_env)
        .map(|(k, v)| k.len() + v.len())
        .sum();
    if total > MAX_ENV_BYTES {
        return Err(InvalidField::new(
            "spec.env",
            format!(
                "the keys and values of spec.env and spec.secret_env take {total} bytes together; at most {MAX_ENV_BYTES} bytes (64 KiB) are allowed"
            ),
        ));
    }
    Ok(())
}

fn validate_working_dir(dir: &str) -> Result<Option<String>, InvalidField> {
    if dir.is_empty() {
        return Ok(None);
    }
    let invalid = |m: String| Err(InvalidField::new("spec.working_dir", m));
    if dir.len() > MAX_WORKING_DIR_BYTES {
        return invalid(format!(
            "is {} bytes long; at most {MAX_WORKING_DIR_BYTES} bytes are allowed",
            dir.len()
        ));
    }
    if dir.contains('\0') {
        return invalid("must not contain a NUL byte".to_owned());
    }
    if !dir.starts_with('/') {
        return invalid(format!(
            "{dir:?} is not absolute; give a path starting with '/', or leave it empty to use the image's"
        ));
    }
    Ok(Some(dir.to_owned()))
}

fn validate_memory(bytes: u64) -> Result<u64, InvalidField> {
    let invalid = |m: String| Err(InvalidField::new("spec.memory_bytes", m));
    if bytes < MIN_MEMORY_BYTES {
        return invalid(format!(
            "{bytes} bytes is below the minimum of 6 MiB ({MIN_MEMORY_BYTES} bytes)"
        ));
    }
    if bytes > MAX_MEMORY_BYTES {
        return invalid(format!(
            "{bytes} bytes is above the maximum of 1 TiB ({MAX_MEMORY_BYTES} bytes)"
        ));
    }
    Ok(bytes)
}

fn validate_cpus(cpus: f64) -> Result<f64, InvalidField> {
    let invalid = |m: String| Err(InvalidField::new("spec.cpus", m));
    if !cpus.is_finite() {
        return invalid(format!(
            "{cpus} is not a finite number; give a number of CPUs greater than 0 and at most {MAX_CPUS}"
        ));
    }
    if cpus < MIN_CPUS {
        return invalid(format!(
            "{cpus} CPUs is not allowed; give at least {MIN_CPUS} (fractions such as 0.5 are fine)"
        ));
    }
    if cpus > MAX_CPUS {
        return invalid(format!("{cpus} CPUs is above the maximum of {MAX_CPUS}"));
    }
    Ok(cpus)
}

fn validate_pids_limit(pids: i64) -> Result<i64, InvalidField> {
    if !(1..=MAX_PIDS_LIMIT).contains(&pids) {
        return Err(InvalidField::new(
            "spec.pids_limit",
            format!("{pids} is outside the allowed range; give 1 to {MAX_PIDS_LIMIT}"),
        ));
    }
    Ok(pids)
}

fn validate_timeout(timeout: Duration, defaults: &SpecDefaults) -> Result<Duration, InvalidField> {
    let invalid = |m: String| Err(InvalidField::new("spec.timeout", m));
    if timeout.is_zero() {
        return invalid(format!(
            "must be greater than 0; leave it unset for the server default of {}",
            humantime::format_duration(defaults.timeout)
        ));
    }
    if timeout > MAX_TIMEOUT {
        return invalid(format!(
            "{} is above the maximum of {}",
            humantime::format_duration(timeout),
            humantime::format_duration(MAX_TIMEOUT)
        ));
    }
    Ok(timeout)
}

fn validate_stop_grace_period(period: Duration) -> Result<Duration, InvalidField> {
    if period > MAX_STOP_GRACE_PERIOD {
        return Err(InvalidField::new(
            "spec.stop_grace_period",
            format!(
                "{} is above the maximum of {}",
                humantime::format_duration(period),
                humantime::format_duration(MAX_STOP_GRACE_PERIOD)
            ),
        ));
    }
    Ok(period)
}

fn validate_network(network: &str) -> Result<String, InvalidField> {
    if network.is_empty() {
        return Ok(DEFAULT_NETWORK.to_owned());
    }
    let invalid = |m: String| Err(InvalidField::new("spec.network", m));
    if network == "host" {
        return invalid(
            "network 'host' is not allowed: it would give the job the worker's network namespace"
                .to_owned(),
        );
    }
    if !NETWORK_NAME.is_match(network) {
        return invalid(format!(
            "{network:?} is not a valid network name: use 1-128 characters of letters, digits, '_', '.' and '-', starting with a letter or digit (leave it empty for no network)"
        ));
    }
    Ok(network.to_owned())
}

/// Checks `network` and the list of networks with aliases; returns the network to store
/// (the first of the list when there is one) and the list to store (empty when it says
/// no more than `network` does: one network without aliases).
fn validate_networks(
    network: &str,
    networks: &[NetworkAttachment],
) -> Result<(String, Vec<NetworkAttachment>), InvalidField> {
    let Some(first) = networks.first() else {
        return Ok((validate_network(network)?, Vec::new()));
    };
    if networks.len() > MAX_NETWORKS {
        return Err(InvalidField::new(
            "spec.networks",
            format!(
                "{} networks; at most {MAX_NETWORKS} are allowed",
                networks.len()
            ),
        ));
    }
    if !network.is_empty() && network != first.name {
        return Err(InvalidField::new(
            "spec.network",
            format!(
                "{network:?} differs from the first of spec.networks ({:?}); leave it empty or give the same name",
                first.name
            ),
        ));
    }
    for (i, attachment) in networks.iter().enumerate() {
        let field = format!("spec.networks[{i}].name");
        let name = attachment.name.as_str();
        if name.is_empty() {
            return Err(InvalidField::new(
                field,
                "is required; name a user-defined network such as \"jobs\"",
            ));
        }
        if matches!(name, "none" | "host") || name.starts_with("container:") {
            return Err(InvalidField::new(
                field,
                format!(
                    "{name:?} cannot be joined with aliases: list only user-defined networks (for no network, give none)"
                ),
            ));
        }
        validate_network(name).map_err(|e| InvalidField::new(field.clone(), e.message))?;
        if let Some(j) = networks[..i].iter().position(|n| n.name == name) {
            return Err(InvalidField::new(
                field,
                format!("{name:?} is also spec.networks[{j}]; list each network once"),
            ));
        }
        if attachment.aliases.len() > MAX_ALIASES {
            return Err(InvalidField::new(
                format!("spec.networks[{i}].aliases"),
                format!(
                    "{} aliases; at most {MAX_ALIASES} are allowed",
                    attachment.aliases.len()
                ),
            ));
        }
        for (k, alias) in attachment.aliases.iter().enumerate() {
            if !NETWORK_ALIAS.is_match(alias) {
                return Err(InvalidField::new(
                    format!("spec.networks[{i}].aliases[{k}]"),
                    format!(
                        "{alias:?} is not a valid alias: use 1-63 letters, digits, '.' and '-', starting and ending with a letter or digit"
                    ),
                ));
            }
        }
    }
    let plain = networks.len() == 1 && first.aliases.is_empty();
    let list = if plain { Vec::new() } else { networks.to_vec() };
    Ok((first.name.clone(), list))
}

fn validate_requirements(
    requirements: &HashMap<String, String>,
) -> Result<BTreeMap<String, String>, InvalidField> {
    if requirements.len() > MAX_REQUIREMENTS {
        return Err(InvalidField::new(
            "requirements",
            format!(
                "{} requirements; at most {MAX_REQUIREMENTS} are allowed",
                requirements.len()
            ),
        ));
    }
    let requirements = sorted(requirements);
    for (key, value) in &requirements {
        validate_label(key, value)
            .map_err(|m| InvalidField::new(entry_field("requirements", key), m))?;
    }
    Ok(requirements)
}

fn validate_priority(priority: i32) -> Result<i32, InvalidField> {
    if !(MIN_PRIORITY..=MAX_PRIORITY).contains(&priority) {
        return Err(InvalidField::new(
            "priority",
            format!(
                "{priority} is outside the allowed range; give {MIN_PRIORITY} to {MAX_PRIORITY}"
            ),
        ));
    }
    Ok(priority)
}

/// Checks a Docker/OCI image reference, `[domain[:port]/]path[:tag][@digest]`, as
/// Docker parses it. The first path component is the registry host only when it
/// contains `.` or `:` or is `localhost` (and more components follow), so `busybox` is
/// Docker Hub's `library/busybox`.
pub(crate) fn validate_image_reference(image: &str) -> Result<(), String> {
    if image.is_empty() {
        return Err("must not be empty; give an image reference such as \"busybox:1.36\"".into());
    }
    if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{image:?} must not contain whitespace or control characters"
        ));
    }
    if image.contains("://") {
        return Err(format!(
            "{image:?} looks like a URL; drop the scheme and give a reference such as \"registry.example.com/team/app:tag\""
        ));
    }

    let (name_and_tag, digest) = match image.split_once('@') {
        Some((name_and_tag, digest)) => (name_and_tag, Some(digest)),
        None => (image, None),
    };
    if let Some(digest) = digest
        && !IMAGE_DIGEST.is_match(digest)
    {
        return Err(format!(
            "digest {digest:?} is not valid; give algorithm:hex with at least 32 lowercase hex digits, such as \"sha256:\" followed by 64 hex digits"
        ));
    }

    // A ':' followed by a '/' belongs to a registry port, not to a tag.
    let (name, tag) = match name_and_tag.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
        _ => (name_and_tag, None),
    };
    if let Some(tag) = tag {
        if tag.is_empty() {
            return Err(
                "the tag after ':' is empty; give a tag such as \"latest\" or drop the ':'".into(),
            );
        }
        if tag.len() > MAX_TAG_LEN {
            return Err(format!(
                "the tag is {} characters long; at most {MAX_TAG_LEN} are allowed",
                tag.len()
            ));
        }
        if !IMAGE_TAG.is_match(tag) {
            return Err(format!(
                "tag {tag:?} is not valid; it must start with a letter, digit or '_' and contain only letters, digits, '_', '.' and '-'"
            ));
        }
    }

    if name.is_empty() {
        return Err(
            "the repository name is missing; give one before the tag or digest, such as \"busybox\" in \"busybox:1.36\""
                .into(),
        );
    }
    if name.len() > MAX_IMAGE_NAME_LEN {
        return Err(format!(
            "the repository name is {} characters long; at most {MAX_IMAGE_NAME_LEN} are allowed",
            name.len()
        ));
    }
    let path = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            if !IMAGE_DOMAIN.is_match(first) {
                return Err(format!(
                    "registry {first:?} is not valid; give a host name or IP address with an optional port, such as \"registry.example.com\" or \"localhost:5000\""
                ));
            }
            rest
        }
        _ => name,
    };
    for component in path.split('/') {
        if component.is_empty() {
            return Err(format!(
                "{name:?} has an empty path component; remove the extra, leading or trailing '/'"
            ));
        }
        if component.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(format!(
                "path component {component:?} must be lowercase (only a registry host, which needs a '.' or ':', may have capitals)"
            ));
        }
        if !IMAGE_PATH_COMPONENT.is_match(component) {
            return Err(format!(
                "path component {component:?} is not valid; use lowercase letters and digits separated by '.', '_', '__' or dashes, starting and ending with a letter or digit"
            ));
        }
    }
    Ok(())
}

/// Checks an environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn validate_env_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("an environment variable name must not be empty".into());
    }
    if !ENV_NAME.is_match(name) {
        return Err(format!(
            "{name:?} is not a valid environment variable name; start with a letter or '_' and use only ASCII letters, digits and '_'"
        ));
    }
    Ok(())
}

/// Checks one label (a requirement or a worker label): key 1-63 characters of
/// `[A-Za-z0-9._/-]` starting with a letter or digit; value at most 255 characters, no
/// control characters.
pub fn validate_label(key: &str, value: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("the key must not be empty".into());
    }
    if key.chars().count() > 63 {
        return Err(format!(
            "the key is {} characters long; at most 63 are allowed",
            key.chars().count()
        ));
    }
    if !LABEL_KEY.is_match(key) {
        return Err(format!(
            "key {key:?} is not valid; use letters, digits, '.', '_', '/' and '-', starting with a letter or digit"
        ));
    }
    let value_chars = value.chars().count();
    if value_chars > MAX_LABEL_VALUE_CHARS {
        return Err(format!(
            "the value is {value_chars} characters long; at most {MAX_LABEL_VALUE_CHARS} are allowed"
        ));
    }
    if value.chars().any(char::is_control) {
        return Err("the value must not contain control characters".into());
    }
    Ok(())
}

/// Owner/user/worker names: 1-63 chars of [A-Za-z0-9._-], starting with a letter or digit.
/// `what` is how the caller's user knows the value (a field or flag such as `name`,
/// `workspace` or `--name`); every message starts with it, so it can be returned as is.
pub fn validate_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    let chars = name.chars().count();
    if chars > 63 {
        return Err(format!(
            "{what} is {chars} characters long; at most 63 are allowed"
        ));
    }
    if !NAME.is_match(name) {
        return Err(format!(
            "{what} {name:?} is not valid; use 1-63 letters, digits, '.', '_' and '-', starting with a letter or digit"
        ));
    }
    Ok(())
}

/// Converts a duration as sent to std, refusing negative or out-of-range values.
fn duration_from_raw(field: &str, d: RawDuration) -> Result<Duration, InvalidField> {
    let invalid = |m: String| Err(InvalidField::new(field, m));
    if d.seconds < 0 || (d.seconds == 0 && d.nanos < 0) {
        return invalid(format!(
            "{}s {}ns is negative; give a duration of zero or more",
            d.seconds, d.nanos
        ));
    }
    if d.nanos < 0 {
        return invalid(format!(
            "seconds ({}) and nanos ({}) have different signs; a valid duration has both zero or positive",
            d.seconds, d.nanos
        ));
    }
    if d.nanos > 999_999_999 {
        return invalid(format!(
            "nanos ({}) is out of range; it must be 0 to 999999999",
            d.nanos
        ));
    }
    if d.seconds > MAX_PROTO_DURATION_SECONDS {
        return invalid(format!(
            "{} seconds is above the largest protobuf Duration ({MAX_PROTO_DURATION_SECONDS} seconds)",
            d.seconds
        ));
    }
    match (u64::try_from(d.seconds), u32::try_from(d.nanos)) {
        (Ok(seconds), Ok(nanos)) => Ok(Duration::new(seconds, nanos)),
        // Unreachable after the checks above; refused rather than trusted.
        _ => invalid("is out of range".to_owned()),
    }
}

/// Whole milliseconds, rounded up so that a positive duration stays positive.
fn millis_rounded_up(d: Duration) -> u64 {
    let millis = d.as_millis() + u128::from(!d.subsec_nanos().is_multiple_of(1_000_000));
    u64::try_from(millis).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "hunter2-very-secret-value";
    const DIGEST64: &str =
        "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn spec() -> SpecInput {
        SpecInput {
            image: "busybox:1.36".to_owned(),
            ..Default::default()
        }
    }

    fn request(spec: SpecInput) -> SubmitInput {
        SubmitInput {
            spec: Some(spec),
            ..Default::default()
        }
    }

    fn submit(req: &SubmitInput) -> Result<Submission, InvalidField> {
        validate_submission(req, &SpecDefaults::default())
    }

    fn submit_spec(spec: SpecInput) -> Result<Submission, InvalidField> {
        submit(&request(spec))
    }

    /// Asserts the submission is refused on `field`, and returns the message.
    #[track_caller]
    fn refused_on(result: Result<Submission, InvalidField>, field: &str) -> String {
        match result {
            Ok(s) => panic!("expected {field} to be refused, but it was accepted: {s:?}"),
            Err(e) => {
                assert_eq!(e.field, field, "unexpected field in {e}");
                e.message
            }
        }
    }

    fn raw(seconds: i64, nanos: i32) -> RawDuration {
        RawDuration { seconds, nanos }
    }

    fn map(entries: &[(&str, &str)]) -> HashMap<String, String> {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn static_regexes_compile() {
        for re in [
            &IMAGE_PATH_COMPONENT,
            &IMAGE_DOMAIN,
            &IMAGE_TAG,
            &IMAGE_DIGEST,
            &ENV_NAME,
            &NETWORK_NAME,
            &LABEL_KEY,
            &NAME,
        ] {
            LazyLock::force(re);
        }
    }

    fn with_io(inputs: Vec<InputInput>, outputs: Vec<OutputSpec>) -> SubmitInput {
        SubmitInput {
            inputs,
            outputs,
            ..request(SpecInput {
                working_dir: "/work".into(),
                ..spec()
            })
        }
    }

    fn input(artifact: &str, mount: &str) -> InputInput {
        InputInput {
            artifact: artifact.into(),
            mount: mount.into(),
            from: String::new(),
        }
    }

    fn output(path: &str) -> OutputSpec {
        OutputSpec {
            path: path.into(),
            when: OutputWhen::Success,
        }
    }

    #[test]
    fn an_input_mounts_at_its_artifact_id_unless_a_mount_is_given() {
        let id = "0190f5c2-8b1e-7c3a-9d4e-5f6a7b8c9d0e";
        let s = submit(&with_io(
            vec![input(id, ""), input("pkgs/latest", "pkgs")],
            vec![],
        ))
        .expect("valid");
        assert_eq!(s.inputs[0].mount, id);
        assert_eq!(
            s.inputs[1].source,
            InputSource::Item {
                collection: "pkgs".into(),
                item: "latest".into()
            }
        );
    }

    #[test]
    fn input_mounts_go_through_the_path_validator_and_must_not_overlap() {
        let id = "0190f5c2-8b1e-7c3a-9d4e-5f6a7b8c9d0e";
        for bad in ["../x", "/abs", "a/../../b", "a//b", "a\\b"] {
            refused_on(
                submit(&with_io(vec![input(id, bad)], vec![])),
                "inputs[0].mount",
            );
        }
        let m = refused_on(
            submit(&with_io(vec![input(id, "a"), input(id, "a/b")], vec![])),
            "inputs[1].mount",
        );
        assert!(m.contains("clashes"), "{m}");
        refused_on(
            submit(&with_io(vec![input(id, "a"), input(id, "a")], vec![])),
            "inputs[1].mount",
        );
    }

    #[test]
    fn an_input_must_name_an_artifact_id_or_a_collection_item() {
        refused_on(
            submit(&with_io(vec![input("not an id", "x")], vec![])),
            "inputs[0].artifact",
        );
        refused_on(
            submit(&with_io(vec![input("", "x")], vec![])),
            "inputs[0].artifact",
        );
        // `from` is for workflow steps only.
        let mut from = input("", "x");
        from.from = "build".into();
        refused_on(submit(&with_io(vec![from], vec![])), "inputs[0].from");
        let many: Vec<InputInput> = (0..=MAX_INPUTS)
            .map(|i| input("0190f5c2-8b1e-7c3a-9d4e-5f6a7b8c9d0e", &format!("m{i}")))
            .collect();
        refused_on(submit(&with_io(many, vec![])), "inputs");
    }

    #[test]
    fn outputs_are_relative_globs_stored_with_their_category() {
        let s = submit(&with_io(
            vec![],
            vec![output("dist/**/*.deb"), output("report.xml")],
        ))
        .expect("valid");
        assert_eq!(s.spec.outputs.len(), 2);
        assert_eq!(s.spec.output_category.as_deref(), Some("output"));
        for bad in ["../x", "/etc/passwd", "a/../b", "a[", ""] {
            refused_on(
                submit(&with_io(vec![], vec![output(bad)])),
                "outputs[0].path",
            );
        }
        let mut no_dir = with_io(vec![], vec![output("x")]);
        no_dir.spec = Some(spec());
        refused_on(submit(&no_dir), "spec.working_dir");
        for dir in ["/", "/in", "/in/x"] {
            let mut in_inputs = with_io(vec![], vec![output("x")]);
            in_inputs.spec = Some(SpecInput {
                working_dir: dir.into(),
                ..spec()
            });
            refused_on(submit(&in_inputs), "spec.working_dir");
        }
        let mut bad_category = with_io(vec![], vec![output("x")]);
        bad_category.output_category = "Not A Slug".into();
        refused_on(submit(&bad_category), "output_category");
    }

    #[test]
    fn minimal_spec_gets_every_default() {
        let s = submit_spec(spec()).expect("valid");
        assert_eq!(
            s.spec,
            StoredSpec {
                image: "busybox:1.36".to_owned(),
                command: vec![],
                env: BTreeMap::new(),
                working_dir: None,
                memory_bytes: 1024 * 1024 * 1024,
                cpus: 1.0,
                pids_limit: 1024,
                timeout_ms: 3_600_000,
                stop_grace_period_ms: 10_000,
                network: "none".to_owned(),
                pull_policy: PullPolicy::IfNotPresent,
                networks: Vec::new(),
                outputs: vec![],
                output_category: None,
                ports: Vec::new(),
            }
        );
        assert!(s.secret_env.is_empty());
        assert!(s.requirements.is_empty());
        assert_eq!(s.priority, 0);
        assert_eq!(s.workspace, "default");
    }

    #[test]
    fn server_defaults_are_used_for_unset_limits() {
        let defaults = SpecDefaults {
            memory_bytes: 64 * MIB,
            cpus: 2.5,
            pids_limit: 99,
            timeout: Duration::from_secs(90),
            stop_grace_period: Duration::from_millis(1500),
        };
        let s = validate_submission(&request(spec()), &defaults).expect("valid");
        assert_eq!(s.spec.memory_bytes, 64 * MIB);
        assert_eq!(s.spec.cpus, 2.5);
        assert_eq!(s.spec.pids_limit, 99);
        assert_eq!(s.spec.timeout_ms, 90_000);
        assert_eq!(s.spec.stop_grace_period_ms, 1500);
    }

    #[test]
    fn given_values_are_kept() {
        let req = SubmitInput {
            spec: Some(SpecInput {
                ports: Vec::new(),
                image: "localhost:5000/team/app:v1.2-rc_3".to_owned(),
                command: vec!["sh".to_owned(), "-c".to_owned(), "echo hi".to_owned()],
                env: map(&[("B", "2"), ("A", "1")]),
                secret_env: map(&[("TOKEN", SECRET)]),
                working_dir: "/srv".to_owned(),
                memory_bytes: Some(512 * MIB),
                cpus: Some(0.5),
                pids_limit: Some(64),
                timeout: Some(raw(120, 500_000_000)),
                network: "bridge".to_owned(),
                pull_policy: Some(PullPolicy::Never),
                networks: Vec::new(),
                stop_grace_period: Some(raw(0, 0)),
            }),
            requirements: map(&[("gpu", "a100"), ("arch", "amd64")]),
            priority: -5,
            workspace: "team-a".to_owned(),
            ..Default::default()
        };
        let s = submit(&req).expect("valid");
        assert_eq!(s.spec.image, "localhost:5000/team/app:v1.2-rc_3");
        assert_eq!(s.spec.command, ["sh", "-c", "echo hi"]);
        assert_eq!(
            s.spec.env.keys().collect::<Vec<_>>(),
            ["A", "B"],
            "env is kept sorted"
        );
        assert_eq!(s.spec.working_dir.as_deref(), Some("/srv"));
        assert_eq!(s.spec.memory_bytes, 512 * MIB);
        assert_eq!(s.spec.cpus, 0.5);
        assert_eq!(s.spec.pids_limit, 64);
        assert_eq!(s.spec.timeout_ms, 120_500);
        assert_eq!(s.spec.stop_grace_period_ms, 0);
        assert_eq!(s.spec.network, "bridge");
        assert_eq!(s.spec.pull_policy, PullPolicy::Never);
        assert_eq!(s.secret_env.get("TOKEN").map(String::as_str), Some(SECRET));
        assert!(
            !s.spec.env.contains_key("TOKEN"),
            "secrets stay out of the stored spec"
        );
        assert_eq!(s.requirements.len(), 2);
        assert_eq!(s.priority, -5);
        assert_eq!(s.workspace, "team-a");
    }

    #[test]
    fn missing_spec_is_refused() {
        let msg = refused_on(submit(&SubmitInput::default()), "spec");
        assert_eq!(msg, "is required");
    }

    #[test]
    fn missing_image_is_refused() {
        let msg = refused_on(submit_spec(SpecInput::default()), "spec.image");
        assert!(msg.starts_with("is required"), "{msg}");
    }

    #[test]
    fn valid_image_references_are_accepted() {
        let long_tag = format!("a:{}", "t".repeat(128));
        let long_name = format!("{}/{}", "a".repeat(127), "b".repeat(127)); // 255 chars
        for image in [
            "busybox",
            "busybox:1.36",
            "library/busybox:latest",
            "localhost:5000/team/app:v1.2-rc_3",
            &format!("registry.example.com/a/b@{DIGEST64}"),
            &format!("ghcr.io/org/img:tag@{DIGEST64}"),
            "berth-test/busybox:local",
            "Registry.Example.COM/app",
            "192.168.1.10:5000/app",
            "[::1]:5000/app",
            "a__b/c.d/e---f",
            "localhost:5000",
            "a:_tag",
            "a@md5:0123456789abcdef0123456789abcdef",
            "a@sha256+b64.x_y-z:0123456789abcdef0123456789abcdef",
            &long_tag,
            &long_name,
        ] {
            assert_eq!(validate_image_reference(image), Ok(()), "{image}");
            submit_spec(SpecInput {
                image: image.to_owned(),
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("{image}: {e}"));
        }
    }

    #[test]
    fn invalid_image_references_are_refused() {
        let long_tag = format!("a:{}", "t".repeat(129));
        let long_name = format!("{}/{}", "a".repeat(128), "b".repeat(127)); // 256 chars
        for (image, expected) in [
            ("", "must not be empty"),
            ("Busybox", "must be lowercase"),
            ("busybox:", "the tag after ':' is empty"),
            (":tag", "the repository name is missing"),
            ("a//b", "empty path component"),
            ("/a", "empty path component"),
            ("a/", "empty path component"),
            ("-a", "is not valid"),
            ("a-", "is not valid"),
            ("a..b", "is not valid"),
            ("a___b", "is not valid"),
            ("busybox:tag with space", "whitespace"),
            ("busybox\n", "whitespace"),
            ("http://x/y", "looks like a URL"),
            ("a@sha256:zz", "digest \"sha256:zz\""),
            ("a@sha256:0123456789abcdef0123456789abcde", "digest"), // 31 hex
            ("a@SHA256:0123456789abcdef0123456789abcdef", "digest"),
            ("a@sha256:0123456789ABCDEF0123456789ABCDEF", "digest"),
            ("a@", "digest"),
            ("a:-tag", "tag \"-tag\" is not valid"),
            ("a:tag!", "is not valid"),
            ("a:t\u{e9}", "is not valid"),
            ("bad_host.example.com/app", "registry"),
            ("example.com:port/app", "registry"),
            ("a:b:c", "is not valid"),
            ("Team/app", "must be lowercase"),
            (&long_tag, "the tag is 129 characters long; at most 128"),
            (&long_name, "256 characters long; at most 255"),
        ] {
            let err =
                validate_image_reference(image).expect_err(&format!("{image:?} should be refused"));
            assert!(err.contains(expected), "{image:?}: {err}");
            refused_on(
                submit_spec(SpecInput {
                    image: image.to_owned(),
                    ..Default::default()
                }),
                "spec.image",
            );
        }
    }

    #[test]
    fn command_of_1000_arguments_is_accepted_and_1001_refused() {
        let ok = SpecInput {
            command: vec!["x".to_owned(); 1000],
            ..spec()
        };
        submit_spec(ok).expect("1000 arguments are allowed");
        let too_many = SpecInput {
            command: vec!["x".to_owned(); 1001],
            ..spec()
        };
        let msg = refused_on(submit_spec(too_many), "spec.command");
        assert_eq!(msg, "1001 arguments; at most 1000 are allowed");
    }

    #[test]
    fn empty_command_runs_the_image_default() {
        let s = submit_spec(spec()).expect("valid");
        assert!(s.spec.command.is_empty());
    }

    #[test]
    fn empty_or_nul_command_argument_is_refused_by_index() {
        let command = ["a", "b", "c", "", "e"].map(str::to_owned).to_vec();
        let msg = refused_on(
            submit_spec(SpecInput { command, ..spec() }),
            "spec.command[3]",
        );
        assert_eq!(msg, "must not be empty");
        let command = vec!["a\0b".to_owned()];
        refused_on(
            submit_spec(SpecInput { command, ..spec() }),
            "spec.command[0]",
        );
    }

    #[test]
    fn env_names() {
        for ok in ["A", "_", "_x1", "PATH", "lower_case", "A1_B2"] {
            assert_eq!(validate_env_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "1BAD", "A-B", "A B", "A=B", "\u{e9}", "A.B"] {
            assert!(validate_env_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_env_key_is_refused_with_its_path() {
        let msg = refused_on(
            submit_spec(SpecInput {
                env: map(&[("1BAD", "x")]),
                ..spec()
            }),
            "spec.env[\"1BAD\"]",
        );
        assert!(msg.contains("start with a letter or '_'"), "{msg}");
        refused_on(
            submit_spec(SpecInput {
                secret_env: map(&[("A B", SECRET)]),
                ..spec()
            }),
            "spec.secret_env[\"A B\"]",
        );
    }

    #[test]
    fn env_values_with_nul_are_refused_without_echoing_them() {
        let msg = refused_on(
            submit_spec(SpecInput {
                env: map(&[("A", "x\0y")]),
                ..spec()
            }),
            "spec.env[\"A\"]",
        );
        assert_eq!(msg, "value must not contain a NUL byte");
        let secret = format!("{SECRET}\0");
        let err = submit_spec(SpecInput {
            secret_env: map(&[("TOKEN", &secret)]),
            ..spec()
        })
        .expect_err("NUL in a secret value");
        assert_eq!(err.field, "spec.secret_env[\"TOKEN\"]");
        assert!(!err.to_string().contains(SECRET), "{err}");
    }

    #[test]
    fn empty_env_values_are_allowed() {
        let s = submit_spec(SpecInput {
            env: map(&[("EMPTY", "")]),
            ..spec()
        })
        .expect("valid");
        assert_eq!(s.spec.env.get("EMPTY").map(String::as_str), Some(""));
    }

    #[test]
    fn same_key_in_env_and_secret_env_is_refused() {
        let err = submit_spec(SpecInput {
            env: map(&[("TOKEN", "plain")]),
            secret_env: map(&[("TOKEN", SECRET)]),
            ..spec()
        })
        .expect_err("duplicate key");
        assert_eq!(err.field, "spec.secret_env[\"TOKEN\"]");
        assert!(err.message.contains("only one of"), "{err}");
        assert!(!err.to_string().contains(SECRET), "{err}");
    }

    #[test]
    fn env_and_secret_env_may_take_64_kib_together_and_no_more() {
        // "A" + 32767 bytes and "S" + 32767 bytes = 65536 bytes exactly.
        let plain = "p".repeat(32_767);
        let secret = SECRET.repeat(32_767 / SECRET.len() + 1)[..32_767].to_owned();
        let at_limit = SpecInput {
            env: map(&[("A", &plain)]),
            secret_env: map(&[("S", &secret)]),
            ..spec()
        };
        submit_spec(at_limit.clone()).expect("exactly 64 KiB is allowed");

        let mut past = at_limit;
        past.secret_env.insert("S".to_owned(), format!("{secret}x"));
        let err = submit_spec(past).expect_err("64 KiB + 1 byte");
        assert_eq!(err.field, "spec.env");
        assert!(err.message.contains("65537 bytes"), "{err}");
        assert!(err.message.contains("at most 65536"), "{err}");
        assert!(!err.to_string().contains(SECRET), "{err}");
    }

    #[test]
    fn working_dir_must_be_absolute_without_nul_and_at_most_4096_bytes() {
        let with = |dir: &str| {
            submit_spec(SpecInput {
                working_dir: dir.to_owned(),
                ..spec()
            })
        };
        assert_eq!(with("").expect("empty").spec.working_dir, None);
        assert_eq!(
            with("/").expect("root").spec.working_dir.as_deref(),
            Some("/")
        );
        let msg = refused_on(with("relative/dir"), "spec.working_dir");
        assert!(msg.contains("not absolute"), "{msg}");
        refused_on(with("/a\0b"), "spec.working_dir");

        let max = format!("/{}", "d".repeat(4095));
        with(&max).expect("4096 bytes");
        let msg = refused_on(with(&format!("{max}d")), "spec.working_dir");
        assert!(msg.contains("4097 bytes"), "{msg}");
    }

    fn with_memory(bytes: u64) -> Result<Submission, InvalidField> {
        submit_spec(SpecInput {
            memory_bytes: Some(bytes),
            ..spec()
        })
    }

    #[test]
    fn memory_limit_bounds() {
        assert_eq!(
            with_memory(6 * MIB).expect("6 MiB").spec.memory_bytes,
            6 * MIB
        );
        assert_eq!(with_memory(TIB).expect("1 TiB").spec.memory_bytes, TIB);
        let msg = refused_on(with_memory(MIB), "spec.memory_bytes");
        assert_eq!(
            msg,
            "1048576 bytes is below the minimum of 6 MiB (6291456 bytes)"
        );
        refused_on(with_memory(6 * MIB - 1), "spec.memory_bytes");
        refused_on(with_memory(0), "spec.memory_bytes");
        let msg = refused_on(with_memory(TIB + 1), "spec.memory_bytes");
        assert!(msg.contains("above the maximum of 1 TiB"), "{msg}");
    }

    fn with_cpus(cpus: f64) -> Result<Submission, InvalidField> {
        submit_spec(SpecInput {
            cpus: Some(cpus),
            ..spec()
        })
    }

    #[test]
    fn cpus_bounds() {
        assert_eq!(with_cpus(1024.0).expect("1024").spec.cpus, 1024.0);
        assert_eq!(with_cpus(0.01).expect("smallest").spec.cpus, 0.01);
        for bad in [
            0.001,
            f64::MIN_POSITIVE,
            0.0,
            -0.0,
            -1.0,
            1024.0_f64.next_up(),
            2048.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            refused_on(with_cpus(bad), "spec.cpus");
        }
    }

    fn with_pids(pids: i64) -> Result<Submission, InvalidField> {
        submit_spec(SpecInput {
            pids_limit: Some(pids),
            ..spec()
        })
    }

    #[test]
    fn pids_limit_bounds() {
        with_pids(1).expect("1");
        with_pids(4_194_304).expect("4194304");
        for bad in [0, -1, 4_194_305, i64::MIN, i64::MAX] {
            refused_on(with_pids(bad), "spec.pids_limit");
        }
    }

    fn with_timeout(seconds: i64, nanos: i32) -> Result<Submission, InvalidField> {
        submit_spec(SpecInput {
            timeout: Some(raw(seconds, nanos)),
            ..spec()
        })
    }

    #[test]
    fn timeout_bounds() {
        let week = 7 * 24 * 3600;
        assert_eq!(
            with_timeout(week, 0).expect("7 days").spec.timeout_ms,
            604_800_000
        );
        assert_eq!(
            with_timeout(0, 1).expect("1ns").spec.timeout_ms,
            1,
            "a positive timeout never rounds down to zero"
        );
        let msg = refused_on(with_timeout(0, 0), "spec.timeout");
        assert!(msg.contains("greater than 0"), "{msg}");
        let msg = refused_on(with_timeout(week, 1), "spec.timeout");
        assert!(msg.contains("above the maximum of 7days"), "{msg}");
        refused_on(with_timeout(-1, 0), "spec.timeout");
        refused_on(with_timeout(0, -1), "spec.timeout");
    }

    fn with_grace(seconds: i64, nanos: i32) -> Result<Submission, InvalidField> {
        submit_spec(SpecInput {
            stop_grace_period: Some(raw(seconds, nanos)),
            ..spec()
        })
    }

    #[test]
    fn stop_grace_period_bounds() {
        assert_eq!(with_grace(0, 0).expect("0").spec.stop_grace_period_ms, 0);
        assert_eq!(
            with_grace(3600, 0).expect("1h").spec.stop_grace_period_ms,
            3_600_000
        );
        let msg = refused_on(with_grace(3600, 1), "spec.stop_grace_period");
        assert!(msg.contains("above the maximum of 1h"), "{msg}");
        refused_on(with_grace(-1, 0), "spec.stop_grace_period");
    }

    #[test]
    fn duration_from_raw_refuses_negative_and_out_of_range() {
        let f = "x.d";
        assert_eq!(duration_from_raw(f, raw(1, 500)), Ok(Duration::new(1, 500)));
        assert_eq!(
            duration_from_raw(f, raw(315_576_000_000, 999_999_999)),
            Ok(Duration::new(315_576_000_000, 999_999_999))
        );
        for (s, n) in [
            (-1, 0),
            (0, -1),
            (-1, -1),
            (1, -1),
            (0, 1_000_000_000),
            (315_576_000_001, 0),
            (i64::MIN, 0),
            (i64::MAX, i32::MAX),
        ] {
            let err = duration_from_raw(f, raw(s, n)).expect_err(&format!("{s}s {n}ns"));
            assert_eq!(err.field, f);
        }
    }

    fn with_network(network: &str) -> Result<Submission, InvalidField> {
        submit_spec(SpecInput {
            network: network.to_owned(),
            ..spec()
        })
    }

    #[test]
    fn network_defaults_to_none_and_refuses_host() {
        assert_eq!(with_network("").expect("empty").spec.network, "none");
        for ok in ["none", "bridge", "my_net.1-a", &"n".repeat(128)] {
            assert_eq!(with_network(ok).expect(ok).spec.network, ok);
        }
        let msg = refused_on(with_network("host"), "spec.network");
        assert_eq!(
            msg,
            "network 'host' is not allowed: it would give the job the worker's network namespace"
        );
        for bad in [
            "container:abc",
            "container:",
            "-net",
            "_net",
            "a b",
            "net/x",
            &"n".repeat(129),
        ] {
            refused_on(with_network(bad), "spec.network");
        }
    }

    fn attach(name: &str, aliases: &[&str]) -> NetworkAttachment {
        NetworkAttachment {
            name: name.to_owned(),
            aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    fn with_networks(
        network: &str,
        networks: Vec<NetworkAttachment>,
    ) -> Result<Submission, InvalidField> {
        submit_spec(SpecInput {
            network: network.to_owned(),
            networks,
            ..spec()
        })
    }

    #[test]
    fn networks_with_aliases_store_the_first_as_the_network() {
        let list = vec![attach("jobs", &["db", "db.local"]), attach("backend", &[])];
        let s = with_networks("", list.clone()).expect("valid");
        assert_eq!(s.spec.network, "jobs");
        assert_eq!(s.spec.networks, list);
        let s = with_networks("jobs", list.clone()).expect("same as the first");
        assert_eq!(s.spec.network, "jobs");
        // One network without aliases says no more than `network`.
        let s = with_networks("", vec![attach("jobs", &[])]).expect("plain");
        assert_eq!(s.spec.network, "jobs");
        assert!(s.spec.networks.is_empty());
    }

    #[test]
    fn bad_networks_are_refused_naming_the_entry() {
        let msg = refused_on(
            with_networks("other", vec![attach("jobs", &[])]),
            "spec.network",
        );
        assert!(msg.contains("first of spec.networks"), "{msg}");
        for bad in ["none", "host", "container:abc", "", "-x", "a b"] {
            refused_on(
                with_networks("", vec![attach("jobs", &[]), attach(bad, &[])]),
                "spec.networks[1].name",
            );
        }
        let msg = refused_on(
            with_networks("", vec![attach("jobs", &[]), attach("jobs", &["a"])]),
            "spec.networks[1].name",
        );
        assert!(msg.contains("spec.networks[0]"), "{msg}");
        for bad in ["-db", "db-", "d_b", "a b", &"a".repeat(64), ""] {
            refused_on(
                with_networks("", vec![attach("jobs", &["ok", bad])]),
                "spec.networks[0].aliases[1]",
            );
        }
        with_networks("", vec![attach("jobs", &[&"a".repeat(63), "a", "x.y-z9"])])
            .expect("good aliases");
        let many: Vec<_> = (0..9).map(|i| attach(&format!("n{i}"), &[])).collect();
        refused_on(with_networks("", many), "spec.networks");
        let aliases: Vec<String> = (0..17).map(|i| format!("a{i}")).collect();
        let aliases: Vec<&str> = aliases.iter().map(String::as_str).collect();
        refused_on(
            with_networks("", vec![attach("jobs", &aliases)]),
            "spec.networks[0].aliases",
        );
    }

    #[test]
    fn pull_policy_defaults_to_if_not_present() {
        for (value, expected) in [
            (None, PullPolicy::IfNotPresent),
            (Some(PullPolicy::Always), PullPolicy::Always),
            (Some(PullPolicy::IfNotPresent), PullPolicy::IfNotPresent),
            (Some(PullPolicy::Never), PullPolicy::Never),
        ] {
            let s = submit_spec(SpecInput {
                pull_policy: value,
                ..spec()
            })
            .expect("known policy");
            assert_eq!(s.spec.pull_policy, expected);
        }
    }

    fn with_requirements(entries: HashMap<String, String>) -> Result<Submission, InvalidField> {
        submit(&SubmitInput {
            requirements: entries,
            ..request(spec())
        })
    }

    #[test]
    fn requirement_count_bounds() {
        let n = |count: usize| {
            (0..count)
                .map(|i| (format!("k{i}"), "v".to_owned()))
                .collect::<HashMap<_, _>>()
        };
        with_requirements(n(64)).expect("64 requirements");
        let msg = refused_on(with_requirements(n(65)), "requirements");
        assert_eq!(msg, "65 requirements; at most 64 are allowed");
    }

    #[test]
    fn requirement_keys_and_values() {
        let key63 = format!("k{}", "x".repeat(62));
        let value255 = "v".repeat(255);
        with_requirements(map(&[
            (&key63, &value255),
            ("example.com/gpu-model_x", ""),
            ("9lives", "caf\u{e9}"),
        ]))
        .expect("valid labels");

        let key64 = format!("{key63}x");
        for (key, value) in [
            ("a b", "v"),
            ("", "v"),
            ("-a", "v"),
            ("/a", "v"),
            ("a:b", "v"),
            (key64.as_str(), "v"),
            ("k", &"v".repeat(256)),
            ("k", "line\nbreak"),
            ("k", "tab\t"),
            ("k", "\u{7f}"),
        ] {
            refused_on(
                with_requirements(map(&[(key, value)])),
                &format!("requirements[{key:?}]"),
            );
        }
        let msg = refused_on(
            with_requirements(map(&[("a b", "v")])),
            "requirements[\"a b\"]",
        );
        assert!(msg.contains("key"), "{msg}");
    }

    #[test]
    fn label_value_length_counts_characters_not_bytes() {
        assert_eq!(validate_label("k", &"\u{e9}".repeat(255)), Ok(()));
        assert!(validate_label("k", &"\u{e9}".repeat(256)).is_err());
    }

    fn with_priority(priority: i32) -> Result<Submission, InvalidField> {
        submit(&SubmitInput {
            priority,
            ..request(spec())
        })
    }

    #[test]
    fn priority_bounds() {
        assert_eq!(with_priority(-1000).expect("-1000").priority, -1000);
        assert_eq!(with_priority(1000).expect("1000").priority, 1000);
        for bad in [-1001, 1001, i32::MIN, i32::MAX] {
            refused_on(with_priority(bad), "priority");
        }
    }

    fn with_workspace(workspace: &str) -> Result<Submission, InvalidField> {
        submit(&SubmitInput {
            workspace: workspace.to_owned(),
            ..request(spec())
        })
    }

    #[test]
    fn workspace_defaults_and_is_a_name() {
        assert_eq!(with_workspace("").expect("empty").workspace, "default");
        assert_eq!(
            with_workspace("Team.a_1-x").expect("ok").workspace,
            "Team.a_1-x"
        );
        let msg = refused_on(with_workspace("a b"), "workspace");
        assert!(msg.starts_with("workspace \"a b\" is not valid"), "{msg}");
        refused_on(with_workspace("-a"), "workspace");
    }

    #[test]
    fn names() {
        let max = format!("a{}", "b".repeat(62));
        for ok in ["a", "0", "A.b_c-d", "worker-01", max.as_str()] {
            assert_eq!(validate_name("worker", ok), Ok(()), "{ok}");
        }
        let too_long = format!("{max}b");
        for bad in [
            "",
            ".a",
            "_a",
            "-a",
            "a b",
            "a/b",
            "a:b",
            "\u{e9}",
            too_long.as_str(),
        ] {
            let err = validate_name("worker", bad).expect_err(bad);
            assert!(err.starts_with("worker "), "{err}");
        }
    }

    #[test]
    fn first_bad_field_is_reported_in_a_fixed_order() {
        let all_bad = SubmitInput {
            spec: Some(SpecInput {
                ports: Vec::new(),
                image: "Bad".to_owned(),
                command: vec![String::new()],
                env: map(&[("2B", "x"), ("1A", "x")]),
                secret_env: map(&[("1S", SECRET)]),
                working_dir: "rel".to_owned(),
                memory_bytes: Some(0),
                cpus: Some(0.0),
                pids_limit: Some(0),
                timeout: Some(raw(0, 0)),
                network: "host".to_owned(),
                pull_policy: None,
                networks: Vec::new(),
                stop_grace_period: Some(raw(-1, 0)),
            }),
            requirements: map(&[("b b", "v"), ("a a", "v")]),
            priority: 5000,
            workspace: "bad name".to_owned(),
            ..Default::default()
        };
        let mut req = all_bad;
        let expected = [
            "spec.image",
            "spec.command[0]",
            "spec.env[\"1A\"]",
            "spec.env[\"2B\"]",
            "spec.secret_env[\"1S\"]",
            "spec.working_dir",
            "spec.memory_bytes",
            "spec.cpus",
            "spec.pids_limit",
            "spec.timeout",
            "spec.stop_grace_period",
            "spec.network",
            "requirements[\"a a\"]",
            "requirements[\"b b\"]",
            "priority",
            "workspace",
        ];
        for field in expected {
            let err = submit(&req).expect_err(field);
            assert_eq!(err.field, field);
            // Fix the reported field, and expect the next one.
            let spec = req.spec.as_mut().expect("spec");
            match field {
                "spec.image" => spec.image = "busybox".to_owned(),
                "spec.command[0]" => spec.command.clear(),
                "spec.env[\"1A\"]" => drop(spec.env.remove("1A")),
                "spec.env[\"2B\"]" => drop(spec.env.remove("2B")),
                "spec.secret_env[\"1S\"]" => drop(spec.secret_env.remove("1S")),
                "spec.working_dir" => spec.working_dir.clear(),
                "spec.memory_bytes" => spec.memory_bytes = None,
                "spec.cpus" => spec.cpus = None,
                "spec.pids_limit" => spec.pids_limit = None,
                "spec.timeout" => spec.timeout = None,
                "spec.stop_grace_period" => spec.stop_grace_period = None,
                "spec.network" => spec.network.clear(),
                "requirements[\"a a\"]" => drop(req.requirements.remove("a a")),
                "requirements[\"b b\"]" => drop(req.requirements.remove("b b")),
                "priority" => req.priority = 0,
                "workspace" => req.workspace.clear(),
                _ => unreachable!(),
            }
        }
        submit(&req).expect("every field fixed");
    }

    #[test]
    fn a_spec_as_sent_shows_secret_keys_but_never_values() {
        let input = SpecInput {
            secret_env: map(&[("API_TOKEN", SECRET)]),
            ..spec()
        };
        let submitted = request(input.clone());
        for out in [format!("{input:?}"), format!("{submitted:#?}")] {
            assert!(out.contains("API_TOKEN"), "{out}");
            assert!(!out.contains(SECRET), "{out}");
        }
    }

    #[test]
    fn debug_output_shows_secret_keys_but_never_values() {
        let s = submit_spec(SpecInput {
            secret_env: map(&[("API_TOKEN", SECRET)]),
            ..spec()
        })
        .expect("valid");
        for out in [format!("{s:?}"), format!("{s:#?}")] {
            assert!(out.contains("API_TOKEN"), "{out}");
            assert!(out.contains("<redacted>"), "{out}");
            assert!(!out.contains(SECRET), "{out}");
        }
    }

    #[test]
    fn returned_spec_round_trips_through_validation() {
        let req = SubmitInput {
            spec: Some(SpecInput {
                ports: Vec::new(),
                image: format!("ghcr.io/org/img:tag@{DIGEST64}"),
                command: vec!["run".to_owned()],
                env: map(&[("A", "1")]),
                secret_env: map(&[("S", SECRET)]),
                working_dir: "/w".to_owned(),
                memory_bytes: Some(100 * MIB),
                cpus: Some(1.5),
                pids_limit: Some(10),
                timeout: Some(raw(61, 250_000_000)),
                network: "bridge".to_owned(),
                pull_policy: Some(PullPolicy::Always),
                networks: Vec::new(),
                stop_grace_period: Some(raw(3, 0)),
            }),
            ..Default::default()
        };
        let stored = submit(&req).expect("valid").spec;
        let returned = stored.to_input();
        assert!(returned.secret_env.is_empty(), "secrets are never returned");
        assert_eq!(returned.image, stored.image);
        assert_eq!(returned.env, map(&[("A", "1")]));
        assert_eq!(returned.working_dir, "/w");
        assert_eq!(returned.memory_bytes, Some(100 * MIB));
        assert_eq!(returned.cpus, Some(1.5));
        assert_eq!(returned.pids_limit, Some(10));
        assert_eq!(returned.timeout, Some(raw(61, 250_000_000)));
        assert_eq!(returned.stop_grace_period, Some(raw(3, 0)));
        assert_eq!(returned.network, "bridge");
        assert_eq!(returned.pull_policy, Some(PullPolicy::Always));

        let again = submit(&request(returned))
            .expect("the returned spec is valid")
            .spec;
        assert_eq!(again, stored);
    }

    #[test]
    fn returned_spec_fills_every_optional_from_defaults() {
        let returned = submit_spec(spec()).expect("valid").spec.to_input();
        assert_eq!(returned.working_dir, "");
        assert_eq!(returned.memory_bytes, Some(GIB));
        assert_eq!(returned.cpus, Some(1.0));
        assert_eq!(returned.pids_limit, Some(1024));
        assert_eq!(returned.timeout, Some(raw(3600, 0)));
        assert_eq!(returned.stop_grace_period, Some(raw(10, 0)));
        assert_eq!(returned.network, "none");
        assert_eq!(returned.pull_policy, Some(PullPolicy::IfNotPresent));
    }

    #[test]
    fn stored_spec_json_round_trips_with_kebab_case_pull_policy() {
        let stored = submit_spec(SpecInput {
            env: map(&[("A", "1")]),
            ..spec()
        })
        .expect("valid")
        .spec;
        let json = serde_json::to_string(&stored).expect("serialize");
        assert!(
            json.contains("\"pull_policy\":\"if-not-present\""),
            "{json}"
        );
        let back: StoredSpec = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, stored);
    }

    #[test]
    fn invalid_field_displays_field_then_message() {
        let err = InvalidField::new("spec.memory_bytes", "too small");
        assert_eq!(err.to_string(), "spec.memory_bytes: too small");
    }
}
