//! Tally's native event format (`schemas/usage-event.schema.json`) → [`UsageEvent`].
//!
//! The native format counts tokens the OpenTelemetry way: `input_tokens` includes cache reads,
//! cache writes, audio and image input; `output_tokens` includes reasoning, audio and image
//! output. This mapper subtracts the parts to get Tally's exclusive buckets and rejects a record
//! whose parts exceed their total, naming the field, instead of clamping anything to zero.
//! Unknown fields are rejected, so a typo never drops data silently.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::fields::{self, FieldError};
use super::normalize::{self, RequestDefaults};
use super::{MapCtx, Mapped};
use crate::domain::event::{CallStatus, Dimensions, UsageDetail, UsageEvent};

/// The `source_format` of native events.
pub const SOURCE: &str = "native";

/// Maps one native record for the pipeline: the header defaults fill what it leaves empty.
pub fn map(text: &str, cx: &MapCtx<'_>) -> Result<Mapped, FieldError> {
    parse_with(text, cx.now, cx.limits, cx.defaults).map(Mapped::one)
}
use crate::domain::tokens::TokenBuckets;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NativeRecord<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow)]
    provider: Option<Cow<'a, str>>,
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow)]
    model_requested: Option<Cow<'a, str>>,
    #[serde(borrow)]
    operation: Option<Cow<'a, str>>,
    #[serde(borrow)]
    route: Option<Cow<'a, str>>,
    #[serde(borrow)]
    service_tier: Option<Cow<'a, str>>,
    #[serde(borrow)]
    request_id: Option<Cow<'a, str>>,
    usage: Option<NativeUsage>,
    #[serde(borrow)]
    cost: Option<&'a RawValue>,
    #[serde(borrow)]
    currency: Option<Cow<'a, str>>,
    #[serde(borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(borrow)]
    error_type: Option<Cow<'a, str>>,
    http_status: Option<i64>,
    #[serde(borrow)]
    latency_ms: Option<&'a RawValue>,
    #[serde(borrow)]
    ttft_ms: Option<&'a RawValue>,
    #[serde(borrow)]
    user_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    team_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    project: Option<Cow<'a, str>>,
    #[serde(borrow)]
    api_key_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    customer_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    feature: Option<Cow<'a, str>>,
    #[serde(borrow)]
    tags: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow)]
    task_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    run_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    agent: Option<Cow<'a, str>>,
    #[serde(borrow)]
    session_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    trace_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    span_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    parent_span_id: Option<Cow<'a, str>>,
    attempt: Option<i64>,
    #[serde(borrow)]
    retry_of: Option<Cow<'a, str>>,
    #[serde(borrow)]
    fallback_from: Option<Cow<'a, str>>,
    #[serde(borrow)]
    metadata: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NativeUsage {
    input_tokens: Option<i64>,
    cache_read_tokens: Option<i64>,
    cache_write_tokens: Option<i64>,
    cache_write_1h_tokens: Option<i64>,
    output_tokens: Option<i64>,
    reasoning_tokens: Option<i64>,
    audio_input_tokens: Option<i64>,
    audio_output_tokens: Option<i64>,
    image_input_tokens: Option<i64>,
    image_output_tokens: Option<i64>,
    web_search_requests: Option<i64>,
}

/// Reads one native record. `now` is the receive time: the default timestamp and the reference
/// for "too far in the future".
pub fn parse(
    text: &str,
    now: DateTime<Utc>,
    limits: &fields::Limits,
) -> Result<UsageEvent, FieldError> {
    parse_with(text, now, limits, &RequestDefaults::default())
}

/// [`parse`] with request-header defaults, which fill only what the record leaves empty.
pub fn parse_with(
    text: &str,
    now: DateTime<Utc>,
    limits: &fields::Limits,
    defaults: &RequestDefaults,
) -> Result<UsageEvent, FieldError> {
    // serde would read a struct from an array positionally and blame its first element.
    if !text.trim_start().starts_with('{') {
        return Err(FieldError::new(
            "(record)",
            format!("expected a JSON object, got {}", fields::json_kind(text)),
        ));
    }
    let de = &mut serde_json::Deserializer::from_str(text);
    let record: NativeRecord<'_> =
        serde_path_to_error::deserialize(de).map_err(FieldError::from_serde)?;
    let lim = limits;

    let model = fields::required_str("model", record.model, lim)?;
    let ts = match record.timestamp {
        Some(raw) => fields::timestamp("timestamp", &raw, now)?,
        None => now,
    };
    let (tokens, web_search_requests, usage_detail) = buckets(record.usage)?;

    let error_type = fields::opt_str("error_type", record.error_type, lim)?;
    let http_status = fields::http_status("http_status", record.http_status)?;
    let status = match record.status.as_deref() {
        None => {
            if error_type.is_some() || http_status.is_some_and(|s| s >= 400) {
                CallStatus::Error
            } else {
                CallStatus::Success
            }
        }
        Some("success") => {
            if let Some(code) = http_status.filter(|s| *s >= 400) {
                return Err(FieldError::new(
                    "status",
                    format!("is \"success\" but http_status is {code}; send \"error\" or fix http_status"),
                ));
            }
            CallStatus::Success
        }
        Some("error") => CallStatus::Error,
        Some(other) => {
            return Err(FieldError::new(
                "status",
                format!("unknown status {other:?}; expected \"success\" or \"error\""),
            ))
        }
    };

    let reported_cost = record
        .cost
        .map(|raw| fields::cost("cost", raw))
        .transpose()?;
    let currency = fields::currency("currency", record.currency, reported_cost.is_some())?;

    let mut dims = Dimensions {
        user_id: fields::opt_str("user_id", record.user_id, lim)?,
        team_id: fields::opt_str("team_id", record.team_id, lim)?,
        project: fields::opt_str("project", record.project, lim)?,
        api_key_id: fields::opt_str("api_key_id", record.api_key_id, lim)?,
        customer_id: fields::opt_str("customer_id", record.customer_id, lim)?,
        feature: fields::opt_str("feature", record.feature, lim)?,
        tags: fields::tags("tags", record.tags, lim)?,
        task_id: fields::opt_str("task_id", record.task_id, lim)?,
        run_id: fields::opt_str("run_id", record.run_id, lim)?,
        agent: fields::opt_str("agent", record.agent, lim)?,
        session_id: fields::opt_str("session_id", record.session_id, lim)?,
        trace_id: fields::opt_str("trace_id", record.trace_id, lim)?,
        span_id: fields::opt_str("span_id", record.span_id, lim)?,
        parent_span_id: fields::opt_str("parent_span_id", record.parent_span_id, lim)?,
    };
    normalize::apply_defaults(&mut dims, defaults, lim)?;
    let route = fields::opt_slug("route", record.route, lim)?
        .or_else(|| defaults.route.clone())
        .unwrap_or_else(|| "direct".into());

    Ok(UsageEvent {
        ts,
        idem_key: fields::opt_str("id", record.id, lim)?,
        request_id: fields::opt_str("request_id", record.request_id, lim)?,
        source_format: SOURCE.into(),
        provider: fields::opt_slug("provider", record.provider, lim)?,
        model,
        model_requested: fields::opt_str("model_requested", record.model_requested, lim)?,
        operation: fields::opt_slug("operation", record.operation, lim)?
            .unwrap_or_else(|| "chat".into()),
        route,
        service_tier: fields::opt_slug("service_tier", record.service_tier, lim)?
            .unwrap_or_else(|| "standard".into()),
        status,
        error_type,
        http_status,
        latency_ms: record
            .latency_ms
            .map(|raw| fields::millis("latency_ms", raw))
            .transpose()?,
        ttft_ms: record
            .ttft_ms
            .map(|raw| fields::millis("ttft_ms", raw))
            .transpose()?,
        dims,
        attempt: fields::attempt("attempt", record.attempt)?,
        retry_of: fields::opt_str("retry_of", record.retry_of, lim)?,
        fallback_from: fields::opt_str("fallback_from", record.fallback_from, lim)?,
        tokens,
        web_search_requests,
        reported_cost,
        currency,
        usage_detail,
        metadata: record
            .metadata
            .map(|raw| fields::metadata("metadata", raw, lim))
            .transpose()?,
    })
}

/// Derives the exclusive buckets from the native (inclusive) counts.
fn buckets(usage: Option<NativeUsage>) -> Result<(TokenBuckets, u64, UsageDetail), FieldError> {
    let Some(u) = usage else {
        return Ok((TokenBuckets::default(), 0, UsageDetail::Missing));
    };
    let n = |name: &'static str, v: Option<i64>| fields::count(name, v);
    let input = n("usage.input_tokens", u.input_tokens)?;
    let cache_read = n("usage.cache_read_tokens", u.cache_read_tokens)?;
    let cache_write = n("usage.cache_write_tokens", u.cache_write_tokens)?;
    let cache_write_1h = n("usage.cache_write_1h_tokens", u.cache_write_1h_tokens)?;
    let output = n("usage.output_tokens", u.output_tokens)?;
    let reasoning = n("usage.reasoning_tokens", u.reasoning_tokens)?;
    let audio_in = n("usage.audio_input_tokens", u.audio_input_tokens)?;
    let audio_out = n("usage.audio_output_tokens", u.audio_output_tokens)?;
    let image_in = n("usage.image_input_tokens", u.image_input_tokens)?;
    let image_out = n("usage.image_output_tokens", u.image_output_tokens)?;
    let web_search_requests = n("usage.web_search_requests", u.web_search_requests)?;

    if cache_write_1h > cache_write {
        return Err(FieldError::new(
            "usage.cache_write_1h_tokens",
            format!(
                "{cache_write_1h} exceeds usage.cache_write_tokens ({cache_write}), which includes the 1-hour writes"
            ),
        ));
    }
    let input_parts = [
        ("usage.cache_read_tokens", cache_read),
        ("usage.cache_write_tokens", cache_write),
        ("usage.audio_input_tokens", audio_in),
        ("usage.image_input_tokens", image_in),
    ];
    let input_uncached = fields::remainder("usage.input_tokens", input, &input_parts)?;
    let output_parts = [
        ("usage.audio_output_tokens", audio_out),
        ("usage.image_output_tokens", image_out),
    ];
    let output_text = fields::remainder("usage.output_tokens", output, &output_parts)?;
    if reasoning > output_text {
        return Err(FieldError::new(
            "usage.reasoning_tokens",
            format!(
                "{reasoning} exceeds the text part of usage.output_tokens ({output_text}); output_tokens must include reasoning"
            ),
        ));
    }
    let tokens = TokenBuckets {
        input_uncached,
        cache_read,
        cache_write_5m: cache_write - cache_write_1h,
        cache_write_1h,
        output: output_text,
        reasoning,
        audio_in,
        audio_out,
        image_in,
        image_out,
    };
    let detail = if u.input_tokens.is_none() && u.output_tokens.is_none() {
        UsageDetail::Missing
    } else {
        UsageDetail::Full
    };
    Ok((tokens, web_search_requests, detail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap()
    }

    fn ok(text: &str) -> UsageEvent {
        parse(text, now(), &fields::Limits::default()).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn err(text: &str) -> FieldError {
        match parse(text, now(), &fields::Limits::default()) {
            Ok(ev) => panic!("accepted {text}: {ev:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn the_schema_example_parses() {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../schemas/usage-event.schema.json")).unwrap();
        let example = schema["examples"][0].to_string();
        let ev = ok(&example);
        assert_eq!(ev.model, "claude-sonnet-4-5-20250929");
        assert_eq!(ev.tokens.input_uncached, 500);
        assert_eq!(ev.tokens.cache_read, 10_000);
        assert_eq!(ev.tokens.cache_write_5m, 2_000);
        assert_eq!(ev.tokens.output, 850);
        assert_eq!(ev.tokens.reasoning, 300);
        assert_eq!(ev.reported_cost.unwrap().to_string(), "0.025200");
        assert_eq!(ev.dims.tags, vec!["prod", "eu"]);
        assert_eq!(ev.status, CallStatus::Success);
    }

    #[test]
    fn buckets_are_exclusive_and_sum_to_the_inclusive_totals() {
        let ev = ok(
            r#"{"model":"m","usage":{"input_tokens":1000,"cache_read_tokens":300,"cache_write_tokens":200,
            "cache_write_1h_tokens":50,"audio_input_tokens":100,"image_input_tokens":40,"output_tokens":500,
            "reasoning_tokens":120,"audio_output_tokens":30,"image_output_tokens":20}}"#,
        );
        let t = ev.tokens;
        assert_eq!(
            (
                t.input_uncached,
                t.cache_read,
                t.cache_write_5m,
                t.cache_write_1h,
                t.audio_in,
                t.image_in
            ),
            (360, 300, 150, 50, 100, 40)
        );
        assert_eq!(
            (t.output, t.reasoning, t.audio_out, t.image_out),
            (450, 120, 30, 20)
        );
        assert_eq!(t.input_total(), 1000);
        assert_eq!(t.output_total(), 500);
    }

    #[test]
    fn rejections_name_the_field() {
        let cases = [
            (r#"{"usage":{"input_tokens":1}}"#, "model"),
            (
                r#"{"model":"m","usage":{"output_tokens":-5}}"#,
                "usage.output_tokens",
            ),
            (
                r#"{"model":"m","usage":{"input_tokens":100,"cache_read_tokens":500}}"#,
                "usage.input_tokens",
            ),
            (
                r#"{"model":"m","usage":{"cache_write_tokens":10,"cache_write_1h_tokens":20,"input_tokens":100}}"#,
                "usage.cache_write_1h_tokens",
            ),
            (
                r#"{"model":"m","usage":{"output_tokens":10,"reasoning_tokens":11}}"#,
                "usage.reasoning_tokens",
            ),
            (r#"{"model":"m","timestamp":"yesterday"}"#, "timestamp"),
            (
                r#"{"model":"m","timestamp":"2026-11-21T12:00:00"}"#,
                "timestamp",
            ),
            (
                r#"{"model":"m","timestamp":"2026-11-25T12:00:00Z"}"#,
                "timestamp",
            ),
            (r#"{"model":"m","status":"ok"}"#, "status"),
            (
                r#"{"model":"m","status":"success","http_status":500}"#,
                "status",
            ),
            (r#"{"model":"m","cost":"-1"}"#, "cost"),
            (r#"{"model":"m","cost":"abc"}"#, "cost"),
            (r#"{"model":"m","cost":true}"#, "cost"),
            (r#"{"model":"m","currency":"dollars","cost":1}"#, "currency"),
            (
                r#"{"model":"m","usage":{"input_tokens":"12"}}"#,
                "usage.input_tokens",
            ),
            (
                r#"{"model":"m","usage":{"input_tokens":1.5}}"#,
                "usage.input_tokens",
            ),
            (r#"{"model":"m","costs":1}"#, "costs"),
            (r#"{"model":"m","tags":["a",""]}"#, "tags[1]"),
            (r#"{"model":"m","metadata":[1,2]}"#, "metadata"),
            (r#"{"model":"m","http_status":42}"#, "http_status"),
            (r#"{"model":"m","latency_ms":-3}"#, "latency_ms"),
            (r#"{"model":"m","attempt":-1}"#, "attempt"),
            (r#"[1]"#, "(record)"),
            (r#""a string""#, "(record)"),
        ];
        for (text, field) in cases {
            let e = err(text);
            assert_eq!(e.field, field, "{text} → {e}");
            assert!(!e.reason.is_empty());
        }
    }

    #[test]
    fn status_defaults_follow_the_error_fields() {
        assert_eq!(ok(r#"{"model":"m"}"#).status, CallStatus::Success);
        assert_eq!(
            ok(r#"{"model":"m","error_type":"timeout"}"#).status,
            CallStatus::Error
        );
        assert_eq!(
            ok(r#"{"model":"m","http_status":429}"#).status,
            CallStatus::Error
        );
    }

    #[test]
    fn costs_are_read_exactly_from_strings_and_numbers() {
        let from_number = ok(r#"{"model":"m","cost":0.1}"#).reported_cost.unwrap();
        let from_string = ok(r#"{"model":"m","cost":"0.1"}"#).reported_cost.unwrap();
        assert_eq!(from_number, from_string);
        assert_eq!(from_number.to_string(), "0.1");
        let sci = ok(r#"{"model":"m","cost":1.25e-5}"#).reported_cost.unwrap();
        assert_eq!(sci.to_string(), "0.0000125");
        // More digits than the stored scale round half-even at 12 places.
        let long = ok(r#"{"model":"m","cost":"0.0000000000015"}"#)
            .reported_cost
            .unwrap();
        assert_eq!(long.to_string(), "0.000000000002");
        assert_eq!(
            ok(r#"{"model":"m","cost":"1","currency":"eur"}"#)
                .currency
                .as_deref(),
            Some("EUR")
        );
        assert_eq!(
            ok(r#"{"model":"m","cost":"1"}"#).currency.as_deref(),
            Some("USD")
        );
    }

    #[test]
    fn defaults_and_normalisation() {
        let ev = ok(
            r#"{"model":"gpt-4o","provider":"OpenAI","user_id":"","timestamp":"2026-11-21T13:00:00+01:00"}"#,
        );
        assert_eq!(ev.provider.as_deref(), Some("openai"));
        assert_eq!(ev.dims.user_id, None);
        assert_eq!(ev.operation, "chat");
        assert_eq!(ev.route, "direct");
        assert_eq!(ev.service_tier, "standard");
        assert_eq!(ev.ts, Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap());
        assert_eq!(ev.usage_detail, UsageDetail::Missing);
    }
}
