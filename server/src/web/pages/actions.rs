//! The actions people take daily on a work request: cancel, retry, accept or reject one
//! waiting for approval, and (admins) priority.
//!
//! Each is a POST form carrying the session's CSRF token. The handler checks the token,
//! then the gRPC method's role rule ([`Viewer::require`]), then calls the same
//! `WorkRequests` function the gRPC handler calls, with the viewer's identity (which
//! checks workspace membership). On success it answers 303 back to the request's page
//! with a flash message in the query string; the page renders it escaped.

use axum::Router;
use axum::extract::{Path, State as Extract};
use axum::response::Redirect;
use axum::routing::post;
use berth_core::error::Error;
use berth_core::work::requests::PriorityChange;
use serde::Deserialize;

use crate::web::State;
use crate::web::error::{PageError, PageForm};
use crate::web::pages::request::parse_id;
use crate::web::session::{Viewer, percent_encode};

/// The actions' routes.
pub fn routes() -> Router<State> {
    Router::new()
        .route("/ui/work-requests/{id}/cancel", post(cancel))
        .route("/ui/work-requests/{id}/retry", post(retry))
        .route("/ui/work-requests/{id}/unblock", post(unblock))
        .route("/ui/work-requests/{id}/priority", post(priority))
}

#[derive(Deserialize)]
struct Plain {
    #[serde(default)]
    csrf: String,
}

#[derive(Deserialize)]
struct Priority {
    #[serde(default)]
    csrf: String,
    /// The new adjustment; empty to use `delta`.
    #[serde(default)]
    set: String,
    /// Added to the current adjustment.
    #[serde(default)]
    delta: String,
}

fn back(id: &str, message: &str) -> Redirect {
    Redirect::to(&format!(
        "/ui/work-requests/{id}?flash={}",
        percent_encode(message)
    ))
}

async fn cancel(
    viewer: Viewer,
    Extract(state): Extract<State>,
    Path(id): Path<String>,
    PageForm(form): PageForm<Plain>,
) -> Result<Redirect, PageError> {
    viewer.check_csrf(&form.csrf)?;
    viewer.require("/berth.v1.WorkRequestService/CancelWorkRequest")?;
    let id = parse_id(&id)?;
    let view = state.requests.cancel(&viewer.identity, id).await?;
    Ok(back(
        &id.to_string(),
        &format!("Cancelled; the request is {}.", view.row.status),
    ))
}

async fn retry(
    viewer: Viewer,
    Extract(state): Extract<State>,
    Path(id): Path<String>,
    PageForm(form): PageForm<Plain>,
) -> Result<Redirect, PageError> {
    viewer.check_csrf(&form.csrf)?;
    viewer.require("/berth.v1.WorkRequestService/RetryWorkRequest")?;
    let id = parse_id(&id)?;
    let view = state.requests.retry(&viewer.identity, id).await?;
    Ok(back(
        &id.to_string(),
        &format!("Retried; the request is {} again.", view.row.status),
    ))
}

#[derive(Deserialize)]
struct Decision {
    #[serde(default)]
    csrf: String,
    /// `accept` or `reject`.
    #[serde(default)]
    decision: String,
}

async fn unblock(
    viewer: Viewer,
    Extract(state): Extract<State>,
    Path(id): Path<String>,
    PageForm(form): PageForm<Decision>,
) -> Result<Redirect, PageError> {
    viewer.check_csrf(&form.csrf)?;
    viewer.require("/berth.v1.WorkRequestService/UnblockWorkRequest")?;
    let id = parse_id(&id)?;
    let accept = match form.decision.as_str() {
        "accept" => true,
        "reject" => false,
        other => {
            return Err(PageError(Error::InvalidArgument(format!(
                "decision: {other:?} is neither accept nor reject"
            ))));
        }
    };
    let view = state.requests.unblock(&viewer.identity, id, accept).await?;
    let done = if accept { "Accepted" } else { "Rejected" };
    Ok(back(
        &id.to_string(),
        &format!("{done}; the request is {}.", view.row.status),
    ))
}

fn number(field: &str, text: &str) -> Result<Option<i32>, PageError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        PageError(Error::InvalidArgument(format!(
            "{field}: {text:?} is not a whole number"
        )))
    })
}

async fn priority(
    viewer: Viewer,
    Extract(state): Extract<State>,
    Path(id): Path<String>,
    PageForm(form): PageForm<Priority>,
) -> Result<Redirect, PageError> {
    viewer.check_csrf(&form.csrf)?;
    viewer.require("/berth.v1.WorkRequestService/AdjustPriority")?;
    let id = parse_id(&id)?;
    let set = number("set", &form.set)?;
    let delta = number("delta", &form.delta)?;
    if set.is_none() && delta.is_none() {
        return Err(PageError(Error::InvalidArgument(
            "set or delta: give the new adjustment or how much to add to it".into(),
        )));
    }
    let change = PriorityChange {
        delta: delta.unwrap_or(0),
        set,
    };
    let view = state
        .requests
        .adjust_priority(&viewer.identity, id, change)
        .await?;
    Ok(back(
        &id.to_string(),
        &format!(
            "Priority adjustment is now {} (priority {}).",
            view.row.priority_adjustment,
            view.row
                .priority_base
                .saturating_add(view.row.priority_adjustment)
        ),
    ))
}
