//! Views of templates, their releases (with the changes each made and, when asked, a
//! comparison with another version), listings, deletions and run statistics.
//!
//! A release view has the names of its secret variables (`secret_env_keys`) and no field
//! for a value; a change of a secret has no `before` or `after`.

use berth_common::proto;
use serde::Serialize;

use super::work_requests::{pull_policy_name, shell_words};
use super::{Answer, Render, Span, Table, Time, enum_name, fields, opt, pairs, size, sorted};
use super::{time, yes_no};

/// A template with its latest release.
#[derive(Debug, Serialize)]
pub struct TemplateView {
    pub id: String,
    pub workspace: String,
    pub name: String,
    /// `job` or `workflow`.
    pub kind: String,
    pub description: String,
    pub active: bool,
    pub archived: bool,
    pub latest_version: u32,
    pub created_by: String,
    pub created_at: Option<Time>,
    pub updated_at: Option<Time>,
    pub latest: Option<ReleaseView>,
}

fn kind_name(value: i32) -> String {
    let name = proto::TemplateKind::try_from(value)
        .ok()
        .map(|kind| match kind {
            proto::TemplateKind::Unspecified => "unspecified",
            proto::TemplateKind::Job => "job",
            proto::TemplateKind::Workflow => "workflow",
        });
    enum_name(value, name)
}

impl From<proto::Template> for TemplateView {
    fn from(t: proto::Template) -> TemplateView {
        TemplateView {
            id: t.id,
            workspace: t.workspace,
            name: t.name,
            kind: kind_name(t.kind),
            description: t.description,
            active: t.active,
            archived: t.archived,
            latest_version: t.latest_version,
            created_by: t.created_by,
            created_at: Time::from_proto(t.created_at.as_ref()),
            updated_at: Time::from_proto(t.updated_at.as_ref()),
            latest: t.latest.map(ReleaseView::from),
        }
    }
}

impl Answer for proto::Template {
    type View = TemplateView;
}

impl Render for TemplateView {
    fn table(&self) -> String {
        let mut text = fields(&[
            ("name", self.name.clone()),
            ("id", self.id.clone()),
            ("workspace", self.workspace.clone()),
            ("kind", self.kind.clone()),
            ("description", self.description.clone()),
            ("active", yes_no(self.active)),
            ("archived", yes_no(self.archived)),
            ("latest_version", format!("v{}", self.latest_version)),
            ("created_by", self.created_by.clone()),
            ("created_at", time(self.created_at)),
            ("updated_at", time(self.updated_at)),
        ]);
        if let Some(latest) = &self.latest {
            text.push_str("latest:\n");
            for line in latest.table().lines() {
                text.push_str("  ");
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }
}

/// One difference between releases.
#[derive(Debug, Serialize)]
pub struct ChangeView {
    /// As a user would write it: `memory_bytes`, `env["LOG_LEVEL"]`.
    pub field: String,
    /// `added`, `changed` or `removed`.
    pub kind: String,
    pub before: String,
    pub after: String,
    /// A secret variable: never a value.
    pub secret: bool,
}

impl From<proto::ReleaseChange> for ChangeView {
    fn from(c: proto::ReleaseChange) -> ChangeView {
        let name = proto::ChangeKind::try_from(c.kind)
            .ok()
            .map(|kind| match kind {
                proto::ChangeKind::Unspecified => "unspecified",
                proto::ChangeKind::Added => "added",
                proto::ChangeKind::Changed => "changed",
                proto::ChangeKind::Removed => "removed",
            });
        // The server sends no value for a secret; this keeps it so whatever it sends.
        let (before, after) = if c.secret {
            (String::new(), String::new())
        } else {
            (c.before, c.after)
        };
        ChangeView {
            field: c.field,
            kind: enum_name(c.kind, name),
            before,
            after,
            secret: c.secret,
        }
    }
}

fn changes_table(changes: &[ChangeView]) -> String {
    let mut table = Table::new(["FIELD", "CHANGE", "BEFORE", "AFTER"]);
    for change in changes {
        let hidden = || {
            if change.secret {
                "(secret)".to_owned()
            } else {
                String::new()
            }
        };
        table.row([
            change.field.clone(),
            change.kind.clone(),
            if change.secret {
                hidden()
            } else {
                change.before.clone()
            },
            if change.secret {
                hidden()
            } else {
                change.after.clone()
            },
        ]);
    }
    table.render_indented()
}

/// A network with its aliases.
#[derive(Debug, Serialize)]
pub struct NetworkView {
    pub name: String,
    pub aliases: Vec<String>,
}

/// A job template release's spec, defaults filled in.
#[derive(Debug, Serialize)]
pub struct JobSpecView {
    pub image: String,
    pub command: Vec<String>,
    pub env: std::collections::BTreeMap<String, String>,
    pub working_dir: String,
    pub memory_bytes: Option<u64>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    pub timeout: Option<Span>,
    pub stop_grace_period: Option<Span>,
    pub network: String,
    pub networks: Vec<NetworkView>,
    pub pull_policy: Option<String>,
    pub requirements: std::collections::BTreeMap<String, String>,
    pub priority: i32,
    pub retries: u32,
    pub retry_backoff: Option<Span>,
    /// `ARTIFACT` or `ARTIFACT:MOUNT`, as written.
    pub inputs: Vec<String>,
    /// `PATH` or `PATH:always`.
    pub outputs: Vec<String>,
    pub output_category: String,
}

impl From<proto::JobTemplateSpec> for JobSpecView {
    fn from(job: proto::JobTemplateSpec) -> JobSpecView {
        // `secret_env` is never read: the server leaves it empty, and the CLI must not
        // print secret values whatever it is sent.
        let spec = job.spec.unwrap_or_default();
        JobSpecView {
            image: spec.image,
            command: spec.command,
            env: sorted(spec.env),
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
            requirements: sorted(job.requirements),
            priority: job.priority,
            retries: job.retries,
            retry_backoff: Span::from_proto(job.retry_backoff.as_ref()),
            inputs: job
                .inputs
                .into_iter()
                .map(|i| {
                    if i.mount.is_empty() {
                        i.artifact
                    } else {
                        format!("{}:{}", i.artifact, i.mount)
                    }
                })
                .collect(),
            outputs: job
                .outputs
                .into_iter()
                .map(|o| {
                    if o.when == proto::OutputWhen::Always as i32 {
                        format!("{}:always", o.path)
                    } else {
                        o.path
                    }
                })
                .collect(),
            output_category: job.output_category,
        }
    }
}

impl JobSpecView {
    fn networks_text(&self) -> String {
        if self.networks.is_empty() {
            return self.network.clone();
        }
        self.networks
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

    fn rows(&self) -> Vec<(&'static str, String)> {
        vec![
            ("image", self.image.clone()),
            ("command", shell_words(&self.command)),
            ("env", pairs(&self.env)),
            ("working_dir", self.working_dir.clone()),
            ("memory_bytes", opt(self.memory_bytes.map(size))),
            ("cpus", opt(self.cpus)),
            ("pids_limit", opt(self.pids_limit)),
            ("timeout", opt(self.timeout)),
            ("stop_grace_period", opt(self.stop_grace_period)),
            ("networks", self.networks_text()),
            ("pull_policy", opt(self.pull_policy.as_ref())),
            ("requirements", pairs(&self.requirements)),
            ("priority", self.priority.to_string()),
            ("retries", self.retries.to_string()),
            ("retry_backoff", opt(self.retry_backoff)),
            ("inputs", self.inputs.join(" ")),
            ("outputs", self.outputs.join(" ")),
            ("output_category", self.output_category.clone()),
        ]
    }
}

/// A declared parameter of a workflow template.
#[derive(Debug, Serialize)]
pub struct ParameterView {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub default: Option<String>,
    pub required: bool,
}

/// A workflow template release's definition, in brief: parameters and step names.
#[derive(Debug, Serialize)]
pub struct WorkflowSpecView {
    pub parameters: Vec<ParameterView>,
    pub steps: Vec<String>,
}

impl From<proto::WorkflowTemplateSpec> for WorkflowSpecView {
    fn from(w: proto::WorkflowTemplateSpec) -> WorkflowSpecView {
        WorkflowSpecView {
            parameters: w
                .parameters
                .into_iter()
                .map(|p| {
                    let name = proto::ParameterType::try_from(p.r#type)
                        .ok()
                        .map(|t| match t {
                            proto::ParameterType::Unspecified | proto::ParameterType::String => {
                                "string"
                            }
                            proto::ParameterType::Integer => "integer",
                            proto::ParameterType::Number => "number",
                            proto::ParameterType::Boolean => "boolean",
                        });
                    ParameterView {
                        name: p.name,
                        kind: enum_name(p.r#type, name),
                        default: p.default,
                        required: p.required,
                    }
                })
                .collect(),
            steps: w.steps.into_iter().map(|s| s.name).collect(),
        }
    }
}

/// One release of a template.
#[derive(Debug, Serialize)]
pub struct ReleaseView {
    pub template: String,
    pub workspace: String,
    pub version: u32,
    pub summary: String,
    pub note: String,
    /// For a rollback: the version it restored.
    pub rolled_back_from: Option<u32>,
    pub created_by: String,
    pub created_at: Option<Time>,
    /// Names only: values are never shown.
    pub secret_env_keys: Vec<String>,
    /// A job template's spec (null for a workflow template).
    pub job: Option<JobSpecView>,
    /// A workflow template's definition (null for a job template).
    pub workflow: Option<WorkflowSpecView>,
    /// What this release changed from the one before it.
    pub changes: Vec<ChangeView>,
    /// With `--diff`: the version compared with, and the differences from it.
    pub diff_against: Option<u32>,
    pub diff: Vec<ChangeView>,
}

impl From<proto::Release> for ReleaseView {
    fn from(r: proto::Release) -> ReleaseView {
        let (job, workflow) = match r.spec {
            Some(proto::release::Spec::Job(job)) => (Some(JobSpecView::from(job)), None),
            Some(proto::release::Spec::Workflow(w)) => (None, Some(WorkflowSpecView::from(w))),
            None => (None, None),
        };
        ReleaseView {
            template: r.template,
            workspace: r.workspace,
            version: r.version,
            summary: r.summary,
            note: r.note,
            rolled_back_from: r.rolled_back_from,
            created_by: r.created_by,
            created_at: Time::from_proto(r.created_at.as_ref()),
            secret_env_keys: r.secret_env_keys,
            job,
            workflow,
            changes: r.changes.into_iter().map(ChangeView::from).collect(),
            diff_against: (r.diff_against > 0).then_some(r.diff_against),
            diff: r.diff.into_iter().map(ChangeView::from).collect(),
        }
    }
}

impl Answer for proto::Release {
    type View = ReleaseView;
}

impl Render for ReleaseView {
    fn table(&self) -> String {
        let mut rows = vec![
            ("template", self.template.clone()),
            ("version", format!("v{}", self.version)),
            ("summary", self.summary.clone()),
            ("note", self.note.clone()),
            (
                "rolled_back_from",
                opt(self.rolled_back_from.map(|v| format!("v{v}"))),
            ),
            ("created_by", self.created_by.clone()),
            ("created_at", time(self.created_at)),
        ];
        if let Some(job) = &self.job {
            rows.extend(job.rows());
        }
        rows.push(("secret_env_keys", self.secret_env_keys.join(", ")));
        if let Some(workflow) = &self.workflow {
            let parameters: Vec<String> = workflow
                .parameters
                .iter()
                .map(|p| format!("{} ({})", p.name, p.kind))
                .collect();
            rows.push(("parameters", parameters.join(", ")));
            rows.push(("steps", workflow.steps.join(", ")));
        }
        let mut text = fields(&rows);
        if let Some(against) = self.diff_against {
            if self.diff.is_empty() {
                text.push_str(&format!("diff from v{against}: none\n"));
            } else {
                text.push_str(&format!("diff from v{against}:\n"));
                text.push_str(&changes_table(&self.diff));
            }
        }
        text
    }
}

/// `template list`.
#[derive(Debug, Serialize)]
pub struct TemplateListView {
    pub templates: Vec<TemplateView>,
}

impl From<proto::ListTemplatesResponse> for TemplateListView {
    fn from(list: proto::ListTemplatesResponse) -> TemplateListView {
        TemplateListView {
            templates: list.templates.into_iter().map(TemplateView::from).collect(),
        }
    }
}

impl Answer for proto::ListTemplatesResponse {
    type View = TemplateListView;
}

impl Render for TemplateListView {
    fn table(&self) -> String {
        let mut table = Table::new([
            "NAME",
            "KIND",
            "VERSION",
            "ACTIVE",
            "ARCHIVED",
            "UPDATED",
            "DESCRIPTION",
        ]);
        for t in &self.templates {
            table.row([
                t.name.clone(),
                t.kind.clone(),
                format!("v{}", t.latest_version),
                yes_no(t.active),
                yes_no(t.archived),
                time(t.updated_at),
                t.description.clone(),
            ]);
        }
        table.render()
    }
}

/// `template releases`.
#[derive(Debug, Serialize)]
pub struct ReleaseListView {
    pub releases: Vec<ReleaseView>,
}

impl From<proto::ListReleasesResponse> for ReleaseListView {
    fn from(list: proto::ListReleasesResponse) -> ReleaseListView {
        ReleaseListView {
            releases: list.releases.into_iter().map(ReleaseView::from).collect(),
        }
    }
}

impl Answer for proto::ListReleasesResponse {
    type View = ReleaseListView;
}

impl Render for ReleaseListView {
    fn table(&self) -> String {
        let mut table = Table::new(["VERSION", "CREATED", "BY", "SUMMARY"]);
        for r in &self.releases {
            table.row([
                format!("v{}", r.version),
                time(r.created_at),
                r.created_by.clone(),
                if r.note.is_empty() {
                    r.summary.clone()
                } else {
                    format!("{} ({})", r.summary, r.note)
                },
            ]);
        }
        table.render()
    }
}

/// `template delete`.
#[derive(Debug, Serialize)]
pub struct DeletedTemplateView {
    pub deleted: bool,
    pub archived: bool,
    pub message: String,
}

impl From<proto::DeleteTemplateResponse> for DeletedTemplateView {
    fn from(d: proto::DeleteTemplateResponse) -> DeletedTemplateView {
        DeletedTemplateView {
            deleted: d.deleted,
            archived: d.archived,
            message: d.message,
        }
    }
}

impl Answer for proto::DeleteTemplateResponse {
    type View = DeletedTemplateView;
}

impl Render for DeletedTemplateView {
    fn table(&self) -> String {
        format!("{}\n", self.message)
    }
}

/// Runs and successes of one release.
#[derive(Debug, Serialize)]
pub struct VersionStatsView {
    pub version: u32,
    pub runs: u64,
    pub successes: u64,
}

/// `template stats`.
#[derive(Debug, Serialize)]
pub struct TemplateStatsView {
    pub template: String,
    pub since: Option<Time>,
    pub runs: u64,
    pub successes: u64,
    pub failures: u64,
    pub errors: u64,
    pub aborted: u64,
    pub unfinished: u64,
    pub average_duration: Option<Span>,
    pub p95_duration: Option<Span>,
    pub by_version: Vec<VersionStatsView>,
}

impl From<proto::TemplateStats> for TemplateStatsView {
    fn from(s: proto::TemplateStats) -> TemplateStatsView {
        TemplateStatsView {
            template: s.template,
            since: Time::from_proto(s.since.as_ref()),
            runs: s.runs,
            successes: s.successes,
            failures: s.failures,
            errors: s.errors,
            aborted: s.aborted,
            unfinished: s.unfinished,
            average_duration: Span::from_proto(s.average_duration.as_ref()),
            p95_duration: Span::from_proto(s.p95_duration.as_ref()),
            by_version: s
                .by_version
                .into_iter()
                .map(|v| VersionStatsView {
                    version: v.version,
                    runs: v.runs,
                    successes: v.successes,
                })
                .collect(),
        }
    }
}

impl Answer for proto::TemplateStats {
    type View = TemplateStatsView;
}

impl Render for TemplateStatsView {
    fn table(&self) -> String {
        let mut text = fields(&[
            ("template", self.template.clone()),
            ("since", time(self.since)),
            ("runs", self.runs.to_string()),
            ("successes", self.successes.to_string()),
            ("failures", self.failures.to_string()),
            ("errors", self.errors.to_string()),
            ("aborted", self.aborted.to_string()),
            ("unfinished", self.unfinished.to_string()),
            ("average_duration", opt(self.average_duration)),
            ("p95_duration", opt(self.p95_duration)),
        ]);
        if !self.by_version.is_empty() {
            text.push_str("by_version:\n");
            let mut table = Table::new(["VERSION", "RUNS", "SUCCESSES"]);
            for v in &self.by_version {
                table.row([
                    format!("v{}", v.version),
                    v.runs.to_string(),
                    v.successes.to_string(),
                ]);
            }
            text.push_str(&table.render_indented());
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::to_json;

    fn release() -> proto::Release {
        let spec = proto::ContainerSpec {
            image: "busybox:1.36".into(),
            memory_bytes: Some(512 << 20),
            // A server never sends this; the view must not show it even so.
            secret_env: [("API_KEY".to_owned(), "s3cret-value".to_owned())].into(),
            ..Default::default()
        };
        proto::Release {
            template: "web".into(),
            version: 2,
            spec: Some(proto::release::Spec::Job(proto::JobTemplateSpec {
                spec: Some(spec),
                ..Default::default()
            })),
            secret_env_keys: vec!["API_KEY".into()],
            summary: "secret API_KEY changed".into(),
            changes: vec![proto::ReleaseChange {
                field: "secret_env[\"API_KEY\"]".into(),
                kind: proto::ChangeKind::Changed as i32,
                before: "old-s3cret-value".into(),
                after: "s3cret-value".into(),
                secret: true,
            }],
            diff_against: 1,
            diff: vec![proto::ReleaseChange {
                field: "memory_bytes".into(),
                kind: proto::ChangeKind::Changed as i32,
                before: "256 MiB".into(),
                after: "512 MiB".into(),
                secret: false,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_release_shows_secret_names_never_values() {
        let view = ReleaseView::from(release());
        let table = view.table();
        let json = to_json(&view).to_string();
        for text in [&table, &json] {
            assert!(!text.contains("s3cret-value"), "{text}");
            assert!(text.contains("API_KEY"), "{text}");
        }
        assert!(table.contains("version:"), "{table}");
        assert!(table.contains("diff from v1:"), "{table}");
        assert!(table.contains("256 MiB"), "{table}");
        let json = to_json(&view);
        assert_eq!(json["job"]["memory_bytes"], 512 << 20);
        assert_eq!(json["diff_against"], 1);
        assert_eq!(json["changes"][0]["secret"], true);
    }

    #[test]
    fn releases_list_newest_first_with_their_summaries() {
        let view = ReleaseListView::from(proto::ListReleasesResponse {
            releases: vec![release()],
        });
        let table = view.table();
        assert!(table.starts_with("VERSION"), "{table}");
        assert!(table.contains("v2"), "{table}");
        assert!(table.contains("secret API_KEY changed"), "{table}");
    }
}
