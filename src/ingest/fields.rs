//! Field-level readers shared by every mapper: strings, counts, timestamps, money.
//!
//! Each helper either returns the value Tally stores or a [`FieldError`] naming the field path and
//! what was wrong with it, in words a user can act on. None of them substitutes a default for a
//! bad value: a negative count or an unparsable cost is an error, never a zero.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, Duration, Utc};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde_json::value::RawValue;

use crate::domain::money::{max_event_cost, round_cost};

/// Why one record was rejected: the field path (`usage.input_tokens`, `tags[2]`, `(record)`)
/// and the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Turns a serde error with its path into a field error. serde reports unknown fields at
    /// the parent's path, so the field's own name is taken from the message.
    pub fn from_serde(err: serde_path_to_error::Error<serde_json::Error>) -> Self {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let message = strip_position(&inner.to_string());
        if let Some(rest) = message.strip_prefix("unknown field `") {
            if let Some((name, _)) = rest.split_once('`') {
                // serde_path_to_error may already end the path with the unknown field.
                let field = if path == "." || path == name {
                    name.to_string()
                } else if path.ends_with(&format!(".{name}")) {
                    path
                } else {
                    format!("{path}.{name}")
                };
                return Self::new(field, format!("unknown field; {message}"));
            }
        }
        let field = if path == "." {
            "(record)".to_string()
        } else {
            path
        };
        Self::new(field, message)
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// serde_json appends "at line 1 column 42"; for one record the position adds noise, the field
/// path already says where.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(pos) => message[..pos].to_string(),
        None => message.to_string(),
    }
}

/// Size limits on free-form values (the hostile-input defences).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_str_len: usize,
    pub max_tags: usize,
    pub max_metadata_bytes: usize,
    pub max_metadata_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_str_len: 256,
            max_tags: 64,
            max_metadata_bytes: 16 * 1024,
            max_metadata_depth: 16,
        }
    }
}

/// An optional string: empty means absent; longer than the limit is an error.
pub fn opt_str(
    field: &str,
    value: Option<Cow<'_, str>>,
    lim: &Limits,
) -> Result<Option<String>, FieldError> {
    match value {
        None => Ok(None),
        Some(v) if v.trim().is_empty() => Ok(None),
        Some(v) => {
            if v.chars().count() > lim.max_str_len {
                return Err(FieldError::new(
                    field,
                    format!(
                        "longer than {} characters ({})",
                        lim.max_str_len,
                        v.chars().count()
                    ),
                ));
            }
            Ok(Some(v.into_owned()))
        }
    }
}

/// A required string.
pub fn required_str(
    field: &str,
    value: Option<Cow<'_, str>>,
    lim: &Limits,
) -> Result<String, FieldError> {
    opt_str(field, value, lim)?.ok_or_else(|| FieldError::new(field, "is required"))
}

/// A lower-case identifier such as a provider, route or operation name.
pub fn opt_slug(
    field: &str,
    value: Option<Cow<'_, str>>,
    lim: &Limits,
) -> Result<Option<String>, FieldError> {
    Ok(opt_str(field, value, lim)?.map(|s| s.trim().to_ascii_lowercase()))
}

/// Tags: non-empty strings, duplicates folded, at most `max_tags`.
pub fn tags(
    field: &str,
    value: Option<Vec<Cow<'_, str>>>,
    lim: &Limits,
) -> Result<Vec<String>, FieldError> {
    let Some(items) = value else {
        return Ok(Vec::new());
    };
    if items.len() > lim.max_tags {
        return Err(FieldError::new(
            field,
            format!("more than {} tags ({})", lim.max_tags, items.len()),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for (i, tag) in items.into_iter().enumerate() {
        let name = format!("{field}[{i}]");
        let Some(tag) = opt_str(&name, Some(tag), lim)? else {
            return Err(FieldError::new(name, "is empty"));
        };
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    Ok(out)
}

/// An RFC 3339 timestamp with an offset, not more than a day ahead of `now`.
pub fn timestamp(field: &str, raw: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, FieldError> {
    let ts = DateTime::parse_from_rfc3339(raw.trim())
        .map_err(|e| {
            FieldError::new(
                field,
                format!("{raw:?} is not an RFC 3339 timestamp with an offset, e.g. 2026-11-21T08:00:00Z ({e})"),
            )
        })?
        .with_timezone(&Utc);
    check_not_future(field, ts, now)
}

/// Rejects timestamps more than a day in the future (a clock or unit error, e.g. milliseconds
/// read as seconds), which would otherwise sit in every future budget period.
pub fn check_not_future(
    field: &str,
    ts: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, FieldError> {
    if ts > now + Duration::hours(24) {
        return Err(FieldError::new(
            field,
            format!("{} is more than 24 hours in the future", ts.to_rfc3339()),
        ));
    }
    Ok(ts)
}

/// Parses decimal text exactly (plain or scientific notation), never through a float.
pub fn parse_decimal(text: &str) -> Option<Decimal> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    if t.contains(['e', 'E']) {
        Decimal::from_scientific(t).ok()
    } else {
        t.parse::<Decimal>().ok()
    }
}

/// A reported cost, from a JSON string or number, in major units: non-negative, within the
/// stored range, rounded half-even to the stored scale.
pub fn cost(field: &str, raw: &RawValue) -> Result<Decimal, FieldError> {
    let text = raw.get();
    let inner = if let Some(s) = text.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        s
    } else if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        text
    } else {
        return Err(FieldError::new(
            field,
            format!("expected a decimal string or a number, got {text}"),
        ));
    };
    let value = parse_decimal(inner)
        .ok_or_else(|| FieldError::new(field, format!("{inner:?} is not a decimal number")))?;
    money(field, value)
}

/// Checks and rounds an amount already parsed.
pub fn money(field: &str, value: Decimal) -> Result<Decimal, FieldError> {
    if value.is_sign_negative() && !value.is_zero() {
        return Err(FieldError::new(
            field,
            format!("must not be negative ({value})"),
        ));
    }
    let rounded = round_cost(value);
    if rounded > max_event_cost() {
        return Err(FieldError::new(
            field,
            format!(
                "{value} exceeds the largest per-event cost {}",
                max_event_cost()
            ),
        ));
    }
    Ok(rounded)
}

/// ISO 4217 code; defaults to USD when a cost is present.
pub fn currency(
    field: &str,
    value: Option<Cow<'_, str>>,
    has_cost: bool,
) -> Result<Option<String>, FieldError> {
    match value.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(has_cost.then(|| "USD".to_string())),
        Some(code) if code.len() == 3 && code.chars().all(|c| c.is_ascii_alphabetic()) => {
            Ok(Some(code.to_ascii_uppercase()))
        }
        Some(code) => Err(FieldError::new(
            field,
            format!("{code:?} is not a 3-letter ISO 4217 code"),
        )),
    }
}

/// An HTTP status code.
pub fn http_status(field: &str, value: Option<i64>) -> Result<Option<u16>, FieldError> {
    match value {
        None => Ok(None),
        Some(v @ 100..=599) => Ok(Some(v as u16)),
        Some(v) => Err(FieldError::new(
            field,
            format!("{v} is not an HTTP status (100–599)"),
        )),
    }
}

/// A non-negative duration in milliseconds from a JSON number, rounded to whole milliseconds.
pub fn millis(field: &str, raw: &RawValue) -> Result<u32, FieldError> {
    let text = raw.get();
    let value = parse_decimal(text).ok_or_else(|| {
        FieldError::new(
            field,
            format!("expected a number of milliseconds, got {text}"),
        )
    })?;
    millis_decimal(field, value)
}

/// Checks and rounds milliseconds already parsed.
pub fn millis_decimal(field: &str, value: Decimal) -> Result<u32, FieldError> {
    if value.is_sign_negative() && !value.is_zero() {
        return Err(FieldError::new(
            field,
            format!("must not be negative ({value})"),
        ));
    }
    value
        .round()
        .to_u32()
        .ok_or_else(|| FieldError::new(field, format!("{value} ms is out of range")))
}

/// An attempt number (0 or more).
pub fn attempt(field: &str, value: Option<i64>) -> Result<Option<u32>, FieldError> {
    value
        .map(|v| {
            u32::try_from(v).map_err(|_| {
                FieldError::new(field, format!("must be a non-negative integer ({v})"))
            })
        })
        .transpose()
}

/// A token or unit count: absent is 0, negative is an error.
pub fn count(field: &str, value: Option<i64>) -> Result<u64, FieldError> {
    match value {
        None => Ok(0),
        Some(v) => u64::try_from(v)
            .map_err(|_| FieldError::new(field, format!("must not be negative ({v})"))),
    }
}

/// `total − Σ parts`, or an error naming the parts when they exceed the total (the usual sign
/// of a source counting exclusively where inclusive was assumed).
pub fn remainder(total_field: &str, total: u64, parts: &[(&str, u64)]) -> Result<u64, FieldError> {
    let sum: u64 = parts.iter().map(|(_, v)| v).sum();
    if sum > total {
        let named: Vec<String> = parts
            .iter()
            .filter(|(_, v)| *v > 0)
            .map(|(n, v)| format!("{n} ({v})"))
            .collect();
        return Err(FieldError::new(
            total_field,
            format!(
                "{total} is less than its parts: {} = {sum}; {total_field} must include them",
                named.join(" + ")
            ),
        ));
    }
    Ok(total - sum)
}

/// Free-form metadata: a JSON object, bounded in size and depth, kept as text.
pub fn metadata(field: &str, raw: &RawValue, lim: &Limits) -> Result<String, FieldError> {
    let text = raw.get();
    if text == "null" {
        return Ok(String::new());
    }
    if !text.starts_with('{') {
        return Err(FieldError::new(field, "must be a JSON object"));
    }
    if text.len() > lim.max_metadata_bytes {
        return Err(FieldError::new(
            field,
            format!(
                "is {} bytes; the limit is {} (ingest.max_metadata_bytes)",
                text.len(),
                lim.max_metadata_bytes
            ),
        ));
    }
    if json_depth(text) > lim.max_metadata_depth {
        return Err(FieldError::new(
            field,
            format!("nests deeper than {} levels", lim.max_metadata_depth),
        ));
    }
    Ok(text.to_string())
}

/// Nesting depth of JSON text, counting brackets outside strings.
fn json_depth(text: &str) -> usize {
    let (mut depth, mut max, mut in_str, mut escaped) = (0usize, 0usize, false, false);
    for b in text.bytes() {
        if in_str {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_ignores_brackets_in_strings() {
        assert_eq!(json_depth(r#"{"a":"[[[{{{"}"#), 1);
        assert_eq!(json_depth(r#"{"a":{"b":[1,{"c":"\"]"}]}}"#), 4);
    }

    #[test]
    fn remainder_names_the_parts() {
        let e = remainder("usage.input_tokens", 10, &[("a", 8), ("b", 5), ("c", 0)]).unwrap_err();
        assert_eq!(e.field, "usage.input_tokens");
        assert!(e.reason.contains("a (8) + b (5) = 13"), "{}", e.reason);
        assert_eq!(remainder("t", 10, &[("a", 4)]).unwrap(), 6);
    }

    #[test]
    fn millis_rounds_and_rejects_negatives() {
        assert_eq!(millis_decimal("x", "12.5".parse().unwrap()).unwrap(), 12);
        assert_eq!(millis_decimal("x", "13.5".parse().unwrap()).unwrap(), 14);
        assert!(millis_decimal("x", "-1".parse().unwrap()).is_err());
        assert!(millis_decimal("x", "99999999999".parse().unwrap()).is_err());
    }
}
