//! `/api/v1/keys`: create (secret shown once), list, revoke. Admin only.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::keys::{self, CreatedKey, Role};
use crate::web::extract;
use crate::web::{AppState, Error};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    pub name: String,
    pub role: Role,
    pub project: Option<String>,
}

pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, Error> {
    let keys = keys::list(&state.store).await?;
    Ok(Json(json!({ "keys": keys })))
}

pub async fn create(
    State(state): State<AppState>,
    extract::Json(body): extract::Json<NewKey>,
) -> Result<(StatusCode, Json<CreatedKey>), Error> {
    let created = keys::create(
        &state.store,
        &state.keys,
        &body.name,
        body.role,
        body.project.as_deref(),
    )
    .await
    .map_err(|e| match e {
        keys::ServiceError::Invalid(e) => Error::BadRequest(e.0),
        keys::ServiceError::Store(e) => e.into(),
    })?;
    tracing::info!(key_id = %created.key.id, role = %created.key.role, "API key created");
    Ok((StatusCode::CREATED, Json(created)))
}

pub async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    if keys::revoke(&state.store, &state.keys, &id).await? {
        tracing::info!(key_id = %id, "API key revoked");
        Ok(Json(json!({ "revoked": id })))
    } else {
        Err(Error::NotFound(format!("no active key {id:?}")))
    }
}
