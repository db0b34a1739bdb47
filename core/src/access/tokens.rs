//! API tokens: create, list, enable, disable and delete.
//!
//! Users see and manage only their own tokens, and another user's token is reported as
//! NOT_FOUND rather than PERMISSION_DENIED so ids cannot be probed. A token is stored as
//! its SHA-256 only; the token itself is shown once, in the answer to its creation.
//! Disabling or deleting a token ends the worker streams that use it at once, here and on
//! every other replica.

use std::sync::Arc;
use std::time::Duration;

use berth_token::{Token, TokenKind};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::access::auth::Identity;
use crate::error::{Error, Result};
use crate::live::hub::Hub;
use crate::store::db::DbPool;
use crate::store::models::TokenRow;
use crate::store::schema::{tokens, users};
use crate::work::ids::parse_uuid;
use crate::work::spec::{RawDuration, validate_name};

/// The longest a token may be made to last.
const MAX_EXPIRY: Duration = Duration::from_secs(10 * 366 * 24 * 3600);

/// A token as its owner sees it, without its secret.
#[derive(Clone, Debug)]
pub struct TokenView {
    /// The row (the hash is never read back out).
    pub row: TokenRow,
    /// The user it belongs to; for a worker token, the worker name it is bound to.
    pub owner: String,
}

impl TokenView {
    fn new(row: TokenRow, user: Option<String>) -> TokenView {
        let owner = user.unwrap_or_else(|| row.worker_name.clone());
        TokenView { row, owner }
    }

    /// The token's role, if the stored role is known.
    pub fn kind(&self) -> Option<TokenKind> {
        TokenKind::from_name(&self.row.role)
    }
}

/// What to create.
#[derive(Clone, Debug, Default)]
pub struct NewToken {
    /// The role; `None` when the caller named none.
    pub kind: Option<TokenKind>,
    /// The user (admin and user tokens) or worker (worker tokens) it is for; '' for the
    /// caller (or, for a worker token, the worker's own choice at its first connection).
    pub name: String,
    /// A note for people.
    pub comment: String,
    /// How long it lasts; `None` for ever.
    pub expires_in: Option<RawDuration>,
}

/// See the module docs.
#[derive(Clone)]
pub struct Tokens {
    pool: DbPool,
    hub: Arc<Hub>,
}

impl Tokens {
    /// Tokens stored in `pool`; `hub` ends the streams of disabled or deleted tokens.
    pub fn new(pool: DbPool, hub: Arc<Hub>) -> Tokens {
        Tokens { pool, hub }
    }

    /// `CreateToken`: returns the token (shown only now) and its view.
    pub async fn create(&self, caller: &Identity, req: NewToken) -> Result<(Token, TokenView)> {
        let kind = req.kind.ok_or_else(|| {
            Error::InvalidArgument(
                "role: is required (ROLE_ADMIN, ROLE_USER or ROLE_WORKER)".into(),
            )
        })?;
        if !req.name.is_empty() {
            validate_name("name", &req.name).map_err(Error::InvalidArgument)?;
        }
        if req.comment.chars().count() > 1000 {
            return Err(Error::InvalidArgument(
                "comment: at most 1000 characters".into(),
            ));
        }
        let expires_at = match req.expires_in {
            None => None,
            Some(d) => {
                let d = d
                    .to_std("expires_in")
                    .map_err(|e| Error::InvalidArgument(e.to_string()))?;
                if d.is_zero() || d > MAX_EXPIRY {
                    return Err(Error::InvalidArgument(
                        "expires_in: must be more than 0 and at most 10 years".into(),
                    ));
                }
                let delta = chrono::TimeDelta::from_std(d)
                    .map_err(|_| Error::InvalidArgument("expires_in: out of range".into()))?;
                Some(Utc::now() + delta)
            }
        };
        if !caller.is_admin() {
            if kind != TokenKind::User {
                return Err(Error::PermissionDenied(format!(
                    "users may only create user tokens, not {kind} tokens"
                )));
            }
            if !req.name.is_empty() && req.name != caller.name {
                return Err(Error::PermissionDenied(
                    "users may only create tokens for themselves; leave name empty".into(),
                ));
            }
        }
        let token = Token::generate(kind);
        let mut conn = self.pool.get().await?;
        let token_ref = &token;
        let req_ref = &req;
        let view = conn
            .transaction::<_, Error, _>(async |conn| {
                let req = req_ref;
                match kind {
                    TokenKind::Worker => {
                        let row = insert_token(
                            conn,
                            token_ref,
                            None,
                            &req.name,
                            &req.comment,
                            expires_at,
                        )
                        .await?;
                        Ok(TokenView::new(row, None))
                    }
                    TokenKind::Admin | TokenKind::User => {
                        let owner = if req.name.is_empty() {
                            caller.name.clone()
                        } else {
                            req.name.clone()
                        };
                        // A user an admin token creation brings into being is an admin;
                        // an existing user must already be one to hold an admin token.
                        let admin = kind == TokenKind::Admin;
                        let (user_id, is_admin) = ensure_user(conn, &owner, admin).await?;
                        if admin && !is_admin {
                            return Err(Error::FailedPrecondition(format!(
                                "user {owner} is not an admin; only admin users may hold admin tokens (create a user token, or make an admin user with `berth user create NAME --admin`)"
                            )));
                        }
                        let row = insert_token(
                            conn,
                            token_ref,
                            Some(user_id),
                            "",
                            &req.comment,
                            expires_at,
                        )
                        .await?;
                        Ok(TokenView::new(row, Some(owner)))
                    }
                }
            })
            .await?;
        tracing::info!(token_id = %view.row.id, role = %kind, by = %caller.name, "token created");
        Ok((token, view))
    }

    /// `ListTokens`: an admin sees every token, a user their own; newest first.
    pub async fn list(&self, caller: &Identity) -> Result<Vec<TokenView>> {
        let mut conn = self.pool.get().await?;
        let mut query = tokens::table
            .left_join(users::table)
            .select((TokenRow::as_select(), users::name.nullable()))
            .order((tokens::created_at.desc(), tokens::id.desc()))
            .into_boxed();
        if !caller.is_admin() {
            query = query.filter(tokens::user_id.eq(caller.user_id));
        }
        let rows: Vec<(TokenRow, Option<String>)> = query.load(&mut conn).await?;
        Ok(rows
            .into_iter()
            .map(|(row, owner)| TokenView::new(row, owner))
            .collect())
    }

    /// `EnableToken` and `DisableToken`.
    pub async fn set_enabled(
        &self,
        caller: &Identity,
        id: &str,
        enabled: bool,
    ) -> Result<TokenView> {
        let id = parse_uuid("id", id)?;
        let mut conn = self.pool.get().await?;
        let found = visible(&mut conn, caller, id).await?;
        // Switching a token off only gives up power, but switching one back on grants it: a
        // user token must not restore an admin token that an admin revoked.
        if enabled && !caller.is_admin() && found.row.role != TokenKind::User.as_str() {
            return Err(Error::PermissionDenied(format!(
                "only an admin may re-enable a {} token",
                found.row.role
            )));
        }
        let row = diesel::update(tokens::table.find(id))
            .set(tokens::enabled.eq(enabled))
            .returning(TokenRow::as_returning())
            .get_result(&mut conn)
            .await?;
        tracing::info!(token_id = %id, enabled, by = %caller.name, "token updated");
        if !enabled {
            self.hub.close_token(id);
        }
        Ok(TokenView { row, ..found })
    }

    /// `DeleteToken`.
    pub async fn delete(&self, caller: &Identity, id: &str) -> Result<()> {
        let id = parse_uuid("id", id)?;
        let mut conn = self.pool.get().await?;
        visible(&mut conn, caller, id).await?;
        diesel::delete(tokens::table.find(id))
            .execute(&mut conn)
            .await?;
        tracing::info!(token_id = %id, by = %caller.name, "token deleted");
        self.hub.close_token(id);
        Ok(())
    }
}

/// The token, if visible to `caller` (see the module docs).
async fn visible(conn: &mut AsyncPgConnection, caller: &Identity, id: Uuid) -> Result<TokenView> {
    let found: Option<(TokenRow, Option<String>)> = tokens::table
        .left_join(users::table)
        .filter(tokens::id.eq(id))
        .select((TokenRow::as_select(), users::name.nullable()))
        .first(conn)
        .await
        .optional()?;
    match found {
        Some((row, owner)) if caller.is_admin() || row.user_id == caller.user_id => {
            Ok(TokenView::new(row, owner))
        }
        _ => Err(Error::NotFound(format!("token {id} not found"))),
    }
}

/// Finds the user called `name`, or creates them (an admin if `admin`, with no workspace
/// roles either way); returns their id and whether they are an admin.
pub(crate) async fn ensure_user(
    conn: &mut AsyncPgConnection,
    name: &str,
    admin: bool,
) -> Result<(Uuid, bool)> {
    diesel::insert_into(users::table)
        .values((
            users::id.eq(Uuid::now_v7()),
            users::name.eq(name),
            users::admin.eq(admin),
        ))
        .on_conflict(users::name)
        .do_nothing()
        .execute(conn)
        .await?;
    Ok(users::table
        .filter(users::name.eq(name))
        .select((users::id, users::admin))
        .first(conn)
        .await?)
}

/// Finds or creates the admin user called `name`, making an existing user an admin: for
/// the server's own admin tokens, made by whoever runs the server.
pub(crate) async fn ensure_admin(conn: &mut AsyncPgConnection, name: &str) -> Result<Uuid> {
    Ok(diesel::insert_into(users::table)
        .values((
            users::id.eq(Uuid::now_v7()),
            users::name.eq(name),
            users::admin.eq(true),
        ))
        .on_conflict(users::name)
        .do_update()
        .set(users::admin.eq(true))
        .returning(users::id)
        .get_result(conn)
        .await?)
}

/// Stores a new token's hash and returns its row. Used by creation and by bootstrap.
pub(crate) async fn insert_token(
    conn: &mut AsyncPgConnection,
    token: &Token,
    user_id: Option<Uuid>,
    worker_name: &str,
    comment: &str,
    expires_at: Option<DateTime<Utc>>,
) -> Result<TokenRow> {
    Ok(diesel::insert_into(tokens::table)
        .values((
            tokens::id.eq(Uuid::now_v7()),
            tokens::hash.eq(token.hash().0.to_vec()),
            tokens::role.eq(token.kind().as_str()),
            tokens::user_id.eq(user_id),
            tokens::worker_name.eq(worker_name),
            tokens::comment.eq(comment),
            tokens::expires_at.eq(expires_at),
        ))
        .returning(TokenRow::as_returning())
        .get_result(conn)
        .await?)
}
