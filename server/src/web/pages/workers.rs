//! Workers: every worker the fleet knows (connected or not, labels, facts, running
//! against slots, draining, enabled) and the two actions operators use daily, **drain**
//! and **enable**, each checked against its gRPC method's rule and the form's CSRF token.
//!
//! It reads and acts only through `fleet::workers`, with the same calls as
//! `api::workers`; it never touches worker sessions or the hub.

use axum::Router;
use axum::extract::{Query, State as Extract};
use axum::response::Redirect;
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::Deserialize;

use crate::web::State;
use crate::web::error::{PageError, PageForm};
use crate::web::layout;
use crate::web::pages::shared::{Flash, back, flash, pairs};
use crate::web::session::Viewer;

const DRAIN: &str = "/berth.v1.WorkerService/DrainWorker";
const ENABLE: &str = "/berth.v1.WorkerService/EnableWorker";

/// The workers' routes.
pub fn routes() -> Router<State> {
    Router::new()
        .route("/ui/workers", get(list))
        .route("/ui/workers/drain", post(drain))
        .route("/ui/workers/enable", post(enable))
}

async fn list(
    viewer: Viewer,
    Extract(state): Extract<State>,
    Query(shown): Query<Flash>,
) -> Result<Markup, PageError> {
    let workers = state.workers.list().await?;
    let may_drain = viewer.may(DRAIN);
    let may_enable = viewer.may(ENABLE);
    let body = html! {
        h1 { "Workers" }
        (flash(&shown.flash))
        @if workers.is_empty() {
            p.empty { "No workers yet: start one with "
                code { "berth-worker --server URL --token WORKER_TOKEN --name NAME" }
                " (an admin makes the token with " code { "berth token create --role worker" } ")." }
        } @else {
            table #workers {
                thead { tr {
                    th { "name" } th { "state" } th { "running / slots" } th { "labels" }
                    th { "facts" } th { "workspaces" } th { "last heartbeat" }
                    @if may_drain || may_enable { th { "actions" } }
                } }
                tbody {
                    @for view in &workers {
                        @let row = &view.row;
                        tr data-worker=(row.name) {
                            td { code { (row.name) } }
                            td.state {
                                @if row.connected_at.is_some() { span.state-running { "connected" } }
                                @else { span.muted { "disconnected" } }
                                @if row.draining { " · " span.state-pending.draining { "draining" } }
                                @if !row.enabled { " · " span.state-failure.disabled { "disabled" } }
                            }
                            td { (view.running) " / " (row.concurrency) }
                            td { @for (k, v) in pairs(&row.labels) { code { (k) "=" (v) } " " } }
                            td { @for (k, v) in pairs(&row.metadata) { code { (k) "=" (v) } " " } }
                            td {
                                @if view.workspaces.is_empty() { span.muted { "any" } }
                                @else { (view.workspaces.join(", ")) }
                            }
                            td { @match row.last_heartbeat_at {
                                Some(at) => { (at.format("%Y-%m-%d %H:%M:%S UTC")) }
                                None => { span.muted { "never" } }
                            } }
                            @if may_drain || may_enable {
                                td {
                                    @if may_drain && !row.draining {
                                        form.inline method="post" action="/ui/workers/drain" {
                                            (layout::csrf_field(&viewer))
                                            input type="hidden" name="name" value=(row.name);
                                            button type="submit" { "Drain" }
                                        }
                                    }
                                    @if may_enable && (row.draining || !row.enabled) {
                                        " "
                                        form.inline method="post" action="/ui/workers/enable" {
                                            (layout::csrf_field(&viewer))
                                            input type="hidden" name="name" value=(row.name);
                                            button type="submit" { "Enable" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(&viewer, "/ui/workers", "Workers", body))
}

#[derive(Deserialize)]
struct WorkerForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

async fn drain(
    viewer: Viewer,
    Extract(state): Extract<State>,
    PageForm(form): PageForm<WorkerForm>,
) -> Result<Redirect, PageError> {
    viewer.check_csrf(&form.csrf)?;
    viewer.require(DRAIN)?;
    let view = state
        .workers
        .drain(&form.name, &viewer.identity.name)
        .await?;
    Ok(back(
        "/ui/workers",
        &format!(
            "Worker {} is draining: it takes no new work and finishes what it runs.",
            view.row.name
        ),
    ))
}

async fn enable(
    viewer: Viewer,
    Extract(state): Extract<State>,
    PageForm(form): PageForm<WorkerForm>,
) -> Result<Redirect, PageError> {
    viewer.check_csrf(&form.csrf)?;
    viewer.require(ENABLE)?;
    let view = state
        .workers
        .set_enabled(&form.name, true, &viewer.identity.name)
        .await?;
    Ok(back(
        "/ui/workers",
        &format!("Worker {} is enabled and takes work again.", view.row.name),
    ))
}
