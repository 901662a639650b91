//! SQL of units of work — tasks and runs — built from their calls and outcomes, and the
//! `/api/v1/tasks` aggregates over them.
//!
//! [`relation`] turns events into one row per unit: a task is keyed by `task_id`, else
//! `run_id`, else `trace_id`; a run by `run_id`, else `task_id`, else `trace_id`; both within
//! a project. A unit's dimension columns are its *first* call's (earliest `ts`, ties by arrival
//! and ids), with `feature`, `user_id` and `customer_id` filled from the outcome when the first
//! call has none, and its `ts` is the first call's, so the ordinary `where_clause` and bucket
//! joins of the costs API apply to units unchanged. Every call of a unit counts toward it,
//! wherever its own timestamp falls. A call is *wasted* (retry cost) when it failed (`status =
//! 'error'`) or when a later call of the same unit names it in `retry_of` or `fallback_from`
//! (matched against its `id`, `request_id` or `span_id`). The winning outcome is the latest by
//! outcome timestamp, ties by arrival; without one the unit is `open` while its last call is
//! newer than the cut-off, else `unknown`.
//!
//! Queries read these rows from the tables `task_units` and `run_units`, which the writer keeps
//! with the SQL here ([`push_units_base`], [`stored_projection`]; see `store::units`); the same
//! SQL over the raw events ([`Source::Events`]) is the reference they are tested against.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use duckdb::types::Value;
use duckdb::Connection;
use rust_decimal::Decimal;

use super::costs::Source;
use super::{decimal, from_micros, read_group, where_clause, Sql};
use crate::analytics::params::{Common, Filter, TimeRange};
use crate::analytics::tasks::TaskMeasures;
use crate::domain::dimension::Dimension;
use crate::store::arrow::ts_string;
use crate::store::task_rollup::Plan;
use crate::store::StoreError;

/// What a relation row stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Task,
    Run,
}

impl Unit {
    /// Both kinds, in the order the writer maintains them.
    pub const ALL: [Unit; 2] = [Unit::Task, Unit::Run];

    /// The key columns in precedence order.
    fn key_columns(self) -> [&'static str; 3] {
        match self {
            Unit::Task => ["task_id", "run_id", "trace_id"],
            Unit::Run => ["run_id", "task_id", "trace_id"],
        }
    }

    /// The unit key of an events row: `coalesce(<alias>task_id, …)` in precedence order.
    pub(crate) fn key_expr(self, alias: &str) -> String {
        self.key_of(
            &format!("{alias}task_id"),
            &format!("{alias}run_id"),
            &format!("{alias}trace_id"),
        )
    }

    /// The unit key from SQL expressions for a call's `task_id`, `run_id` and `trace_id`.
    pub(crate) fn key_of(self, task_id: &str, run_id: &str, trace_id: &str) -> String {
        match self {
            Unit::Task => format!("coalesce({task_id}, {run_id}, {trace_id})"),
            Unit::Run => format!("coalesce({run_id}, {task_id}, {trace_id})"),
        }
    }

    /// The table that holds this kind of unit materialised (see `store::units`).
    pub(crate) fn table(self) -> &'static str {
        match self {
            Unit::Task => "task_units",
            Unit::Run => "run_units",
        }
    }

    /// The column of [`Unit::table`] holding the unit key.
    pub(crate) fn key_column(self) -> &'static str {
        self.key_columns()[0]
    }

    /// The column of [`Unit::table`] holding the `task_id` of the outcomes that are the unit's:
    /// a task's own key; for a run, its first call's task (several runs of a task share it).
    pub(crate) fn outcome_key_column(self) -> &'static str {
        match self {
            Unit::Task => "task_id",
            Unit::Run => "outcome_task_id",
        }
    }
}

/// Columns of the first call kept for the unit (besides `ts`), under the events' names.
const FIRST_COLUMNS: [&str; 19] = [
    "user_id",
    "team_id",
    "api_key_id",
    "customer_id",
    "feature",
    "tags",
    "model",
    "provider",
    "route",
    "agent",
    "status",
    "cost_source",
    "task_id",
    "run_id",
    "trace_id",
    "operation",
    "service_tier",
    "error_type",
    "session_id",
];

/// First-call columns an outcome fills when the call has none.
const FROM_OUTCOME: [&str; 3] = ["feature", "user_id", "customer_id"];

/// Columns computed over a unit's calls (besides the first call's).
const OF_CALLS: [&str; 11] = [
    "id_kind",
    "calls",
    "errors",
    "retries",
    "fallbacks",
    "calls_cost",
    "retry_cost",
    "wasted_calls",
    "unpriced_calls",
    "input_tokens",
    "output_tokens",
];

/// ` AND (project = ? OR …)` for a project filter, pushed into every scan: a unit never spans
/// projects, so this prunes without changing any answer.
fn project_condition(sql: &mut Sql, project: Option<&Filter>, column: &str) {
    let Some(f) = project else { return };
    sql.push(" AND (FALSE");
    for v in &f.values {
        match v {
            Some(p) => {
                sql.push(" OR ")
                    .push(column)
                    .push(" = ")
                    .bind(Value::Text(p.clone()));
            }
            None => {
                sql.push(" OR ").push(column).push(" IS NULL");
            }
        }
    }
    sql.push(")");
}

/// Which calls a computation of units from the events reads.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Calls<'a> {
    /// Units with a call in `range` (with all of their calls, wherever they fall), within the
    /// project filter: the reference path of a query.
    Query {
        range: &'a TimeRange,
        project: Option<&'a Filter>,
    },
    /// The units named in the writer's scratch table `units_keys (k_project, k_uk)`, all of
    /// whose calls lie in `[lo, hi]` (see `store::units`). The bounds are what lets DuckDB skip
    /// row groups by their min/max timestamps.
    Keys {
        lo: DateTime<Utc>,
        hi: DateTime<Utc>,
    },
    /// The units whose key hashes to `part` of `parts` (every unit when `parts` is 1): a
    /// whole rebuild, a share at a time.
    Part { parts: u64, part: u64 },
}

/// `CAST('<ts>' AS TIMESTAMPTZ)` as literal text: the writer's statements run as batches.
pub(crate) fn ts_literal(ts: DateTime<Utc>) -> String {
    format!("CAST('{}' AS TIMESTAMPTZ)", ts_string(ts))
}

/// `<column> >= lo AND <column> <= hi` with literal bounds: how the writer's folds keep DuckDB
/// to the row groups of a time span (zone maps skip the rest).
pub(crate) fn ts_within(column: &str, lo: DateTime<Utc>, hi: DateTime<Utc>) -> String {
    format!(
        "{column} >= {} AND {column} <= {}",
        ts_literal(lo),
        ts_literal(hi)
    )
}

/// Pushes `WITH te …, base AS (…)`: `base` has one row per unit of `calls`, with `ts` (first
/// call), `last_ts`, `ended_us`, `project`, the first call's [`FIRST_COLUMNS`] (its own
/// feature, user and customer: no outcome yet), the [`OF_CALLS`], and `okey`, the `task_id` of the
/// outcomes that are the unit's.
pub(crate) fn push_units_base(sql: &mut Sql, unit: Unit, calls: Calls<'_>) {
    let key_e = unit.key_expr("e.");
    sql.push("WITH te AS (SELECT e.rowid AS rid, e.project AS project, ")
        .push(&key_e)
        .push(
            " AS uk, e.ts, e.received_at, e.idem_key, e.request_id, e.span_id, e.retry_of, \
             e.fallback_from, e.status, e.cost, e.latency_ms, e.agent, \
             e.input_uncached + e.cache_read + e.cache_write_5m + e.cache_write_1h + e.audio_in + e.image_in AS input_tokens, \
             e.output + e.audio_out + e.image_out AS output_tokens \
             FROM events e",
        );
    match calls {
        Calls::Query { range, project } => {
            if range.from.is_some() || range.to.is_some() {
                // Only units with a call in the range can have their first call in it.
                sql.push(" JOIN (SELECT DISTINCT project AS kp, ")
                    .push(&unit.key_expr(""))
                    .push(" AS kk FROM events WHERE ")
                    .push(&unit.key_expr(""))
                    .push(" IS NOT NULL");
                if let Some(from) = range.from {
                    sql.push(" AND ts >= ").bind_ts(from);
                }
                if let Some(to) = range.to {
                    sql.push(" AND ts < ").bind_ts(to);
                }
                project_condition(sql, project, "project");
                sql.push(") k ON e.project = k.kp AND ")
                    .push(&key_e)
                    .push(" = k.kk");
            }
            sql.push(" WHERE ").push(&key_e).push(" IS NOT NULL");
            project_condition(sql, project, "e.project");
        }
        Calls::Keys { lo, hi } => {
            sql.push(" JOIN units_keys k ON e.project IS NOT DISTINCT FROM k.k_project AND ")
                .push(&key_e)
                .push(" = k.k_uk WHERE ")
                .push(&ts_within("e.ts", lo, hi));
        }
        Calls::Part { parts, part } => {
            sql.push(" WHERE ").push(&key_e).push(" IS NOT NULL");
            if parts > 1 {
                sql.push(&format!(" AND hash(e.project, {key_e}) % {parts} = {part}"));
            }
        }
    }
    // Ties between calls at the same instant are broken by arrival, then ids, then row id
    // (append order), so the first call is the same whichever way the units are computed.
    sql.push(
        "), refs AS (SELECT DISTINCT project, uk, r FROM (\
             SELECT project, uk, retry_of AS r FROM te UNION ALL \
             SELECT project, uk, fallback_from AS r FROM te) WHERE r IS NOT NULL), \
         linked AS (\
             SELECT te.rid FROM te JOIN refs ON refs.project = te.project AND refs.uk = te.uk AND refs.r = te.idem_key \
             UNION SELECT te.rid FROM te JOIN refs ON refs.project = te.project AND refs.uk = te.uk AND refs.r = te.request_id \
             UNION SELECT te.rid FROM te JOIN refs ON refs.project = te.project AND refs.uk = te.uk AND refs.r = te.span_id), \
         agg AS (SELECT te.project, te.uk, \
         arg_min(te.rid, (te.ts, te.received_at, te.idem_key, te.request_id, te.span_id, te.rid)) AS frid, \
         min(te.ts) AS first_ts, \
         arg_min(te.agent, (te.ts, te.received_at, te.idem_key, te.request_id, te.span_id, te.rid)) AS any_agent, \
         max(te.ts) AS last_ts, \
         max(epoch_us(te.ts) + coalesce(te.latency_ms, 0)::BIGINT * 1000) AS ended_us, \
         count(*) AS calls, \
         count(*) FILTER (WHERE te.status = 'error') AS errors, \
         count(*) FILTER (WHERE te.retry_of IS NOT NULL) AS retries, \
         count(*) FILTER (WHERE te.fallback_from IS NOT NULL) AS fallbacks, \
         sum(te.cost) AS calls_cost, \
         sum(te.cost) FILTER (WHERE te.status = 'error' OR l.rid IS NOT NULL) AS retry_cost, \
         count(*) FILTER (WHERE te.status = 'error' OR l.rid IS NOT NULL) AS wasted_calls, \
         count(*) FILTER (WHERE te.cost IS NULL) AS unpriced_calls, \
         sum(te.input_tokens) AS input_tokens, sum(te.output_tokens) AS output_tokens \
         FROM te LEFT JOIN (SELECT DISTINCT rid FROM linked) l ON l.rid = te.rid \
         GROUP BY te.project, te.uk), \
         base AS (SELECT a.first_ts AS ts, a.last_ts, a.ended_us, a.project AS project",
    );
    // The first call's columns are read back by its row id: far cheaper than carrying twenty
    // columns through the aggregate as a struct (measured 385 ms → 75 ms on the demo data).
    for c in FIRST_COLUMNS {
        let expr = match (c, unit) {
            ("task_id", Unit::Task) | ("run_id", Unit::Run) => "a.uk".to_string(),
            ("agent", _) => "coalesce(fe.agent, a.any_agent)".to_string(),
            _ => format!("fe.{c}"),
        };
        sql.push(", ").push(&expr).push(" AS ").push(c);
    }
    let [k1, k2, _] = unit.key_columns();
    sql.push(&format!(
        ", CASE WHEN fe.{k1} IS NOT NULL THEN '{k1}' WHEN fe.{k2} IS NOT NULL THEN '{k2}' ELSE 'trace_id' END AS id_kind"
    ));
    sql.push(
        ", a.calls, a.errors, a.retries, a.fallbacks, a.calls_cost, a.retry_cost, a.wasted_calls, \
         a.unpriced_calls, a.input_tokens, a.output_tokens, ",
    );
    sql.push(match unit {
        Unit::Task => "a.uk",
        // A run's outcome is its task's: several runs of one task share it.
        Unit::Run => "coalesce(fe.task_id, a.uk)",
    });
    sql.push(" AS okey FROM agg a JOIN events fe ON fe.rowid = a.frid");
    if let Calls::Keys { lo, hi } = calls {
        // The first call is one of the unit's calls, so it lies in the same bounds.
        sql.push(" WHERE ").push(&ts_within("fe.ts", lo, hi));
    }
    sql.push(")");
}

/// The columns of [`Unit::table`] in the order [`stored_projection`] yields them.
pub(crate) fn stored_columns(unit: Unit) -> Vec<&'static str> {
    let mut cols = vec!["ts", "last_ts", "ended_us", "project"];
    cols.extend(FIRST_COLUMNS);
    cols.extend(OF_CALLS);
    cols.extend(["call_feature", "call_user_id", "call_customer_id"]);
    if unit == Unit::Run {
        cols.push("outcome_task_id");
    }
    cols.extend(["outcome", "value", "rework_cost"]);
    cols
}

/// A stored unit row from `base b` (see [`push_units_base`]) and its winning outcome `oc`
/// (`outcome, value, rework_cost, feature, user_id, customer_id`; NULLs when none).
pub(crate) fn stored_projection(unit: Unit) -> String {
    let mut exprs: Vec<String> = ["ts", "last_ts", "ended_us", "project"]
        .iter()
        .map(|c| format!("b.{c}"))
        .collect();
    for c in FIRST_COLUMNS {
        exprs.push(if FROM_OUTCOME.contains(&c) {
            format!("coalesce(b.{c}, oc.{c}) AS {c}")
        } else {
            format!("b.{c}")
        });
    }
    exprs.extend(OF_CALLS.iter().map(|c| format!("b.{c}")));
    exprs.extend(FROM_OUTCOME.iter().map(|c| format!("b.{c} AS call_{c}")));
    if unit == Unit::Run {
        exprs.push("b.okey AS outcome_task_id".into());
    }
    exprs.extend([
        "oc.outcome".into(),
        "oc.value".into(),
        "oc.rework_cost".into(),
    ]);
    exprs.join(", ")
}

/// `SELECT <relation columns> FROM ` over stored-shaped rows, deciding the state: the winning
/// outcome, else `open` while the last call is newer than the cut-off, else `unknown`.
fn push_relation_select(sql: &mut Sql, open_cutoff: DateTime<Utc>) {
    sql.push("SELECT ts, last_ts, ended_us, project, ")
        .push(&FIRST_COLUMNS.join(", "))
        .push(", ")
        .push(&OF_CALLS.join(", "))
        .push(", outcome, CASE WHEN outcome IS NOT NULL THEN outcome WHEN last_ts >= ")
        .bind_ts(open_cutoff)
        .push(" THEN 'open' ELSE 'unknown' END AS state, value, rework_cost FROM ");
}

/// Pushes `(<one row per unit>)`. Columns: `ts` (first call), `last_ts`, `ended_us`, every
/// dimension column under its events name, `id_kind`, `calls`, `errors`, `retries`,
/// `fallbacks`, `calls_cost`, `retry_cost`, `wasted_calls`, `unpriced_calls`,
/// `input_tokens`, `output_tokens`, `outcome`, `state`, `value`, `rework_cost`.
///
/// `source` picks where the rows come from: [`Source::Auto`] reads the materialised unit
/// tables the writer keeps (see `store::units`); [`Source::Events`] computes them from the
/// events and outcomes in the query — the reference the tables are tested against. Either way
/// the same projection decides the state, so the columns and their types are the same.
///
/// `range` only prunes: the caller's `where_clause` keeps the units whose first call is in it.
pub fn relation(
    sql: &mut Sql,
    unit: Unit,
    range: &TimeRange,
    filters: &[Filter],
    open_cutoff: DateTime<Utc>,
    source: Source,
) {
    let project = filters.iter().find(|f| f.dim == Dimension::Project);
    sql.push("(");
    match source {
        Source::Auto => {
            push_relation_select(sql, open_cutoff);
            sql.push(unit.table()).push(" WHERE TRUE");
            project_condition(sql, project, "project");
        }
        Source::Events => {
            push_units_base(sql, unit, Calls::Query { range, project });
            sql.push(
                ", oc AS (SELECT project, task_id AS ok, outcome, value, rework_cost, feature, \
                 user_id, customer_id FROM outcomes WHERE TRUE",
            );
            project_condition(sql, project, "project");
            sql.push(
                " QUALIFY row_number() OVER (PARTITION BY project, task_id ORDER BY ts DESC, seq DESC) = 1) ",
            );
            push_relation_select(sql, open_cutoff);
            sql.push("(SELECT ")
                .push(&stored_projection(unit))
                .push(" FROM base b LEFT JOIN oc ON oc.project = b.project AND oc.ok = b.okey) s");
        }
    }
    sql.push(")");
}

/// Pushes `<relation> <alias> WHERE …`: the units of [`relation`] filtered by the question's
/// range and filters — how every query over units starts.
pub(crate) fn filtered_relation(
    sql: &mut Sql,
    unit: Unit,
    c: &Common,
    open_cutoff: DateTime<Utc>,
    source: Source,
    alias: &str,
) {
    relation(sql, unit, &c.range, &c.filters, open_cutoff, source);
    sql.push(" ").push(alias);
    where_clause(sql, &c.range, &c.filters);
}

/// Pushes `(<relation rows>)` of the materialised units whose row ids `rowids` selects (SQL
/// pushed by the closure, over [`Unit::table`]), with the same columns as [`relation`].
pub(crate) fn relation_of_rows(
    sql: &mut Sql,
    unit: Unit,
    open_cutoff: DateTime<Utc>,
    rowids: impl FnOnce(&mut Sql),
) {
    sql.push("(");
    push_relation_select(sql, open_cutoff);
    sql.push(unit.table()).push(" WHERE rowid IN (");
    rowids(sql);
    sql.push("))");
}

/// Partial sums over the (filtered, possibly tag-unnested and bucketed) unit relation `e`, per
/// state and call count, which the query adds to its other keys; [`PartialSums`] finishes
/// them in Rust. One pass grouped by two small keys is cheaper than one `FILTER`ed sum per
/// state and a `quantile_disc` (at 6.6M tasks: 152 ms against 342 ms in DuckDB alone), and
/// the call counts per task give the p95 exactly.
const PARTIAL_SUMS: &str = "
    state,
    calls,
    count(*)::BIGINT,
    coalesce(sum(calls_cost), 0)::VARCHAR,
    coalesce(sum(rework_cost), 0)::VARCHAR,
    coalesce(sum(retry_cost), 0)::VARCHAR,
    coalesce(sum(value), 0)::VARCHAR,
    count(value)::BIGINT,
    coalesce(sum(wasted_calls), 0)::BIGINT,
    coalesce(sum(unpriced_calls), 0)::BIGINT";

/// One group of tasks, as read.
pub struct TaskGroupRow {
    pub keys: Vec<Option<String>>,
    pub bucket: Option<DateTime<Utc>>,
    pub measures: TaskMeasures,
}

/// Every group (and bucket) of tasks, each handed to `each` once; ordering and limits are the
/// caller's, because the per-task quotients they may sort by are computed in Rust. The groups
/// arrive one at a time, so a caller that keeps only its top rows holds only those, however
/// many groups there are (`group_by=task_id` over a month is one per task).
pub fn grouped(
    conn: &Connection,
    c: &Common,
    buckets: &[DateTime<Utc>],
    open_cutoff: DateTime<Utc>,
    source: Source,
    mut each: impl FnMut(TaskGroupRow),
) -> Result<(), StoreError> {
    for_each_group(
        conn,
        c,
        buckets,
        open_cutoff,
        source,
        |keys, bucket, sums| {
            each(TaskGroupRow {
                keys,
                bucket: bucket.map(from_micros),
                measures: sums.finish(),
            })
        },
    )
}

/// Totals over every task in scope, each task once (tags not unnested): the one group of the
/// question without its group keys.
pub fn total(
    conn: &Connection,
    c: &Common,
    open_cutoff: DateTime<Utc>,
    source: Source,
) -> Result<TaskMeasures, StoreError> {
    let mut ungrouped = c.clone();
    ungrouped.group_by.clear();
    let mut total = PartialSums::default();
    for_each_group(conn, &ungrouped, &[], open_cutoff, source, |_, _, sums| {
        total = sums
    })?;
    Ok(total.finish())
}

/// A group's keys and bucket (µs), as [`read_group`] reads them.
type Group = (Vec<Option<String>>, Option<i64>);

/// Hands `each` the partial sums of every group (and bucket), from the task units — and from
/// the hourly task rollup for the whole hours it can answer. Every (group, bucket) the SQL saw
/// has at least one task: no empty groups come out (the rollup leaves out keys whose partial
/// rows cancel out).
///
/// A group's partial rows (one per state and call count, from each part of the question) are
/// added up in Rust, so they must arrive together: the parts are one `UNION ALL` ordered by the
/// group keys and bucket, streamed. DuckDB sorts within its memory limit (spilling past it),
/// and Rust holds one group at a time; collecting every group in a map first took memory
/// outside any limit in proportion to the groups.
fn for_each_group(
    conn: &Connection,
    c: &Common,
    buckets: &[DateTime<Utc>],
    open_cutoff: DateTime<Utc>,
    source: Source,
    mut each: impl FnMut(Vec<Option<String>>, Option<i64>, PartialSums),
) -> Result<(), StoreError> {
    let plan = rollup_plan(c, buckets, open_cutoff, source);
    let mut parts: Vec<Sql> = unit_parts(c, plan.as_ref())
        .into_iter()
        .map(|(part, cut_hour)| grouped_units_sql(&part, buckets, open_cutoff, source, cut_hour))
        .collect();
    if let Some(plan) = &plan {
        let mut rolled = Sql::default();
        plan.push_sums(&mut rolled, &c.group_by, &c.filters);
        parts.push(rolled);
    }
    let keys = c.group_by.len();
    let mut sql = Sql::default();
    sql.push("SELECT * FROM (");
    for (i, part) in parts.into_iter().enumerate() {
        if i > 0 {
            sql.push(" UNION ALL ");
        }
        sql.push("(").push(&part.text).push(")");
        sql.params.extend(part.params);
    }
    // Positions: the group keys, then the bucket.
    let order: Vec<String> = (1..=keys + 1).map(|i| i.to_string()).collect();
    sql.push(") ORDER BY ").push(&order.join(", "));

    let mut stmt = conn.prepare(&sql.text)?;
    let mut rows =
        crate::store::stream_rows(&mut stmt, duckdb::params_from_iter(sql.params.iter()))?;
    let mut each = |(k, b): Group, sums| each(k, b, sums);
    let mut runs = crate::store::Runs::<Group, PartialSums>::new();
    while let Some(r) = rows.next()? {
        let group = read_group(r, keys)?;
        let partial = read_partial(r, keys + 1)?;
        runs.entry(group, &mut each).add(partial)?;
    }
    runs.finish(each);
    Ok(())
}

/// The partial sums per group (and bucket) over the task units of `c`; with `cut_hour`, only
/// the tasks that plan's cut-off hour leaves undecided.
fn grouped_units_sql(
    c: &Common,
    buckets: &[DateTime<Utc>],
    open_cutoff: DateTime<Utc>,
    source: Source,
    cut_hour: Option<&Plan>,
) -> Sql {
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
    sql.push(PARTIAL_SUMS).push(" FROM (SELECT u.*");
    for dim in &c.group_by {
        if *dim == Dimension::Tag {
            sql.push(
                ", unnest(CASE WHEN len(u.tags) = 0 THEN [NULL::VARCHAR] ELSE u.tags END) AS tag",
            );
        }
    }
    sql.push(" FROM ");
    filtered_relation(&mut sql, Unit::Task, c, open_cutoff, source, "u");
    if let Some(plan) = cut_hour {
        plan.push_cut_hour(&mut sql);
    }
    sql.push(") e");
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
    sql.push(" GROUP BY ALL");
    sql
}

/// How the hourly task rollup shares a question with the units, when it can answer the whole
/// hours of it: materialised units only, and nothing bucketed (see `store::task_rollup`).
fn rollup_plan(
    c: &Common,
    buckets: &[DateTime<Utc>],
    open_cutoff: DateTime<Utc>,
    source: Source,
) -> Option<Plan> {
    if source != Source::Auto || !buckets.is_empty() {
        return None;
    }
    Plan::of(c, open_cutoff)
}

/// The questions over task units that, with the rollup's sums, answer `c` — `c` itself
/// without a plan. Each is `c` over a narrower range, with the plan when only the tasks its
/// cut-off hour leaves undecided are wanted. Separate queries rather than one `OR`, so each
/// scan prunes by its own column's zone maps (`ts` for the edges, `last_ts` for the hour).
fn unit_parts<'a>(c: &Common, plan: Option<&'a Plan>) -> Vec<(Common, Option<&'a Plan>)> {
    let Some(plan) = plan else {
        return vec![(c.clone(), None)];
    };
    plan.unit_ranges(&c.range)
        .into_iter()
        .map(|(range, cut_hour)| {
            let mut part = c.clone();
            part.range = range;
            (part, cut_hour.then_some(plan))
        })
        .collect()
}

/// One row of [`PARTIAL_SUMS`]: the tasks of one state with one call count.
struct Partial {
    state: String,
    calls: i64,
    tasks: i64,
    money: [Option<String>; 4],
    valued: i64,
    wasted: i64,
    unpriced: i64,
}

fn read_partial(r: &duckdb::Row<'_>, start: usize) -> duckdb::Result<Partial> {
    Ok(Partial {
        state: r.get(start)?,
        calls: r.get(start + 1)?,
        tasks: r.get(start + 2)?,
        money: [
            r.get(start + 3)?,
            r.get(start + 4)?,
            r.get(start + 5)?,
            r.get(start + 6)?,
        ],
        valued: r.get(start + 7)?,
        wasted: r.get(start + 8)?,
        unpriced: r.get(start + 9)?,
    })
}

/// The states, in [`TaskMeasures::cost_by_state`]'s order.
const STATES: [&str; 5] = ["success", "failure", "abandoned", "open", "unknown"];

/// A group's partial sums added up, then finished into its measures.
#[derive(Default)]
struct PartialSums {
    tasks: i64,
    by_state: [i64; 5],
    calls_cost: Decimal,
    rework_cost: Decimal,
    retry_cost: Decimal,
    value: Decimal,
    valued: i64,
    calls: i64,
    /// Tasks per call count, for the p95.
    calls_histogram: BTreeMap<i64, i64>,
    wasted: i64,
    unpriced: i64,
    cost_by_state: [Decimal; 5],
}

impl PartialSums {
    fn add(&mut self, p: Partial) -> Result<(), StoreError> {
        let [calls_cost, rework_cost, retry_cost, value] = p.money;
        let (calls_cost, rework_cost) = (decimal(calls_cost)?, decimal(rework_cost)?);
        self.tasks += p.tasks;
        if let Some(i) = STATES.iter().position(|s| *s == p.state) {
            self.by_state[i] += p.tasks;
            self.cost_by_state[i] += calls_cost + rework_cost;
        }
        self.calls_cost += calls_cost;
        self.rework_cost += rework_cost;
        self.retry_cost += decimal(retry_cost)?;
        self.value += decimal(value)?;
        self.valued += p.valued;
        self.calls += p.calls * p.tasks;
        *self.calls_histogram.entry(p.calls).or_default() += p.tasks;
        self.wasted += p.wasted;
        self.unpriced += p.unpriced;
        Ok(())
    }

    fn finish(self) -> TaskMeasures {
        let [successful, failed, abandoned, open, unknown] = self.by_state;
        TaskMeasures {
            tasks: self.tasks,
            successful,
            failed,
            abandoned,
            open,
            unknown,
            calls_cost: self.calls_cost,
            rework_cost: self.rework_cost,
            retry_cost: self.retry_cost,
            value: (self.valued > 0).then_some(self.value),
            valued_tasks: self.valued,
            calls: self.calls,
            calls_p95: quantile_disc(&self.calls_histogram, 0.95),
            wasted_calls: self.wasted,
            unpriced_calls: self.unpriced,
            cost_by_state: self.cost_by_state,
        }
    }
}

/// DuckDB's `quantile_disc(x, q)` over the values a histogram (value → how many) holds: the
/// value at 0-based position `max(1, n - floor(n - q·n)) - 1` of the sorted values, with the
/// same floating-point steps, so the answer is the one DuckDB gave when it computed it.
fn quantile_disc(histogram: &BTreeMap<i64, i64>, q: f64) -> Option<i64> {
    let n: i64 = histogram.values().sum();
    if n <= 0 {
        return None;
    }
    let nf = n as f64;
    let index = (n - (nf - q * nf).floor() as i64).max(1) - 1;
    let mut seen = 0;
    for (value, count) in histogram {
        seen += count;
        if seen > index {
            return Some(*value);
        }
    }
    histogram.keys().next_back().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The p95 from a histogram is the one DuckDB's `quantile_disc` gives for the same values,
    /// whatever their number (the positions where `q·n` is whole are where rules differ).
    #[test]
    fn quantile_from_a_histogram_is_duckdbs_quantile_disc() {
        let conn = Connection::open_in_memory().unwrap();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for n in (1..=120).chain([199, 200, 201, 1000]) {
            let values: Vec<i64> = (0..n).map(|_| 1 + (next() % 25) as i64).collect();
            let mut histogram = BTreeMap::new();
            for v in &values {
                *histogram.entry(*v).or_insert(0) += 1;
            }
            let list = values
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(",");
            for q in [0.5, 0.95, 0.99] {
                let duck: i64 = conn
                    .query_row(
                        &format!("SELECT quantile_disc(x, {q}) FROM unnest([{list}]) t(x)"),
                        [],
                        |r| r.get(0),
                    )
                    .unwrap();
                assert_eq!(quantile_disc(&histogram, q), Some(duck), "n = {n}, q = {q}");
            }
        }
        assert_eq!(quantile_disc(&BTreeMap::new(), 0.95), None);
    }
}
