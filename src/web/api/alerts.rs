//! `GET /api/v1/alerts` (read: the history with deliveries and every attempt) and
//! `POST /api/v1/alerts/{id}/redeliver` (admin).

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::budgets::only;
use crate::analytics::params::pairs;
use crate::budgets::evaluate::AlertKind;
use crate::budgets::service;
use crate::keys::Principal;
use crate::store::queries::budgets::AlertsQuery;
use crate::web::format;
use crate::web::{auth, AppState, Error};

/// Default and largest number of alerts listed.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> Result<Response, Error> {
    let (fmt, pairs) = format::split(query.as_deref())?;
    only(&pairs, &["project", "budget", "kind", "limit"])?;
    let mut q = AlertsQuery {
        limit: DEFAULT_LIMIT,
        ..AlertsQuery::default()
    };
    let mut asked_project = None;
    for (k, v) in &pairs {
        match k.as_str() {
            "project" => asked_project = Some(v.as_str()),
            "budget" => q.budget_id = Some(v.clone()),
            "kind" => {
                let kind = AlertKind::parse(v).ok_or_else(|| {
                    Error::BadRequest(format!(
                        "kind: {v:?}; expected threshold, forecast, run_cap_cost or run_cap_calls"
                    ))
                })?;
                q.kind = Some(kind.as_str().to_string());
            }
            "limit" => {
                q.limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        Error::BadRequest(format!("limit: must be between 1 and {MAX_LIMIT}"))
                    })?
            }
            _ => {}
        }
    }
    q.project = auth::project_for_read(&principal, asked_project)?;
    let (alerts, truncated) = service::alerts(&state.store, q).await?;
    let answer = json!({ "alerts": alerts, "truncated": truncated });
    // Deliveries and their attempts stay nested (JSON text in a file): an alert is one row.
    format::respond(fmt, answer, "alerts", "alerts", &format::columns(&["id"])).await
}

pub async fn redeliver(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<(StatusCode, Json<Value>), Error> {
    let pairs = pairs(query.as_deref());
    only(&pairs, &["channel"])?;
    let channel = pairs
        .iter()
        .find(|(k, _)| k == "channel")
        .map(|(_, v)| v.as_str());
    let queued = service::redeliver(&state.store, &state.budgets, &id, channel).await?;
    tracing::info!(alert_id = %id, channels = queued.len(), "alert queued for redelivery");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "alert_id": id, "queued": queued })),
    ))
}
