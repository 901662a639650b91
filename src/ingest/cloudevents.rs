//! CloudEvents 1.0 (JSON format) whose `data` is a native Tally event → [`UsageEvent`]
//! (formats.md §10).
//!
//! A single event arrives as `application/cloudevents+json`; a batch as
//! `application/cloudevents-batch+json`, a JSON array the body splitter turns into records.
//! `data` is read with the native mapper (so its token contract and errors are the native
//! ones, under `data.`); `data_base64` holding JSON is accepted too. The context attributes
//! fill what `data` leaves out: `time` → timestamp, `subject` → customer (OpenMeter's metering
//! subject), `source` + `id` → the idempotency key (the spec lets consumers treat the same
//! source and id as one event). Extension attributes are read as a caller bag (`userid`,
//! `feature`, `team`, … fill dimensions; the rest is metadata). OpenMeter's own LLM event
//! shape (one event per token type) is not a native event and is rejected naming its fields.

use base64::Engine;
use serde_json::{Map, Value};

use super::fields::FieldError;
use super::normalize::{apply_bag, Draft};
use super::value::J;
use super::{native, MapCtx, Mapped};

pub const SOURCE: &str = "cloudevents";

/// The context attributes the spec defines; everything else at the top level is an extension.
const CONTEXT: [&str; 10] = [
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
    "data",
    "data_base64",
];

pub fn matches(v: &Value) -> bool {
    v.get("specversion").is_some()
}

pub fn map(v: &Value, cx: &MapCtx<'_>) -> Result<Mapped, FieldError> {
    let lim = cx.limits;
    let r = J::root(v, "");
    match r.str("specversion")? {
        Some("1.0") => {}
        Some(other) => {
            return Err(r.err_at(
                "specversion",
                format!("{other:?} is not supported; expected \"1.0\""),
            ))
        }
        None => return Err(r.err_at("specversion", "is required")),
    }
    let id = r
        .id("id", lim)?
        .ok_or_else(|| r.err_at("id", "is required"))?;
    let source = r
        .string("source", lim)?
        .ok_or_else(|| r.err_at("source", "is required"))?;
    if let Some(ct) = r.str("datacontenttype")? {
        let essence = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(r.err_at(
                "datacontenttype",
                format!("{ct:?}: data must be JSON (a native Tally event)"),
            ));
        }
    }
    let mut data = match (r.raw("data"), r.str("data_base64")?) {
        (Some(Value::Object(m)), _) => m.clone(),
        (Some(other), _) => {
            return Err(r.err_at(
                "data",
                format!(
                    "expected a native Tally event object, got {}",
                    super::value::kind(other)
                ),
            ))
        }
        (None, Some(b64)) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| r.err_at("data_base64", format!("is not base64 ({e})")))?;
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(m)) => m,
                _ => return Err(r.err_at("data_base64", "does not hold a JSON object")),
            }
        }
        (None, None) => return Err(r.err_at("data", "is required: the native Tally event")),
    };
    // Context attributes fill what the event leaves out.
    let fill = |data: &mut Map<String, Value>, key: &str, value: Option<Value>| {
        if let Some(v) = value {
            if data.get(key).is_none_or(Value::is_null) {
                data.insert(key.into(), v);
            }
        }
    };
    fill(
        &mut data,
        "id",
        Some(Value::String(format!("ce:{source}:{id}"))),
    );
    fill(&mut data, "timestamp", r.raw("time").cloned());
    fill(&mut data, "customer_id", r.raw("subject").cloned());
    let text = Value::Object(data).to_string();
    let ev = native::parse_with(&text, cx.now, lim, cx.defaults).map_err(|mut e| {
        e.field = if e.field == "(record)" {
            "data".into()
        } else {
            format!("data.{}", e.field)
        };
        e
    })?;
    let mut d = Draft::from_event(ev, SOURCE);
    d.meta_put("ce_source", Value::String(source));
    d.meta_put("ce_id", Value::String(id));
    d.meta_str("ce_type", r.str("type")?);
    d.meta_str("ce_dataschema", r.str("dataschema")?);
    let extensions: Map<String, Value> = v
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| !CONTEXT.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    if !extensions.is_empty() {
        let ext = Value::Object(extensions);
        apply_bag(&mut d, &J::root(&ext, ""), lim)?;
    }
    Ok(Mapped::one(d.finish(
        cx.defaults,
        cx.now,
        lim,
        "data.model",
    )?))
}
