//! The page frame: navigation, the signed-in viewer with sign-out, and the embedded
//! stylesheet and script. Their URLs carry a hash of their content, so they are served
//! `immutable` and a new build is never hidden behind a cached old one.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};
use sha2::{Digest, Sha256};

use crate::web::State;
use crate::web::session::Viewer;

const STYLE: &str = include_str!("static/berth.css");
const SCRIPT: &str = include_str!("static/berth.js");

fn hashed(name: &str, body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    let short: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("/ui/static/{short}/{name}")
}

static STYLE_URL: LazyLock<String> = LazyLock::new(|| hashed("berth.css", STYLE));
static SCRIPT_URL: LazyLock<String> = LazyLock::new(|| hashed("berth.js", SCRIPT));

/// The stylesheet's URL.
pub fn style_url() -> &'static str {
    &STYLE_URL
}

/// The script's URL.
pub fn script_url() -> &'static str {
    &SCRIPT_URL
}

/// The static routes.
pub fn routes() -> Router<State> {
    Router::new().route("/ui/static/{hash}/{name}", get(asset))
}

async fn asset(Path((hash, name)): Path<(String, String)>) -> Response {
    let (body, kind, url) = match name.as_str() {
        "berth.css" => (STYLE, "text/css; charset=utf-8", style_url()),
        "berth.js" => (SCRIPT, "text/javascript; charset=utf-8", script_url()),
        _ => return (StatusCode::NOT_FOUND, "no such file").into_response(),
    };
    // An old hash still gets the file, but uncached, so a reload after an upgrade heals.
    let cache = if url.ends_with(&format!("{hash}/{name}")) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    ([(CONTENT_TYPE, kind), (CACHE_CONTROL, cache)], body).into_response()
}

/// The areas in the navigation bar: (path, label).
pub const NAV: &[(&str, &str)] = &[
    ("/ui/queue", "Queue"),
    ("/ui/workers", "Workers"),
    ("/ui/templates", "Templates"),
    ("/ui/services", "Services"),
    ("/ui/triggers", "Triggers"),
    ("/ui/topics", "Topics"),
    ("/ui/artifacts", "Artifacts"),
];

/// A page for a signed-in viewer: `here` is the navigation entry to highlight.
pub fn page(viewer: &Viewer, here: &str, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="csrf" content=(viewer.csrf);
                title { (title) " · Berth" }
                link rel="stylesheet" href=(style_url());
                script src=(script_url()) defer {}
            }
            body {
                header.top {
                    strong { "Berth" }
                    nav {
                        @for (path, label) in NAV {
                            a href=(path) class=[(*path == here).then_some("here")] { (label) } " "
                        }
                    }
                    span.who #viewer {
                        (viewer.identity.name) " (" (viewer.identity.role) ")"
                    }
                    form.inline method="post" action="/ui/logout" {
                        input type="hidden" name="csrf" value=(viewer.csrf);
                        button type="submit" #logout { "Sign out" }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A page with no viewer (the sign-in page).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Berth" }
                link rel="stylesheet" href=(style_url());
            }
            body { main { (body) } }
        }
    }
}

/// A hidden CSRF field for a form on a viewer's page.
pub fn csrf_field(viewer: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(viewer.csrf); }
}
