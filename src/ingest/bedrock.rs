//! AWS Bedrock model invocation log records → [`UsageEvent`] (formats.md §9a).
//!
//! One record is one `ModelInvocationLog` as Bedrock delivers it to CloudWatch Logs or S3.
//! Token contract: the cache counts sit **beside** `inputTokenCount` (Anthropic-style
//! exclusive counts), so `input_uncached = inputTokenCount`, `cache_read =
//! cacheReadInputTokenCount`, cache writes = `cacheWriteInputTokenCount`, split into 5m/1h when
//! the logged response body carries the split (Anthropic `usage.cache_creation`, or Converse
//! `usage.cacheDetails`; for streams, in the chunk that carries usage) and booked at the
//! 5-minute rate with `metadata.cache_ttl_reported = false` otherwise. `modelId` may be an
//! inference-profile ARN; its model id is the part after the last `/`. There is no cost field.

use serde_json::Value;

use super::fields::FieldError;
use super::normalize::{self, apply_bag, Draft};
use super::value::J;
use super::{MapCtx, Mapped};
use crate::domain::event::{CallStatus, UsageDetail};

pub const SOURCE: &str = "bedrock.invocation";

pub fn matches(v: &Value) -> bool {
    v.get("schemaType").and_then(Value::as_str) == Some("ModelInvocationLog")
        || (v.get("modelId").is_some()
            && v.get("input")
                .is_some_and(|i| i.get("inputTokenCount").is_some()))
}

/// The model id inside an inference-profile or foundation-model ARN.
fn model_of(model_id: &str) -> &str {
    if model_id.starts_with("arn:") {
        model_id.rsplit('/').next().unwrap_or(model_id)
    } else {
        model_id
    }
}

/// Finds a usage object with a cache-write TTL split in a logged response body (or in the
/// chunks of a logged stream). Returns (5m, 1h).
fn ttl_split(body: &Value) -> Option<(u64, u64)> {
    let from_usage = |u: &Value| -> Option<(u64, u64)> {
        if let Some(c) = u.get("cache_creation").filter(|c| c.is_object()) {
            let n = |k: &str| c.get(k).and_then(Value::as_u64).unwrap_or(0);
            return Some((
                n("ephemeral_5m_input_tokens"),
                n("ephemeral_1h_input_tokens"),
            ));
        }
        let details = u.get("cacheDetails")?.as_array()?;
        let (mut w5, mut w1) = (0, 0);
        for d in details {
            let n = d.get("inputTokens").and_then(Value::as_u64).unwrap_or(0);
            match d.get("ttl").and_then(Value::as_str) {
                Some("1h") => w1 += n,
                _ => w5 += n,
            }
        }
        Some((w5, w1))
    };
    let candidates = |v: &Value| -> Option<(u64, u64)> {
        [
            v.get("usage"),
            v.get("message").and_then(|m| m.get("usage")),
            v.get("metadata").and_then(|m| m.get("usage")),
        ]
        .into_iter()
        .flatten()
        .find_map(from_usage)
    };
    match body {
        Value::Array(chunks) => chunks.iter().rev().find_map(candidates),
        other => candidates(other),
    }
}

pub fn map(v: &Value, cx: &MapCtx<'_>) -> Result<Mapped, FieldError> {
    let lim = cx.limits;
    let r = J::root(v, "");
    let mut d = Draft::new(SOURCE);
    d.provider = Some("aws".into());
    d.request_id = r.string("requestId", lim)?;
    let model_id = r.string("modelId", lim)?;
    if let Some(id) = &model_id {
        let model = model_of(id);
        d.operation = Some(
            if model.contains("embed") {
                "embeddings"
            } else {
                "chat"
            }
            .into(),
        );
        d.model = Some(model.to_string());
        if model != id {
            d.meta_put("model_arn", Value::String(id.clone()));
        }
    }
    if let Some(t) = r.str("timestamp")? {
        d.ts = Some(normalize::flexible_timestamp("timestamp", t, cx.now)?);
    }
    d.meta_str("aws_account_id", r.str("accountId")?);
    d.meta_str("region", r.str("region")?);
    d.meta_str("inference_region", r.str("inferenceRegion")?);
    d.meta_str("operation", r.str("operation")?);
    r.with_obj("identity", |i| {
        d.dims.api_key_id = i.string("arn", lim)?;
        Ok(())
    })?;
    r.with_obj("performanceConfig", |p| {
        d.meta_str("performance_latency", p.str("latency")?);
        Ok(())
    })?;
    if let Some(code) = r.string("errorCode", lim)? {
        d.status = Some(CallStatus::Error);
        d.error_type = Some(code);
    }
    if let Some(status) = r.str("status")? {
        if !status.eq_ignore_ascii_case("success") {
            d.status = Some(CallStatus::Error);
            if d.error_type.is_none() {
                d.error_type = Some(status.to_ascii_lowercase());
            }
        }
    }
    if r.has("requestMetadata") {
        r.with("requestMetadata", |m| apply_bag(&mut d, &m, lim))?;
    }

    let input = r.with_obj("input", |i| {
        Ok((
            i.count("inputTokenCount")?,
            i.count0("cacheReadInputTokenCount")?,
            i.count0("cacheWriteInputTokenCount")?,
        ))
    })?;
    let output = r
        .with_obj("output", |o| o.count("outputTokenCount"))?
        .flatten();
    if let Some((Some(uncached), read, write)) = input {
        d.tokens.input_uncached = uncached;
        d.tokens.cache_read = read;
        let body = v.get("output").and_then(|o| o.get("outputBodyJson"));
        match body.and_then(ttl_split) {
            Some((w5, w1)) if w5 + w1 == write => {
                d.tokens.cache_write_5m = w5;
                d.tokens.cache_write_1h = w1;
            }
            Some((w5, w1)) if write > 0 || w5 + w1 > 0 => {
                return Err(FieldError::new(
                    "output.outputBodyJson.usage",
                    format!(
                        "the body's cache-write split (5m {w5} + 1h {w1}) does not add up to \
                         input.cacheWriteInputTokenCount ({write})"
                    ),
                ))
            }
            _ => {
                d.tokens.cache_write_5m = write;
                if write > 0 {
                    d.meta_put("cache_ttl_reported", Value::Bool(false));
                }
            }
        }
        d.tokens.output = output.unwrap_or(0);
        d.usage_detail = if output.is_some() {
            UsageDetail::Full
        } else {
            UsageDetail::Partial
        };
    } else if let Some(out) = output {
        d.tokens.output = out;
        d.usage_detail = UsageDetail::Partial;
    }
    if let Some(path) = v
        .get("output")
        .and_then(|o| o.get("outputBodyS3Path"))
        .and_then(Value::as_str)
    {
        d.meta_put("output_body_s3_path", Value::String(path.to_string()));
    }
    Ok(Mapped::one(d.finish(
        cx.defaults,
        cx.now,
        lim,
        "modelId",
    )?))
}
