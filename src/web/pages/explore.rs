//! Explore: any group-by and filters of `/api/v1/costs` (spend) or `/api/v1/tasks` (cost per
//! successful task) as a stacked chart over time and a sortable table, with a CSV of exactly
//! the table.
//!
//! The page's query string *is* an API query string, plus a few page-only parameters (`of`
//! picks the dataset, `range` is the picker's preset). It is parsed by the API's own parser
//! (`CostQuery::parse` or `TaskQuery::parse`) and the table is drawn from the API's JSON
//! answer, so the table, its CSV (made by the API's own CSV writer) and the linked API query
//! cannot disagree.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use chrono::Utc;
use rust_decimal::Decimal;
use serde_json::Value;

use super::tasks::{pick, text_cell, total_row, Cell, Kind};
use super::{render, urlencode, Layout, PageError, Range};
use crate::analytics::costs::{self, format_ts, CostQuery};
use crate::analytics::params::{pairs, Common, OrderBy, ParamError, TimeRange, MAX_LIMIT};
use crate::analytics::tasks::{self, TaskQuery};
use crate::analytics::time::Interval;
use crate::analytics::Table;
use crate::domain::dimension::Dimension;
use crate::keys::Principal;
use crate::web::auth::{self, SessionCookie};
use crate::web::charts::{BarChart, Series};
use crate::web::format::{self, Format};
use crate::web::AppState;

/// Page-only parameters, stripped before the API parser sees the rest.
const PAGE_PARAMS: [&str; 5] = ["of", "range", "fdim", "fval", "chart"];
/// Series drawn in the chart; the rest are summed as "other".
const CHART_SERIES: usize = 8;
/// Rows shown unless `limit` says otherwise.
const DEFAULT_ROWS: usize = 100;

/// What the page explores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dataset {
    /// Spend per event: `/api/v1/costs`.
    Costs,
    /// Tasks and what a successful one costs: `/api/v1/tasks`.
    Tasks,
}

impl Dataset {
    /// `of=costs|tasks`; spend when absent.
    fn from_params(params: &[(String, String)]) -> Result<Dataset, ParamError> {
        match params
            .iter()
            .find(|(k, _)| k == "of")
            .map(|(_, v)| v.as_str())
        {
            None | Some("") | Some("costs") => Ok(Dataset::Costs),
            Some("tasks") => Ok(Dataset::Tasks),
            Some(other) => Err(ParamError(format!(
                "of: {other:?}; expected costs or tasks"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dataset::Costs => "costs",
            Dataset::Tasks => "tasks",
        }
    }

    /// The names `order` may use besides group keys.
    fn measures(self) -> &'static [&'static str] {
        match self {
            Dataset::Costs => costs::MEASURES,
            Dataset::Tasks => tasks::MEASURES,
        }
    }

    /// Measures the table shows, with their headings (every one a valid `order` key).
    fn shown(self) -> &'static [(&'static str, &'static str, Kind)] {
        match self {
            Dataset::Costs => &[
                ("cost", "Spend", Kind::Money),
                ("reported_cost", "Reported", Kind::Money),
                ("computed_cost", "List price", Kind::Money),
                ("requests", "Requests", Kind::Count),
                ("errors", "Errors", Kind::Count),
                ("input_tokens", "Input tokens", Kind::Count),
                ("output_tokens", "Output tokens", Kind::Count),
                ("unpriced_requests", "Unpriced", Kind::Count),
            ],
            Dataset::Tasks => &[
                (
                    "cost_per_successful_task",
                    "Cost per successful task",
                    Kind::Money,
                ),
                ("success_rate", "Success rate", Kind::Fraction),
                ("tasks", "Tasks", Kind::Count),
                ("successful", "Successful", Kind::Count),
                ("failed", "Failed", Kind::Count),
                ("cost", "Cost", Kind::Money),
                ("retry_cost", "Retry waste", Kind::Money),
                ("calls", "Calls", Kind::Count),
            ],
        }
    }

    /// The stacked chart's title; both datasets stack their `cost`.
    fn chart_title(self) -> &'static str {
        match self {
            Dataset::Costs => "Spend over time",
            Dataset::Tasks => "Task cost over time, by each task's first call",
        }
    }

    /// The download's name (`tally-<name>.csv`).
    fn file_name(self) -> &'static str {
        match self {
            Dataset::Costs => "explore-costs",
            Dataset::Tasks => "explore-tasks",
        }
    }
}

/// A parsed question of either dataset.
#[derive(Debug, Clone)]
enum Question {
    Costs(CostQuery),
    Tasks(TaskQuery),
}

impl Question {
    fn common(&self) -> &Common {
        match self {
            Question::Costs(q) => &q.common,
            Question::Tasks(q) => &q.common,
        }
    }

    fn common_mut(&mut self) -> &mut Common {
        match self {
            Question::Costs(q) => &mut q.common,
            Question::Tasks(q) => &mut q.common,
        }
    }

    /// The API's JSON answer and its table columns, in the API's order.
    async fn answer(self, state: &AppState) -> Result<(Value, Vec<String>), PageError> {
        Ok(match self {
            Question::Costs(q) => {
                let answer = costs::query(&state.store, q).await?;
                (answer.to_json(), answer.columns())
            }
            Question::Tasks(q) => {
                let answer = tasks::query(&state.store, q).await?;
                (answer.to_json(), answer.columns())
            }
        })
    }
}

#[derive(Template)]
#[template(path = "explore.html")]
pub struct ExplorePage {
    pub layout: Layout,
    pub range: Range,
    /// Hidden fields that keep the current query when the range changes.
    pub keep: Vec<(String, String)>,
    pub dataset: &'static str,
    pub dimensions: Vec<&'static str>,
    pub group1: String,
    pub group2: String,
    pub interval: String,
    pub filters: Vec<FilterChip>,
    pub chart: Option<String>,
    pub legend: Vec<(String, String)>,
    /// Current filters, order and limit, kept as hidden fields by the controls form.
    pub carried: Vec<(String, String)>,
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Cell>>,
    pub total: Vec<Cell>,
    pub truncated: bool,
    pub csv_link: String,
    pub api_link: String,
    /// The same filters in the other dataset.
    pub switch_link: String,
}

pub struct FilterChip {
    pub label: String,
    pub remove_link: String,
}

pub struct Column {
    /// The API's name of the column (`data-key`).
    pub key: String,
    pub label: String,
    pub numeric: bool,
    pub sort_link: String,
    /// "ascending"/"descending" when the table is sorted by this column (for aria-sort).
    pub sorted: &'static str,
}

/// The API question behind the page: parameters minus the page-only ones, with the picker's
/// range. An `order` the dataset does not know (left over from the other dataset, after the
/// form switched `of`) is dropped rather than refused: the page falls back to its default.
fn api_query(
    dataset: Dataset,
    params: &[(String, String)],
    range: &Range,
    principal: &Principal,
    state: &AppState,
) -> Result<Question, PageError> {
    let known_order = |v: &str| {
        let key = v.split(':').next().unwrap_or_default();
        dataset.measures().contains(&key) || key.parse::<Dimension>().is_ok()
    };
    let api_pairs: Vec<(String, String)> = params
        .iter()
        .filter(|(k, v)| {
            !PAGE_PARAMS.contains(&k.as_str())
                && !["from", "to", "interval"].contains(&k.as_str())
                && (k != "order" || known_order(v))
        })
        .cloned()
        .collect();
    let mut q = match dataset {
        Dataset::Costs => Question::Costs(CostQuery::parse(&api_pairs, &[])?.0),
        Dataset::Tasks => Question::Tasks(TaskQuery::parse(
            &api_pairs,
            state.config.analytics.open_task_timeout.0,
            Utc::now(),
        )?),
    };
    let c = q.common_mut();
    c.range = TimeRange {
        from: Some(range.from),
        to: Some(range.to),
    };
    c.tz = range.tz;
    c.interval = Interval::None;
    if !params.iter().any(|(k, _)| k == "limit") {
        c.limit = DEFAULT_ROWS;
    }
    if c.order.is_none() {
        c.order = Some(OrderBy {
            key: "cost".into(),
            descending: true,
        });
    }
    auth::scope(principal, &mut c.filters)?;
    Ok(q)
}

/// The page's query string without `drop` keys (and with `add` appended).
fn page_query(params: &[(String, String)], drop: &[&str], add: &[(&str, &str)]) -> String {
    let mut parts: Vec<String> = params
        .iter()
        .filter(|(k, _)| !drop.contains(&k.as_str()))
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect();
    parts.extend(
        add.iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v))),
    );
    parts.join("&")
}

/// This page with [`page_query`]'s parameters.
fn link(params: &[(String, String)], drop: &[&str], add: &[(&str, &str)]) -> String {
    format!("/explore?{}", page_query(params, drop, add))
}

/// `fdim`/`fval` from the add-a-filter form become an API-shaped `dimension=value` parameter,
/// so the address stays a valid API query and bookmarks are clean.
fn canonical_redirect(params: &[(String, String)]) -> Option<Redirect> {
    let dim = params
        .iter()
        .find(|(k, _)| k == "fdim")
        .map(|(_, v)| v.clone())?;
    let value = params
        .iter()
        .find(|(k, _)| k == "fval")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let kept: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "fdim" && k != "fval")
        .cloned()
        .collect();
    if dim.is_empty() || dim.parse::<Dimension>().is_err() {
        return Some(Redirect::to(&link(&kept, &[], &[])));
    }
    Some(Redirect::to(&link(&kept, &[], &[(&dim, &value)])))
}

/// The chart's interval: the address's, else one that gives a readable number of bars.
fn chart_interval(params: &[(String, String)], range: &Range) -> Result<Interval, ParamError> {
    Ok(
        match params
            .iter()
            .find(|(k, _)| k == "interval")
            .map(|(_, v)| v.as_str())
        {
            Some(v) => Interval::parse(v).map_err(ParamError)?,
            None if range.to - range.from > chrono::Duration::days(92) => Interval::Week,
            None if range.to - range.from <= chrono::Duration::days(2) => Interval::Hour,
            None => Interval::Day,
        },
    )
}

/// The API answer's rows as a table in `columns` order.
fn rows_table(answer: &Value, columns: Vec<String>) -> Table {
    let mut table = Table::new(columns);
    for row in answer["rows"].as_array().into_iter().flatten() {
        let values = table
            .columns
            .iter()
            .map(|c| row.get(c).cloned().unwrap_or(Value::Null))
            .collect();
        table.rows.push(values);
    }
    table
}

pub async fn page(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    session: Option<Extension<SessionCookie>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let started = std::time::Instant::now();
    let params = pairs(raw.as_deref());
    if let Some(redirect) = canonical_redirect(&params) {
        return Ok(redirect.into_response());
    }
    let dataset = Dataset::from_params(&params)?;
    let range = Range::from_pairs(&params, Utc::now())?;
    let q = api_query(dataset, &params, &range, &principal, &state)?;
    let interval = chart_interval(&params, &range)?;

    // The chart: the first group key stacked over time buckets, asked concurrently with the
    // table.
    let chart_question = (interval != Interval::None).then(|| {
        let mut cq = q.clone();
        let c = cq.common_mut();
        c.interval = interval;
        c.group_by.truncate(1);
        c.order = None;
        c.limit = MAX_LIMIT;
        cq
    });
    let chart_answer = async {
        match chart_question {
            Some(cq) => cq.answer(&state).await.map(|(json, _)| Some(json)),
            None => Ok(None),
        }
    };
    let ((answer, answer_columns), chart_answer) =
        tokio::try_join!(q.clone().answer(&state), chart_answer)?;
    let (chart, legend) = match chart_answer {
        Some(series) => {
            let chart = stacked(dataset, &series, &range, interval);
            let legend = chart.legend();
            (Some(chart.render()), legend)
        }
        None => (None, Vec::new()),
    };

    let c = q.common();
    let keys: Vec<String> = c.group_by.iter().map(|d| d.name().to_string()).collect();
    let table = rows_table(&answer, answer_columns);
    let (picked, rows) = pick(&table, &keys, dataset.shown());
    let sorted_by = c.order.as_ref().map(|o| (o.key.clone(), o.descending));
    let mut columns: Vec<Column> = picked
        .into_iter()
        .map(|col| {
            let (sorted, next_desc) = match &sorted_by {
                Some((k, desc)) if *k == col.key => {
                    (if *desc { "descending" } else { "ascending" }, !desc)
                }
                _ => ("", col.numeric),
            };
            let order = format!("{}:{}", col.key, if next_desc { "desc" } else { "asc" });
            Column {
                label: col.label,
                key: col.key,
                numeric: col.numeric,
                sort_link: link(&params, &["order"], &[("order", &order)]),
                sorted,
            }
        })
        .collect();
    let mut total = total_row(keys.len(), dataset.shown(), |k| answer["total"][k].clone());
    if keys.is_empty() {
        // An ungrouped table still names its one row.
        total.insert(0, text_cell("Total"));
        columns.insert(
            0,
            Column {
                key: String::new(),
                label: String::new(),
                numeric: false,
                sort_link: String::new(),
                sorted: "",
            },
        );
    }

    // Chips come from the address, not the parsed query, so a key's own project scope (added
    // by the server) is not offered for removal.
    let filters = params
        .iter()
        .filter(|(k, _)| k.parse::<Dimension>().is_ok())
        .map(|(k, v)| FilterChip {
            label: format!("{k} = {}", if v.is_empty() { "(none)" } else { v }),
            remove_link: link(
                &params
                    .iter()
                    .filter(|(pk, pv)| !(pk == k && pv == v))
                    .cloned()
                    .collect::<Vec<_>>(),
                &[],
                &[],
            ),
        })
        .collect();
    let api_params = api_params(c);
    let keep = params
        .iter()
        .filter(|(k, _)| !["range", "from", "to", "tz"].contains(&k.as_str()))
        .cloned()
        .collect();
    let other = match dataset {
        Dataset::Costs => Dataset::Tasks,
        Dataset::Tasks => Dataset::Costs,
    };
    let page = ExplorePage {
        layout: Layout::new(
            "Explore",
            "explore",
            &principal,
            session.as_ref().map(|s| &s.0),
            state.auth.sessions(),
        ),
        dataset: dataset.name(),
        dimensions: Dimension::ALL.iter().map(|d| d.name()).collect(),
        group1: keys.first().cloned().unwrap_or_default(),
        group2: keys.get(1).cloned().unwrap_or_default(),
        interval: interval.name().to_string(),
        filters,
        chart,
        legend,
        columns,
        rows,
        total,
        truncated: answer["truncated"].as_bool().unwrap_or(false),
        carried: params
            .iter()
            .filter(|(k, _)| k.parse::<Dimension>().is_ok() || k == "order" || k == "limit")
            .cloned()
            .collect(),
        // A rolling range ("30d") moves with the clock; the download pins the instants this
        // page answered so the CSV is exactly the table on screen, however late it is clicked.
        csv_link: format!(
            "/explore.csv?{}",
            page_query(
                &params,
                &["range", "from", "to", "tz"],
                &[
                    ("range", "custom"),
                    ("from", &range.from.to_rfc3339()),
                    ("to", &range.to.to_rfc3339()),
                    ("tz", range.tz.name()),
                ],
            )
        ),
        api_link: format!("/api/v1/{}?{api_params}", dataset.name()),
        // The order is the only parameter that may not mean anything in the other dataset.
        switch_link: link(&params, &["of", "order"], &[("of", other.name())]),
        keep,
        range,
    };
    render(&page, started, "explore")
}

/// The API parameters that answer the table.
fn api_params(c: &Common) -> String {
    let mut parts = Vec::new();
    if let Some(f) = c.range.from {
        parts.push(format!("from={}", urlencode(&f.to_rfc3339())));
    }
    if let Some(t) = c.range.to {
        parts.push(format!("to={}", urlencode(&t.to_rfc3339())));
    }
    parts.push(format!("tz={}", urlencode(c.tz.name())));
    if !c.group_by.is_empty() {
        parts.push(format!(
            "group_by={}",
            c.group_by
                .iter()
                .map(|d| d.name())
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    for f in &c.filters {
        for v in &f.values {
            parts.push(format!(
                "{}={}",
                f.dim.name(),
                urlencode(v.as_deref().unwrap_or(""))
            ));
        }
    }
    if let Some(o) = &c.order {
        parts.push(format!(
            "order={}:{}",
            o.key,
            if o.descending { "desc" } else { "asc" }
        ));
    }
    parts.push(format!("limit={}", c.limit));
    parts.join("&")
}

/// Stacks the `cost` of the top series by total and folds the rest into "other". `answer` is
/// the API's JSON answer grouped by at most one key and bucketed by `interval`.
fn stacked(dataset: Dataset, answer: &Value, range: &Range, interval: Interval) -> BarChart {
    let tz = range.tz;
    let buckets = crate::analytics::time::bucket_starts(range.from, range.to, interval, tz, 10_000)
        .unwrap_or_default();
    // Rows name their bucket as the API formats it.
    let index: HashMap<String, usize> = buckets
        .iter()
        .enumerate()
        .map(|(i, b)| (format_ts(*b, tz), i))
        .collect();
    let key_name = answer["group_by"][0].as_str();
    let mut per_key: HashMap<Option<String>, Vec<Decimal>> = HashMap::new();
    for row in answer["rows"].as_array().into_iter().flatten() {
        let key = key_name.map(|k| row[k].as_str().unwrap_or("(none)").to_string());
        let values = per_key
            .entry(key)
            .or_insert_with(|| vec![Decimal::ZERO; buckets.len()]);
        let cost = row["cost"].as_str().and_then(|s| s.parse::<Decimal>().ok());
        if let (Some(i), Some(cost)) = (row["bucket"].as_str().and_then(|b| index.get(b)), cost) {
            values[*i] += cost;
        }
    }
    let mut ranked: Vec<(Option<String>, Vec<Decimal>)> = per_key.into_iter().collect();
    ranked.sort_by(|a, b| {
        b.1.iter()
            .sum::<Decimal>()
            .cmp(&a.1.iter().sum::<Decimal>())
            .then(a.0.cmp(&b.0))
    });
    let mut series: Vec<Series> = Vec::new();
    let mut other = vec![Decimal::ZERO; buckets.len()];
    for (i, (key, values)) in ranked.into_iter().enumerate() {
        if i < CHART_SERIES {
            series.push(Series {
                label: key.unwrap_or_else(|| "Cost".into()),
                values,
            });
        } else {
            for (o, v) in other.iter_mut().zip(values) {
                *o += v;
            }
        }
    }
    if other.iter().any(|v| !v.is_zero()) {
        series.push(Series {
            label: "other".into(),
            values: other,
        });
    }
    let fmt = match interval {
        Interval::Hour => "%b %-d %H:00",
        Interval::Month => "%b %Y",
        _ => "%b %-d",
    };
    BarChart {
        buckets: buckets
            .iter()
            .map(|b| b.with_timezone(&tz).format(fmt).to_string())
            .collect(),
        series,
        forecast: Vec::new(),
        title: dataset.chart_title().into(),
        counts: false,
    }
}

/// `/explore.csv`: the table exactly as shown, with every stored digit, written by the API's
/// own CSV writer (`format=csv`), so it is also the API's CSV for the same query.
pub async fn csv(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let params = pairs(raw.as_deref());
    let dataset = Dataset::from_params(&params)?;
    let range = Range::from_pairs(&params, Utc::now())?;
    let q = api_query(dataset, &params, &range, &principal, &state)?;
    let (answer, columns) = q.answer(&state).await?;
    Ok(format::respond(Format::Csv, answer, "rows", dataset.file_name(), &columns).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_dataset_is_spend_unless_the_address_says_tasks() {
        assert_eq!(Dataset::from_params(&[]).unwrap(), Dataset::Costs);
        assert_eq!(
            Dataset::from_params(&p(&[("of", "tasks")])).unwrap(),
            Dataset::Tasks
        );
        let err = Dataset::from_params(&p(&[("of", "runs")])).unwrap_err();
        assert!(err.0.contains("expected costs or tasks"), "{}", err.0);
    }

    #[test]
    fn every_shown_measure_is_a_valid_sort_key() {
        for dataset in [Dataset::Costs, Dataset::Tasks] {
            for (key, _, _) in dataset.shown() {
                assert!(
                    dataset.measures().contains(key),
                    "{} cannot sort by {key}",
                    dataset.name()
                );
            }
        }
    }
}
