//! Routes: direct calls against each gateway, per provider and model — requests, error rate
//! (split by error type in the tooltip), latency and time-to-first-token percentiles,
//! effective price per million input and output tokens, and the markup over list price.
//!
//! The table is `/api/v1/routes`' answer for the page's range, grouping and filters (the link
//! on the page is that exact query); cells carry the API's exact values in `data-exact`.

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::Extension;
use chrono::Utc;
use serde_json::Value;

use super::tasks::{dimension_filters, pick, query_string, range_pairs, Cell, Column, Kind};
use super::{render, Layout, PageError, Range};
use crate::analytics::params::pairs;
use crate::analytics::routes::{self, RouteQuery};
use crate::analytics::Tabular;
use crate::keys::Principal;
use crate::web::auth::{self, SessionCookie};
use crate::web::AppState;

/// Groupings offered (after `route`, which is always first).
const GROUPS: [(&str, &str); 4] = [
    ("provider,model", "provider and model"),
    ("provider", "provider"),
    ("model", "model"),
    ("", "route only"),
];

const SHOWN: [(&str, &str, Kind); 10] = [
    ("requests", "Requests", Kind::Count),
    ("error_rate", "Error rate", Kind::Fraction),
    ("latency_ms_p50", "Latency p50", Kind::Millis),
    ("latency_ms_p95", "p95", Kind::Millis),
    ("latency_ms_p99", "p99", Kind::Millis),
    ("ttft_ms_p50", "TTFT p50", Kind::Millis),
    (
        "effective_input_price_mtok",
        "Input $/M tokens",
        Kind::PerMillion,
    ),
    (
        "effective_output_price_mtok",
        "Output $/M tokens",
        Kind::PerMillion,
    ),
    ("cost", "Cost", Kind::Money),
    ("markup_pct", "Markup over list", Kind::Percent),
];

#[derive(Template)]
#[template(path = "routes.html")]
pub struct RoutesPage {
    pub layout: Layout,
    pub range: Range,
    pub keep: Vec<(String, String)>,
    pub carried: Vec<(String, String)>,
    pub groups: Vec<(&'static str, &'static str)>,
    pub group: String,
    pub filters: Vec<String>,
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Cell>>,
    pub api_link: String,
    pub truncated: bool,
}

pub async fn page(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    session: Option<Extension<SessionCookie>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let started = std::time::Instant::now();
    let params = pairs(raw.as_deref());
    let range = Range::from_pairs(&params, Utc::now())?;
    let group = params
        .iter()
        .find(|(k, _)| k == "group_by")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "provider,model".into());
    let filters = dimension_filters(&params);
    let mut api_pairs = range_pairs(&range);
    if !group.is_empty() {
        api_pairs.push(("group_by".into(), group.clone()));
    }
    api_pairs.extend(filters.iter().cloned());
    let api_link = format!("/api/v1/routes?{}", query_string(&api_pairs));
    let mut q = RouteQuery::parse(&api_pairs)?;
    auth::scope(&principal, &mut q.common.filters)?;
    let answer = routes::query(&state.store, state.pricer.clone(), q).await?;
    let keys: Vec<String> = answer
        .query
        .common
        .group_by
        .iter()
        .map(|d| d.name().to_string())
        .collect();
    let table = answer.table();
    let (columns, mut rows) = pick(&table, &keys, &SHOWN);
    // The error rate's tooltip splits it by error type.
    let types_at = table.columns.iter().position(|c| c == "error_types");
    let rate_at = keys.len() + 1;
    for (row, values) in rows.iter_mut().zip(&table.rows) {
        let Some(Value::Array(types)) = types_at.and_then(|i| values.get(i)) else {
            continue;
        };
        if types.is_empty() {
            continue;
        }
        let split: Vec<String> = types
            .iter()
            .map(|t| {
                format!(
                    "{}: {}",
                    t["error_type"].as_str().unwrap_or("(none)"),
                    t["errors"]
                )
            })
            .collect();
        if let Some(c) = row.get_mut(rate_at) {
            c.text = format!("{} ({})", c.text, split.join(", "));
        }
    }
    let keep = params
        .iter()
        .filter(|(k, _)| !["range", "from", "to", "tz"].contains(&k.as_str()))
        .cloned()
        .collect();
    let page = RoutesPage {
        layout: Layout::new(
            "Routes",
            "routes",
            &principal,
            session.as_ref().map(|s| &s.0),
            state.auth.sessions(),
        ),
        keep,
        carried: filters.clone(),
        groups: GROUPS.to_vec(),
        group,
        filters: filters
            .iter()
            .map(|(k, v)| format!("{k} = {}", if v.is_empty() { "(none)" } else { v }))
            .collect(),
        columns,
        rows,
        api_link,
        truncated: answer.truncated,
        range,
    };
    render(&page, started, "routes")
}
