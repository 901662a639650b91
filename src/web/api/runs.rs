//! `GET /api/v1/runs` (the list) and `GET /api/v1/runs/{id}` (one run as a tree of calls).

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::Extension;
use chrono::Utc;

use crate::analytics::runs::{self, RunListQuery};
use crate::analytics::Tabular;
use crate::keys::Principal;
use crate::web::format;
use crate::web::{auth, AppState, Error};

pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> Result<Response, Error> {
    let (fmt, pairs) = format::split(query.as_deref())?;
    let mut q = RunListQuery::parse(
        &pairs,
        state.config.analytics.open_task_timeout.0,
        Utc::now(),
    )?;
    auth::scope(&principal, &mut q.common.filters)?;
    let answer = runs::list(&state.store, q).await?;
    let columns = answer.table().columns;
    format::respond(fmt, answer.to_json(), "runs", "runs", &columns).await
}

pub async fn detail(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, Error> {
    let (fmt, pairs) = format::split(query.as_deref())?;
    let mut filters = runs::parse_detail_filters(&pairs)?;
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
    // A run's tree is exported as its calls, one row per call with its parent links.
    let columns = answer.table().columns;
    format::respond(fmt, answer.to_json(), "calls", "run", &columns).await
}
