//! Views of work requests: one request with its spec, attempts and (for a workflow) its
//! steps, and a page of `list`.

use std::collections::{BTreeMap, HashMap};

use berth_common::proto;
use serde::Serialize;

use super::{
    Answer, NONE, Render, Span, Table, Time, enum_name, fields, opt, pairs, size, sorted, time,
    yes_no,
};

pub(crate) fn status_name(value: i32) -> String {
    use proto::WorkRequestStatus as S;
    let name = S::try_from(value).ok().map(|status| match status {
        S::Unspecified => "unspecified",
        S::Blocked => "blocked",
        S::Pending => "pending",
        S::Running => "running",
        S::Completed => "completed",
        S::Aborted => "aborted",
    });
    enum_name(value, name)
}

/// `None` while there is no result (the protocol's UNSPECIFIED), so JSON says `null`.
fn result_name(value: i32) -> Option<String> {
    use proto::WorkResult as R;
    let name = match R::try_from(value) {
        Ok(R::Unspecified) => return None,
        Ok(R::Success) => Some("success"),
        Ok(R::Failure) => Some("failure"),
        Ok(R::Error) => Some("error"),
        Err(_) => None,
    };
    Some(enum_name(value, name))
}

/// `None` for the server's default (UNSPECIFIED), so JSON says `null`.
pub(super) fn pull_policy_name(value: i32) -> Option<String> {
    use proto::PullPolicy as P;
    let name = match P::try_from(value) {
        Ok(P::Unspecified) => return None,
        Ok(P::Always) => Some("always"),
        Ok(P::IfNotPresent) => Some("if-not-present"),
        Ok(P::Never) => Some("never"),
        Err(_) => None,
    };
    Some(enum_name(value, name))
}

/// A work request with its container spec flattened in (`image`, `command`, ...).
#[derive(Debug, Serialize)]
pub struct WorkRequestView {
    pub id: String,
    pub workspace: String,
    pub status: String,
    pub result: Option<String>,
    pub exit_code: Option<i32>,
    pub reason: String,
    pub message: String,
    pub log_truncated: bool,
    /// For pending requests: 1 for the next to be offered; null otherwise.
    pub queue_position: Option<u32>,
    /// For blocked and pending requests: why it waits.
    pub pending_reason: String,
    pub priority: i32,
    pub priority_base: i32,
    pub priority_adjustment: i32,
    pub image: String,
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub secret_env_keys: Vec<String>,
    pub working_dir: String,
    pub memory_bytes: Option<u64>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    pub timeout: Option<Span>,
    pub stop_grace_period: Option<Span>,
    pub network: String,
    /// Every network with its aliases, when the spec lists them.
    pub networks: Vec<NetworkView>,
    pub pull_policy: Option<String>,
    pub requirements: BTreeMap<String, String>,
    pub created_by: String,
    pub created_at: Option<Time>,
    pub started_at: Option<Time>,
    pub completed_at: Option<Time>,
    pub attempt_count: u32,
    /// Ids of the requests this one runs after.
    pub depends_on: Vec<String>,
    /// How it leaves `blocked`: `deps` or `manual`.
    pub unblock: String,
    /// Whether its dependants run even if it fails.
    pub allow_failure: bool,
    /// Automatic retries left on failure.
    pub retries_left: u32,
    pub attempts: Vec<AttemptView>,
    /// The step name (for a workflow step) or the workflow name (for a workflow).
    pub name: String,
    /// The template it was made from ('' when submitted directly).
    pub template: String,
    /// That template's release (absent when submitted directly).
    pub template_version: Option<u32>,
    /// For a service replica's container: the service and the replica (`web.1`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub service: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub service_replica: String,
    /// For a request a trigger rule made: the rule and the event that made it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub trigger_rule: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub trigger_event_id: String,
    /// The workflow this request is a step of; empty otherwise.
    pub parent_id: String,
    /// A workflow's steps, in an order they can run in; empty for other requests.
    pub children: Vec<WorkRequestView>,
    /// The artifacts mounted under /in.
    pub inputs: Vec<InputView>,
    /// What is collected from the working dir after the container exits.
    pub outputs: Vec<OutputView>,
    /// The collected artifact's category (empty without outputs).
    pub output_category: String,
    /// The artifact the last attempt's outputs were collected into; empty if none.
    pub output_artifact_id: String,
}

/// One network of a request, with its aliases there.
#[derive(Debug, Serialize)]
pub struct NetworkView {
    pub name: String,
    pub aliases: Vec<String>,
}

impl NetworkView {
    /// `NAME` or `NAME (aliases a, b)`.
    fn shown(&self) -> String {
        if self.aliases.is_empty() {
            self.name.clone()
        } else {
            format!("{} (aliases {})", self.name, self.aliases.join(", "))
        }
    }
}

/// One input of a request.
#[derive(Debug, Serialize)]
pub struct InputView {
    /// Relative to /in.
    pub mount: String,
    /// The artifact it is pinned to; empty while it waits for a step's output.
    pub artifact_id: String,
    /// The step whose output it takes; empty otherwise.
    pub from_work_request_id: String,
}

/// One declared output.
#[derive(Debug, Serialize)]
pub struct OutputView {
    /// Relative to the working dir; globs allowed.
    pub path: String,
    /// `success` or `always`.
    pub when: String,
}

impl InputView {
    fn shown(&self) -> String {
        match (
            self.artifact_id.as_str(),
            self.from_work_request_id.as_str(),
        ) {
            ("", from) => format!("/in/{} <- output of {from} (not yet made)", self.mount),
            (id, "") => format!("/in/{} <- {id}", self.mount),
            (id, from) => format!("/in/{} <- {id} (output of {from})", self.mount),
        }
    }
}

impl From<proto::WorkRequest> for WorkRequestView {
    fn from(request: proto::WorkRequest) -> WorkRequestView {
        // `spec.secret_env` is deliberately never read: the server leaves it empty, and
        // even if it did not, the CLI must not print secret values.
        let spec = request.spec.unwrap_or_default();
        WorkRequestView {
            id: request.id,
            workspace: request.workspace,
            status: status_name(request.status),
            result: result_name(request.result),
            exit_code: request.exit_code,
            reason: request.reason,
            message: request.message,
            log_truncated: request.log_truncated,
            queue_position: (request.queue_position > 0).then_some(request.queue_position),
            pending_reason: request.pending_reason,
            priority: request.priority,
            priority_base: request.priority_base,
            priority_adjustment: request.priority_adjustment,
            image: spec.image,
            command: spec.command,
            env: sorted(spec.env),
            secret_env_keys: request.secret_env_keys,
            working_dir: spec.working_dir,
            memory_bytes: spec.memory_bytes,
            cpus: spec.cpus,
            pids_limit: spec.pids_limit,
            timeout: Span::from_proto(spec.timeout.as_ref()),
            stop_grace_period: Span::from_proto(spec.stop_grace_period.as_ref()),
            network: spec.network,
            networks: spec
                .networks
                .into_iter()
                .map(|n| NetworkView {
                    name: n.name,
                    aliases: n.aliases,
                })
                .collect(),
            pull_policy: pull_policy_name(spec.pull_policy),
            requirements: sorted(request.requirements),
            created_by: request.created_by,
            created_at: Time::from_proto(request.created_at.as_ref()),
            started_at: Time::from_proto(request.started_at.as_ref()),
            completed_at: Time::from_proto(request.completed_at.as_ref()),
            attempt_count: request.attempt_count,
            depends_on: request.depends_on,
            unblock: match proto::UnblockStrategy::try_from(request.unblock) {
                Ok(proto::UnblockStrategy::Manual) => "manual".to_owned(),
                Ok(_) => "deps".to_owned(),
                Err(_) => format!("unknown({})", request.unblock),
            },
            allow_failure: request.allow_failure,
            retries_left: request.retries_left,
            attempts: request
                .attempts
                .into_iter()
                .map(AttemptView::from)
                .collect(),
            name: request.name,
            template: request.template,
            template_version: (request.template_version > 0).then_some(request.template_version),
            service: request.service,
            service_replica: request.service_replica,
            trigger_rule: request.trigger_rule,
            trigger_event_id: request.trigger_event_id,
            parent_id: request.parent_id,
            children: request
                .children
                .into_iter()
                .map(WorkRequestView::from)
                .collect(),
            inputs: request
                .inputs
                .into_iter()
                .map(|input| InputView {
                    mount: input.mount,
                    artifact_id: input.artifact_id,
                    from_work_request_id: input.from_work_request_id,
                })
                .collect(),
            outputs: request
                .outputs
                .into_iter()
                .map(|output| OutputView {
                    path: output.path,
                    when: match proto::OutputWhen::try_from(output.when) {
                        Ok(proto::OutputWhen::Always) => "always".to_owned(),
                        Ok(_) => "success".to_owned(),
                        Err(_) => format!("unknown({})", output.when),
                    },
                })
                .collect(),
            output_category: request.output_category,
            output_artifact_id: request.output_artifact_id,
        }
    }
}

impl Answer for proto::WorkRequest {
    type View = WorkRequestView;
}

impl Render for WorkRequestView {
    fn table(&self) -> String {
        let mut text = fields(&[
            ("id", self.id.clone()),
            ("name", self.name.clone()),
            ("parent_id", self.parent_id.clone()),
            ("workspace", self.workspace.clone()),
            (
                "template",
                match self.template_version {
                    Some(v) => format!("{}@v{v}", self.template),
                    None => self.template.clone(),
                },
            ),
            (
                "service",
                if self.service.is_empty() {
                    String::new()
                } else {
                    format!("{} ({})", self.service, self.service_replica)
                },
            ),
            (
                "trigger",
                if self.trigger_rule.is_empty() {
                    String::new()
                } else {
                    format!("{} (event {})", self.trigger_rule, self.trigger_event_id)
                },
            ),
            ("status", self.status.clone()),
            ("result", opt(self.result.as_ref())),
            ("exit_code", opt(self.exit_code)),
            ("reason", self.reason.clone()),
            ("message", self.message.clone()),
            ("log_truncated", yes_no(self.log_truncated)),
            ("queue_position", opt(self.queue_position)),
            ("pending_reason", self.pending_reason.clone()),
            (
                "priority",
                format!(
                    "{} (base {}, adjustment {})",
                    self.priority, self.priority_base, self.priority_adjustment
                ),
            ),
            ("image", self.image.clone()),
            ("command", shell_words(&self.command)),
            ("env", pairs(&self.env)),
            ("secret_env_keys", self.secret_env_keys.join(", ")),
            ("working_dir", self.working_dir.clone()),
            ("memory_bytes", opt(self.memory_bytes.map(size))),
            ("cpus", opt(self.cpus)),
            ("pids_limit", opt(self.pids_limit)),
            ("timeout", opt(self.timeout)),
            ("stop_grace_period", opt(self.stop_grace_period)),
            ("network", self.network.clone()),
            (
                "networks",
                self.networks
                    .iter()
                    .map(NetworkView::shown)
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            ("pull_policy", opt(self.pull_policy.as_ref())),
            ("requirements", pairs(&self.requirements)),
            ("created_by", self.created_by.clone()),
            ("created_at", time(self.created_at)),
            ("started_at", time(self.started_at)),
            ("completed_at", time(self.completed_at)),
            ("attempt_count", self.attempt_count.to_string()),
            ("depends_on", self.depends_on.join(", ")),
            ("unblock", self.unblock.clone()),
            ("allow_failure", yes_no(self.allow_failure)),
            ("retries_left", self.retries_left.to_string()),
            (
                "inputs",
                self.inputs
                    .iter()
                    .map(InputView::shown)
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            (
                "outputs",
                self.outputs
                    .iter()
                    .map(|o| format!("{} ({})", o.path, o.when))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            ("output_category", self.output_category.clone()),
            ("output_artifact_id", self.output_artifact_id.clone()),
        ]);
        if !self.attempts.is_empty() {
            text.push_str("attempts:\n");
            let mut table = Table::new([
                "#",
                "WORKER",
                "CONTAINER",
                "EXIT",
                "REASON",
                "STARTED",
                "FINISHED",
                "PEAK_MEMORY",
                "CPU_TIME",
                "PULL",
                "RUN",
                "MESSAGE",
            ]);
            for attempt in &self.attempts {
                table.row([
                    attempt.number.to_string(),
                    attempt.worker.clone(),
                    short_container_id(&attempt.container_id),
                    opt(attempt.exit_code),
                    attempt.reason.clone(),
                    time(attempt.started_at),
                    time(attempt.finished_at),
                    opt(attempt.peak_memory_bytes.map(size)),
                    opt(attempt.cpu_time),
                    opt(attempt.pull_duration),
                    opt(attempt.run_duration),
                    attempt_message(attempt),
                ]);
            }
            text.push_str(&table.render_indented());
        }
        if !self.children.is_empty() {
            text.push_str("steps:\n");
            text.push_str(&steps_table(&self.children));
        }
        text
    }
}

/// An attempt's message for the table, with the reason its log is incomplete if it is.
fn attempt_message(attempt: &AttemptView) -> String {
    match (
        attempt.message.is_empty(),
        attempt.log_incomplete.is_empty(),
    ) {
        (_, true) => attempt.message.clone(),
        (true, false) => format!("log incomplete: {}", attempt.log_incomplete),
        (false, false) => format!(
            "{}; log incomplete: {}",
            attempt.message, attempt.log_incomplete
        ),
    }
}

/// A workflow's steps, one per line and indented, each with the names of the steps it
/// needs.
fn steps_table(steps: &[WorkRequestView]) -> String {
    let names: HashMap<&str, &str> = steps
        .iter()
        .map(|s| (s.id.as_str(), s.name.as_str()))
        .collect();
    let mut table = Table::new([
        "NAME", "ID", "STATUS", "RESULT", "EXIT", "NEEDS", "STARTED", "FINISHED", "REASON",
    ]);
    for step in steps {
        let needs: Vec<&str> = step
            .depends_on
            .iter()
            .map(|id| names.get(id.as_str()).copied().unwrap_or(id.as_str()))
            .collect();
        table.row([
            step.name.clone(),
            step.id.clone(),
            step.status.clone(),
            opt(step.result.as_ref()),
            opt(step.exit_code),
            needs.join(","),
            time(step.started_at),
            time(step.completed_at),
            step.reason.clone(),
        ]);
    }
    table.render_indented()
}

/// One attempt of a work request.
#[derive(Debug, Serialize)]
pub struct AttemptView {
    pub number: u32,
    pub worker: String,
    pub container_id: String,
    pub exit_code: Option<i32>,
    pub reason: String,
    pub assigned_at: Option<Time>,
    pub started_at: Option<Time>,
    pub finished_at: Option<Time>,
    pub peak_memory_bytes: Option<u64>,
    pub cpu_time: Option<Span>,
    pub pull_duration: Option<Span>,
    pub run_duration: Option<Span>,
    pub message: String,
    /// Why the attempt's stored log misses output; empty when it is complete.
    pub log_incomplete: String,
    /// The artifact its outputs were collected into; empty if none.
    pub output_artifact_id: String,
}

impl From<proto::Attempt> for AttemptView {
    fn from(attempt: proto::Attempt) -> AttemptView {
        AttemptView {
            number: attempt.number,
            worker: attempt.worker,
            container_id: attempt.container_id,
            exit_code: attempt.exit_code,
            reason: attempt.reason,
            assigned_at: Time::from_proto(attempt.assigned_at.as_ref()),
            started_at: Time::from_proto(attempt.started_at.as_ref()),
            finished_at: Time::from_proto(attempt.finished_at.as_ref()),
            peak_memory_bytes: attempt.peak_memory_bytes,
            cpu_time: Span::from_proto(attempt.cpu_time.as_ref()),
            pull_duration: Span::from_proto(attempt.pull_duration.as_ref()),
            run_duration: Span::from_proto(attempt.run_duration.as_ref()),
            message: attempt.message,
            log_incomplete: attempt.log_incomplete,
            output_artifact_id: attempt.output_artifact_id,
        }
    }
}

/// A request just submitted (`run --detach`, `workflow submit`): in a table its bare id,
/// so `id=$(berth run -d ...)` works; in JSON the whole request.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct SubmittedView(pub WorkRequestView);

impl From<proto::WorkRequest> for SubmittedView {
    fn from(request: proto::WorkRequest) -> SubmittedView {
        SubmittedView(WorkRequestView::from(request))
    }
}

impl Render for SubmittedView {
    fn table(&self) -> String {
        format!("{}\n", self.0.id)
    }
}

/// `list`: one page of work requests.
#[derive(Debug, Serialize)]
pub struct WorkRequestListView {
    pub work_requests: Vec<WorkRequestView>,
    pub next_page_token: String,
}

impl From<proto::ListWorkRequestsResponse> for WorkRequestListView {
    fn from(page: proto::ListWorkRequestsResponse) -> WorkRequestListView {
        WorkRequestListView {
            work_requests: page
                .work_requests
                .into_iter()
                .map(WorkRequestView::from)
                .collect(),
            next_page_token: page.next_page_token,
        }
    }
}

impl Render for WorkRequestListView {
    fn table(&self) -> String {
        let mut table = Table::new([
            "ID",
            "STATUS",
            "RESULT",
            "EXIT",
            "PRIORITY",
            "WORKSPACE",
            "CREATED",
            "IMAGE",
        ]);
        for request in &self.work_requests {
            table.row([
                request.id.clone(),
                request.status.clone(),
                opt(request.result.as_ref()),
                opt(request.exit_code),
                request.priority.to_string(),
                request.workspace.clone(),
                time(request.created_at),
                request.image.clone(),
            ]);
        }
        table.render()
    }
}

/// Docker's short form of a container id.
fn short_container_id(id: &str) -> String {
    if id.is_empty() {
        NONE.to_owned()
    } else {
        id.chars().take(12).collect()
    }
}

/// Writes argv so that a shell would read it back the same way.
pub(super) fn shell_words(argv: &[String]) -> String {
    let quoted: Vec<String> = argv
        .iter()
        .map(|word| {
            let plain = !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c));
            if plain {
                word.clone()
            } else {
                format!("'{}'", word.replace('\'', r"'\''"))
            }
        })
        .collect();
    quoted.join(" ")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::{Value, json};

    use super::*;
    use crate::args::OutputFormat;
    use crate::output::{render, to_json};

    fn timestamp(seconds: i64) -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp { seconds, nanos: 0 })
    }

    fn completed_request() -> proto::WorkRequest {
        proto::WorkRequest {
            id: "0193a1b2-0000-7000-8000-000000000001".into(),
            workspace: "default".into(),
            status: proto::WorkRequestStatus::Completed as i32,
            result: proto::WorkResult::Success as i32,
            spec: Some(proto::ContainerSpec {
                image: "busybox:1.36".into(),
                command: vec!["sh".into(), "-c".into(), "echo hi".into()],
                env: HashMap::from([("A".into(), "1".into())]),
                secret_env: HashMap::from([("PASSWORD".into(), "hunter2".into())]),
                memory_bytes: Some(256 << 20),
                cpus: Some(0.5),
                timeout: Some(prost_types::Duration {
                    seconds: 30,
                    nanos: 0,
                }),
                pull_policy: proto::PullPolicy::IfNotPresent as i32,
                ..Default::default()
            }),
            secret_env_keys: vec!["PASSWORD".into()],
            priority_base: 5,
            priority: 5,
            created_by: "alice".into(),
            created_at: timestamp(1_700_000_000),
            exit_code: Some(0),
            attempt_count: 1,
            attempts: vec![proto::Attempt {
                number: 1,
                worker: "host1".into(),
                container_id: "0123456789abcdef0123".into(),
                exit_code: Some(0),
                started_at: timestamp(1_700_000_001),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn work_request_json_uses_contract_names_and_lowercase_enums() {
        let json = to_json(&WorkRequestView::from(completed_request()));
        assert_eq!(json["id"], "0193a1b2-0000-7000-8000-000000000001");
        assert_eq!(json["status"], "completed");
        assert_eq!(json["result"], "success");
        assert_eq!(json["exit_code"], 0);
        assert_eq!(json["reason"], "");
        assert_eq!(json["priority"], 5);
        assert_eq!(json["workspace"], "default");
        assert_eq!(json["image"], "busybox:1.36");
        assert_eq!(json["command"], json!(["sh", "-c", "echo hi"]));
        assert_eq!(json["env"], json!({"A": "1"}));
        assert_eq!(json["memory_bytes"], 268_435_456);
        assert_eq!(json["cpus"], 0.5);
        assert_eq!(json["timeout"], "30s");
        assert_eq!(json["pull_policy"], "if-not-present");
        assert_eq!(json["created_at"], "2023-11-14T22:13:20Z");
        assert_eq!(json["started_at"], Value::Null);
        assert_eq!(json["attempts"][0]["number"], 1);
        assert_eq!(json["attempts"][0]["worker"], "host1");
        assert_eq!(json["attempts"][0]["started_at"], "2023-11-14T22:13:21Z");
    }

    #[test]
    fn pending_request_has_null_result_and_exit_code() {
        let request = proto::WorkRequest {
            id: "r".into(),
            status: proto::WorkRequestStatus::Pending as i32,
            ..Default::default()
        };
        let json = to_json(&WorkRequestView::from(request));
        assert_eq!(json["status"], "pending");
        assert_eq!(json["result"], Value::Null);
        assert_eq!(json["exit_code"], Value::Null);
        assert_eq!(json["pull_policy"], Value::Null);
        assert_eq!(json["attempts"], json!([]));
    }

    #[test]
    fn secret_env_values_are_never_printed() {
        let view = WorkRequestView::from(completed_request());
        let json = render(&view, OutputFormat::Json).expect("should succeed");
        let table = render(&view, OutputFormat::Table).expect("should succeed");
        for text in [&json, &table] {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains("PASSWORD"), "{text}");
        }
        assert_eq!(to_json(&view)["secret_env_keys"], json!(["PASSWORD"]));
    }

    #[test]
    fn unknown_enum_numbers_are_shown() {
        assert_eq!(status_name(42), "unknown(42)");
        assert_eq!(result_name(42).as_deref(), Some("unknown(42)"));
    }

    #[test]
    fn work_request_table_is_key_value_lines() {
        let table = WorkRequestView::from(completed_request()).table();
        assert!(table.contains("\nstatus:"), "{table}");
        let line = |key: &str| {
            table
                .lines()
                .find(|l| l.starts_with(&format!("{key}:")))
                .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        };
        assert_eq!(line("status").as_deref(), Some("completed"));
        assert_eq!(line("command").as_deref(), Some("sh -c 'echo hi'"));
        assert_eq!(line("memory_bytes").as_deref(), Some("256MiB"));
        assert_eq!(line("started_at").as_deref(), Some("-"));
        assert!(table.contains("0123456789ab "), "{table}");
    }

    /// A request whose only attempt could not pull its image.
    fn failed_pull() -> proto::WorkRequest {
        let ms = |millis: i32| {
            Some(prost_types::Duration {
                seconds: 0,
                nanos: millis * 1_000_000,
            })
        };
        proto::WorkRequest {
            id: "wr-2".into(),
            status: proto::WorkRequestStatus::Completed as i32,
            result: proto::WorkResult::Error as i32,
            reason: "image-pull".into(),
            message: "pull access denied\nfor nope".into(),
            log_truncated: true,
            attempt_count: 1,
            attempts: vec![proto::Attempt {
                number: 1,
                worker: "host1".into(),
                reason: "image-pull".into(),
                message: "pull access denied\nfor nope".into(),
                pull_duration: ms(1500),
                run_duration: ms(250),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn work_request_json_has_message_truncation_and_attempt_details() {
        let json = to_json(&WorkRequestView::from(failed_pull()));
        assert_eq!(json["result"], "error");
        assert_eq!(json["message"], "pull access denied\nfor nope");
        assert_eq!(json["log_truncated"], true);
        let attempt = &json["attempts"][0];
        assert_eq!(attempt["reason"], "image-pull");
        assert_eq!(attempt["message"], "pull access denied\nfor nope");
        assert_eq!(attempt["pull_duration"], "1s 500ms");
        assert_eq!(attempt["run_duration"], "250ms");
        assert_eq!(attempt["exit_code"], Value::Null);
        let json = to_json(&WorkRequestView::from(completed_request()));
        assert_eq!(json["message"], "");
        assert_eq!(json["log_truncated"], false);
        assert_eq!(json["attempts"][0]["pull_duration"], Value::Null);
    }

    #[test]
    fn work_request_table_shows_message_truncation_and_attempt_details() {
        let table = WorkRequestView::from(failed_pull()).table();
        let value = |key: &str| {
            table
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key}:")))
                .map(str::trim)
        };
        assert_eq!(value("message"), Some("pull access denied for nope"));
        assert_eq!(value("log_truncated"), Some("yes"));
        let header = table
            .lines()
            .find(|l| l.trim_start().starts_with('#'))
            .expect("attempts header");
        assert!(
            header.ends_with("CPU_TIME  PULL      RUN    MESSAGE"),
            "{table}"
        );
        let row = table
            .lines()
            .find(|l| l.trim_start().starts_with("1 "))
            .expect("attempt row");
        assert!(
            row.ends_with("-         1s 500ms  250ms  pull access denied for nope"),
            "{table}"
        );
    }

    #[test]
    fn a_pending_requests_place_and_reason_are_shown() {
        let request = proto::WorkRequest {
            status: proto::WorkRequestStatus::Pending as i32,
            queue_position: 3,
            pending_reason: "all 2 matching workers are busy".into(),
            ..Default::default()
        };
        let view = WorkRequestView::from(request);
        assert_eq!(to_json(&view)["queue_position"], 3);
        let table = view.table();
        assert!(table.contains("queue_position:"), "{table}");
        assert!(
            table.contains(" all 2 matching workers are busy\n"),
            "{table}"
        );
        let json = to_json(&WorkRequestView::from(completed_request()));
        assert_eq!(json["queue_position"], Value::Null);
        assert_eq!(json["pending_reason"], "");
    }

    #[test]
    fn a_submitted_request_is_its_bare_id_in_a_table_and_whole_in_json() {
        let view = SubmittedView::from(completed_request());
        assert_eq!(view.table(), "0193a1b2-0000-7000-8000-000000000001\n");
        assert_eq!(
            to_json(&view),
            to_json(&WorkRequestView::from(completed_request()))
        );
    }

    #[test]
    fn list_json_wraps_the_array_with_the_page_token() {
        let view = WorkRequestListView::from(proto::ListWorkRequestsResponse {
            work_requests: vec![completed_request()],
            next_page_token: "next".into(),
        });
        let json = to_json(&view);
        assert_eq!(json["next_page_token"], "next");
        assert_eq!(json["work_requests"][0]["status"], "completed");
    }

    #[test]
    fn argv_is_written_as_a_shell_would_read_it() {
        assert_eq!(
            shell_words(&["echo".into(), "it's".into(), String::new()]),
            r"echo 'it'\''s' ''"
        );
    }
}
