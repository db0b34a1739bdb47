//! The embedded stylesheet and script. Their URLs carry a hash of their content, so they
//! are served `immutable` and a new build is never hidden behind a cached old one. This
//! module knows no viewer and no page: the frame (`layout`) and the error page link here.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use crate::web::State;

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
