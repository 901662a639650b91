//! Google Gemini `generateContent` responses → [`UsageEvent`] (formats.md §3).
//!
//! Accepted records: a response with `usageMetadata`; a stream logged as an array of response
//! chunks (each chunk's `usageMetadata` is cumulative, so the last one wins); or either as the
//! `response` of a `{"request": …, "response": …}` pair, which may also be a Google error body.
//! REST camelCase and the Python SDK's snake_case are both read, because gateways that log the
//! SDK object emit the latter.
//!
//! Token contract: `promptTokenCount` **includes** the cached content; `candidatesTokenCount`
//! **excludes** thoughts, so output is candidates + thoughts. Modality lists include the cached
//! tokens of their modality, so the cached part is taken off audio and image before they get
//! their buckets (cache before modality). Tool-use prompt tokens are input and stay in the
//! uncached bucket; video and document counts stay there too and are kept in metadata.

use serde_json::{Map, Value};

use super::fields::{self, FieldError};
use super::normalize::{self, apply_bag, Draft};
use super::openai::{check_total, read_envelope};
use super::value::J;
use super::{MapCtx, Mapped};
use crate::domain::event::{CallStatus, UsageDetail};

pub const GENERATE: &str = "gemini.generate_content";

/// True for a Gemini response, stream or pair.
pub fn matches(v: &Value) -> bool {
    if let Some(resp) = super::openai::pair_response(v) {
        return is_response(resp)
            || resp
                .get("error")
                .is_some_and(|e| e.get("status").is_some() && e.get("code").is_some())
                && v.get("request")
                    .is_some_and(|r| r.get("contents").is_some());
    }
    is_response(v)
}

fn is_response(v: &Value) -> bool {
    if let Some(items) = v.as_array() {
        return !items.is_empty() && items.iter().any(is_response);
    }
    v.get("usageMetadata").is_some()
        || v.get("usage_metadata").is_some()
        || (v.get("candidates").is_some()
            && (v.get("modelVersion").is_some() || v.get("model_version").is_some()))
}

/// The REST (camelCase) name when present, else the SDK (snake_case) one.
fn pick<'k>(j: &J<'_, '_>, camel: &'k str, snake: &'k str) -> &'k str {
    if j.has(camel) {
        camel
    } else {
        snake
    }
}

/// Maps one Gemini record.
pub fn map(v: &Value, cx: &MapCtx<'_>) -> Result<Mapped, FieldError> {
    let root = J::root(v, "");
    let mut d = Draft::new(GENERATE);
    d.provider = Some("google".into());
    d.operation = Some("chat".into());
    let pair = super::openai::pair_response(v);
    let resp = match pair {
        Some(r) => {
            read_envelope(&root, &mut d, cx.now)?;
            collapse_stream(r)?
        }
        None => collapse_stream(v)?,
    };
    let r = J::root(&resp, if pair.is_some() { "response" } else { "" });
    if r.has("error") && !r.has(pick(&r, "usageMetadata", "usage_metadata")) {
        r.with_obj("error", |e| {
            d.status = Some(CallStatus::Error);
            d.error_type = e
                .string("status", cx.limits)?
                .or_else(|| Some("error".into()));
            if let Some(code) = e.int("code")? {
                d.http_status = d
                    .http_status
                    .or(fields::http_status("response.error.code", Some(code))?);
            }
            if let Some(msg) = e.str("message")? {
                d.meta_put(
                    "error_message",
                    Value::String(msg.chars().take(200).collect()),
                );
            }
            Ok(())
        })?;
    } else {
        read_response(&r, &mut d, cx)?;
    }
    if pair.is_some() {
        root.with_obj("request", |req| {
            let requested = req
                .string("model", cx.limits)?
                .map(|m| m.trim_start_matches("models/").to_string());
            if d.model.is_none() {
                d.model.clone_from(&requested);
            }
            if requested != d.model {
                d.model_requested = requested;
            }
            // Vertex AI request labels are the caller's key-value bag.
            if req.has("labels") {
                req.with("labels", |l| apply_bag(&mut d, &l, cx.limits))?;
            }
            Ok(())
        })?;
    }
    Ok(Mapped::one(d.finish(
        cx.defaults,
        cx.now,
        cx.limits,
        if pair.is_some() {
            "response.modelVersion"
        } else {
            "modelVersion"
        },
    )?))
}

/// A streamed response: identity from the first chunk that has it, usage from the last.
fn collapse_stream(v: &Value) -> Result<Value, FieldError> {
    let Some(items) = v.as_array() else {
        return Ok(v.clone());
    };
    let mut merged = Map::new();
    for chunk in items {
        let Some(obj) = chunk.as_object() else {
            return Err(FieldError::new(
                "response",
                "stream items must be JSON objects",
            ));
        };
        for (k, val) in obj {
            if val.is_null() || k == "candidates" {
                continue;
            }
            if k == "usageMetadata" || k == "usage_metadata" {
                merged.insert(k.clone(), val.clone());
            } else {
                merged.entry(k.clone()).or_insert_with(|| val.clone());
            }
        }
    }
    merged.insert("stream".into(), Value::Bool(true));
    Ok(Value::Object(merged))
}

fn read_response(r: &J<'_, '_>, d: &mut Draft, cx: &MapCtx<'_>) -> Result<(), FieldError> {
    let lim = cx.limits;
    d.request_id = r.string(pick(r, "responseId", "response_id"), lim)?;
    d.model = r
        .string(pick(r, "modelVersion", "model_version"), lim)?
        .map(|m| m.trim_start_matches("models/").to_string());
    if let Some(t) = r.str(pick(r, "createTime", "create_time"))? {
        d.ts = Some(normalize::flexible_timestamp(
            &r.child_path(pick(r, "createTime", "create_time")),
            t,
            cx.now,
        )?);
    }
    if r.boolean("stream")? == Some(true) {
        d.meta_put("stream", Value::Bool(true));
    }
    let reasons = r.each("candidates", |_, c| {
        Ok(c.str(pick(&c, "finishReason", "finish_reason"))?
            .map(str::to_string))
    })?;
    if let Some(reason) = reasons.into_iter().flatten().next() {
        d.meta_put("finish_reason", Value::String(reason));
    }
    let key = pick(r, "usageMetadata", "usage_metadata");
    r.with_obj(key, |u| usage(&u, d))?;
    Ok(())
}

/// Sums of one modality list by modality.
#[derive(Default)]
struct Modalities {
    audio: u64,
    image: u64,
    video: u64,
    document: u64,
}

fn modalities(u: &J<'_, '_>, camel: &str, snake: &str) -> Result<Modalities, FieldError> {
    let mut m = Modalities::default();
    let key = pick(u, camel, snake);
    u.each(key, |_, item| {
        let n = item.count0(pick(&item, "tokenCount", "token_count"))?;
        match item
            .str("modality")?
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            Some("AUDIO") => m.audio += n,
            Some("IMAGE") => m.image += n,
            Some("VIDEO") => m.video += n,
            Some("DOCUMENT") => m.document += n,
            _ => {}
        }
        Ok(())
    })?;
    Ok(m)
}

/// `GenerateContentResponseUsageMetadata` (§3).
fn usage(u: &J<'_, '_>, d: &mut Draft) -> Result<(), FieldError> {
    let f = |camel: &str, snake: &str| -> Result<(u64, String), FieldError> {
        let key = pick(u, camel, snake);
        Ok((u.count0(key)?, u.child_path(key)))
    };
    let (prompt, prompt_f) = f("promptTokenCount", "prompt_token_count")?;
    let (cached, cached_f) = f("cachedContentTokenCount", "cached_content_token_count")?;
    let (candidates, _) = f("candidatesTokenCount", "candidates_token_count")?;
    let (thoughts, _) = f("thoughtsTokenCount", "thoughts_token_count")?;
    let (tool, tool_f) = f("toolUsePromptTokenCount", "tool_use_prompt_token_count")?;
    let p = modalities(u, "promptTokensDetails", "prompt_tokens_details")?;
    let c = modalities(u, "cacheTokensDetails", "cache_tokens_details")?;
    let t = modalities(
        u,
        "toolUsePromptTokensDetails",
        "tool_use_prompt_tokens_details",
    )?;
    let o = modalities(u, "candidatesTokensDetails", "candidates_tokens_details")?;

    let cache_details = u.child_path(pick(u, "cacheTokensDetails", "cache_tokens_details"));
    let audio_in = fields::remainder(
        &format!(
            "{}[AUDIO]",
            u.child_path(pick(u, "promptTokensDetails", "prompt_tokens_details"))
        ),
        p.audio + t.audio,
        &[(format!("{cache_details}[AUDIO]").as_str(), c.audio)],
    )?;
    let image_in = fields::remainder(
        &format!(
            "{}[IMAGE]",
            u.child_path(pick(u, "promptTokensDetails", "prompt_tokens_details"))
        ),
        p.image + t.image,
        &[(format!("{cache_details}[IMAGE]").as_str(), c.image)],
    )?;
    let input_total = prompt + tool;
    let input_uncached = fields::remainder(
        &format!("{prompt_f} + {tool_f}"),
        input_total,
        &[
            (cached_f.as_str(), cached),
            (
                "audio input (prompt + tool-use audio − cached audio)",
                audio_in,
            ),
            (
                "image input (prompt + tool-use image − cached image)",
                image_in,
            ),
        ],
    )?;
    let output_total = candidates + thoughts;
    let output = fields::remainder(
        "candidatesTokenCount + thoughtsTokenCount",
        output_total,
        &[
            ("candidatesTokensDetails[AUDIO]", o.audio),
            ("candidatesTokensDetails[IMAGE]", o.image),
        ],
    )?;
    check_total(
        u,
        pick(u, "totalTokenCount", "total_token_count"),
        input_total + output_total,
        "promptTokenCount + toolUsePromptTokenCount + candidatesTokenCount + thoughtsTokenCount",
    )?;
    d.tokens.input_uncached = input_uncached;
    d.tokens.cache_read = cached;
    d.tokens.audio_in = audio_in;
    d.tokens.image_in = image_in;
    d.tokens.output = output;
    d.tokens.reasoning = thoughts;
    d.tokens.audio_out = o.audio;
    d.tokens.image_out = o.image;
    for (key, n) in [
        ("tool_use_prompt_tokens", tool),
        ("video_input_tokens", p.video + t.video),
        ("document_input_tokens", p.document + t.document),
    ] {
        if n > 0 {
            d.meta_put(key, Value::from(n));
        }
    }
    if let Some(traffic) = u.str(pick(u, "trafficType", "traffic_type"))? {
        d.meta_put("traffic_type", Value::String(traffic.to_string()));
        d.service_tier = match traffic {
            "ON_DEMAND_FLEX" => Some("flex".into()),
            "ON_DEMAND_PRIORITY" => Some("priority".into()),
            _ => None,
        };
    }
    d.usage_detail = if u.has(pick(u, "promptTokensDetails", "prompt_tokens_details")) {
        UsageDetail::Full
    } else {
        UsageDetail::Partial
    };
    Ok(())
}
