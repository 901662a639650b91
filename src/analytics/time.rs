//! Time ranges and buckets in a time zone, computed in Rust.
//!
//! DuckDB's bundled build has no ICU, so zone-aware `date_trunc` is not available in SQL.
//! Buckets are therefore computed here with `chrono-tz` as UTC instants (a day in
//! America/Los_Angeles is 23 or 25 hours on DST change days) and handed to SQL as plain values.

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone,
    Timelike, Utc,
};
use chrono_tz::Tz;

/// Bucket width of a time series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    None,
    Hour,
    Day,
    Week,
    Month,
}

impl Interval {
    pub fn parse(s: &str) -> Result<Interval, String> {
        match s {
            "none" | "" => Ok(Interval::None),
            "hour" => Ok(Interval::Hour),
            "day" => Ok(Interval::Day),
            "week" => Ok(Interval::Week),
            "month" => Ok(Interval::Month),
            other => Err(format!(
                "unknown interval {other:?}; expected hour, day, week, month or none"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Interval::None => "none",
            Interval::Hour => "hour",
            Interval::Day => "day",
            Interval::Week => "week",
            Interval::Month => "month",
        }
    }
}

/// The UTC instant of a local wall-clock time; in a DST gap, the first instant after it.
pub fn local_to_utc(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        LocalResult::None => {
            // Gaps are at most a few hours; step forward a minute at a time to their end.
            let mut probe = local;
            for _ in 0..(24 * 60) {
                probe += Duration::minutes(1);
                if let Some(t) = tz.from_local_datetime(&probe).earliest() {
                    return t.with_timezone(&Utc);
                }
            }
            Utc.from_utc_datetime(&local)
        }
    }
}

/// Local midnight at the start of `date`.
pub fn start_of_day(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    local_to_utc(tz, date.and_time(NaiveTime::MIN))
}

/// Start of the bucket containing `ts`.
pub fn floor(ts: DateTime<Utc>, interval: Interval, tz: Tz) -> DateTime<Utc> {
    let local = ts.with_timezone(&tz).naive_local();
    match interval {
        Interval::None => ts,
        Interval::Hour => {
            // Truncate the local minutes and seconds; within one hour the offset is fixed, so
            // this works for half- and quarter-hour zones too.
            let l = ts.with_timezone(&tz);
            ts - Duration::seconds(i64::from(l.minute()) * 60 + i64::from(l.second()))
                - Duration::nanoseconds(i64::from(l.nanosecond()))
        }
        Interval::Day => start_of_day(tz, local.date()),
        Interval::Week => {
            let monday =
                local.date() - Duration::days(local.date().weekday().num_days_from_monday() as i64);
            start_of_day(tz, monday)
        }
        Interval::Month => {
            let first =
                NaiveDate::from_ymd_opt(local.year(), local.month(), 1).unwrap_or(local.date());
            start_of_day(tz, first)
        }
    }
}

/// Start of the bucket after the one starting at `start`.
pub fn next(start: DateTime<Utc>, interval: Interval, tz: Tz) -> DateTime<Utc> {
    let local = start.with_timezone(&tz).naive_local();
    match interval {
        Interval::None => start,
        Interval::Hour => start + Duration::hours(1),
        Interval::Day => start_of_day(tz, local.date() + Duration::days(1)),
        Interval::Week => start_of_day(tz, local.date() + Duration::days(7)),
        Interval::Month => {
            let (y, m) = if local.month() == 12 {
                (local.year() + 1, 1)
            } else {
                (local.year(), local.month() + 1)
            };
            start_of_day(tz, NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(local.date()))
        }
    }
}

/// Every bucket start covering `[from, to)`, at most `max` of them.
pub fn bucket_starts(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    interval: Interval,
    tz: Tz,
    max: usize,
) -> Result<Vec<DateTime<Utc>>, String> {
    let mut out = Vec::new();
    if interval == Interval::None || from >= to {
        return Ok(out);
    }
    let mut cur = floor(from, interval, tz);
    while cur < to {
        if out.len() == max {
            return Err(format!(
                "more than {max} {} buckets between {} and {}; use a coarser interval or a shorter range",
                interval.name(),
                from.to_rfc3339(),
                to.to_rfc3339()
            ));
        }
        out.push(cur);
        let n = next(cur, interval, tz);
        if n <= cur {
            break;
        }
        cur = n;
    }
    Ok(out)
}

/// Parses a range bound: an RFC 3339 timestamp, or a date meaning local midnight (for `to`, the
/// midnight that ends that day, so `to=2026-11-30` includes the 30th).
pub fn parse_bound(raw: &str, tz: Tz, is_end: bool) -> Result<DateTime<Utc>, String> {
    if let Ok(ts) = DateTime::parse_from_rfc3339(raw) {
        return Ok(ts.with_timezone(&Utc));
    }
    if let Ok(date) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        let date = if is_end {
            date + Duration::days(1)
        } else {
            date
        };
        return Ok(start_of_day(tz, date));
    }
    Err(format!(
        "{raw:?} is neither an RFC 3339 timestamp nor a date (YYYY-MM-DD)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn days_in_los_angeles_across_the_dst_change() {
        let tz: Tz = "America/Los_Angeles".parse().unwrap();
        // 2026-11-01 is the fall-back day: 25 hours long.
        let starts = bucket_starts(
            utc("2026-10-31T07:00:00Z"),
            utc("2026-11-03T08:00:00Z"),
            Interval::Day,
            tz,
            100,
        )
        .unwrap();
        assert_eq!(
            starts,
            vec![
                utc("2026-10-31T07:00:00Z"),
                utc("2026-11-01T07:00:00Z"),
                utc("2026-11-02T08:00:00Z"),
            ]
        );
        // The spring-forward day is 23 hours long.
        let d = start_of_day(tz, NaiveDate::from_ymd_opt(2026, 3, 8).unwrap());
        assert_eq!(next(d, Interval::Day, tz) - d, Duration::hours(23));
    }

    #[test]
    fn weeks_start_on_monday_and_months_on_the_first() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        // Sunday 2026-11-22 10:00 UTC is in the week of Monday 2026-11-16 (CET, UTC+1).
        assert_eq!(
            floor(utc("2026-11-22T10:00:00Z"), Interval::Week, tz),
            utc("2026-11-15T23:00:00Z")
        );
        assert_eq!(
            floor(utc("2026-11-22T10:00:00Z"), Interval::Month, tz),
            utc("2026-10-31T23:00:00Z")
        );
        assert_eq!(
            next(utc("2026-10-31T23:00:00Z"), Interval::Month, tz),
            utc("2026-11-30T23:00:00Z")
        );
    }

    #[test]
    fn hours_in_a_half_hour_zone() {
        let tz: Tz = "Asia/Kolkata".parse().unwrap();
        assert_eq!(
            floor(utc("2026-11-21T10:10:00Z"), Interval::Hour, tz),
            utc("2026-11-21T09:30:00Z")
        );
        assert_eq!(
            floor(utc("2026-11-21T10:40:00Z"), Interval::Hour, tz),
            utc("2026-11-21T10:30:00Z")
        );
    }

    #[test]
    fn bounds() {
        let tz: Tz = "America/New_York".parse().unwrap();
        assert_eq!(
            parse_bound("2026-11-20", tz, false).unwrap(),
            utc("2026-11-20T05:00:00Z")
        );
        assert_eq!(
            parse_bound("2026-11-20", tz, true).unwrap(),
            utc("2026-11-21T05:00:00Z")
        );
        assert_eq!(
            parse_bound("2026-11-20T01:00:00+01:00", tz, true).unwrap(),
            utc("2026-11-20T00:00:00Z")
        );
        assert!(parse_bound("last week", tz, false).is_err());
    }

    #[test]
    fn too_many_buckets_is_an_error() {
        let tz = Tz::UTC;
        assert!(bucket_starts(
            utc("2020-01-01T00:00:00Z"),
            utc("2026-01-01T00:00:00Z"),
            Interval::Hour,
            tz,
            1000
        )
        .is_err());
    }
}
