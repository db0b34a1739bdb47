//! Creating, reading, listing, changing, pausing, resuming, archiving and firing rules
//! by hand, and previews of fire times: the front the API calls.
//!
//! Roles: reading (rules, previews) needs a viewer of the workspace, every change and a
//! firing by hand a contributor in an open workspace; a caller who may not see the
//! workspace gets NOT_FOUND, as everywhere ([`crate::access::roles`] decides).
//!
//! Every change locks the rule's row (`FOR UPDATE`) in its transaction and reads it
//! again under the lock, so it waits for a pass that holds the rule (passes claim rows
//! `FOR UPDATE SKIP LOCKED`) and never undoes what the pass did. Times come from the
//! database's `now()`, the clock the passes use.
//!
//! A rule is found by name among the workspace's rules that are not archived, and when
//! there is none, as the newest archived rule of that name: so an archived rule still
//! answers (with FAILED_PRECONDITION for what it refuses) until a new rule takes its name.
//!
//! What it must not touch: work requests (a firing by hand stores a `pending` event and
//! hands it to [`settle`], which makes the work), templates (read only), the passes'
//! columns other than those that pausing, resuming and archiving define
//! (`next_fire_at`, `buffered_at`). Secret override values are sealed here and never
//! returned; only their names are kept in the stored action.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::access::auth::Identity;
use crate::access::roles::{self, Standing, WorkspaceRole};
use crate::error::{Error, Result};
use crate::store::schema::{trigger_events, trigger_rules, users};
use crate::templates::names;
use crate::templates::runs::Overrides;
use crate::templates::store::{self as template_store, TemplateRow};
use crate::templates::workspace_name;
use crate::triggers::Maker;
use crate::triggers::schedule::{self, ScheduleConfig};
use crate::triggers::store::{self, EventRow, NewEvent, NewRule, RuleRow};
use crate::triggers::{
    ActionInput, ConfigInput, EventView, FireTime, Outcome, PreviewOf, RuleChange, RuleKind,
    RuleRef, RuleView, StoredAction, Triggers, handlers, settle,
};
use crate::work::state::Kind;

/// What changing a rule (or firing it) needs, and how a refusal words it.
const MANAGE_ROLE: WorkspaceRole = WorkspaceRole::Contributor;
const MANAGE_ACTION: &str = "manage trigger rules of";
const READ_ACTION: &str = "read trigger rules of";

/// How many fire times a preview shows when no count is given, and at most.
const DEFAULT_PREVIEW: u32 = 5;
const MAX_PREVIEW: u32 = 100;

/// The database's clock: every time a rule holds is on it.
pub(crate) async fn db_now(conn: &mut AsyncPgConnection) -> Result<DateTime<Utc>> {
    Ok(
        diesel::select(diesel::dsl::sql::<diesel::sql_types::Timestamptz>("now()"))
            .get_result(conn)
            .await?,
    )
}

/// The NOT_FOUND for a rule name.
fn no_such_rule(workspace: &str, name: &str) -> Error {
    Error::NotFound(format!(
        "workspace {workspace} has no trigger rule named {name:?} (berth trigger list -w {workspace} shows its rules)"
    ))
}

/// The rule named `name` in the workspace: the one not archived, or else the newest
/// archived one. With `lock`, its row is locked for the rest of the transaction.
pub(crate) async fn find_rule(
    conn: &mut AsyncPgConnection,
    standing: &Standing,
    name: &str,
    lock: bool,
) -> Result<RuleRow> {
    let select = trigger_rules::table
        .filter(trigger_rules::workspace_id.eq(standing.workspace.id))
        .filter(trigger_rules::name.eq(name))
        // NULL first: the rule that is not archived (there is at most one), then the
        // most recently archived.
        .order(trigger_rules::archived_at.desc().nulls_first())
        .select(RuleRow::as_select())
        .limit(1);
    let found = if lock {
        select.for_update().first(conn).await.optional()?
    } else {
        select.first(conn).await.optional()?
    };
    found.ok_or_else(|| no_such_rule(&standing.workspace.name, name))
}

/// Refuses to change or fire an archived rule.
fn refuse_archived(row: &RuleRow, what: &str) -> Result<()> {
    if row.archived_at.is_some() {
        return Err(Error::FailedPrecondition(format!(
            "trigger rule {} is archived, so it cannot be {what}: archiving is one way: create a new rule (the name is free)",
            row.name
        )));
    }
    Ok(())
}

fn user_id(caller: &Identity, action: &str) -> Result<Uuid> {
    caller
        .user_id
        .ok_or_else(|| Error::PermissionDenied(format!("only users and admins may {action}")))
}

/// The stored action parsed back.
fn stored_action(row: &RuleRow) -> Result<StoredAction> {
    serde_json::from_value(row.action.clone()).map_err(|e| {
        Error::internal(format!(
            "stored action of trigger rule {} unreadable: {e}",
            row.id
        ))
    })
}

/// A rule's view: its creator's name looked up.
async fn view_of(conn: &mut AsyncPgConnection, row: RuleRow, workspace: &str) -> Result<RuleView> {
    let created_by: Option<String> = users::table
        .find(row.created_by)
        .select(users::name)
        .first(conn)
        .await
        .optional()?;
    Ok(RuleView {
        action: stored_action(&row)?,
        workspace: workspace.to_owned(),
        created_by: created_by.unwrap_or_default(),
        row,
    })
}

/// An action as checked: the template it runs, what is stored, and the secret values
/// (to be sealed).
struct CheckedAction {
    template_id: Uuid,
    stored: StoredAction,
    secrets: BTreeMap<String, String>,
}

/// Whether a run would change anything of a job release.
fn overrides_given(o: &Overrides) -> bool {
    !o.command.is_empty()
        || !o.env.is_empty()
        || !o.secret_env.is_empty()
        || o.memory_bytes.is_some()
        || o.cpus.is_some()
        || o.timeout.is_some()
        || o.priority.is_some()
}

/// Checks an action against the workspace's templates: the template exists and is not
/// archived, a pinned release exists, job templates take overrides and workflow
/// templates parameters.
async fn check_action(
    conn: &mut AsyncPgConnection,
    standing: &Standing,
    action: &ActionInput,
) -> Result<CheckedAction> {
    if action.template.is_empty() {
        return Err(Error::InvalidArgument(
            "action.template: is required; name a job or workflow template of the workspace".into(),
        ));
    }
    let template: TemplateRow = template_store::find(
        conn,
        standing.workspace.id,
        &standing.workspace.name,
        &action.template,
        None,
    )
    .await
    .map_err(|e| match e {
        Error::NotFound(m) => Error::InvalidArgument(format!("action.template: {m}")),
        other => other,
    })?;
    if template.archived_at.is_some() {
        return Err(Error::FailedPrecondition(format!(
            "action.template: template {} is archived and cannot be run; restore it or name another",
            template.name
        )));
    }
    if let Some(version) = action.version
        && (version < 1 || version > template.latest_version)
    {
        return Err(Error::InvalidArgument(format!(
            "action.version: template {} has releases v1..v{}; there is no v{version} (0 runs the latest at each firing)",
            template.name, template.latest_version
        )));
    }
    let o = &action.overrides;
    match template.kind {
        Kind::Job if !action.params.is_empty() => {
            return Err(Error::InvalidArgument(format!(
                "action.params: {} is a job template; it takes overrides (command, env, limits), not parameters",
                template.name
            )));
        }
        Kind::Workflow if overrides_given(o) => {
            return Err(Error::InvalidArgument(format!(
                "action.overrides: {} is a workflow template; it takes parameters, not overrides",
                template.name
            )));
        }
        _ => {}
    }
    let timeout_ms = match o.timeout {
        None => None,
        Some(raw) => {
            let timeout = raw
                .to_std("action.overrides.timeout")
                .map_err(|e| Error::InvalidArgument(format!("{}: {}", e.field, e.message)))?;
            Some(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX))
        }
    };
    if let Some(cpus) = o.cpus
        && !(cpus.is_finite() && cpus > 0.0)
    {
        return Err(Error::InvalidArgument(format!(
            "action.overrides.cpus: {cpus} is not a CPU count; give a positive number such as 0.5 or 2"
        )));
    }
    let secrets: BTreeMap<String, String> = o
        .secret_env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let stored = StoredAction {
        template: template.name.clone(),
        version: action.version,
        command: o.command.clone(),
        env: o.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        secret_env_keys: secrets.keys().cloned().collect(),
        memory_bytes: o.memory_bytes,
        cpus: o.cpus,
        timeout_ms,
        priority: o.priority,
        params: action.params.clone(),
    };
    Ok(CheckedAction {
        template_id: template.id,
        stored,
        secrets,
    })
}

/// A change of a rule's state, made under its row lock by [`Triggers::change_state`].
enum StateChange<'a> {
    /// With the note.
    Pause(&'a str),
    Resume,
    Archive,
}

impl StateChange<'_> {
    /// Makes the change to `locked` (locked in this transaction) at `now`.
    async fn apply(
        self,
        conn: &mut AsyncPgConnection,
        locked: RuleRow,
        now: DateTime<Utc>,
    ) -> Result<RuleRow> {
        let update = diesel::update(trigger_rules::table.find(locked.id));
        let row = match self {
            StateChange::Pause(note) => {
                refuse_archived(&locked, "paused")?;
                update
                    .set((
                        trigger_rules::active.eq(false),
                        trigger_rules::pause_note.eq(note),
                        trigger_rules::modified_at.eq(now),
                    ))
                    .returning(RuleRow::as_returning())
                    .get_result(conn)
                    .await?
            }
            StateChange::Resume => {
                refuse_archived(&locked, "resumed")?;
                if locked.active {
                    return Ok(locked);
                }
                let next_fire_at = handlers::next_fire(locked.kind()?, &locked.config, now)?;
                // Resuming starts from the next time after now; a time held back
                // before the pause is not run either.
                drop_buffered(
                    conn,
                    locked.id,
                    "rule resumed: it goes on from the next time after now",
                    now,
                )
                .await?;
                update
                    .set((
                        trigger_rules::active.eq(true),
                        trigger_rules::pause_note.eq(""),
                        trigger_rules::next_fire_at.eq(next_fire_at),
                        trigger_rules::buffered_at.eq(None::<DateTime<Utc>>),
                        trigger_rules::modified_at.eq(now),
                    ))
                    .returning(RuleRow::as_returning())
                    .get_result(conn)
                    .await?
            }
            StateChange::Archive => {
                if locked.archived_at.is_some() {
                    return Ok(locked);
                }
                // A time held back for the previous run will never run now.
                drop_buffered(conn, locked.id, "rule archived", now).await?;
                // Nor does a topic rule take messages any more.
                handlers::release(conn, &locked).await?;
                update
                    .set((
                        trigger_rules::archived_at.eq(now),
                        trigger_rules::active.eq(false),
                        trigger_rules::next_fire_at.eq(None::<DateTime<Utc>>),
                        trigger_rules::buffered_at.eq(None::<DateTime<Utc>>),
                        trigger_rules::modified_at.eq(now),
                    ))
                    .returning(RuleRow::as_returning())
                    .get_result(conn)
                    .await?
            }
        };
        Ok(row)
    }
}

/// Ends `rule`'s `buffered` event (a time held back for the previous run) as `skipped`
/// with `reason`.
async fn drop_buffered(
    conn: &mut AsyncPgConnection,
    rule: Uuid,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    diesel::update(
        trigger_events::table
            .filter(trigger_events::rule_id.eq(rule))
            .filter(trigger_events::outcome.eq(Outcome::Buffered.as_str())),
    )
    .set((
        trigger_events::outcome.eq(Outcome::Skipped.as_str()),
        trigger_events::reason.eq(reason),
        trigger_events::settled_at.eq(now),
    ))
    .execute(conn)
    .await?;
    Ok(())
}

impl Triggers {
    /// Seals secret override values (`None` when there are none).
    fn seal(&self, secrets: &BTreeMap<String, String>) -> Result<Option<Vec<u8>>> {
        if secrets.is_empty() {
            return Ok(None);
        }
        self.secrets
            .seal(secrets)
            .map(Some)
            .map_err(Error::internal)
    }

    /// The caller's standing in `workspace` for a change (contributor, open workspace).
    async fn standing_to_manage(
        conn: &mut AsyncPgConnection,
        caller: &Identity,
        workspace: &str,
    ) -> Result<Standing> {
        let standing = roles::in_workspace(conn, caller, workspace_name(workspace)).await?;
        standing.require(MANAGE_ROLE, MANAGE_ACTION)?;
        standing.require_open()?;
        Ok(standing)
    }

    /// The caller's standing in `workspace` for reading.
    async fn standing_to_read(
        conn: &mut AsyncPgConnection,
        caller: &Identity,
        workspace: &str,
    ) -> Result<Standing> {
        let standing = roles::in_workspace(conn, caller, workspace_name(workspace)).await?;
        standing.require(WorkspaceRole::Viewer, READ_ACTION)?;
        Ok(standing)
    }

    /// Locks the rule, makes `change` under the lock, and returns its view.
    async fn change_state(
        &self,
        caller: &Identity,
        rule: &RuleRef,
        change: StateChange<'_>,
    ) -> Result<RuleView> {
        let mut conn = self.pool.get().await?;
        let standing = Self::standing_to_manage(&mut conn, caller, &rule.workspace).await?;
        let row = conn
            .transaction::<_, Error, _>(async |conn| {
                let locked = find_rule(conn, &standing, &rule.name, true).await?;
                let now = db_now(conn).await?;
                change.apply(conn, locked, now).await
            })
            .await?;
        view_of(&mut conn, row, &standing.workspace.name).await
    }

    /// `CreateTriggerRule`.
    pub async fn create(
        &self,
        caller: &Identity,
        rule: RuleRef,
        config: ConfigInput,
        action: ActionInput,
        paused: bool,
    ) -> Result<RuleView> {
        names::validate(&rule.name)?;
        let creator = user_id(caller, "create trigger rules")?;
        let mut conn = self.pool.get().await?;
        let standing = Self::standing_to_manage(&mut conn, caller, &rule.workspace).await?;
        let row = conn
            .transaction::<_, Error, _>(async |conn| {
                let now = db_now(conn).await?;
                let kind = config.kind();
                let id = Uuid::now_v7();
                let maker = Maker {
                    standing: &standing,
                    user_id: creator,
                };
                let stored = handlers::check(conn, maker, id, now, &config).await?;
                let checked = check_action(conn, &standing, &action).await?;
                let next_fire_at = handlers::next_fire(kind, &stored, now)?;
                let new = NewRule {
                    id,
                    workspace_id: standing.workspace.id,
                    name: rule.name.clone(),
                    kind: kind.as_str().to_owned(),
                    config: stored,
                    template_id: checked.template_id,
                    action: serde_json::to_value(&checked.stored).map_err(Error::internal)?,
                    action_secrets: self.seal(&checked.secrets)?,
                    active: !paused,
                    created_by: creator,
                    next_fire_at,
                };
                let inserted: Option<RuleRow> = diesel::insert_into(trigger_rules::table)
                    .values(&new)
                    .on_conflict_do_nothing()
                    .returning(RuleRow::as_returning())
                    .get_result(conn)
                    .await
                    .optional()?;
                inserted.ok_or_else(|| {
                    Error::AlreadyExists(format!(
                        "workspace {} has a trigger rule named {:?} already; pick another name, or archive that rule first",
                        standing.workspace.name, rule.name
                    ))
                })
            })
            .await?;
        tracing::info!(rule = %row.id, name = %row.name, kind = %row.kind, by = %caller.name, "trigger rule created");
        view_of(&mut conn, row, &standing.workspace.name).await
    }

    /// `GetTriggerRule`.
    pub async fn get(&self, caller: &Identity, rule: &RuleRef) -> Result<RuleView> {
        let mut conn = self.pool.get().await?;
        let standing = Self::standing_to_read(&mut conn, caller, &rule.workspace).await?;
        let row = find_rule(&mut conn, &standing, &rule.name, false).await?;
        view_of(&mut conn, row, &standing.workspace.name).await
    }

    /// `ListTriggerRules`: by name (archived ones after the live one of a name, newest
    /// first).
    pub async fn list(
        &self,
        caller: &Identity,
        workspace: &str,
        include_archived: bool,
    ) -> Result<Vec<RuleView>> {
        let mut conn = self.pool.get().await?;
        let standing = Self::standing_to_read(&mut conn, caller, workspace).await?;
        let mut select = trigger_rules::table
            .inner_join(users::table.on(users::id.eq(trigger_rules::created_by)))
            .filter(trigger_rules::workspace_id.eq(standing.workspace.id))
            .select((RuleRow::as_select(), users::name))
            .order((
                trigger_rules::name,
                trigger_rules::archived_at.desc().nulls_first(),
            ))
            .into_boxed();
        if !include_archived {
            select = select.filter(trigger_rules::archived_at.is_null());
        }
        let rows: Vec<(RuleRow, String)> = select.load(&mut conn).await?;
        rows.into_iter()
            .map(|(row, created_by)| {
                Ok(RuleView {
                    action: stored_action(&row)?,
                    workspace: standing.workspace.name.clone(),
                    created_by,
                    row,
                })
            })
            .collect()
    }

    /// `UpdateTriggerRule`: a new configuration (its next time computed from now) and/or
    /// a new action, each replacing the whole of what the rule had.
    pub async fn update(
        &self,
        caller: &Identity,
        rule: &RuleRef,
        change: RuleChange,
    ) -> Result<RuleView> {
        if change.config.is_none() && change.action.is_none() {
            return Err(Error::InvalidArgument(
                "change: nothing to change; give a configuration or an action".into(),
            ));
        }
        let mut conn = self.pool.get().await?;
        let standing = Self::standing_to_manage(&mut conn, caller, &rule.workspace).await?;
        let row = conn
            .transaction::<_, Error, _>(async |conn| {
                let locked = find_rule(conn, &standing, &rule.name, true).await?;
                refuse_archived(&locked, "changed")?;
                let now = db_now(conn).await?;
                let (config, next_fire_at) = match &change.config {
                    Some(input) => {
                        let maker = Maker {
                            standing: &standing,
                            user_id: user_id(caller, "change trigger rules")?,
                        };
                        let config =
                            handlers::check_change(conn, maker, &locked, now, input).await?;
                        let next = handlers::next_fire(locked.kind()?, &config, now)?;
                        (config, next)
                    }
                    None => (locked.config.clone(), locked.next_fire_at),
                };
                let (template_id, action, secrets) = match &change.action {
                    Some(input) => {
                        let checked = check_action(conn, &standing, input).await?;
                        (
                            checked.template_id,
                            serde_json::to_value(&checked.stored).map_err(Error::internal)?,
                            self.seal(&checked.secrets)?,
                        )
                    }
                    None => (
                        locked.template_id,
                        locked.action.clone(),
                        locked.action_secrets.clone(),
                    ),
                };
                Ok(diesel::update(trigger_rules::table.find(locked.id))
                    .set((
                        trigger_rules::config.eq(config),
                        trigger_rules::next_fire_at.eq(next_fire_at),
                        trigger_rules::template_id.eq(template_id),
                        trigger_rules::action.eq(action),
                        trigger_rules::action_secrets.eq(secrets),
                        trigger_rules::modified_at.eq(now),
                    ))
                    .returning(RuleRow::as_returning())
                    .get_result(conn)
                    .await?)
            })
            .await?;
        tracing::info!(rule = %row.id, name = %row.name, by = %caller.name, "trigger rule changed");
        view_of(&mut conn, row, &standing.workspace.name).await
    }

    /// `PauseTriggerRule`: its times pass as `paused` events until it is resumed. A
    /// paused rule paused again stays paused, with the new note.
    pub async fn pause(&self, caller: &Identity, rule: &RuleRef, note: &str) -> Result<RuleView> {
        let view = self
            .change_state(caller, rule, StateChange::Pause(note))
            .await?;
        tracing::info!(rule = %view.row.id, name = %view.row.name, by = %caller.name, "trigger rule paused");
        Ok(view)
    }

    /// `ResumeTriggerRule`: from the next time after now; what passed while it was
    /// paused is not caught up, and a buffered time is dropped. An active rule is
    /// returned as it is (its next time stays, so resuming it loses nothing).
    pub async fn resume(&self, caller: &Identity, rule: &RuleRef) -> Result<RuleView> {
        let view = self.change_state(caller, rule, StateChange::Resume).await?;
        tracing::info!(rule = %view.row.id, name = %view.row.name, by = %caller.name, "trigger rule resumed");
        Ok(view)
    }

    /// `ArchiveTriggerRule`: one way. It never fires again, a buffered time of it is
    /// `skipped`, and its name is free; archiving it again returns it as it is.
    pub async fn archive(&self, caller: &Identity, rule: &RuleRef) -> Result<RuleView> {
        let view = self
            .change_state(caller, rule, StateChange::Archive)
            .await?;
        tracing::info!(rule = %view.row.id, name = %view.row.name, by = %caller.name, "trigger rule archived");
        Ok(view)
    }

    /// `FireTriggerRule`: a `manual` event on the caller's behalf (paused rules too),
    /// stored `pending` with a reserved request id and settled at once; the event is
    /// returned as settling left it.
    pub async fn fire_now(&self, caller: &Identity, rule: &RuleRef) -> Result<EventView> {
        let by = user_id(caller, "fire trigger rules")?;
        let mut conn = self.pool.get().await?;
        let standing = Self::standing_to_manage(&mut conn, caller, &rule.workspace).await?;
        let (event_id, rule_name) = conn
            .transaction::<_, Error, _>(async |conn| {
                // Locked so that archiving cannot slip in between the check and the insert.
                let locked = find_rule(conn, &standing, &rule.name, true).await?;
                refuse_archived(&locked, "fired")?;
                let mut event = NewEvent::of_rule(
                    &locked,
                    Outcome::Pending,
                    String::new(),
                    format!("fired by hand by {}", caller.name),
                );
                event.dedupe = format!("manual:{}", event.id);
                event.kind = "manual".to_owned();
                event.run_as = Some(by);
                event.description = serde_json::json!({ "by": caller.name });
                if !store::insert_event(conn, &event).await? {
                    // The key holds the event's own new id, so only a bug gets here.
                    return Err(Error::internal(format!(
                        "manual event {} of rule {} collided",
                        event.id, locked.id
                    )));
                }
                Ok((event.id, locked.name))
            })
            .await?;
        tracing::info!(event = %event_id, rule = %rule_name, by = %caller.name, "trigger rule fired by hand");
        let row: EventRow = settle::settle(self, event_id).await?;
        Ok(EventView {
            row,
            workspace: standing.workspace.name.clone(),
            rule: rule_name,
        })
    }

    /// `PreviewTriggerSchedule`: the next `count` times and the zone they are shown in.
    pub async fn preview(
        &self,
        caller: &Identity,
        of: PreviewOf,
        count: u32,
    ) -> Result<(Vec<FireTime>, String)> {
        let count = match count {
            0 => DEFAULT_PREVIEW,
            n if n > MAX_PREVIEW => {
                return Err(Error::InvalidArgument(format!(
                    "count: {n} is more than {MAX_PREVIEW}; ask for at most {MAX_PREVIEW} times"
                )));
            }
            n => n,
        };
        let mut conn = self.pool.get().await?;
        let now = db_now(&mut conn).await?;
        let config = match of {
            PreviewOf::Rule(rule) => {
                let standing = Self::standing_to_read(&mut conn, caller, &rule.workspace).await?;
                let row = find_rule(&mut conn, &standing, &rule.name, false).await?;
                if row.kind()? != RuleKind::Schedule {
                    return Err(Error::FailedPrecondition(format!(
                        "trigger rule {} is of type {}: only schedule rules have fire times",
                        row.name, row.kind
                    )));
                }
                if row.archived_at.is_some() {
                    return Err(Error::FailedPrecondition(format!(
                        "trigger rule {} is archived: it never fires again",
                        row.name
                    )));
                }
                ScheduleConfig::from_value(&row.config)?
            }
            PreviewOf::Schedule { workspace, input } => {
                Self::standing_to_read(&mut conn, caller, &workspace).await?;
                schedule::check(&input, now)?
            }
        };
        let times = schedule::preview(&config, now, usize::try_from(count).unwrap_or(5))?;
        Ok((times, config.time_zone))
    }
}
