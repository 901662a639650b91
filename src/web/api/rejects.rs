//! `GET /api/v1/rejects`: the dead-letter table, newest first; a project's key sees only its
//! project's rejects.

use axum::extract::{RawQuery, State};
use axum::{Extension, Json};
use serde_json::{json, Value};

use crate::analytics::params::pairs;
use crate::keys::Principal;
use crate::store::queries::rejects::{self, RejectsQuery};
use crate::web::{AppState, Error};

pub async fn rejects(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, Error> {
    let mut q = RejectsQuery::parse(&pairs(query.as_deref()))?;
    q.project = principal.project.clone();
    let (rows, total) = state
        .store
        .read(move |conn| rejects::list(conn, &q))
        .await?;
    Ok(Json(json!({ "rejects": rows, "total": total })))
}
