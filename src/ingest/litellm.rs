//! LiteLLM: the `StandardLoggingPayload` its generic API logger sends, the legacy all-strings
//! payload, and `LiteLLM_SpendLogs` rows → [`UsageEvent`] (formats.md §5).
//!
//! * `litellm.slp`: one StandardLoggingPayload. The logger batches them as a JSON array
//!   (`json_array`), as NDJSON (`ndjson`) or one per request (`single`); the body splitter
//!   already turns all three into records.
//! * `litellm.slp_v1`: the legacy payload (`litellm.generic_api_use_v1 = True`) in which every
//!   value went through Python's `str()`; `usage` and `metadata` are read back with
//!   [`super::pyliteral`].
//! * `litellm.spendlogs`: a row of the `LiteLLM_SpendLogs` table as exported to JSON; its
//!   `metadata` and `request_tags` may be JSON strings.
//!
//! Token contract: LiteLLM's `prompt_tokens` is OpenAI-style inclusive, but what it includes
//! depends on the upstream provider and LiteLLM's version (peers.md §3.2). So the buckets come
//! from the full usage object (`usage_object`, `additional_usage_values`) with the upstream's
//! rule: for Anthropic models `input_uncached = prompt_tokens_details.text_tokens` (the raw
//! Anthropic `input_tokens`), else `prompt_tokens − cache reads − cache writes`, and the parts
//! must add up to `prompt_tokens`; for every other upstream the OpenAI chat rule. A response
//! served from LiteLLM's own cache (`cache_hit`) called no provider: its buckets are zero, its
//! reported usage is kept in metadata.

use serde_json::{Map, Value};

use super::fields::{self, FieldError};
use super::normalize::{self, apply_bag, fill_str, CostUnit, Draft};
use super::openai::{chat_usage, check_reasoning};
use super::value::J;
use super::{MapCtx, Mapped};
use crate::domain::event::{CallStatus, UsageDetail, UsageEvent};

pub const SLP: &str = "litellm.slp";
pub const SLP_V1: &str = "litellm.slp_v1";
pub const SPENDLOGS: &str = "litellm.spendlogs";

/// Which LiteLLM shape a record holds.
pub fn variant(v: &Value) -> Option<&'static str> {
    let has = |k: &str| v.get(k).is_some();
    if has("litellm_call_id")
        || has("hidden_params")
        || (has("response_cost") && (has("call_type") || has("startTime")))
    {
        return Some(SLP);
    }
    if v.get("modelParameters").is_some_and(Value::is_string)
        || (has("call_type") && v.get("usage").is_some_and(Value::is_string))
    {
        return Some(SLP_V1);
    }
    if has("request_id") && has("spend") && (has("api_key") || has("call_type") || has("startTime"))
    {
        return Some(SPENDLOGS);
    }
    None
}

pub fn map(v: &Value, variant: &'static str, cx: &MapCtx<'_>) -> Result<Mapped, FieldError> {
    let root = J::root(v, "");
    let ev = match variant {
        SLP => slp(&root, cx)?,
        SLP_V1 => slp_v1(&root, cx)?,
        _ => spendlogs(&root, cx)?,
    };
    Ok(Mapped::one(ev))
}

/// LiteLLM `call_type` → Tally operation.
fn operation(call_type: &str) -> &'static str {
    let c = call_type
        .trim_start_matches("litellm.")
        .trim_start_matches('a');
    match c {
        "embedding" => "embeddings",
        "image_generation" | "image_edit" => "image",
        "transcription" | "speech" => "audio",
        "responses" => "responses",
        "moderation" => "moderation",
        "rerank" => "rerank",
        _ => "chat",
    }
}

/// True when LiteLLM rewrote an Anthropic usage (cache counts folded into `prompt_tokens`).
fn anthropic_upstream(provider: Option<&str>, model: Option<&str>) -> bool {
    provider == Some("anthropic")
        || model.is_some_and(|m| m.to_ascii_lowercase().contains("claude"))
}

/// Buckets from a LiteLLM `Usage` object with the upstream provider's rule.
fn usage_buckets(u: &J<'_, '_>, d: &mut Draft, anthropic: bool) -> Result<(), FieldError> {
    if !anthropic {
        return chat_usage(u, d);
    }
    let prompt = u
        .count("prompt_tokens")?
        .ok_or_else(|| u.err_at("prompt_tokens", "is required in the usage object"))?;
    let completion = u.count0("completion_tokens")?;
    let pd = "prompt_tokens_details";
    let cache_read = match u.count("cache_read_input_tokens")? {
        Some(n) => n,
        None => u.with(pd, |x| x.count0("cached_tokens"))?.unwrap_or(0),
    };
    let cache_write = u.count0("cache_creation_input_tokens")?;
    let text = u.with(pd, |x| x.count("text_tokens"))?.flatten();
    let read_f = u.child_path("cache_read_input_tokens");
    let write_f = u.child_path("cache_creation_input_tokens");
    let input_uncached = match text {
        Some(raw_input) => {
            if raw_input + cache_read + cache_write != prompt {
                return Err(u.err_at(
                    "prompt_tokens",
                    format!(
                        "{prompt} does not equal {pd}.text_tokens ({raw_input}) + \
                         cache_read_input_tokens ({cache_read}) + cache_creation_input_tokens \
                         ({cache_write}); this LiteLLM version counts Anthropic input differently"
                    ),
                ));
            }
            raw_input
        }
        None => {
            d.meta_put("litellm_prompt_tokens_assumed_inclusive", Value::Bool(true));
            fields::remainder(
                &u.child_path("prompt_tokens"),
                prompt,
                &[
                    (read_f.as_str(), cache_read),
                    (write_f.as_str(), cache_write),
                ],
            )?
        }
    };
    let reasoning = u
        .with("completion_tokens_details", |x| {
            x.count0("reasoning_tokens")
        })?
        .unwrap_or(0);
    check_reasoning(
        &format!(
            "{}.reasoning_tokens",
            u.child_path("completion_tokens_details")
        ),
        reasoning,
        completion,
    )?;
    if reasoning > 0 {
        // LiteLLM estimates Anthropic thinking tokens by re-tokenising the text.
        d.meta_put("reasoning_tokens_estimated", Value::Bool(true));
    }
    if cache_write > 0 {
        d.meta_put("cache_ttl_reported", Value::Bool(false));
    }
    d.tokens.input_uncached = input_uncached;
    d.tokens.cache_read = cache_read;
    d.tokens.cache_write_5m = cache_write;
    d.tokens.output = completion;
    d.tokens.reasoning = reasoning;
    d.usage_detail = UsageDetail::Full;
    Ok(())
}

/// Top-level counts only (no usage object): all input uncached, flagged partial.
fn totals_only(d: &mut Draft, prompt: Option<u64>, completion: Option<u64>) {
    if prompt.is_none() && completion.is_none() {
        return;
    }
    d.tokens.input_uncached = prompt.unwrap_or(0);
    d.tokens.output = completion.unwrap_or(0);
    d.usage_detail = UsageDetail::Partial;
}

/// A response LiteLLM served from its own cache: the provider was not called, so nothing is
/// billed; the usage the cached response carried stays visible in metadata.
fn zero_for_cache_hit(d: &mut Draft) {
    let t = d.tokens;
    d.meta_put("gateway_cache_hit", Value::Bool(true));
    d.meta_put("cached_response_input_tokens", Value::from(t.input_total()));
    d.meta_put(
        "cached_response_output_tokens",
        Value::from(t.output_total()),
    );
    d.tokens = Default::default();
}

/// The `metadata` of a StandardLoggingPayload (and of SpendLogs rows): the virtual key's
/// owner, team, org and project, and the caller's own bags.
fn key_metadata(m: &J<'_, '_>, d: &mut Draft, lim: &fields::Limits) -> Result<(), FieldError> {
    // The caller's own key-value pairs are the most specific attribution: they go first.
    for bag in ["spend_logs_metadata", "requester_metadata"] {
        if m.raw(bag).is_some_and(Value::is_object) {
            m.with(bag, |b| apply_bag(d, &b, lim))?;
        }
    }
    fill_str(&mut d.dims.api_key_id, m.string("user_api_key_hash", lim)?);
    fill_str(&mut d.dims.api_key_id, m.string("user_api_key", lim)?);
    fill_str(&mut d.dims.user_id, m.string("user_api_key_user_id", lim)?);
    fill_str(
        &mut d.dims.user_id,
        m.string("user_api_key_user_email", lim)?,
    );
    fill_str(&mut d.dims.team_id, m.string("user_api_key_team_id", lim)?);
    fill_str(
        &mut d.dims.team_id,
        m.string("user_api_key_team_alias", lim)?,
    );
    fill_str(
        &mut d.dims.project,
        m.string("user_api_key_project_id", lim)?,
    );
    fill_str(
        &mut d.dims.project,
        m.string("user_api_key_project_alias", lim)?,
    );
    fill_str(
        &mut d.dims.customer_id,
        m.string("user_api_key_end_user_id", lim)?,
    );
    for key in [
        "user_api_key_alias",
        "user_api_key_org_id",
        "user_api_key_org_alias",
        "user_api_key_team_alias",
    ] {
        d.meta_str(key, m.str(key).ok().flatten());
    }
    Ok(())
}

fn slp(r: &J<'_, '_>, cx: &MapCtx<'_>) -> Result<UsageEvent, FieldError> {
    let lim = cx.limits;
    let mut d = Draft::new(SLP);
    d.route = Some("litellm".into());
    let call_id = r.string("litellm_call_id", lim)?;
    d.idem_key = call_id.as_ref().map(|c| format!("litellm:{c}"));
    d.provider = r.string("custom_llm_provider", lim)?;
    d.model = r.string("model", lim)?;
    d.model_requested = r.string("model_group", lim)?;
    if let Some(ct) = r.str("call_type")? {
        d.operation = Some(operation(ct).into());
        d.meta_str("call_type", Some(ct));
    }
    d.meta_str("litellm_model_id", r.str("model_id")?);
    d.meta_str("api_base", r.str("api_base")?);
    fill_str(&mut d.dims.trace_id, r.string("trace_id", lim)?);
    fill_str(&mut d.dims.customer_id, r.string("end_user", lim)?);

    let start = r.decimal("startTime")?;
    if let Some(s) = start {
        let ts = normalize::unix_seconds("startTime", s)?;
        d.ts = Some(ts);
        if let Some(e) = r.decimal("endTime")? {
            d.latency_ms = Some(normalize::seconds_to_ms("endTime", e - s)?);
        }
        let stream = r.boolean("stream")? == Some(true);
        if stream {
            d.meta_put("stream", Value::Bool(true));
            if let Some(first) = r.decimal("completionStartTime")? {
                d.ttft_ms = Some(normalize::seconds_to_ms("completionStartTime", first - s)?);
            }
        }
    }

    let status = r.str("status")?;
    match status {
        None | Some("success") => {}
        Some("failure") => d.status = Some(CallStatus::Error),
        Some(other) => {
            return Err(r.err_at(
                "status",
                format!("unknown status {other:?}; expected success or failure"),
            ))
        }
    }
    r.with_obj("error_information", |e| {
        fill_str(&mut d.error_type, e.string("error_class", lim)?);
        if let Some(code) = e.int("error_code")? {
            d.http_status = fields::http_status(&e.child_path("error_code"), Some(code))?;
        }
        d.meta_str("error_llm_provider", e.str("llm_provider")?);
        Ok(())
    })?;
    if d.status == Some(CallStatus::Error) && d.error_type.is_none() {
        d.error_type = Some("error".into());
    }
    if let Some(err) = r.str("error_str")? {
        d.meta_put(
            "error_message",
            Value::String(err.chars().take(200).collect()),
        );
    }

    let tags = r.each("request_tags", |_, t| Ok(t.v.as_str().map(str::to_string)))?;
    let tags: Vec<std::borrow::Cow<'_, str>> = tags.into_iter().flatten().map(Into::into).collect();
    d.dims.tags = fields::tags("request_tags", Some(tags), lim)?;

    if r.raw("metadata").is_some_and(Value::is_object) {
        r.with("metadata", |m| key_metadata(&m, &mut d, lim))?;
    }

    // The usage object lives in `metadata.usage_object` or `hidden_params.usage_object`.
    let anthropic = anthropic_upstream(d.provider.as_deref(), d.model.as_deref());
    let mut found = false;
    for outer in ["metadata", "hidden_params"] {
        if found {
            break;
        }
        let done = r.with(outer, |o| {
            if o.raw("usage_object").is_some_and(Value::is_object) {
                o.with("usage_object", |u| usage_buckets(&u, &mut d, anthropic))?;
                return Ok(true);
            }
            Ok(false)
        })?;
        found = done == Some(true);
    }
    if !found {
        totals_only(
            &mut d,
            r.count("prompt_tokens")?,
            r.count("completion_tokens")?,
        );
    }
    let cache_hit = r.boolean("cache_hit")? == Some(true);
    if cache_hit {
        zero_for_cache_hit(&mut d);
    }
    // The response id is the provider's, except on a cache hit (LiteLLM appends
    // `_cache_hit…`: the id of the original call, which must not merge with it) and on
    // failures (it is then LiteLLM's own call id).
    let id = r.string("id", lim)?;
    if !cache_hit && id != call_id && d.status != Some(CallStatus::Error) {
        d.request_id = id;
    } else {
        d.meta_str("litellm_id", id.as_deref());
    }
    if d.idem_key.is_none() {
        d.idem_key = d.request_id.as_ref().map(|i| format!("litellm:{i}"));
    }
    if let Some((cost, text)) = r.decimal_text("response_cost")? {
        d.set_cost("response_cost", cost, &text, CostUnit::Usd)?;
    }
    if let Some((saved, text)) = r.decimal_text("saved_cache_cost")? {
        if !saved.is_zero() {
            d.meta_put("saved_cache_cost", Value::String(text));
        }
    }
    d.finish(cx.defaults, cx.now, lim, "model")
}

/// A field of the legacy payload: every value is a string; `"None"` and `""` are absent.
fn v1_str<'a>(r: &J<'a, '_>, key: &str) -> Result<Option<&'a str>, FieldError> {
    Ok(r.str(key)?.filter(|s| *s != "None"))
}

fn v1_literal(r: &J<'_, '_>, key: &str) -> Result<Option<Value>, FieldError> {
    let Some(text) = v1_str(r, key)? else {
        return Ok(None);
    };
    super::pyliteral::parse(text)
        .map(Some)
        .map_err(|e| r.err_at(key, format!("is not a readable Python literal ({e})")))
}

fn slp_v1(r: &J<'_, '_>, cx: &MapCtx<'_>) -> Result<UsageEvent, FieldError> {
    let lim = cx.limits;
    let mut d = Draft::new(SLP_V1);
    d.route = Some("litellm".into());
    let id = r.string("id", lim)?.filter(|s| s != "None");
    d.model = r.string("model", lim)?.filter(|s| s != "None");
    if let Some(ct) = v1_str(r, "call_type")? {
        d.operation = Some(operation(ct).into());
        d.meta_str("call_type", Some(ct));
    }
    fill_str(
        &mut d.dims.customer_id,
        r.string("user", lim)?.filter(|s| s != "None"),
    );
    let start = match v1_str(r, "startTime")? {
        Some(t) => Some(normalize::flexible_timestamp("startTime", t, cx.now)?),
        None => None,
    };
    d.ts = start;
    if let (Some(s), Some(e)) = (start, v1_str(r, "endTime")?) {
        let end = normalize::flexible_timestamp("endTime", e, cx.now)?;
        d.latency_ms = Some(normalize::span_ms("endTime", s, end)?);
    }
    let metadata = v1_literal(r, "metadata")?;
    if let Some(m) = metadata.as_ref().filter(|m| m.is_object()) {
        key_metadata(&J::root(m, "metadata"), &mut d, lim)?;
    }
    let usage = v1_literal(r, "usage")?;
    if let Some(u) = usage.as_ref().filter(|u| u.is_object()) {
        let anthropic = anthropic_upstream(None, d.model.as_deref());
        usage_buckets(&J::root(u, "usage"), &mut d, anthropic)?;
    }
    let cache_hit = match v1_str(r, "cache_hit")? {
        Some(s) => super::value::bool_of(&Value::String(s.into()))
            .map_err(|e| r.err_at("cache_hit", e))?
            .unwrap_or(false),
        None => false,
    };
    if cache_hit {
        zero_for_cache_hit(&mut d);
        d.meta_str("litellm_id", id.as_deref());
    } else {
        d.request_id = id.clone();
        d.idem_key = id.map(|i| format!("litellm:{i}"));
    }
    if let Some(cost) = v1_str(r, "cost")? {
        let value = fields::parse_decimal(cost)
            .ok_or_else(|| r.err_at("cost", format!("{cost:?} is not a decimal number")))?;
        d.set_cost("cost", value, cost, CostUnit::Usd)?;
    }
    d.finish(cx.defaults, cx.now, lim, "model")
}

/// A JSON value that may arrive as a JSON string holding it (SpendLogsPayload's `metadata`
/// and `request_tags`).
fn maybe_json_string(r: &J<'_, '_>, key: &str) -> Result<Option<Value>, FieldError> {
    match r.raw(key) {
        None => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => serde_json::from_str::<Value>(s)
            .map(Some)
            .map_err(|e| r.err_at(key, format!("is a string but not valid JSON ({e})"))),
        Some(v) => Ok(Some(v.clone())),
    }
}

fn spendlogs(r: &J<'_, '_>, cx: &MapCtx<'_>) -> Result<UsageEvent, FieldError> {
    let lim = cx.limits;
    let mut d = Draft::new(SPENDLOGS);
    d.route = Some("litellm".into());
    d.request_id = r.string("request_id", lim)?;
    d.idem_key = d.request_id.as_ref().map(|i| format!("litellm:{i}"));
    d.provider = r.string("custom_llm_provider", lim)?;
    d.model = r.string("model", lim)?;
    d.model_requested = r.string("model_group", lim)?;
    if let Some(ct) = r.str("call_type")? {
        d.operation = Some(operation(ct).into());
        d.meta_str("call_type", Some(ct));
    }
    d.meta_str("litellm_model_id", r.str("model_id")?);
    d.meta_str("api_base", r.str("api_base")?);
    d.meta_str("organization_id", r.str("organization_id")?);
    d.meta_str(
        "mcp_namespaced_tool_name",
        r.str("mcp_namespaced_tool_name")?,
    );
    fill_str(&mut d.dims.api_key_id, r.string("api_key", lim)?);
    fill_str(&mut d.dims.user_id, r.string("user", lim)?);
    fill_str(&mut d.dims.team_id, r.string("team_id", lim)?);
    fill_str(&mut d.dims.customer_id, r.string("end_user", lim)?);
    fill_str(&mut d.dims.session_id, r.string("session_id", lim)?);
    fill_str(&mut d.dims.agent, r.string("agent_id", lim)?);

    let start = match r.str("startTime")? {
        Some(t) => Some(normalize::flexible_timestamp("startTime", t, cx.now)?),
        None => None,
    };
    d.ts = start;
    if let Some(ms) = r.decimal("request_duration_ms")? {
        d.latency_ms = Some(fields::millis_decimal("request_duration_ms", ms)?);
    } else if let (Some(s), Some(e)) = (start, r.str("endTime")?) {
        let end = normalize::flexible_timestamp("endTime", e, cx.now)?;
        d.latency_ms = Some(normalize::span_ms("endTime", s, end)?);
    }
    if let (Some(s), Some(first)) = (start, r.str("completionStartTime")?) {
        let first = normalize::flexible_timestamp("completionStartTime", first, cx.now)?;
        let end = match r.str("endTime")? {
            Some(e) => Some(normalize::flexible_timestamp("endTime", e, cx.now)?),
            None => None,
        };
        // For non-streamed calls LiteLLM writes the end time here; that is not a first token.
        if end != Some(first) {
            d.ttft_ms = Some(normalize::span_ms("completionStartTime", s, first)?);
        }
    }
    match r.str("status")? {
        None | Some("success") => {}
        Some("failure") => {
            d.status = Some(CallStatus::Error);
            d.error_type = Some("error".into());
        }
        Some(other) => {
            return Err(r.err_at(
                "status",
                format!("unknown status {other:?}; expected success or failure"),
            ))
        }
    }

    if let Some(tags) = maybe_json_string(r, "request_tags")? {
        let items: Vec<std::borrow::Cow<'_, str>> = match &tags {
            Value::Array(items) => items
                .iter()
                .filter_map(Value::as_str)
                .map(Into::into)
                .collect(),
            Value::Null => Vec::new(),
            _ => return Err(r.err_at("request_tags", "expected a JSON list of tags")),
        };
        d.dims.tags = fields::tags("request_tags", Some(items), lim)?;
    }
    let metadata = maybe_json_string(r, "metadata")?;
    let mut usage = Map::new();
    if let Some(m) = metadata.as_ref().filter(|m| m.is_object()) {
        let mj = J::root(m, "metadata");
        key_metadata(&mj, &mut d, lim)?;
        if let Some(Value::Object(extra)) = m.get("additional_usage_values") {
            usage.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        if let Some(Value::Object(err)) = m.get("error_information") {
            if let Some(class) = err.get("error_class").and_then(Value::as_str) {
                d.error_type = Some(class.to_string());
            }
        }
    }
    let prompt = r.count("prompt_tokens")?;
    let completion = r.count("completion_tokens")?;
    if usage.is_empty() {
        totals_only(&mut d, prompt, completion);
    } else {
        // `additional_usage_values` holds everything of the usage object except the three
        // totals, which are the row's own columns.
        for (key, value) in [("prompt_tokens", prompt), ("completion_tokens", completion)] {
            usage.insert(key.into(), Value::from(value.unwrap_or(0)));
        }
        let usage = Value::Object(usage);
        let anthropic = anthropic_upstream(d.provider.as_deref(), d.model.as_deref());
        usage_buckets(
            &J::root(&usage, "metadata.additional_usage_values"),
            &mut d,
            anthropic,
        )?;
    }
    if let Some(total) = r.count("total_tokens")? {
        let want = prompt.unwrap_or(0) + completion.unwrap_or(0);
        if total != want && (prompt.is_some() || completion.is_some()) {
            return Err(r.err_at(
                "total_tokens",
                format!("{total} does not equal prompt_tokens + completion_tokens ({want})"),
            ));
        }
    }
    let cache_hit = match r.raw("cache_hit") {
        Some(v) => super::value::bool_of(v)
            .map_err(|e| r.err_at("cache_hit", e))?
            .unwrap_or(false),
        None => false,
    };
    if cache_hit {
        zero_for_cache_hit(&mut d);
    }
    d.meta_str(
        "cache_key",
        r.str("cache_key")?.filter(|k| *k != "Cache OFF"),
    );
    if let Some((cost, text)) = r.decimal_text("spend")? {
        d.set_cost("spend", cost, &text, CostUnit::Usd)?;
    }
    d.finish(cx.defaults, cx.now, lim, "model")
}
