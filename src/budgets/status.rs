//! Where every budget stands: spend, percent, state and forecast per split value — computed
//! fresh from SQL for `/api/v1/budgets/status`, and kept in memory ([`Snapshot`]) for the
//! sub-millisecond `/v1/budget-check`.
//!
//! The snapshot is refreshed two ways: each commit's evaluation hands over the numbers it just
//! computed for the budgets it touched, and a periodic full refresh (plus one after every budget
//! change) recomputes everything, which also ages rolling windows and starts new periods. A
//! commit counter keeps an older full refresh from overwriting a newer commit's numbers.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use duckdb::Connection;
use rust_decimal::Decimal;

use super::evaluate::{self, State};
use super::model::{Budget, Kind};
use super::outbox::{self, RECENT_RUNS};
use super::period::{self, Window};
use crate::domain::dimension::Dimension;
use crate::store::queries::budgets::{self as sql, SpendQuery};
use crate::store::queries::costs::Source;
use crate::store::StoreError;

/// The numbers of one budget and split value (or one run of a run cap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    pub budget_id: String,
    /// The split value ("" without a split; the run or task id of a run cap).
    pub key: String,
    /// The period counted (a run's first and last call for run caps).
    pub window: Window,
    pub spent: Decimal,
    pub calls: i64,
    pub unpriced: i64,
    pub forecast: Option<Decimal>,
}

/// Readings of every budget as of some commit.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// budget id → split key → (reading, the commit it reflects).
    pub readings: HashMap<String, HashMap<String, (Reading, u64)>>,
    pub refreshed_at: Option<DateTime<Utc>>,
}

impl Snapshot {
    /// Applies a commit's readings.
    pub fn apply_commit(&mut self, readings: Vec<Reading>, commit: u64) {
        for r in readings {
            self.readings
                .entry(r.budget_id.clone())
                .or_default()
                .insert(r.key.clone(), (r, commit));
        }
    }

    /// Replaces everything a full refresh covers: readings no newer than `as_of` (the commit
    /// count read before the refresh's query) are dropped and the fresh ones put in, unless a
    /// later commit already wrote that key.
    pub fn apply_refresh(
        &mut self,
        budgets: &[&str],
        readings: Vec<Reading>,
        as_of: u64,
        at: DateTime<Utc>,
    ) {
        self.readings.retain(|id, _| budgets.contains(&id.as_str()));
        for per_key in self.readings.values_mut() {
            per_key.retain(|_, (_, commit)| *commit > as_of);
        }
        for r in readings {
            let per_key = self.readings.entry(r.budget_id.clone()).or_default();
            if !per_key.contains_key(&r.key) {
                per_key.insert(r.key.clone(), (r, as_of));
            }
        }
        self.refreshed_at = Some(at);
    }

    /// The reading of a budget's split value in the period current at `now`; zero when the
    /// stored one belongs to an earlier period (a new period starts clean).
    pub fn current(&self, b: &Budget, key: &str, now: DateTime<Utc>) -> Option<Reading> {
        let stored = self
            .readings
            .get(&b.id)
            .and_then(|m| m.get(key))
            .map(|(r, _)| r);
        match &b.kind {
            Kind::Spend(rule) => {
                let window = rule.period.current(now);
                let fresh =
                    |r: &&Reading| rule.period.is_rolling() || r.window.start == window.start;
                Some(match stored.filter(fresh) {
                    Some(r) => Reading {
                        window,
                        ..r.clone()
                    },
                    None => Reading {
                        budget_id: b.id.clone(),
                        key: key.to_string(),
                        window,
                        spent: Decimal::ZERO,
                        calls: 0,
                        unpriced: 0,
                        forecast: None,
                    },
                })
            }
            Kind::RunCap(_) => stored.cloned(),
        }
    }
}

/// Fresh readings of one budget at `at`: every split value of its current period, or every
/// run of the last day, summed from `source`. `live` (at is now) leaves a rolling window's end open, as evaluation
/// does, so calls stamped slightly ahead of this server's clock count.
pub fn readings(
    conn: &Connection,
    b: &Budget,
    at: DateTime<Utc>,
    live: bool,
    source: Source,
) -> Result<Vec<Reading>, StoreError> {
    let base = SpendQuery {
        project: &b.project,
        scope: &b.scope,
        from: None,
        to: None,
        split: b.split_dim(),
        split_value: None,
        loaded_keys: false,
        source,
    };
    match &b.kind {
        Kind::Spend(rule) => {
            let window = rule.period.current(at);
            let rows = sql::spend(
                conn,
                &SpendQuery {
                    from: Some(window.start),
                    to: match (rule.period.is_rolling(), live) {
                        (true, true) => None,
                        (true, false) => Some(at),
                        (false, _) => Some(window.end),
                    },
                    ..base
                },
            )?;
            let recent: HashMap<String, Decimal> = if rule.forecast && at < window.end {
                sql::spend(
                    conn,
                    &SpendQuery {
                        from: Some(at - period::rate_window(window)),
                        to: Some(at),
                        ..base
                    },
                )?
                .into_iter()
                .map(|r| (r.key, r.spent))
                .collect()
            } else {
                HashMap::new()
            };
            Ok(rows
                .into_iter()
                .map(|r| {
                    let forecast = rule
                        .forecast
                        .then(|| {
                            period::forecast(
                                r.spent,
                                recent.get(&r.key).copied().unwrap_or_default(),
                                period::rate_window(window),
                                window,
                                at,
                            )
                        })
                        .flatten();
                    Reading {
                        budget_id: b.id.clone(),
                        key: r.key,
                        window,
                        spent: r.spent,
                        calls: r.calls,
                        unpriced: r.unpriced,
                        forecast,
                    }
                })
                .collect())
        }
        Kind::RunCap(_) => {
            let since = at - RECENT_RUNS;
            let rows = sql::run_spend(
                conn,
                &SpendQuery {
                    from: Some(since),
                    to: (!live).then_some(at),
                    ..base
                },
            )?;
            Ok(rows.iter().map(|r| outbox::run_reading(b, r)).collect())
        }
    }
}

/// The state of a reading under its budget.
pub fn state_of(b: &Budget, r: &Reading) -> State {
    match &b.kind {
        Kind::Spend(rule) => evaluate::spend_state(rule, r.spent, r.forecast),
        Kind::RunCap(cap) => evaluate::run_state(cap, r.spent, r.calls),
    }
}

/// JSON of one reading, as status and budget-check show it.
pub fn reading_json(b: &Budget, r: &Reading) -> serde_json::Value {
    use super::model::show;
    let state = state_of(b, r);
    match &b.kind {
        Kind::Spend(rule) => {
            let remaining = (rule.amount - r.spent).max(Decimal::ZERO);
            serde_json::json!({
                "split_value": rule.split_by.map(|_| r.key.clone()),
                "period": {
                    "start": fmt(r.window.start, b),
                    "end": fmt(r.window.end, b),
                },
                "amount": show(rule.amount),
                "spent": show(r.spent),
                "remaining": show(remaining),
                "percent": show(evaluate::percent(r.spent, rule.amount)),
                "state": state.as_str(),
                "forecast": r.forecast.map(show),
                "calls": r.calls,
                "unpriced_calls": r.unpriced,
            })
        }
        Kind::RunCap(cap) => serde_json::json!({
            "split_value": r.key,
            "run": {"dimension": cap.per.name(), "id": r.key, "first_call": fmt(r.window.start, b), "last_call": fmt(r.window.end, b)},
            "spent": show(r.spent),
            "calls": r.calls,
            "unpriced_calls": r.unpriced,
            "max_cost": cap.max_cost.map(show),
            "max_calls": cap.max_calls,
            "remaining_cost": cap.max_cost.map(|m| show((m - r.spent).max(Decimal::ZERO))),
            "remaining_calls": cap.max_calls.map(|m| (m - r.calls).max(0)),
            "state": state.as_str(),
        }),
    }
}

fn fmt(t: DateTime<Utc>, b: &Budget) -> String {
    let tz = match &b.kind {
        Kind::Spend(rule) => rule.period.tz(),
        Kind::RunCap(_) => None,
    };
    match tz {
        Some(tz) => t
            .with_timezone(&tz)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        None => t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }
}

/// What `/v1/budget-check` is asked: the attributes of a call about to be made.
#[derive(Debug, Clone, Default)]
pub struct CheckQuery {
    pub project: String,
    pub given: HashMap<Dimension, Vec<String>>,
}

/// The budgets a call with these attributes would count toward, with their standing.
pub fn check(
    budgets: &[std::sync::Arc<Budget>],
    snapshot: &Snapshot,
    q: &CheckQuery,
    now: DateTime<Utc>,
) -> Vec<(std::sync::Arc<Budget>, Reading)> {
    let mut out = Vec::new();
    for b in budgets.iter().filter(|b| b.project == q.project) {
        if !b.scope.matches_given(&q.given) {
            continue;
        }
        let keys: Vec<String> = match b.split_dim() {
            None => vec![String::new()],
            Some(dim) => match q.given.get(&dim) {
                Some(values) => values.clone(),
                // Without the split value the call's budget is unknown; it is not listed.
                None => continue,
            },
        };
        for key in keys {
            match snapshot.current(b, &key, now) {
                Some(r) => out.push((b.clone(), r)),
                None => {
                    // A run cap with no reading: the run has no calls in the last day yet.
                    out.push((
                        b.clone(),
                        Reading {
                            budget_id: b.id.clone(),
                            key: key.clone(),
                            window: Window {
                                start: now,
                                end: now,
                            },
                            spent: Decimal::ZERO,
                            calls: 0,
                            unpriced: 0,
                            forecast: None,
                        },
                    ))
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budgets::model::BudgetSpec;
    use crate::budgets::period::{CalendarUnit, Period};

    fn budget(json: &str) -> Budget {
        let c = serde_json::from_str::<BudgetSpec>(json)
            .unwrap()
            .check()
            .unwrap();
        Budget {
            id: "b1".into(),
            project: c.project,
            name: c.name,
            revision: 1,
            source: crate::budgets::model::Source::Api,
            scope: c.scope,
            kind: c.kind,
            channels: vec![],
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn reading(key: &str, window: Window, spent: Decimal) -> Reading {
        Reading {
            budget_id: "b1".into(),
            key: key.into(),
            window,
            spent,
            calls: 1,
            unpriced: 0,
            forecast: None,
        }
    }

    #[test]
    fn a_new_period_starts_clean_and_older_refreshes_do_not_win() {
        let b =
            budget(r#"{"name": "d", "period": "day", "amount": "10", "split_by": "customer_id"}"#);
        let Kind::Spend(rule) = &b.kind else { panic!() };
        assert_eq!(
            rule.period,
            Period::Calendar {
                unit: CalendarUnit::Day,
                tz: chrono_tz::Tz::UTC
            }
        );
        let day1 = rule.period.current(utc("2026-11-20T12:00:00Z"));
        let mut s = Snapshot::default();
        s.apply_commit(vec![reading("acme", day1, dec!(7))], 5);
        assert_eq!(
            s.current(&b, "acme", utc("2026-11-20T13:00:00Z"))
                .unwrap()
                .spent,
            dec!(7)
        );
        assert_eq!(
            s.current(&b, "acme", utc("2026-11-21T00:00:00Z"))
                .unwrap()
                .spent,
            dec!(0)
        );
        // A refresh that read before commit 5 does not overwrite it…
        s.apply_refresh(&["b1"], vec![reading("acme", day1, dec!(6))], 4, Utc::now());
        assert_eq!(
            s.current(&b, "acme", utc("2026-11-20T13:00:00Z"))
                .unwrap()
                .spent,
            dec!(7)
        );
        // …one that read after it does, and drops what it no longer sees.
        s.apply_refresh(
            &["b1"],
            vec![reading("globex", day1, dec!(1))],
            5,
            Utc::now(),
        );
        assert_eq!(
            s.current(&b, "acme", utc("2026-11-20T13:00:00Z"))
                .unwrap()
                .spent,
            dec!(0)
        );
        assert_eq!(
            s.current(&b, "globex", utc("2026-11-20T13:00:00Z"))
                .unwrap()
                .spent,
            dec!(1)
        );
        s.apply_refresh(&[], vec![], 6, Utc::now());
        assert!(s.readings.is_empty());
    }

    #[test]
    fn check_lists_the_budgets_a_call_would_count_toward() {
        let all = vec![
            std::sync::Arc::new(budget(
                r#"{"name": "a", "project": "p", "period": "day", "amount": "10", "scope": {"feature": "search"}}"#,
            )),
            std::sync::Arc::new(budget(
                r#"{"name": "b", "project": "p", "period": "day", "amount": "10", "scope": {"model": "gpt-*"}, "split_by": "user_id"}"#,
            )),
            std::sync::Arc::new(budget(
                r#"{"name": "c", "project": "q", "period": "day", "amount": "10"}"#,
            )),
        ];
        let q = |pairs: &[(Dimension, &str)]| {
            let mut given: HashMap<Dimension, Vec<String>> = HashMap::new();
            for (d, v) in pairs {
                given.entry(*d).or_default().push(v.to_string());
            }
            CheckQuery {
                project: "p".into(),
                given,
            }
        };
        let s = Snapshot::default();
        let names = |q: &CheckQuery| -> Vec<String> {
            check(&all, &s, q, Utc::now())
                .iter()
                .map(|(b, r)| format!("{}:{}", b.name, r.key))
                .collect()
        };
        assert_eq!(names(&q(&[(Dimension::Feature, "search")])), vec!["a:"]);
        assert_eq!(
            names(&q(&[
                (Dimension::Feature, "chat"),
                (Dimension::Model, "gpt-4o")
            ])),
            Vec::<String>::new()
        );
        assert_eq!(
            names(&q(&[
                (Dimension::Feature, "search"),
                (Dimension::Model, "gpt-4o"),
                (Dimension::UserId, "u1")
            ])),
            vec!["a:", "b:u1"]
        );
    }
}
