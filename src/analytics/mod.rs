//! Analytics: typed questions in, typed answers out.
//!
//! Each submodule parses its endpoint's parameters into a query type, asks the store, and shapes
//! the answer. The dashboard and the JSON API call the same functions, so their numbers agree by
//! construction. No SQL lives here; it is in `store::queries`. Money stays `Decimal` from the
//! database (summed as `DECIMAL`, read back as text) to the answer; quotients of money
//! (cost per successful task, effective prices, …) are divided here, exactly, and rounded once
//! for the answer to [`QUOTIENT_SCALE`] decimal places, a scale every answer states.

pub mod anomalies;
pub mod costs;
pub mod focus_export;
pub mod params;
pub mod reconciliation;
pub mod reprice;
pub mod routes;
pub mod runs;
pub mod tasks;
pub mod time;
pub mod unpriced;
pub mod whatif;

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// Decimal places of every quotient in an answer (rates, per-task and per-token prices),
/// rounded half-even. The same as the stored money scale, so a per-task cost keeps every digit
/// a single stored cost can have.
pub const QUOTIENT_SCALE: u32 = 12;

/// `numerator / denominator`, exact until the one rounding to [`QUOTIENT_SCALE`]; `None` when
/// the denominator is zero (an answer says `null`, never a made-up 0).
pub fn quotient(numerator: Decimal, denominator: Decimal) -> Option<Decimal> {
    if denominator.is_zero() {
        return None;
    }
    numerator.checked_div(denominator).map(|q| {
        q.round_dp_with_strategy(QUOTIENT_SCALE, RoundingStrategy::MidpointNearestEven)
            .normalize()
    })
}

/// A decimal for an answer: exact text, trailing zeros dropped.
pub fn dec_json(d: Decimal) -> Value {
    Value::String(crate::domain::money::to_api_string(d))
}

/// An optional decimal for an answer: `null` when absent.
pub fn opt_dec_json(d: Option<Decimal>) -> Value {
    d.map_or(Value::Null, dec_json)
}

/// `None` after every value, in either direction.
fn cmp_opt<T: Ord>(a: &Option<T>, b: &Option<T>, descending: bool) -> Ordering {
    match (a, b) {
        (Some(x), Some(y)) if descending => y.cmp(x),
        (Some(x), Some(y)) => x.cmp(y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

/// The order of grouped rows whose measures are computed in Rust: the requested `order` (a
/// group key, `bucket` or a measure), then bucket (earliest first), then the `main` measure
/// (largest first), then the keys — the order the costs API uses.
pub(crate) fn group_order<'a, R>(
    c: &'a params::Common,
    keys: impl Fn(&R) -> &[Option<String>] + 'a,
    bucket: impl Fn(&R) -> Option<DateTime<Utc>> + 'a,
    measure: impl Fn(&R, &str) -> Option<Decimal> + 'a,
    main: &'a str,
) -> impl Fn(&R, &R) -> Ordering + 'a {
    move |a, b| {
        let key_index = |name: &str| c.group_by.iter().position(|d| d.name() == name);
        let mut ord = Ordering::Equal;
        if let Some(o) = &c.order {
            ord = if o.key == "bucket" {
                cmp_opt(&bucket(a), &bucket(b), o.descending)
            } else if let Some(i) = key_index(&o.key) {
                cmp_opt(&keys(a)[i], &keys(b)[i], o.descending)
            } else {
                cmp_opt(&measure(a, &o.key), &measure(b, &o.key), o.descending)
            };
        }
        ord.then_with(|| cmp_opt(&bucket(a), &bucket(b), false))
            .then_with(|| cmp_opt(&measure(a, main), &measure(b, main), true))
            .then_with(|| {
                keys(a)
                    .iter()
                    .zip(keys(b))
                    .map(|(x, y)| cmp_opt(x, y, false))
                    .find(|o| *o != Ordering::Equal)
                    .unwrap_or(Ordering::Equal)
            })
    }
}

/// Sorts grouped rows in [`group_order`].
pub(crate) fn sort_groups<R>(
    rows: &mut [R],
    c: &params::Common,
    keys: impl Fn(&R) -> &[Option<String>],
    bucket: impl Fn(&R) -> Option<DateTime<Utc>>,
    measure: impl Fn(&R, &str) -> Option<Decimal>,
    main: &str,
) {
    rows.sort_by(group_order(c, keys, bucket, measure, main));
}

/// The first `limit` of a stream of rows in `order`, holding at most about twice that many at
/// once however many are offered — what bounds an answer's memory by its `limit` rather than by
/// its number of groups.
pub(crate) struct TopN<R, F> {
    rows: Vec<R>,
    limit: usize,
    offered: usize,
    order: F,
}

impl<R, F: Fn(&R, &R) -> Ordering> TopN<R, F> {
    pub(crate) fn new(limit: usize, order: F) -> Self {
        TopN {
            rows: Vec::new(),
            limit: limit.max(1),
            offered: 0,
            order,
        }
    }

    pub(crate) fn push(&mut self, row: R) {
        self.offered += 1;
        self.rows.push(row);
        // Dropping the rows past the first `limit` once there are twice as many keeps the
        // work linear in the rows offered (a selection, not a sort, per `limit` rows).
        if self.rows.len() >= 2 * self.limit {
            self.rows.select_nth_unstable_by(self.limit, &self.order);
            self.rows.truncate(self.limit);
        }
    }

    /// The first `limit` rows in order, and whether more were offered.
    pub(crate) fn finish(mut self) -> (Vec<R>, bool) {
        self.rows.sort_by(&self.order);
        self.rows.truncate(self.limit);
        (self.rows, self.offered > self.limit)
    }
}

/// An answer's rows as a table: what `format=csv|parquet` serialises, and what the JSON
/// answer's `rows` are made of (one object per row, in column order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    pub columns: Vec<String>,
    /// One value per column; money and other decimals are strings, counts numbers, nested
    /// values (a route's error types) arrays.
    pub rows: Vec<Vec<Value>>,
}

impl Table {
    pub fn new(columns: Vec<String>) -> Table {
        Table {
            columns,
            rows: Vec::new(),
        }
    }

    /// A table of grouped rows: one column per group key, `bucket` when the query has an
    /// interval (formatted in its zone), then `measures`. Each row is (keys, bucket, measure
    /// values in the order of `measures`).
    pub fn grouped<'a>(
        common: &params::Common,
        measures: &[&str],
        rows: impl IntoIterator<
            Item = (
                &'a [Option<String>],
                Option<chrono::DateTime<chrono::Utc>>,
                Vec<Value>,
            ),
        >,
    ) -> Table {
        let bucketed = common.interval != time::Interval::None;
        let mut columns: Vec<String> = common
            .group_by
            .iter()
            .map(|d| d.name().to_string())
            .collect();
        if bucketed {
            columns.push("bucket".into());
        }
        columns.extend(measures.iter().map(|s| s.to_string()));
        let mut table = Table::new(columns);
        for (keys, bucket, measures) in rows {
            let mut values: Vec<Value> = keys
                .iter()
                .map(|k| k.clone().map_or(Value::Null, Value::String))
                .collect();
            if bucketed {
                values.push(bucket.map_or(Value::Null, |b| costs::format_ts(b, common.tz).into()));
            }
            values.extend(measures);
            table.rows.push(values);
        }
        table
    }

    /// The rows as JSON objects.
    pub fn objects(&self) -> Vec<Value> {
        self.rows
            .iter()
            .map(|row| {
                let mut obj = Map::new();
                for (c, v) in self.columns.iter().zip(row) {
                    obj.insert(c.clone(), v.clone());
                }
                Value::Object(obj)
            })
            .collect()
    }
}

/// An answer that has a tabular form (every query endpoint of this module).
pub trait Tabular {
    fn table(&self) -> Table;
}

/// The `[analytics]` section of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalyticsConfig {
    /// How long after its last call a task without an outcome stays `open`; after that it is
    /// `unknown` (never a success).
    pub open_task_timeout: Timeout,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        AnalyticsConfig {
            open_task_timeout: Timeout(chrono::Duration::hours(24)),
        }
    }
}

/// A length of time in the configuration: `90s`, `30m`, `24h`, `7d`, or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(pub chrono::Duration);

impl FromStr for Timeout {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let (digits, unit) = t
            .find(|c: char| !c.is_ascii_digit())
            .map_or((t, "s"), |i| (&t[..i], t[i..].trim()));
        let n: i64 = digits
            .parse()
            .map_err(|_| format!("{s:?} is not a duration such as 90s, 30m, 24h or 7d"))?;
        let secs = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            other => {
                return Err(format!(
                    "unknown unit {other:?} in {s:?}; use s, m, h or d (e.g. 24h)"
                ))
            }
        };
        n.checked_mul(secs)
            .filter(|v| *v > 0 && *v <= 3650 * 86_400)
            .map(|v| Timeout(chrono::Duration::seconds(v)))
            .ok_or_else(|| format!("{s:?} must be between 1 second and 3650 days"))
    }
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.num_seconds();
        if s % 86_400 == 0 && s >= 2 * 86_400 {
            write!(f, "{}d", s / 86_400)
        } else if s % 3600 == 0 {
            write!(f, "{}h", s / 3600)
        } else if s % 60 == 0 {
            write!(f, "{}m", s / 60)
        } else {
            write!(f, "{s}s")
        }
    }
}

impl Serialize for Timeout {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Timeout {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(n) => n.to_string().parse(),
            Raw::Text(t) => t.parse(),
        }
        .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever the limit and the order rows come in, the top rows kept while streaming are
    /// the first rows of the whole sorted list, and `truncated` says whether any were left.
    #[test]
    fn top_n_keeps_what_sorting_everything_would() {
        use rand::seq::SliceRandom;
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        // (key, value) with repeated values, so the key decides ties.
        let rows: Vec<(u64, u64)> = (0..1000).map(|i| (i, rng.random_range(0..37))).collect();
        let order = |a: &(u64, u64), b: &(u64, u64)| b.1.cmp(&a.1).then(a.0.cmp(&b.0));
        let mut sorted = rows.clone();
        sorted.sort_by(order);
        for limit in [1, 2, 7, 499, 500, 501, 999, 1000, 1001, 5000] {
            let mut shuffled = rows.clone();
            shuffled.shuffle(&mut rng);
            let mut top = TopN::new(limit, order);
            for r in shuffled {
                top.push(r);
            }
            let (kept, truncated) = top.finish();
            let want = &sorted[..limit.min(sorted.len())];
            assert_eq!(kept, want, "limit {limit}");
            assert_eq!(truncated, limit < rows.len(), "limit {limit}");
        }
        let (kept, truncated) = TopN::new(3, order).finish();
        assert!(kept.is_empty() && !truncated);
    }

    #[test]
    fn quotients_round_once_half_even() {
        assert_eq!(quotient(dec!(1), dec!(3)), Some(dec!(0.333333333333)));
        assert_eq!(quotient(dec!(2), dec!(3)), Some(dec!(0.666666666667)));
        assert_eq!(quotient(dec!(10), dec!(4)), Some(dec!(2.5)));
        assert_eq!(quotient(dec!(1), dec!(0)), None);
        // 0.0000000000005 is exactly half of the last place: half-even keeps 0.
        assert_eq!(
            quotient(dec!(0.000000000001), dec!(2)),
            Some(dec!(0.000000000000))
        );
    }

    #[test]
    fn spans() {
        let p = |s: &str| s.parse::<Timeout>().map(|d| d.0.num_seconds());
        assert_eq!(p("24h"), Ok(86_400));
        assert_eq!(p("90s"), Ok(90));
        assert_eq!(p("30m"), Ok(1800));
        assert_eq!(p("7d"), Ok(604_800));
        assert_eq!(p("3600"), Ok(3600));
        assert!(p("0h").is_err());
        assert!(p("5w").is_err());
        assert!(p("soon").is_err());
        assert_eq!(Timeout(chrono::Duration::hours(36)).to_string(), "36h");
        assert_eq!(Timeout(chrono::Duration::hours(24)).to_string(), "24h");
        assert_eq!(Timeout(chrono::Duration::days(7)).to_string(), "7d");
        let cfg: AnalyticsConfig = serde_json::from_str(r#"{"open_task_timeout": 120}"#).unwrap();
        assert_eq!(cfg.open_task_timeout.0.num_seconds(), 120);
    }
}
