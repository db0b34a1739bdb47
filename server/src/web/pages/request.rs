//! One work request: its spec (secret env values never: only their names, marked
//! "(secret)"), state and result, attempts, inputs and outputs with download links, the
//! workflow tree, where it came from (template release, service, trigger), the live log
//! and the actions the viewer may take on it.
//!
//! Everything is read through `WorkRequests::get` and `Artifacts::get` with the viewer's
//! identity, so a request outside the viewer's workspaces is a 404 like any missing one.

use axum::Router;
use axum::extract::{Path, Query, State as Extract};
use axum::routing::get;
use berth_core::access::roles::WorkspaceRole;
use berth_core::artifacts::artifacts::ArtifactView;
use berth_core::error::Error;
use berth_core::work::ids::WorkRequestId;
use berth_core::work::requests::RequestView;
use berth_core::work::state::{Status, UnblockStrategy};
use chrono::Utc;
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;

use crate::web::State;
use crate::web::error::PageError;
use crate::web::layout;
use crate::web::pages::queue::{
    flash, human_duration, labels, request_link, status_badge, terminal, when,
};
use crate::web::session::{Viewer, percent_encode};

/// The request page's routes.
pub fn routes() -> Router<State> {
    Router::new().route("/ui/work-requests/{id}", get(page))
}

#[derive(Deserialize, Default)]
struct Flash {
    #[serde(default)]
    flash: String,
}

/// A request id from the path, or a refusal naming it.
pub(crate) fn parse_id(text: &str) -> Result<WorkRequestId, PageError> {
    Ok(WorkRequestId::parse("work request id", text)?)
}

/// The file download link of one artifact file.
pub(crate) fn file_url(artifact: Uuid, path: &str) -> String {
    format!("/ui/artifacts/{artifact}/files/{}", percent_encode(path))
}

async fn page(
    viewer: Viewer,
    Extract(state): Extract<State>,
    Path(id): Path<String>,
    Query(flash_message): Query<Flash>,
) -> Result<Markup, PageError> {
    let id = parse_id(&id)?;
    let view = state.requests.get(&viewer.identity, id).await?;
    let mut artifacts = Vec::new();
    let inputs = view.inputs.iter().filter_map(|i| i.artifact_id);
    let outputs = view.attempts.iter().filter_map(|a| a.output_artifact_id);
    for artifact in inputs.chain(outputs) {
        if artifacts.iter().any(|a: &ArtifactView| a.id == artifact) {
            continue;
        }
        match state
            .artifacts
            .get(&viewer.identity, &artifact.to_string())
            .await
        {
            Ok(found) => artifacts.push(found),
            // Expired or deleted since: the page says so where the link would be.
            Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // What the viewer may change here: the workspace's contributors and owners, and
    // admins (the same standing the actions themselves check).
    let contributes = viewer.is_admin()
        || state
            .workspaces
            .get(&viewer.identity, &view.workspace)
            .await?
            .role
            >= Some(WorkspaceRole::Contributor);
    let title = if view.row.name.is_empty() {
        format!("Work request {}", view.row.id)
    } else {
        format!("{} ({})", view.row.name, view.row.id)
    };
    let body = html! {
        h1 { (title) }
        (flash(&flash_message.flash))
        (summary(&view))
        (actions(&viewer, &view, contributes))
        (spec(&view)?)
        (attempts(&view))
        (files(&view, &artifacts))
        (tree(&view))
        (log(&view))
    };
    Ok(layout::page(&viewer, "/ui/queue", &title, body))
}

fn summary(view: &RequestView) -> Markup {
    let row = &view.row;
    let now = Utc::now();
    html! {
        dl.fields #summary {
            dt { "Status" } dd #status { (status_badge(view)) }
            @if !row.reason.as_str().is_empty() && row.reason.as_str() != "none" {
                dt { "Reason" } dd #reason { (row.reason.as_str()) }
            }
            @if !row.message.is_empty() { dt { "Message" } dd { (row.message) } }
            @if let Some(code) = row.exit_code { dt { "Exit code" } dd #exit-code { (code) } }
            dt { "Workspace" } dd { (view.workspace) }
            dt { "Submitted by" } dd { (view.created_by) }
            dt { "Submitted" } dd { (when(row.created_at)) }
            @if let Some(at) = row.started_at { dt { "Started" } dd { (when(at)) } }
            @if let Some(at) = row.completed_at {
                dt { "Finished" } dd { (when(at)) }
            } @else if let Some(at) = row.started_at {
                dt { "Elapsed" } dd { (human_duration((now - at).num_seconds())) }
            }
            @if !view.pending_reason.is_empty() {
                dt { "Waiting because" } dd #pending-reason { (view.pending_reason) }
            }
            @if view.queue_position > 0 { dt { "Queue position" } dd { (view.queue_position) } }
            dt { "Priority" } dd #priority {
                (row.priority_base.saturating_add(row.priority_adjustment))
                " (base " (row.priority_base) ", adjusted " (row.priority_adjustment) ")"
            }
            dt { "Attempts" } dd { (row.attempt_count) ", retries left " (row.retries_left) }
            @if let Some(template) = &view.template {
                dt { "Template" } dd #template {
                    a href=(format!("/ui/templates/{}", percent_encode(template))) { (template) }
                    @if let Some(version) = row.template_version { " release " (version) }
                }
            }
            @if let Some((service, replica)) = &view.service {
                dt { "Service" } dd { a href=(format!("/ui/services/{}", percent_encode(service))) { (service) } " replica " (replica) }
            }
            @if let Some((rule, event)) = &view.trigger {
                dt { "Trigger" } dd { a href=(format!("/ui/triggers/{}", percent_encode(rule))) { (rule) } " event " code { (event.to_string()) } }
            }
        }
    }
}

/// The action forms the viewer may use on this request now: each shown only when both
/// the method's role rule and the viewer's standing in the workspace allow it, and the
/// request's state makes sense for it.
fn actions(viewer: &Viewer, view: &RequestView, contributes: bool) -> Markup {
    let id = view.row.id.to_string();
    let open = !terminal(view.row.status);
    let cancel =
        open && contributes && viewer.may("/berth.v1.WorkRequestService/CancelWorkRequest");
    let retry = !open && contributes && viewer.may("/berth.v1.WorkRequestService/RetryWorkRequest");
    let priority = open && viewer.may("/berth.v1.WorkRequestService/AdjustPriority");
    let decide = view.row.status == Status::Blocked
        && view.row.unblock_strategy == UnblockStrategy::Manual
        && contributes
        && viewer.may("/berth.v1.WorkRequestService/UnblockWorkRequest");
    html! {
        @if cancel || retry || priority || decide {
            div.actions #actions {
                @if decide {
                    form.inline method="post" action=(format!("/ui/work-requests/{id}/unblock")) {
                        (layout::csrf_field(viewer))
                        input type="hidden" name="decision" value="accept";
                        button type="submit" #accept { "Accept" }
                    }
                    form.inline method="post" action=(format!("/ui/work-requests/{id}/unblock")) {
                        (layout::csrf_field(viewer))
                        input type="hidden" name="decision" value="reject";
                        button type="submit" #reject { "Reject" }
                    }
                }
                @if cancel {
                    form.inline method="post" action=(format!("/ui/work-requests/{id}/cancel")) {
                        (layout::csrf_field(viewer))
                        button type="submit" #cancel { "Cancel" }
                    }
                }
                @if retry {
                    form.inline method="post" action=(format!("/ui/work-requests/{id}/retry")) {
                        (layout::csrf_field(viewer))
                        button type="submit" #retry { "Retry" }
                    }
                }
                @if priority {
                    form.inline method="post" action=(format!("/ui/work-requests/{id}/priority")) {
                        (layout::csrf_field(viewer))
                        label { "Priority adjustment "
                            input type="number" name="set" value=(view.row.priority_adjustment) size="6";
                        }
                        " "
                        button type="submit" #set-priority { "Set" }
                    }
                }
            }
        }
    }
}

fn spec(view: &RequestView) -> Result<Markup, PageError> {
    let Some(stored) = view.spec()? else {
        return Ok(html! { p { "A workflow: it runs its steps, nothing itself." } });
    };
    let input = stored.to_input();
    let mut env: Vec<(&String, &String)> = input.env.iter().collect();
    env.sort();
    let mut secret_names: Vec<&String> = view.row.secret_env_keys.iter().collect();
    secret_names.sort();
    let labels = labels(view);
    Ok(html! {
        h2 { "Spec" }
        dl.fields #spec {
            dt { "Image" } dd { code #image { (input.image) } }
            @if !input.command.is_empty() {
                dt { "Command" } dd { code #command { (shell_words(&input.command)) } }
            }
            @if !input.working_dir.is_empty() { dt { "Working directory" } dd { code { (input.working_dir) } } }
            @if !labels.is_empty() {
                dt { "Needs labels" } dd #labels {
                    @for (k, v) in &labels { code { (k) "=" (v) } " " }
                }
            }
            @if !env.is_empty() || !secret_names.is_empty() {
                dt { "Environment" } dd {
                    ul #env {
                        @for (name, value) in &env { li { code { (name) "=" (value) } } }
                        @for name in &secret_names { li.secret { code { (name) } " (secret)" } }
                    }
                }
            }
            @if let Some(bytes) = input.memory_bytes { dt { "Memory" } dd { (bytes / (1024 * 1024)) " MiB" } }
            @if let Some(cpus) = input.cpus { dt { "CPUs" } dd { (cpus) } }
            @if let Some(t) = input.timeout { dt { "Timeout" } dd { (human_duration(t.seconds)) } }
            @if !input.network.is_empty() { dt { "Network" } dd { (input.network) } }
        }
    })
}

/// A command as one line a person could paste, quoting words that need it.
fn shell_words(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            if !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
            {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn attempts(view: &RequestView) -> Markup {
    html! {
        @if !view.attempts.is_empty() {
            h2 { "Attempts" }
            table #attempts {
                thead { tr { th { "#" } th { "Worker" } th { "State" } th { "Assigned" } th { "Started" } th { "Finished" } th { "Exit" } th { "Reason" } th { "Message" } } }
                tbody {
                    @for a in &view.attempts {
                        tr {
                            td { (a.number) }
                            td { (a.worker_name) }
                            td { (format!("{:?}", a.state).to_lowercase()) }
                            td { (when(a.assigned_at)) }
                            td { (a.started_at.map(when).unwrap_or_default()) }
                            td { (a.finished_at.map(when).unwrap_or_default()) }
                            td { (a.exit_code.map(|c| c.to_string()).unwrap_or_default()) }
                            td { (a.reason.as_str()) }
                            td { (a.message) @if !a.log_incomplete.is_empty() { " (log incomplete: " (a.log_incomplete) ")" } }
                        }
                    }
                }
            }
        }
    }
}

fn files(view: &RequestView, artifacts: &[ArtifactView]) -> Markup {
    let artifact_list = |id: Option<Uuid>| -> Markup {
        let Some(id) = id else {
            return html! { "waiting for its step's output" };
        };
        match artifacts.iter().find(|a| a.id == id) {
            None => html! { code { (id.to_string()) } " (gone)" },
            Some(artifact) => html! {
                code { (id.to_string()) } " " (artifact.category) " · " (artifact.file_count) " files, " (artifact.total_size) " bytes"
                ul.files {
                    @for file in &artifact.files {
                        li {
                            @if file.symlink.is_empty() && file.uploaded {
                                a.download href=(file_url(id, &file.path)) download { (file.path) }
                                " (" (file.size) " bytes)"
                            } @else if !file.symlink.is_empty() {
                                (file.path) " → " (file.symlink)
                            } @else {
                                (file.path) " (not uploaded)"
                            }
                        }
                    }
                }
            },
        }
    };
    let outputs: Vec<_> = view
        .attempts
        .iter()
        .filter_map(|a| a.output_artifact_id.map(|id| (a.number, id)))
        .collect();
    html! {
        @if !view.inputs.is_empty() {
            h2 { "Inputs" }
            ul #inputs {
                @for input in &view.inputs {
                    li {
                        code { "/in/" (input.mount) } ": "
                        @if let Some(from) = input.from { "output of " a href=(format!("/ui/work-requests/{from}")) { code { (from.to_string()) } } " " }
                        (artifact_list(input.artifact_id))
                    }
                }
            }
        }
        @if !outputs.is_empty() {
            h2 { "Outputs" }
            ul #outputs {
                @for (number, id) in &outputs {
                    li { "attempt " (number) ": " (artifact_list(Some(*id))) }
                }
            }
        }
    }
}

fn tree(view: &RequestView) -> Markup {
    html! {
        @if view.row.parent_id.is_some() || !view.children.is_empty() || !view.depends_on.is_empty() {
            h2 { "Workflow" }
            div #workflow {
                @if let Some(parent) = view.row.parent_id {
                    p { "Step of " a href=(format!("/ui/work-requests/{parent}")) { code { (parent.to_string()) } } }
                }
                @if !view.depends_on.is_empty() {
                    p { "Depends on: "
                        @for dep in &view.depends_on {
                            a href=(format!("/ui/work-requests/{dep}")) { code { (dep.to_string()) } } " "
                        }
                    }
                }
                @if !view.children.is_empty() {
                    ul.steps {
                        @for child in &view.children {
                            li { (request_link(child)) " " (status_badge(child))
                                @if !child.depends_on.is_empty() {
                                    " after "
                                    @for dep in &child.depends_on {
                                        @let name = view.children.iter().find(|c| c.row.id == *dep).map(|c| c.row.name.clone()).unwrap_or_else(|| dep.to_string());
                                        code { (name) } " "
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn log(view: &RequestView) -> Markup {
    let id = view.row.id.to_string();
    html! {
        @if view.spec().ok().flatten().is_some() {
            h2 { "Log" }
            p.log-state #log-state { "connecting…" }
            pre.log #log data-stream=(format!("/ui/work-requests/{id}/logs/stream")) {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_quote_only_what_needs_it() {
        let words = ["sh", "-c", "echo 'hi' there", ""].map(String::from);
        assert_eq!(shell_words(&words), r"sh -c 'echo '\''hi'\'' there' ''");
    }

    #[test]
    fn download_links_encode_the_path() {
        let id = Uuid::nil();
        assert_eq!(
            file_url(id, "a b/c?.txt"),
            "/ui/artifacts/00000000-0000-0000-0000-000000000000/files/a%20b/c%3F.txt"
        );
    }
}
