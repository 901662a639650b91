//! Property tests of the token contract across every mapper: for random counts written in each
//! source's own semantics, the exclusive buckets sum to the inclusive totals the source
//! reported, reasoning stays within output, and a record whose parts exceed their total is
//! rejected (never clamped). Records go through detection, as a body's records do.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::detect::map_text;
use super::{Limits, MapCtx, RequestDefaults};
use crate::domain::tokens::TokenBuckets;

/// Random counts: uncached text, cache read, cache write (of which 1h), audio in, image in,
/// text out, reasoning (≤ text out), audio out, tool-use prompt.
#[derive(Debug, Clone)]
struct Sample {
    u: u64,
    c: u64,
    w: u64,
    w1: u64,
    a: u64,
    i: u64,
    o: u64,
    r: u64,
    ao: u64,
    t: u64,
}

fn sample() -> impl Strategy<Value = Sample> {
    (
        0u64..200_000,
        0u64..200_000,
        0u64..50_000,
        0u64..1000,
        0u64..5_000,
        0u64..5_000,
        0u64..20_000,
        0u64..1000,
        0u64..5_000,
        0u64..2_000,
    )
        .prop_flat_map(|(u, c, w, w1p, a, i, o, rp, ao, t)| {
            let w1 = w1p.min(w);
            let r = rp.min(o);
            Just(Sample {
                u,
                c,
                w,
                w1,
                a,
                i,
                o,
                r,
                ao,
                t,
            })
        })
}

/// (label, record, IN, OUT, reasoning) per mapper, each written in its source's semantics.
fn records(s: &Sample) -> Vec<(&'static str, Value, u64, u64, u64)> {
    let chat_in = s.u + s.c + s.w + s.a + s.i;
    let chat_out = s.o + s.ao;
    let chat_usage = json!({
        "prompt_tokens": chat_in, "completion_tokens": chat_out, "total_tokens": chat_in + chat_out,
        "prompt_tokens_details": {"cached_tokens": s.c, "cache_write_tokens": s.w, "audio_tokens": s.a, "image_tokens": s.i},
        "completion_tokens_details": {"reasoning_tokens": s.r, "audio_tokens": s.ao}});
    let resp_in = s.u + s.c + s.w;
    let gem_prompt = s.u + s.c + s.a + s.i;
    let otel_in = s.u + s.c + s.w;
    let attr = |k: &str, v: u64| json!({"key": k, "value": {"intValue": v.to_string()}});
    vec![
        (
            "openai.chat",
            json!({"id": "chatcmpl-p", "object": "chat.completion", "created": 1767225600,
            "model": "gpt-4o", "choices": [], "usage": chat_usage}),
            chat_in,
            chat_out,
            s.r,
        ),
        (
            "openai.responses",
            json!({"id": "resp_p", "object": "response", "created_at": 1767225600,
            "status": "completed", "model": "o4-mini", "usage": {"input_tokens": resp_in,
            "input_tokens_details": {"cached_tokens": s.c, "cache_write_tokens": s.w},
            "output_tokens": s.o, "output_tokens_details": {"reasoning_tokens": s.r},
            "total_tokens": resp_in + s.o}}),
            resp_in,
            s.o,
            s.r,
        ),
        (
            "anthropic",
            json!({"id": "msg_p", "type": "message", "model": "claude-haiku-4-5",
            "usage": {"input_tokens": s.u, "cache_read_input_tokens": s.c, "cache_creation_input_tokens": s.w,
                      "cache_creation": {"ephemeral_5m_input_tokens": s.w - s.w1, "ephemeral_1h_input_tokens": s.w1},
                      "output_tokens": s.o, "output_tokens_details": {"thinking_tokens": s.r}}}),
            s.u + s.c + s.w,
            s.o,
            s.r,
        ),
        // Gemini: the cached part is text; audio and image are uncached; thoughts are outside
        // candidates; tool-use prompt tokens are input.
        (
            "gemini",
            json!({"responseId": "g-p", "modelVersion": "gemini-2.5-flash",
            "usageMetadata": {"promptTokenCount": gem_prompt, "cachedContentTokenCount": s.c,
                "candidatesTokenCount": s.o - s.r + s.ao, "thoughtsTokenCount": s.r,
                "toolUsePromptTokenCount": s.t,
                "totalTokenCount": gem_prompt + s.t + s.o + s.ao,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": s.u + s.c},
                                        {"modality": "AUDIO", "tokenCount": s.a}, {"modality": "IMAGE", "tokenCount": s.i}],
                "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": s.c}],
                "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": s.o - s.r}, {"modality": "AUDIO", "tokenCount": s.ao}]}}),
            gem_prompt + s.t,
            s.o + s.ao,
            s.r,
        ),
        (
            "openrouter",
            json!({"id": "gen-p", "object": "chat.completion", "created": 1767225600,
            "model": "openai/gpt-4o-mini", "choices": [], "usage": {
                "prompt_tokens": chat_in, "completion_tokens": chat_out, "total_tokens": chat_in + chat_out,
                "prompt_tokens_details": {"cached_tokens": s.c, "cache_write_tokens": s.w, "audio_tokens": s.a, "image_tokens": s.i},
                "completion_tokens_details": {"reasoning_tokens": s.r, "audio_tokens": s.ao}, "cost": 0.5}}),
            chat_in,
            chat_out,
            s.r,
        ),
        (
            "litellm anthropic",
            json!({"id": "msg_lp", "litellm_call_id": "c-p", "status": "success",
            "custom_llm_provider": "anthropic", "model": "claude-haiku-4-5", "startTime": 1767225600.5,
            "response_cost": 0.1, "metadata": {"usage_object": {
                "prompt_tokens": s.u + s.c + s.w, "completion_tokens": s.o,
                "prompt_tokens_details": {"cached_tokens": s.c, "text_tokens": s.u},
                "cache_read_input_tokens": s.c, "cache_creation_input_tokens": s.w,
                "completion_tokens_details": {"reasoning_tokens": s.r}}}}),
            s.u + s.c + s.w,
            s.o,
            s.r,
        ),
        (
            "litellm openai",
            json!({"id": "chatcmpl-lp", "litellm_call_id": "c-p2", "status": "success",
            "custom_llm_provider": "openai", "model": "gpt-4o", "response_cost": 0.1,
            "metadata": {"usage_object": chat_usage}}),
            chat_in,
            chat_out,
            s.r,
        ),
        (
            "helicone",
            json!({"request_id": "h-p", "request_created_at": "2026-01-01T00:00:00Z",
            "provider": "OPENAI", "response_model": "gpt-4o", "response_status": 200,
            "prompt_tokens": s.u + s.c + s.w + s.a, "completion_tokens": s.o + s.ao,
            "prompt_cache_read_tokens": s.c, "prompt_cache_write_tokens": s.w,
            "prompt_audio_tokens": s.a, "completion_audio_tokens": s.ao}),
            s.u + s.c + s.w + s.a,
            s.o + s.ao,
            0,
        ),
        (
            "portkey",
            json!({"id": "pk-p", "ai_org": "openai", "ai_model": "gpt-4o", "is_success": 1,
            "req_units": s.u, "res_units": s.o}),
            s.u,
            s.o,
            0,
        ),
        (
            "cloudflare",
            json!({"id": "cf-p", "provider": "openai", "model": "gpt-4o", "success": true,
            "cached": false, "duration": 10, "tokens_in": s.u, "tokens_out": s.o}),
            s.u,
            s.o,
            0,
        ),
        (
            "bedrock",
            json!({"schemaType": "ModelInvocationLog", "requestId": "b-p",
            "modelId": "anthropic.claude-haiku-4-5-20251001-v1:0",
            "input": {"inputTokenCount": s.u, "cacheReadInputTokenCount": s.c, "cacheWriteInputTokenCount": s.w},
            "output": {"outputTokenCount": s.o}}),
            s.u + s.c + s.w,
            s.o,
            0,
        ),
        (
            "otlp",
            json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
            "traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331",
            "startTimeUnixNano": "1767225600000000000", "endTimeUnixNano": "1767225601000000000",
            "attributes": [{"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
                           attr("gen_ai.usage.input_tokens", otel_in), attr("gen_ai.usage.cache_read.input_tokens", s.c),
                           attr("gen_ai.usage.cache_creation.input_tokens", s.w), attr("gen_ai.usage.output_tokens", s.o),
                           attr("gen_ai.usage.reasoning.output_tokens", s.r)]}]}]}]}),
            otel_in,
            s.o,
            s.r,
        ),
        (
            "native",
            json!({"model": "gpt-4o", "usage": {"input_tokens": chat_in, "cache_read_tokens": s.c,
            "cache_write_tokens": s.w, "cache_write_1h_tokens": s.w1, "audio_input_tokens": s.a,
            "image_input_tokens": s.i, "output_tokens": chat_out, "reasoning_tokens": s.r,
            "audio_output_tokens": s.ao}}),
            chat_in,
            chat_out,
            s.r,
        ),
        (
            "cloudevents",
            json!({"specversion": "1.0", "id": "ce-p", "source": "prop",
            "type": "llm.request", "data": {"model": "gpt-4o", "usage": {"input_tokens": resp_in,
            "cache_read_tokens": s.c, "cache_write_tokens": s.w, "output_tokens": s.o, "reasoning_tokens": s.r}}}),
            resp_in,
            s.o,
            s.r,
        ),
    ]
}

fn map_one(record: &Value) -> Result<TokenBuckets, String> {
    let lim = Limits::default();
    let defaults = RequestDefaults::default();
    let cx = MapCtx {
        now: chrono::Utc::now(),
        limits: &lim,
        defaults: &defaults,
    };
    let (_, result) = map_text(&record.to_string(), None, &cx);
    let mapped = result.map_err(|e| e.to_string())?;
    if !mapped.rejected.is_empty() {
        return Err(mapped.rejected[0].1.to_string());
    }
    assert_eq!(mapped.events.len(), 1, "{record}");
    Ok(mapped.events[0].tokens)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn buckets_are_exclusive_and_add_up_to_the_source_totals(s in sample()) {
        for (label, record, input, output, reasoning) in records(&s) {
            let t = map_one(&record).map_err(|e| TestCaseError::fail(format!("{label}: {e}")))?;
            prop_assert_eq!(t.input_total(), input, "{}: input", label);
            prop_assert_eq!(t.output_total(), output, "{}: output", label);
            prop_assert_eq!(t.reasoning, reasoning, "{}: reasoning", label);
            prop_assert!(t.reasoning <= t.output, "{}: reasoning within output", label);
        }
    }

    #[test]
    fn parts_larger_than_their_total_are_rejected_never_clamped(total in 0u64..10_000, extra in 1u64..10_000) {
        let part = total + extra;
        let bad = [
            json!({"id": "x", "object": "chat.completion", "model": "gpt-4o", "choices": [],
                   "usage": {"prompt_tokens": total, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": part}}}),
            json!({"id": "x", "object": "response", "status": "completed", "model": "o4-mini",
                   "usage": {"input_tokens": total, "input_tokens_details": {"cached_tokens": part}, "output_tokens": 1}}),
            json!({"id": "x", "object": "chat.completion", "model": "gpt-4o", "choices": [],
                   "usage": {"prompt_tokens": 1, "completion_tokens": total, "completion_tokens_details": {"reasoning_tokens": part}}}),
            json!({"responseId": "g", "modelVersion": "gemini-2.5-flash",
                   "usageMetadata": {"promptTokenCount": total, "cachedContentTokenCount": part, "candidatesTokenCount": 1}}),
            json!({"id": "msg", "litellm_call_id": "c", "custom_llm_provider": "anthropic", "model": "claude-haiku-4-5",
                   "metadata": {"usage_object": {"prompt_tokens": total, "completion_tokens": 1,
                                                 "cache_read_input_tokens": part}}}),
            json!({"request_id": "h", "request_created_at": "2026-01-01T00:00:00Z", "provider": "OPENAI",
                   "response_model": "gpt-4o", "prompt_tokens": total, "completion_tokens": 1,
                   "prompt_cache_read_tokens": part}),
            json!({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "0af7651916cd43dd8448eb211c80319c",
                   "spanId": "b7ad6b7169203331", "attributes": [
                       {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
                       {"key": "gen_ai.usage.input_tokens", "value": {"intValue": total}},
                       {"key": "gen_ai.usage.cache_read.input_tokens", "value": {"intValue": part}}]}]}]}]}),
            json!({"model": "gpt-4o", "usage": {"input_tokens": total, "cache_read_tokens": part}}),
        ];
        for record in bad {
            prop_assert!(map_one(&record).is_err(), "accepted {}", record);
        }
    }
}
