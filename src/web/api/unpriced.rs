//! `GET /api/v1/unpriced`: models and volume without a price, with the stored reasons.

use axum::extract::{RawQuery, State};
use axum::{Extension, Json};

use crate::analytics::params::pairs;
use crate::analytics::unpriced::{self, UnpricedQuery};
use crate::keys::Principal;
use crate::web::{auth, AppState, Error};

pub async fn unpriced(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> Result<Json<serde_json::Value>, Error> {
    let mut q = UnpricedQuery::parse(&pairs(query.as_deref()))?;
    auth::scope(&principal, &mut q.common.filters)?;
    let answer = unpriced::query(&state.store, q).await?;
    Ok(Json(answer.to_json()))
}
