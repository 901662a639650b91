//! `/api/v1/routes`: how each route (`direct`, or a gateway's name) performs and what it
//! effectively charges, per route and any further keys (`group_by=provider,model`).
//!
//! - `error_rate` = errors / requests; `error_types` splits the errors by `error_type`.
//! - Latency and time-to-first-token are interpolated percentiles (`quantile_cont`) over the
//!   requests that report them, in milliseconds.
//! - `markup_pct` = (reported − list) / list × 100 over the requests that have both a reported
//!   USD cost and a catalog list price: what the gateway adds to the provider's list price.
//! - `effective_input_price_mtok` / `effective_output_price_mtok`: USD per million input /
//!   output tokens actually paid. Each request's counted cost is split between input and output
//!   in proportion to its catalog list price lines (input: uncached, cache read and write, audio
//!   and image input; output: text, reasoning, audio and image output; per-call fees such as web
//!   searches belong to neither), summed over the group: effective input price = (list price of
//!   the input lines × cost / list price of all lines) / input tokens × 1,000,000. A route that
//!   charges list price shows the catalog's rates; one that adds 5 % shows them 5 % higher.
//!   Only requests with a cost and a list price take part (`split_requests`).

use std::collections::HashMap;
use std::sync::Arc;

use rust_decimal::Decimal;
use serde_json::{json, Value};

use super::costs::{format_ts, QueryError};
use super::params::{self, Common, ParamError};
use super::time::Interval;
use super::{dec_json, group_order, opt_dec_json, quotient, Table, Tabular, TopN, QUOTIENT_SCALE};
use crate::pricing::Pricer;
use crate::store::queries::routes::{self as sql, RouteAgg};
use crate::store::queries::scan;
use crate::store::Store;

/// Names `order` may use besides group keys.
pub const MEASURES: &[&str] = &[
    "requests",
    "errors",
    "error_rate",
    "cost",
    "latency_ms_p50",
    "latency_ms_p95",
    "ttft_ms_p50",
    "markup_pct",
    "effective_input_price_mtok",
    "effective_output_price_mtok",
];

/// The values of a row's group-by dimensions.
type GroupKeys = Vec<Option<String>>;

/// A parsed routes question; `group_by` always starts with `route`.
#[derive(Debug, Clone)]
pub struct RouteQuery {
    pub common: Common,
}

impl RouteQuery {
    pub fn parse(pairs: &[(String, String)]) -> Result<RouteQuery, ParamError> {
        // `route` is always the first key; adding it before parsing lets `order=route` work.
        let mut pairs = pairs.to_vec();
        match pairs.iter_mut().find(|(k, _)| k == "group_by") {
            Some((_, v)) => {
                let rest: Vec<&str> = v
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty() && *s != "route")
                    .collect();
                *v = std::iter::once("route")
                    .chain(rest)
                    .collect::<Vec<_>>()
                    .join(",");
            }
            None => pairs.push(("group_by".into(), "route".into())),
        }
        if pairs.iter().filter(|(k, _)| k == "group_by").count() > 1 {
            return Err(ParamError(
                "group_by: give it once, as a comma list (e.g. group_by=provider,model)".into(),
            ));
        }
        let (common, _) = params::parse_common(&pairs, &[], MEASURES)?;
        if common.interval != Interval::None {
            return Err(ParamError(
                "interval: routes are compared over the whole range; use from and to".into(),
            ));
        }
        Ok(RouteQuery { common })
    }
}

/// The split of counted cost into input and output (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split {
    pub requests: i64,
    pub cost: Decimal,
    pub list_all: Decimal,
    pub list_input: Decimal,
    pub list_output: Decimal,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl Split {
    /// Adds another split of the same group (the SQL's sums over the calls whose list-price
    /// parts are stored, to those re-priced here).
    fn add(&mut self, s: &Split) {
        self.requests += s.requests;
        self.cost += s.cost;
        self.list_all += s.list_all;
        self.list_input += s.list_input;
        self.list_output += s.list_output;
        self.input_tokens += s.input_tokens;
        self.output_tokens += s.output_tokens;
    }

    fn price(&self, list_part: Decimal, tokens: u64) -> Option<Decimal> {
        if tokens == 0 || self.list_all.is_zero() {
            return None;
        }
        let numerator = list_part
            .checked_mul(self.cost)?
            .checked_mul(Decimal::from(1_000_000u32))?;
        let denominator = self.list_all.checked_mul(Decimal::from(tokens))?;
        quotient(numerator, denominator)
    }

    pub fn input_price_mtok(&self) -> Option<Decimal> {
        self.price(self.list_input, self.input_tokens)
    }

    pub fn output_price_mtok(&self) -> Option<Decimal> {
        self.price(self.list_output, self.output_tokens)
    }
}

/// One route group.
#[derive(Debug, Clone)]
pub struct RouteRow {
    pub agg: RouteAgg,
    /// (error_type, errors), most frequent first.
    pub error_types: Vec<(Option<String>, i64)>,
    pub split: Split,
}

impl RouteRow {
    pub fn error_rate(&self) -> Option<Decimal> {
        quotient(self.agg.errors.into(), self.agg.requests.into())
    }

    pub fn markup_pct(&self) -> Option<Decimal> {
        let a = &self.agg;
        if a.compared_requests == 0 {
            return None;
        }
        quotient(
            (a.compared_reported - a.compared_list) * Decimal::ONE_HUNDRED,
            a.compared_list,
        )
    }

    fn sort_value(&self, name: &str) -> Option<Decimal> {
        // Durations, not money: a float is what they are, and only their order matters here.
        let f = |v: Option<f64>| v.and_then(Decimal::from_f64_retain);
        match name {
            "requests" => Some(self.agg.requests.into()),
            "errors" => Some(self.agg.errors.into()),
            "error_rate" => self.error_rate(),
            "cost" => Some(self.agg.cost),
            "latency_ms_p50" => f(self.agg.latency_ms[0]),
            "latency_ms_p95" => f(self.agg.latency_ms[1]),
            "ttft_ms_p50" => f(self.agg.ttft_ms[0]),
            "markup_pct" => self.markup_pct(),
            "effective_input_price_mtok" => self.split.input_price_mtok(),
            "effective_output_price_mtok" => self.split.output_price_mtok(),
            _ => None,
        }
    }
}

/// The whole answer.
#[derive(Debug, Clone)]
pub struct RouteAnswer {
    pub query: RouteQuery,
    pub rows: Vec<RouteRow>,
    pub truncated: bool,
}

/// Answers a routes question.
pub async fn query(
    store: &Store,
    pricer: Arc<Pricer>,
    q: RouteQuery,
) -> Result<RouteAnswer, QueryError> {
    let q2 = q.clone();
    let (rows, truncated) = store
        .read(move |conn| {
            let c = &q2.common;
            let mut splits: HashMap<GroupKeys, Split> = HashMap::new();
            // Calls stored with their list-price parts are split in the SQL of the aggregates;
            // only the older ones (stored before the parts were) are re-priced here, first, so
            // each group is complete when the aggregates hand it over.
            scan::scan_where(
                conn,
                &c.range,
                &c.filters,
                &c.group_by,
                sql::SPLIT_TO_REPRICE,
                &mut |row| {
                    let Some(cost) = row.cost else { return Ok(()) };
                    let request =
                        super::whatif::price_request(&row, row.provider.as_deref(), &row.model);
                    let Some(list) = pricer.price(&request).list else {
                        return Ok(());
                    };
                    let parts = list.parts;
                    if parts.all.is_zero() {
                        return Ok(());
                    }
                    for keys in scan::key_sets(&row, &c.group_by) {
                        let s = splits.entry(keys).or_default();
                        s.requests += 1;
                        s.cost += cost;
                        s.list_all += parts.all;
                        s.list_input += parts.input;
                        s.list_output += parts.output;
                        s.input_tokens += row.tokens.input_total();
                        s.output_tokens += row.tokens.output_total();
                    }
                    Ok(())
                },
            )?;
            let mut top = TopN::new(
                c.limit,
                group_order(
                    c,
                    |r: &RouteRow| &r.agg.keys,
                    |_| None,
                    |r, m| r.sort_value(m),
                    "requests",
                ),
            );
            sql::aggregates(conn, c, |mut agg| {
                let mut error_types = std::mem::take(&mut agg.error_types);
                // Most frequent first; errors without a type after the named ones.
                error_types.sort_by(|a, b| {
                    b.1.cmp(&a.1)
                        .then_with(|| a.0.is_none().cmp(&b.0.is_none()))
                        .then_with(|| a.0.cmp(&b.0))
                });
                let mut split = splits.remove(&agg.keys).unwrap_or_default();
                split.add(&agg.stored_split);
                top.push(RouteRow {
                    agg,
                    error_types,
                    split,
                });
            })?;
            Ok(top.finish())
        })
        .await?;
    Ok(RouteAnswer {
        query: q,
        rows,
        truncated,
    })
}

/// A duration percentile for the answer: milliseconds to one decimal place.
fn ms(v: Option<f64>) -> Value {
    v.map_or(Value::Null, |x| json!((x * 10.0).round() / 10.0))
}

const COLUMNS: [&str; 21] = [
    "requests",
    "errors",
    "error_rate",
    "error_types",
    "latency_ms_p50",
    "latency_ms_p95",
    "latency_ms_p99",
    "ttft_ms_p50",
    "ttft_ms_p95",
    "ttft_ms_p99",
    "input_tokens",
    "output_tokens",
    "cost",
    "unpriced_requests",
    "effective_input_price_mtok",
    "effective_output_price_mtok",
    "split_requests",
    "compared_requests",
    "reported_cost",
    "list_cost",
    "markup_pct",
];

impl Tabular for RouteAnswer {
    fn table(&self) -> Table {
        let c = &self.query.common;
        let mut columns: Vec<String> = c.group_by.iter().map(|d| d.name().to_string()).collect();
        columns.extend(COLUMNS.iter().map(|s| s.to_string()));
        let mut table = Table::new(columns);
        for r in &self.rows {
            let a = &r.agg;
            let mut values: Vec<Value> = a
                .keys
                .iter()
                .map(|k| k.clone().map_or(Value::Null, Value::String))
                .collect();
            let types: Vec<Value> = r
                .error_types
                .iter()
                .map(|(t, n)| {
                    json!({
                        "error_type": t,
                        "errors": n,
                        "rate": opt_dec_json(quotient((*n).into(), a.requests.into())),
                    })
                })
                .collect();
            values.extend([
                json!(a.requests),
                json!(a.errors),
                opt_dec_json(r.error_rate()),
                Value::Array(types),
                ms(a.latency_ms[0]),
                ms(a.latency_ms[1]),
                ms(a.latency_ms[2]),
                ms(a.ttft_ms[0]),
                ms(a.ttft_ms[1]),
                ms(a.ttft_ms[2]),
                json!(a.input_tokens),
                json!(a.output_tokens),
                dec_json(a.cost),
                json!(a.unpriced_requests),
                opt_dec_json(r.split.input_price_mtok()),
                opt_dec_json(r.split.output_price_mtok()),
                json!(r.split.requests),
                json!(a.compared_requests),
                dec_json(a.compared_reported),
                dec_json(a.compared_list),
                opt_dec_json(r.markup_pct()),
            ]);
            table.rows.push(values);
        }
        table
    }
}

impl RouteAnswer {
    pub fn to_json(&self) -> Value {
        let c = &self.query.common;
        json!({
            "from": c.range.from.map(|t| format_ts(t, c.tz)),
            "to": c.range.to.map(|t| format_ts(t, c.tz)),
            "tz": c.tz.name(),
            "group_by": c.group_by.iter().map(|d| d.name()).collect::<Vec<_>>(),
            "quotient_scale": QUOTIENT_SCALE,
            "rows": self.table().objects(),
            "truncated": self.truncated,
            "definitions": {
                "error_rate": "errors / requests",
                "latency_ms_p50": "interpolated percentile (quantile_cont) of latency_ms over requests that report it",
                "effective_input_price_mtok": "USD per million input tokens paid: each request's cost split between input and output in proportion to its catalog list-price lines, over split_requests",
                "markup_pct": "(reported_cost - list_cost) / list_cost * 100 over compared_requests (requests with a reported USD cost and a list price)",
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::domain::event::PricedEvent;
    use crate::pricing::PricingConfig;

    /// Calls stored with their list-price parts are split by SQL sums; calls stored before
    /// (parts NULL) are re-priced one by one. Both must give the same effective prices — here
    /// the same calls, answered once each way.
    #[tokio::test]
    async fn stored_list_parts_split_costs_as_re_pricing_does() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &Default::default()).unwrap();
        let pricer = Arc::new(Pricer::builtin(&PricingConfig::default()).unwrap());
        let events: Vec<PricedEvent> = (0..40u64)
            .map(|i| {
                let mut e = PricedEvent::sample(i).event;
                e.idem_key = Some(format!("split-{i}"));
                e.request_id = Some(format!("req-{i}"));
                e.retry_of = None;
                e.fallback_from = None;
                e.provider = Some("openai".into());
                e.model = ["gpt-4o-mini", "gpt-4o", "o3-mini"][i as usize % 3].into();
                e.service_tier = "default".into();
                e.route = if i % 4 == 0 { "openrouter" } else { "direct" }.into();
                e.tokens = Default::default();
                e.tokens.input_uncached = 900 + 37 * i;
                e.tokens.cache_read = 100 * (i % 5);
                e.tokens.output = 50 + 11 * i;
                e.tokens.reasoning = if i % 3 == 2 { 20 } else { 0 };
                e.web_search_requests = 0;
                // Gateway calls report their own cost: the split divides it, not the list's.
                e.reported_cost =
                    (i % 4 == 0).then(|| dec!(0.0021) + Decimal::from(i) / dec!(100000));
                e.currency = Some("USD".into());
                crate::pricing::apply(&pricer, e)
            })
            .collect();
        assert!(
            events.iter().all(|e| e.list_parts.is_some()),
            "every model is priced"
        );
        store
            .writer()
            .write(crate::store::WriteBatch {
                events,
                received_at: Utc::now(),
                ..Default::default()
            })
            .await
            .unwrap();
        let pairs: Vec<(String, String)> = [
            ("from", "2026-11-20T00:00:00Z"),
            ("to", "2026-11-21T00:00:00Z"),
            ("group_by", "provider,model"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let ask = || async {
            let a = query(&store, pricer.clone(), RouteQuery::parse(&pairs).unwrap())
                .await
                .unwrap();
            a.rows
                .iter()
                .map(|r| {
                    (
                        r.agg.keys.clone(),
                        r.split.requests,
                        r.split.input_price_mtok(),
                        r.split.output_price_mtok(),
                    )
                })
                .collect::<Vec<_>>()
        };
        let stored = ask().await;
        assert_eq!(stored.len(), 6, "two routes × three models: {stored:?}");
        assert!(stored
            .iter()
            .all(|r| r.1 > 0 && r.2.is_some() && r.3.is_some()));

        store
            .writer()
            .exec(|conn| {
                conn.execute_batch(
                    "UPDATE events SET list_lines_cost = NULL, list_input_cost = NULL, list_output_cost = NULL",
                )?;
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(ask().await, stored);
    }
}
