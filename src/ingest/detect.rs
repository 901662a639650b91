//! Format detection: which mapper a record goes to, decided from its shape.
//!
//! Each source format has keys no other one has (`specversion`, `resourceSpans`,
//! `schemaType`, `litellm_call_id`, `usageMetadata`, `tokens_in`, …); a record is given to the
//! format whose signature it carries. More than one signature is ambiguous and rejected naming
//! them (a refinement is not ambiguity: an OpenRouter response is also OpenAI-shaped, and
//! OpenRouter wins). No signature at all is the native format when the record looks native
//! (every key is a native field, or it has a `model`), which keeps the native format's precise
//! errors (`colour: unknown field`); anything else is rejected with the list of shapes Tally
//! expects. Native records take a fast path that reads only their keys. `?format=` skips
//! detection; the named mapper then reports what it misses.

use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use super::fields::FieldError;
use super::{
    anthropic, bedrock, cloudevents, cloudflare, gemini, helicone, litellm, native, openai,
    openrouter, otlp, portkey, Format, MapCtx, Mapped,
};

/// The native format's top-level fields (schemas/usage-event.schema.json).
const NATIVE_KEYS: [&str; 35] = [
    "id",
    "timestamp",
    "provider",
    "model",
    "model_requested",
    "operation",
    "route",
    "service_tier",
    "request_id",
    "usage",
    "cost",
    "currency",
    "status",
    "error_type",
    "http_status",
    "latency_ms",
    "ttft_ms",
    "user_id",
    "team_id",
    "project",
    "api_key_id",
    "customer_id",
    "feature",
    "tags",
    "task_id",
    "run_id",
    "agent",
    "session_id",
    "trace_id",
    "span_id",
    "parent_span_id",
    "attempt",
    "retry_of",
    "fallback_from",
    "metadata",
];

/// What the shapes look like, for the "unrecognized record" answer.
const EXPECTED: &str = "native (model, usage.input_tokens, …); openai (object \
    chat.completion/chat.completion.chunk/response, or {request, response}); anthropic (type \
    message); gemini (usageMetadata); openrouter (usage.cost or openrouter_metadata, or a \
    generation with native_tokens_prompt); litellm (a StandardLoggingPayload with \
    litellm_call_id, or a LiteLLM_SpendLogs row with request_id and spend); helicone \
    (request_created_at, or providerRequest/providerResponse); portkey (ai_org, req_units); \
    cloudflare (tokens_in, tokens_out); bedrock (schemaType ModelInvocationLog); cloudevents \
    (specversion); otlp (resourceSpans) — or name the format with ?format=";

/// A key scan of a record that allocates nothing for values: enough to take native records
/// down the fast path.
#[derive(Default)]
struct KeyScan {
    object: bool,
    all_native: bool,
    has_model: bool,
    keys: Vec<String>,
}

impl<'de> serde::Deserialize<'de> for KeyScan {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyScan;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeyScan, A::Error> {
                let mut scan = KeyScan {
                    object: true,
                    all_native: true,
                    ..KeyScan::default()
                };
                while let Some(key) = map.next_key::<Key>()? {
                    map.next_value::<IgnoredAny>()?;
                    match key {
                        Key::Model => scan.has_model = true,
                        Key::Native => {}
                        Key::Other(name) => {
                            scan.all_native = false;
                            if scan.keys.len() < 12 {
                                scan.keys.push(name);
                            }
                        }
                    }
                }
                Ok(scan)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<KeyScan, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(KeyScan::default())
            }
            fn visit_str<E>(self, _: &str) -> Result<KeyScan, E> {
                Ok(KeyScan::default())
            }
            fn visit_bool<E>(self, _: bool) -> Result<KeyScan, E> {
                Ok(KeyScan::default())
            }
            fn visit_i64<E>(self, _: i64) -> Result<KeyScan, E> {
                Ok(KeyScan::default())
            }
            fn visit_u64<E>(self, _: u64) -> Result<KeyScan, E> {
                Ok(KeyScan::default())
            }
            fn visit_f64<E>(self, _: f64) -> Result<KeyScan, E> {
                Ok(KeyScan::default())
            }
            fn visit_unit<E>(self) -> Result<KeyScan, E> {
                Ok(KeyScan::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// A record key as the scan sees it: only keys foreign to the native format are copied.
enum Key {
    Model,
    Native,
    Other(String),
}

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E>(self, key: &str) -> Result<Key, E> {
                Ok(if key == "model" {
                    Key::Model
                } else if NATIVE_KEYS.contains(&key) {
                    Key::Native
                } else {
                    Key::Other(key.to_string())
                })
            }
        }
        d.deserialize_str(V)
    }
}

/// A detected format with the sub-shape its mapper will read (`openai.chat`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detected {
    pub format: Format,
    pub source: &'static str,
}

/// The signatures a parsed record carries.
pub fn candidates(v: &Value) -> Vec<Detected> {
    let mut found = Vec::new();
    let mut add = |format, source| found.push(Detected { format, source });
    if cloudevents::matches(v) {
        add(Format::CloudEvents, cloudevents::SOURCE);
    }
    if otlp::matches(v) {
        add(Format::Otlp, otlp::SOURCE);
    }
    if bedrock::matches(v) {
        add(Format::Bedrock, bedrock::SOURCE);
    }
    if let Some(s) = helicone::variant(v) {
        add(Format::Helicone, s);
    }
    if let Some(s) = litellm::variant(v) {
        add(Format::LiteLlm, s);
    }
    if portkey::matches(v) {
        add(Format::Portkey, portkey::SOURCE);
    }
    if cloudflare::matches(v) {
        add(Format::Cloudflare, cloudflare::SOURCE);
    }
    let router = openrouter::variant(v);
    if let Some(s) = router {
        add(Format::OpenRouter, s);
    }
    // An OpenRouter response is OpenAI-shaped too: the refinement wins.
    if router.is_none() {
        if let Some(s) = openai::variant(v) {
            add(Format::OpenAi, s);
        }
    }
    if anthropic::matches(v) {
        add(Format::Anthropic, anthropic::MESSAGES);
    }
    if gemini::matches(v) {
        add(Format::Gemini, gemini::GENERATE);
    }
    found
}

/// The sub-shape a forced format reads when the record carries none of its signatures: the
/// format's main shape, whose mapper then names the fields it misses.
fn forced(format: Format, v: &Value) -> &'static str {
    match format {
        Format::Native => native::SOURCE,
        Format::OpenAi => openai::variant(v).unwrap_or(openai::CHAT),
        Format::Anthropic => anthropic::MESSAGES,
        Format::Gemini => gemini::GENERATE,
        Format::OpenRouter => openrouter::variant(v).unwrap_or(openrouter::CHAT),
        Format::LiteLlm => litellm::variant(v).unwrap_or(litellm::SLP),
        Format::Helicone => helicone::variant(v).unwrap_or(helicone::REQUEST),
        Format::Portkey => portkey::SOURCE,
        Format::Cloudflare => cloudflare::SOURCE,
        Format::Bedrock => bedrock::SOURCE,
        Format::CloudEvents => cloudevents::SOURCE,
        Format::Otlp => otlp::SOURCE,
    }
}

/// Detects (unless forced) and maps one record. Returns the source format the record was read
/// as (for its reject, when it fails) and the mapping.
pub fn map_text(
    text: &str,
    format: Option<Format>,
    cx: &MapCtx<'_>,
) -> (&'static str, Result<Mapped, FieldError>) {
    if format == Some(Format::Native) {
        return (native::SOURCE, native::map(text, cx));
    }
    let scan = if format.is_none() {
        match serde_json::from_str::<KeyScan>(text) {
            Ok(scan) => Some(scan),
            Err(e) => {
                return (
                    "unknown",
                    Err(FieldError::new("(record)", format!("not valid JSON: {e}"))),
                )
            }
        }
    } else {
        None
    };
    if let Some(scan) = &scan {
        if !scan.object {
            // The native mapper words this the way the foundation always has.
            return (native::SOURCE, native::map(text, cx));
        }
        if scan.all_native {
            return (native::SOURCE, native::map(text, cx));
        }
    }
    let v: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let name = format.map_or("unknown", Format::name);
            return (
                name,
                Err(FieldError::new("(record)", format!("not valid JSON: {e}"))),
            );
        }
    };
    let detected = match format {
        Some(f) => {
            let matching = candidates(&v).into_iter().find(|d| d.format == f);
            matching.unwrap_or(Detected {
                format: f,
                source: forced(f, &v),
            })
        }
        None => {
            let found = candidates(&v);
            match found.as_slice() {
                [one] => *one,
                [] => {
                    let scan = scan.unwrap_or_default();
                    if scan.has_model {
                        return (native::SOURCE, native::map(text, cx));
                    }
                    return (
                        "unknown",
                        Err(FieldError::new(
                            "(record)",
                            format!(
                                "unrecognized record shape (keys: {}); expected one of: {EXPECTED}",
                                scan.keys.join(", ")
                            ),
                        )),
                    );
                }
                many => {
                    let names: Vec<&str> = many.iter().map(|d| d.source).collect();
                    return (
                        "unknown",
                        Err(FieldError::new(
                            "(record)",
                            format!(
                                "ambiguous record: it carries the signatures of {}; name its \
                                 format with ?format=",
                                names.join(" and ")
                            ),
                        )),
                    );
                }
            }
        }
    };
    let source = detected.source;
    let result = match detected.format {
        Format::Native => native::map(text, cx),
        Format::OpenAi => openai::map(&v, source, cx),
        Format::Anthropic => anthropic::map(&v, cx),
        Format::Gemini => gemini::map(&v, cx),
        Format::OpenRouter => openrouter::map(&v, source, cx),
        Format::LiteLlm => litellm::map(&v, source, cx),
        Format::Helicone => helicone::map(&v, source, cx),
        Format::Portkey => portkey::map(&v, cx),
        Format::Cloudflare => cloudflare::map(&v, cx),
        Format::Bedrock => bedrock::map(&v, cx),
        Format::CloudEvents => cloudevents::map(&v, cx),
        Format::Otlp => otlp::map_json(&v, cx),
    };
    (source, result)
}

/// Maps a provider's own response (with its request, when known) with the matching provider
/// mapper, for gateways that log the raw exchange (Helicone's manual logger, Portkey's
/// `response.body`). `None` when the body is not an OpenAI, Anthropic or Gemini shape. The
/// header defaults are not applied here: the gateway's own fields come first.
pub fn map_provider_exchange(
    request: Option<&Value>,
    response: &Value,
    cx: &MapCtx<'_>,
) -> Option<Result<crate::domain::event::UsageEvent, FieldError>> {
    let pair = serde_json::json!({
        "request": request.cloned().unwrap_or(Value::Object(Default::default())),
        "response": response,
    });
    let empty = super::RequestDefaults::default();
    let inner = MapCtx {
        now: cx.now,
        limits: cx.limits,
        defaults: &empty,
    };
    let result = if let Some(s) = openrouter::variant(&pair) {
        openrouter::map(&pair, s, &inner)
    } else if let Some(s) = openai::variant(&pair) {
        openai::map(&pair, s, &inner)
    } else if anthropic::matches(&pair) {
        anthropic::map(&pair, &inner)
    } else if gemini::matches(&pair) {
        gemini::map(&pair, &inner)
    } else {
        return None;
    };
    Some(result.and_then(|m| {
        m.events
            .into_iter()
            .next()
            .ok_or_else(|| FieldError::new("response", "no usage in the provider response"))
    }))
}
