//! Ingest health reads: how many events arrived per time bucket and source format.
//!
//! Counted by `received_at` (when Tally stored the event), not `ts` (when the call happened):
//! the ingest page is about the pipeline's arrival rate, and a backfill of last month's calls
//! is ingest activity today. Buckets are fixed-width UTC intervals computed in SQL from bound
//! parameters, so the chart needs one scan.

use chrono::{DateTime, Utc};
use duckdb::types::Value;
use duckdb::Connection;

use super::{from_micros, Sql};
use crate::store::StoreError;

/// Events stored in one bucket from one source format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArrivalRow {
    pub bucket: DateTime<Utc>,
    pub source_format: String,
    pub events: i64,
}

/// Events received in `[from, to)` per `bucket_us`-wide bucket and source format, for one
/// project or all. Empty buckets are absent; the page fills them.
pub fn arrivals(
    conn: &Connection,
    project: Option<&str>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket_us: i64,
) -> Result<Vec<ArrivalRow>, StoreError> {
    let mut sql = Sql::default();
    sql.push("SELECT (epoch_us(received_at) // ")
        .bind(Value::BigInt(bucket_us))
        .push(") * ")
        .bind(Value::BigInt(bucket_us))
        .push(" AS bucket, source_format, count(*) FROM events WHERE received_at >= ")
        .bind_ts(from)
        .push(" AND received_at < ")
        .bind_ts(to);
    if let Some(p) = project {
        sql.push(" AND project = ").bind(Value::Text(p.to_string()));
    }
    sql.push(" GROUP BY bucket, source_format ORDER BY bucket, source_format");
    let mut stmt = conn.prepare(&sql.text)?;
    let rows = stmt.query_map(duckdb::params_from_iter(sql.params.iter()), |r| {
        Ok(ArrivalRow {
            bucket: from_micros(r.get(0)?),
            source_format: r.get(1)?,
            events: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// DuckDB's own account of its memory, by what holds it (`BASE_TABLE`, `HASH_TABLE`, …): bytes
/// in memory and spilled to temporary files. `/metrics` shows it next to the process's
/// resident size, so an operator can tell DuckDB's buffer pool (bounded by
/// `storage.memory_limit`) from the rest of the process.
pub fn duckdb_memory(conn: &Connection) -> Result<Vec<(String, u64, u64)>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT tag, memory_usage_bytes, temporary_storage_bytes FROM duckdb_memory() ORDER BY tag",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (tag, memory, temporary) = row?;
        out.push((
            tag.to_ascii_lowercase(),
            memory.max(0) as u64,
            temporary.max(0) as u64,
        ));
    }
    Ok(out)
}
