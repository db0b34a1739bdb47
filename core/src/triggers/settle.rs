//! Pending events to work: each `pending` event's request is made under its reserved
//! id through the templates' run, and the event marked `fired` or `error`.
//!
//! **Why a firing is made once, whatever crashes.** An event that makes work was stored
//! `pending` with the id its request will have (`work_request_id`), in the transaction
//! that decided it fires. Settling it:
//! 1. locks the event row (`FOR UPDATE SKIP LOCKED`), so no other replica settles it
//!    meanwhile, and keeps the lock until the event is marked;
//! 2. if a request with the reserved id exists, it was made by an earlier settle that
//!    died before marking: the event is only marked `fired`;
//! 3. otherwise it runs the rule's template through [`Templates::run`](crate::templates::Templates::run)
//!    with `RunInput.id` = the reserved id (on another pool connection: the submission
//!    commits on its own, while the lock keeps other replicas off the event), and marks
//!    the event `fired`, or `error` with the reason the request could not be made. A
//!    second submission of the same id is ALREADY_EXISTS, the last guard.
//!
//! A crash before step 3 commits leaves the event `pending` and unlocked; the next pass
//! of any replica settles it, meeting the request if it was made. Failures that may pass
//! (the database away, an internal error) leave the event `pending` too, for the next
//! pass; failures that need someone to change something (a disabled creator, an
//! archived template, a bad override) end it as `error` with a reason naming what to fix,
//! never a secret value.
//!
//! What the run learns of its cause: job templates get env `BERTH_TRIGGER_RULE`,
//! `BERTH_TRIGGER_EVENT`, `BERTH_TRIGGER_TYPE` and, by cause,
//! `BERTH_TRIGGER_NOMINAL_TIME` (schedule, RFC 3339 UTC), `BERTH_TRIGGER_ARTIFACT` with
//! the artifact mounted at `trigger` (artifact), or `BERTH_TRIGGER_REQUEST` and
//! `BERTH_TRIGGER_RESULT` with the ended request's completed outputs mounted at
//! `trigger/<artifact id>` (completion), or `BERTH_TRIGGER_TOPIC`,
//! `BERTH_TRIGGER_MESSAGE_ID`, `BERTH_TRIGGER_MESSAGE` (the content as JSON, when it is
//! at most 16 KiB) and `BERTH_TRIGGER_MESSAGE_PROPERTIES` (a JSON object, when there are
//! any) (topic). Workflow templates take no env or inputs: they get the same values as
//! the parameters `trigger_rule`, `trigger_event`, `trigger_type`, `trigger_time`,
//! `trigger_artifact`, `trigger_request`, `trigger_result`, `trigger_topic`,
//! `trigger_message_id`, `trigger_message` and `trigger_message_properties`, each only
//! when the template's release declares it (a run refuses parameters it does not
//! declare). A message's content reaches the run's env, which viewers of the workspace
//! can read with the request.
//!
//! What it must not touch: request rows (it reads whether one exists; requests are made
//! by `Templates::run` only), rule rows (only their `last_fired_at`, after the events'
//! transaction, so it never waits on a rule's lock while holding an event's).

use std::collections::BTreeMap;
use std::time::Duration;

use berth_token::TokenKind;
use chrono::SecondsFormat;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::access::auth::Identity;
use crate::artifacts::live;
use crate::error::{Error, Result};
use crate::store::schema::{
    artifacts, templates, trigger_events, trigger_rules, users, work_requests, workspaces,
};
use crate::templates::TemplateRef;
use crate::templates::runs::{Overrides, RunInput};
use crate::templates::spec::ReleaseSpec;
use crate::templates::store::TemplateRow;
use crate::triggers::store::{EventRow, RuleRow};
use crate::triggers::{Outcome, StoredAction, Triggers};
use crate::work::ids::WorkRequestId;
use crate::work::spec::{InputInput, RawDuration};
use crate::work::state::Kind;

/// Events claimed per transaction of a pass.
const BATCH: i64 = 16;
/// How long [`settle`] waits for another replica settling the same event: this many
/// looks, [`WAIT_STEP`] apart (about 10 s).
const WAIT_LOOKS: u32 = 50;
const WAIT_STEP: Duration = Duration::from_millis(200);
/// At most this many outputs of an ended request are mounted into a completion run.
const MAX_OUTPUTS: i64 = 32;
/// The largest message content (as JSON text) a topic run gets in
/// `BERTH_TRIGGER_MESSAGE`; a larger one is left out (the run still gets the message id
/// to read it by). Requests take 64 KiB of env in all.
const MAX_MESSAGE_ENV: usize = 16 * 1024;

/// What settling one event came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Settled {
    /// Its request exists; the event is `fired`.
    Fired,
    /// The request cannot be made; the event is `error`.
    Refused,
    /// Left `pending`, to be tried again by a later pass.
    Left,
}

/// Settles every pending event no other replica is settling. Returns how many.
pub async fn pass(triggers: &Triggers) -> Result<usize> {
    let mut settled = 0;
    // Events left pending in this pass are not claimed again by it.
    let mut tried: Vec<Uuid> = Vec::new();
    loop {
        let mut conn = triggers.pool.get().await?;
        let exclude = tried.clone();
        let outcomes = conn
            .transaction::<_, Error, _>(async |conn| {
                let rows: Vec<EventRow> = trigger_events::table
                    .filter(trigger_events::outcome.eq(Outcome::Pending.as_str()))
                    .filter(trigger_events::id.ne_all(&exclude))
                    .order((trigger_events::occurred_at, trigger_events::id))
                    .limit(BATCH)
                    .select(EventRow::as_select())
                    .for_update()
                    .skip_locked()
                    .load(conn)
                    .await?;
                let mut outcomes = Vec::with_capacity(rows.len());
                for row in rows {
                    let settled = settle_locked(triggers, conn, &row).await?;
                    outcomes.push((row.id, row.rule_id, settled));
                }
                Ok(outcomes)
            })
            .await?;
        if outcomes.is_empty() {
            return Ok(settled);
        }
        let fired: Vec<Uuid> = outcomes
            .iter()
            .filter(|(_, _, s)| *s == Settled::Fired)
            .filter_map(|(_, rule, _)| *rule)
            .collect();
        mark_rules_fired(&mut conn, &fired).await?;
        settled += outcomes
            .iter()
            .filter(|(_, _, s)| *s != Settled::Left)
            .count();
        tried.extend(outcomes.iter().map(|(id, _, _)| *id));
    }
}

/// Settles one pending event now (a firing by hand waits for it) and returns it as it
/// is then; an event already settled is returned as it is.
pub async fn settle(triggers: &Triggers, event_id: Uuid) -> Result<EventRow> {
    let mut conn = triggers.pool.get().await?;
    for _ in 0..WAIT_LOOKS {
        let done = conn
            .transaction::<_, Error, _>(async |conn| {
                let locked: Option<EventRow> = trigger_events::table
                    .find(event_id)
                    .select(EventRow::as_select())
                    .for_update()
                    .skip_locked()
                    .first(conn)
                    .await
                    .optional()?;
                let Some(row) = locked else {
                    return Ok(None);
                };
                if row.outcome()? != Outcome::Pending {
                    return Ok(Some((row, Settled::Left)));
                }
                let settled = settle_locked(triggers, conn, &row).await?;
                Ok(Some((read_event(conn, event_id).await?, settled)))
            })
            .await?;
        if let Some((row, settled)) = done {
            if settled == Settled::Fired
                && let Some(rule) = row.rule_id
            {
                mark_rules_fired(&mut conn, &[rule]).await?;
            }
            return Ok(row);
        }
        // Locked: another replica is settling it (or it was just inserted by a
        // transaction that still holds it). Its outcome is what to return.
        let row = read_event(&mut conn, event_id).await?;
        if row.outcome()? != Outcome::Pending {
            return Ok(row);
        }
        tokio::time::sleep(WAIT_STEP).await;
    }
    read_event(&mut conn, event_id).await
}

async fn read_event(conn: &mut AsyncPgConnection, id: Uuid) -> Result<EventRow> {
    trigger_events::table
        .find(id)
        .select(EventRow::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("trigger event {id} does not exist")))
}

/// Settles `row`, a `pending` event whose row this transaction holds locked. Returns
/// an error only when its own statements fail (the transaction is then rolled back and
/// the event stays pending).
async fn settle_locked(
    triggers: &Triggers,
    conn: &mut AsyncPgConnection,
    row: &EventRow,
) -> Result<Settled> {
    let Some(request_id) = row.work_request_id else {
        refuse(
            conn,
            row,
            "the event was stored pending without a reserved request id, so no work can be made for it safely; fire the rule again".into(),
        )
        .await?;
        return Ok(Settled::Refused);
    };
    if request_exists(conn, request_id).await? {
        fired(conn, row).await?;
        tracing::info!(event = %row.id, work_request = %request_id, "trigger event: its request already existed; marked fired");
        return Ok(Settled::Fired);
    }
    let (identity, input) = match prepare(triggers, conn, row, request_id).await? {
        Ok(prepared) => prepared,
        Err(reason) => {
            refuse(conn, row, reason).await?;
            return Ok(Settled::Refused);
        }
    };
    match triggers.templates.run(&identity, input).await {
        Ok(_) => {
            fired(conn, row).await?;
            tracing::info!(event = %row.id, rule = ?row.rule_id, work_request = %request_id, "trigger event fired");
            Ok(Settled::Fired)
        }
        Err(Error::AlreadyExists(message)) => {
            if request_exists(conn, request_id).await? {
                fired(conn, row).await?;
                Ok(Settled::Fired)
            } else {
                refuse(conn, row, message).await?;
                Ok(Settled::Refused)
            }
        }
        Err(
            e @ (Error::Unavailable(_)
            | Error::Database(_)
            | Error::Internal(_)
            | Error::DeadlineExceeded(_)),
        ) => {
            tracing::warn!(event = %row.id, error = %e, "trigger event: its request could not be made now; trying again next pass");
            Ok(Settled::Left)
        }
        Err(e) => {
            tracing::info!(event = %row.id, error = %e, "trigger event: its request was refused");
            refuse(conn, row, e.to_string()).await?;
            Ok(Settled::Refused)
        }
    }
}

async fn request_exists(conn: &mut AsyncPgConnection, id: Uuid) -> Result<bool> {
    Ok(diesel::select(diesel::dsl::exists(
        work_requests::table.filter(work_requests::id.eq(id)),
    ))
    .get_result(conn)
    .await?)
}

async fn fired(conn: &mut AsyncPgConnection, row: &EventRow) -> Result<()> {
    diesel::update(trigger_events::table.find(row.id))
        .set((
            trigger_events::outcome.eq(Outcome::Fired.as_str()),
            trigger_events::settled_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    crate::observe::trigger_fire(Outcome::Fired.as_str());
    Ok(())
}

/// Ends `row` as `error` with `reason`. Its reserved id is let go: no request has it.
async fn refuse(conn: &mut AsyncPgConnection, row: &EventRow, reason: String) -> Result<()> {
    diesel::update(trigger_events::table.find(row.id))
        .set((
            trigger_events::outcome.eq(Outcome::Error.as_str()),
            trigger_events::reason.eq(reason),
            trigger_events::work_request_id.eq(None::<Uuid>),
            trigger_events::settled_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    crate::observe::trigger_fire(Outcome::Error.as_str());
    Ok(())
}

/// Sets the rules' `last_fired_at`, outside the events' transaction (see the module
/// docs). Never moves it backwards.
async fn mark_rules_fired(conn: &mut AsyncPgConnection, rules: &[Uuid]) -> Result<()> {
    if rules.is_empty() {
        return Ok(());
    }
    diesel::update(
        trigger_rules::table
            .filter(trigger_rules::id.eq_any(rules))
            .filter(
                trigger_rules::last_fired_at
                    .is_null()
                    .or(trigger_rules::last_fired_at.lt(diesel::dsl::now)),
            ),
    )
    .set(trigger_rules::last_fired_at.eq(diesel::dsl::now))
    .execute(conn)
    .await?;
    Ok(())
}

/// What caused an event, as its row says.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Cause {
    /// A schedule's nominal time, RFC 3339 in UTC.
    Schedule(String),
    /// A completed artifact.
    Artifact(String),
    /// An ended request and how it ended.
    Completion { request: String, result: String },
    /// A message on a topic: its content and properties as JSON text (`None` for the
    /// content when it is larger than [`MAX_MESSAGE_ENV`]).
    Message {
        topic: String,
        message_id: String,
        content: Option<String>,
        properties: String,
    },
    /// A firing by hand, or nothing known.
    Other,
}

impl Cause {
    fn of(row: &EventRow) -> Cause {
        let text = |key: &str| {
            row.description
                .get(key)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        if let Some(nominal) = row.nominal_at {
            return Cause::Schedule(nominal.to_rfc3339_opts(SecondsFormat::AutoSi, true));
        }
        if let Some(artifact) = text("artifact") {
            return Cause::Artifact(artifact);
        }
        if let Some(request) = text("request") {
            return Cause::Completion {
                request,
                result: text("result").unwrap_or_default(),
            };
        }
        if let Some(message_id) = text("message_id") {
            let part = |key: &str| row.message.as_ref().and_then(|m| m.get(key));
            let content = part("content")
                .map(|c| c.to_string())
                .filter(|c| c.len() <= MAX_MESSAGE_ENV);
            let properties = part("properties")
                .filter(|p| p.as_object().is_some_and(|o| !o.is_empty()))
                .map(|p| p.to_string())
                .unwrap_or_default();
            return Cause::Message {
                topic: text("topic").unwrap_or_default(),
                message_id,
                content,
                properties,
            };
        }
        Cause::Other
    }
}

/// The values a run learns of its firing, by parameter name (`trigger_rule`…); the env
/// variable of each is `BERTH_` and its name in capitals, but for `trigger_time`, whose
/// variable is `BERTH_TRIGGER_NOMINAL_TIME`.
fn trigger_values(rule: &RuleRow, row: &EventRow, cause: &Cause) -> BTreeMap<&'static str, String> {
    let mut values = BTreeMap::from([
        ("trigger_rule", rule.name.clone()),
        ("trigger_event", row.id.to_string()),
        ("trigger_type", row.kind.clone()),
    ]);
    match cause {
        Cause::Schedule(at) => {
            values.insert("trigger_time", at.clone());
        }
        Cause::Artifact(id) => {
            values.insert("trigger_artifact", id.clone());
        }
        Cause::Completion { request, result } => {
            values.insert("trigger_request", request.clone());
            values.insert("trigger_result", result.clone());
        }
        Cause::Message {
            topic,
            message_id,
            content,
            properties,
        } => {
            values.insert("trigger_topic", topic.clone());
            values.insert("trigger_message_id", message_id.clone());
            if let Some(content) = content {
                values.insert("trigger_message", content.clone());
            }
            if !properties.is_empty() {
                values.insert("trigger_message_properties", properties.clone());
            }
        }
        Cause::Other => {}
    }
    values
}

fn env_name(param: &str) -> String {
    match param {
        "trigger_time" => "BERTH_TRIGGER_NOMINAL_TIME".to_owned(),
        other => format!("BERTH_{}", other.to_ascii_uppercase()),
    }
}

/// Who the run is made for and what it runs; `Err(reason)` when it cannot be made
/// (the event becomes `error` with that reason). The outer error is the database's.
async fn prepare(
    triggers: &Triggers,
    conn: &mut AsyncPgConnection,
    row: &EventRow,
    request_id: Uuid,
) -> Result<std::result::Result<(Identity, RunInput), String>> {
    let Some(rule_id) = row.rule_id else {
        return Ok(Err(
            "the event belongs to no rule, so there is no template to run".into(),
        ));
    };
    let Some(rule) = trigger_rules::table
        .find(rule_id)
        .select(RuleRow::as_select())
        .first(conn)
        .await
        .optional()?
    else {
        return Ok(Err(format!("its rule {rule_id} no longer exists")));
    };
    if rule.archived_at.is_some() {
        return Ok(Err(format!(
            "rule {} was archived before this firing's work was made; an archived rule makes no work",
            rule.name
        )));
    }
    let identity = match identity(conn, row, &rule).await? {
        Ok(identity) => identity,
        Err(reason) => return Ok(Err(reason)),
    };
    let action: StoredAction = match serde_json::from_value(rule.action.clone()) {
        Ok(action) => action,
        Err(e) => {
            tracing::error!(rule = %rule.id, error = %e, "trigger rule: stored action unreadable");
            return Ok(Err(format!(
                "rule {}'s stored action cannot be read; set the rule's action again",
                rule.name
            )));
        }
    };
    let Some(template) = templates::table
        .find(rule.template_id)
        .select(TemplateRow::as_select())
        .first(conn)
        .await
        .optional()?
    else {
        return Ok(Err(format!(
            "rule {}'s template no longer exists; give the rule another template",
            rule.name
        )));
    };
    let workspace: String = workspaces::table
        .find(rule.workspace_id)
        .select(workspaces::name)
        .first(conn)
        .await?;
    let secret_env = match &rule.action_secrets {
        None => BTreeMap::new(),
        Some(sealed) => match triggers.secrets.open(sealed) {
            Ok(opened) => opened,
            Err(_) => {
                return Ok(Err(format!(
                    "rule {}'s secret values cannot be opened with this server's key; set them again on the rule",
                    rule.name
                )));
            }
        },
    };
    let cause = Cause::of(row);
    let values = trigger_values(&rule, row, &cause);
    let mut overrides = Overrides {
        command: action.command.clone(),
        env: action.env.clone().into_iter().collect(),
        secret_env: secret_env.into_iter().collect(),
        memory_bytes: action.memory_bytes,
        cpus: action.cpus,
        timeout: action.timeout_ms.map(RawDuration::from_millis),
        priority: action.priority,
    };
    let mut params = action.params.clone();
    let mut inputs = Vec::new();
    match template.kind {
        Kind::Job => {
            for (name, value) in &values {
                overrides.env.insert(env_name(name), value.clone());
            }
            match &cause {
                Cause::Artifact(id) => inputs.push(InputInput {
                    artifact: id.clone(),
                    mount: "trigger".into(),
                    from: String::new(),
                }),
                Cause::Completion { request, .. } => {
                    if let Ok(request) = request.parse::<Uuid>() {
                        for id in outputs(conn, request).await? {
                            inputs.push(InputInput {
                                artifact: id.to_string(),
                                mount: format!("trigger/{id}"),
                                from: String::new(),
                            });
                        }
                    }
                }
                Cause::Schedule(_) | Cause::Message { .. } | Cause::Other => {}
            }
        }
        Kind::Workflow => {
            let declared = match declared_params(conn, &template, action.version).await? {
                Ok(declared) => declared,
                Err(reason) => return Ok(Err(reason)),
            };
            for (name, value) in values {
                if declared.iter().any(|d| d == name) {
                    params.insert(name.to_owned(), value);
                }
            }
        }
    }
    let input = RunInput {
        template: TemplateRef {
            workspace,
            name: template.name.clone(),
            kind: Some(template.kind),
        },
        version: action.version,
        overrides,
        params,
        inputs,
        id: Some(WorkRequestId(request_id)),
    };
    Ok(Ok((identity, input)))
}

/// The caller a run is made as: the event's `run_as` user, as a token of their role
/// would make them; `Err(reason)` when there is none or they are disabled.
async fn identity(
    conn: &mut AsyncPgConnection,
    row: &EventRow,
    rule: &RuleRow,
) -> Result<std::result::Result<Identity, String>> {
    let Some(user_id) = row.run_as else {
        return Ok(Err("the event names no user to make its work for".into()));
    };
    let Some((name, admin, enabled)) = users::table
        .find(user_id)
        .select((users::name, users::admin, users::enabled))
        .first::<(String, bool, bool)>(conn)
        .await
        .optional()?
    else {
        return Ok(Err(format!(
            "the user {user_id} the work is for no longer exists; make the rule again as an existing user"
        )));
    };
    if !enabled {
        let reason = if user_id == rule.created_by {
            format!(
                "the rule's creator {name} is disabled; enable the user again, or archive rule {} and make it again as an enabled user",
                rule.name
            )
        } else {
            format!("{name}, who fired rule {} by hand, is disabled", rule.name)
        };
        return Ok(Err(reason));
    }
    Ok(Ok(Identity {
        // No token was used: the rule acts with its user's standing at each firing.
        token_id: Uuid::nil(),
        role: if admin {
            TokenKind::Admin
        } else {
            TokenKind::User
        },
        user_id: Some(user_id),
        name,
    }))
}

/// The parameters the release a workflow rule runs declares (`version` `None`: the
/// latest); `Err(reason)` when that release does not exist.
async fn declared_params(
    conn: &mut AsyncPgConnection,
    template: &TemplateRow,
    version: Option<i32>,
) -> Result<std::result::Result<Vec<String>, String>> {
    let version = version.unwrap_or(template.latest_version);
    let release = match crate::templates::store::release(conn, template, version).await {
        Ok((release, _)) => release,
        Err(Error::NotFound(m)) => return Ok(Err(m)),
        Err(e) => return Err(e),
    };
    Ok(Ok(
        match crate::templates::release_spec(template.kind, &release)? {
            ReleaseSpec::Workflow(spec) => spec.parameters.into_iter().map(|p| p.name).collect(),
            ReleaseSpec::Job(_) => Vec::new(),
        },
    ))
}

/// The completed, live output artifacts of `request`, oldest first.
async fn outputs(conn: &mut AsyncPgConnection, request: Uuid) -> Result<Vec<Uuid>> {
    Ok(artifacts::table
        .filter(artifacts::work_request_id.eq(request))
        .filter(artifacts::complete)
        .filter(live::alive())
        .order((artifacts::created_at, artifacts::id))
        .limit(MAX_OUTPUTS)
        .select(artifacts::id)
        .load(conn)
        .await?)
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use serde_json::json;

    use super::*;

    fn event(nominal: bool, description: serde_json::Value) -> EventRow {
        EventRow {
            id: Uuid::nil(),
            workspace_id: Uuid::nil(),
            rule_id: None,
            kind: "artifact".into(),
            outcome: "pending".into(),
            reason: String::new(),
            nominal_at: nominal.then(|| Utc.with_ymd_and_hms(2026, 3, 29, 1, 30, 0).unwrap()),
            dedupe: String::new(),
            description,
            run_as: None,
            work_request_id: None,
            occurred_at: Utc::now(),
            settled_at: None,
            message: None,
        }
    }

    #[test]
    fn the_cause_is_read_from_the_event() {
        assert_eq!(
            Cause::of(&event(true, json!({}))),
            Cause::Schedule("2026-03-29T01:30:00Z".into())
        );
        assert_eq!(
            Cause::of(&event(
                false,
                json!({"artifact": "a1", "category": "build"})
            )),
            Cause::Artifact("a1".into())
        );
        assert_eq!(
            Cause::of(&event(
                false,
                json!({"request": "r1", "result": "failure", "template": "t"})
            )),
            Cause::Completion {
                request: "r1".into(),
                result: "failure".into()
            }
        );
        assert_eq!(
            Cause::of(&event(false, json!({"by": "alice"}))),
            Cause::Other
        );
    }

    #[test]
    fn env_names_follow_the_parameters() {
        assert_eq!(env_name("trigger_rule"), "BERTH_TRIGGER_RULE");
        assert_eq!(env_name("trigger_event"), "BERTH_TRIGGER_EVENT");
        assert_eq!(env_name("trigger_type"), "BERTH_TRIGGER_TYPE");
        assert_eq!(env_name("trigger_time"), "BERTH_TRIGGER_NOMINAL_TIME");
        assert_eq!(env_name("trigger_artifact"), "BERTH_TRIGGER_ARTIFACT");
        assert_eq!(env_name("trigger_request"), "BERTH_TRIGGER_REQUEST");
        assert_eq!(env_name("trigger_result"), "BERTH_TRIGGER_RESULT");
        assert_eq!(env_name("trigger_topic"), "BERTH_TRIGGER_TOPIC");
        assert_eq!(env_name("trigger_message"), "BERTH_TRIGGER_MESSAGE");
        assert_eq!(
            env_name("trigger_message_properties"),
            "BERTH_TRIGGER_MESSAGE_PROPERTIES"
        );
    }

    #[test]
    fn a_message_reaches_the_run_with_its_content_unless_too_large() {
        let mut row = event(
            false,
            json!({"topic": "builds", "message_id": "m1", "seq": 4}),
        );
        row.message = Some(json!({"content": {"ok": true}, "properties": {"k": "v"}}));
        let cause = Cause::of(&row);
        assert_eq!(
            cause,
            Cause::Message {
                topic: "builds".into(),
                message_id: "m1".into(),
                content: Some(r#"{"ok":true}"#.into()),
                properties: r#"{"k":"v"}"#.into(),
            }
        );
        let rule = RuleRow {
            id: Uuid::nil(),
            workspace_id: Uuid::nil(),
            name: "on-builds".into(),
            kind: "topic".into(),
            config: json!({}),
            template_id: Uuid::nil(),
            action: json!({}),
            action_secrets: None,
            active: true,
            pause_note: String::new(),
            archived_at: None,
            created_by: Uuid::nil(),
            created_at: Utc::now(),
            modified_at: Utc::now(),
            last_fired_at: None,
            next_fire_at: None,
            buffered_at: None,
            watch_from: Utc::now(),
        };
        let values = trigger_values(&rule, &row, &cause);
        assert_eq!(values["trigger_topic"], "builds");
        assert_eq!(values["trigger_message_id"], "m1");
        assert_eq!(values["trigger_message"], r#"{"ok":true}"#);
        assert_eq!(values["trigger_message_properties"], r#"{"k":"v"}"#);

        row.message = Some(json!({"content": "x".repeat(MAX_MESSAGE_ENV), "properties": {}}));
        let cause = Cause::of(&row);
        assert!(
            matches!(&cause, Cause::Message { content: None, properties, .. } if properties.is_empty()),
            "{cause:?}"
        );
        let values = trigger_values(&rule, &row, &cause);
        assert!(!values.contains_key("trigger_message"));
        assert!(!values.contains_key("trigger_message_properties"));
    }
}
