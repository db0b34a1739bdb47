//! Services: the services of the workspaces the viewer may read (template release,
//! desired against running replicas, deploy state), and a service's page with every
//! replica slot (its state, release, request and worker, failures, next restart) and the
//! recent events of its history.
//!
//! It reads only through the `services` front (`ServiceManager`), as `api::services`
//! does; it changes nothing and never reads a release's sealed secrets.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Path, Query, State as Extract};
use axum::routing::get;
use berth_core::services::{HistoryQuery, Process, ReplicaState, ServiceRef, ServiceView};
use maud::{Markup, html};

use crate::web::State;
use crate::web::error::PageError;
use crate::web::layout;
use crate::web::pages::shared::{WorkspaceFilter, across_workspaces, workspace_filter};
use crate::web::session::{Viewer, percent_encode};

/// How many history events a service's page shows.
const EVENTS: u32 = 50;

/// The services' routes.
pub fn routes() -> Router<State> {
    Router::new()
        .route("/ui/services", get(list))
        .route("/ui/services/{workspace}/{name}", get(service))
}

fn service_url(view: &ServiceView) -> String {
    format!(
        "/ui/services/{}/{}",
        percent_encode(&view.workspace),
        percent_encode(&view.row.name)
    )
}

/// The replicas each process type should have.
fn desired(view: &ServiceView) -> BTreeMap<String, u32> {
    serde_json::from_value::<BTreeMap<String, Process>>(view.row.processes.clone())
        .map(|processes| {
            processes
                .into_iter()
                .map(|(name, p)| (name, p.replicas))
                .collect()
        })
        .unwrap_or_default()
}

/// Replicas whose container is up (starting or healthy or unhealthy).
fn running(view: &ServiceView) -> usize {
    view.replicas
        .iter()
        .filter(|r| {
            matches!(
                r.state,
                ReplicaState::Starting | ReplicaState::Healthy | ReplicaState::Unhealthy
            )
        })
        .count()
}

fn healthy(view: &ServiceView) -> usize {
    view.replicas
        .iter()
        .filter(|r| r.state == ReplicaState::Healthy)
        .count()
}

async fn list(
    viewer: Viewer,
    Extract(state): Extract<State>,
    Query(filter): Query<WorkspaceFilter>,
) -> Result<Markup, PageError> {
    // The closure borrows what the page holds; each workspace is read in turn.
    let (state, viewer, filter) = (&state, &viewer, &filter);
    let (services, all) =
        across_workspaces(state, viewer, &filter.workspace, |workspace| async move {
            state
                .service_manager
                .list(&viewer.identity, &workspace)
                .await
        })
        .await?;
    let body = html! {
        h1 { "Services" }
        (workspace_filter("/ui/services", &filter.workspace, &all))
        @if services.is_empty() {
            p.empty { "No services yet: run a job template as one with "
                code { "berth service create" } " (" code { "berth service create --help" } ")." }
        } @else {
            table #services {
                thead { tr {
                    th { "workspace" } th { "service" } th { "template" } th { "desired" }
                    th { "running" } th { "healthy" } th { "deploy" }
                } }
                tbody { @for view in &services {
                    tr data-service=(view.row.name) {
                        td { (view.workspace) }
                        td { a href=(service_url(view)) { (view.row.name) } }
                        td { code { (view.template) " v" (view.row.version) } }
                        td { @for (process, n) in desired(view) { (process) "×" (n) " " } }
                        td { (running(view)) }
                        td { (healthy(view)) }
                        td { @if view.row.deploy_state.is_empty() { span.muted { "—" } }
                             @else { (view.row.deploy_state) } }
                    }
                } }
            }
        }
    };
    Ok(layout::page(viewer, "/ui/services", "Services", body))
}

async fn service(
    viewer: Viewer,
    Extract(state): Extract<State>,
    Path((workspace, name)): Path<(String, String)>,
) -> Result<Markup, PageError> {
    let at = ServiceRef { workspace, name };
    let view = state.service_manager.get(&viewer.identity, &at).await?;
    let history = state
        .service_manager
        .history(
            &viewer.identity,
            &HistoryQuery {
                service: at.clone(),
                limit: EVENTS,
                ..HistoryQuery::default()
            },
        )
        .await?;
    let wanted: u32 = desired(&view).values().sum();
    let body = html! {
        h1 { "Service " (view.row.name) }
        dl.fields {
            dt { "workspace" } dd { (view.workspace) }
            dt { "template" } dd {
                a href=(format!("/ui/templates/{}/{}", percent_encode(&view.workspace), percent_encode(&view.template))) {
                    code { (view.template) } }
                " v" (view.row.version)
                @if let Some(stable) = view.row.stable_version { " (stable v" (stable) ")" } }
            dt { "replicas" } dd #desired-running {
                (running(&view)) " running of " (wanted) " desired, " (healthy(&view)) " healthy" }
            dt { "processes" } dd { @for (process, n) in desired(&view) { code { (process) "×" (n) } " " } }
            dt { "restart" } dd { (view.row.restart_policy) }
            @if !view.row.deploy_state.is_empty() {
                dt { "deploy" } dd { (view.row.deploy_state)
                    @if let Some(from) = view.row.deploy_from { " from v" (from) } }
            }
            dt { "created by" } dd { (view.created_by) }
        }
        h2 { "Replicas" }
        @if view.replicas.is_empty() {
            p.empty { "No replicas: scale it up with " code { "berth service scale" } "." }
        } @else {
            table #replicas {
                thead { tr {
                    th { "replica" } th { "state" } th { "release" } th { "request" }
                    th { "worker" } th { "failures" } th { "next restart" } th { "healthy since" }
                } }
                tbody { @for r in &view.replicas {
                    tr data-replica=(r.name.to_string()) {
                        td { code { (r.name.to_string()) } }
                        td class=(format!("state-{}", r.state.as_str())) { (r.state.as_str()) }
                        td { "v" (r.version) }
                        td { @match &r.request_id {
                            Some(id) => { a href=(format!("/ui/work-requests/{id}")) { code { (id) } } }
                            None => { span.muted { "—" } }
                        } }
                        td { @match &r.worker { Some(w) => { (w) } None => { span.muted { "—" } } } }
                        td { (r.failures) }
                        td { @match r.restart_at {
                            Some(at) => { (at.format("%H:%M:%S UTC")) }
                            None => { span.muted { "—" } } } }
                        td { @match r.healthy_since {
                            Some(at) => { (at.format("%Y-%m-%d %H:%M:%S UTC")) }
                            None => { span.muted { "—" } } } }
                    }
                } }
            }
        }
        h2 { "Recent events" }
        @if history.events.is_empty() {
            p.empty { "No events yet." }
        } @else {
            table #service-events {
                thead { tr {
                    th { "when" } th { "replica" } th { "event" } th { "reason" } th { "release" }
                    th { "request" } th { "worker" } th { "exit" } th { "by" }
                } }
                tbody { @for e in &history.events {
                    @let row = &e.row;
                    tr {
                        td { (row.at.format("%Y-%m-%d %H:%M:%S UTC")) }
                        td { @if let (Some(p), Some(i)) = (&row.process, row.slot_index) { code { (p) "." (i) } } }
                        td { (row.kind) }
                        td { (row.reason) }
                        td { @if let Some(v) = row.version { "v" (v) } }
                        td { @if let Some(id) = row.request_id {
                            a href=(format!("/ui/work-requests/{id}")) { code { (id) } } } }
                        td { @if let Some(w) = &e.worker { (w) } }
                        td { @if let Some(code) = row.exit_code { (code) } }
                        td { @if let Some(by) = &e.by { (by) } }
                    }
                } }
            }
        }
    };
    Ok(layout::page(
        &viewer,
        "/ui/services",
        &format!("Service {}", view.row.name),
        body,
    ))
}
