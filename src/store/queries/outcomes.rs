//! SQL that writes task outcomes: de-duplication, arrival order, and the commit hook that turns
//! the `task_outcome` of fresh events into outcome rows.
//!
//! Everything here runs on the writer thread (through `WriterHandle::exec` or as a
//! [`CommitHook`]), so the arrival sequence (`seq`, the tie-breaker between outcomes with the
//! same timestamp) can be assigned as `max(seq) + 1…` without a race. Outcomes of events are
//! written in the events' own transaction, after their de-duplication, so a resent event never
//! adds a second outcome. The materialised tasks and runs of the outcomes' tasks take their
//! (possibly new) winning outcome in the same transaction (`store::units`).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use duckdb::{params, Connection};

use super::tasks::ts_within;
use crate::domain::event::PricedEvent;
use crate::domain::money::COST_SCALE;
use crate::domain::outcome::{task_key, OutcomeRecord, OutcomeSource};
use crate::ingest::outcome::DERIVED_KEY_PREFIX;
use crate::ingest::Reject;
use crate::keys::DEFAULT_PROJECT;
use crate::store::arrow::ts_string;
use crate::store::{CommitHook, StoreError};

/// What happened to a batch of outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutcomeWrite {
    pub accepted: usize,
    pub duplicates: usize,
}

/// Stores a batch of outcomes and the batch's rejected records (the dead-letter table, as for
/// events), skipping outcomes whose idempotency key was seen before in the same project.
/// Call it inside one transaction (`WriterHandle::exec`).
pub fn insert(
    conn: &Connection,
    received_at: DateTime<Utc>,
    outcomes: &[OutcomeRecord],
    rejects: &[Reject],
    http_request: Option<&str>,
    reject_project: Option<&str>,
) -> Result<OutcomeWrite, StoreError> {
    let stored = stored_keys(conn, outcomes)?;
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    let mut fresh = Vec::with_capacity(outcomes.len());
    for o in outcomes {
        if let Some(key) = o.idem_key.as_deref() {
            let k = (o.project.as_str(), key);
            if stored.contains(&(k.0.to_string(), k.1.to_string())) || !seen.insert(k) {
                continue;
            }
        }
        fresh.push(o);
    }
    append(conn, received_at, &fresh)?;
    if !rejects.is_empty() {
        let mut app = conn.appender("rejects")?;
        for r in rejects {
            app.append_row(params![
                ts_string(received_at),
                http_request,
                r.source_format,
                r.index as i64,
                r.field,
                r.reason,
                r.raw,
                reject_project,
            ])?;
        }
        app.flush()?;
    }
    Ok(OutcomeWrite {
        accepted: fresh.len(),
        duplicates: outcomes.len() - fresh.len(),
    })
}

/// (project, idem_key) pairs of the batch that are already stored.
fn stored_keys(
    conn: &Connection,
    outcomes: &[OutcomeRecord],
) -> Result<HashSet<(String, String)>, StoreError> {
    let mut found = HashSet::new();
    if outcomes.iter().all(|o| o.idem_key.is_none()) {
        return Ok(found);
    }
    conn.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS outcome_keys (p VARCHAR, k VARCHAR);
         DELETE FROM outcome_keys;",
    )?;
    // Read whole, the table made each write of 10,000 outcomes take 1.5 s at 60M stored ones.
    // A derived key names its outcome's timestamp, so when every key is derived only the
    // batch's time span is read (zone maps skip the rest); an explicit id may come back with
    // any timestamp (or none, which means "now").
    let (mut derived, mut lo, mut hi) = (true, DateTime::<Utc>::MAX_UTC, DateTime::<Utc>::MIN_UTC);
    {
        let mut app = conn.appender("outcome_keys")?;
        for o in outcomes {
            if let Some(k) = &o.idem_key {
                app.append_row(params![o.project, k])?;
                derived &= k.starts_with(DERIVED_KEY_PREFIX);
                (lo, hi) = (lo.min(o.ts), hi.max(o.ts));
            }
        }
        app.flush()?;
    }
    // Some key exists (checked above), so the span is a real one.
    let span = if derived {
        format!("WHERE {}", ts_within("o.ts", lo, hi))
    } else {
        String::new()
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT DISTINCT o.project, o.idem_key FROM outcomes o
         JOIN outcome_keys k ON o.project = k.p AND o.idem_key = k.k {span}"
    ))?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    for row in rows {
        found.insert(row?);
    }
    Ok(found)
}

/// Appends rows in arrival order, numbering them after every stored row.
fn append(
    conn: &Connection,
    received_at: DateTime<Utc>,
    outcomes: &[&OutcomeRecord],
) -> Result<(), StoreError> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let last: i64 = conn.query_row("SELECT coalesce(max(seq), 0) FROM outcomes", [], |r| {
        r.get(0)
    })?;
    let received = ts_string(received_at);
    let money = |d: Option<rust_decimal::Decimal>| {
        d.map(|mut v| {
            v.rescale(COST_SCALE);
            v.to_string()
        })
    };
    let mut app = conn.appender("outcomes")?;
    for (i, o) in outcomes.iter().enumerate() {
        app.append_row(params![
            o.project,
            o.task_id,
            o.outcome.as_str(),
            ts_string(o.ts),
            received,
            last + 1 + i as i64,
            o.idem_key,
            money(o.value),
            money(o.rework_cost),
            o.feature,
            o.user_id,
            o.customer_id,
            o.source.as_str(),
            o.metadata,
        ])?;
    }
    app.flush()?;
    drop(app);
    // The materialised tasks and runs carry their winning outcome.
    let keys: Vec<(&str, &str, DateTime<Utc>)> = outcomes
        .iter()
        .map(|o| (o.project.as_str(), o.task_id.as_str(), o.ts))
        .collect();
    crate::store::units::outcomes_changed(conn, &keys)
}

/// Writes the `task_outcome` of fresh events as outcome rows in the events' transaction. The
/// outcome takes the call's timestamp and attribution; the events' de-duplication already ran,
/// so a duplicate event adds nothing.
pub struct EventOutcomes;

impl CommitHook for EventOutcomes {
    fn name(&self) -> &'static str {
        "outcomes"
    }

    fn after_append(&self, conn: &Connection, fresh: &[&PricedEvent]) -> Result<(), StoreError> {
        let records: Vec<OutcomeRecord> = fresh
            .iter()
            .filter_map(|p| {
                let e = &p.event;
                let outcome = e.task_outcome?;
                Some(OutcomeRecord {
                    project: e
                        .dims
                        .project
                        .clone()
                        .unwrap_or_else(|| DEFAULT_PROJECT.to_string()),
                    task_id: task_key(&e.dims)?.to_string(),
                    outcome,
                    ts: e.ts,
                    idem_key: None,
                    value: None,
                    rework_cost: None,
                    feature: e.dims.feature.clone(),
                    user_id: e.dims.user_id.clone(),
                    customer_id: e.dims.customer_id.clone(),
                    metadata: None,
                    source: OutcomeSource::Event,
                })
            })
            .collect();
        let refs: Vec<&OutcomeRecord> = records.iter().collect();
        append(conn, Utc::now(), &refs)
    }
}
