//! The pricing step of ingest: decides an event's costs and where its counted cost comes from.
//!
//! The catalog list price is always computed when the catalog knows the model, so reported and
//! list costs can be compared (gateway markup, reconciliation). The counted `cost` is the
//! reported cost when there is a trustworthy one, else the operator's custom price, else the list
//! price; with none of them the event is `unpriced` and its cost is unknown, never zero.

use super::{PriceRequest, Pricer};
use crate::domain::event::{CostSource, PricedEvent, UsageEvent};

/// Canonicalizes the provider and prices one event.
pub fn apply(pricer: &Pricer, mut event: UsageEvent) -> PricedEvent {
    event.provider = match event.provider.take() {
        Some(given) => Some(pricer.canonical_provider(&given).unwrap_or(given)),
        None => pricer.infer_provider(&event.model),
    };
    let result = pricer.price(&PriceRequest {
        provider: event.provider.as_deref(),
        model: &event.model,
        at: event.ts,
        service_tier: Some(&event.service_tier),
        tokens: &event.tokens,
        web_search_requests: event.web_search_requests,
        requests: 1,
        project: event.dims.project.as_deref(),
        api_key_id: event.dims.api_key_id.as_deref(),
    });
    let computed_cost = result.list.as_ref().map(|line| line.cost);
    let list_parts = result.list.as_ref().map(|line| line.parts);
    let custom_cost = result.custom.as_ref().map(|line| line.cost);

    // A reported cost counts only in USD (totals are USD) and not as a zero next to non-zero
    // tokens: streamed responses have been seen reporting 0 for calls that were billed
    // (peers.md §3.13), so such a zero falls back to Tally's own price.
    let reported = event.reported_cost.filter(|cost| {
        event.currency.as_deref() == Some("USD") && (!cost.is_zero() || event.tokens.is_empty())
    });
    // `booked` is the custom price, else the list price — and nothing when an operator's custom
    // price matched but could not price the call: billing the list price then would book a cost
    // the operator does not pay.
    let (cost, cost_source) = match (reported, result.booked()) {
        (Some(r), _) => (Some(r), CostSource::Reported),
        (None, Some(line)) if result.custom.is_some() => (Some(line.cost), CostSource::Custom),
        (None, Some(line)) => (Some(line.cost), CostSource::Computed),
        (None, None) => (None, CostSource::Unpriced),
    };
    PricedEvent {
        computed_cost,
        list_parts,
        custom_cost,
        cost,
        cost_source,
        price_id: result.list.map(|line| line.price_id),
        custom_price_id: result.custom.map(|line| line.price_id),
        unpriced_reason: result.unpriced_reason,
        event,
    }
}
