//! `/api/v1/reprice`: recompute stored costs after the catalog or the `[pricing]` overrides
//! changed — a dry run with a diff first, then, on request, the same computation written back.
//!
//! Each selected event is priced again exactly as ingest prices it (`pricing::apply` on its
//! stored provider, model, tier, tokens, time, project, key and reported cost), and the result
//! is compared with what is stored: `computed_cost`, `custom_cost`, `cost`, `cost_source`,
//! `price_id`, `custom_price_id`, `unpriced_reason`. Reported costs are facts and never change;
//! an event whose counted cost is reported keeps it. Re-pricing never happens as a side effect
//! of a catalog update: only `POST /api/v1/reprice?apply=true` (admin) writes, through the
//! writer, in one transaction that recomputes on the writer's own snapshot, so what is written
//! is what the answer reports.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use duckdb::Connection;
use rust_decimal::Decimal;
use serde_json::{json, Value};

use super::costs::{format_ts, QueryError};
use super::params::{self, Common, ParamError};
use super::{dec_json, opt_dec_json, sort_groups, Table, Tabular};
use crate::domain::event::{
    CallStatus, Dimensions, ListParts, PricedEvent, UsageDetail, UsageEvent,
};
use crate::pricing::{self, Pricer};
use crate::store::queries::reprice::{self as sql, Update};
use crate::store::queries::scan::{self, ScanRow};
use crate::store::{Store, StoreError};

/// Names `order` may use besides group keys.
pub const MEASURES: &[&str] = &[
    "events",
    "changed",
    "cost_before",
    "cost_after",
    "difference",
];

/// Changed events listed in an answer.
pub const MAX_SAMPLES: usize = 100;

/// A parsed re-pricing request.
#[derive(Debug, Clone)]
pub struct RepriceQuery {
    pub common: Common,
    /// `apply=true`: write the new costs (POST only).
    pub apply: bool,
}

impl RepriceQuery {
    pub fn parse(pairs: &[(String, String)]) -> Result<RepriceQuery, ParamError> {
        let (common, extras) = params::parse_common(pairs, &["apply"], MEASURES)?;
        if common.interval != super::time::Interval::None {
            return Err(ParamError(
                "interval: re-pricing is not bucketed; use from and to".into(),
            ));
        }
        let mut apply = false;
        for (k, v) in extras {
            if k == "apply" {
                apply = match v.as_str() {
                    "true" | "1" => true,
                    "false" | "0" | "" => false,
                    other => {
                        return Err(ParamError(format!(
                            "apply: {other:?} must be true or false"
                        )))
                    }
                };
            }
        }
        Ok(RepriceQuery { common, apply })
    }
}

/// The pricing columns of one event, as stored or as recomputed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pricing {
    pub computed_cost: Option<Decimal>,
    pub custom_cost: Option<Decimal>,
    pub cost: Option<Decimal>,
    pub cost_source: String,
    pub price_id: Option<String>,
    pub custom_price_id: Option<String>,
    pub unpriced_reason: Option<String>,
}

impl Pricing {
    fn stored(r: &ScanRow) -> Pricing {
        Pricing {
            computed_cost: r.computed_cost,
            custom_cost: r.custom_cost,
            cost: r.cost,
            cost_source: r.cost_source.clone(),
            price_id: r.price_id.clone(),
            custom_price_id: r.custom_price_id.clone(),
            unpriced_reason: r.unpriced_reason.clone(),
        }
    }

    fn of(p: &PricedEvent) -> Pricing {
        Pricing {
            computed_cost: p.computed_cost,
            custom_cost: p.custom_cost,
            cost: p.cost,
            cost_source: p.cost_source.as_str().to_string(),
            price_id: p.price_id.clone(),
            custom_price_id: p.custom_price_id.clone(),
            unpriced_reason: p.unpriced_reason.clone(),
        }
    }

    fn json(&self) -> Value {
        json!({
            "computed_cost": opt_dec_json(self.computed_cost),
            "custom_cost": opt_dec_json(self.custom_cost),
            "cost": opt_dec_json(self.cost),
            "cost_source": self.cost_source,
            "price_id": self.price_id,
            "custom_price_id": self.custom_price_id,
            "unpriced_reason": self.unpriced_reason,
        })
    }
}

/// Prices a stored event again, the way ingest priced it.
pub fn reprice(pricer: &Pricer, r: &ScanRow) -> (Pricing, Option<ListParts>) {
    let event = UsageEvent {
        ts: r.ts,
        idem_key: r.idem_key.clone(),
        request_id: r.request_id.clone(),
        source_format: String::new(),
        provider: r.provider.clone(),
        model: r.model.clone(),
        model_requested: None,
        operation: String::new(),
        route: String::new(),
        service_tier: r.service_tier.clone(),
        status: CallStatus::Success,
        error_type: None,
        http_status: None,
        latency_ms: None,
        ttft_ms: None,
        dims: Dimensions {
            project: r.project.clone(),
            api_key_id: r.api_key_id.clone(),
            ..Dimensions::default()
        },
        attempt: None,
        retry_of: None,
        fallback_from: None,
        tokens: r.tokens,
        web_search_requests: r.web_search_requests,
        reported_cost: r.reported_cost,
        currency: r.currency.clone(),
        usage_detail: UsageDetail::Full,
        metadata: None,
        task_outcome: None,
    };
    let priced = pricing::apply(pricer, event);
    (
        Pricing::of(&priced),
        priced.list_parts.and_then(ListParts::storable),
    )
}

/// Sums of one group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepriceMeasures {
    pub events: i64,
    pub changed: i64,
    pub cost_before: Decimal,
    pub cost_after: Decimal,
    pub unpriced_before: i64,
    pub unpriced_after: i64,
    pub computed_before: Decimal,
    pub computed_after: Decimal,
}

impl RepriceMeasures {
    fn add(&mut self, before: &Pricing, after: &Pricing) {
        self.events += 1;
        self.changed += i64::from(before != after);
        match before.cost {
            Some(c) => self.cost_before += c,
            None => self.unpriced_before += 1,
        }
        match after.cost {
            Some(c) => self.cost_after += c,
            None => self.unpriced_after += 1,
        }
        self.computed_before += before.computed_cost.unwrap_or_default();
        self.computed_after += after.computed_cost.unwrap_or_default();
    }

    fn sort_value(&self, name: &str) -> Option<Decimal> {
        match name {
            "events" => Some(self.events.into()),
            "changed" => Some(self.changed.into()),
            "cost_before" => Some(self.cost_before),
            "cost_after" => Some(self.cost_after),
            "difference" => Some(self.cost_after - self.cost_before),
            _ => None,
        }
    }

    const COLUMNS: [&'static str; 9] = [
        "events",
        "changed",
        "cost_before",
        "cost_after",
        "difference",
        "unpriced_before",
        "unpriced_after",
        "computed_cost_before",
        "computed_cost_after",
    ];

    fn values(&self) -> Vec<Value> {
        vec![
            json!(self.events),
            json!(self.changed),
            dec_json(self.cost_before),
            dec_json(self.cost_after),
            dec_json(self.cost_after - self.cost_before),
            json!(self.unpriced_before),
            json!(self.unpriced_after),
            dec_json(self.computed_before),
            dec_json(self.computed_after),
        ]
    }
}

/// One changed event, for the diff.
#[derive(Debug, Clone)]
pub struct Change {
    pub id: Option<String>,
    pub ts: DateTime<Utc>,
    pub provider: Option<String>,
    pub model: String,
    pub before: Pricing,
    pub after: Pricing,
}

/// One group.
#[derive(Debug, Clone)]
pub struct RepriceRow {
    pub keys: Vec<Option<String>>,
    pub measures: RepriceMeasures,
}

/// The answer of a dry run or an applied re-pricing.
#[derive(Debug, Clone)]
pub struct RepriceAnswer {
    pub query: RepriceQuery,
    /// True when the new costs were written.
    pub applied: bool,
    pub rows: Vec<RepriceRow>,
    pub total: RepriceMeasures,
    /// The first changed events (by time), at most [`MAX_SAMPLES`].
    pub samples: Vec<Change>,
    pub truncated: bool,
}

/// Scans, re-prices and (when `updates` is given) collects what to write.
fn compute(
    conn: &Connection,
    pricer: &Pricer,
    q: &RepriceQuery,
    mut updates: Option<&mut Vec<Update>>,
) -> Result<(Vec<RepriceRow>, RepriceMeasures, Vec<Change>), StoreError> {
    let c = &q.common;
    let mut groups: HashMap<Vec<Option<String>>, RepriceMeasures> = HashMap::new();
    let mut total = RepriceMeasures::default();
    let mut samples: Vec<Change> = Vec::new();
    scan::scan(conn, &c.range, &c.filters, &c.group_by, &mut |row| {
        let before = Pricing::stored(&row);
        let (after, list_parts) = reprice(pricer, &row);
        total.add(&before, &after);
        for keys in scan::key_sets(&row, &c.group_by) {
            groups.entry(keys).or_default().add(&before, &after);
        }
        if before != after {
            if let Some(u) = updates.as_deref_mut() {
                u.push(Update {
                    rid: row.rid,
                    computed_cost: after.computed_cost,
                    list_parts,
                    custom_cost: after.custom_cost,
                    cost: after.cost,
                    cost_source: after.cost_source.clone(),
                    price_id: after.price_id.clone(),
                    custom_price_id: after.custom_price_id.clone(),
                    unpriced_reason: after.unpriced_reason.clone(),
                });
            }
            samples.push(Change {
                id: row.idem_key.clone().or(row.request_id.clone()),
                ts: row.ts,
                provider: row.provider.clone(),
                model: row.model.clone(),
                before,
                after,
            });
            // Keep the earliest changes without holding every one of them.
            if samples.len() > 4 * MAX_SAMPLES {
                samples.sort_by_key(|s| s.ts);
                samples.truncate(MAX_SAMPLES);
            }
        }
        Ok(())
    })?;
    samples.sort_by_key(|s| s.ts);
    samples.truncate(MAX_SAMPLES);
    let rows = groups
        .into_iter()
        .map(|(keys, measures)| RepriceRow { keys, measures })
        .collect();
    Ok((rows, total, samples))
}

fn finish(
    q: RepriceQuery,
    applied: bool,
    mut rows: Vec<RepriceRow>,
    total: RepriceMeasures,
    samples: Vec<Change>,
) -> RepriceAnswer {
    sort_groups(
        &mut rows,
        &q.common,
        |r| &r.keys,
        |_| None,
        |r, m| r.measures.sort_value(m),
        "cost_before",
    );
    let truncated = rows.len() > q.common.limit;
    rows.truncate(q.common.limit);
    RepriceAnswer {
        query: q,
        applied,
        rows,
        total,
        samples,
        truncated,
    }
}

/// A dry run: what re-pricing would change, without writing.
pub async fn dry_run(
    store: &Store,
    pricer: Arc<Pricer>,
    q: RepriceQuery,
) -> Result<RepriceAnswer, QueryError> {
    let q2 = q.clone();
    let (rows, total, samples) = store
        .read(move |conn| compute(conn, &pricer, &q2, None))
        .await?;
    Ok(finish(q, false, rows, total, samples))
}

/// Re-prices and writes, in one transaction on the writer.
pub async fn apply(
    store: &Store,
    pricer: Arc<Pricer>,
    q: RepriceQuery,
) -> Result<RepriceAnswer, QueryError> {
    let q2 = q.clone();
    let (rows, total, samples) = store
        .writer()
        .exec(move |conn| {
            let mut updates = Vec::new();
            let result = compute(conn, &pricer, &q2, Some(&mut updates))?;
            sql::update(conn, &updates)?;
            Ok(result)
        })
        .await?;
    Ok(finish(q, true, rows, total, samples))
}

impl Tabular for RepriceAnswer {
    fn table(&self) -> Table {
        let c = &self.query.common;
        let mut columns: Vec<String> = c.group_by.iter().map(|d| d.name().to_string()).collect();
        columns.extend(RepriceMeasures::COLUMNS.iter().map(|s| s.to_string()));
        let mut table = Table::new(columns);
        for row in &self.rows {
            let mut values: Vec<Value> = row
                .keys
                .iter()
                .map(|k| k.clone().map_or(Value::Null, Value::String))
                .collect();
            values.extend(row.measures.values());
            table.rows.push(values);
        }
        table
    }
}

impl RepriceAnswer {
    pub fn to_json(&self) -> Value {
        let c = &self.query.common;
        let total: serde_json::Map<String, Value> = RepriceMeasures::COLUMNS
            .iter()
            .map(|s| s.to_string())
            .zip(self.total.values())
            .collect();
        let samples: Vec<Value> = self
            .samples
            .iter()
            .map(|s| {
                json!({
                    "id": s.id,
                    "ts": s.ts.to_rfc3339_opts(SecondsFormat::Millis, true),
                    "provider": s.provider,
                    "model": s.model,
                    "before": s.before.json(),
                    "after": s.after.json(),
                })
            })
            .collect();
        json!({
            "dry_run": !self.applied,
            "applied": self.applied,
            "from": c.range.from.map(|t| format_ts(t, c.tz)),
            "to": c.range.to.map(|t| format_ts(t, c.tz)),
            "tz": c.tz.name(),
            "group_by": c.group_by.iter().map(|d| d.name()).collect::<Vec<_>>(),
            "rows": self.table().objects(),
            "total": total,
            "changes": samples,
            "truncated": self.truncated,
            "next": if self.applied {
                Value::Null
            } else {
                json!("POST /api/v1/reprice?apply=true with the same parameters (admin) writes these changes")
            },
        })
    }
}
