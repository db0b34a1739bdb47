//! What several pages share: the workspace filter of the list pages and the reading of a
//! list across the workspaces it covers, the flash message an action leaves, and
//! key=value pairs of JSON objects (labels, facts, data).
//!
//! Nothing here reads or writes anything of its own: the lists come from the domain
//! fronts the pages pass in, with the viewer's identity.

use axum::response::Redirect;
use maud::{Markup, html};
use serde::Deserialize;

use crate::web::State;
use crate::web::error::PageError;
use crate::web::session::{Viewer, percent_encode};

/// The `?workspace=` filter of a list page ('' for every workspace the viewer reads).
#[derive(Deserialize, Default)]
pub struct WorkspaceFilter {
    #[serde(default)]
    pub workspace: String,
    #[serde(default)]
    pub flash: String,
}

/// The names of the workspaces a list page covers: the one asked for (checked by the
/// domain when read) or every one the viewer may see.
pub async fn workspaces_of(
    state: &State,
    viewer: &Viewer,
    wanted: &str,
) -> Result<Vec<String>, PageError> {
    if !wanted.is_empty() {
        return Ok(vec![wanted.to_owned()]);
    }
    Ok(state
        .workspaces
        .list(&viewer.identity, false)
        .await?
        .into_iter()
        .map(|w| w.name)
        .collect())
}

/// A form that narrows a list page to one workspace.
pub fn workspace_filter(action: &str, current: &str, all: &[String]) -> Markup {
    html! {
        form.filters method="get" action=(action) {
            label { "workspace "
                select name="workspace" {
                    option value="" selected[current.is_empty()] { "all" }
                    @for name in all {
                        option value=(name) selected[name == current] { (name) }
                    }
                }
            }
            button type="submit" { "Show" }
        }
    }
}

/// A list page's things across the workspaces it covers (see [`workspaces_of`]), each
/// workspace read with `read`, in workspace order; with every workspace the viewer may
/// see, for the filter's choices.
pub async fn across_workspaces<T, Read, Reading>(
    state: &State,
    viewer: &Viewer,
    wanted: &str,
    mut read: Read,
) -> Result<(Vec<T>, Vec<String>), PageError>
where
    Read: FnMut(String) -> Reading,
    Reading: Future<Output = berth_core::error::Result<Vec<T>>>,
{
    let all = workspaces_of(state, viewer, "").await?;
    let mut things = Vec::new();
    for workspace in workspaces_of(state, viewer, wanted).await? {
        things.extend(read(workspace).await?);
    }
    Ok((things, all))
}

/// A page's `?flash=` message, shown once after an action (escaped like everything else).
#[derive(Deserialize, Default)]
pub struct Flash {
    #[serde(default)]
    pub flash: String,
}

/// The flash message as markup, or nothing.
pub fn flash(message: &str) -> Markup {
    html! {
        @if !message.is_empty() { p.flash role="status" { (message) } }
    }
}

/// A 303 back to `path` carrying `message` as the flash.
pub fn back(path: &str, message: &str) -> Redirect {
    Redirect::to(&format!("{path}?flash={}", percent_encode(message)))
}

/// A JSON object of text values as `key=value` pairs, sorted by key.
pub fn pairs(value: &serde_json::Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = value
        .as_object()
        .map(|object| {
            object
                .iter()
                .map(|(k, v)| {
                    let text = v
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string());
                    (k.clone(), text)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}
