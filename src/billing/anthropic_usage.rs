//! `anthropic-usage`: Anthropic's `GET /v1/organizations/usage_report/messages` pages
//! (formats.md §2b) → usage lines.
//!
//! Anthropic's counts are already exclusive and map straight across: `uncached_input_tokens`
//! → `input_uncached`, `cache_creation.ephemeral_5m_input_tokens` / `_1h_` → `cache_write_5m` /
//! `cache_write_1h`, `cache_read_input_tokens` → `cache_read`, `output_tokens` → `output`,
//! `server_tool_use.web_search_requests` → web searches. The nested `cache_creation` object is
//! the official shape; the flattened `cache_creation_5m_input_tokens` seen in third-party
//! schemas is read too. The report has no request count, so `requests` stays unknown (null),
//! never zero. `workspace_id` is the provider-side sub-account; null group-by fields mean "all".

use super::model::{self, Ctx, ParsedImport, UsageLine};
use super::pages::{self, Item};
use super::ImportError;
use crate::domain::tokens::TokenBuckets;
use crate::ingest::fields::FieldError;

pub fn parse(text: &str, ctx: &Ctx<'_>) -> Result<ParsedImport, ImportError> {
    let mut out = ParsedImport::default();
    let provider = model::provider(ctx.pricer, "anthropic");
    pages::walk(text, pages::ANTHROPIC, ctx, &mut out, |item, out| {
        out.push_usage(from_result(item, &provider)?);
        Ok(())
    })?;
    Ok(out)
}

fn from_result(item: &Item<'_>, provider: &str) -> Result<UsageLine, FieldError> {
    let n = |keys: &[&str]| item.count_at(keys);
    let either = |nested: &[&str], flat: &str| -> Result<u64, FieldError> {
        Ok(n(nested)?.or(n(&[flat])?).unwrap_or(0))
    };
    let tokens = TokenBuckets {
        input_uncached: n(&["uncached_input_tokens"])?.unwrap_or(0),
        cache_read: n(&["cache_read_input_tokens"])?.unwrap_or(0),
        cache_write_5m: either(
            &["cache_creation", "ephemeral_5m_input_tokens"],
            "cache_creation_5m_input_tokens",
        )?,
        cache_write_1h: either(
            &["cache_creation", "ephemeral_1h_input_tokens"],
            "cache_creation_1h_input_tokens",
        )?,
        output: n(&["output_tokens"])?.unwrap_or(0),
        ..TokenBuckets::default()
    };
    let s = |k: &str| model::text(k, item.text(k).as_deref());
    Ok(UsageLine {
        line: item.line,
        provider: provider.to_string(),
        sub_account: s("workspace_id")?,
        model: s("model")?,
        api_key_id: s("api_key_id")?,
        service_tier: s("service_tier")?,
        batch: None,
        period_start: item.start,
        period_end: item.end,
        tokens,
        web_search_requests: n(&["server_tool_use", "web_search_requests"])?.unwrap_or(0),
        requests: None,
        tags: None,
        attributes: model::json_object(
            [
                "context_window",
                "inference_geo",
                "speed",
                "account_id",
                "service_account_id",
            ]
            .map(|k| (k, item.value.get(k).cloned())),
        ),
        raw: item.value.to_string(),
    })
}
