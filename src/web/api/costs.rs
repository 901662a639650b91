//! `GET /api/v1/costs`.

use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::Extension;

use crate::analytics::costs::{self, CostQuery};
use crate::keys::Principal;
use crate::web::format;
use crate::web::{auth, AppState, Error};

pub async fn costs(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> Result<Response, Error> {
    let (fmt, pairs) = format::split(query.as_deref())?;
    let (mut q, _) = CostQuery::parse(&pairs, &[])?;
    auth::scope(&principal, &mut q.common.filters)?;
    let answer = costs::query(&state.store, q).await?;
    let columns = answer.columns();
    format::respond(fmt, answer.to_json(), "rows", "costs", &columns).await
}
