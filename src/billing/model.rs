//! The import model: what a parsed billing or usage export is, line by line, before it is
//! written — plus the value readers every parser shares (amounts, currencies, instants).
//!
//! A [`CostLine`] is money the provider billed, in the line's own currency, over a period; a
//! [`UsageLine`] is a volume the provider counted (tokens per bucket, requests) over a period,
//! with no money. Neither is an event and neither is ever added to event totals: they are
//! compared with events by reconciliation. Nothing here does I/O.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use sha2::{Digest, Sha256};

use crate::domain::tokens::TokenBuckets;
use crate::ingest::fields::{self, FieldError};
use crate::pricing::Pricer;

/// Decimal places of stored billing amounts: the scale of `DECIMAL(38, 18)`.
pub const AMOUNT_SCALE: u32 = 18;

/// One line of money from a provider's bill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostLine {
    /// Where the line was in the file (see [`super::Format`] for what a line is per format).
    pub line: usize,
    /// Canonical provider, as events have it (`openai`, `anthropic`, `aws`, …).
    pub provider: String,
    /// The provider's own project, workspace or sub-account, when the export names one.
    pub sub_account: Option<String>,
    pub service: Option<String>,
    pub model: Option<String>,
    pub line_item: Option<String>,
    pub sku: Option<String>,
    /// `[period_start, period_end)`, UTC.
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    /// What was billed, in `currency`, major units; negative for credits and corrections.
    pub amount: Decimal,
    pub list_amount: Option<Decimal>,
    pub effective_amount: Option<Decimal>,
    /// ISO 4217, upper case.
    pub currency: String,
    pub quantity: Option<Decimal>,
    pub unit: Option<String>,
    /// `quantity` in tokens when `unit` is a token unit (`1000 Tokens` scaled by 1,000).
    pub tokens: Option<i64>,
    pub charge_category: Option<String>,
    pub charge_class: Option<String>,
    /// JSON object text.
    pub tags: Option<String>,
    /// JSON object text of format-specific fields.
    pub attributes: Option<String>,
    /// The line as it arrived.
    pub raw: String,
}

/// One line of volume from a provider's usage report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageLine {
    pub line: usize,
    pub provider: String,
    pub sub_account: Option<String>,
    pub model: Option<String>,
    pub api_key_id: Option<String>,
    pub service_tier: Option<String>,
    pub batch: Option<bool>,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    /// Exclusive buckets, as events have them; `reasoning` is never reported by these sources.
    pub tokens: TokenBuckets,
    pub web_search_requests: u64,
    /// `None` when the source has no request count (Anthropic's usage report).
    pub requests: Option<u64>,
    pub tags: Option<String>,
    pub attributes: Option<String>,
    pub raw: String,
}

/// A line that could not be read: kept with its text (dead letter) and reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineReject {
    pub line: usize,
    pub field: String,
    pub reason: String,
    pub raw: String,
}

impl LineReject {
    pub fn new(line: usize, err: FieldError, raw: impl Into<String>) -> Self {
        LineReject {
            line,
            field: err.field,
            reason: err.reason,
            raw: raw.into(),
        }
    }
}

/// A whole export after parsing.
#[derive(Debug, Clone, Default)]
pub struct ParsedImport {
    pub cost_lines: Vec<CostLine>,
    pub usage_lines: Vec<UsageLine>,
    pub rejects: Vec<LineReject>,
    /// Lines left out on purpose (FOCUS rows of non-AI services), neither stored nor rejected.
    pub skipped: usize,
    /// The period the export speaks for: its buckets (JSON reports) or its lines' periods.
    /// Earlier lines of the same source inside it are replaced.
    pub covered: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Lines read, good or bad.
    pub records: usize,
    /// Things the user should know that are not errors (a page saying more pages follow, …).
    pub warnings: Vec<String>,
}

impl ParsedImport {
    /// Widens the covered period to include `[start, end)`.
    pub fn cover(&mut self, start: DateTime<Utc>, end: DateTime<Utc>) {
        self.covered = Some(match self.covered {
            None => (start, end),
            Some((s, e)) => (s.min(start), e.max(end)),
        });
    }

    /// Adds a good cost line and widens the covered period.
    pub fn push_cost(&mut self, line: CostLine) {
        self.cover(line.period_start, line.period_end);
        self.cost_lines.push(line);
    }

    /// Adds a good usage line and widens the covered period.
    pub fn push_usage(&mut self, line: UsageLine) {
        self.cover(line.period_start, line.period_end);
        self.usage_lines.push(line);
    }
}

/// What every parser needs besides the bytes.
pub struct Ctx<'a> {
    /// Canonicalizes provider names exactly as events' providers are.
    pub pricer: &'a Pricer,
    /// Receive time: periods may not start more than a day after it.
    pub now: DateTime<Utc>,
    /// Most lines one import may hold.
    pub max_records: usize,
    /// Called with (bytes or rows done, total) while a long file is read.
    pub progress: Option<&'a (dyn Fn(u64, u64) + Sync)>,
}

impl Ctx<'_> {
    pub fn report(&self, done: u64, total: u64) {
        if let Some(p) = self.progress {
            p(done, total);
        }
    }
}

/// Longest text value of a billing line (descriptions can be long; ingest's 256 is too short).
pub const MAX_TEXT: usize = 2048;

/// An optional text value: trimmed, empty is absent, over [`MAX_TEXT`] is an error.
pub fn text(field: &str, value: Option<&str>) -> Result<Option<String>, FieldError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) if v.chars().count() > MAX_TEXT => Err(FieldError::new(
            field,
            format!("longer than {MAX_TEXT} characters"),
        )),
        Some(v) => Ok(Some(v.to_string())),
    }
}

/// A required text value.
pub fn required_text(field: &str, value: Option<&str>) -> Result<String, FieldError> {
    text(field, value)?.ok_or_else(|| FieldError::new(field, "is required"))
}

/// The canonical provider id of a provider name: the same canonicalization events get, so
/// `OpenAI` billing lines meet `openai` events; unknown names are kept lower-cased.
pub fn provider(pricer: &Pricer, name: &str) -> String {
    let slug = name.trim().to_ascii_lowercase();
    pricer.canonical_provider(&slug).unwrap_or(slug)
}

/// An amount of money from its exact text: any sign (credits and corrections are negative),
/// rounded half-even to [`AMOUNT_SCALE`] places, less than 10^20 in magnitude.
pub fn amount(field: &str, raw: &str) -> Result<Decimal, FieldError> {
    let value = fields::parse_decimal(raw).ok_or_else(|| {
        FieldError::new(field, format!("{:?} is not a decimal number", raw.trim()))
    })?;
    let rounded = value.round_dp_with_strategy(AMOUNT_SCALE, RoundingStrategy::MidpointNearestEven);
    // 10^20: the integer digits of DECIMAL(38, 18).
    let limit = Decimal::from_i128_with_scale(100_000_000_000_000_000_000, 0);
    if rounded.abs() >= limit {
        return Err(FieldError::new(
            field,
            format!("{value} is too large (at most 20 digits before the decimal point)"),
        ));
    }
    Ok(rounded.normalize())
}

/// A non-negative quantity (tokens, hours, requests) from its exact text.
pub fn quantity(field: &str, raw: &str) -> Result<Decimal, FieldError> {
    amount(field, raw)
}

/// A three-letter currency code, upper-cased (OpenAI sends `usd`).
pub fn currency(field: &str, raw: Option<&str>) -> Result<String, FieldError> {
    match raw.map(str::trim) {
        None | Some("") => Err(FieldError::new(field, "is required")),
        Some(code) if code.len() == 3 && code.chars().all(|c| c.is_ascii_alphabetic()) => {
            Ok(code.to_ascii_uppercase())
        }
        Some(code) => Err(FieldError::new(
            field,
            format!("{code:?} is not a three-letter ISO 4217 currency code"),
        )),
    }
}

/// A non-negative count.
pub fn count(field: &str, raw: &str) -> Result<u64, FieldError> {
    let t = raw.trim();
    t.parse::<u64>()
        .map_err(|_| FieldError::new(field, format!("{t:?} is not a non-negative whole number")))
}

/// An instant in any of the encodings billing exports use: RFC 3339 (`…Z`, `…+00:00`), the
/// same with a space and a short offset (`2026-01-01 00:00:00+00`, as DuckDB writes it), a
/// timestamp without an offset (read as UTC: every source here is UTC), a date (UTC midnight),
/// or Unix seconds (OpenAI's buckets).
pub fn instant(field: &str, raw: &str) -> Result<DateTime<Utc>, FieldError> {
    let t = raw.trim();
    let bad = || {
        FieldError::new(
            field,
            format!("{t:?} is not a timestamp (RFC 3339 such as 2026-01-01T00:00:00Z, a date, or Unix seconds)"),
        )
    };
    if t.is_empty() {
        return Err(FieldError::new(field, "is required"));
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        let secs: i64 = t.parse().map_err(|_| bad())?;
        // Milliseconds read as seconds would land tens of thousands of years ahead.
        if secs > 100_000_000_000 {
            return Err(FieldError::new(
                field,
                format!("{t} is not Unix seconds (milliseconds?)"),
            ));
        }
        return Utc.timestamp_opt(secs, 0).single().ok_or_else(bad);
    }
    if let Ok(ts) = DateTime::parse_from_rfc3339(t) {
        return Ok(ts.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(ts) = DateTime::parse_from_str(t, fmt) {
            return Ok(ts.with_timezone(&Utc));
        }
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(ts) = NaiveDateTime::parse_from_str(t, fmt) {
            return Ok(ts.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).ok_or_else(bad)?.and_utc());
    }
    Err(bad())
}

/// Checks a line's period: it ends after it starts and does not start in the future.
pub fn period(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    start_field: &str,
    end_field: &str,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), FieldError> {
    if end <= start {
        return Err(FieldError::new(
            end_field,
            format!(
                "{} is not after {start_field} ({}); periods end after they start",
                end.to_rfc3339(),
                start.to_rfc3339()
            ),
        ));
    }
    fields::check_not_future(start_field, start, now)?;
    Ok((start, end))
}

/// Tokens in `quantity` when `unit` counts tokens (`tokens`, `Tokens`, `1000 Tokens`,
/// `1000_tokens`, `1M tokens`); `None` for other units.
pub fn token_quantity(quantity: Option<Decimal>, unit: Option<&str>) -> Option<i64> {
    let q = quantity?;
    let u = unit?.trim().to_ascii_lowercase().replace(['_', '-'], " ");
    let (scale, rest) = match u.split_once(' ') {
        Some((n, rest)) => {
            let n = n.trim();
            let scale = match n {
                "1k" => Decimal::from(1_000),
                "1m" => Decimal::from(1_000_000),
                _ => n.parse::<Decimal>().ok()?,
            };
            (scale, rest.trim())
        }
        None => (Decimal::ONE, u.as_str()),
    };
    if rest != "tokens" && rest != "token" {
        return None;
    }
    (q.checked_mul(scale)?).round().to_i64()
}

/// Builds a JSON object text from key/value pairs, leaving out absent values; `None` when
/// nothing is left.
pub fn json_object<'a>(
    pairs: impl IntoIterator<Item = (&'a str, Option<serde_json::Value>)>,
) -> Option<String> {
    let map: serde_json::Map<String, serde_json::Value> = pairs
        .into_iter()
        .filter_map(|(k, v)| v.filter(|v| !v.is_null()).map(|v| (k.to_string(), v)))
        .collect();
    (!map.is_empty()).then(|| serde_json::Value::Object(map).to_string())
}

/// A hex SHA-256 over parts separated so that no two different part lists hash alike.
fn digest(parts: &[String]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "\u{0}".to_string(), ToString::to_string)
}

impl CostLine {
    /// Identical content ⇔ identical fingerprint: what lets a restated export tell unchanged
    /// lines from changed ones. Position and raw text do not count.
    pub fn fingerprint(&self, source_format: &str) -> String {
        digest(&[
            source_format.to_string(),
            self.provider.clone(),
            opt(&self.sub_account),
            opt(&self.service),
            opt(&self.model),
            opt(&self.line_item),
            opt(&self.sku),
            self.period_start.timestamp_micros().to_string(),
            self.period_end.timestamp_micros().to_string(),
            self.amount.normalize().to_string(),
            opt(&self.list_amount.map(|d| d.normalize())),
            opt(&self.effective_amount.map(|d| d.normalize())),
            self.currency.clone(),
            opt(&self.quantity.map(|d| d.normalize())),
            opt(&self.unit),
            opt(&self.charge_category),
            opt(&self.charge_class),
            opt(&self.tags),
            opt(&self.attributes),
        ])
    }
}

impl UsageLine {
    /// See [`CostLine::fingerprint`].
    pub fn fingerprint(&self, source_format: &str) -> String {
        let t = &self.tokens;
        digest(&[
            source_format.to_string(),
            self.provider.clone(),
            opt(&self.sub_account),
            opt(&self.model),
            opt(&self.api_key_id),
            opt(&self.service_tier),
            opt(&self.batch),
            self.period_start.timestamp_micros().to_string(),
            self.period_end.timestamp_micros().to_string(),
            format!(
                "{} {} {} {} {} {} {} {} {}",
                t.input_uncached,
                t.cache_read,
                t.cache_write_5m,
                t.cache_write_1h,
                t.output,
                t.audio_in,
                t.audio_out,
                t.image_in,
                t.image_out
            ),
            self.web_search_requests.to_string(),
            opt(&self.requests),
            opt(&self.tags),
            opt(&self.attributes),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_keep_every_digit_and_any_sign() {
        assert_eq!(amount("a", "1.734").unwrap(), dec!(1.734));
        assert_eq!(amount("a", "-0.25").unwrap(), dec!(-0.25));
        assert_eq!(amount("a", "1e-3").unwrap(), dec!(0.001));
        // 19 decimals: half-even at the 18th.
        assert_eq!(
            amount("a", "0.0000000000000000015").unwrap(),
            dec!(0.000000000000000002)
        );
        assert_eq!(
            amount("a", "0.0000000000000000025").unwrap(),
            dec!(0.000000000000000002)
        );
        assert!(amount("a", "100000000000000000000").is_err());
        assert!(amount("a", "12,50").is_err());
        assert!(amount("a", "").is_err());
    }

    #[test]
    fn instants_in_every_encoding() {
        let want: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        for raw in [
            "2026-01-01T00:00:00Z",
            "2026-01-01T01:00:00+01:00",
            "2026-01-01 00:00:00+00",
            "2026-01-01 00:00:00",
            "2026-01-01T00:00:00.000",
            "2026-01-01",
            "1767225600",
        ] {
            assert_eq!(instant("t", raw).unwrap(), want, "{raw}");
        }
        assert!(instant("t", "1767225600000").is_err());
        assert!(instant("t", "yesterday").is_err());
    }

    #[test]
    fn token_units() {
        let q = Some(dec!(4335));
        assert_eq!(token_quantity(q, Some("1000 Tokens")), Some(4_335_000));
        assert_eq!(token_quantity(q, Some("1000_tokens")), Some(4_335_000));
        assert_eq!(token_quantity(q, Some("Tokens")), Some(4335));
        assert_eq!(token_quantity(q, Some("1M tokens")), Some(4_335_000_000));
        assert_eq!(token_quantity(q, Some("Hours")), None);
        assert_eq!(token_quantity(None, Some("Tokens")), None);
    }

    #[test]
    fn currencies_are_upper_case_codes() {
        assert_eq!(currency("c", Some("usd")).unwrap(), "USD");
        assert!(currency("c", Some("dollars")).is_err());
        assert!(currency("c", None).is_err());
    }
}
