//! `GET|POST /api/v1/whatif`: the selected traffic re-priced on another model (GET:
//! `model=A&as_model=B`) or under a mapping and custom price list (POST body).

use axum::extract::{RawQuery, State};
use axum::{Extension, Json};

use crate::analytics::params::pairs;
use crate::analytics::whatif::{self, ScenarioBody, WhatIfQuery};
use crate::keys::Principal;
use crate::web::{auth, extract, AppState, Error};

pub async fn get(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> Result<Json<serde_json::Value>, Error> {
    answer(state, principal, query, None).await
}

pub async fn post(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
    extract::Json(body): extract::Json<ScenarioBody>,
) -> Result<Json<serde_json::Value>, Error> {
    answer(state, principal, query, Some(body)).await
}

async fn answer(
    state: AppState,
    principal: Principal,
    query: Option<String>,
    body: Option<ScenarioBody>,
) -> Result<Json<serde_json::Value>, Error> {
    let mut q = WhatIfQuery::parse(&pairs(query.as_deref()), body)?;
    auth::scope(&principal, &mut q.common.filters)?;
    let scenario = q.pricer(&state.pricer, &state.config.pricing)?;
    let answer = whatif::query(&state.store, state.pricer.clone(), scenario, q).await?;
    Ok(Json(answer.to_json()))
}
