//! Generator: genai-prices v2 `data.json` + Tally's `supplement.json` → Tally's catalog.
//!
//! Owns the translation of upstream conventions into Tally's rows: a price list becomes rows
//! with `effective_from`/`effective_to` dates and daily windows, numbers are read from their
//! exact JSON text, and the supplement (provider aliases, model hints, service-tier multipliers)
//! is merged in. It keeps what pricing and tracing need and drops descriptions and extractors.
//! It is deterministic (same input → byte-identical `catalog.json`) and strict: a shape it does
//! not understand is an error naming the upstream path, never a guess. Used by the
//! `tally prices generate --from DIR --out FILE` command and by the drift test below.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{NaiveDate, NaiveTime};
use serde::Deserialize;
use serde_json::Value;

use super::catalog::{
    Catalog, MatchRule, Model, Price, PriceRow, PriceSet, Provider, ProviderHint, ServiceTiers,
    SourceInfo, Tier, TimeOfDay, CATALOG_FORMAT,
};
use super::decimal::parse_exact;
use super::matching::Matcher;
use super::PricingError;

/// Tally's hand-written additions, kept beside the generator so a regeneration always merges
/// the same facts.
pub const SUPPLEMENT_JSON: &str = include_str!("supplement.json");

/// Name recorded as the catalog's source.
pub const GENAI_PRICES_NAME: &str = "pydantic/genai-prices";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Supplement {
    /// For the people editing the file; not carried into the catalog.
    #[serde(default, rename = "comment")]
    _comment: Option<String>,
    provider_aliases: BTreeMap<String, String>,
    model_provider_hints: Vec<ProviderHint>,
    service_tiers: ServiceTiers,
}

impl SourceInfo {
    /// Parses the reference directory's `SOURCE` file (`<commit> <date> <path>`) into the
    /// source of a genai-prices catalog (MIT licensed; [`check_license`] verifies the text).
    pub fn from_source_file(text: &str) -> Result<SourceInfo, PricingError> {
        let bad = |message: String| PricingError::Upstream {
            path: "SOURCE".into(),
            message,
        };
        let mut parts = text.split_whitespace();
        let commit = parts.next().unwrap_or_default();
        if commit.len() < 7 || !commit.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad(format!("expected a commit hash first, got {commit:?}")));
        }
        let date_text = parts.next().unwrap_or_default();
        let date = NaiveDate::parse_from_str(date_text, "%Y-%m-%d").map_err(|e| {
            bad(format!(
                "expected a YYYY-MM-DD date second, got {date_text:?}: {e}"
            ))
        })?;
        Ok(SourceInfo {
            name: GENAI_PRICES_NAME.into(),
            commit: commit.to_lowercase(),
            date,
            path: parts.next().map(str::to_owned),
            license: "MIT".into(),
        })
    }
}

/// Fails unless the upstream `LICENSE` text is still the MIT licence the catalog records.
pub fn check_license(license_text: &str) -> Result<(), PricingError> {
    if license_text.contains("MIT License") {
        Ok(())
    } else {
        Err(PricingError::Upstream {
            path: "LICENSE".into(),
            message: "the upstream licence is no longer MIT; review it before regenerating".into(),
        })
    }
}

/// The canonical `catalog.json` text of a catalog (see [`Catalog::to_json`]).
pub fn catalog_to_json(catalog: &Catalog) -> Result<String, PricingError> {
    catalog.to_json()
}

/// Reads `data.json`, `SOURCE` and `LICENSE` from a copy of genai-prices and generates.
pub fn generate_from_dir(dir: &Path) -> Result<Catalog, PricingError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|source| PricingError::Io {
            path: path.display().to_string(),
            source,
        })
    };
    check_license(&read("LICENSE")?)?;
    let source = SourceInfo::from_source_file(&read("SOURCE")?)?;
    generate_from_genai_prices(&read("data.json")?, source)
}

/// Converts genai-prices v2 data into a validated Tally catalog.
pub fn generate_from_genai_prices(
    data_json: &str,
    source: SourceInfo,
) -> Result<Catalog, PricingError> {
    // serde_json's `arbitrary_precision` keeps each number's text, so no price passes
    // through a float on the way to a Decimal.
    let data: Value = serde_json::from_str(data_json).map_err(|e| PricingError::Upstream {
        path: "data.json".into(),
        message: e.to_string(),
    })?;
    let supplement: Supplement =
        serde_json::from_str(SUPPLEMENT_JSON).map_err(|e| PricingError::Upstream {
            path: "supplement.json".into(),
            message: e.to_string(),
        })?;

    let providers = as_array(&data, "$")?
        .iter()
        .enumerate()
        .map(|(i, p)| convert_provider(p, &format!("$[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;

    let catalog = Catalog {
        format: CATALOG_FORMAT,
        source,
        provider_aliases: supplement.provider_aliases,
        model_provider_hints: supplement.model_provider_hints,
        service_tiers: supplement.service_tiers,
        providers,
    };
    catalog.validate()?;
    // Compiling proves every regex is valid before the file is written.
    Matcher::new(&catalog)?;
    Ok(catalog)
}

fn upstream(path: &str, message: impl Into<String>) -> PricingError {
    PricingError::Upstream {
        path: path.to_owned(),
        message: message.into(),
    }
}

fn as_array<'v>(v: &'v Value, path: &str) -> Result<&'v Vec<Value>, PricingError> {
    v.as_array()
        .ok_or_else(|| upstream(path, "expected an array"))
}

fn str_field<'v>(obj: &'v Value, key: &str, path: &str) -> Result<&'v str, PricingError> {
    obj.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| upstream(path, format!("expected a string `{key}`")))
}

fn opt_str_field(obj: &Value, key: &str, path: &str) -> Result<Option<String>, PricingError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(upstream(path, format!("`{key}` must be a string"))),
    }
}

fn str_list(obj: &Value, key: &str, path: &str) -> Result<Vec<String>, PricingError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(v) => as_array(v, &format!("{path}.{key}"))?
            .iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| upstream(&format!("{path}.{key}"), "expected strings"))
            })
            .collect(),
    }
}

fn rule(v: Option<&Value>, path: &str) -> Result<Option<MatchRule>, PricingError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => MatchRule::deserialize(v)
            .map(Some)
            .map_err(|e| upstream(path, format!("unsupported match rule: {e}"))),
    }
}

fn convert_provider(p: &Value, path: &str) -> Result<Provider, PricingError> {
    let id = str_field(p, "id", path)?;
    let path = format!("{path}({id})");
    let models = match p.get("models") {
        None => Vec::new(),
        Some(ms) => as_array(ms, &format!("{path}.models"))?
            .iter()
            .enumerate()
            .map(|(i, m)| convert_model(m, &format!("{path}.models[{i}]")))
            .collect::<Result<_, _>>()?,
    };
    Ok(Provider {
        id: id.to_owned(),
        name: str_field(p, "name", &path)?.to_owned(),
        pricing_urls: str_list(p, "pricing_urls", &path)?,
        provider_match: rule(p.get("provider_match"), &format!("{path}.provider_match"))?,
        model_match: rule(p.get("model_match"), &format!("{path}.model_match"))?,
        fallback_model_providers: str_list(p, "fallback_model_providers", &path)?,
        models,
    })
}

fn convert_model(m: &Value, path: &str) -> Result<Model, PricingError> {
    let id = str_field(m, "id", path)?;
    let path = format!("{path}({id})");
    let rule = rule(m.get("match"), &format!("{path}.match"))?
        .ok_or_else(|| upstream(&path, "missing `match`"))?;
    let prices = m
        .get("prices")
        .ok_or_else(|| upstream(&path, "missing `prices`"))?;
    Ok(Model {
        id: id.to_owned(),
        name: opt_str_field(m, "name", &path)?,
        rule,
        rows: convert_rows(prices, &format!("{path}.prices"))?,
    })
}

/// The condition of one upstream list entry.
enum Constraint {
    Always,
    From(NaiveDate),
    Daily(TimeOfDay),
}

fn convert_rows(prices: &Value, path: &str) -> Result<Vec<PriceRow>, PricingError> {
    let Some(list) = prices.as_array() else {
        return Ok(vec![PriceRow {
            index: 0,
            effective_from: None,
            effective_to: None,
            time_of_day: None,
            prices: convert_price_set(prices, path)?,
        }]);
    };
    if list.is_empty() {
        return Err(upstream(path, "empty price list"));
    }
    let mut entries = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        let epath = format!("{path}[{i}]");
        let constraint =
            convert_constraint(entry.get("constraint"), &format!("{epath}.constraint"))?;
        let set = convert_price_set(
            entry
                .get("prices")
                .ok_or_else(|| upstream(&epath, "missing `prices`"))?,
            &format!("{epath}.prices"),
        )?;
        entries.push((constraint, set));
    }

    // The reference scans the list from the end and takes the first entry whose constraint
    // holds, else the first entry. Tally states that as explicit dates: a dated entry is
    // superseded on the first later entry's date. Shapes outside that model are rejected so a
    // regeneration cannot silently change meaning.
    let dates: Vec<Option<NaiveDate>> = entries
        .iter()
        .map(|(c, _)| match c {
            Constraint::From(d) => Some(*d),
            _ => None,
        })
        .collect();
    let mut previous: Option<NaiveDate> = None;
    for (i, d) in dates.iter().enumerate().skip(1) {
        if let Some(d) = d {
            if previous.is_some_and(|p| *d <= p) {
                return Err(upstream(
                    &format!("{path}[{i}]"),
                    "start dates are not increasing",
                ));
            }
            previous = Some(*d);
        }
    }
    let mut rows = Vec::with_capacity(entries.len());
    for (i, (constraint, set)) in entries.into_iter().enumerate() {
        let index = u32::try_from(i).map_err(|_| upstream(path, "price list too long"))?;
        let effective_to = dates[i + 1..].iter().flatten().copied().min();
        let (effective_from, time_of_day) = match constraint {
            // The first entry is the reference's fallback when nothing else holds, so it
            // applies from the beginning of time whatever its own date says.
            Constraint::Always | Constraint::From(_) if i == 0 => (None, None),
            Constraint::Daily(_) if i == 0 => {
                return Err(upstream(
                    &format!("{path}[0]"),
                    "a time-of-day window on the first entry is not supported",
                ))
            }
            Constraint::Always => {
                return Err(upstream(
                    &format!("{path}[{i}]"),
                    "an unconstrained entry after the first hides every earlier one",
                ))
            }
            Constraint::From(d) => (Some(d), None),
            Constraint::Daily(w) => (None, Some(w)),
        };
        rows.push(PriceRow {
            index,
            effective_from,
            effective_to,
            time_of_day,
            prices: set,
        });
    }
    Ok(rows)
}

fn convert_constraint(c: Option<&Value>, path: &str) -> Result<Constraint, PricingError> {
    let Some(c) = c.filter(|c| !c.is_null()) else {
        return Ok(Constraint::Always);
    };
    let obj = c
        .as_object()
        .ok_or_else(|| upstream(path, "expected an object"))?;
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    match keys.as_slice() {
        ["start_date"] => {
            let text = str_field(c, "start_date", path)?;
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map(Constraint::From)
                .map_err(|e| upstream(path, format!("bad start_date {text:?}: {e}")))
        }
        ["end_time", "start_time"] => Ok(Constraint::Daily(TimeOfDay {
            start: utc_time(str_field(c, "start_time", path)?, path)?,
            end: utc_time(str_field(c, "end_time", path)?, path)?,
        })),
        _ => Err(upstream(
            path,
            format!("unsupported constraint keys {keys:?}"),
        )),
    }
}

/// Parses `HH:MM[:SS[.f]]` with a `Z` or `+00:00` suffix (or none, read as UTC).
fn utc_time(text: &str, path: &str) -> Result<NaiveTime, PricingError> {
    let t = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix("+00:00"))
        .unwrap_or(text);
    if t.contains(['+', '-']) {
        return Err(upstream(path, format!("time {text:?} is not in UTC")));
    }
    NaiveTime::parse_from_str(t, "%H:%M:%S%.f")
        .or_else(|_| NaiveTime::parse_from_str(t, "%H:%M"))
        .map_err(|e| upstream(path, format!("bad time {text:?}: {e}")))
}

fn convert_price_set(v: &Value, path: &str) -> Result<PriceSet, PricingError> {
    let obj = v
        .as_object()
        .ok_or_else(|| upstream(path, "expected an object of prices"))?;
    let mut set = PriceSet::default();
    // serde_json's map is sorted, and PriceSet serialises in its own fixed key order, so the
    // output does not depend on upstream key order.
    for (key, value) in obj {
        set.insert(key, convert_price(value, &format!("{path}.{key}"))?);
    }
    Ok(set)
}

fn exact_number(v: &Value, path: &str) -> Result<rust_decimal::Decimal, PricingError> {
    match v {
        // With `arbitrary_precision`, `to_string` is the number's exact text.
        Value::Number(n) => parse_exact(&n.to_string()).map_err(|e| upstream(path, e)),
        _ => Err(upstream(path, "expected a number")),
    }
}

fn convert_price(v: &Value, path: &str) -> Result<Price, PricingError> {
    if v.is_number() {
        return exact_number(v, path).map(Price::Flat);
    }
    let base = exact_number(
        v.get("base")
            .ok_or_else(|| upstream(path, "expected a number or {base, tiers}"))?,
        &format!("{path}.base"),
    )?;
    let tiers = as_array(
        v.get("tiers")
            .ok_or_else(|| upstream(path, "missing `tiers`"))?,
        &format!("{path}.tiers"),
    )?
    .iter()
    .enumerate()
    .map(|(i, t)| {
        let tpath = format!("{path}.tiers[{i}]");
        let start = t
            .get("start")
            .and_then(Value::as_u64)
            .ok_or_else(|| upstream(&tpath, "`start` must be a non-negative integer"))?;
        let price = exact_number(
            t.get("price")
                .ok_or_else(|| upstream(&tpath, "missing `price`"))?,
            &format!("{tpath}.price"),
        )?;
        Ok(Tier { start, price })
    })
    .collect::<Result<Vec<_>, PricingError>>()?;
    if tiers.windows(2).any(|w| w[1].start <= w[0].start) {
        return Err(upstream(path, "tiers are not in increasing `start` order"));
    }
    Ok(Price::Tiered { base, tiers })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::catalog::BUILTIN_CATALOG_JSON;
    use std::path::PathBuf;

    /// The vendored genai-prices copy (`third_party/genai-prices`), or
    /// `TALLY_GENAI_PRICES_DIR`.
    fn reference_dir() -> PathBuf {
        std::env::var_os("TALLY_GENAI_PRICES_DIR").map_or_else(
            || Path::new(".").join("third_party/genai-prices"),
            PathBuf::from,
        )
    }

    fn source() -> SourceInfo {
        SourceInfo {
            name: GENAI_PRICES_NAME.into(),
            commit: "0123456789abcdef".into(),
            date: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or_default(),
            path: None,
            license: "MIT".into(),
        }
    }

    /// The committed catalog.json must be exactly what the generator produces from the
    /// reference data, so the embedded prices can never drift from their source. Run with
    /// `TALLY_REGENERATE_CATALOG=1` to rewrite the file after updating the reference copy or
    /// the supplement.
    #[test]
    fn committed_catalog_matches_its_generator() {
        let dir = reference_dir();
        let generated = generate_from_dir(&dir)
            .and_then(|c| c.to_json())
            .expect("generate from the reference copy");
        if std::env::var_os("TALLY_REGENERATE_CATALOG").is_some() {
            let out = Path::new(".").join("src/pricing/catalog.json");
            std::fs::write(&out, &generated).expect("write catalog.json");
            println!("rewrote {}", out.display());
            return;
        }
        assert!(
            generated == BUILTIN_CATALOG_JSON,
            "src/pricing/catalog.json differs from what the generator makes of {}; \
             rerun with TALLY_REGENERATE_CATALOG=1 and review the diff",
            dir.display()
        );
    }

    #[test]
    fn generation_is_deterministic_and_round_trips() {
        let dir = reference_dir();
        let a = generate_from_dir(&dir).expect("generate");
        let b = generate_from_dir(&dir).expect("generate");
        let json = a.to_json().expect("json");
        assert_eq!(json, b.to_json().expect("json"));
        let parsed = Catalog::from_json(&json).expect("parse back");
        assert_eq!(parsed, a);
        assert_eq!(a.source.price_id_prefix(), "genai-prices@47df840");
        assert_eq!(a.providers.len(), 36);
        assert_eq!(
            a.providers.iter().map(|p| p.models.len()).sum::<usize>(),
            1466
        );
    }

    #[test]
    fn dated_and_daily_lists_become_explicit_rows() {
        let data: Value = serde_json::from_str(
            r#"{"id":"p","name":"P","api_pattern":"x","models":[
            {"id":"m","match":{"equals":"m"},"prices":[
                {"prices":{"input_mtok":10,"output_mtok":40}},
                {"constraint":{"start_date":"2025-06-10"},"prices":{"input_mtok":2,"output_mtok":8}},
                {"constraint":{"start_date":"2026-01-01"},"prices":{"input_mtok":1.000,"output_mtok":4}}]},
            {"id":"d","match":{"equals":"d"},"prices":[
                {"prices":{"input_mtok":0.135}},
                {"constraint":{"start_time":"00:30:00Z","end_time":"16:30:00Z"},"prices":{"input_mtok":0.27}}]}]}"#,
        )
        .expect("json");
        let provider = convert_provider(&data, "$[0]").expect("convert");
        let m = &provider.models[0];
        let d = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
        assert_eq!(
            (m.rows[0].effective_from, m.rows[0].effective_to),
            (None, d("2025-06-10"))
        );
        assert_eq!(
            (m.rows[1].effective_from, m.rows[1].effective_to),
            (d("2025-06-10"), d("2026-01-01"))
        );
        assert_eq!(
            (m.rows[2].effective_from, m.rows[2].effective_to),
            (d("2026-01-01"), None)
        );
        // Exact text is kept, trailing zero included.
        assert_eq!(m.rows[2].prices.input_mtok, Some(Price::Flat(dec!(1.000))));
        let daily = &provider.models[1].rows[1];
        assert_eq!(
            daily.time_of_day.map(|w| w.start),
            NaiveTime::from_hms_opt(0, 30, 0)
        );
        assert_eq!(
            daily.time_of_day.map(|w| w.end),
            NaiveTime::from_hms_opt(16, 30, 0)
        );
    }

    #[test]
    fn unsupported_shapes_are_errors_naming_the_path() {
        let data = r#"[{"id":"p","name":"P","api_pattern":"x","models":[
            {"id":"m","match":{"equals":"m"},"prices":[
                {"prices":{"input_mtok":1}},
                {"constraint":{"weekday":"sat"},"prices":{"input_mtok":2}}]}]}]"#;
        let err = generate_from_genai_prices(data, source()).expect_err("unknown constraint");
        assert!(
            err.to_string()
                .contains("$[0](p).models[0](m).prices[1].constraint"),
            "{err}"
        );

        let data = r#"[{"id":"p","name":"P","api_pattern":"x","models":[
            {"id":"m","match":{"fuzzy":"m"},"prices":{"input_mtok":1}}]}]"#;
        assert!(generate_from_genai_prices(data, source()).is_err());
    }

    #[test]
    fn source_file_is_parsed_and_licence_checked() {
        let s = SourceInfo::from_source_file(
            "47df840a5ab10bbcffb8e5ac01b9899032245d1b 2026-08-21 prices/new_data/v2/data.json\n",
        )
        .expect("parse");
        assert_eq!(s.price_id_prefix(), "genai-prices@47df840");
        assert_eq!(s.path.as_deref(), Some("prices/new_data/v2/data.json"));
        assert!(SourceInfo::from_source_file("2026-08-21 47df840").is_err());
        assert!(check_license("The MIT License (MIT)\n").is_ok());
        assert!(check_license("Apache License").is_err());
    }
}
