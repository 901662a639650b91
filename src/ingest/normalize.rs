//! What every source mapper shares after it has read its own fields: the event draft, the
//! request-header defaults, caller metadata bags, reported-cost units and timestamp encodings.
//!
//! A mapper fills a [`Draft`] from its format and calls [`Draft::finish`], which applies the
//! `X-Tally-*` header defaults (they fill gaps, never overwrite what a record says), the
//! defaults every event needs (route `direct`, operation `chat`, tier `standard`), and the size
//! limits. Reported costs enter only through [`Draft::set_cost`], which converts the source's
//! unit exactly and keeps the original text and unit in metadata. Nothing here knows the field
//! names of any format, and nothing here computes token buckets: that is each mapper's contract.

use std::borrow::Cow;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde_json::{Map, Value};

use super::fields::{self, FieldError, Limits};
use super::value::J;
use crate::domain::event::{CallStatus, Dimensions, UsageDetail, UsageEvent};
use crate::domain::tokens::TokenBuckets;

/// Attribution that arrives in request headers (`X-Tally-User`, …) and applies to every record
/// of that request. Record fields win: a header only fills a dimension the record left empty,
/// because one request often carries records of many users (a gateway's batch), and a blanket
/// header must not overwrite what each record says about itself. Tags are the exception: the
/// header's tags are added to the record's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestDefaults {
    pub user_id: Option<String>,
    pub feature: Option<String>,
    pub customer_id: Option<String>,
    pub task_id: Option<String>,
    pub run_id: Option<String>,
    pub tags: Vec<String>,
    pub route: Option<String>,
}

/// The request headers Tally reads, lower-case, and what each fills.
pub const DEFAULT_HEADERS: [&str; 7] = [
    "x-tally-user",
    "x-tally-feature",
    "x-tally-customer",
    "x-tally-task",
    "x-tally-run",
    "x-tally-tags",
    "x-tally-route",
];

impl RequestDefaults {
    /// Reads the `X-Tally-*` headers from (name, value) pairs; names are matched
    /// case-insensitively. A value over the length limits is an error naming the header.
    pub fn from_headers<'h>(
        headers: impl IntoIterator<Item = (&'h str, &'h str)>,
        lim: &Limits,
    ) -> Result<Self, FieldError> {
        let mut d = RequestDefaults::default();
        for (name, value) in headers {
            let name = name.to_ascii_lowercase();
            if !DEFAULT_HEADERS.contains(&name.as_str()) {
                continue;
            }
            let header = format!("header {name}");
            let one = |v: &str| fields::opt_str(&header, Some(Cow::Borrowed(v.trim())), lim);
            match name.as_str() {
                "x-tally-user" => d.user_id = one(value)?,
                "x-tally-feature" => d.feature = one(value)?,
                "x-tally-customer" => d.customer_id = one(value)?,
                "x-tally-task" => d.task_id = one(value)?,
                "x-tally-run" => d.run_id = one(value)?,
                "x-tally-route" => {
                    d.route = fields::opt_slug(&header, Some(Cow::Borrowed(value.trim())), lim)?
                }
                "x-tally-tags" => {
                    let items: Vec<Cow<'_, str>> = value
                        .split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(Cow::Borrowed)
                        .collect();
                    for tag in fields::tags(&header, Some(items), lim)? {
                        if !d.tags.contains(&tag) {
                            d.tags.push(tag);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(d)
    }
}

/// Unit of a reported cost, as the source wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CostUnit {
    /// Major units (dollars) of the currency.
    Usd,
    /// OpenRouter credits: one credit is one US dollar.
    Credits,
    /// Minor units (cents) of USD.
    Cents,
}

impl CostUnit {
    fn name(self) -> &'static str {
        match self {
            CostUnit::Usd => "usd",
            CostUnit::Credits => "credits",
            CostUnit::Cents => "cents",
        }
    }
}

/// An event under construction. Mappers set what their format carries; `finish` supplies the
/// rest.
#[derive(Debug, Clone)]
pub struct Draft {
    pub source_format: &'static str,
    pub ts: Option<DateTime<Utc>>,
    pub idem_key: Option<String>,
    pub request_id: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub model_requested: Option<String>,
    pub operation: Option<String>,
    pub route: Option<String>,
    pub service_tier: Option<String>,
    pub status: Option<CallStatus>,
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
    pub reported_cost: Option<Decimal>,
    pub currency: Option<String>,
    pub usage_detail: UsageDetail,
    /// Everything not mapped elsewhere; becomes the event's JSON `metadata`.
    pub meta: Map<String, Value>,
}

impl Draft {
    pub fn new(source_format: &'static str) -> Self {
        Self {
            source_format,
            ts: None,
            idem_key: None,
            request_id: None,
            provider: None,
            model: None,
            model_requested: None,
            operation: None,
            route: None,
            service_tier: None,
            status: None,
            error_type: None,
            http_status: None,
            latency_ms: None,
            ttft_ms: None,
            dims: Dimensions::default(),
            attempt: None,
            retry_of: None,
            fallback_from: None,
            tokens: TokenBuckets::default(),
            web_search_requests: 0,
            reported_cost: None,
            currency: None,
            usage_detail: UsageDetail::Missing,
            meta: Map::new(),
        }
    }

    /// Reopens an event a provider mapper produced (without header defaults) so a gateway
    /// mapper can add its own fields: the gateway's log wraps the provider's response.
    pub fn from_event(ev: UsageEvent, source_format: &'static str) -> Self {
        let meta = ev
            .metadata
            .as_deref()
            .and_then(|m| serde_json::from_str::<Value>(m).ok())
            .and_then(|v| match v {
                Value::Object(m) => Some(m),
                _ => None,
            })
            .unwrap_or_default();
        Self {
            source_format,
            ts: Some(ev.ts),
            idem_key: ev.idem_key,
            request_id: ev.request_id,
            provider: ev.provider,
            model: Some(ev.model),
            model_requested: ev.model_requested,
            operation: Some(ev.operation),
            route: Some(ev.route),
            service_tier: Some(ev.service_tier),
            status: Some(ev.status),
            error_type: ev.error_type,
            http_status: ev.http_status,
            latency_ms: ev.latency_ms,
            ttft_ms: ev.ttft_ms,
            dims: ev.dims,
            attempt: ev.attempt,
            retry_of: ev.retry_of,
            fallback_from: ev.fallback_from,
            tokens: ev.tokens,
            web_search_requests: ev.web_search_requests,
            reported_cost: ev.reported_cost,
            currency: ev.currency,
            usage_detail: ev.usage_detail,
            meta,
        }
    }

    /// Records a reported cost given as exact decimal text in `unit`, converting it to major
    /// units of USD and keeping the original text and unit in metadata
    /// (`reported_cost_original`, `reported_cost_unit`).
    pub fn set_cost(
        &mut self,
        field: &str,
        value: Decimal,
        text: &str,
        unit: CostUnit,
    ) -> Result<(), FieldError> {
        let major = match unit {
            CostUnit::Usd | CostUnit::Credits => value,
            CostUnit::Cents => value
                .checked_div(Decimal::ONE_HUNDRED)
                .ok_or_else(|| FieldError::new(field, format!("{text} cents is out of range")))?,
        };
        self.reported_cost = Some(fields::money(field, major)?);
        self.currency = Some("USD".into());
        self.meta
            .insert("reported_cost_original".into(), Value::String(text.into()));
        self.meta.insert(
            "reported_cost_unit".into(),
            Value::String(unit.name().into()),
        );
        Ok(())
    }

    /// Inserts a metadata value unless the key is taken.
    pub fn meta_put(&mut self, key: &str, value: Value) {
        if !value.is_null() && !self.meta.contains_key(key) {
            self.meta.insert(key.to_string(), value);
        }
    }

    /// Inserts a string metadata value when present.
    pub fn meta_str(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            self.meta_put(key, Value::String(v.to_string()));
        }
    }

    /// Completes the event: header defaults fill gaps, then Tally's own defaults; the model is
    /// required; metadata must fit the limit.
    pub fn finish(
        mut self,
        defaults: &RequestDefaults,
        now: DateTime<Utc>,
        lim: &Limits,
        model_field: &str,
    ) -> Result<UsageEvent, FieldError> {
        let model = self.model.take().ok_or_else(|| {
            FieldError::new(
                model_field,
                "is required: Tally cannot price or attribute a call without its model",
            )
        })?;
        apply_defaults(&mut self.dims, defaults, lim)?;
        fill(&mut self.route, &defaults.route);

        let ts = match self.ts {
            Some(ts) => fields::check_not_future("timestamp", ts, now)?,
            None => now,
        };
        let status = self.status.unwrap_or(
            if self.error_type.is_some() || self.http_status.is_some_and(|s| s >= 400) {
                CallStatus::Error
            } else {
                CallStatus::Success
            },
        );
        let metadata = if self.meta.is_empty() {
            None
        } else {
            let text = Value::Object(self.meta).to_string();
            if text.len() > lim.max_metadata_bytes {
                return Err(FieldError::new(
                    "(metadata)",
                    format!(
                        "the fields Tally keeps as metadata come to {} bytes; the limit is {} \
                         (ingest.max_metadata_bytes)",
                        text.len(),
                        lim.max_metadata_bytes
                    ),
                ));
            }
            Some(text)
        };
        Ok(UsageEvent {
            ts,
            idem_key: self.idem_key,
            request_id: self.request_id,
            source_format: self.source_format.to_string(),
            provider: self.provider.map(|p| p.trim().to_ascii_lowercase()),
            model,
            model_requested: self.model_requested,
            operation: self.operation.unwrap_or_else(|| "chat".into()),
            route: self.route.unwrap_or_else(|| "direct".into()),
            service_tier: self.service_tier.unwrap_or_else(|| "standard".into()),
            status,
            error_type: self.error_type,
            http_status: self.http_status,
            latency_ms: self.latency_ms,
            ttft_ms: self.ttft_ms,
            dims: self.dims,
            attempt: self.attempt,
            retry_of: self.retry_of,
            fallback_from: self.fallback_from,
            tokens: self.tokens,
            web_search_requests: self.web_search_requests,
            reported_cost: self.reported_cost,
            currency: self.currency,
            usage_detail: self.usage_detail,
            metadata,
        })
    }
}

/// Fills the dimensions a record left empty from the request headers, and adds the headers'
/// tags to the record's.
pub fn apply_defaults(
    d: &mut Dimensions,
    defaults: &RequestDefaults,
    lim: &Limits,
) -> Result<(), FieldError> {
    fill(&mut d.user_id, &defaults.user_id);
    fill(&mut d.feature, &defaults.feature);
    fill(&mut d.customer_id, &defaults.customer_id);
    fill(&mut d.task_id, &defaults.task_id);
    fill(&mut d.run_id, &defaults.run_id);
    for tag in &defaults.tags {
        if !d.tags.contains(tag) {
            d.tags.push(tag.clone());
        }
    }
    if d.tags.len() > lim.max_tags {
        return Err(FieldError::new(
            "tags",
            format!("more than {} tags ({})", lim.max_tags, d.tags.len()),
        ));
    }
    Ok(())
}

fn fill(slot: &mut Option<String>, value: &Option<String>) {
    if slot.is_none() {
        slot.clone_from(value);
    }
}

/// Sets `slot` when it is empty: mappers call this in priority order, the most specific
/// source of a dimension first.
pub fn fill_str(slot: &mut Option<String>, value: Option<String>) {
    if slot.is_none() {
        *slot = value;
    }
}

/// Which Tally dimension a caller metadata key names, after lower-casing and reading `-` as `_`.
/// The same vocabulary serves every source that carries a free key-value bag (OpenAI request
/// `metadata`, LiteLLM `spend_logs_metadata`, Helicone properties, Portkey and Cloudflare
/// metadata, Bedrock `requestMetadata`, OpenLLMetry association properties, CloudEvents
/// extensions), so one convention works everywhere.
fn bag_dimension(key: &str) -> Option<&'static str> {
    let k = key.trim().to_ascii_lowercase().replace('-', "_");
    Some(match k.as_str() {
        "user_id" | "user" | "userid" | "_user" | "end_user_id" => "user_id",
        "customer_id" | "customer" | "customerid" | "tenant_id" | "tenant" => "customer_id",
        "team_id" | "team" => "team_id",
        "project" | "project_id" => "project",
        "feature" | "feature_name" => "feature",
        "task_id" | "task" => "task_id",
        "run_id" | "run" | "agent_run" | "agent_run_id" => "run_id",
        "session_id" | "session" => "session_id",
        "agent" | "agent_name" | "agent_id" => "agent",
        "api_key_id" => "api_key_id",
        "trace_id" => "trace_id",
        "tags" | "tag" => "tags",
        _ => return None,
    })
}

/// Reads a caller's key-value bag: keys that name a Tally dimension fill it (when still empty),
/// everything else goes to metadata under its own key. Scalar values become strings (`12345`
/// → `"12345"`); `tags` may be a list or a comma-separated string.
pub fn apply_bag(draft: &mut Draft, bag: &J<'_, '_>, lim: &Limits) -> Result<(), FieldError> {
    let Some(map) = bag.as_object() else {
        return Err(bag.err(format!(
            "expected a JSON object of key-value pairs, got {}",
            super::value::kind(bag.v)
        )));
    };
    for (key, value) in map {
        if value.is_null() {
            continue;
        }
        match bag_dimension(key) {
            Some("tags") => {
                let items: Vec<Cow<'_, str>> = match value {
                    Value::Array(items) => items
                        .iter()
                        .filter_map(|t| match t {
                            Value::String(s) => Some(Cow::Borrowed(s.as_str())),
                            Value::Number(n) => Some(Cow::Owned(n.to_string())),
                            _ => None,
                        })
                        .collect(),
                    Value::String(s) => s
                        .split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(Cow::Borrowed)
                        .collect(),
                    _ => {
                        draft.meta_put(key, value.clone());
                        continue;
                    }
                };
                for tag in fields::tags(&bag.child_path(key), Some(items), lim)? {
                    if !draft.dims.tags.contains(&tag) {
                        draft.dims.tags.push(tag);
                    }
                }
            }
            Some(dim) => {
                let Some(text) = bag.id(key, lim).ok().flatten() else {
                    // Objects and arrays are not ids; keep them as they came.
                    draft.meta_put(key, value.clone());
                    continue;
                };
                let d = &mut draft.dims;
                let slot = match dim {
                    "user_id" => &mut d.user_id,
                    "customer_id" => &mut d.customer_id,
                    "team_id" => &mut d.team_id,
                    "project" => &mut d.project,
                    "feature" => &mut d.feature,
                    "task_id" => &mut d.task_id,
                    "run_id" => &mut d.run_id,
                    "session_id" => &mut d.session_id,
                    "agent" => &mut d.agent,
                    "api_key_id" => &mut d.api_key_id,
                    _ => &mut d.trace_id,
                };
                if slot.is_none() {
                    *slot = Some(text);
                } else if slot.as_deref() != Some(text.as_str()) {
                    // A second, different value for a dimension already set stays visible.
                    draft.meta_put(key, value.clone());
                }
            }
            None => draft.meta_put(key, value.clone()),
        }
    }
    Ok(())
}

/// Reads a bag that arrives as a JSON object or as a string holding one (Cloudflare's REST
/// `metadata`, LiteLLM SpendLogs `metadata`).
pub fn parse_json_string_object(field: &str, text: &str) -> Result<Value, FieldError> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| FieldError::new(field, format!("is a string but not valid JSON ({e})")))?;
    if v.is_object() || v.is_null() {
        Ok(v)
    } else {
        Err(FieldError::new(
            field,
            format!(
                "holds JSON {} where an object was expected",
                super::value::kind(&v)
            ),
        ))
    }
}

/// Unix time in seconds, integer or fractional, read exactly (no float), to a timestamp.
pub fn unix_seconds(field: &str, secs: Decimal) -> Result<DateTime<Utc>, FieldError> {
    let nanos = secs
        .checked_mul(Decimal::from(1_000_000_000u64))
        .and_then(|n| n.round().to_i64())
        .ok_or_else(|| FieldError::new(field, format!("{secs} is not a Unix time in seconds")))?;
    unix_nanos(field, nanos)
}

/// Unix time in nanoseconds to a timestamp; before 2000 or after 2200 is a unit error
/// (milliseconds read as seconds, or the reverse).
pub fn unix_nanos(field: &str, nanos: i64) -> Result<DateTime<Utc>, FieldError> {
    const Y2000: i64 = 946_684_800;
    const Y2200: i64 = 7_258_118_400;
    let secs = nanos.div_euclid(1_000_000_000);
    if !(Y2000..Y2200).contains(&secs) {
        return Err(FieldError::new(
            field,
            format!(
                "{nanos} ns is not a plausible time (before 2000 or after 2200); check the unit"
            ),
        ));
    }
    Ok(Utc.timestamp_nanos(nanos))
}

/// A timestamp in the encodings sources use: RFC 3339 (`Z` or an offset, any precision), the
/// same with a space for the `T` (Postgres, Python `str(datetime)`), an offset without minutes
/// (`+00`), or no offset at all. A time without an offset is read as UTC, which is what
/// servers that log naive times (LiteLLM's stringified payload) run in by convention; the
/// mapping docs say so.
pub fn flexible_timestamp(
    field: &str,
    raw: &str,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, FieldError> {
    let s = raw.trim();
    if let Ok(ts) = DateTime::parse_from_rfc3339(s) {
        return fields::check_not_future(field, ts.with_timezone(&Utc), now);
    }
    let t = s.replacen(' ', "T", 1);
    if let Ok(ts) = DateTime::parse_from_rfc3339(&t) {
        return fields::check_not_future(field, ts.with_timezone(&Utc), now);
    }
    // "+00" / "-05" offsets: add the minutes RFC 3339 wants.
    if let Some(pos) = t.rfind(['+', '-']).filter(|p| *p > 10) {
        let offset = &t[pos..];
        if offset.len() == 3 && offset[1..].chars().all(|c| c.is_ascii_digit()) {
            if let Ok(ts) = DateTime::parse_from_rfc3339(&format!("{t}:00")) {
                return fields::check_not_future(field, ts.with_timezone(&Utc), now);
            }
        }
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(&t, fmt) {
            return fields::check_not_future(field, naive.and_utc(), now);
        }
    }
    Err(FieldError::new(
        field,
        format!("{raw:?} is not a timestamp (expected RFC 3339, e.g. 2026-01-01T00:00:00.120Z)"),
    ))
}

/// Milliseconds between two timestamps, for latencies; negative spans are an error.
pub fn span_ms(field: &str, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<u32, FieldError> {
    let micros = (end - start)
        .num_microseconds()
        .ok_or_else(|| FieldError::new(field, "duration out of range"))?;
    if micros < 0 {
        return Err(FieldError::new(
            field,
            format!("ends {} ms before it starts", -micros / 1000),
        ));
    }
    fields::millis_decimal(field, Decimal::new(micros, 3))
}

/// A duration in seconds (exact decimal) as whole milliseconds.
pub fn seconds_to_ms(field: &str, secs: Decimal) -> Result<u32, FieldError> {
    let ms = secs
        .checked_mul(Decimal::ONE_THOUSAND)
        .ok_or_else(|| FieldError::new(field, format!("{secs} s is out of range")))?;
    fields::millis_decimal(field, ms)
}

/// Normalizes a provider's service-tier name: the names that mean the list price become
/// `standard`; others stay (lower-case) so the pricer can apply or refuse them.
pub fn service_tier(raw: &str) -> Option<String> {
    let t = raw.trim().to_ascii_lowercase().replace('-', "_");
    match t.as_str() {
        "" => None,
        "auto" | "default" | "standard" | "on_demand" => Some("standard".into()),
        _ => Some(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap()
    }

    #[test]
    fn timestamps_in_every_encoding() {
        let want = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
            + chrono::Duration::milliseconds(120);
        for raw in [
            "2026-01-01T00:00:00.120Z",
            "2026-01-01T00:00:00.120+00:00",
            "2026-01-01 00:00:00.12+00",
            "2026-01-01 00:00:00.120000",
            "2026-01-01T01:00:00.120+01:00",
        ] {
            assert_eq!(flexible_timestamp("t", raw, now()).unwrap(), want, "{raw}");
        }
        assert!(flexible_timestamp("t", "yesterday", now()).is_err());
        let secs: Decimal = "1767225600.120".parse().unwrap();
        assert_eq!(unix_seconds("t", secs).unwrap(), want);
        assert!(unix_seconds("t", "1767225600120".parse().unwrap()).is_err());
    }

    #[test]
    fn cents_convert_exactly_and_keep_the_original() {
        let mut d = Draft::new("x");
        d.set_cost("cost", "12.5".parse().unwrap(), "12.5", CostUnit::Cents)
            .unwrap();
        assert_eq!(d.reported_cost.unwrap().to_string(), "0.125");
        assert_eq!(d.meta["reported_cost_original"], "12.5");
        assert_eq!(d.meta["reported_cost_unit"], "cents");
    }

    #[test]
    fn headers_fill_gaps_and_add_tags() {
        let lim = Limits::default();
        let defaults = RequestDefaults::from_headers(
            [
                ("X-Tally-User", "u-header"),
                ("x-tally-feature", "search"),
                ("X-Tally-Tags", "prod, eu ,,prod"),
                ("X-Tally-Route", "LiteLLM"),
                ("content-type", "application/json"),
            ],
            &lim,
        )
        .unwrap();
        assert_eq!(defaults.tags, vec!["prod", "eu"]);
        assert_eq!(defaults.route.as_deref(), Some("litellm"));
        let mut d = Draft::new("x");
        d.model = Some("m".into());
        d.dims.user_id = Some("u-record".into());
        d.dims.tags = vec!["eu".into(), "beta".into()];
        let ev = d.finish(&defaults, now(), &lim, "model").unwrap();
        assert_eq!(ev.dims.user_id.as_deref(), Some("u-record"));
        assert_eq!(ev.dims.feature.as_deref(), Some("search"));
        assert_eq!(ev.dims.tags, vec!["eu", "beta", "prod"]);
        assert_eq!(ev.route, "litellm");
    }

    #[test]
    fn bags_map_dimensions_and_keep_the_rest() {
        let v: Value = serde_json::from_str(
            r#"{"Feature":"support-bot","user":12345,"customer-id":"acme","tags":"a,b","prompt_version":"v3"}"#,
        )
        .unwrap();
        let mut d = Draft::new("x");
        apply_bag(&mut d, &J::root(&v, "metadata"), &Limits::default()).unwrap();
        assert_eq!(d.dims.feature.as_deref(), Some("support-bot"));
        assert_eq!(d.dims.user_id.as_deref(), Some("12345"));
        assert_eq!(d.dims.customer_id.as_deref(), Some("acme"));
        assert_eq!(d.dims.tags, vec!["a", "b"]);
        assert_eq!(d.meta["prompt_version"], "v3");
    }
}
