//! Portkey log export (JSONL) rows → [`UsageEvent`] (formats.md §6b).
//!
//! Portkey exports totals only (`req_units`, `res_units`), so buckets are `input_uncached =
//! req_units`, `output = res_units` with `usage_detail = totals_only` — unless the row carries
//! the provider's response body with its usage object, which is then mapped with that
//! provider's own rules (cache and reasoning split included). `cost` is in **cents** and is
//! converted exactly; the original stays in metadata. `is_success` is `1`/`0`. A Portkey cache
//! hit called no provider: its buckets are zero.

use serde_json::Value;

use super::fields::{self, FieldError};
use super::normalize::{self, apply_bag, fill_str, CostUnit, Draft};
use super::value::J;
use super::{detect, MapCtx, Mapped};
use crate::domain::event::{CallStatus, UsageDetail};

pub const SOURCE: &str = "portkey.export";

pub fn matches(v: &Value) -> bool {
    let has = |k: &str| v.get(k).is_some();
    has("ai_org") || has("req_units") || has("res_units") || (has("is_success") && has("ai_model"))
}

/// `request.body` / `response.body`, nested or as flat dotted keys, possibly as JSON text.
fn body<'a>(v: &'a Value, side: &str) -> Option<std::borrow::Cow<'a, Value>> {
    let raw = v
        .get(side)
        .and_then(|s| s.get("body"))
        .or_else(|| v.get(format!("{side}.body").as_str()))?;
    match raw {
        Value::String(text) => serde_json::from_str(text).ok().map(std::borrow::Cow::Owned),
        Value::Null => None,
        other => Some(std::borrow::Cow::Borrowed(other)),
    }
}

pub fn map(v: &Value, cx: &MapCtx<'_>) -> Result<Mapped, FieldError> {
    let lim = cx.limits;
    let r = J::root(v, "");
    let response = body(v, "response");
    let request = body(v, "request");
    let from_body = response
        .as_deref()
        .filter(|b| b.get("usage").is_some() || b.get("usageMetadata").is_some())
        .and_then(|b| detect::map_provider_exchange(request.as_deref(), b, cx));
    let mut d = match from_body {
        Some(result) => {
            let ev = result.map_err(|mut e| {
                e.field = e.field.replacen("response", "response.body", 1);
                e
            })?;
            Draft::from_event(ev, SOURCE)
        }
        None => {
            let mut d = Draft::new(SOURCE);
            let input = r.count("req_units")?;
            let output = r.count("res_units")?;
            if input.is_some() || output.is_some() {
                d.tokens.input_uncached = input.unwrap_or(0);
                d.tokens.output = output.unwrap_or(0);
                d.usage_detail = UsageDetail::TotalsOnly;
                if let Some(total) = r.count("total_units")? {
                    let want = d.tokens.input_uncached + d.tokens.output;
                    if total != want {
                        return Err(r.err_at(
                            "total_units",
                            format!("{total} does not equal req_units + res_units ({want})"),
                        ));
                    }
                }
            }
            d
        }
    };
    d.route = Some("portkey".into());
    if let Some(org) = r.str("ai_org")? {
        d.provider = Some(org.to_ascii_lowercase());
    }
    if let Some(model) = r.string("ai_model", lim)? {
        if d.model.is_none() {
            d.model = Some(model);
        } else if d.model.as_deref() != Some(model.as_str()) {
            fill_str(&mut d.model_requested, Some(model));
        }
    }
    if let Some(id) = r.id("id", lim)? {
        d.idem_key = Some(format!("portkey:{id}"));
    }
    if let Some(t) = r.str("created_at")? {
        d.ts = Some(normalize::flexible_timestamp("created_at", t, cx.now)?);
    }
    match r.boolean("is_success")? {
        Some(true) => d.status = Some(CallStatus::Success),
        Some(false) => {
            d.status = Some(CallStatus::Error);
            fill_str(&mut d.error_type, Some("error".into()));
        }
        None => {}
    }
    if let Some(code) = r.int("response_status_code")? {
        d.http_status = fields::http_status("response_status_code", Some(code))?;
        if code >= 400 {
            d.error_type = Some(format!("http_{code}"));
        }
    }
    if let Some(ms) = r.decimal("response_time")? {
        d.latency_ms = Some(fields::millis_decimal("response_time", ms)?);
    }
    fill_str(&mut d.dims.trace_id, r.string("trace_id", lim)?);
    fill_str(&mut d.dims.span_id, r.string("span_id", lim)?);
    fill_str(&mut d.dims.parent_span_id, r.string("parent_span_id", lim)?);
    fill_str(&mut d.dims.api_key_id, r.string("virtual_key", lim)?);
    if let Some(retries) = r.count("retry_success_count")? {
        d.attempt = u32::try_from(retries + 1).ok();
        d.meta_put("retries", Value::from(retries));
    }
    for key in [
        "mode",
        "cache_status",
        "cache_type",
        "stream_mode",
        "config",
        "prompt_slug",
        "prompt_version_id",
        "request_url",
        "request_method",
    ] {
        if let Some(v) = r
            .raw(key)
            .filter(|v| v.is_string() || v.is_number() || v.is_boolean())
        {
            d.meta_put(&format!("portkey_{key}"), v.clone());
        }
    }
    let metadata = match r.raw("metadata") {
        Some(Value::String(s)) if !s.trim().is_empty() => {
            Some(normalize::parse_json_string_object("metadata", s)?)
        }
        Some(v) if v.is_object() => Some(v.clone()),
        _ => None,
    };
    if let Some(m) = metadata.as_ref().filter(|m| m.is_object()) {
        apply_bag(&mut d, &J::root(m, "metadata"), lim)?;
    }
    let cache_hit = matches!(
        r.str("cache_status")?
            .map(str::to_ascii_uppercase)
            .as_deref(),
        Some("HIT" | "SEMANTIC HIT" | "SEMANTIC_HIT")
    );
    if cache_hit {
        let t = d.tokens;
        d.meta_put("gateway_cache_hit", Value::Bool(true));
        d.meta_put("cached_response_input_tokens", Value::from(t.input_total()));
        d.meta_put(
            "cached_response_output_tokens",
            Value::from(t.output_total()),
        );
        d.tokens = Default::default();
    }
    if let Some((value, text)) = r.decimal_text("cost")? {
        d.set_cost("cost", value, &text, CostUnit::Cents)?;
        if let Some(cur) = fields::currency(
            "cost_currency",
            r.str("cost_currency")?.map(Into::into),
            true,
        )? {
            d.currency = Some(cur);
        }
    }
    Ok(Mapped::one(d.finish(
        cx.defaults,
        cx.now,
        lim,
        "ai_model",
    )?))
}
