//! Fuzzing entry points for every untrusted-input parser: ingest bodies (each format, and
//! detection), OTLP traces (protobuf and JSON), body decompression, and the query-parameter
//! parser. The `cargo fuzz` targets under `fuzz/` call these, and the property tests below run a
//! bounded amount of the same work in every `cargo test`, so CI fuzzes without a nightly
//! toolchain. Each entry point also checks the invariants a crash-free run must keep (every
//! record accounted for, exclusive token buckets), panicking when one breaks so a fuzzer
//! reports it.

use std::sync::OnceLock;

use chrono::{TimeZone, Utc};

use super::body::{self, BodyKind};
use super::{otlp, Context, Format, Limits, ParsedBatch, RequestDefaults};
use crate::keys::Principal;
use crate::pricing::Pricer;
use crate::pricing::PricingConfig;

fn pricer() -> &'static Pricer {
    static PRICER: OnceLock<Pricer> = OnceLock::new();
    PRICER.get_or_init(|| {
        Pricer::builtin(&PricingConfig::default()).expect("the built-in catalog loads")
    })
}

fn with_context<T>(f: impl FnOnce(&Context<'_>) -> T) -> T {
    let limits = Limits::default();
    let principal = Principal::superuser();
    let defaults = RequestDefaults::default();
    let ctx = Context {
        pricer: pricer(),
        limits: &limits,
        max_records: 10_000,
        now: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
        principal: &principal,
        defaults: &defaults,
    };
    f(&ctx)
}

/// Checks what every parsed batch must satisfy, whatever the input.
fn check(batch: &ParsedBatch) {
    assert_eq!(
        batch.indexes.len(),
        batch.events.len(),
        "every event names its record"
    );
    for e in &batch.events {
        let t = &e.event.tokens;
        // The buckets are exclusive: their sum is the inclusive total and must not overflow;
        // reasoning is part of output.
        let sum = [
            t.input_uncached,
            t.cache_read,
            t.cache_write_5m,
            t.cache_write_1h,
            t.audio_in,
            t.image_in,
            t.output,
            t.audio_out,
            t.image_out,
        ]
        .into_iter()
        .try_fold(0u64, u64::checked_add);
        assert!(sum.is_some(), "token buckets overflow: {t:?}");
        assert!(t.reasoning <= t.output, "reasoning exceeds output: {t:?}");
        assert!(!e.event.model.is_empty(), "an event without a model");
    }
}

/// `data[0]` picks the format (auto or one of [`Format::ALL`]) and body kind, `data[1]` the
/// content encoding; the rest is the body.
pub fn ingest_body(data: &[u8]) {
    let (Some(&sel), Some(&enc)) = (data.first(), data.get(1)) else {
        return;
    };
    let format = match sel as usize % (Format::ALL.len() + 1) {
        0 => None,
        n => Some(Format::ALL[n - 1]),
    };
    let kind = [BodyKind::Json, BodyKind::Ndjson, BodyKind::Sniff][(sel as usize / 16) % 3];
    let encoding = [
        None,
        Some("gzip"),
        Some("zstd"),
        Some("deflate"),
        Some("br"),
    ][enc as usize % 5];
    let Ok(decoded) = body::decode(&data[2..], encoding, 1 << 20) else {
        return;
    };
    with_context(|ctx| {
        if let Ok(batch) = super::parse_body(&decoded, kind, format, ctx) {
            check(&batch);
        }
    });
}

/// `data[0]` picks protobuf or JSON; the rest is the OTLP export request.
pub fn traces_body(data: &[u8]) {
    let Some(&sel) = data.first() else { return };
    let encoding = if sel % 2 == 0 {
        otlp::Encoding::Protobuf
    } else {
        otlp::Encoding::Json
    };
    with_context(|ctx| {
        if let Ok(traces) = otlp::parse_traces(&data[1..], encoding, ctx) {
            check(&traces.batch);
        }
    });
}

/// A raw query string through the shared parameter parser of the query endpoints.
pub fn query(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let pairs = crate::analytics::params::pairs(Some(&text));
    let _ = crate::analytics::params::parse_common(&pairs, &[], &["cost", "requests"]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    /// Every fixture of every format, as seeds for mutation.
    fn fixtures() -> &'static [Vec<u8>] {
        static FIXTURES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
        FIXTURES.get_or_init(|| {
            let mut out = Vec::new();
            let mut dirs = vec![crate::test_root().join("tests/fixtures")];
            while let Some(dir) = dirs.pop() {
                for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    let path = entry.path();
                    if path.is_dir() {
                        dirs.push(path);
                    } else if let Ok(bytes) = std::fs::read(&path) {
                        out.push(bytes);
                    }
                }
            }
            assert!(
                out.len() > 20,
                "fixtures not found (tests run in the package root)"
            );
            out
        })
    }

    /// Byte-level mutations a fuzzer would make: flips, cuts, inserted structure characters.
    #[derive(Debug, Clone)]
    enum Mutation {
        Flip(usize, u8),
        Truncate(usize),
        Insert(usize, u8),
        Delete(usize, usize),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let structural = prop::sample::select(b"{}[]\",:-0123456789.eE\\\n nulltrue".to_vec());
        prop_oneof![
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
            any::<usize>().prop_map(Mutation::Truncate),
            (any::<usize>(), structural).prop_map(|(i, b)| Mutation::Insert(i, b)),
            (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        ]
    }

    fn mutate(mut bytes: Vec<u8>, ops: &[Mutation]) -> Vec<u8> {
        for op in ops {
            let len = bytes.len().max(1);
            match *op {
                Mutation::Flip(i, b) if !bytes.is_empty() => bytes[i % len] ^= b,
                Mutation::Truncate(i) => bytes.truncate(i % len),
                Mutation::Insert(i, b) => bytes.insert(i % (bytes.len() + 1), b),
                Mutation::Delete(i, n) if !bytes.is_empty() => {
                    let start = i % len;
                    let end = (start + n).min(bytes.len());
                    bytes.drain(start..end);
                }
                _ => {}
            }
        }
        bytes
    }

    /// JSON built from the field names the mappers look for, with hostile values.
    fn hostile_json() -> impl Strategy<Value = Value> {
        let key = prop::sample::select(vec![
            "model",
            "usage",
            "input_tokens",
            "output_tokens",
            "prompt_tokens",
            "completion_tokens",
            "cache_read_tokens",
            "cache_creation_input_tokens",
            "reasoning_tokens",
            "cost",
            "timestamp",
            "id",
            "metadata",
            "tags",
            "provider",
            "choices",
            "usageMetadata",
            "promptTokenCount",
            "response",
            "request",
            "data",
            "specversion",
            "type",
            "attempt",
            "latency_ms",
            "status",
            "project",
            "resourceSpans",
            "spans",
            "attributes",
            "key",
            "value",
            "stringValue",
            "intValue",
            "standard_logging_object",
            "response_cost",
            "total_tokens",
            "prompt_tokens_details",
            "cached_tokens",
        ]);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            Just(json!(u64::MAX)),
            Just(json!(-1)),
            Just(json!("1e400")),
            Just(json!(1.5e300)),
            Just(json!("NaN")),
            Just(json!("")),
            "[a-z0-9:.\\-]{0,12}".prop_map(Value::String),
            Just(json!("2026-13-45T99:99:99Z")),
        ];
        leaf.prop_recursive(4, 64, 8, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((key.clone(), inner), 0..8).prop_map(|kv| {
                    Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                }),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2048)) {
            ingest_body(&data);
            traces_body(&data);
            query(&data);
        }

        #[test]
        fn mutated_fixtures_never_panic(
            pick in any::<usize>(),
            sel in any::<u8>(),
            ops in prop::collection::vec(mutation(), 1..8),
        ) {
            let seed = &fixtures()[pick % fixtures().len()];
            let mut data = vec![sel, 0];
            data.extend(mutate(seed.clone(), &ops));
            ingest_body(&data);
            traces_body(&data[1..]);
        }

        #[test]
        fn hostile_json_in_every_format_never_panics(value in hostile_json(), sel in any::<u8>()) {
            let mut data = vec![sel, 0];
            data.extend(serde_json::to_vec(&value).unwrap());
            ingest_body(&data);
            let mut otlp = vec![1];
            otlp.extend(serde_json::to_vec(&json!({"resourceSpans": [{"scopeSpans": [{"spans": [value]}]}]})).unwrap());
            traces_body(&otlp);
        }

        #[test]
        fn hostile_query_strings_never_panic(
            parts in prop::collection::vec(
                (prop::sample::select(vec![
                    "from", "to", "interval", "tz", "group_by", "order", "limit", "filter",
                    "feature", "model", "project", "tag.team", "user_id", "metadata.x",
                ]),
                "[ -~]{0,24}"),
                0..8,
            )
        ) {
            let q: Vec<String> = parts.iter().map(|(k, v)| format!("{k}={v}")).collect();
            query(q.join("&").as_bytes());
        }
    }
}
