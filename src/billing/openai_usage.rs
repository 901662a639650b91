//! `openai-usage`: OpenAI's Usage API completions buckets
//! (`GET /v1/organization/usage/completions`, formats.md §1c) → usage lines.
//!
//! OpenAI's counts are inclusive: `input_tokens` holds cached and cache-write tokens and every
//! modality. The exclusive buckets are derived as formats.md §0.3 says: `input_uncached =
//! input_text_tokens` (else `input_uncached_tokens − audio − image`, else `input_tokens −
//! cached − cache_write − audio − image`), `cache_read = input_cached_tokens`, `cache_write_5m
//! = input_cache_write_tokens` (no TTL split), `output = output_tokens − audio − image` (or
//! `output_text_tokens`). Parts larger than their total reject the line instead of being
//! clamped. `num_model_requests` is required. Group-by fields (`project_id`, `user_id`,
//! `api_key_id`, `model`, `batch`, `service_tier`) are null unless the report was grouped by
//! them, and null means "all".

use serde_json::Value;

use super::model::{self, Ctx, ParsedImport, UsageLine};
use super::pages::{self, Item};
use super::ImportError;
use crate::domain::tokens::TokenBuckets;
use crate::ingest::fields::{self, FieldError};

pub fn parse(text: &str, ctx: &Ctx<'_>) -> Result<ParsedImport, ImportError> {
    let mut out = ParsedImport::default();
    let provider = model::provider(ctx.pricer, "openai");
    pages::walk(text, pages::OPENAI, ctx, &mut out, |item, out| {
        out.push_usage(from_result(item, &provider)?);
        Ok(())
    })?;
    Ok(out)
}

fn from_result(item: &Item<'_>, provider: &str) -> Result<UsageLine, FieldError> {
    let n = |k: &str| item.count_at(&[k]);
    let input = n("input_tokens")?;
    let cached = n("input_cached_tokens")?.unwrap_or(0);
    let cache_write = n("input_cache_write_tokens")?.unwrap_or(0);
    let uncached_all = n("input_uncached_tokens")?;
    let text_in = n("input_text_tokens")?;
    let audio_in = n("input_audio_tokens")?.unwrap_or(0);
    let image_in = n("input_image_tokens")?.unwrap_or(0);
    let output = n("output_tokens")?;
    let text_out = n("output_text_tokens")?;
    let audio_out = n("output_audio_tokens")?.unwrap_or(0);
    let image_out = n("output_image_tokens")?.unwrap_or(0);
    let requests = n("num_model_requests")?
        .ok_or_else(|| FieldError::new("num_model_requests", "is required"))?;

    if let (Some(total), Some(uncached)) = (input, uncached_all) {
        let sum = uncached + cached + cache_write;
        if total != sum {
            return Err(FieldError::new(
                "input_tokens",
                format!(
                    "{total} is not input_uncached_tokens + input_cached_tokens + \
                     input_cache_write_tokens ({uncached} + {cached} + {cache_write} = {sum})"
                ),
            ));
        }
    }
    let input_uncached = match (text_in, uncached_all, input) {
        (Some(t), _, _) => t,
        (None, Some(u), _) => fields::remainder(
            "input_uncached_tokens",
            u,
            &[
                ("input_audio_tokens", audio_in),
                ("input_image_tokens", image_in),
            ],
        )?,
        (None, None, Some(total)) => fields::remainder(
            "input_tokens",
            total,
            &[
                ("input_cached_tokens", cached),
                ("input_cache_write_tokens", cache_write),
                ("input_audio_tokens", audio_in),
                ("input_image_tokens", image_in),
            ],
        )?,
        (None, None, None) => 0,
    };
    let output_text = match (text_out, output) {
        (Some(t), _) => t,
        (None, Some(total)) => fields::remainder(
            "output_tokens",
            total,
            &[
                ("output_audio_tokens", audio_out),
                ("output_image_tokens", image_out),
            ],
        )?,
        (None, None) => 0,
    };
    let batch = match item.value.get("batch") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(other) => {
            return Err(FieldError::new(
                "batch",
                format!("must be true, false or null, not {other}"),
            ))
        }
    };
    let s = |k: &str| model::text(k, item.text(k).as_deref());
    Ok(UsageLine {
        line: item.line,
        provider: provider.to_string(),
        sub_account: s("project_id")?,
        model: s("model")?,
        api_key_id: s("api_key_id")?,
        service_tier: s("service_tier")?,
        batch,
        period_start: item.start,
        period_end: item.end,
        tokens: TokenBuckets {
            input_uncached,
            cache_read: cached,
            cache_write_5m: cache_write,
            cache_write_1h: 0,
            output: output_text,
            reasoning: 0,
            audio_in,
            audio_out,
            image_in,
            image_out,
        },
        web_search_requests: 0,
        requests: Some(requests),
        tags: None,
        attributes: model::json_object([
            ("user_id", item.value.get("user_id").cloned()),
            (
                "input_cached_audio_tokens",
                item.value.get("input_cached_audio_tokens").cloned(),
            ),
            (
                "input_cached_image_tokens",
                item.value.get("input_cached_image_tokens").cloned(),
            ),
            (
                "input_cached_text_tokens",
                item.value.get("input_cached_text_tokens").cloned(),
            ),
        ]),
        raw: item.value.to_string(),
    })
}
