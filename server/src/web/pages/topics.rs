//! Topics: the topics of the workspaces the viewer may read (policy, availability,
//! retention), and a topic's page with its stored message count, grants and every
//! subscription with its backlog (messages owed, of those in flight), the age of the
//! oldest owed message and its live consumers.
//!
//! It reads only through the `topics` front, as `api::topics` does; it never shows a
//! message's content and changes nothing.

use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State as Extract};
use axum::routing::get;
use berth_core::topics::{TopicRef, TopicView};
use maud::{Markup, html};

use crate::web::State;
use crate::web::error::PageError;
use crate::web::layout;
use crate::web::pages::shared::{WorkspaceFilter, across_workspaces, workspace_filter};
use crate::web::session::{Viewer, percent_encode};

/// The topics' routes.
pub fn routes() -> Router<State> {
    Router::new()
        .route("/ui/topics", get(list))
        .route("/ui/topics/{workspace}/{slug}", get(topic))
}

fn topic_url(view: &TopicView) -> String {
    format!(
        "/ui/topics/{}/{}",
        percent_encode(&view.workspace),
        percent_encode(&view.row.slug)
    )
}

/// A duration as a person reads it: `4s`, `3m 20s`, `2h 5m`, `3d 4h`.
fn readable(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86400, (s % 86400) / 3600),
    }
}

fn retention(view: &TopicView) -> String {
    let age = view
        .row
        .max_age_ms
        .and_then(|ms| u64::try_from(ms).ok())
        .map(|ms| format!("{} at most", readable(Duration::from_millis(ms))));
    let count = view
        .row
        .max_messages
        .map(|n| format!("{n} messages at most"));
    match (age, count) {
        (None, None) => "kept until collected by policy".into(),
        (Some(a), None) => a,
        (None, Some(c)) => c,
        (Some(a), Some(c)) => format!("{a}, {c}"),
    }
}

async fn list(
    viewer: Viewer,
    Extract(state): Extract<State>,
    Query(filter): Query<WorkspaceFilter>,
) -> Result<Markup, PageError> {
    // The closure borrows what the page holds; each workspace is read in turn.
    let (state, viewer, filter) = (&state, &viewer, &filter);
    let (topics, all) =
        across_workspaces(state, viewer, &filter.workspace, |workspace| async move {
            state.topics.list_topics(&viewer.identity, &workspace).await
        })
        .await?;
    let body = html! {
        h1 { "Topics" }
        (workspace_filter("/ui/topics", &filter.workspace, &all))
        @if topics.is_empty() {
            p.empty { "No topics yet: make one with "
                code { "berth topic create" } " (" code { "berth topic create --help" } ")." }
        } @else {
            table #topics {
                thead { tr {
                    th { "workspace" } th { "topic" } th { "store policy" } th { "availability" }
                    th { "consumers" } th { "retention" } th { "description" }
                } }
                tbody { @for view in &topics {
                    tr data-topic=(view.row.slug) {
                        td { (view.workspace) }
                        td { a href=(topic_url(view)) { (view.row.slug) }
                            @if view.row.is_system { " " span.muted { "(system)" } } }
                        td { (view.row.store_policy) }
                        td { (view.availability.state.as_str()) }
                        td { (view.availability.live_consumers) }
                        td { (retention(view)) }
                        td { (view.row.description) }
                    }
                } }
            }
        }
    };
    Ok(layout::page(viewer, "/ui/topics", "Topics", body))
}

async fn topic(
    viewer: Viewer,
    Extract(state): Extract<State>,
    Path((workspace, slug)): Path<(String, String)>,
) -> Result<Markup, PageError> {
    let at = TopicRef { workspace, slug };
    let view = state.topics.get_topic(&viewer.identity, &at).await?;
    let subscriptions = state
        .topics
        .list_subscriptions(&viewer.identity, &at)
        .await?;
    let body = html! {
        h1 { "Topic " (view.row.slug) }
        dl.fields {
            dt { "workspace" } dd { (view.workspace) }
            dt { "description" } dd { (view.row.description) }
            dt { "store policy" } dd { (view.row.store_policy) }
            dt { "stored messages" } dd #stored { (view.stored_messages.unwrap_or(0)) }
            dt { "retention" } dd { (retention(&view)) }
            dt { "availability" } dd { (view.availability.state.as_str())
                ", " (view.availability.live_consumers) " live consumers" }
            dt { "public" } dd { (if view.row.is_public { "yes" } else { "no" }) }
            @if !view.response_for.is_empty() {
                dt { "answers" } dd { (view.response_for) " (for " (view.owner) ")" }
            }
            dt { "created by" } dd { (view.created_by) }
        }
        @if !view.grants.is_empty() {
            h2 { "Grants" }
            table #grants {
                thead { tr { th { "principal" } th { "produce" } th { "consume" } } }
                tbody { @for g in &view.grants {
                    tr { td { code { (g.principal) } }
                         td { (if g.produce { "yes" } else { "no" }) }
                         td { (if g.consume { "yes" } else { "no" }) } }
                } }
            }
        }
        h2 { "Subscriptions" }
        @if subscriptions.is_empty() {
            p.empty { "No subscriptions yet: make one with "
                code { "berth subscription create" } " (" code { "berth subscription create --help" } ")." }
        } @else {
            table #subscriptions {
                thead { tr {
                    th { "subscription" } th { "backlog" } th { "in flight" } th { "oldest owed" }
                    th { "consumers" } th { "max deliveries" } th { "dead letters to" } th { "created by" }
                } }
                tbody { @for s in &subscriptions {
                    tr data-subscription=(s.row.name) {
                        td { code { (s.row.name) } @if s.row.internal { " " span.muted { "(internal)" } } }
                        td.backlog { (s.backlog) }
                        td.in-flight { (s.in_flight) }
                        td { @match s.oldest_unacked {
                            Some(age) => { (readable(age)) }
                            None => { span.muted { "—" } } } }
                        td { (s.live_consumers) }
                        td { (s.row.max_deliveries) }
                        td { @if s.dead_letter_topic.is_empty() { span.muted { "—" } }
                             @else { (s.dead_letter_topic) } }
                        td { (s.created_by) }
                    }
                } }
            }
        }
    };
    Ok(layout::page(
        &viewer,
        "/ui/topics",
        &format!("Topic {}", view.row.slug),
        body,
    ))
}
