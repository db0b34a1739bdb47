//! Signing in with a pasted token and signing out.
//!
//! `POST /ui/login` takes the token from the form body (never from the URL, so it stays
//! out of access logs and history), has `access::sessions` check it and open a session,
//! and answers with the session cookie and a redirect to where the viewer was going. The
//! token itself is neither stored nor sent back.

use axum::Router;
use axum::extract::{Query, State as Extract};
use axum::http::StatusCode;
use axum::http::header::SET_COOKIE;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use berth_core::error::Error;
use maud::{Markup, html};
use serde::Deserialize;

use crate::web::State;
use crate::web::error::PageForm;
use crate::web::layout;
use crate::web::session::{Viewer, clear_cookie, set_cookie};

/// The sign-in routes.
pub fn routes() -> Router<State> {
    Router::new()
        .route("/ui/login", get(form).post(sign_in))
        .route("/ui/logout", post(sign_out))
}

#[derive(Deserialize)]
struct Next {
    #[serde(default)]
    next: String,
}

#[derive(Deserialize)]
struct SignIn {
    #[serde(default)]
    token: String,
    #[serde(default)]
    next: String,
}

#[derive(Deserialize)]
struct SignOut {
    #[serde(default)]
    csrf: String,
}

/// Only a path on this dashboard is a place to go back to (no open redirect).
fn safe_next(next: &str) -> &str {
    if next.starts_with("/ui/") && !next.starts_with("//") && !next.contains('\\') {
        next
    } else {
        "/ui/queue"
    }
}

fn login_page(next: &str, problem: Option<&str>) -> Markup {
    layout::bare(
        "Sign in",
        html! {
            h1 { "Sign in to Berth" }
            @if let Some(problem) = problem {
                p.error #login-error { (problem) }
            }
            form method="post" action="/ui/login" #login {
                label for="token" { "Token" }
                input type="password" name="token" #token autocomplete="off" required
                    placeholder="berth_usr_…";
                input type="hidden" name="next" value=(safe_next(next));
                button type="submit" { "Sign in" }
            }
            p.hint { "Paste an admin or user token (" code { "berth token create" } "). The browser keeps only a session cookie, never the token." }
        },
    )
}

async fn form(Query(next): Query<Next>) -> Markup {
    login_page(&next.next, None)
}

async fn sign_in(Extract(state): Extract<State>, PageForm(form): PageForm<SignIn>) -> Response {
    if form.token.trim().is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            login_page(&form.next, Some("paste a token into the Token field")),
        )
            .into_response();
    }
    match state.sessions.sign_in(&form.token).await {
        Ok((secret, identity)) => {
            tracing::info!(user = %identity.name, role = %identity.role, "dashboard sign-in");
            (
                [(SET_COOKIE, set_cookie(&secret, state.secure_cookies))],
                Redirect::to(safe_next(&form.next)),
            )
                .into_response()
        }
        Err(e @ (Error::Unauthenticated(_) | Error::PermissionDenied(_))) => {
            let status = if matches!(e, Error::Unauthenticated(_)) {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::FORBIDDEN
            };
            (status, login_page(&form.next, Some(&e.public_message()))).into_response()
        }
        Err(e) => crate::web::error::PageError(e).into_response(),
    }
}

async fn sign_out(
    Extract(state): Extract<State>,
    viewer: Viewer,
    PageForm(form): PageForm<SignOut>,
) -> Response {
    if let Err(refused) = viewer.check_csrf(&form.csrf) {
        return refused.into_response();
    }
    if let Err(e) = state.sessions.sign_out(viewer.secret()).await {
        return crate::web::error::PageError(e).into_response();
    }
    (
        [(SET_COOKIE, clear_cookie(state.secure_cookies))],
        Redirect::to("/ui/login"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_dashboard_paths_are_followed_after_sign_in() {
        assert_eq!(safe_next("/ui/work-requests/x"), "/ui/work-requests/x");
        for bad in [
            "https://evil.example/",
            "//evil.example/ui/",
            "/other",
            "",
            "/ui\\x",
        ] {
            assert_eq!(safe_next(bad), "/ui/queue", "{bad}");
        }
    }
}
