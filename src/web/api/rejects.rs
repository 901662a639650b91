//! `GET /api/v1/rejects`: the dead-letter table, newest first; a project's key sees only its
//! project's rejects.

use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::Extension;
use serde_json::{json, Value};

use crate::keys::Principal;
use crate::store::queries::rejects::{self, RejectsQuery};
use crate::web::format;
use crate::web::{AppState, Error};

/// The export's column order: when, where from, which record and field, why, and the record.
const COLUMNS: &[&str] = &[
    "received_at",
    "http_request",
    "source_format",
    "index",
    "field",
    "reason",
    "raw",
];

pub async fn rejects(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> Result<Response, Error> {
    let (fmt, pairs) = format::split(query.as_deref())?;
    let mut q = RejectsQuery::parse(&pairs)?;
    q.project = principal.project.clone();
    let (rows, total) = state
        .store
        .read(move |conn| rejects::list(conn, &q))
        .await?;
    let answer: Value = json!({ "rejects": rows, "total": total });
    format::respond(fmt, answer, "rejects", "rejects", &format::columns(COLUMNS)).await
}
