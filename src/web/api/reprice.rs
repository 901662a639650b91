//! `/api/v1/reprice`: `GET` is the dry run (read role: a diff, nothing written); `POST
//! …?apply=true` (admin) writes. Writing is a POST, not a GET flag, so that no link, prefetch
//! or cookie-carrying page can trigger it; `POST` without `apply=true` is a dry run as well.

use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::{Extension, Json};

use crate::analytics::params::pairs;
use crate::analytics::reprice::{self, RepriceQuery};
use crate::analytics::Tabular;
use crate::keys::Principal;
use crate::web::format;
use crate::web::{auth, AppState, Error};

pub async fn dry_run(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> Result<Response, Error> {
    let (fmt, pairs) = format::split(query.as_deref())?;
    let mut q = RepriceQuery::parse(&pairs)?;
    if q.apply {
        return Err(Error::BadRequest(
            "apply: GET only shows the diff; POST /api/v1/reprice?apply=true (admin) writes it"
                .into(),
        ));
    }
    auth::scope(&principal, &mut q.common.filters)?;
    let answer = reprice::dry_run(&state.store, state.pricer.clone(), q).await?;
    let columns = answer.table().columns;
    format::respond(fmt, answer.to_json(), "rows", "reprice", &columns).await
}

pub async fn apply(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> Result<Json<serde_json::Value>, Error> {
    let mut q = RepriceQuery::parse(&pairs(query.as_deref()))?;
    auth::scope(&principal, &mut q.common.filters)?;
    let answer = if q.apply {
        tracing::info!(key_id = ?principal.key_id, "re-pricing stored events");
        reprice::apply(&state.store, state.pricer.clone(), q).await?
    } else {
        reprice::dry_run(&state.store, state.pricer.clone(), q).await?
    };
    Ok(Json(answer.to_json()))
}
