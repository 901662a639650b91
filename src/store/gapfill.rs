//! Cross-source gap filling: when a duplicate arrives (the same call through a second source,
//! say a LiteLLM log after an OpenTelemetry span), its attribution fills what the stored copy
//! left empty.
//!
//! Only attribution and timing columns are filled, and only where the stored value is NULL (or
//! the tag list is empty): a stored value is never overwritten, and tokens and costs are never
//! touched, so totals do not change when a second copy arrives. It runs inside the writer's
//! transaction, after the batch's fresh events are appended, so a copy that arrives in the same
//! batch as its original fills it too. A retry that repeats the same fields matches rows but
//! changes none (the update only touches rows with a gap it can fill). The hourly rollups and
//! the task and run units of the filled rows are recomputed in the same transaction.

use duckdb::{params, Connection};

use super::{arrow, StoreError};
use crate::domain::event::PricedEvent;
use crate::store::writer::DEDUP_WINDOW;

/// Columns a duplicate may fill. `tags` is handled separately (a list).
const COLUMNS: [&str; 17] = [
    "model_requested",
    "user_id",
    "team_id",
    "api_key_id",
    "customer_id",
    "feature",
    "task_id",
    "run_id",
    "agent",
    "session_id",
    "trace_id",
    "span_id",
    "parent_span_id",
    "error_type",
    "http_status",
    "latency_ms",
    "ttft_ms",
];

/// Tags travel through the scratch table as one string joined by the unit separator.
const TAG_SEP: char = '\u{1f}';

/// Creates the session-local scratch table.
pub(super) fn prepare(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS gapfill_src (
            k VARCHAR, p VARCHAR, r VARCHAR, lo VARCHAR, hi VARCHAR,
            model_requested VARCHAR, user_id VARCHAR, team_id VARCHAR, project VARCHAR,
            api_key_id VARCHAR, customer_id VARCHAR, feature VARCHAR, task_id VARCHAR,
            run_id VARCHAR, agent VARCHAR, session_id VARCHAR, trace_id VARCHAR, span_id VARCHAR,
            parent_span_id VARCHAR, error_type VARCHAR, http_status BIGINT, latency_ms BIGINT,
            ttft_ms BIGINT, tags VARCHAR);",
    )?;
    Ok(())
}

/// Fills the gaps of the stored events that `duplicates` repeat (matched by idempotency key
/// or by provider + provider request id, within the de-duplication window and the same
/// project: a tenant's copy never touches another tenant's row). Returns the
/// number of stored rows changed.
pub(super) fn fill_gaps(
    conn: &Connection,
    duplicates: &[&PricedEvent],
) -> Result<usize, StoreError> {
    let useful: Vec<&PricedEvent> = duplicates
        .iter()
        .copied()
        .filter(|e| {
            (e.event.idem_key.is_some() || e.event.request_id.is_some()) && carries_something(e)
        })
        .collect();
    if useful.is_empty() {
        return Ok(0);
    }
    conn.execute_batch("DELETE FROM gapfill_src")?;
    {
        let mut app = conn.appender("gapfill_src")?;
        for e in &useful {
            let ev = &e.event;
            let d = &ev.dims;
            let tags = (!d.tags.is_empty()).then(|| d.tags.join(&TAG_SEP.to_string()));
            app.append_row(params![
                ev.idem_key,
                ev.provider.clone().unwrap_or_default(),
                ev.request_id,
                arrow::ts_string(ev.ts - DEDUP_WINDOW),
                arrow::ts_string(ev.ts + DEDUP_WINDOW),
                ev.model_requested,
                d.user_id,
                d.team_id,
                d.project,
                d.api_key_id,
                d.customer_id,
                d.feature,
                d.task_id,
                d.run_id,
                d.agent,
                d.session_id,
                d.trace_id,
                d.span_id,
                d.parent_span_id,
                ev.error_type,
                ev.http_status.map(i64::from),
                ev.latency_ms.map(i64::from),
                ev.ttft_ms.map(i64::from),
                tags,
            ])?;
        }
        app.flush()?;
    }
    let set: Vec<String> = COLUMNS
        .iter()
        .map(|c| format!("{c} = coalesce(events.{c}, m.{c})"))
        .collect();
    let agg: Vec<String> = COLUMNS
        .iter()
        .map(|c| format!("max(g.{c}) AS {c}"))
        .collect();
    let gaps: Vec<String> = COLUMNS
        .iter()
        .map(|c| format!("(events.{c} IS NULL AND m.{c} IS NOT NULL)"))
        .collect();
    // The stored copies and what their duplicates bring, with the copies' times: the hours
    // whose rollups the update changes.
    conn.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE gapfill_m AS
         SELECT rid, max(ets) AS ets, {agg}, max(g.tags) AS tags
         FROM (
             SELECT e.rowid AS rid, e.ts AS ets, g.* FROM events e
             JOIN gapfill_src g ON e.idem_key = g.k AND e.project = g.project
             WHERE e.ts BETWEEN CAST(g.lo AS TIMESTAMPTZ) AND CAST(g.hi AS TIMESTAMPTZ)
             UNION ALL
             SELECT e.rowid AS rid, e.ts AS ets, g.* FROM events e
             JOIN gapfill_src g ON coalesce(e.provider, '') = g.p AND e.request_id = g.r
                               AND e.project = g.project
             WHERE e.ts BETWEEN CAST(g.lo AS TIMESTAMPTZ) AND CAST(g.hi AS TIMESTAMPTZ)
         ) g
         GROUP BY rid",
        agg = agg.join(", "),
    ))?;
    // The units of the stored copies before and after the fill: a filled task_id or run_id
    // moves a call to another unit. Both are staged now, the second from the values the update
    // will set, because the update may give the rows new row ids (DuckDB updates a row with a
    // list column, `tags`, by deleting and re-inserting it).
    let (lo, hi): (Option<String>, Option<String>) = conn.query_row(
        "SELECT min(ets)::VARCHAR, max(ets)::VARCHAR FROM gapfill_m",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let (Some(lo), Some(hi)) = (lo, hi) else {
        return Ok(0); // no stored copy in the window: nothing to fill
    };
    // The time bound lets DuckDB skip row groups; the row ids then pick the copies.
    let copies = format!(
        "events e JOIN gapfill_m m ON e.rowid = m.rid
         WHERE e.ts BETWEEN CAST('{lo}' AS TIMESTAMPTZ) AND CAST('{hi}' AS TIMESTAMPTZ)"
    );
    // A filled feature, agent or id changes a unit's first call or moves a call between units:
    // the units before and after the fill are recomputed (rows the update leaves as they were
    // are recomputed unchanged).
    super::units::stage_calls(conn, &copies)?;
    super::units::stage_calls_as(
        conn,
        &copies,
        [
            "coalesce(e.task_id, m.task_id)",
            "coalesce(e.run_id, m.run_id)",
            "coalesce(e.trace_id, m.trace_id)",
        ],
    )?;
    let sql = format!(
        "UPDATE events SET {set},
             tags = CASE WHEN len(events.tags) = 0 AND m.tags IS NOT NULL
                         THEN string_split(m.tags, chr(31)) ELSE events.tags END
         FROM gapfill_m m
         WHERE events.rowid = m.rid
           AND ({gaps} OR (len(events.tags) = 0 AND m.tags IS NOT NULL))",
        set = set.join(", "),
        gaps = gaps.join(" OR "),
    );
    let updated = conn.execute(&sql, [])?;
    if updated > 0 {
        // A filled feature or user moves the event's sums to another rollup key.
        let micros = {
            let mut stmt = conn.prepare("SELECT DISTINCT epoch_us(ets) FROM gapfill_m")?;
            let rows = stmt.query_map([], |r| r.get::<_, i64>(0))?;
            rows.collect::<Result<Vec<i64>, _>>()?
        };
        super::rollup::rebuild_hours(conn, &super::rollup::hours_of(micros))?;
    }
    Ok(updated)
}

/// True when a duplicate has at least one value that could fill a gap.
fn carries_something(e: &PricedEvent) -> bool {
    let ev = &e.event;
    let d = &ev.dims;
    [
        &ev.model_requested,
        &d.user_id,
        &d.team_id,
        &d.project,
        &d.api_key_id,
        &d.customer_id,
        &d.feature,
        &d.task_id,
        &d.run_id,
        &d.agent,
        &d.session_id,
        &d.trace_id,
        &d.span_id,
        &d.parent_span_id,
        &ev.error_type,
    ]
    .iter()
    .any(|v| v.is_some())
        || !d.tags.is_empty()
        || ev.http_status.is_some()
        || ev.latency_ms.is_some()
        || ev.ttft_ms.is_some()
}
