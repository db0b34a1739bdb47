//! Triggers: the rules of the workspaces the viewer may read (type, active or paused,
//! next and last fire), a rule's page (its configuration, what it runs with secret
//! overrides named but never shown, the next fire times from the schedule preview, and
//! its recent events with their outcome and the request each made), and the actions
//! **pause** and **resume**, checked against `TriggerService/PauseTriggerRule` and
//! `ResumeTriggerRule` and the form's CSRF token.
//!
//! It reads and acts only through the `triggers` front, as `api::triggers` does; it
//! never reads sealed action secrets or a topic event's message.

use axum::Router;
use axum::extract::{Path, Query, State as Extract};
use axum::response::Redirect;
use axum::routing::{get, post};
use berth_core::triggers::{EventQuery, PreviewOf, RuleKind, RuleRef, RuleView};
use maud::{Markup, html};
use serde::Deserialize;

use crate::web::State;
use crate::web::error::{PageError, PageForm};
use crate::web::layout;
use crate::web::pages::shared::{
    Flash, WorkspaceFilter, across_workspaces, back, flash, pairs, workspace_filter,
};
use crate::web::session::{Viewer, percent_encode};

const PAUSE: &str = "/berth.v1.TriggerService/PauseTriggerRule";
const RESUME: &str = "/berth.v1.TriggerService/ResumeTriggerRule";

/// How many upcoming fire times a schedule rule's page shows.
const PREVIEW: u32 = 5;
/// How many recent events a rule's page shows.
const EVENTS: u32 = 25;

/// The triggers' routes.
pub fn routes() -> Router<State> {
    Router::new()
        .route("/ui/triggers", get(list))
        .route("/ui/triggers/{workspace}/{name}", get(rule))
        .route("/ui/triggers/{workspace}/{name}/pause", post(pause))
        .route("/ui/triggers/{workspace}/{name}/resume", post(resume))
}

fn when(at: Option<chrono::DateTime<chrono::Utc>>) -> Markup {
    html! { @match at {
        Some(at) => { time datetime=(at.to_rfc3339()) { (at.format("%Y-%m-%d %H:%M:%S UTC")) } }
        None => { span.muted { "—" } }
    } }
}

fn state_of(view: &RuleView) -> Markup {
    html! {
        @if view.row.archived_at.is_some() { span.muted.archived { "archived" } }
        @else if view.row.active { span.state-running.active { "active" } }
        @else {
            span.state-pending.paused { "paused" }
            @if !view.row.pause_note.is_empty() { " (" (view.row.pause_note) ")" }
        }
    }
}

fn rule_url(view: &RuleView) -> String {
    format!(
        "/ui/triggers/{}/{}",
        percent_encode(&view.workspace),
        percent_encode(&view.row.name)
    )
}

async fn list(
    viewer: Viewer,
    Extract(state): Extract<State>,
    Query(filter): Query<WorkspaceFilter>,
) -> Result<Markup, PageError> {
    // The closure borrows what the page holds; each workspace is read in turn.
    let (state, viewer, filter) = (&state, &viewer, &filter);
    let (rules, all) =
        across_workspaces(state, viewer, &filter.workspace, |workspace| async move {
            state
                .triggers
                .list(&viewer.identity, &workspace, false)
                .await
        })
        .await?;
    let body = html! {
        h1 { "Triggers" }
        (flash(&filter.flash))
        (workspace_filter("/ui/triggers", &filter.workspace, &all))
        @if rules.is_empty() {
            p.empty { "No trigger rules yet: make one with "
                code { "berth trigger create" }
                " (" code { "berth trigger create --help" } " shows the rule types)." }
        } @else {
            table #triggers {
                thead { tr {
                    th { "workspace" } th { "rule" } th { "type" } th { "state" }
                    th { "next fire" } th { "last fired" } th { "template" }
                } }
                tbody { @for view in &rules {
                    tr data-rule=(view.row.name) {
                        td { (view.workspace) }
                        td { a href=(rule_url(view)) { (view.row.name) } }
                        td { (view.row.kind) }
                        td { (state_of(view)) }
                        td { (when(view.row.next_fire_at)) }
                        td { (when(view.row.last_fired_at)) }
                        td { code { (view.action.template) } }
                    }
                } }
            }
        }
    };
    Ok(layout::page(viewer, "/ui/triggers", "Triggers", body))
}

async fn rule(
    viewer: Viewer,
    Extract(state): Extract<State>,
    Path((workspace, name)): Path<(String, String)>,
    Query(shown): Query<Flash>,
) -> Result<Markup, PageError> {
    let at = RuleRef { workspace, name };
    let view = state.triggers.get(&viewer.identity, &at).await?;
    let kind = view.row.kind()?;
    // Upcoming fire times only for a live schedule rule; a failing preview is shown as
    // its message rather than failing the page.
    let preview = if kind == RuleKind::Schedule && view.row.archived_at.is_none() {
        Some(
            state
                .triggers
                .preview(&viewer.identity, PreviewOf::Rule(at.clone()), PREVIEW)
                .await,
        )
    } else {
        None
    };
    let events = state
        .triggers
        .list_events(
            &viewer.identity,
            EventQuery {
                workspace: at.workspace.clone(),
                rule: at.name.clone(),
                limit: EVENTS,
                ..EventQuery::default()
            },
        )
        .await?
        .events;
    let url = rule_url(&view);
    let action = &view.action;
    let config = serde_json::to_string_pretty(&view.row.config).unwrap_or_default();
    let body = html! {
        h1 { "Trigger " (view.row.name) }
        (flash(&shown.flash))
        dl.fields {
            dt { "workspace" } dd { (view.workspace) }
            dt { "type" } dd { (kind.as_str()) }
            dt { "state" } dd #rule-state { (state_of(&view)) }
            dt { "created" } dd { (when(Some(view.row.created_at))) " by " (view.created_by) }
            dt { "last fired" } dd { (when(view.row.last_fired_at)) }
            dt { "next fire" } dd { (when(view.row.next_fire_at)) }
        }
        @if view.row.archived_at.is_none() {
            p.actions {
                @if view.row.active && viewer.may(PAUSE) {
                    form.inline method="post" action=(format!("{url}/pause")) {
                        (layout::csrf_field(&viewer))
                        input type="text" name="note" placeholder="why (optional)";
                        " " button type="submit" { "Pause" }
                    }
                }
                @if !view.row.active && viewer.may(RESUME) {
                    form.inline method="post" action=(format!("{url}/resume")) {
                        (layout::csrf_field(&viewer))
                        button type="submit" { "Resume" }
                    }
                }
            }
        }
        h2 { "Configuration" }
        pre.mono { (config) }
        h2 { "What it runs" }
        dl.fields {
            dt { "template" } dd { code { (action.template) }
                @if let Some(v) = action.version { " v" (v) } @else { " (latest release)" } }
            @if !action.command.is_empty() {
                dt { "command" } dd { code { (action.command.join(" ")) } }
            }
            @if !action.env.is_empty() {
                dt { "env" } dd { @for (k, v) in &action.env { code { (k) "=" (v) } " " } }
            }
            @if !action.secret_env_keys.is_empty() {
                dt { "secret env" } dd { @for k in &action.secret_env_keys { code { (k) "=•••" } " " } }
            }
            @if !action.params.is_empty() {
                dt { "parameters" } dd { @for (k, v) in &action.params { code { (k) "=" (v) } " " } }
            }
        }
        @if let Some(preview) = &preview {
            h2 { "Next fire times" }
            @match preview {
                Ok((times, zone)) => {
                    @if times.is_empty() { p.empty { "No upcoming fire times." } }
                    @else {
                        p.muted { "In " (zone) "." }
                        ol #fire-times { @for t in times {
                            li { time datetime=(t.at.to_rfc3339()) { (t.local) }
                                @if !t.note.is_empty() { " " span.muted { (t.note) } } }
                        } }
                    }
                }
                Err(e) => { p.error { (e.public_message()) } }
            }
        }
        h2 { "Recent events" }
        @if events.is_empty() {
            p.empty { "No events yet: the rule has not fired. Fire it now with "
                code { "berth trigger fire " (view.row.name) " --workspace " (view.workspace) } "." }
        } @else {
            table #events {
                thead { tr { th { "when" } th { "outcome" } th { "reason" } th { "nominal time" } th { "request" } th { "about" } } }
                tbody { @for event in &events {
                    @let row = &event.row;
                    tr {
                        td { (when(Some(row.occurred_at))) }
                        td class=(format!("state-{}", row.outcome)) { (row.outcome) }
                        td { (row.reason) }
                        td { (when(row.nominal_at)) }
                        td { @if let Some(id) = row.work_request_id {
                            a href=(format!("/ui/work-requests/{id}")) { code { (id) } }
                        } @else { span.muted { "—" } } }
                        td { @for (k, v) in pairs(&row.description) { code { (k) "=" (v) } " " } }
                    }
                } }
            }
        }
    };
    Ok(layout::page(
        &viewer,
        "/ui/triggers",
        &format!("Trigger {}", view.row.name),
        body,
    ))
}

#[derive(Deserialize)]
struct PauseForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    note: String,
}

async fn pause(
    viewer: Viewer,
    Extract(state): Extract<State>,
    Path((workspace, name)): Path<(String, String)>,
    PageForm(form): PageForm<PauseForm>,
) -> Result<Redirect, PageError> {
    viewer.check_csrf(&form.csrf)?;
    viewer.require(PAUSE)?;
    let view = state
        .triggers
        .pause(
            &viewer.identity,
            &RuleRef { workspace, name },
            form.note.trim(),
        )
        .await?;
    Ok(back(
        &rule_url(&view),
        &format!(
            "Trigger {} is paused: it does not fire until resumed.",
            view.row.name
        ),
    ))
}

async fn resume(
    viewer: Viewer,
    Extract(state): Extract<State>,
    Path((workspace, name)): Path<(String, String)>,
    PageForm(form): PageForm<PauseForm>,
) -> Result<Redirect, PageError> {
    viewer.check_csrf(&form.csrf)?;
    viewer.require(RESUME)?;
    let view = state
        .triggers
        .resume(&viewer.identity, &RuleRef { workspace, name })
        .await?;
    Ok(back(
        &rule_url(&view),
        &format!("Trigger {} is active again.", view.row.name),
    ))
}
