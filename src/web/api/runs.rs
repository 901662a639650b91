//! `GET /api/v1/runs` (the list) and `GET /api/v1/runs/{id}` (one run as a tree of calls).

use axum::extract::{Path, RawQuery, State};
use axum::{Extension, Json};
use chrono::Utc;

use crate::analytics::params::pairs;
use crate::analytics::runs::{self, RunListQuery};
use crate::keys::Principal;
use crate::web::{auth, AppState, Error};

pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> Result<Json<serde_json::Value>, Error> {
    let mut q = RunListQuery::parse(
        &pairs(query.as_deref()),
        state.config.analytics.open_task_timeout.0,
        Utc::now(),
    )?;
    auth::scope(&principal, &mut q.common.filters)?;
    let answer = runs::list(&state.store, q).await?;
    Ok(Json(answer.to_json()))
}

pub async fn detail(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<serde_json::Value>, Error> {
    let mut filters = runs::parse_detail_filters(&pairs(query.as_deref()))?;
    auth::scope(&principal, &mut filters)?;
    let answer = runs::detail(
        &state.store,
        id.clone(),
        filters,
        state.config.analytics.open_task_timeout.0,
        Utc::now(),
    )
    .await?
    .ok_or_else(|| {
        Error::NotFound(format!(
            "no call has run_id, task_id or trace_id {id:?} in the projects this key reads"
        ))
    })?;
    Ok(Json(answer.to_json()))
}
