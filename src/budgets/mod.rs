//! Budgets and alerts: spend budgets over any dimension filter (optionally one per value of a
//! dimension) per calendar period or rolling window, run caps for runaway agent loops,
//! forecasts, and exactly-once signed, retried webhook and Slack alerts.
//!
//! How the parts fit:
//! - [`model`] (what a budget is), [`period`] (periods and forecast) and [`evaluate`] (which
//!   alerts are due) are pure.
//! - [`Hook`] runs inside every event commit on the writer thread: it picks the budgets the
//!   fresh events can touch (matching their dimensions in memory), asks [`outbox`] to sum the
//!   period's spend in SQL — which sees the transaction's own uncommitted rows — and to write
//!   the alert rows due, in the same transaction as the events that caused them. Spend is never
//!   a stored counter, so there is nothing to reset and nothing a restart can lose.
//! - [`dispatcher`] delivers those rows per channel, in order, with retries ([`delivery`],
//!   [`signing`]).
//! - [`status`] answers where budgets stand, fresh from SQL or from the in-memory snapshot the
//!   gateways' check endpoint reads.
//! - [`service`] is what the API, the config file and the demo call: CRUD through the writer.
//!
//! Budget definitions live in memory (reloaded after every change), so evaluation never reads
//! them per batch. Nothing here blocks or refuses LLM calls: Tally sees spend after the calls
//! complete, so budgets alert, and enforcement through `/v1/budget-check` is eventually
//! consistent.

pub mod channel;
pub mod delivery;
pub mod dispatcher;
pub mod evaluate;
pub mod model;
pub mod outbox;
pub mod period;
pub mod service;
pub mod signing;
pub mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use duckdb::Connection;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::domain::dimension::Dimension;
use crate::domain::event::PricedEvent;
use crate::store::queries::costs::Source;
use crate::store::{CommitHook, StoreError};
use model::{Budget, Kind};
use outbox::{Ctx, Outcome};
use period::Window;
use status::Snapshot;

/// `[alerts]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// Wait before each delivery attempt: the first entry before the first attempt, then one
    /// per retry; when the list is used up the delivery is marked failed. Durations such as
    /// `0s`, `500ms`, `5s`, `5m`, `2h`, `1d`.
    pub retry_schedule: Vec<String>,
    /// How long one delivery attempt may take before it counts as failed.
    pub timeout: String,
    /// How often the in-memory budget numbers behind `/v1/budget-check` are recomputed in
    /// full (commits update the budgets they touch at once; this ages rolling windows).
    pub refresh: String,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            // Standard Webhooks' schedule, continued with 10 h steps to about three days.
            retry_schedule: [
                "0s", "5s", "5m", "30m", "2h", "5h", "10h", "10h", "10h", "10h", "10h", "10h",
            ]
            .map(String::from)
            .to_vec(),
            timeout: "10s".into(),
            refresh: "30s".into(),
        }
    }
}

/// [`AlertsConfig`], parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub retry_schedule: Vec<Duration>,
    pub timeout: Duration,
    pub refresh: Duration,
}

impl AlertsConfig {
    pub fn parse(&self) -> Result<Settings, String> {
        let retry_schedule = self
            .retry_schedule
            .iter()
            .map(|s| parse_duration(s).map_err(|e| format!("alerts.retry_schedule: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        if retry_schedule.is_empty() {
            return Err(
                "alerts.retry_schedule needs at least one entry (\"0s\": send at once)".into(),
            );
        }
        let timeout = parse_duration(&self.timeout).map_err(|e| format!("alerts.timeout: {e}"))?;
        let refresh = parse_duration(&self.refresh).map_err(|e| format!("alerts.refresh: {e}"))?;
        if timeout.is_zero() || refresh.is_zero() {
            return Err("alerts.timeout and alerts.refresh must be positive".into());
        }
        Ok(Settings {
            retry_schedule,
            timeout,
            refresh,
        })
    }
}

/// `500ms`, `5s`, `5m`, `2h`, `1d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 500ms, 5s, 5m, 2h or 1d"))?;
    let ms = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{text:?}: the unit must be ms, s, m, h or d")),
    };
    Ok(Duration::from_millis(n.saturating_mul(ms)))
}

/// What a commit's evaluation computed, held until the commit succeeds.
#[derive(Debug, Default)]
struct Staged {
    outcome: Outcome,
}

/// The budgets' shared state: definitions, the in-memory snapshot, the dispatcher's wake-up.
pub struct Engine {
    settings: Settings,
    public_url: Option<String>,
    /// Whether spend may be summed from the rollups (`storage.use_rollups`).
    spend_source: Source,
    budgets: RwLock<Arc<Vec<Arc<Budget>>>>,
    snapshot: RwLock<Snapshot>,
    staged: Mutex<Staged>,
    /// Commits seen; orders snapshot updates against full refreshes.
    commits: AtomicU64,
    /// Wakes the dispatcher (a commit wrote alerts, a worker finished, a redelivery).
    pub wake: Notify,
    stop_signal: Notify,
    stopping: AtomicBool,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // A poisoned lock means a panic elsewhere mid-update of plain data; keep serving.
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl Engine {
    pub fn new(
        settings: Settings,
        public_url: Option<String>,
        spend_source: Source,
    ) -> Arc<Engine> {
        Arc::new(Engine {
            settings,
            public_url,
            spend_source,
            budgets: RwLock::new(Arc::new(Vec::new())),
            snapshot: RwLock::new(Snapshot::default()),
            staged: Mutex::new(Staged::default()),
            commits: AtomicU64::new(0),
            wake: Notify::new(),
            stop_signal: Notify::new(),
            stopping: AtomicBool::new(false),
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn public_url(&self) -> Option<&str> {
        self.public_url.as_deref()
    }

    /// Where spend is summed from: see `store::queries::budgets::spend`.
    pub fn spend_source(&self) -> Source {
        self.spend_source
    }

    /// The budget definitions (a cheap snapshot).
    pub fn budgets(&self) -> Arc<Vec<Arc<Budget>>> {
        read(&self.budgets).clone()
    }

    /// Replaces the definitions.
    pub fn set_budgets(&self, budgets: Vec<Budget>) {
        *write(&self.budgets) = Arc::new(budgets.into_iter().map(Arc::new).collect());
    }

    /// Runs `f` on the snapshot.
    pub fn with_snapshot<T>(&self, f: impl FnOnce(&Snapshot) -> T) -> T {
        f(&read(&self.snapshot))
    }

    /// Commits counted so far (read before a full refresh's query).
    pub fn commit_count(&self) -> u64 {
        self.commits.load(Ordering::SeqCst)
    }

    /// Puts a full refresh into the snapshot.
    pub fn apply_refresh(&self, readings: Vec<status::Reading>, as_of: u64, at: DateTime<Utc>) {
        let budgets = self.budgets();
        let ids: Vec<&str> = budgets.iter().map(|b| b.id.as_str()).collect();
        write(&self.snapshot).apply_refresh(&ids, readings, as_of, at);
    }

    /// The commit hook to register with the store.
    pub fn hook(self: &Arc<Self>) -> Arc<dyn CommitHook> {
        Arc::new(Hook {
            engine: self.clone(),
        })
    }

    fn request_stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.stop_signal.notify_waiters();
        self.wake.notify_one();
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Evaluates the budgets `fresh` can touch; called inside the writer's transaction.
    fn evaluate_commit(
        &self,
        conn: &Connection,
        fresh: &[&PricedEvent],
        now: DateTime<Utc>,
    ) -> Result<Outcome, StoreError> {
        let budgets = self.budgets();
        let mut outcome = Outcome::default();
        if budgets.is_empty() {
            return Ok(outcome);
        }
        let ctx = Ctx {
            conn,
            now,
            public_url: self.public_url(),
            source: self.spend_source,
        };
        for b in budgets.iter() {
            let touched = fresh.iter().copied().filter(|e| {
                e.event.dims.project.as_deref() == Some(b.project.as_str()) && b.scope.matches(e)
            });
            match &b.kind {
                Kind::Spend(rule) => {
                    let current = rule.period.current(now);
                    let mut windows: BTreeMap<(DateTime<Utc>, DateTime<Utc>), BTreeSet<String>> =
                        BTreeMap::new();
                    for e in touched {
                        let ts = e.event.ts;
                        let window = if rule.period.is_rolling() {
                            current
                        } else {
                            rule.period.containing(ts)
                        };
                        // Late events of a period already over update its numbers (they are
                        // stored) but alert nobody: see README "late events".
                        if ts < window.start || (window.end <= now && !rule.period.is_rolling()) {
                            continue;
                        }
                        let keys = windows.entry((window.start, window.end)).or_default();
                        match rule.split_by {
                            None => {
                                keys.insert(String::new());
                            }
                            Some(dim) => {
                                keys.extend(model::values(e, dim).into_iter().map(str::to_string))
                            }
                        }
                    }
                    for ((start, end), keys) in windows {
                        if keys.is_empty() {
                            continue;
                        }
                        let keys: Vec<String> = keys.into_iter().collect();
                        outcome.merge(outbox::evaluate_spend(
                            ctx,
                            b,
                            rule,
                            Window { start, end },
                            Some(&keys),
                        )?);
                    }
                }
                Kind::RunCap(cap) => {
                    let mut keys: BTreeSet<String> = BTreeSet::new();
                    let mut earliest: Option<DateTime<Utc>> = None;
                    for e in touched {
                        if let Some(run) = model::values(e, cap.per).first() {
                            keys.insert(run.to_string());
                            earliest = Some(earliest.map_or(e.event.ts, |t| t.min(e.event.ts)));
                        }
                    }
                    let Some(earliest) = earliest else { continue };
                    let keys: Vec<String> = keys.into_iter().collect();
                    outcome.merge(outbox::evaluate_runs(
                        ctx,
                        b,
                        cap,
                        earliest - outbox::RUN_LOOKBACK,
                        Some(&keys),
                    )?);
                }
            }
        }
        Ok(outcome)
    }
}

/// The writer's commit hook.
struct Hook {
    engine: Arc<Engine>,
}

impl CommitHook for Hook {
    fn name(&self) -> &'static str {
        "budgets"
    }

    fn after_append(&self, conn: &Connection, fresh: &[&PricedEvent]) -> Result<(), StoreError> {
        let outcome = self.engine.evaluate_commit(conn, fresh, Utc::now())?;
        // Held until the commit succeeds; a rolled-back group's numbers are overwritten by the
        // next group's evaluation before any after_commit can publish them.
        self.engine
            .staged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .outcome = outcome;
        Ok(())
    }

    fn after_commit(&self) {
        let staged =
            std::mem::take(&mut *self.engine.staged.lock().unwrap_or_else(|p| p.into_inner()));
        let commit = self.engine.commits.fetch_add(1, Ordering::SeqCst) + 1;
        write(&self.engine.snapshot).apply_commit(staged.outcome.readings, commit);
        if staged.outcome.alerts > 0 {
            self.engine.wake.notify_one();
        }
    }
}

/// The dimensions `/v1/budget-check` accepts (every dimension but `project`, which is the key's).
pub fn check_dimensions() -> impl Iterator<Item = Dimension> {
    Dimension::ALL
        .into_iter()
        .filter(|d| *d != Dimension::Project)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_the_default_schedule() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86_400));
        assert!(
            parse_duration("5").is_err()
                && parse_duration("m").is_err()
                && parse_duration("2w").is_err()
        );
        let s = AlertsConfig::default().parse().unwrap();
        assert_eq!(s.retry_schedule[0], Duration::ZERO);
        let total: Duration = s.retry_schedule.iter().sum();
        // About three days, as the Standard Webhooks schedule continued.
        assert!(
            total > Duration::from_secs(2 * 86_400)
                && total < Duration::from_secs(3 * 86_400 + 3_600 * 6),
            "{total:?}"
        );
    }
}
