//! `berth.v1.TokenService`: create, list, enable, disable and delete API tokens.
//!
//! Users see and manage only their own tokens, and another user's token is reported as
//! NOT_FOUND rather than PERMISSION_DENIED so ids cannot be probed.

use berth_common::proto::token_service_server::TokenService;
use berth_common::proto::{
    CreateTokenRequest, CreateTokenResponse, DeleteTokenRequest, DeleteTokenResponse,
    DisableTokenRequest, EnableTokenRequest, ListTokensRequest, ListTokensResponse, Role,
    TokenInfo,
};
use berth_common::token::{Token, TokenKind};
use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{parse_id, timestamp, timestamp_opt};
use std::sync::Arc;

use crate::access::auth::{Identity, identity};
use crate::error::{ApiError, ApiResult};
use crate::live::hub::Hub;
use crate::store::db::DbPool;
use crate::store::models::TokenRow;
use crate::store::schema::{tokens, users};
use crate::work::spec::{duration_from_proto, validate_name};

/// The longest a token may be made to last.
const MAX_EXPIRY: std::time::Duration = std::time::Duration::from_secs(10 * 366 * 24 * 3600);

/// The TokenService implementation.
#[derive(Clone)]
pub struct TokenApi {
    pool: DbPool,
    hub: Arc<Hub>,
}

impl TokenApi {
    /// A service over `pool`; `hub` ends worker streams of disabled or deleted tokens.
    pub fn new(pool: DbPool, hub: Arc<Hub>) -> TokenApi {
        TokenApi { pool, hub }
    }
}

fn role_to_proto(kind: TokenKind) -> Role {
    match kind {
        TokenKind::Admin => Role::Admin,
        TokenKind::User => Role::User,
        TokenKind::Worker => Role::Worker,
    }
}

fn info(row: TokenRow, owner: Option<String>) -> TokenInfo {
    let kind = TokenKind::from_name(&row.role);
    TokenInfo {
        id: row.id.to_string(),
        role: kind.map_or(Role::Unspecified, role_to_proto) as i32,
        owner: owner.unwrap_or(row.worker_name),
        comment: row.comment,
        enabled: row.enabled,
        expires_at: timestamp_opt(row.expires_at),
        created_at: Some(timestamp(row.created_at)),
        last_used_at: timestamp_opt(row.last_used_at),
        prefix: kind.map(|k| k.prefix().to_owned()).unwrap_or_default(),
    }
}

/// Finds or creates the user called `name`; returns its id.
pub async fn ensure_user(conn: &mut AsyncPgConnection, name: &str) -> ApiResult<Uuid> {
    diesel::insert_into(users::table)
        .values((users::id.eq(Uuid::now_v7()), users::name.eq(name)))
        .on_conflict(users::name)
        .do_nothing()
        .execute(conn)
        .await?;
    Ok(users::table
        .filter(users::name.eq(name))
        .select(users::id)
        .first(conn)
        .await?)
}

/// Stores a new token's hash and returns its row. Used by the API and by bootstrap.
pub async fn insert_token(
    conn: &mut AsyncPgConnection,
    token: &Token,
    user_id: Option<Uuid>,
    worker_name: &str,
    comment: &str,
    expires_at: Option<chrono::DateTime<Utc>>,
) -> ApiResult<TokenRow> {
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

impl TokenApi {
    async fn create(
        &self,
        caller: &Identity,
        req: CreateTokenRequest,
    ) -> ApiResult<CreateTokenResponse> {
        let kind = match Role::try_from(req.role) {
            Ok(Role::Admin) => TokenKind::Admin,
            Ok(Role::User) => TokenKind::User,
            Ok(Role::Worker) => TokenKind::Worker,
            _ => {
                return Err(ApiError::InvalidArgument(
                    "role: is required (ROLE_ADMIN, ROLE_USER or ROLE_WORKER)".into(),
                ));
            }
        };
        if !req.name.is_empty() {
            validate_name("name", &req.name).map_err(ApiError::InvalidArgument)?;
        }
        if req.comment.chars().count() > 1000 {
            return Err(ApiError::InvalidArgument(
                "comment: at most 1000 characters".into(),
            ));
        }
        let expires_at = match &req.expires_in {
            None => None,
            Some(d) => {
                let d = duration_from_proto("expires_in", d)
                    .map_err(|e| ApiError::InvalidArgument(e.to_string()))?;
                if d.is_zero() || d > MAX_EXPIRY {
                    return Err(ApiError::InvalidArgument(
                        "expires_in: must be more than 0 and at most 10 years".into(),
                    ));
                }
                let delta = chrono::TimeDelta::from_std(d)
                    .map_err(|_| ApiError::InvalidArgument("expires_in: out of range".into()))?;
                Some(Utc::now() + delta)
            }
        };
        if !caller.is_admin() {
            if kind != TokenKind::User {
                return Err(ApiError::PermissionDenied(format!(
                    "users may only create user tokens, not {kind} tokens"
                )));
            }
            if !req.name.is_empty() && req.name != caller.name {
                return Err(ApiError::PermissionDenied(
                    "users may only create tokens for themselves; leave name empty".into(),
                ));
            }
        }
        let token = Token::generate(kind);
        let mut conn = self.pool.get().await?;
        let token_ref = &token;
        let req_ref = &req;
        let (row, owner) = conn
            .transaction::<_, ApiError, _>(async |conn| {
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
                        Ok((row, None))
                    }
                    TokenKind::Admin | TokenKind::User => {
                        let owner = if req.name.is_empty() {
                            caller.name.clone()
                        } else {
                            req.name.clone()
                        };
                        let user_id = ensure_user(conn, &owner).await?;
                        let row = insert_token(
                            conn,
                            token_ref,
                            Some(user_id),
                            "",
                            &req.comment,
                            expires_at,
                        )
                        .await?;
                        Ok((row, Some(owner)))
                    }
                }
            })
            .await?;
        tracing::info!(token_id = %row.id, role = %kind, by = %caller.name, "token created");
        Ok(CreateTokenResponse {
            info: Some(info(row, owner)),
            token: token.expose_secret().to_owned(),
        })
    }

    /// The token row and owner name, if visible to `caller`.
    async fn visible(
        &self,
        conn: &mut AsyncPgConnection,
        caller: &Identity,
        id: Uuid,
    ) -> ApiResult<(TokenRow, Option<String>)> {
        let found: Option<(TokenRow, Option<String>)> = tokens::table
            .left_join(users::table)
            .filter(tokens::id.eq(id))
            .select((TokenRow::as_select(), users::name.nullable()))
            .first(conn)
            .await
            .optional()?;
        match found {
            Some((row, owner)) if caller.is_admin() || row.user_id == caller.user_id => {
                Ok((row, owner))
            }
            _ => Err(ApiError::NotFound(format!("token {id} not found"))),
        }
    }

    async fn set_enabled(
        &self,
        caller: &Identity,
        id: &str,
        enabled: bool,
    ) -> ApiResult<TokenInfo> {
        let id = parse_id("id", id)?;
        let mut conn = self.pool.get().await?;
        let (row, owner) = self.visible(&mut conn, caller, id).await?;
        // Switching a token off only gives up power, but switching one back on grants it: a
        // user token must not restore an admin token that an admin revoked.
        if enabled && !caller.is_admin() && row.role != TokenKind::User.as_str() {
            return Err(ApiError::PermissionDenied(format!(
                "only an admin may re-enable a {} token",
                row.role
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
        Ok(info(row, owner))
    }
}

#[tonic::async_trait]
impl TokenService for TokenApi {
    async fn create_token(
        &self,
        request: Request<CreateTokenRequest>,
    ) -> Result<Response<CreateTokenResponse>, Status> {
        let caller = identity(&request)?;
        Ok(Response::new(
            self.create(&caller, request.into_inner()).await?,
        ))
    }

    async fn list_tokens(
        &self,
        request: Request<ListTokensRequest>,
    ) -> Result<Response<ListTokensResponse>, Status> {
        let caller = identity(&request)?;
        let mut conn = self.pool.get().await.map_err(ApiError::from)?;
        let mut query = tokens::table
            .left_join(users::table)
            .select((TokenRow::as_select(), users::name.nullable()))
            .order((tokens::created_at.desc(), tokens::id.desc()))
            .into_boxed();
        if !caller.is_admin() {
            query = query.filter(tokens::user_id.eq(caller.user_id));
        }
        let rows: Vec<(TokenRow, Option<String>)> =
            query.load(&mut conn).await.map_err(ApiError::from)?;
        Ok(Response::new(ListTokensResponse {
            tokens: rows
                .into_iter()
                .map(|(row, owner)| info(row, owner))
                .collect(),
        }))
    }

    async fn enable_token(
        &self,
        request: Request<EnableTokenRequest>,
    ) -> Result<Response<TokenInfo>, Status> {
        let caller = identity(&request)?;
        Ok(Response::new(
            self.set_enabled(&caller, &request.get_ref().id, true)
                .await?,
        ))
    }

    async fn disable_token(
        &self,
        request: Request<DisableTokenRequest>,
    ) -> Result<Response<TokenInfo>, Status> {
        let caller = identity(&request)?;
        Ok(Response::new(
            self.set_enabled(&caller, &request.get_ref().id, false)
                .await?,
        ))
    }

    async fn delete_token(
        &self,
        request: Request<DeleteTokenRequest>,
    ) -> Result<Response<DeleteTokenResponse>, Status> {
        let caller = identity(&request)?;
        let id = parse_id("id", &request.get_ref().id)?;
        let mut conn = self.pool.get().await.map_err(ApiError::from)?;
        self.visible(&mut conn, &caller, id).await?;
        diesel::delete(tokens::table.find(id))
            .execute(&mut conn)
            .await
            .map_err(ApiError::from)?;
        tracing::info!(token_id = %id, by = %caller.name, "token deleted");
        self.hub.close_token(id);
        Ok(Response::new(DeleteTokenResponse {}))
    }
}
