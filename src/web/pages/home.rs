//! The overview page: spend, requests and the top features and models of the last 30 days.
//! Its numbers come from the same `analytics::costs` query as `/api/v1/costs`.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use chrono::{Duration, Utc};

use crate::analytics::costs::{self, CostQuery, MeasuresJson};
use crate::analytics::params::{Common, OrderBy, TimeRange, DEFAULT_LIMIT};
use crate::analytics::time::Interval;
use crate::domain::dimension::Dimension;
use crate::domain::money::{display_usd, to_api_string};
use crate::keys::Principal;
use crate::web::{auth, AppState, Error};

const DAYS: i64 = 30;

#[derive(Template)]
#[template(path = "home.html")]
pub struct HomePage {
    pub days: i64,
    pub total: MeasuresJson,
    pub total_cost_display: String,
    pub tables: Vec<TopTable>,
}

pub struct TopTable {
    pub title: &'static str,
    pub rows: Vec<TopRow>,
}

pub struct TopRow {
    pub key: String,
    pub cost: String,
    pub cost_exact: String,
    pub requests: i64,
    pub errors: i64,
}

pub async fn page(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, Error> {
    let now = Utc::now();
    let mut filters = Vec::new();
    auth::scope(&principal, &mut filters)?;
    let range = TimeRange {
        from: Some(now - Duration::days(DAYS)),
        to: Some(now),
    };
    let query = |group_by: Vec<Dimension>, limit: usize| CostQuery {
        common: Common {
            range,
            interval: Interval::None,
            tz: chrono_tz::Tz::UTC,
            group_by,
            filters: filters.clone(),
            order: Some(OrderBy {
                key: "cost".into(),
                descending: true,
            }),
            limit,
        },
    };
    let total = costs::query(&state.store, query(Vec::new(), DEFAULT_LIMIT))
        .await?
        .total;
    let mut tables = Vec::new();
    for (title, dim) in [
        ("features", Dimension::Feature),
        ("models", Dimension::Model),
        ("customers", Dimension::CustomerId),
    ] {
        let answer = costs::query(&state.store, query(vec![dim], 10)).await?;
        let rows = answer
            .rows
            .iter()
            .map(|r| TopRow {
                key: r.keys[0].clone().unwrap_or_else(|| "(none)".into()),
                cost: display_usd(r.measures.cost),
                cost_exact: to_api_string(r.measures.cost),
                requests: r.measures.requests,
                errors: r.measures.errors,
            })
            .collect();
        tables.push(TopTable { title, rows });
    }
    super::render(&HomePage {
        days: DAYS,
        total_cost_display: display_usd(total.cost),
        total: MeasuresJson::from(&total),
        tables,
    })
}
