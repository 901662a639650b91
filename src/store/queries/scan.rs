//! A streamed read of the events a query selects, one typed row at a time, for the answers
//! that must re-price each event in Rust (what-if, re-pricing, a route's effective prices):
//! pricing is per call (tiers depend on each call's input size), so it cannot be summed first.
//!
//! Rows are handed to a callback while the statement runs, so memory stays flat however many
//! events match. Money is read as text and parsed into `Decimal`, never a float.

use chrono::{DateTime, Utc};
use duckdb::Connection;
use rust_decimal::Decimal;

use super::{from_micros, where_clause, Sql};
use crate::analytics::params::{Filter, TimeRange};
use crate::domain::dimension::Dimension;
use crate::domain::tokens::TokenBuckets;
use crate::store::StoreError;

/// One event as the re-pricing answers need it.
#[derive(Debug, Clone)]
pub struct ScanRow {
    /// The row's position in the table (stable within a transaction), for updates.
    pub rid: i64,
    /// Values of the group-by dimensions in order; `None` in a `tag` slot (see `tags`).
    pub keys: Vec<Option<String>>,
    /// The event's tags, read only when `tag` is a group key.
    pub tags: Vec<String>,
    pub ts: DateTime<Utc>,
    pub idem_key: Option<String>,
    pub request_id: Option<String>,
    pub provider: Option<String>,
    pub model: String,
    pub service_tier: String,
    pub project: Option<String>,
    pub api_key_id: Option<String>,
    pub tokens: TokenBuckets,
    pub web_search_requests: u64,
    pub reported_cost: Option<Decimal>,
    pub currency: Option<String>,
    pub computed_cost: Option<Decimal>,
    pub custom_cost: Option<Decimal>,
    pub cost: Option<Decimal>,
    pub cost_source: String,
    pub price_id: Option<String>,
    pub custom_price_id: Option<String>,
    pub unpriced_reason: Option<String>,
}

const COLUMNS: &str = "rowid, epoch_us(ts), idem_key, request_id, provider, model, service_tier, project, \
    api_key_id, input_uncached, cache_read, cache_write_5m, cache_write_1h, output, reasoning, audio_in, \
    audio_out, image_in, image_out, web_search_requests, reported_cost::VARCHAR, currency, \
    computed_cost::VARCHAR, custom_cost::VARCHAR, cost::VARCHAR, cost_source, price_id, \
    custom_price_id, unpriced_reason";
const FIXED: usize = 29;

/// Calls `f` with every event in `range` matching `filters`, in no particular order; returns
/// how many there were.
pub fn scan(
    conn: &Connection,
    range: &TimeRange,
    filters: &[Filter],
    group_by: &[Dimension],
    f: &mut dyn FnMut(ScanRow) -> Result<(), StoreError>,
) -> Result<u64, StoreError> {
    scan_where(conn, range, filters, group_by, "TRUE", f)
}

/// [`scan`] over the rows that also satisfy `condition`, a fixed SQL predicate on the events'
/// columns (never user input).
pub fn scan_where(
    conn: &Connection,
    range: &TimeRange,
    filters: &[Filter],
    group_by: &[Dimension],
    condition: &'static str,
    f: &mut dyn FnMut(ScanRow) -> Result<(), StoreError>,
) -> Result<u64, StoreError> {
    let mut sql = Sql::default();
    sql.push("SELECT ").push(COLUMNS);
    for dim in group_by {
        if *dim == Dimension::Tag {
            sql.push(", to_json(tags)::VARCHAR");
        } else {
            sql.push(", ").push(dim.column());
        }
    }
    sql.push(" FROM events");
    where_clause(&mut sql, range, filters);
    sql.push(" AND (").push(condition).push(")");
    let mut stmt = conn.prepare(&sql.text)?;
    // Streamed: `query` would hold every matching event in memory before the first row.
    let mut rows =
        crate::store::stream_rows(&mut stmt, duckdb::params_from_iter(sql.params.iter()))?;
    let mut n = 0u64;
    while let Some(r) = rows.next()? {
        let count = |i: usize| -> Result<u64, StoreError> {
            let v: i64 = r.get(i)?;
            u64::try_from(v).map_err(|_| StoreError::Other(format!("negative count {v} stored")))
        };
        let money = |i: usize| -> Result<Option<Decimal>, StoreError> {
            r.get::<_, Option<String>>(i)?
                .map(|t| super::decimal(Some(t)))
                .transpose()
        };
        let mut keys = Vec::with_capacity(group_by.len());
        let mut tags = Vec::new();
        for (k, dim) in group_by.iter().enumerate() {
            let v: Option<String> = r.get(FIXED + k)?;
            if *dim == Dimension::Tag {
                tags = match v {
                    Some(text) => serde_json::from_str(&text).map_err(|e| {
                        StoreError::Other(format!("cannot read stored tags {text:?}: {e}"))
                    })?,
                    None => Vec::new(),
                };
                keys.push(None);
            } else {
                keys.push(v);
            }
        }
        let row = ScanRow {
            rid: r.get(0)?,
            keys,
            tags,
            ts: from_micros(r.get(1)?),
            idem_key: r.get(2)?,
            request_id: r.get(3)?,
            provider: r.get(4)?,
            model: r.get(5)?,
            service_tier: r.get(6)?,
            project: r.get(7)?,
            api_key_id: r.get(8)?,
            tokens: TokenBuckets {
                input_uncached: count(9)?,
                cache_read: count(10)?,
                cache_write_5m: count(11)?,
                cache_write_1h: count(12)?,
                output: count(13)?,
                reasoning: count(14)?,
                audio_in: count(15)?,
                audio_out: count(16)?,
                image_in: count(17)?,
                image_out: count(18)?,
            },
            web_search_requests: count(19)?,
            reported_cost: money(20)?,
            currency: r.get(21)?,
            computed_cost: money(22)?,
            custom_cost: money(23)?,
            cost: money(24)?,
            cost_source: r.get(25)?,
            price_id: r.get(26)?,
            custom_price_id: r.get(27)?,
            unpriced_reason: r.get(28)?,
        };
        n += 1;
        f(row)?;
    }
    Ok(n)
}

/// The group keys an event counts under: one per tag when grouping by `tag` (a `None` tag for
/// an event without tags), else just its keys.
pub fn key_sets(row: &ScanRow, group_by: &[Dimension]) -> Vec<Vec<Option<String>>> {
    match group_by.iter().position(|d| *d == Dimension::Tag) {
        None => vec![row.keys.clone()],
        Some(slot) => {
            let tags: Vec<Option<String>> = if row.tags.is_empty() {
                vec![None]
            } else {
                row.tags.iter().cloned().map(Some).collect()
            };
            tags.into_iter()
                .map(|t| {
                    let mut k = row.keys.clone();
                    k[slot] = t;
                    k
                })
                .collect()
        }
    }
}
