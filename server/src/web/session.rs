//! The signed-in browser. The cookie `berth_session` holds the session secret (HttpOnly,
//! SameSite=Strict, Secure when the listener serves TLS); `access::sessions` turns it
//! into the token's identity on every request, so a disabled token is signed out at once.
//!
//! Actions are POSTs that carry the session's CSRF token in a `csrf` form field
//! ([`Viewer::check_csrf`]); besides, a POST whose `Origin` names another host is refused.
//! SameSite=Strict already keeps the cookie off cross-site requests; the token is the
//! second lock for browsers or proxies that do not honour it.

use axum::extract::FromRequestParts;
use axum::http::header::{COOKIE, HOST, ORIGIN};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use berth_common::token::TokenKind;
use berth_core::access::auth::Identity;
use berth_core::access::sessions::{SessionSecret, Sessions};
use berth_core::error::Error;

use crate::api::auth::rule_for;
use crate::web::State;
use crate::web::error::PageError;

/// The session cookie's name.
pub const COOKIE_NAME: &str = "berth_session";

/// A signed-in viewer: who it is and the session's CSRF token for the page's forms.
pub struct Viewer {
    pub identity: Identity,
    /// The CSRF token every form on the page embeds.
    pub csrf: String,
    secret: SessionSecret,
}

impl Viewer {
    /// Refuses an action whose form did not send this session's CSRF token.
    pub fn check_csrf(&self, sent: &str) -> Result<(), PageError> {
        if Sessions::csrf_matches(&self.secret, sent) {
            Ok(())
        } else {
            Err(PageError(Error::PermissionDenied(
                "the form's CSRF token is missing or belongs to another session; reload the page and try again"
                    .into(),
            )))
        }
    }

    /// Whether the viewer's role may call this gRPC method (`/berth.v1.Service/Method`):
    /// an action on a page is allowed exactly when its RPC is.
    pub fn may(&self, method: &str) -> bool {
        rule_for(method).is_some_and(|roles| roles.contains(&self.identity.role))
    }

    /// [`Viewer::may`], as a refusal naming the method.
    pub fn require(&self, method: &str) -> Result<(), PageError> {
        if self.may(method) {
            Ok(())
        } else {
            Err(PageError(Error::PermissionDenied(format!(
                "a {} token may not do this ({method})",
                self.identity.role
            ))))
        }
    }

    /// Whether the viewer is an admin.
    pub fn is_admin(&self) -> bool {
        self.identity.role == TokenKind::Admin
    }

    /// The session secret, for signing out.
    pub(crate) fn secret(&self) -> &SessionSecret {
        &self.secret
    }
}

/// The session secret the request's cookie carries, if any.
pub fn cookie_secret(parts: &Parts) -> Option<SessionSecret> {
    parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| SessionSecret::from_cookie(value))
}

/// The `Set-Cookie` value that stores `secret`.
pub fn set_cookie(secret: &SessionSecret, secure: bool) -> String {
    format!(
        "{COOKIE_NAME}={}; Path=/ui; HttpOnly; SameSite=Strict{}",
        secret.expose(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that forgets the session.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE_NAME}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Whether a request's `Origin` (if sent) is this server's own host.
fn same_origin(parts: &Parts) -> bool {
    let Some(origin) = parts.headers.get(ORIGIN).and_then(|o| o.to_str().ok()) else {
        return true;
    };
    let host = parts
        .headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()));
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(origin);
    host.is_some_and(|host| host.eq_ignore_ascii_case(origin_host))
}

/// Why a request has no viewer: not signed in (sent to the sign-in page) or a refusal.
pub enum NoViewer {
    SignIn(String),
    Refused(PageError),
}

impl IntoResponse for NoViewer {
    fn into_response(self) -> Response {
        match self {
            NoViewer::SignIn(next) => {
                let next = percent_encode(&next);
                Redirect::to(&format!("/ui/login?next={next}")).into_response()
            }
            NoViewer::Refused(e) => e.into_response(),
        }
    }
}

/// Percent-encodes everything but unreserved characters and `/`.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl FromRequestParts<State> for Viewer {
    type Rejection = NoViewer;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Viewer, NoViewer> {
        let next = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/ui/".into());
        let Some(secret) = cookie_secret(parts) else {
            return Err(NoViewer::SignIn(next));
        };
        if parts.method == axum::http::Method::POST && !same_origin(parts) {
            return Err(NoViewer::Refused(PageError(Error::PermissionDenied(
                "a form from another site may not act on this dashboard".into(),
            ))));
        }
        match state.sessions.resume(&secret).await {
            Ok(identity) => Ok(Viewer {
                identity,
                csrf: Sessions::csrf_token(&secret),
                secret,
            }),
            Err(Error::Unauthenticated(_)) => Err(NoViewer::SignIn(next)),
            Err(e) => Err(NoViewer::Refused(PageError(e))),
        }
    }
}
