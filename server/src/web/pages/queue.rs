//! The queue: pending requests by position with why-pending, running ones with their
//! worker and elapsed time, and recent completions; filtered by workspace, status and
//! label.

use axum::Router;
use axum::routing::get;
use maud::{Markup, html};

use crate::web::State;
use crate::web::layout;
use crate::web::session::Viewer;

/// The queue's routes.
pub fn routes() -> Router<State> {
    Router::new().route("/ui/queue", get(queue))
}

async fn queue(viewer: Viewer) -> Markup {
    layout::page(&viewer, "/ui/queue", "Queue", html! { h1 { "Queue" } })
}
