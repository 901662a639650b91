//! `GET|POST /api/v1/whatif`: the selected traffic re-priced on another model (GET:
//! `model=A&as_model=B`) or under a mapping and custom price list (POST body).

use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::Extension;

use crate::analytics::whatif::{self, ScenarioBody, WhatIfQuery};
use crate::analytics::Tabular;
use crate::keys::Principal;
use crate::web::format;
use crate::web::{auth, extract, AppState, Error};

pub async fn get(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> Result<Response, Error> {
    answer(state, principal, query, None).await
}

pub async fn post(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
    extract::Json(body): extract::Json<ScenarioBody>,
) -> Result<Response, Error> {
    answer(state, principal, query, Some(body)).await
}

async fn answer(
    state: AppState,
    principal: Principal,
    query: Option<String>,
    body: Option<ScenarioBody>,
) -> Result<Response, Error> {
    let (fmt, pairs) = format::split(query.as_deref())?;
    let mut q = WhatIfQuery::parse(&pairs, body)?;
    auth::scope(&principal, &mut q.common.filters)?;
    let scenario = q.pricer(&state.pricer, &state.config.pricing)?;
    let answer = whatif::query(&state.store, state.pricer.clone(), scenario, q).await?;
    let columns = answer.table().columns;
    format::respond(fmt, answer.to_json(), "rows", "whatif", &columns).await
}
