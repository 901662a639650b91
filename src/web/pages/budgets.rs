//! The budgets page (`/budgets`): where every budget of the key's project stands, and the
//! latest alerts with their delivery state. Alert payloads link here (`/budgets#<id>`). Its
//! numbers come from the same `budgets::service` calls as `/api/v1/budgets/status` and
//! `/api/v1/alerts`.
//!
//! Admins also get the actions as plain HTML forms (no JavaScript needed): create or edit a
//! budget, redeliver an alert, send a channel's test message. Each form carries a CSRF token
//! bound to the session cookie (or, on a server without keys, to the server's secret), because
//! cookies and open mode are ambient authority another site could borrow. The actions call the
//! same `budgets::service` functions as the JSON API, so they validate identically.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use rust_decimal::Decimal;
use serde_json::Value;

use super::{error_page, render, urlencode, Layout, PageError};
use crate::analytics::params::pairs;
use crate::budgets::model::{BudgetSpec, Kind, OneOrMany};
use crate::budgets::service;
use crate::domain::money::display_usd;
use crate::keys::{Principal, Role};
use crate::store::queries::budgets::AlertsQuery;
use crate::web::auth::SessionCookie;
use crate::web::session::{cookie_value, COOKIE};
use crate::web::{AppState, Error};

/// Alerts shown.
const RECENT_ALERTS: usize = 50;

#[derive(Template)]
#[template(path = "budgets.html")]
pub struct BudgetsPage {
    pub layout: Layout,
    pub budgets: Vec<BudgetCard>,
    pub alerts: Vec<AlertLine>,
    /// Admin only: the form (prefilled when editing), channels with their test buttons, and
    /// the CSRF token every action form carries.
    pub admin: Option<AdminPart>,
    /// What the last action did (from the redirect after it).
    pub notice: Option<String>,
}

pub struct AdminPart {
    pub csrf: String,
    pub form: BudgetForm,
    pub channels: Vec<ChannelLine>,
}

/// The create/edit form's fields, as text.
#[derive(Default)]
pub struct BudgetForm {
    /// Set when editing.
    pub id: String,
    pub name: String,
    pub project: String,
    pub scope: String,
    pub split_by: String,
    pub period: String,
    pub tz: String,
    pub amount: String,
    pub thresholds: String,
    pub forecast: bool,
    pub channels: String,
}

pub struct ChannelLine {
    pub id: String,
    pub name: String,
    pub project: String,
    pub kind: String,
    pub url: String,
    pub enabled: bool,
}

pub struct BudgetCard {
    pub id: String,
    pub name: String,
    pub project: String,
    /// "month (America/Los_Angeles), $500.00" or "per run_id: 100 calls, $10.00".
    pub rule: String,
    pub state: String,
    pub rows: Vec<RowLine>,
    /// "50 %, 80 %, 100 %" (empty for run caps).
    pub thresholds: String,
}

pub struct RowLine {
    pub split: String,
    pub spent: String,
    pub spent_exact: String,
    pub percent: String,
    pub forecast: String,
    pub state: String,
    /// Progress bar width class: the percent used, in steps of 10, at most 100.
    pub bar: Option<u32>,
}

pub struct AlertLine {
    pub id: String,
    pub created_at: String,
    pub budget_id: String,
    pub budget_name: String,
    pub what: String,
    pub split: String,
    pub delivery: String,
    /// Superseded alerts were never sent (a higher threshold went instead): nothing to redeliver.
    pub redeliverable: bool,
}

fn text(v: &Value) -> String {
    v.as_str().map(str::to_string).unwrap_or_default()
}

fn usd(v: &Value) -> String {
    v.as_str()
        .and_then(|s| s.parse::<Decimal>().ok())
        .map(display_usd)
        .unwrap_or_else(|| "–".into())
}

pub async fn page(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    session: Option<Extension<SessionCookie>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let started = std::time::Instant::now();
    let params = pairs(raw.as_deref());
    let get = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let project = principal.project.clone();
    let status = service::status(&state.store, &state.budgets, project.as_deref(), None, None)
        .await
        .map_err(Error::from)?;
    let budgets = status["budgets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            let rule = if b["kind"] == "run_cap" {
                let mut caps = Vec::new();
                if let Some(n) = b["max_calls"].as_i64() {
                    caps.push(format!("{n} calls"));
                }
                if !b["max_cost"].is_null() {
                    caps.push(usd(&b["max_cost"]));
                }
                format!("each {}: {}", text(&b["per"]), caps.join(" or "))
            } else {
                let tz = b["tz"]
                    .as_str()
                    .map(|t| format!(" ({t})"))
                    .unwrap_or_default();
                let split = b["split_by"]
                    .as_str()
                    .map(|d| format!(", per {d}"))
                    .unwrap_or_default();
                format!("{}{tz}, {}{split}", text(&b["period"]), usd(&b["amount"]))
            };
            BudgetCard {
                id: text(&b["id"]),
                name: text(&b["name"]),
                project: text(&b["project"]),
                rule,
                state: text(&b["state"]),
                thresholds: thresholds_of(&state, &text(&b["id"])),
                rows: b["rows"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| RowLine {
                        split: r["split_value"].as_str().unwrap_or("(all)").to_string(),
                        spent: usd(&r["spent"]),
                        spent_exact: text(&r["spent"]),
                        percent: r["percent"]
                            .as_str()
                            .map(|p| format!("{p} %"))
                            .unwrap_or_else(|| format!("{} calls", r["calls"])),
                        forecast: if r["forecast"].is_null() {
                            "–".into()
                        } else {
                            usd(&r["forecast"])
                        },
                        state: text(&r["state"]),
                        bar: r["percent"]
                            .as_str()
                            .and_then(|p| p.parse::<Decimal>().ok())
                            .map(bar_width),
                    })
                    .collect(),
            }
        })
        .collect();
    let (alerts, _) = service::alerts(
        &state.store,
        AlertsQuery {
            project,
            limit: RECENT_ALERTS,
            ..AlertsQuery::default()
        },
    )
    .await?;
    let alerts = alerts
        .iter()
        .map(|a| {
            let deliveries = a["deliveries"].as_array().cloned().unwrap_or_default();
            let delivery = if a["state"] == "superseded" {
                "superseded (a higher threshold was sent)".to_string()
            } else if deliveries.is_empty() {
                "no channel".to_string()
            } else {
                deliveries
                    .iter()
                    .map(|d| {
                        format!(
                            "{}: {} ({} attempt{})",
                            d["channel_name"].as_str().unwrap_or("?"),
                            text(&d["state"]),
                            d["attempts"],
                            if d["attempts"] == 1 { "" } else { "s" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let what = match a["kind"].as_str().unwrap_or("") {
                "threshold" => format!(
                    "{} % reached, {} spent",
                    text(&a["threshold"]),
                    usd(&a["spent"])
                ),
                "forecast" => format!(
                    "forecast {} over {}",
                    usd(&a["forecast"]),
                    usd(&a["amount"])
                ),
                "run_cap_calls" => "run passed its call cap".to_string(),
                _ => format!("run passed its cost cap ({})", usd(&a["spent"])),
            };
            AlertLine {
                id: text(&a["id"]),
                created_at: text(&a["created_at"]),
                budget_id: text(&a["budget_id"]),
                budget_name: text(&a["budget_name"]),
                what,
                split: a["split_value"].as_str().unwrap_or("").to_string(),
                redeliverable: a["state"] != "superseded" && !deliveries.is_empty(),
                delivery,
            }
        })
        .collect();
    let admin = if principal.role == Role::Admin {
        let form = match get("edit") {
            Some(id) => {
                let b = service::get_budget(&state.budgets, &id)
                    .filter(|b| principal.project.as_ref().is_none_or(|p| *p == b.project))
                    .ok_or_else(|| Error::NotFound(format!("no budget {id:?}")))?;
                form_of(&b.id, b.to_spec())
            }
            None => BudgetForm {
                project: principal.project.clone().unwrap_or_default(),
                period: "month".into(),
                tz: "UTC".into(),
                thresholds: "50, 80, 100".into(),
                ..BudgetForm::default()
            },
        };
        let channels = service::list_channels(&state.store, principal.project.as_deref())
            .await?
            .into_iter()
            .map(|c| ChannelLine {
                id: c.id,
                name: c.name,
                project: c.project,
                kind: c.kind,
                url: c.url,
                enabled: c.enabled,
            })
            .collect();
        Some(AdminPart {
            csrf: form_token(&state, session.as_ref().map(|s| s.0 .0.as_str())),
            form,
            channels,
        })
    } else {
        None
    };
    let layout = Layout::new(
        "Budgets",
        "budgets",
        &principal,
        session.as_ref().map(|s| &s.0),
        state.auth.sessions(),
    );
    render(
        &BudgetsPage {
            layout,
            budgets,
            alerts,
            admin,
            notice: get("notice"),
        },
        started,
        "budgets",
    )
}

/// "50 %, 80 %, 100 %" for a spend budget; empty for a run cap.
fn thresholds_of(state: &AppState, id: &str) -> String {
    match service::get_budget(&state.budgets, id).map(|b| b.kind.clone()) {
        Some(Kind::Spend(rule)) => rule
            .thresholds
            .iter()
            .map(|t| format!("{} %", t.normalize()))
            .collect::<Vec<_>>()
            .join(", "),
        _ => String::new(),
    }
}

/// The bar's width class for a percent used: rounded down to tens, 0 to 100.
pub fn bar_width(percent: Decimal) -> u32 {
    let tens = (percent / Decimal::TEN).floor();
    let tens = if tens < Decimal::ZERO {
        0
    } else if tens > Decimal::TEN {
        10
    } else {
        tens.to_string().parse::<u32>().unwrap_or(0)
    };
    tens * 10
}

/// What signs a form when there is no session: a server without keys (open mode).
const NO_SESSION: &str = "no-session";

/// The CSRF token of this browser's forms.
fn form_token(state: &AppState, cookie: Option<&str>) -> String {
    state
        .auth
        .sessions()
        .csrf_token(cookie.unwrap_or(NO_SESSION))
}

/// Checks an action form's token: `None` when it is valid, else the 403 page to answer.
fn refuse_form(
    state: &AppState,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Option<Response> {
    let cookie = cookie_value(headers, COOKIE).unwrap_or(NO_SESSION);
    let token = form.get("csrf").map(String::as_str).unwrap_or("");
    if state.auth.sessions().check_csrf(cookie, token) {
        None
    } else {
        Some(error_page(
            StatusCode::FORBIDDEN,
            "The form expired or came from another site; go back, reload and try again.",
        ))
    }
}

fn back(notice: &str, anchor: &str) -> Response {
    Redirect::to(&format!("/budgets?notice={}{anchor}", urlencode(notice))).into_response()
}

fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn form_of(id: &str, spec: BudgetSpec) -> BudgetForm {
    let scope = spec
        .scope
        .iter()
        .map(|(k, v)| match v {
            OneOrMany::One(s) => format!("{k}={s}"),
            OneOrMany::Many(vs) => format!("{k}={}", vs.join("|")),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let join = |v: Option<Vec<Decimal>>| {
        v.map(|v| {
            v.iter()
                .map(|d| d.normalize().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
    };
    BudgetForm {
        id: id.into(),
        name: spec.name,
        project: spec.project.unwrap_or_default(),
        scope,
        split_by: spec.split_by.unwrap_or_default(),
        period: spec.period.unwrap_or_default(),
        tz: spec.tz.unwrap_or_default(),
        amount: spec
            .amount
            .map(|a| a.normalize().to_string())
            .unwrap_or_default(),
        thresholds: join(spec.thresholds),
        forecast: spec.forecast.unwrap_or(false),
        channels: spec.channels.join(", "),
    }
}

/// The form's fields as the API's budget spec; a message naming the field otherwise.
fn spec_of(form: &HashMap<String, String>) -> Result<BudgetSpec, String> {
    let field = |k: &str| {
        form.get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let mut scope = std::collections::BTreeMap::new();
    for part in list(&field("scope").unwrap_or_default()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("scope: {part:?} is not dimension=value"))?;
        let values: Vec<String> = v.split('|').map(|s| s.trim().to_string()).collect();
        let value = if values.len() == 1 {
            OneOrMany::One(values.into_iter().next().unwrap_or_default())
        } else {
            OneOrMany::Many(values)
        };
        scope.insert(k.trim().to_string(), value);
    }
    let decimal = |k: &str, v: &str| {
        v.parse::<Decimal>()
            .map_err(|_| format!("{k}: {v:?} is not a decimal number"))
    };
    let amount = field("amount").map(|a| decimal("amount", &a)).transpose()?;
    let thresholds = field("thresholds")
        .map(|t| {
            list(&t)
                .iter()
                .map(|v| decimal("thresholds", v))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    Ok(BudgetSpec {
        name: field("name").unwrap_or_default(),
        project: field("project"),
        scope,
        split_by: field("split_by"),
        period: field("period"),
        tz: field("tz"),
        amount,
        thresholds,
        forecast: Some(form.contains_key("forecast")),
        channels: list(&field("channels").unwrap_or_default()),
        run_cap: None,
    })
}

/// `POST /budgets` (admin): creates a budget from the form, or replaces the one named by `id`.
pub async fn save(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, PageError> {
    if let Some(refused) = refuse_form(&state, &headers, &form) {
        return Ok(refused);
    }
    let mut spec = spec_of(&form).map_err(Error::BadRequest)?;
    if let Some(own) = principal.project.as_ref() {
        match spec.project.as_ref() {
            Some(p) if p != own => {
                return Err(
                    Error::Forbidden(format!("this key manages only project {own:?}")).into(),
                )
            }
            _ => spec.project = Some(own.clone()),
        }
    }
    let id = form.get("id").map(|s| s.trim()).unwrap_or("");
    let b = if id.is_empty() {
        service::create_budget(&state.store, &state.budgets, spec).await
    } else {
        service::replace_budget(&state.store, &state.budgets, id, spec).await
    }
    .map_err(Error::from)?;
    let verb = if id.is_empty() { "created" } else { "saved" };
    Ok(back(
        &format!("Budget {:?} {verb}.", b.name),
        &format!("#{}", b.id),
    ))
}

/// `POST /budgets/alerts/{id}/redeliver` (admin): queues the alert again on its channels.
pub async fn redeliver(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, PageError> {
    if let Some(refused) = refuse_form(&state, &headers, &form) {
        return Ok(refused);
    }
    let project = service::alert_project(&state.store, &id).await?;
    if project.is_none()
        || principal
            .project
            .as_ref()
            .is_some_and(|own| project.as_ref() != Some(own))
    {
        return Err(Error::NotFound(format!("no alert {id:?}")).into());
    }
    let queued = service::redeliver(&state.store, &state.budgets, &id, None)
        .await
        .map_err(Error::from)?;
    tracing::info!(alert_id = %id, channels = queued.len(), "alert queued for redelivery from the page");
    Ok(back(
        &format!("Alert queued again on {} channel(s).", queued.len()),
        "#alerts",
    ))
}

/// `POST /budgets/channels/{id}/test` (admin): sends a signed test message now.
pub async fn test_channel(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, PageError> {
    if let Some(refused) = refuse_form(&state, &headers, &form) {
        return Ok(refused);
    }
    let channel = service::get_channel(&state.store, &id)
        .await
        .map_err(Error::from)?;
    if principal
        .project
        .as_ref()
        .is_some_and(|own| *own != channel.project)
    {
        return Err(Error::NotFound(format!("no channel {id:?}")).into());
    }
    let (channel, result, _) = service::test_channel(&state.store, &state.budgets, &id)
        .await
        .map_err(Error::from)?;
    let outcome = if result.ok() {
        format!("delivered (HTTP {})", result.status.unwrap_or_default())
    } else {
        match (result.status, result.error) {
            (Some(status), _) => format!("failed: HTTP {status}"),
            (None, Some(e)) => format!("failed: {e}"),
            (None, None) => "failed".to_string(),
        }
    };
    Ok(back(
        &format!("Test message to {:?}: {outcome}.", channel.name),
        "#channels",
    ))
}
