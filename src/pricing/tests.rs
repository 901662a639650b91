//! End-to-end tests of `Pricer` against the built-in catalog. Every expected amount is written
//! out by hand from the rates in genai-prices' `data.json` (commit 47df840), never computed by
//! the code under test.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use rust_decimal::Decimal;
use serde::de::value::{Error as ValueError, MapDeserializer, SeqDeserializer};
use serde::de::{IntoDeserializer, Visitor};
use serde::Deserialize;

use super::*;

const MTOK: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);
const P: &str = "genai-prices@47df840";

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
        .single()
        .expect("valid test time")
}

fn now() -> DateTime<Utc> {
    at(2026, 8, 1, 12, 0, 0)
}

fn pricer() -> Pricer {
    Pricer::builtin(&PricingConfig::default()).expect("built-in catalog loads")
}

fn req<'a>(
    provider: Option<&'a str>,
    model: &'a str,
    tokens: &'a TokenBuckets,
) -> PriceRequest<'a> {
    PriceRequest {
        provider,
        model,
        at: now(),
        service_tier: None,
        tokens,
        web_search_requests: 0,
        requests: 1,
        project: None,
        api_key_id: None,
    }
}

fn list(result: &PriceResult) -> (Decimal, &str) {
    let l = result
        .list
        .as_ref()
        .unwrap_or_else(|| panic!("expected a list price, got {result:?}"));
    (l.cost, l.price_id.as_str())
}

fn custom(result: &PriceResult) -> (Decimal, &str) {
    let c = result
        .custom
        .as_ref()
        .unwrap_or_else(|| panic!("expected a custom price, got {result:?}"));
    (c.cost, c.price_id.as_str())
}

fn tokens(input_uncached: u64, cache_read: u64, output: u64) -> TokenBuckets {
    TokenBuckets {
        input_uncached,
        cache_read,
        output,
        ..TokenBuckets::default()
    }
}

#[test]
fn pricer_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Pricer>();
    assert_send_sync::<Arc<Pricer>>();
}

#[test]
fn gpt_4o_and_gpt_4o_mini_are_priced_at_their_own_rows() {
    let p = pricer();
    let t = tokens(10_000, 2_000, 500);
    // gpt-4o: input 2.5, cache read 1.25, output 10.
    let r = p.price(&req(Some("openai"), "gpt-4o", &t));
    let expected =
        (dec!(10000) * dec!(2.5) + dec!(2000) * dec!(1.25) + dec!(500) * dec!(10)) / MTOK;
    assert_eq!(list(&r), (expected, "genai-prices@47df840:openai/gpt-4o#0"));
    assert_eq!(r.provider.as_deref(), Some("openai"));
    assert_eq!(r.custom, None);
    assert_eq!(r.unpriced_reason, None);

    // gpt-4o-mini: input 0.15, cache read 0.075, output 0.6; not captured by gpt-4o.
    let r = p.price(&req(Some("openai"), "gpt-4o-mini", &t));
    let expected =
        (dec!(10000) * dec!(0.15) + dec!(2000) * dec!(0.075) + dec!(500) * dec!(0.6)) / MTOK;
    assert_eq!(
        list(&r),
        (expected, "genai-prices@47df840:openai/gpt-4o-mini#0")
    );

    // Dated snapshots and case do not change the row.
    let r = p.price(&req(Some("OpenAI"), "GPT-4o-2024-08-06", &t));
    assert_eq!(list(&r).1, "genai-prices@47df840:openai/gpt-4o#0");
    let r = p.price(&req(Some("openai"), "gpt-4o-mini-2024-07-18", &t));
    assert_eq!(list(&r).1, "genai-prices@47df840:openai/gpt-4o-mini#0");
    // Without a provider, the name is enough.
    let r = p.price(&req(None, "gpt-4o", &t));
    assert_eq!(list(&r).1, "genai-prices@47df840:openai/gpt-4o#0");
    assert_eq!(r.provider.as_deref(), Some("openai"));
}

#[test]
fn o3_changes_price_on_2025_06_10_and_o3_mini_is_its_own_model() {
    let p = pricer();
    let t = tokens(1_000_000, 0, 100_000);
    let mut r = req(Some("openai"), "o3", &t);

    r.at = at(2025, 6, 9, 23, 59, 59);
    let before = p.price(&r);
    assert_eq!(
        list(&before),
        (
            (dec!(1000000) * dec!(10) + dec!(100000) * dec!(40)) / MTOK,
            "genai-prices@47df840:openai/o3#0"
        )
    );

    r.at = at(2025, 6, 10, 0, 0, 0);
    let after = p.price(&r);
    assert_eq!(
        list(&after),
        (
            (dec!(1000000) * dec!(2) + dec!(100000) * dec!(8)) / MTOK,
            "genai-prices@47df840:openai/o3#1"
        )
    );

    let mini = p.price(&req(Some("openai"), "o3-mini", &t));
    assert_eq!(
        list(&mini),
        (
            (dec!(1000000) * dec!(1.1) + dec!(100000) * dec!(4.4)) / MTOK,
            "genai-prices@47df840:openai/o3-mini#0"
        )
    );
}

#[test]
fn claude_sonnet_4_5_switches_every_category_above_200k_input() {
    let p = pricer();
    let below = TokenBuckets {
        input_uncached: 100_000,
        cache_read: 50_000,
        cache_write_5m: 20_000,
        cache_write_1h: 10_000,
        output: 2_000,
        ..TokenBuckets::default()
    };
    let r = p.price(&req(
        Some("anthropic"),
        "claude-sonnet-4-5-20250929",
        &below,
    ));
    let expected = (dec!(100000) * dec!(3)
        + dec!(50000) * dec!(0.3)
        + dec!(20000) * dec!(3.75)
        + dec!(10000) * dec!(6)
        + dec!(2000) * dec!(15))
        / MTOK;
    assert_eq!(
        list(&r),
        (
            expected,
            "genai-prices@47df840:anthropic/claude-sonnet-4-5#0"
        )
    );

    // 150k + 50k + 20k + 10k = 230k input: every category at its tier rate, all tokens.
    let above = TokenBuckets {
        input_uncached: 150_000,
        ..below
    };
    let r = p.price(&req(Some("anthropic"), "claude-sonnet-4-5", &above));
    let expected = (dec!(150000) * dec!(6)
        + dec!(50000) * dec!(0.6)
        + dec!(20000) * dec!(7.5)
        + dec!(10000) * dec!(12)
        + dec!(2000) * dec!(22.5))
        / MTOK;
    assert_eq!(list(&r).0, expected);

    // Exactly 200,000 does not exceed the tier start.
    let edge = TokenBuckets {
        input_uncached: 120_000,
        ..below
    };
    let r = p.price(&req(Some("anthropic"), "claude-sonnet-4-5", &edge));
    let expected = (dec!(120000) * dec!(3)
        + dec!(50000) * dec!(0.3)
        + dec!(20000) * dec!(3.75)
        + dec!(10000) * dec!(6)
        + dec!(2000) * dec!(15))
        / MTOK;
    assert_eq!(list(&r).0, expected);
}

#[test]
fn claude_opus_4_6_drops_its_long_context_tier_on_2026_03_13() {
    let p = pricer();
    let t = tokens(250_000, 0, 1_000);
    let mut r = req(Some("anthropic"), "claude-opus-4-6", &t);
    r.at = at(2026, 3, 12, 23, 0, 0);
    let before = p.price(&r);
    assert_eq!(
        list(&before),
        (
            (dec!(250000) * dec!(10) + dec!(1000) * dec!(37.5)) / MTOK,
            "genai-prices@47df840:anthropic/claude-opus-4-6#0"
        )
    );
    r.at = at(2026, 3, 13, 0, 0, 0);
    let after = p.price(&r);
    assert_eq!(
        list(&after),
        (
            (dec!(250000) * dec!(5) + dec!(1000) * dec!(25)) / MTOK,
            "genai-prices@47df840:anthropic/claude-opus-4-6#1"
        )
    );
}

#[test]
fn deepseek_chat_peak_window_is_utc_start_inclusive_end_exclusive() {
    let p = pricer();
    let t = tokens(1_000_000, 1_000_000, 1_000_000);
    let peak =
        (dec!(1000000) * dec!(0.27) + dec!(1000000) * dec!(0.07) + dec!(1000000) * dec!(1.1))
            / MTOK;
    let off_peak =
        (dec!(1000000) * dec!(0.135) + dec!(1000000) * dec!(0.035) + dec!(1000000) * dec!(0.55))
            / MTOK;
    let mut r = req(Some("deepseek"), "deepseek-chat", &t);
    for (time, expected, row) in [
        (at(2026, 1, 5, 0, 30, 0), peak, "#1"),
        (at(2026, 1, 5, 12, 0, 0), peak, "#1"),
        (at(2026, 1, 5, 16, 29, 59), peak, "#1"),
        (at(2026, 1, 5, 16, 30, 0), off_peak, "#0"),
        (at(2026, 1, 5, 0, 29, 59), off_peak, "#0"),
        (at(2026, 1, 5, 23, 0, 0), off_peak, "#0"),
    ] {
        r.at = time;
        let result = p.price(&r);
        assert_eq!(list(&result).0, expected, "at {time}");
        assert!(list(&result).1.ends_with(row), "at {time}: {result:?}");
    }
}

#[test]
fn gemini_audio_uses_its_audio_price_or_falls_back_to_input() {
    let p = pricer();
    let t = TokenBuckets {
        input_uncached: 1_000,
        audio_in: 2_000,
        output: 100,
        ..TokenBuckets::default()
    };
    // gemini-2.5-flash has input_audio_mtok 1.
    let r = p.price(&req(Some("gcp.gemini"), "gemini-2.5-flash", &t));
    let expected = (dec!(1000) * dec!(0.3) + dec!(2000) * dec!(1) + dec!(100) * dec!(2.5)) / MTOK;
    assert_eq!(
        list(&r),
        (expected, "genai-prices@47df840:google/gemini-2.5-flash#0")
    );
    assert_eq!(r.provider.as_deref(), Some("google"));

    // gemini-2.5-pro has no audio price: audio is charged as input (1.25), not free.
    let r = p.price(&req(Some("gemini"), "models/gemini-2.5-pro", &t));
    let expected =
        (dec!(1000) * dec!(1.25) + dec!(2000) * dec!(1.25) + dec!(100) * dec!(10)) / MTOK;
    assert_eq!(
        list(&r),
        (expected, "genai-prices@47df840:google/gemini-2.5-pro#0")
    );
    let e = p.explain(&req(Some("gemini"), "models/gemini-2.5-pro", &t));
    let audio = e
        .list
        .as_ref()
        .and_then(|l| l.lines.iter().find(|l| l.bucket == "audio_in"))
        .expect("audio line");
    assert_eq!(
        (audio.price_key, audio.fallback_for),
        ("input_mtok", Some("input_audio_mtok"))
    );
}

#[test]
fn bedrock_ids_with_region_prefix_match_the_aws_rows() {
    let p = pricer();
    let t = tokens(10_000, 0, 1_000);
    // regional.anthropic.claude-3-5-sonnet-20240620-v1:0: input 3, output 15.
    let expected = (dec!(10000) * dec!(3) + dec!(1000) * dec!(15)) / MTOK;
    for (provider, model) in [
        (
            Some("bedrock"),
            "us.anthropic.claude-3-5-sonnet-20240620-v1:0",
        ),
        (
            Some("aws.bedrock"),
            "anthropic.claude-3-5-sonnet-20240620-v1:0",
        ),
        (None, "eu.anthropic.claude-3-5-sonnet-20240620-v1:0"),
    ] {
        let r = p.price(&req(provider, model, &t));
        assert_eq!(
            list(&r),
            (
                expected,
                "genai-prices@47df840:aws/regional.anthropic.claude-3-5-sonnet-20240620-v1:0#0"
            ),
            "{provider:?} {model}"
        );
        assert_eq!(r.provider.as_deref(), Some("aws"));
    }
    // Regional endpoints of newer models carry Bedrock's 10% premium; global ones do not.
    let regional = p.price(&req(
        Some("bedrock"),
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        &t,
    ));
    assert_eq!(
        list(&regional).0,
        (dec!(10000) * dec!(3.3) + dec!(1000) * dec!(16.5)) / MTOK
    );
    let global = p.price(&req(
        Some("bedrock"),
        "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        &t,
    ));
    assert_eq!(
        list(&global).0,
        (dec!(10000) * dec!(3) + dec!(1000) * dec!(15)) / MTOK
    );
}

#[test]
fn openrouter_vendor_model_ids_use_the_openrouter_list_first() {
    let p = pricer();
    let t = tokens(10_000, 0, 1_000);
    let r = p.price(&req(Some("openrouter"), "anthropic/claude-sonnet-4.5", &t));
    assert_eq!(
        list(&r),
        (
            (dec!(10000) * dec!(3) + dec!(1000) * dec!(15)) / MTOK,
            "genai-prices@47df840:openrouter/anthropic/claude-sonnet-4.5#0"
        )
    );
    assert_eq!(r.provider.as_deref(), Some("openrouter"));

    // Not in OpenRouter's list: found under the vendor, still billed by OpenRouter.
    let r = p.price(&req(Some("openrouter"), "openai/gpt-4.1-2025-04-14", &t));
    assert_eq!(
        list(&r),
        (
            (dec!(10000) * dec!(2) + dec!(1000) * dec!(8)) / MTOK,
            "genai-prices@47df840:openai/gpt-4.1#0"
        )
    );
    assert_eq!(r.provider.as_deref(), Some("openrouter"));

    // LiteLLM-style `provider/model` with no provider field.
    let r = p.price(&req(None, "anthropic/claude-3-5-sonnet-20240620", &t));
    assert_eq!(
        list(&r).1,
        "genai-prices@47df840:anthropic/claude-3-5-sonnet#0"
    );
    assert_eq!(p.infer_provider("openai/gpt-4o").as_deref(), Some("openai"));
}

#[test]
fn azure_falls_back_to_openai_prices_but_bills_as_azure() {
    let p = pricer();
    let t = tokens(10_000, 2_000, 500);
    for provider in ["azure", "azure_openai", "azure.ai.openai", "az.ai.openai"] {
        let r = p.price(&req(Some(provider), "gpt-4o", &t));
        let expected =
            (dec!(10000) * dec!(2.5) + dec!(2000) * dec!(1.25) + dec!(500) * dec!(10)) / MTOK;
        assert_eq!(
            list(&r),
            (expected, "genai-prices@47df840:openai/gpt-4o#0"),
            "{provider}"
        );
        assert_eq!(r.provider.as_deref(), Some("azure"), "{provider}");
    }
    // Azure's own rows win over the fallback.
    let r = p.price(&req(Some("azure"), "o3-mini", &t));
    assert_eq!(list(&r).1, "genai-prices@47df840:azure/o3-mini#0");
    let e = p.explain(&req(Some("azure"), "gpt-4o", &t));
    assert_eq!(
        e.matched.map(|m| m.route),
        Some("a fallback provider of the billing provider")
    );
}

#[test]
fn unknown_models_are_unpriced_with_a_reason_never_zero() {
    let p = pricer();
    let t = tokens(1_000, 0, 1_000);
    let r = p.price(&req(Some("openai"), "acme-llm", &t));
    assert_eq!(r.list, None);
    assert_eq!(r.custom, None);
    assert_eq!(r.booked(), None);
    assert_eq!(
        r.unpriced_reason.as_deref(),
        Some(r#"no price for model "acme-llm" (provider "openai")"#)
    );

    let r = p.price(&req(None, "acme-llm", &t));
    assert_eq!(
        r.unpriced_reason.as_deref(),
        Some(
            r#"no price for model "acme-llm" (no provider given or recognised from the model name)"#
        )
    );
    let r = p.price(&req(None, "gpt-99", &t));
    assert_eq!(
        r.unpriced_reason.as_deref(),
        Some(r#"no price for model "gpt-99" (provider "openai" guessed from the model name)"#)
    );
    let r = p.price(&req(Some("acme-cloud"), "acme-llm", &t));
    assert_eq!(
        r.unpriced_reason.as_deref(),
        Some(r#"no price for model "acme-llm" (unknown provider "acme-cloud")"#)
    );
    assert_eq!(r.provider, None);

    // A known model with tokens in a bucket it has no price for is unpriced too.
    let t = TokenBuckets {
        input_uncached: 10,
        output: 10,
        ..TokenBuckets::default()
    };
    let r = p.price(&req(Some("openai"), "text-embedding-3-small", &t));
    assert_eq!(r.list, None);
    assert_eq!(
        r.unpriced_reason.as_deref(),
        Some("catalog price for openai/text-embedding-3-small#0 has no output_mtok")
    );
}

#[test]
fn batch_is_exactly_half_and_flex_bills_at_batch_rates() {
    let p = pricer();
    let t = tokens(123_457, 9_999, 3_333);
    let standard = p.price(&req(Some("openai"), "gpt-4o", &t));
    let expected =
        (dec!(123457) * dec!(2.5) + dec!(9999) * dec!(1.25) + dec!(3333) * dec!(10)) / MTOK;
    assert_eq!(list(&standard).0, expected);
    for tier in ["default", "auto", "standard", "on-demand"] {
        let mut r = req(Some("openai"), "gpt-4o", &t);
        r.service_tier = Some(tier);
        assert_eq!(p.price(&r), standard, "{tier}");
    }
    for tier in ["batch", "flex", "BATCH"] {
        let mut r = req(Some("openai"), "gpt-4o", &t);
        r.service_tier = Some(tier);
        let result = p.price(&r);
        assert_eq!(list(&result).0, expected * dec!(0.5), "{tier}");
        assert_eq!(
            list(&result).1,
            format!("{P}:openai/gpt-4o#0:{}", tier.to_lowercase())
        );
    }
    let mut r = req(Some("anthropic"), "claude-sonnet-4-5", &t);
    r.service_tier = Some("batch");
    let expected = (dec!(123457) * dec!(3) + dec!(9999) * dec!(0.3) + dec!(3333) * dec!(15)) / MTOK;
    assert_eq!(list(&p.price(&r)).0, expected / dec!(2));
}

#[test]
fn priority_and_unknown_tiers_are_unpriced_not_standard() {
    let p = pricer();
    let t = tokens(1_000, 0, 1_000);
    let mut r = req(Some("openai"), "gpt-4o", &t);
    r.service_tier = Some("priority");
    let result = p.price(&r);
    assert_eq!(result.list, None);
    assert_eq!(
        result.unpriced_reason.as_deref(),
        Some(r#"no "priority" service-tier price for openai"#)
    );
    // Flex is an OpenAI tier; Anthropic has no flex price.
    let mut r = req(Some("anthropic"), "claude-sonnet-4-5", &t);
    r.service_tier = Some("flex");
    assert_eq!(
        p.price(&r).unpriced_reason.as_deref(),
        Some(r#"no "flex" service-tier price for anthropic"#)
    );
    // Azure bills batch itself; OpenAI's multiplier is not Azure's.
    let mut r = req(Some("azure"), "gpt-4o", &t);
    r.service_tier = Some("batch");
    assert_eq!(
        p.price(&r).unpriced_reason.as_deref(),
        Some(r#"no "batch" service-tier price for azure"#)
    );
}

fn config(toml_like: Tv) -> PricingConfig {
    PricingConfig::deserialize(toml_like).expect("config deserialises")
}

#[test]
fn a_custom_price_glob_wins_and_the_list_cost_is_still_computed() {
    let cfg = config(Tv::table([(
        "custom",
        Tv::Array(vec![
            Tv::table([
                ("name", Tv::Str("old-deal")),
                ("model", Tv::Str("gpt-4o*")),
                ("input_mtok", Tv::Str("9")),
                ("output_mtok", Tv::Int(9)),
            ]),
            Tv::table([
                ("name", Tv::Str("acme-4o")),
                ("provider", Tv::Str("OpenAI")),
                ("model", Tv::Str("GPT-4o*")),
                ("input_mtok", Tv::Str("2.00")),
                ("output_mtok", Tv::Int(8)),
            ]),
        ]),
    )]));
    let p = Pricer::builtin(&cfg).expect("pricer");
    let t = tokens(10_000, 2_000, 500);
    let r = p.price(&req(Some("openai"), "gpt-4o-mini", &t));
    // Later entry wins; cache reads fall back to the custom input rate.
    let custom_expected =
        (dec!(10000) * dec!(2) + dec!(2000) * dec!(2) + dec!(500) * dec!(8)) / MTOK;
    assert_eq!(custom(&r), (custom_expected, "custom:acme-4o"));
    let list_expected =
        (dec!(10000) * dec!(0.15) + dec!(2000) * dec!(0.075) + dec!(500) * dec!(0.6)) / MTOK;
    assert_eq!(
        list(&r),
        (list_expected, "genai-prices@47df840:openai/gpt-4o-mini#0")
    );
    assert_eq!(
        r.booked().map(|l| l.price_id.as_str()),
        Some("custom:acme-4o")
    );

    // The provider filter holds through aliases; another provider does not match.
    let r = p.price(&req(Some("anthropic"), "gpt-4o-like", &t));
    assert_eq!(custom(&r).1, "custom:old-deal");
    // A custom price without a tier still gets the catalog tier multiplier.
    let mut b = req(Some("openai"), "gpt-4o", &t);
    b.service_tier = Some("batch");
    let r = p.price(&b);
    assert_eq!(
        custom(&r),
        (custom_expected * dec!(0.5), "custom:acme-4o:batch")
    );
}

#[test]
fn a_tier_specific_custom_price_prices_priority() {
    let cfg = PricingConfig {
        custom: vec![CustomPrice {
            name: Some("openai-priority".into()),
            provider: Some("openai".into()),
            model: "gpt-4o".into(),
            service_tier: Some("priority".into()),
            input_mtok: Some(dec!(4.25)),
            output_mtok: Some(dec!(17)),
            ..CustomPrice::default()
        }],
        ..PricingConfig::default()
    };
    let p = Pricer::builtin(&cfg).expect("pricer");
    let t = tokens(1_000, 0, 1_000);
    let mut r = req(Some("openai"), "gpt-4o", &t);
    r.service_tier = Some("priority");
    let result = p.price(&r);
    assert_eq!(result.list, None);
    assert_eq!(
        custom(&result),
        (
            (dec!(1000) * dec!(4.25) + dec!(1000) * dec!(17)) / MTOK,
            "custom:openai-priority"
        )
    );
    assert_eq!(result.unpriced_reason, None);
    // The entry does not apply to the standard tier.
    let standard = p.price(&req(Some("openai"), "gpt-4o", &t));
    assert_eq!(standard.custom, None);
}

#[test]
fn discounts_compound_on_list_and_custom_costs() {
    let cfg = PricingConfig {
        custom: vec![CustomPrice {
            model: "claude-3-haiku*".into(),
            input_mtok: Some(dec!(0.2)),
            output_mtok: Some(dec!(1)),
            ..CustomPrice::default()
        }],
        discounts: vec![
            Discount {
                name: Some("enterprise".into()),
                multiplier: dec!(0.9),
                ..Discount::default()
            },
            Discount {
                name: Some("anthropic-commit".into()),
                provider: Some("anthropic".into()),
                multiplier: dec!(0.8),
                ..Discount::default()
            },
            Discount {
                name: Some("team-x".into()),
                project: Some("x".into()),
                multiplier: dec!(0.5),
                ..Discount::default()
            },
        ],
    };
    let p = Pricer::builtin(&cfg).expect("pricer");
    let t = tokens(10_000, 0, 1_000);
    let r = p.price(&req(Some("anthropic"), "claude-sonnet-4-5", &t));
    let list_cost = (dec!(10000) * dec!(3) + dec!(1000) * dec!(15)) / MTOK;
    assert_eq!(list(&r).0, list_cost);
    assert_eq!(
        custom(&r),
        (
            list_cost * dec!(0.9) * dec!(0.8),
            "genai-prices@47df840:anthropic/claude-sonnet-4-5#0+discount:enterprise+discount:anthropic-commit"
        )
    );
    // Only the global discount for OpenAI; the project discount only for its project.
    let mut o = req(Some("openai"), "gpt-4o", &t);
    o.project = Some("x");
    let r = p.price(&o);
    let list_cost = (dec!(10000) * dec!(2.5) + dec!(1000) * dec!(10)) / MTOK;
    assert_eq!(custom(&r).0, list_cost * dec!(0.9) * dec!(0.5));
    // Custom price (unnamed: its index) then discounts.
    let r = p.price(&req(Some("anthropic"), "claude-3-haiku-20240307", &t));
    assert_eq!(
        custom(&r),
        (
            (dec!(10000) * dec!(0.2) + dec!(1000) * dec!(1)) / MTOK * dec!(0.72),
            "custom:0+discount:enterprise+discount:anthropic-commit"
        )
    );
}

#[test]
fn a_custom_price_prices_a_model_the_catalog_lacks() {
    let cfg = PricingConfig {
        custom: vec![CustomPrice {
            name: Some("self-hosted".into()),
            provider: Some("vllm-internal".into()),
            model: "acme-llm*".into(),
            input_mtok: Some(dec!(0.05)),
            output_mtok: Some(dec!(0.1)),
            ..CustomPrice::default()
        }],
        ..PricingConfig::default()
    };
    let p = Pricer::builtin(&cfg).expect("pricer");
    let t = tokens(1_000_000, 0, 500_000);
    let r = p.price(&req(Some("vllm-internal"), "acme-llm-70b", &t));
    assert_eq!(r.list, None);
    assert_eq!(
        custom(&r),
        (
            (dec!(1000000) * dec!(0.05) + dec!(500000) * dec!(0.1)) / MTOK,
            "custom:self-hosted"
        )
    );
    assert_eq!(r.unpriced_reason, None);
    // Another provider with the same model name is still unpriced.
    let r = p.price(&req(Some("elsewhere"), "acme-llm-70b", &t));
    assert!(r.unpriced_reason.is_some());
}

#[test]
fn a_date_bounded_custom_price_applies_only_inside_its_window() {
    let cfg = config(Tv::table([(
        "custom",
        Tv::Array(vec![Tv::table([
            ("name", Tv::Str("january")),
            ("model", Tv::Str("gpt-4o")),
            ("from", Tv::Str("2025-01-01")),
            ("to", Tv::Datetime("2025-02-01T00:00:00Z")),
            ("input_mtok", Tv::Int(1)),
            ("output_mtok", Tv::Int(1)),
        ])]),
    )]));
    let p = Pricer::builtin(&cfg).expect("pricer");
    let t = tokens(1_000, 0, 0);
    let mut r = req(Some("openai"), "gpt-4o", &t);
    r.at = at(2025, 1, 1, 0, 0, 0);
    assert_eq!(custom(&p.price(&r)).0, dec!(1000) * dec!(1) / MTOK);
    r.at = at(2025, 1, 31, 23, 59, 59);
    assert!(p.price(&r).custom.is_some());
    r.at = at(2025, 2, 1, 0, 0, 0);
    let outside = p.price(&r);
    assert_eq!(outside.custom, None);
    assert_eq!(list(&outside).0, dec!(1000) * dec!(2.5) / MTOK);
    r.at = at(2024, 12, 31, 23, 59, 59);
    assert_eq!(p.price(&r).custom, None);
}

#[test]
fn a_custom_price_that_cannot_price_the_call_leaves_it_unpriced() {
    let cfg = PricingConfig {
        custom: vec![CustomPrice {
            name: Some("input-only".into()),
            model: "gpt-4o".into(),
            input_mtok: Some(dec!(1)),
            ..CustomPrice::default()
        }],
        ..PricingConfig::default()
    };
    let p = Pricer::builtin(&cfg).expect("pricer");
    let t = tokens(1_000, 0, 1_000);
    let r = p.price(&req(Some("openai"), "gpt-4o", &t));
    assert!(r.list.is_some(), "list cost is kept for comparison");
    assert_eq!(r.custom, None);
    assert_eq!(
        r.unpriced_reason.as_deref(),
        Some("custom price custom:input-only has no output_mtok")
    );
    assert_eq!(r.booked(), None);
}

#[test]
fn toml_floats_are_rejected_with_a_hint_and_strings_and_integers_accepted() {
    let err = PricingConfig::deserialize(Tv::table([(
        "custom",
        Tv::Array(vec![Tv::table([
            ("model", Tv::Str("gpt-4o")),
            ("input_mtok", Tv::Float(0.1)),
        ])]),
    )]))
    .expect_err("a float price must be rejected")
    .to_string();
    assert!(err.contains("quote the number"), "{err}");

    let err = PricingConfig::deserialize(Tv::table([(
        "discounts",
        Tv::Array(vec![Tv::table([("multiplier", Tv::Float(0.85))])]),
    )]))
    .expect_err("a float multiplier must be rejected")
    .to_string();
    assert!(err.contains("quote the number"), "{err}");

    let ok = config(Tv::table([(
        "discounts",
        Tv::Array(vec![
            Tv::table([("multiplier", Tv::Str("0.85"))]),
            Tv::table([("multiplier", Tv::Int(1))]),
        ]),
    )]));
    assert_eq!(ok.discounts[0].multiplier, dec!(0.85));
    assert_eq!(ok.discounts[1].multiplier, dec!(1));

    // Misspelt keys are errors, not silently ignored prices.
    assert!(PricingConfig::deserialize(Tv::table([(
        "custom",
        Tv::Array(vec![Tv::table([
            ("model", Tv::Str("x")),
            ("input_mtoks", Tv::Str("1"))
        ])]),
    )]))
    .is_err());
}

#[test]
fn invalid_configs_fail_pricer_construction_with_entry_and_field() {
    let cfg = PricingConfig {
        custom: vec![CustomPrice {
            model: "gpt-4o".into(),
            input_mtok: Some(dec!(1)),
            from: ConfigTime::parse("2025-03-01").ok(),
            to: ConfigTime::parse("2025-03-01").ok(),
            ..CustomPrice::default()
        }],
        ..PricingConfig::default()
    };
    let err = Pricer::builtin(&cfg).expect_err("from == to").to_string();
    assert!(err.starts_with("pricing.custom[0].to:"), "{err}");
}

#[test]
fn provider_names_resolve_through_aliases_before_loose_rules() {
    let p = pricer();
    for (given, want) in [
        ("bedrock", Some("aws")),
        ("aws.bedrock", Some("aws")),
        ("amazon-bedrock", Some("aws")),
        ("gcp.vertex_ai", Some("google")),
        ("gcp.gemini", Some("google")),
        ("vertex_ai", Some("google")),
        ("google_genai", Some("google")),
        ("azure.ai.openai", Some("azure")),
        ("az.ai.openai", Some("azure")),
        ("azure_openai", Some("azure")),
        ("x_ai", Some("x-ai")),
        ("xai", Some("x-ai")),
        ("grok", Some("x-ai")),
        ("mistral_ai", Some("mistral")),
        ("mistralai", Some("mistral")),
        ("together_ai", Some("together")),
        ("fireworks_ai", Some("fireworks")),
        (" OpenAI ", Some("openai")),
        ("anthropic", Some("anthropic")),
        ("ibm.watsonx.ai", None),
    ] {
        assert_eq!(p.canonical_provider(given).as_deref(), want, "{given}");
    }
    for (model, want) in [
        ("gpt-4o", Some("openai")),
        ("o3-mini", Some("openai")),
        ("text-embedding-3-small", Some("openai")),
        ("claude-3-5-sonnet-20240620", Some("anthropic")),
        ("gemini-2.5-flash", Some("google")),
        ("us.anthropic.claude-3-5-sonnet-20240620-v1:0", Some("aws")),
        ("grok-4", Some("x-ai")),
        ("mistral-large-latest", Some("mistral")),
        ("acme-llm", None),
    ] {
        assert_eq!(p.infer_provider(model).as_deref(), want, "{model}");
    }
}

/// Guards the matching order: every name a model's own rule lists (its `equals` and
/// `starts_with` strings, and its id when the rule accepts it) must resolve to that model in
/// its provider, so no earlier, looser rule captures it.
#[test]
fn no_catalog_model_is_shadowed_for_its_own_names() {
    let p = pricer();
    fn names(rule: &MatchRule, out: &mut Vec<String>) {
        match rule {
            MatchRule::Equals(s) | MatchRule::StartsWith(s) => out.push(s.to_lowercase()),
            MatchRule::Or(rs) | MatchRule::And(rs) => rs.iter().for_each(|r| names(r, out)),
            _ => {}
        }
    }
    let mut checked = 0;
    for provider in &p.catalog().providers {
        for model in &provider.models {
            let mut own = vec![model.id.to_lowercase()];
            names(&model.rule, &mut own);
            let rule = matching::CompiledRule::compile(&model.rule).expect("rule");
            for name in own.iter().filter(|n| rule.is_match(n)) {
                let res = p.matcher.resolve_uncached(Some(&provider.id), name);
                let (found, _) = res.model.expect("resolves");
                let got_provider = &p.catalog().providers[found.provider];
                let got = &got_provider.models[found.model];
                assert_eq!(
                    (got_provider.id.as_str(), got.id.as_str()),
                    (provider.id.as_str(), model.id.as_str()),
                    "{name:?} resolved to another model"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 2_000, "checked only {checked} names");
}

#[test]
fn the_match_cache_is_bounded_and_transparent() {
    let p = pricer();
    let t = tokens(1, 0, 1);
    let first = p.price(&req(Some("openai"), "gpt-4o", &t));
    assert_eq!(p.price(&req(Some("openai"), "gpt-4o", &t)), first);
    for i in 0..(matching::MAX_CACHE_ENTRIES + 5) {
        let name = format!("junk-{i}");
        let _ = p.price(&req(Some("openai"), &name, &t));
    }
    assert!(p.matcher.cache_len() <= matching::MAX_CACHE_ENTRIES);
    assert_eq!(p.price(&req(Some("openai"), "gpt-4o", &t)), first);
}

#[test]
fn web_searches_and_reasoning_rates_are_charged() {
    let p = pricer();
    // perplexity sonar-deep-research: input 2, output 8, reasoning 3, web searches 5/k.
    let t = TokenBuckets {
        input_uncached: 1_000,
        output: 10_000,
        reasoning: 7_000,
        ..TokenBuckets::default()
    };
    let mut r = req(Some("perplexity"), "sonar-deep-research", &t);
    r.web_search_requests = 4;
    let expected = (dec!(1000) * dec!(2) + dec!(7000) * dec!(3) + dec!(3000) * dec!(8)) / MTOK
        + dec!(4) * dec!(5) / dec!(1000);
    assert_eq!(list(&p.price(&r)).0, expected);
    // perplexity sonar: 12 per thousand requests.
    let t = tokens(1_000, 0, 1_000);
    let r = req(Some("perplexity"), "sonar", &t);
    let expected = (dec!(1000) * dec!(1) + dec!(1000) * dec!(1)) / MTOK + dec!(12) / dec!(1000);
    assert_eq!(list(&p.price(&r)).0, expected);
    // A search on a model without a search price is not silently free.
    let mut r = req(Some("openai"), "gpt-4o", &t);
    r.web_search_requests = 1;
    assert_eq!(
        p.price(&r).unpriced_reason.as_deref(),
        Some("catalog price for openai/gpt-4o#0 has no web_searches_kcount")
    );
}

#[test]
fn costs_are_rounded_once_to_twelve_places() {
    let p = pricer();
    // 1 token of gpt-4o-mini cache read: 0.075 / 1e6 = 0.000000075 (exact at 12 places).
    let t = tokens(0, 1, 0);
    assert_eq!(
        list(&p.price(&req(Some("openai"), "gpt-4o-mini", &t))).0,
        dec!(0.000000075)
    );
    // Discount of 1/3 produces more digits; the stored cost has at most 12.
    let cfg = PricingConfig {
        discounts: vec![Discount {
            multiplier: dec!(0.333333333333333333),
            ..Discount::default()
        }],
        ..PricingConfig::default()
    };
    let p = Pricer::builtin(&cfg).expect("pricer");
    let c = custom(&p.price(&req(Some("openai"), "gpt-4o-mini", &t))).0;
    assert!(c.scale() <= 12, "{c}");
    assert_eq!(c, dec!(0.000000025000));
}

#[test]
fn explain_lists_each_bucket_with_rate_key_and_tier() {
    let p = pricer();
    let t = TokenBuckets {
        input_uncached: 210_000,
        cache_write_1h: 1_000,
        output: 100,
        ..TokenBuckets::default()
    };
    let mut r = req(Some("anthropic"), "claude-sonnet-4-5", &t);
    r.service_tier = Some("batch");
    let e = p.explain(&r);
    let list = e.list.expect("list breakdown");
    let lines: Vec<_> = list
        .lines
        .iter()
        .map(|l| (l.bucket, l.quantity, l.rate, l.price_key, l.tier_start))
        .collect();
    assert_eq!(
        lines,
        vec![
            (
                "input_uncached",
                210_000,
                dec!(6),
                "input_mtok",
                Some(200_000)
            ),
            (
                "cache_write_1h",
                1_000,
                dec!(12),
                "cache_write_1h_mtok",
                Some(200_000)
            ),
            ("output", 100, dec!(22.5), "output_mtok", Some(200_000)),
        ]
    );
    assert_eq!(list.tier_multiplier, Some(dec!(0.5)));
    assert_eq!(
        list.cost,
        e.result.list.as_ref().map(|l| l.cost).unwrap_or_default()
    );
    assert_eq!(e.service_tier, "batch");
    let m = e.matched.expect("matched");
    assert_eq!(
        (m.provider.as_str(), m.model.as_str(), m.row),
        ("anthropic", "claude-sonnet-4-5", 0)
    );
    // The explanation serialises for the API.
    let json = serde_json::to_string(&e.result).expect("json");
    assert!(json.contains("claude-sonnet-4-5#0:batch"), "{json}");
}

/// Models for the property tests: flat, tiered, time-windowed, with audio and image prices.
const PROPERTY_MODELS: &[(&str, &str)] = &[
    ("openai", "gpt-4o"),
    ("openai", "gpt-realtime"),
    ("anthropic", "claude-sonnet-4-5"),
    ("google", "gemini-2.5-pro"),
    ("google", "gemini-2.5-flash"),
    ("deepseek", "deepseek-chat"),
    ("openai", "gpt-image-1.5"),
];

/// Every tier threshold in the catalog; an increment that crosses one changes tier.
const THRESHOLDS: &[u64] = &[128_000, 200_000, 272_000, 512_000];

fn same_tier(a: u64, b: u64) -> bool {
    THRESHOLDS.iter().all(|t| (a > *t) == (b > *t))
}

fn buckets() -> impl Strategy<Value = TokenBuckets> {
    (
        (
            0u64..400_000,
            0u64..400_000,
            0u64..100_000,
            0u64..100_000,
            0u64..200_000,
        ),
        (
            0u64..200_000,
            0u64..50_000,
            0u64..50_000,
            0u64..50_000,
            0u64..50_000,
        ),
    )
        .prop_map(
            |((iu, cr, w5, w1, out), (reasoning, ai, ao, ii, io))| TokenBuckets {
                input_uncached: iu,
                cache_read: cr,
                cache_write_5m: w5,
                cache_write_1h: w1,
                output: out,
                reasoning: reasoning.min(out),
                audio_in: ai,
                audio_out: ao,
                image_in: ii,
                image_out: io,
            },
        )
}

fn cost_of(p: &Pricer, model: (&str, &str), t: &TokenBuckets, at: DateTime<Utc>) -> Decimal {
    let mut r = req(Some(model.0), model.1, t);
    r.at = at;
    let result = p.price(&r);
    result
        .list
        .unwrap_or_else(|| panic!("{model:?} unpriced: {:?}", result.unpriced_reason))
        .cost
}

fn add(t: &TokenBuckets, bucket: usize, n: u64) -> TokenBuckets {
    let mut t = *t;
    match bucket {
        0 => t.input_uncached += n,
        1 => t.cache_read += n,
        2 => t.cache_write_5m += n,
        3 => t.cache_write_1h += n,
        4 => t.output += n,
        5 => t.audio_in += n,
        6 => t.audio_out += n,
        7 => t.image_in += n,
        _ => t.image_out += n,
    }
    t
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn cost_is_never_negative(t in buckets(), m in 0..PROPERTY_MODELS.len(), hour in 0u32..24) {
        let p = shared_pricer();
        let c = cost_of(p, PROPERTY_MODELS[m], &t, at(2026, 2, 1, hour, 0, 0));
        prop_assert!(c >= Decimal::ZERO);
    }

    /// `reasoning` is excluded: it is a subset of output, and on models with a cheaper
    /// reasoning rate more reasoning (same output) rightly costs less.
    #[test]
    fn cost_is_monotone_in_each_bucket_within_a_tier(
        t in buckets(), m in 0..PROPERTY_MODELS.len(), bucket in 0usize..9, n in 1u64..100_000,
    ) {
        let more = add(&t, bucket, n);
        let (a, b) = (Usage { tokens: &t, web_searches: 0, requests: 1 }, Usage { tokens: &more, web_searches: 0, requests: 1 });
        prop_assume!(same_tier(a.input_total(), b.input_total()));
        let p = shared_pricer();
        let when = at(2026, 2, 1, 10, 0, 0);
        prop_assert!(cost_of(p, PROPERTY_MODELS[m], &more, when) >= cost_of(p, PROPERTY_MODELS[m], &t, when));
    }

    #[test]
    fn moving_input_to_cache_read_never_costs_more(
        t in buckets(), m in 0..PROPERTY_MODELS.len(), share in 0u64..=100,
    ) {
        let p = shared_pricer();
        let model = PROPERTY_MODELS[m];
        let when = at(2026, 2, 1, 10, 0, 0);
        let moved = t.input_uncached * share / 100;
        let cached = TokenBuckets {
            input_uncached: t.input_uncached - moved,
            cache_read: t.cache_read + moved,
            ..t
        };
        prop_assert!(cost_of(p, model, &cached, when) <= cost_of(p, model, &t, when));
    }
}

/// The property models must all have cache-read ≤ input rates for the last property to be a
/// statement about the code and not about the data.
#[test]
fn property_models_have_cache_read_at_most_input() {
    let p = pricer();
    for (provider, model) in PROPERTY_MODELS {
        let res = p.matcher.resolve_uncached(Some(provider), model);
        let (mref, _) = res.model.expect("property model exists");
        let m = &p.catalog().providers[mref.provider].models[mref.model];
        for row in &m.rows {
            let input = row.prices.input_mtok.as_ref().expect("input price");
            if let Some(cache) = &row.prices.cache_read_mtok {
                for n in [0, 128_001, 200_001, 272_001, 512_001] {
                    assert!(cache.rate_for(n).0 <= input.rate_for(n).0, "{model} at {n}");
                }
            }
        }
    }
}

fn shared_pricer() -> &'static Pricer {
    static PRICER: std::sync::OnceLock<Pricer> = std::sync::OnceLock::new();
    PRICER.get_or_init(pricer)
}

/// Prints the time per `price()` call for a handful of models (cache hits). No assertion:
/// timing depends on the machine. `cargo test --release -- --ignored --nocapture price_speed`.
#[test]
#[ignore]
fn price_speed() {
    let t = TokenBuckets {
        input_uncached: 12_345,
        cache_read: 6_789,
        cache_write_5m: 1_000,
        output: 2_345,
        reasoning: 1_000,
        ..TokenBuckets::default()
    };
    let cases: [(Option<&str>, &str, Option<&str>); 6] = [
        (Some("openai"), "gpt-4o-2024-08-06", Some("default")),
        (Some("anthropic"), "claude-sonnet-4-5-20250929", None),
        (
            Some("bedrock"),
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            None,
        ),
        (Some("openrouter"), "google/gemini-2.5-flash", None),
        (Some("azure"), "gpt-4o-mini", Some("batch")),
        (None, "deepseek-chat", None),
    ];
    let n = 1_000_000u32;
    for with_overrides in [false, true] {
        let p = if with_overrides {
            Pricer::builtin(&PricingConfig {
                custom: vec![CustomPrice {
                    model: "claude-*".into(),
                    input_mtok: Some(dec!(2)),
                    output_mtok: Some(dec!(10)),
                    ..CustomPrice::default()
                }],
                discounts: vec![Discount {
                    multiplier: dec!(0.9),
                    ..Discount::default()
                }],
            })
            .expect("pricer")
        } else {
            pricer()
        };
        let start = Instant::now();
        let mut total = Decimal::ZERO;
        for i in 0..n {
            let (provider, model, tier) = cases[i as usize % cases.len()];
            let mut r = req(provider, model, &t);
            r.service_tier = tier;
            if let Some(l) = p.price(&r).booked() {
                total += l.cost;
            }
        }
        let per_call = start.elapsed() / n;
        println!("price(): {per_call:?} per call over {n} calls (overrides: {with_overrides}; checksum {total})");
    }
}

/// A stand-in for the `toml` crate's deserializer (not a dependency of this crate): it hands
/// values to visitors the way `toml` does — strings as `visit_str`, integers as `visit_i64`,
/// floats as `visit_f64`, native date-times as a one-entry map, options as `visit_some`.
#[derive(Debug, Clone)]
enum Tv {
    Str(&'static str),
    Int(i64),
    Float(f64),
    Datetime(&'static str),
    Array(Vec<Tv>),
    Table(Vec<(&'static str, Tv)>),
}

impl Tv {
    fn table<const N: usize>(entries: [(&'static str, Tv); N]) -> Tv {
        Tv::Table(entries.into())
    }
}

impl<'de> IntoDeserializer<'de, ValueError> for Tv {
    type Deserializer = Tv;
    fn into_deserializer(self) -> Tv {
        self
    }
}

impl<'de> serde::Deserializer<'de> for Tv {
    type Error = ValueError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ValueError> {
        match self {
            Tv::Str(s) => v.visit_str(s),
            Tv::Int(i) => v.visit_i64(i),
            Tv::Float(f) => v.visit_f64(f),
            Tv::Datetime(s) => v.visit_map(MapDeserializer::new(
                [("$__toml_private_datetime", Tv::Str(s))].into_iter(),
            )),
            Tv::Array(a) => v.visit_seq(SeqDeserializer::new(a.into_iter())),
            Tv::Table(t) => v.visit_map(MapDeserializer::new(t.into_iter())),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ValueError> {
        v.visit_some(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
        ignored_any
    }
}
