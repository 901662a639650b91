//! `/api/v1/whatif`: the same traffic re-priced on another model or price list, per group,
//! next to what it costs today.
//!
//! Every event the range and filters select is priced twice with its own stored token buckets,
//! service tier, time, project and key: the *baseline* with today's pricer (the catalog plus the
//! operator's `[pricing]` overrides) as the event is, and the *what-if* after the scenario: its
//! model replaced by the first mapping that matches it (`model=A&as_model=B`, or a `map` in a
//! POST body) and any custom prices or discounts of the body added after the operator's (so
//! they win). Both use the price rows in effect at each event's time. Token counts are kept as
//! they are (another model's tokenizer would count a little differently). An event a side
//! cannot price is counted in that side's `unpriced_requests`, never as $0, and the
//! `difference` is then `null`. `cost` is the cost stored today (reported, custom or list), the
//! number `/api/v1/costs` shows.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{json, Value};

use super::costs::{format_ts, QueryError};
use super::params::{self, Common, ParamError};
use super::time::{self, Interval};
use super::{dec_json, opt_dec_json, quotient, sort_groups, Table, Tabular, QUOTIENT_SCALE};
use crate::pricing::overrides::Glob;
use crate::pricing::{CustomPrice, Discount, PriceRequest, Pricer, PricingConfig};
use crate::store::queries::scan::{self, ScanRow};
use crate::store::Store;

/// Names `order` may use besides group keys.
pub const MEASURES: &[&str] = &[
    "requests",
    "cost",
    "baseline_cost",
    "whatif_cost",
    "difference",
];

/// Where a mapped model goes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Target {
    /// A model name; the provider is guessed from it (`claude-…` → anthropic).
    Model(String),
    /// A model and the provider that would serve it.
    Full {
        model: String,
        provider: Option<String>,
    },
}

impl Target {
    fn model(&self) -> &str {
        match self {
            Target::Model(m) | Target::Full { model: m, .. } => m,
        }
    }

    fn provider(&self) -> Option<&str> {
        match self {
            Target::Model(_) => None,
            Target::Full { provider, .. } => provider.as_deref(),
        }
    }
}

/// The POST body: a mapping and/or a custom price list.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioBody {
    /// Model glob (`*` = any run, case-insensitive) → target; the first matching entry wins.
    #[serde(default)]
    pub map: Vec<MapEntry>,
    /// Custom prices, as in `[[pricing.custom]]`; they win over the operator's.
    #[serde(default)]
    pub custom: Vec<CustomPrice>,
    /// Discounts, as in `[[pricing.discounts]]`; they compound with the operator's.
    #[serde(default)]
    pub discounts: Vec<Discount>,
}

/// One mapping of a POST body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapEntry {
    /// Glob over the events' model names.
    pub from: String,
    pub to: String,
    pub provider: Option<String>,
}

/// A parsed what-if question.
#[derive(Debug, Clone)]
pub struct WhatIfQuery {
    pub common: Common,
    /// (pattern as given, compiled, target), first match wins.
    pub(crate) map: Vec<(String, Glob, Target)>,
    pub custom: Vec<CustomPrice>,
    pub discounts: Vec<Discount>,
}

impl WhatIfQuery {
    /// Reads the query string and, for POST, the body.
    pub fn parse(
        pairs: &[(String, String)],
        body: Option<ScenarioBody>,
    ) -> Result<WhatIfQuery, ParamError> {
        let (common, extras) = params::parse_common(pairs, &["as_model", "as_provider"], MEASURES)?;
        let get = |k: &str| {
            extras
                .iter()
                .rev()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let mut map = Vec::new();
        match (get("as_model"), get("as_provider")) {
            (Some(model), provider) => map.push((
                "*".to_string(),
                Glob::new("*"),
                Target::Full { model, provider },
            )),
            (None, Some(_)) => {
                return Err(ParamError(
                    "as_provider: give as_model too (the model the traffic would use)".into(),
                ))
            }
            (None, None) => {}
        }
        let body = body.unwrap_or_default();
        for (i, e) in body.map.into_iter().enumerate() {
            if e.from.trim().is_empty() || e.to.trim().is_empty() {
                return Err(ParamError(format!(
                    "map[{i}]: from and to must name models"
                )));
            }
            map.push((
                e.from.clone(),
                Glob::new(&e.from),
                Target::Full {
                    model: e.to,
                    provider: e.provider,
                },
            ));
        }
        if map.is_empty() && body.custom.is_empty() && body.discounts.is_empty() {
            return Err(ParamError(
                "as_model: nothing to compare; give as_model=B (with model=A to choose the traffic), \
                 or POST {\"map\": [{\"from\": \"A\", \"to\": \"B\"}], \"custom\": […], \"discounts\": […]}"
                    .into(),
            ));
        }
        Ok(WhatIfQuery {
            common,
            map,
            custom: body.custom,
            discounts: body.discounts,
        })
    }

    /// The scenario's pricer: `base` itself without custom prices, else a pricer of the same
    /// catalog with the operator's overrides followed by the body's.
    pub fn pricer(
        &self,
        base: &Arc<Pricer>,
        operator: &PricingConfig,
    ) -> Result<Arc<Pricer>, ParamError> {
        if self.custom.is_empty() && self.discounts.is_empty() {
            return Ok(base.clone());
        }
        let mut config = operator.clone();
        config.custom.extend(self.custom.iter().cloned());
        config.discounts.extend(self.discounts.iter().cloned());
        Pricer::new(base.catalog().clone(), &config)
            .map(Arc::new)
            .map_err(|e| ParamError(format!("custom prices: {e}")))
    }
}

/// Sums of one group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WhatIfMeasures {
    pub requests: i64,
    /// Requests whose model a mapping replaced.
    pub remapped_requests: i64,
    /// The stored cost, as `/api/v1/costs` counts it.
    pub cost: Decimal,
    pub unpriced_requests: i64,
    pub baseline_cost: Decimal,
    pub baseline_unpriced_requests: i64,
    pub whatif_cost: Decimal,
    pub whatif_unpriced_requests: i64,
}

impl WhatIfMeasures {
    /// `whatif_cost − baseline_cost`, when both sides priced every request.
    pub fn difference(&self) -> Option<Decimal> {
        (self.baseline_unpriced_requests == 0 && self.whatif_unpriced_requests == 0)
            .then(|| self.whatif_cost - self.baseline_cost)
    }

    pub fn difference_pct(&self) -> Option<Decimal> {
        self.difference()
            .and_then(|d| quotient(d * Decimal::ONE_HUNDRED, self.baseline_cost))
    }

    fn add(&mut self, e: &Priced) {
        self.requests += 1;
        self.remapped_requests += i64::from(e.remapped);
        match e.cost {
            Some(c) => self.cost += c,
            None => self.unpriced_requests += 1,
        }
        match e.baseline {
            Some(c) => self.baseline_cost += c,
            None => self.baseline_unpriced_requests += 1,
        }
        match e.whatif {
            Some(c) => self.whatif_cost += c,
            None => self.whatif_unpriced_requests += 1,
        }
    }

    fn sort_value(&self, name: &str) -> Option<Decimal> {
        match name {
            "requests" => Some(Decimal::from(self.requests)),
            "cost" => Some(self.cost),
            "baseline_cost" => Some(self.baseline_cost),
            "whatif_cost" => Some(self.whatif_cost),
            "difference" => self.difference(),
            _ => None,
        }
    }

    const COLUMNS: [&'static str; 10] = [
        "requests",
        "remapped_requests",
        "cost",
        "unpriced_requests",
        "baseline_cost",
        "baseline_unpriced_requests",
        "whatif_cost",
        "whatif_unpriced_requests",
        "difference",
        "difference_pct",
    ];

    fn values(&self) -> Vec<Value> {
        vec![
            json!(self.requests),
            json!(self.remapped_requests),
            dec_json(self.cost),
            json!(self.unpriced_requests),
            dec_json(self.baseline_cost),
            json!(self.baseline_unpriced_requests),
            dec_json(self.whatif_cost),
            json!(self.whatif_unpriced_requests),
            opt_dec_json(self.difference()),
            opt_dec_json(self.difference_pct()),
        ]
    }

    fn json(&self) -> Value {
        Value::Object(
            Self::COLUMNS
                .iter()
                .map(|c| c.to_string())
                .zip(self.values())
                .collect(),
        )
    }
}

/// One event's three costs.
struct Priced {
    cost: Option<Decimal>,
    baseline: Option<Decimal>,
    whatif: Option<Decimal>,
    remapped: bool,
}

/// The pricing question of one stored call, as `provider`'s `model`.
pub(crate) fn price_request<'a>(
    row: &'a ScanRow,
    provider: Option<&'a str>,
    model: &'a str,
) -> PriceRequest<'a> {
    PriceRequest {
        provider,
        model,
        at: row.ts,
        service_tier: Some(&row.service_tier),
        tokens: &row.tokens,
        web_search_requests: row.web_search_requests,
        requests: 1,
        project: row.project.as_deref(),
        api_key_id: row.api_key_id.as_deref(),
    }
}

/// The booked cost of one call under `pricer` (custom price, else list), `None` if unpriced.
fn booked(pricer: &Pricer, row: &ScanRow, provider: Option<&str>, model: &str) -> Option<Decimal> {
    pricer
        .price(&price_request(row, provider, model))
        .booked()
        .map(|line| line.cost)
}

/// A group's key values and bucket.
type GroupKey = (Vec<Option<String>>, Option<DateTime<Utc>>);

/// One group (and bucket).
#[derive(Debug, Clone)]
pub struct WhatIfRow {
    pub keys: Vec<Option<String>>,
    pub bucket: Option<DateTime<Utc>>,
    pub measures: WhatIfMeasures,
}

/// The whole answer.
#[derive(Debug, Clone)]
pub struct WhatIfAnswer {
    pub query: WhatIfQuery,
    pub rows: Vec<WhatIfRow>,
    pub total: WhatIfMeasures,
    pub truncated: bool,
}

/// Answers a what-if question.
pub async fn query(
    store: &Store,
    base: Arc<Pricer>,
    scenario: Arc<Pricer>,
    q: WhatIfQuery,
) -> Result<WhatIfAnswer, QueryError> {
    let q2 = q.clone();
    let (groups, total) = store
        .read(move |conn| {
            let c = &q2.common;
            let mut groups: HashMap<GroupKey, WhatIfMeasures> = HashMap::new();
            let mut total = WhatIfMeasures::default();
            scan::scan(conn, &c.range, &c.filters, &c.group_by, &mut |row| {
                let lower = row.model.to_lowercase();
                let target = q2
                    .map
                    .iter()
                    .find(|(_, glob, _)| glob.matches(&lower))
                    .map(|(_, _, t)| t);
                let priced = Priced {
                    cost: row.cost,
                    baseline: booked(&base, &row, row.provider.as_deref(), &row.model),
                    whatif: match target {
                        Some(t) => booked(&scenario, &row, t.provider(), t.model()),
                        None => booked(&scenario, &row, row.provider.as_deref(), &row.model),
                    },
                    remapped: target.is_some(),
                };
                total.add(&priced);
                let bucket =
                    (c.interval != Interval::None).then(|| time::floor(row.ts, c.interval, c.tz));
                for keys in scan::key_sets(&row, &c.group_by) {
                    groups.entry((keys, bucket)).or_default().add(&priced);
                }
                Ok(())
            })?;
            Ok((groups, total))
        })
        .await?;
    let c = &q.common;
    let mut rows: Vec<WhatIfRow> = groups
        .into_iter()
        .map(|((keys, bucket), measures)| WhatIfRow {
            keys,
            bucket,
            measures,
        })
        .collect();
    sort_groups(
        &mut rows,
        c,
        |r| &r.keys,
        |r| r.bucket,
        |r, m| r.measures.sort_value(m),
        "baseline_cost",
    );
    let truncated = rows.len() > c.limit;
    rows.truncate(c.limit);
    Ok(WhatIfAnswer {
        query: q,
        rows,
        total,
        truncated,
    })
}

impl Tabular for WhatIfAnswer {
    fn table(&self) -> Table {
        Table::grouped(
            &self.query.common,
            &WhatIfMeasures::COLUMNS,
            self.rows
                .iter()
                .map(|r| (r.keys.as_slice(), r.bucket, r.measures.values())),
        )
    }
}

impl WhatIfAnswer {
    pub fn to_json(&self) -> Value {
        let c = &self.query.common;
        let map: Vec<Value> = self
            .query
            .map
            .iter()
            .map(|(from, _, t)| json!({"from": from, "to": t.model(), "provider": t.provider()}))
            .collect();
        json!({
            "from": c.range.from.map(|t| format_ts(t, c.tz)),
            "to": c.range.to.map(|t| format_ts(t, c.tz)),
            "interval": c.interval.name(),
            "tz": c.tz.name(),
            "group_by": c.group_by.iter().map(|d| d.name()).collect::<Vec<_>>(),
            "scenario": {
                "map": map,
                "custom_prices": self.query.custom.len(),
                "discounts": self.query.discounts.len(),
            },
            "quotient_scale": QUOTIENT_SCALE,
            "rows": self.table().objects(),
            "total": self.total.json(),
            "truncated": self.truncated,
            "definitions": {
                "cost": "the stored cost, as /api/v1/costs counts it (reported, custom or list)",
                "baseline_cost": "every request priced today as it is (catalog + [pricing] overrides, prices in effect at each request's time)",
                "whatif_cost": "every request priced under the scenario: its model replaced by the first matching mapping, the scenario's custom prices and discounts added",
                "difference": "whatif_cost - baseline_cost; null when either side has unpriced requests",
                "difference_pct": "difference / baseline_cost * 100",
            },
        })
    }
}
