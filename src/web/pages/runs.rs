//! One run: its totals, its calls as a waterfall (server-rendered SVG: time on x, one row per
//! call in tree order, retries and fallbacks coloured and marked) and as a table with each
//! step's cost.
//!
//! The numbers are `analytics::runs::detail`'s, the same answer as `/api/v1/runs/{id}` (linked
//! on the page); the id is matched as the API matches it (`run_id`, else `task_id`, else
//! `trace_id`), within the key's project.

use std::fmt::Write;

use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::Extension;
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use super::tasks::{cell, path_segment, pick, query_string, Cell, Column, Kind};
use super::{render, Layout, PageError};
use crate::analytics::params::pairs;
use crate::analytics::runs::{self, Link, RunDetail};
use crate::analytics::Tabular;
use crate::domain::money::{display_usd, to_api_string};
use crate::keys::Principal;
use crate::web::auth::{self, SessionCookie};
use crate::web::charts::escape;
use crate::web::{AppState, Error};

/// Calls drawn in the waterfall; the table below lists every call.
const WATERFALL_ROWS: usize = 200;

const CALL_COLUMNS: [(&str, &str, Kind); 10] = [
    ("link", "Link", Kind::Text),
    ("model", "Model", Kind::Text),
    ("route", "Route", Kind::Text),
    ("status", "Status", Kind::Text),
    ("error_type", "Error", Kind::Text),
    ("input_tokens", "Input tokens", Kind::Count),
    ("output_tokens", "Output tokens", Kind::Count),
    ("latency_ms", "Latency", Kind::Millis),
    ("step", "Step", Kind::Text),
    ("cost", "Cost", Kind::Money),
];

#[derive(Template)]
#[template(path = "run.html")]
pub struct RunPage {
    pub layout: Layout,
    pub id: String,
    pub matched_by: &'static str,
    pub state: String,
    pub outcome: String,
    pub agent: String,
    pub feature: String,
    pub cost: String,
    pub cost_exact: String,
    pub calls: usize,
    pub errors: usize,
    pub retries: usize,
    pub fallbacks: usize,
    pub unpriced: usize,
    pub duration: String,
    pub step: Option<(String, String, String)>,
    pub waterfall: String,
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Cell>>,
    pub api_link: String,
    pub truncated: bool,
}

pub async fn page(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    session: Option<Extension<SessionCookie>>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let started = std::time::Instant::now();
    let params = pairs(raw.as_deref());
    let mut filters = runs::parse_detail_filters(&params)?;
    auth::scope(&principal, &mut filters)?;
    let detail = runs::detail(
        &state.store,
        id.clone(),
        filters,
        state.config.analytics.open_task_timeout.0,
        Utc::now(),
    )
    .await?
    .ok_or_else(|| {
        Error::NotFound(format!(
            "no call has run_id, task_id or trace_id {id:?} in the projects this key reads"
        ))
    })?;
    let table = detail.table();
    let (mut columns, mut rows) = pick(&table, &["id".to_string()], &CALL_COLUMNS);
    if let Some(c) = columns.first_mut() {
        c.label = "Call".into();
    }
    // Indent each call by its depth, so the table reads as the tree.
    for (row, call) in rows.iter_mut().zip(&detail.calls) {
        if let Some(c) = row.first_mut() {
            c.text = format!("{}{}", "· ".repeat(call.depth), c.text);
        }
        if call.call.cost.is_none() {
            if let Some(c) = row.last_mut() {
                *c = cell(&Value::Null, Kind::Money);
                c.text = "unpriced".into();
            }
        }
    }
    let t = &detail.totals;
    let api_link = if params.is_empty() {
        format!("/api/v1/runs/{}", path_segment(&id))
    } else {
        format!(
            "/api/v1/runs/{}?{}",
            path_segment(&id),
            query_string(&params)
        )
    };
    let page = RunPage {
        layout: Layout::new(
            &format!("Run {id}"),
            "tasks",
            &principal,
            session.as_ref().map(|s| &s.0),
            state.auth.sessions(),
        ),
        matched_by: detail.matched_by,
        state: detail.state.clone(),
        outcome: detail
            .outcome
            .as_ref()
            .map_or_else(|| "none yet".to_string(), |o| o.0.clone()),
        agent: detail.agent.clone().unwrap_or_else(|| "(none)".into()),
        feature: detail.feature.clone().unwrap_or_else(|| "(none)".into()),
        cost: display_usd(t.cost),
        cost_exact: to_api_string(t.cost),
        calls: t.calls,
        errors: t.errors,
        retries: t.retries,
        fallbacks: t.fallbacks,
        unpriced: t.unpriced_calls,
        duration: format_ms((detail.ended - detail.started).num_milliseconds()),
        step: detail
            .most_expensive_step
            .as_ref()
            .map(|s| (s.id.clone(), display_usd(s.cost), to_api_string(s.cost))),
        waterfall: waterfall(&detail),
        columns,
        rows,
        api_link,
        truncated: detail.truncated,
        id,
    };
    render(&page, started, "run")
}

fn format_ms(ms: i64) -> String {
    if ms >= 10_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{ms} ms")
    }
}

/// Colour and legend name of a link.
fn link_style(link: Link) -> (&'static str, &'static str) {
    match link {
        Link::Root | Link::Child => ("#2d6cdf", "call"),
        Link::Retry => ("#e8743b", "retry"),
        Link::Fallback => ("#945ecf", "fallback"),
    }
}

const WIDTH: i64 = 960;
const LABEL: i64 = 300;
const COST: i64 = 110;
const ROW: i64 = 22;
const TOP: i64 = 24;

/// The waterfall: one row per call in tree order; a bar from the call's timestamp for its
/// latency (a 3-pixel tick when latency is unknown), coloured by how it hangs off its parent;
/// failed calls are outlined in red and hatched; the step's cost on the right. Pixel geometry
/// is integer milliseconds — no money is involved in drawing.
pub fn waterfall(d: &RunDetail) -> String {
    let calls: Vec<_> = d.calls.iter().take(WATERFALL_ROWS).collect();
    let start = calls.iter().map(|c| c.call.ts).min().unwrap_or(d.started);
    let end_of = |ts: DateTime<Utc>, lat: Option<i32>| {
        ts + Duration::milliseconds(i64::from(lat.unwrap_or(0)))
    };
    let end = calls
        .iter()
        .map(|c| end_of(c.call.ts, c.call.latency_ms))
        .max()
        .unwrap_or(d.ended)
        .max(d.ended);
    let span = (end - start).num_milliseconds().max(1);
    let plot = WIDTH - LABEL - COST - 10;
    let x = |ms: i64| LABEL + ms.clamp(0, span) * plot / span;
    let height = TOP + ROW * calls.len() as i64 + 8;
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg class="chart waterfall" viewBox="0 0 {WIDTH} {height}" role="img" aria-labelledby="wf-title"><title id="wf-title">Calls of run {} over time</title>"##,
        escape(&d.id)
    );
    s.push_str(r##"<defs><pattern id="wf-hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="3" height="6" fill="#d03030" fill-opacity="0.45"/></pattern></defs>"##);
    // Time axis: five ticks.
    for i in 0..=4 {
        let ms = span * i / 4;
        let tx = x(ms);
        let _ = write!(
            s,
            r#"<line class="grid" x1="{tx}" y1="{}" x2="{tx}" y2="{}"/><text class="axis" x="{tx}" y="14" text-anchor="middle">+{}</text>"#,
            TOP - 4,
            height - 4,
            escape(&format_ms(ms))
        );
    }
    for (i, t) in calls.iter().enumerate() {
        let c = &t.call;
        let y = TOP + ROW * i as i64;
        let (colour, kind) = link_style(t.link);
        let failed = c.status != "success";
        let off = (c.ts - start).num_milliseconds();
        let x0 = x(off);
        let w = match c.latency_ms {
            Some(l) => (x(off + i64::from(l)) - x0).max(3),
            None => 3,
        };
        let marker = match t.link {
            Link::Retry => "↻ ",
            Link::Fallback => "↪ ",
            _ => "",
        };
        let cost = c.cost.map_or_else(|| "unpriced".to_string(), display_usd);
        let exact = c.cost.map_or_else(
            || "unpriced".to_string(),
            |v| format!("${}", to_api_string(v)),
        );
        let label: String = format!("{marker}{}", c.model).chars().take(40).collect();
        let _ = write!(
            s,
            r#"<g class="call {kind}{}" data-call="{}"><title>{} · {} · {} · {} · {}</title>"#,
            if failed { " failed" } else { "" },
            escape(&t.id),
            escape(&c.model),
            escape(kind),
            escape(&c.status),
            escape(
                &c.latency_ms
                    .map_or_else(|| "latency unknown".into(), |l| format!("{l} ms"))
            ),
            escape(&exact),
        );
        let _ = write!(
            s,
            r#"<text class="axis" x="{}" y="{}">{}</text>"#,
            4 + 14 * t.depth.min(12) as i64,
            y + 15,
            escape(&label)
        );
        let _ = write!(
            s,
            r#"<rect x="{x0}" y="{}" width="{w}" height="{}" fill="{colour}" rx="2"/>"#,
            y + 4,
            ROW - 8
        );
        if failed {
            let _ = write!(
                s,
                r##"<rect x="{x0}" y="{}" width="{w}" height="{}" fill="url(#wf-hatch)" stroke="#d03030" stroke-width="1.5" rx="2"/>"##,
                y + 4,
                ROW - 8
            );
        }
        let _ = write!(
            s,
            r#"<text class="axis" x="{}" y="{}" text-anchor="end">{}</text></g>"#,
            WIDTH - 4,
            y + 15,
            escape(&cost)
        );
    }
    s.push_str("</svg>");
    s
}
