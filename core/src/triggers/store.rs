//! Rule and event rows, the one insert of events, and the pass clock.
//!
//! Every event is stored through [`insert_event`], whose `ON CONFLICT DO NOTHING` on
//! (rule, `dedupe`) is what makes a rule fire once per nominal time, artifact or ended
//! request across replicas: only the caller whose row went in may make the work.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::store::schema::{trigger_clock, trigger_events, trigger_rules};
use crate::triggers::{Outcome, RuleKind};

/// A rule row.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = trigger_rules)]
pub struct RuleRow {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub name: String,
    /// A [`RuleKind`] as text.
    pub kind: String,
    /// The type's configuration as its handler stored it.
    pub config: serde_json::Value,
    pub template_id: Uuid,
    /// A [`crate::triggers::StoredAction`] as JSON.
    pub action: serde_json::Value,
    /// Secret override values, sealed.
    pub action_secrets: Option<Vec<u8>>,
    pub active: bool,
    /// Why it was paused ('' when active or not said).
    pub pause_note: String,
    pub archived_at: Option<DateTime<Utc>>,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub modified_at: DateTime<Utc>,
    pub last_fired_at: Option<DateTime<Utc>>,
    /// Schedule rules not archived: the next nominal time.
    pub next_fire_at: Option<DateTime<Utc>>,
    /// `buffer-one`: the nominal time waiting for the previous run.
    pub buffered_at: Option<DateTime<Utc>>,
    /// Event rules: where the scan of new artifacts or ended requests starts.
    pub watch_from: DateTime<Utc>,
}

impl RuleRow {
    /// Its type (a stored type is always one of them).
    pub fn kind(&self) -> Result<RuleKind> {
        RuleKind::parse(&self.kind).ok_or_else(|| {
            Error::internal(format!("rule {} has unknown type {:?}", self.id, self.kind))
        })
    }
}

/// A new rule.
#[derive(Clone, Debug, Insertable)]
#[diesel(table_name = trigger_rules)]
pub struct NewRule {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub name: String,
    pub kind: String,
    pub config: serde_json::Value,
    pub template_id: Uuid,
    pub action: serde_json::Value,
    pub action_secrets: Option<Vec<u8>>,
    pub active: bool,
    pub created_by: Uuid,
    pub next_fire_at: Option<DateTime<Utc>>,
}

/// An event row.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = trigger_events)]
pub struct EventRow {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub rule_id: Option<Uuid>,
    /// The rule's type, or `manual`.
    pub kind: String,
    /// An [`Outcome`] as text.
    pub outcome: String,
    pub reason: String,
    pub nominal_at: Option<DateTime<Utc>>,
    pub dedupe: String,
    pub description: serde_json::Value,
    pub run_as: Option<Uuid>,
    /// Reserved while `pending`; the request made once `fired`.
    pub work_request_id: Option<Uuid>,
    pub occurred_at: DateTime<Utc>,
    pub settled_at: Option<DateTime<Utc>>,
    /// Topic rules: the message it fired on (`content`, `properties`, `context`,
    /// `producer`), for the run; never listed with the event.
    pub message: Option<serde_json::Value>,
}

impl EventRow {
    /// Its outcome (a stored outcome is always one of them).
    pub fn outcome(&self) -> Result<Outcome> {
        Outcome::parse(&self.outcome).ok_or_else(|| {
            Error::internal(format!(
                "event {} has unknown outcome {:?}",
                self.id, self.outcome
            ))
        })
    }
}

/// A new event; see [`insert_event`].
#[derive(Clone, Debug, Insertable)]
#[diesel(table_name = trigger_events)]
pub struct NewEvent {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub rule_id: Option<Uuid>,
    pub kind: String,
    pub outcome: String,
    pub reason: String,
    pub nominal_at: Option<DateTime<Utc>>,
    pub dedupe: String,
    pub description: serde_json::Value,
    pub run_as: Option<Uuid>,
    pub work_request_id: Option<Uuid>,
    pub message: Option<serde_json::Value>,
}

impl NewEvent {
    /// An event of `rule` with `outcome`: a new id, and for `pending` a reserved request
    /// id (the rule's creator is who the work is for).
    pub fn of_rule(rule: &RuleRow, outcome: Outcome, dedupe: String, reason: String) -> Self {
        NewEvent {
            id: Uuid::now_v7(),
            workspace_id: rule.workspace_id,
            rule_id: Some(rule.id),
            kind: rule.kind.clone(),
            outcome: outcome.as_str().to_owned(),
            reason,
            nominal_at: None,
            dedupe,
            description: serde_json::json!({}),
            run_as: Some(rule.created_by),
            work_request_id: (outcome == Outcome::Pending).then(Uuid::new_v4),
            message: None,
        }
    }
}

/// The dedupe key of a nominal time: `at:` and the time in UTC, to the microsecond.
pub fn at_key(nominal: DateTime<Utc>) -> String {
    format!(
        "at:{}",
        nominal.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    )
}

/// Stores `event` unless its rule already has one with its `dedupe`; returns whether it
/// went in. Only a caller that got `true` may make the work.
pub async fn insert_event(conn: &mut AsyncPgConnection, event: &NewEvent) -> Result<bool> {
    let inserted = diesel::insert_into(trigger_events::table)
        .values(event)
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    // A pending event is counted when it settles, a buffered one when it runs or is
    // replaced.
    if inserted == 1
        && let Some(outcome) = super::Outcome::parse(&event.outcome)
        && !matches!(outcome, super::Outcome::Pending | super::Outcome::Buffered)
    {
        crate::observe::trigger_fire(outcome.as_str());
    }
    Ok(inserted == 1)
}

/// Marks the pass clock with the database's `now()` and returns the previous mark
/// (`None` on the first pass ever) and now, both on the database's clock.
pub async fn tick_clock(
    conn: &mut AsyncPgConnection,
) -> Result<(Option<DateTime<Utc>>, DateTime<Utc>)> {
    let now: DateTime<Utc> =
        diesel::select(diesel::dsl::sql::<diesel::sql_types::Timestamptz>("now()"))
            .get_result(conn)
            .await?;
    let previous: Option<DateTime<Utc>> = trigger_clock::table
        .find(1)
        .select(trigger_clock::last_pass_at)
        .for_update()
        .first(conn)
        .await
        .optional()?;
    diesel::insert_into(trigger_clock::table)
        .values((trigger_clock::id.eq(1), trigger_clock::last_pass_at.eq(now)))
        .on_conflict(trigger_clock::id)
        .do_update()
        .set(trigger_clock::last_pass_at.eq(now))
        .execute(conn)
        .await?;
    Ok((previous, now))
}
