//! The web dashboard: server-rendered HTML pages under `/ui/`, served by `berth-server` on
//! the gRPC listener (tonic's routes are an axum router; this one is merged into it) and,
//! with `--ui-listen`, on a listener of its own.
//!
//! - [`session`]: the signed-in browser ([`session::Viewer`]), its cookie and the CSRF
//!   check every action makes.
//! - [`login`]: signing in with a pasted Berth token, and signing out.
//! - [`layout`]: the page frame and navigation; [`assets`]: the embedded stylesheet and
//!   script under content-hashed URLs.
//! - [`error`]: a domain error as an HTTP answer and a page saying what to fix.
//! - [`pages`]: one module per area (queue, a work request and its live log, workers,
//!   templates, services, triggers, topics, artifacts) and the actions people take daily.
//!
//! Like the gRPC edge, this edge decides nothing: every page and action calls the same
//! domain fronts with the viewer's identity, so workspace membership is checked there,
//! and every action is also checked against the gRPC method's rule in `api::auth::RULES`
//! ([`session::Viewer::may`]), so a role can do here exactly what it can do over gRPC.
//!
//! Architecture invariant: this module knows HTTP and HTML but not tonic or the wire
//! types; values from the domain reach the page only through maud's escaping (or
//! `textContent` in the script), never as raw markup; secret values are never rendered.

pub mod assets;
pub mod error;
pub mod layout;
pub mod login;
pub mod pages;
pub mod session;

use std::sync::Arc;

use axum::Router;
use axum::response::Redirect;
use axum::routing::get;
use berth_core::access::sessions::Sessions;
use berth_core::access::workspaces::Workspaces;
use berth_core::artifacts::Artifacts;
use berth_core::artifacts::collections::Collections;
use berth_core::fleet::workers::Workers;
use berth_core::notifications::Notifications;
use berth_core::services::ServiceManager;
use berth_core::templates::Templates;
use berth_core::topics::Topics;
use berth_core::triggers::Triggers;
use berth_core::work::requests::WorkRequests;

/// What the dashboard reads and acts on: the same domain fronts the gRPC services use.
#[derive(Clone)]
pub struct Dashboard {
    pub sessions: Sessions,
    pub workspaces: Workspaces,
    pub workers: Workers,
    pub requests: WorkRequests,
    pub collections: Collections,
    pub artifacts: Artifacts,
    pub templates: Templates,
    pub service_manager: ServiceManager,
    pub triggers: Triggers,
    pub topics: Topics,
    pub notifications: Notifications,
    /// Whether the cookie gets `Secure` (the listener serves TLS).
    pub secure_cookies: bool,
}

/// The shared state every handler gets.
pub type State = Arc<Dashboard>;

/// The dashboard's routes, ready to merge into the server's router.
pub fn router(dashboard: Dashboard) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/queue") }))
        .merge(assets::routes())
        .merge(login::routes())
        .merge(pages::routes())
        .with_state(Arc::new(dashboard))
}
