//! `berth.v1.TriggerService` on the wire; `triggers` does the work.
//!
//! Conversions both ways for rules, their configurations and actions, events and
//! previews. Enum numbers the protocol does not know, an empty `config` where one is
//! needed and malformed timestamps or durations are refused here with INVALID_ARGUMENT
//! naming the field; everything else is checked by the domain. Secret override values
//! are write-only: a rule goes back with their names only.

use berth_common::proto::trigger_service_server::TriggerService;
use berth_common::proto::{
    self, ArchiveTriggerRuleRequest, CreateTriggerRuleRequest, FireTriggerRuleRequest,
    GetTriggerRuleRequest, ListTriggerEventsRequest, ListTriggerEventsResponse,
    ListTriggerRulesRequest, ListTriggerRulesResponse, PauseTriggerRuleRequest,
    PreviewTriggerScheduleRequest, PreviewTriggerScheduleResponse, ResumeTriggerRuleRequest,
    TriggerEvent, TriggerRule, UpdateTriggerRuleRequest,
};
use chrono::{DateTime, Utc};
use tonic::{Request, Response, Status};

use crate::api::auth::identity;
use crate::api::error::respond;
use crate::api::templates::overrides_from_proto;
use crate::api::{duration_ms, timestamp, timestamp_opt};
use berth_core::error::{Error, Result};
use berth_core::triggers::artifact::ArtifactConfig;
use berth_core::triggers::completion::CompletionConfig;
use berth_core::triggers::schedule::ScheduleConfig;
use berth_core::triggers::topic::TopicConfig;
use berth_core::triggers::{
    ActionInput, ArtifactInput, Catchup, CompletionInput, ConfigInput, DataCondition, EventQuery,
    EventView, FireTime, Outcome, Overlap, PreviewOf, RuleChange, RuleKind, RuleRef, RuleView,
    ScheduleInput, StoredAction, TopicInput, Triggers,
};

/// The TriggerService implementation.
#[derive(Clone)]
pub struct TriggerApi {
    triggers: Triggers,
}

impl TriggerApi {
    /// The service over `triggers`.
    pub fn new(triggers: Triggers) -> TriggerApi {
        TriggerApi { triggers }
    }
}

// ----- from the wire -----

fn time_from_proto(field: &str, t: &prost_types::Timestamp) -> Result<DateTime<Utc>> {
    u32::try_from(t.nanos)
        .ok()
        .and_then(|nanos| DateTime::<Utc>::from_timestamp(t.seconds, nanos))
        .ok_or_else(|| Error::InvalidArgument(format!("{field}: not a valid timestamp")))
}

fn overlap_from_proto(value: i32) -> Result<Option<Overlap>> {
    match proto::OverlapPolicy::try_from(value) {
        Ok(proto::OverlapPolicy::Unspecified) => Ok(None),
        Ok(proto::OverlapPolicy::Skip) => Ok(Some(Overlap::Skip)),
        Ok(proto::OverlapPolicy::Allow) => Ok(Some(Overlap::Allow)),
        Ok(proto::OverlapPolicy::BufferOne) => Ok(Some(Overlap::BufferOne)),
        Ok(proto::OverlapPolicy::CancelPrevious) => Ok(Some(Overlap::CancelPrevious)),
        Err(_) => Err(Error::InvalidArgument(format!(
            "schedule.overlap: unknown value {value}; use OVERLAP_POLICY_SKIP, _ALLOW, _BUFFER_ONE or _CANCEL_PREVIOUS, or leave it unset"
        ))),
    }
}

fn catchup_from_proto(value: i32) -> Result<Option<Catchup>> {
    match proto::CatchupPolicy::try_from(value) {
        Ok(proto::CatchupPolicy::Unspecified) => Ok(None),
        Ok(proto::CatchupPolicy::Latest) => Ok(Some(Catchup::Latest)),
        Ok(proto::CatchupPolicy::All) => Ok(Some(Catchup::All)),
        Err(_) => Err(Error::InvalidArgument(format!(
            "schedule.catchup: unknown value {value}; use CATCHUP_POLICY_LATEST or CATCHUP_POLICY_ALL, or leave it unset"
        ))),
    }
}

fn window_from_proto(d: &prost_types::Duration) -> Result<std::time::Duration> {
    let seconds = u64::try_from(d.seconds);
    let nanos = u32::try_from(d.nanos);
    match (seconds, nanos) {
        (Ok(seconds), Ok(nanos)) if nanos < 1_000_000_000 => {
            Ok(std::time::Duration::new(seconds, nanos))
        }
        _ => Err(Error::InvalidArgument(
            "schedule.catchup_window: must be zero or positive (zero: missed times never fire), e.g. 5m".into(),
        )),
    }
}

fn schedule_from_proto(s: proto::ScheduleConfig) -> Result<ScheduleInput> {
    Ok(ScheduleInput {
        anchor: s
            .anchor
            .as_ref()
            .map(|t| time_from_proto("schedule.anchor", t))
            .transpose()?,
        overlap: overlap_from_proto(s.overlap)?,
        catchup_window: s
            .catchup_window
            .as_ref()
            .map(window_from_proto)
            .transpose()?,
        catchup: catchup_from_proto(s.catchup)?,
        cron: s.cron,
        time_zone: s.time_zone,
        interval: s.interval,
    })
}

fn conditions_from_proto(conditions: Vec<proto::DataCondition>) -> Vec<DataCondition> {
    conditions
        .into_iter()
        .map(|c| DataCondition {
            path: c.path,
            equals: c.equals,
        })
        .collect()
}

fn artifact_from_proto(a: proto::ArtifactConfig) -> ArtifactInput {
    ArtifactInput {
        category: a.category,
        all_of: conditions_from_proto(a.all_of),
        any_of: conditions_from_proto(a.any_of),
    }
}

fn completion_from_proto(c: proto::CompletionConfig) -> CompletionInput {
    CompletionInput {
        template: c.template,
        labels: c.labels.into_iter().collect(),
        results: c.results,
    }
}

/// The wire's `config` oneof, which the create, update and rule messages share in shape.
enum WireConfig {
    Schedule(proto::ScheduleConfig),
    Artifact(proto::ArtifactConfig),
    Completion(proto::CompletionConfig),
    Topic(proto::TopicConfig),
}

impl From<proto::create_trigger_rule_request::Config> for WireConfig {
    fn from(config: proto::create_trigger_rule_request::Config) -> WireConfig {
        use proto::create_trigger_rule_request::Config;
        match config {
            Config::Schedule(s) => WireConfig::Schedule(s),
            Config::Artifact(a) => WireConfig::Artifact(a),
            Config::Completion(c) => WireConfig::Completion(c),
            Config::Topic(t) => WireConfig::Topic(t),
        }
    }
}

impl From<proto::update_trigger_rule_request::Config> for WireConfig {
    fn from(config: proto::update_trigger_rule_request::Config) -> WireConfig {
        use proto::update_trigger_rule_request::Config;
        match config {
            Config::Schedule(s) => WireConfig::Schedule(s),
            Config::Artifact(a) => WireConfig::Artifact(a),
            Config::Completion(c) => WireConfig::Completion(c),
            Config::Topic(t) => WireConfig::Topic(t),
        }
    }
}

fn config_from_proto(config: WireConfig) -> Result<ConfigInput> {
    Ok(match config {
        WireConfig::Schedule(s) => ConfigInput::Schedule(schedule_from_proto(s)?),
        WireConfig::Artifact(a) => ConfigInput::Artifact(artifact_from_proto(a)),
        WireConfig::Completion(c) => ConfigInput::Completion(completion_from_proto(c)),
        WireConfig::Topic(t) => ConfigInput::Topic(TopicInput {
            topic: t.topic,
            types: t.types,
        }),
    })
}

fn action_from_proto(action: proto::TriggerAction) -> Result<ActionInput> {
    let version = match action.version {
        0 => None,
        v => Some(i32::try_from(v).map_err(|_| {
            Error::InvalidArgument(format!("action.version: v{v} is out of range"))
        })?),
    };
    Ok(ActionInput {
        template: action.template,
        version,
        overrides: overrides_from_proto(action.overrides.unwrap_or_default()),
        params: action.params.into_iter().collect(),
    })
}

fn rule_ref(workspace: &str, name: &str) -> RuleRef {
    RuleRef {
        workspace: workspace.to_owned(),
        name: name.to_owned(),
    }
}

fn outcomes_from_proto(outcomes: &[String]) -> Result<Vec<Outcome>> {
    outcomes
        .iter()
        .enumerate()
        .map(|(i, text)| {
            Outcome::parse(text).ok_or_else(|| {
                let known: Vec<&str> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
                Error::InvalidArgument(format!(
                    "outcomes[{i}]: {text:?} is not an outcome; use one of {}",
                    known.join(", ")
                ))
            })
        })
        .collect()
}

// ----- to the wire -----

fn overlap_to_proto(overlap: Overlap) -> proto::OverlapPolicy {
    match overlap {
        Overlap::Skip => proto::OverlapPolicy::Skip,
        Overlap::Allow => proto::OverlapPolicy::Allow,
        Overlap::BufferOne => proto::OverlapPolicy::BufferOne,
        Overlap::CancelPrevious => proto::OverlapPolicy::CancelPrevious,
    }
}

fn catchup_to_proto(catchup: Catchup) -> proto::CatchupPolicy {
    match catchup {
        Catchup::Latest => proto::CatchupPolicy::Latest,
        Catchup::All => proto::CatchupPolicy::All,
    }
}

fn schedule_to_proto(s: ScheduleConfig) -> proto::ScheduleConfig {
    proto::ScheduleConfig {
        cron: s.cron,
        time_zone: s.time_zone,
        interval: s.interval,
        anchor: timestamp_opt(s.anchor),
        overlap: overlap_to_proto(s.overlap) as i32,
        catchup_window: Some(duration_ms(s.catchup_window_ms)),
        catchup: catchup_to_proto(s.catchup) as i32,
    }
}

fn conditions_to_proto(conditions: Vec<DataCondition>) -> Vec<proto::DataCondition> {
    conditions
        .into_iter()
        .map(|c| proto::DataCondition {
            path: c.path,
            equals: c.equals,
        })
        .collect()
}

fn config_to_proto(
    kind: RuleKind,
    value: &serde_json::Value,
) -> Result<proto::trigger_rule::Config> {
    use proto::trigger_rule::Config;
    Ok(match kind {
        RuleKind::Schedule => {
            Config::Schedule(schedule_to_proto(ScheduleConfig::from_value(value)?))
        }
        RuleKind::Artifact => {
            let a = ArtifactConfig::from_value(value)?;
            Config::Artifact(proto::ArtifactConfig {
                category: a.category,
                all_of: conditions_to_proto(a.all_of),
                any_of: conditions_to_proto(a.any_of),
            })
        }
        RuleKind::Completion => {
            let c = CompletionConfig::from_value(value)?;
            Config::Completion(proto::CompletionConfig {
                template: c.template,
                labels: c.labels.into_iter().collect(),
                results: c.results,
            })
        }
        RuleKind::Topic => {
            let t: TopicConfig = serde_json::from_value(value.clone())
                .map_err(|e| Error::internal(format!("stored topic rule unreadable: {e}")))?;
            Config::Topic(proto::TopicConfig {
                topic: t.topic,
                types: t.types,
            })
        }
    })
}

fn action_to_proto(action: StoredAction) -> proto::TriggerAction {
    proto::TriggerAction {
        template: action.template,
        version: action
            .version
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0),
        overrides: Some(proto::TemplateOverrides {
            command: action.command,
            env: action.env.into_iter().collect(),
            // Write-only: the rule's `secret_env_keys` names them.
            secret_env: Default::default(),
            memory_bytes: action.memory_bytes,
            cpus: action.cpus,
            timeout: action.timeout_ms.map(duration_ms),
            priority: action.priority,
        }),
        params: action.params.into_iter().collect(),
    }
}

fn rule_to_proto(view: RuleView) -> Result<TriggerRule> {
    let row = view.row;
    let kind = row.kind()?;
    Ok(TriggerRule {
        id: row.id.to_string(),
        workspace: view.workspace,
        name: row.name,
        r#type: kind.as_str().to_owned(),
        config: Some(config_to_proto(kind, &row.config)?),
        secret_env_keys: view.action.secret_env_keys.clone(),
        action: Some(action_to_proto(view.action)),
        active: row.active,
        archived_at: timestamp_opt(row.archived_at),
        created_by: view.created_by,
        created_at: Some(timestamp(row.created_at)),
        modified_at: Some(timestamp(row.modified_at)),
        last_fired_at: timestamp_opt(row.last_fired_at),
        next_fire_at: timestamp_opt(row.next_fire_at),
    })
}

fn event_to_proto(view: EventView) -> TriggerEvent {
    let row = view.row;
    TriggerEvent {
        id: row.id.to_string(),
        workspace: view.workspace,
        rule: view.rule,
        rule_id: row.rule_id.map(|id| id.to_string()).unwrap_or_default(),
        r#type: row.kind,
        outcome: row.outcome,
        reason: row.reason,
        nominal_time: timestamp_opt(row.nominal_at),
        description: row.description.to_string(),
        work_request_id: row
            .work_request_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        occurred_at: Some(timestamp(row.occurred_at)),
    }
}

fn fire_time_to_proto(t: FireTime) -> proto::FireTime {
    proto::FireTime {
        at: Some(timestamp(t.at)),
        local: t.local,
        note: t.note,
    }
}

#[tonic::async_trait]
impl TriggerService for TriggerApi {
    async fn create_trigger_rule(
        &self,
        request: Request<CreateTriggerRuleRequest>,
    ) -> Result<Response<TriggerRule>, Status> {
        let caller = identity(&request)?;
        let req = request.into_inner();
        let answer = async {
            let config = match req.config {
                Some(config) => config_from_proto(config.into())?,
                None => {
                    return Err(Error::InvalidArgument(
                        "config: is required; give schedule, artifact, completion or topic".into(),
                    ));
                }
            };
            let action = match req.action {
                Some(action) => action_from_proto(action)?,
                None => {
                    return Err(Error::InvalidArgument(
                        "action: is required; name the template a firing runs".into(),
                    ));
                }
            };
            let rule = rule_ref(&req.workspace, &req.name);
            rule_to_proto(
                self.triggers
                    .create(&caller, rule, config, action, req.paused)
                    .await?,
            )
        };
        respond(answer.await)
    }

    async fn get_trigger_rule(
        &self,
        request: Request<GetTriggerRuleRequest>,
    ) -> Result<Response<TriggerRule>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        let answer = async {
            let rule = rule_ref(&req.workspace, &req.name);
            rule_to_proto(self.triggers.get(&caller, &rule).await?)
        };
        respond(answer.await)
    }

    async fn list_trigger_rules(
        &self,
        request: Request<ListTriggerRulesRequest>,
    ) -> Result<Response<ListTriggerRulesResponse>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        let answer = async {
            let rules = self
                .triggers
                .list(&caller, &req.workspace, req.include_archived)
                .await?
                .into_iter()
                .map(rule_to_proto)
                .collect::<Result<Vec<_>>>()?;
            Ok(ListTriggerRulesResponse { rules })
        };
        respond(answer.await)
    }

    async fn update_trigger_rule(
        &self,
        request: Request<UpdateTriggerRuleRequest>,
    ) -> Result<Response<TriggerRule>, Status> {
        let caller = identity(&request)?;
        let req = request.into_inner();
        let answer = async {
            let change = RuleChange {
                config: req
                    .config
                    .map(|c| config_from_proto(c.into()))
                    .transpose()?,
                action: req.action.map(action_from_proto).transpose()?,
            };
            let rule = rule_ref(&req.workspace, &req.name);
            rule_to_proto(self.triggers.update(&caller, &rule, change).await?)
        };
        respond(answer.await)
    }

    async fn pause_trigger_rule(
        &self,
        request: Request<PauseTriggerRuleRequest>,
    ) -> Result<Response<TriggerRule>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        let answer = async {
            let rule = rule_ref(&req.workspace, &req.name);
            rule_to_proto(self.triggers.pause(&caller, &rule, &req.note).await?)
        };
        respond(answer.await)
    }

    async fn resume_trigger_rule(
        &self,
        request: Request<ResumeTriggerRuleRequest>,
    ) -> Result<Response<TriggerRule>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        let answer = async {
            let rule = rule_ref(&req.workspace, &req.name);
            rule_to_proto(self.triggers.resume(&caller, &rule).await?)
        };
        respond(answer.await)
    }

    async fn archive_trigger_rule(
        &self,
        request: Request<ArchiveTriggerRuleRequest>,
    ) -> Result<Response<TriggerRule>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        let answer = async {
            let rule = rule_ref(&req.workspace, &req.name);
            rule_to_proto(self.triggers.archive(&caller, &rule).await?)
        };
        respond(answer.await)
    }

    async fn fire_trigger_rule(
        &self,
        request: Request<FireTriggerRuleRequest>,
    ) -> Result<Response<TriggerEvent>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        let answer = async {
            let rule = rule_ref(&req.workspace, &req.name);
            Ok(event_to_proto(
                self.triggers.fire_now(&caller, &rule).await?,
            ))
        };
        respond(answer.await)
    }

    async fn list_trigger_events(
        &self,
        request: Request<ListTriggerEventsRequest>,
    ) -> Result<Response<ListTriggerEventsResponse>, Status> {
        let caller = identity(&request)?;
        let req = request.into_inner();
        let answer = async {
            let query = EventQuery {
                since: req
                    .since
                    .as_ref()
                    .map(|t| time_from_proto("since", t))
                    .transpose()?,
                outcomes: outcomes_from_proto(&req.outcomes)?,
                workspace: req.workspace,
                rule: req.rule,
                limit: req.limit,
                page_token: req.page_token,
            };
            let page = self.triggers.list_events(&caller, query).await?;
            Ok(ListTriggerEventsResponse {
                events: page.events.into_iter().map(event_to_proto).collect(),
                next_page_token: page.next_page_token,
            })
        };
        respond(answer.await)
    }

    async fn preview_trigger_schedule(
        &self,
        request: Request<PreviewTriggerScheduleRequest>,
    ) -> Result<Response<PreviewTriggerScheduleResponse>, Status> {
        let caller = identity(&request)?;
        let req = request.into_inner();
        let answer = async {
            let of = if !req.name.is_empty() {
                PreviewOf::Rule(rule_ref(&req.workspace, &req.name))
            } else {
                match req.schedule {
                    Some(schedule) => PreviewOf::Schedule {
                        workspace: req.workspace,
                        input: schedule_from_proto(schedule)?,
                    },
                    None => {
                        return Err(Error::InvalidArgument(
                            "schedule: is required when no rule name is given; name a stored schedule rule or give a schedule".into(),
                        ));
                    }
                }
            };
            let (times, time_zone) = self.triggers.preview(&caller, of, req.count).await?;
            Ok(PreviewTriggerScheduleResponse {
                times: times.into_iter().map(fire_time_to_proto).collect(),
                time_zone,
            })
        };
        respond(answer.await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(result: Result<impl std::fmt::Debug>) -> String {
        match result {
            Err(Error::InvalidArgument(m)) => m,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn unknown_enum_numbers_are_refused_naming_the_field() {
        assert!(invalid(overlap_from_proto(99)).starts_with("schedule.overlap:"));
        assert!(invalid(catchup_from_proto(-1)).starts_with("schedule.catchup:"));
        assert_eq!(overlap_from_proto(0).expect("should succeed"), None);
        assert_eq!(
            overlap_from_proto(proto::OverlapPolicy::BufferOne as i32).expect("should succeed"),
            Some(Overlap::BufferOne)
        );
    }

    #[test]
    fn a_negative_catchup_window_is_refused() {
        let negative = prost_types::Duration {
            seconds: -1,
            nanos: 0,
        };
        assert!(invalid(window_from_proto(&negative)).starts_with("schedule.catchup_window:"));
        let five_minutes = prost_types::Duration {
            seconds: 300,
            nanos: 0,
        };
        assert_eq!(
            window_from_proto(&five_minutes).expect("should succeed"),
            std::time::Duration::from_secs(300)
        );
    }

    #[test]
    fn unknown_outcomes_are_refused_with_their_index() {
        let m = invalid(outcomes_from_proto(&["fired".into(), "exploded".into()]));
        assert!(m.starts_with("outcomes[1]:"), "{m}");
        assert_eq!(
            outcomes_from_proto(&["missed".into()]).expect("should succeed"),
            vec![Outcome::Missed]
        );
    }

    #[test]
    fn schedules_go_back_with_their_policies() {
        let stored = ScheduleConfig {
            cron: "0 3 * * *".into(),
            time_zone: "Europe/Berlin".into(),
            interval: String::new(),
            interval_ms: 0,
            anchor: None,
            overlap: Overlap::CancelPrevious,
            catchup_window_ms: 90_000,
            catchup: Catchup::All,
        };
        let wire = schedule_to_proto(stored);
        assert_eq!(wire.overlap, proto::OverlapPolicy::CancelPrevious as i32);
        assert_eq!(wire.catchup, proto::CatchupPolicy::All as i32);
        assert_eq!(wire.catchup_window.expect("should succeed").seconds, 90);
    }
}
