//! Dashboard sessions: a browser signs in once with a Berth token and is known by a random
//! session secret from then on.
//!
//! - [`Sessions::sign_in`] checks the token like any gRPC call does (`auth`), refuses
//!   worker tokens (the dashboard is for people), and stores a new session naming the
//!   token by id. The browser gets the secret; PostgreSQL keeps only its SHA-256, so a
//!   copy of the database cannot be turned into a signed-in browser.
//! - [`Sessions::resume`] turns a secret back into the token's identity, asking on every
//!   page whether the token is still usable: disabling or deleting the token or its user
//!   ends its sessions at once, on every replica (the row is read from the database).
//! - [`Sessions::csrf_token`] is the session's CSRF token, derived from the secret (so
//!   nothing more is stored): a page embeds it in every form, and an action must send it
//!   back. Another site can make the browser send the cookie but cannot read the page.
//!
//! Architecture invariant: the token's text is never stored, and neither is the session
//! secret; nothing here knows HTTP (cookies are the web edge's business).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use berth_token::TokenKind;
use chrono::{DateTime, TimeDelta, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::access::auth::{Authenticator, Identity};
use crate::error::{Error, Result};
use crate::store::db::DbPool;
use crate::store::schema::{tokens, users, web_sessions};

/// How long a session lasts after sign-in unless the token ends first.
pub const DEFAULT_SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

/// A session secret as the browser holds it (43 URL-safe characters). Not `Debug` on
/// purpose, so it cannot end up in a log by accident.
pub struct SessionSecret(String);

impl SessionSecret {
    /// The secret as sent in the cookie.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A secret as the browser sent it; its shape is checked when it is used.
    pub fn from_cookie(text: &str) -> SessionSecret {
        SessionSecret(text.to_owned())
    }

    fn hash(&self) -> Vec<u8> {
        Sha256::digest(self.0.as_bytes()).to_vec()
    }
}

/// The dashboard's sessions; see the module docs.
#[derive(Clone)]
pub struct Sessions {
    pool: DbPool,
    authenticator: Authenticator,
    ttl: TimeDelta,
}

impl Sessions {
    /// Sessions over `pool`, checking tokens with `authenticator`, each lasting `ttl`.
    pub fn new(pool: DbPool, authenticator: Authenticator, ttl: std::time::Duration) -> Sessions {
        let ttl = TimeDelta::from_std(ttl).unwrap_or(TimeDelta::hours(12));
        Sessions {
            pool,
            authenticator,
            ttl,
        }
    }

    /// Signs in with a token as pasted: UNAUTHENTICATED for a token that is not usable,
    /// PERMISSION_DENIED for a worker token. Returns the new session's secret and who it
    /// is.
    pub async fn sign_in(&self, token_text: &str) -> Result<(SessionSecret, Identity)> {
        let identity = self.authenticator.authenticate(token_text).await?;
        if identity.role == TokenKind::Worker {
            return Err(Error::PermissionDenied(
                "a worker token cannot sign in to the dashboard; use an admin or user token".into(),
            ));
        }
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let secret = SessionSecret(URL_SAFE_NO_PAD.encode(bytes));
        let now = Utc::now();
        let mut conn = self.pool.get().await?;
        diesel::insert_into(web_sessions::table)
            .values((
                web_sessions::id.eq(Uuid::now_v7()),
                web_sessions::secret_hash.eq(secret.hash()),
                web_sessions::token_id.eq(identity.token_id),
                web_sessions::created_at.eq(now),
                web_sessions::last_seen_at.eq(now),
                web_sessions::expires_at.eq(now + self.ttl),
            ))
            .execute(&mut conn)
            .await?;
        // Sign-ins are rare: a good moment to forget sessions that have run out.
        diesel::delete(web_sessions::table.filter(web_sessions::expires_at.le(now)))
            .execute(&mut conn)
            .await?;
        Ok((secret, identity))
    }

    /// The identity behind a session, or UNAUTHENTICATED (unknown, signed out, expired,
    /// or its token no longer usable).
    pub async fn resume(&self, secret: &SessionSecret) -> Result<Identity> {
        let mut conn = self.pool.get().await?;
        type Row = (
            Uuid,
            DateTime<Utc>,
            DateTime<Utc>,
            Uuid,
            String,
            Option<Uuid>,
            String,
            bool,
            Option<DateTime<Utc>>,
            Option<String>,
            Option<bool>,
        );
        let row: Option<Row> = web_sessions::table
            .inner_join(tokens::table.left_join(users::table))
            .filter(web_sessions::secret_hash.eq(secret.hash()))
            .select((
                web_sessions::id,
                web_sessions::expires_at,
                web_sessions::last_seen_at,
                tokens::id,
                tokens::role,
                tokens::user_id,
                tokens::worker_name,
                tokens::enabled,
                tokens::expires_at,
                users::name.nullable(),
                users::enabled.nullable(),
            ))
            .first(&mut conn)
            .await
            .optional()?;
        let signed_out = || Error::Unauthenticated("not signed in (or signed out)".into());
        let Some((
            session_id,
            session_expires,
            last_seen,
            token_id,
            role,
            user_id,
            worker_name,
            enabled,
            token_expires,
            user_name,
            user_enabled,
        )) = row
        else {
            return Err(signed_out());
        };
        let now = Utc::now();
        if session_expires <= now {
            return Err(Error::Unauthenticated(
                "the session has expired; sign in again".into(),
            ));
        }
        if user_enabled == Some(false) {
            return Err(Error::Unauthenticated(format!(
                "user {} is disabled",
                user_name.as_deref().unwrap_or_default()
            )));
        }
        if !enabled {
            return Err(Error::Unauthenticated(
                "the token this session signed in with is disabled".into(),
            ));
        }
        if token_expires.is_some_and(|at| at <= now) {
            return Err(Error::Unauthenticated(
                "the token this session signed in with has expired".into(),
            ));
        }
        let role = TokenKind::from_name(&role).ok_or_else(|| {
            Error::internal(format!("token {token_id} has the unknown role {role:?}"))
        })?;
        if now - last_seen > TimeDelta::seconds(60) {
            let touched = diesel::update(web_sessions::table.find(session_id))
                .set(web_sessions::last_seen_at.eq(now))
                .execute(&mut conn)
                .await;
            if let Err(e) = touched {
                tracing::warn!(error = %e, "could not record a dashboard session's last use");
            }
        }
        Ok(Identity {
            token_id,
            role,
            user_id,
            name: user_name.unwrap_or(worker_name),
        })
    }

    /// Ends a session (signing out); an unknown one is already ended.
    pub async fn sign_out(&self, secret: &SessionSecret) -> Result<()> {
        let mut conn = self.pool.get().await?;
        diesel::delete(web_sessions::table.filter(web_sessions::secret_hash.eq(secret.hash())))
            .execute(&mut conn)
            .await?;
        Ok(())
    }

    /// The session's CSRF token (see the module docs).
    pub fn csrf_token(secret: &SessionSecret) -> String {
        let mut hasher = Sha256::new();
        hasher.update(b"berth-dashboard-csrf\0");
        hasher.update(secret.0.as_bytes());
        URL_SAFE_NO_PAD.encode(hasher.finalize())
    }

    /// Whether `sent` is the session's CSRF token, compared in constant time.
    pub fn csrf_matches(secret: &SessionSecret, sent: &str) -> bool {
        let expected = Self::csrf_token(secret);
        let (a, b) = (expected.as_bytes(), sent.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csrf_token_belongs_to_its_session_only() {
        let (a, b) = (SessionSecret("one".into()), SessionSecret("two".into()));
        let token = Sessions::csrf_token(&a);
        assert!(Sessions::csrf_matches(&a, &token));
        assert!(!Sessions::csrf_matches(&b, &token));
        assert!(!Sessions::csrf_matches(&a, ""));
        assert!(!Sessions::csrf_matches(&a, &token[1..]));
    }
}
