//! Cost computation: one price set × one call's token buckets → an exact amount.
//!
//! Owns the bucket ↔ price-key mapping, the fallbacks for sub-categories that have no price of
//! their own, cliff tiers selected by total input tokens, and per-line explanations. It must not
//! round (the caller rounds once, at the end), must not use floats, and must never turn a
//! missing price into zero: a bucket with tokens and no applicable price is an error.

use rust_decimal::Decimal;
use serde::Serialize;

use super::catalog::{Price, PriceSet};
use crate::domain::tokens::TokenBuckets;

/// What one call used, as the computation needs it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Usage<'a> {
    pub tokens: &'a TokenBuckets,
    pub web_searches: u64,
    pub requests: u64,
}

impl Usage<'_> {
    /// Total input tokens, the count that selects tiers. Same sum as
    /// `TokenBuckets::input_total`, but saturating: an absurd record must not panic the pricer.
    pub(crate) fn input_total(&self) -> u64 {
        let t = self.tokens;
        [
            t.input_uncached,
            t.cache_read,
            t.cache_write_5m,
            t.cache_write_1h,
            t.audio_in,
            t.image_in,
        ]
        .into_iter()
        .fold(0u64, u64::saturating_add)
    }
}

/// The exact, unrounded cost of a call split by what a service-tier multiplier applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Subtotal {
    /// Charges for tokens.
    pub tokens: Decimal,
    /// The part of `tokens` charged for input buckets (uncached, cache reads and writes,
    /// audio and image input) and for output buckets (output, reasoning, audio and image
    /// output); they add up to `tokens`.
    pub input: Decimal,
    pub output: Decimal,
    /// Per-call fees: web searches and per-request prices. Service tiers discount tokens only.
    pub fees: Decimal,
}

/// Why a price set could not price a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ComputeError {
    /// A bucket has units but neither its key nor any fallback has a price.
    MissingPrice(&'static str),
    /// The amount does not fit a `Decimal` (only with absurd token counts).
    Overflow,
}

/// One priced line of an explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExplainLine {
    /// Token bucket (`input_uncached`, `cache_read`, …, `output_reasoning` for the reasoning
    /// part of `output`) or counter (`web_search_requests`, `requests`).
    pub bucket: &'static str,
    /// Tokens, searches or requests charged on this line.
    pub quantity: u64,
    /// USD per million tokens, or per thousand for searches and requests.
    #[serde(serialize_with = "super::decimal::serialize_string")]
    pub rate: Decimal,
    /// `per_mtok` or `per_k`.
    pub rate_unit: &'static str,
    /// Exact, unrounded amount of this line at list rate (before tier multipliers/discounts).
    #[serde(serialize_with = "super::decimal::serialize_string")]
    pub amount: Decimal,
    /// The price key whose rate was used.
    pub price_key: &'static str,
    /// The bucket's own key when it had no price and `price_key` is its fallback.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_for: Option<&'static str>,
    /// Start of the tier that applied (`None`: the base or a flat price).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier_start: Option<u64>,
}

const MTOK: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);
const KCOUNT: Decimal = Decimal::from_parts(1_000, 0, 0, false, 0);

type Key = (&'static str, fn(&PriceSet) -> Option<&Price>);

const INPUT: Key = ("input_mtok", |p| p.input_mtok.as_ref());
const OUTPUT: Key = ("output_mtok", |p| p.output_mtok.as_ref());
const CACHE_READ: Key = ("cache_read_mtok", |p| p.cache_read_mtok.as_ref());
const CACHE_WRITE: Key = ("cache_write_mtok", |p| p.cache_write_mtok.as_ref());
const CACHE_WRITE_1H: Key = ("cache_write_1h_mtok", |p| p.cache_write_1h_mtok.as_ref());
const INPUT_AUDIO: Key = ("input_audio_mtok", |p| p.input_audio_mtok.as_ref());
const OUTPUT_AUDIO: Key = ("output_audio_mtok", |p| p.output_audio_mtok.as_ref());
const INPUT_IMAGE: Key = ("input_image_mtok", |p| p.input_image_mtok.as_ref());
const OUTPUT_IMAGE: Key = ("output_image_mtok", |p| p.output_image_mtok.as_ref());
const OUTPUT_REASONING: Key = ("output_reasoning_mtok", |p| {
    p.output_reasoning_mtok.as_ref()
});
const WEB_SEARCHES: Key = ("web_searches_kcount", |p| p.web_searches_kcount.as_ref());
const REQUESTS: Key = ("requests_kcount", |p| p.requests_kcount.as_ref());

/// The first key of `chain` that has a price: (key used, price, the bucket's own key if a
/// fallback was used).
fn pick<'p>(
    prices: &'p PriceSet,
    chain: &[Key],
) -> Option<(&'static str, &'p Price, Option<&'static str>)> {
    let own = chain.first()?.0;
    chain
        .iter()
        .enumerate()
        .find_map(|(i, (name, get))| get(prices).map(|p| (*name, p, (i > 0).then_some(own))))
}

struct Acc<'l> {
    input_total: u64,
    sum: Decimal,
    /// What the input buckets were charged (the rest of the token charges is output).
    input: Decimal,
    lines: Option<&'l mut Vec<ExplainLine>>,
}

/// Which part of a call a charge pays for (see [`Subtotal::input`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Input,
    Output,
    Fee,
}

impl Acc<'_> {
    /// Charges `quantity` units of `bucket` at the first priced key of `chain`.
    fn charge(
        &mut self,
        part: Part,
        prices: &PriceSet,
        bucket: &'static str,
        quantity: u64,
        chain: &[Key],
        per: Decimal,
    ) -> Result<(), ComputeError> {
        if quantity == 0 {
            return Ok(());
        }
        let Some((key, price, fallback_for)) = pick(prices, chain) else {
            return Err(ComputeError::MissingPrice(
                chain.first().map_or("?", |k| k.0),
            ));
        };
        let (rate, tier_start) = price.rate_for(self.input_total);
        let amount = rate
            .checked_mul(Decimal::from(quantity))
            .and_then(|x| x.checked_div(per))
            .ok_or(ComputeError::Overflow)?;
        self.sum = self.sum.checked_add(amount).ok_or(ComputeError::Overflow)?;
        if part == Part::Input {
            self.input = self
                .input
                .checked_add(amount)
                .ok_or(ComputeError::Overflow)?;
        }
        if let Some(lines) = self.lines.as_deref_mut() {
            lines.push(ExplainLine {
                bucket,
                quantity,
                rate,
                rate_unit: if per == MTOK { "per_mtok" } else { "per_k" },
                amount,
                price_key: key,
                fallback_for,
                tier_start,
            });
        }
        Ok(())
    }
}

/// Prices every bucket of `usage` with `prices`, exactly and unrounded. Appends one line per
/// charged bucket to `lines` when given.
pub(crate) fn compute(
    prices: &PriceSet,
    usage: &Usage<'_>,
    lines: Option<&mut Vec<ExplainLine>>,
) -> Result<Subtotal, ComputeError> {
    let t = usage.tokens;
    let mut acc = Acc {
        input_total: usage.input_total(),
        sum: Decimal::ZERO,
        input: Decimal::ZERO,
        lines,
    };

    acc.charge(
        Part::Input,
        prices,
        "input_uncached",
        t.input_uncached,
        &[INPUT],
        MTOK,
    )?;
    acc.charge(
        Part::Input,
        prices,
        "cache_read",
        t.cache_read,
        &[CACHE_READ, INPUT],
        MTOK,
    )?;
    acc.charge(
        Part::Input,
        prices,
        "cache_write_5m",
        t.cache_write_5m,
        &[CACHE_WRITE, INPUT],
        MTOK,
    )?;
    acc.charge(
        Part::Input,
        prices,
        "cache_write_1h",
        t.cache_write_1h,
        &[CACHE_WRITE_1H, CACHE_WRITE, INPUT],
        MTOK,
    )?;

    // Reasoning is a subset of output. Only a model with its own reasoning rate bills it
    // separately; otherwise it is ordinary output. `min` guards against a source that reports
    // more reasoning than output, which would otherwise make a negative remainder.
    let reasoning = if prices.output_reasoning_mtok.is_some() {
        t.reasoning.min(t.output)
    } else {
        0
    };
    acc.charge(
        Part::Output,
        prices,
        "output_reasoning",
        reasoning,
        &[OUTPUT_REASONING],
        MTOK,
    )?;
    acc.charge(
        Part::Output,
        prices,
        "output",
        t.output - reasoning,
        &[OUTPUT],
        MTOK,
    )?;

    acc.charge(
        Part::Input,
        prices,
        "audio_in",
        t.audio_in,
        &[INPUT_AUDIO, INPUT],
        MTOK,
    )?;
    acc.charge(
        Part::Output,
        prices,
        "audio_out",
        t.audio_out,
        &[OUTPUT_AUDIO, OUTPUT],
        MTOK,
    )?;
    acc.charge(
        Part::Input,
        prices,
        "image_in",
        t.image_in,
        &[INPUT_IMAGE, INPUT],
        MTOK,
    )?;
    acc.charge(
        Part::Output,
        prices,
        "image_out",
        t.image_out,
        &[OUTPUT_IMAGE, OUTPUT],
        MTOK,
    )?;
    let tokens = acc.sum;
    let input = acc.input;

    acc.sum = Decimal::ZERO;
    acc.charge(
        Part::Fee,
        prices,
        "web_search_requests",
        usage.web_searches,
        &[WEB_SEARCHES],
        KCOUNT,
    )?;
    // A per-request price is charged when the model has one; most models have none, and a
    // request count is not a usage that needs a price of its own.
    if prices.requests_kcount.is_some() {
        acc.charge(
            Part::Fee,
            prices,
            "requests",
            usage.requests,
            &[REQUESTS],
            KCOUNT,
        )?;
    }
    Ok(Subtotal {
        tokens,
        input,
        output: tokens - input,
        fees: acc.sum,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::catalog::Tier;

    fn flat(v: Decimal) -> Option<Price> {
        Some(Price::Flat(v))
    }

    #[test]
    fn sub_categories_fall_back_to_their_parent_price() {
        let prices = PriceSet {
            input_mtok: flat(dec!(2)),
            output_mtok: flat(dec!(8)),
            ..PriceSet::default()
        };
        let tokens = TokenBuckets {
            cache_read: 1_000,
            cache_write_1h: 2_000,
            audio_out: 3_000,
            image_in: 4_000,
            ..TokenBuckets::default()
        };
        let usage = Usage {
            tokens: &tokens,
            web_searches: 0,
            requests: 1,
        };
        let mut lines = Vec::new();
        let sub = compute(&prices, &usage, Some(&mut lines)).expect("priced");
        let expected = (dec!(1000) * dec!(2)
            + dec!(2000) * dec!(2)
            + dec!(3000) * dec!(8)
            + dec!(4000) * dec!(2))
            / dec!(1_000_000);
        assert_eq!(sub.tokens, expected);
        assert_eq!(lines[1].price_key, "input_mtok");
        assert_eq!(lines[1].fallback_for, Some("cache_write_1h_mtok"));
    }

    #[test]
    fn missing_output_price_is_an_error_never_zero() {
        let prices = PriceSet {
            input_mtok: flat(dec!(1)),
            ..PriceSet::default()
        };
        let tokens = TokenBuckets {
            output: 1,
            ..TokenBuckets::default()
        };
        let usage = Usage {
            tokens: &tokens,
            web_searches: 0,
            requests: 1,
        };
        assert_eq!(
            compute(&prices, &usage, None),
            Err(ComputeError::MissingPrice("output_mtok"))
        );
    }

    #[test]
    fn reasoning_has_its_own_rate_only_when_the_model_has_one() {
        // perplexity/sonar-deep-research: input 2, output 8, reasoning 3.
        let prices = PriceSet {
            input_mtok: flat(dec!(2)),
            output_mtok: flat(dec!(8)),
            output_reasoning_mtok: flat(dec!(3)),
            ..PriceSet::default()
        };
        let tokens = TokenBuckets {
            output: 10_000,
            reasoning: 6_000,
            ..TokenBuckets::default()
        };
        let usage = Usage {
            tokens: &tokens,
            web_searches: 0,
            requests: 1,
        };
        let sub = compute(&prices, &usage, None).expect("priced");
        assert_eq!(
            sub.tokens,
            (dec!(6000) * dec!(3) + dec!(4000) * dec!(8)) / dec!(1_000_000)
        );

        let plain = PriceSet {
            output_reasoning_mtok: None,
            ..prices
        };
        let sub = compute(&plain, &usage, None).expect("priced");
        assert_eq!(sub.tokens, dec!(10000) * dec!(8) / dec!(1_000_000));
    }

    #[test]
    fn tier_is_chosen_by_total_input_for_every_category() {
        let tiered = |b, t| {
            Some(Price::Tiered {
                base: b,
                tiers: vec![Tier {
                    start: 200_000,
                    price: t,
                }],
            })
        };
        let prices = PriceSet {
            input_mtok: tiered(dec!(3), dec!(6)),
            output_mtok: tiered(dec!(15), dec!(22.5)),
            ..PriceSet::default()
        };
        // Only 1 uncached token, but 250k input in total via the cache-read fallback.
        let tokens = TokenBuckets {
            input_uncached: 1,
            cache_read: 250_000,
            output: 100,
            ..TokenBuckets::default()
        };
        let usage = Usage {
            tokens: &tokens,
            web_searches: 0,
            requests: 1,
        };
        let sub = compute(&prices, &usage, None).expect("priced");
        assert_eq!(
            sub.tokens,
            (dec!(1) * dec!(6) + dec!(250000) * dec!(6) + dec!(100) * dec!(22.5)) / dec!(1_000_000)
        );
    }

    #[test]
    fn web_searches_and_requests_are_fees() {
        let prices = PriceSet {
            input_mtok: flat(dec!(1)),
            output_mtok: flat(dec!(1)),
            web_searches_kcount: flat(dec!(10)),
            requests_kcount: flat(dec!(12)),
            ..PriceSet::default()
        };
        let tokens = TokenBuckets::default();
        let usage = Usage {
            tokens: &tokens,
            web_searches: 3,
            requests: 1,
        };
        let sub = compute(&prices, &usage, None).expect("priced");
        assert_eq!(sub.tokens, Decimal::ZERO);
        assert_eq!(
            sub.fees,
            dec!(3) * dec!(10) / dec!(1000) + dec!(12) / dec!(1000)
        );

        let no_search_price = PriceSet {
            web_searches_kcount: None,
            ..prices
        };
        assert_eq!(
            compute(&no_search_price, &usage, None),
            Err(ComputeError::MissingPrice("web_searches_kcount"))
        );
    }
}
