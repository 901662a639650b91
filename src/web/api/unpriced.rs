//! `GET /api/v1/unpriced`: models and volume without a price, with the stored reasons.

use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::Extension;

use crate::analytics::unpriced::{self, UnpricedQuery};
use crate::analytics::Tabular;
use crate::keys::Principal;
use crate::web::format;
use crate::web::{auth, AppState, Error};

pub async fn unpriced(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> Result<Response, Error> {
    let (fmt, pairs) = format::split(query.as_deref())?;
    let mut q = UnpricedQuery::parse(&pairs)?;
    auth::scope(&principal, &mut q.common.filters)?;
    let answer = unpriced::query(&state.store, q).await?;
    let columns = answer.table().columns;
    format::respond(fmt, answer.to_json(), "rows", "unpriced", &columns).await
}
