//! SQL of `/api/v1/unpriced`: what the catalog could not price, by provider, model and the
//! reason stored at ingest (`unpriced_reason`).

use chrono::{DateTime, Utc};
use duckdb::Connection;
use rust_decimal::Decimal;

use super::{decimal, from_micros, where_clause, Sql};
use crate::analytics::params::Common;
use crate::store::StoreError;

/// One (provider, model, reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpricedRow {
    pub provider: Option<String>,
    pub model: String,
    pub reason: Option<String>,
    pub requests: i64,
    /// Requests whose cost is unknown (no reported cost either): not in any total.
    pub uncosted_requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// What the sources reported for the others, in USD.
    pub reported_cost: Decimal,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

/// Events the catalog could not price (with or without a reported cost).
pub fn rows(conn: &Connection, c: &Common) -> Result<Vec<UnpricedRow>, StoreError> {
    let mut sql = Sql::default();
    sql.push(
        "SELECT provider, model, unpriced_reason, count(*)::BIGINT, \
         count(*) FILTER (WHERE cost IS NULL)::BIGINT, \
         coalesce(sum(input_uncached + cache_read + cache_write_5m + cache_write_1h + audio_in + image_in), 0)::BIGINT, \
         coalesce(sum(output + audio_out + image_out), 0)::BIGINT, \
         coalesce(sum(reported_cost) FILTER (WHERE currency = 'USD'), 0)::VARCHAR, \
         epoch_us(min(ts)), epoch_us(max(ts)) FROM events",
    );
    where_clause(&mut sql, &c.range, &c.filters);
    sql.push(
        " AND (unpriced_reason IS NOT NULL OR cost IS NULL) GROUP BY provider, model, unpriced_reason \
         ORDER BY count(*) FILTER (WHERE cost IS NULL) DESC, count(*) DESC, model, provider",
    );
    let mut stmt = conn.prepare(&sql.text)?;
    let rows = stmt.query_map(duckdb::params_from_iter(sql.params.iter()), |r| {
        Ok((
            r.get::<_, Option<String>>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, i64>(5)?,
            r.get::<_, i64>(6)?,
            r.get::<_, Option<String>>(7)?,
            r.get::<_, i64>(8)?,
            r.get::<_, i64>(9)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (provider, model, reason, requests, uncosted, input, output, reported, first, last) =
            row?;
        out.push(UnpricedRow {
            provider,
            model,
            reason,
            requests,
            uncosted_requests: uncosted,
            input_tokens: input,
            output_tokens: output,
            reported_cost: decimal(reported)?,
            first_seen: from_micros(first),
            last_seen: from_micros(last),
        });
    }
    Ok(out)
}

/// Requests in scope, and of them those without any cost (to put the rows in proportion).
pub fn scope_counts(conn: &Connection, c: &Common) -> Result<(i64, i64), StoreError> {
    let mut sql = Sql::default();
    sql.push("SELECT count(*)::BIGINT, count(*) FILTER (WHERE cost IS NULL)::BIGINT FROM events");
    where_clause(&mut sql, &c.range, &c.filters);
    Ok(conn.query_row(
        &sql.text,
        duckdb::params_from_iter(sql.params.iter()),
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}
