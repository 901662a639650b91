//! The normalized usage event every source format is turned into, and its priced form.
//!
//! A [`UsageEvent`] is one LLM call after a mapper has read it: token buckets already split,
//! attribution dimensions filled, reported cost converted to a decimal in major units. A
//! [`PricedEvent`] adds what the pricing step decided. Neither type does I/O or validation of
//! wire formats; those live in `ingest`.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

use super::outcome::TaskOutcome;
use super::tokens::TokenBuckets;

/// Outcome of the call at the HTTP/provider level (not the task's outcome).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CallStatus {
    Success,
    Error,
}

impl CallStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Success => "success",
            CallStatus::Error => "error",
        }
    }
}

/// How much of the token split the source reported (formats.md §0.2 rule 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageDetail {
    /// Every bucket the source can carry was reported.
    Full,
    /// Detail objects were missing; their counts were taken as 0.
    Partial,
    /// Only input/output totals: no cache or modality split.
    TotalsOnly,
    /// No usage at all (typical of failed calls).
    Missing,
}

impl UsageDetail {
    pub fn as_str(self) -> &'static str {
        match self {
            UsageDetail::Full => "full",
            UsageDetail::Partial => "partial",
            UsageDetail::TotalsOnly => "totals_only",
            UsageDetail::Missing => "missing",
        }
    }
}

/// Where the chosen `cost` of an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CostSource {
    /// The provider or gateway reported it.
    Reported,
    /// Tally computed it from the catalog's list price.
    Computed,
    /// Tally computed it from an operator's custom price or discount.
    Custom,
    /// Nobody reported a cost and no price matched: the cost is unknown, not zero.
    Unpriced,
}

impl CostSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CostSource::Reported => "reported",
            CostSource::Computed => "computed",
            CostSource::Custom => "custom",
            CostSource::Unpriced => "unpriced",
        }
    }
}

/// Who, what and which unit of work a call is attributed to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Dimensions {
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    pub project: Option<String>,
    pub api_key_id: Option<String>,
    pub customer_id: Option<String>,
    pub feature: Option<String>,
    pub tags: Vec<String>,
    pub task_id: Option<String>,
    pub run_id: Option<String>,
    pub agent: Option<String>,
    pub session_id: Option<String>,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    pub parent_span_id: Option<String>,
}

/// One LLM call, normalized.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageEvent {
    pub ts: DateTime<Utc>,
    /// The caller's idempotency key.
    pub idem_key: Option<String>,
    /// The provider's response id; with `provider` it identifies the call across sources.
    pub request_id: Option<String>,
    /// Format the record arrived in (`native`, `openai`, …).
    pub source_format: String,
    pub provider: Option<String>,
    pub model: String,
    pub model_requested: Option<String>,
    pub operation: String,
    pub route: String,
    pub service_tier: String,
    pub status: CallStatus,
    pub error_type: Option<String>,
    pub http_status: Option<u16>,
    pub latency_ms: Option<u32>,
    pub ttft_ms: Option<u32>,
    pub dims: Dimensions,
    pub attempt: Option<u32>,
    pub retry_of: Option<String>,
    pub fallback_from: Option<String>,
    pub tokens: TokenBuckets,
    pub web_search_requests: u64,
    /// Cost the source reported, in major units of `currency`, rounded to the stored scale.
    pub reported_cost: Option<Decimal>,
    /// ISO 4217 code of `reported_cost`.
    pub currency: Option<String>,
    pub usage_detail: UsageDetail,
    /// Everything else, as JSON text.
    pub metadata: Option<String>,
    /// The outcome of the call's task, when the call reports it (native `task_outcome`). The
    /// writer stores it as an outcome record in the same commit as the event.
    pub task_outcome: Option<TaskOutcome>,
}

/// An event with the pricing step's decision attached.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PricedEvent {
    pub event: UsageEvent,
    /// Catalog list-price cost in USD, when the catalog prices the model.
    pub computed_cost: Option<Decimal>,
    /// The lines behind `computed_cost`, split into input and output (stored, not shown).
    #[serde(skip)]
    pub list_parts: Option<ListParts>,
    /// Cost after the operator's custom price or discounts, when one applied.
    pub custom_cost: Option<Decimal>,
    /// The cost Tally counts: reported, else custom, else computed; `None` when unpriced.
    pub cost: Option<Decimal>,
    pub cost_source: CostSource,
    /// Catalog price row behind `computed_cost`.
    pub price_id: Option<String>,
    /// Custom price and discount rows behind `custom_cost`.
    pub custom_price_id: Option<String>,
    /// Why the catalog could not price the call, when it could not.
    pub unpriced_reason: Option<String>,
}

/// Sums of a catalog price's lines for one call, before service-tier factors, discounts and
/// rounding: every line (tokens and fees), the input-token lines and the output-token lines.
/// Stored with each event so the share of a call's cost that paid for input or for output
/// (routes' effective price per million tokens) is a sum in SQL, not a re-pricing of every
/// event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListParts {
    pub all: Decimal,
    pub input: Decimal,
    pub output: Decimal,
}

impl ListParts {
    /// The parts, when each fits the stored money type (`DECIMAL(18, 12)`: under a million
    /// dollars once rounded). A call priced beyond that keeps none and is re-priced when asked.
    pub fn storable(self) -> Option<ListParts> {
        let fits = |v: Decimal| {
            let mut r = v;
            r.rescale(crate::domain::money::COST_SCALE);
            r.abs() < Decimal::from(1_000_000)
        };
        [self.all, self.input, self.output]
            .into_iter()
            .all(fits)
            .then_some(self)
    }
}

#[cfg(test)]
impl PricedEvent {
    /// A fully populated event for unit tests: every column set, the `i`-th second of a day,
    /// id `id-<i>`.
    pub fn sample(i: u64) -> PricedEvent {
        PricedEvent {
            event: UsageEvent {
                ts: chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 20, 10, 0, 0).unwrap()
                    + chrono::Duration::seconds(i as i64),
                idem_key: Some(format!("id-{i}")),
                request_id: Some("chatcmpl-1".into()),
                source_format: "native".into(),
                provider: Some("openai".into()),
                model: "gpt-4o".into(),
                model_requested: Some("gpt-4o-latest".into()),
                operation: "chat".into(),
                route: "litellm".into(),
                service_tier: "standard".into(),
                status: CallStatus::Error,
                error_type: Some("timeout".into()),
                http_status: Some(504),
                latency_ms: Some(1234),
                ttft_ms: Some(56),
                dims: Dimensions {
                    user_id: Some("u".into()),
                    team_id: Some("t".into()),
                    project: Some("p".into()),
                    api_key_id: Some("k".into()),
                    customer_id: Some("c".into()),
                    feature: Some("f".into()),
                    tags: vec!["a".into(), "b".into()],
                    task_id: Some("task".into()),
                    run_id: Some("run".into()),
                    agent: Some("agent".into()),
                    session_id: Some("s".into()),
                    trace_id: Some("trace".into()),
                    span_id: Some("span".into()),
                    parent_span_id: Some("parent".into()),
                },
                attempt: Some(2),
                retry_of: Some("id-0".into()),
                fallback_from: Some("id-x".into()),
                tokens: TokenBuckets {
                    input_uncached: 1,
                    cache_read: 2,
                    cache_write_5m: 3,
                    cache_write_1h: 4,
                    output: 5,
                    reasoning: 6,
                    audio_in: 7,
                    audio_out: 8,
                    image_in: 9,
                    image_out: 10,
                },
                web_search_requests: 11,
                reported_cost: Some(dec!(0.000000000001)),
                currency: Some("USD".into()),
                usage_detail: UsageDetail::Full,
                metadata: Some(r#"{"k":"v"}"#.into()),
                task_outcome: None,
            },
            computed_cost: Some(dec!(123456.123456789012)),
            list_parts: Some(ListParts {
                all: dec!(123456.123456789012),
                input: dec!(100000.000000000001),
                output: dec!(23456.123456789011),
            }),
            custom_cost: None,
            cost: Some(dec!(0.1)),
            cost_source: CostSource::Reported,
            price_id: Some("genai-prices@x:openai/gpt-4o#0".into()),
            custom_price_id: None,
            unpriced_reason: None,
        }
    }
}
