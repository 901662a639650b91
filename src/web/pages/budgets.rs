//! The budgets page (`/budgets`): where every budget of the key's project stands, and the
//! latest alerts with their delivery state. Alert payloads link here (`/budgets#<id>`). Its
//! numbers come from the same `budgets::service` calls as `/api/v1/budgets/status` and
//! `/api/v1/alerts`.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use rust_decimal::Decimal;
use serde_json::Value;

use super::{render, Layout, PageError};
use crate::budgets::service;
use crate::domain::money::display_usd;
use crate::keys::Principal;
use crate::store::queries::budgets::AlertsQuery;
use crate::web::auth::SessionCookie;
use crate::web::{AppState, Error};

/// Alerts shown.
const RECENT_ALERTS: usize = 50;

#[derive(Template)]
#[template(path = "budgets.html")]
pub struct BudgetsPage {
    pub layout: Layout,
    pub budgets: Vec<BudgetCard>,
    pub alerts: Vec<AlertLine>,
}

pub struct BudgetCard {
    pub id: String,
    pub name: String,
    pub project: String,
    /// "month (America/Los_Angeles), $500.00" or "per run_id: 100 calls, $10.00".
    pub rule: String,
    pub state: String,
    pub rows: Vec<RowLine>,
}

pub struct RowLine {
    pub split: String,
    pub spent: String,
    pub spent_exact: String,
    pub percent: String,
    pub forecast: String,
    pub state: String,
}

pub struct AlertLine {
    pub created_at: String,
    pub budget_id: String,
    pub budget_name: String,
    pub what: String,
    pub split: String,
    pub delivery: String,
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
) -> Result<Response, PageError> {
    let started = std::time::Instant::now();
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
                created_at: text(&a["created_at"]),
                budget_id: text(&a["budget_id"]),
                budget_name: text(&a["budget_name"]),
                what,
                split: a["split_value"].as_str().unwrap_or("").to_string(),
                delivery,
            }
        })
        .collect();
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
        },
        started,
        "budgets",
    )
}
