//! Cloudflare AI Gateway log rows → [`UsageEvent`] (formats.md §6c).
//!
//! Accepted records: one row of the Logs API (`GET …/ai-gateway/gateways/{id}/logs`), or the
//! API's whole answer (`{"result": [rows…], "success": true, …}`), each row one event. The REST
//! API returns `metadata` (from the `cf-aig-metadata` header) as a **JSON string**; the Workers
//! binding returns an object; both are read, and values such as `"user": 12345` become string
//! ids. Totals only: `input_uncached = tokens_in`, `output = tokens_out`, `usage_detail =
//! totals_only`. `cost` is USD. A cached row (`cached: true`) is a gateway cache hit that
//! called no provider: its buckets are zero.

use serde_json::Value;

use super::fields::{self, FieldError};
use super::normalize::{self, apply_bag, CostUnit, Draft};
use super::value::J;
use super::{MapCtx, Mapped};
use crate::domain::event::{CallStatus, UsageDetail, UsageEvent};

pub const SOURCE: &str = "cloudflare.logs";

fn is_row(v: &Value) -> bool {
    v.get("tokens_in").is_some()
        || v.get("tokens_out").is_some()
        || (v.get("cached").is_some() && v.get("success").is_some() && v.get("duration").is_some())
}

pub fn matches(v: &Value) -> bool {
    is_row(v)
        || v.get("result")
            .and_then(Value::as_array)
            .is_some_and(|rows| !rows.is_empty() && rows.iter().all(is_row))
}

pub fn map(v: &Value, cx: &MapCtx<'_>) -> Result<Mapped, FieldError> {
    if let Some(rows) = v.get("result").and_then(Value::as_array) {
        if !is_row(v) {
            let mut out = Mapped::default();
            for (i, row) in rows.iter().enumerate() {
                let path = format!("result[{i}]");
                out.events.push(map_row(&J::root(row, &path), cx)?);
            }
            return Ok(out);
        }
    }
    Ok(Mapped::one(map_row(&J::root(v, ""), cx)?))
}

fn map_row(r: &J<'_, '_>, cx: &MapCtx<'_>) -> Result<UsageEvent, FieldError> {
    let lim = cx.limits;
    let mut d = Draft::new(SOURCE);
    d.route = Some("cloudflare".into());
    if let Some(id) = r.id("id", lim)? {
        d.idem_key = Some(format!("cloudflare:{id}"));
        d.meta_put("cf_aig_log_id", Value::String(id));
    }
    d.provider = r.string("provider", lim)?;
    d.model = r.string("model", lim)?;
    if let Some(t) = r.str("created_at")? {
        d.ts = Some(normalize::flexible_timestamp(
            &r.child_path("created_at"),
            t,
            cx.now,
        )?);
    }
    if let Some(ms) = r.decimal("duration")? {
        d.latency_ms = Some(fields::millis_decimal(&r.child_path("duration"), ms)?);
    }
    d.http_status = fields::http_status(&r.child_path("status_code"), r.int("status_code")?)?;
    match r.boolean("success")? {
        Some(false) => {
            d.status = Some(CallStatus::Error);
            d.error_type = Some(match d.http_status {
                Some(code) => format!("http_{code}"),
                None => "error".into(),
            });
        }
        Some(true) => d.status = Some(CallStatus::Success),
        None => {}
    }
    let input = r.count("tokens_in")?;
    let output = r.count("tokens_out")?;
    if input.is_some() || output.is_some() {
        d.tokens.input_uncached = input.unwrap_or(0);
        d.tokens.output = output.unwrap_or(0);
        d.usage_detail = UsageDetail::TotalsOnly;
    }
    if let Some(step) = r.count("step")? {
        // Step 0 is the primary provider; each later step is a fallback.
        d.attempt = u32::try_from(step + 1).ok();
        if step > 0 {
            d.meta_put("fallback_step", Value::from(step));
        }
    }
    for key in [
        "model_type",
        "path",
        "request_type",
        "request_content_type",
        "response_content_type",
    ] {
        d.meta_str(key, r.str(key)?);
    }
    if r.boolean("custom_cost")? == Some(true) {
        d.meta_put("custom_cost", Value::Bool(true));
    }
    let metadata = match r.raw("metadata") {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(
            normalize::parse_json_string_object(&r.child_path("metadata"), s)?,
        ),
        Some(v) if v.is_object() => Some(v.clone()),
        Some(Value::String(_)) | None => None,
        Some(other) => {
            return Err(r.err_at(
                "metadata",
                format!(
                    "expected a JSON object or a string holding one, got {}",
                    super::value::kind(other)
                ),
            ))
        }
    };
    if let Some(m) = metadata.as_ref().filter(|m| m.is_object()) {
        let path = r.child_path("metadata");
        apply_bag(&mut d, &J::root(m, &path), lim)?;
    }
    if r.boolean("cached")? == Some(true) {
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
        d.set_cost(&r.child_path("cost"), value, &text, CostUnit::Usd)?;
    }
    d.finish(cx.defaults, cx.now, lim, &r.child_path("model"))
}
