//! SQL of `/api/v1/runs`: the run list (one row per run of the unit relation, sorted and paged
//! in SQL) and the calls of one run.

use chrono::{DateTime, Utc};
use duckdb::types::Value;
use duckdb::{Connection, OptionalExt};
use rust_decimal::Decimal;

use super::costs::Source;
use super::tasks::{filtered_relation, relation_of_rows, Unit};
use super::{decimal, from_micros, where_clause, Sql};
use crate::analytics::params::{Common, Filter};
use crate::domain::dimension::Dimension;
use crate::store::StoreError;

/// Sort keys of the run list and their SQL.
pub const ORDERS: &[(&str, &str)] = &[
    ("cost", "coalesce(calls_cost, 0)"),
    ("retry_cost", "coalesce(retry_cost, 0)"),
    ("calls", "calls"),
    ("errors", "errors"),
    ("retries", "retries"),
    ("fallbacks", "fallbacks"),
    ("duration_ms", "(ended_us - epoch_us(ts))"),
    ("started", "ts"),
];

/// One run of the list.
#[derive(Debug, Clone)]
pub struct RunListRow {
    pub run_id: String,
    pub id_kind: String,
    pub project: Option<String>,
    pub task_id: Option<String>,
    pub agent: Option<String>,
    pub feature: Option<String>,
    pub user_id: Option<String>,
    pub customer_id: Option<String>,
    pub model: Option<String>,
    pub started: DateTime<Utc>,
    pub last_call: DateTime<Utc>,
    pub ended: DateTime<Utc>,
    pub calls: i64,
    pub errors: i64,
    pub retries: i64,
    pub fallbacks: i64,
    pub cost: Decimal,
    pub retry_cost: Decimal,
    pub unpriced_calls: i64,
    pub outcome: Option<String>,
    pub state: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
}

/// A page of runs and how many match in all, from the materialised runs or (`source` =
/// [`Source::Events`]) computed from the events.
pub fn list(
    conn: &Connection,
    c: &Common,
    order_sql: &str,
    descending: bool,
    offset: usize,
    open_cutoff: DateTime<Utc>,
    source: Source,
) -> Result<(Vec<RunListRow>, i64), StoreError> {
    let mut sql = Sql::default();
    sql.push(
        "SELECT run_id, id_kind, project, task_id, agent, feature, user_id, customer_id, model, \
         epoch_us(ts), epoch_us(last_ts), ended_us, calls, errors, retries, fallbacks, \
         coalesce(calls_cost, 0)::VARCHAR, coalesce(retry_cost, 0)::VARCHAR, unpriced_calls, \
         outcome, state, coalesce(input_tokens, 0)::BIGINT, coalesce(output_tokens, 0)::BIGINT, ",
    );
    let order = |sql: &mut Sql| {
        sql.push(" ORDER BY ")
            .push(order_sql)
            .push(if descending { " DESC" } else { " ASC" })
            .push(" NULLS LAST, ts DESC, run_id ASC");
    };
    match source {
        // From the unit table, the count is a scalar subquery that reads only the filter
        // columns, and the page is sorted by its keys alone before its rows are read in full:
        // DuckDB carries every projected column of every run through a top-N, which made the
        // demo's run list take 100-160 ms instead of about 10.
        Source::Auto => {
            sql.push("(SELECT count(*) FROM ");
            filtered_relation(&mut sql, Unit::Run, c, open_cutoff, source, "c");
            sql.push(") FROM ");
            relation_of_rows(&mut sql, Unit::Run, open_cutoff, |sql| {
                sql.push("SELECT rowid FROM ").push(Unit::Run.table());
                where_clause(sql, &c.range, &c.filters);
                order(sql);
                sql.push(" LIMIT ")
                    .bind(Value::BigInt(c.limit as i64))
                    .push(" OFFSET ")
                    .bind(Value::BigInt(offset as i64));
            });
            sql.push(" u");
            order(&mut sql);
        }
        // From the events, computing the relation once is what matters.
        Source::Events => {
            sql.push("count(*) OVER () FROM ");
            filtered_relation(&mut sql, Unit::Run, c, open_cutoff, source, "u");
            order(&mut sql);
            sql.push(" LIMIT ")
                .bind(Value::BigInt(c.limit as i64))
                .push(" OFFSET ")
                .bind(Value::BigInt(offset as i64));
        }
    }
    let mut stmt = conn.prepare(&sql.text)?;
    let rows = stmt.query_map(duckdb::params_from_iter(sql.params.iter()), |r| {
        Ok((
            RawRun {
                run_id: r.get(0)?,
                id_kind: r.get(1)?,
                project: r.get(2)?,
                task_id: r.get(3)?,
                agent: r.get(4)?,
                feature: r.get(5)?,
                user_id: r.get(6)?,
                customer_id: r.get(7)?,
                model: r.get(8)?,
                started: r.get(9)?,
                last_call: r.get(10)?,
                ended: r.get(11)?,
                calls: r.get(12)?,
                errors: r.get(13)?,
                retries: r.get(14)?,
                fallbacks: r.get(15)?,
                cost: r.get(16)?,
                retry_cost: r.get(17)?,
                unpriced_calls: r.get(18)?,
                outcome: r.get(19)?,
                state: r.get(20)?,
                input_tokens: r.get(21)?,
                output_tokens: r.get(22)?,
            },
            r.get::<_, i64>(23)?,
        ))
    })?;
    let mut out = Vec::new();
    let mut total = 0;
    for row in rows {
        let (raw, n) = row?;
        total = n;
        out.push(raw.into_row()?);
    }
    if out.is_empty() && offset > 0 {
        // Past the last page: the window count saw no rows, so count on its own.
        let mut sql = Sql::default();
        sql.push("SELECT count(*) FROM ");
        filtered_relation(&mut sql, Unit::Run, c, open_cutoff, source, "u");
        total = conn.query_row(
            &sql.text,
            duckdb::params_from_iter(sql.params.iter()),
            |r| r.get(0),
        )?;
    }
    Ok((out, total))
}

struct RawRun {
    run_id: String,
    id_kind: String,
    project: Option<String>,
    task_id: Option<String>,
    agent: Option<String>,
    feature: Option<String>,
    user_id: Option<String>,
    customer_id: Option<String>,
    model: Option<String>,
    started: i64,
    last_call: i64,
    ended: i64,
    calls: i64,
    errors: i64,
    retries: i64,
    fallbacks: i64,
    cost: Option<String>,
    retry_cost: Option<String>,
    unpriced_calls: i64,
    outcome: Option<String>,
    state: String,
    input_tokens: i64,
    output_tokens: i64,
}

impl RawRun {
    fn into_row(self) -> Result<RunListRow, StoreError> {
        Ok(RunListRow {
            run_id: self.run_id,
            id_kind: self.id_kind,
            project: self.project,
            task_id: self.task_id,
            agent: self.agent,
            feature: self.feature,
            user_id: self.user_id,
            customer_id: self.customer_id,
            model: self.model,
            started: from_micros(self.started),
            last_call: from_micros(self.last_call),
            ended: from_micros(self.ended),
            calls: self.calls,
            errors: self.errors,
            retries: self.retries,
            fallbacks: self.fallbacks,
            cost: decimal(self.cost)?,
            retry_cost: decimal(self.retry_cost)?,
            unpriced_calls: self.unpriced_calls,
            outcome: self.outcome,
            state: self.state,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
        })
    }
}

/// One call of a run, with what the tree and its totals need.
#[derive(Debug, Clone)]
pub struct CallRow {
    pub ts: DateTime<Utc>,
    pub idem_key: Option<String>,
    pub request_id: Option<String>,
    pub span_id: Option<String>,
    pub parent_span_id: Option<String>,
    pub retry_of: Option<String>,
    pub fallback_from: Option<String>,
    pub attempt: Option<i32>,
    pub project: Option<String>,
    pub task_id: Option<String>,
    pub run_id: Option<String>,
    pub trace_id: Option<String>,
    pub agent: Option<String>,
    pub feature: Option<String>,
    pub user_id: Option<String>,
    pub customer_id: Option<String>,
    pub model: String,
    pub model_requested: Option<String>,
    pub provider: Option<String>,
    pub route: String,
    pub operation: String,
    pub service_tier: String,
    pub status: String,
    pub error_type: Option<String>,
    pub http_status: Option<i16>,
    pub latency_ms: Option<i32>,
    pub ttft_ms: Option<i32>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub reasoning_tokens: i64,
    pub cost: Option<Decimal>,
    pub cost_source: String,
}

/// The id column that names a run, in the order the id in a URL is tried.
pub const ID_COLUMNS: [&str; 3] = ["run_id", "task_id", "trace_id"];

/// The calls whose `run_id`, else `task_id`, else `trace_id` equals `id` (the first column with
/// any match in scope wins), in time order, with the column that matched. `None` when nothing
/// matches.
pub fn calls(
    conn: &Connection,
    id: &str,
    filters: &[Filter],
    max_calls: usize,
) -> Result<Option<(&'static str, Vec<CallRow>)>, StoreError> {
    let project = filters.iter().find(|f| f.dim == Dimension::Project);
    for column in ID_COLUMNS {
        let mut sql = Sql::default();
        sql.push(
            "SELECT epoch_us(ts), idem_key, request_id, span_id, parent_span_id, retry_of, \
             fallback_from, attempt, project, task_id, run_id, trace_id, agent, feature, user_id, \
             customer_id, model, model_requested, provider, route, operation, service_tier, \
             status, error_type, http_status, latency_ms, ttft_ms, \
             (input_uncached + cache_read + cache_write_5m + cache_write_1h + audio_in + image_in)::BIGINT, \
             (output + audio_out + image_out)::BIGINT, cache_read::BIGINT, \
             (cache_write_5m + cache_write_1h)::BIGINT, reasoning::BIGINT, cost::VARCHAR, cost_source \
             FROM events WHERE ",
        )
        .push(column)
        .push(" = ")
        .bind(Value::Text(id.to_string()));
        if let Some(f) = project {
            where_project(&mut sql, f);
        }
        sql.push(" ORDER BY ts, received_at, idem_key, request_id, span_id LIMIT ")
            .bind(Value::BigInt(max_calls as i64));
        let mut stmt = conn.prepare(&sql.text)?;
        let rows = stmt.query_map(duckdb::params_from_iter(sql.params.iter()), |r| {
            Ok((
                CallRow {
                    ts: from_micros(r.get(0)?),
                    idem_key: r.get(1)?,
                    request_id: r.get(2)?,
                    span_id: r.get(3)?,
                    parent_span_id: r.get(4)?,
                    retry_of: r.get(5)?,
                    fallback_from: r.get(6)?,
                    attempt: r.get(7)?,
                    project: r.get(8)?,
                    task_id: r.get(9)?,
                    run_id: r.get(10)?,
                    trace_id: r.get(11)?,
                    agent: r.get(12)?,
                    feature: r.get(13)?,
                    user_id: r.get(14)?,
                    customer_id: r.get(15)?,
                    model: r.get(16)?,
                    model_requested: r.get(17)?,
                    provider: r.get(18)?,
                    route: r.get(19)?,
                    operation: r.get(20)?,
                    service_tier: r.get(21)?,
                    status: r.get(22)?,
                    error_type: r.get(23)?,
                    http_status: r.get(24)?,
                    latency_ms: r.get(25)?,
                    ttft_ms: r.get(26)?,
                    input_tokens: r.get(27)?,
                    output_tokens: r.get(28)?,
                    cache_read_tokens: r.get(29)?,
                    cache_write_tokens: r.get(30)?,
                    reasoning_tokens: r.get(31)?,
                    cost: None,
                    cost_source: r.get(33)?,
                },
                r.get::<_, Option<String>>(32)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (mut call, cost) = row?;
            call.cost = cost.map(|c| decimal(Some(c))).transpose()?;
            out.push(call);
        }
        if !out.is_empty() {
            return Ok(Some((column, out)));
        }
    }
    Ok(None)
}

fn where_project(sql: &mut Sql, f: &Filter) {
    sql.push(" AND (FALSE");
    for v in &f.values {
        match v {
            Some(p) => {
                sql.push(" OR project = ").bind(Value::Text(p.clone()));
            }
            None => {
                sql.push(" OR project IS NULL");
            }
        }
    }
    sql.push(")");
}

/// The winning outcome of a task: (outcome, timestamp, value, rework cost).
pub type LatestOutcome = (String, DateTime<Utc>, Option<Decimal>, Option<Decimal>);

/// The latest outcome of `(project, task_id)` (ties by arrival).
pub fn latest_outcome(
    conn: &Connection,
    project: &str,
    task_id: &str,
) -> Result<Option<LatestOutcome>, StoreError> {
    let row = conn
        .query_row(
            "SELECT outcome, epoch_us(ts), value::VARCHAR, rework_cost::VARCHAR FROM outcomes
             WHERE project = ? AND task_id = ? ORDER BY ts DESC, seq DESC LIMIT 1",
            duckdb::params![project, task_id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            },
        )
        .optional()?;
    row.map(|(o, ts, v, rw)| {
        Ok((
            o,
            from_micros(ts),
            v.map(|t| decimal(Some(t))).transpose()?,
            rw.map(|t| decimal(Some(t))).transpose()?,
        ))
    })
    .transpose()
}
