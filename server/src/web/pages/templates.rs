//! Templates: the job and workflow templates of the workspaces the viewer may read, and a
//! template's page with its release history (version, when, who, note, summary) and one
//! release's spec with a **line diff** against its predecessor (or any version asked for
//! with `?against=`), beside the domain's own structured changes.
//!
//! It reads only through the `templates` front, as `api::templates` does. A release's
//! spec as stored holds no secret values (those are sealed apart and only their names are
//! listed), and nothing here opens them.

use axum::Router;
use axum::extract::{Path, Query, State as Extract};
use axum::routing::get;
use berth_core::templates::ReleaseView;
use berth_core::templates::TemplateRef;
use berth_core::templates::manage::ListQuery;
use maud::{Markup, html};
use serde::Deserialize;
use similar::{ChangeTag, TextDiff};

use crate::web::State;
use crate::web::error::PageError;
use crate::web::layout;
use crate::web::pages::shared::{WorkspaceFilter, across_workspaces, workspace_filter};
use crate::web::session::{Viewer, percent_encode};

/// How many releases a template's page lists.
const HISTORY: u32 = 50;

/// The templates' routes.
pub fn routes() -> Router<State> {
    Router::new()
        .route("/ui/templates", get(list))
        .route("/ui/templates/{workspace}/{name}", get(template))
}

fn template_url(workspace: &str, name: &str) -> String {
    format!(
        "/ui/templates/{}/{}",
        percent_encode(workspace),
        percent_encode(name)
    )
}

async fn list(
    viewer: Viewer,
    Extract(state): Extract<State>,
    Query(filter): Query<WorkspaceFilter>,
) -> Result<Markup, PageError> {
    // The closure borrows what the page holds; each workspace is read in turn.
    let (state, viewer, filter) = (&state, &viewer, &filter);
    let (templates, all) =
        across_workspaces(state, viewer, &filter.workspace, |workspace| async move {
            let query = ListQuery {
                workspace,
                kind: None,
                include_archived: false,
            };
            state.templates.list(&viewer.identity, query).await
        })
        .await?;
    let body = html! {
        h1 { "Templates" }
        (workspace_filter("/ui/templates", &filter.workspace, &all))
        @if templates.is_empty() {
            p.empty { "No templates yet: make one with "
                code { "berth template create" } " (" code { "berth template create --help" } ")." }
        } @else {
            table #templates {
                thead { tr {
                    th { "workspace" } th { "template" } th { "kind" } th { "latest" }
                    th { "released" } th { "by" } th { "summary" }
                } }
                tbody { @for view in &templates {
                    tr data-template=(view.row.name) {
                        td { (view.workspace) }
                        td { a href=(template_url(&view.workspace, &view.row.name)) { (view.row.name) }
                            @if !view.row.active { " " span.muted { "(inactive)" } } }
                        td { (view.row.kind.as_str()) }
                        td { "v" (view.row.latest_version) }
                        td { (view.latest.row.created_at.format("%Y-%m-%d %H:%M UTC")) }
                        td { (view.latest.created_by) }
                        td { (view.latest.row.summary) }
                    }
                } }
            }
        }
    };
    Ok(layout::page(viewer, "/ui/templates", "Templates", body))
}

#[derive(Deserialize, Default)]
struct Shown {
    /// The release to show (the latest when absent).
    version: Option<i32>,
    /// The release to compare it with (its predecessor when absent).
    against: Option<i32>,
}

async fn template(
    viewer: Viewer,
    Extract(state): Extract<State>,
    Path((workspace, name)): Path<(String, String)>,
    Query(shown): Query<Shown>,
) -> Result<Markup, PageError> {
    let at = TemplateRef {
        workspace,
        name,
        kind: None,
    };
    let view = state.templates.get(&viewer.identity, at.clone()).await?;
    let history = state
        .templates
        .releases(&viewer.identity, at.clone(), HISTORY, None)
        .await?;
    let version = shown.version.unwrap_or(view.row.latest_version);
    let against = shown
        .against
        .or_else(|| (version > 1).then_some(version - 1));
    let release = state
        .templates
        .release(&viewer.identity, at.clone(), Some(version), against)
        .await?;
    let older = match against {
        Some(v) => Some(
            state
                .templates
                .release(&viewer.identity, at.clone(), Some(v), None)
                .await?,
        ),
        None => None,
    };
    let url = template_url(&view.workspace, &view.row.name);
    let body = html! {
        h1 { "Template " (view.row.name) }
        dl.fields {
            dt { "workspace" } dd { (view.workspace) }
            dt { "kind" } dd { (view.row.kind.as_str()) }
            dt { "description" } dd { (view.row.description) }
            dt { "created" } dd { (view.row.created_at.format("%Y-%m-%d %H:%M:%S UTC")) " by " (view.created_by) }
            dt { "latest release" } dd { "v" (view.row.latest_version) }
            @if view.row.archived_at.is_some() { dt { "archived" } dd { "yes" } }
        }
        h2 { "Releases" }
        table #releases {
            thead { tr { th { "version" } th { "when" } th { "who" } th { "note" } th { "changes" } } }
            tbody { @for r in &history {
                tr class=[(r.row.version == version).then_some("here")] {
                    td { a href=(format!("{url}?version={}", r.row.version)) { "v" (r.row.version) } }
                    td { (r.row.created_at.format("%Y-%m-%d %H:%M:%S UTC")) }
                    td { (r.created_by) }
                    td { (r.row.note) }
                    td { (r.row.summary)
                        @if let Some(from) = r.row.rolled_back_from { " " span.muted { "(rollback from v" (from) ")" } } }
                }
            } }
        }
        h2 #release { "Release v" (release.row.version)
            @if let Some(v) = against { " against v" (v) } }
        @if !release.row.secret_env_keys.is_empty() {
            p { "Secret env (values never shown): "
                @for k in &release.row.secret_env_keys { code { (k) } " " } }
        }
        @if !release.diff.is_empty() {
            ul.changes { @for change in &release.diff {
                li { code { (change.field) } " " (format!("{:?}", change.kind).to_lowercase())
                    @if !(change.secret || (change.before.is_empty() && change.after.is_empty())) {
                        ": " (change.before) " → " (change.after)
                    } }
            } }
        }
        @match &older {
            Some(older) => { (diff_view(older, &release)) }
            None => { pre.mono #spec { (spec_text(&release)) } }
        }
    };
    Ok(layout::page(
        &viewer,
        "/ui/templates",
        &format!("Template {}", view.row.name),
        body,
    ))
}

/// A release's spec as text: its stored JSON, pretty-printed with sorted keys.
fn spec_text(release: &ReleaseView) -> String {
    serde_json::to_string_pretty(&release.row.spec).unwrap_or_default()
}

fn diff_view(older: &ReleaseView, newer: &ReleaseView) -> Markup {
    let before = spec_text(older);
    let after = spec_text(newer);
    html! {
        pre.mono.diff #diff {
            @for (tag, text) in line_diff(&before, &after) {
                @match tag {
                    ChangeTag::Equal => { span.same { "  " (text) } }
                    ChangeTag::Delete => { span.del { "- " (text) } }
                    ChangeTag::Insert => { span.add { "+ " (text) } }
                }
            }
        }
    }
}

/// The line diff of `a` into `b` (Myers, from `similar`), each line with its ending.
fn line_diff<'a>(a: &'a str, b: &'a str) -> Vec<(ChangeTag, String)> {
    TextDiff::from_lines(a, b)
        .iter_all_changes()
        .map(|change| {
            let mut line = change.value().to_owned();
            if !line.ends_with('\n') {
                line.push('\n');
            }
            (change.tag(), line)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_line_is_removed_then_added_and_the_rest_kept() {
        let a = "{\n  \"image\": \"a\",\n  \"memory\": 1\n}";
        let b = "{\n  \"image\": \"b\",\n  \"memory\": 1\n  \"cpus\": 2\n}";
        let diff: Vec<(ChangeTag, String)> = line_diff(a, b)
            .into_iter()
            .map(|(tag, line)| (tag, line.trim_end().to_owned()))
            .collect();
        let expected: Vec<(ChangeTag, String)> = [
            (ChangeTag::Equal, "{"),
            (ChangeTag::Delete, "  \"image\": \"a\","),
            (ChangeTag::Insert, "  \"image\": \"b\","),
            (ChangeTag::Equal, "  \"memory\": 1"),
            (ChangeTag::Insert, "  \"cpus\": 2"),
            (ChangeTag::Equal, "}"),
        ]
        .into_iter()
        .map(|(tag, line)| (tag, line.to_owned()))
        .collect();
        assert_eq!(diff, expected);
    }
}
