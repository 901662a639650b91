//! SQL of `/api/v1/routes`: per route (and further keys) requests, errors by type, latency and
//! time-to-first-token percentiles, and reported vs list cost where both are known.
//!
//! Percentiles are `quantile_cont` over the INTEGER millisecond columns (interpolated, so a
//! p95 may fall between two observed values); they are durations, not money, so a DOUBLE is
//! fine. Money is summed as `DECIMAL` and read back as text.

use duckdb::Connection;
use rust_decimal::Decimal;

use super::{decimal, where_clause, Sql};
use crate::analytics::params::Common;
use crate::analytics::routes::Split;
use crate::domain::dimension::Dimension;
use crate::store::StoreError;

/// Sums and percentiles of one route group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteAgg {
    pub keys: Vec<Option<String>>,
    pub requests: i64,
    pub errors: i64,
    /// p50, p95, p99 of `latency_ms` over the requests that report it.
    pub latency_ms: [Option<f64>; 3],
    /// p50, p95, p99 of `ttft_ms` (streamed requests).
    pub ttft_ms: [Option<f64>; 3],
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost: Decimal,
    pub unpriced_requests: i64,
    /// Requests with both a reported USD cost and a list cost.
    pub compared_requests: i64,
    /// Their reported cost…
    pub compared_reported: Decimal,
    /// …and their list cost.
    pub compared_list: Decimal,
    /// The input/output split of the requests whose list-price parts are stored (see
    /// [`SPLIT_STORED`]); the others are re-priced by the caller.
    pub stored_split: Split,
    /// Failed requests per `error_type` (`None` when the source gave no type), unordered.
    pub error_types: Vec<(Option<String>, i64)>,
}

/// Requests whose input/output split is a sum of stored columns.
const SPLIT_STORED: &str =
    "cost IS NOT NULL AND list_lines_cost IS NOT NULL AND list_lines_cost <> 0";

/// Requests stored before the list-price parts were (or priced beyond their range): the
/// caller re-prices these one by one to split their cost.
pub const SPLIT_TO_REPRICE: &str =
    "cost IS NOT NULL AND computed_cost IS NOT NULL AND list_lines_cost IS NULL";

/// Pushes `SELECT <keys> FROM (SELECT <cols>, <keys or unnested tag> FROM events WHERE …) e`.
fn source(sql: &mut Sql, c: &Common, columns: &str) {
    sql.push(" FROM (SELECT ").push(columns);
    for dim in &c.group_by {
        if *dim == Dimension::Tag {
            sql.push(", unnest(CASE WHEN len(tags) = 0 THEN [NULL::VARCHAR] ELSE tags END) AS tag");
        } else {
            sql.push(", ").push(dim.column());
        }
    }
    sql.push(" FROM events");
    where_clause(sql, &c.range, &c.filters);
    sql.push(") e");
}

fn keys_select(sql: &mut Sql, c: &Common) {
    for dim in &c.group_by {
        sql.push(dim.name()).push(", ");
    }
}

/// Each group of `c.group_by` (which starts with `route`) handed to `each` as it is read, with
/// its failed requests by error type. The error types are counted in the same aggregate (a
/// `histogram` per group, read as two JSON lists), so a group arrives whole, in one pass over
/// the events, and a caller keeping its top rows holds only those however many groups there
/// are. (Joining a second aggregate by error type to this one ran out of DuckDB's memory with
/// a group per task at 10M events.)
pub fn aggregates(
    conn: &Connection,
    c: &Common,
    mut each: impl FnMut(RouteAgg),
) -> Result<(), StoreError> {
    let mut sql = Sql::default();
    sql.push("SELECT ");
    keys_select(&mut sql, c);
    sql.push(
        "count(*)::BIGINT, count(*) FILTER (WHERE status = 'error')::BIGINT, \
         quantile_cont(latency_ms, 0.5), quantile_cont(latency_ms, 0.95), quantile_cont(latency_ms, 0.99), \
         quantile_cont(ttft_ms, 0.5), quantile_cont(ttft_ms, 0.95), quantile_cont(ttft_ms, 0.99), \
         coalesce(sum(input_uncached + cache_read + cache_write_5m + cache_write_1h + audio_in + image_in), 0)::BIGINT, \
         coalesce(sum(output + audio_out + image_out), 0)::BIGINT, \
         coalesce(sum(cost), 0)::VARCHAR, count(*) FILTER (WHERE cost IS NULL)::BIGINT, \
         count(*) FILTER (WHERE reported_cost IS NOT NULL AND currency = 'USD' AND computed_cost IS NOT NULL)::BIGINT, \
         coalesce(sum(reported_cost) FILTER (WHERE reported_cost IS NOT NULL AND currency = 'USD' AND computed_cost IS NOT NULL), 0)::VARCHAR, \
         coalesce(sum(computed_cost) FILTER (WHERE reported_cost IS NOT NULL AND currency = 'USD' AND computed_cost IS NOT NULL), 0)::VARCHAR, ",
    );
    // `{f}` is where the filter goes: right after the aggregate, inside any cast.
    let filter = format!("FILTER (WHERE {SPLIT_STORED})");
    for measure in [
        "count(*) {f}",
        "coalesce(sum(cost) {f}, 0)::VARCHAR",
        "coalesce(sum(list_lines_cost) {f}, 0)::VARCHAR",
        "coalesce(sum(list_input_cost) {f}, 0)::VARCHAR",
        "coalesce(sum(list_output_cost) {f}, 0)::VARCHAR",
        "coalesce(sum(input_uncached + cache_read + cache_write_5m + cache_write_1h + audio_in + image_in) {f}, 0)::BIGINT",
        "coalesce(sum(output + audio_out + image_out) {f}, 0)::BIGINT",
    ] {
        sql.push(&measure.replace("{f}", &filter)).push(", ");
    }
    let typed = "histogram(error_type) FILTER (WHERE status = 'error' AND error_type IS NOT NULL)";
    sql.push(&format!(
        "to_json(map_keys({typed}))::VARCHAR, to_json(map_values({typed}))::VARCHAR, \
         count(*) FILTER (WHERE status = 'error' AND error_type IS NULL)::BIGINT"
    ));
    source(
        &mut sql,
        c,
        "status, error_type, latency_ms, ttft_ms, input_uncached, cache_read, cache_write_5m, \
         cache_write_1h, audio_in, image_in, output, audio_out, image_out, cost, reported_cost, \
         currency, computed_cost, list_lines_cost, list_input_cost, list_output_cost",
    );
    sql.push(" GROUP BY ALL");
    let mut stmt = conn.prepare(&sql.text)?;
    let n = c.group_by.len();
    let mut rows =
        crate::store::stream_rows(&mut stmt, duckdb::params_from_iter(sql.params.iter()))?;
    while let Some(r) = rows.next()? {
        let mut keys = Vec::with_capacity(n);
        for i in 0..n {
            keys.push(r.get::<_, Option<String>>(i)?);
        }
        let row = (
            keys,
            r.get::<_, i64>(n)?,
            r.get::<_, i64>(n + 1)?,
            [r.get(n + 2)?, r.get(n + 3)?, r.get(n + 4)?],
            [r.get(n + 5)?, r.get(n + 6)?, r.get(n + 7)?],
            r.get::<_, i64>(n + 8)?,
            r.get::<_, i64>(n + 9)?,
            r.get::<_, Option<String>>(n + 10)?,
            r.get::<_, i64>(n + 11)?,
            r.get::<_, i64>(n + 12)?,
            r.get::<_, Option<String>>(n + 13)?,
            r.get::<_, Option<String>>(n + 14)?,
            (
                r.get::<_, i64>(n + 15)?,
                [
                    r.get::<_, Option<String>>(n + 16)?,
                    r.get::<_, Option<String>>(n + 17)?,
                    r.get::<_, Option<String>>(n + 18)?,
                    r.get::<_, Option<String>>(n + 19)?,
                ],
                r.get::<_, i64>(n + 20)?,
                r.get::<_, i64>(n + 21)?,
            ),
        );
        let types = (
            r.get::<_, Option<String>>(n + 22)?,
            r.get::<_, Option<String>>(n + 23)?,
            r.get::<_, i64>(n + 24)?,
        );
        let (
            keys,
            requests,
            errors,
            latency_ms,
            ttft_ms,
            input,
            output,
            cost,
            unpriced,
            cmp,
            rep,
            list,
            (split_requests, [split_cost, list_all, list_in, list_out], split_in, split_out),
        ) = row;
        each(RouteAgg {
            keys,
            requests,
            errors,
            latency_ms,
            ttft_ms,
            input_tokens: input,
            output_tokens: output,
            cost: decimal(cost)?,
            unpriced_requests: unpriced,
            compared_requests: cmp,
            compared_reported: decimal(rep)?,
            compared_list: decimal(list)?,
            stored_split: Split {
                requests: split_requests,
                cost: decimal(split_cost)?,
                list_all: decimal(list_all)?,
                list_input: decimal(list_in)?,
                list_output: decimal(list_out)?,
                input_tokens: u64::try_from(split_in).unwrap_or(0),
                output_tokens: u64::try_from(split_out).unwrap_or(0),
            },
            error_types: error_types(types)?,
        });
    }
    Ok(())
}

/// A group's failed requests per error type from the aggregate's columns: the typed ones'
/// types and counts as two JSON lists (NULL when there is none), then the untyped count.
fn error_types(
    (types, counts, untyped): (Option<String>, Option<String>, i64),
) -> Result<Vec<(Option<String>, i64)>, StoreError> {
    let list = |json: Option<String>| -> Result<Vec<serde_json::Value>, StoreError> {
        match json {
            None => Ok(Vec::new()),
            Some(j) => serde_json::from_str(&j)
                .map_err(|e| StoreError::Other(format!("cannot read error types {j:?}: {e}"))),
        }
    };
    let (types, counts) = (list(types)?, list(counts)?);
    if types.len() != counts.len() {
        return Err(StoreError::Other(format!(
            "error types: {} types for {} counts",
            types.len(),
            counts.len()
        )));
    }
    let mut out = Vec::with_capacity(types.len() + 1);
    for (t, n) in types.into_iter().zip(counts) {
        match (t.as_str(), n.as_i64()) {
            (Some(t), Some(n)) => out.push((Some(t.to_string()), n)),
            _ => return Err(StoreError::Other(format!("error types: {t} × {n}"))),
        }
    }
    if untyped > 0 {
        out.push((None, untyped));
    }
    Ok(out)
}
