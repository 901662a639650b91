//! Explore: any group-by and filters of `/api/v1/costs` as a stacked chart over time and a
//! sortable table, with a CSV of exactly the table.
//!
//! The page's query string *is* an API query string (plus the range picker's `range`): it is
//! parsed by `CostQuery::parse`, so the table, its CSV and `/api/v1/costs` with the same
//! parameters cannot disagree.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::overview::percent;
use super::{render, urlencode, Layout, PageError, Range};
use crate::analytics::costs::{self, CostAnswer, CostQuery, Measures, MEASURES};
use crate::analytics::params::{pairs, OrderBy, TimeRange};
use crate::analytics::time::Interval;
use crate::domain::dimension::Dimension;
use crate::domain::money::{display_usd, to_api_string};
use crate::keys::Principal;
use crate::web::auth::{self, SessionCookie};
use crate::web::charts::{BarChart, Series};
use crate::web::AppState;

/// Page-only parameters, stripped before the API parser sees the rest.
const PAGE_PARAMS: [&str; 4] = ["range", "fdim", "fval", "chart"];
/// Series drawn in the chart; the rest are summed as "other".
const CHART_SERIES: usize = 8;
/// Rows shown unless `limit` says otherwise.
const DEFAULT_ROWS: usize = 100;

#[derive(Template)]
#[template(path = "explore.html")]
pub struct ExplorePage {
    pub layout: Layout,
    pub range: Range,
    /// Hidden fields that keep the current query when the range changes.
    pub keep: Vec<(String, String)>,
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
}

pub struct FilterChip {
    pub label: String,
    pub remove_link: String,
}

pub struct Column {
    pub label: String,
    pub numeric: bool,
    pub sort_link: String,
    /// "ascending"/"descending" when the table is sorted by this column (for aria-sort).
    pub sorted: &'static str,
}

pub struct Cell {
    pub text: String,
    pub title: String,
    pub numeric: bool,
}

/// Measures the table shows, with their headings.
const SHOWN: [(&str, &str); 8] = [
    ("cost", "Spend"),
    ("reported_cost", "Reported"),
    ("computed_cost", "List price"),
    ("requests", "Requests"),
    ("errors", "Errors"),
    ("input_tokens", "Input tokens"),
    ("output_tokens", "Output tokens"),
    ("unpriced_requests", "Unpriced"),
];

/// The API query behind the page: parameters minus the page-only ones, with the picker's range.
fn api_query(
    params: &[(String, String)],
    range: &Range,
    principal: &Principal,
) -> Result<CostQuery, PageError> {
    let api_pairs: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| {
            !PAGE_PARAMS.contains(&k.as_str()) && k != "from" && k != "to" && k != "interval"
        })
        .cloned()
        .collect();
    let (mut q, _) = CostQuery::parse(&api_pairs, &[])?;
    q.common.range = TimeRange {
        from: Some(range.from),
        to: Some(range.to),
    };
    q.common.tz = range.tz;
    q.common.interval = Interval::None;
    if !params.iter().any(|(k, _)| k == "limit") {
        q.common.limit = DEFAULT_ROWS;
    }
    if q.common.order.is_none() {
        q.common.order = Some(OrderBy {
            key: "cost".into(),
            descending: true,
        });
    }
    auth::scope(principal, &mut q.common.filters)?;
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

fn measure(m: &Measures, key: &str) -> (String, String) {
    let money = |d: Decimal| (display_usd(d), format!("${}", to_api_string(d)));
    match key {
        "cost" => money(m.cost),
        "reported_cost" => money(m.reported_cost),
        "computed_cost" => money(m.computed_cost),
        "requests" => (m.requests.to_string(), String::new()),
        "errors" => (
            m.errors.to_string(),
            percent(Decimal::from(m.errors), Decimal::from(m.requests)),
        ),
        "input_tokens" => (m.input_tokens.to_string(), String::new()),
        "output_tokens" => (m.output_tokens.to_string(), String::new()),
        "unpriced_requests" => (m.unpriced_requests.to_string(), String::new()),
        _ => (String::new(), String::new()),
    }
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
    let range = Range::from_pairs(&params, Utc::now())?;
    let q = api_query(&params, &range, &principal)?;
    let table = costs::query(&state.store, q.clone()).await?;

    // The chart: the first group key stacked over time buckets.
    let interval = match params
        .iter()
        .find(|(k, _)| k == "interval")
        .map(|(_, v)| v.as_str())
    {
        Some(v) => Interval::parse(v).map_err(crate::analytics::params::ParamError)?,
        None if range.to - range.from > chrono::Duration::days(92) => Interval::Week,
        None if range.to - range.from <= chrono::Duration::days(2) => Interval::Hour,
        None => Interval::Day,
    };
    let (chart, legend) = if interval == Interval::None {
        (None, Vec::new())
    } else {
        let mut cq = q.clone();
        cq.common.interval = interval;
        cq.common.group_by.truncate(1);
        cq.common.order = None;
        cq.common.limit = crate::analytics::params::MAX_LIMIT;
        let series = costs::query(&state.store, cq).await?;
        let chart = stacked(&series, &range, interval);
        let legend = chart.legend();
        (Some(chart.render()), legend)
    };

    let c = &q.common;
    let keys: Vec<&'static str> = c.group_by.iter().map(|d| d.name()).collect();
    let sorted_by = c.order.as_ref().map(|o| (o.key.clone(), o.descending));
    let mut columns: Vec<Column> = Vec::new();
    for (key, label, numeric) in keys
        .iter()
        .map(|k| (*k, *k, false))
        .chain(SHOWN.iter().map(|(k, l)| (*k, *l, true)))
    {
        let (sorted, next_desc) = match &sorted_by {
            Some((k, desc)) if k == key => (if *desc { "descending" } else { "ascending" }, !desc),
            _ => ("", numeric),
        };
        let order = format!("{key}:{}", if next_desc { "desc" } else { "asc" });
        columns.push(Column {
            label: label.replace('_', " "),
            numeric,
            sort_link: link(&params, &["order"], &[("order", &order)]),
            sorted,
        });
    }
    let rows = table
        .rows
        .iter()
        .map(|row| {
            let mut cells: Vec<Cell> = row
                .keys
                .iter()
                .map(|k| Cell {
                    text: k.clone().unwrap_or_else(|| "(none)".into()),
                    title: String::new(),
                    numeric: false,
                })
                .collect();
            for (key, _) in SHOWN {
                let (text, title) = measure(&row.measures, key);
                cells.push(Cell {
                    text,
                    title,
                    numeric: true,
                });
            }
            cells
        })
        .collect();
    let mut total: Vec<Cell> = keys
        .iter()
        .enumerate()
        .map(|(i, _)| Cell {
            text: if i == 0 {
                "Total".into()
            } else {
                String::new()
            },
            title: String::new(),
            numeric: false,
        })
        .collect();
    if total.is_empty() {
        total.push(Cell {
            text: "Total".into(),
            title: String::new(),
            numeric: false,
        });
        columns.insert(
            0,
            Column {
                label: String::new(),
                numeric: false,
                sort_link: String::new(),
                sorted: "",
            },
        );
    }
    for (key, _) in SHOWN {
        let (text, title) = measure(&table.total, key);
        total.push(Cell {
            text,
            title,
            numeric: true,
        });
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
    let api_params = api_params(&q);
    let keep = params
        .iter()
        .filter(|(k, _)| !["range", "from", "to", "tz"].contains(&k.as_str()))
        .cloned()
        .collect();
    let page = ExplorePage {
        layout: Layout::new(
            "Explore",
            "explore",
            &principal,
            session.as_ref().map(|s| &s.0),
            state.auth.sessions(),
        ),
        dimensions: Dimension::ALL.iter().map(|d| d.name()).collect(),
        group1: keys.first().map(|s| s.to_string()).unwrap_or_default(),
        group2: keys.get(1).map(|s| s.to_string()).unwrap_or_default(),
        interval: interval.name().to_string(),
        filters,
        chart,
        legend,
        columns,
        rows,
        total,
        truncated: table.truncated,
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
        api_link: format!("/api/v1/costs?{api_params}"),
        keep,
        range,
    };
    render(&page, started, "explore")
}

/// The `/api/v1/costs` parameters that answer the table.
fn api_params(q: &CostQuery) -> String {
    let c = &q.common;
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

/// Stacks the top series by total and folds the rest into "other".
fn stacked(answer: &CostAnswer, range: &Range, interval: Interval) -> BarChart {
    let tz = range.tz;
    let buckets = crate::analytics::time::bucket_starts(range.from, range.to, interval, tz, 10_000)
        .unwrap_or_default();
    let index: HashMap<DateTime<Utc>, usize> =
        buckets.iter().enumerate().map(|(i, b)| (*b, i)).collect();
    let mut per_key: HashMap<Option<String>, Vec<Decimal>> = HashMap::new();
    for row in &answer.rows {
        let key = row
            .keys
            .first()
            .cloned()
            .flatten()
            .or_else(|| row.keys.first().map(|_| "(none)".into()));
        let values = per_key
            .entry(key)
            .or_insert_with(|| vec![Decimal::ZERO; buckets.len()]);
        if let Some(i) = row.bucket.and_then(|b| index.get(&b)) {
            values[*i] += row.measures.cost;
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
                label: key.unwrap_or_else(|| "Spend".into()),
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
        title: "Spend over time".into(),
        counts: false,
    }
}

/// `/explore.csv`: the table exactly as shown, with every stored digit.
pub async fn csv(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let params = pairs(raw.as_deref());
    let range = Range::from_pairs(&params, Utc::now())?;
    let q = api_query(&params, &range, &principal)?;
    let answer = costs::query(&state.store, q).await?;
    let mut out = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = answer
        .query
        .common
        .group_by
        .iter()
        .map(|d| d.name().to_string())
        .collect();
    header.extend(MEASURES.iter().map(|m| m.to_string()));
    let io = |e: csv::Error| PageError(crate::web::Error::Internal(e.into()));
    out.write_record(&header).map_err(io)?;
    for row in &answer.rows {
        let mut record: Vec<String> = row
            .keys
            .iter()
            .map(|k| k.clone().unwrap_or_default())
            .collect();
        let m = costs::MeasuresJson::from(&row.measures);
        let value = serde_json::to_value(&m).unwrap_or_default();
        for name in MEASURES {
            record.push(match &value[name] {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        }
        out.write_record(&record).map_err(io)?;
    }
    let body = out
        .into_inner()
        .map_err(|e| PageError(crate::web::Error::Internal(anyhow::anyhow!("{e}"))))?;
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"tally-explore.csv\"",
            ),
        ],
        body,
    )
        .into_response())
}
