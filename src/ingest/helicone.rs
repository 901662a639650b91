//! Helicone: request-log rows and the manual-logger body → [`UsageEvent`] (formats.md §6a).
//!
//! * `helicone.request`: a `HeliconeRequest` row as Helicone's query API and exports return
//!   it. Tokens follow §6a: `input_uncached = prompt_tokens − prompt_cache_read_tokens −
//!   prompt_cache_write_tokens − prompt_audio_tokens` (Helicone does not document whether its
//!   `prompt_tokens` includes the cache counts; a negative remainder rejects the record rather
//!   than guess), `output = completion_tokens − completion_audio_tokens`; cost in USD.
//! * `helicone.manual`: the body of Helicone's async/manual logger (`providerRequest`,
//!   `providerResponse`, `timing`). The provider's own response inside it is mapped with that
//!   provider's rules (OpenAI, Anthropic, Gemini), then Helicone's headers add the user,
//!   properties and session.
//!
//! A response Helicone served from its own cache called no provider; its buckets are zero.

use serde_json::Value;

use super::fields::{self, FieldError};
use super::normalize::{self, apply_bag, fill_str, CostUnit, Draft};
use super::value::J;
use super::{detect, MapCtx, Mapped};
use crate::domain::event::{CallStatus, UsageDetail, UsageEvent};

pub const REQUEST: &str = "helicone.request";
pub const MANUAL: &str = "helicone.manual";

/// Helicone's "no value" UUID (the default of `cache_reference_id`).
const NIL_UUID: &str = "00000000-0000-0000-0000-000000000000";

pub fn variant(v: &Value) -> Option<&'static str> {
    if v.get("providerRequest").is_some() && v.get("providerResponse").is_some() {
        return Some(MANUAL);
    }
    let has = |k: &str| v.get(k).is_some();
    if has("request_created_at")
        || has("helicone_user")
        || (has("request_id")
            && (has("request_properties") || has("response_status"))
            && has("provider"))
    {
        return Some(REQUEST);
    }
    None
}

pub fn map(v: &Value, variant: &'static str, cx: &MapCtx<'_>) -> Result<Mapped, FieldError> {
    let root = J::root(v, "");
    let ev = if variant == MANUAL {
        manual(&root, cx)?
    } else {
        request_row(&root, cx)?
    };
    Ok(Mapped::one(ev))
}

/// Helicone's provider names (`OPENAI`, `ANTHROPIC`, …) as Tally providers; `CUSTOM` names none.
fn provider(name: &str) -> Option<String> {
    let p = name.trim().to_ascii_lowercase();
    (!p.is_empty() && p != "custom").then_some(p)
}

/// Properties set with `Helicone-Property-<Name>` headers, plus Helicone's own session
/// properties.
fn properties(d: &mut Draft, bag: &J<'_, '_>, lim: &fields::Limits) -> Result<(), FieldError> {
    let Some(map) = bag.as_object() else {
        return Err(bag.err("expected a JSON object of properties"));
    };
    let mut rest = serde_json::Map::new();
    for (k, val) in map {
        let key = k.to_ascii_lowercase();
        let key = key.trim_start_matches("helicone-property-");
        match key {
            "helicone-session-id" => {
                fill_str(&mut d.dims.session_id, val.as_str().map(str::to_string))
            }
            "helicone-session-path" => d.meta_put("session_path", val.clone()),
            "helicone-session-name" => d.meta_put("session_name", val.clone()),
            _ => {
                rest.insert(
                    k.trim_start_matches("Helicone-Property-").to_string(),
                    val.clone(),
                );
            }
        }
    }
    let rest = Value::Object(rest);
    apply_bag(d, &J::root(&rest, bag.path()), lim)
}

fn request_row(r: &J<'_, '_>, cx: &MapCtx<'_>) -> Result<UsageEvent, FieldError> {
    let lim = cx.limits;
    let mut d = Draft::new(REQUEST);
    d.route = Some("helicone".into());
    let gateway_id = r.string("request_id", lim)?;
    d.idem_key = gateway_id.as_ref().map(|id| format!("helicone:{id}"));
    d.meta_str("helicone_request_id", gateway_id.as_deref());
    if let Some(p) = r.str("provider")? {
        d.provider = provider(p);
    }
    let requested = r.string("request_model", lim)?;
    d.model = r
        .string("response_model", lim)?
        .or(r.string("model", lim)?)
        .or(r.string("model_override", lim)?)
        .or(requested.clone());
    if requested != d.model {
        d.model_requested = requested;
    }
    let start = match r.str("request_created_at")? {
        Some(t) => Some(normalize::flexible_timestamp(
            "request_created_at",
            t,
            cx.now,
        )?),
        None => None,
    };
    d.ts = start;
    if let Some(ms) = r.decimal("delay_ms")? {
        d.latency_ms = Some(fields::millis_decimal("delay_ms", ms)?);
    } else if let (Some(s), Some(e)) = (start, r.str("response_created_at")?) {
        let end = normalize::flexible_timestamp("response_created_at", e, cx.now)?;
        d.latency_ms = Some(normalize::span_ms("response_created_at", s, end)?);
    }
    if let Some(ms) = r.decimal("time_to_first_token")? {
        d.ttft_ms = Some(fields::millis_decimal("time_to_first_token", ms)?);
    }
    match r.int("response_status")? {
        // Helicone writes 0 or a negative status when no response arrived (timeouts, aborts).
        Some(s) if s <= 0 => {
            d.status = Some(CallStatus::Error);
            d.error_type = Some("no_response".into());
        }
        other => d.http_status = fields::http_status("response_status", other)?,
    }
    fill_str(&mut d.dims.user_id, r.string("request_user_id", lim)?);
    for bag in ["request_properties", "properties"] {
        if r.raw(bag).is_some_and(Value::is_object) {
            r.with(bag, |b| properties(&mut d, &b, lim))?;
        }
    }
    for key in [
        "helicone_user",
        "country_code",
        "prompt_id",
        "prompt_version",
        "request_referrer",
        "target_url",
    ] {
        d.meta_str(key, r.str(key).ok().flatten());
    }
    // The provider's own response id, when the row carries the response body.
    if let Some(body) = r.raw("response_body").filter(|b| b.is_object()) {
        d.request_id = body.get("id").and_then(Value::as_str).map(str::to_string);
    }

    let prompt = r.count("prompt_tokens")?;
    let completion = r.count("completion_tokens")?;
    if prompt.is_some() || completion.is_some() {
        let read = r.count("prompt_cache_read_tokens")?;
        let write = r.count0("prompt_cache_write_tokens")?;
        let audio_in = r.count0("prompt_audio_tokens")?;
        let audio_out = r.count0("completion_audio_tokens")?;
        d.tokens.input_uncached = fields::remainder(
            "prompt_tokens",
            prompt.unwrap_or(0),
            &[
                ("prompt_cache_read_tokens", read.unwrap_or(0)),
                ("prompt_cache_write_tokens", write),
                ("prompt_audio_tokens", audio_in),
            ],
        )?;
        d.tokens.cache_read = read.unwrap_or(0);
        d.tokens.cache_write_5m = write;
        d.tokens.audio_in = audio_in;
        d.tokens.audio_out = audio_out;
        d.tokens.output = fields::remainder(
            "completion_tokens",
            completion.unwrap_or(0),
            &[("completion_audio_tokens", audio_out)],
        )?;
        if write > 0 {
            d.meta_put("cache_ttl_reported", Value::Bool(false));
        }
        if let Some(total) = r.count("total_tokens")? {
            let want = prompt.unwrap_or(0) + completion.unwrap_or(0);
            if total != want {
                return Err(r.err_at(
                    "total_tokens",
                    format!("{total} does not equal prompt_tokens + completion_tokens ({want})"),
                ));
            }
        }
        d.usage_detail = if read.is_some() {
            UsageDetail::Full
        } else {
            UsageDetail::Partial
        };
    }
    let cache_ref = r.str("cache_reference_id")?.filter(|id| *id != NIL_UUID);
    if r.boolean("cache_enabled")? == Some(true) && cache_ref.is_some() {
        let t = d.tokens;
        d.meta_put("gateway_cache_hit", Value::Bool(true));
        d.meta_put("cached_response_input_tokens", Value::from(t.input_total()));
        d.meta_put(
            "cached_response_output_tokens",
            Value::from(t.output_total()),
        );
        d.meta_str("cache_reference_id", cache_ref);
        d.tokens = Default::default();
    }
    let cost = match r.decimal_text("cost")? {
        Some(c) => Some(("cost", c)),
        None => r.decimal_text("costUSD")?.map(|c| ("costUSD", c)),
    };
    if let Some((field, (value, text))) = cost {
        d.set_cost(field, value, &text, CostUnit::Usd)?;
    }
    d.finish(cx.defaults, cx.now, lim, "response_model")
}

/// Helicone's `{seconds, milliseconds}` time.
fn split_time(t: &J<'_, '_>) -> Result<chrono::DateTime<chrono::Utc>, FieldError> {
    let secs = t
        .decimal("seconds")?
        .ok_or_else(|| t.err_at("seconds", "is required"))?;
    let ms = t.decimal("milliseconds")?.unwrap_or_default();
    let at = secs + ms / rust_decimal::Decimal::ONE_THOUSAND;
    normalize::unix_seconds(t.path(), at)
}

/// An SSE stream as text (`data: {…}` lines) → the list of its JSON events.
fn sse_events(text: &str) -> Value {
    let items = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("data:"))
        .map(str::trim)
        .filter(|l| *l != "[DONE]")
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect();
    Value::Array(items)
}

/// Provider hosts → providers, for the manual logger's `providerRequest.url`.
fn provider_of_url(url: &str) -> Option<&'static str> {
    let host = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split('/')
        .next()
        .unwrap_or("");
    let host = host.to_ascii_lowercase();
    [
        ("openai.azure.com", "azure"),
        ("api.openai.com", "openai"),
        ("api.anthropic.com", "anthropic"),
        ("generativelanguage.googleapis.com", "google"),
        ("aiplatform.googleapis.com", "google"),
        ("openrouter.ai", "openrouter"),
        ("api.mistral.ai", "mistral"),
        ("api.groq.com", "groq"),
        ("api.deepseek.com", "deepseek"),
        ("api.x.ai", "x-ai"),
        ("api.together.xyz", "together"),
        ("api.fireworks.ai", "fireworks"),
        ("bedrock-runtime", "aws"),
    ]
    .into_iter()
    .find(|(h, _)| host.contains(h))
    .map(|(_, p)| p)
}

/// Renames a provider mapper's error path into the manual logger's own field names.
fn relabel(mut e: FieldError) -> FieldError {
    if let Some(rest) = e.field.strip_prefix("response") {
        e.field = format!("providerResponse.json{rest}");
    } else if let Some(rest) = e.field.strip_prefix("request") {
        e.field = format!("providerRequest.json{rest}");
    }
    e
}

fn manual(r: &J<'_, '_>, cx: &MapCtx<'_>) -> Result<UsageEvent, FieldError> {
    let lim = cx.limits;
    let req = r.raw("providerRequest");
    let resp = r.raw("providerResponse");
    let request_json = req.and_then(|q| q.get("json"));
    let response_json = match resp {
        Some(p) => match (
            p.get("json").filter(|j| !j.is_null()),
            p.get("textBody").and_then(Value::as_str),
        ) {
            (Some(json), _) => json.clone(),
            (None, Some(text)) => match serde_json::from_str::<Value>(text) {
                Ok(v) => v,
                Err(_) => sse_events(text),
            },
            (None, None) => Value::Null,
        },
        None => Value::Null,
    };
    let status = r
        .with_obj("providerResponse", |p| p.int("status"))?
        .flatten();
    let mut d = match detect::map_provider_exchange(request_json, &response_json, cx) {
        Some(result) => Draft::from_event(result.map_err(relabel)?, MANUAL),
        None if status.is_some_and(|s| s >= 400) || response_json.is_null() => {
            // A failed call whose body is not a provider shape: still a call, with no usage.
            let mut d = Draft::new(MANUAL);
            d.model = request_json
                .and_then(|j| j.get("model"))
                .and_then(Value::as_str)
                .map(str::to_string);
            d
        }
        None => {
            return Err(FieldError::new(
                "providerResponse.json",
                "is not an OpenAI, Anthropic or Gemini response Tally can read usage from",
            ))
        }
    };
    d.route = Some("helicone".into());
    if let Some(s) = status {
        d.http_status = fields::http_status("providerResponse.status", Some(s))?;
        if s >= 400 {
            d.status = Some(CallStatus::Error);
            fill_str(&mut d.error_type, Some(format!("http_{s}")));
        }
    }
    if let Some(url) = req.and_then(|q| q.get("url")).and_then(Value::as_str) {
        if let Some(p) = provider_of_url(url) {
            d.provider = Some(p.into());
        }
    }
    r.with_obj("providerRequest", |q| {
        q.with_obj("meta", |m| {
            let Some(map) = m.as_object() else {
                return Ok(());
            };
            let mut props = serde_json::Map::new();
            for (k, val) in map {
                let lower = k.to_ascii_lowercase();
                let text = val.as_str().map(str::to_string);
                match lower.as_str() {
                    "helicone-user-id" => fill_str(&mut d.dims.user_id, text),
                    "helicone-session-id" => fill_str(&mut d.dims.session_id, text),
                    "helicone-session-path" => d.meta_str("session_path", text.as_deref()),
                    "helicone-session-name" => d.meta_str("session_name", text.as_deref()),
                    "helicone-request-id" => {
                        d.idem_key = text.as_ref().map(|id| format!("helicone:{id}"));
                        d.meta_str("helicone_request_id", text.as_deref());
                    }
                    _ => {
                        if let Some(name) = lower.strip_prefix("helicone-property-") {
                            props.insert(name.to_string(), val.clone());
                        }
                    }
                }
            }
            let props = Value::Object(props);
            apply_bag(&mut d, &J::root(&props, "providerRequest.meta"), lim)
        })?;
        Ok(())
    })?;
    r.with_obj("timing", |t| {
        let start = t.with_obj("startTime", |s| split_time(&s))?;
        if let Some(start) = start {
            d.ts = Some(start);
            if let Some(end) = t.with_obj("endTime", |e| split_time(&e))? {
                d.latency_ms = Some(normalize::span_ms("timing.endTime", start, end)?);
            }
        }
        if let Some(ms) = t.decimal("timeToFirstToken")? {
            d.ttft_ms = Some(fields::millis_decimal("timing.timeToFirstToken", ms)?);
        }
        Ok(())
    })?;
    d.finish(cx.defaults, cx.now, lim, "providerRequest.json.model")
}
