//! SQL of `/api/v1/anomalies`: daily spend per value of one dimension. Days are computed in
//! Rust (in the answer's time zone) and joined with an ASOF join, as the costs API does.

use chrono::{DateTime, Utc};
use duckdb::Connection;
use rust_decimal::Decimal;

use super::{decimal, from_micros, where_clause, Sql};
use crate::analytics::params::{Filter, TimeRange};
use crate::domain::dimension::Dimension;
use crate::store::StoreError;

/// (value, day start, spend) for every value and day with spend; values that are NULL are left
/// out (they are nobody's spend).
pub fn daily(
    conn: &Connection,
    dim: Dimension,
    range: &TimeRange,
    filters: &[Filter],
    days: &[DateTime<Utc>],
) -> Result<Vec<(String, DateTime<Utc>, Decimal)>, StoreError> {
    if days.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::default();
    sql.push("SELECT v, epoch_us(day), sum(cost)::VARCHAR FROM (SELECT ts, cost, ");
    if dim == Dimension::Tag {
        sql.push("unnest(tags) AS v");
    } else {
        sql.push(dim.column()).push(" AS v");
    }
    sql.push(" FROM events");
    where_clause(&mut sql, range, filters);
    sql.push(" AND cost IS NOT NULL) e ASOF JOIN (VALUES ");
    for (i, d) in days.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.push("(").bind_ts(*d).push(")");
    }
    sql.push(") b(day) ON e.ts >= b.day WHERE v IS NOT NULL GROUP BY ALL");
    let mut stmt = conn.prepare(&sql.text)?;
    let rows = stmt.query_map(duckdb::params_from_iter(sql.params.iter()), |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, Option<String>>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (v, day, spend) = row?;
        out.push((v, from_micros(day), decimal(spend)?));
    }
    Ok(out)
}

/// The first and last event time among the events the filters select (any time).
pub fn span(conn: &Connection, filters: &[Filter]) -> Result<super::costs::Span, StoreError> {
    let mut sql = Sql::default();
    sql.push("SELECT epoch_us(min(ts)), epoch_us(max(ts)) FROM events");
    where_clause(&mut sql, &TimeRange::default(), filters);
    let (lo, hi): (Option<i64>, Option<i64>) = conn.query_row(
        &sql.text,
        duckdb::params_from_iter(sql.params.iter()),
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok((lo.map(from_micros), hi.map(from_micros)))
}
