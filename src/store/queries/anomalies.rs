//! SQL of `/api/v1/anomalies`: daily spend per value of one dimension. Days are computed in
//! Rust (in the answer's time zone) and joined with an ASOF join, as the costs API does.

use chrono::{DateTime, Utc};
use duckdb::Connection;
use rust_decimal::Decimal;

use super::{decimal, from_micros, where_clause, Sql};
use crate::analytics::params::{Filter, TimeRange};
use crate::domain::dimension::Dimension;
use crate::store::StoreError;

/// One value's (day start, spend) pairs, in day order.
pub type Series = Vec<(DateTime<Utc>, Decimal)>;

/// The daily spend of every value with spend, one value at a time: `each` gets the value and
/// its (day start, spend) pairs in day order. Values that are NULL are left out (they are
/// nobody's spend). The rows come sorted by value and day and streamed, so a dimension with
/// millions of values (runs, sessions) holds one value's days at a time here.
pub fn daily(
    conn: &Connection,
    dim: Dimension,
    range: &TimeRange,
    filters: &[Filter],
    days: &[DateTime<Utc>],
    mut each: impl FnMut(String, Series),
) -> Result<(), StoreError> {
    if days.is_empty() {
        return Ok(());
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
    sql.push(") b(day) ON e.ts >= b.day WHERE v IS NOT NULL GROUP BY ALL ORDER BY 1, 2");
    let mut stmt = conn.prepare(&sql.text)?;
    let mut rows =
        crate::store::stream_rows(&mut stmt, duckdb::params_from_iter(sql.params.iter()))?;
    let mut runs = crate::store::Runs::<String, Series>::new();
    while let Some(r) = rows.next()? {
        let value: String = r.get(0)?;
        let day = from_micros(r.get(1)?);
        let spend = decimal(r.get(2)?)?;
        runs.entry(value, &mut each).push((day, spend));
    }
    runs.finish(each);
    Ok(())
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
