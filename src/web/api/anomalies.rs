//! `GET /api/v1/anomalies`: days whose spend jumps beyond the value's own recent baseline.

use axum::extract::{RawQuery, State};
use axum::{Extension, Json};

use crate::analytics::anomalies::{self, AnomalyQuery};
use crate::analytics::params::pairs;
use crate::keys::Principal;
use crate::web::{auth, AppState, Error};

pub async fn anomalies(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> Result<Json<serde_json::Value>, Error> {
    let mut q = AnomalyQuery::parse(&pairs(query.as_deref()))?;
    auth::scope(&principal, &mut q.common.filters)?;
    let answer = anomalies::query(&state.store, q).await?;
    Ok(Json(answer.to_json()))
}
