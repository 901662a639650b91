//! `GET /api/v1/tasks`: cost per successful task and its parts, grouped like `/api/v1/costs`.

use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::Extension;
use chrono::Utc;

use crate::analytics::tasks::{self, TaskQuery};
use crate::keys::Principal;
use crate::web::format;
use crate::web::{auth, AppState, Error};

pub async fn tasks(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> Result<Response, Error> {
    let (fmt, pairs) = format::split(query.as_deref())?;
    let mut q = TaskQuery::parse(
        &pairs,
        state.config.analytics.open_task_timeout.0,
        Utc::now(),
    )?;
    auth::scope(&principal, &mut q.common.filters)?;
    let answer = tasks::query(&state.store, q).await?;
    let columns = answer.columns();
    format::respond(fmt, answer.to_json(), "rows", "tasks", &columns).await
}
