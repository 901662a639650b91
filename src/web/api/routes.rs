//! `GET /api/v1/routes`: each route's requests, errors, latency and effective prices.

use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::Extension;

use crate::analytics::routes::{self, RouteQuery};
use crate::analytics::Tabular;
use crate::keys::Principal;
use crate::web::format;
use crate::web::{auth, AppState, Error};

pub async fn routes(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> Result<Response, Error> {
    let (fmt, pairs) = format::split(query.as_deref())?;
    let mut q = RouteQuery::parse(&pairs)?;
    auth::scope(&principal, &mut q.common.filters)?;
    let answer = routes::query(&state.store, state.pricer.clone(), q).await?;
    let columns = answer.table().columns;
    format::respond(fmt, answer.to_json(), "rows", "routes", &columns).await
}
