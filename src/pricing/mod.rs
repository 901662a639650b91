//! Pricing: what one LLM call costs at list price, and at the operator's own prices.
//!
//! This module owns the price catalog, matching events to catalog models, and turning token
//! buckets into exact USD amounts. It does no I/O at run time (the catalog is compiled in), keeps
//! no per-event state besides a memo of name matches, and never books an unknown model, price or
//! tier as $0: such an event is *unpriced*, with a reason.
//!
//! **Catalog.** `catalog.json` is generated from a pinned copy of pydantic/genai-prices (MIT)
//! plus Tally's `supplement.json` (provider aliases, model hints, service-tier multipliers) by
//! [`generate_from_genai_prices`]; a test regenerates it and fails on any byte of drift. Each
//! model has price *rows*: row 0 applies from the beginning of time, a dated row from its
//! `effective_from` day (UTC, inclusive) until the next dated row's day (`effective_to`,
//! exclusive), and a row with a daily `time_of_day` window (UTC, start inclusive, end exclusive)
//! only inside it (DeepSeek's peak hours). At an event's time the highest-numbered row whose
//! conditions hold applies, else row 0 — the upstream rule, made explicit.
//!
//! **Matching.** Provider and model are compared lower-cased. The event's provider resolves
//! through the aliases (`bedrock` → `aws`, `gcp.vertex_ai` → `google`, `azure_openai` → `azure`,
//! …), then catalog ids, then upstream `provider_match` rules. A model is looked up in that
//! provider's list — first a model that names it exactly (`equals`), then the first rule that
//! matches in list order, the reference behaviour — then in its `fallback_model_providers`
//! (Azure → OpenAI, Anthropic). Without a known provider, the provider is guessed from the model
//! name (Tally's hints, e.g. Bedrock ids, then upstream `model_match`: `gpt-…` → openai,
//! `claude…` → anthropic). A `vendor/model` name (OpenRouter, LiteLLM) is tried as given first —
//! OpenRouter's own list uses those ids — and then as `model` under the vendor. Gemini's
//! `models/` prefix is dropped; Bedrock ids with region prefixes (`us.anthropic.…`) match the aws
//! list. When the event's provider is absent or unknown, the guessed provider is reported as the
//! billing provider. Results are memoised per (provider, model) string pair.
//!
//! **Cost.** Each bucket is priced at its own rate, falling back to its parent when the model
//! has no rate of its own: cache reads and 5-minute writes → input; 1-hour writes → 5-minute
//! writes → input; audio and image input → input; audio and image output → output. Reasoning is
//! output unless the model has an `output_reasoning_mtok` rate. Web searches and per-request
//! prices are per thousand. A bucket with units and no applicable rate makes the event unpriced.
//! Tiers are cliffs: the highest tier whose start the call's total input tokens strictly exceed
//! prices *all* tokens of every tiered category (input, cache, output). Amounts are exact
//! `Decimal`s, rounded once at the end to 12 places (`domain::money::round_cost`).
//!
//! **Service tiers** (compared lower-cased, `-` read as `_`). `standard`, `default`, `auto` and
//! `on_demand` (or none) are the list price.
//! `batch` (OpenAI, Anthropic, Google) and `flex` (OpenAI) multiply the token charges by the
//! supplement's documented factor (0.5); per-call fees are not discounted. The factor is looked
//! up for the provider that bills the call (Azure batch is not OpenAI batch). Any other tier
//! (`priority`, `scale`, …) is unpriced unless a custom price names it.
//!
//! **Overrides** ([`PricingConfig`]). A custom price (model glob, optional provider, tier,
//! project, API key, `from`/`to` window) replaces the catalog rates of matching events; the last
//! matching entry wins. Without a `service_tier` it prices the standard tier and other tiers get
//! the catalog multiplier; with one, its rates are that tier's final rates. Every matching
//! discount then multiplies the cost; several discounts compound (0.9 × 0.8 = 0.72). The list
//! cost is always computed beside it when the catalog knows the model, and a custom price also
//! prices models the catalog lacks. Model globs (`*` = any run, case-insensitive) match the
//! event's model name, lower-cased and without a `models/` prefix; `provider` matches through
//! aliases, or literally for providers the catalog does not know; `project` and `api_key_id`
//! match exactly; `from` is inclusive, `to` exclusive. Rates and multipliers are TOML strings
//! (`"2.50"`) or integers: a TOML float is rejected because it is not exact. If a matching
//! custom price cannot price a call (a bucket with tokens and no rate or fallback), the event is
//! unpriced: the list cost is still returned, but it is not what the operator pays.
//!
//! **Price ids** say what produced a stored cost: `genai-prices@47df840:anthropic/claude-sonnet-4-5#0`
//! (source@commit:provider/model#row), plus `:batch` when a tier multiplier applied; custom costs
//! are `custom:<name or index>[:tier]`, or the catalog id, followed by `+discount:<name or index>`
//! for each discount.

mod apply;
pub mod catalog;
mod compute;
mod decimal;
mod error;
pub mod generate;
mod matching;
pub mod overrides;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

pub use apply::apply;
pub use catalog::{
    Catalog, MatchRule, Model, Price, PriceRow, PriceSet, Provider, ProviderHint, ServiceTiers,
    SourceInfo, Tier, TierMultiplier, TimeOfDay, BUILTIN_CATALOG_JSON, CATALOG_FORMAT,
};
pub use compute::ExplainLine;
pub use error::PricingError;
pub use generate::{
    catalog_to_json, check_license, generate_from_dir, generate_from_genai_prices,
    GENAI_PRICES_NAME, SUPPLEMENT_JSON,
};
pub use overrides::{ConfigTime, CustomPrice, Discount, PricingConfig};

use crate::domain::event::ListParts;
use crate::domain::money::round_cost;
use crate::domain::tokens::TokenBuckets;
use compute::{compute, ComputeError, Subtotal, Usage};
use matching::{normalise_model, Matcher, Route};
use overrides::{normalise_tier, Overrides, Subject};

/// One call to price.
#[derive(Debug, Clone, Copy)]
pub struct PriceRequest<'a> {
    /// Provider as the source reported it (any case, alias or OTel name), if any.
    pub provider: Option<&'a str>,
    /// Model as the source reported it (the served model when known).
    pub model: &'a str,
    /// Event time; selects dated and time-of-day rows and override windows.
    pub at: DateTime<Utc>,
    /// Service tier as reported (`default`, `batch`, `flex`, `priority`, …), if any.
    pub service_tier: Option<&'a str>,
    pub tokens: &'a TokenBuckets,
    pub web_search_requests: u64,
    /// Number of requests this record stands for: 1 for one call.
    pub requests: u64,
    pub project: Option<&'a str>,
    pub api_key_id: Option<&'a str>,
}

/// A computed cost and what produced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PriceLine {
    /// USD, rounded to `COST_SCALE` (12) decimal places.
    pub cost: Decimal,
    /// Traceable id of the rates used (see the module docs).
    pub price_id: String,
    /// The rate lines behind the cost, before service-tier factors, discounts and rounding.
    #[serde(skip)]
    pub parts: ListParts,
}

/// The outcome of pricing one call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PriceResult {
    /// Canonical catalog id of the provider that bills the call (resolved or guessed).
    pub provider: Option<String>,
    /// Cost at catalog list price (with any service-tier multiplier).
    pub list: Option<PriceLine>,
    /// Cost after a custom price and/or discounts, when any applied.
    pub custom: Option<PriceLine>,
    /// Why the event has no cost to book. Set when both `list` and `custom` are `None`, and
    /// also when a custom price or discount matched but could not price the call: then `list`
    /// may still be returned for comparison, but it is not what the operator pays.
    pub unpriced_reason: Option<String>,
}

impl PriceResult {
    /// The cost to book: the custom cost if any applied, else the list cost, else `None`
    /// (unpriced).
    pub fn booked(&self) -> Option<&PriceLine> {
        if self.unpriced_reason.is_some() {
            return None;
        }
        self.custom.as_ref().or(self.list.as_ref())
    }
}

/// Everything behind one price, for the API and for debugging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub provider_given: Option<String>,
    pub model_given: String,
    /// Normalised service tier; `standard` for every list-price tier.
    pub service_tier: String,
    pub matched: Option<MatchedModel>,
    pub list: Option<CostBreakdown>,
    pub custom: Option<CostBreakdown>,
    pub result: PriceResult,
}

/// The catalog model and row an event matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MatchedModel {
    /// Provider whose list holds the model (may differ from the billing provider).
    pub provider: String,
    pub model: String,
    pub name: Option<String>,
    /// Row index in effect at the event's time.
    pub row: u32,
    pub effective_from: Option<NaiveDate>,
    pub effective_to: Option<NaiveDate>,
    pub time_of_day: Option<TimeOfDay>,
    /// How the model was found.
    pub route: &'static str,
}

/// The lines and factors of one cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CostBreakdown {
    pub price_id: String,
    pub lines: Vec<ExplainLine>,
    /// Exact sum of the token lines.
    pub tokens_subtotal: Decimal,
    /// Exact sum of per-call fees (web searches, requests).
    pub fees_subtotal: Decimal,
    /// Service-tier multiplier applied to the token subtotal.
    pub tier_multiplier: Option<Decimal>,
    pub discounts: Vec<AppliedDiscount>,
    /// Exact result before rounding.
    pub exact: Decimal,
    /// Rounded result, as stored.
    pub cost: Decimal,
}

/// A discount that multiplied a cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedDiscount {
    pub id: String,
    pub multiplier: Decimal,
}

/// Prices calls against one catalog and one operator config. Immutable after construction
/// apart from the internal match memo; `Send + Sync`, meant to be shared in an `Arc`.
#[derive(Debug)]
pub struct Pricer {
    catalog: Catalog,
    matcher: Matcher,
    /// `[provider][model][row]` → catalog price id.
    row_ids: Vec<Vec<Vec<String>>>,
    /// Normalised tier names that mean the list price.
    list_price_tiers: Vec<String>,
    /// `[provider]` → (normalised tier, multiplier).
    tier_multipliers: Vec<Vec<(String, Decimal)>>,
    overrides: Overrides,
}

/// How the service tier changes a cost.
enum TierEffect<'t> {
    None,
    Multiply(Decimal, &'t str),
    Unpriced(String),
}

/// Everything one pricing pass found; `explain` turns it into an [`Explanation`].
struct Evaluation {
    result: PriceResult,
    list: Option<Costed>,
    custom: Option<Costed>,
    matched: Option<MatchedModel>,
    /// Normalised service tier.
    tier: String,
}

/// A cost under construction.
struct Costed {
    price_id: String,
    sub: Subtotal,
    tier_multiplier: Option<Decimal>,
    exact: Decimal,
    lines: Vec<ExplainLine>,
    discounts: Vec<AppliedDiscount>,
}

impl Costed {
    fn line(&self) -> PriceLine {
        PriceLine {
            cost: round_cost(self.exact),
            price_id: self.price_id.clone(),
            parts: ListParts {
                // Cannot overflow where `exact` did not; saturating keeps a panic impossible.
                all: self.sub.tokens.saturating_add(self.sub.fees),
                input: self.sub.input,
                output: self.sub.output,
            },
        }
    }

    fn breakdown(self) -> CostBreakdown {
        CostBreakdown {
            cost: round_cost(self.exact),
            price_id: self.price_id,
            lines: self.lines,
            tokens_subtotal: self.sub.tokens,
            fees_subtotal: self.sub.fees,
            tier_multiplier: self.tier_multiplier,
            discounts: self.discounts,
            exact: self.exact,
        }
    }
}

const OVERFLOW: &str = "cost does not fit a decimal (token counts out of range)";

impl Pricer {
    /// The built-in catalog with the operator's config.
    pub fn builtin(config: &PricingConfig) -> Result<Pricer, PricingError> {
        Pricer::new(Catalog::builtin()?, config)
    }

    /// Validates and compiles `catalog` and `config`.
    pub fn new(catalog: Catalog, config: &PricingConfig) -> Result<Pricer, PricingError> {
        catalog.validate()?;
        let matcher = Matcher::new(&catalog)?;
        let prefix = catalog.source.price_id_prefix();
        let row_ids = catalog
            .providers
            .iter()
            .map(|p| {
                p.models
                    .iter()
                    .map(|m| {
                        m.rows
                            .iter()
                            .map(|r| format!("{prefix}:{}/{}#{}", p.id, m.id, r.index))
                            .collect()
                    })
                    .collect()
            })
            .collect();
        let list_price_tiers: Vec<String> = catalog
            .service_tiers
            .list_price
            .iter()
            .map(|t| normalise_tier(t))
            .collect();
        let mut tier_multipliers = vec![Vec::new(); catalog.providers.len()];
        for m in &catalog.service_tiers.multipliers {
            if let Some(slot) = matcher
                .provider_index(&m.provider)
                .and_then(|i| tier_multipliers.get_mut(i))
            {
                slot.push((normalise_tier(&m.tier), m.multiplier));
            }
        }
        let mut overrides = Overrides::new(config, &|p| matcher.canonical_provider(p))?;
        overrides.map_tiers(|t| {
            if list_price_tiers.iter().any(|l| l == t) {
                "standard".to_owned()
            } else {
                t.to_owned()
            }
        });
        Ok(Pricer {
            catalog,
            matcher,
            row_ids,
            list_price_tiers,
            tier_multipliers,
            overrides,
        })
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Canonical catalog provider id guessed from a model name (hints, `model_match`, or a
    /// `vendor/` prefix).
    pub fn infer_provider(&self, model: &str) -> Option<String> {
        self.matcher
            .infer_provider(model)
            .map(|i| self.matcher.provider_id(i).to_owned())
    }

    /// Canonical catalog provider id of a provider name (alias, id or `provider_match`).
    pub fn canonical_provider(&self, provider: &str) -> Option<String> {
        self.matcher
            .canonical_provider(provider)
            .map(|i| self.matcher.provider_id(i).to_owned())
    }

    /// Prices one call. Never fails: an event that cannot be priced gets a reason.
    pub fn price(&self, req: &PriceRequest<'_>) -> PriceResult {
        self.evaluate(req, false).result
    }

    /// Prices one call and returns every step: match, row, per-bucket lines, factors.
    pub fn explain(&self, req: &PriceRequest<'_>) -> Explanation {
        let e = self.evaluate(req, true);
        Explanation {
            provider_given: req.provider.map(str::to_owned),
            model_given: req.model.to_owned(),
            service_tier: e.tier,
            matched: e.matched,
            list: e.list.map(Costed::breakdown),
            custom: e.custom.map(Costed::breakdown),
            result: e.result,
        }
    }

    /// Normalised tier of a request: `standard` for none or any list-price name.
    fn request_tier(&self, tier: Option<&str>) -> String {
        match tier.map(normalise_tier) {
            Some(t) if !t.is_empty() && !self.list_price_tiers.contains(&t) => t,
            _ => "standard".to_owned(),
        }
    }

    fn tier_effect<'t>(&self, billing: Option<usize>, tier: &'t str) -> TierEffect<'t> {
        if tier == "standard" {
            return TierEffect::None;
        }
        let found = billing
            .and_then(|b| self.tier_multipliers.get(b))
            .and_then(|ms| ms.iter().find(|(t, _)| t == tier));
        match found {
            Some((_, m)) => TierEffect::Multiply(*m, tier),
            None => TierEffect::Unpriced(format!(
                "no {tier:?} service-tier price for {}",
                billing.map_or("an unknown provider", |b| self.matcher.provider_id(b))
            )),
        }
    }

    /// Computes `prices` for the request and applies the tier effect.
    fn cost_with(
        &self,
        prices: &PriceSet,
        usage: &Usage<'_>,
        effect: &TierEffect<'_>,
        price_id: &str,
        what: &dyn Fn() -> String,
        explain: bool,
    ) -> Result<Costed, String> {
        let mut lines = Vec::new();
        let sub = compute(prices, usage, explain.then_some(&mut lines)).map_err(|e| match e {
            ComputeError::MissingPrice(key) => format!("{} has no {key}", what()),
            ComputeError::Overflow => OVERFLOW.to_owned(),
        })?;
        let (exact, tier_multiplier, price_id) = match effect {
            TierEffect::None => (sub.tokens.checked_add(sub.fees), None, price_id.to_owned()),
            TierEffect::Multiply(m, tier) => (
                sub.tokens
                    .checked_mul(*m)
                    .and_then(|t| t.checked_add(sub.fees)),
                Some(*m),
                format!("{price_id}:{tier}"),
            ),
            TierEffect::Unpriced(reason) => return Err(reason.clone()),
        };
        Ok(Costed {
            price_id,
            sub,
            tier_multiplier,
            exact: exact.ok_or_else(|| OVERFLOW.to_owned())?,
            lines,
            discounts: Vec::new(),
        })
    }

    /// The one pricing path behind `price` and `explain`; lines and the match description are
    /// only collected when `explain` is set, so `price` stays allocation-light.
    fn evaluate(&self, req: &PriceRequest<'_>, explain: bool) -> Evaluation {
        let res = self.matcher.resolve(req.provider, req.model);
        let billing = res.billing;
        let tier = self.request_tier(req.service_tier);
        let effect = self.tier_effect(billing, &tier);
        let usage = Usage {
            tokens: req.tokens,
            web_searches: req.web_search_requests,
            requests: req.requests,
        };

        let mut matched = None;
        let list: Result<Costed, String> = match res.model {
            None => Err(self.no_model_reason(req, res.unknown_provider, billing)),
            Some((mref, route)) => {
                // The indices come from a matcher compiled from this very catalog, so the
                // lookups cannot miss; `get` keeps even a bug from panicking the ingest path.
                let found = self.catalog.providers.get(mref.provider).and_then(|p| {
                    let model = p.models.get(mref.model)?;
                    let (ri, row) = model.row_at(req.at)?;
                    let id = self.row_ids.get(mref.provider)?.get(mref.model)?.get(ri)?;
                    Some((p, model, row, id))
                });
                match found {
                    None => Err(format!("no price row for model {:?}", req.model)),
                    Some((provider, model, row, id)) => {
                        if explain {
                            matched = Some(MatchedModel {
                                provider: provider.id.clone(),
                                model: model.id.clone(),
                                name: model.name.clone(),
                                row: row.index,
                                effective_from: row.effective_from,
                                effective_to: row.effective_to,
                                time_of_day: row.time_of_day,
                                route: match route {
                                    Route::Direct => "the provider's own list",
                                    Route::FallbackProvider => {
                                        "a fallback provider of the billing provider"
                                    }
                                    Route::VendorPrefix => {
                                        "the vendor named by the model's vendor/ prefix"
                                    }
                                    Route::Inferred => "a provider guessed from the model name",
                                },
                            });
                        }
                        let what = || {
                            format!(
                                "catalog price for {}/{}#{}",
                                provider.id, model.id, row.index
                            )
                        };
                        self.cost_with(&row.prices, &usage, &effect, id, &what, explain)
                    }
                }
            }
        };

        // Overrides: a custom price replaces the list rates; discounts multiply the result.
        let mut custom: Option<Result<Costed, String>> = None;
        if !self.overrides.is_empty() {
            let provider_lower = req.provider.map(|p| p.trim().to_lowercase());
            let model_lower = normalise_model(req.model);
            let subject = Subject {
                provider_lower: provider_lower.as_deref(),
                provider_canonical: billing,
                model_lower: &model_lower,
                at: req.at,
                tier: &tier,
                project: req.project,
                api_key_id: req.api_key_id,
            };
            let rule = self.overrides.custom_for(&subject);
            let discounts: Vec<_> = self.overrides.discounts_for(&subject).collect();
            if rule.is_some() || !discounts.is_empty() {
                let base = match rule {
                    Some(c) => {
                        let what = || format!("custom price {}", c.id);
                        // A tier-specific entry holds that tier's final rates.
                        let own = if c.tier.is_some() {
                            &TierEffect::None
                        } else {
                            &effect
                        };
                        self.cost_with(&c.prices, &usage, own, &c.id, &what, explain)
                    }
                    None => match &list {
                        Ok(l) => Ok(Costed {
                            price_id: l.price_id.clone(),
                            sub: l.sub,
                            tier_multiplier: l.tier_multiplier,
                            exact: l.exact,
                            lines: l.lines.clone(),
                            discounts: Vec::new(),
                        }),
                        Err(reason) => Err(reason.clone()),
                    },
                };
                custom = Some(base.and_then(|mut c| {
                    for d in discounts {
                        c.exact = c
                            .exact
                            .checked_mul(d.multiplier)
                            .ok_or_else(|| OVERFLOW.to_owned())?;
                        c.price_id.push('+');
                        c.price_id.push_str(&d.id);
                        c.discounts.push(AppliedDiscount {
                            id: d.id.clone(),
                            multiplier: d.multiplier,
                        });
                    }
                    Ok(c)
                }));
            }
        }

        let unpriced_reason = match (&custom, &list) {
            (Some(Err(reason)), _) => Some(reason.clone()),
            (Some(Ok(_)), _) | (None, Ok(_)) => None,
            (None, Err(reason)) => Some(reason.clone()),
        };
        let list = list.ok();
        let custom = custom.and_then(Result::ok);
        let result = PriceResult {
            provider: billing.map(|b| self.matcher.provider_id(b).to_owned()),
            list: list.as_ref().map(Costed::line),
            custom: custom.as_ref().map(Costed::line),
            unpriced_reason,
        };
        Evaluation {
            result,
            list,
            custom,
            matched,
            tier,
        }
    }

    fn no_model_reason(
        &self,
        req: &PriceRequest<'_>,
        unknown: bool,
        billing: Option<usize>,
    ) -> String {
        let provider = match (
            req.provider.map(str::trim).filter(|p| !p.is_empty()),
            billing,
        ) {
            (Some(given), _) if unknown => format!("unknown provider {given:?}"),
            (Some(_), Some(b)) => format!("provider {:?}", self.matcher.provider_id(b)),
            (None, Some(b)) => format!(
                "provider {:?} guessed from the model name",
                self.matcher.provider_id(b)
            ),
            (Some(given), None) => format!("provider {given:?}"),
            (None, None) => "no provider given or recognised from the model name".to_owned(),
        };
        format!("no price for model {:?} ({provider})", req.model)
    }
}

#[cfg(test)]
mod tests;
