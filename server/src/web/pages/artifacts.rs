//! Artifacts and collections: the artifacts of the workspaces the viewer may read
//! (filtered by workspace and category, newest first, one page), an artifact's page (its
//! data, files with sizes and download links, relations both ways, the request that made
//! it), the collections of those workspaces and a collection's page with its items.
//!
//! It reads only through the `artifacts` and `collections` fronts, as `api::artifacts`
//! and `api::collections` do. It links to the file downloads
//! (`/ui/artifacts/{id}/files/{path}`) but does not serve them, and never shows a store's
//! credentials (an artifact names its store, nothing more).

use axum::Router;
use axum::extract::{Path, Query, State as Extract};
use axum::routing::get;
use berth_core::artifacts::artifacts::{ArtifactView, ListQuery};
use maud::{Markup, html};
use serde::Deserialize;

use crate::web::State;
use crate::web::error::PageError;
use crate::web::layout;
use crate::web::pages::shared::{across_workspaces, workspace_filter};
use crate::web::session::{Viewer, percent_encode};

/// How many artifacts a list page shows per workspace.
const PAGE: u32 = 100;

/// The artifacts' and collections' routes.
pub fn routes() -> Router<State> {
    Router::new()
        .route("/ui/artifacts", get(list))
        .route("/ui/artifacts/{id}", get(artifact))
        .route("/ui/collections", get(collections))
        .route("/ui/collections/{workspace}/{name}", get(collection))
}

/// Bytes as a person reads them: `512 B`, `1.5 KiB`, `3.2 GiB`.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A JSON document pretty-printed, or as given when it is not JSON.
fn pretty(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_owned())
}

fn artifact_url(id: impl std::fmt::Display) -> String {
    format!("/ui/artifacts/{id}")
}

#[derive(Deserialize, Default)]
struct ArtifactFilter {
    #[serde(default)]
    workspace: String,
    #[serde(default)]
    category: String,
}

async fn list(
    viewer: Viewer,
    Extract(state): Extract<State>,
    Query(filter): Query<ArtifactFilter>,
) -> Result<Markup, PageError> {
    // The closure borrows what the page holds; each workspace is read in turn.
    let (state, viewer, filter) = (&state, &viewer, &filter);
    let (mut artifacts, all): (Vec<ArtifactView>, _) =
        across_workspaces(state, viewer, &filter.workspace, |workspace| async move {
            let query = ListQuery {
                workspace,
                category: filter.category.trim().to_owned(),
                page_size: PAGE,
                ..ListQuery::default()
            };
            Ok(state
                .artifacts
                .list(&viewer.identity, query)
                .await?
                .artifacts)
        })
        .await?;
    artifacts.sort_by_key(|a| std::cmp::Reverse(a.created_at));
    let body = html! {
        h1 { "Artifacts" }
        p { a href="/ui/collections" { "Collections" } }
        form.filters method="get" action="/ui/artifacts" {
            label { "workspace "
                select name="workspace" {
                    option value="" selected[filter.workspace.is_empty()] { "all" }
                    @for name in &all { option value=(name) selected[*name == filter.workspace] { (name) } }
                }
            }
            label { "category " input type="text" name="category" value=(filter.category); }
            button type="submit" { "Show" }
        }
        @if artifacts.is_empty() {
            p.empty { "No artifacts here yet: a job's declared outputs become artifacts, or make one with "
                code { "berth artifact create" } " (" code { "berth artifact create --help" } ")." }
        } @else {
            table #artifacts {
                thead { tr {
                    th { "artifact" } th { "workspace" } th { "category" } th { "files" }
                    th { "size" } th { "created" } th { "by" } th { "expires" }
                } }
                tbody { @for a in &artifacts {
                    tr data-artifact=(a.id) {
                        td { a href=(artifact_url(a.id)) { code { (a.id) } }
                            @if !a.complete { " " span.state-pending { "(uploading)" } } }
                        td { (a.workspace) }
                        td { (a.category) }
                        td { (a.file_count) }
                        td { (size(a.total_size)) }
                        td { (a.created_at.format("%Y-%m-%d %H:%M:%S UTC")) }
                        td { @match (&a.created_by, a.work_request_id) {
                            (_, Some(id)) => { a href=(format!("/ui/work-requests/{id}")) { "request" } }
                            (Some(user), None) => { (user) }
                            (None, None) => { span.muted { "—" } }
                        } }
                        td { @match a.expires_at {
                            Some(at) => { (at.format("%Y-%m-%d %H:%M UTC")) }
                            None => { span.muted { "never" } } } }
                    }
                } }
            }
        }
    };
    Ok(layout::page(viewer, "/ui/artifacts", "Artifacts", body))
}

async fn artifact(
    viewer: Viewer,
    Extract(state): Extract<State>,
    Path(id): Path<String>,
) -> Result<Markup, PageError> {
    let a = state.artifacts.get(&viewer.identity, &id).await?;
    let body = html! {
        h1 { "Artifact " code { (a.id) } }
        dl.fields {
            dt { "workspace" } dd { (a.workspace) }
            dt { "category" } dd { (a.category) }
            dt { "state" } dd { (if a.complete { "complete" } else { "uploading" }) }
            dt { "size" } dd { (size(a.total_size)) " in " (a.file_count) " files" }
            dt { "created" } dd { (a.created_at.format("%Y-%m-%d %H:%M:%S UTC"))
                @if let Some(user) = &a.created_by { " by " (user) } }
            @if let Some(request) = a.work_request_id {
                dt { "made by" } dd { a href=(format!("/ui/work-requests/{request}")) { code { (request) } }
                    @if let Some(n) = a.attempt { " attempt " (n) } }
            }
            dt { "expires" } dd { @match a.expires_at {
                Some(at) => { (at.format("%Y-%m-%d %H:%M:%S UTC")) }
                None => { "never" } } }
            dt { "store" } dd { (a.store) }
        }
        h2 { "Data" }
        pre.mono #data { (pretty(&a.data)) }
        h2 { "Files" }
        @if a.files.is_empty() {
            p.empty { "No files." }
        } @else {
            table #files {
                thead { tr { th { "path" } th { "size" } th { "mode" } th { "sha256" } } }
                tbody { @for f in &a.files {
                    tr {
                        td { @if !f.symlink.is_empty() {
                                code { (f.path) } " → " code { (f.symlink) }
                            } @else if f.uploaded && a.complete {
                                a href=(format!("/ui/artifacts/{}/files/{}", a.id, percent_encode(&f.path))) { code { (f.path) } }
                            } @else {
                                code { (f.path) } " " span.muted { "(not uploaded)" }
                            } }
                        td { (size(f.size)) }
                        td { code { (format!("{:o}", f.mode)) } }
                        td { code.muted { (f.sha256) } }
                    }
                } }
            }
        }
        h2 { "Relations" }
        @if a.relations.is_empty() {
            p.empty { "No relations." }
        } @else {
            ul #relations { @for r in &a.relations {
                li { @if r.incoming {
                        a href=(artifact_url(r.other)) { code { (r.other) } } " " (r.kind.as_str()) " this"
                    } @else {
                        "this " (r.kind.as_str()) " " a href=(artifact_url(r.other)) { code { (r.other) } }
                    } }
            } }
        }
    };
    Ok(layout::page(&viewer, "/ui/artifacts", "Artifact", body))
}

#[derive(Deserialize, Default)]
struct CollectionFilter {
    #[serde(default)]
    workspace: String,
}

async fn collections(
    viewer: Viewer,
    Extract(state): Extract<State>,
    Query(filter): Query<CollectionFilter>,
) -> Result<Markup, PageError> {
    // The closure borrows what the page holds; each workspace is read in turn.
    let (state, viewer, filter) = (&state, &viewer, &filter);
    let (found, all) =
        across_workspaces(state, viewer, &filter.workspace, |workspace| async move {
            state.collections.list(&viewer.identity, &workspace).await
        })
        .await?;
    let body = html! {
        h1 { "Collections" }
        (workspace_filter("/ui/collections", &filter.workspace, &all))
        @if found.is_empty() {
            p.empty { "No collections yet: make one with "
                code { "berth collection create" } " (" code { "berth collection create --help" } ")." }
        } @else {
            table #collections {
                thead { tr { th { "workspace" } th { "collection" } th { "category" } th { "keeps" } th { "created" } } }
                tbody { @for c in &found {
                    tr data-collection=(c.name) {
                        td { (c.workspace) }
                        td { a href=(format!("/ui/collections/{}/{}", percent_encode(&c.workspace), percent_encode(&c.name))) { (c.name) } }
                        td { (c.category) }
                        td { (keeps(c.retention.keep_last, c.retention.keep_seconds)) }
                        td { (c.created_at.format("%Y-%m-%d %H:%M UTC")) }
                    }
                } }
            }
        }
    };
    Ok(layout::page(viewer, "/ui/artifacts", "Collections", body))
}

fn keeps(last: Option<u32>, seconds: Option<i64>) -> String {
    match (last, seconds) {
        (None, None) => "every item".into(),
        (Some(n), None) => format!("the newest {n}"),
        (None, Some(s)) => format!("items younger than {s}s"),
        (Some(n), Some(s)) => format!("the newest {n} and items younger than {s}s"),
    }
}

async fn collection(
    viewer: Viewer,
    Extract(state): Extract<State>,
    Path((workspace, name)): Path<(String, String)>,
) -> Result<Markup, PageError> {
    let c = state
        .collections
        .get(&viewer.identity, &workspace, &name, true)
        .await?;
    let body = html! {
        h1 { "Collection " (c.name) }
        dl.fields {
            dt { "workspace" } dd { (c.workspace) }
            dt { "category" } dd { (c.category) }
            dt { "keeps" } dd { (keeps(c.retention.keep_last, c.retention.keep_seconds)) }
            dt { "created" } dd { (c.created_at.format("%Y-%m-%d %H:%M:%S UTC")) }
        }
        h2 { "Items" }
        @if c.items.is_empty() {
            p.empty { "No items yet: add one with " code { "berth collection add" } "." }
        } @else {
            table #items {
                thead { tr { th { "item" } th { "artifact" } th { "pinned" } th { "added" } th { "by" } th { "data" } } }
                tbody { @for i in &c.items {
                    tr data-item=(i.name) {
                        td { code { (i.name) } }
                        td { @match i.artifact_id {
                            Some(id) => { a href=(artifact_url(id)) { code { (id) } } }
                            None => { span.muted { "gone" } } } }
                        td { (if i.pinned { "yes" } else { "" }) }
                        td { (i.added_at.format("%Y-%m-%d %H:%M:%S UTC")) }
                        td { @if let Some(by) = &i.added_by { (by) } }
                        td { code { (i.data.to_string()) } }
                    }
                } }
            }
        }
        @if !c.history.is_empty() {
            h2 { "Removed" }
            table #history {
                thead { tr { th { "item" } th { "artifact" } th { "removed" } th { "why" } } }
                tbody { @for i in &c.history {
                    tr {
                        td { code { (i.name) } }
                        td { @match i.artifact_id {
                            Some(id) => { a href=(artifact_url(id)) { code { (id) } } }
                            None => { span.muted { "gone" } } } }
                        td { @if let Some(at) = i.removed_at { (at.format("%Y-%m-%d %H:%M:%S UTC")) } }
                        td { @if let Some(why) = &i.removed_why { (why) } }
                    }
                } }
            }
        }
    };
    Ok(layout::page(
        &viewer,
        "/ui/artifacts",
        &format!("Collection {}", c.name),
        body,
    ))
}
