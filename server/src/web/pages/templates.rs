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

use crate::web::State;
use crate::web::error::PageError;
use crate::web::layout;
use crate::web::pages::triggers::{WorkspaceFilter, workspace_filter, workspaces_of};
use crate::web::session::{Viewer, percent_encode};

/// How many releases a template's page lists.
const HISTORY: u32 = 50;
/// Beyond this many lines on either side the diff is not computed (it is quadratic).
const DIFF_LINES: usize = 3000;

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
    let all = workspaces_of(&state, &viewer, "").await?;
    let mut templates = Vec::new();
    for workspace in workspaces_of(&state, &viewer, &filter.workspace).await? {
        let query = ListQuery {
            workspace,
            kind: None,
            include_archived: false,
        };
        templates.extend(state.templates.list(&viewer.identity, query).await?);
    }
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
    Ok(layout::page(&viewer, "/ui/templates", "Templates", body))
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
    let a: Vec<&str> = before.lines().collect();
    let b: Vec<&str> = after.lines().collect();
    html! {
        @match line_diff(&a, &b) {
            Some(lines) => {
                pre.mono.diff #diff {
                    @for line in lines {
                        @match line {
                            Line::Same(text) => { span.same { "  " (text) "\n" } }
                            Line::Removed(text) => { span.del { "- " (text) "\n" } }
                            Line::Added(text) => { span.add { "+ " (text) "\n" } }
                        }
                    }
                }
            }
            None => {
                p.muted { "These specs are too long to compare line by line; both are shown." }
                h2 { "v" (older.row.version) } pre.mono { (before) }
                h2 { "v" (newer.row.version) } pre.mono { (after) }
            }
        }
    }
}

/// One line of a diff.
#[derive(Debug, PartialEq, Eq)]
enum Line<'a> {
    Same(&'a str),
    Removed(&'a str),
    Added(&'a str),
}

/// The shortest line diff of `a` into `b` (longest common subsequence), or `None` when
/// either side is longer than [`DIFF_LINES`]. Specs are small, so the quadratic table is
/// cheap and needs no diff library.
fn line_diff<'a>(a: &[&'a str], b: &[&'a str]) -> Option<Vec<Line<'a>>> {
    if a.len() > DIFF_LINES || b.len() > DIFF_LINES {
        return None;
    }
    let (n, m) = (a.len(), b.len());
    // lcs[i][j]: the common subsequence length of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(n.max(m));
    while i < n && j < m {
        if a[i] == b[j] {
            out.push(Line::Same(a[i]));
            i += 1;
            j += 1;
        } else if lcs[i + 1][j] >= lcs[i][j + 1] {
            out.push(Line::Removed(a[i]));
            i += 1;
        } else {
            out.push(Line::Added(b[j]));
            j += 1;
        }
    }
    out.extend(a[i..].iter().map(|t| Line::Removed(t)));
    out.extend(b[j..].iter().map(|t| Line::Added(t)));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_line_is_removed_then_added_and_the_rest_kept() {
        let a = ["{", "  \"image\": \"a\",", "  \"memory\": 1", "}"];
        let b = [
            "{",
            "  \"image\": \"b\",",
            "  \"memory\": 1",
            "  \"cpus\": 2",
            "}",
        ];
        let diff = line_diff(&a, &b).expect("short specs are compared");
        assert_eq!(
            diff,
            vec![
                Line::Same("{"),
                Line::Removed("  \"image\": \"a\","),
                Line::Added("  \"image\": \"b\","),
                Line::Same("  \"memory\": 1"),
                Line::Added("  \"cpus\": 2"),
                Line::Same("}"),
            ]
        );
    }

    #[test]
    fn too_long_a_spec_is_not_compared() {
        let long = vec!["x"; DIFF_LINES + 1];
        assert!(line_diff(&long, &["x"]).is_none());
        assert_eq!(line_diff(&[], &[]), Some(vec![]));
    }
}
