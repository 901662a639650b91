//! Server-rendered pages: one askama template per page struct, plus the embedded static files.

pub mod budgets;
pub mod home;

use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use super::Error;

/// Renders a template into an HTML response.
pub fn render(page: &impl askama::Template) -> Result<Response, Error> {
    let html = page
        .render()
        .map_err(|e| Error::Internal(anyhow::anyhow!("template failed: {e}")))?;
    Ok(Html(html).into_response())
}

/// `/static/tally.css`, compiled into the binary so the service works from any directory and
/// offline.
pub async fn stylesheet() -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../../static/tally.css"),
    )
        .into_response()
}
