//! The outbox: evaluates budgets against stored events and writes the alert rows (with their
//! payloads and per-channel deliveries) that `evaluate` decides are due.
//!
//! Runs on the writer's connection only — inside the transaction of the events that caused a
//! crossing (from `hook`), or in a writer `exec` when a budget is created or changed — so the
//! check "has this fired?" and the insert that follows can never race: there is one writer.
//! The UNIQUE key on `alerts` is the backstop, and an insert it refuses is skipped, not an error.
//! Sending is `dispatcher`'s job; nothing here does network I/O.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use duckdb::Connection;
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

use super::evaluate::{self, AlertKind};
use super::model::{show, Budget, Kind, RunCap, SpendRule};
use super::period::{self, Period, Window};
use super::status::Reading;
use crate::domain::dimension::Dimension;
use crate::store::queries::budgets::{self as sql, Fired, NewAlert, RunRow, SpendQuery, SpendRow};
use crate::store::queries::costs::Source;
use crate::store::StoreError;

/// How far back a run's calls are counted: a run is summed over the calls in the 7 days
/// before the earliest call of the batch that touched it, which bounds the scan.
pub const RUN_LOOKBACK: Duration = Duration::days(7);

/// Runs looked at when a run cap is created or changed, and by status and the check endpoint.
pub const RECENT_RUNS: Duration = Duration::hours(24);

/// Contributors listed per dimension in a payload.
const TOP: usize = 5;

/// The period start that keys run-cap alerts (a run has no period).
pub fn run_key_start() -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH
}

/// What an evaluation produced.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Alert rows written (delivered or superseded).
    pub alerts: usize,
    /// Fresh numbers for the in-memory snapshot.
    pub readings: Vec<Reading>,
}

impl Outcome {
    pub fn merge(&mut self, other: Outcome) {
        self.alerts += other.alerts;
        self.readings.extend(other.readings);
    }
}

/// What the evaluation needs besides the budget.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    pub conn: &'a Connection,
    pub now: DateTime<Utc>,
    pub public_url: Option<&'a str>,
    /// Whether spend may be summed from the rollups (`storage.use_rollups`).
    pub source: Source,
}

fn query<'a>(ctx: Ctx<'_>, b: &'a Budget, split: Option<Dimension>) -> SpendQuery<'a> {
    SpendQuery {
        project: &b.project,
        scope: &b.scope,
        from: None,
        to: None,
        split,
        split_value: None,
        loaded_keys: false,
        source: ctx.source,
    }
}

/// Evaluates a spend budget in `window` for the split values `keys` (`None`: all of them).
pub fn evaluate_spend(
    ctx: Ctx<'_>,
    b: &Budget,
    rule: &SpendRule,
    window: Window,
    keys: Option<&[String]>,
) -> Result<Outcome, StoreError> {
    let restrict = rule.split_by.is_some() && keys.is_some();
    if let (true, Some(k)) = (restrict, keys) {
        sql::load_keys(ctx.conn, k)?;
    }
    let base = SpendQuery {
        loaded_keys: restrict,
        ..query(ctx, b, rule.split_by)
    };
    let in_window = SpendQuery {
        from: Some(window.start),
        to: (!rule.period.is_rolling()).then_some(window.end),
        ..base
    };
    let rows = sql::spend(ctx.conn, &in_window)?;
    let recent = recent_spend(ctx, rule, window, &base)?;
    let fired = match rule.period {
        Period::Rolling { length, .. } => sql::fired(
            ctx.conn,
            &b.id,
            b.revision,
            None,
            Some(ctx.now - length),
            restrict,
        )?,
        Period::Calendar { .. } => sql::fired(
            ctx.conn,
            &b.id,
            b.revision,
            Some(window.start),
            None,
            restrict,
        )?,
    };
    let mut already: HashMap<&str, Vec<&Fired>> = HashMap::new();
    for f in &fired {
        already.entry(f.split_key.as_str()).or_default().push(f);
    }
    let mut out = Outcome::default();
    for row in &rows {
        let forecast = match &recent {
            Some(r) => period::forecast(
                row.spent,
                r.get(&row.key).copied().unwrap_or_default(),
                period::rate_window(window),
                window,
                ctx.now,
            ),
            None => None,
        };
        out.readings.push(Reading {
            budget_id: b.id.clone(),
            key: row.key.clone(),
            window,
            spent: row.spent,
            calls: row.calls,
            unpriced: row.unpriced,
            forecast,
        });
        let done = already
            .get(row.key.as_str())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let done_thresholds: Vec<Decimal> = done
            .iter()
            .filter(|f| f.kind == AlertKind::Threshold.as_str())
            .map(|f| f.threshold)
            .collect();
        let reached = evaluate::reached(rule, row.spent);
        let new = evaluate::new_thresholds(&reached, &done_thresholds);
        let forecast_due = evaluate::forecast_due(rule, row.spent, forecast)
            && !done.iter().any(|f| f.kind == AlertKind::Forecast.as_str());
        if new.is_empty() && !forecast_due {
            continue;
        }
        let top = contributors(ctx, b, &in_window, rule.split_by.map(|_| row.key.as_str()))?;
        let facts = SpendFacts {
            b,
            rule,
            window,
            row,
            forecast,
            reached: &reached,
            top: &top,
        };
        // Ascending, so creation order reads like the crossings; the superseded lower
        // thresholds name the alert that was sent instead.
        let delivered_id = new_alert_id();
        for n in &new {
            let (id, superseded_by) = if n.deliver {
                (delivered_id.clone(), None)
            } else {
                (new_alert_id(), Some(delivered_id.as_str()))
            };
            let alert = spend_alert(
                ctx,
                &facts,
                &id,
                AlertKind::Threshold,
                n.threshold,
                superseded_by,
            );
            write(ctx, b, alert, n.deliver)?;
            out.alerts += 1;
        }
        if forecast_due {
            let id = new_alert_id();
            write(
                ctx,
                b,
                spend_alert(
                    ctx,
                    &facts,
                    &id,
                    AlertKind::Forecast,
                    Decimal::ONE_HUNDRED,
                    None,
                ),
                true,
            )?;
            out.alerts += 1;
        }
    }
    Ok(out)
}

/// Spend per split value over the trailing rate window (for forecasts), if the budget has one.
fn recent_spend(
    ctx: Ctx<'_>,
    rule: &SpendRule,
    window: Window,
    base: &SpendQuery<'_>,
) -> Result<Option<HashMap<String, Decimal>>, StoreError> {
    if !rule.forecast || ctx.now >= window.end {
        return Ok(None);
    }
    let q = SpendQuery {
        from: Some(ctx.now - period::rate_window(window)),
        to: Some(ctx.now),
        ..*base
    };
    Ok(Some(
        sql::spend(ctx.conn, &q)?
            .into_iter()
            .map(|r| (r.key, r.spent))
            .collect(),
    ))
}

/// Evaluates a run cap for the runs `keys` (`None`: every run since `since`).
pub fn evaluate_runs(
    ctx: Ctx<'_>,
    b: &Budget,
    cap: &RunCap,
    since: DateTime<Utc>,
    keys: Option<&[String]>,
) -> Result<Outcome, StoreError> {
    if let Some(k) = keys {
        sql::load_keys(ctx.conn, k)?;
    }
    let q = SpendQuery {
        from: Some(since),
        loaded_keys: keys.is_some(),
        ..query(ctx, b, Some(cap.per))
    };
    let rows = sql::run_spend(ctx.conn, &q)?;
    let fired = sql::fired(
        ctx.conn,
        &b.id,
        b.revision,
        Some(run_key_start()),
        None,
        keys.is_some(),
    )?;
    let mut out = Outcome::default();
    for run in &rows {
        let row = &run.spend;
        out.readings.push(run_reading(b, run));
        let due: Vec<AlertKind> = evaluate::run_cap_reached(cap, row.spent, row.calls)
            .into_iter()
            .filter(|k| {
                !fired
                    .iter()
                    .any(|f| f.split_key == row.key && f.kind == k.as_str())
            })
            .collect();
        if due.is_empty() {
            continue;
        }
        let top = contributors(ctx, b, &q, Some(row.key.as_str()))?;
        for kind in due {
            let id = new_alert_id();
            let alert = run_alert(ctx, b, cap, run, kind, &top, &id, since);
            write(ctx, b, alert, true)?;
            out.alerts += 1;
        }
    }
    Ok(out)
}

/// The snapshot reading of one run.
pub fn run_reading(b: &Budget, run: &RunRow) -> Reading {
    let row = &run.spend;
    Reading {
        budget_id: b.id.clone(),
        key: row.key.clone(),
        window: Window {
            start: run.first,
            end: run.last,
        },
        spent: row.spent,
        calls: row.calls,
        unpriced: row.unpriced,
        forecast: None,
    }
}

/// Evaluates a budget over its whole current period (every split value) or, for a run cap,
/// every run of the last day: what a new or changed budget gets at once.
pub fn evaluate_all(ctx: Ctx<'_>, b: &Budget) -> Result<Outcome, StoreError> {
    match &b.kind {
        Kind::Spend(rule) => evaluate_spend(ctx, b, rule, rule.period.current(ctx.now), None),
        Kind::RunCap(cap) => evaluate_runs(ctx, b, cap, ctx.now - RECENT_RUNS, None),
    }
}

/// Top contributors by feature, user and model.
type Top = Vec<(Dimension, Vec<(Option<String>, Decimal)>)>;

fn contributors(
    ctx: Ctx<'_>,
    b: &Budget,
    base: &SpendQuery<'_>,
    split_value: Option<&str>,
) -> Result<Top, StoreError> {
    let q = SpendQuery {
        split_value,
        loaded_keys: false,
        ..*base
    };
    let _ = b;
    let mut out = Vec::new();
    for dim in [Dimension::Feature, Dimension::UserId, Dimension::Model] {
        out.push((dim, sql::top(ctx.conn, &q, dim, TOP)?));
    }
    Ok(out)
}

fn top_json(top: &Top) -> Value {
    let mut m = Map::new();
    for (dim, rows) in top {
        m.insert(
            dim.name().to_string(),
            Value::Array(
                rows.iter()
                    .map(|(v, c)| json!({"value": v, "cost": show(*c)}))
                    .collect(),
            ),
        );
    }
    Value::Object(m)
}

/// A new alert id; it is also the Standard Webhooks `webhook-id` of every delivery attempt,
/// so receivers can drop repeats. UUIDv7 sorts by creation time.
pub fn new_alert_id() -> String {
    format!("alrt_{}", uuid::Uuid::now_v7().simple())
}

/// RFC 3339 in the budget's time zone (UTC for rolling windows and run caps).
fn fmt_ts(t: DateTime<Utc>, b: &Budget) -> String {
    match &b.kind {
        Kind::Spend(SpendRule {
            period: Period::Calendar { tz, .. },
            ..
        }) => t
            .with_timezone(tz)
            .to_rfc3339_opts(SecondsFormat::Secs, true),
        _ => t.to_rfc3339_opts(SecondsFormat::Secs, true),
    }
}

/// The budget as payloads describe it.
pub fn budget_json(b: &Budget) -> Value {
    let spec = b.to_spec();
    let mut m = Map::new();
    m.insert("id".into(), b.id.clone().into());
    m.insert("name".into(), b.name.clone().into());
    m.insert("project".into(), b.project.clone().into());
    m.insert(
        "scope".into(),
        serde_json::to_value(&spec.scope).unwrap_or(Value::Null),
    );
    match &b.kind {
        Kind::Spend(rule) => {
            m.insert("kind".into(), "spend".into());
            m.insert("split_by".into(), rule.split_by.map(|d| d.name()).into());
            m.insert("period".into(), rule.period.to_string().into());
            m.insert(
                "tz".into(),
                rule.period.tz().map(|t| t.name().to_string()).into(),
            );
            m.insert("amount".into(), show(rule.amount).into());
            m.insert(
                "thresholds".into(),
                rule.thresholds
                    .iter()
                    .map(|t| show(*t))
                    .collect::<Vec<_>>()
                    .into(),
            );
            m.insert("forecast".into(), rule.forecast.into());
        }
        Kind::RunCap(cap) => {
            m.insert("kind".into(), "run_cap".into());
            m.insert("per".into(), cap.per.name().into());
            m.insert("max_cost".into(), cap.max_cost.map(show).into());
            m.insert("max_calls".into(), cap.max_calls.into());
        }
    }
    Value::Object(m)
}

/// Where a person looks next.
pub fn dashboard_url(public_url: Option<&str>, b: &Budget) -> Option<String> {
    public_url.map(|u| format!("{}/budgets#{}", u.trim_end_matches('/'), b.id))
}

struct SpendFacts<'a> {
    b: &'a Budget,
    rule: &'a SpendRule,
    window: Window,
    row: &'a SpendRow,
    forecast: Option<Decimal>,
    reached: &'a [Decimal],
    top: &'a Top,
}

fn spend_alert(
    ctx: Ctx<'_>,
    f: &SpendFacts<'_>,
    id: &str,
    kind: AlertKind,
    threshold: Decimal,
    superseded_by: Option<&str>,
) -> NewAlert {
    let b = f.b;
    let data = json!({
        "alert_id": id,
        "budget": budget_json(b),
        "split_value": f.rule.split_by.map(|_| f.row.key.clone()),
        "period": {
            "start": fmt_ts(f.window.start, b),
            "end": fmt_ts(f.window.end, b),
            "rolling": f.rule.period.is_rolling(),
        },
        "amount": show(f.rule.amount),
        "spent": show(f.row.spent),
        "percent": show(evaluate::percent(f.row.spent, f.rule.amount)),
        "threshold": (kind == AlertKind::Threshold).then(|| show(threshold)),
        "thresholds_reached": f.reached.iter().map(|t| show(*t)).collect::<Vec<_>>(),
        "forecast": f.forecast.map(show),
        "forecast_method": f.rule.forecast.then_some(FORECAST_METHOD),
        "calls": f.row.calls,
        "unpriced_calls": f.row.unpriced,
        "top_contributors": top_json(f.top),
        "dashboard_url": dashboard_url(ctx.public_url, b),
    });
    NewAlert {
        id: id.to_string(),
        project: b.project.clone(),
        budget_id: b.id.clone(),
        budget_revision: b.revision,
        budget_name: b.name.clone(),
        kind: kind.as_str().into(),
        event_type: kind.event_type().into(),
        split_key: f.row.key.clone(),
        period_start: f.window.start,
        period_end: Some(f.window.end),
        threshold,
        amount: Some(f.rule.amount),
        spent: Some(f.row.spent),
        forecast: f.forecast,
        state: if superseded_by.is_some() {
            "superseded".into()
        } else {
            "open".into()
        },
        superseded_by: superseded_by.map(str::to_string),
        payload: envelope(kind.event_type(), ctx.now, data),
        created_at: ctx.now,
    }
}

/// How forecasts are made, said in every forecast-bearing payload.
pub const FORECAST_METHOD: &str = "spent so far + (spend in the trailing 7 days, or the period's length when shorter) / that window × time left in the period";

#[allow(clippy::too_many_arguments)]
fn run_alert(
    ctx: Ctx<'_>,
    b: &Budget,
    cap: &RunCap,
    run: &RunRow,
    kind: AlertKind,
    top: &Top,
    id: &str,
    since: DateTime<Utc>,
) -> NewAlert {
    let (limit, threshold_text) = match kind {
        AlertKind::RunCapCalls => ("calls", cap.max_calls.map(|c| c.to_string())),
        _ => ("cost", cap.max_cost.map(show)),
    };
    let row = &run.spend;
    let data = json!({
        "alert_id": id,
        "budget": budget_json(b),
        "split_value": row.key,
        "run": {
            "dimension": cap.per.name(),
            "id": row.key,
            "cost": show(row.spent),
            "calls": row.calls,
            "unpriced_calls": row.unpriced,
            "first_call": fmt_ts(run.first, b),
            "last_call": fmt_ts(run.last, b),
            "counted_since": fmt_ts(since, b),
        },
        "limit": limit,
        "max": threshold_text,
        "spent": show(row.spent),
        "calls": row.calls,
        "top_contributors": top_json(top),
        "dashboard_url": dashboard_url(ctx.public_url, b),
    });
    NewAlert {
        id: id.to_string(),
        project: b.project.clone(),
        budget_id: b.id.clone(),
        budget_revision: b.revision,
        budget_name: b.name.clone(),
        kind: kind.as_str().into(),
        event_type: kind.event_type().into(),
        split_key: row.key.clone(),
        period_start: run_key_start(),
        period_end: None,
        threshold: Decimal::ONE_HUNDRED,
        amount: if kind == AlertKind::RunCapCost {
            cap.max_cost
        } else {
            None
        },
        spent: Some(row.spent),
        forecast: None,
        state: "open".into(),
        superseded_by: None,
        payload: envelope(kind.event_type(), ctx.now, data),
        created_at: ctx.now,
    }
}

/// The Standard Webhooks payload shape: `{type, timestamp, data}`.
pub fn envelope(event_type: &str, at: DateTime<Utc>, data: Value) -> String {
    json!({
        "type": event_type,
        "timestamp": at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "data": data,
    })
    .to_string()
}

/// Inserts the alert and, when it is to be delivered, one delivery per channel.
fn write(ctx: Ctx<'_>, b: &Budget, alert: NewAlert, deliver: bool) -> Result<(), StoreError> {
    match sql::insert_alert(ctx.conn, &alert)? {
        Some(seq) => {
            if deliver {
                for channel in &b.channels {
                    sql::insert_delivery(ctx.conn, &alert.id, channel, &b.project, seq, ctx.now)?;
                }
            }
            tracing::info!(
                alert_id = %alert.id,
                budget_id = %b.id,
                kind = %alert.kind,
                threshold = %alert.threshold,
                split = %alert.split_key,
                delivered = deliver,
                "budget alert"
            );
        }
        None => {
            // The UNIQUE key caught what the check above should have: never a second alert.
            tracing::warn!(budget_id = %b.id, kind = %alert.kind, split = %alert.split_key, "alert already recorded; skipped");
        }
    }
    Ok(())
}

/// Split keys touched by events, grouped per period window (for `hook`).
pub type Touched = BTreeMap<(DateTime<Utc>, DateTime<Utc>), Vec<String>>;
