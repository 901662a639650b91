//! OpenTelemetry traces (OTLP/HTTP, protobuf and JSON) → one [`UsageEvent`] per GenAI
//! inference span (formats.md §7).
//!
//! Both encodings are first turned into the same [`SpanIn`] (attribute numbers kept as exact
//! text, ids as lower-case hex), so one mapper serves both. A span becomes an event when it is
//! an inference call: it has a GenAI model or usage attribute and its operation is not an
//! agent, tool, workflow or retrieval span (those wrap inference spans; counting their usage
//! too would count it twice). Every other span is counted as skipped, never rejected. A span
//! that claims to be an inference but cannot be read is rejected on its own, naming its path
//! and attribute; the rest of the export still lands.
//!
//! Token contract (GenAI semantic conventions): `gen_ai.usage.input_tokens` **includes** cache
//! reads and writes, `gen_ai.usage.output_tokens` includes reasoning; the uncached bucket is
//! what remains. Deprecated and vendor spellings are read too (`gen_ai.usage.prompt_tokens`,
//! `gen_ai.usage.cache_read_input_tokens`, OpenLIT's `gen_ai.usage.prompt_tokens_details.*`,
//! OpenLLMetry's `llm.usage.*`, `gen_ai.system`). A cost attribute (OpenLIT's
//! `gen_ai.usage.cost`, the proposed `gen_ai.usage.cost.amount`/`.currency`, OpenInference's
//! `llm.cost.total`) is kept as the reported cost, never recomputed from partial counts.
//!
//! Attribution: span attributes win over resource attributes. `tally.<dimension>` attributes
//! name Tally's dimensions directly; OpenLLMetry association properties
//! (`traceloop.association.properties.<key>`) are read as a caller bag; `user.id`/`enduser.id`
//! /`gen_ai.user` → user, `gen_ai.conversation.id`/`session.id` → session,
//! `gen_ai.agent.name` → agent, `gen_ai.workflow.name`/`traceloop.workflow.name` → feature,
//! `service.name` (or OpenLIT's `gen_ai.application_name`) → metadata `service_name` (projects
//! are tenants set by the writing key or a `tally.project` attribute, never by a service name).
//!
//! Protobuf carries `doubleValue` as an IEEE double; it is read through its shortest
//! round-trip decimal text (the text the JSON encoding of the same span would carry) and never
//! used in arithmetic.

use std::fmt::Write as _;

use base64::Engine;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

use super::fields::{self, FieldError};
use super::normalize::{self, apply_bag, fill_str, CostUnit, Draft};
use super::openai::check_reasoning;
use super::value::J;
use super::{MapCtx, Mapped};
use crate::domain::event::{CallStatus, UsageDetail, UsageEvent};

pub const SOURCE: &str = "otlp";

pub fn matches(v: &Value) -> bool {
    v.get("resourceSpans").is_some()
}

/// An attribute value with numbers as exact text.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    Str(String),
    Int(i64),
    /// A double, as decimal text (exact for JSON; shortest round-trip for protobuf).
    Double(String),
    Bool(bool),
    Array(Vec<Attr>),
    Kv(Vec<(String, Attr)>),
    Bytes(String),
}

impl Attr {
    fn to_json(&self) -> Value {
        match self {
            Attr::Str(s) | Attr::Bytes(s) => Value::String(s.clone()),
            Attr::Int(i) => Value::from(*i),
            Attr::Double(d) => serde_json::from_str(d).unwrap_or(Value::String(d.clone())),
            Attr::Bool(b) => Value::Bool(*b),
            Attr::Array(items) => Value::Array(items.iter().map(Attr::to_json).collect()),
            Attr::Kv(kv) => {
                Value::Object(kv.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }

    /// A string view for ids and names; numbers and booleans as text.
    fn text(&self) -> Option<String> {
        match self {
            Attr::Str(s) => Some(s.clone()),
            Attr::Int(i) => Some(i.to_string()),
            Attr::Double(d) => Some(d.clone()),
            Attr::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

/// One span, independent of the wire encoding.
#[derive(Debug, Clone)]
pub struct SpanIn {
    pub path: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub name: String,
    pub kind: i64,
    pub start_ns: u64,
    pub end_ns: u64,
    pub status_code: i64,
    pub status_message: String,
    pub attrs: Vec<(String, Attr)>,
    pub resource: std::rc::Rc<Vec<(String, Attr)>>,
    pub scope_name: String,
    pub scope_version: String,
}

impl SpanIn {
    /// The span as OTLP JSON, kept as the raw text of a rejected span.
    fn to_json(&self) -> String {
        let attrs: Map<String, Value> = self
            .attrs
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect();
        json!({
            "traceId": self.trace_id, "spanId": self.span_id, "parentSpanId": self.parent_span_id,
            "name": self.name, "kind": self.kind,
            "startTimeUnixNano": self.start_ns.to_string(), "endTimeUnixNano": self.end_ns.to_string(),
            "status": {"code": self.status_code, "message": self.status_message},
            "attributes": attrs,
        })
        .to_string()
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

// ---- protobuf ----

fn proto_value(v: &AnyValue) -> Option<Attr> {
    Some(match v.value.as_ref()? {
        any_value::Value::StringValue(s) => Attr::Str(s.clone()),
        any_value::Value::BoolValue(b) => Attr::Bool(*b),
        any_value::Value::IntValue(i) => Attr::Int(*i),
        // The wire holds a double; its shortest round-trip text is what the sender's JSON
        // encoder would have written. It is never used as a number here.
        any_value::Value::DoubleValue(d) => Attr::Double(format!("{d}")),
        any_value::Value::ArrayValue(a) => {
            Attr::Array(a.values.iter().filter_map(proto_value).collect())
        }
        any_value::Value::KvlistValue(kv) => Attr::Kv(proto_attrs(&kv.values)),
        any_value::Value::BytesValue(b) => {
            Attr::Bytes(base64::engine::general_purpose::STANDARD.encode(b))
        }
    })
}

fn proto_attrs(kvs: &[KeyValue]) -> Vec<(String, Attr)> {
    kvs.iter()
        .filter_map(|kv| Some((kv.key.clone(), proto_value(kv.value.as_ref()?)?)))
        .collect()
}

/// Flattens a protobuf export into spans.
pub fn spans_from_proto(req: &ExportTraceServiceRequest) -> Vec<SpanIn> {
    let mut out = Vec::new();
    for (ri, rs) in req.resource_spans.iter().enumerate() {
        let resource = std::rc::Rc::new(
            rs.resource
                .as_ref()
                .map(|r| proto_attrs(&r.attributes))
                .unwrap_or_default(),
        );
        for (si, ss) in rs.scope_spans.iter().enumerate() {
            let (scope_name, scope_version) = ss
                .scope
                .as_ref()
                .map(|s| (s.name.clone(), s.version.clone()))
                .unwrap_or_default();
            for (pi, span) in ss.spans.iter().enumerate() {
                let status = span.status.as_ref();
                out.push(SpanIn {
                    path: format!("resourceSpans[{ri}].scopeSpans[{si}].spans[{pi}]"),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name.clone(),
                    kind: i64::from(span.kind),
                    start_ns: span.start_time_unix_nano,
                    end_ns: span.end_time_unix_nano,
                    status_code: status.map_or(0, |s| i64::from(s.code)),
                    status_message: status.map(|s| s.message.clone()).unwrap_or_default(),
                    attrs: proto_attrs(&span.attributes),
                    resource: resource.clone(),
                    scope_name: scope_name.clone(),
                    scope_version: scope_version.clone(),
                });
            }
        }
    }
    out
}

// ---- JSON ----

fn json_value(v: &J<'_, '_>) -> Result<Option<Attr>, FieldError> {
    let Some(obj) = v.as_object() else {
        return Err(
            v.err("expected an AnyValue object ({\"stringValue\": …}, {\"intValue\": …}, …)")
        );
    };
    let Some((kind, _)) = obj.iter().find(|(_, val)| !val.is_null()) else {
        return Ok(None);
    };
    Ok(Some(match kind.as_str() {
        "stringValue" => Attr::Str(v.str("stringValue")?.unwrap_or_default().to_string()),
        "boolValue" => Attr::Bool(v.boolean("boolValue")?.unwrap_or(false)),
        // int64 arrives as a decimal string, or as a number from lenient encoders.
        "intValue" => Attr::Int(v.int("intValue")?.unwrap_or(0)),
        "doubleValue" => match v.raw("doubleValue") {
            Some(Value::Number(n)) => Attr::Double(n.to_string()),
            Some(Value::String(s)) => Attr::Double(s.clone()),
            _ => return Err(v.err_at("doubleValue", "expected a number")),
        },
        "arrayValue" => {
            let items = v
                .with_obj("arrayValue", |a| {
                    a.each("values", |_, item| json_value(&item))
                })?
                .unwrap_or_default();
            Attr::Array(items.into_iter().flatten().collect())
        }
        "kvlistValue" => Attr::Kv(
            v.with_obj("kvlistValue", |a| json_attrs(&a, "values"))?
                .unwrap_or_default(),
        ),
        "bytesValue" => Attr::Bytes(v.str("bytesValue")?.unwrap_or_default().to_string()),
        other => return Err(v.err(format!("unknown AnyValue kind {other:?}"))),
    }))
}

fn json_attrs(parent: &J<'_, '_>, key: &str) -> Result<Vec<(String, Attr)>, FieldError> {
    let pairs = parent.each(key, |_, kv| {
        let k = kv
            .str("key")?
            .ok_or_else(|| kv.err_at("key", "is required"))?
            .to_string();
        let value = kv.with("value", |val| json_value(&val))?.flatten();
        Ok(value.map(|v| (k, v)))
    })?;
    Ok(pairs.into_iter().flatten().collect())
}

/// An OTLP/JSON id: hex (any case); base64 (the generic protobuf JSON mapping some encoders
/// use by mistake) is accepted and turned into hex.
fn json_id(s: &J<'_, '_>, key: &str) -> Result<String, FieldError> {
    let Some(text) = s.str(key)? else {
        return Ok(String::new());
    };
    if text.len() % 2 == 0 && text.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(text.to_ascii_lowercase());
    }
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map(|b| hex(&b))
        .map_err(|_| s.err_at(key, format!("{text:?} is neither hex nor base64")))
}

/// An OTLP enum: an integer as the OTLP/JSON rules say, or its name as the generic protobuf
/// JSON mapping writes it (`"STATUS_CODE_ERROR"`, `"SPAN_KIND_CLIENT"`), which some encoders
/// send.
fn enum_value(s: &J<'_, '_>, key: &str, prefix: &str, names: &[&str]) -> Result<i64, FieldError> {
    match s.raw(key) {
        None => Ok(0),
        Some(Value::String(name)) if !name.chars().all(|c| c.is_ascii_digit()) => {
            let bare = name.trim_start_matches(prefix);
            names
                .iter()
                .position(|n| n.eq_ignore_ascii_case(bare))
                .map(|i| i as i64)
                .ok_or_else(|| s.err_at(key, format!("unknown value {name:?}")))
        }
        Some(_) => Ok(s.int(key)?.unwrap_or(0)),
    }
}

/// A uint64 nanosecond time: a decimal string (the OTLP/JSON rule) or a number.
fn json_nanos(s: &J<'_, '_>, key: &str) -> Result<u64, FieldError> {
    match s.raw(key) {
        None => Ok(0),
        Some(Value::String(t)) if t.is_empty() => Ok(0),
        Some(v) => super::value::count_of(v).map_err(|e| s.err_at(key, e)),
    }
}

/// Flattens an OTLP/JSON export into spans; a structural error fails the whole export.
pub fn spans_from_json(v: &Value) -> Result<Vec<SpanIn>, FieldError> {
    let root = J::root(v, "");
    let mut out = Vec::new();
    root.each("resourceSpans", |ri, rs| {
        let resource = rs
            .with_obj("resource", |r| json_attrs(&r, "attributes"))?
            .unwrap_or_default();
        let resource = std::rc::Rc::new(resource);
        rs.each("scopeSpans", |si, ss| {
            let (scope_name, scope_version) = ss
                .with_obj("scope", |sc| {
                    Ok((
                        sc.str("name")?.unwrap_or_default().to_string(),
                        sc.str("version")?.unwrap_or_default().to_string(),
                    ))
                })?
                .unwrap_or_default();
            ss.each("spans", |pi, span| {
                let (code, message) = span
                    .with_obj("status", |st| {
                        Ok((
                            enum_value(&st, "code", "STATUS_CODE_", &["UNSET", "OK", "ERROR"])?,
                            st.str("message")?.unwrap_or_default().to_string(),
                        ))
                    })?
                    .unwrap_or_default();
                out.push(SpanIn {
                    path: format!("resourceSpans[{ri}].scopeSpans[{si}].spans[{pi}]"),
                    trace_id: json_id(&span, "traceId")?,
                    span_id: json_id(&span, "spanId")?,
                    parent_span_id: json_id(&span, "parentSpanId")?,
                    name: span.str("name")?.unwrap_or_default().to_string(),
                    kind: enum_value(
                        &span,
                        "kind",
                        "SPAN_KIND_",
                        &[
                            "UNSPECIFIED",
                            "INTERNAL",
                            "SERVER",
                            "CLIENT",
                            "PRODUCER",
                            "CONSUMER",
                        ],
                    )?,
                    start_ns: json_nanos(&span, "startTimeUnixNano")?,
                    end_ns: json_nanos(&span, "endTimeUnixNano")?,
                    status_code: code,
                    status_message: message,
                    attrs: json_attrs(&span, "attributes")?,
                    resource: resource.clone(),
                    scope_name: scope_name.clone(),
                    scope_version: scope_version.clone(),
                });
                Ok(())
            })?;
            Ok(())
        })?;
        Ok(())
    })?;
    Ok(out)
}

/// Maps an OTLP/JSON export that arrived as one record of `POST /v1/ingest`.
pub fn map_json(v: &Value, cx: &MapCtx<'_>) -> Result<Mapped, FieldError> {
    Ok(map_spans(&spans_from_json(v)?, cx).into_mapped())
}

/// What happened to each span of an export.
#[derive(Debug, Default)]
pub struct SpansOutcome {
    /// (span ordinal, event)
    pub events: Vec<(usize, UsageEvent)>,
    /// (span ordinal, error, raw span)
    pub rejected: Vec<(usize, FieldError, String)>,
    pub skipped: usize,
    pub spans: usize,
}

impl SpansOutcome {
    fn into_mapped(self) -> Mapped {
        Mapped {
            events: self.events.into_iter().map(|(_, e)| e).collect(),
            skipped: self.skipped,
            rejected: self
                .rejected
                .into_iter()
                .map(|(_, e, raw)| (SOURCE, e, raw))
                .collect(),
        }
    }
}

/// Maps every span: events for inference spans, counts for the rest.
pub fn map_spans(spans: &[SpanIn], cx: &MapCtx<'_>) -> SpansOutcome {
    let mut out = SpansOutcome {
        spans: spans.len(),
        ..SpansOutcome::default()
    };
    for (i, span) in spans.iter().enumerate() {
        match map_span(span, cx) {
            Ok(Some(ev)) => out.events.push((i, ev)),
            Ok(None) => out.skipped += 1,
            Err(e) => out.rejected.push((i, e, span.to_json())),
        }
    }
    out
}

/// Attribute lookup: the span's own attributes first, then the resource's.
struct Attrs<'s> {
    span: &'s SpanIn,
}

impl<'s> Attrs<'s> {
    fn span_attr(&self, key: &str) -> Option<&'s Attr> {
        self.span
            .attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    fn any(&self, key: &str) -> Option<&'s Attr> {
        self.span_attr(key).or_else(|| {
            self.span
                .resource
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v)
        })
    }

    /// The first of `keys` present (span, then resource, key by key), with its name.
    fn first(&self, keys: &[&'static str]) -> Option<(&'static str, &'s Attr)> {
        keys.iter().find_map(|k| self.any(k).map(|v| (*k, v)))
    }

    fn text(&self, keys: &[&'static str]) -> Option<String> {
        self.first(keys)
            .and_then(|(_, v)| v.text())
            .filter(|s| !s.trim().is_empty())
    }

    fn err(&self, key: &str, reason: impl Into<String>) -> FieldError {
        FieldError::new(format!("{}.attributes[{key}]", self.span.path), reason)
    }

    /// A token count attribute: an integer (or a whole double, or a digit string).
    fn count(&self, keys: &[&'static str]) -> Result<Option<(u64, &'static str)>, FieldError> {
        let Some((key, v)) = self.first(keys) else {
            return Ok(None);
        };
        let n = match v {
            Attr::Int(i) => u64::try_from(*i)
                .map_err(|_| self.err(key, format!("must not be negative ({i})")))?,
            Attr::Double(t) | Attr::Str(t) => {
                super::value::count_of(&Value::String(t.clone())).map_err(|e| self.err(key, e))?
            }
            _ => return Err(self.err(key, "expected an integer token count")),
        };
        Ok(Some((n, key)))
    }

    fn decimal(
        &self,
        keys: &[&'static str],
    ) -> Result<Option<(Decimal, String, &'static str)>, FieldError> {
        let Some((key, v)) = self.first(keys) else {
            return Ok(None);
        };
        let text = match v {
            Attr::Int(i) => i.to_string(),
            Attr::Double(t) | Attr::Str(t) => t.clone(),
            _ => return Err(self.err(key, "expected a number")),
        };
        let d = fields::parse_decimal(&text)
            .ok_or_else(|| self.err(key, format!("{text:?} is not a decimal number")))?;
        Ok(Some((d, text, key)))
    }

    fn boolean(&self, keys: &[&'static str]) -> Option<bool> {
        match self.first(keys)?.1 {
            Attr::Bool(b) => Some(*b),
            Attr::Str(s) => super::value::bool_of(&Value::String(s.clone()))
                .ok()
                .flatten(),
            _ => None,
        }
    }

    /// Attributes under a prefix (`traceloop.association.properties.`), span over resource,
    /// as a JSON bag keyed by the rest of the name.
    fn bag(&self, prefix: &str) -> Value {
        let mut map = Map::new();
        for (k, v) in self.span.attrs.iter().chain(self.span.resource.iter()) {
            if let Some(rest) = k.strip_prefix(prefix) {
                if !rest.is_empty() && !map.contains_key(rest) {
                    map.insert(rest.to_string(), v.to_json());
                }
            }
        }
        Value::Object(map)
    }
}

/// Operation names of spans that wrap inference calls rather than being one.
const NOT_INFERENCE: [&str; 5] = [
    "invoke_agent",
    "create_agent",
    "execute_tool",
    "invoke_workflow",
    "retrieval",
];

const MODEL_KEYS: [&str; 5] = [
    "gen_ai.response.model",
    "gen_ai.request.model",
    "llm.response.model",
    "llm.request.model",
    "llm.model_name",
];
const INPUT_KEYS: [&str; 4] = [
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.usage.prompt_tokens",
    "llm.token_count.prompt",
];
const OUTPUT_KEYS: [&str; 4] = [
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.usage.completion_tokens",
    "llm.token_count.completion",
];
const CACHE_READ_KEYS: [&str; 4] = [
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "gen_ai.usage.prompt_tokens_details.cached_tokens",
    "llm.token_count.prompt_details.cache_read",
];
const CACHE_WRITE_KEYS: [&str; 4] = [
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "gen_ai.usage.prompt_tokens_details.cache_creation_tokens",
    "llm.token_count.prompt_details.cache_write",
];
const REASONING_KEYS: [&str; 4] = [
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.usage.reasoning_tokens",
    "gen_ai.usage.completion_tokens_details.reasoning_tokens",
    "llm.token_count.completion_details.reasoning",
];

/// One span → an event, `None` (not an inference span), or the reason it cannot be read.
fn map_span(span: &SpanIn, cx: &MapCtx<'_>) -> Result<Option<UsageEvent>, FieldError> {
    let lim = cx.limits;
    let a = Attrs { span };
    let genai = span
        .attrs
        .iter()
        .any(|(k, _)| k.starts_with("gen_ai.") || k.starts_with("llm."));
    if !genai {
        return Ok(None);
    }
    let op = a.text(&["gen_ai.operation.name", "llm.request.type"]);
    if op.as_deref().is_some_and(|o| NOT_INFERENCE.contains(&o)) {
        return Ok(None);
    }
    if let Some(kind) = a.text(&["traceloop.span.kind"]) {
        if matches!(kind.as_str(), "workflow" | "task" | "agent" | "tool") {
            return Ok(None);
        }
    }
    // OpenInference marks its wrapper spans the same way; only LLM (and embedding) spans
    // are calls.
    if let Some(kind) = a.text(&["openinference.span.kind"]) {
        if !matches!(kind.to_ascii_uppercase().as_str(), "LLM" | "EMBEDDING") {
            return Ok(None);
        }
    }
    let model_attr = a.first(&MODEL_KEYS);
    let input = a.count(&INPUT_KEYS)?;
    let output = a.count(&OUTPUT_KEYS)?;
    if model_attr.is_none() && input.is_none() && output.is_none() {
        if op.is_some() {
            return Err(FieldError::new(
                format!("{}.attributes", span.path),
                "a GenAI inference span without gen_ai.request.model, gen_ai.response.model or \
                 usage attributes; Tally cannot tell what it cost",
            ));
        }
        return Ok(None);
    }

    let mut d = Draft::new(SOURCE);
    d.idem_key = (!span.trace_id.is_empty() && !span.span_id.is_empty())
        .then(|| format!("otlp:{}:{}", span.trace_id, span.span_id));
    let nonzero = |s: &str| (!s.is_empty() && s.chars().any(|c| c != '0')).then(|| s.to_string());
    d.dims.trace_id = nonzero(&span.trace_id);
    d.dims.span_id = nonzero(&span.span_id);
    d.dims.parent_span_id = nonzero(&span.parent_span_id);
    let start = (span.start_ns > 0)
        .then(|| {
            let ns = i64::try_from(span.start_ns).map_err(|_| {
                FieldError::new(format!("{}.startTimeUnixNano", span.path), "out of range")
            })?;
            normalize::unix_nanos(&format!("{}.startTimeUnixNano", span.path), ns)
        })
        .transpose()?;
    d.ts = start;
    if span.start_ns > 0 && span.end_ns >= span.start_ns {
        let ms = Decimal::from(span.end_ns - span.start_ns) / Decimal::from(1_000_000u64);
        d.latency_ms = Some(fields::millis_decimal(
            &format!("{}.endTimeUnixNano", span.path),
            ms,
        )?);
    }

    d.provider = a.text(&[
        "gen_ai.provider.name",
        "gen_ai.system",
        "llm.provider",
        "llm.system",
    ]);
    let requested = a.text(&["gen_ai.request.model", "llm.request.model"]);
    d.model = a.text(&MODEL_KEYS);
    if requested != d.model {
        d.model_requested = requested;
    }
    d.request_id = a.text(&["gen_ai.response.id"]);
    if let Some(o) = &op {
        d.meta_put("gen_ai.operation.name", Value::String(o.clone()));
        d.operation = Some(
            match o.as_str() {
                "chat" | "generate_content" | "text_completion" | "completion" => "chat",
                "embeddings" | "embedding" => "embeddings",
                other => other,
            }
            .to_string(),
        );
    }
    if let Some(tier) = a.text(&[
        "openai.response.service_tier",
        "openai.request.service_tier",
        "gen_ai.request.service_tier",
    ]) {
        d.service_tier = normalize::service_tier(&tier);
    }

    // Status: the span's status, or an error.type attribute.
    let error_type = a.text(&["error.type"]);
    if span.status_code == 2 || error_type.is_some() {
        d.status = Some(CallStatus::Error);
        d.error_type = error_type.or_else(|| Some("error".into()));
        if !span.status_message.is_empty() {
            d.meta_put(
                "error_message",
                Value::String(span.status_message.chars().take(200).collect()),
            );
        }
    }
    if let Some((code, _, key)) = a.decimal(&["http.response.status_code", "http.status_code"])? {
        let code = code.trunc().to_string().parse::<i64>().ok();
        d.http_status = fields::http_status(&format!("{}.attributes[{key}]", span.path), code)?;
    }
    if let Some((secs, _, key)) = a.decimal(&[
        "gen_ai.response.time_to_first_chunk",
        "gen_ai.server.time_to_first_token",
    ])? {
        d.ttft_ms = Some(normalize::seconds_to_ms(
            &format!("{}.attributes[{key}]", span.path),
            secs,
        )?);
    }
    if a.boolean(&[
        "gen_ai.request.stream",
        "gen_ai.is_streaming",
        "llm.is_streaming",
    ]) == Some(true)
    {
        d.meta_put("stream", Value::Bool(true));
    }

    tokens(&a, &mut d, input, output)?;
    cost(&a, &mut d)?;
    attribution(&a, &mut d, lim)?;

    if let Some(reasons) = a.span_attr("gen_ai.response.finish_reasons") {
        d.meta_put("finish_reasons", reasons.to_json());
    }
    d.meta_str("server.address", a.text(&["server.address"]).as_deref());
    d.meta_str("span_name", Some(&span.name));
    d.meta_str("scope_name", Some(&span.scope_name));
    d.meta_str("scope_version", Some(&span.scope_version));
    d.meta_str(
        "environment",
        a.text(&[
            "deployment.environment.name",
            "deployment.environment",
            "gen_ai.environment",
        ])
        .as_deref(),
    );
    let model_field = format!("{}.attributes[gen_ai.response.model]", span.path);
    d.finish(cx.defaults, cx.now, lim, &model_field).map(Some)
}

fn tokens(
    a: &Attrs<'_>,
    d: &mut Draft,
    input: Option<(u64, &'static str)>,
    output: Option<(u64, &'static str)>,
) -> Result<(), FieldError> {
    if input.is_none() && output.is_none() {
        return Ok(());
    }
    let path = |k: &str| format!("{}.attributes[{k}]", a.span.path);
    let (input, input_key) = input.unwrap_or((0, INPUT_KEYS[0]));
    let (output, output_key) = output.unwrap_or((0, OUTPUT_KEYS[0]));
    let read = a.count(&CACHE_READ_KEYS)?;
    let write = a.count(&CACHE_WRITE_KEYS)?;
    let reasoning = a.count(&REASONING_KEYS)?;
    let audio_out = a.count(&["gen_ai.usage.completion_tokens_details.audio_tokens"])?;
    let parts: Vec<(String, u64)> = [read, write]
        .into_iter()
        .flatten()
        .map(|(n, k)| (path(k), n))
        .collect();
    let part_refs: Vec<(&str, u64)> = parts.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    d.tokens.input_uncached = fields::remainder(&path(input_key), input, &part_refs)?;
    d.tokens.cache_read = read.map_or(0, |r| r.0);
    d.tokens.cache_write_5m = write.map_or(0, |w| w.0);
    if d.tokens.cache_write_5m > 0 {
        d.meta_put("cache_ttl_reported", Value::Bool(false));
    }
    let audio_parts: Vec<(String, u64)> =
        audio_out.into_iter().map(|(n, k)| (path(k), n)).collect();
    let audio_refs: Vec<(&str, u64)> = audio_parts.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    d.tokens.output = fields::remainder(&path(output_key), output, &audio_refs)?;
    d.tokens.audio_out = audio_out.map_or(0, |x| x.0);
    if let Some((r, key)) = reasoning {
        check_reasoning(&path(key), r, d.tokens.output)?;
        d.tokens.reasoning = r;
    }
    if let Some((total, key)) = a.count(&[
        "gen_ai.usage.total_tokens",
        "llm.usage.total_tokens",
        "llm.token_count.total",
    ])? {
        if total != input + output {
            return Err(a.err(
                key,
                format!(
                    "{total} does not equal {input_key} + {output_key} ({})",
                    input + output
                ),
            ));
        }
    }
    d.usage_detail = if read.is_some() {
        UsageDetail::Full
    } else {
        UsageDetail::Partial
    };
    Ok(())
}

fn cost(a: &Attrs<'_>, d: &mut Draft) -> Result<(), FieldError> {
    let Some((value, text, key)) = a.decimal(&[
        "gen_ai.usage.cost",
        "gen_ai.usage.cost.amount",
        "llm.cost.total",
    ])?
    else {
        return Ok(());
    };
    d.set_cost(
        &format!("{}.attributes[{key}]", a.span.path),
        value,
        &text,
        CostUnit::Usd,
    )?;
    d.meta_put("reported_cost_attribute", Value::String(key.into()));
    if let Some(cur) = a.text(&["gen_ai.usage.cost.currency"]) {
        d.currency = fields::currency(
            &format!("{}.attributes[gen_ai.usage.cost.currency]", a.span.path),
            Some(cur.into()),
            true,
        )?;
    }
    Ok(())
}

fn attribution(a: &Attrs<'_>, d: &mut Draft, lim: &fields::Limits) -> Result<(), FieldError> {
    // Tally's own namespace first: it is the most deliberate statement of a dimension.
    let tally = a.bag("tally.");
    if let Some(route) = tally.get("route").and_then(Value::as_str) {
        d.route = fields::opt_slug("tally.route", Some(route.into()), lim)?;
    }
    let mut tally = tally;
    if let Some(m) = tally.as_object_mut() {
        m.remove("route");
    }
    apply_bag(
        d,
        &J::root(&tally, &format!("{}.attributes[tally.*]", a.span.path)),
        lim,
    )?;
    let assoc = a.bag("traceloop.association.properties.");
    apply_bag(
        d,
        &J::root(
            &assoc,
            &format!(
                "{}.attributes[traceloop.association.properties.*]",
                a.span.path
            ),
        ),
        lim,
    )?;
    let dims = &mut d.dims;
    fill_str(
        &mut dims.user_id,
        a.text(&["user.id", "enduser.id", "gen_ai.user"]),
    );
    fill_str(
        &mut dims.session_id,
        a.text(&["gen_ai.conversation.id", "session.id"]),
    );
    fill_str(
        &mut dims.agent,
        a.text(&["gen_ai.agent.name", "gen_ai.agent.id"]),
    );
    fill_str(
        &mut dims.feature,
        a.text(&["gen_ai.workflow.name", "traceloop.workflow.name"]),
    );
    // The service is not the project: projects are tenants, decided by the writing key (or a
    // `tally.project` attribute); a service name that moved events across tenants would break
    // isolation and cross-source de-duplication, so it is kept as metadata.
    if let Some(service) = a.text(&["gen_ai.application_name", "service.name"]) {
        d.meta_put("service_name", Value::String(service));
    }
    if let Some(name) = a.text(&["traceloop.entity.name"]) {
        d.meta_put("traceloop.entity.name", Value::String(name));
    }
    Ok(())
}

/// The ingest answer's numbers for `POST /v1/traces`.
#[derive(Debug, Default)]
pub struct TracesBatch {
    pub batch: super::ParsedBatch,
    pub spans: usize,
}

/// The encodings of `POST /v1/traces`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

/// Decodes, maps and prices an OTLP/HTTP traces body. Rejects carry the span's ordinal in the
/// export as their index.
pub fn parse_traces(
    bytes: &[u8],
    encoding: Encoding,
    ctx: &super::Context<'_>,
) -> Result<TracesBatch, super::IngestError> {
    use prost::Message as _;
    let spans = match encoding {
        Encoding::Protobuf => {
            let req = ExportTraceServiceRequest::decode(bytes).map_err(|e| {
                super::IngestError::Unreadable(format!(
                    "body is not an OTLP ExportTraceServiceRequest in protobuf: {e}"
                ))
            })?;
            spans_from_proto(&req)
        }
        Encoding::Json => {
            let v: Value = serde_json::from_slice(bytes).map_err(|e| {
                super::IngestError::Unreadable(format!("body is not valid JSON: {e}"))
            })?;
            if !v.is_object() || v.get("resourceSpans").is_some_and(|r| !r.is_array()) {
                return Err(super::IngestError::Unreadable(
                    "body is not an OTLP/JSON ExportTraceServiceRequest ({\"resourceSpans\": […]})"
                        .into(),
                ));
            }
            spans_from_json(&v).map_err(|e| super::IngestError::Unreadable(e.to_string()))?
        }
    };
    if spans.len() > ctx.max_records {
        return Err(super::IngestError::TooLarge(format!(
            "more than {} spans in one request (ingest.max_records); lower the exporter's batch size",
            ctx.max_records
        )));
    }
    let mcx = MapCtx {
        now: ctx.now,
        limits: ctx.limits,
        defaults: ctx.defaults,
    };
    let out = map_spans(&spans, &mcx);
    let mut batch = super::ParsedBatch {
        skipped: out.skipped,
        ..super::ParsedBatch::default()
    };
    for (i, ev) in out.events {
        match super::finish(ev, ctx) {
            Ok(priced) => {
                batch.events.push(priced);
                batch.indexes.push(i);
            }
            Err((source_format, e)) => batch.rejects.push(super::Reject {
                index: i,
                source_format,
                field: e.field,
                reason: e.reason,
                raw: String::new(),
            }),
        }
    }
    for (i, e, raw) in out.rejected {
        batch.rejects.push(super::Reject {
            index: i,
            source_format: SOURCE.into(),
            field: e.field,
            reason: e.reason,
            raw,
        });
    }
    Ok(TracesBatch {
        batch,
        spans: out.spans,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx_map(v: &Value) -> Mapped {
        let lim = fields::Limits::default();
        let defaults = super::super::RequestDefaults::default();
        let cx = MapCtx {
            now: chrono::Utc::now(),
            limits: &lim,
            defaults: &defaults,
        };
        map_json(v, &cx).unwrap()
    }

    #[test]
    fn enum_names_and_openinference_spans() {
        let s = |k: &str, v: &str| json!({"key": k, "value": {"stringValue": v}});
        let i = |k: &str, v: i64| json!({"key": k, "value": {"intValue": v}});
        let export = json!({"resourceSpans": [{"scopeSpans": [{"spans": [
            {"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331",
             "kind": "SPAN_KIND_CLIENT", "status": {"code": "STATUS_CODE_ERROR", "message": "boom"},
             "startTimeUnixNano": "1767225600000000000", "endTimeUnixNano": "1767225601000000000",
             "attributes": [s("openinference.span.kind", "LLM"), s("llm.model_name", "gpt-4o-mini"),
                            s("llm.provider", "openai"), i("llm.token_count.prompt", 1000),
                            i("llm.token_count.prompt_details.cache_read", 400),
                            i("llm.token_count.completion", 50), i("llm.token_count.total", 1050)]},
            {"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "c7ad6b7169203332",
             "attributes": [s("openinference.span.kind", "CHAIN"), s("llm.model_name", "gpt-4o-mini"),
                            i("llm.token_count.prompt", 1000)]}]}]}]});
        let m = cx_map(&export);
        assert_eq!((m.events.len(), m.skipped, m.rejected.len()), (1, 1, 0));
        let ev = &m.events[0];
        assert_eq!(ev.status, CallStatus::Error);
        assert_eq!(ev.provider.as_deref(), Some("openai"));
        assert_eq!(
            (
                ev.tokens.input_uncached,
                ev.tokens.cache_read,
                ev.tokens.output
            ),
            (600, 400, 50)
        );
        assert_eq!(ev.latency_ms, Some(1000));
    }

    #[test]
    fn an_unknown_enum_name_fails_the_whole_export() {
        let export = json!({"resourceSpans": [{"scopeSpans": [{"spans": [
            {"spanId": "01", "status": {"code": "STATUS_CODE_MAYBE"}}]}]}]});
        assert!(spans_from_json(&export).is_err());
    }
}
