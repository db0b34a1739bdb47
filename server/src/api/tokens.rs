//! `berth.v1.TokenService` on the wire; `access::tokens` does the work.

use berth_common::proto::token_service_server::TokenService;
use berth_common::proto::{
    CreateTokenRequest, CreateTokenResponse, DeleteTokenRequest, DeleteTokenResponse,
    DisableTokenRequest, EnableTokenRequest, ListTokensRequest, ListTokensResponse, Role,
    TokenInfo,
};
use berth_common::token::TokenKind;
use tonic::{Request, Response, Status};

use crate::api::auth::identity;
use crate::api::error::respond;
use crate::api::{raw_from_proto, timestamp, timestamp_opt};
use berth_core::access::tokens::{NewToken, TokenView, Tokens};

/// The TokenService implementation.
#[derive(Clone)]
pub struct TokenApi {
    tokens: Tokens,
}

impl TokenApi {
    /// The service over `tokens`.
    pub fn new(tokens: Tokens) -> TokenApi {
        TokenApi { tokens }
    }
}

/// A role on the wire.
pub fn role_to_proto(kind: TokenKind) -> Role {
    match kind {
        TokenKind::Admin => Role::Admin,
        TokenKind::User => Role::User,
        TokenKind::Worker => Role::Worker,
    }
}

fn role_from_proto(value: i32) -> Option<TokenKind> {
    match Role::try_from(value) {
        Ok(Role::Admin) => Some(TokenKind::Admin),
        Ok(Role::User) => Some(TokenKind::User),
        Ok(Role::Worker) => Some(TokenKind::Worker),
        Ok(Role::Unspecified) | Err(_) => None,
    }
}

fn info(view: TokenView) -> TokenInfo {
    let kind = view.kind();
    TokenInfo {
        id: view.row.id.to_string(),
        role: kind.map_or(Role::Unspecified, role_to_proto) as i32,
        owner: view.owner,
        comment: view.row.comment,
        enabled: view.row.enabled,
        expires_at: timestamp_opt(view.row.expires_at),
        created_at: Some(timestamp(view.row.created_at)),
        last_used_at: timestamp_opt(view.row.last_used_at),
        prefix: kind.map(|k| k.prefix().to_owned()).unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl TokenService for TokenApi {
    async fn create_token(
        &self,
        request: Request<CreateTokenRequest>,
    ) -> Result<Response<CreateTokenResponse>, Status> {
        let caller = identity(&request)?;
        let req = request.into_inner();
        let new = NewToken {
            kind: role_from_proto(req.role),
            name: req.name,
            comment: req.comment,
            expires_in: req.expires_in.as_ref().map(raw_from_proto),
        };
        respond(
            self.tokens
                .create(&caller, new)
                .await
                .map(|(token, view)| CreateTokenResponse {
                    info: Some(info(view)),
                    token: token.expose_secret().to_owned(),
                }),
        )
    }

    async fn list_tokens(
        &self,
        request: Request<ListTokensRequest>,
    ) -> Result<Response<ListTokensResponse>, Status> {
        let caller = identity(&request)?;
        respond(
            self.tokens
                .list(&caller)
                .await
                .map(|views| ListTokensResponse {
                    tokens: views.into_iter().map(info).collect(),
                }),
        )
    }

    async fn enable_token(
        &self,
        request: Request<EnableTokenRequest>,
    ) -> Result<Response<TokenInfo>, Status> {
        let caller = identity(&request)?;
        respond(
            self.tokens
                .set_enabled(&caller, &request.get_ref().id, true)
                .await
                .map(info),
        )
    }

    async fn disable_token(
        &self,
        request: Request<DisableTokenRequest>,
    ) -> Result<Response<TokenInfo>, Status> {
        let caller = identity(&request)?;
        respond(
            self.tokens
                .set_enabled(&caller, &request.get_ref().id, false)
                .await
                .map(info),
        )
    }

    async fn delete_token(
        &self,
        request: Request<DeleteTokenRequest>,
    ) -> Result<Response<DeleteTokenResponse>, Status> {
        let caller = identity(&request)?;
        respond(
            self.tokens
                .delete(&caller, &request.get_ref().id)
                .await
                .map(|()| DeleteTokenResponse {}),
        )
    }
}
