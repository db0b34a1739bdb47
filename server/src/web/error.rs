//! A domain error as the dashboard's answer: the HTTP status that matches its code and a
//! small page with the message (which names what to fix, as over gRPC). An unauthenticated
//! viewer is sent to the sign-in page instead.

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use berth_core::error::{Error, ErrorCode};
use maud::html;

/// A form body, or (when it is missing, of another type or malformed) a refusal as a page
/// that says so: INVALID_ARGUMENT, like every other bad input, instead of axum's own
/// bare-text answer.
#[derive(Debug)]
pub struct PageForm<T>(pub T);

impl<T, S> FromRequest<S> for PageForm<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = PageError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Form::<T>::from_request(request, state).await {
            Ok(axum::Form(value)) => Ok(PageForm(value)),
            Err(rejection) => Err(PageError(Error::InvalidArgument(format!(
                "the form: {}",
                rejection.body_text()
            )))),
        }
    }
}

/// What a handler returns when it fails.
#[derive(Debug)]
pub struct PageError(pub Error);

impl From<Error> for PageError {
    fn from(e: Error) -> PageError {
        PageError(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let code = self.0.code();
        if code == ErrorCode::Unauthenticated {
            return Redirect::to("/ui/login").into_response();
        }
        let status = StatusCode::from_u16(code.http()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if code == ErrorCode::Internal {
            tracing::error!(error = %self.0, "dashboard page failed");
        }
        let body = html! {
            (maud::DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    title { "Berth: " (status.as_u16()) }
                    link rel="stylesheet" href=(crate::web::assets::style_url());
                }
                body {
                    main {
                        h1 { (status.canonical_reason().unwrap_or("error")) }
                        p.error data-code=(format!("{code:?}")) { (self.0.public_message()) }
                        p { a href="/ui/queue" { "Back to the queue" } }
                    }
                }
            }
        };
        (status, body).into_response()
    }
}
