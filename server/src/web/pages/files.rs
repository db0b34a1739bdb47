//! Downloading an artifact's file: `GET /ui/artifacts/{id}/files/{*path}` streams it
//! through `Artifacts::read` with the viewer's identity (so only a member of the
//! artifact's workspace gets it).
//!
//! Whatever the file holds, it is sent as `application/octet-stream` with
//! `Content-Disposition: attachment` and `X-Content-Type-Options: nosniff`, so a browser
//! saves it and never renders it as a page of this dashboard.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State as Extract};
use axum::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;

use crate::web::State;
use crate::web::error::PageError;
use crate::web::session::Viewer;

/// The download route.
pub fn routes() -> Router<State> {
    Router::new().route("/ui/artifacts/{id}/files/{*path}", get(download))
}

/// A file name safe in a header: the path's last part, only plain characters kept.
fn attachment_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let safe: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() || safe.chars().all(|c| c == '.') {
        "download".into()
    } else {
        safe
    }
}

async fn download(
    viewer: Viewer,
    Extract(state): Extract<State>,
    Path((id, path)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let pieces = state
        .artifacts
        .read(&viewer.identity, &id, &path, 0, 0)
        .await?;
    let body = Body::from_stream(pieces.map(|piece| {
        piece
            .map(|p| p.data)
            .map_err(|e| std::io::Error::other(e.public_message()))
    }));
    let disposition = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}\"",
        attachment_name(&path)
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    Ok((
        [
            (
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (CONTENT_DISPOSITION, disposition),
            (
                HeaderName::from_static("x-content-type-options"),
                HeaderValue::from_static("nosniff"),
            ),
            (CACHE_CONTROL, HeaderValue::from_static("private, no-store")),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_names_keep_only_plain_characters() {
        assert_eq!(attachment_name("out/report.html"), "report.html");
        assert_eq!(attachment_name("a\"b;c\r\n.txt"), "a_b_c__.txt");
        assert_eq!(attachment_name(".."), "download");
    }
}
