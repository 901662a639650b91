//! `/api/v1/reconciliation`: what the providers billed against what Tally metered, per
//! provider and day (and optionally project or model).
//!
//! The metered side is asked of [`super::costs::query`] itself — the same SQL, buckets and
//! filters as `/api/v1/costs` — so "metered" always equals the costs API to the last digit.
//! The billed side sums the imported billing lines by the same day buckets (by each line's
//! period start, in the requested time zone) and, separately, the usage reports' volumes.
//!
//! Per group: `billed` (USD lines: every charge, taxes and credits included; `billed_usage` is
//! the usage charges alone), `metered` (Tally's counted cost, with its reported and computed
//! parts), `gap = billed − metered`, `gap_pct = gap / billed`, `coverage_pct = metered /
//! billed`, and `unattributed = max(gap, 0)`: billed spend no event explains. Lines billed in
//! another currency are listed per currency and left out of every USD figure, because events
//! are priced in USD and Tally converts nothing. Besides the groups, the gateway markup per
//! route: reported cost against list price for the calls where both are known.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{json, Map, Value};

use super::costs::{self, CostQuery, Measures, MAX_BUCKETS};
use super::params::{Common, Filter, ParamError, TimeRange, MAX_LIMIT};
use super::time::{self, Interval};
use crate::domain::dimension::Dimension;
use crate::domain::money::to_api_string;
use crate::store::queries::costs as cost_sql;
use crate::store::queries::reconciliation::{self as sql, MarkupRow};
use crate::store::Store;

pub use super::costs::QueryError;

/// A parsed reconciliation question.
#[derive(Debug, Clone)]
pub struct ReconQuery {
    pub range: TimeRange,
    pub tz: Tz,
    /// Group by day buckets in `tz`.
    pub by_day: bool,
    /// Provider, project and/or model, in the order asked.
    pub group_by: Vec<Dimension>,
    /// Filters by provider, model or project.
    pub filters: Vec<Filter>,
}

const KEYS: &str = "provider, day, project, model";

impl ReconQuery {
    /// Parses `from`, `to`, `tz`, `group_by` (default `provider,day`) and the `provider`,
    /// `model` and `project` filters.
    pub fn parse(pairs: &[(String, String)]) -> Result<ReconQuery, ParamError> {
        let mut tz = Tz::UTC;
        if let Some((_, v)) = pairs.iter().find(|(k, _)| k == "tz") {
            tz = v.parse().map_err(|_| {
                ParamError(format!(
                    "tz: unknown time zone {v:?}; use an IANA name such as Europe/Berlin"
                ))
            })?;
        }
        let mut q = ReconQuery {
            range: TimeRange::default(),
            tz,
            by_day: true,
            group_by: vec![Dimension::Provider],
            filters: Vec::new(),
        };
        for (key, value) in pairs {
            match key.as_str() {
                "tz" => {}
                "from" => {
                    q.range.from = Some(
                        time::parse_bound(value, tz, false)
                            .map_err(|e| ParamError(format!("from: {e}")))?,
                    )
                }
                "to" => {
                    q.range.to = Some(
                        time::parse_bound(value, tz, true)
                            .map_err(|e| ParamError(format!("to: {e}")))?,
                    )
                }
                "group_by" => {
                    q.by_day = false;
                    q.group_by.clear();
                    for name in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        let dim = match name {
                            "day" if !q.by_day => {
                                q.by_day = true;
                                continue;
                            }
                            "provider" => Dimension::Provider,
                            "project" => Dimension::Project,
                            "model" => Dimension::Model,
                            "day" => {
                                return Err(ParamError("group_by: day is listed twice".into()))
                            }
                            other => {
                                return Err(ParamError(format!(
                                    "group_by: cannot group billing by {other:?}; expected any of {KEYS}"
                                )))
                            }
                        };
                        if q.group_by.contains(&dim) {
                            return Err(ParamError(format!("group_by: {name} is listed twice")));
                        }
                        q.group_by.push(dim);
                    }
                }
                "provider" | "model" | "project" => {
                    let dim: Dimension = key.parse().map_err(ParamError)?;
                    let values: Vec<Option<String>> = value
                        .split(',')
                        .map(str::trim)
                        .map(|v| (!v.is_empty()).then(|| v.to_string()))
                        .collect();
                    match q.filters.iter_mut().find(|f| f.dim == dim) {
                        Some(f) => f.values.extend(values),
                        None => q.filters.push(Filter { dim, values }),
                    }
                }
                other => {
                    return Err(ParamError(format!(
                        "unknown parameter {other:?}; expected from, to, tz, group_by ({KEYS}) \
                         or a provider, model or project filter"
                    )))
                }
            }
        }
        if let (Some(from), Some(to)) = (q.range.from, q.range.to) {
            if from >= to {
                return Err(ParamError(format!(
                    "from ({}) must be before to ({})",
                    from.to_rfc3339(),
                    to.to_rfc3339()
                )));
            }
        }
        Ok(q)
    }
}

/// Billed against metered for one group (and day).
#[derive(Debug, Clone, Default)]
pub struct ReconRow {
    pub keys: Vec<Option<String>>,
    pub bucket: Option<DateTime<Utc>>,
    /// USD billing lines, every charge category.
    pub billed: Decimal,
    /// USD usage charges only.
    pub billed_usage: Decimal,
    /// Billing lines of the group, every currency.
    pub billed_lines: i64,
    /// Lines billed in other currencies, per currency: never added to USD.
    pub billed_other_currencies: BTreeMap<String, Decimal>,
    /// The costs API's measures for the same group and day.
    pub metered: Measures,
    pub volumes: Option<Volumes>,
}

/// Volumes from usage reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Volumes {
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub requests: Option<i64>,
    pub lines: i64,
}

impl ReconRow {
    pub fn gap(&self) -> Decimal {
        self.billed - self.metered.cost
    }

    /// Billed spend no metered cost explains.
    pub fn unattributed(&self) -> Decimal {
        self.gap().max(Decimal::ZERO)
    }

    fn add(&mut self, other: &ReconRow) {
        self.billed += other.billed;
        self.billed_usage += other.billed_usage;
        self.billed_lines += other.billed_lines;
        for (c, v) in &other.billed_other_currencies {
            *self.billed_other_currencies.entry(c.clone()).or_default() += *v;
        }
        if let Some(v) = &other.volumes {
            let mine = self.volumes.get_or_insert_with(|| Volumes {
                requests: Some(0),
                ..Volumes::default()
            });
            mine.input_tokens += v.input_tokens;
            mine.output_tokens += v.output_tokens;
            mine.lines += v.lines;
            mine.requests = match (mine.requests, v.requests) {
                (Some(a), Some(b)) => Some(a + b),
                _ => None,
            };
        }
    }
}

/// The whole answer.
#[derive(Debug, Clone)]
pub struct ReconAnswer {
    pub query: ReconQuery,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub rows: Vec<ReconRow>,
    /// Sums over every row; `metered` is the costs API's total for the range.
    pub total: ReconRow,
    /// Sum of the rows' unattributed spend (not the total's: over-metered groups do not
    /// offset under-metered ones).
    pub unattributed: Decimal,
    pub markup: Vec<MarkupRow>,
}

/// Answers a reconciliation question.
pub async fn query(store: &Store, q: ReconQuery) -> Result<ReconAnswer, QueryError> {
    let (mut from, mut to) = (q.range.from, q.range.to);
    if from.is_none() || to.is_none() {
        // An open range is closed by the data on both sides, so both are bucketed alike.
        let ((elo, ehi), (blo, bhi)) = store
            .read(|conn| Ok((cost_sql::span(conn)?, sql::span(conn)?)))
            .await?;
        let lo = [elo, blo].into_iter().flatten().min();
        let hi = [ehi, bhi].into_iter().flatten().max();
        from = from.or(lo);
        to = to.or(hi.map(|h| h + chrono::Duration::microseconds(1)));
    }
    let (Some(from), Some(to)) = (from, to) else {
        // No data at all and no range: nothing to reconcile.
        return Ok(ReconAnswer {
            query: q,
            from: None,
            to: None,
            rows: Vec::new(),
            total: ReconRow::default(),
            unattributed: Decimal::ZERO,
            markup: Vec::new(),
        });
    };
    let range = TimeRange {
        from: Some(from),
        to: Some(to),
    };
    let interval = if q.by_day {
        Interval::Day
    } else {
        Interval::None
    };
    let buckets = time::bucket_starts(from, to, interval, q.tz, MAX_BUCKETS).map_err(ParamError)?;

    let metered = costs::query(
        store,
        CostQuery {
            common: Common {
                range,
                interval,
                tz: q.tz,
                group_by: q.group_by.clone(),
                filters: q.filters.clone(),
                order: None,
                limit: MAX_LIMIT,
            },
        },
    )
    .await?;
    if metered.truncated {
        return Err(ParamError(format!(
            "more than {MAX_LIMIT} groups; shorten the range, group by less or filter"
        ))
        .into());
    }

    let (group_by, filters, b2) = (q.group_by.clone(), q.filters.clone(), buckets.clone());
    let (billed, volumes, markup) = store
        .read(move |conn| {
            Ok((
                sql::billed(conn, &group_by, &range, &filters, &b2)?,
                sql::volumes(conn, &group_by, &range, &filters, &b2)?,
                sql::markup(conn, &range, &filters)?,
            ))
        })
        .await?;

    let mut rows: BTreeMap<Key, ReconRow> = BTreeMap::new();
    for m in &metered.rows {
        slot(&mut rows, &m.keys, m.bucket).metered = m.measures.clone();
    }
    for b in &billed {
        let row = slot(&mut rows, &b.keys, b.bucket);
        row.billed_lines += b.lines;
        if b.currency == "USD" {
            row.billed += b.amount;
            row.billed_usage += b.usage_amount;
        } else {
            *row.billed_other_currencies
                .entry(b.currency.clone())
                .or_default() += b.amount;
        }
    }
    for v in &volumes {
        slot(&mut rows, &v.keys, v.bucket).volumes = Some(Volumes {
            input_tokens: v.input_tokens,
            output_tokens: v.output_tokens,
            requests: v.requests,
            lines: v.lines,
        });
    }

    let rows: Vec<ReconRow> = rows.into_values().collect();
    let mut total = ReconRow::default();
    let mut unattributed = Decimal::ZERO;
    for row in &rows {
        total.add(row);
        unattributed += row.unattributed();
    }
    total.metered = metered.total;
    Ok(ReconAnswer {
        query: q,
        from: Some(from),
        to: Some(to),
        rows,
        total,
        unattributed,
        markup,
    })
}

/// Rows are ordered by day, then group keys.
type Key = (Option<DateTime<Utc>>, Vec<Option<String>>);

fn slot<'r>(
    rows: &'r mut BTreeMap<Key, ReconRow>,
    keys: &[Option<String>],
    bucket: Option<DateTime<Utc>>,
) -> &'r mut ReconRow {
    rows.entry((bucket, keys.to_vec()))
        .or_insert_with(|| ReconRow {
            keys: keys.to_vec(),
            bucket,
            ..ReconRow::default()
        })
}

/// `part / whole` in percent, two decimals; `None` when `whole` is zero.
fn pct(part: Decimal, whole: Decimal) -> Option<String> {
    if whole.is_zero() {
        return None;
    }
    let p = part.checked_div(whole)?.checked_mul(Decimal::ONE_HUNDRED)?;
    Some(
        p.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
            .normalize()
            .to_string(),
    )
}

fn money(d: Decimal) -> Value {
    Value::String(to_api_string(d))
}

fn row_json(row: &ReconRow, query: &ReconQuery, unattributed: Decimal) -> Map<String, Value> {
    let mut obj = Map::new();
    for (dim, key) in query.group_by.iter().zip(&row.keys) {
        obj.insert(
            dim.name().into(),
            key.clone().map_or(Value::Null, Value::String),
        );
    }
    if let Some(b) = row.bucket {
        obj.insert(
            "day".into(),
            b.with_timezone(&query.tz).date_naive().to_string().into(),
        );
    }
    let m = &row.metered;
    let gap = row.gap();
    obj.insert("billed".into(), money(row.billed));
    obj.insert("billed_usage".into(), money(row.billed_usage));
    obj.insert("billed_other".into(), money(row.billed - row.billed_usage));
    obj.insert("billed_lines".into(), row.billed_lines.into());
    obj.insert(
        "billed_other_currencies".into(),
        Value::Object(
            row.billed_other_currencies
                .iter()
                .map(|(c, v)| (c.clone(), money(*v)))
                .collect(),
        ),
    );
    obj.insert("metered".into(), money(m.cost));
    obj.insert("metered_reported".into(), money(m.reported_cost));
    obj.insert("metered_computed".into(), money(m.computed_cost));
    obj.insert("requests".into(), m.requests.into());
    obj.insert("unpriced_requests".into(), m.unpriced_requests.into());
    obj.insert("gap".into(), money(gap));
    obj.insert("gap_pct".into(), pct(gap, row.billed).into());
    obj.insert("coverage_pct".into(), pct(m.cost, row.billed).into());
    obj.insert("unattributed".into(), money(unattributed));
    let v = row.volumes.as_ref();
    obj.insert(
        "billed_input_tokens".into(),
        v.map(|v| v.input_tokens).into(),
    );
    obj.insert(
        "billed_output_tokens".into(),
        v.map(|v| v.output_tokens).into(),
    );
    obj.insert("billed_requests".into(), v.and_then(|v| v.requests).into());
    obj.insert("metered_input_tokens".into(), m.input_tokens.into());
    obj.insert("metered_output_tokens".into(), m.output_tokens.into());
    obj
}

impl ReconAnswer {
    pub fn to_json(&self) -> Value {
        let q = &self.query;
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| Value::Object(row_json(r, q, r.unattributed())))
            .collect();
        let markup: Vec<Value> = self
            .markup
            .iter()
            .map(|m| {
                let diff = m.reported_cost - m.list_cost;
                json!({
                    "route": m.route,
                    "provider": m.provider,
                    "requests": m.requests,
                    "compared_requests": m.compared_requests,
                    "reported_cost": to_api_string(m.reported_cost),
                    "list_cost": to_api_string(m.list_cost),
                    "markup": to_api_string(diff),
                    "markup_pct": pct(diff, m.list_cost),
                })
            })
            .collect();
        let mut group_by: Vec<&str> = q.group_by.iter().map(|d| d.name()).collect();
        if q.by_day {
            group_by.insert(
                usize::from(q.group_by.first() == Some(&Dimension::Provider)),
                "day",
            );
        }
        json!({
            "from": self.from.map(|t| costs::format_ts(t, q.tz)),
            "to": self.to.map(|t| costs::format_ts(t, q.tz)),
            "tz": q.tz.name(),
            "group_by": group_by,
            "rows": rows,
            "total": Value::Object(row_json(&self.total, q, self.unattributed)),
            "gateway_markup": markup,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(q: &str) -> Result<ReconQuery, ParamError> {
        ReconQuery::parse(&super::super::params::pairs(Some(q)))
    }

    #[test]
    fn group_by_and_filters() {
        let q = p("").unwrap();
        assert!(q.by_day);
        assert_eq!(q.group_by, vec![Dimension::Provider]);
        let q = p("group_by=provider,day,model&provider=openai,anthropic").unwrap();
        assert_eq!(q.group_by, vec![Dimension::Provider, Dimension::Model]);
        assert_eq!(q.filters[0].values.len(), 2);
        let q = p("group_by=project").unwrap();
        assert!(!q.by_day);
        let msg = |s: &str| p(s).unwrap_err().0;
        assert!(msg("group_by=feature").contains("feature"));
        assert!(msg("group_by=day,day").contains("twice"));
        assert!(msg("interval=day").contains("interval"));
        assert!(msg("tz=Nowhere/Land").contains("tz"));
        assert!(msg("from=2026-01-02&to=2026-01-01").contains("before"));
    }

    #[test]
    fn percentages() {
        assert_eq!(pct(dec!(1), dec!(3)).as_deref(), Some("33.33"));
        assert_eq!(pct(dec!(-0.5), dec!(10)).as_deref(), Some("-5"));
        assert_eq!(pct(dec!(1), dec!(0)), None);
    }
}
