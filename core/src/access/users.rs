//! Users: creating, listing, looking up, disabling, enabling and deleting them.
//!
//! A user is a name that tokens belong to, with an admin flag (only admin users hold
//! admin tokens) and an enabled flag. Disabling a user refuses every token of theirs at
//! once: the authenticator checks `users.enabled` on every lookup, and the hub forgets
//! their cached tokens and ends their open streams here and, through `NOTIFY`, on every
//! other replica. Deleting a user removes their tokens (a foreign key cascade) and
//! memberships, and is refused while work requests name them as submitter: the history
//! must keep saying who asked, so such a user is disabled instead.
//!
//! Nobody may disable or delete themselves: an admin who did would lose the very access
//! needed to undo it.
//!
//! This module changes users only. Workspace memberships are `access::workspaces`', and
//! what a role allows is `access::roles`'; it reads memberships only to show them.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::access::auth::Identity;
use crate::access::roles::WorkspaceRole;
use crate::error::{Error, Result};
use crate::live::hub::Hub;
use crate::store::db::DbPool;
use crate::store::schema::{tokens, users, work_requests, workspace_members, workspaces};
use crate::work::spec::validate_name;

/// A user as admins see them.
#[derive(Clone, Debug)]
pub struct UserView {
    /// Their id.
    pub id: Uuid,
    /// Their unique name.
    pub name: String,
    /// Whether they are a server admin.
    pub admin: bool,
    /// False once disabled.
    pub enabled: bool,
    /// When they were created.
    pub created_at: DateTime<Utc>,
    /// Their workspace roles, by workspace name.
    pub memberships: Vec<(String, WorkspaceRole)>,
    /// How many tokens they hold.
    pub tokens: u32,
}

/// The stored columns of a user that a view shows.
type UserRow = (Uuid, String, bool, bool, DateTime<Utc>);

/// The NOT_FOUND for a user name nobody has.
pub fn no_such_user(name: &str) -> Error {
    Error::NotFound(format!("user: no user named {name:?}"))
}

/// See the module docs.
#[derive(Clone)]
pub struct Users {
    pool: DbPool,
    hub: Arc<Hub>,
}

impl Users {
    /// Users stored in `pool`; `hub` ends the streams of disabled or deleted users.
    pub fn new(pool: DbPool, hub: Arc<Hub>) -> Users {
        Users { pool, hub }
    }

    /// `CreateUser`: a user with no tokens and no workspace roles.
    pub async fn create(&self, caller: &Identity, name: &str, admin: bool) -> Result<UserView> {
        require_admin(caller, "create users")?;
        validate_name("name", name).map_err(Error::InvalidArgument)?;
        let mut conn = self.pool.get().await?;
        let inserted = diesel::insert_into(users::table)
            .values((
                users::id.eq(Uuid::now_v7()),
                users::name.eq(name),
                users::admin.eq(admin),
            ))
            .on_conflict(users::name)
            .do_nothing()
            .returning((
                users::id,
                users::name,
                users::admin,
                users::enabled,
                users::created_at,
            ))
            .get_result::<UserRow>(&mut conn)
            .await
            .optional()?;
        let Some(row) = inserted else {
            return Err(Error::AlreadyExists(format!(
                "name: a user named {name:?} already exists"
            )));
        };
        tracing::info!(user = name, admin, by = %caller.name, "user created");
        one(&mut conn, row).await
    }

    /// `ListUsers`: every user, by name.
    pub async fn list(&self, caller: &Identity) -> Result<Vec<UserView>> {
        require_admin(caller, "list users")?;
        let mut conn = self.pool.get().await?;
        let rows: Vec<UserRow> = users::table
            .select((
                users::id,
                users::name,
                users::admin,
                users::enabled,
                users::created_at,
            ))
            .order(users::name)
            .load(&mut conn)
            .await?;
        views(&mut conn, rows).await
    }

    /// `GetUser`: an admin may look anyone up, a user only themselves (`name` empty or
    /// their own).
    pub async fn get(&self, caller: &Identity, name: &str) -> Result<UserView> {
        let name = if name.is_empty() {
            caller.name.as_str()
        } else {
            name
        };
        if !caller.is_admin() && (caller.user_id.is_none() || name != caller.name) {
            return Err(Error::PermissionDenied(
                "users may only look themselves up; leave the name empty or give your own".into(),
            ));
        }
        let mut conn = self.pool.get().await?;
        let row = find(&mut conn, name).await?;
        one(&mut conn, row).await
    }

    /// `DisableUser` and `EnableUser`. Disabling refuses every token of the user from now
    /// on and ends their open streams, here and on the other replicas.
    pub async fn set_enabled(
        &self,
        caller: &Identity,
        name: &str,
        enabled: bool,
    ) -> Result<UserView> {
        let verb = if enabled { "enable" } else { "disable" };
        require_admin(caller, &format!("{verb} users"))?;
        if !enabled && caller.name == name && caller.user_id.is_some() {
            return Err(Error::FailedPrecondition(format!(
                "you cannot disable yourself ({name}): every token of yours would stop working, including the one needed to enable you again; ask another admin"
            )));
        }
        let mut conn = self.pool.get().await?;
        let updated: Option<UserRow> = diesel::update(users::table.filter(users::name.eq(name)))
            .set(users::enabled.eq(enabled))
            .returning((
                users::id,
                users::name,
                users::admin,
                users::enabled,
                users::created_at,
            ))
            .get_result(&mut conn)
            .await
            .optional()?;
        let Some(row) = updated else {
            return Err(no_such_user(name));
        };
        tracing::info!(user = name, enabled, by = %caller.name, "user updated");
        if !enabled {
            self.hub.close_user(row.0);
        }
        one(&mut conn, row).await
    }

    /// `DeleteUser`: removes the user, their tokens and memberships, and ends their
    /// streams. Refused for a user who submitted work requests.
    pub async fn delete(&self, caller: &Identity, name: &str) -> Result<()> {
        require_admin(caller, "delete users")?;
        if caller.name == name && caller.user_id.is_some() {
            return Err(Error::FailedPrecondition(format!(
                "you cannot delete yourself ({name}): the token you are using would go with you; ask another admin"
            )));
        }
        let mut conn = self.pool.get().await?;
        let id = conn
            .transaction::<_, Error, _>(async |conn| {
                let (id, ..) = find(conn, name).await?;
                let submitted: i64 = work_requests::table
                    .filter(work_requests::created_by.eq(id))
                    .count()
                    .get_result(conn)
                    .await?;
                if submitted > 0 {
                    return Err(still_named(name, submitted));
                }
                match diesel::delete(users::table.find(id)).execute(conn).await {
                    Ok(_) => Ok(id),
                    // A submission committed between the count and the delete: the
                    // history names them after all.
                    Err(DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _)) => {
                        Err(still_named(name, 1))
                    }
                    Err(e) => Err(e.into()),
                }
            })
            .await?;
        tracing::info!(user = name, by = %caller.name, "user deleted");
        self.hub.close_user(id);
        Ok(())
    }
}

/// The refusal to delete a user whom `submitted` work requests name.
fn still_named(name: &str, submitted: i64) -> Error {
    Error::FailedPrecondition(format!(
        "user {name} submitted {submitted} work request(s), whose history names them, so they cannot be deleted; disable them instead with `berth user disable {name}`"
    ))
}

/// Refuses anyone but an admin to `what`.
fn require_admin(caller: &Identity, what: &str) -> Result<()> {
    if caller.is_admin() {
        return Ok(());
    }
    Err(Error::PermissionDenied(format!("only an admin may {what}")))
}

/// The user called `name`, or NOT_FOUND.
async fn find(conn: &mut AsyncPgConnection, name: &str) -> Result<UserRow> {
    users::table
        .filter(users::name.eq(name))
        .select((
            users::id,
            users::name,
            users::admin,
            users::enabled,
            users::created_at,
        ))
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| no_such_user(name))
}

/// The view of one user.
async fn one(conn: &mut AsyncPgConnection, row: UserRow) -> Result<UserView> {
    let mut all = views(conn, vec![row]).await?;
    all.pop()
        .ok_or_else(|| Error::internal("a user's view went missing"))
}

/// The views of `rows`, in their order, with memberships and token counts (two queries
/// for all of them).
async fn views(conn: &mut AsyncPgConnection, rows: Vec<UserRow>) -> Result<Vec<UserView>> {
    let ids: Vec<Uuid> = rows.iter().map(|row| row.0).collect();
    let roles: Vec<(Uuid, String, String)> = workspace_members::table
        .inner_join(workspaces::table)
        .filter(workspace_members::user_id.eq_any(&ids))
        .select((
            workspace_members::user_id,
            workspaces::name,
            workspace_members::role,
        ))
        .order(workspaces::name)
        .load(conn)
        .await?;
    let mut memberships: HashMap<Uuid, Vec<(String, WorkspaceRole)>> = HashMap::new();
    for (user_id, workspace, role) in roles {
        let role = WorkspaceRole::from_name(&role).ok_or_else(|| {
            Error::internal(format!("unknown workspace role {role:?} in the database"))
        })?;
        memberships
            .entry(user_id)
            .or_default()
            .push((workspace, role));
    }
    let counts: Vec<(Option<Uuid>, i64)> = tokens::table
        .filter(tokens::user_id.eq_any(&ids))
        .group_by(tokens::user_id)
        .select((tokens::user_id, diesel::dsl::count_star()))
        .load(conn)
        .await?;
    let counts: HashMap<Uuid, i64> = counts
        .into_iter()
        .filter_map(|(id, n)| id.map(|id| (id, n)))
        .collect();
    Ok(rows
        .into_iter()
        .map(|(id, name, admin, enabled, created_at)| UserView {
            id,
            name,
            admin,
            enabled,
            created_at,
            memberships: memberships.remove(&id).unwrap_or_default(),
            tokens: u32::try_from(counts.get(&id).copied().unwrap_or(0)).unwrap_or(u32::MAX),
        })
        .collect())
}
