//! Tasks & runs: cost per successful task by a dimension (feature, agent, model, …) and the
//! run list, most expensive first, each run linking to its call tree (`/runs/{id}`).
//!
//! The page owns no numbers: it turns its address into the query strings of
//! `/api/v1/tasks` and `/api/v1/runs` (linked on the page), parses them with the API's own
//! parsers and renders the API's tabular answers. Cells carry the answer's exact value in
//! `data-exact`, so a test (or a person) can check the page against the JSON.

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::Extension;
use chrono::Utc;
use rust_decimal::Decimal;
use serde_json::Value;

use super::{render, urlencode, Layout, PageError, Range};
use crate::analytics::params::pairs;
use crate::analytics::runs::{self, RunListQuery};
use crate::analytics::tasks::{self, TaskQuery};
use crate::analytics::{Table, Tabular};
use crate::domain::dimension::Dimension;
use crate::domain::money::display_usd;
use crate::keys::Principal;
use crate::web::auth::{self, SessionCookie};
use crate::web::AppState;

/// Runs the page lists.
const RUNS_SHOWN: usize = 25;

/// How a column's value is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Count,
    /// USD, shown rounded; exact in `data-exact`.
    Money,
    /// A fraction (0.25), shown as a percentage.
    Fraction,
    /// Already a percentage (markup_pct).
    Percent,
    /// A mean count, shown to two decimals.
    Mean,
    /// Milliseconds (a duration, not money).
    Millis,
    /// USD per million tokens.
    PerMillion,
}

/// One table cell.
pub struct Cell {
    pub text: String,
    /// The answer's value as the JSON API gives it (empty for text cells).
    pub exact: String,
    pub numeric: bool,
    /// A link, when the cell opens something.
    pub href: String,
}

/// A column heading.
pub struct Column {
    pub key: String,
    pub label: String,
    pub numeric: bool,
}

/// Renders one value of an answer's table.
pub fn cell(v: &Value, kind: Kind) -> Cell {
    let exact = match v {
        Value::String(s) if kind != Kind::Text => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    let dec = || match v {
        Value::String(s) => s.parse::<Decimal>().ok(),
        Value::Number(n) => n.to_string().parse::<Decimal>().ok(),
        _ => None,
    };
    let text = match (kind, v) {
        (_, Value::Null) => "–".to_string(),
        (Kind::Text, Value::String(s)) => s.clone(),
        (Kind::Money, _) => dec().map_or_else(String::new, display_usd),
        (Kind::PerMillion, _) => {
            dec().map_or_else(String::new, |d| format!("{} /M", display_usd(d)))
        }
        (Kind::Fraction, _) => dec().map_or_else(String::new, |d| {
            format!("{} %", (d * Decimal::ONE_HUNDRED).round_dp(1))
        }),
        (Kind::Percent, _) => dec().map_or_else(String::new, |d| format!("{} %", d.round_dp(1))),
        (Kind::Mean, _) => dec().map_or_else(String::new, |d| d.round_dp(2).to_string()),
        (Kind::Millis, _) => dec().map_or_else(String::new, |d| format!("{} ms", d.round_dp(0))),
        (_, Value::String(s)) => s.clone(),
        (_, other) => other.to_string(),
    };
    Cell {
        text,
        exact,
        numeric: kind != Kind::Text,
        href: String::new(),
    }
}

/// A cell of plain text.
pub fn text_cell(text: &str) -> Cell {
    Cell {
        text: text.into(),
        exact: String::new(),
        numeric: false,
        href: String::new(),
    }
}

/// A table's footer for [`pick`]'s columns: "Total" under the first of `keys` group keys
/// (nothing when there are none), then each shown column's total, `total(key)`.
pub fn total_row(
    keys: usize,
    shown: &[(&str, &str, Kind)],
    total: impl Fn(&str) -> Value,
) -> Vec<Cell> {
    (0..keys)
        .map(|i| text_cell(if i == 0 { "Total" } else { "" }))
        .chain(shown.iter().map(|(k, _, kind)| cell(&total(k), *kind)))
        .collect()
}

/// Picks `shown` columns (key, heading, kind) of an answer's table, in that order; group keys
/// (`keys`) come first, shown as text with "(none)" for a missing value.
pub fn pick(
    table: &Table,
    keys: &[String],
    shown: &[(&str, &str, Kind)],
) -> (Vec<Column>, Vec<Vec<Cell>>) {
    let index = |name: &str| table.columns.iter().position(|c| c == name);
    let mut columns: Vec<Column> = keys
        .iter()
        .map(|k| Column {
            key: k.clone(),
            label: k.replace('_', " "),
            numeric: false,
        })
        .collect();
    columns.extend(shown.iter().map(|(k, l, kind)| Column {
        key: (*k).to_string(),
        label: (*l).to_string(),
        numeric: *kind != Kind::Text,
    }));
    let rows = table
        .rows
        .iter()
        .map(|row| {
            let mut cells: Vec<Cell> = keys
                .iter()
                .map(|k| {
                    let v = index(k)
                        .and_then(|i| row.get(i))
                        .cloned()
                        .unwrap_or(Value::Null);
                    let mut c = cell(&v, Kind::Text);
                    if v.is_null() {
                        c.text = "(none)".into();
                    }
                    c
                })
                .collect();
            for (k, _, kind) in shown {
                let v = index(k)
                    .and_then(|i| row.get(i))
                    .cloned()
                    .unwrap_or(Value::Null);
                cells.push(cell(&v, *kind));
            }
            cells
        })
        .collect();
    (columns, rows)
}

/// The address's dimension filters, as `(dimension, value)` pairs.
pub fn dimension_filters(params: &[(String, String)]) -> Vec<(String, String)> {
    params
        .iter()
        .filter(|(k, _)| k.parse::<Dimension>().is_ok())
        .cloned()
        .collect()
}

/// A query string from pairs.
pub fn query_string(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes a path segment (everything but RFC 3986's unreserved characters).
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The exact range of the page as API parameters.
pub fn range_pairs(range: &Range) -> Vec<(String, String)> {
    vec![
        ("from".into(), range.from.to_rfc3339()),
        ("to".into(), range.to.to_rfc3339()),
        ("tz".into(), range.tz.name().to_string()),
    ]
}

/// Dimensions offered in the group-by select.
const GROUPS: [&str; 6] = [
    "feature",
    "agent",
    "model",
    "user_id",
    "customer_id",
    "project",
];

/// The headline first, so it is visible without scrolling.
const TASK_COLUMNS: [(&str, &str, Kind); 11] = [
    (
        "cost_per_successful_task",
        "Cost per successful task",
        Kind::Money,
    ),
    ("cost", "Cost (all calls + rework)", Kind::Money),
    ("successful", "Successful", Kind::Count),
    ("tasks", "Tasks", Kind::Count),
    ("success_rate", "Success rate", Kind::Fraction),
    ("retry_cost", "Retry waste", Kind::Money),
    ("calls_per_task_mean", "Calls per task", Kind::Mean),
    ("failed", "Failed", Kind::Count),
    ("abandoned", "Abandoned", Kind::Count),
    ("open", "Open", Kind::Count),
    ("unknown", "Unknown", Kind::Count),
];

const RUN_COLUMNS: [(&str, &str, Kind); 11] = [
    ("agent", "Agent", Kind::Text),
    ("feature", "Feature", Kind::Text),
    ("model", "Model", Kind::Text),
    ("state", "State", Kind::Text),
    ("calls", "Calls", Kind::Count),
    ("errors", "Errors", Kind::Count),
    ("retries", "Retries", Kind::Count),
    ("fallbacks", "Fallbacks", Kind::Count),
    ("duration_ms", "Duration", Kind::Millis),
    ("retry_cost", "Retry waste", Kind::Money),
    ("cost", "Cost", Kind::Money),
];

#[derive(Template)]
#[template(path = "tasks.html")]
pub struct TasksPage {
    pub layout: Layout,
    pub range: Range,
    pub keep: Vec<(String, String)>,
    pub carried: Vec<(String, String)>,
    pub groups: Vec<&'static str>,
    pub group: String,
    pub filters: Vec<String>,
    pub task_columns: Vec<Column>,
    pub task_rows: Vec<Vec<Cell>>,
    pub task_total: Vec<Cell>,
    pub tasks_api: String,
    /// The same tasks in Explore: over time, sortable, with a CSV.
    pub explore_link: String,
    pub run_columns: Vec<Column>,
    pub run_rows: Vec<Vec<Cell>>,
    pub total_runs: i64,
    pub runs_api: String,
    pub open_timeout: String,
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
        .unwrap_or_else(|| "feature".into());
    let filters = dimension_filters(&params);
    let timeout = state.config.analytics.open_task_timeout.0;
    let now = Utc::now();

    // /api/v1/tasks with the page's range, grouping and filters.
    let mut task_pairs = range_pairs(&range);
    if !group.is_empty() {
        task_pairs.push(("group_by".into(), group.clone()));
    }
    task_pairs.extend(filters.iter().cloned());
    task_pairs.push(("order".into(), "cost:desc".into()));
    let tasks_api = format!("/api/v1/tasks?{}", query_string(&task_pairs));
    let mut explore_pairs = vec![("of".to_string(), "tasks".to_string())];
    if !group.is_empty() {
        explore_pairs.push(("group_by".into(), group.clone()));
    }
    explore_pairs.extend(filters.iter().cloned());
    let explore_link = format!(
        "/explore?{}&{}",
        range.query(),
        query_string(&explore_pairs)
    );
    let mut tq = TaskQuery::parse(&task_pairs, timeout, now)?;
    auth::scope(&principal, &mut tq.common.filters)?;
    let answer = tasks::query(&state.store, tq).await?;
    let keys: Vec<String> = answer
        .query
        .common
        .group_by
        .iter()
        .map(|d| d.name().to_string())
        .collect();
    let (task_columns, task_rows) = pick(&answer.table(), &keys, &TASK_COLUMNS);
    let total_values = answer.total.values();
    let task_total = total_row(keys.len(), &TASK_COLUMNS, |k| {
        tasks::TaskMeasures::COLUMNS
            .iter()
            .position(|c| *c == k)
            .and_then(|i| total_values.get(i))
            .cloned()
            .unwrap_or(Value::Null)
    });

    // /api/v1/runs: the same range and filters, most expensive first.
    let mut run_pairs = range_pairs(&range);
    run_pairs.extend(filters.iter().cloned());
    run_pairs.push(("order".into(), "cost:desc".into()));
    run_pairs.push(("limit".into(), RUNS_SHOWN.to_string()));
    let runs_api = format!("/api/v1/runs?{}", query_string(&run_pairs));
    let mut rq = RunListQuery::parse(&run_pairs, timeout, now)?;
    auth::scope(&principal, &mut rq.common.filters)?;
    let list = runs::list(&state.store, rq).await?;
    let (mut run_columns, mut run_rows) =
        pick(&list.table(), &["run_id".to_string()], &RUN_COLUMNS);
    if let Some(c) = run_columns.first_mut() {
        c.label = "Run".into();
    }
    for (row, run) in run_rows.iter_mut().zip(&list.runs) {
        if let Some(c) = row.first_mut() {
            // The project pins the run when the same id exists in several projects.
            let mut href = format!("/runs/{}", path_segment(&run.run_id));
            if let Some(p) = &run.project {
                href.push_str(&format!("?project={}", urlencode(p)));
            }
            c.href = href;
        }
    }

    let keep = params
        .iter()
        .filter(|(k, _)| !["range", "from", "to", "tz"].contains(&k.as_str()))
        .cloned()
        .collect();
    let page = TasksPage {
        layout: Layout::new(
            "Tasks & runs",
            "tasks",
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
        task_columns,
        task_rows,
        task_total,
        tasks_api,
        explore_link,
        run_columns,
        run_rows,
        total_runs: list.total,
        runs_api,
        open_timeout: crate::analytics::Timeout(timeout).to_string(),
        range,
    };
    render(&page, started, "tasks")
}
