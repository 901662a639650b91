//! SQL for `/api/v1/reconciliation`: billed amounts and billed volumes per group and day, and
//! the gateway markup of events.
//!
//! The metered side is not here: it is `/api/v1/costs`' own query (`queries::costs`), called
//! by `analytics::reconciliation`, so metered numbers equal the costs API's by construction.
//! Billing lines are bucketed by their period start with the same precomputed day buckets the
//! costs query uses (an ASOF join). Money is summed as DECIMAL and read back as text, per
//! currency: amounts in different currencies are never added together.

use chrono::{DateTime, Utc};
use duckdb::types::Value;
use duckdb::Connection;
use rust_decimal::Decimal;

use super::{decimal, from_micros, where_clause, Sql};
use crate::analytics::params::{Filter, TimeRange};
use crate::domain::dimension::Dimension;
use crate::store::StoreError;

/// Billed money of one group, bucket and currency.
#[derive(Debug, Clone)]
pub struct BilledRow {
    pub keys: Vec<Option<String>>,
    pub bucket: Option<DateTime<Utc>>,
    pub currency: String,
    /// Every line: usage, and also taxes, credits, purchases, adjustments, corrections.
    pub amount: Decimal,
    /// Usage charges only (`ChargeCategory` Usage or not given).
    pub usage_amount: Decimal,
    pub lines: i64,
}

/// Billed volumes (usage reports) of one group and bucket.
#[derive(Debug, Clone)]
pub struct VolumeRow {
    pub keys: Vec<Option<String>>,
    pub bucket: Option<DateTime<Utc>>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// `None` when a line of the group has no request count (Anthropic's report).
    pub requests: Option<i64>,
    pub lines: i64,
}

/// Reported cost against list price for the events of one route and provider.
#[derive(Debug, Clone)]
pub struct MarkupRow {
    pub route: String,
    pub provider: Option<String>,
    pub requests: i64,
    /// Events with both a USD reported cost and a list price: the ones compared.
    pub compared_requests: i64,
    pub reported_cost: Decimal,
    pub list_cost: Decimal,
}

/// `WHERE` for billing tables: period start in the range, and the provider/model/project
/// filters (the only dimensions billing lines have).
fn billing_where(sql: &mut Sql, range: &TimeRange, filters: &[Filter]) {
    sql.push(" WHERE TRUE");
    if let Some(from) = range.from {
        sql.push(" AND period_start >= ").bind_ts(from);
    }
    if let Some(to) = range.to {
        sql.push(" AND period_start < ").bind_ts(to);
    }
    for filter in filters {
        let column = match filter.dim {
            Dimension::Provider | Dimension::Model | Dimension::Project => filter.dim.column(),
            // Parsing allows no other dimension; an unknown one matches nothing rather than all.
            _ => {
                sql.push(" AND FALSE");
                continue;
            }
        };
        sql.push(" AND (FALSE");
        for value in &filter.values {
            match value {
                Some(v) => {
                    sql.push(" OR ")
                        .push(column)
                        .push(" = ")
                        .bind(Value::Text(v.clone()));
                }
                None => {
                    sql.push(" OR ").push(column).push(" IS NULL");
                }
            }
        }
        sql.push(")");
    }
}

/// `SELECT <keys>, <bucket>, …` and the bucket join, around an inner relation `inner`.
fn grouped_sql(
    group_by: &[Dimension],
    buckets: &[DateTime<Utc>],
    measures: &str,
    inner: &Sql,
) -> Sql {
    let mut sql = Sql::default();
    sql.push("SELECT ");
    for dim in group_by {
        sql.push(dim.column()).push(", ");
    }
    sql.push(if buckets.is_empty() {
        "NULL::BIGINT, "
    } else {
        "epoch_us(bucket), "
    });
    sql.push(measures).push(" FROM (");
    sql.text.push_str(&inner.text);
    sql.params.extend(inner.params.iter().cloned());
    sql.push(") l");
    if !buckets.is_empty() {
        sql.push(" ASOF JOIN (VALUES ");
        for (i, b) in buckets.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.push("(").bind_ts(*b).push(")");
        }
        sql.push(") b(bucket) ON l.period_start >= b.bucket");
    }
    sql.push(" GROUP BY ALL");
    sql
}

/// Billed money per group, bucket and currency.
pub fn billed(
    conn: &Connection,
    group_by: &[Dimension],
    range: &TimeRange,
    filters: &[Filter],
    buckets: &[DateTime<Utc>],
) -> Result<Vec<BilledRow>, StoreError> {
    let mut inner = Sql::default();
    inner.push(
        "SELECT provider, model, project, period_start, currency, amount, charge_category
         FROM billing_lines",
    );
    billing_where(&mut inner, range, filters);
    let sql = grouped_sql(
        group_by,
        buckets,
        "currency,
         sum(amount)::VARCHAR,
         coalesce(sum(amount) FILTER (WHERE charge_category IS NULL OR charge_category = 'Usage'), 0)::VARCHAR,
         count(*)::BIGINT",
        &inner,
    );
    let keys = group_by.len();
    let mut stmt = conn.prepare(&sql.text)?;
    let rows = stmt.query_map(duckdb::params_from_iter(sql.params.iter()), |r| {
        let mut k = Vec::with_capacity(keys);
        for i in 0..keys {
            k.push(r.get::<_, Option<String>>(i)?);
        }
        Ok((
            k,
            r.get::<_, Option<i64>>(keys)?,
            r.get::<_, String>(keys + 1)?,
            r.get::<_, Option<String>>(keys + 2)?,
            r.get::<_, Option<String>>(keys + 3)?,
            r.get::<_, i64>(keys + 4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (keys, bucket, currency, amount, usage, lines) = row?;
        out.push(BilledRow {
            keys,
            bucket: bucket.map(from_micros),
            currency,
            amount: decimal(amount)?,
            usage_amount: decimal(usage)?,
            lines,
        });
    }
    Ok(out)
}

/// Billed volumes per group and bucket, from usage reports.
pub fn volumes(
    conn: &Connection,
    group_by: &[Dimension],
    range: &TimeRange,
    filters: &[Filter],
    buckets: &[DateTime<Utc>],
) -> Result<Vec<VolumeRow>, StoreError> {
    let mut inner = Sql::default();
    inner.push(
        "SELECT provider, model, project, period_start,
                input_uncached + cache_read + cache_write_5m + cache_write_1h + audio_in + image_in AS input_tokens,
                output + audio_out + image_out AS output_tokens,
                requests
         FROM billing_usage",
    );
    billing_where(&mut inner, range, filters);
    let sql = grouped_sql(
        group_by,
        buckets,
        "sum(input_tokens)::BIGINT,
         sum(output_tokens)::BIGINT,
         CASE WHEN count(requests) = count(*) THEN sum(requests) END::BIGINT,
         count(*)::BIGINT",
        &inner,
    );
    let keys = group_by.len();
    let mut stmt = conn.prepare(&sql.text)?;
    let rows = stmt.query_map(duckdb::params_from_iter(sql.params.iter()), |r| {
        let mut k = Vec::with_capacity(keys);
        for i in 0..keys {
            k.push(r.get::<_, Option<String>>(i)?);
        }
        Ok(VolumeRow {
            keys: k,
            bucket: r.get::<_, Option<i64>>(keys)?.map(from_micros),
            input_tokens: r.get(keys + 1)?,
            output_tokens: r.get(keys + 2)?,
            requests: r.get(keys + 3)?,
            lines: r.get(keys + 4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Reported cost against list price per gateway route (every route but `direct`) and provider.
pub fn markup(
    conn: &Connection,
    range: &TimeRange,
    filters: &[Filter],
) -> Result<Vec<MarkupRow>, StoreError> {
    const BOTH: &str =
        "reported_cost IS NOT NULL AND currency = 'USD' AND computed_cost IS NOT NULL";
    let mut sql = Sql::default();
    sql.push(&format!(
        "SELECT route, provider, count(*)::BIGINT, (count(*) FILTER (WHERE {BOTH}))::BIGINT,
                coalesce(sum(reported_cost) FILTER (WHERE {BOTH}), 0)::VARCHAR,
                coalesce(sum(computed_cost) FILTER (WHERE {BOTH}), 0)::VARCHAR
         FROM events"
    ));
    where_clause(&mut sql, range, filters);
    sql.push(" AND route <> 'direct' GROUP BY ALL ORDER BY route, provider NULLS LAST");
    let mut stmt = conn.prepare(&sql.text)?;
    let rows = stmt.query_map(duckdb::params_from_iter(sql.params.iter()), |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<String>>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, Option<String>>(4)?,
            r.get::<_, Option<String>>(5)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (route, provider, requests, compared, reported, list) = row?;
        out.push(MarkupRow {
            route,
            provider,
            requests,
            compared_requests: compared,
            reported_cost: decimal(reported)?,
            list_cost: decimal(list)?,
        });
    }
    Ok(out)
}

/// Earliest and latest period start of any billing or usage line (lines are bucketed by it).
pub fn span(conn: &Connection) -> Result<super::costs::Span, StoreError> {
    let (lo, hi): (Option<i64>, Option<i64>) = conn.query_row(
        "SELECT epoch_us(min(s)), epoch_us(max(e)) FROM (
             SELECT min(period_start) AS s, max(period_start) AS e FROM billing_lines
             UNION ALL
             SELECT min(period_start), max(period_start) FROM billing_usage)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok((lo.map(from_micros), hi.map(from_micros)))
}
