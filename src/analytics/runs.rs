//! `/api/v1/runs`: agent runs (and other units of work) as a sortable list, and one run as a
//! tree of its calls.
//!
//! A run is identified by `run_id`, else `task_id`, else `trace_id` within a project. The list
//! takes the costs API's time range (a run is in it when its first call is) and dimension
//! filters (on the run's first call, as for tasks). In `/api/v1/runs/{id}` the id is looked up
//! as a `run_id` first, then as a `task_id`, then as a `trace_id`; the first column with any
//! matching call in the caller's project wins and every call carrying that value belongs to
//! the tree (so a task id shows all runs of the task). The tree links each call to the call it
//! retries (`retry_of`) or falls back from (`fallback_from`) — matched against that call's
//! `id`, `request_id` or `span_id` — else to its parent span (`parent_span_id`); anything else
//! is a root. Links that would form a cycle are cut. The answer lists calls depth-first in time
//! order, each with its depth, link and parent, so it is a table and a tree at once.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use super::costs::{format_ts, QueryError};
use super::params::{self, Common, Filter, ParamError};
use super::time::Interval;
use super::{dec_json, opt_dec_json, Table, Tabular};
use crate::domain::dimension::Dimension;
use crate::store::queries::costs::Source;
use crate::store::queries::runs::{self as sql, CallRow, LatestOutcome, RunListRow, ORDERS};
use crate::store::Store;

/// Default page size of the list.
pub const DEFAULT_LIMIT: usize = 100;
/// Most calls one run's tree shows.
pub const MAX_CALLS: usize = 20_000;

/// A parsed run-list question.
#[derive(Debug, Clone)]
pub struct RunListQuery {
    pub common: Common,
    pub offset: usize,
    pub open_timeout: chrono::Duration,
    pub now: DateTime<Utc>,
}

impl RunListQuery {
    pub fn parse(
        pairs: &[(String, String)],
        open_timeout: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<RunListQuery, ParamError> {
        let orders: Vec<&str> = ORDERS.iter().map(|(k, _)| *k).collect();
        let (mut common, extras) = params::parse_common(pairs, &["offset"], &orders)?;
        if !common.group_by.is_empty() {
            return Err(ParamError(
                "group_by: the run list has one row per run; filter with dimension parameters, or use /api/v1/tasks to aggregate".into(),
            ));
        }
        if common.interval != Interval::None {
            return Err(ParamError(
                "interval: the run list is not bucketed; use /api/v1/tasks?interval=… for a series"
                    .into(),
            ));
        }
        if !pairs.iter().any(|(k, _)| k == "limit") {
            common.limit = DEFAULT_LIMIT;
        }
        let mut offset = 0;
        for (k, v) in extras {
            if k == "offset" {
                offset = v.parse().map_err(|_| {
                    ParamError(format!("offset: {v:?} is not a non-negative integer"))
                })?;
            }
        }
        Ok(RunListQuery {
            common,
            offset,
            open_timeout,
            now,
        })
    }
}

/// A page of runs.
#[derive(Debug, Clone)]
pub struct RunList {
    pub query: RunListQuery,
    pub runs: Vec<RunListRow>,
    /// Runs matching in all (every page).
    pub total: i64,
}

/// Lists runs from the materialised units (the raw events with `storage.use_rollups = false`).
pub async fn list(store: &Store, q: RunListQuery) -> Result<RunList, QueryError> {
    list_from(store, q, store.source()).await
}

/// Lists runs from `source`: the materialised units ([`Source::Auto`]) or the raw events
/// ([`Source::Events`], the reference).
pub async fn list_from(
    store: &Store,
    q: RunListQuery,
    source: Source,
) -> Result<RunList, QueryError> {
    if source == Source::Auto {
        store.units_current().await?;
    }
    let (key, descending) = match &q.common.order {
        Some(o) => (o.key.clone(), o.descending),
        None => ("cost".to_string(), true),
    };
    let order_sql = ORDERS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, s)| *s)
        .ok_or_else(|| ParamError(format!("order: cannot sort runs by {key:?}")))?;
    let cutoff = q.now - q.open_timeout;
    let q2 = q.clone();
    let (runs, total) = store
        .read(move |conn| {
            sql::list(
                conn, &q2.common, order_sql, descending, q2.offset, cutoff, source,
            )
        })
        .await?;
    Ok(RunList {
        query: q,
        runs,
        total,
    })
}

const LIST_COLUMNS: [&str; 23] = [
    "run_id",
    "id_kind",
    "project",
    "task_id",
    "agent",
    "feature",
    "user_id",
    "customer_id",
    "model",
    "started",
    "ended",
    "duration_ms",
    "calls",
    "errors",
    "retries",
    "fallbacks",
    "cost",
    "retry_cost",
    "unpriced_calls",
    "outcome",
    "state",
    "input_tokens",
    "output_tokens",
];

impl Tabular for RunList {
    fn table(&self) -> Table {
        let tz = self.query.common.tz;
        let s = |v: &Option<String>| v.clone().map_or(Value::Null, Value::String);
        let mut table = Table::new(LIST_COLUMNS.iter().map(|c| c.to_string()).collect());
        for r in &self.runs {
            table.rows.push(vec![
                json!(r.run_id),
                json!(r.id_kind),
                s(&r.project),
                s(&r.task_id),
                s(&r.agent),
                s(&r.feature),
                s(&r.user_id),
                s(&r.customer_id),
                s(&r.model),
                json!(format_ts(r.started, tz)),
                json!(format_ts(r.ended, tz)),
                json!((r.ended - r.started).num_milliseconds()),
                json!(r.calls),
                json!(r.errors),
                json!(r.retries),
                json!(r.fallbacks),
                dec_json(r.cost),
                dec_json(r.retry_cost),
                json!(r.unpriced_calls),
                s(&r.outcome),
                json!(r.state),
                json!(r.input_tokens),
                json!(r.output_tokens),
            ]);
        }
        table
    }
}

impl RunList {
    pub fn to_json(&self) -> Value {
        let c = &self.query.common;
        json!({
            "from": c.range.from.map(|t| format_ts(t, c.tz)),
            "to": c.range.to.map(|t| format_ts(t, c.tz)),
            "tz": c.tz.name(),
            "order": c.order.as_ref().map_or("-cost".to_string(), |o| format!("{}{}", if o.descending { "-" } else { "" }, o.key)),
            "offset": self.query.offset,
            "limit": c.limit,
            "total_runs": self.total,
            "runs": self.table().objects(),
        })
    }
}

/// How a call hangs off its parent in the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Root,
    /// Its `parent_span_id` is the parent's span.
    Child,
    /// It retries the parent (`retry_of`).
    Retry,
    /// It falls back from the parent (`fallback_from`).
    Fallback,
}

impl Link {
    pub fn as_str(self) -> &'static str {
        match self {
            Link::Root => "root",
            Link::Child => "child",
            Link::Retry => "retry",
            Link::Fallback => "fallback",
        }
    }
}

/// One call placed in the tree.
#[derive(Debug, Clone)]
pub struct TreeCall {
    /// The call's id: its `id`, else `request_id`, else `span_id`, else `#<position>`.
    pub id: String,
    pub depth: usize,
    pub link: Link,
    pub parent: Option<String>,
    /// The id of the step the call belongs to: the first attempt of its retry/fallback chain.
    pub step: String,
    pub call: CallRow,
}

/// A logical step: a call and every retry or fallback that followed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub id: String,
    pub calls: usize,
    pub cost: Decimal,
    pub unpriced_calls: usize,
}

/// Sums over a run's calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunTotals {
    pub calls: usize,
    pub errors: usize,
    pub retries: usize,
    pub fallbacks: usize,
    pub cost: Decimal,
    pub unpriced_calls: usize,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub reasoning_tokens: i64,
}

/// One run, answered.
#[derive(Debug, Clone)]
pub struct RunDetail {
    pub id: String,
    /// `run_id`, `task_id` or `trace_id`: the column the id matched.
    pub matched_by: &'static str,
    pub project: Option<String>,
    pub task_id: Option<String>,
    pub agent: Option<String>,
    pub feature: Option<String>,
    pub user_id: Option<String>,
    pub customer_id: Option<String>,
    pub started: DateTime<Utc>,
    pub ended: DateTime<Utc>,
    pub outcome: Option<LatestOutcome>,
    /// The outcome, or `open` / `unknown` without one.
    pub state: String,
    pub totals: RunTotals,
    pub most_expensive_call: Option<(String, Decimal)>,
    pub most_expensive_step: Option<Step>,
    pub calls: Vec<TreeCall>,
    /// The run has more than [`MAX_CALLS`] calls; the tree shows the first ones.
    pub truncated: bool,
}

/// Reads the `project` filter of a run lookup (the only parameter it takes).
pub fn parse_detail_filters(pairs: &[(String, String)]) -> Result<Vec<Filter>, ParamError> {
    let mut filters: Vec<Filter> = Vec::new();
    for (k, v) in pairs {
        if k != "project" {
            return Err(ParamError(format!(
                "unknown parameter {k:?}; a run lookup takes only project"
            )));
        }
        let value = Some(v.trim().to_string()).filter(|s| !s.is_empty());
        match filters.first_mut() {
            Some(f) => f.values.push(value),
            None => filters.push(Filter {
                dim: Dimension::Project,
                values: vec![value],
            }),
        }
    }
    Ok(filters)
}

/// One run by id; `None` when no call in scope carries the id.
pub async fn detail(
    store: &Store,
    id: String,
    filters: Vec<Filter>,
    open_timeout: chrono::Duration,
    now: DateTime<Utc>,
) -> Result<Option<RunDetail>, QueryError> {
    let lookup_id = id.clone();
    let found = store
        .read(move |conn| {
            let Some((matched_by, calls)) = sql::calls(conn, &lookup_id, &filters, MAX_CALLS + 1)?
            else {
                return Ok(None);
            };
            let projects: BTreeSet<Option<String>> =
                calls.iter().map(|c| c.project.clone()).collect();
            if projects.len() > 1 {
                return Ok(Some(Err(projects)));
            }
            let first = &calls[0];
            let task = first
                .task_id
                .clone()
                .or(first.run_id.clone())
                .or(first.trace_id.clone())
                .unwrap_or_else(|| lookup_id.clone());
            let outcome = match &first.project {
                Some(p) => sql::latest_outcome(conn, p, &task)?,
                None => None,
            };
            Ok(Some(Ok((matched_by, calls, outcome))))
        })
        .await?;
    let (matched_by, mut calls, outcome) = match found {
        None => return Ok(None),
        Some(Err(projects)) => {
            let names: Vec<String> = projects
                .into_iter()
                .map(|p| p.unwrap_or_else(|| "(none)".into()))
                .collect();
            return Err(ParamError(format!(
                "project: run {id:?} exists in projects {}; add project=… to choose one",
                names.join(", ")
            ))
            .into());
        }
        Some(Ok(found)) => found,
    };
    let truncated = calls.len() > MAX_CALLS;
    calls.truncate(MAX_CALLS);
    Ok(Some(build(
        id,
        matched_by,
        calls,
        outcome,
        now - open_timeout,
        truncated,
    )))
}

/// Builds the tree, the totals and the most expensive call and step.
pub fn build(
    id: String,
    matched_by: &'static str,
    calls: Vec<CallRow>,
    outcome: Option<LatestOutcome>,
    open_cutoff: DateTime<Utc>,
    truncated: bool,
) -> RunDetail {
    let n = calls.len();
    let ids: Vec<String> = calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            c.idem_key
                .clone()
                .or(c.request_id.clone())
                .or(c.span_id.clone())
                .unwrap_or_else(|| format!("#{}", i + 1))
        })
        .collect();
    // A reference may name a call by any of its identifiers; the earliest call wins.
    let mut by_ref: HashMap<&str, usize> = HashMap::new();
    let mut by_span: HashMap<&str, usize> = HashMap::new();
    for (i, c) in calls.iter().enumerate() {
        for r in [&c.idem_key, &c.request_id, &c.span_id]
            .into_iter()
            .flatten()
        {
            by_ref.entry(r.as_str()).or_insert(i);
        }
        if let Some(s) = &c.span_id {
            by_span.entry(s.as_str()).or_insert(i);
        }
    }
    let mut parent: Vec<Option<(usize, Link)>> = calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let find = |r: &Option<String>, map: &HashMap<&str, usize>| {
                r.as_deref()
                    .and_then(|r| map.get(r))
                    .copied()
                    .filter(|j| *j != i)
            };
            find(&c.retry_of, &by_ref)
                .map(|j| (j, Link::Retry))
                .or_else(|| find(&c.fallback_from, &by_ref).map(|j| (j, Link::Fallback)))
                .or_else(|| find(&c.parent_span_id, &by_span).map(|j| (j, Link::Child)))
        })
        .collect();
    cut_cycles(&mut parent);

    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut roots = Vec::new();
    for (i, p) in parent.iter().enumerate() {
        match p {
            Some((j, _)) => children[*j].push(i),
            None => roots.push(i),
        }
    }
    // Depth-first, in time order (calls arrive sorted by time).
    let mut order: Vec<(usize, usize)> = Vec::with_capacity(n);
    let mut stack: Vec<(usize, usize)> = roots.iter().rev().map(|r| (*r, 0)).collect();
    while let Some((i, depth)) = stack.pop() {
        order.push((i, depth));
        for c in children[i].iter().rev() {
            stack.push((*c, depth + 1));
        }
    }
    let mut head: Vec<usize> = (0..n).collect();
    for (i, _) in &order {
        if let Some((p, Link::Retry | Link::Fallback)) = parent[*i] {
            head[*i] = head[p];
        }
    }

    let mut totals = RunTotals::default();
    let mut steps: HashMap<usize, Step> = HashMap::new();
    let mut most_expensive_call: Option<(usize, Decimal)> = None;
    for (i, c) in calls.iter().enumerate() {
        totals.calls += 1;
        totals.errors += usize::from(c.status == "error");
        totals.retries += usize::from(c.retry_of.is_some());
        totals.fallbacks += usize::from(c.fallback_from.is_some());
        totals.input_tokens += c.input_tokens;
        totals.output_tokens += c.output_tokens;
        totals.cache_read_tokens += c.cache_read_tokens;
        totals.cache_write_tokens += c.cache_write_tokens;
        totals.reasoning_tokens += c.reasoning_tokens;
        let step = steps.entry(head[i]).or_insert_with(|| Step {
            id: ids[head[i]].clone(),
            calls: 0,
            cost: Decimal::ZERO,
            unpriced_calls: 0,
        });
        step.calls += 1;
        match c.cost {
            Some(cost) => {
                totals.cost += cost;
                step.cost += cost;
                if most_expensive_call.is_none_or(|(_, m)| cost > m) {
                    most_expensive_call = Some((i, cost));
                }
            }
            None => {
                totals.unpriced_calls += 1;
                step.unpriced_calls += 1;
            }
        }
    }
    // The costliest step; ties go to the earliest.
    let most_expensive_step = steps
        .into_iter()
        .max_by(|(ia, a), (ib, b)| a.cost.cmp(&b.cost).then(ib.cmp(ia)))
        .map(|(_, s)| s);

    let first = calls.first();
    let started = first.map_or(DateTime::<Utc>::MIN_UTC, |c| c.ts);
    let ended = calls
        .iter()
        .map(|c| c.ts + chrono::Duration::milliseconds(i64::from(c.latency_ms.unwrap_or(0))))
        .max()
        .unwrap_or(started);
    let last_call = calls.iter().map(|c| c.ts).max().unwrap_or(started);
    let state = match &outcome {
        Some((o, ..)) => o.clone(),
        None if last_call >= open_cutoff => "open".into(),
        None => "unknown".into(),
    };
    let tree: Vec<TreeCall> = order
        .iter()
        .map(|(i, depth)| TreeCall {
            id: ids[*i].clone(),
            depth: *depth,
            link: parent[*i].map_or(Link::Root, |(_, l)| l),
            parent: parent[*i].map(|(p, _)| ids[p].clone()),
            step: ids[head[*i]].clone(),
            call: calls[*i].clone(),
        })
        .collect();
    RunDetail {
        id,
        matched_by,
        project: first.and_then(|c| c.project.clone()),
        task_id: first.and_then(|c| c.task_id.clone()),
        agent: calls.iter().find_map(|c| c.agent.clone()),
        feature: first.and_then(|c| c.feature.clone()),
        user_id: first.and_then(|c| c.user_id.clone()),
        customer_id: first.and_then(|c| c.customer_id.clone()),
        started,
        ended,
        outcome,
        state,
        totals,
        most_expensive_call: most_expensive_call.map(|(i, c)| (ids[i].clone(), c)),
        most_expensive_step,
        calls: tree,
        truncated,
    }
}

/// Removes the links that close a cycle (possible only with inconsistent ids), so every call
/// reaches a root.
fn cut_cycles(parent: &mut [Option<(usize, Link)>]) {
    // 0: unvisited, 1: on the current path, 2: known to reach a root.
    let mut state = vec![0u8; parent.len()];
    for start in 0..parent.len() {
        let mut path = Vec::new();
        let mut i = start;
        loop {
            if state[i] == 2 {
                break;
            }
            if state[i] == 1 {
                // `i` is on the path: the link that led back to it closes the cycle.
                if let Some(&last) = path.last() {
                    parent[last] = None;
                }
                break;
            }
            state[i] = 1;
            path.push(i);
            match parent[i] {
                Some((p, _)) => i = p,
                None => break,
            }
        }
        for p in path {
            state[p] = 2;
        }
    }
}

fn ms_ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

const CALL_COLUMNS: [&str; 32] = [
    "depth",
    "link",
    "parent",
    "id",
    "step",
    "ts",
    "model",
    "model_requested",
    "provider",
    "route",
    "operation",
    "service_tier",
    "status",
    "error_type",
    "http_status",
    "attempt",
    "latency_ms",
    "ttft_ms",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost",
    "cost_source",
    "agent",
    "run_id",
    "task_id",
    "span_id",
    "parent_span_id",
    "retry_of",
    "fallback_from",
];

impl Tabular for RunDetail {
    /// The calls, depth-first.
    fn table(&self) -> Table {
        let s = |v: &Option<String>| v.clone().map_or(Value::Null, Value::String);
        let mut table = Table::new(CALL_COLUMNS.iter().map(|c| c.to_string()).collect());
        for t in &self.calls {
            let c = &t.call;
            table.rows.push(vec![
                json!(t.depth),
                json!(t.link.as_str()),
                s(&t.parent),
                json!(t.id),
                json!(t.step),
                json!(ms_ts(c.ts)),
                json!(c.model),
                s(&c.model_requested),
                s(&c.provider),
                json!(c.route),
                json!(c.operation),
                json!(c.service_tier),
                json!(c.status),
                s(&c.error_type),
                json!(c.http_status),
                json!(c.attempt),
                json!(c.latency_ms),
                json!(c.ttft_ms),
                json!(c.input_tokens),
                json!(c.output_tokens),
                json!(c.cache_read_tokens),
                json!(c.cache_write_tokens),
                json!(c.reasoning_tokens),
                opt_dec_json(c.cost),
                json!(c.cost_source),
                s(&c.agent),
                s(&c.run_id),
                s(&c.task_id),
                s(&c.span_id),
                s(&c.parent_span_id),
                s(&c.retry_of),
                s(&c.fallback_from),
            ]);
        }
        table
    }
}

impl RunDetail {
    pub fn to_json(&self) -> Value {
        let t = &self.totals;
        let (outcome, outcome_at, value, rework) = match &self.outcome {
            Some((o, at, v, r)) => (Some(o.clone()), Some(ms_ts(*at)), *v, *r),
            None => (None, None, None, None),
        };
        json!({
            "run": {
                "id": self.id,
                "matched_by": self.matched_by,
                "project": self.project,
                "task_id": self.task_id,
                "agent": self.agent,
                "feature": self.feature,
                "user_id": self.user_id,
                "customer_id": self.customer_id,
                "started": ms_ts(self.started),
                "ended": ms_ts(self.ended),
                "duration_ms": (self.ended - self.started).num_milliseconds(),
                "state": self.state,
                "outcome": outcome,
                "outcome_at": outcome_at,
                "value": opt_dec_json(value),
                "rework_cost": opt_dec_json(rework),
            },
            "totals": {
                "calls": t.calls,
                "errors": t.errors,
                "retries": t.retries,
                "fallbacks": t.fallbacks,
                "cost": dec_json(t.cost),
                "unpriced_calls": t.unpriced_calls,
                "input_tokens": t.input_tokens,
                "output_tokens": t.output_tokens,
                "cache_read_tokens": t.cache_read_tokens,
                "cache_write_tokens": t.cache_write_tokens,
                "reasoning_tokens": t.reasoning_tokens,
            },
            "most_expensive_call": self.most_expensive_call.as_ref().map(|(id, cost)| json!({"id": id, "cost": dec_json(*cost)})),
            "most_expensive_step": self.most_expensive_step.as_ref().map(|s| json!({
                "id": s.id, "calls": s.calls, "cost": dec_json(s.cost), "unpriced_calls": s.unpriced_calls,
            })),
            "calls": self.table().objects(),
            "truncated": self.truncated,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: &str, secs: i64) -> CallRow {
        CallRow {
            ts: DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap(),
            idem_key: Some(id.into()),
            request_id: None,
            span_id: None,
            parent_span_id: None,
            retry_of: None,
            fallback_from: None,
            attempt: None,
            project: Some("p".into()),
            task_id: Some("t".into()),
            run_id: Some("r".into()),
            trace_id: None,
            agent: None,
            feature: None,
            user_id: None,
            customer_id: None,
            model: "m".into(),
            model_requested: None,
            provider: None,
            route: "direct".into(),
            operation: "chat".into(),
            service_tier: "standard".into(),
            status: "success".into(),
            error_type: None,
            http_status: None,
            latency_ms: Some(1000),
            ttft_ms: None,
            input_tokens: 10,
            output_tokens: 1,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
            cost: Some(dec!(1)),
            cost_source: "computed".into(),
        }
    }

    #[test]
    fn retries_and_fallbacks_nest_under_what_they_replace() {
        let mut root = call("a", 0);
        root.span_id = Some("s-a".into());
        let mut step = call("b", 1);
        step.span_id = Some("s-b".into());
        step.parent_span_id = Some("s-a".into());
        step.status = "error".into();
        step.cost = Some(dec!(2));
        let mut retry = call("c", 2);
        retry.parent_span_id = Some("s-a".into());
        retry.retry_of = Some("b".into());
        retry.span_id = Some("s-c".into());
        retry.status = "error".into();
        retry.cost = Some(dec!(3));
        let mut fallback = call("d", 3);
        fallback.parent_span_id = Some("s-a".into());
        // Named by span id, which works as well as the event id.
        fallback.fallback_from = Some("s-c".into());
        fallback.cost = None;
        let d = build(
            "r".into(),
            "run_id",
            vec![root, step, retry, fallback],
            None,
            DateTime::<Utc>::MIN_UTC,
            false,
        );
        let shape: Vec<(&str, usize, &str, Option<&str>, &str)> = d
            .calls
            .iter()
            .map(|t| {
                (
                    t.id.as_str(),
                    t.depth,
                    t.link.as_str(),
                    t.parent.as_deref(),
                    t.step.as_str(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                ("a", 0, "root", None, "a"),
                ("b", 1, "child", Some("a"), "b"),
                ("c", 2, "retry", Some("b"), "b"),
                ("d", 3, "fallback", Some("c"), "b"),
            ]
        );
        assert_eq!(d.totals.cost, dec!(6));
        assert_eq!(d.totals.unpriced_calls, 1);
        assert_eq!(
            (d.totals.retries, d.totals.fallbacks, d.totals.errors),
            (1, 1, 2)
        );
        assert_eq!(d.most_expensive_call, Some(("c".to_string(), dec!(3))));
        let step = d.most_expensive_step.unwrap();
        assert_eq!((step.id.as_str(), step.calls, step.cost), ("b", 3, dec!(5)));
        assert_eq!(step.unpriced_calls, 1);
        assert_eq!(d.state, "open");
        assert_eq!((d.ended - d.started).num_milliseconds(), 4000);
    }

    #[test]
    fn cycles_are_cut_and_every_call_is_shown() {
        let mut a = call("a", 0);
        a.retry_of = Some("b".into());
        let mut b = call("b", 1);
        b.retry_of = Some("a".into());
        let mut c = call("c", 2);
        c.retry_of = Some("c".into()); // itself: ignored
        let d = build(
            "r".into(),
            "run_id",
            vec![a, b, c],
            None,
            DateTime::<Utc>::MAX_UTC,
            false,
        );
        assert_eq!(d.calls.len(), 3);
        assert_eq!(
            d.calls.iter().filter(|t| t.link == Link::Root).count(),
            2,
            "one link of the a↔b cycle is cut; c is a root"
        );
        assert_eq!(d.state, "unknown");
    }
}
