//! Materialised units of work: the tables `task_units` and `run_units`, one row per task and
//! per run, that `/api/v1/tasks`, `/api/v1/runs` and the tasks page scan instead of grouping
//! every call at query time.
//!
//! What a unit is (keys, first-call dimensions, wasted calls, winning outcome) is defined once,
//! in the SQL of `store::queries::tasks`; this module only decides *which* units to recompute
//! with it and when.
//!
//! Every write that changes a unit records what it touched in `units_pending` (calls) or
//! `units_outcomes_pending` (outcomes), in its own transaction, so the record is as durable as
//! the write. Recomputing is deferred and batched ([`refresh_pending`], on the writer): a
//! refresh reads the unit tables whole to find the stored rows, and paying that on every
//! commit doubled the writer's cost per event and grew with the tables. It runs
//!
//! - before every read of tasks or runs that finds anything pending ([`Store::units_current`]
//!   (crate::store::Store::units_current)), so answers are always exact;
//! - whenever [`REFRESH_AFTER`] pending rows have gathered (the [`Units`] hook: calls counted
//!   as their events commit, outcomes after each write of their own), so a read rarely waits
//!   for much;
//! - on start, for whatever a crash left pending — outcomes a pass per transaction.
//!
//! Outcomes are copied into their units in passes of [`OUTCOMES_PER_PASS`] tasks, so no
//! backlog has to fit in memory at once.
//!
//! A refresh deletes the units of the touched calls — their keys of both kinds, before and
//! after a change — and recomputes them from *all* their calls, scanning events only between
//! the earlier of the stored first call and the touched calls and the later of the stored last
//! call and the touched calls (exact, not a guess), so DuckDB skips row groups. Then it copies
//! each named task's winning outcome into the units that take it, without reading any call.
//!
//! The time-dependent state (open vs unknown) is never stored; queries derive it from
//! `last_ts`. A database from before the tables existed gets them built once on start
//! ([`ensure_built`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Utc};
use duckdb::{params, Connection};

use super::arrow::ts_string;
use super::queries::tasks::{
    push_units_base, stored_columns, stored_projection, ts_literal, ts_within, Calls, Unit,
};
use super::queries::Sql;
use super::{task_rollup, CommitHook, StoreError};
use crate::domain::event::PricedEvent;

/// Scratch tables of the connection (temporary tables are per connection, so each entry point
/// creates what it uses): the touched calls' keys of both kinds with their time span, and the
/// keys of one kind being recomputed.
const SCRATCH: &str = "
    CREATE TEMP TABLE IF NOT EXISTS units_touched (
        t_project VARCHAR, t_task VARCHAR, t_run VARCHAR, t_lo TIMESTAMPTZ, t_hi TIMESTAMPTZ);
    CREATE TEMP TABLE IF NOT EXISTS units_keys (
        k_project VARCHAR, k_uk VARCHAR, k_lo TIMESTAMPTZ, k_hi TIMESTAMPTZ);";

/// Records the units of the calls of `from` (SQL naming `events e`, with any joins and
/// `WHERE`) as pending.
pub(crate) fn stage_calls(conn: &Connection, from: &str) -> Result<(), StoreError> {
    stage_calls_as(conn, from, ["e.task_id", "e.run_id", "e.trace_id"])
}

/// Like [`stage_calls`], with the calls' `task_id`, `run_id` and `trace_id` given as SQL
/// expressions: the ids an update is about to give them.
pub(crate) fn stage_calls_as(
    conn: &Connection,
    from: &str,
    [task_id, run_id, trace_id]: [&str; 3],
) -> Result<(), StoreError> {
    conn.execute_batch(&format!(
        "INSERT INTO units_pending
             SELECT e.project, {}, {}, min(e.ts), max(e.ts) FROM {from} GROUP BY ALL",
        Unit::Task.key_of(task_id, run_id, trace_id),
        Unit::Run.key_of(task_id, run_id, trace_id),
    ))?;
    Ok(())
}

/// Records fresh events as pending, one row per (project, task key, run key) with its time
/// span; returns the rows added.
fn stage_events(conn: &Connection, fresh: &[&PricedEvent]) -> Result<usize, StoreError> {
    type Key<'a> = (Option<&'a str>, &'a str, &'a str);
    let mut spans: HashMap<Key<'_>, (DateTime<Utc>, DateTime<Utc>)> = HashMap::new();
    for p in fresh {
        let d = &p.event.dims;
        let (task, run, trace) = (
            d.task_id.as_deref(),
            d.run_id.as_deref(),
            d.trace_id.as_deref(),
        );
        // The same precedence as `Unit::key_expr`; a call with none of the ids is in no unit.
        let (Some(tk), Some(rk)) = (task.or(run).or(trace), run.or(task).or(trace)) else {
            continue;
        };
        let ts = p.event.ts;
        spans
            .entry((d.project.as_deref(), tk, rk))
            .and_modify(|(lo, hi)| {
                *lo = (*lo).min(ts);
                *hi = (*hi).max(ts);
            })
            .or_insert((ts, ts));
    }
    if spans.is_empty() {
        return Ok(0);
    }
    let mut app = conn.appender("units_pending")?;
    for ((project, tk, rk), (lo, hi)) in &spans {
        app.append_row(params![project, tk, rk, ts_string(*lo), ts_string(*hi)])?;
    }
    app.flush()?;
    Ok(spans.len())
}

/// Brings the unit tables up to date with everything pending; `false` when nothing was. Run it
/// on the writer, inside a transaction.
pub fn refresh_pending(conn: &Connection) -> Result<bool, StoreError> {
    let (calls, outcomes): (bool, bool) = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM units_pending),
                EXISTS (SELECT 1 FROM units_outcomes_pending)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if calls {
        conn.execute_batch(SCRATCH)?;
        conn.execute_batch(
            "INSERT INTO units_touched SELECT * FROM units_pending; DELETE FROM units_pending;",
        )?;
        refresh_touched(conn)?;
    }
    if outcomes {
        while apply_outcomes(conn)? {}
    }
    if calls || outcomes {
        task_rollup::compact_if_due(conn)?;
    }
    Ok(calls || outcomes)
}

/// Whether outcomes wait to be copied into their units.
fn is_outcome_pending(conn: &Connection) -> Result<bool, StoreError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM units_outcomes_pending)",
        [],
        |r| r.get(0),
    )?)
}

/// Whether anything waits for [`refresh_pending`] (a cheap read for the query path).
pub fn is_pending(conn: &Connection) -> Result<bool, StoreError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM units_pending)
             OR EXISTS (SELECT 1 FROM units_outcomes_pending)",
        [],
        |r| r.get(0),
    )?)
}

/// The task units of the keys being recomputed, for the rollup's contributions.
const TOUCHED_TASKS: &str = "task_units u JOIN units_keys k
    ON u.project IS NOT DISTINCT FROM k.k_project AND u.task_id = k.k_uk";

/// The task units whose outcome is being copied in, for the rollup's contributions (the same
/// match as the `UPDATE` in [`apply_outcomes`]).
const OUTCOME_TASKS: &str = "task_units u JOIN units_oc oc
    ON u.project = oc.project AND u.task_id = oc.task_id";

/// Adds the contributions of the task units `from` selects to the task rollup with `sign`
/// (−1 before the fold changes them, +1 after); run units have no rollup.
fn rollup_delta(conn: &Connection, unit: Unit, sign: i64, from: &str) -> Result<(), StoreError> {
    match unit {
        Unit::Task => task_rollup::add(conn, sign, from),
        Unit::Run => Ok(()),
    }
}

/// Recomputes the units of every call in `units_touched`, of both kinds, then clears it.
fn refresh_touched(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(SCRATCH)?;
    for unit in Unit::ALL {
        let started = std::time::Instant::now();
        let column = match unit {
            Unit::Task => "t_task",
            Unit::Run => "t_run",
        };
        conn.execute_batch(&format!(
            "DELETE FROM units_keys;
             INSERT INTO units_keys
                 SELECT t_project, {column}, min(t_lo), max(t_hi) FROM units_touched
                 WHERE {column} IS NOT NULL GROUP BY ALL;"
        ))?;
        let (lo, hi): (Option<i64>, Option<i64>) = conn.query_row(
            "SELECT epoch_us(min(k_lo)), epoch_us(max(k_hi)) FROM units_keys",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let (Some(mut lo), Some(mut hi)) = (lo, hi) else {
            continue;
        };
        // The stored rows of these keys tell how far back and forward their calls reach; read
        // first with a semi-join (three columns), so that every later step touches only the
        // units in that span and DuckDB skips the row groups outside: the unit tables hold a
        // row per task and per run of all history, and each step used to join them whole.
        let table = unit.table();
        let key = unit.key_column();
        let (first, last): (Option<i64>, Option<i64>) = conn.query_row(
            &format!(
                "SELECT epoch_us(min(u.ts)), epoch_us(max(u.last_ts)) FROM {table} u
                 SEMI JOIN units_keys k
                   ON u.project IS NOT DISTINCT FROM k.k_project AND u.{key} = k.k_uk"
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        lo = lo.min(first.unwrap_or(lo));
        hi = hi.max(last.unwrap_or(hi));
        let (lo, hi) = (from_epoch_us(lo)?, from_epoch_us(hi)?);
        // Stored and recomputed units alike start inside [lo, hi].
        let tasks = format!("{TOUCHED_TASKS} WHERE {}", ts_within("u.ts", lo, hi));
        let found = started.elapsed();
        rollup_delta(conn, unit, -1, &tasks)?;
        conn.execute_batch(&format!(
            "DELETE FROM {table} USING units_keys
             WHERE {table}.project IS NOT DISTINCT FROM k_project AND {table}.{key} = k_uk
               AND {};",
            ts_within(&format!("{table}.ts"), lo, hi)
        ))?;
        let deleted = started.elapsed();
        conn.execute_batch(&materialise(unit, Calls::Keys { lo, hi }))?;
        let recomputed = started.elapsed();
        rollup_delta(conn, unit, 1, &tasks)?;
        tracing::debug!(
            table,
            find_ms = found.as_millis() as u64,
            delete_ms = (deleted - found).as_millis() as u64,
            recompute_ms = (recomputed - deleted).as_millis() as u64,
            rollup_ms = (started.elapsed() - recomputed).as_millis() as u64,
            span_h = (hi - lo).num_hours(),
            "units refreshed"
        );
    }
    conn.execute_batch("DELETE FROM units_touched; DELETE FROM units_keys;")?;
    Ok(())
}

/// SQL that computes the units of `calls` from the events and appends them, with their winning
/// outcomes, to the unit table (the caller removed their old rows).
fn materialise(unit: Unit, calls: Calls<'_>) -> String {
    // A rebuild lays each part's units in time order, as the folds do (they append units as
    // their calls arrive): the reads that are bounded by time then skip row groups by their
    // min/max timestamps instead of reading a hash aggregate's arbitrary order.
    let order = match calls {
        Calls::Part { .. } => "ORDER BY b.ts",
        Calls::Query { .. } | Calls::Keys { .. } => "",
    };
    let mut sql = Sql::default();
    sql.push("CREATE OR REPLACE TEMP TABLE units_base AS ");
    push_units_base(&mut sql, unit, calls);
    sql.push(" SELECT * FROM base;\n");
    // Only the outcomes of these units are ranked: the table of outcomes may be large.
    sql.push(&format!(
        "INSERT INTO {table} ({columns})
         SELECT {projection} FROM units_base b LEFT JOIN (
             SELECT o.project, o.task_id AS ok, o.outcome, o.value, o.rework_cost, o.feature,
                    o.user_id, o.customer_id
             FROM outcomes o
             JOIN (SELECT DISTINCT project, okey FROM units_base) u
               ON u.project = o.project AND u.okey = o.task_id
             QUALIFY row_number() OVER (PARTITION BY o.project, o.task_id
                                        ORDER BY o.ts DESC, o.seq DESC) = 1
         ) oc ON oc.project = b.project AND oc.ok = b.okey {order};
         DROP TABLE units_base;",
        table = unit.table(),
        columns = stored_columns(unit).join(", "),
        projection = stored_projection(unit),
    ));
    debug_assert!(sql.params.is_empty(), "writer SQL carries literals only");
    sql.text
}

/// Records that outcomes stamped `ts` of these `(project, task_id)`s were stored; the next
/// refresh copies each one's winning outcome into its units. Run it in the transaction that
/// stored them.
pub(crate) fn outcomes_changed(
    conn: &Connection,
    keys: &[(&str, &str, DateTime<Utc>)],
) -> Result<(), StoreError> {
    if keys.is_empty() {
        return Ok(());
    }
    let mut app = conn.appender("units_outcomes_pending")?;
    for (project, task, ts) in keys {
        app.append_row(params![project, task, ts_string(*ts)])?;
    }
    app.flush()?;
    Ok(())
}

/// Outcome keys folded per pass, so a backlog (from before the count above, or a crash) is
/// folded in steps of bounded memory.
const OUTCOMES_PER_PASS: usize = 100_000;

/// Copies the winning outcome of up to [`OUTCOMES_PER_PASS`] pending `(project, task_id)`s into
/// the units that take their outcome from it (a task, and every run whose first call names the
/// task), and fills their feature, user and customer from it where the first call has none.
/// Returns whether more are pending.
///
/// What a pass costs must not grow with the backlog or the history: the keys are taken before
/// they are made distinct (a `DISTINCT` over 7.5M pending rows ran out of DuckDB's memory),
/// only outcomes from the earliest pending one on are ranked, and each table is changed only
/// between the first calls of the units it finds, so DuckDB skips the row groups outside
/// (measured on 20M events, 13M units: 2.8 → 1.9 s a pass, the update and rollup steps 2.0 →
/// 0.2 s). Finding the units still reads their tables' keys whole: a task's first call may be
/// anywhere before its outcome.
fn apply_outcomes(conn: &Connection) -> Result<bool, StoreError> {
    conn.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE units_oc_keys AS
             SELECT o_project AS k_project, o_task AS k_task,
                    CASE WHEN count(*) = count(o_ts) THEN min(o_ts) END AS k_from
             FROM (SELECT o_project, o_task, o_ts FROM units_outcomes_pending
                   LIMIT {OUTCOMES_PER_PASS})
             GROUP BY ALL;"
    ))?;
    // A task's winner is its latest outcome, so never older than a pending outcome of it:
    // the outcomes before the pass's earliest pending one cannot win, and DuckDB skips their
    // row groups. Ranking over the whole table made a pass grow with the history (4,177
    // outcomes/s into 57M stored outcomes against 29,000/s into 5.7M). A pending row without
    // a time (written before the column existed) reads them all.
    let from: Option<i64> = conn.query_row(
        "SELECT CASE WHEN count(*) = count(k_from) THEN epoch_us(min(k_from)) END
         FROM units_oc_keys",
        [],
        |r| r.get(0),
    )?;
    let since = match from {
        Some(us) => format!("WHERE o.ts >= {}", ts_literal(from_epoch_us(us)?)),
        None => String::new(),
    };
    conn.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE units_oc AS
             SELECT o.project, o.task_id, o.outcome, o.value, o.rework_cost, o.feature,
                    o.user_id, o.customer_id
             FROM outcomes o
             JOIN units_oc_keys k ON k.k_project = o.project AND k.k_task = o.task_id
             {since}
             QUALIFY row_number() OVER (PARTITION BY o.project, o.task_id
                                        ORDER BY o.ts DESC, o.seq DESC) = 1;"
    ))?;
    for unit in Unit::ALL {
        let table = unit.table();
        let okey = unit.outcome_key_column();
        // The units' own first calls bound them exactly (the same match as the update's).
        let (lo, hi): (Option<i64>, Option<i64>) = conn.query_row(
            &format!(
                "SELECT epoch_us(min(u.ts)), epoch_us(max(u.ts)) FROM {table} u
                 SEMI JOIN units_oc oc ON u.project = oc.project AND u.{okey} = oc.task_id"
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let (Some(lo), Some(hi)) = (lo, hi) else {
            continue; // No unit of these tasks yet: their calls will find the outcomes.
        };
        let (lo, hi) = (from_epoch_us(lo)?, from_epoch_us(hi)?);
        let tasks = format!("{OUTCOME_TASKS} WHERE {}", ts_within("u.ts", lo, hi));
        rollup_delta(conn, unit, -1, &tasks)?;
        conn.execute_batch(&format!(
            "UPDATE {table} SET outcome = oc.outcome, value = oc.value,
                 rework_cost = oc.rework_cost,
                 feature = coalesce(call_feature, oc.feature),
                 user_id = coalesce(call_user_id, oc.user_id),
                 customer_id = coalesce(call_customer_id, oc.customer_id)
             FROM units_oc oc
             WHERE {table}.project = oc.project AND {table}.{okey} = oc.task_id AND {};",
            ts_within(&format!("{table}.ts"), lo, hi),
        ))?;
        rollup_delta(conn, unit, 1, &tasks)?;
    }
    conn.execute_batch(
        "DELETE FROM units_outcomes_pending USING units_oc_keys
             WHERE o_project IS NOT DISTINCT FROM k_project
               AND o_task IS NOT DISTINCT FROM k_task;
         DROP TABLE units_oc; DROP TABLE units_oc_keys;",
    )?;
    is_outcome_pending(conn)
}

/// The instant `us` microseconds after the epoch (a bound read back from DuckDB).
fn from_epoch_us(us: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::<Utc>::from_timestamp_micros(us)
        .ok_or_else(|| StoreError::Other(format!("timestamp {us} µs out of range")))
}

/// Events per part of a whole rebuild. Computing every unit in one statement holds all of
/// them at once: at 97M events (60M tasks) that ran out of 12 GB. A part holds about this
/// many events' units, and each part scans the events once more.
const REBUILD_EVENTS_PER_PART: u64 = 2_000_000;

/// Recomputes every unit from the events, a share of the keys at a time (the caller holds a
/// transaction).
pub fn rebuild(conn: &Connection) -> Result<(), StoreError> {
    let events: i64 = conn.query_row("SELECT count(*) FROM events", [], |r| r.get(0))?;
    let parts = (events.max(0) as u64).div_ceil(REBUILD_EVENTS_PER_PART);
    rebuild_in_parts(conn, parts.max(1))
}

/// [`rebuild`] in `parts` shares of the unit keys.
fn rebuild_in_parts(conn: &Connection, parts: u64) -> Result<(), StoreError> {
    conn.execute_batch("DELETE FROM units_pending; DELETE FROM units_outcomes_pending;")?;
    for unit in Unit::ALL {
        conn.execute_batch(&format!("DELETE FROM {};", unit.table()))?;
        for part in 0..parts {
            conn.execute_batch(&materialise(unit, Calls::Part { parts, part }))?;
        }
    }
    if parts > 1 {
        tracing::info!(parts, "rebuilt the units in parts");
    }
    task_rollup::rebuild(conn)
}

/// Builds the unit tables from every stored event, once: on the first start after the
/// migration that added them (a database from before keeps its tasks and runs answerable).
pub fn ensure_built(conn: &Connection) -> Result<(), StoreError> {
    let built: bool = conn
        .query_row("SELECT bool_and(built) FROM units_state", [], |r| {
            r.get::<_, Option<bool>>(0)
        })?
        .unwrap_or(false);
    if built {
        // What a crash left pending, after the task rollup has been filled once (a database
        // from before it existed). A backlog of outcomes is folded a pass per transaction, so
        // its size never decides whether the server can start.
        let in_transaction = |f: &dyn Fn() -> Result<bool, StoreError>| {
            conn.execute_batch("BEGIN TRANSACTION")?;
            match f() {
                Ok(more) => {
                    conn.execute_batch("COMMIT")?;
                    Ok(more)
                }
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    Err(e)
                }
            }
        };
        in_transaction(&|| task_rollup::ensure_filled(conn).map(|()| false))?;
        while in_transaction(&|| Ok(is_outcome_pending(conn)? && apply_outcomes(conn)?))? {}
        in_transaction(&|| refresh_pending(conn))?;
        return Ok(());
    }
    let started = std::time::Instant::now();
    conn.execute_batch("BEGIN TRANSACTION")?;
    let result = rebuild(conn).and_then(|()| {
        conn.execute_batch("UPDATE units_state SET built = true")?;
        Ok(())
    });
    match result {
        Ok(()) => conn.execute_batch("COMMIT")?,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e);
        }
    }
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "built the task and run units from the stored events"
    );
    Ok(())
}

/// Pending rows (touched unit keys) after which the writer refreshes the units unasked.
pub const REFRESH_AFTER: usize = 100_000;

/// The commit hook that records the units of appended events as pending, and refreshes them
/// once [`REFRESH_AFTER`] rows have gathered: see the module documentation. Registered after
/// `EventOutcomes`, so outcomes carried by the same events are stored before a refresh.
#[derive(Default)]
pub struct Units {
    /// Rows recorded since this hook last refreshed (approximate: a rolled-back commit's rows
    /// count too, which only makes a refresh come early).
    staged: AtomicUsize,
}

impl CommitHook for Units {
    fn name(&self) -> &'static str {
        "units"
    }

    fn after_append(&self, conn: &Connection, fresh: &[&PricedEvent]) -> Result<(), StoreError> {
        let n = stage_events(conn, fresh)?;
        self.staged.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    fn needs_upkeep(&self) -> bool {
        self.staged.load(Ordering::Relaxed) >= REFRESH_AFTER
    }

    /// Outcomes arrive in writes of their own (`/v1/outcomes`), which this hook does not see:
    /// without this check their backlog met a refresh only at a read of tasks or a restart —
    /// after 20M events, 11M outcomes folded in one transaction at start ran out of memory,
    /// and the server could not start. A count of a table that is kept small.
    fn needs_upkeep_after_exec(&self, conn: &Connection) -> Result<bool, StoreError> {
        let outcomes: i64 =
            conn.query_row("SELECT count(*) FROM units_outcomes_pending", [], |r| {
                r.get(0)
            })?;
        Ok(self.needs_upkeep() || outcomes >= REFRESH_AFTER as i64)
    }

    fn maintain(&self, conn: &Connection) -> Result<(), StoreError> {
        self.staged.store(0, Ordering::Relaxed);
        refresh_pending(conn)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::analytics::params::pairs;
    use crate::analytics::runs::{self, RunListQuery};
    use crate::analytics::tasks::{self, TaskQuery, TaskRow};
    use crate::domain::dimension::Dimension;
    use crate::store::queries::costs::Source;
    use crate::store::queries::runs::ORDERS;
    use crate::store::Store;

    const TIMEOUT: Duration = Duration::hours(2);

    fn by_group(mut rows: Vec<TaskRow>) -> Vec<TaskRow> {
        rows.sort_by(|a, b| (&a.keys, a.bucket).cmp(&(&b.keys, b.bucket)));
        rows
    }

    /// Asks a tasks question of the raw events and of the unit tables; both must agree on
    /// every group and the total. Returns the number of groups.
    async fn same_tasks(store: &Store, query: &str, now: DateTime<Utc>) -> usize {
        let q = TaskQuery::parse(&pairs(Some(query)), TIMEOUT, now).unwrap();
        let raw = tasks::query_from(store, q.clone(), Source::Events)
            .await
            .unwrap();
        let stored = tasks::query_from(store, q, Source::Auto).await.unwrap();
        assert!(raw.total.tasks > 0, "{query}: the demo has tasks");
        assert!(!raw.truncated && !stored.truncated, "{query}");
        assert_eq!(stored.total, raw.total, "{query}: total");
        let (raw, stored) = (by_group(raw.rows), by_group(stored.rows));
        assert_eq!(stored.len(), raw.len(), "{query}: groups");
        for (s, r) in stored.iter().zip(&raw) {
            assert_eq!((&s.keys, s.bucket), (&r.keys, r.bucket), "{query}");
            assert_eq!(
                s.measures, r.measures,
                "{query}: {:?} {:?}",
                r.keys, r.bucket
            );
        }
        raw.len()
    }

    /// The run list both ways: the same runs with the same numbers, in the same order of the
    /// sort key (rows that tie on it may come in another order).
    async fn same_runs(store: &Store, query: &str, now: DateTime<Utc>) {
        let q = RunListQuery::parse(&pairs(Some(query)), TIMEOUT, now).unwrap();
        let raw = runs::list_from(store, q.clone(), Source::Events)
            .await
            .unwrap();
        let stored = runs::list_from(store, q, Source::Auto).await.unwrap();
        assert!(raw.total > 0, "{query}: the demo has runs");
        assert_eq!(stored.total, raw.total, "{query}: total");
        let text = |rows: &[crate::store::queries::runs::RunListRow]| {
            let mut v: Vec<String> = rows.iter().map(|r| format!("{r:?}")).collect();
            v.sort();
            v
        };
        assert_eq!(text(&stored.runs), text(&raw.runs), "{query}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn units_answer_like_the_events_for_every_group_by_on_demo_data() {
        let (_dir, store, cfg) = crate::demo::load::demo_store().await;
        // Some tasks of the last hours are still open, older ones without an outcome unknown.
        let now = cfg.end + Duration::minutes(30);
        let mid = crate::store::arrow::ts_string(cfg.end - Duration::days(7));
        // Change folded tasks the ways the writer's update paths do — some calls re-priced
        // (their units staged), some outcomes replaced (their tasks marked) — so the task
        // rollup holds subtracted partial rows, which readers must net out.
        store.read(|_| Ok(())).await.unwrap();
        same_tasks(&store, "", now).await;
        store
            .writer()
            .exec(|conn| {
                stage_calls(conn, "events e WHERE hash(e.request_id) % 7 = 0")?;
                conn.execute_batch(
                    "UPDATE events SET cost = cost + 1 WHERE hash(request_id) % 7 = 0;
                     INSERT INTO units_outcomes_pending (o_project, o_task)
                         SELECT project, task_id FROM outcomes WHERE hash(task_id) % 5 = 0;
                     UPDATE outcomes SET outcome = CASE outcome WHEN 'success' THEN 'failure'
                         ELSE 'success' END WHERE hash(task_id) % 5 = 0;",
                )?;
                Ok(())
            })
            .await
            .unwrap();
        same_tasks(&store, "", now).await;
        let negative: i64 = store
            .read(|conn| {
                Ok(conn.query_row(
                    "SELECT count(*) FROM task_rollup_hourly WHERE tasks < 0",
                    [],
                    |r| r.get(0),
                )?)
            })
            .await
            .unwrap();
        assert!(
            negative > 0,
            "the demo's late outcomes exercise subtraction"
        );
        // Range edges inside hours, and cut-offs whose hour holds tasks without an outcome.
        let odd = |d: Duration| {
            crate::store::arrow::ts_string(
                cfg.end - d + Duration::minutes(17) + Duration::seconds(3),
            )
        };
        let (odd_from, odd_to) = (odd(Duration::days(9)), odd(Duration::days(2)));
        let earlier = cfg.end - Duration::days(3) + Duration::minutes(41);

        for round in [
            "maintained while loading",
            "compacted",
            "rebuilt from the events",
        ] {
            eprintln!("comparing the units {round}");
            for dim in crate::store::task_rollup::DIMS {
                for at in [now, earlier, cfg.end - Duration::hours(5)] {
                    let query = format!(
                        "group_by={}&from={odd_from}&to={odd_to}&limit=100000",
                        dim.name()
                    );
                    // The rollup answers the whole hours of these (the test would pass
                    // vacuously if it never did).
                    let q = TaskQuery::parse(&pairs(Some(&query)), TIMEOUT, at).unwrap();
                    assert!(crate::store::task_rollup::Plan::of(&q.common, at - TIMEOUT).is_some());
                    same_tasks(&store, &query, at).await;
                    same_tasks(&store, &format!("group_by={}&limit=100000", dim.name()), at).await;
                }
            }
            same_tasks(
                &store,
                &format!("group_by=feature,model&agent=&from={odd_from}&limit=100000"),
                earlier,
            )
            .await;
            for dim in Dimension::ALL {
                for interval in ["none", "day"] {
                    let query = format!("group_by={}&interval={interval}&limit=100000", dim.name());
                    same_tasks(&store, &query, now).await;
                }
            }
            for query in [
                "",
                "group_by=feature,model&interval=week&limit=100000",
                "group_by=customer_id&feature=support-chat&limit=100000",
                "group_by=tag&status=error,success&limit=100000",
                &format!("group_by=feature&from={mid}&interval=hour&limit=100000"),
                &format!("group_by=agent&to={mid}&project=dev-tools,support-bot&limit=100000"),
            ] {
                same_tasks(&store, query, now).await;
            }
            for (order, _) in ORDERS {
                same_runs(&store, &format!("order={order}&limit=100000"), now).await;
            }
            same_runs(&store, &format!("from={mid}&limit=100000"), now).await;
            same_runs(
                &store,
                "project=dev-tools&order=calls:asc&limit=100000",
                now,
            )
            .await;
            if round == "maintained while loading" {
                store
                    .writer()
                    .exec(crate::store::task_rollup::compact)
                    .await
                    .unwrap();
            } else {
                // In shares of the keys, as a large database is rebuilt: every unit once.
                store
                    .writer()
                    .exec(|conn| rebuild_in_parts(conn, 3))
                    .await
                    .unwrap();
            }
        }
        // The demo exercises what the maintenance must get right.
        let (open, wasted, outcomes): (i64, i64, i64) = store
            .read(move |conn| {
                Ok(conn.query_row(
                    "SELECT count(*) FILTER (WHERE outcome IS NULL),
                            sum(wasted_calls)::BIGINT, count(outcome) FROM task_units",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?)
            })
            .await
            .unwrap();
        assert!(
            open > 0 && wasted > 0 && outcomes > 0,
            "{open} {wasted} {outcomes}"
        );
    }

    /// Units are recomputed lazily: after a write they are pending, a read of tasks brings them
    /// up to date, and what is pending when the server stops is folded in on the next start.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pending_units_are_folded_in_before_reads_and_on_start() {
        let dir = tempfile::tempdir().unwrap();
        let counts = |store: Store| async move {
            store
                .read(|conn| {
                    Ok(conn.query_row(
                        "SELECT (SELECT count(*) FROM task_units), (SELECT count(*) FROM run_units),
                                (SELECT count(*) FROM units_pending)",
                        [],
                        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)),
                    )?)
                })
                .await
                .unwrap()
        };
        let batch = |first: u64| {
            let events = (first..first + 10)
                .map(|i| {
                    let mut e = PricedEvent::sample(i);
                    e.event.dims.task_id = Some(format!("task-{}", i / 2));
                    e.event.dims.run_id = Some(format!("run-{i}"));
                    e.event.request_id = Some(format!("req-{i}"));
                    e.event.retry_of = None;
                    e.event.fallback_from = None;
                    e
                })
                .collect();
            crate::store::WriteBatch {
                events,
                received_at: Utc::now(),
                ..Default::default()
            }
        };
        let store = Store::open(dir.path(), &Default::default()).unwrap();
        store.writer().write(batch(0)).await.unwrap();
        assert_eq!(
            counts(store.clone()).await,
            (0, 0, 10),
            "recorded, not yet folded in"
        );
        store.units_current().await.unwrap();
        assert_eq!(
            counts(store.clone()).await,
            (5, 10, 0),
            "folded in before a read"
        );

        store.writer().write(batch(10)).await.unwrap();
        assert_eq!(counts(store.clone()).await, (5, 10, 10));
        store
            .shutdown(std::time::Duration::from_secs(10))
            .await
            .unwrap();
        drop(store);
        let store = Store::open(dir.path(), &Default::default()).unwrap();
        assert_eq!(
            counts(store.clone()).await,
            (10, 20, 0),
            "folded in on start"
        );
    }

    /// A call that arrives days after its task was folded regroups with the stored unit: the
    /// fold must find the stored row (whose first call lies before everything it was handed)
    /// and recompute the unit from all its calls, not add a second unit of the late call.
    #[tokio::test]
    async fn a_late_call_joins_its_unit_folded_days_before() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &Default::default()).unwrap();
        let start = PricedEvent::sample(0).event.ts;
        let call = |i: u64, task: &str, at: DateTime<Utc>, cost: rust_decimal::Decimal| {
            let mut e = PricedEvent::sample(i);
            e.event.ts = at;
            e.event.dims.task_id = Some(task.into());
            e.event.dims.run_id = Some(format!("run-{task}"));
            e.event.request_id = Some(format!("req-{i}"));
            e.event.retry_of = None;
            e.event.fallback_from = None;
            e.cost = Some(cost);
            e
        };
        let write = |events: Vec<PricedEvent>| {
            let store = store.clone();
            async move {
                store
                    .writer()
                    .write(crate::store::WriteBatch {
                        events,
                        received_at: Utc::now(),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                store.units_current().await.unwrap();
            }
        };
        let minute = Duration::minutes(1);
        write(vec![
            call(0, "old", start, rust_decimal::Decimal::new(125, 2)),
            call(1, "old", start + minute, rust_decimal::Decimal::new(250, 2)),
            call(2, "other", start + minute * 2, rust_decimal::Decimal::ONE),
        ])
        .await;
        let late = start + Duration::days(3);
        write(vec![
            call(3, "old", late, rust_decimal::Decimal::new(5, 1)),
            call(4, "new", late, rust_decimal::Decimal::ONE),
        ])
        .await;

        for (table, key, unit) in [
            ("task_units", "task_id", "old"),
            ("run_units", "run_id", "run-old"),
        ] {
            let rows: Vec<(String, String, i64, String)> = store
                .read(move |conn| {
                    let mut stmt = conn.prepare(&format!(
                        "SELECT ts::VARCHAR, last_ts::VARCHAR, calls, calls_cost::VARCHAR
                         FROM {table} WHERE {key} = ?"
                    ))?;
                    let rows = stmt
                        .query_map([unit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                        .collect::<Result<_, _>>()?;
                    Ok(rows)
                })
                .await
                .unwrap();
            assert_eq!(rows.len(), 1, "{table}: one unit of {unit}: {rows:?}");
            let (first, last, calls, cost) = &rows[0];
            assert_eq!(calls, &3, "{table}: {rows:?}");
            // 1.25 + 2.50 + 0.5, from the calls above.
            assert_eq!(
                cost.parse::<rust_decimal::Decimal>().unwrap(),
                rust_decimal::Decimal::new(425, 2)
            );
            assert!(
                first.starts_with(&start.format("%Y-%m-%d %H:%M:%S").to_string()),
                "{first}"
            );
            assert!(
                last.starts_with(&late.format("%Y-%m-%d %H:%M:%S").to_string()),
                "{last}"
            );
        }
        let units: (i64, i64) = store
            .read(|conn| {
                Ok(conn.query_row(
                    "SELECT (SELECT count(*) FROM task_units), (SELECT count(*) FROM run_units)",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?)
            })
            .await
            .unwrap();
        assert_eq!(units, (3, 3), "old, other and new");
    }

    /// Median wall time of `f` over `n` runs, in milliseconds.
    async fn median_ms<F, Fut>(n: usize, mut f: F) -> f64
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let started = std::time::Instant::now();
            f().await;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        times[n / 2]
    }

    /// Timings at about 10M events and 3M tasks: the 30-day demo, its ids renamed in
    /// `TALLY_UNITS_COPIES` (default 83) copies. A measurement, not a check:
    /// `cargo test --release --locked units_at_scale -- --ignored --nocapture`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a benchmark that builds ~10M events (minutes, several GB of disk)"]
    async fn units_at_scale() {
        let copies: u64 = std::env::var("TALLY_UNITS_COPIES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(83);
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::StorageConfig {
            memory_limit: "8GB".into(),
            ..Default::default()
        };
        let store = Store::open(dir.path(), &cfg).unwrap();
        let pricer = crate::pricing::Pricer::builtin(&Default::default()).unwrap();
        let demo = crate::demo::DemoConfig {
            end: crate::demo::DemoConfig::default().end - Duration::days(1),
            ..crate::demo::DemoConfig::default()
        };
        crate::demo::load::load(&store, &pricer, &demo)
            .await
            .unwrap();
        let started = std::time::Instant::now();
        store
            .writer()
            .exec(move |conn| crate::bench::scale::replicate(conn, copies))
            .await
            .unwrap();
        eprintln!("replicated in {:.1} s", started.elapsed().as_secs_f64());
        let started = std::time::Instant::now();
        store.writer().exec(rebuild).await.unwrap();
        eprintln!(
            "rebuilt the units in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        store.writer().checkpoint().await.unwrap();
        let (events, tasks, runs): (i64, i64, i64) = store
            .read(|conn| {
                Ok(conn.query_row(
                    "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM task_units),
                            (SELECT count(*) FROM run_units)",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?)
            })
            .await
            .unwrap();
        eprintln!("{events} events, {tasks} tasks, {runs} runs");

        let now = Utc::now();
        for query in [
            "",
            "group_by=feature",
            "group_by=feature&interval=day",
            "group_by=user_id",
        ] {
            let q = TaskQuery::parse(&pairs(Some(query)), TIMEOUT, now).unwrap();
            let ms = median_ms(5, || {
                let q = q.clone();
                let store = store.clone();
                async move {
                    tasks::query(&store, q).await.unwrap();
                }
            })
            .await;
            eprintln!("/api/v1/tasks?{query}: {ms:.1} ms");
        }
        for query in ["", "order=calls", "feature=support-chat"] {
            let q = RunListQuery::parse(&pairs(Some(query)), TIMEOUT, now).unwrap();
            let ms = median_ms(5, || {
                let q = q.clone();
                let store = store.clone();
                async move {
                    runs::list(&store, q).await.unwrap();
                }
            })
            .await;
            eprintln!("/api/v1/runs?{query}: {ms:.1} ms");
        }

        // A day of new traffic on top, in the demo's commits of 20,000 events.
        let day = crate::demo::DemoConfig {
            seed: 7,
            days: 1,
            ..crate::demo::DemoConfig::default()
        };
        let started = std::time::Instant::now();
        let loaded = crate::demo::load::load(&store, &pricer, &day)
            .await
            .unwrap();
        eprintln!(
            "loaded one more day ({} events, {} outcomes) in {:.2} s",
            loaded.accepted,
            loaded.outcomes,
            started.elapsed().as_secs_f64()
        );
    }

    /// Outcomes written on their own (not carried by events) are folded once enough are
    /// pending, without waiting for a read — in passes, so a large backlog is folded in steps.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_backlog_of_outcomes_is_folded_after_the_write_that_fills_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &Default::default()).unwrap();
        let pending = || {
            store.read(|conn| {
                Ok(
                    conn.query_row("SELECT count(*) FROM units_outcomes_pending", [], |r| {
                        r.get::<_, i64>(0)
                    })?,
                )
            })
        };
        let stage = |n: usize, tag: &'static str| {
            store.writer().exec(move |conn| {
                let tasks: Vec<String> = (0..n).map(|i| format!("{tag}-{i}")).collect();
                let now = Utc::now();
                let keys: Vec<(&str, &str, DateTime<Utc>)> =
                    tasks.iter().map(|t| ("p", t.as_str(), now)).collect();
                outcomes_changed(conn, &keys)
            })
        };
        stage(10, "few").await.unwrap();
        assert_eq!(
            pending().await.unwrap(),
            10,
            "below the threshold they wait"
        );
        // Past the threshold and past one pass: the write's upkeep folds them all.
        stage(REFRESH_AFTER + OUTCOMES_PER_PASS / 2, "many")
            .await
            .unwrap();
        // The upkeep runs after the write is acknowledged; the writer takes the next command
        // only when it is done.
        store.writer().exec(|_| Ok(())).await.unwrap();
        assert_eq!(pending().await.unwrap(), 0);
    }
}
