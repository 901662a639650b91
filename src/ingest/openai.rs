//! OpenAI: Chat Completions and Responses API objects → [`UsageEvent`] (formats.md §1a, §1b).
//!
//! Accepted records: a `chat.completion` object; the final `chat.completion.chunk` of a stream
//! (the one with `usage`, sent with `stream_options.include_usage`); a `response` object or a
//! terminal Responses stream event (`response.completed`, `.failed`, `.incomplete`); or any of
//! these as the `response` of a `{"request": …, "response": …}` pair, where `response` may also
//! be the whole stream as an array of chunks/events, or an OpenAI error body. The request adds
//! what the response lacks: `user`/`safety_identifier` (user), `metadata` (a caller bag),
//! the requested model.
//!
//! Token contract: `prompt_tokens`/`input_tokens` **include** cached, cache-write, audio and
//! image tokens; `completion_tokens`/`output_tokens` include reasoning and audio. The uncached
//! bucket is what remains after subtracting the parts; parts larger than their total reject the
//! record. This module also owns the OpenAI-compatible chat usage reader that OpenRouter,
//! LiteLLM, Helicone and Portkey reuse.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::fields::{self, FieldError};
use super::normalize::{self, apply_bag, fill_str, Draft};
use super::value::J;
use super::{MapCtx, Mapped};
use crate::domain::event::{CallStatus, UsageDetail};

pub const CHAT: &str = "openai.chat";
pub const RESPONSES: &str = "openai.responses";

/// Which OpenAI object a record holds, or `None` when it is not an OpenAI shape.
pub fn variant(v: &Value) -> Option<&'static str> {
    if let Some(resp) = pair_response(v) {
        return response_variant(resp).or_else(|| {
            // Only an OpenAI error body (no usage, nothing of its own to detect) is recognised
            // by its request; other providers' responses carry their own signatures.
            let error = resp.get("error")?;
            if resp.get("type").is_some() || error.get("status").is_some() {
                return None;
            }
            let req = v.get("request")?;
            if req.get("input").is_some() && req.get("messages").is_none() {
                Some(RESPONSES)
            } else if req.get("messages").is_some() {
                Some(CHAT)
            } else {
                None
            }
        });
    }
    response_variant(v)
}

/// The `response` of a `{request, response}` pair.
pub fn pair_response(v: &Value) -> Option<&Value> {
    let obj = v.as_object()?;
    if obj.contains_key("request") && obj.contains_key("response") {
        obj.get("response")
    } else {
        None
    }
}

fn response_variant(v: &Value) -> Option<&'static str> {
    if let Some(items) = v.as_array() {
        return items.iter().find_map(response_variant);
    }
    match v.get("object").and_then(Value::as_str) {
        Some("chat.completion" | "chat.completion.chunk") => return Some(CHAT),
        Some("response") => return Some(RESPONSES),
        _ => {}
    }
    if let Some(t) = v.get("type").and_then(Value::as_str) {
        if t.starts_with("response.") && v.get("response").is_some() {
            return Some(RESPONSES);
        }
    }
    None
}

/// Maps one OpenAI record.
pub fn map(v: &Value, variant: &'static str, cx: &MapCtx<'_>) -> Result<Mapped, FieldError> {
    let root = J::root(v, "");
    let mut d = Draft::new(variant);
    let pair = pair_response(v).is_some();
    let (resp_value, resp_prefix) = if pair {
        read_envelope(&root, &mut d, cx.now)?;
        let resp = pair_response(v).unwrap_or(&Value::Null);
        (collapse_stream(resp, variant)?, "response")
    } else {
        (collapse_stream(v, variant)?, "")
    };
    let resp = J::root(&resp_value, resp_prefix);
    if resp.has("error") && !resp.has("usage") && variant == CHAT {
        read_error(&resp, &mut d, cx)?;
    } else if variant == CHAT {
        read_chat(&resp, &mut d, cx)?;
    } else {
        read_responses(&resp, &mut d, cx)?;
    }
    if pair {
        root.with_obj("request", |req| read_request(&req, &mut d, cx))?;
    }
    Ok(Mapped::one(d.finish(
        cx.defaults,
        cx.now,
        cx.limits,
        if pair { "response.model" } else { "model" },
    )?))
}

/// Envelope fields of a `{request, response}` pair that no provider object carries: the HTTP
/// status, the start time and the latency, as the logging client measured them.
pub fn read_envelope(
    root: &J<'_, '_>,
    d: &mut Draft,
    now: DateTime<Utc>,
) -> Result<(), FieldError> {
    d.http_status = fields::http_status(&root.child_path("http_status"), root.int("http_status")?)?;
    if let Some(ts) = root.str("timestamp")? {
        d.ts = Some(normalize::flexible_timestamp("timestamp", ts, now)?);
    }
    if let Some(ms) = root.decimal("latency_ms")? {
        d.latency_ms = Some(fields::millis_decimal("latency_ms", ms)?);
    }
    if let Some(ms) = root.decimal("ttft_ms")? {
        d.ttft_ms = Some(fields::millis_decimal("ttft_ms", ms)?);
    }
    Ok(())
}

/// A logged stream is an array of chunks (chat) or events (Responses). Chat: the identity of the
/// first chunk with the usage of the last chunk that has one (only the final chunk carries it,
/// and only with `include_usage`). Responses: the `response` of the last terminal event. A
/// stream without any usage still becomes an event, with `usage_detail = missing`: the call
/// happened and is billed, the stream just broke off before the count arrived.
pub fn collapse_stream(v: &Value, variant: &str) -> Result<Value, FieldError> {
    let Some(items) = v.as_array() else {
        if variant == RESPONSES {
            if let (Some(t), Some(r)) = (v.get("type").and_then(Value::as_str), v.get("response")) {
                if t.starts_with("response.") {
                    return Ok(r.clone());
                }
            }
        }
        return Ok(v.clone());
    };
    if items.is_empty() {
        return Err(FieldError::new("response", "is an empty stream"));
    }
    if variant == RESPONSES {
        let last = items
            .iter()
            .rev()
            .find_map(|e| e.get("response").filter(|r| r.is_object()))
            .or_else(|| items.iter().rev().find(|e| e.get("object").is_some()));
        return last.cloned().ok_or_else(|| {
            FieldError::new(
                "response",
                "a Responses stream without any event carrying a `response` object",
            )
        });
    }
    let mut merged: Map<String, Value> = Map::new();
    for chunk in items {
        let Some(obj) = chunk.as_object() else {
            return Err(FieldError::new(
                "response",
                "stream items must be JSON objects",
            ));
        };
        for (key, val) in obj {
            if val.is_null() || key == "choices" {
                continue;
            }
            if key == "usage" {
                merged.insert(key.clone(), val.clone());
            } else {
                merged.entry(key.clone()).or_insert_with(|| val.clone());
            }
        }
    }
    merged.insert("stream".into(), Value::Bool(true));
    Ok(Value::Object(merged))
}

/// A Chat Completions object (or merged stream).
fn read_chat(r: &J<'_, '_>, d: &mut Draft, cx: &MapCtx<'_>) -> Result<(), FieldError> {
    let lim = cx.limits;
    let object = r.str("object")?;
    if object == Some("chat.completion.chunk") && !r.has("usage") && !r.has("stream") {
        return Err(r.err_at(
            "usage",
            "is missing: only the final chunk of a stream carries usage (request it with \
             stream_options.include_usage), or send the whole stream as {\"request\": …, \
             \"response\": [chunks…]}",
        ));
    }
    d.request_id = r.string("id", lim)?;
    d.model = r.string("model", lim)?;
    if let Some(created) = r.decimal("created")? {
        d.ts = Some(normalize::unix_seconds(&r.child_path("created"), created)?);
    }
    if let Some(tier) = r.str("service_tier")? {
        d.service_tier = normalize::service_tier(tier);
        d.meta_str("service_tier", Some(tier));
    }
    d.meta_str("system_fingerprint", r.str("system_fingerprint")?);
    if r.boolean("stream")? == Some(true) {
        d.meta_put("stream", Value::Bool(true));
    }
    d.operation = Some("chat".into());
    d.provider = Some("openai".into());
    let finish = r.each("choices", |_, c| {
        Ok(c.str("finish_reason")?.map(str::to_string))
    })?;
    if let Some(reason) = finish.into_iter().flatten().next() {
        d.meta_put("finish_reason", Value::String(reason));
    }
    r.with_obj("usage", |u| chat_usage(&u, d))?;
    if r.has("error") {
        r.with_obj("error", |e| read_error_object(&e, d, lim))?;
    }
    Ok(())
}

/// An OpenAI error body: the call failed and is recorded as an error with no usage.
fn read_error(r: &J<'_, '_>, d: &mut Draft, cx: &MapCtx<'_>) -> Result<(), FieldError> {
    d.provider = Some("openai".into());
    d.model = r.string("model", cx.limits)?;
    r.with_obj("error", |e| read_error_object(&e, d, cx.limits))?;
    Ok(())
}

fn read_error_object(e: &J<'_, '_>, d: &mut Draft, lim: &fields::Limits) -> Result<(), FieldError> {
    d.status = Some(CallStatus::Error);
    let code = e.id("code", lim)?;
    let kind = e.string("type", lim)?;
    d.error_type = code
        .clone()
        .or(kind.clone())
        .or_else(|| Some("error".into()));
    if let Some(msg) = e.str("message")? {
        let short: String = msg.chars().take(200).collect();
        d.meta_put("error_message", Value::String(short));
    }
    if let Some(k) = kind {
        d.meta_put("error_kind", Value::String(k));
    }
    Ok(())
}

/// OpenAI `CompletionUsage` (§1a): the rule shared by every OpenAI-compatible source.
pub fn chat_usage(u: &J<'_, '_>, d: &mut Draft) -> Result<(), FieldError> {
    let prompt = u
        .count("prompt_tokens")?
        .ok_or_else(|| u.err_at("prompt_tokens", "is required when usage is present"))?;
    let completion = u
        .count("completion_tokens")?
        .ok_or_else(|| u.err_at("completion_tokens", "is required when usage is present"))?;
    let pd = "prompt_tokens_details";
    let cd = "completion_tokens_details";
    let detail = |key: &str, name: &str| -> Result<u64, FieldError> {
        Ok(u.with(key, |x| x.count0(name))?.unwrap_or(0))
    };
    let cached = detail(pd, "cached_tokens")?;
    let cache_write = detail(pd, "cache_write_tokens")?;
    let audio_in = detail(pd, "audio_tokens")?;
    let image_in = detail(pd, "image_tokens")?;
    let audio_out = detail(cd, "audio_tokens")?;
    let reasoning = detail(cd, "reasoning_tokens")?;
    let p = |k: &str| format!("{}.{k}", u.child_path(pd));
    let c = |k: &str| format!("{}.{k}", u.child_path(cd));
    let input_uncached = fields::remainder(
        &u.child_path("prompt_tokens"),
        prompt,
        &[
            (p("cached_tokens").as_str(), cached),
            (p("cache_write_tokens").as_str(), cache_write),
            (p("audio_tokens").as_str(), audio_in),
            (p("image_tokens").as_str(), image_in),
        ],
    )?;
    let output = fields::remainder(
        &u.child_path("completion_tokens"),
        completion,
        &[(c("audio_tokens").as_str(), audio_out)],
    )?;
    check_reasoning(&c("reasoning_tokens"), reasoning, output)?;
    check_total(
        u,
        "total_tokens",
        prompt + completion,
        "prompt_tokens + completion_tokens",
    )?;
    d.tokens.input_uncached = input_uncached;
    d.tokens.cache_read = cached;
    d.tokens.cache_write_5m = cache_write;
    d.tokens.audio_in = audio_in;
    d.tokens.image_in = image_in;
    d.tokens.output = output;
    d.tokens.audio_out = audio_out;
    d.tokens.reasoning = reasoning;
    if cache_write > 0 {
        d.meta_put("cache_ttl_reported", Value::Bool(false));
    }
    for (obj, key, meta) in [
        (
            cd,
            "accepted_prediction_tokens",
            "accepted_prediction_tokens",
        ),
        (
            cd,
            "rejected_prediction_tokens",
            "rejected_prediction_tokens",
        ),
        (pd, "video_tokens", "video_tokens"),
    ] {
        if let Some(n) = u.with(obj, |x| x.count(key))?.flatten().filter(|n| *n > 0) {
            d.meta_put(meta, Value::from(n));
        }
    }
    d.usage_detail = if u.has(pd) && u.has(cd) {
        UsageDetail::Full
    } else {
        UsageDetail::Partial
    };
    Ok(())
}

/// Reasoning is a part of the text output; more reasoning than output means the source counts
/// differently than assumed.
pub fn check_reasoning(field: &str, reasoning: u64, output: u64) -> Result<(), FieldError> {
    if reasoning > output {
        return Err(FieldError::new(
            field,
            format!("{reasoning} exceeds the text output it is part of ({output})"),
        ));
    }
    Ok(())
}

/// A source's own total must equal the sum Tally derives from it; a mismatch means the
/// counts do not have the meaning the mapper assumed.
pub fn check_total(u: &J<'_, '_>, key: &str, want: u64, formula: &str) -> Result<(), FieldError> {
    if let Some(total) = u.count(key)? {
        if total != want {
            return Err(u.err_at(
                key,
                format!("{total} does not equal {formula} ({want}); the counts are inconsistent"),
            ));
        }
    }
    Ok(())
}

/// A Responses API `response` object (§1b).
fn read_responses(r: &J<'_, '_>, d: &mut Draft, cx: &MapCtx<'_>) -> Result<(), FieldError> {
    let lim = cx.limits;
    d.provider = Some("openai".into());
    d.operation = Some("responses".into());
    d.request_id = r.string("id", lim)?;
    d.model = r.string("model", lim)?;
    if let Some(created) = r.decimal("created_at")? {
        let start = normalize::unix_seconds(&r.child_path("created_at"), created)?;
        d.ts = Some(start);
        if let Some(done) = r.decimal("completed_at")? {
            let end = normalize::unix_seconds(&r.child_path("completed_at"), done)?;
            d.latency_ms = Some(normalize::span_ms(
                &r.child_path("completed_at"),
                start,
                end,
            )?);
        }
    }
    match r.str("status")? {
        None | Some("completed") => {}
        Some(s @ ("failed" | "cancelled" | "incomplete")) => {
            d.status = Some(CallStatus::Error);
            d.error_type = Some(s.to_string());
        }
        Some(s @ ("in_progress" | "queued")) => {
            return Err(r.err_at(
                "status",
                format!("{s:?} is not final; send the response once it has completed"),
            ))
        }
        Some(other) => {
            return Err(r.err_at(
                "status",
                format!(
                    "unknown status {other:?}; expected completed, failed, cancelled or incomplete"
                ),
            ))
        }
    }
    if r.has("error") {
        r.with_obj("error", |e| read_error_object(&e, d, lim))?;
    }
    if let Some(reason) = r
        .with_obj("incomplete_details", |x| {
            Ok(x.str("reason")?.map(str::to_string))
        })?
        .flatten()
    {
        d.meta_put("incomplete_reason", Value::String(reason));
    }
    if let Some(tier) = r.str("service_tier")? {
        d.service_tier = normalize::service_tier(tier);
        d.meta_str("service_tier", Some(tier));
    }
    read_identity(r, d, lim)?;
    // A conversation groups the turns of one session; a chain of previous responses is kept
    // for reference only (it names the previous call, not a session).
    if let Some(conv) = r.raw("conversation") {
        let id = match conv {
            Value::String(s) => Some(s.clone()),
            Value::Object(o) => o.get("id").and_then(Value::as_str).map(str::to_string),
            _ => None,
        };
        fill_str(&mut d.dims.session_id, id);
    }
    d.meta_str("previous_response_id", r.str("previous_response_id")?);
    let web_calls = r
        .each("output", |_, item| {
            Ok(item.str("type")? == Some("web_search_call"))
        })?
        .into_iter()
        .filter(|w| *w)
        .count();
    if web_calls > 0 {
        // The catalog has no per-call price for OpenAI's hosted tools, so the count is kept
        // as metadata rather than priced (see docs/formats.md).
        d.meta_put("web_search_calls", Value::from(web_calls));
    }
    if r.has("metadata") {
        r.with("metadata", |m| apply_bag(d, &m, lim))?;
    }
    r.with_obj("usage", |u| responses_usage(&u, d))?;
    Ok(())
}

/// The user identity fields OpenAI objects and requests share: `safety_identifier` (the
/// current, recommended one) before the deprecated `user`; the prompt-cache key is kept.
fn read_identity(r: &J<'_, '_>, d: &mut Draft, lim: &fields::Limits) -> Result<(), FieldError> {
    fill_str(&mut d.dims.user_id, r.string("safety_identifier", lim)?);
    fill_str(&mut d.dims.user_id, r.string("user", lim)?);
    d.meta_str("prompt_cache_key", r.str("prompt_cache_key")?);
    Ok(())
}

/// `ResponseUsage` (§1b).
fn responses_usage(u: &J<'_, '_>, d: &mut Draft) -> Result<(), FieldError> {
    let input = u
        .count("input_tokens")?
        .ok_or_else(|| u.err_at("input_tokens", "is required when usage is present"))?;
    let output = u
        .count("output_tokens")?
        .ok_or_else(|| u.err_at("output_tokens", "is required when usage is present"))?;
    let id = "input_tokens_details";
    let od = "output_tokens_details";
    let cached = u.with(id, |x| x.count0("cached_tokens"))?.unwrap_or(0);
    let cache_write = u.with(id, |x| x.count0("cache_write_tokens"))?.unwrap_or(0);
    let reasoning = u.with(od, |x| x.count0("reasoning_tokens"))?.unwrap_or(0);
    let i = |k: &str| format!("{}.{k}", u.child_path(id));
    d.tokens.input_uncached = fields::remainder(
        &u.child_path("input_tokens"),
        input,
        &[
            (i("cached_tokens").as_str(), cached),
            (i("cache_write_tokens").as_str(), cache_write),
        ],
    )?;
    check_reasoning(
        &format!("{}.reasoning_tokens", u.child_path(od)),
        reasoning,
        output,
    )?;
    check_total(
        u,
        "total_tokens",
        input + output,
        "input_tokens + output_tokens",
    )?;
    d.tokens.cache_read = cached;
    d.tokens.cache_write_5m = cache_write;
    d.tokens.output = output;
    d.tokens.reasoning = reasoning;
    if cache_write > 0 {
        d.meta_put("cache_ttl_reported", Value::Bool(false));
    }
    d.usage_detail = if u.has(id) && u.has(od) {
        UsageDetail::Full
    } else {
        UsageDetail::Partial
    };
    Ok(())
}

/// What the request of a pair adds: the requested model, the user, the caller's metadata, the
/// requested tier when the response did not say which tier served it.
fn read_request(req: &J<'_, '_>, d: &mut Draft, cx: &MapCtx<'_>) -> Result<(), FieldError> {
    let lim = cx.limits;
    let requested = req.string("model", lim)?;
    if d.model.is_none() {
        d.model.clone_from(&requested);
    }
    if requested != d.model {
        d.model_requested = requested;
    }
    read_identity(req, d, lim)?;
    if d.service_tier.is_none() {
        if let Some(tier) = req.str("service_tier")? {
            d.service_tier = normalize::service_tier(tier);
        }
    }
    if req.boolean("stream")? == Some(true) {
        d.meta_put("stream", Value::Bool(true));
    }
    if req.has("metadata") {
        req.with("metadata", |m| apply_bag(d, &m, lim))?;
    }
    Ok(())
}
