//! Workspaces: creating, listing, reading, configuring and archiving them, and managing
//! their members.
//!
//! Admins create workspaces; owners manage their members and their `public` flag and
//! default expiry; the limits (`max_running`, `max_pending`) and the fair-share `weight`
//! are for admins alone, since they decide what one workspace may take from the others.
//! Archiving is one-way: an archived workspace takes no new work requests and its history
//! stays readable. `default` is never archived: it is where requests go when no workspace
//! is named.
//!
//! Every read and change starts from the caller's standing (`roles::in_workspace`), so a
//! workspace the caller may not see answers NOT_FOUND exactly as one that does not exist.
//! The last owner of a workspace cannot be removed or demoted by an owner (nobody would
//! be left to manage it); an admin may.
//!
//! This module changes `workspaces` and `workspace_members` only. It decides nothing
//! about roles itself (that is `access::roles`), and it does not enforce the limits it
//! stores (submission and the scheduler do).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::access::auth::Identity;
use crate::access::roles::{self, WorkspaceRole};
use crate::access::users::no_such_user;
use crate::error::{Error, Result};
use crate::store::db::DbPool;
use crate::store::schema::{users, work_requests, workspace_members, workspaces};
use crate::work::spec::RawDuration;
use crate::work::state::Status;

/// Names no workspace may take: words that read as something else on a command line or
/// in a path (`default` exists already and is made by the migration).
pub const RESERVED_NAMES: [&str; 10] = [
    "default", "all", "none", "admin", "system", "berth", "new", "api", "public", "archived",
];

/// The longest default expiry: ten years.
const MAX_EXPIRY: Duration = Duration::from_secs(10 * 366 * 24 * 3600);

/// The fair-share weights a workspace may have.
const WEIGHTS: std::ops::RangeInclusive<u32> = 1..=1000;

/// A workspace as the caller sees it.
#[derive(Clone, Debug)]
pub struct WorkspaceView {
    /// Its id.
    pub id: Uuid,
    /// Its unique name.
    pub name: String,
    /// Readable by every user.
    pub public: bool,
    /// How long its artifacts are kept by default, in seconds; `None` for ever.
    pub default_expiry_seconds: Option<i64>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was archived.
    pub archived_at: Option<DateTime<Utc>>,
    /// Its running limit.
    pub max_running: Option<i32>,
    /// Its waiting limit.
    pub max_pending: Option<i32>,
    /// Its fair-share weight.
    pub weight: i32,
    /// The caller's membership role there, if a member.
    pub role: Option<WorkspaceRole>,
    /// Its requests waiting now (pending or blocked).
    pub waiting: u64,
    /// Its requests running now.
    pub running: u64,
}

/// A workspace to create.
#[derive(Clone, Debug, Default)]
pub struct NewWorkspace {
    /// Its name.
    pub name: String,
    /// Readable by every user.
    pub public: bool,
    /// Its default expiry; `None` for ever.
    pub default_expiry: Option<RawDuration>,
}

/// A setting to change: a new value, or none at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change<T> {
    /// Set it to this.
    Set(T),
    /// Drop it (no expiry, no limit).
    Clear,
}

/// Changes to a workspace's settings; `None` leaves a setting as it is.
#[derive(Clone, Debug, Default)]
pub struct WorkspaceChanges {
    /// Make it public or private (owners).
    pub public: Option<bool>,
    /// Its default expiry (owners).
    pub default_expiry: Option<Change<RawDuration>>,
    /// Its running limit (admins).
    pub max_running: Option<Change<u32>>,
    /// Its waiting limit (admins).
    pub max_pending: Option<Change<u32>>,
    /// Its fair-share weight (admins).
    pub weight: Option<u32>,
}

/// A member of a workspace.
#[derive(Clone, Debug)]
pub struct MemberView {
    /// The workspace's name.
    pub workspace: String,
    /// The user's name.
    pub user: String,
    /// Their role.
    pub role: WorkspaceRole,
    /// When they were added or their role last changed.
    pub since: DateTime<Utc>,
}

/// The columns of `workspaces` an update writes; `None` leaves a column alone, and
/// `Some(None)` makes it NULL.
#[derive(AsChangeset, Default)]
#[diesel(table_name = workspaces)]
struct Settings {
    public: Option<bool>,
    default_expiry_seconds: Option<Option<i64>>,
    max_running: Option<Option<i32>>,
    max_pending: Option<Option<i32>>,
    weight: Option<i32>,
}

impl Settings {
    fn is_empty(&self) -> bool {
        self.public.is_none()
            && self.default_expiry_seconds.is_none()
            && self.max_running.is_none()
            && self.max_pending.is_none()
            && self.weight.is_none()
    }
}

/// See the module docs.
#[derive(Clone)]
pub struct Workspaces {
    pool: DbPool,
}

impl Workspaces {
    /// Workspaces stored in `pool`.
    pub fn new(pool: DbPool) -> Workspaces {
        Workspaces { pool }
    }

    /// `CreateWorkspace` (admins).
    pub async fn create(&self, caller: &Identity, new: NewWorkspace) -> Result<WorkspaceView> {
        if !caller.is_admin() {
            return Err(Error::PermissionDenied(
                "only an admin may create workspaces".into(),
            ));
        }
        validate_slug(&new.name)?;
        let expiry = new
            .default_expiry
            .map(|d| expiry_seconds("default_expiry", d))
            .transpose()?;
        let mut conn = self.pool.get().await?;
        let inserted: Option<Uuid> = diesel::insert_into(workspaces::table)
            .values((
                workspaces::id.eq(Uuid::now_v7()),
                workspaces::name.eq(&new.name),
                workspaces::public.eq(new.public),
                workspaces::default_expiry_seconds.eq(expiry),
            ))
            .on_conflict(workspaces::name)
            .do_nothing()
            .returning(workspaces::id)
            .get_result(&mut conn)
            .await
            .optional()?;
        let Some(id) = inserted else {
            return Err(Error::AlreadyExists(format!(
                "name: a workspace named {:?} already exists",
                new.name
            )));
        };
        tracing::info!(workspace = %new.name, by = %caller.name, "workspace created");
        one(&mut conn, caller, id).await
    }

    /// `ListWorkspaces`: all for admins, for users their memberships and the public
    /// ones; archived ones only when asked. By name.
    pub async fn list(
        &self,
        caller: &Identity,
        include_archived: bool,
    ) -> Result<Vec<WorkspaceView>> {
        let mut conn = self.pool.get().await?;
        let visible = roles::visible(&mut conn, caller).await?;
        let mut query = workspaces::table.select(workspaces::id).into_boxed();
        if let Some(ids) = visible {
            query = query.filter(workspaces::id.eq_any(ids));
        }
        if !include_archived {
            query = query.filter(workspaces::archived_at.is_null());
        }
        let ids: Vec<Uuid> = query.load(&mut conn).await?;
        views(&mut conn, caller, &ids).await
    }

    /// `GetWorkspace`.
    pub async fn get(&self, caller: &Identity, name: &str) -> Result<WorkspaceView> {
        let mut conn = self.pool.get().await?;
        let standing = roles::in_workspace(&mut conn, caller, name).await?;
        one(&mut conn, caller, standing.workspace.id).await
    }

    /// `UpdateWorkspace`: owners change `public` and the default expiry, admins also
    /// the limits and the weight.
    pub async fn update(
        &self,
        caller: &Identity,
        name: &str,
        changes: WorkspaceChanges,
    ) -> Result<WorkspaceView> {
        let mut conn = self.pool.get().await?;
        let standing = roles::in_workspace(&mut conn, caller, name).await?;
        standing.require(WorkspaceRole::Owner, "change the settings of")?;
        let admin_only: Vec<&str> = [
            ("max_running", changes.max_running.is_some()),
            ("max_pending", changes.max_pending.is_some()),
            ("weight", changes.weight.is_some()),
        ]
        .into_iter()
        .filter_map(|(field, asked)| asked.then_some(field))
        .collect();
        if !admin_only.is_empty() && !caller.is_admin() {
            return Err(Error::PermissionDenied(format!(
                "{} of workspace {name} may only be changed by an admin; as its owner you may change public and default_expiry",
                admin_only.join(", ")
            )));
        }
        let settings = Settings {
            public: changes.public,
            default_expiry_seconds: match changes.default_expiry {
                None => None,
                Some(Change::Clear) => Some(None),
                Some(Change::Set(d)) => Some(Some(expiry_seconds("default_expiry", d)?)),
            },
            max_running: limit("max_running", changes.max_running)?,
            max_pending: limit("max_pending", changes.max_pending)?,
            weight: changes
                .weight
                .map(|w| {
                    if WEIGHTS.contains(&w) {
                        i32::try_from(w).map_err(|_| weight_refused(w))
                    } else {
                        Err(weight_refused(w))
                    }
                })
                .transpose()?,
        };
        let id = standing.workspace.id;
        if !settings.is_empty() {
            diesel::update(workspaces::table.find(id))
                .set(&settings)
                .execute(&mut conn)
                .await?;
            tracing::info!(workspace = name, by = %caller.name, "workspace settings changed");
        }
        one(&mut conn, caller, id).await
    }

    /// `ArchiveWorkspace`: for good; `default` never.
    pub async fn archive(&self, caller: &Identity, name: &str) -> Result<WorkspaceView> {
        let mut conn = self.pool.get().await?;
        let standing = roles::in_workspace(&mut conn, caller, name).await?;
        standing.require(WorkspaceRole::Owner, "archive")?;
        if name == "default" {
            return Err(Error::FailedPrecondition(
                "workspace default cannot be archived: it is where work requests go when no workspace is named".into(),
            ));
        }
        let id = standing.workspace.id;
        let archived = diesel::update(
            workspaces::table
                .find(id)
                .filter(workspaces::archived_at.is_null()),
        )
        .set(workspaces::archived_at.eq(Utc::now()))
        .execute(&mut conn)
        .await?;
        if archived == 0 {
            return Err(Error::FailedPrecondition(format!(
                "workspace {name} is already archived; archiving cannot be undone or repeated"
            )));
        }
        tracing::info!(workspace = name, by = %caller.name, "workspace archived");
        one(&mut conn, caller, id).await
    }

    /// `AddMember`: adds `user` in `role`, or changes their role.
    pub async fn add_member(
        &self,
        caller: &Identity,
        workspace: &str,
        user: &str,
        role: Option<WorkspaceRole>,
    ) -> Result<MemberView> {
        let role = role.ok_or_else(|| {
            Error::InvalidArgument(
                "role: is required (WORKSPACE_ROLE_VIEWER, WORKSPACE_ROLE_CONTRIBUTOR or WORKSPACE_ROLE_OWNER)"
                    .into(),
            )
        })?;
        let mut conn = self.pool.get().await?;
        let standing = roles::in_workspace(&mut conn, caller, workspace).await?;
        standing.require(WorkspaceRole::Owner, "manage the members of")?;
        let workspace_id = standing.workspace.id;
        let member = conn
            .transaction::<_, Error, _>(async |conn| {
                let (user_id, user_name) = find_user(conn, user).await?;
                lock_members(conn, workspace_id).await?;
                let current = role_of(conn, workspace_id, user_id).await?;
                if let Some((current, since)) = current {
                    if current == role {
                        return Ok(MemberView {
                            workspace: workspace.to_owned(),
                            user: user_name,
                            role,
                            since,
                        });
                    }
                    if current == WorkspaceRole::Owner && !caller.is_admin() {
                        keep_an_owner(conn, workspace, workspace_id, &user_name, "demote").await?;
                    }
                }
                let since: DateTime<Utc> = diesel::insert_into(workspace_members::table)
                    .values((
                        workspace_members::workspace_id.eq(workspace_id),
                        workspace_members::user_id.eq(user_id),
                        workspace_members::role.eq(role.as_str()),
                    ))
                    .on_conflict((workspace_members::workspace_id, workspace_members::user_id))
                    .do_update()
                    .set((
                        workspace_members::role.eq(role.as_str()),
                        workspace_members::created_at.eq(Utc::now()),
                    ))
                    .returning(workspace_members::created_at)
                    .get_result(conn)
                    .await?;
                Ok(MemberView {
                    workspace: workspace.to_owned(),
                    user: user_name,
                    role,
                    since,
                })
            })
            .await?;
        tracing::info!(workspace, user, role = %role, by = %caller.name, "workspace member set");
        Ok(member)
    }

    /// `RemoveMember`.
    pub async fn remove_member(
        &self,
        caller: &Identity,
        workspace: &str,
        user: &str,
    ) -> Result<()> {
        let mut conn = self.pool.get().await?;
        let standing = roles::in_workspace(&mut conn, caller, workspace).await?;
        standing.require(WorkspaceRole::Owner, "manage the members of")?;
        let workspace_id = standing.workspace.id;
        conn.transaction::<_, Error, _>(async |conn| {
            let (user_id, user_name) = find_user(conn, user).await?;
            lock_members(conn, workspace_id).await?;
            let Some((current, _)) = role_of(conn, workspace_id, user_id).await? else {
                return Err(Error::NotFound(format!(
                    "user {user_name} is not a member of workspace {workspace}"
                )));
            };
            if current == WorkspaceRole::Owner && !caller.is_admin() {
                keep_an_owner(conn, workspace, workspace_id, &user_name, "remove").await?;
            }
            diesel::delete(
                workspace_members::table
                    .filter(workspace_members::workspace_id.eq(workspace_id))
                    .filter(workspace_members::user_id.eq(user_id)),
            )
            .execute(conn)
            .await?;
            Ok(())
        })
        .await?;
        tracing::info!(workspace, user, by = %caller.name, "workspace member removed");
        Ok(())
    }

    /// `ListMembers`: by user name.
    pub async fn members(&self, caller: &Identity, workspace: &str) -> Result<Vec<MemberView>> {
        let mut conn = self.pool.get().await?;
        let standing = roles::in_workspace(&mut conn, caller, workspace).await?;
        let rows: Vec<(String, String, DateTime<Utc>)> = workspace_members::table
            .inner_join(users::table)
            .filter(workspace_members::workspace_id.eq(standing.workspace.id))
            .select((
                users::name,
                workspace_members::role,
                workspace_members::created_at,
            ))
            .order(users::name)
            .load(&mut conn)
            .await?;
        rows.into_iter()
            .map(|(user, role, since)| {
                Ok(MemberView {
                    workspace: standing.workspace.name.clone(),
                    user,
                    role: stored_role(&role)?,
                    since,
                })
            })
            .collect()
    }
}

/// Checks a new workspace's name: a slug of 1-63 characters of `[a-z0-9-]`, starting with
/// a letter or digit and not ending with `-`, and not reserved.
pub fn validate_slug(name: &str) -> Result<()> {
    let refuse = |why: String| Err(Error::InvalidArgument(format!("name: {why}")));
    if name.is_empty() {
        return refuse("must not be empty".into());
    }
    if name.len() > 63 {
        return refuse(format!(
            "{name:?} is {} characters long; at most 63 are allowed",
            name.chars().count()
        ));
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if !name.chars().all(allowed) || name.starts_with('-') || name.ends_with('-') {
        return refuse(format!(
            "{name:?} is not valid; use lowercase letters, digits and '-', starting with a letter or digit and not ending with '-'"
        ));
    }
    if RESERVED_NAMES.contains(&name) {
        return refuse(format!(
            "{name:?} is reserved; these names are: {}",
            RESERVED_NAMES.join(", ")
        ));
    }
    Ok(())
}

/// A default expiry in whole seconds: more than 0 and at most ten years.
fn expiry_seconds(field: &str, d: RawDuration) -> Result<i64> {
    let d = d
        .to_std(field)
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    if d.as_secs() == 0 || d > MAX_EXPIRY {
        return Err(Error::InvalidArgument(format!(
            "{field}: must be at least 1 second and at most 10 years"
        )));
    }
    i64::try_from(d.as_secs()).map_err(|_| Error::InvalidArgument(format!("{field}: out of range")))
}

/// A limit as stored: `Some(None)` for none.
fn limit(field: &str, change: Option<Change<u32>>) -> Result<Option<Option<i32>>> {
    Ok(match change {
        None => None,
        Some(Change::Clear) => Some(None),
        Some(Change::Set(n)) => Some(Some(i32::try_from(n).map_err(|_| {
            Error::InvalidArgument(format!("{field}: at most {} (or no limit)", i32::MAX))
        })?)),
    })
}

fn weight_refused(w: u32) -> Error {
    Error::InvalidArgument(format!(
        "weight: {w} is out of range; use 1 to 1000 (the default is 1)"
    ))
}

fn stored_role(name: &str) -> Result<WorkspaceRole> {
    WorkspaceRole::from_name(name)
        .ok_or_else(|| Error::internal(format!("unknown workspace role {name:?} in the database")))
}

/// The user called `name` (id, name), or NOT_FOUND.
async fn find_user(conn: &mut AsyncPgConnection, name: &str) -> Result<(Uuid, String)> {
    users::table
        .filter(users::name.eq(name))
        .select((users::id, users::name))
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| no_such_user(name))
}

/// Locks the workspace row so that two member changes at once cannot both take away the
/// last owner.
async fn lock_members(conn: &mut AsyncPgConnection, workspace_id: Uuid) -> Result<()> {
    workspaces::table
        .find(workspace_id)
        .select(workspaces::id)
        .for_update()
        .first::<Uuid>(conn)
        .await?;
    Ok(())
}

/// The member's stored role and since when, if a member.
async fn role_of(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    user_id: Uuid,
) -> Result<Option<(WorkspaceRole, DateTime<Utc>)>> {
    let found: Option<(String, DateTime<Utc>)> = workspace_members::table
        .find((workspace_id, user_id))
        .select((workspace_members::role, workspace_members::created_at))
        .first(conn)
        .await
        .optional()?;
    found
        .map(|(role, since)| Ok((stored_role(&role)?, since)))
        .transpose()
}

/// Refuses an owner to `verb` the owner `user` when they are the last one.
async fn keep_an_owner(
    conn: &mut AsyncPgConnection,
    workspace: &str,
    workspace_id: Uuid,
    user: &str,
    verb: &str,
) -> Result<()> {
    let owners: i64 = workspace_members::table
        .filter(workspace_members::workspace_id.eq(workspace_id))
        .filter(workspace_members::role.eq(WorkspaceRole::Owner.as_str()))
        .count()
        .get_result(conn)
        .await?;
    if owners <= 1 {
        return Err(Error::FailedPrecondition(format!(
            "cannot {verb} {user}: they are the last owner of workspace {workspace}, which would be left with nobody to manage it; make another member owner first (or ask an admin)"
        )));
    }
    Ok(())
}

/// The view of one workspace.
async fn one(conn: &mut AsyncPgConnection, caller: &Identity, id: Uuid) -> Result<WorkspaceView> {
    views(conn, caller, &[id])
        .await?
        .pop()
        .ok_or_else(|| Error::internal(format!("workspace {id} went missing")))
}

/// The columns of a workspace a view shows.
type Row = (
    Uuid,
    String,
    bool,
    Option<i64>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<i32>,
    Option<i32>,
    i32,
);

/// The views of the workspaces `ids`, by name, with the caller's role and the counts of
/// their waiting and running requests (three queries for all of them).
async fn views(
    conn: &mut AsyncPgConnection,
    caller: &Identity,
    ids: &[Uuid],
) -> Result<Vec<WorkspaceView>> {
    let rows: Vec<Row> = workspaces::table
        .filter(workspaces::id.eq_any(ids))
        .select((
            workspaces::id,
            workspaces::name,
            workspaces::public,
            workspaces::default_expiry_seconds,
            workspaces::created_at,
            workspaces::archived_at,
            workspaces::max_running,
            workspaces::max_pending,
            workspaces::weight,
        ))
        .order(workspaces::name)
        .load(conn)
        .await?;
    let mine: Vec<(Uuid, String)> = workspace_members::table
        .filter(workspace_members::user_id.eq(caller.user_id.unwrap_or(Uuid::nil())))
        .filter(workspace_members::workspace_id.eq_any(ids))
        .select((workspace_members::workspace_id, workspace_members::role))
        .load(conn)
        .await?;
    let mut mine: HashMap<Uuid, WorkspaceRole> = mine
        .into_iter()
        .map(|(id, role)| Ok((id, stored_role(&role)?)))
        .collect::<Result<_>>()?;
    let live = [Status::Pending, Status::Blocked, Status::Running].map(Status::as_str);
    let counted: Vec<(Uuid, String, i64)> = work_requests::table
        .filter(work_requests::workspace_id.eq_any(ids))
        .filter(work_requests::status.eq_any(live))
        .group_by((work_requests::workspace_id, work_requests::status))
        .select((
            work_requests::workspace_id,
            work_requests::status,
            diesel::dsl::count_star(),
        ))
        .load(conn)
        .await?;
    let mut counts: HashMap<Uuid, (u64, u64)> = HashMap::new();
    for (id, status, n) in counted {
        let n = u64::try_from(n).unwrap_or(0);
        let entry = counts.entry(id).or_default();
        if status == Status::Running.as_str() {
            entry.1 += n;
        } else {
            entry.0 += n;
        }
    }
    Ok(rows
        .into_iter()
        .map(
            |(
                id,
                name,
                public,
                expiry,
                created_at,
                archived_at,
                max_running,
                max_pending,
                weight,
            )| {
                let (waiting, running) = counts.get(&id).copied().unwrap_or_default();
                WorkspaceView {
                    id,
                    name,
                    public,
                    default_expiry_seconds: expiry,
                    created_at,
                    archived_at,
                    max_running,
                    max_pending,
                    weight,
                    role: mine.remove(&id),
                    waiting,
                    running,
                }
            },
        )
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_lowercase_letters_digits_and_inner_dashes() {
        for good in ["a", "team-a", "0day", "a-b-c", &"x".repeat(63)] {
            assert!(validate_slug(good).is_ok(), "{good} should be accepted");
        }
        for bad in ["", "-a", "a-", "Team", "a_b", "a.b", "ä", &"x".repeat(64)] {
            let Err(Error::InvalidArgument(message)) = validate_slug(bad) else {
                panic!("{bad:?} should be refused");
            };
            assert!(message.starts_with("name: "), "{message}");
        }
    }

    #[test]
    fn reserved_names_are_refused_with_the_list() {
        for name in RESERVED_NAMES {
            let Err(Error::InvalidArgument(message)) = validate_slug(name) else {
                panic!("{name} should be reserved");
            };
            assert!(
                message.contains("reserved") && message.contains("archived"),
                "{message}"
            );
        }
    }

    #[test]
    fn expiry_is_at_least_a_second_and_at_most_ten_years() {
        let seconds = |s| RawDuration {
            seconds: s,
            nanos: 0,
        };
        assert_eq!(expiry_seconds("d", seconds(86_400)).ok(), Some(86_400));
        assert!(expiry_seconds("d", seconds(0)).is_err());
        assert!(expiry_seconds("d", seconds(-1)).is_err());
        assert!(expiry_seconds("d", seconds(11 * 366 * 86_400)).is_err());
    }
}
