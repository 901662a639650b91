//! `/api/v1/costs`: cost, tokens, requests and errors by any dimension over time buckets.

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::Serialize;

use super::params::{self, Common, ParamError};
use super::time::{self, Interval};
use crate::domain::money::to_api_string;
use crate::store::{queries, Store, StoreError};

/// Measure names, usable in `order`.
pub const MEASURES: &[&str] = &[
    "cost",
    "reported_cost",
    "computed_cost",
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "unpriced_requests",
];

/// Most buckets one answer may have.
pub const MAX_BUCKETS: usize = 10_000;

/// A parsed costs question.
#[derive(Debug, Clone)]
pub struct CostQuery {
    pub common: Common,
}

impl CostQuery {
    /// Parses query-string pairs; `extra` are endpoint parameters handled by the caller.
    pub fn parse(
        pairs: &[(String, String)],
        extra: &[&str],
    ) -> Result<(CostQuery, Vec<(String, String)>), ParamError> {
        let (common, extras) = params::parse_common(pairs, extra, MEASURES)?;
        Ok((CostQuery { common }, extras))
    }
}

/// Sums over a set of events. Money is exact; `cost` counts every priced or reported event,
/// and `unpriced_requests` says how many events have no known cost at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Measures {
    pub cost: Decimal,
    pub reported_cost: Decimal,
    pub computed_cost: Decimal,
    pub requests: i64,
    pub errors: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub reasoning_tokens: i64,
    pub unpriced_requests: i64,
}

/// One group (and bucket).
#[derive(Debug, Clone)]
pub struct CostRow {
    /// Values of the group-by dimensions, in `group_by` order.
    pub keys: Vec<Option<String>>,
    pub bucket: Option<DateTime<Utc>>,
    pub measures: Measures,
}

/// The whole answer.
#[derive(Debug, Clone)]
pub struct CostAnswer {
    pub query: CostQuery,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub rows: Vec<CostRow>,
    pub total: Measures,
    /// More rows matched than `limit`.
    pub truncated: bool,
}

/// Errors of an analytics question.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Param(#[from] ParamError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Answers a costs question.
pub async fn query(store: &Store, q: CostQuery) -> Result<CostAnswer, QueryError> {
    query_parts(store, q, Parts::All).await
}

/// Which parts of an answer to compute: pages that need only the rows (top-N tables) or only
/// the total (the previous period) skip the other query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parts {
    All,
    RowsOnly,
    TotalOnly,
}

/// Answers a costs question, computing only `parts` (the rest stays empty).
pub async fn query_parts(
    store: &Store,
    q: CostQuery,
    parts: Parts,
) -> Result<CostAnswer, QueryError> {
    let c = &q.common;
    let (mut from, mut to) = (c.range.from, c.range.to);
    let mut buckets = Vec::new();
    if c.interval != Interval::None {
        // An open range is closed by the data itself so buckets can be listed.
        if from.is_none() || to.is_none() {
            let (lo, hi) = store.read(queries::costs::span).await?;
            from = from.or(lo);
            to = to.or(hi.map(|h| h + chrono::Duration::microseconds(1)));
        }
        if let (Some(f), Some(t)) = (from, to) {
            buckets =
                time::bucket_starts(f, t, c.interval, c.tz, MAX_BUCKETS).map_err(ParamError)?;
        }
    }
    let q2 = q.clone();
    let source = store.source();
    let (rows, total) = store
        .read(move |conn| {
            let rows = if parts == Parts::TotalOnly
                || (q2.common.interval != Interval::None && buckets.is_empty())
            {
                Vec::new() // not wanted, or no data and no range: nothing to bucket
            } else {
                queries::costs::grouped_from(conn, &q2, &buckets, source)?
            };
            let total = match parts {
                Parts::RowsOnly => Measures::default(),
                _ => queries::costs::total_from(conn, &q2, source)?,
            };
            Ok((rows, total))
        })
        .await?;
    let mut rows = rows;
    let truncated = rows.len() > q.common.limit;
    rows.truncate(q.common.limit);
    Ok(CostAnswer {
        from,
        to,
        rows,
        total,
        truncated,
        query: q,
    })
}

/// JSON shape of [`Measures`]: money as decimal strings.
#[derive(Debug, Serialize)]
pub struct MeasuresJson {
    pub cost: String,
    pub reported_cost: String,
    pub computed_cost: String,
    pub requests: i64,
    pub errors: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub reasoning_tokens: i64,
    pub unpriced_requests: i64,
}

impl From<&Measures> for MeasuresJson {
    fn from(m: &Measures) -> Self {
        MeasuresJson {
            cost: to_api_string(m.cost),
            reported_cost: to_api_string(m.reported_cost),
            computed_cost: to_api_string(m.computed_cost),
            requests: m.requests,
            errors: m.errors,
            input_tokens: m.input_tokens,
            output_tokens: m.output_tokens,
            cache_read_tokens: m.cache_read_tokens,
            cache_write_tokens: m.cache_write_tokens,
            reasoning_tokens: m.reasoning_tokens,
            unpriced_requests: m.unpriced_requests,
        }
    }
}

/// Formats an instant in the answer's time zone.
pub fn format_ts(ts: DateTime<Utc>, tz: Tz) -> String {
    ts.with_timezone(&tz)
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl CostAnswer {
    /// The row columns in answer order: group keys, `bucket` when bucketed, then [`MEASURES`]
    /// (the order of [`MeasuresJson`]'s fields).
    pub fn columns(&self) -> Vec<String> {
        let c = &self.query.common;
        let mut columns: Vec<String> = c.group_by.iter().map(|d| d.name().to_string()).collect();
        if c.interval != Interval::None {
            columns.push("bucket".into());
        }
        columns.extend(MEASURES.iter().map(|m| m.to_string()));
        columns
    }

    /// The JSON answer: `{rows: [{<keys>, bucket, <measures>}], total: {…}, …}`.
    pub fn to_json(&self) -> serde_json::Value {
        let c = &self.query.common;
        let rows: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|row| {
                let mut obj = serde_json::Map::new();
                for (dim, key) in c.group_by.iter().zip(&row.keys) {
                    obj.insert(
                        dim.name().into(),
                        key.clone().map_or(serde_json::Value::Null, Into::into),
                    );
                }
                if let Some(b) = row.bucket {
                    obj.insert("bucket".into(), format_ts(b, c.tz).into());
                }
                if let serde_json::Value::Object(m) = measures_value(&row.measures) {
                    obj.extend(m);
                }
                serde_json::Value::Object(obj)
            })
            .collect();
        serde_json::json!({
            "from": self.from.map(|t| format_ts(t, c.tz)),
            "to": self.to.map(|t| format_ts(t, c.tz)),
            "interval": c.interval.name(),
            "tz": c.tz.name(),
            "group_by": c.group_by.iter().map(|d| d.name()).collect::<Vec<_>>(),
            "rows": rows,
            "total": measures_value(&self.total),
            "truncated": self.truncated,
        })
    }
}

fn measures_value(m: &Measures) -> serde_json::Value {
    serde_json::to_value(MeasuresJson::from(m)).unwrap_or(serde_json::Value::Null)
}
