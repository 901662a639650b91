//! Anthropic Messages API responses → [`UsageEvent`] (formats.md §2a).
//!
//! Accepted records: a `message` object; a `{"request": …, "response": …}` pair whose response
//! is a message, an Anthropic error body, or the whole stream as an array of events
//! (`message_start` carries the message, `message_delta.usage` carries **cumulative** counts:
//! the last value wins, deltas are never summed). The request adds `metadata.user_id` (the only
//! request metadata key Anthropic has) and the requested model.
//!
//! Token contract: Anthropic's `input_tokens` **excludes** cache reads and writes, so every
//! count maps straight to its bucket: `input_uncached = input_tokens`, `cache_read =
//! cache_read_input_tokens`, cache writes split by TTL from `cache_creation` (5m/1h; without
//! the split, all of `cache_creation_input_tokens` is booked at the 5-minute rate and
//! `metadata.cache_ttl_reported = false`). Server-side web searches are billed per request.
//! This module also owns that usage reader for Bedrock's Anthropic bodies.

use serde_json::{Map, Value};

use super::fields::FieldError;
use super::normalize::{fill_str, Draft};
use super::openai::{check_reasoning, read_envelope};
use super::value::J;
use super::{MapCtx, Mapped};
use crate::domain::event::{CallStatus, UsageDetail};

pub const MESSAGES: &str = "anthropic.messages";

/// True for an Anthropic message, stream or pair.
pub fn matches(v: &Value) -> bool {
    if let Some(resp) = super::openai::pair_response(v) {
        return is_response(resp);
    }
    is_message(v)
}

fn is_message(v: &Value) -> bool {
    v.get("type").and_then(Value::as_str) == Some("message")
        && v.get("usage")
            .is_some_and(|u| u.get("input_tokens").is_some())
}

fn is_response(v: &Value) -> bool {
    if let Some(items) = v.as_array() {
        return items
            .iter()
            .any(|e| e.get("type").and_then(Value::as_str) == Some("message_start"));
    }
    is_message(v)
        || (v.get("type").and_then(Value::as_str) == Some("error")
            && v.get("error").is_some_and(Value::is_object))
}

/// Maps one Anthropic record.
pub fn map(v: &Value, cx: &MapCtx<'_>) -> Result<Mapped, FieldError> {
    let root = J::root(v, "");
    let mut d = Draft::new(MESSAGES);
    d.provider = Some("anthropic".into());
    d.operation = Some("chat".into());
    let pair = super::openai::pair_response(v);
    let message = match pair {
        Some(resp) => {
            read_envelope(&root, &mut d, cx.now)?;
            collapse_stream(resp)?
        }
        None => v.clone(),
    };
    let prefix = if pair.is_some() { "response" } else { "" };
    let m = J::root(&message, prefix);
    if m.str("type")? == Some("error") {
        m.with_obj("error", |e| {
            d.status = Some(CallStatus::Error);
            d.error_type = e
                .string("type", cx.limits)?
                .or_else(|| Some("error".into()));
            if let Some(msg) = e.str("message")? {
                d.meta_put(
                    "error_message",
                    Value::String(msg.chars().take(200).collect()),
                );
            }
            Ok(())
        })?;
    } else {
        read_message(&m, &mut d, cx)?;
    }
    if pair.is_some() {
        root.with_obj("request", |req| {
            let requested = req.string("model", cx.limits)?;
            if d.model.is_none() {
                d.model.clone_from(&requested);
            }
            if requested != d.model {
                d.model_requested = requested;
            }
            req.with_obj("metadata", |md| {
                fill_str(&mut d.dims.user_id, md.string("user_id", cx.limits)?);
                Ok(())
            })?;
            if let Some(tier) = req.str("service_tier")? {
                d.meta_str("service_tier_requested", Some(tier));
            }
            if req.boolean("stream")? == Some(true) {
                d.meta_put("stream", Value::Bool(true));
            }
            Ok(())
        })?;
    }
    Ok(Mapped::one(d.finish(
        cx.defaults,
        cx.now,
        cx.limits,
        if pair.is_some() {
            "response.model"
        } else {
            "model"
        },
    )?))
}

/// Rebuilds the final message of a logged stream: the `message_start` message with every usage
/// field that a later `message_delta` reported replaced by the delta's (cumulative) value.
fn collapse_stream(v: &Value) -> Result<Value, FieldError> {
    let Some(events) = v.as_array() else {
        return Ok(v.clone());
    };
    let mut message: Option<Map<String, Value>> = None;
    let mut last_usage: Option<&Map<String, Value>> = None;
    let mut stop_reason = None;
    let mut error = None;
    for ev in events {
        match ev.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                message = ev.get("message").and_then(Value::as_object).cloned();
            }
            Some("message_delta") => {
                if let Some(u) = ev.get("usage").and_then(Value::as_object) {
                    last_usage = Some(u);
                }
                if let Some(r) = ev.get("delta").and_then(|d| d.get("stop_reason")) {
                    stop_reason = Some(r.clone());
                }
            }
            Some("error") => error = Some(ev.clone()),
            _ => {}
        }
    }
    let Some(mut message) = message else {
        return match error {
            Some(e) => Ok(e),
            None => Err(FieldError::new(
                "response",
                "a stream without a message_start event; it carries the model, id and usage",
            )),
        };
    };
    if let Some(delta) = last_usage {
        let usage = message
            .entry("usage")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(u) = usage.as_object_mut() {
            for (k, val) in delta {
                if !val.is_null() {
                    u.insert(k.clone(), val.clone());
                }
            }
        }
    }
    if let Some(r) = stop_reason.filter(|r| !r.is_null()) {
        message.insert("stop_reason".into(), r);
    }
    message.insert("stream".into(), Value::Bool(true));
    Ok(Value::Object(message))
}

fn read_message(m: &J<'_, '_>, d: &mut Draft, cx: &MapCtx<'_>) -> Result<(), FieldError> {
    let lim = cx.limits;
    d.request_id = m.string("id", lim)?;
    d.model = m.string("model", lim)?;
    d.meta_str("stop_reason", m.str("stop_reason")?);
    if m.boolean("stream")? == Some(true) {
        d.meta_put("stream", Value::Bool(true));
    }
    m.with_obj("usage", |u| usage(&u, d))?;
    Ok(())
}

/// Anthropic `Usage` (§2a), exclusive counts.
pub fn usage(u: &J<'_, '_>, d: &mut Draft) -> Result<(), FieldError> {
    let input = u
        .count("input_tokens")?
        .ok_or_else(|| u.err_at("input_tokens", "is required when usage is present"))?;
    let output = u.count0("output_tokens")?;
    let cache_read = u.count0("cache_read_input_tokens")?;
    let creation = u.count("cache_creation_input_tokens")?;
    let split = u.with_obj("cache_creation", |c| {
        Ok((
            c.count0("ephemeral_5m_input_tokens")?,
            c.count0("ephemeral_1h_input_tokens")?,
        ))
    })?;
    let (w5, w1) = match (split, creation) {
        (Some((w5, w1)), Some(total)) if w5 + w1 != total => {
            return Err(u.err_at(
                "cache_creation",
                format!(
                    "ephemeral_5m_input_tokens ({w5}) + ephemeral_1h_input_tokens ({w1}) must \
                     equal cache_creation_input_tokens ({total})"
                ),
            ))
        }
        (Some(split), _) => split,
        (None, total) => {
            let total = total.unwrap_or(0);
            if total > 0 {
                d.meta_put("cache_ttl_reported", Value::Bool(false));
            }
            (total, 0)
        }
    };
    let reasoning = u
        .with_obj("output_tokens_details", |o| o.count0("thinking_tokens"))?
        .unwrap_or(0);
    check_reasoning(
        &format!("{}.thinking_tokens", u.child_path("output_tokens_details")),
        reasoning,
        output,
    )?;
    d.tokens.input_uncached = input;
    d.tokens.cache_read = cache_read;
    d.tokens.cache_write_5m = w5;
    d.tokens.cache_write_1h = w1;
    d.tokens.output = output;
    d.tokens.reasoning = reasoning;
    u.with_obj("server_tool_use", |s| {
        d.web_search_requests = s.count0("web_search_requests")?;
        if let Some(n) = s.count("web_fetch_requests")?.filter(|n| *n > 0) {
            d.meta_put("web_fetch_requests", Value::from(n));
        }
        Ok(())
    })?;
    if let Some(tier) = u.str("service_tier")? {
        d.service_tier = super::normalize::service_tier(tier);
    }
    d.meta_str("inference_geo", u.str("inference_geo")?);
    // The cache counts are optional in the API; a message without them (older models, no
    // caching) reports everything it has, so the detail is full either way.
    d.usage_detail = if u.has("output_tokens") {
        UsageDetail::Full
    } else {
        UsageDetail::Partial
    };
    Ok(())
}
