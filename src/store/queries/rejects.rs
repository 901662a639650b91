//! Reads of the dead-letter table.

use duckdb::types::Value;
use duckdb::Connection;
use serde::Serialize;

use super::{from_micros, Sql};
use crate::analytics::params::ParamError;
use crate::store::StoreError;

/// Which rejects to list.
#[derive(Debug, Clone)]
pub struct RejectsQuery {
    /// Set from the caller's key, never from a parameter: only that project's rejects.
    pub project: Option<String>,
    pub limit: usize,
    pub offset: usize,
    pub source_format: Option<String>,
    pub http_request: Option<String>,
}

impl RejectsQuery {
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, ParamError> {
        let mut q = RejectsQuery {
            project: None,
            limit: 100,
            offset: 0,
            source_format: None,
            http_request: None,
        };
        for (k, v) in pairs {
            let number = || {
                v.parse::<usize>()
                    .map_err(|_| ParamError(format!("{k}: {v:?} is not a non-negative integer")))
            };
            match k.as_str() {
                "limit" => q.limit = number()?.clamp(1, 10_000),
                "offset" => q.offset = number()?,
                "source_format" => q.source_format = Some(v.clone()),
                "http_request" => q.http_request = Some(v.clone()),
                other => {
                    return Err(ParamError(format!(
                        "unknown parameter {other:?}; expected limit, offset, source_format or http_request"
                    )))
                }
            }
        }
        Ok(q)
    }
}

/// One dead letter.
#[derive(Debug, Clone, Serialize)]
pub struct RejectRow {
    pub received_at: String,
    pub http_request: Option<String>,
    pub source_format: String,
    pub index: i64,
    pub field: String,
    pub reason: String,
    pub raw: String,
}

/// Newest first, with the number of rejects matching the filters.
pub fn list(conn: &Connection, q: &RejectsQuery) -> Result<(Vec<RejectRow>, i64), StoreError> {
    let mut filter = Sql::default();
    filter.push(" WHERE TRUE");
    if let Some(p) = &q.project {
        filter.push(" AND project = ").bind(Value::Text(p.clone()));
    }
    if let Some(f) = &q.source_format {
        filter
            .push(" AND source_format = ")
            .bind(Value::Text(f.clone()));
    }
    if let Some(r) = &q.http_request {
        filter
            .push(" AND http_request = ")
            .bind(Value::Text(r.clone()));
    }
    let total: i64 = conn.query_row(
        &format!("SELECT count(*) FROM rejects{}", filter.text),
        duckdb::params_from_iter(filter.params.iter()),
        |r| r.get(0),
    )?;
    let mut sql = Sql::default();
    sql.push("SELECT epoch_us(received_at), http_request, source_format, record_index, field, reason, raw FROM rejects");
    sql.text.push_str(&filter.text);
    sql.params.extend(filter.params.iter().cloned());
    sql.push(" ORDER BY received_at DESC, record_index ASC LIMIT ")
        .bind(Value::BigInt(q.limit as i64))
        .push(" OFFSET ")
        .bind(Value::BigInt(q.offset as i64));
    let mut stmt = conn.prepare(&sql.text)?;
    let rows = stmt.query_map(duckdb::params_from_iter(sql.params.iter()), |r| {
        Ok(RejectRow {
            received_at: from_micros(r.get(0)?).to_rfc3339(),
            http_request: r.get(1)?,
            source_format: r.get(2)?,
            index: r.get(3)?,
            field: r.get(4)?,
            reason: r.get(5)?,
            raw: r.get(6)?,
        })
    })?;
    Ok((rows.collect::<Result<Vec<_>, _>>()?, total))
}

/// Rejects received in `[from, to)`, for one project or all.
pub fn count(
    conn: &Connection,
    project: Option<&str>,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> Result<i64, StoreError> {
    let mut sql = Sql::default();
    sql.push("SELECT count(*) FROM rejects WHERE received_at >= ")
        .bind_ts(from)
        .push(" AND received_at < ")
        .bind_ts(to);
    if let Some(p) = project {
        sql.push(" AND project = ").bind(Value::Text(p.to_string()));
    }
    Ok(conn.query_row(
        &sql.text,
        duckdb::params_from_iter(sql.params.iter()),
        |r| r.get(0),
    )?)
}
