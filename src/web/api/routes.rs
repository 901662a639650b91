//! `GET /api/v1/routes`: each route's requests, errors, latency and effective prices.

use axum::extract::{RawQuery, State};
use axum::{Extension, Json};

use crate::analytics::params::pairs;
use crate::analytics::routes::{self, RouteQuery};
use crate::keys::Principal;
use crate::web::{auth, AppState, Error};

pub async fn routes(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> Result<Json<serde_json::Value>, Error> {
    let mut q = RouteQuery::parse(&pairs(query.as_deref()))?;
    auth::scope(&principal, &mut q.common.filters)?;
    let answer = routes::query(&state.store, state.pricer.clone(), q).await?;
    Ok(Json(answer.to_json()))
}
