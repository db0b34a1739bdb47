//! The registry of rule types: which module checks a configuration of each type, and
//! what a rule of each type needs when it is made, changed or resumed.
//!
//! A new type is a module with a `check` (and, for types that fire on time, the
//! schedule's arithmetic) and one arm in each function here.

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::triggers::schedule::ScheduleConfig;
use crate::triggers::store::RuleRow;
use crate::triggers::topic::TopicConfig;
use crate::triggers::{ConfigInput, Maker, RuleKind, artifact, completion, schedule, topic};

/// Checks the configuration of new rule `rule_id` made by `maker` at `now` and returns
/// it as stored; a topic rule's subscription is opened, in the caller's transaction.
/// INVALID_ARGUMENT names the field (`schedule.cron`, `artifact.all_of[0].path`…).
pub async fn check(
    conn: &mut AsyncPgConnection,
    maker: Maker<'_>,
    rule_id: Uuid,
    now: DateTime<Utc>,
    input: &ConfigInput,
) -> Result<serde_json::Value> {
    let workspace_id = maker.standing.workspace.id;
    let stored = match input {
        ConfigInput::Schedule(s) => to_value(&schedule::check(s, now)?)?,
        ConfigInput::Artifact(a) => to_value(&artifact::check(a)?)?,
        ConfigInput::Completion(c) => to_value(&completion::check(conn, workspace_id, c).await?)?,
        ConfigInput::Topic(t) => to_value(&topic::open(conn, maker, rule_id, t, None).await?)?,
    };
    Ok(stored)
}

/// Checks a change of `rule`'s configuration: it must be of the rule's type; what the
/// input leaves unset keeps the current value where the type allows it.
pub async fn check_change(
    conn: &mut AsyncPgConnection,
    maker: Maker<'_>,
    rule: &RuleRow,
    now: DateTime<Utc>,
    input: &ConfigInput,
) -> Result<serde_json::Value> {
    let kind = rule.kind()?;
    if input.kind() != kind {
        return Err(Error::InvalidArgument(format!(
            "config: rule {} is a {kind} rule; a {} configuration cannot replace its own (make a new rule)",
            rule.name,
            input.kind()
        )));
    }
    match input {
        ConfigInput::Schedule(s) => {
            let current = ScheduleConfig::from_value(&rule.config)?;
            to_value(&schedule::merge(&current, s, now)?)
        }
        ConfigInput::Topic(t) => {
            let current = TopicConfig::from_value(&rule.config)?;
            to_value(&topic::open(conn, maker, rule.id, t, Some(&current)).await?)
        }
        _ => check(conn, maker, rule.id, now, input).await,
    }
}

/// What a rule of each type lets go of when it is archived, in the caller's transaction:
/// a topic rule's subscription.
pub async fn release(conn: &mut AsyncPgConnection, rule: &RuleRow) -> Result<()> {
    match rule.kind()? {
        RuleKind::Topic => topic::close(conn, &rule.config).await,
        RuleKind::Schedule | RuleKind::Artifact | RuleKind::Completion => Ok(()),
    }
}

/// A rule's next nominal time after `after`, by its type: schedule rules have one (or
/// `None` when the schedule has no further time), event rules never.
pub fn next_fire(
    kind: RuleKind,
    config: &serde_json::Value,
    after: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>> {
    match kind {
        RuleKind::Schedule => ScheduleConfig::from_value(config)?.next_after(after),
        RuleKind::Artifact | RuleKind::Completion | RuleKind::Topic => Ok(None),
    }
}

fn to_value<T: serde::Serialize>(config: &T) -> Result<serde_json::Value> {
    serde_json::to_value(config).map_err(Error::internal)
}
