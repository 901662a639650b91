//! `GET /api/v1/tasks`: cost per successful task and its parts, grouped like `/api/v1/costs`.

use axum::extract::{RawQuery, State};
use axum::{Extension, Json};
use chrono::Utc;

use crate::analytics::params::pairs;
use crate::analytics::tasks::{self, TaskQuery};
use crate::keys::Principal;
use crate::web::{auth, AppState, Error};

pub async fn tasks(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> Result<Json<serde_json::Value>, Error> {
    let mut q = TaskQuery::parse(
        &pairs(query.as_deref()),
        state.config.analytics.open_task_timeout.0,
        Utc::now(),
    )?;
    auth::scope(&principal, &mut q.common.filters)?;
    let answer = tasks::query(&state.store, q).await?;
    Ok(Json(answer.to_json()))
}
