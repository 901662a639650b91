//! Operator price overrides: custom (negotiated) prices and discounts from the TOML config.
//!
//! Owns the config shapes, their validation (with the entry index and field in every error), and
//! deciding which entries apply to an event. Custom prices are absolute rates that replace the
//! catalog's for matching events (the last matching entry wins); discounts are multipliers that
//! all apply, compounding. This module does not compute costs and never reads a number through a
//! float: prices are TOML strings or integers, and a TOML float is an error.

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::catalog::{Price, PriceSet};
use super::decimal::{deserialize_exact, deserialize_exact_option};
use super::decimal::{serialize_string, serialize_string_option};
use super::PricingError;

/// The `[pricing]` section of Tally's config.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PricingConfig {
    /// `[[pricing.custom]]`: absolute prices that replace the catalog's. Later entries override
    /// earlier ones.
    #[serde(default)]
    pub custom: Vec<CustomPrice>,
    /// `[[pricing.discounts]]`: multipliers; every matching one applies.
    #[serde(default)]
    pub discounts: Vec<Discount>,
}

/// A negotiated or self-hosted price. Rates are USD per million tokens (`_mtok`) or per thousand
/// (`_kcount`), keyed as in the catalog; a missing key falls back as a catalog price does
/// (`cache_read_mtok` → `input_mtok`, …).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CustomPrice {
    /// Used in the price id (`custom:<name>`); without it the entry's index is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Provider as in events or a catalog id; aliases resolve (`bedrock` = `aws`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Model glob: `*` matches any run of characters; case-insensitive; exact otherwise.
    pub model: String,
    /// Only for this service tier (`batch`, `priority`, …); the rates are then that tier's
    /// final rates. Without it the entry prices the standard tier and other tiers get the
    /// catalog's tier multiplier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_id: Option<String>,
    /// Inclusive start: a date (midnight UTC) or an RFC 3339 date-time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<ConfigTime>,
    /// Exclusive end, same forms as `from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<ConfigTime>,
    #[serde(
        default,
        deserialize_with = "deserialize_exact_option",
        serialize_with = "serialize_string_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub input_mtok: Option<Decimal>,
    #[serde(
        default,
        deserialize_with = "deserialize_exact_option",
        serialize_with = "serialize_string_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub output_mtok: Option<Decimal>,
    #[serde(
        default,
        deserialize_with = "deserialize_exact_option",
        serialize_with = "serialize_string_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub cache_read_mtok: Option<Decimal>,
    #[serde(
        default,
        deserialize_with = "deserialize_exact_option",
        serialize_with = "serialize_string_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub cache_write_mtok: Option<Decimal>,
    #[serde(
        default,
        deserialize_with = "deserialize_exact_option",
        serialize_with = "serialize_string_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub cache_write_1h_mtok: Option<Decimal>,
    #[serde(
        default,
        deserialize_with = "deserialize_exact_option",
        serialize_with = "serialize_string_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub input_audio_mtok: Option<Decimal>,
    #[serde(
        default,
        deserialize_with = "deserialize_exact_option",
        serialize_with = "serialize_string_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub output_audio_mtok: Option<Decimal>,
    #[serde(
        default,
        deserialize_with = "deserialize_exact_option",
        serialize_with = "serialize_string_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub input_image_mtok: Option<Decimal>,
    #[serde(
        default,
        deserialize_with = "deserialize_exact_option",
        serialize_with = "serialize_string_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub output_image_mtok: Option<Decimal>,
    #[serde(
        default,
        deserialize_with = "deserialize_exact_option",
        serialize_with = "serialize_string_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub output_reasoning_mtok: Option<Decimal>,
    #[serde(
        default,
        deserialize_with = "deserialize_exact_option",
        serialize_with = "serialize_string_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub web_searches_kcount: Option<Decimal>,
    #[serde(
        default,
        deserialize_with = "deserialize_exact_option",
        serialize_with = "serialize_string_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub requests_kcount: Option<Decimal>,
}

impl CustomPrice {
    /// The entry's rates as a catalog price set, with their keys (for validation messages).
    fn rates(&self) -> [(&'static str, Option<Decimal>); 12] {
        [
            ("input_mtok", self.input_mtok),
            ("output_mtok", self.output_mtok),
            ("cache_read_mtok", self.cache_read_mtok),
            ("cache_write_mtok", self.cache_write_mtok),
            ("cache_write_1h_mtok", self.cache_write_1h_mtok),
            ("input_audio_mtok", self.input_audio_mtok),
            ("output_audio_mtok", self.output_audio_mtok),
            ("input_image_mtok", self.input_image_mtok),
            ("output_image_mtok", self.output_image_mtok),
            ("output_reasoning_mtok", self.output_reasoning_mtok),
            ("web_searches_kcount", self.web_searches_kcount),
            ("requests_kcount", self.requests_kcount),
        ]
    }

    pub(crate) fn price_set(&self) -> PriceSet {
        let mut set = PriceSet::default();
        for (key, rate) in self.rates() {
            if let Some(r) = rate {
                set.insert(key, Price::Flat(r));
            }
        }
        set
    }
}

/// A multiplier on the cost of matching events (custom or list), e.g. `"0.85"` for 15% off.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Discount {
    /// Used in the price id (`+discount:<name>`); without it the entry's index is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Model glob (see [`CustomPrice::model`]); absent means every model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<ConfigTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<ConfigTime>,
    /// Must be ≥ 0; above 1 is allowed (a surcharge).
    #[serde(
        deserialize_with = "deserialize_exact",
        serialize_with = "serialize_string"
    )]
    pub multiplier: Decimal,
}

/// An instant in the config: `2025-01-01` (midnight UTC) or an RFC 3339 date-time. Accepts a
/// quoted string or a native TOML date/date-time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigTime(pub DateTime<Utc>);

impl ConfigTime {
    pub fn parse(text: &str) -> Result<ConfigTime, String> {
        let text = text.trim();
        if let Ok(dt) = DateTime::parse_from_rfc3339(text) {
            return Ok(ConfigTime(dt.with_timezone(&Utc)));
        }
        NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|dt| ConfigTime(dt.and_utc()))
            .ok_or_else(|| {
                format!(
                    "`{text}` is neither a date (YYYY-MM-DD) nor an RFC 3339 date-time \
                     (e.g. 2025-01-01T00:00:00Z)"
                )
            })
    }
}

impl fmt::Display for ConfigTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
    }
}

impl Serialize for ConfigTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ConfigTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TimeVisitor;
        impl<'de> Visitor<'de> for TimeVisitor {
            type Value = ConfigTime;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a date (YYYY-MM-DD) or an RFC 3339 date-time")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ConfigTime, E> {
                ConfigTime::parse(v).map_err(E::custom)
            }
            // The `toml` crate hands a native date/date-time over as a one-entry map whose
            // value is its text.
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ConfigTime, A::Error> {
                let Some((_key, text)) = map.next_entry::<String, String>()? else {
                    return Err(de::Error::invalid_type(de::Unexpected::Map, &self));
                };
                ConfigTime::parse(&text).map_err(de::Error::custom)
            }
        }
        d.deserialize_any(TimeVisitor)
    }
}

impl PricingConfig {
    /// Checks every entry; errors name the entry (`custom[2]`) and the field.
    pub fn validate(&self) -> Result<(), PricingError> {
        for (i, c) in self.custom.iter().enumerate() {
            let entry = || format!("custom[{i}]");
            let err = |field: &'static str, message: String| PricingError::Config {
                entry: entry(),
                field,
                message,
            };
            if c.model.trim().is_empty() {
                return Err(err(
                    "model",
                    "must not be empty (use \"*\" for every model)".into(),
                ));
            }
            validate_common(
                &entry(),
                c.name.as_deref(),
                c.provider.as_deref(),
                c.from,
                c.to,
            )?;
            if let Some(tier) = &c.service_tier {
                if tier.trim().is_empty() {
                    return Err(err("service_tier", "must not be empty".into()));
                }
            }
            let rates = c.rates();
            if rates.iter().all(|(_, r)| r.is_none()) {
                return Err(err(
                    "input_mtok",
                    "a custom price needs at least one rate (input_mtok, output_mtok, …)".into(),
                ));
            }
            for (key, rate) in rates {
                if rate.is_some_and(|r| r < Decimal::ZERO) {
                    return Err(err(key, "must not be negative".into()));
                }
            }
        }
        for (i, d) in self.discounts.iter().enumerate() {
            let entry = format!("discounts[{i}]");
            if d.model.as_deref().is_some_and(|m| m.trim().is_empty()) {
                return Err(PricingError::Config {
                    entry,
                    field: "model",
                    message: "must not be empty (omit it for every model)".into(),
                });
            }
            validate_common(
                &entry,
                d.name.as_deref(),
                d.provider.as_deref(),
                d.from,
                d.to,
            )?;
            if d.multiplier < Decimal::ZERO {
                return Err(PricingError::Config {
                    entry,
                    field: "multiplier",
                    message: format!("must be at least 0, got {}", d.multiplier),
                });
            }
        }
        Ok(())
    }
}

fn validate_common(
    entry: &str,
    name: Option<&str>,
    provider: Option<&str>,
    from: Option<ConfigTime>,
    to: Option<ConfigTime>,
) -> Result<(), PricingError> {
    let err = |field: &'static str, message: String| PricingError::Config {
        entry: entry.to_owned(),
        field,
        message,
    };
    if let Some(name) = name {
        // The name becomes part of stored price ids, whose separators are `:` and `+`.
        if name.trim().is_empty()
            || name.contains([':', '+'])
            || name.chars().any(char::is_whitespace)
        {
            return Err(err(
                "name",
                format!("{name:?} must be non-empty without spaces, ':' or '+'"),
            ));
        }
    }
    if provider.is_some_and(|p| p.trim().is_empty()) {
        return Err(err(
            "provider",
            "must not be empty (omit it for every provider)".into(),
        ));
    }
    if let (Some(f), Some(t)) = (from, to) {
        if f >= t {
            return Err(err("to", format!("must be after `from` ({f}), got {t}")));
        }
    }
    Ok(())
}

/// A case-insensitive glob where `*` matches any run of characters (including none).
#[derive(Debug, Clone)]
pub(crate) struct Glob {
    /// Literal pieces between stars, lower-cased.
    parts: Vec<String>,
    anchored_start: bool,
    anchored_end: bool,
}

impl Glob {
    pub(crate) fn new(pattern: &str) -> Glob {
        let p = pattern.trim().to_lowercase();
        Glob {
            anchored_start: !p.starts_with('*'),
            anchored_end: !p.ends_with('*'),
            parts: p
                .split('*')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }

    /// `text` must already be lower case.
    pub(crate) fn matches(&self, text: &str) -> bool {
        if self.parts.is_empty() {
            // "*" (or "**") matches everything; an anchored empty pattern cannot be built
            // because validation rejects empty globs.
            return !(self.anchored_start && self.anchored_end) || text.is_empty();
        }
        let mut rest = text;
        let last = self.parts.len() - 1;
        for (i, part) in self.parts.iter().enumerate() {
            if i == 0 && self.anchored_start {
                match rest.strip_prefix(part.as_str()) {
                    Some(r) => rest = r,
                    None => return false,
                }
                if i == last && self.anchored_end {
                    return rest.is_empty();
                }
                continue;
            }
            if i == last && self.anchored_end {
                // The last piece must end the text; leftmost matching of the middle pieces
                // left as much room as possible for it.
                return rest.len() >= part.len() && rest.ends_with(part.as_str());
            }
            match rest.find(part.as_str()) {
                Some(pos) => rest = &rest[pos + part.len()..],
                None => return false,
            }
        }
        true
    }
}

/// What an override is matched against.
pub(crate) struct Subject<'a> {
    /// Event provider, lower-cased and trimmed.
    pub provider_lower: Option<&'a str>,
    /// Canonical catalog provider of the event, if any.
    pub provider_canonical: Option<usize>,
    /// Event model, lower-cased and trimmed.
    pub model_lower: &'a str,
    pub at: DateTime<Utc>,
    /// Normalised service tier (`standard` for the list-price tiers).
    pub tier: &'a str,
    pub project: Option<&'a str>,
    pub api_key_id: Option<&'a str>,
}

/// The filter part shared by custom prices and discounts, compiled.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    provider_lower: Option<String>,
    provider_canonical: Option<usize>,
    model: Option<Glob>,
    project: Option<String>,
    api_key_id: Option<String>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
}

impl Filter {
    fn new(
        provider: Option<&str>,
        canonical: &dyn Fn(&str) -> Option<usize>,
        model: Option<&str>,
        project: Option<&str>,
        api_key_id: Option<&str>,
        from: Option<ConfigTime>,
        to: Option<ConfigTime>,
    ) -> Filter {
        Filter {
            provider_lower: provider.map(|p| p.trim().to_lowercase()),
            provider_canonical: provider.and_then(canonical),
            model: model.map(Glob::new),
            project: project.map(str::to_owned),
            api_key_id: api_key_id.map(str::to_owned),
            from: from.map(|t| t.0),
            to: to.map(|t| t.0),
        }
    }

    fn matches(&self, s: &Subject<'_>) -> bool {
        if let Some(want) = &self.provider_lower {
            // Same provider by canonical id (aliases resolved), or literally the same name for
            // providers the catalog does not know (self-hosted endpoints).
            let same_canonical = self.provider_canonical.is_some()
                && self.provider_canonical == s.provider_canonical;
            if !same_canonical && s.provider_lower != Some(want.as_str()) {
                return false;
            }
        }
        if self
            .model
            .as_ref()
            .is_some_and(|g| !g.matches(s.model_lower))
        {
            return false;
        }
        if self
            .project
            .as_deref()
            .is_some_and(|p| s.project != Some(p))
        {
            return false;
        }
        if self
            .api_key_id
            .as_deref()
            .is_some_and(|k| s.api_key_id != Some(k))
        {
            return false;
        }
        if self.from.is_some_and(|f| s.at < f) || self.to.is_some_and(|t| s.at >= t) {
            return false;
        }
        true
    }
}

/// A custom price ready to match and apply.
#[derive(Debug, Clone)]
pub(crate) struct CompiledCustom {
    /// `custom:<name or index>`.
    pub id: String,
    filter: Filter,
    /// Normalised tier the entry is limited to.
    pub tier: Option<String>,
    pub prices: PriceSet,
}

/// A discount ready to match and apply.
#[derive(Debug, Clone)]
pub(crate) struct CompiledDiscount {
    /// `discount:<name or index>`.
    pub id: String,
    filter: Filter,
    pub multiplier: Decimal,
}

/// All overrides of one config, compiled.
#[derive(Debug, Clone, Default)]
pub(crate) struct Overrides {
    custom: Vec<CompiledCustom>,
    discounts: Vec<CompiledDiscount>,
}

impl Overrides {
    /// Validates and compiles `config`; `canonical` resolves provider names like the matcher.
    pub(crate) fn new(
        config: &PricingConfig,
        canonical: &dyn Fn(&str) -> Option<usize>,
    ) -> Result<Overrides, PricingError> {
        config.validate()?;
        let custom = config
            .custom
            .iter()
            .enumerate()
            .map(|(i, c)| CompiledCustom {
                id: format!("custom:{}", c.name.clone().unwrap_or_else(|| i.to_string())),
                filter: Filter::new(
                    c.provider.as_deref(),
                    canonical,
                    Some(&c.model),
                    c.project.as_deref(),
                    c.api_key_id.as_deref(),
                    c.from,
                    c.to,
                ),
                tier: c.service_tier.as_deref().map(normalise_tier),
                prices: c.price_set(),
            })
            .collect();
        let discounts = config
            .discounts
            .iter()
            .enumerate()
            .map(|(i, d)| CompiledDiscount {
                id: format!(
                    "discount:{}",
                    d.name.clone().unwrap_or_else(|| i.to_string())
                ),
                filter: Filter::new(
                    d.provider.as_deref(),
                    canonical,
                    d.model.as_deref(),
                    d.project.as_deref(),
                    d.api_key_id.as_deref(),
                    d.from,
                    d.to,
                ),
                multiplier: d.multiplier,
            })
            .collect();
        Ok(Overrides { custom, discounts })
    }

    /// Rewrites each custom entry's tier, e.g. to fold list-price tier names into `standard`.
    pub(crate) fn map_tiers(&mut self, f: impl Fn(&str) -> String) {
        for c in &mut self.custom {
            c.tier = c.tier.as_deref().map(&f);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.custom.is_empty() && self.discounts.is_empty()
    }

    /// The custom price for this event: the last matching entry, so later config lines
    /// override earlier ones.
    pub(crate) fn custom_for(&self, s: &Subject<'_>) -> Option<&CompiledCustom> {
        self.custom
            .iter()
            .rev()
            .find(|c| c.tier.as_deref().is_none_or(|t| t == s.tier) && c.filter.matches(s))
    }

    /// Every matching discount, in config order.
    pub(crate) fn discounts_for<'a>(
        &'a self,
        s: &'a Subject<'_>,
    ) -> impl Iterator<Item = &'a CompiledDiscount> + 'a {
        self.discounts.iter().filter(move |d| d.filter.matches(s))
    }
}

/// Normalises a service-tier name: trimmed, lower case, `-` → `_` (`on-demand` = `on_demand`).
pub(crate) fn normalise_tier(tier: &str) -> String {
    tier.trim().to_lowercase().replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_case_insensitively_with_stars_anywhere() {
        let g = |p: &str, t: &str| Glob::new(p).matches(t);
        assert!(g("gpt-4o", "gpt-4o"));
        assert!(!g("gpt-4o", "gpt-4o-mini"));
        assert!(g("GPT-4o*", "gpt-4o-mini"));
        assert!(g("*sonnet*", "claude-sonnet-4-5"));
        assert!(g("claude-*-4-5", "claude-sonnet-4-5"));
        assert!(!g("claude-*-4-5", "claude-sonnet-4-5-20250929"));
        assert!(g("a*a", "aa") && !g("a*a", "a"));
        assert!(g("*", "anything") && g("*", ""));
        assert!(g("*-mini", "o3-mini") && !g("*-mini", "o3-mini-high"));
    }

    #[test]
    fn config_times_accept_dates_and_rfc3339() {
        let d = ConfigTime::parse("2025-06-10").expect("date");
        assert_eq!(d.to_string(), "2025-06-10T00:00:00Z");
        let t = ConfigTime::parse("2025-06-10T12:00:00+02:00").expect("datetime");
        assert_eq!(t.to_string(), "2025-06-10T10:00:00Z");
        assert!(ConfigTime::parse("10/06/2025").is_err());
    }

    #[test]
    fn validation_names_the_entry_and_field() {
        let bad_window = PricingConfig {
            custom: vec![CustomPrice {
                model: "gpt-4o".into(),
                input_mtok: Some(dec!(1)),
                from: ConfigTime::parse("2025-02-01").ok(),
                to: ConfigTime::parse("2025-01-01").ok(),
                ..CustomPrice::default()
            }],
            ..PricingConfig::default()
        };
        let err = bad_window
            .validate()
            .expect_err("to before from")
            .to_string();
        assert!(err.contains("custom[0].to"), "{err}");

        let no_rates = PricingConfig {
            custom: vec![
                CustomPrice {
                    model: "a".into(),
                    input_mtok: Some(dec!(1)),
                    ..CustomPrice::default()
                },
                CustomPrice {
                    model: "b".into(),
                    ..CustomPrice::default()
                },
            ],
            ..PricingConfig::default()
        };
        let err = no_rates.validate().expect_err("no rates").to_string();
        assert!(err.contains("custom[1]"), "{err}");

        let empty_glob = PricingConfig {
            custom: vec![CustomPrice {
                model: " ".into(),
                input_mtok: Some(dec!(1)),
                ..CustomPrice::default()
            }],
            ..PricingConfig::default()
        };
        assert!(empty_glob
            .validate()
            .expect_err("empty")
            .to_string()
            .contains("custom[0].model"));

        let negative = PricingConfig {
            discounts: vec![
                Discount {
                    multiplier: dec!(0.9),
                    ..Discount::default()
                },
                Discount {
                    multiplier: dec!(-0.1),
                    ..Discount::default()
                },
            ],
            ..PricingConfig::default()
        };
        let err = negative.validate().expect_err("negative").to_string();
        assert!(err.contains("discounts[1].multiplier"), "{err}");
    }
}
