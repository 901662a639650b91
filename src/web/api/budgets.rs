//! `/api/v1/budgets` (CRUD, admin), `/api/v1/budgets/status` (read) and `/v1/budget-check`
//! (ingest or read: gateways ask it before a call).

use std::collections::HashMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::Utc;
use serde_json::{json, Value};

use crate::analytics::params::pairs;
use crate::analytics::time::parse_bound;
use crate::budgets::evaluate::State as BudgetState;
use crate::budgets::model::BudgetSpec;
use crate::budgets::service::{self, ServiceError};
use crate::budgets::status::{self as bstatus, CheckQuery};
use crate::budgets::{check_dimensions, status::reading_json};
use crate::domain::dimension::Dimension;
use crate::keys::{Principal, DEFAULT_PROJECT};
use crate::web::{auth, extract, format, AppState, Error};

impl From<ServiceError> for Error {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid(e) => Error::BadRequest(e.to_string()),
            ServiceError::NotFound(m) => Error::NotFound(m),
            ServiceError::Conflict(m) => Error::Conflict(m),
            ServiceError::Store(e) => e.into(),
        }
    }
}

/// Rejects query parameters other than `allowed`, naming them.
pub fn only(pairs: &[(String, String)], allowed: &[&str]) -> Result<(), Error> {
    let unknown: Vec<&str> = pairs
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !allowed.contains(k))
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "unknown parameter {}; expected {}",
            unknown.join(", "),
            if allowed.is_empty() {
                "none".to_string()
            } else {
                allowed.join(", ")
            }
        )))
    }
}

fn param<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// `GET /api/v1/budgets[?project=]`.
pub async fn list(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, Error> {
    let pairs = pairs(query.as_deref());
    only(&pairs, &["project"])?;
    let budgets: Vec<Value> = service::list_budgets(&state.budgets, param(&pairs, "project"))
        .iter()
        .map(|b| service::budget_json(b))
        .collect();
    Ok(Json(json!({ "budgets": budgets })))
}

/// `POST /api/v1/budgets`.
pub async fn create(
    State(state): State<AppState>,
    extract::Json(spec): extract::Json<BudgetSpec>,
) -> Result<(StatusCode, Json<Value>), Error> {
    let b = service::create_budget(&state.store, &state.budgets, spec).await?;
    Ok((StatusCode::CREATED, Json(service::budget_json(&b))))
}

/// `GET /api/v1/budgets/{id}`.
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    service::get_budget(&state.budgets, &id)
        .map(|b| Json(service::budget_json(&b)))
        .ok_or_else(|| Error::NotFound(format!("no budget {id:?}")))
}

/// `PUT /api/v1/budgets/{id}`: the whole definition.
pub async fn replace(
    State(state): State<AppState>,
    Path(id): Path<String>,
    extract::Json(spec): extract::Json<BudgetSpec>,
) -> Result<Json<Value>, Error> {
    let b = service::replace_budget(&state.store, &state.budgets, &id, spec).await?;
    Ok(Json(service::budget_json(&b)))
}

/// `DELETE /api/v1/budgets/{id}`.
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    service::delete_budget(&state.store, &state.budgets, &id).await?;
    Ok(Json(json!({ "deleted": id })))
}

/// `GET /api/v1/budgets/status[?project=&budget=&at=]`.
pub async fn status(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> Result<Response, Error> {
    let (fmt, pairs) = format::split(query.as_deref())?;
    only(&pairs, &["project", "budget", "at"])?;
    let project = auth::project_for_read(&principal, param(&pairs, "project"))?;
    let at = param(&pairs, "at")
        .map(|raw| {
            parse_bound(raw, chrono_tz::Tz::UTC, false)
                .map_err(|e| Error::BadRequest(format!("at: {e}")))
        })
        .transpose()?;
    let budget = param(&pairs, "budget");
    if let (Some(id), Some(p)) = (budget, project.as_deref()) {
        // Another project's budget is simply not there for this key.
        if service::get_budget(&state.budgets, id).is_some_and(|b| b.project != p) {
            return Err(Error::NotFound(format!("no budget {id:?}")));
        }
    }
    let answer =
        service::status(&state.store, &state.budgets, project.as_deref(), budget, at).await?;
    if fmt == format::Format::Json {
        return Ok(Json(answer).into_response());
    }
    // A file gets one row per budget reading (a budget per attribution value, or a run near
    // its cap), with the budget's own fields beside it, rather than nested lists.
    let flat = format::flatten(&answer, "budgets", "rows", "budget_");
    let columns = format::columns(&["budget_id", "budget_name", "budget_state"]);
    format::respond(fmt, flat, "rows", "budgets-status", &columns).await
}

/// `GET /v1/budget-check?<dimension>=<value>…`: the budgets a call with these attributes would
/// count toward, from memory. Spend is known only after calls complete and are ingested, so
/// enforcement through this answer is eventually consistent.
pub async fn check(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, Error> {
    let pairs = pairs(query.as_deref());
    let mut given: HashMap<Dimension, Vec<String>> = HashMap::new();
    let mut project_param = None;
    for (key, value) in &pairs {
        if key == "project" {
            project_param = Some(value.as_str());
            continue;
        }
        let dim = key
            .parse::<Dimension>()
            .ok()
            .filter(|d| check_dimensions().any(|c| c == *d))
            .ok_or_else(|| {
                Error::BadRequest(format!(
                    "unknown parameter {key}; expected project or the call's dimensions ({})",
                    Dimension::all_names()
                ))
            })?;
        let values = given.entry(dim).or_default();
        if dim == Dimension::Tag {
            values.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(str::to_string),
            );
        } else {
            if !values.is_empty() {
                return Err(Error::BadRequest(format!(
                    "{key}: a call has one {key}; give it once"
                )));
            }
            if value.is_empty() {
                return Err(Error::BadRequest(format!("{key}: empty value")));
            }
            values.push(value.clone());
        }
    }
    let project = auth::project_for_read(&principal, project_param)?
        .unwrap_or_else(|| DEFAULT_PROJECT.to_string());
    let q = CheckQuery {
        project: project.clone(),
        given,
    };
    let now = Utc::now();
    let budgets = state.budgets.budgets();
    let (matches, as_of) = state
        .budgets
        .with_snapshot(|s| (bstatus::check(&budgets, s, &q, now), s.refreshed_at));
    let mut worst = BudgetState::Ok;
    let list: Vec<Value> = matches
        .iter()
        .map(|(b, r)| {
            worst = worst.max(bstatus::state_of(b, r));
            let mut v = reading_json(b, r);
            if let Value::Object(m) = &mut v {
                m.insert("id".into(), b.id.clone().into());
                m.insert("name".into(), b.name.clone().into());
                m.insert(
                    "kind".into(),
                    match b.kind {
                        crate::budgets::model::Kind::Spend(_) => "spend",
                        crate::budgets::model::Kind::RunCap(_) => "run_cap",
                    }
                    .into(),
                );
                m.insert("split_by".into(), b.split_dim().map(|d| d.name()).into());
            }
            v
        })
        .collect();
    Ok(Json(json!({
        "project": project,
        "state": worst.as_str(),
        "budgets": list,
        "refreshed_at": as_of.map(|t| t.to_rfc3339()),
        "note": "spend is known after calls complete and are ingested, so enforcement through this answer is eventually consistent",
    })))
}
