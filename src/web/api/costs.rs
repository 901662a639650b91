//! `GET /api/v1/costs`.

use axum::extract::{RawQuery, State};
use axum::{Extension, Json};

use crate::analytics::costs::{self, CostQuery};
use crate::analytics::params::pairs;
use crate::keys::Principal;
use crate::web::{auth, AppState, Error};

pub async fn costs(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> Result<Json<serde_json::Value>, Error> {
    let (mut q, _) = CostQuery::parse(&pairs(query.as_deref()), &[])?;
    auth::scope(&principal, &mut q.common.filters)?;
    let answer = costs::query(&state.store, q).await?;
    Ok(Json(answer.to_json()))
}
