//! `/api/v1/channels`: alert channels (admin). The secret and full URL appear only in the
//! answer that creates a channel (or rotates its secret).

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::budgets::only;
use crate::analytics::params::pairs;
use crate::budgets::channel::{ChannelSpec, CreatedChannel};
use crate::budgets::service::{self, ChannelPatch};
use crate::keys::Principal;
use crate::web::{auth, extract, AppState, Error};

pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, Error> {
    let pairs = pairs(query.as_deref());
    only(&pairs, &["project"])?;
    let asked = pairs
        .iter()
        .find(|(k, _)| k == "project")
        .map(|(_, v)| v.as_str());
    let project = auth::project_for_read(&principal, asked)?;
    let channels = service::list_channels(&state.store, project.as_deref()).await?;
    Ok(Json(json!({ "channels": channels })))
}

pub async fn create(
    State(state): State<AppState>,
    extract::Json(spec): extract::Json<ChannelSpec>,
) -> Result<(StatusCode, Json<CreatedChannel>), Error> {
    let created = service::create_channel(&state.store, spec).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    let c = service::get_channel(&state.store, &id).await?;
    Ok(Json(json!(c)))
}

pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    extract::Json(patch): extract::Json<ChannelPatch>,
) -> Result<Json<Value>, Error> {
    let (c, rotated) = service::update_channel(&state.store, &state.budgets, &id, patch).await?;
    let mut v = json!(c);
    if let (Some(secret), Value::Object(m)) = (rotated, &mut v) {
        m.insert("secret".into(), secret.into());
    }
    Ok(Json(v))
}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    service::delete_channel(&state.store, &state.budgets, &id).await?;
    Ok(Json(json!({ "deleted": id })))
}

/// `POST /api/v1/channels/{id}/test`: sends a signed `budget.test` message now.
pub async fn test(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    let (channel, result, msg_id) =
        service::test_channel(&state.store, &state.budgets, &id).await?;
    Ok(Json(json!({
        "channel": channel,
        "webhook_id": msg_id,
        "delivered": result.ok(),
        "status": result.status,
        "error": result.error,
        "duration_ms": result.duration_ms,
        "response": result.response,
    })))
}
