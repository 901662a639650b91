//! Budget periods and the forecast: which stretch of time a budget counts, computed from its
//! calendar and IANA time zone (or as a rolling window), and the projected period-end spend.
//!
//! Pure: the caller passes `now`. Calendar boundaries come from `analytics::time` (chrono-tz;
//! the bundled DuckDB has no ICU), so a day in America/Los_Angeles is 23 or 25 hours on DST
//! change days, a week starts on Monday and a quarter on 1 January, April, July or October.
//! Because a period is computed, not stored, a new period needs no reset job.

use std::fmt;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;

use crate::analytics::time::{self, Interval};
use crate::domain::money::round_cost;

/// A calendar period's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CalendarUnit {
    Day,
    Week,
    Month,
    Quarter,
}

impl CalendarUnit {
    pub fn name(self) -> &'static str {
        match self {
            CalendarUnit::Day => "day",
            CalendarUnit::Week => "week",
            CalendarUnit::Month => "month",
            CalendarUnit::Quarter => "quarter",
        }
    }
}

/// How a budget divides time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// Calendar periods in a time zone: each starts clean at local midnight.
    Calendar { unit: CalendarUnit, tz: Tz },
    /// The trailing window of this length, ending now.
    Rolling { length: Duration, text: RollingText },
}

/// How a rolling window was written, so it reads back the same (`rolling 48 hours`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollingText {
    pub n: u32,
    pub days: bool,
}

/// `[start, end)` in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// Longest rolling window.
const MAX_ROLLING_DAYS: u32 = 366;

impl Period {
    /// Parses `day`, `week`, `month`, `quarter`, or `rolling N hours|days` (also `N hours`,
    /// `Nh`, `Nd`).
    pub fn parse(text: &str, tz: Tz) -> Result<Period, String> {
        let t = text.trim().to_ascii_lowercase();
        let unit = match t.as_str() {
            "day" | "daily" => Some(CalendarUnit::Day),
            "week" | "weekly" => Some(CalendarUnit::Week),
            "month" | "monthly" => Some(CalendarUnit::Month),
            "quarter" | "quarterly" => Some(CalendarUnit::Quarter),
            _ => None,
        };
        if let Some(unit) = unit {
            return Ok(Period::Calendar { unit, tz });
        }
        let bad = || {
            format!(
                "{text:?}: expected day, week, month, quarter, or rolling N hours|days (e.g. \"rolling 7 days\")"
            )
        };
        let rest = t.strip_prefix("rolling").unwrap_or(&t).trim();
        let split = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (num, unit) = rest.split_at(split);
        let n: u32 = num.parse().map_err(|_| bad())?;
        let days = match unit.trim() {
            "d" | "day" | "days" => true,
            "h" | "hour" | "hours" => false,
            _ => return Err(bad()),
        };
        let hours = if days { n.saturating_mul(24) } else { n };
        if n == 0 || hours > MAX_ROLLING_DAYS * 24 {
            return Err(format!(
                "{text:?}: a rolling window is 1 hour to {MAX_ROLLING_DAYS} days long"
            ));
        }
        Ok(Period::Rolling {
            length: Duration::hours(i64::from(hours)),
            text: RollingText { n, days },
        })
    }

    /// The time zone of a calendar period.
    pub fn tz(&self) -> Option<Tz> {
        match self {
            Period::Calendar { tz, .. } => Some(*tz),
            Period::Rolling { .. } => None,
        }
    }

    pub fn is_rolling(&self) -> bool {
        matches!(self, Period::Rolling { .. })
    }

    /// The period that counts at `now`: the calendar period containing it, or the trailing
    /// window `[now - length, now)`.
    pub fn current(&self, now: DateTime<Utc>) -> Window {
        match self {
            Period::Calendar { .. } => self.containing(now),
            Period::Rolling { length, .. } => Window {
                start: now - *length,
                end: now,
            },
        }
    }

    /// The calendar period containing `t` (for a rolling window: the window ending at `t`).
    pub fn containing(&self, t: DateTime<Utc>) -> Window {
        match *self {
            Period::Rolling { length, .. } => Window {
                start: t - length,
                end: t,
            },
            Period::Calendar { unit, tz } => {
                let start = floor(t, unit, tz);
                Window {
                    start,
                    end: next(start, unit, tz),
                }
            }
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Period::Calendar { unit, .. } => f.write_str(unit.name()),
            Period::Rolling { text, .. } => write!(
                f,
                "rolling {} {}",
                text.n,
                match (text.days, text.n) {
                    (true, 1) => "day",
                    (true, _) => "days",
                    (false, 1) => "hour",
                    (false, _) => "hours",
                }
            ),
        }
    }
}

fn floor(t: DateTime<Utc>, unit: CalendarUnit, tz: Tz) -> DateTime<Utc> {
    match unit {
        CalendarUnit::Day => time::floor(t, Interval::Day, tz),
        CalendarUnit::Week => time::floor(t, Interval::Week, tz),
        CalendarUnit::Month => time::floor(t, Interval::Month, tz),
        CalendarUnit::Quarter => {
            let local = t.with_timezone(&tz).date_naive();
            let month = (local.month0() / 3) * 3 + 1;
            let first = NaiveDate::from_ymd_opt(local.year(), month, 1).unwrap_or(local);
            time::start_of_day(tz, first)
        }
    }
}

fn next(start: DateTime<Utc>, unit: CalendarUnit, tz: Tz) -> DateTime<Utc> {
    match unit {
        CalendarUnit::Day => time::next(start, Interval::Day, tz),
        CalendarUnit::Week => time::next(start, Interval::Week, tz),
        CalendarUnit::Month => time::next(start, Interval::Month, tz),
        CalendarUnit::Quarter => {
            let mut t = start;
            for _ in 0..3 {
                t = time::next(t, Interval::Month, tz);
            }
            t
        }
    }
}

/// The trailing window whose spend gives the recent rate: the last 7 days, or the period's
/// length when that is shorter (a day budget looks at the last 24 hours).
pub fn rate_window(period: Window) -> Duration {
    (period.end - period.start).min(Duration::days(7))
}

/// Projected spend at the end of `period`: what is spent so far plus the recent rate
/// (`recent` spent over the trailing `rate_window`, which may reach back before the period
/// started) times the time left. `None` for a period already over.
pub fn forecast(
    spent: Decimal,
    recent: Decimal,
    rate_window: Duration,
    period: Window,
    now: DateTime<Utc>,
) -> Option<Decimal> {
    if now >= period.end || rate_window <= Duration::zero() {
        return None;
    }
    let left = Decimal::from((period.end - now.max(period.start)).num_seconds());
    let window = Decimal::from(rate_window.num_seconds());
    let projected = spent + recent.checked_mul(left)?.checked_div(window)?;
    Some(round_cost(projected).normalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn la() -> Tz {
        "America/Los_Angeles".parse().unwrap()
    }

    #[test]
    fn days_start_at_local_midnight_and_dst_days_are_23_or_25_hours() {
        let day = Period::Calendar {
            unit: CalendarUnit::Day,
            tz: la(),
        };
        // 2026-11-21 07:59:59Z is 23:59:59 PST on the 20th; one second later is the 21st.
        assert_eq!(
            day.containing(utc("2026-11-21T07:59:59Z")),
            Window {
                start: utc("2026-11-20T08:00:00Z"),
                end: utc("2026-11-21T08:00:00Z")
            }
        );
        assert_eq!(
            day.containing(utc("2026-11-21T08:00:00Z")).start,
            utc("2026-11-21T08:00:00Z")
        );
        // Fall back (1 November 2026): midnight PDT to midnight PST, 25 hours.
        let w = day.containing(utc("2026-11-01T12:00:00Z"));
        assert_eq!(w.start, utc("2026-11-01T07:00:00Z"));
        assert_eq!(w.end, utc("2026-11-02T08:00:00Z"));
        // Spring forward (8 March 2026): 23 hours.
        let w = day.containing(utc("2026-03-08T20:00:00Z"));
        assert_eq!(w.start, utc("2026-03-08T08:00:00Z"));
        assert_eq!(w.end - w.start, Duration::hours(23));
    }

    #[test]
    fn weeks_months_and_quarters() {
        let tz = la();
        let p = |unit| Period::Calendar { unit, tz };
        // Saturday 21 November 2026, 10:00 PST.
        let t = utc("2026-11-21T18:00:00Z");
        assert_eq!(
            p(CalendarUnit::Week).containing(t).start,
            utc("2026-11-16T08:00:00Z")
        );
        let m = p(CalendarUnit::Month).containing(t);
        assert_eq!(
            (m.start, m.end),
            (utc("2026-11-01T07:00:00Z"), utc("2026-12-01T08:00:00Z"))
        );
        let q = p(CalendarUnit::Quarter).containing(t);
        assert_eq!(
            (q.start, q.end),
            (utc("2026-10-01T07:00:00Z"), utc("2027-01-01T08:00:00Z"))
        );
        let q1 = p(CalendarUnit::Quarter).containing(utc("2026-02-10T00:00:00Z"));
        assert_eq!(
            (q1.start, q1.end),
            (utc("2026-01-01T08:00:00Z"), utc("2026-04-01T07:00:00Z"))
        );
        // Month ends: 31 January → February → March in UTC.
        let utc_month = Period::Calendar {
            unit: CalendarUnit::Month,
            tz: Tz::UTC,
        };
        let feb = utc_month.containing(utc("2026-02-28T23:59:59Z"));
        assert_eq!(
            (feb.start, feb.end),
            (utc("2026-02-01T00:00:00Z"), utc("2026-03-01T00:00:00Z"))
        );
    }

    #[test]
    fn rolling_windows_and_parsing() {
        let p = Period::parse("rolling 48 hours", Tz::UTC).unwrap();
        assert_eq!(p.to_string(), "rolling 48 hours");
        let now = utc("2026-11-21T12:00:00Z");
        assert_eq!(p.current(now).start, utc("2026-11-19T12:00:00Z"));
        assert_eq!(
            Period::parse("7d", Tz::UTC).unwrap().to_string(),
            "rolling 7 days"
        );
        assert_eq!(
            Period::parse("1 day", Tz::UTC).unwrap().to_string(),
            "rolling 1 day"
        );
        assert_eq!(Period::parse("Month", la()).unwrap().to_string(), "month");
        for bad in [
            "rolling",
            "rolling 0 days",
            "rolling 5 weeks",
            "900 days",
            "fortnight",
            "-1 days",
        ] {
            assert!(Period::parse(bad, Tz::UTC).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_forecast_is_spend_so_far_plus_the_recent_rate_times_the_time_left() {
        let month = Window {
            start: utc("2026-11-01T00:00:00Z"),
            end: utc("2026-12-01T00:00:00Z"),
        };
        let now = utc("2026-11-21T00:00:00Z");
        let w = rate_window(month);
        assert_eq!(w, Duration::days(7));
        // $70 in the last 7 days is $10 a day; 10 days left; $200 so far → $300.
        assert_eq!(
            forecast(dec!(200), dec!(70), w, month, now),
            Some(dec!(300))
        );
        // A day budget looks at the last 24 hours: $48 in 24 h, 6 h left, $30 so far → $42.
        let day = Window {
            start: utc("2026-11-21T00:00:00Z"),
            end: utc("2026-11-22T00:00:00Z"),
        };
        let w = rate_window(day);
        assert_eq!(w, Duration::hours(24));
        assert_eq!(
            forecast(dec!(30), dec!(48), w, day, utc("2026-11-21T18:00:00Z")),
            Some(dec!(42))
        );
        assert_eq!(forecast(dec!(30), dec!(48), w, day, day.end), None);
    }
}
