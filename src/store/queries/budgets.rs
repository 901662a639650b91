//! SQL of budgets, channels, the alert outbox and its delivery log.
//!
//! Spend is always summed here (as `DECIMAL`, read back as text) over the period the caller
//! computed in Rust — from the hourly rollups where they can answer, else from `events` (see
//! [`spend`]); no running total is kept anywhere. Scope values reach
//! SQL only as bound parameters (`=` for exact values, `LIKE … ESCAPE '\'` for globs) and
//! columns only through [`Dimension::column`]. Functions that take `loaded_keys` restrict the
//! split values to the session's `budget_keys` temp table, filled by [`load_keys`] on the same
//! connection (the writer's, inside its transaction).

use chrono::{DateTime, Utc};
use duckdb::types::Value;
use duckdb::{params, Connection, OptionalExt};
use rust_decimal::Decimal;

use super::costs::Source;
use super::{decimal, from_micros, Sql};
use crate::analytics::params::TimeRange;
use crate::budgets::model::Scope;
use crate::domain::dimension::Dimension;
use crate::store::{rollup, StoreError};

fn ts(t: DateTime<Utc>) -> String {
    crate::store::arrow::ts_string(t)
}

fn opt_ts(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(ts)
}

// ---------------------------------------------------------------------------------------------
// Budgets and channels
// ---------------------------------------------------------------------------------------------

/// A budget row as stored; `definition` is re-validated when loaded.
#[derive(Debug, Clone)]
pub struct StoredBudget {
    pub id: String,
    pub project: String,
    pub name: String,
    pub definition: String,
    pub revision: i32,
    pub source: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub fn all_budgets(conn: &Connection) -> Result<Vec<StoredBudget>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT id, project, name, definition, revision, source, epoch_us(created_at), epoch_us(updated_at)
         FROM budgets ORDER BY project, name",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(StoredBudget {
            id: r.get(0)?,
            project: r.get(1)?,
            name: r.get(2)?,
            definition: r.get(3)?,
            revision: r.get(4)?,
            source: r.get(5)?,
            created_at: from_micros(r.get(6)?),
            updated_at: from_micros(r.get(7)?),
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub fn insert_budget(conn: &Connection, b: &StoredBudget) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO budgets (id, project, name, definition, revision, source, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, CAST(? AS TIMESTAMPTZ), CAST(? AS TIMESTAMPTZ))",
        params![
            b.id,
            b.project,
            b.name,
            b.definition,
            b.revision,
            b.source,
            ts(b.created_at),
            ts(b.updated_at)
        ],
    )?;
    Ok(())
}

/// Replaces a budget's definition; false when there is no such budget.
pub fn update_budget(conn: &Connection, b: &StoredBudget) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE budgets SET project = ?, name = ?, definition = ?, revision = ?, source = ?,
                updated_at = CAST(? AS TIMESTAMPTZ)
         WHERE id = ?",
        params![
            b.project,
            b.name,
            b.definition,
            b.revision,
            b.source,
            ts(b.updated_at),
            b.id
        ],
    )?;
    Ok(n > 0)
}

pub fn delete_budget(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    Ok(conn.execute("DELETE FROM budgets WHERE id = ?", params![id])? > 0)
}

/// A channel row, secret included (only the dispatcher and creation ever see it).
#[derive(Debug, Clone)]
pub struct StoredChannel {
    pub id: String,
    pub project: String,
    pub name: String,
    pub kind: String,
    pub url: String,
    pub secret: String,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub source: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const CHANNEL_COLUMNS: &str =
    "id, project, name, kind, url, secret, enabled, disabled_reason, source, \
     epoch_us(created_at), epoch_us(updated_at)";

fn read_channel(r: &duckdb::Row<'_>) -> duckdb::Result<StoredChannel> {
    Ok(StoredChannel {
        id: r.get(0)?,
        project: r.get(1)?,
        name: r.get(2)?,
        kind: r.get(3)?,
        url: r.get(4)?,
        secret: r.get(5)?,
        enabled: r.get(6)?,
        disabled_reason: r.get(7)?,
        source: r.get(8)?,
        created_at: from_micros(r.get(9)?),
        updated_at: from_micros(r.get(10)?),
    })
}

pub fn all_channels(conn: &Connection) -> Result<Vec<StoredChannel>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {CHANNEL_COLUMNS} FROM channels ORDER BY project, name"
    ))?;
    let rows = stmt.query_map([], read_channel)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub fn channel(conn: &Connection, id: &str) -> Result<Option<StoredChannel>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {CHANNEL_COLUMNS} FROM channels WHERE id = ?"),
            params![id],
            read_channel,
        )
        .optional()?)
}

pub fn insert_channel(conn: &Connection, c: &StoredChannel) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO channels (id, project, name, kind, url, secret, enabled, disabled_reason, source,
                               created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, CAST(? AS TIMESTAMPTZ), CAST(? AS TIMESTAMPTZ))",
        params![
            c.id,
            c.project,
            c.name,
            c.kind,
            c.url,
            c.secret,
            c.enabled,
            c.disabled_reason,
            c.source,
            ts(c.created_at),
            ts(c.updated_at)
        ],
    )?;
    Ok(())
}

pub fn update_channel(conn: &Connection, c: &StoredChannel) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE channels SET name = ?, url = ?, secret = ?, enabled = ?, disabled_reason = ?, source = ?,
                updated_at = CAST(? AS TIMESTAMPTZ)
         WHERE id = ?",
        params![
            c.name,
            c.url,
            c.secret,
            c.enabled,
            c.disabled_reason,
            c.source,
            ts(c.updated_at),
            c.id
        ],
    )?;
    Ok(n > 0)
}

/// Turns a channel off (a 410 from its receiver) or on.
pub fn set_channel_enabled(
    conn: &Connection,
    id: &str,
    enabled: bool,
    reason: Option<&str>,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE channels SET enabled = ?, disabled_reason = ?, updated_at = CAST(? AS TIMESTAMPTZ) WHERE id = ?",
        params![enabled, reason, ts(at), id],
    )?;
    Ok(())
}

/// Deletes a channel; its undelivered alerts are cancelled (their history stays).
pub fn delete_channel(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    conn.execute(
        "UPDATE alert_deliveries SET state = 'cancelled', next_attempt_at = NULL
         WHERE channel_id = ? AND state = 'pending'",
        params![id],
    )?;
    Ok(conn.execute("DELETE FROM channels WHERE id = ?", params![id])? > 0)
}

// ---------------------------------------------------------------------------------------------
// Spend
// ---------------------------------------------------------------------------------------------

/// Fills the session's `budget_keys` temp table with split values to restrict a query to.
pub fn load_keys(conn: &Connection, keys: &[String]) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS budget_keys (k VARCHAR); DELETE FROM budget_keys;",
    )?;
    let mut app = conn.appender("budget_keys")?;
    for k in keys {
        app.append_row(params![k])?;
    }
    app.flush()?;
    Ok(())
}

/// Which events a spend question covers.
#[derive(Debug, Clone, Copy)]
pub struct SpendQuery<'a> {
    pub project: &'a str,
    pub scope: &'a Scope,
    /// Inclusive.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive; `None` is open (rolling windows count slightly-future events too).
    pub to: Option<DateTime<Utc>>,
    /// Group by this dimension; events without a value are left out.
    pub split: Option<Dimension>,
    /// Only this split value.
    pub split_value: Option<&'a str>,
    /// Only the split values in `budget_keys`.
    pub loaded_keys: bool,
    /// Whether [`spend`] may sum a rollup (`storage.use_rollups`).
    pub source: Source,
}

/// Spend of one split value (`key` is "" without a split).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendRow {
    pub key: String,
    pub spent: Decimal,
    pub calls: i64,
    pub unpriced: i64,
}

/// Spend of one run, with the times of its first and last call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    pub spend: SpendRow,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
}

/// Appends `WHERE` with the scope's conditions (project, `[from, to)`, dimensions) over a
/// table with the events' column names: `events`, or a rollup for the dimensions it keeps.
fn scope_conditions(
    sql: &mut Sql,
    q: &SpendQuery<'_>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) {
    sql.push(" WHERE project = ")
        .bind(Value::Text(q.project.to_string()));
    if let Some(from) = from {
        sql.push(" AND ts >= ").bind_ts(from);
    }
    if let Some(to) = to {
        sql.push(" AND ts < ").bind_ts(to);
    }
    for c in &q.scope.conditions {
        sql.push(" AND (FALSE");
        for p in &c.patterns {
            match (c.dim, p.is_glob()) {
                (Dimension::Tag, false) => {
                    sql.push(" OR list_contains(tags, ")
                        .bind(Value::Text(p.as_str().to_string()))
                        .push(")");
                }
                (Dimension::Tag, true) => {
                    sql.push(" OR len(list_filter(tags, lambda x: x LIKE ")
                        .bind(Value::Text(p.like()))
                        .push(" ESCAPE '\\')) > 0");
                }
                (dim, false) => {
                    sql.push(" OR ")
                        .push(dim.column())
                        .push(" = ")
                        .bind(Value::Text(p.as_str().to_string()));
                }
                (dim, true) => {
                    sql.push(" OR ")
                        .push(dim.column())
                        .push(" LIKE ")
                        .bind(Value::Text(p.like()))
                        .push(" ESCAPE '\\'");
                }
            }
        }
        sql.push(")");
    }
}

/// The split column expression of the inner select.
fn split_expr(split: Option<Dimension>) -> String {
    match split {
        None => "''".to_string(),
        Some(Dimension::Tag) => "unnest(tags)".to_string(),
        Some(dim) => dim.column().to_string(),
    }
}

/// Appends the conditions on the split value `k` that follow `WHERE k IS NOT NULL`.
fn split_conditions(sql: &mut Sql, q: &SpendQuery<'_>) {
    if let Some(v) = q.split_value {
        sql.push(" AND k = ").bind(Value::Text(v.to_string()));
    }
    if q.loaded_keys {
        sql.push(" AND k IN (SELECT k FROM budget_keys)");
    }
}

/// One event as a row of [`spend`]'s source: cost, calls, unpriced calls.
const EVENT_SPEND: &str = "cost, 1::BIGINT AS n, (cost_source = 'unpriced')::BIGINT AS u";

/// A rollup row as a row of [`spend`]'s source (its sums of the same three).
const ROLLUP_SPEND: &str = "cost, requests AS n, unpriced_requests AS u";

/// Appends `(<rows>)` with `cost`, `n` (calls), `u` (unpriced calls) and the split value `k`
/// of everything `q` covers. A budget is evaluated on every commit that touches it, and a
/// month of events is the common period: summing them each time made the commit's cost grow
/// with the month (90 ms per commit with six budgets at 10M events). So when a rollup keeps
/// the project, the split and every dimension of the scope, the whole hours come from it and
/// only the partial hours at the window's edges from the events (`rollup::Span`), exactly as
/// the costs questions do. The writer's rollup hook runs before the budgets' in the same
/// transaction, so the rollup already holds the events being committed.
fn push_spend_source(sql: &mut Sql, q: &SpendQuery<'_>) {
    let split = split_expr(q.split);
    let part = |sql: &mut Sql,
                measures: &str,
                table: &str,
                from: Option<DateTime<Utc>>,
                to: Option<DateTime<Utc>>| {
        sql.push("SELECT ")
            .push(measures)
            .push(", ")
            .push(&split)
            .push(" AS k FROM ")
            .push(table);
        scope_conditions(sql, q, from, to);
    };
    sql.push("(");
    match spend_rollup(q) {
        Some((r, span)) => {
            part(sql, ROLLUP_SPEND, r.table, span.hours.from, span.hours.to);
            for edge in span.head.iter().chain(span.tail.iter()) {
                sql.push(" UNION ALL ");
                part(sql, EVENT_SPEND, "events", edge.from, edge.to);
            }
        }
        None => part(sql, EVENT_SPEND, "events", q.from, q.to),
    }
    sql.push(")");
}

/// The rollup [`spend`] sums for `q`, with the split of its range; `None`: the events alone.
fn spend_rollup(q: &SpendQuery<'_>) -> Option<(&'static rollup::Rollup, rollup::Span)> {
    if q.source == Source::Events {
        return None;
    }
    let dims: Vec<Dimension> = std::iter::once(Dimension::Project)
        .chain(q.split)
        .chain(q.scope.conditions.iter().map(|c| c.dim))
        .collect();
    let range = TimeRange {
        from: q.from,
        to: q.to,
    };
    rollup::covering(&dims).zip(rollup::Span::of(&range))
}

/// Spend per split value (one row, key "", without a split — also when nothing matched).
pub fn spend(conn: &Connection, q: &SpendQuery<'_>) -> Result<Vec<SpendRow>, StoreError> {
    let mut sql = Sql::default();
    sql.push("SELECT k, coalesce(sum(cost), 0)::VARCHAR, sum(n)::BIGINT, sum(u)::BIGINT FROM ");
    push_spend_source(&mut sql, q);
    sql.push(" e WHERE k IS NOT NULL");
    split_conditions(&mut sql, q);
    sql.push(" GROUP BY k ORDER BY k");
    let mut stmt = conn.prepare(&sql.text)?;
    let rows = stmt.query_map(duckdb::params_from_iter(sql.params.iter()), |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<String>>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (key, spent, calls, unpriced) = row?;
        out.push(SpendRow {
            key,
            spent: decimal(spent)?,
            calls,
            unpriced,
        });
    }
    if q.split.is_none() && out.is_empty() {
        out.push(SpendRow {
            key: String::new(),
            spent: Decimal::ZERO,
            calls: 0,
            unpriced: 0,
        });
    }
    Ok(out)
}

/// Spend per run (`q.split` is the run's dimension), from the events: a run cap reports its
/// first and last call, which no rollup keeps, and counts only recent days.
pub fn run_spend(conn: &Connection, q: &SpendQuery<'_>) -> Result<Vec<RunRow>, StoreError> {
    let mut sql = Sql::default();
    sql.push("SELECT k, coalesce(sum(cost), 0)::VARCHAR, count(*), count(*) FILTER (WHERE cost_source = 'unpriced'), epoch_us(min(ts)), epoch_us(max(ts)) FROM (SELECT ts, cost, cost_source, ")
        .push(&split_expr(q.split))
        .push(" AS k FROM events");
    scope_conditions(&mut sql, q, q.from, q.to);
    sql.push(") e WHERE k IS NOT NULL");
    split_conditions(&mut sql, q);
    sql.push(" GROUP BY k ORDER BY k");
    let mut stmt = conn.prepare(&sql.text)?;
    let rows = stmt.query_map(duckdb::params_from_iter(sql.params.iter()), |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<String>>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, i64>(5)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (key, spent, calls, unpriced, first, last) = row?;
        out.push(RunRow {
            spend: SpendRow {
                key,
                spent: decimal(spent)?,
                calls,
                unpriced,
            },
            first: from_micros(first),
            last: from_micros(last),
        });
    }
    Ok(out)
}

/// The largest contributors by cost along `by` (events without a value as `None`).
pub fn top(
    conn: &Connection,
    q: &SpendQuery<'_>,
    by: Dimension,
    limit: usize,
) -> Result<Vec<(Option<String>, Decimal)>, StoreError> {
    let mut sql = Sql::default();
    sql.push("SELECT g, coalesce(sum(cost), 0)::VARCHAR AS c FROM (SELECT cost, ")
        .push(&split_expr(q.split))
        .push(" AS k, ");
    if by == Dimension::Tag {
        sql.push("unnest(CASE WHEN len(tags) = 0 THEN [NULL::VARCHAR] ELSE tags END)");
    } else {
        sql.push(by.column());
    }
    sql.push(" AS g FROM events");
    scope_conditions(&mut sql, q, q.from, q.to);
    sql.push(") e WHERE k IS NOT NULL");
    if let Some(v) = q.split_value {
        sql.push(" AND k = ").bind(Value::Text(v.to_string()));
    }
    sql.push(" GROUP BY g ORDER BY sum(cost) DESC NULLS LAST, g NULLS LAST LIMIT ")
        .bind(Value::BigInt(limit as i64));
    let mut stmt = conn.prepare(&sql.text)?;
    let rows = stmt.query_map(duckdb::params_from_iter(sql.params.iter()), |r| {
        Ok((
            r.get::<_, Option<String>>(0)?,
            r.get::<_, Option<String>>(1)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (g, c) = row?;
        out.push((g, decimal(c)?));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The outbox
// ---------------------------------------------------------------------------------------------

/// An alert already written, as far as "has this fired?" needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    pub split_key: String,
    pub kind: String,
    pub threshold: Decimal,
    pub period_start: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// Alerts of a budget revision for `period_start` (or, with `created_since`, any created since
/// then — rolling windows), optionally only for the loaded split keys.
pub fn fired(
    conn: &Connection,
    budget_id: &str,
    revision: i32,
    period_start: Option<DateTime<Utc>>,
    created_since: Option<DateTime<Utc>>,
    loaded_keys: bool,
) -> Result<Vec<Fired>, StoreError> {
    let mut sql = Sql::default();
    sql.push("SELECT split_key, kind, threshold::VARCHAR, epoch_us(period_start), epoch_us(created_at) FROM alerts WHERE budget_id = ")
        .bind(Value::Text(budget_id.to_string()))
        .push(" AND budget_revision = ")
        .bind(Value::Int(revision));
    if let Some(p) = period_start {
        sql.push(" AND period_start = ").bind_ts(p);
    }
    if let Some(c) = created_since {
        sql.push(" AND created_at >= ").bind_ts(c);
    }
    if loaded_keys {
        sql.push(" AND split_key IN (SELECT k FROM budget_keys)");
    }
    let mut stmt = conn.prepare(&sql.text)?;
    let rows = stmt.query_map(duckdb::params_from_iter(sql.params.iter()), |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (split_key, kind, threshold, p, c) = row?;
        out.push(Fired {
            split_key,
            kind,
            threshold: decimal(threshold)?,
            period_start: from_micros(p),
            created_at: from_micros(c),
        });
    }
    Ok(out)
}

/// A new outbox row.
#[derive(Debug, Clone)]
pub struct NewAlert {
    pub id: String,
    pub project: String,
    pub budget_id: String,
    pub budget_revision: i32,
    pub budget_name: String,
    pub kind: String,
    pub event_type: String,
    pub split_key: String,
    pub period_start: DateTime<Utc>,
    pub period_end: Option<DateTime<Utc>>,
    pub threshold: Decimal,
    pub amount: Option<Decimal>,
    pub spent: Option<Decimal>,
    pub forecast: Option<Decimal>,
    pub state: String,
    pub superseded_by: Option<String>,
    pub payload: String,
    pub created_at: DateTime<Utc>,
}

fn dec_text(d: Option<Decimal>) -> Option<String> {
    d.map(|d| d.to_string())
}

/// Writes an alert; `None` when its key exists already (the UNIQUE backstop), else its seq.
pub fn insert_alert(conn: &Connection, a: &NewAlert) -> Result<Option<i64>, StoreError> {
    let seq: i64 = conn.query_row("SELECT nextval('alert_seq')", [], |r| r.get(0))?;
    let n = conn.execute(
        "INSERT INTO alerts (id, seq, project, budget_id, budget_revision, budget_name, kind, event_type,
                             split_key, period_start, period_end, threshold, amount, spent, forecast,
                             state, superseded_by, payload, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, CAST(? AS TIMESTAMPTZ), CAST(? AS TIMESTAMPTZ),
                 CAST(? AS DECIMAL(10, 4)), CAST(? AS DECIMAL(38, 12)), CAST(? AS DECIMAL(38, 12)),
                 CAST(? AS DECIMAL(38, 12)), ?, ?, ?, CAST(? AS TIMESTAMPTZ))
         ON CONFLICT DO NOTHING",
        params![
            a.id,
            seq,
            a.project,
            a.budget_id,
            a.budget_revision,
            a.budget_name,
            a.kind,
            a.event_type,
            a.split_key,
            ts(a.period_start),
            opt_ts(a.period_end),
            a.threshold.to_string(),
            dec_text(a.amount),
            dec_text(a.spent),
            dec_text(a.forecast),
            a.state,
            a.superseded_by,
            a.payload,
            ts(a.created_at)
        ],
    )?;
    Ok((n > 0).then_some(seq))
}

/// Queues an alert for a channel, due at once.
pub fn insert_delivery(
    conn: &Connection,
    alert_id: &str,
    channel_id: &str,
    project: &str,
    seq: i64,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO alert_deliveries (alert_id, channel_id, project, alert_seq, state, attempts, round_attempts, next_attempt_at)
         VALUES (?, ?, ?, ?, 'pending', 0, 0, CAST(? AS TIMESTAMPTZ))
         ON CONFLICT DO NOTHING",
        params![alert_id, channel_id, project, seq, ts(now)],
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Delivery
// ---------------------------------------------------------------------------------------------

/// The oldest pending delivery of each enabled channel and when it is due.
pub fn channel_heads(conn: &Connection) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT channel_id, epoch_us(next_attempt_at) FROM (
             SELECT d.channel_id, d.next_attempt_at,
                    row_number() OVER (PARTITION BY d.channel_id ORDER BY d.alert_seq) AS rn
             FROM alert_deliveries d JOIN channels c ON c.id = d.channel_id
             WHERE d.state = 'pending' AND c.enabled)
         WHERE rn = 1",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (c, t) = row?;
        out.push((c, t.map(from_micros).unwrap_or_default()));
    }
    Ok(out)
}

/// The next delivery of one channel, with what sending it needs.
#[derive(Debug, Clone)]
pub struct Head {
    pub alert_id: String,
    pub event_type: String,
    pub payload: String,
    pub attempts: i32,
    pub round_attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub channel: StoredChannel,
}

pub fn head(conn: &Connection, channel_id: &str) -> Result<Option<Head>, StoreError> {
    let Some(channel) = channel(conn, channel_id)? else {
        return Ok(None);
    };
    if !channel.enabled {
        return Ok(None);
    }
    let row = conn
        .query_row(
            "SELECT d.alert_id, a.event_type, a.payload, d.attempts, d.round_attempts, epoch_us(d.next_attempt_at)
             FROM alert_deliveries d JOIN alerts a ON a.id = d.alert_id
             WHERE d.channel_id = ? AND d.state = 'pending'
             ORDER BY d.alert_seq LIMIT 1",
            params![channel_id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i32>(3)?,
                    r.get::<_, i32>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                ))
            },
        )
        .optional()?;
    Ok(row.map(
        |(alert_id, event_type, payload, attempts, round_attempts, next)| Head {
            alert_id,
            event_type,
            payload,
            attempts,
            round_attempts,
            next_attempt_at: next.map(from_micros).unwrap_or_default(),
            channel,
        },
    ))
}

/// One attempt and what it means for the delivery.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub alert_id: String,
    pub channel_id: String,
    pub project: String,
    /// 1-based over the delivery's whole life.
    pub attempt: i32,
    pub at: DateTime<Utc>,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: i64,
    pub response: Option<String>,
}

/// What follows an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterAttempt {
    Delivered,
    /// Try again at this time.
    Retry(DateTime<Utc>),
    /// The schedule is exhausted.
    GiveUp,
    /// The receiver answered 410: keep the delivery pending and disable the channel.
    Gone,
}

/// Records an attempt and moves the delivery on, in one transaction.
pub fn record_attempt(
    conn: &Connection,
    a: &Attempt,
    round_attempts: i32,
    after: AfterAttempt,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO delivery_attempts (alert_id, channel_id, project, attempt, attempted_at, status_code, error, duration_ms, response)
         VALUES (?, ?, ?, ?, CAST(? AS TIMESTAMPTZ), ?, ?, ?, ?)",
        params![
            a.alert_id,
            a.channel_id,
            a.project,
            a.attempt,
            ts(a.at),
            a.status_code.map(i32::from),
            a.error,
            a.duration_ms,
            a.response
        ],
    )?;
    let (state, next, delivered) = match after {
        AfterAttempt::Delivered => ("delivered", None, Some(ts(a.at))),
        AfterAttempt::Retry(t) => ("pending", Some(ts(t)), None),
        AfterAttempt::GiveUp => ("failed", None, None),
        // Due again as soon as the channel is enabled again.
        AfterAttempt::Gone => ("pending", Some(ts(a.at)), None),
    };
    conn.execute(
        "UPDATE alert_deliveries SET state = ?, attempts = ?, round_attempts = ?,
                next_attempt_at = CAST(? AS TIMESTAMPTZ), delivered_at = CAST(? AS TIMESTAMPTZ)
         WHERE alert_id = ? AND channel_id = ?",
        params![
            state,
            a.attempt,
            round_attempts,
            next,
            delivered,
            a.alert_id,
            a.channel_id
        ],
    )?;
    if after == AfterAttempt::Gone {
        set_channel_enabled(
            conn,
            &a.channel_id,
            false,
            Some("the receiver answered 410 Gone"),
            a.at,
        )?;
    }
    Ok(())
}

/// Queues an alert again for its channels (or one of them), due now, with a fresh retry
/// schedule. Returns the channels queued.
pub fn redeliver(
    conn: &Connection,
    alert_id: &str,
    channel_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Vec<String>, StoreError> {
    let mut sql = Sql::default();
    sql.push(
        "UPDATE alert_deliveries SET state = 'pending', round_attempts = 0, next_attempt_at = ",
    )
    .bind_ts(now)
    .push(", delivered_at = NULL WHERE alert_id = ")
    .bind(Value::Text(alert_id.to_string()))
    .push(" AND channel_id IN (SELECT id FROM channels)");
    if let Some(c) = channel_id {
        sql.push(" AND channel_id = ")
            .bind(Value::Text(c.to_string()));
    }
    sql.push(" RETURNING channel_id");
    let mut stmt = conn.prepare(&sql.text)?;
    let rows = stmt.query_map(duckdb::params_from_iter(sql.params.iter()), |r| {
        r.get::<_, String>(0)
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

// ---------------------------------------------------------------------------------------------
// History
// ---------------------------------------------------------------------------------------------

/// Which alerts to list.
#[derive(Debug, Clone, Default)]
pub struct AlertsQuery {
    /// Only this project (a project key's own).
    pub project: Option<String>,
    pub budget_id: Option<String>,
    pub kind: Option<String>,
    pub id: Option<String>,
    pub limit: usize,
}

/// An alert as listed.
#[derive(Debug, Clone)]
pub struct AlertRow {
    pub id: String,
    pub seq: i64,
    pub project: String,
    pub budget_id: String,
    pub budget_revision: i32,
    pub budget_name: String,
    pub kind: String,
    pub event_type: String,
    pub split_key: String,
    pub period_start: DateTime<Utc>,
    pub period_end: Option<DateTime<Utc>>,
    pub threshold: Decimal,
    pub amount: Option<Decimal>,
    pub spent: Option<Decimal>,
    pub forecast: Option<Decimal>,
    pub state: String,
    pub superseded_by: Option<String>,
    pub payload: String,
    pub created_at: DateTime<Utc>,
}

/// Alerts newest first, at most `limit + 1` (so the caller can tell truncation).
pub fn list_alerts(conn: &Connection, q: &AlertsQuery) -> Result<Vec<AlertRow>, StoreError> {
    let mut sql = Sql::default();
    sql.push(
        "SELECT id, seq, project, budget_id, budget_revision, budget_name, kind, event_type, split_key,
                epoch_us(period_start), epoch_us(period_end), threshold::VARCHAR, amount::VARCHAR,
                spent::VARCHAR, forecast::VARCHAR, state, superseded_by, payload, epoch_us(created_at)
         FROM alerts WHERE TRUE",
    );
    if let Some(p) = &q.project {
        sql.push(" AND project = ").bind(Value::Text(p.clone()));
    }
    if let Some(b) = &q.budget_id {
        sql.push(" AND budget_id = ").bind(Value::Text(b.clone()));
    }
    if let Some(k) = &q.kind {
        sql.push(" AND kind = ").bind(Value::Text(k.clone()));
    }
    if let Some(id) = &q.id {
        sql.push(" AND id = ").bind(Value::Text(id.clone()));
    }
    sql.push(" ORDER BY seq DESC LIMIT ")
        .bind(Value::BigInt(q.limit as i64 + 1));
    let mut stmt = conn.prepare(&sql.text)?;
    type Raw = (
        (
            String,
            i64,
            String,
            String,
            i32,
            String,
            String,
            String,
            String,
        ),
        (
            i64,
            Option<i64>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        ),
        (String, Option<String>, String, i64),
    );
    let rows = stmt.query_map(
        duckdb::params_from_iter(sql.params.iter()),
        |r| -> duckdb::Result<Raw> {
            Ok((
                (
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                ),
                (
                    r.get(9)?,
                    r.get(10)?,
                    r.get(11)?,
                    r.get(12)?,
                    r.get(13)?,
                    r.get(14)?,
                ),
                (r.get(15)?, r.get(16)?, r.get(17)?, r.get(18)?),
            ))
        },
    )?;
    let mut out = Vec::new();
    for row in rows {
        let (
            (
                id,
                seq,
                project,
                budget_id,
                budget_revision,
                budget_name,
                kind,
                event_type,
                split_key,
            ),
            (period_start, period_end, threshold, amount, spent, forecast),
            (state, superseded_by, payload, created_at),
        ) = row?;
        out.push(AlertRow {
            id,
            seq,
            project,
            budget_id,
            budget_revision,
            budget_name,
            kind,
            event_type,
            split_key,
            period_start: from_micros(period_start),
            period_end: period_end.map(from_micros),
            threshold: decimal(threshold)?,
            amount: amount.map(|a| decimal(Some(a))).transpose()?,
            spent: spent.map(|a| decimal(Some(a))).transpose()?,
            forecast: forecast.map(|a| decimal(Some(a))).transpose()?,
            state,
            superseded_by,
            payload,
            created_at: from_micros(created_at),
        });
    }
    Ok(out)
}

/// A delivery as listed.
#[derive(Debug, Clone)]
pub struct DeliveryRow {
    pub alert_id: String,
    pub channel_id: String,
    pub channel_name: Option<String>,
    pub state: String,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// An attempt as listed.
#[derive(Debug, Clone)]
pub struct AttemptRow {
    pub alert_id: String,
    pub channel_id: String,
    pub attempt: i32,
    pub at: DateTime<Utc>,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i64,
    pub response: Option<String>,
}

/// Deliveries and attempts of the given alerts.
pub fn deliveries(
    conn: &Connection,
    alert_ids: &[String],
) -> Result<(Vec<DeliveryRow>, Vec<AttemptRow>), StoreError> {
    if alert_ids.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let mut list = Sql::default();
    list.push("(");
    for (i, id) in alert_ids.iter().enumerate() {
        if i > 0 {
            list.push(", ");
        }
        list.bind(Value::Text(id.clone()));
    }
    list.push(")");
    let mut stmt = conn.prepare(&format!(
        "SELECT d.alert_id, d.channel_id, c.name, d.state, d.attempts, epoch_us(d.next_attempt_at), epoch_us(d.delivered_at)
         FROM alert_deliveries d LEFT JOIN channels c ON c.id = d.channel_id
         WHERE d.alert_id IN {} ORDER BY d.alert_id, d.channel_id",
        list.text
    ))?;
    let rows = stmt.query_map(duckdb::params_from_iter(list.params.iter()), |r| {
        Ok(DeliveryRow {
            alert_id: r.get(0)?,
            channel_id: r.get(1)?,
            channel_name: r.get(2)?,
            state: r.get(3)?,
            attempts: r.get(4)?,
            next_attempt_at: r.get::<_, Option<i64>>(5)?.map(from_micros),
            delivered_at: r.get::<_, Option<i64>>(6)?.map(from_micros),
        })
    })?;
    let deliveries = rows.collect::<Result<Vec<_>, _>>()?;
    let mut stmt = conn.prepare(&format!(
        "SELECT alert_id, channel_id, attempt, epoch_us(attempted_at), status_code, error, duration_ms, response
         FROM delivery_attempts WHERE alert_id IN {} ORDER BY alert_id, channel_id, attempted_at, attempt",
        list.text
    ))?;
    let rows = stmt.query_map(duckdb::params_from_iter(list.params.iter()), |r| {
        Ok(AttemptRow {
            alert_id: r.get(0)?,
            channel_id: r.get(1)?,
            attempt: r.get(2)?,
            at: from_micros(r.get(3)?),
            status_code: r.get(4)?,
            error: r.get(5)?,
            duration_ms: r.get(6)?,
            response: r.get(7)?,
        })
    })?;
    let attempts = rows.collect::<Result<Vec<_>, _>>()?;
    Ok((deliveries, attempts))
}

/// The alert's project, if it exists.
pub fn alert_project(conn: &Connection, id: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT project FROM alerts WHERE id = ?",
            params![id],
            |r| r.get(0),
        )
        .optional()?)
}

/// Alerts that were to be delivered (not superseded), over every project.
pub fn open_alert_count(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM alerts WHERE state = 'open'",
        [],
        |r| r.get(0),
    )?)
}

/// Alert deliveries per state (`pending`, `delivered`, `failed`, `cancelled`), for `/metrics`.
pub fn delivery_counts(conn: &Connection) -> Result<Vec<(String, u64)>, StoreError> {
    let mut stmt =
        conn.prepare("SELECT state, count(*) FROM alert_deliveries GROUP BY state ORDER BY state")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (state, n) = row?;
        out.push((state, n.max(0) as u64));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::budgets::model::{Condition, Pattern};

    /// The same question, always answered from the events.
    fn events(q: SpendQuery<'_>) -> SpendQuery<'_> {
        SpendQuery {
            source: Source::Events,
            ..q
        }
    }

    fn scope(conditions: &[(Dimension, &[&str])]) -> Scope {
        Scope {
            conditions: conditions
                .iter()
                .map(|(dim, patterns)| Condition {
                    dim: *dim,
                    patterns: patterns.iter().map(|p| Pattern::new(p)).collect(),
                })
                .collect(),
        }
    }

    /// Every budget shape, summed from the rollups and from the events, must give the same
    /// spend, calls and unpriced calls per split value — on whole-hour periods, on windows
    /// whose edges fall inside hours, on open-ended rolling windows, with globs, split values
    /// and loaded keys. Shapes no rollup can answer (tags, dimensions of two rollups, a
    /// window without a whole hour) must go to the events.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spend_from_the_rollups_equals_spend_from_the_events_on_demo_data() {
        let (_dir, store, cfg) = crate::demo::load::demo_store().await;
        let end = cfg.end;
        let odd = |d: Duration| end - d + Duration::minutes(17) + Duration::seconds(3);
        // Name, from, to, whether a whole hour lies inside.
        type Window = (
            &'static str,
            Option<DateTime<Utc>>,
            Option<DateTime<Utc>>,
            bool,
        );
        let windows: [Window; 5] = [
            (
                "whole days",
                Some(end - Duration::days(14)),
                Some(end),
                true,
            ),
            (
                "odd edges",
                Some(odd(Duration::days(9))),
                Some(odd(Duration::days(2))),
                true,
            ),
            (
                "rolling, open end",
                Some(odd(Duration::days(7))),
                None,
                true,
            ),
            ("no start", None, Some(odd(Duration::days(3))), true),
            (
                "inside one hour",
                Some(odd(Duration::days(1))),
                Some(odd(Duration::days(1)) + Duration::minutes(20)),
                false,
            ),
        ];
        type Shape = (
            Vec<(Dimension, &'static [&'static str])>,
            Option<Dimension>,
            bool,
        );
        let shapes: Vec<Shape> = vec![
            (vec![], None, true),
            (vec![], Some(Dimension::Feature), true),
            (
                vec![(Dimension::Feature, &["support-*", "code-review"])],
                None,
                true,
            ),
            (
                vec![(Dimension::Provider, &["openai"])],
                Some(Dimension::Model),
                true,
            ),
            (
                vec![(Dimension::Model, &["*mini*"])],
                Some(Dimension::Feature),
                true,
            ),
            (vec![], Some(Dimension::UserId), true),
            (
                vec![(Dimension::CustomerId, &["*"])],
                Some(Dimension::UserId),
                true,
            ),
            (
                vec![(Dimension::Status, &["error"])],
                Some(Dimension::Agent),
                true,
            ),
            // Dimensions of two rollups, or none: the events answer.
            (
                vec![(Dimension::Feature, &["*"])],
                Some(Dimension::UserId),
                false,
            ),
            (vec![], Some(Dimension::Tag), false),
            (vec![(Dimension::Tag, &["*"])], None, false),
            (vec![], Some(Dimension::TaskId), false),
        ];
        let (compared, from_rollups) = store
            .read(move |conn| {
                let mut stmt = conn.prepare("SELECT DISTINCT project FROM events ORDER BY 1")?;
                let projects = stmt
                    .query_map([], |r| r.get(0))?
                    .collect::<Result<Vec<String>, _>>()?;
                assert!(projects.len() > 1, "the demo has projects");
                let (mut compared, mut from_rollups) = (0, 0);
                for project in &projects {
                    for (conditions, split, rollup_dims) in &shapes {
                        let scope = scope(conditions);
                        for (name, from, to, whole_hour) in windows {
                            let q = SpendQuery {
                                project,
                                scope: &scope,
                                from,
                                to,
                                split: *split,
                                split_value: None,
                                loaded_keys: false,
                                source: Source::Auto,
                            };
                            let what = format!("{project} {conditions:?} split {split:?}, {name}");
                            let used = spend_rollup(&q).is_some();
                            assert_eq!(used, *rollup_dims && whole_hour, "{what}");
                            from_rollups += usize::from(used);
                            let raw = spend(conn, &events(q))?;
                            assert_eq!(spend(conn, &q)?, raw, "{what}");
                            compared += 1;
                            // One split value, and the loaded keys: the ways the commit hook
                            // narrows a split budget.
                            let Some(row) = raw.get(raw.len() / 2).filter(|_| split.is_some())
                            else {
                                continue;
                            };
                            load_keys(conn, &[row.key.clone(), "no such value".into()])?;
                            for (value, loaded) in [(Some(row.key.as_str()), false), (None, true)] {
                                let q = SpendQuery {
                                    split_value: value,
                                    loaded_keys: loaded,
                                    ..q
                                };
                                let narrowed = spend(conn, &q)?;
                                assert_eq!(narrowed, spend(conn, &events(q))?, "{what}");
                                assert_eq!(narrowed, vec![row.clone()], "{what}: one value");
                            }
                        }
                    }
                }
                Ok((compared, from_rollups))
            })
            .await
            .unwrap();
        assert!(
            compared > 0 && from_rollups > compared / 3,
            "{from_rollups} of {compared}"
        );
    }
}
