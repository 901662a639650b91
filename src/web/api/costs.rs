//! `GET /api/v1/costs`.

use axum::extract::{RawQuery, State};
use axum::Json;

use crate::analytics::costs::{self, CostQuery};
use crate::analytics::params::pairs;
use crate::web::{AppState, Error};

pub async fn costs(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<serde_json::Value>, Error> {
    let (q, _) = CostQuery::parse(&pairs(query.as_deref()), &[])?;
    let answer = costs::query(&state.store, q).await?;
    Ok(Json(answer.to_json()))
}
