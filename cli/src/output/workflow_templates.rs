//! Views of workflow templates: a template with its latest release, one release (its
//! parameters, steps, changes and, with `--diff`, its difference from another release),
//! and the list of releases. Steps are shown with the keys of a workflow file (`image`,
//! `memory`, `requires`, ...), placeholders such as `${{ params.tag }}` as written. No
//! view has a field for a secret value: steps list the names of their secret variables.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use berth_common::proto;
use serde::Serialize;

use super::{NONE, Render, Span, Table, Time, enum_name, fields, opt, pairs, size, sorted, yes_no};

/// A workflow template with its latest release.
#[derive(Debug, Serialize)]
pub struct WorkflowTemplateView {
    pub id: String,
    pub workspace: String,
    pub name: String,
    pub description: String,
    pub active: bool,
    pub archived: bool,
    pub latest_version: u32,
    pub created_by: String,
    pub created_at: Option<Time>,
    pub updated_at: Option<Time>,
    pub latest: Option<WorkflowReleaseView>,
}

impl From<proto::Template> for WorkflowTemplateView {
    fn from(t: proto::Template) -> WorkflowTemplateView {
        WorkflowTemplateView {
            id: t.id,
            workspace: t.workspace,
            name: t.name,
            description: t.description,
            active: t.active,
            archived: t.archived,
            latest_version: t.latest_version,
            created_by: t.created_by,
            created_at: Time::from_proto(t.created_at.as_ref()),
            updated_at: Time::from_proto(t.updated_at.as_ref()),
            latest: t.latest.map(WorkflowReleaseView::from),
        }
    }
}

impl Render for WorkflowTemplateView {
    fn table(&self) -> String {
        let mut text = fields(&[
            ("name", self.name.clone()),
            ("workspace", self.workspace.clone()),
            ("description", self.description.clone()),
            ("active", yes_no(self.active)),
            ("archived", yes_no(self.archived)),
            ("latest_version", format!("v{}", self.latest_version)),
            ("created_by", self.created_by.clone()),
        ]);
        if let Some(latest) = &self.latest {
            text.push_str(&latest.table());
        }
        text
    }
}

/// One parameter as declared.
#[derive(Debug, Serialize)]
pub struct ParameterView {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub default: Option<String>,
    pub required: bool,
    pub description: String,
}

fn parameter_type_name(value: i32) -> String {
    use proto::ParameterType as P;
    let name = P::try_from(value).ok().map(|kind| match kind {
        P::Unspecified | P::String => "string",
        P::Integer => "integer",
        P::Number => "number",
        P::Boolean => "boolean",
    });
    enum_name(value, name)
}

/// One step as a workflow file writes it.
#[derive(Debug, Serialize)]
pub struct StepView {
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub template: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Span>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace_period: Option<Span>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub network: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub workdir: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub requires: BTreeMap<String, String>,
    pub allow_failure: bool,
    pub priority: i32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub output_category: String,
}

fn pull_name(value: i32) -> Option<String> {
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

impl From<proto::WorkflowStep> for StepView {
    fn from(step: proto::WorkflowStep) -> StepView {
        let spec = step.spec.unwrap_or_default();
        StepView {
            name: step.name,
            template: step.template,
            image: spec.image,
            command: spec.command,
            env: sorted(spec.env),
            memory_bytes: spec.memory_bytes,
            cpus: spec.cpus,
            pids: spec.pids_limit,
            timeout: Span::from_proto(spec.timeout.as_ref()),
            grace_period: Span::from_proto(spec.stop_grace_period.as_ref()),
            network: spec.network,
            networks: spec
                .networks
                .into_iter()
                .map(|n| {
                    if n.aliases.is_empty() {
                        n.name
                    } else {
                        format!("{}:{}", n.name, n.aliases.join(","))
                    }
                })
                .collect(),
            pull: pull_name(spec.pull_policy),
            workdir: spec.working_dir,
            needs: step.needs,
            requires: sorted(step.requirements),
            allow_failure: step.allow_failure,
            priority: step.priority,
            inputs: step
                .inputs
                .into_iter()
                .map(|i| {
                    let what = if i.from.is_empty() {
                        i.artifact
                    } else {
                        format!("from {}", i.from)
                    };
                    if i.mount.is_empty() {
                        what
                    } else {
                        format!("{what} at {}", i.mount)
                    }
                })
                .collect(),
            outputs: step
                .outputs
                .into_iter()
                .map(|o| {
                    if o.when == proto::OutputWhen::Always as i32 {
                        format!("{} (always)", o.path)
                    } else {
                        o.path
                    }
                })
                .collect(),
            output_category: step.output_category,
        }
    }
}

impl StepView {
    /// `key: value` lines of the set fields, indented under the step's name.
    fn lines(&self, text: &mut String, secret_env_keys: &[String]) {
        let mut rows: Vec<(&str, String)> = Vec::new();
        let mut put = |key: &'static str, value: String| {
            if !value.is_empty() {
                rows.push((key, value));
            }
        };
        put("template", self.template.clone());
        put("image", self.image.clone());
        put("command", self.command.join(" "));
        put("env", pairs(&self.env));
        put("secret_env", secret_env_keys.join(","));
        put("memory", self.memory_bytes.map(size).unwrap_or_default());
        put("cpus", self.cpus.map(|c| c.to_string()).unwrap_or_default());
        put("pids", self.pids.map(|p| p.to_string()).unwrap_or_default());
        put(
            "timeout",
            self.timeout.map(|t| t.to_string()).unwrap_or_default(),
        );
        put(
            "grace_period",
            self.grace_period.map(|t| t.to_string()).unwrap_or_default(),
        );
        put("network", self.network.clone());
        put("networks", self.networks.join(" "));
        put("pull", self.pull.clone().unwrap_or_default());
        put("workdir", self.workdir.clone());
        put("needs", self.needs.join(","));
        put("requires", pairs(&self.requires));
        if self.allow_failure {
            put("allow_failure", "yes".into());
        }
        if self.priority != 0 {
            put("priority", self.priority.to_string());
        }
        put("inputs", self.inputs.join(", "));
        put("outputs", self.outputs.join(", "));
        put("output_category", self.output_category.clone());
        let _ = writeln!(text, "  {}:", self.name);
        for line in fields(&rows).lines() {
            let _ = writeln!(text, "    {line}");
        }
    }
}

/// One difference between two releases; secrets by name only (the server never sends
/// their values).
#[derive(Debug, Serialize)]
pub struct ChangeView {
    pub field: String,
    pub kind: String,
    pub before: String,
    pub after: String,
    pub secret: bool,
}

impl From<proto::ReleaseChange> for ChangeView {
    fn from(c: proto::ReleaseChange) -> ChangeView {
        use proto::ChangeKind as K;
        let name = K::try_from(c.kind).ok().map(|kind| match kind {
            K::Unspecified => "unspecified",
            K::Added => "added",
            K::Changed => "changed",
            K::Removed => "removed",
        });
        ChangeView {
            field: c.field,
            kind: enum_name(c.kind, name),
            before: c.before,
            after: c.after,
            secret: c.secret,
        }
    }
}

fn changes_table(changes: &[ChangeView]) -> String {
    let mut table = Table::new(["FIELD", "CHANGE", "BEFORE", "AFTER"]);
    for c in changes {
        let hidden = || {
            if c.secret {
                "(secret)".to_owned()
            } else {
                String::new()
            }
        };
        table.row([
            c.field.clone(),
            c.kind.clone(),
            if c.before.is_empty() {
                hidden()
            } else {
                c.before.clone()
            },
            if c.after.is_empty() {
                hidden()
            } else {
                c.after.clone()
            },
        ]);
    }
    table.render_indented()
}

/// Release vN of a workflow template.
#[derive(Debug, Serialize)]
pub struct WorkflowReleaseView {
    pub template: String,
    pub workspace: String,
    pub version: u32,
    pub summary: String,
    pub note: String,
    pub rolled_back_from: Option<u32>,
    pub created_by: String,
    pub created_at: Option<Time>,
    /// `STEP/KEY` of each secret env variable.
    pub secret_env_keys: Vec<String>,
    pub parameters: Vec<ParameterView>,
    pub steps: Vec<StepView>,
    pub changes: Vec<ChangeView>,
    /// With `--diff`: the version compared with, and what differs from it to this one.
    pub diff_against: Option<u32>,
    pub diff: Vec<ChangeView>,
}

impl From<proto::Release> for WorkflowReleaseView {
    fn from(r: proto::Release) -> WorkflowReleaseView {
        let (parameters, steps) = match r.spec {
            Some(proto::release::Spec::Workflow(spec)) => (spec.parameters, spec.steps),
            _ => (Vec::new(), Vec::new()),
        };
        WorkflowReleaseView {
            template: r.template,
            workspace: r.workspace,
            version: r.version,
            summary: r.summary,
            note: r.note,
            rolled_back_from: r.rolled_back_from,
            created_by: r.created_by,
            created_at: Time::from_proto(r.created_at.as_ref()),
            secret_env_keys: r.secret_env_keys,
            parameters: parameters
                .into_iter()
                .map(|p| ParameterView {
                    name: p.name,
                    kind: parameter_type_name(p.r#type),
                    default: p.default,
                    required: p.required,
                    description: p.description,
                })
                .collect(),
            steps: steps.into_iter().map(StepView::from).collect(),
            changes: r.changes.into_iter().map(ChangeView::from).collect(),
            diff_against: (r.diff_against != 0).then_some(r.diff_against),
            diff: r.diff.into_iter().map(ChangeView::from).collect(),
        }
    }
}

impl Render for WorkflowReleaseView {
    fn table(&self) -> String {
        let mut text = fields(&[
            ("version", format!("v{}", self.version)),
            ("summary", self.summary.clone()),
            ("note", self.note.clone()),
            (
                "rolled_back_from",
                self.rolled_back_from
                    .map(|v| format!("v{v}"))
                    .unwrap_or_default(),
            ),
            ("created_by", self.created_by.clone()),
            ("created_at", opt(self.created_at.map(Time::short))),
        ]);
        if self.parameters.is_empty() {
            text.push_str("parameters: -\n");
        } else {
            text.push_str("parameters:\n");
            let mut table = Table::new(["NAME", "TYPE", "DEFAULT", "REQUIRED", "DESCRIPTION"]);
            for p in &self.parameters {
                table.row([
                    p.name.clone(),
                    p.kind.clone(),
                    p.default.clone().unwrap_or_default(),
                    yes_no(p.required),
                    p.description.clone(),
                ]);
            }
            text.push_str(&table.render_indented());
        }
        text.push_str("steps:\n");
        for step in &self.steps {
            let prefix = format!("{}/", step.name);
            let secrets: Vec<String> = self
                .secret_env_keys
                .iter()
                .filter_map(|k| k.strip_prefix(&prefix).map(str::to_owned))
                .collect();
            step.lines(&mut text, &secrets);
        }
        if let Some(against) = self.diff_against {
            if self.diff.is_empty() {
                let _ = writeln!(text, "diff from v{against}: {NONE} (the same definition)");
            } else {
                let _ = writeln!(text, "diff from v{against}:");
                text.push_str(&changes_table(&self.diff));
            }
        }
        text
    }
}

/// A workflow template's releases, newest first.
#[derive(Debug, Serialize)]
pub struct WorkflowReleaseListView {
    pub releases: Vec<WorkflowReleaseView>,
}

impl From<proto::ListReleasesResponse> for WorkflowReleaseListView {
    fn from(list: proto::ListReleasesResponse) -> WorkflowReleaseListView {
        WorkflowReleaseListView {
            releases: list
                .releases
                .into_iter()
                .map(WorkflowReleaseView::from)
                .collect(),
        }
    }
}

impl Render for WorkflowReleaseListView {
    fn table(&self) -> String {
        let mut table = Table::new(["VERSION", "CREATED", "BY", "SUMMARY"]);
        for r in &self.releases {
            let mut summary = r.summary.clone();
            if !r.note.is_empty() {
                summary.push_str(&format!(" ({})", r.note));
            }
            table.row([
                format!("v{}", r.version),
                opt(r.created_at.map(Time::short)),
                r.created_by.clone(),
                summary,
            ]);
        }
        table.render()
    }
}

#[cfg(test)]
mod tests {
    use super::super::to_json;
    use super::*;

    fn release() -> proto::Release {
        proto::Release {
            template: "nightly".into(),
            workspace: "default".into(),
            version: 2,
            summary: "step build: image busybox:1.36 → busybox:${{ params.tag }}".into(),
            secret_env_keys: vec!["build/TOKEN".into()],
            spec: Some(proto::release::Spec::Workflow(
                proto::WorkflowTemplateSpec {
                    parameters: vec![proto::TemplateParameter {
                        name: "tag".into(),
                        r#type: proto::ParameterType::String as i32,
                        default: Some("1.36".into()),
                        ..Default::default()
                    }],
                    steps: vec![proto::WorkflowStep {
                        name: "build".into(),
                        spec: Some(proto::ContainerSpec {
                            image: "busybox:${{ params.tag }}".into(),
                            memory_bytes: Some(512 << 20),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                },
            )),
            diff_against: 1,
            diff: vec![proto::ReleaseChange {
                field: "steps[\"build\"].secret_env[\"TOKEN\"]".into(),
                kind: proto::ChangeKind::Changed as i32,
                secret: true,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_release_shows_parameters_steps_and_its_diff() {
        let view = WorkflowReleaseView::from(release());
        let table = view.table();
        assert!(table.contains("version:"), "{table}");
        let line = |key: &str| {
            table
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with(&format!("{key}:")))
                .map(|l| l[key.len() + 1..].trim().to_owned())
        };
        assert_eq!(
            line("image").as_deref(),
            Some("busybox:${{ params.tag }}"),
            "{table}"
        );
        assert_eq!(line("secret_env").as_deref(), Some("TOKEN"), "{table}");
        assert_eq!(line("memory").as_deref(), Some("512MiB"), "{table}");
        assert!(table.contains("diff from v1:"), "{table}");
        assert!(table.contains("(secret)"), "{table}");
        let json = to_json(&view);
        assert_eq!(json["parameters"][0]["type"], "string");
        assert_eq!(json["parameters"][0]["default"], "1.36");
        assert_eq!(json["steps"][0]["image"], "busybox:${{ params.tag }}");
        assert_eq!(json["diff_against"], 1);
        assert_eq!(json["diff"][0]["kind"], "changed");
    }
}
