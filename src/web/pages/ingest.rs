//! The ingest health page (`/ingest`): events arriving per minute, hour or day by source
//! format over the selected range, duplicates dropped, the dead letters with their reasons and
//! raw text, and the models Tally could not price.
//!
//! Rejects come from the same `store::queries::rejects::list` as `/api/v1/rejects` (newest
//! first, scoped to the key's project) and the unpriced models from `analytics::unpriced`, the
//! code behind `/api/v1/unpriced`, with the page's range — so the page and the linked API calls
//! show the same counts. Duplicates are not stored (they are dropped at commit); the page shows
//! the server's counter since start, and only to keys that read every project, because the
//! counter is not per project.

use std::collections::{BTreeMap, BTreeSet};

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::Extension;
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;

use super::tasks::{query_string, range_pairs};
use super::{render, Layout, PageError, Range};
use crate::analytics::params::{pairs, Filter};
use crate::analytics::unpriced::{self, UnpricedQuery};
use crate::domain::dimension::Dimension;
use crate::domain::money::display_usd;
use crate::keys::Principal;
use crate::store::queries::ingest;
use crate::store::queries::rejects::{self, RejectRow, RejectsQuery};
use crate::web::auth::{self, SessionCookie};
use crate::web::charts::{BarChart, Series};
use crate::web::AppState;

/// Dead letters listed; the API pages through the rest.
const REJECTS_SHOWN: usize = 50;
/// Most buckets drawn: the bucket width grows until the range fits.
const MAX_BUCKETS: i64 = 400;

#[derive(Template)]
#[template(path = "ingest.html")]
pub struct IngestPage {
    pub layout: Layout,
    pub range: Range,
    pub keep: Vec<(String, String)>,
    pub chart: String,
    pub legend: Vec<(String, String)>,
    /// "minute", "hour" or "day".
    pub bucket_name: &'static str,
    /// Events received in the range, per source format, and in all.
    pub formats: Vec<(String, i64)>,
    pub events: i64,
    /// Server-wide duplicates since start; `None` for a project's key.
    pub duplicates: Option<u64>,
    pub rejects: Vec<RejectRow>,
    pub rejects_total: i64,
    pub rejects_api: String,
    pub unpriced: Vec<UnpricedLine>,
    pub unpriced_requests: i64,
    pub uncosted_requests: i64,
    pub unpriced_api: String,
}

pub struct UnpricedLine {
    pub provider: String,
    pub model: String,
    pub reason: String,
    pub requests: i64,
    pub uncosted_requests: i64,
    pub reported_cost: String,
    pub last_seen: String,
}

/// The narrowest of minute, hour and day that draws the range in at most [`MAX_BUCKETS`].
fn bucket_width(from: DateTime<Utc>, to: DateTime<Utc>) -> (Duration, &'static str) {
    let span = to - from;
    for (width, name) in [
        (Duration::minutes(1), "minute"),
        (Duration::hours(1), "hour"),
    ] {
        if span <= width * MAX_BUCKETS as i32 {
            return (width, name);
        }
    }
    (Duration::days(1), "day")
}

pub async fn page(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    session: Option<Extension<SessionCookie>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let started = std::time::Instant::now();
    let now = Utc::now();
    let params = pairs(raw.as_deref());
    let range = Range::from_pairs(&params, now)?;
    let mut filters: Vec<Filter> = Vec::new();
    auth::scope(&principal, &mut filters)?;
    let project = filters
        .iter()
        .find(|f| f.dim == Dimension::Project)
        .and_then(|f| f.values.first().cloned().flatten());

    // Arrivals per bucket and format.
    let (width, bucket_name) = bucket_width(range.from, range.to);
    let width_us = width.num_microseconds().unwrap_or(60_000_000);
    let (from, to, p) = (range.from, range.to, project.clone());
    let arrivals = state
        .store
        .read(move |conn| ingest::arrivals(conn, p.as_deref(), from, to, width_us))
        .await?;
    let first = DateTime::from_timestamp_micros(from.timestamp_micros() / width_us * width_us)
        .unwrap_or(from);
    let mut starts = Vec::new();
    let mut t = first;
    while t < to && starts.len() < (MAX_BUCKETS as usize) + 2 {
        starts.push(t);
        t += width;
    }
    let format_names: BTreeSet<String> = arrivals.iter().map(|a| a.source_format.clone()).collect();
    let mut counts: BTreeMap<(&str, DateTime<Utc>), i64> = BTreeMap::new();
    for a in &arrivals {
        *counts
            .entry((a.source_format.as_str(), a.bucket))
            .or_default() += a.events;
    }
    let label_fmt = match bucket_name {
        "minute" => "%b %-d %H:%M",
        "hour" => "%b %-d %H:00",
        _ => "%b %-d",
    };
    let chart = BarChart {
        title: format!("Events received per {bucket_name}"),
        buckets: starts
            .iter()
            .map(|s| s.format(label_fmt).to_string())
            .collect(),
        series: format_names
            .iter()
            .map(|f| Series {
                label: f.clone(),
                values: starts
                    .iter()
                    .map(|s| Decimal::from(counts.get(&(f.as_str(), *s)).copied().unwrap_or(0)))
                    .collect(),
            })
            .collect(),
        forecast: Vec::new(),
        counts: true,
    };
    let formats: Vec<(String, i64)> = format_names
        .iter()
        .map(|f| {
            let n = arrivals
                .iter()
                .filter(|a| &a.source_format == f)
                .map(|a| a.events)
                .sum();
            (f.clone(), n)
        })
        .collect();
    let events = formats.iter().map(|(_, n)| n).sum();

    // The same question as `/api/v1/rejects?limit=50`.
    let rq = RejectsQuery {
        project: principal.project.clone(),
        limit: REJECTS_SHOWN,
        offset: 0,
        source_format: None,
        http_request: None,
    };
    let (rejects, rejects_total) = state
        .store
        .read(move |conn| rejects::list(conn, &rq))
        .await?;

    // The same question as `/api/v1/unpriced?from=…&to=…&tz=…`.
    let unpriced_pairs = range_pairs(&range);
    let unpriced_api = format!("/api/v1/unpriced?{}", query_string(&unpriced_pairs));
    let mut uq = UnpricedQuery::parse(&unpriced_pairs)?;
    auth::scope(&principal, &mut uq.common.filters)?;
    let answer = unpriced::query(&state.store, uq).await?;
    let unpriced = answer
        .rows
        .iter()
        .map(|r| UnpricedLine {
            provider: r.provider.clone().unwrap_or_else(|| "(none)".into()),
            model: r.model.clone(),
            reason: r.reason.clone().unwrap_or_default(),
            requests: r.requests,
            uncosted_requests: r.uncosted_requests,
            reported_cost: display_usd(r.reported_cost),
            last_seen: r.last_seen.to_rfc3339(),
        })
        .collect();

    let duplicates = principal
        .project
        .is_none()
        .then(|| crate::metrics::counter("tally_ingest_events_total", &[("result", "duplicate")]));
    let page = IngestPage {
        layout: Layout::new(
            "Ingest health",
            "ingest",
            &principal,
            session.as_ref().map(|s| &s.0),
            state.auth.sessions(),
        ),
        keep: Vec::new(),
        legend: chart.legend(),
        chart: chart.render(),
        bucket_name,
        formats,
        events,
        duplicates,
        rejects,
        rejects_total,
        rejects_api: format!("/api/v1/rejects?limit={REJECTS_SHOWN}"),
        unpriced,
        unpriced_requests: answer.total[0],
        uncosted_requests: answer.total[1],
        unpriced_api,
        range,
    };
    render(&page, started, "ingest")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_widen_with_the_range() {
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert_eq!(bucket_width(t, t + Duration::hours(6)).1, "minute");
        assert_eq!(bucket_width(t, t + Duration::days(7)).1, "hour");
        assert_eq!(bucket_width(t, t + Duration::days(31)).1, "day");
    }
}
