//! `GET /api/v1/rejects`: the dead-letter table, newest first.

use axum::extract::{RawQuery, State};
use axum::Json;
use serde_json::{json, Value};

use crate::analytics::params::pairs;
use crate::store::queries::rejects::{self, RejectsQuery};
use crate::web::{AppState, Error};

pub async fn rejects(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, Error> {
    let q = RejectsQuery::parse(&pairs(query.as_deref()))?;
    let (rows, total) = state
        .store
        .read(move |conn| rejects::list(conn, &q))
        .await?;
    Ok(Json(json!({ "rejects": rows, "total": total })))
}
