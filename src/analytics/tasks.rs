//! `/api/v1/tasks`: what a *successful* unit of work costs, with its retries, failed attempts
//! and failed tasks included.
//!
//! A task is the set of calls that name it (`task_id`, else `run_id`, else `trace_id`) within
//! a project, plus its outcome. Definitions (also in the README and in every answer):
//!
//! - The time range selects tasks whose **first call** is in it; all of their calls count, even
//!   those after `to`. A task's dimensions (for filters and `group_by`) are its first call's;
//!   `feature`, `user_id` and `customer_id` come from its outcome when that call has none.
//! - `cost` = the cost of every call of the tasks (failed attempts, retries and failed tasks
//!   included) + the `rework_cost` of their winning outcomes. It is the numerator of
//!   `cost_per_successful_task`; `successful` is its denominator. Unpriced calls add nothing
//!   to any cost and are counted in `unpriced_calls`.
//! - `success_rate` = successful / tasks, over every task in scope, open and unknown included,
//!   so `cost_per_successful_task` = `cost_per_task` / `success_rate`.
//! - `retry_cost` = the cost of calls that failed (`status` error) or that another call of the
//!   same task retried or fell back from (it names them in `retry_of` / `fallback_from`).
//! - A task without an outcome is `open` until `analytics.open_task_timeout` after its last
//!   call, then `unknown`; neither is ever counted as a success.
//! - Quotients are exact decimal divisions rounded once, half-even, to
//!   [`QUOTIENT_SCALE`](super::QUOTIENT_SCALE) places; `null` when the denominator is zero.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use super::costs::{format_ts, QueryError, MAX_BUCKETS};
use super::params::{self, Common, ParamError};
use super::time::{self, Interval};
use super::{dec_json, opt_dec_json, quotient, Table, Tabular, QUOTIENT_SCALE};
use crate::store::queries::costs::Source;
use crate::store::{queries, Store};

/// Names `order` may use besides group keys.
pub const MEASURES: &[&str] = &[
    "tasks",
    "successful",
    "failed",
    "abandoned",
    "open",
    "unknown",
    "success_rate",
    "cost",
    "cost_per_successful_task",
    "cost_per_task",
    "retry_cost",
    "calls",
    "value",
    "value_per_cost",
];

/// What every answer says about its own numbers.
pub const DEFINITIONS: &[(&str, &str)] = &[
    ("tasks", "tasks whose first call is in [from, to) and whose first call matches the filters; every call of such a task counts, wherever its own time falls"),
    ("cost", "calls_cost + rework_cost: every call of the tasks (failed attempts, retries, fallbacks and failed tasks included) plus the rework_cost of their outcomes; unpriced calls add nothing and are counted in unpriced_calls"),
    ("cost_per_successful_task", "cost / successful (numerator: cost, denominator: successful); null without a success"),
    ("cost_per_task", "cost / tasks"),
    ("success_rate", "successful / tasks, open and unknown tasks included"),
    ("retry_cost", "cost of calls that failed (status error) or that a later call of the same task names in retry_of or fallback_from"),
    ("open", "no outcome yet, last call within analytics.open_task_timeout"),
    ("unknown", "no outcome and the last call older than analytics.open_task_timeout; never counted as a success"),
    ("calls_per_task_p95", "95th percentile of calls per task (a discrete quantile: an actual count)"),
    ("value_per_cost", "sum of the outcomes' value / cost; null when no outcome has a value"),
    ("rounding", "quotients are exact decimal divisions rounded half-even to quotient_scale decimal places"),
];

/// Sums over a set of tasks, as stored (the quotients are methods).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskMeasures {
    pub tasks: i64,
    pub successful: i64,
    pub failed: i64,
    pub abandoned: i64,
    pub open: i64,
    pub unknown: i64,
    /// Cost of every call of the tasks.
    pub calls_cost: Decimal,
    /// The winning outcomes' rework cost.
    pub rework_cost: Decimal,
    pub retry_cost: Decimal,
    /// Sum of the winning outcomes' values; `None` when none has one.
    pub value: Option<Decimal>,
    pub valued_tasks: i64,
    pub calls: i64,
    pub calls_p95: Option<i64>,
    /// Calls counted in `retry_cost`.
    pub wasted_calls: i64,
    pub unpriced_calls: i64,
    /// Cost (calls + rework) of the tasks by state: success, failure, abandoned, open, unknown.
    pub cost_by_state: [Decimal; 5],
}

impl TaskMeasures {
    /// The numerator of every per-task cost.
    pub fn cost(&self) -> Decimal {
        self.calls_cost + self.rework_cost
    }

    pub fn success_rate(&self) -> Option<Decimal> {
        quotient(Decimal::from(self.successful), Decimal::from(self.tasks))
    }

    pub fn cost_per_successful_task(&self) -> Option<Decimal> {
        quotient(self.cost(), Decimal::from(self.successful))
    }

    pub fn cost_per_task(&self) -> Option<Decimal> {
        quotient(self.cost(), Decimal::from(self.tasks))
    }

    pub fn calls_per_task(&self) -> Option<Decimal> {
        quotient(Decimal::from(self.calls), Decimal::from(self.tasks))
    }

    pub fn value_per_cost(&self) -> Option<Decimal> {
        self.value.and_then(|v| quotient(v, self.cost()))
    }

    /// A measure by name, for sorting.
    fn sort_value(&self, name: &str) -> Option<Decimal> {
        let n = |v: i64| Some(Decimal::from(v));
        match name {
            "tasks" => n(self.tasks),
            "successful" => n(self.successful),
            "failed" => n(self.failed),
            "abandoned" => n(self.abandoned),
            "open" => n(self.open),
            "unknown" => n(self.unknown),
            "success_rate" => self.success_rate(),
            "cost" => Some(self.cost()),
            "cost_per_successful_task" => self.cost_per_successful_task(),
            "cost_per_task" => self.cost_per_task(),
            "retry_cost" => Some(self.retry_cost),
            "calls" => n(self.calls),
            "value" => self.value,
            "value_per_cost" => self.value_per_cost(),
            _ => None,
        }
    }

    /// Column names of [`Self::values`].
    pub const COLUMNS: [&'static str; 26] = [
        "tasks",
        "successful",
        "failed",
        "abandoned",
        "open",
        "unknown",
        "success_rate",
        "cost",
        "calls_cost",
        "rework_cost",
        "cost_per_successful_task",
        "cost_per_task",
        "retry_cost",
        "retried_calls",
        "calls",
        "calls_per_task_mean",
        "calls_per_task_p95",
        "unpriced_calls",
        "value",
        "valued_tasks",
        "value_per_cost",
        "cost_successful",
        "cost_failed",
        "cost_abandoned",
        "cost_open",
        "cost_unknown",
    ];

    /// The measures in [`Self::COLUMNS`] order; money and quotients as decimal strings.
    pub fn values(&self) -> Vec<Value> {
        let [s, f, a, o, u] = self.cost_by_state;
        vec![
            json!(self.tasks),
            json!(self.successful),
            json!(self.failed),
            json!(self.abandoned),
            json!(self.open),
            json!(self.unknown),
            opt_dec_json(self.success_rate()),
            dec_json(self.cost()),
            dec_json(self.calls_cost),
            dec_json(self.rework_cost),
            opt_dec_json(self.cost_per_successful_task()),
            opt_dec_json(self.cost_per_task()),
            dec_json(self.retry_cost),
            json!(self.wasted_calls),
            json!(self.calls),
            opt_dec_json(self.calls_per_task()),
            json!(self.calls_p95),
            json!(self.unpriced_calls),
            opt_dec_json(self.value),
            json!(self.valued_tasks),
            opt_dec_json(self.value_per_cost()),
            dec_json(s),
            dec_json(f),
            dec_json(a),
            dec_json(o),
            dec_json(u),
        ]
    }

    fn json(&self) -> Value {
        let mut obj = serde_json::Map::new();
        for (c, v) in Self::COLUMNS.iter().zip(self.values()) {
            obj.insert((*c).to_string(), v);
        }
        Value::Object(obj)
    }
}

/// A parsed tasks question.
#[derive(Debug, Clone)]
pub struct TaskQuery {
    pub common: Common,
    /// How long a task without an outcome stays open (`analytics.open_task_timeout`).
    pub open_timeout: chrono::Duration,
    /// "Now", for open vs unknown.
    pub now: DateTime<Utc>,
}

impl TaskQuery {
    pub fn parse(
        pairs: &[(String, String)],
        open_timeout: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<TaskQuery, ParamError> {
        let (common, _) = params::parse_common(pairs, &[], MEASURES)?;
        Ok(TaskQuery {
            common,
            open_timeout,
            now,
        })
    }
}

/// One group (and bucket) of tasks.
#[derive(Debug, Clone)]
pub struct TaskRow {
    pub keys: Vec<Option<String>>,
    pub bucket: Option<DateTime<Utc>>,
    pub measures: TaskMeasures,
}

/// The whole answer.
#[derive(Debug, Clone)]
pub struct TaskAnswer {
    pub query: TaskQuery,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub rows: Vec<TaskRow>,
    pub total: TaskMeasures,
    pub truncated: bool,
}

/// Answers a tasks question from the materialised units (the raw events with
/// `storage.use_rollups = false`).
pub async fn query(store: &Store, q: TaskQuery) -> Result<TaskAnswer, QueryError> {
    query_from(store, q, store.source()).await
}

/// Answers a tasks question from `source`: the materialised units ([`Source::Auto`]) or the
/// raw events ([`Source::Events`], the reference).
pub async fn query_from(
    store: &Store,
    q: TaskQuery,
    source: Source,
) -> Result<TaskAnswer, QueryError> {
    if source == Source::Auto {
        store.units_current().await?;
    }
    let c = &q.common;
    let (mut from, mut to) = (c.range.from, c.range.to);
    let mut buckets = Vec::new();
    if c.interval != Interval::None {
        if from.is_none() || to.is_none() {
            let (lo, hi) = store.read(queries::costs::span).await?;
            from = from.or(lo);
            to = to.or(hi.map(|h| h + chrono::Duration::microseconds(1)));
        }
        if let (Some(f), Some(t)) = (from, to) {
            buckets =
                time::bucket_starts(f, t, c.interval, c.tz, MAX_BUCKETS).map_err(ParamError)?;
        }
    }
    let cutoff = q.now - q.open_timeout;
    let q2 = q.clone();
    let (rows, truncated, total) = store
        .read(move |conn| {
            let c = &q2.common;
            let total = queries::tasks::total(conn, c, cutoff, source)?;
            let mut top = super::TopN::new(
                c.limit,
                super::group_order(
                    c,
                    |r: &TaskRow| &r.keys,
                    |r| r.bucket,
                    |r, m| r.measures.sort_value(m),
                    "cost",
                ),
            );
            if c.interval != Interval::None && buckets.is_empty() {
                // No data and no range: nothing to bucket.
            } else if c.group_by.is_empty() && c.interval == Interval::None {
                // The one group of an ungrouped question is the total: aggregating every
                // task a second time would double the cost of the commonest question. As
                // `grouped` answers: no group when there is no task.
                if total.tasks > 0 {
                    top.push(TaskRow {
                        keys: Vec::new(),
                        bucket: None,
                        measures: total.clone(),
                    });
                }
            } else {
                queries::tasks::grouped(conn, c, &buckets, cutoff, source, |g| {
                    top.push(TaskRow {
                        keys: g.keys,
                        bucket: g.bucket,
                        measures: g.measures,
                    })
                })?;
            }
            let (rows, truncated) = top.finish();
            Ok((rows, truncated, total))
        })
        .await?;
    Ok(TaskAnswer {
        from,
        to,
        rows,
        total,
        truncated,
        query: q,
    })
}

impl Tabular for TaskAnswer {
    fn table(&self) -> Table {
        Table::grouped(
            &self.query.common,
            &TaskMeasures::COLUMNS,
            self.rows
                .iter()
                .map(|r| (r.keys.as_slice(), r.bucket, r.measures.values())),
        )
    }
}

impl TaskAnswer {
    /// The row columns in answer order (what [`Tabular::table`] names), without building the
    /// rows.
    pub fn columns(&self) -> Vec<String> {
        Table::grouped(
            &self.query.common,
            &TaskMeasures::COLUMNS,
            std::iter::empty(),
        )
        .columns
    }

    /// The JSON answer: `{rows: [{<keys>, bucket?, <measures>}], total, definitions, …}`.
    pub fn to_json(&self) -> Value {
        let c = &self.query.common;
        let definitions: serde_json::Map<String, Value> = DEFINITIONS
            .iter()
            .map(|(k, v)| ((*k).to_string(), Value::from(*v)))
            .collect();
        json!({
            "from": self.from.map(|t| format_ts(t, c.tz)),
            "to": self.to.map(|t| format_ts(t, c.tz)),
            "interval": c.interval.name(),
            "tz": c.tz.name(),
            "group_by": c.group_by.iter().map(|d| d.name()).collect::<Vec<_>>(),
            "open_task_timeout": crate::analytics::Timeout(self.query.open_timeout).to_string(),
            "quotient_scale": QUOTIENT_SCALE,
            "rows": self.table().objects(),
            "total": self.total.json(),
            "truncated": self.truncated,
            "definitions": definitions,
        })
    }
}
