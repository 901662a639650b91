//! OpenRouter: chat responses with usage accounting, and `/api/v1/generation` records →
//! [`UsageEvent`] (formats.md §4).
//!
//! Responses (`openrouter.chat`): an OpenAI-shaped chat completion whose `usage` carries
//! `cost` in credits (one credit is one US dollar) and whose `openrouter_metadata` lists the
//! attempts; also as the final stream chunk, a logged stream, or a `{request, response}` pair
//! (request `user`, `session_id`, `trace`, `metadata`). Tokens follow the OpenAI chat rule.
//! Generation records (`openrouter.generation`, bare or as `{"data": …}`): tokens from the
//! provider-native counts (`native_tokens_*`, not OpenRouter's normalised `tokens_*`), cost
//! from `total_cost` in dollars; the field named `usage` there is a dollar amount and is not
//! read as tokens.
//!
//! Both carry the same `gen-…` id with provider `openrouter`, so a response logged by the
//! application and the generation record fetched later are one event. With BYOK the account
//! is charged OpenRouter's fee (`cost`) and the upstream provider bills the key separately
//! (`upstream_inference_cost`); the reported cost is their sum, the parts stay in metadata.

use rust_decimal::Decimal;
use serde_json::Value;

use super::fields::FieldError;
use super::normalize::{self, apply_bag, fill_str, CostUnit, Draft};
use super::openai::{chat_usage, check_reasoning, collapse_stream, pair_response, read_envelope};
use super::value::J;
use super::{fields, MapCtx, Mapped};
use crate::domain::event::{CallStatus, UsageDetail};

pub const CHAT: &str = "openrouter.chat";
pub const GENERATION: &str = "openrouter.generation";

/// Which OpenRouter shape a record holds.
pub fn variant(v: &Value) -> Option<&'static str> {
    if generation_body(v).is_some() {
        return Some(GENERATION);
    }
    let resp = pair_response(v).unwrap_or(v);
    let is_chat = |c: &Value| {
        let object = c.get("object").and_then(Value::as_str);
        matches!(object, Some("chat.completion" | "chat.completion.chunk"))
            && (c.get("openrouter_metadata").is_some()
                || c.get("usage").is_some_and(|u| u.get("cost").is_some())
                || c.get("id")
                    .and_then(Value::as_str)
                    .is_some_and(|id| id.starts_with("gen-")))
    };
    let hit = match resp.as_array() {
        Some(items) => items.iter().any(is_chat),
        None => is_chat(resp),
    };
    hit.then_some(CHAT)
}

/// The generation object: `data` of the API answer, or the record itself.
fn generation_body(v: &Value) -> Option<&Value> {
    let looks = |g: &Value| {
        g.is_object()
            && (g.get("native_tokens_prompt").is_some()
                || (g.get("total_cost").is_some() && g.get("provider_name").is_some()))
    };
    match v.get("data") {
        Some(inner) if looks(inner) => Some(inner),
        _ if looks(v) => Some(v),
        _ => None,
    }
}

pub fn map(v: &Value, variant: &'static str, cx: &MapCtx<'_>) -> Result<Mapped, FieldError> {
    let event = if variant == GENERATION {
        let (g, prefix) = match v.get("data").filter(|d| d.is_object()) {
            Some(inner) => (inner, "data"),
            None => (v, ""),
        };
        generation(&J::root(g, prefix), cx)?
    } else {
        chat(v, cx)?
    };
    Ok(Mapped::one(event))
}

fn chat(v: &Value, cx: &MapCtx<'_>) -> Result<crate::domain::event::UsageEvent, FieldError> {
    let lim = cx.limits;
    let root = J::root(v, "");
    let mut d = Draft::new(CHAT);
    d.provider = Some("openrouter".into());
    d.route = Some("openrouter".into());
    d.operation = Some("chat".into());
    let pair = pair_response(v);
    let resp_value = match pair {
        Some(r) => {
            read_envelope(&root, &mut d, cx.now)?;
            collapse_stream(r, super::openai::CHAT)?
        }
        None => collapse_stream(v, super::openai::CHAT)?,
    };
    let r = J::root(&resp_value, if pair.is_some() { "response" } else { "" });
    d.request_id = r.string("id", lim)?;
    d.model = r.string("model", lim)?;
    if let Some(created) = r.decimal("created")? {
        d.ts = Some(normalize::unix_seconds(&r.child_path("created"), created)?);
    }
    d.meta_str("upstream_provider", r.str("provider")?);
    if r.boolean("stream")? == Some(true) {
        d.meta_put("stream", Value::Bool(true));
    }
    if r.has("error") && !r.has("usage") {
        r.with_obj("error", |e| {
            d.status = Some(CallStatus::Error);
            d.error_type = e
                .id("code", lim)?
                .or(e.string("type", lim)?)
                .or_else(|| Some("error".into()));
            Ok(())
        })?;
    }
    r.with_obj("usage", |u| {
        chat_usage(&u, &mut d)?;
        let cost = u.decimal_text("cost")?;
        let byok = u.boolean("is_byok")?.unwrap_or(false);
        let upstream = u.with_obj("cost_details", |c| {
            for key in [
                "upstream_inference_prompt_cost",
                "upstream_inference_completions_cost",
            ] {
                if let Some((_, text)) = c.decimal_text(key)? {
                    d.meta_put(key, Value::String(text));
                }
            }
            c.decimal_text("upstream_inference_cost")
        })?;
        book_cost(
            &mut d,
            &u.child_path("cost"),
            cost,
            byok,
            upstream.flatten(),
            CostUnit::Credits,
        )?;
        u.with_obj("server_tool_use_details", |s| {
            d.web_search_requests = s.count0("web_search_requests")?;
            Ok(())
        })?;
        Ok(())
    })?;
    r.with_obj("openrouter_metadata", |m| {
        fill_str(&mut d.model_requested, m.string("requested", lim)?);
        let attempt = m.int("attempt")?;
        d.attempt = fields::attempt(&m.child_path("attempt"), attempt)?;
        let attempts = m.raw("attempts").and_then(Value::as_array);
        if let Some(list) = attempts {
            d.meta_put("attempts", Value::Array(list.clone()));
            let models: Vec<&str> = list
                .iter()
                .filter_map(|a| a.get("model").and_then(Value::as_str))
                .collect();
            let fallback = models.windows(2).any(|w| w[0] != w[1]);
            d.meta_put("fallback_used", Value::Bool(fallback));
            if let Some(first_failed) = list
                .iter()
                .rev()
                .skip(1)
                .find_map(|a| a.get("model").and_then(Value::as_str))
            {
                if fallback {
                    d.meta_put(
                        "fallback_from_model",
                        Value::String(first_failed.to_string()),
                    );
                }
            }
        }
        for key in ["strategy", "region"] {
            d.meta_str(key, m.str(key)?);
        }
        Ok(())
    })?;
    if pair.is_some() {
        root.with_obj("request", |req| {
            let requested = req.string("model", lim)?;
            if d.model.is_none() {
                d.model.clone_from(&requested);
            }
            if requested != d.model {
                fill_str(&mut d.model_requested, requested);
            }
            fill_str(&mut d.dims.user_id, req.string("user", lim)?);
            fill_str(&mut d.dims.session_id, req.string("session_id", lim)?);
            req.with_obj("trace", |t| {
                fill_str(&mut d.dims.trace_id, t.string("trace_id", lim)?);
                fill_str(&mut d.dims.parent_span_id, t.string("parent_span_id", lim)?);
                for key in ["trace_name", "span_name", "generation_name"] {
                    d.meta_str(key, t.str(key)?);
                }
                Ok(())
            })?;
            if let Some(models) = req.raw("models").filter(|m| m.is_array()) {
                d.meta_put("models_requested", models.clone());
            }
            if req.has("metadata") {
                req.with("metadata", |m| apply_bag(&mut d, &m, lim))?;
            }
            Ok(())
        })?;
    }
    if d.model_requested == d.model {
        d.model_requested = None;
    }
    d.finish(
        cx.defaults,
        cx.now,
        lim,
        if pair.is_some() {
            "response.model"
        } else {
            "model"
        },
    )
}

/// Books OpenRouter's charge: the credits it took, plus, with BYOK, what the upstream provider
/// billed the user's own key.
fn book_cost(
    d: &mut Draft,
    field: &str,
    cost: Option<(Decimal, String)>,
    byok: bool,
    upstream: Option<(Decimal, String)>,
    unit: CostUnit,
) -> Result<(), FieldError> {
    if byok {
        d.meta_put("is_byok", Value::Bool(true));
    }
    let Some((value, text)) = cost else {
        return Ok(());
    };
    match upstream.filter(|(u, _)| byok && !u.is_zero()) {
        Some((up, up_text)) => {
            let total = value + up;
            d.set_cost(field, total, &total.to_string(), unit)?;
            d.meta.insert("openrouter_fee".into(), Value::String(text));
            d.meta
                .insert("upstream_inference_cost".into(), Value::String(up_text));
        }
        None => d.set_cost(field, value, &text, unit)?,
    }
    Ok(())
}

fn generation(
    g: &J<'_, '_>,
    cx: &MapCtx<'_>,
) -> Result<crate::domain::event::UsageEvent, FieldError> {
    let lim = cx.limits;
    let mut d = Draft::new(GENERATION);
    d.provider = Some("openrouter".into());
    d.route = Some("openrouter".into());
    d.operation = Some("chat".into());
    d.request_id = g.string("id", lim)?;
    d.model = g.string("model", lim)?;
    d.meta_str("openrouter_request_id", g.str("request_id")?);
    d.dims.session_id = g.string("session_id", lim)?;
    d.dims.user_id = g.id("external_user", lim)?;
    if let Some(t) = g.str("created_at")? {
        d.ts = Some(normalize::flexible_timestamp(
            &g.child_path("created_at"),
            t,
            cx.now,
        )?);
    }
    d.meta_str("upstream_provider", g.str("provider_name")?);
    d.meta_str("upstream_id", g.str("upstream_id")?);
    if let Some(ms) = g.decimal("latency")? {
        d.latency_ms = Some(fields::millis_decimal(&g.child_path("latency"), ms)?);
    }
    for key in ["generation_time", "moderation_latency"] {
        if let Some((_, text)) = g.decimal_text(key)? {
            d.meta_put(key, Value::String(text));
        }
    }
    if g.boolean("streamed")? == Some(true) {
        d.meta_put("stream", Value::Bool(true));
    }
    if g.boolean("cancelled")? == Some(true) {
        d.status = Some(CallStatus::Error);
        d.error_type = Some("cancelled".into());
    }
    for key in [
        "finish_reason",
        "native_finish_reason",
        "app_id",
        "http_referer",
        "origin",
        "api_type",
        "router",
        "preset_id",
        "data_region",
        "workspace_id",
        "web_search_engine",
    ] {
        if let Some(v) = g.raw(key).filter(|v| v.is_string() || v.is_number()) {
            d.meta_put(key, v.clone());
        }
    }
    if let Some(tier) = g.str("service_tier")? {
        d.service_tier = normalize::service_tier(tier);
    }
    if let Some((_, text)) = g.decimal_text("cache_discount")? {
        d.meta_put("cache_discount", Value::String(text));
    }
    for key in ["tokens_prompt", "tokens_completion"] {
        if let Some(n) = g.count(key)? {
            d.meta_put(key, Value::from(n));
        }
    }

    let prompt = g.count("native_tokens_prompt")?;
    let completion = g.count("native_tokens_completion")?;
    if prompt.is_some() || completion.is_some() {
        let prompt = prompt.unwrap_or(0);
        let completion = completion.unwrap_or(0);
        let cached = g.count("native_tokens_cached")?;
        let reasoning = g.count0("native_tokens_reasoning")?;
        let images = g.count0("native_tokens_completion_images")?;
        d.tokens.input_uncached = fields::remainder(
            &g.child_path("native_tokens_prompt"),
            prompt,
            &[(
                g.child_path("native_tokens_cached").as_str(),
                cached.unwrap_or(0),
            )],
        )?;
        d.tokens.cache_read = cached.unwrap_or(0);
        d.tokens.image_out = images;
        d.tokens.output = fields::remainder(
            &g.child_path("native_tokens_completion"),
            completion,
            &[(
                g.child_path("native_tokens_completion_images").as_str(),
                images,
            )],
        )?;
        check_reasoning(
            &g.child_path("native_tokens_reasoning"),
            reasoning,
            d.tokens.output,
        )?;
        d.tokens.reasoning = reasoning;
        d.usage_detail = if cached.is_some() {
            UsageDetail::Full
        } else {
            UsageDetail::Partial
        };
    }
    let cost = g.decimal_text("total_cost")?;
    let byok = g.boolean("is_byok")?.unwrap_or(false);
    let upstream = g.decimal_text("upstream_inference_cost")?;
    book_cost(
        &mut d,
        &g.child_path("total_cost"),
        cost,
        byok,
        upstream,
        CostUnit::Usd,
    )?;

    let attempts = g.raw("provider_responses").and_then(Value::as_array);
    if let Some(list) = attempts.filter(|l| !l.is_empty()) {
        d.meta_put("attempts", Value::Array(list.clone()));
        d.attempt = u32::try_from(list.len()).ok();
        d.meta_put("fallback_used", Value::Bool(list.len() > 1));
    }
    d.finish(cx.defaults, cx.now, lim, &g.child_path("model"))
}
