//! `/api/v1/anomalies`: days on which a feature's, user's or model's spend jumps beyond its
//! own recent baseline.
//!
//! **Method.** Spend is summed per calendar day in `tz` for every value of each dimension
//! asked for (default `feature`, `user_id`, `model`). For a day *d* and value *v*, the
//! baseline is *v*'s daily spend on the `window` days before *d* (default 14; a day without
//! spend counts as 0), with median *m* and median absolute deviation *MAD*. The day is an
//! anomaly when
//!
//! ```text
//! spend(d) > m + k × max(MAD, 10 % × m)   and   spend(d) ≥ min_spend
//! ```
//!
//! (defaults `k` = 5, about 3.5 robust standard deviations, and `min_spend` = 1 USD). The
//! median and MAD ignore a few outlier days, so one spike does not hide the next; the 10 %
//! floor keeps a perfectly regular spend from flagging every small wobble; `min_spend` keeps
//! cents from raising alarms. A value with no spend in its window is flagged on its first day
//! above `min_spend` (a jump from nothing). Only days whose whole window lies after the first
//! event in scope are examined, so the start of the data is not mistaken for a jump. The
//! baseline mixes weekdays and weekends; a feature whose weekend spend is far below its weekday
//! spend gets a wide MAD and is flagged only on large jumps. Money stays exact: medians of
//! decimals, no floats.

use std::collections::HashMap;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use super::costs::{format_ts, QueryError};
use super::params::{self, Common, ParamError, TimeRange};
use super::time::{self, Interval};
use super::{dec_json, opt_dec_json, quotient, Table, Tabular, TopN};
use crate::domain::dimension::Dimension;
use crate::store::queries::anomalies as sql;
use crate::store::Store;

/// Days examined when the range is open.
pub const DEFAULT_DAYS: i64 = 30;

/// The method's knobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Method {
    pub window: u32,
    pub k: Decimal,
    pub min_spend: Decimal,
    /// The floor of the deviation scale, as a share of the median.
    pub floor_share: Decimal,
}

impl Default for Method {
    fn default() -> Self {
        Method {
            window: 14,
            k: Decimal::from(5),
            min_spend: Decimal::ONE,
            floor_share: Decimal::new(1, 1),
        }
    }
}

/// A parsed anomalies question.
#[derive(Debug, Clone)]
pub struct AnomalyQuery {
    pub common: Common,
    pub dimensions: Vec<Dimension>,
    pub method: Method,
}

impl AnomalyQuery {
    pub fn parse(pairs: &[(String, String)]) -> Result<AnomalyQuery, ParamError> {
        let (common, extras) =
            params::parse_common(pairs, &["dimensions", "window", "k", "min_spend"], &[])?;
        if !common.group_by.is_empty() || common.interval != Interval::None {
            return Err(ParamError(
                "group_by: anomalies are found per value of each of `dimensions` (e.g. dimensions=feature,model), per day".into(),
            ));
        }
        if common.order.is_some() {
            return Err(ParamError(
                "order: anomalies are sorted by how far they exceed their threshold".into(),
            ));
        }
        let mut dimensions = vec![Dimension::Feature, Dimension::UserId, Dimension::Model];
        let mut method = Method::default();
        for (k, v) in extras {
            match k.as_str() {
                "dimensions" => {
                    dimensions = Vec::new();
                    for name in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        let d: Dimension = name
                            .parse()
                            .map_err(|e: String| ParamError(format!("dimensions: {e}")))?;
                        if !dimensions.contains(&d) {
                            dimensions.push(d);
                        }
                    }
                    if dimensions.is_empty() {
                        return Err(ParamError("dimensions: name at least one".into()));
                    }
                }
                "window" => {
                    method.window =
                        v.parse()
                            .ok()
                            .filter(|w| (3..=90).contains(w))
                            .ok_or_else(|| {
                                ParamError(format!(
                                    "window: {v:?} must be a number of days from 3 to 90"
                                ))
                            })?;
                }
                "k" => {
                    method.k = Decimal::from_str(v.trim())
                        .ok()
                        .filter(|k| *k > Decimal::ZERO && *k <= Decimal::from(100))
                        .ok_or_else(|| {
                            ParamError(format!("k: {v:?} must be a decimal above 0 (at most 100)"))
                        })?;
                }
                "min_spend" => {
                    method.min_spend = Decimal::from_str(v.trim())
                        .ok()
                        .filter(|m| !m.is_sign_negative())
                        .ok_or_else(|| {
                            ParamError(format!(
                                "min_spend: {v:?} must be a non-negative decimal (USD)"
                            ))
                        })?;
                }
                _ => {}
            }
        }
        Ok(AnomalyQuery {
            common,
            dimensions,
            method,
        })
    }
}

/// One anomalous day of one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    pub day: DateTime<Utc>,
    pub dimension: Dimension,
    pub value: String,
    pub spend: Decimal,
    pub median: Decimal,
    pub mad: Decimal,
    pub threshold: Decimal,
}

impl Anomaly {
    /// How far above the baseline, in units of the deviation scale; `None` from nothing.
    pub fn score(&self, method: &Method) -> Option<Decimal> {
        let scale = self.mad.max(self.median * method.floor_share);
        quotient(self.spend - self.median, scale)
    }
}

/// The answer.
#[derive(Debug, Clone)]
pub struct AnomalyAnswer {
    pub query: AnomalyQuery,
    /// First and last day examined (starts of days).
    pub days: Vec<DateTime<Utc>>,
    pub anomalies: Vec<Anomaly>,
    pub truncated: bool,
}

/// The median of `values` (which it sorts); zero for none.
pub fn median(values: &mut [Decimal]) -> Decimal {
    values.sort();
    let n = values.len();
    match n {
        0 => Decimal::ZERO,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / Decimal::TWO,
    }
}

/// Examines each value's daily series: `series[i]` is the spend on day `i`; days from
/// `first_examined` on are checked against the `window` days before them.
pub fn detect(
    series: &[Decimal],
    first_examined: usize,
    method: &Method,
) -> Vec<(usize, Decimal, Decimal, Decimal)> {
    let w = method.window as usize;
    let mut out = Vec::new();
    for (i, spend) in series.iter().enumerate().skip(first_examined.max(w)) {
        if *spend < method.min_spend || spend.is_zero() {
            continue;
        }
        let mut window: Vec<Decimal> = series[i - w..i].to_vec();
        let m = median(&mut window);
        let mut deviations: Vec<Decimal> = window.iter().map(|x| (*x - m).abs()).collect();
        let mad = median(&mut deviations);
        let threshold = m + method.k * mad.max(m * method.floor_share);
        if *spend > threshold {
            out.push((i, m, mad, threshold));
        }
    }
    out
}

/// Finds the anomalies.
pub async fn query(store: &Store, q: AnomalyQuery) -> Result<AnomalyAnswer, QueryError> {
    let c = &q.common;
    let filters = c.filters.clone();
    let (first, last) = store.read(move |conn| sql::span(conn, &filters)).await?;
    let (Some(first), Some(last)) = (first, last) else {
        return Ok(AnomalyAnswer {
            query: q,
            days: Vec::new(),
            anomalies: Vec::new(),
            truncated: false,
        });
    };
    let tz = c.tz;
    let to = c
        .range
        .to
        .unwrap_or_else(|| time::next(time::floor(last, Interval::Day, tz), Interval::Day, tz));
    let from = time::floor(
        c.range.from.unwrap_or(to - Duration::days(DEFAULT_DAYS)),
        Interval::Day,
        tz,
    );
    let examined = time::bucket_starts(from, to, Interval::Day, tz, 3660).map_err(ParamError)?;
    // The window before the first examined day, in whole local days.
    let local_from = from.with_timezone(&tz).date_naive();
    let start = time::start_of_day(tz, local_from - Duration::days(i64::from(q.method.window)));
    let days = time::bucket_starts(start, to, Interval::Day, tz, 3660 + 90).map_err(ParamError)?;
    let data_start = time::floor(first, Interval::Day, tz);
    // A day is examined once its whole window is on or after the first day of data.
    let first_examined = days
        .iter()
        .position(|d| *d >= data_start)
        .map_or(days.len(), |p| p + q.method.window as usize)
        .max(days.len() - examined.len());

    let range = TimeRange {
        from: Some(start),
        to: Some(to),
    };
    let dims = q.dimensions.clone();
    let filters = c.filters.clone();
    let (method, limit) = (q.method.clone(), c.limit);
    let days2 = days.clone();
    let (anomalies, truncated) = store
        .read(move |conn| {
            let days = days2;
            let index: HashMap<DateTime<Utc>, usize> =
                days.iter().enumerate().map(|(i, d)| (*d, i)).collect();
            // Largest excess over the threshold first.
            let mut top = TopN::new(limit, |a: &Anomaly, b: &Anomaly| {
                (b.spend - b.threshold)
                    .cmp(&(a.spend - a.threshold))
                    .then_with(|| a.day.cmp(&b.day))
                    .then_with(|| a.value.cmp(&b.value))
                    .then_with(|| a.dimension.name().cmp(b.dimension.name()))
            });
            for dim in dims {
                // One value's series at a time: a dimension may have millions of values.
                sql::daily(conn, dim, &range, &filters, &days, |value, rows| {
                    let mut s = vec![Decimal::ZERO; days.len()];
                    for (day, spend) in rows {
                        if let Some(i) = index.get(&day) {
                            s[*i] += spend;
                        }
                    }
                    for (i, median, mad, threshold) in detect(&s, first_examined, &method) {
                        top.push(Anomaly {
                            day: days[i],
                            dimension: dim,
                            value: value.clone(),
                            spend: s[i],
                            median,
                            mad,
                            threshold,
                        });
                    }
                })?;
            }
            Ok(top.finish())
        })
        .await?;
    Ok(AnomalyAnswer {
        query: q,
        days: examined,
        anomalies,
        truncated,
    })
}

const COLUMNS: [&str; 10] = [
    "day",
    "dimension",
    "value",
    "spend",
    "baseline_median",
    "baseline_mad",
    "threshold",
    "excess",
    "ratio",
    "score",
];

impl Tabular for AnomalyAnswer {
    fn table(&self) -> Table {
        let tz = self.query.common.tz;
        let mut table = Table::new(COLUMNS.iter().map(|c| c.to_string()).collect());
        for a in &self.anomalies {
            table.rows.push(vec![
                json!(a.day.with_timezone(&tz).date_naive().to_string()),
                json!(a.dimension.name()),
                json!(a.value),
                dec_json(a.spend),
                dec_json(a.median),
                dec_json(a.mad),
                dec_json(a.threshold),
                dec_json(a.spend - a.threshold),
                opt_dec_json(quotient(a.spend, a.median)),
                opt_dec_json(a.score(&self.query.method)),
            ]);
        }
        table
    }
}

impl AnomalyAnswer {
    pub fn to_json(&self) -> Value {
        let c = &self.query.common;
        let m = &self.query.method;
        json!({
            "from": self.days.first().map(|t| format_ts(*t, c.tz)),
            "to": self.days.last().map(|t| format_ts(time::next(*t, Interval::Day, c.tz), c.tz)),
            "tz": c.tz.name(),
            "dimensions": self.query.dimensions.iter().map(|d| d.name()).collect::<Vec<_>>(),
            "method": {
                "rule": "spend(day) > median + k * max(MAD, floor_share * median) and spend(day) >= min_spend, over the `window` days before the day (days without spend count as 0)",
                "window": m.window,
                "k": dec_json(m.k),
                "min_spend": dec_json(m.min_spend),
                "floor_share": dec_json(m.floor_share),
            },
            "anomalies": self.table().objects(),
            "truncated": self.truncated,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(v: &[i64]) -> Vec<Decimal> {
        v.iter().map(|x| Decimal::from(*x)).collect()
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut d(&[3, 1, 2])), dec!(2));
        assert_eq!(median(&mut d(&[4, 1, 2, 3])), dec!(2.5));
        assert_eq!(median(&mut []), dec!(0));
    }

    #[test]
    fn a_planted_jump_is_found_and_noise_is_not() {
        let method = Method {
            window: 5,
            ..Method::default()
        };
        // Day 5: baseline 10, 12, 9, 11, 10 → median 10, deviations 0, 2, 1, 1, 0 → MAD 1 (and
        // the floor, 10 % of 10, is 1 too): threshold 10 + 5 × 1 = 15, and 15 is not above it.
        // Day 6: baseline 12, 9, 11, 10, 15 → median 11, MAD 1, floor 1.1: threshold 16.5.
        let s = d(&[10, 12, 9, 11, 10, 15, 30, 10]);
        let found = detect(&s, 0, &method);
        assert_eq!(found, vec![(6, dec!(11), dec!(1), dec!(16.5))]);
        // Cents never alarm; a jump from nothing does once it reaches min_spend.
        let s = d(&[0, 0, 0, 0, 0, 0, 2]);
        let found = detect(&s, 0, &method);
        assert_eq!(found, vec![(6, dec!(0), dec!(0), dec!(0))]);
        let cents = vec![
            Decimal::ZERO,
            Decimal::ZERO,
            Decimal::ZERO,
            Decimal::ZERO,
            Decimal::ZERO,
            dec!(0.5),
        ];
        assert!(detect(&cents, 0, &method).is_empty());
        // Days before `first_examined` are not examined.
        assert!(detect(&d(&[10, 12, 9, 11, 10, 15, 30]), 7, &method).is_empty());
    }
}
