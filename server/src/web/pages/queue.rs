//! The queue: pending requests by position with why-pending, running ones with their
//! worker and elapsed time, and recent completions; filtered by workspace, status and
//! label (a GET form, so a filtered view is a link).
//!
//! `/ui/queue/rows` answers the same filters with the tables alone; the page's script
//! swaps them in every two seconds. Both read through `WorkRequests` with the viewer's
//! identity (so only the viewer's workspaces show) and render through maud's escaping.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Query, State as Extract};
use axum::routing::get;
use berth_core::error::Error;
use berth_core::work::requests::{ListQuery, RequestView};
use berth_core::work::state::Status;
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use serde::Deserialize;

use crate::web::State;
use crate::web::error::PageError;
use crate::web::layout;
use crate::web::session::{Viewer, percent_encode};

/// The queue's routes.
pub fn routes() -> Router<State> {
    Router::new()
        .route("/ui/queue", get(queue))
        .route("/ui/queue/rows", get(rows))
}

/// Most running requests whose attempts are read for their worker's name.
const RUNNING_SHOWN: usize = 100;
/// Recent completions shown.
const RECENT_SHOWN: u32 = 50;

/// The filters, from the query string.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Filters {
    #[serde(default)]
    workspace: String,
    /// '' for every status, else a status's name.
    #[serde(default)]
    status: String,
    /// `key` or `key=value`: only requests that ask for this worker label.
    #[serde(default)]
    label: String,
    /// A message from the action that sent the viewer here.
    #[serde(default)]
    flash: String,
}

impl Filters {
    fn status(&self) -> Result<Option<Status>, PageError> {
        let text = self.status.trim();
        if text.is_empty() {
            return Ok(None);
        }
        Status::ALL
            .iter()
            .copied()
            .find(|s| s.as_str() == text)
            .map(Some)
            .ok_or_else(|| {
                let known: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
                PageError(Error::InvalidArgument(format!(
                    "status: {text:?} is not a status; use one of {} or leave it empty",
                    known.join(", ")
                )))
            })
    }

    fn wants(&self, status: Status, shown: Option<Status>) -> bool {
        shown.is_none_or(|s| s == status)
    }

    fn query_string(&self) -> String {
        format!(
            "workspace={}&status={}&label={}",
            percent_encode(&self.workspace),
            percent_encode(&self.status),
            percent_encode(&self.label)
        )
    }
}

/// Whether a request asks for the filter's label (`key` or `key=value`).
fn has_label(view: &RequestView, label: &str) -> bool {
    let label = label.trim();
    if label.is_empty() {
        return true;
    }
    let labels = labels(view);
    match label.split_once('=') {
        Some((key, value)) => labels.get(key.trim()).is_some_and(|v| v == value.trim()),
        None => labels.contains_key(label),
    }
}

/// The worker labels a request asks for.
pub(crate) fn labels(view: &RequestView) -> BTreeMap<String, String> {
    view.row
        .requirements
        .as_object()
        .map(|object| {
            object
                .iter()
                .map(|(k, v)| {
                    let value = v
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string());
                    (k.clone(), value)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A status as a small badge.
pub(crate) fn status_badge(view: &RequestView) -> Markup {
    let status = view.row.status.as_str();
    let result = view.row.result.map(|r| r.as_str());
    html! {
        span class=(format!("badge state-{}", result.unwrap_or(status))) data-status=(status) {
            (status)
            @if let Some(result) = result { " · " (result) }
        }
    }
}

/// Whether a status is final (completed or aborted).
pub(crate) fn terminal(status: Status) -> bool {
    matches!(status, Status::Completed | Status::Aborted)
}

/// A duration for people: `3s`, `4m 05s`, `2h 10m`.
pub(crate) fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    }
}

/// A time as UTC text.
pub(crate) fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A request's name (or its id's start) as a link to its page.
pub(crate) fn request_link(view: &RequestView) -> Markup {
    let id = view.row.id.to_string();
    let short: String = id.chars().take(8).collect();
    html! {
        a.request href=(format!("/ui/work-requests/{id}")) data-id=(id) {
            @if view.row.name.is_empty() { code { (short) } } @else { (view.row.name) " " code { (short) } }
        }
    }
}

fn image(view: &RequestView) -> String {
    view.spec()
        .ok()
        .flatten()
        .map(|s| s.to_input().image)
        .unwrap_or_else(|| "(workflow)".into())
}

/// The three tables for these filters.
async fn tables(state: &State, viewer: &Viewer, filters: &Filters) -> Result<Markup, PageError> {
    let shown = filters.status()?;
    let me = &viewer.identity;
    let pending = if filters.wants(Status::Pending, shown) {
        state.requests.queue(me, &filters.workspace, 0).await?
    } else {
        Vec::new()
    };
    let blocked = if filters.wants(Status::Blocked, shown) {
        list(state, viewer, filters, Some(Status::Blocked), 0).await?
    } else {
        Vec::new()
    };
    let mut running = Vec::new();
    if filters.wants(Status::Running, shown) {
        for view in list(state, viewer, filters, Some(Status::Running), 0).await? {
            if running.len() >= RUNNING_SHOWN {
                break;
            }
            // The listing carries no attempts; the single read names the worker.
            match state.requests.get(me, view.row.id).await {
                Ok(full) => running.push(full),
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let recent: Vec<RequestView> = match shown {
        Some(s) if terminal(s) => list(state, viewer, filters, Some(s), RECENT_SHOWN).await?,
        Some(_) => Vec::new(),
        None => list(state, viewer, filters, None, RECENT_SHOWN * 4)
            .await?
            .into_iter()
            .filter(|v| terminal(v.row.status))
            .take(RECENT_SHOWN as usize)
            .collect(),
    };
    let pending: Vec<_> = pending
        .into_iter()
        .filter(|v| has_label(v, &filters.label))
        .collect();
    let now = Utc::now();
    Ok(html! {
        div #queue-tables {
            h2 { "Pending " span.count { (pending.len() + blocked.len()) } }
            @if pending.is_empty() && blocked.is_empty() {
                p.empty { "Nothing is waiting." }
            } @else {
                table #pending {
                    thead { tr { th { "#" } th { "Request" } th { "Workspace" } th { "Image" } th { "Priority" } th { "Waiting" } th { "Why" } } }
                    tbody {
                        @for view in &pending {
                            tr data-id=(view.row.id.to_string()) {
                                td { (view.queue_position) }
                                td { (request_link(view)) }
                                td { (view.workspace) }
                                td { code { (image(view)) } }
                                td { (view.row.priority_base.saturating_add(view.row.priority_adjustment)) }
                                td { (human_duration((now - view.row.created_at).num_seconds())) }
                                td.why { (view.pending_reason) }
                            }
                        }
                        @for view in &blocked {
                            tr data-id=(view.row.id.to_string()) {
                                td { "—" }
                                td { (request_link(view)) }
                                td { (view.workspace) }
                                td { code { (image(view)) } }
                                td { (view.row.priority_base.saturating_add(view.row.priority_adjustment)) }
                                td { (human_duration((now - view.row.created_at).num_seconds())) }
                                td.why { (status_badge(view)) " " (view.pending_reason) }
                            }
                        }
                    }
                }
            }
            h2 { "Running " span.count { (running.len()) } }
            @if running.is_empty() {
                p.empty { "Nothing is running." }
            } @else {
                table #running {
                    thead { tr { th { "Request" } th { "Workspace" } th { "Image" } th { "Worker" } th { "Attempt" } th { "Elapsed" } } }
                    tbody {
                        @for view in &running {
                            @let attempt = view.attempts.last();
                            tr data-id=(view.row.id.to_string()) {
                                td { (request_link(view)) }
                                td { (view.workspace) }
                                td { code { (image(view)) } }
                                td.worker { (attempt.map(|a| a.worker_name.as_str()).unwrap_or("—")) }
                                td { (view.row.attempt_count) }
                                td { (view.row.started_at.map(|at| human_duration((now - at).num_seconds())).unwrap_or_else(|| "starting".into())) }
                            }
                        }
                    }
                }
            }
            h2 { "Recent " span.count { (recent.len()) } }
            @if recent.is_empty() {
                p.empty { "Nothing has finished yet." }
            } @else {
                table #recent {
                    thead { tr { th { "Request" } th { "Workspace" } th { "Image" } th { "Status" } th { "Exit" } th { "Took" } th { "Finished" } } }
                    tbody {
                        @for view in &recent {
                            tr data-id=(view.row.id.to_string()) {
                                td { (request_link(view)) }
                                td { (view.workspace) }
                                td { code { (image(view)) } }
                                td { (status_badge(view)) " " span.reason { (view.row.reason.as_str()) } }
                                td { (view.row.exit_code.map(|c| c.to_string()).unwrap_or_default()) }
                                td { (match (view.row.started_at, view.row.completed_at) { (Some(a), Some(b)) => human_duration((b - a).num_seconds()), _ => String::new() }) }
                                td { (view.row.completed_at.map(when).unwrap_or_default()) }
                            }
                        }
                    }
                }
            }
        }
    })
}

async fn list(
    state: &State,
    viewer: &Viewer,
    filters: &Filters,
    status: Option<Status>,
    page_size: u32,
) -> Result<Vec<RequestView>, PageError> {
    let page = state
        .requests
        .list(
            &viewer.identity,
            ListQuery {
                status,
                workspace: filters.workspace.trim().to_owned(),
                page_size,
                page_token: String::new(),
            },
        )
        .await?;
    Ok(page
        .requests
        .into_iter()
        .filter(|v| has_label(v, &filters.label))
        .collect())
}

/// A flash message from an action, escaped like everything else.
pub(crate) fn flash(message: &str) -> Markup {
    html! {
        @if !message.is_empty() { p.flash role="status" { (message) } }
    }
}

async fn queue(
    viewer: Viewer,
    Extract(state): Extract<State>,
    Query(filters): Query<Filters>,
) -> Result<Markup, PageError> {
    let tables = tables(&state, &viewer, &filters).await?;
    let refresh = format!("/ui/queue/rows?{}", filters.query_string());
    let statuses = Status::ALL.iter().map(|s| s.as_str());
    let body = html! {
        h1 { "Queue" }
        (flash(&filters.flash))
        form.filters method="get" action="/ui/queue" {
            label { "Workspace " input type="text" name="workspace" value=(filters.workspace) placeholder="all"; }
            " "
            label { "Status "
                select name="status" {
                    option value="" selected[filters.status.is_empty()] { "any" }
                    @for s in statuses {
                        option value=(s) selected[filters.status == s] { (s) }
                    }
                }
            }
            " "
            label { "Label " input type="text" name="label" value=(filters.label) placeholder="key or key=value"; }
            " "
            button type="submit" { "Filter" }
        }
        div data-refresh=(refresh) data-refresh-target="queue-tables" { (tables) }
    };
    Ok(layout::page(&viewer, "/ui/queue", "Queue", body))
}

async fn rows(
    viewer: Viewer,
    Extract(state): Extract<State>,
    Query(filters): Query<Filters>,
) -> Result<Markup, PageError> {
    tables(&state, &viewer, &filters).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_say_them() {
        assert_eq!(human_duration(-3), "0s");
        assert_eq!(human_duration(59), "59s");
        assert_eq!(human_duration(65), "1m 05s");
        assert_eq!(human_duration(7260), "2h 01m");
    }

    #[test]
    fn an_unknown_status_names_the_choices() {
        let filters = Filters {
            status: "done".into(),
            ..Filters::default()
        };
        match filters.status() {
            Err(PageError(Error::InvalidArgument(m))) => assert!(m.contains("pending"), "{m}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}
