//! Authentication and authorization of every call.
//!
//! A tower layer in front of all services reads `authorization: Bearer <token>`, checks the
//! token's format and checksum offline, looks its SHA-256 up, refuses disabled and expired
//! tokens (UNAUTHENTICATED), and then checks the method against [`RULES`]: a token whose
//! role is not listed for the method is refused with PERMISSION_DENIED. The caller's
//! [`Identity`] is put into the request's extensions for the handler.
//!
//! A successful lookup is remembered for a few seconds ([`TokenCache`]) so that a busy
//! client does not cost a database read per call. Disabling or deleting a token evicts it
//! at once on this replica and, through `NOTIFY`, on the others; expiry is checked on
//! every call from the remembered expiry time.
//!
//! Architecture invariant: identity comes from the token alone, never from ids in
//! metadata or message fields. A method with no rule is refused for everybody (fail
//! closed); the authorization matrix test walks every method in the descriptor set so a
//! new RPC without a rule fails the suite. Only health checks and reflection are open.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use berth_common::token::{Token, TokenKind};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use futures::future::BoxFuture;
use tonic::Status;
use uuid::Uuid;

use crate::store::db::DbPool;
use crate::store::schema::{tokens, users};

use TokenKind::{Admin, User, Worker};

/// Which roles may call each method. Every method of every Berth service must be here.
pub const RULES: &[(&str, &[TokenKind])] = &[
    ("/berth.v1.TokenService/CreateToken", &[Admin, User]),
    ("/berth.v1.TokenService/ListTokens", &[Admin, User]),
    ("/berth.v1.TokenService/EnableToken", &[Admin, User]),
    ("/berth.v1.TokenService/DisableToken", &[Admin, User]),
    ("/berth.v1.TokenService/DeleteToken", &[Admin, User]),
    ("/berth.v1.WorkerService/ListWorkers", &[Admin, User]),
    ("/berth.v1.WorkerService/GetWorker", &[Admin, User]),
    ("/berth.v1.WorkerService/EnableWorker", &[Admin]),
    ("/berth.v1.WorkerService/DisableWorker", &[Admin]),
    ("/berth.v1.WorkerService/DrainWorker", &[Admin]),
    (
        "/berth.v1.WorkRequestService/SubmitWorkRequest",
        &[Admin, User],
    ),
    (
        "/berth.v1.WorkRequestService/GetWorkRequest",
        &[Admin, User],
    ),
    (
        "/berth.v1.WorkRequestService/ListWorkRequests",
        &[Admin, User],
    ),
    (
        "/berth.v1.WorkRequestService/CancelWorkRequest",
        &[Admin, User],
    ),
    ("/berth.v1.WorkRequestService/StreamLogs", &[Admin, User]),
    ("/berth.v1.WorkRequestService/AdjustPriority", &[Admin]),
    ("/berth.v1.WorkRequestService/ListQueue", &[Admin, User]),
    (
        "/berth.v1.WorkRequestService/UnblockWorkRequest",
        &[Admin, User],
    ),
    (
        "/berth.v1.WorkRequestService/RetryWorkRequest",
        &[Admin, User],
    ),
    (
        "/berth.v1.WorkRequestService/SubmitWorkflow",
        &[Admin, User],
    ),
    ("/berth.v1.AgentService/Connect", &[Worker]),
    ("/berth.v1.AgentService/AppendLog", &[Worker]),
];

/// Services anyone may call without a token: health checks and reflection carry no data.
pub const OPEN_SERVICES: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// The roles allowed to call `path` (`/package.Service/Method`), if it has a rule.
pub fn rule_for(path: &str) -> Option<&'static [TokenKind]> {
    RULES
        .iter()
        .find(|(method, _)| *method == path)
        .map(|(_, roles)| *roles)
}

/// Who is calling, derived from the token alone.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The token used.
    pub token_id: Uuid,
    /// The token's role.
    pub role: TokenKind,
    /// The user behind an admin or user token; `None` for worker tokens.
    pub user_id: Option<Uuid>,
    /// The user's name, or for a worker token the worker name it is bound to ('' if none).
    pub name: String,
}

impl Identity {
    /// Whether this is an admin.
    pub fn is_admin(&self) -> bool {
        self.role == Admin
    }
}

/// Takes the identity the auth layer put on a request. Its absence is a server bug (a
/// service mounted without the layer), reported as INTERNAL rather than a panic.
pub fn identity<T>(request: &tonic::Request<T>) -> Result<Identity, Status> {
    request
        .extensions()
        .get::<Identity>()
        .cloned()
        .ok_or_else(|| Status::internal("request reached a handler without authentication"))
}

/// How long a looked-up token is trusted without asking the database again. Disabling
/// and deleting evict at once ([`TokenCache::evict`]); this bounds how late a change
/// that was not announced (a lost `NOTIFY`) takes effect.
const CACHE_TTL: Duration = Duration::from_secs(5);
/// Past this many remembered tokens the cache starts over, so it cannot grow without
/// bound.
const CACHE_CAPACITY: usize = 50_000;

/// Recently authenticated tokens, keyed by their SHA-256 (never the token itself).
#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<[u8; 32], Cached>>,
}

struct Cached {
    identity: Identity,
    expires_at: Option<DateTime<Utc>>,
    fetched: Instant,
}

impl TokenCache {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Cached>> {
        // Every operation is a single insert, lookup or retain: still consistent after a
        // panic elsewhere.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, hash: &[u8; 32]) -> Option<(Identity, Option<DateTime<Utc>>)> {
        let entries = self.entries();
        let cached = entries.get(hash)?;
        (cached.fetched.elapsed() < CACHE_TTL).then(|| (cached.identity.clone(), cached.expires_at))
    }

    fn put(&self, hash: [u8; 32], identity: Identity, expires_at: Option<DateTime<Utc>>) {
        let mut entries = self.entries();
        if entries.len() >= CACHE_CAPACITY {
            entries.clear();
        }
        entries.insert(
            hash,
            Cached {
                identity,
                expires_at,
                fetched: Instant::now(),
            },
        );
    }

    /// Forgets the token with this id (it was disabled or deleted).
    pub fn evict(&self, token_id: Uuid) {
        self.entries()
            .retain(|_, cached| cached.identity.token_id != token_id);
    }
}

/// Looks tokens up; shared by the layer and by long-lived streams that re-check.
#[derive(Clone)]
pub struct Authenticator {
    pool: DbPool,
    cache: Arc<TokenCache>,
}

impl Authenticator {
    /// An authenticator over `pool` with a cache of its own.
    pub fn new(pool: DbPool) -> Authenticator {
        Authenticator {
            pool,
            cache: Arc::default(),
        }
    }

    /// The same authenticator remembering tokens in `cache` (the one the hub evicts
    /// from).
    pub fn with_cache(mut self, cache: Arc<TokenCache>) -> Authenticator {
        self.cache = cache;
        self
    }

    /// Authenticates a bearer header value and authorizes `path`. `Ok(None)` for open
    /// services.
    pub async fn check(
        &self,
        path: &str,
        authorization: Option<&http::HeaderValue>,
    ) -> Result<Option<Identity>, Status> {
        if OPEN_SERVICES.iter().any(|prefix| path.starts_with(prefix)) {
            return Ok(None);
        }
        let identity = self.authenticate(authorization).await?;
        match rule_for(path) {
            None => Err(Status::permission_denied(format!(
                "{path} has no authorization rule; refused for every caller"
            ))),
            Some(roles) if roles.contains(&identity.role) => Ok(Some(identity)),
            Some(roles) => Err(Status::permission_denied(format!(
                "a {} token may not call {path} (allowed: {})",
                identity.role,
                roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Turns a bearer header into an identity, or UNAUTHENTICATED.
    pub async fn authenticate(
        &self,
        authorization: Option<&http::HeaderValue>,
    ) -> Result<Identity, Status> {
        let header = authorization.ok_or_else(|| {
            Status::unauthenticated("missing `authorization: Bearer <token>` header")
        })?;
        let text = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .ok_or_else(|| {
                Status::unauthenticated("the authorization header must be `Bearer <token>`")
            })?;
        let token =
            Token::parse(text.trim()).map_err(|e| Status::unauthenticated(e.to_string()))?;
        self.lookup(&token).await
    }

    /// Whether the token with this id still exists, is enabled and has not expired; used
    /// by long-lived streams, which authenticated once at their start.
    pub async fn token_usable(&self, token_id: Uuid) -> Result<(), Status> {
        let mut conn =
            self.pool.get().await.map_err(|_| {
                Status::unavailable("the database is unavailable; try again shortly")
            })?;
        let row: Option<(bool, Option<DateTime<Utc>>)> = tokens::table
            .find(token_id)
            .select((tokens::enabled, tokens::expires_at))
            .first(&mut conn)
            .await
            .optional()
            .map_err(|_| Status::unavailable("the database is unavailable; try again shortly"))?;
        match row {
            None => Err(Status::unauthenticated("this token was deleted")),
            Some((false, _)) => Err(Status::unauthenticated("this token is disabled")),
            Some((true, Some(at))) if at <= Utc::now() => {
                Err(Status::unauthenticated("this token has expired"))
            }
            Some(_) => Ok(()),
        }
    }

    /// Finds a well-formed token (in the cache, else in the database) and checks it is
    /// usable now.
    pub async fn lookup(&self, token: &Token) -> Result<Identity, Status> {
        let hash = token.hash().0;
        if let Some((identity, expires_at)) = self.cache.get(&hash) {
            if expires_at.is_some_and(|at| at <= Utc::now()) {
                return Err(Status::unauthenticated("this token has expired"));
            }
            return Ok(identity);
        }
        let identity = self.lookup_stored(&hash).await?;
        Ok(identity)
    }

    async fn lookup_stored(&self, hash: &[u8; 32]) -> Result<Identity, Status> {
        let mut conn =
            self.pool.get().await.map_err(|_| {
                Status::unavailable("the database is unavailable; try again shortly")
            })?;
        let hash_bytes = hash.to_vec();
        type Row = (
            Uuid,
            String,
            Option<Uuid>,
            String,
            bool,
            Option<DateTime<Utc>>,
            Option<DateTime<Utc>>,
            Option<String>,
        );
        let row: Option<Row> = tokens::table
            .left_join(users::table)
            .filter(tokens::hash.eq(&hash_bytes))
            .select((
                tokens::id,
                tokens::role,
                tokens::user_id,
                tokens::worker_name,
                tokens::enabled,
                tokens::expires_at,
                tokens::last_used_at,
                users::name.nullable(),
            ))
            .first(&mut conn)
            .await
            .optional()
            .map_err(|e| {
                tracing::error!(error = %e, "token lookup failed");
                Status::unavailable("the database is unavailable; try again shortly")
            })?;
        let Some((id, role, user_id, worker_name, enabled, expires_at, last_used_at, user_name)) =
            row
        else {
            return Err(Status::unauthenticated("unknown token"));
        };
        if !enabled {
            return Err(Status::unauthenticated("this token is disabled"));
        }
        let now = Utc::now();
        if expires_at.is_some_and(|at| at <= now) {
            return Err(Status::unauthenticated("this token has expired"));
        }
        let role = TokenKind::from_name(&role)
            .ok_or_else(|| Status::internal("token with an unknown role in the database"))?;
        // Keep last-used roughly right without a write on every call.
        if last_used_at.is_none_or(|at| now - at > chrono::TimeDelta::seconds(60)) {
            let updated = diesel::update(tokens::table.find(id))
                .set(tokens::last_used_at.eq(now))
                .execute(&mut conn)
                .await;
            if let Err(e) = updated {
                tracing::warn!(error = %e, "could not record token last use");
            }
        }
        let identity = Identity {
            token_id: id,
            role,
            user_id,
            name: user_name.unwrap_or(worker_name),
        };
        self.cache.put(*hash, identity.clone(), expires_at);
        Ok(identity)
    }
}

/// The tower layer that runs [`Authenticator::check`] before every call.
#[derive(Clone)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
}

impl AuthLayer {
    /// A layer using `auth`.
    pub fn new(auth: Authenticator) -> AuthLayer {
        AuthLayer {
            auth: Arc::new(auth),
        }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// See [`AuthLayer`].
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for AuthService<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        // The ready service is the one we were polled with; leave a clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        Box::pin(async move {
            let path = request.uri().path().to_owned();
            let verdict = auth
                .check(&path, request.headers().get(http::header::AUTHORIZATION))
                .await;
            match verdict {
                Ok(Some(identity)) => {
                    request.extensions_mut().insert(identity);
                    inner.call(request).await
                }
                Ok(None) => inner.call(request).await,
                Err(status) => {
                    tracing::debug!(path, code = ?status.code(), "call refused");
                    Ok(status.into_http())
                }
            }
        })
    }
}
