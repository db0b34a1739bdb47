//! Who is calling: a token, checked, becomes an [`Identity`].
//!
//! [`Authenticator::authenticate`] checks a token's format and checksum offline, looks its
//! SHA-256 up, and refuses disabled and expired tokens (UNAUTHENTICATED). What each role
//! may call is the API edge's business (`api::auth::RULES`); what a caller may do with a
//! particular thing (a workspace's request, its own token) is checked by the domain with
//! the identity (`access::roles` for everything in a workspace).
//!
//! A successful lookup is remembered for a few seconds ([`TokenCache`]) so that a busy
//! client does not cost a database read per call. Disabling or deleting a token, or
//! disabling or deleting its user, evicts it at once on this replica and, through
//! `NOTIFY`, on the others; expiry is checked on every call from the remembered expiry
//! time. A disabled user's tokens are refused like disabled tokens, whatever their own
//! state.
//!
//! Architecture invariant: identity comes from the token alone, never from ids in
//! metadata or message fields.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_token::{Token, TokenKind};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::store::db::DbPool;
use crate::store::schema::{tokens, users};

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
        self.role == TokenKind::Admin
    }
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
    pub(crate) fn evict(&self, token_id: Uuid) {
        self.entries()
            .retain(|_, cached| cached.identity.token_id != token_id);
    }

    /// Forgets every token of this user (the user was disabled or deleted).
    pub(crate) fn evict_user(&self, user_id: Uuid) {
        self.entries()
            .retain(|_, cached| cached.identity.user_id != Some(user_id));
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

    /// Turns a token as presented (`berth_usr_...`) into an identity, or UNAUTHENTICATED.
    pub async fn authenticate(&self, text: &str) -> Result<Identity> {
        let token = Token::parse(text.trim()).map_err(|e| Error::Unauthenticated(e.to_string()))?;
        self.lookup(&token).await
    }

    /// Whether the token with this id still exists, is enabled, has not expired and
    /// belongs to no disabled user; used by long-lived streams, which authenticated once
    /// at their start.
    pub async fn token_usable(&self, token_id: Uuid) -> Result<()> {
        let mut conn = self.pool.get().await?;
        token_usable(&mut conn, token_id).await
    }

    /// Finds a well-formed token (in the cache, else in the database) and checks it is
    /// usable now.
    pub(crate) async fn lookup(&self, token: &Token) -> Result<Identity> {
        let hash = token.hash().0;
        if let Some((identity, expires_at)) = self.cache.get(&hash) {
            if expires_at.is_some_and(|at| at <= Utc::now()) {
                return Err(Error::Unauthenticated("this token has expired".into()));
            }
            return Ok(identity);
        }
        let identity = self.lookup_stored(&hash).await?;
        Ok(identity)
    }

    async fn lookup_stored(&self, hash: &[u8; 32]) -> Result<Identity> {
        let mut conn = self.pool.get().await?;
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
            Option<bool>,
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
                users::enabled.nullable(),
            ))
            .first(&mut conn)
            .await
            .optional()?;
        let Some((
            id,
            role,
            user_id,
            worker_name,
            enabled,
            expires_at,
            last_used_at,
            user_name,
            user_enabled,
        )) = row
        else {
            return Err(Error::Unauthenticated("unknown token".into()));
        };
        if user_enabled == Some(false) {
            return Err(user_disabled(user_name.as_deref().unwrap_or_default()));
        }
        if !enabled {
            return Err(Error::Unauthenticated("this token is disabled".into()));
        }
        let now = Utc::now();
        if expires_at.is_some_and(|at| at <= now) {
            return Err(Error::Unauthenticated("this token has expired".into()));
        }
        let role = TokenKind::from_name(&role).ok_or_else(|| {
            Error::internal(format!(
                "token {id} has the unknown role {role:?} in the database"
            ))
        })?;
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

/// The refusal of every token of a disabled user.
fn user_disabled(name: &str) -> Error {
    Error::Unauthenticated(format!(
        "user {name} is disabled; an admin may enable them again with `berth user enable {name}`"
    ))
}

/// Whether the token with this id still exists, is enabled, has not expired and belongs
/// to no disabled user (a worker token has no user). One query; long-lived streams ask it
/// when they are told a token or user was closed.
pub(crate) async fn token_usable(conn: &mut AsyncPgConnection, token_id: Uuid) -> Result<()> {
    type Row = (bool, Option<DateTime<Utc>>, Option<String>, Option<bool>);
    let row: Option<Row> = tokens::table
        .left_join(users::table)
        .filter(tokens::id.eq(token_id))
        .select((
            tokens::enabled,
            tokens::expires_at,
            users::name.nullable(),
            users::enabled.nullable(),
        ))
        .first(conn)
        .await
        .optional()?;
    match row {
        None => Err(Error::Unauthenticated("this token was deleted".into())),
        Some((_, _, name, Some(false))) => Err(user_disabled(name.as_deref().unwrap_or_default())),
        Some((false, _, _, _)) => Err(Error::Unauthenticated("this token is disabled".into())),
        Some((true, Some(at), _, _)) if at <= Utc::now() => {
            Err(Error::Unauthenticated("this token has expired".into()))
        }
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(user_id: Option<Uuid>) -> Identity {
        Identity {
            token_id: Uuid::now_v7(),
            role: if user_id.is_some() {
                TokenKind::User
            } else {
                TokenKind::Worker
            },
            user_id,
            name: "someone".into(),
        }
    }

    #[test]
    fn evicting_a_user_forgets_all_their_tokens_and_only_theirs() {
        let cache = TokenCache::default();
        let (bob, carol) = (Uuid::now_v7(), Uuid::now_v7());
        cache.put([1; 32], identity(Some(bob)), None);
        cache.put([2; 32], identity(Some(bob)), None);
        cache.put([3; 32], identity(Some(carol)), None);
        cache.put([4; 32], identity(None), None);
        cache.evict_user(bob);
        assert!(cache.get(&[1; 32]).is_none() && cache.get(&[2; 32]).is_none());
        assert!(cache.get(&[3; 32]).is_some(), "carol's token stays");
        assert!(cache.get(&[4; 32]).is_some(), "a worker token stays");
    }
}
