//! The reconciliation page: what the providers billed against what Tally metered, per provider
//! and day, with the gap highlighted. It renders the answer of `analytics::reconciliation` —
//! the code behind `/api/v1/reconciliation` — from that answer's own JSON, so the page and the
//! API cannot disagree; it computes no number itself.

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::Extension;
use chrono::Utc;
use rust_decimal::Decimal;
use serde_json::Value;

use super::{render, Layout, PageError, Range};
use crate::analytics::params::pairs;
use crate::analytics::reconciliation::{self, ReconQuery};
use crate::domain::money::display_usd;
use crate::keys::Principal;
use crate::web::auth::{self, SessionCookie};
use crate::web::AppState;

#[derive(Template)]
#[template(path = "reconciliation.html")]
pub struct ReconciliationPage {
    pub layout: Layout,
    pub range: Range,
    pub keep: Vec<(String, String)>,
    pub rows: Vec<Line>,
    pub total: Line,
    /// Lines billed in another currency, per currency (never summed with USD).
    pub other_currencies: Vec<(String, String)>,
    pub api_link: String,
}

/// One provider and day (or the total), as shown.
pub struct Line {
    pub provider: String,
    pub day: String,
    pub billed: Money,
    pub metered: Money,
    pub gap: Money,
    pub gap_pct: String,
    pub coverage_pct: String,
    pub unattributed: Money,
    /// `over` (billed more than metered), `under` or `even`: the highlight.
    pub gap_class: &'static str,
}

/// A sum of money: rounded for reading, exact in `title`/`data-exact`.
pub struct Money {
    pub shown: String,
    pub exact: String,
}

fn money(v: &Value) -> Money {
    let exact = v.as_str().unwrap_or("0").to_string();
    let shown = exact
        .parse::<Decimal>()
        .map(display_usd)
        .unwrap_or_else(|_| exact.clone());
    Money { shown, exact }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "–".into(),
        other => other.to_string(),
    }
}

fn line(v: &Value) -> Line {
    let gap = v["gap"]
        .as_str()
        .and_then(|s| s.parse::<Decimal>().ok())
        .unwrap_or_default();
    Line {
        provider: text(&v["provider"]),
        day: text(&v["day"]),
        billed: money(&v["billed"]),
        metered: money(&v["metered"]),
        gap: money(&v["gap"]),
        gap_pct: text(&v["gap_pct"]),
        coverage_pct: text(&v["coverage_pct"]),
        unattributed: money(&v["unattributed"]),
        gap_class: if gap > Decimal::ZERO {
            "over"
        } else if gap < Decimal::ZERO {
            "under"
        } else {
            "even"
        },
    }
}

/// `GET /reconciliation?range=…&tz=…`.
pub async fn page(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    session: Option<Extension<SessionCookie>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let started = std::time::Instant::now();
    let range = Range::from_pairs(&pairs(raw.as_deref()), Utc::now())?;
    // Exactly the API's question: the same parameters the page links to.
    let api_query = format!("{}&group_by=provider,day", range.api_query());
    let mut q = ReconQuery::parse(&pairs(Some(&api_query)))?;
    auth::scope(&principal, &mut q.filters)?;
    let answer = reconciliation::query(&state.store, q).await?.to_json();
    let rows = answer["rows"]
        .as_array()
        .map(|rows| rows.iter().map(line).collect())
        .unwrap_or_default();
    let other_currencies = answer["total"]["billed_other_currencies"]
        .as_object()
        .map(|m| m.iter().map(|(c, v)| (c.clone(), text(v))).collect())
        .unwrap_or_default();
    let page = ReconciliationPage {
        layout: Layout::new(
            "Reconciliation",
            "reconciliation",
            &principal,
            session.as_ref().map(|s| &s.0),
            state.auth.sessions(),
        ),
        keep: Vec::new(),
        rows,
        total: line(&answer["total"]),
        other_currencies,
        api_link: format!("/api/v1/reconciliation?{api_query}"),
        range,
    };
    render(&page, started, "reconciliation")
}
