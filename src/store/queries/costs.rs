//! SQL for `/api/v1/costs`: sums of cost, tokens and requests per group and time bucket.
//!
//! Money is summed as `DECIMAL` and read back as text, so no float ever touches it. Time buckets
//! arrive precomputed (see `analytics::time`) and events are assigned to them with an ASOF join.
//! Grouping by `tag` unnests the tag list, so an event with two tags counts in both groups; the
//! total is computed without unnesting and counts every event once.

use chrono::{DateTime, Utc};
use duckdb::types::Value;
use duckdb::Connection;

use super::{decimal, from_micros, read_group, where_clause, Sql};
use crate::analytics::costs::{CostQuery, CostRow, Measures, MEASURES};
use crate::analytics::params::Common;
use crate::domain::dimension::Dimension;
use crate::store::{rollup, StoreError};

/// Aggregates over the (possibly tag-unnested, bucketed) events relation `e`.
const AGGREGATES: &str = "
    sum(cost) AS m_cost,
    sum(reported_cost) FILTER (WHERE currency = 'USD') AS m_reported_cost,
    sum(computed_cost) AS m_computed_cost,
    count(*) AS m_requests,
    count(*) FILTER (WHERE status = 'error') AS m_errors,
    sum(input_uncached + cache_read + cache_write_5m + cache_write_1h + audio_in + image_in) AS m_input_tokens,
    sum(output + audio_out + image_out) AS m_output_tokens,
    sum(cache_read) AS m_cache_read_tokens,
    sum(cache_write_5m + cache_write_1h) AS m_cache_write_tokens,
    sum(reasoning) AS m_reasoning_tokens,
    count(*) FILTER (WHERE cost_source = 'unpriced') AS m_unpriced_requests";

/// The aggregates converted for transport: money as exact text, counts as BIGINT.
const OUTPUTS: &str = "
    coalesce(m_cost, 0)::VARCHAR,
    coalesce(m_reported_cost, 0)::VARCHAR,
    coalesce(m_computed_cost, 0)::VARCHAR,
    m_requests::BIGINT,
    m_errors::BIGINT,
    coalesce(m_input_tokens, 0)::BIGINT,
    coalesce(m_output_tokens, 0)::BIGINT,
    coalesce(m_cache_read_tokens, 0)::BIGINT,
    coalesce(m_cache_write_tokens, 0)::BIGINT,
    coalesce(m_reasoning_tokens, 0)::BIGINT,
    m_unpriced_requests::BIGINT";

/// The same aggregates over a rollup's partial sums (see `store::rollup`).
const ROLLUP_AGGREGATES: &str = "
    sum(cost) AS m_cost,
    sum(reported_cost) AS m_reported_cost,
    sum(computed_cost) AS m_computed_cost,
    coalesce(sum(requests), 0) AS m_requests,
    coalesce(sum(errors), 0) AS m_errors,
    sum(input_tokens) AS m_input_tokens,
    sum(output_tokens) AS m_output_tokens,
    sum(cache_read_tokens) AS m_cache_read_tokens,
    sum(cache_write_tokens) AS m_cache_write_tokens,
    sum(reasoning_tokens) AS m_reasoning_tokens,
    coalesce(sum(unpriced_requests), 0) AS m_unpriced_requests";

/// Where an answer is computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A rollup when one can answer, else the events.
    Auto,
    /// Always the events (the reference the rollups are tested against).
    Events,
}

impl Source {
    /// The source `storage.use_rollups` asks for.
    pub fn configured(use_rollups: bool) -> Source {
        if use_rollups {
            Source::Auto
        } else {
            Source::Events
        }
    }
}

/// The rollup table `source` allows for this question, if any.
fn rollup_for(
    source: Source,
    q: &CostQuery,
    buckets: &[DateTime<Utc>],
) -> Option<&'static rollup::Rollup> {
    match source {
        Source::Auto => rollup::choose(&q.common, buckets),
        Source::Events => None,
    }
}

/// Columns the aggregates read.
const MEASURE_COLUMNS: &str = "ts, cost, reported_cost, currency, computed_cost, status, cost_source, input_uncached, \
    cache_read, cache_write_5m, cache_write_1h, audio_in, image_in, output, audio_out, image_out, reasoning";

/// Rows per group (and bucket), at most `limit + 1` of them so the caller can tell truncation.
pub fn grouped_from(
    conn: &Connection,
    q: &CostQuery,
    buckets: &[DateTime<Utc>],
    source: Source,
) -> Result<Vec<CostRow>, StoreError> {
    let c = &q.common;
    let rollup = rollup_for(source, q, buckets);
    let mut sql = Sql::default();
    sql.push("SELECT ");
    for dim in &c.group_by {
        sql.push(dim.name()).push(", ");
    }
    sql.push(if buckets.is_empty() {
        "NULL::BIGINT, "
    } else {
        "epoch_us(bucket), "
    });
    sql.push(OUTPUTS);
    sql.push(" FROM (SELECT ");
    for dim in &c.group_by {
        sql.push(dim.name()).push(", ");
    }
    if !buckets.is_empty() {
        sql.push("bucket, ");
    }
    match rollup {
        Some(r) if buckets.is_empty() => {
            sql.push(ROLLUP_AGGREGATES).push(" FROM ");
            push_rollup_source(&mut sql, r, c, &c.group_by);
        }
        Some(r) => {
            // The ASOF join below sorts what it is given. Every row of one hour falls in the
            // same bucket, so the rollup's rows are summed per hour and group first: one row
            // per hour instead of one per hour and combination of all the rollup's dimensions
            // (the daily series at 10M events: 110k rows to sort before, 720 now).
            sql.push(ROLLUP_AGGREGATES).push(" FROM (SELECT ts");
            for dim in &c.group_by {
                sql.push(", ").push(dim.column());
            }
            for measure in rollup::MEASURES.split(", ") {
                sql.push(&format!(", sum({measure}) AS {measure}"));
            }
            sql.push(" FROM ");
            push_rollup_source(&mut sql, r, c, &c.group_by);
            sql.push(" GROUP BY ALL)");
        }
        None => {
            sql.push(AGGREGATES)
                .push(" FROM (SELECT ")
                .push(MEASURE_COLUMNS);
            for dim in &c.group_by {
                if *dim == Dimension::Tag {
                    sql.push(
                        ", unnest(CASE WHEN len(tags) = 0 THEN [NULL::VARCHAR] ELSE tags END) AS tag",
                    );
                } else {
                    sql.push(", ").push(dim.column());
                }
            }
            sql.push(" FROM events");
            where_clause(&mut sql, &c.range, &c.filters);
            sql.push(")");
        }
    };
    sql.push(" e");
    if !buckets.is_empty() {
        sql.push(" ASOF JOIN (VALUES ");
        for (i, b) in buckets.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.push("(").bind_ts(*b).push(")");
        }
        sql.push(") b(bucket) ON e.ts >= b.bucket");
    }
    if !c.group_by.is_empty() || !buckets.is_empty() {
        sql.push(" GROUP BY ALL");
    }
    sql.push(") g ORDER BY ");
    let mut order: Vec<String> = Vec::new();
    if let Some(o) = &c.order {
        let column = if MEASURES.contains(&o.key.as_str()) {
            format!("m_{}", o.key)
        } else {
            o.key.clone()
        };
        order.push(format!(
            "{column} {} NULLS LAST",
            if o.descending { "DESC" } else { "ASC" }
        ));
    }
    if !buckets.is_empty() {
        order.push("bucket ASC".into());
    }
    order.push("m_cost DESC NULLS LAST".into());
    for dim in &c.group_by {
        order.push(format!("{} ASC NULLS LAST", dim.name()));
    }
    sql.push(&order.join(", "));
    sql.push(" LIMIT ").bind(Value::BigInt(c.limit as i64 + 1));

    let mut stmt = conn.prepare(&sql.text)?;
    let keys = c.group_by.len();
    let rows = stmt.query_map(duckdb::params_from_iter(sql.params.iter()), |r| {
        let (group, bucket) = read_group(r, keys)?;
        Ok((group, bucket, read_measures(r, keys + 1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (keys, bucket, raw) = row?;
        out.push(CostRow {
            keys,
            bucket: bucket.map(from_micros),
            measures: raw.into_measures()?,
        });
    }
    Ok(out)
}

/// Totals over everything the filters match, each event once.
pub fn total_from(
    conn: &Connection,
    q: &CostQuery,
    source: Source,
) -> Result<Measures, StoreError> {
    let rollup = rollup_for(source, q, &[]);
    let mut sql = Sql::default();
    sql.push("SELECT ").push(OUTPUTS).push(" FROM (SELECT ");
    match rollup {
        Some(r) => {
            sql.push(ROLLUP_AGGREGATES).push(" FROM ");
            push_rollup_source(&mut sql, r, &q.common, &[]);
        }
        None => {
            sql.push(AGGREGATES).push(" FROM events");
            where_clause(&mut sql, &q.common.range, &q.common.filters);
        }
    }
    sql.push(")");
    let mut stmt = conn.prepare(&sql.text)?;
    let raw = stmt.query_row(duckdb::params_from_iter(sql.params.iter()), |r| {
        read_measures(r, 0)
    })?;
    raw.into_measures()
}

/// An event as a rollup row of its own (the rollup's measure columns, in order), for the partial
/// hours at a range's edges.
const EVENT_AS_ROLLUP_ROW: &str = "cost, \
    CASE WHEN currency = 'USD' THEN reported_cost END, \
    computed_cost, \
    1::BIGINT, \
    (status = 'error')::BIGINT, \
    input_uncached + cache_read + cache_write_5m + cache_write_1h + audio_in + image_in, \
    output + audio_out + image_out, \
    cache_read, \
    cache_write_5m + cache_write_1h, \
    reasoning, \
    (cost_source = 'unpriced')::BIGINT";

/// Pushes `(<rows>)` with `ts`, the rollup's measure columns and `dims`, holding everything the
/// question's range and filters select: the rollup's whole hours inside the range, and the
/// events of the partial hours at its edges as one-event rows (see `rollup::Span`).
fn push_rollup_source(sql: &mut Sql, rollup: &rollup::Rollup, c: &Common, dims: &[Dimension]) {
    let span = rollup::Span::of(&c.range).expect("rollup::choose only picks a rollup with a span");
    let columns = |sql: &mut Sql| {
        for dim in dims {
            sql.push(", ").push(dim.column());
        }
    };
    sql.push("(SELECT ts, ").push(rollup::MEASURES);
    columns(sql);
    sql.push(" FROM ").push(rollup.table);
    where_clause(sql, &span.hours, &c.filters);
    for edge in span.head.iter().chain(span.tail.iter()) {
        sql.push(" UNION ALL SELECT ts, ").push(EVENT_AS_ROLLUP_ROW);
        columns(sql);
        sql.push(" FROM events");
        where_clause(sql, edge, &c.filters);
    }
    sql.push(")");
}

/// Measures as read from a row, money still text.
struct RawMeasures {
    money: [Option<String>; 3],
    counts: [i64; 8],
}

impl RawMeasures {
    fn into_measures(self) -> Result<Measures, StoreError> {
        let [cost, reported, computed] = self.money;
        let [requests, errors, input, output, cache_read, cache_write, reasoning, unpriced] =
            self.counts;
        Ok(Measures {
            cost: decimal(cost)?,
            reported_cost: decimal(reported)?,
            computed_cost: decimal(computed)?,
            requests,
            errors,
            input_tokens: input,
            output_tokens: output,
            cache_read_tokens: cache_read,
            cache_write_tokens: cache_write,
            reasoning_tokens: reasoning,
            unpriced_requests: unpriced,
        })
    }
}

fn read_measures(r: &duckdb::Row<'_>, start: usize) -> duckdb::Result<RawMeasures> {
    let mut counts = [0i64; 8];
    for (i, slot) in counts.iter_mut().enumerate() {
        *slot = r.get(start + 3 + i)?;
    }
    Ok(RawMeasures {
        money: [r.get(start)?, r.get(start + 1)?, r.get(start + 2)?],
        counts,
    })
}

/// Earliest and latest event time, when there are events.
pub type Span = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// First and last event time, to close an open range.
pub fn span(conn: &Connection) -> Result<Span, StoreError> {
    let (lo, hi): (Option<i64>, Option<i64>) = conn.query_row(
        "SELECT epoch_us(min(ts)), epoch_us(max(ts)) FROM events",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok((lo.map(from_micros), hi.map(from_micros)))
}
