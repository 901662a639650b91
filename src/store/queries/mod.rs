//! SQL of the analytics queries, built from typed inputs only.
//!
//! Identifiers come from closed lists ([`crate::domain::dimension::Dimension::column`], measure
//! names defined here); every user-supplied value is a bound parameter. [`Sql`] keeps the text
//! and its parameters together so the two cannot drift apart.

pub mod anomalies;
pub mod billing;
pub mod budgets;
pub mod costs;
pub mod focus_export;
pub mod ingest;
pub mod keys;
pub mod outcomes;
pub mod reconciliation;
pub mod rejects;
pub mod reprice;
pub mod routes;
pub mod runs;
pub mod scan;
pub mod tasks;
pub mod unpriced;

use chrono::{DateTime, Utc};
use duckdb::types::Value;

use super::StoreError;
use crate::analytics::params::{Filter, TimeRange};
use crate::domain::dimension::Dimension;

/// SQL text with its bound parameters.
#[derive(Debug, Default, Clone)]
pub struct Sql {
    pub text: String,
    pub params: Vec<Value>,
}

impl Sql {
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a `?` and binds `value` to it.
    pub fn bind(&mut self, value: Value) -> &mut Self {
        self.text.push('?');
        self.params.push(value);
        self
    }

    /// Appends `CAST(? AS TIMESTAMPTZ)` bound to `ts`.
    pub fn bind_ts(&mut self, ts: DateTime<Utc>) -> &mut Self {
        self.push("CAST(")
            .bind(Value::Text(super::arrow::ts_string(ts)))
            .push(" AS TIMESTAMPTZ)")
    }
}

/// `WHERE` conditions for a time range and filters, joined by AND (`TRUE` when empty).
pub fn where_clause(sql: &mut Sql, range: &TimeRange, filters: &[Filter]) {
    sql.push(" WHERE TRUE");
    if let Some(from) = range.from {
        sql.push(" AND ts >= ").bind_ts(from);
    }
    if let Some(to) = range.to {
        sql.push(" AND ts < ").bind_ts(to);
    }
    for filter in filters {
        sql.push(" AND (FALSE");
        for value in &filter.values {
            match (filter.dim, value) {
                (Dimension::Tag, Some(v)) => {
                    sql.push(" OR list_contains(tags, ")
                        .bind(Value::Text(v.clone()))
                        .push(")");
                }
                (Dimension::Tag, None) => {
                    sql.push(" OR len(tags) = 0");
                }
                (dim, Some(v)) => {
                    sql.push(" OR ")
                        .push(dim.column())
                        .push(" = ")
                        .bind(Value::Text(v.clone()));
                }
                (dim, None) => {
                    sql.push(" OR ").push(dim.column()).push(" IS NULL");
                }
            }
        }
        sql.push(")");
    }
}

/// Reads a decimal that SQL cast to text; SQL NULL (a sum over no rows) is zero.
pub fn decimal(text: Option<String>) -> Result<rust_decimal::Decimal, StoreError> {
    match text {
        None => Ok(rust_decimal::Decimal::ZERO),
        Some(t) => t
            .parse::<rust_decimal::Decimal>()
            .map(|d| d.normalize())
            .map_err(|e| StoreError::Other(format!("cannot read decimal {t:?}: {e}"))),
    }
}

/// The group keys (`keys` text columns) and the bucket (µs, NULL when unbucketed) that lead a
/// grouped answer's row; the measures follow them.
pub fn read_group(
    r: &duckdb::Row<'_>,
    keys: usize,
) -> duckdb::Result<(Vec<Option<String>>, Option<i64>)> {
    let mut group = Vec::with_capacity(keys);
    for i in 0..keys {
        group.push(r.get::<_, Option<String>>(i)?);
    }
    Ok((group, r.get(keys)?))
}

/// Microseconds since the epoch → UTC timestamp.
pub fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}
