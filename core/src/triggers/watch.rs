//! The pass over event rules: new completed artifacts, ended work requests and messages
//! of a topic rule's subscription that match a rule become its events.
//!
//! Each artifact and completion rule not archived (active or paused) is claimed in its
//! own transaction with `FOR UPDATE SKIP LOCKED`, so replicas share the rules and never
//! scan one at the same time. A scan looks at causes completed since the rule's cursor,
//! `watch_from`, less a look-back of [`LOOK_BACK`] (never before the rule was made): a
//! transaction that completed an artifact or ended a request commits a little after the
//! time it wrote, and may not have been visible to the previous scan. A cause seen twice
//! is harmless: its event's unique key (`artifact:<id>`, `request:<id>`) lets only one
//! in, and the scan leaves out causes the rule already has an event for.
//!
//! - Artifact rules: artifacts of the workspace with the category, complete and alive,
//!   oldest first; those whose data match ([`ArtifactConfig::matches`]) become events.
//!   The predicate is decided here, not in SQL, so the scan pages through the window
//!   ([`PAGE`] rows a page, at most [`PAGES`] pages a pass).
//! - Completion rules: requests of the workspace that ended as the rule wants
//!   ([`EndedAs`]), from its template and/or carrying its labels among their
//!   requirements, all decided in SQL.
//! - Topic rules: no cursor and no scan. The rule's own subscription holds what it has
//!   not taken yet; the pass takes up to [`PAGE`] messages at a time (locked
//!   `FOR UPDATE SKIP LOCKED` by the topics room), stores an event per message it wants
//!   (dedupe `message:<topic>:<message id>`, the message kept on the event for the run)
//!   and acks them all in the rule's transaction: a message is acked exactly when its
//!   event is stored, so none is lost and none fires twice.
//!
//! No kind of rule feeds itself: a request the rule's own firing made (or a step of one)
//! and what it produced are left out, so a rule whose run ends the way it watches for,
//! or makes the artifact it watches for, does not fire again and again. Nor through
//! other rules: every event records the chain of rules whose firings led to its cause
//! (`cause_rules`, read with the migration's `berth_cause`), and a cause whose chain
//! names the rule is passed over, so a cycle of rules (of any types) stops after one
//! turn; a topic rule does the same with the chain a system event carries (see
//! [`super::topic`]).
//!
//! A matching cause becomes a `pending` event (a `paused` one while the rule is paused),
//! the cursor moves to the newest completion seen — to the pass's start when the scan
//! saw everything, so the window stays a look-back long however long nothing matches —
//! and never backwards; the transaction commits, then each new pending event is settled
//! ([`settle::settle`]). A crash in between leaves them to the next settle pass.
//!
//! What it must not touch: artifacts and requests (it reads them), other rules' rows,
//! events other than the ones it inserts.

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::prelude::*;
use diesel::sql_types::{Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::artifacts::live::ALIVE_SQL;
use crate::error::{Error, Result};
use crate::store::schema::trigger_rules;
use crate::topics;
use crate::triggers::artifact::ArtifactConfig;
use crate::triggers::completion::{CompletionConfig, EndedAs};
use crate::triggers::store::{self, NewEvent, RuleRow};
use crate::triggers::topic::{self, TopicConfig};
use crate::triggers::{Outcome, RuleKind, Triggers, settle};
use crate::work::state::{Reason, Status, WorkResult};

/// How far before a rule's cursor a scan starts.
pub const LOOK_BACK: chrono::Duration = chrono::Duration::minutes(1);
/// Rows a scan reads at once.
const PAGE: usize = 500;
/// Pages an artifact rule's scan reads in one pass at most.
const PAGES: usize = 10;

/// One pass over the active and paused event rules. Returns how many events it stored.
pub async fn pass(triggers: &Triggers) -> Result<usize> {
    let mut conn = triggers.pool.get().await?;
    let rules: Vec<Uuid> = trigger_rules::table
        .filter(trigger_rules::archived_at.is_null())
        .filter(trigger_rules::kind.eq_any([
            RuleKind::Artifact.as_str(),
            RuleKind::Completion.as_str(),
            RuleKind::Topic.as_str(),
        ]))
        .order(trigger_rules::id)
        .select(trigger_rules::id)
        .load(&mut conn)
        .await?;
    let mut stored = 0;
    let mut pending = Vec::new();
    for rule in rules {
        match conn
            .transaction::<_, Error, _>(async |conn| watch_one(conn, rule).await)
            .await
        {
            Ok(found) => {
                stored += found.stored;
                pending.extend(found.pending);
            }
            Err(e @ Error::Database(_)) => return Err(e),
            Err(e) => {
                tracing::warn!(rule = %rule, error = %e, "triggers: scanning an event rule failed; trying again next pass");
            }
        }
    }
    drop(conn);
    for event in pending {
        if let Err(e) = settle::settle(triggers, event).await {
            tracing::warn!(event = %event, error = %e, "triggers: settling a new event failed; the next settle pass tries again");
        }
    }
    Ok(stored)
}

/// What one rule's scan stored.
#[derive(Debug, Default)]
struct Found {
    stored: usize,
    /// The new `pending` events, to settle once committed.
    pending: Vec<Uuid>,
}

/// Scans one rule, if no other replica holds it, in the caller's transaction.
async fn watch_one(conn: &mut AsyncPgConnection, id: Uuid) -> Result<Found> {
    let rule: Option<RuleRow> = trigger_rules::table
        .find(id)
        .filter(trigger_rules::archived_at.is_null())
        .select(RuleRow::as_select())
        .for_update()
        .skip_locked()
        .first(conn)
        .await
        .optional()?;
    let Some(rule) = rule else {
        return Ok(Found::default());
    };
    let now: DateTime<Utc> = diesel::select(diesel::dsl::sql::<Timestamptz>("now()"))
        .get_result(conn)
        .await?;
    let start = rule.created_at.max(rule.watch_from - LOOK_BACK);
    let (causes, newest, complete) = match rule.kind()? {
        RuleKind::Artifact => {
            let config = ArtifactConfig::from_value(&rule.config)?;
            scan_artifacts(conn, &rule, &config, start).await?
        }
        RuleKind::Completion => {
            let config = CompletionConfig::from_value(&rule.config)?;
            scan_completions(conn, &rule, &config, start).await?
        }
        RuleKind::Topic => {
            let config = TopicConfig::from_value(&rule.config)?;
            return take_messages(conn, &rule, &config).await;
        }
        RuleKind::Schedule => return Ok(Found::default()),
    };
    let mut found = Found::default();
    for (dedupe, description) in causes {
        let event = new_event(&rule, dedupe, description);
        if store::insert_event(conn, &event).await? {
            found.stored += 1;
            if event.outcome == Outcome::Pending.as_str() {
                found.pending.push(event.id);
            }
        }
    }
    let mut cursor = rule.watch_from;
    if let Some(newest) = newest {
        cursor = cursor.max(newest);
    }
    if complete {
        cursor = cursor.max(now);
    }
    if cursor > rule.watch_from {
        diesel::update(trigger_rules::table.find(rule.id))
            .set(trigger_rules::watch_from.eq(cursor))
            .execute(conn)
            .await?;
    }
    Ok(found)
}

/// The event of a cause: `pending` (its work to be made), or `paused` with why.
fn new_event(rule: &RuleRow, dedupe: String, description: serde_json::Value) -> NewEvent {
    let mut event = if rule.active {
        NewEvent::of_rule(rule, Outcome::Pending, dedupe, String::new())
    } else {
        let reason = if rule.pause_note.is_empty() {
            format!("rule {} is paused", rule.name)
        } else {
            format!("rule {} is paused: {}", rule.name, rule.pause_note)
        };
        NewEvent::of_rule(rule, Outcome::Paused, dedupe, reason)
    };
    event.description = description;
    event
}

/// Takes a topic rule's messages from its subscription and, in the caller's
/// transaction, stores an event for each it wants and acks them all (at most
/// [`PAGES`] × [`PAGE`] a pass). A message the rule's own firings caused, or of a type it
/// does not want, is acked without an event. A subscription that is gone (its topic was
/// deleted) is one `error` event, once.
async fn take_messages(
    conn: &mut AsyncPgConnection,
    rule: &RuleRow,
    config: &TopicConfig,
) -> Result<Found> {
    let mut found = Found::default();
    let Some(subscription) = config.subscription_id else {
        return Ok(found);
    };
    let own = rule.id.to_string();
    for _ in 0..PAGES {
        let messages = match topics::take_internal(conn, subscription, PAGE as i64).await {
            Ok(messages) => messages,
            Err(Error::NotFound(m)) => {
                let mut event = NewEvent::of_rule(
                    rule,
                    Outcome::Error,
                    format!("subscription-gone:{subscription}"),
                    format!(
                        "topic {} or the rule's subscription on it no longer exists ({m}); make the topic again and set the rule's topic again, or archive the rule",
                        config.topic
                    ),
                );
                event.description = serde_json::json!({"topic": config.topic});
                if store::insert_event(conn, &event).await? {
                    found.stored += 1;
                }
                return Ok(found);
            }
            Err(e) => return Err(e),
        };
        let full = messages.len() == PAGE;
        let mut seqs = Vec::with_capacity(messages.len());
        for message in messages {
            seqs.push(message.seq);
            if !config.wants(&message.content) {
                continue;
            }
            let rules = topic::cause_rules(&message.content);
            if rules.contains(&own) {
                tracing::debug!(rule = %rule.id, message = %message.message_id,
                    "triggers: a message caused by the rule's own firings passed over");
                continue;
            }
            let mut description = serde_json::json!({
                "topic": config.topic,
                "message_id": message.message_id.to_string(),
                "seq": message.seq,
                "producer": message.producer,
                "published_at": message.published_at,
                "cause_rules": rules,
            });
            for key in ["type", "object_id"] {
                if let Some(value) = message.content.get(key)
                    && let Some(object) = description.as_object_mut()
                {
                    object.insert(key.to_owned(), value.clone());
                }
            }
            let mut event = new_event(
                rule,
                format!("message:{}:{}", config.topic, message.message_id),
                description,
            );
            event.message = Some(serde_json::json!({
                "content": message.content,
                "properties": message.properties,
                "context": message.context,
                "producer": message.producer,
            }));
            if store::insert_event(conn, &event).await? {
                found.stored += 1;
                if event.outcome == Outcome::Pending.as_str() {
                    found.pending.push(event.id);
                }
            }
        }
        topics::accept_internal(conn, subscription, &seqs).await?;
        if !full {
            break;
        }
    }
    Ok(found)
}

/// Causes found: (dedupe, description) of each, the newest completion time seen, and
/// whether the scan saw everything up to now.
type Scan = (
    Vec<(String, serde_json::Value)>,
    Option<DateTime<Utc>>,
    bool,
);

#[derive(QueryableByName)]
struct ArtifactSeen {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Jsonb)]
    data: serde_json::Value,
    #[diesel(sql_type = Timestamptz)]
    completed_at: DateTime<Utc>,
    #[diesel(sql_type = Jsonb)]
    cause_rules: serde_json::Value,
}

/// Completed, live artifacts of the rule's workspace and category after the keyset
/// (`completed_at`, `id`), that the rule has no event for and its own firings did not
/// make, oldest first.
fn artifacts_sql() -> String {
    format!(
        "SELECT artifacts.id, artifacts.data, artifacts.completed_at, \
           coalesce(berth_cause(artifacts.work_request_id, \
             (SELECT r.parent_id FROM work_requests r WHERE r.id = artifacts.work_request_id)) \
             -> 'rules', '[]'::jsonb) AS cause_rules \
         FROM artifacts \
         WHERE artifacts.workspace_id = $1 AND artifacts.category = $2 AND artifacts.complete \
           AND artifacts.completed_at IS NOT NULL \
           AND (artifacts.completed_at, artifacts.id) > ($3, $4) \
           AND NOT EXISTS (SELECT 1 FROM trigger_events e \
                           WHERE e.rule_id = $5 AND e.dedupe = 'artifact:' || artifacts.id::text) \
           AND NOT EXISTS (SELECT 1 FROM work_requests wr \
                           JOIN trigger_events e ON e.rule_id = $5 \
                                AND e.work_request_id IN (wr.id, wr.parent_id) \
                           WHERE wr.id = artifacts.work_request_id) \
           AND {ALIVE_SQL} \
         ORDER BY artifacts.completed_at, artifacts.id \
         LIMIT {PAGE}"
    )
}

async fn scan_artifacts(
    conn: &mut AsyncPgConnection,
    rule: &RuleRow,
    config: &ArtifactConfig,
    start: DateTime<Utc>,
) -> Result<Scan> {
    let sql = artifacts_sql();
    let mut causes = Vec::new();
    let mut newest = None;
    // The nil id sorts before every other: the first page starts at `start` itself.
    let mut after = (start, Uuid::nil());
    for _ in 0..PAGES {
        let page: Vec<ArtifactSeen> = diesel::sql_query(&sql)
            .bind::<SqlUuid, _>(rule.workspace_id)
            .bind::<Text, _>(&config.category)
            .bind::<Timestamptz, _>(after.0)
            .bind::<SqlUuid, _>(after.1)
            .bind::<SqlUuid, _>(rule.id)
            .load(conn)
            .await?;
        let full = page.len() == PAGE;
        for seen in page {
            after = (seen.completed_at, seen.id);
            newest = Some(seen.completed_at);
            if config.matches(&seen.data) && !caused_by(&seen.cause_rules, rule.id) {
                causes.push((
                    format!("artifact:{}", seen.id),
                    serde_json::json!({
                        "artifact": seen.id.to_string(),
                        "category": config.category,
                        "cause_rules": seen.cause_rules,
                    }),
                ));
            }
        }
        if !full {
            return Ok((causes, newest, true));
        }
    }
    Ok((causes, newest, false))
}

#[derive(QueryableByName)]
struct RequestSeen {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    status: Status,
    #[diesel(sql_type = Nullable<Text>)]
    result: Option<WorkResult>,
    #[diesel(sql_type = Text)]
    reason: Reason,
    #[diesel(sql_type = Timestamptz)]
    completed_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Text>)]
    template: Option<String>,
    #[diesel(sql_type = Jsonb)]
    cause_rules: serde_json::Value,
}

/// Whether `rules` (the chain of rules whose firings led to a cause, as JSON) names
/// `rule`: then the cause is of the rule's own making, through other rules.
fn caused_by(rules: &serde_json::Value, rule: Uuid) -> bool {
    let rule = rule.to_string();
    rules
        .as_array()
        .is_some_and(|rules| rules.iter().any(|r| r.as_str() == Some(rule.as_str())))
}

/// Requests of the rule's workspace that ended from `start` on as one of `results`
/// wants, from the template (`$3`, NULL for any) and carrying the labels (`$4`), that
/// the rule has no event for and did not make itself (nor their workflow parent).
fn completions_sql(results: &[EndedAs]) -> String {
    let wanted = results
        .iter()
        .map(|r| r.sql_condition())
        .collect::<Vec<_>>()
        .join(" OR ");
    format!(
        "SELECT wr.id, wr.status, wr.result, wr.reason, wr.completed_at, t.name AS template, \
           coalesce(berth_cause(wr.id, wr.parent_id) -> 'rules', '[]'::jsonb) AS cause_rules \
         FROM work_requests wr LEFT JOIN templates t ON t.id = wr.template_id \
         WHERE wr.workspace_id = $1 AND wr.completed_at IS NOT NULL AND wr.completed_at >= $2 \
           AND ($3::uuid IS NULL OR wr.template_id = $3) \
           AND wr.requirements @> $4 \
           AND ({wanted}) \
           AND NOT EXISTS (SELECT 1 FROM trigger_events e \
                           WHERE e.rule_id = $5 AND e.dedupe = 'request:' || wr.id::text) \
           AND NOT EXISTS (SELECT 1 FROM trigger_events e \
                           WHERE e.rule_id = $5 AND e.work_request_id IN (wr.id, wr.parent_id)) \
         ORDER BY wr.completed_at, wr.id \
         LIMIT {PAGE}"
    )
}

async fn scan_completions(
    conn: &mut AsyncPgConnection,
    rule: &RuleRow,
    config: &CompletionConfig,
    start: DateTime<Utc>,
) -> Result<Scan> {
    let results: Vec<EndedAs> = config
        .results
        .iter()
        .map(|r| {
            EndedAs::parse(r).ok_or_else(|| {
                Error::internal(format!("rule {} stores an unknown result {r:?}", rule.id))
            })
        })
        .collect::<Result<_>>()?;
    if results.is_empty() {
        return Ok((Vec::new(), None, true));
    }
    let labels = serde_json::to_value(&config.labels).map_err(Error::internal)?;
    let rows: Vec<RequestSeen> = diesel::sql_query(completions_sql(&results))
        .bind::<SqlUuid, _>(rule.workspace_id)
        .bind::<Timestamptz, _>(start)
        .bind::<Nullable<SqlUuid>, _>(config.template_id)
        .bind::<Jsonb, _>(labels)
        .bind::<SqlUuid, _>(rule.id)
        .load(conn)
        .await?;
    let complete = rows.len() < PAGE;
    let newest = rows.last().map(|r| r.completed_at);
    let causes = rows
        .into_iter()
        .filter(|seen| !caused_by(&seen.cause_rules, rule.id))
        .map(|seen| {
            let result =
                EndedAs::of(seen.status, seen.result, seen.reason).map_or("", EndedAs::as_str);
            (
                format!("request:{}", seen.id),
                serde_json::json!({
                    "request": seen.id.to_string(),
                    "result": result,
                    "template": seen.template.unwrap_or_default(),
                    "cause_rules": seen.cause_rules,
                }),
            )
        })
        .collect();
    Ok((causes, newest, complete))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_completion_scan_asks_for_the_wanted_endings_only() {
        let sql = completions_sql(&[EndedAs::Failure, EndedAs::Cancelled]);
        assert!(sql.contains(
            "AND ((wr.status = 'completed' AND wr.result = 'failure') OR (wr.status = 'aborted' AND wr.reason = 'cancelled'))"
        ), "{sql}");
        assert!(!sql.contains("'success'"), "{sql}");
    }

    #[test]
    fn a_cause_whose_chain_names_the_rule_is_its_own() {
        let rule = Uuid::from_u128(3);
        assert!(caused_by(
            &serde_json::json!([Uuid::from_u128(1).to_string(), rule.to_string()]),
            rule
        ));
        assert!(!caused_by(
            &serde_json::json!([Uuid::from_u128(1).to_string()]),
            rule
        ));
        assert!(!caused_by(&serde_json::json!([]), rule));
        assert!(!caused_by(&serde_json::Value::Null, rule));
    }

    #[test]
    fn the_artifact_scan_keeps_to_live_artifacts() {
        assert!(artifacts_sql().contains(ALIVE_SQL));
    }
}
