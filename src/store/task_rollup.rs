//! The hourly task rollup: `task_units` pre-summed per UTC hour of each task's first call over
//! the dimensions dashboards group tasks by, so `/api/v1/tasks` over a month of traffic sums
//! a few hundred thousand rows instead of one row per task (at 10M events: 6.6M task rows,
//! 186k rollup rows).
//!
//! **Maintenance** rides on the unit fold (`store::units`), in its transaction: before the
//! fold deletes or updates task rows it [`add`]s their contributions with sign −1, afterwards
//! it adds the new rows' with sign +1. The table therefore holds signed partial rows; every
//! reader sums them, and [`compact_if_due`] merges them once they have doubled since the last
//! compaction. A full rebuild of the units rebuilds this table from them.
//!
//! **Reading** ([`Plan`]) is exact: the whole UTC hours inside the question's range come from
//! here, the partial hours at its edges from `task_units`. A task without an outcome is open
//! while its last call is newer than the cut-off; the rollup keeps the hour of that last call,
//! which decides every task except those whose last call falls in the cut-off's own hour —
//! those few are read from `task_units` too. A question can use the rollup when all its group
//! keys and filters are [`DIMS`]: for its total always, for its rows when it has no interval.

use chrono::{DateTime, Utc};
use duckdb::Connection;

use super::queries::Sql;
use super::StoreError;
use crate::analytics::params::{Common, Filter, TimeRange};
use crate::domain::dimension::Dimension;

/// The rollup table.
pub(crate) const TABLE: &str = "task_rollup_hourly";

/// The dimensions the rollup keeps (columns under their events names).
pub const DIMS: [Dimension; 5] = [
    Dimension::Project,
    Dimension::Feature,
    Dimension::Agent,
    Dimension::Model,
    Dimension::Provider,
];

const HOUR_US: i64 = 3_600_000_000;

/// The start of the UTC hour of a `TIMESTAMPTZ` column, in microseconds; a floor for times
/// before 1970 too (DuckDB's `%` keeps the dividend's sign).
fn hour_of(column: &str) -> String {
    format!("(epoch_us({column}) - ((epoch_us({column}) % {HOUR_US}) + {HOUR_US}) % {HOUR_US})")
}

/// Adds the contribution of the task units `from` selects (SQL after `FROM`, naming the units
/// `u`), multiplied by `sign`: −1 before the fold removes or changes them, +1 after.
pub(crate) fn add(conn: &Connection, sign: i64, from: &str) -> Result<(), StoreError> {
    conn.execute_batch(&format!(
        "INSERT INTO {TABLE}
         SELECT {hour}, u.project, u.feature, u.agent, u.model, u.provider, u.outcome,
                CASE WHEN u.outcome IS NULL THEN {last_hour} END, u.calls,
                {sign} * count(*),
                {sign} * coalesce(sum(u.calls_cost), 0),
                {sign} * coalesce(sum(u.rework_cost), 0),
                {sign} * coalesce(sum(u.retry_cost), 0),
                {sign} * coalesce(sum(u.value), 0),
                {sign} * count(u.value),
                {sign} * coalesce(sum(u.wasted_calls), 0),
                {sign} * coalesce(sum(u.unpriced_calls), 0)
         FROM {from} GROUP BY ALL;",
        hour = hour_of("u.ts"),
        last_hour = hour_of("u.last_ts"),
    ))?;
    Ok(())
}

/// Records the table's size as its size at the last compaction (see [`compact_if_due`]).
fn mark_compacted(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(&format!(
        "DELETE FROM task_rollup_state;
         INSERT INTO task_rollup_state SELECT count(*) FROM {TABLE};"
    ))?;
    Ok(())
}

/// Empties the rollup and fills it from every task unit (after the units were rebuilt).
pub(crate) fn rebuild(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(&format!("DELETE FROM {TABLE};"))?;
    add(conn, 1, "task_units u")?;
    mark_compacted(conn)
}

/// Fills the rollup once, on the first start after the migration that added it, from the
/// task units as they are (the caller holds a transaction).
pub(crate) fn ensure_filled(conn: &Connection) -> Result<(), StoreError> {
    let filled: bool =
        conn.query_row("SELECT EXISTS (SELECT 1 FROM task_rollup_state)", [], |r| {
            r.get(0)
        })?;
    if !filled {
        rebuild(conn)?;
    }
    Ok(())
}

/// Merges the signed partial rows into one row per key (dropping keys whose tasks cancelled
/// out) when the table has more than doubled since the last compaction.
pub(crate) fn compact_if_due(conn: &Connection) -> Result<(), StoreError> {
    let (rows, compacted): (i64, Option<i64>) = conn.query_row(
        &format!(
            "SELECT (SELECT count(*) FROM {TABLE}),
                    (SELECT max(compacted_rows) FROM task_rollup_state)"
        ),
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if rows > 2 * compacted.unwrap_or(0) + 10_000 {
        compact(conn)?;
    }
    Ok(())
}

/// Merges every key's partial rows into one.
pub(crate) fn compact(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE task_rollup_compacted AS
             SELECT hour_us, project, feature, agent, model, provider, outcome, last_hour_us,
                    calls, sum(tasks), sum(calls_cost), sum(rework_cost), sum(retry_cost),
                    sum(value), sum(valued_tasks), sum(wasted_calls), sum(unpriced_calls)
             FROM {TABLE} GROUP BY ALL HAVING sum(tasks) <> 0;
         DELETE FROM {TABLE};
         INSERT INTO {TABLE} SELECT * FROM task_rollup_compacted;
         DROP TABLE task_rollup_compacted;"
    ))?;
    mark_compacted(conn)
}

/// How a question is split between the rollup and `task_units`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The whole hours the rollup answers: `[lo, hi)`, open where `None`.
    lo: Option<DateTime<Utc>>,
    hi: Option<DateTime<Utc>>,
    /// The hour holding the open/unknown cut-off.
    cut_hour: DateTime<Utc>,
}

fn floor_hour(t: DateTime<Utc>) -> DateTime<Utc> {
    let us = t.timestamp_micros();
    DateTime::from_timestamp_micros(us - us.rem_euclid(HOUR_US)).unwrap_or(t)
}

fn ceil_hour(t: DateTime<Utc>) -> DateTime<Utc> {
    let floor = floor_hour(t);
    if floor == t {
        t
    } else {
        floor + chrono::Duration::hours(1)
    }
}

impl Plan {
    /// The plan for a question's unbucketed sums, or `None` when the rollup cannot answer
    /// them: a group key or filter outside [`DIMS`], or a range without one whole hour.
    /// (Bucketed rows are the caller's to exclude; a total ignores the interval.)
    pub fn of(c: &Common, cutoff: DateTime<Utc>) -> Option<Plan> {
        if c.group_by.iter().any(|d| !DIMS.contains(d))
            || c.filters.iter().any(|f| !DIMS.contains(&f.dim))
        {
            return None;
        }
        let lo = c.range.from.map(ceil_hour);
        let hi = c.range.to.map(floor_hour);
        if let (Some(lo), Some(hi)) = (lo, hi) {
            if lo >= hi {
                return None;
            }
        }
        Some(Plan {
            lo,
            hi,
            cut_hour: floor_hour(cutoff),
        })
    }

    /// Pushes the rollup's partial sums in the shape of `queries::tasks`' `PARTIAL_SUMS`
    /// (`state, calls, tasks, …`), after the group keys, for the whole hours, leaving out the
    /// tasks whose state the hour of their last call cannot decide. `bucket` is always NULL.
    pub fn push_sums(&self, sql: &mut Sql, group_by: &[Dimension], filters: &[Filter]) {
        sql.push("SELECT ");
        for dim in group_by {
            sql.push(dim.column()).push(", ");
        }
        sql.push("NULL::BIGINT, CASE WHEN outcome IS NOT NULL THEN outcome WHEN last_hour_us > ")
            .push(&self.cut_hour.timestamp_micros().to_string())
            .push(
                " THEN 'open' ELSE 'unknown' END AS state, calls, sum(tasks)::BIGINT, \
                 sum(calls_cost)::VARCHAR, sum(rework_cost)::VARCHAR, sum(retry_cost)::VARCHAR, \
                 sum(value)::VARCHAR, sum(valued_tasks)::BIGINT, sum(wasted_calls)::BIGINT, \
                 sum(unpriced_calls)::BIGINT FROM ",
            )
            .push(TABLE);
        // The range is on `hour_us`, added next, not on `ts`.
        super::queries::where_clause(sql, &Default::default(), filters);
        if let Some(lo) = self.lo {
            sql.push(" AND hour_us >= ")
                .push(&lo.timestamp_micros().to_string());
        }
        if let Some(hi) = self.hi {
            sql.push(" AND hour_us < ")
                .push(&hi.timestamp_micros().to_string());
        }
        sql.push(" AND (outcome IS NOT NULL OR last_hour_us <> ")
            .push(&self.cut_hour.timestamp_micros().to_string())
            .push(") GROUP BY ALL HAVING sum(tasks) <> 0");
    }

    /// The ranges of task units the rollup leaves to the caller: the partial hours at the
    /// range's edges (`false`), and its whole hours for the tasks without an outcome whose last
    /// call is in the cut-off's hour (`true`: add [`Plan::push_cut_hour`]).
    pub fn unit_ranges(&self, range: &TimeRange) -> Vec<(TimeRange, bool)> {
        // An edge exists when the range starts before the rollup's first whole hour (or ends
        // after its last one); both bounds are then known.
        let edge = |from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>| match (from, to) {
            (Some(f), Some(t)) if f < t => Some((
                TimeRange {
                    from: Some(f),
                    to: Some(t),
                },
                false,
            )),
            _ => None,
        };
        let whole_hours = TimeRange {
            from: self.lo,
            to: self.hi,
        };
        [edge(range.from, self.lo), edge(self.hi, range.to)]
            .into_iter()
            .flatten()
            .chain([(whole_hours, true)])
            .collect()
    }

    /// Pushes the condition (after a `WHERE` over task units) that keeps the tasks without an
    /// outcome whose last call is in the cut-off's hour.
    pub fn push_cut_hour(&self, sql: &mut Sql) {
        sql.push(" AND outcome IS NULL AND last_ts >= ")
            .bind_ts(self.cut_hour)
            .push(" AND last_ts < ")
            .bind_ts(self.cut_hour + chrono::Duration::hours(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn hours_are_floored_and_ceiled_in_utc() {
        let t = Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap();
        let h = Utc.with_ymd_and_hms(2026, 3, 4, 5, 0, 0).unwrap();
        assert_eq!(floor_hour(t), h);
        assert_eq!(ceil_hour(t), h + chrono::Duration::hours(1));
        assert_eq!(ceil_hour(h), h);
        let before_1970 = Utc.with_ymd_and_hms(1969, 12, 31, 23, 30, 0).unwrap();
        assert_eq!(
            floor_hour(before_1970),
            Utc.with_ymd_and_hms(1969, 12, 31, 23, 0, 0).unwrap()
        );
    }

    #[test]
    fn only_questions_over_rollup_dimensions_and_a_whole_hour_use_it() {
        let cutoff = Utc::now();
        let parse = |q: &str| {
            let pairs = crate::analytics::params::pairs(Some(q));
            crate::analytics::params::parse_common(&pairs, &[], &[])
                .unwrap()
                .0
        };
        assert!(Plan::of(&parse("group_by=feature&model=m"), cutoff).is_some());
        assert!(Plan::of(&parse(""), cutoff).is_some());
        assert!(Plan::of(&parse("group_by=user_id"), cutoff).is_none());
        assert!(Plan::of(&parse("customer_id=c"), cutoff).is_none());
        let short = parse("from=2026-01-01T10:10:00Z&to=2026-01-01T10:50:00Z");
        assert!(Plan::of(&short, cutoff).is_none());
        let hour = parse("from=2026-01-01T10:00:00Z&to=2026-01-01T11:00:00Z");
        assert!(Plan::of(&hour, cutoff).is_some());
    }
}
