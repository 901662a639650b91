//! The decisions: given a budget's numbers and the alerts it already sent, which alerts are
//! due and what state it is in.
//!
//! Pure and small on purpose — this is where "exactly once" and "never spam" are decided, so
//! it is unit-tested exhaustively. It reads no clock and no database; `hook` and `status`
//! bring the numbers, `outbox` writes what this module decides.

use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;

use super::model::{RunCap, SpendRule};

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlertKind {
    /// Spend reached a threshold (percent of the amount).
    Threshold,
    /// The projected period-end spend passes the amount.
    Forecast,
    /// One run (or task) passed its cost cap.
    RunCapCost,
    /// One run (or task) passed its call cap.
    RunCapCalls,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Threshold => "threshold",
            AlertKind::Forecast => "forecast",
            AlertKind::RunCapCost => "run_cap_cost",
            AlertKind::RunCapCalls => "run_cap_calls",
        }
    }

    pub fn parse(s: &str) -> Option<AlertKind> {
        [
            AlertKind::Threshold,
            AlertKind::Forecast,
            AlertKind::RunCapCost,
            AlertKind::RunCapCalls,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    /// The webhook event type.
    pub fn event_type(self) -> &'static str {
        match self {
            AlertKind::Threshold => "budget.threshold_crossed",
            AlertKind::Forecast => "budget.forecast_exceeded",
            AlertKind::RunCapCost | AlertKind::RunCapCalls => "budget.run_cap_exceeded",
        }
    }
}

/// Where a budget stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// No threshold reached and no forecast past the amount.
    Ok,
    /// A threshold below 100 % reached, or the forecast passes the amount.
    Warning,
    /// Spend reached the amount (or a run its cap).
    Exceeded,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Warning => "warning",
            State::Exceeded => "exceeded",
        }
    }
}

/// `spent` as a percent of `amount`, to two decimals (display only; decisions compare exactly).
pub fn percent(spent: Decimal, amount: Decimal) -> Decimal {
    if amount.is_zero() {
        return Decimal::ZERO;
    }
    (spent * Decimal::ONE_HUNDRED)
        .checked_div(amount)
        .unwrap_or(Decimal::MAX)
        .round_dp_with_strategy(2, RoundingStrategy::ToZero)
        .normalize()
}

/// True when `spent` is at least `threshold` percent of `amount`, compared exactly.
pub fn has_reached(spent: Decimal, amount: Decimal, threshold: Decimal) -> bool {
    spent * Decimal::ONE_HUNDRED >= amount * threshold
}

/// The thresholds `spent` has reached, ascending.
pub fn reached(rule: &SpendRule, spent: Decimal) -> Vec<Decimal> {
    rule.thresholds
        .iter()
        .copied()
        .filter(|t| has_reached(spent, rule.amount, *t))
        .collect()
}

/// A threshold alert to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewThreshold {
    pub threshold: Decimal,
    /// False for lower thresholds reached in the same evaluation as a higher one: they are
    /// recorded (so they never fire later) but only the highest is sent, so a jump from 40 %
    /// to 110 % is one message, not three.
    pub deliver: bool,
}

/// The threshold alerts due: every reached threshold not alerted yet, the highest delivered.
pub fn new_thresholds(reached: &[Decimal], already: &[Decimal]) -> Vec<NewThreshold> {
    let fresh: Vec<Decimal> = reached
        .iter()
        .copied()
        .filter(|t| !already.contains(t))
        .collect();
    let highest = fresh.iter().copied().max();
    fresh
        .into_iter()
        .map(|threshold| NewThreshold {
            threshold,
            deliver: Some(threshold) == highest,
        })
        .collect()
}

/// True when a forecast alert is due: the projection passes the amount while the spend has
/// not reached it yet (once reached, the 100 % threshold speaks instead).
pub fn forecast_due(rule: &SpendRule, spent: Decimal, forecast: Option<Decimal>) -> bool {
    rule.forecast && spent < rule.amount && forecast.is_some_and(|f| f > rule.amount)
}

/// The state of a spend budget.
pub fn spend_state(rule: &SpendRule, spent: Decimal, forecast: Option<Decimal>) -> State {
    if spent >= rule.amount {
        State::Exceeded
    } else if reached(rule, spent)
        .iter()
        .any(|t| *t < Decimal::ONE_HUNDRED)
        || (rule.forecast && forecast.is_some_and(|f| f > rule.amount))
    {
        State::Warning
    } else {
        State::Ok
    }
}

/// The caps one run has reached.
pub fn run_cap_reached(cap: &RunCap, cost: Decimal, calls: i64) -> Vec<AlertKind> {
    let mut out = Vec::new();
    if cap.max_cost.is_some_and(|m| cost >= m) {
        out.push(AlertKind::RunCapCost);
    }
    if cap.max_calls.is_some_and(|m| calls >= m) {
        out.push(AlertKind::RunCapCalls);
    }
    out
}

/// The share of a run cap at which a run is reported as a warning.
const RUN_WARNING_PERCENT: i64 = 80;

/// The state of one run: exceeded at a cap, warning from 80 % of one.
pub fn run_state(cap: &RunCap, cost: Decimal, calls: i64) -> State {
    if !run_cap_reached(cap, cost, calls).is_empty() {
        return State::Exceeded;
    }
    let warn = Decimal::from(RUN_WARNING_PERCENT);
    let near_cost = cap.max_cost.is_some_and(|m| has_reached(cost, m, warn));
    let near_calls = cap
        .max_calls
        .is_some_and(|m| has_reached(Decimal::from(calls), Decimal::from(m), warn));
    if near_cost || near_calls {
        State::Warning
    } else {
        State::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budgets::period::{CalendarUnit, Period};
    use crate::domain::dimension::Dimension;

    fn rule(amount: Decimal, thresholds: &[Decimal], forecast: bool) -> SpendRule {
        SpendRule {
            split_by: None,
            period: Period::Calendar {
                unit: CalendarUnit::Month,
                tz: chrono_tz::Tz::UTC,
            },
            amount,
            thresholds: thresholds.to_vec(),
            forecast,
        }
    }

    #[test]
    fn thresholds_are_reached_at_exactly_their_share() {
        let r = rule(dec!(200), &[dec!(50), dec!(80), dec!(100)], false);
        assert_eq!(reached(&r, dec!(99.999999999999)), Vec::<Decimal>::new());
        assert_eq!(reached(&r, dec!(100)), vec![dec!(50)]);
        assert_eq!(reached(&r, dec!(160)), vec![dec!(50), dec!(80)]);
        assert_eq!(reached(&r, dec!(250)), vec![dec!(50), dec!(80), dec!(100)]);
        assert_eq!(percent(dec!(160), dec!(200)), dec!(80));
        assert_eq!(percent(dec!(1), dec!(3)), dec!(33.33));
    }

    #[test]
    fn each_threshold_fires_once_and_a_jump_sends_one_message() {
        let reached_now = [dec!(50), dec!(80), dec!(100)];
        let due = new_thresholds(&reached_now, &[]);
        assert_eq!(
            due,
            vec![
                NewThreshold {
                    threshold: dec!(50),
                    deliver: false
                },
                NewThreshold {
                    threshold: dec!(80),
                    deliver: false
                },
                NewThreshold {
                    threshold: dec!(100),
                    deliver: true
                },
            ]
        );
        assert!(new_thresholds(&reached_now, &reached_now).is_empty());
        assert_eq!(
            new_thresholds(&[dec!(50), dec!(80)], &[dec!(50)]),
            vec![NewThreshold {
                threshold: dec!(80),
                deliver: true
            }]
        );
    }

    #[test]
    fn forecasts_and_states() {
        let r = rule(dec!(100), &[dec!(50), dec!(100)], true);
        assert!(forecast_due(&r, dec!(40), Some(dec!(101))));
        assert!(
            !forecast_due(&r, dec!(40), Some(dec!(100))),
            "passes means more than"
        );
        assert!(
            !forecast_due(&r, dec!(100), Some(dec!(150))),
            "already exceeded"
        );
        assert!(!forecast_due(
            &rule(dec!(100), &[], false),
            dec!(40),
            Some(dec!(500))
        ));
        assert_eq!(spend_state(&r, dec!(10), Some(dec!(90))), State::Ok);
        assert_eq!(spend_state(&r, dec!(10), Some(dec!(190))), State::Warning);
        assert_eq!(spend_state(&r, dec!(50), None), State::Warning);
        assert_eq!(spend_state(&r, dec!(100), None), State::Exceeded);
    }

    #[test]
    fn run_caps() {
        let cap = RunCap {
            per: Dimension::RunId,
            max_cost: Some(dec!(10)),
            max_calls: Some(100),
        };
        assert!(run_cap_reached(&cap, dec!(9.99), 99).is_empty());
        assert_eq!(
            run_cap_reached(&cap, dec!(10), 5),
            vec![AlertKind::RunCapCost]
        );
        assert_eq!(
            run_cap_reached(&cap, dec!(12), 100),
            vec![AlertKind::RunCapCost, AlertKind::RunCapCalls]
        );
        assert_eq!(run_state(&cap, dec!(1), 79), State::Ok);
        assert_eq!(run_state(&cap, dec!(1), 80), State::Warning);
        assert_eq!(run_state(&cap, dec!(8), 1), State::Warning);
        assert_eq!(run_state(&cap, dec!(1), 100), State::Exceeded);
    }
}
