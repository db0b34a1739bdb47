//! The dashboard's pages, one module per area, and the actions people take daily. Each
//! page takes a [`crate::web::session::Viewer`], reads through the domain fronts in
//! [`crate::web::Dashboard`] with the viewer's identity, and renders with
//! [`crate::web::layout::page`]. Each action checks the CSRF token and the gRPC method's
//! rule ([`crate::web::session::Viewer::require`]) before it calls the domain.

pub mod actions;
pub mod artifacts;
pub mod files;
pub mod logs;
pub mod queue;
pub mod request;
pub mod services;
pub mod shared;
pub mod templates;
pub mod topics;
pub mod triggers;
pub mod workers;

use axum::Router;

use crate::web::State;

/// Every page's routes.
pub fn routes() -> Router<State> {
    Router::new()
        .merge(queue::routes())
        .merge(request::routes())
        .merge(logs::routes())
        .merge(actions::routes())
        .merge(files::routes())
        .merge(workers::routes())
        .merge(templates::routes())
        .merge(services::routes())
        .merge(topics::routes())
        .merge(artifacts::routes())
        .merge(triggers::routes())
}
