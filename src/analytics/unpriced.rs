//! `/api/v1/unpriced`: the models and volume Tally could not price, with the reason the
//! pricing step stored — the list of what to add to `[pricing.custom]` or to expect from a
//! newer catalog. A request appears here when the catalog (or a matching custom price) could
//! not price it; `uncosted_requests` are those that have no reported cost either, so their
//! cost is unknown and missing from every total (never counted as $0).

use serde_json::{json, Value};

use super::costs::{format_ts, QueryError};
use super::params::{self, Common, ParamError};
use super::time::Interval;
use super::{dec_json, Table, Tabular};
use crate::store::queries::unpriced::{self as sql, UnpricedRow};
use crate::store::Store;

/// A parsed question: time range and filters only.
#[derive(Debug, Clone)]
pub struct UnpricedQuery {
    pub common: Common,
}

impl UnpricedQuery {
    pub fn parse(pairs: &[(String, String)]) -> Result<UnpricedQuery, ParamError> {
        let (common, _) = params::parse_common(pairs, &[], &[])?;
        if !common.group_by.is_empty() || common.interval != Interval::None {
            return Err(ParamError(
                "group_by: the unpriced list is always by provider, model and reason; use /api/v1/costs?cost_source=unpriced&group_by=… for other splits".into(),
            ));
        }
        if common.order.is_some() {
            return Err(ParamError(
                "order: the unpriced list is sorted by uncosted requests, then requests".into(),
            ));
        }
        Ok(UnpricedQuery { common })
    }
}

/// The answer.
#[derive(Debug, Clone)]
pub struct UnpricedAnswer {
    pub query: UnpricedQuery,
    pub rows: Vec<UnpricedRow>,
    pub requests_in_scope: i64,
    pub uncosted_in_scope: i64,
    /// Sums over every row, truncated or not: requests, uncosted requests, input and output
    /// tokens.
    pub total: [i64; 4],
    pub truncated: bool,
}

pub async fn query(store: &Store, q: UnpricedQuery) -> Result<UnpricedAnswer, QueryError> {
    let q2 = q.clone();
    let (mut rows, (requests, uncosted)) = store
        .read(move |conn| {
            Ok((
                sql::rows(conn, &q2.common)?,
                sql::scope_counts(conn, &q2.common)?,
            ))
        })
        .await?;
    let sum = |f: fn(&UnpricedRow) -> i64| rows.iter().map(f).sum::<i64>();
    let total = [
        sum(|r| r.requests),
        sum(|r| r.uncosted_requests),
        sum(|r| r.input_tokens),
        sum(|r| r.output_tokens),
    ];
    let truncated = rows.len() > q.common.limit;
    rows.truncate(q.common.limit);
    Ok(UnpricedAnswer {
        query: q,
        rows,
        requests_in_scope: requests,
        uncosted_in_scope: uncosted,
        total,
        truncated,
    })
}

const COLUMNS: [&str; 10] = [
    "provider",
    "model",
    "reason",
    "requests",
    "uncosted_requests",
    "input_tokens",
    "output_tokens",
    "reported_cost",
    "first_seen",
    "last_seen",
];

impl Tabular for UnpricedAnswer {
    fn table(&self) -> Table {
        let tz = self.query.common.tz;
        let mut table = Table::new(COLUMNS.iter().map(|c| c.to_string()).collect());
        for r in &self.rows {
            table.rows.push(vec![
                json!(r.provider),
                json!(r.model),
                json!(r.reason),
                json!(r.requests),
                json!(r.uncosted_requests),
                json!(r.input_tokens),
                json!(r.output_tokens),
                dec_json(r.reported_cost),
                json!(format_ts(r.first_seen, tz)),
                json!(format_ts(r.last_seen, tz)),
            ]);
        }
        table
    }
}

impl UnpricedAnswer {
    pub fn to_json(&self) -> Value {
        let c = &self.query.common;
        let [requests, uncosted, input, output] = self.total;
        json!({
            "from": c.range.from.map(|t| format_ts(t, c.tz)),
            "to": c.range.to.map(|t| format_ts(t, c.tz)),
            "tz": c.tz.name(),
            "rows": self.table().objects(),
            "total": {
                "requests": requests,
                "uncosted_requests": uncosted,
                "input_tokens": input,
                "output_tokens": output,
                "requests_in_scope": self.requests_in_scope,
                "uncosted_in_scope": self.uncosted_in_scope,
            },
            "truncated": self.truncated,
        })
    }
}
