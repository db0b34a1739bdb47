//! Views of trigger rules, rule lists, events, event lists and schedule previews.
//!
//! A rule's configuration is shown as one `when` line in tables (`cron 0 3 * * * in
//! Europe/Berlin`, `every PT15M from ...`, `artifact build where arch=amd64`, `completion
//! of deploy: failure`) and as its fields in JSON. Secret override values are never in a
//! view: only their names.

use std::collections::BTreeMap;

use berth_common::proto;
use serde::Serialize;

use super::{Answer, Render, Span, Table, Time, enum_name, fields, pairs, sorted, time};

/// A schedule rule's configuration.
#[derive(Debug, Serialize)]
pub struct ScheduleView {
    /// '' for an interval rule.
    pub cron: String,
    pub time_zone: String,
    /// '' for a cron rule.
    pub interval: String,
    pub anchor: Option<Time>,
    /// `skip`, `allow`, `buffer-one`, `cancel-previous`.
    pub overlap: String,
    pub catchup_window: Option<Span>,
    /// `latest`, `all`.
    pub catchup: String,
}

/// One condition on an artifact's data.
#[derive(Debug, Serialize)]
pub struct ConditionView {
    pub path: String,
    /// `None`: only present.
    pub equals: Option<String>,
}

impl std::fmt::Display for ConditionView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.equals {
            Some(value) => write!(f, "{}={value}", self.path),
            None => write!(f, "{}", self.path),
        }
    }
}

/// An artifact rule's configuration.
#[derive(Debug, Serialize)]
pub struct ArtifactRuleView {
    pub category: String,
    pub all_of: Vec<ConditionView>,
    pub any_of: Vec<ConditionView>,
}

/// A completion rule's configuration.
#[derive(Debug, Serialize)]
pub struct CompletionRuleView {
    /// '' for any request with the labels.
    pub template: String,
    pub labels: BTreeMap<String, String>,
    pub results: Vec<String>,
}

/// What a firing runs.
#[derive(Debug, Serialize)]
pub struct ActionView {
    pub template: String,
    /// 0: the latest release at each firing.
    pub version: u32,
    pub env: BTreeMap<String, String>,
    /// Names only: the values are write-only.
    pub secret_env_keys: Vec<String>,
    pub params: BTreeMap<String, String>,
}

/// A topic rule's configuration.
#[derive(Debug, Serialize)]
pub struct TopicRuleView {
    pub topic: String,
    /// Type patterns; empty: every message.
    pub types: Vec<String>,
}

/// A trigger rule.
#[derive(Debug, Serialize)]
pub struct TriggerRuleView {
    pub id: String,
    pub workspace: String,
    pub name: String,
    /// `schedule`, `artifact`, `completion`, `topic`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `active`, `paused` or `archived`.
    pub state: String,
    pub schedule: Option<ScheduleView>,
    pub artifact: Option<ArtifactRuleView>,
    pub completion: Option<CompletionRuleView>,
    pub topic: Option<TopicRuleView>,
    pub action: ActionView,
    pub next_fire_at: Option<Time>,
    pub last_fired_at: Option<Time>,
    pub archived_at: Option<Time>,
    pub created_by: String,
    pub created_at: Option<Time>,
    pub modified_at: Option<Time>,
}

fn overlap_name(value: i32) -> String {
    let name = proto::OverlapPolicy::try_from(value)
        .ok()
        .map(|policy| match policy {
            proto::OverlapPolicy::Unspecified => "unspecified",
            proto::OverlapPolicy::Skip => "skip",
            proto::OverlapPolicy::Allow => "allow",
            proto::OverlapPolicy::BufferOne => "buffer-one",
            proto::OverlapPolicy::CancelPrevious => "cancel-previous",
        });
    enum_name(value, name)
}

fn catchup_name(value: i32) -> String {
    let name = proto::CatchupPolicy::try_from(value)
        .ok()
        .map(|policy| match policy {
            proto::CatchupPolicy::Unspecified => "unspecified",
            proto::CatchupPolicy::Latest => "latest",
            proto::CatchupPolicy::All => "all",
        });
    enum_name(value, name)
}

fn conditions(conditions: Vec<proto::DataCondition>) -> Vec<ConditionView> {
    conditions
        .into_iter()
        .map(|c| ConditionView {
            path: c.path,
            equals: c.equals,
        })
        .collect()
}

impl From<proto::TriggerRule> for TriggerRuleView {
    fn from(r: proto::TriggerRule) -> TriggerRuleView {
        use proto::trigger_rule::Config;
        let (mut schedule, mut artifact, mut completion, mut topic) = (None, None, None, None);
        match r.config {
            Some(Config::Schedule(s)) => {
                schedule = Some(ScheduleView {
                    cron: s.cron,
                    time_zone: s.time_zone,
                    interval: s.interval,
                    anchor: Time::from_proto(s.anchor.as_ref()),
                    overlap: overlap_name(s.overlap),
                    catchup_window: Span::from_proto(s.catchup_window.as_ref()),
                    catchup: catchup_name(s.catchup),
                });
            }
            Some(Config::Artifact(a)) => {
                artifact = Some(ArtifactRuleView {
                    category: a.category,
                    all_of: conditions(a.all_of),
                    any_of: conditions(a.any_of),
                });
            }
            Some(Config::Completion(c)) => {
                completion = Some(CompletionRuleView {
                    template: c.template,
                    labels: sorted(c.labels),
                    results: c.results,
                });
            }
            Some(Config::Topic(t)) => {
                topic = Some(TopicRuleView {
                    topic: t.topic,
                    types: t.types,
                });
            }
            None => {}
        }
        let action = r.action.unwrap_or_default();
        let state = if r.archived_at.is_some() {
            "archived"
        } else if r.active {
            "active"
        } else {
            "paused"
        };
        TriggerRuleView {
            id: r.id,
            workspace: r.workspace,
            name: r.name,
            kind: r.r#type,
            state: state.to_owned(),
            schedule,
            artifact,
            completion,
            topic,
            action: ActionView {
                template: action.template,
                version: action.version,
                env: sorted(action.overrides.unwrap_or_default().env),
                secret_env_keys: r.secret_env_keys,
                params: sorted(action.params),
            },
            next_fire_at: Time::from_proto(r.next_fire_at.as_ref()),
            last_fired_at: Time::from_proto(r.last_fired_at.as_ref()),
            archived_at: Time::from_proto(r.archived_at.as_ref()),
            created_by: r.created_by,
            created_at: Time::from_proto(r.created_at.as_ref()),
            modified_at: Time::from_proto(r.modified_at.as_ref()),
        }
    }
}

impl Answer for proto::TriggerRule {
    type View = TriggerRuleView;
}

impl TriggerRuleView {
    /// When it fires, in one line.
    fn when(&self) -> String {
        if let Some(s) = &self.schedule {
            if !s.cron.is_empty() {
                return format!("cron {} in {}", s.cron, s.time_zone);
            }
            return match s.anchor {
                Some(anchor) => format!("every {} from {}", s.interval, anchor.short()),
                None => format!("every {}", s.interval),
            };
        }
        if let Some(a) = &self.artifact {
            let mut line = format!("artifact {}", a.category);
            if !a.all_of.is_empty() {
                let all: Vec<String> = a.all_of.iter().map(ToString::to_string).collect();
                line.push_str(&format!(" where {}", all.join(" and ")));
            }
            if !a.any_of.is_empty() {
                let any: Vec<String> = a.any_of.iter().map(ToString::to_string).collect();
                line.push_str(&format!(" where any of {}", any.join(", ")));
            }
            return line;
        }
        if let Some(c) = &self.completion {
            let of = if c.template.is_empty() {
                "any request".to_owned()
            } else {
                c.template.clone()
            };
            let mut line = format!("completion of {of}: {}", c.results.join(", "));
            if !c.labels.is_empty() {
                line.push_str(&format!(" with labels {}", pairs(&c.labels)));
            }
            return line;
        }
        match &self.topic {
            Some(t) if t.types.is_empty() => format!("topic {}", t.topic),
            Some(t) => format!("topic {}: {}", t.topic, t.types.join(", ")),
            None => String::new(),
        }
    }

    /// What runs: `T@vK`, or `T (latest)`.
    fn runs(&self) -> String {
        if self.action.version == 0 {
            format!("{} (latest)", self.action.template)
        } else {
            format!("{}@v{}", self.action.template, self.action.version)
        }
    }
}

impl Render for TriggerRuleView {
    fn table(&self) -> String {
        let mut rows = vec![
            ("name", self.name.clone()),
            ("id", self.id.clone()),
            ("workspace", self.workspace.clone()),
            ("type", self.kind.clone()),
            ("state", self.state.clone()),
            ("when", self.when()),
        ];
        if let Some(s) = &self.schedule {
            rows.push(("overlap", s.overlap.clone()));
            rows.push((
                "catchup",
                format!(
                    "{} within {}",
                    s.catchup,
                    s.catchup_window
                        .map_or_else(|| "-".to_owned(), |w| w.to_string())
                ),
            ));
        }
        rows.extend([
            ("runs", self.runs()),
            ("env", pairs(&self.action.env)),
            ("secret_env", self.action.secret_env_keys.join(",")),
            ("params", pairs(&self.action.params)),
            ("next_fire_at", time(self.next_fire_at)),
            ("last_fired_at", time(self.last_fired_at)),
            ("archived_at", time(self.archived_at)),
            ("created_by", self.created_by.clone()),
            ("created_at", time(self.created_at)),
            ("modified_at", time(self.modified_at)),
        ]);
        fields(&rows)
    }
}

/// `trigger list`.
#[derive(Debug, Serialize)]
pub struct TriggerRuleListView {
    pub rules: Vec<TriggerRuleView>,
}

impl From<proto::ListTriggerRulesResponse> for TriggerRuleListView {
    fn from(r: proto::ListTriggerRulesResponse) -> TriggerRuleListView {
        TriggerRuleListView {
            rules: r.rules.into_iter().map(TriggerRuleView::from).collect(),
        }
    }
}

impl Answer for proto::ListTriggerRulesResponse {
    type View = TriggerRuleListView;
}

impl Render for TriggerRuleListView {
    fn table(&self) -> String {
        let mut table = Table::new([
            "NAME",
            "TYPE",
            "STATE",
            "NEXT FIRE",
            "LAST FIRED",
            "RUNS",
            "WHEN",
        ]);
        for r in &self.rules {
            table.row([
                r.name.clone(),
                r.kind.clone(),
                r.state.clone(),
                time(r.next_fire_at),
                time(r.last_fired_at),
                r.runs(),
                r.when(),
            ]);
        }
        table.render()
    }
}

/// A trigger event.
#[derive(Debug, Serialize)]
pub struct TriggerEventView {
    pub id: String,
    pub workspace: String,
    /// '' for an event from outside any rule.
    pub rule: String,
    pub rule_id: String,
    /// The rule's type, or `manual`.
    #[serde(rename = "type")]
    pub kind: String,
    pub outcome: String,
    pub reason: String,
    pub nominal_time: Option<Time>,
    /// What caused it (the artifact, the ended request, who fired it by hand).
    pub description: serde_json::Value,
    pub work_request_id: String,
    pub occurred_at: Option<Time>,
}

impl From<proto::TriggerEvent> for TriggerEventView {
    fn from(e: proto::TriggerEvent) -> TriggerEventView {
        TriggerEventView {
            description: serde_json::from_str(&e.description)
                .unwrap_or(serde_json::Value::String(e.description)),
            id: e.id,
            workspace: e.workspace,
            rule: e.rule,
            rule_id: e.rule_id,
            kind: e.r#type,
            outcome: e.outcome,
            reason: e.reason,
            nominal_time: Time::from_proto(e.nominal_time.as_ref()),
            work_request_id: e.work_request_id,
            occurred_at: Time::from_proto(e.occurred_at.as_ref()),
        }
    }
}

impl Answer for proto::TriggerEvent {
    type View = TriggerEventView;
}

impl Render for TriggerEventView {
    fn table(&self) -> String {
        let description = match &self.description {
            serde_json::Value::Object(o) if o.is_empty() => String::new(),
            other => other.to_string(),
        };
        fields(&[
            ("id", self.id.clone()),
            ("rule", self.rule.clone()),
            ("workspace", self.workspace.clone()),
            ("type", self.kind.clone()),
            ("outcome", self.outcome.clone()),
            ("reason", self.reason.clone()),
            ("nominal_time", time(self.nominal_time)),
            ("work_request_id", self.work_request_id.clone()),
            ("description", description),
            ("occurred_at", time(self.occurred_at)),
        ])
    }
}

/// `trigger events`.
#[derive(Debug, Serialize)]
pub struct TriggerEventListView {
    pub events: Vec<TriggerEventView>,
    /// '' on the last page.
    pub next_page_token: String,
}

impl From<proto::ListTriggerEventsResponse> for TriggerEventListView {
    fn from(r: proto::ListTriggerEventsResponse) -> TriggerEventListView {
        TriggerEventListView {
            events: r.events.into_iter().map(TriggerEventView::from).collect(),
            next_page_token: r.next_page_token,
        }
    }
}

impl Answer for proto::ListTriggerEventsResponse {
    type View = TriggerEventListView;
}

impl Render for TriggerEventListView {
    fn table(&self) -> String {
        let mut table = Table::new([
            "OCCURRED",
            "RULE",
            "TYPE",
            "OUTCOME",
            "NOMINAL",
            "WORK REQUEST",
            "REASON",
        ]);
        for e in &self.events {
            table.row([
                time(e.occurred_at),
                e.rule.clone(),
                e.kind.clone(),
                e.outcome.clone(),
                time(e.nominal_time),
                e.work_request_id.clone(),
                e.reason.clone(),
            ]);
        }
        let mut text = table.render();
        if !self.next_page_token.is_empty() {
            text.push_str(&format!("more: --page-token {}\n", self.next_page_token));
        }
        text
    }
}

/// One upcoming fire time.
#[derive(Debug, Serialize)]
pub struct FireTimeView {
    pub at: Option<Time>,
    /// In the rule's zone, with its offset.
    pub local: String,
    /// Set when a DST change moved or merged it.
    pub note: String,
}

/// `trigger next`.
#[derive(Debug, Serialize)]
pub struct PreviewView {
    pub time_zone: String,
    pub times: Vec<FireTimeView>,
}

impl From<proto::PreviewTriggerScheduleResponse> for PreviewView {
    fn from(r: proto::PreviewTriggerScheduleResponse) -> PreviewView {
        PreviewView {
            time_zone: r.time_zone,
            times: r
                .times
                .into_iter()
                .map(|t| FireTimeView {
                    at: Time::from_proto(t.at.as_ref()),
                    local: t.local,
                    note: t.note,
                })
                .collect(),
        }
    }
}

impl Answer for proto::PreviewTriggerScheduleResponse {
    type View = PreviewView;
}

impl Render for PreviewView {
    fn table(&self) -> String {
        let local = format!("LOCAL ({})", self.time_zone);
        let mut table = Table::new([local.as_str(), "UTC", "NOTE"]);
        for t in &self.times {
            table.row([t.local.clone(), time(t.at), t.note.clone()]);
        }
        table.render()
    }
}

#[cfg(test)]
mod tests {
    use super::super::to_json;
    use super::*;

    fn rule() -> proto::TriggerRule {
        proto::TriggerRule {
            id: "r1".into(),
            workspace: "default".into(),
            name: "nightly".into(),
            r#type: "schedule".into(),
            config: Some(proto::trigger_rule::Config::Schedule(
                proto::ScheduleConfig {
                    cron: "0 3 * * *".into(),
                    time_zone: "Europe/Berlin".into(),
                    overlap: proto::OverlapPolicy::BufferOne as i32,
                    catchup_window: Some(prost_types::Duration {
                        seconds: 60,
                        nanos: 0,
                    }),
                    catchup: proto::CatchupPolicy::Latest as i32,
                    ..Default::default()
                },
            )),
            action: Some(proto::TriggerAction {
                template: "backup".into(),
                version: 0,
                overrides: Some(proto::TemplateOverrides {
                    env: [("MODE".to_owned(), "full".to_owned())].into(),
                    ..Default::default()
                }),
                params: Default::default(),
            }),
            active: false,
            secret_env_keys: vec!["TOKEN".into()],
            ..Default::default()
        }
    }

    #[test]
    fn a_rule_reads_as_one_line_of_when_and_its_fields_in_json() {
        let view = TriggerRuleView::from(rule());
        let table = view.table();
        assert!(table.contains("when:"), "{table}");
        assert!(table.contains("cron 0 3 * * * in Europe/Berlin"), "{table}");
        assert!(table.contains("overlap:"), "{table}");
        assert!(table.contains("buffer-one"), "{table}");
        assert!(table.contains("backup (latest)"), "{table}");
        assert!(table.contains("paused"), "{table}");
        let json = to_json(&view);
        assert_eq!(json["type"], "schedule");
        assert_eq!(json["state"], "paused");
        assert_eq!(json["schedule"]["overlap"], "buffer-one");
        assert_eq!(json["schedule"]["catchup_window"], "1m");
        assert_eq!(json["action"]["secret_env_keys"][0], "TOKEN");
        assert_eq!(json["action"]["env"]["MODE"], "full");
    }

    #[test]
    fn artifact_rules_list_their_conditions() {
        let view = TriggerRuleListView::from(proto::ListTriggerRulesResponse {
            rules: vec![proto::TriggerRule {
                r#type: "artifact".into(),
                name: "on-build".into(),
                active: true,
                config: Some(proto::trigger_rule::Config::Artifact(
                    proto::ArtifactConfig {
                        category: "build".into(),
                        all_of: vec![proto::DataCondition {
                            path: "arch".into(),
                            equals: Some("amd64".into()),
                        }],
                        any_of: vec![proto::DataCondition {
                            path: "signed".into(),
                            equals: None,
                        }],
                    },
                )),
                ..rule()
            }],
        });
        let table = view.table();
        assert!(table.starts_with("NAME"), "{table}");
        assert!(
            table.contains("artifact build where arch=amd64 where any of signed"),
            "{table}"
        );
        assert!(table.contains("active"), "{table}");
    }

    #[test]
    fn events_show_their_description_as_json() {
        let view = TriggerEventView::from(proto::TriggerEvent {
            id: "e1".into(),
            rule: "nightly".into(),
            r#type: "manual".into(),
            outcome: "fired".into(),
            description: r#"{"by":"alice"}"#.into(),
            work_request_id: "w1".into(),
            ..Default::default()
        });
        assert_eq!(to_json(&view)["description"]["by"], "alice");
        assert!(view.table().contains(r#"{"by":"alice"}"#));
    }

    #[test]
    fn previews_name_the_zone_and_keep_dst_notes() {
        let view = PreviewView::from(proto::PreviewTriggerScheduleResponse {
            time_zone: "Europe/Berlin".into(),
            times: vec![proto::FireTime {
                at: Some(prost_types::Timestamp {
                    seconds: 1_806_282_000,
                    nanos: 0,
                }),
                local: "2027-03-28T03:00:00+02:00".into(),
                note: "02:30 does not exist on this day (spring forward): runs at 03:00".into(),
            }],
        });
        let table = view.table();
        assert!(table.starts_with("LOCAL (Europe/Berlin)"), "{table}");
        assert!(table.contains("spring forward"), "{table}");
    }
}
