//! `GET /api/v1/anomalies`: days whose spend jumps beyond the value's own recent baseline.

use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::Extension;

use crate::analytics::anomalies::{self, AnomalyQuery};
use crate::analytics::Tabular;
use crate::keys::Principal;
use crate::web::format;
use crate::web::{auth, AppState, Error};

pub async fn anomalies(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> Result<Response, Error> {
    let (fmt, pairs) = format::split(query.as_deref())?;
    let mut q = AnomalyQuery::parse(&pairs)?;
    auth::scope(&principal, &mut q.common.filters)?;
    let answer = anomalies::query(&state.store, q).await?;
    let columns = answer.table().columns;
    format::respond(fmt, answer.to_json(), "anomalies", "anomalies", &columns).await
}
