//! The bench's scaled database (`--scale-to N`): the ingested traffic replicated in SQL to N
//! events, so the query targets at 100M events are measured in a run that fits a working day.
//!
//! Sending 100M events through HTTP takes this machine two hours or more before the first
//! query (docs/benchmarks.md), so the query rows at that size were never measured. Here the
//! events and outcomes Tally stored are copied `copies − 1` more times inside DuckDB, every
//! identifier that must be unique suffixed with the copy's number (so each copy is a distinct
//! set of tasks, runs and requests over the same 30 days and the same users and features: the
//! density the generator gives 100M events). The copies go in day by day, each day sorted by
//! time, so the table's row groups span short time ranges as ingested ones do. The hourly
//! rollups and the task and run units are then rebuilt from the events by the same code that
//! builds them for a database from an older release, with more memory than the server gets
//! (the build is not what is measured), and a normally configured `tally serve` answers the
//! queries. Then one more day at that density goes in over HTTP (the bench's step 9), so
//! ingest and its memory are measured against tables of that size too; DuckDB's loader is not
//! run at the scaled size, so the ingest ratio stays the one at `--events`.

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use duckdb::Connection;
use rust_decimal::Decimal;
use serde_json::Value;

use crate::config::StorageConfig;
use crate::store::{open_connection, Store, StoreError};

/// DuckDB's memory limit while replicating and rebuilding (offline; the server that answers the
/// queries afterwards runs with the default).
const BUILD_MEMORY_LIMIT: &str = "12GB";

/// Event columns that identify one request, task, run or span: renamed in every copy.
const EVENT_IDS: [&str; 9] = [
    "idem_key",
    "request_id",
    "task_id",
    "run_id",
    "trace_id",
    "span_id",
    "parent_span_id",
    "retry_of",
    "fallback_from",
];

/// Storage settings while replicating and rebuilding: the defaults with [`BUILD_MEMORY_LIMIT`].
fn build_config() -> StorageConfig {
    StorageConfig {
        memory_limit: BUILD_MEMORY_LIMIT.into(),
        ..StorageConfig::default()
    }
}

/// What building the scaled database took and gave.
pub(super) struct Scaled {
    pub copies: u64,
    pub events: u64,
    pub outcomes: u64,
    /// Replicating and rebuilding; `None` for a database built by an earlier run.
    pub elapsed: Option<Duration>,
}

/// How many copies of `base` events come closest to `target` (at least two).
pub(super) fn copies_for(base: u64, target: u64) -> u64 {
    ((target + base / 2) / base.max(1)).max(2)
}

/// Replicates the database in `dir` (a stopped server's, checkpointed) to `copies` times its
/// events and outcomes, rebuilds what is derived from them, and checkpoints.
pub(super) fn build(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    copies: u64,
) -> anyhow::Result<Scaled> {
    let started = Instant::now();
    let cfg = build_config();
    {
        let conn = open_connection(&dir.join("tally.duckdb"), &cfg)?;
        conn.execute_batch("BEGIN TRANSACTION")?;
        replicate(&conn, copies).context("replicating the events")?;
        // The next open rebuilds both from the events, as for a database from before them.
        conn.execute_batch(
            "UPDATE units_state SET built = false;
             UPDATE rollup_state SET built = false;
             COMMIT;
             CHECKPOINT;",
        )?;
    }
    eprintln!(
        "bench: replicated ×{copies} in {:.1} s; rebuilding rollups and units",
        started.elapsed().as_secs_f64()
    );
    let (events, outcomes) = rebuild(rt, dir)?;
    Ok(Scaled {
        copies,
        events,
        outcomes,
        elapsed: Some(started.elapsed()),
    })
}

/// Opens the database in `dir` with the build's memory, which rebuilds the rollups and units
/// its replication marked unbuilt (the migration code's path), and closes it checkpointed;
/// returns its events and outcomes.
fn rebuild(rt: &tokio::runtime::Runtime, dir: &Path) -> anyhow::Result<(u64, u64)> {
    let cfg = build_config();
    let store = Store::open(dir, &cfg).context("rebuilding the scaled database")?;
    let (events, outcomes): (i64, i64) = store.read_blocking(|conn| {
        Ok(conn.query_row(
            "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM outcomes)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    })?;
    rt.block_on(store.shutdown(Duration::from_secs(3600)))?;
    Ok((events as u64, outcomes as u64))
}

/// The database an earlier run built in `dir` with `copies` (`--reuse-scaled`), after checking
/// that it has no event after `end`: step 9 adds the day after `end`, and taking it twice
/// would double that day's density (a later `end` takes the day after that one). A run
/// stopped while rebuilding (out of disk, say) left the replicated events with their rollups
/// and units unbuilt: they are built here, as [`build`] would have.
pub(super) fn existing(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    copies: u64,
    end: DateTime<Utc>,
) -> anyhow::Result<Scaled> {
    let path = dir.join("tally.duckdb");
    anyhow::ensure!(
        path.exists(),
        "no scaled database at {}: run with --scale-to first",
        path.display()
    );
    let conn = open_connection(&path, &StorageConfig::default())?;
    let (events, outcomes, last, built): (i64, i64, Option<i64>, Option<bool>) = conn.query_row(
        "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM outcomes),
                (SELECT epoch_us(max(ts)) FROM events),
                (SELECT bool_and(built) FROM units_state)
                    AND (SELECT bool_and(built) FROM rollup_state)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    drop(conn);
    if let Some(last) = last.and_then(DateTime::<Utc>::from_timestamp_micros) {
        anyhow::ensure!(
            last <= end,
            "{} already has events after --end {end} (the last at {last}): its day after was \
             taken; give a later --end or build it again",
            path.display()
        );
    }
    let (events, outcomes, elapsed) = if built == Some(true) {
        (events as u64, outcomes as u64, None)
    } else {
        eprintln!("bench: the scaled database's rollups and units are not built: building them");
        let started = Instant::now();
        let (events, outcomes) = rebuild(rt, dir)?;
        (events, outcomes, Some(started.elapsed()))
    };
    Ok(Scaled {
        copies,
        events,
        outcomes,
        elapsed,
    })
}

/// Adds copies `1..copies` of every event and outcome (the stored rows are copy 0), a day at a
/// time in time order. Identifiers get `~<copy>`; an outcome's `seq` is moved past every
/// stored one, so the latest-outcome-wins order within a task is kept. NULLs stay NULL.
pub(crate) fn replicate(conn: &Connection, copies: u64) -> Result<(), StoreError> {
    let renamed = |ids: &[&str]| {
        ids.iter()
            .map(|c| format!("{c} || '~' || i AS {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // Days from the earliest to the latest row of either table: outcomes come after their
    // calls, some past the events' last day.
    let (first, last, seq_span): (Option<i64>, Option<i64>, i64) = conn.query_row(
        "WITH t AS (SELECT ts FROM events UNION ALL SELECT ts FROM outcomes)
         SELECT epoch_us(min(ts)) // 1000000, epoch_us(max(ts)) // 1000000,
                (SELECT coalesce(max(seq), 0) + 1 FROM outcomes) FROM t",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let (Some(first), Some(last)) = (first, last) else {
        return Ok(());
    };
    let statements = [
        format!(
            "INSERT INTO events SELECT * EXCLUDE (i) REPLACE ({})
             FROM events, range(1, {copies}) r(i) WHERE {{day}} ORDER BY ts",
            renamed(&EVENT_IDS)
        ),
        format!(
            "INSERT INTO outcomes SELECT * EXCLUDE (i) REPLACE ({}, seq + i * {seq_span} AS seq)
             FROM outcomes, range(1, {copies}) r(i) WHERE {{day}} ORDER BY ts",
            renamed(&["task_id", "idem_key"])
        ),
    ];
    // Literal instants: DuckDB's time-zone-aware functions live in an extension Tally does
    // not load.
    let at = |s: i64| {
        DateTime::<Utc>::from_timestamp(s, 0)
            .map(|t| format!("CAST('{}' AS TIMESTAMPTZ)", t.to_rfc3339()))
            .ok_or_else(|| StoreError::Other(format!("day {s} out of range")))
    };
    let mut day = first - first.rem_euclid(86_400);
    while day <= last {
        let within = format!("ts >= {} AND ts < {}", at(day)?, at(day + 86_400)?);
        for statement in &statements {
            conn.execute_batch(&statement.replace("{day}", &within))?;
        }
        day += 86_400;
    }
    Ok(())
}

/// The scaled database's size on disk.
pub(super) struct Disk {
    pub file_bytes: u64,
    /// Blocks in use: the rebuild deleted the units it replaced, and their blocks stay in the
    /// file, free, until new data takes them; a database that grew by ingest has few.
    pub used_bytes: u64,
}

/// Measures the database in `dir` (closed, checkpointed).
pub(super) fn disk(dir: &Path) -> anyhow::Result<Disk> {
    let path = dir.join("tally.duckdb");
    let file_bytes = std::fs::metadata(&path)?.len();
    let conn = open_connection(&path, &StorageConfig::default())?;
    let used_bytes: i64 = conn.query_row(
        "SELECT used_blocks * block_size FROM pragma_database_size()",
        [],
        |r| r.get(0),
    )?;
    Ok(Disk {
        file_bytes,
        used_bytes: used_bytes as u64,
    })
}

/// Checks that `scaled`, a row (or the total) of a costs answer, is `copies` times `base`:
/// every count (a JSON integer) and every money field (a decimal string named `…cost`)
/// exactly, every other field (a group's key) unchanged.
pub(super) fn check_multiplied(base: &Value, scaled: &Value, copies: u64) -> anyhow::Result<()> {
    let (Some(base), Some(scaled)) = (base.as_object(), scaled.as_object()) else {
        bail!("not objects: {base} and {scaled}");
    };
    anyhow::ensure!(
        base.len() == scaled.len() && base.values().any(Value::is_number),
        "not the same measures: {base:?} and {scaled:?}"
    );
    for (name, b) in base {
        let s = scaled.get(name).unwrap_or(&Value::Null);
        let ok = match (b, s) {
            (Value::String(b), Value::String(s)) if name.ends_with("cost") => {
                let (b, s) = (Decimal::from_str(b)?, Decimal::from_str(s)?);
                b * Decimal::from(copies) == s
            }
            (Value::Number(b), Value::Number(s)) => match (b.as_i64(), s.as_i64()) {
                (Some(b), Some(s)) => i128::from(b) * i128::from(copies) == i128::from(s),
                _ => bail!("{name}: not an integer count ({b}, {s})"),
            },
            (b, s) => b == s,
        };
        anyhow::ensure!(ok, "{name}: {s} is not {copies} × {b}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_round_to_the_nearest_and_never_below_two() {
        assert_eq!(copies_for(10_000_000, 100_000_000), 10);
        assert_eq!(copies_for(9_600_000, 100_000_000), 10);
        assert_eq!(copies_for(30_000, 100_000), 3);
        assert_eq!(copies_for(30_000, 40_000), 2);
        assert_eq!(copies_for(1_000_000, 1_000_000), 2);
    }

    #[test]
    fn multiplied_measures_must_match_exactly() {
        let base = serde_json::json!({"feature": "7", "cost": "1.250000000001", "requests": 7});
        let tripled = serde_json::json!({"feature": "7", "cost": "3.750000000003", "requests": 21});
        check_multiplied(&base, &tripled, 3).unwrap();
        for wrong in [
            serde_json::json!({"feature": "7", "cost": "3.750000000002", "requests": 21}),
            serde_json::json!({"feature": "7", "cost": "3.750000000003", "requests": 20}),
            serde_json::json!({"feature": "21", "cost": "3.750000000003", "requests": 21}),
            serde_json::json!({"feature": "7", "cost": "3.750000000003"}),
        ] {
            assert!(check_multiplied(&base, &wrong, 3).is_err(), "{wrong}");
        }
        assert!(check_multiplied(&serde_json::json!({}), &serde_json::json!({}), 3).is_err());
    }
}
