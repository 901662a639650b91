//! Across formats, through a real server: the same call arriving through two sources is stored
//! once with the union of their attribution; `X-Tally-*` headers fill what records leave empty;
//! detection names what it expected; `POST /v1/traces` takes an export encoded with the
//! OpenTelemetry protobuf types (`prost::Message::encode`, the exporters' own path), gzip too,
//! and answers in OTLP's own response message.

#[macro_use]
mod common;

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message as _;
use rust_decimal::Decimal;
use serde_json::{json, Value};

use common::{gzip, ndjson, start, start_with};

fn dec_of(v: &Value) -> Decimal {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a decimal string, got {v}"))
        .parse()
        .unwrap()
}

/// Reads selected columns of every stored event (after the server stopped).
fn stored(dir: &std::path::Path, columns: &[&str]) -> Vec<Vec<Option<String>>> {
    let conn = duckdb::Connection::open(dir.join("tally.duckdb")).unwrap();
    let select: Vec<String> = columns
        .iter()
        .map(|c| match *c {
            "tags" => "array_to_string(tags, ',')".to_string(),
            c => format!("CAST({c} AS VARCHAR)"),
        })
        .collect();
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {} FROM events ORDER BY ts, request_id",
            select.join(", ")
        ))
        .unwrap();
    let n = columns.len();
    stmt.query_map([], |r| {
        (0..n).map(|i| r.get::<_, Option<String>>(i)).collect()
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// A LiteLLM StandardLoggingPayload for an OpenAI call.
fn litellm_log(response_id: &str, call_id: &str) -> Value {
    json!({
        "id": response_id, "litellm_call_id": call_id, "trace_id": "litellm-trace-1",
        "call_type": "acompletion", "status": "success", "custom_llm_provider": "openai",
        "model": "gpt-4.1-mini-2025-04-14", "model_group": "fast-chat",
        "startTime": 1767225600.120, "endTime": 1767225601.870,
        "prompt_tokens": 2048, "completion_tokens": 310, "total_tokens": 2358,
        "response_cost": 0.000861, "cache_hit": false, "request_tags": ["support"], "end_user": "cust_42",
        "metadata": {"user_api_key_hash": "88dc28d0", "user_api_key_team_id": "team_support",
                     "user_api_key_user_id": "u_17",
                     "usage_object": {"prompt_tokens": 2048, "completion_tokens": 310,
                                      "prompt_tokens_details": {"cached_tokens": 1536},
                                      "completion_tokens_details": {"reasoning_tokens": 0}}}
    })
}

/// An OTLP/JSON export with one GenAI span for the same call as [`litellm_log`].
fn otel_span(response_id: &str, span_id: &str) -> Value {
    let s = |k: &str, v: &str| json!({"key": k, "value": {"stringValue": v}});
    let i = |k: &str, v: i64| json!({"key": k, "value": {"intValue": v.to_string()}});
    json!({"resourceSpans": [{
        "resource": {"attributes": [s("service.name", "checkout-api")]},
        "scopeSpans": [{"scope": {"name": "opentelemetry.instrumentation.openai"}, "spans": [{
            "traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": span_id,
            "name": "chat gpt-4.1-mini", "kind": 3,
            "startTimeUnixNano": "1767225600100000000", "endTimeUnixNano": "1767225601900000000",
            "attributes": [
                s("gen_ai.operation.name", "chat"), s("gen_ai.provider.name", "openai"),
                s("gen_ai.request.model", "gpt-4.1-mini"), s("gen_ai.response.model", "gpt-4.1-mini-2025-04-14"),
                s("gen_ai.response.id", response_id),
                i("gen_ai.usage.input_tokens", 2048), i("gen_ai.usage.cache_read.input_tokens", 1536),
                i("gen_ai.usage.output_tokens", 310),
                s("gen_ai.conversation.id", "sess-xs"), s("gen_ai.agent.name", "helper"),
                s("tally.feature", "checkout"), s("tally.task_id", "task-xs"),
                s("traceloop.association.properties.user_id", "u_other")],
            "status": {"code": 1}}]}]}]})
}

#[tokio::test]
async fn the_same_call_through_two_sources_is_stored_once_with_both_sources_attribution() {
    let srv = start().await;
    // gpt-4.1-mini: input 0.4, cache read 0.1, output 1.6 per million.
    let computed = (Decimal::from(512) * dec!(0.4)
        + Decimal::from(1536) * dec!(0.1)
        + Decimal::from(310) * dec!(1.6))
        / Decimal::from(1_000_000);

    // 1. The gateway log first, then the span: one event, the log's cost, both attributions.
    let (_, a) = srv
        .ingest_json(&litellm_log("chatcmpl-XS-1", "call-xs-1"))
        .await;
    assert_eq!(
        (a["accepted"].as_u64(), a["duplicates"].as_u64()),
        (Some(1), Some(0)),
        "{a}"
    );
    let (_, a) = srv
        .ingest_json(&otel_span("chatcmpl-XS-1", "b7ad6b7169203331"))
        .await;
    assert_eq!(
        (a["accepted"].as_u64(), a["duplicates"].as_u64()),
        (Some(0), Some(1)),
        "{a}"
    );
    // A native record of the same call (its own id) adds the run.
    let native = json!({"id": "app-evt-9", "provider": "openai", "request_id": "chatcmpl-XS-1",
                        "timestamp": "2026-01-01T00:00:00Z", "model": "gpt-4.1-mini",
                        "usage": {"input_tokens": 2048, "output_tokens": 310}, "run_id": "run-xs"});
    let (_, a) = srv.ingest_json(&native).await;
    assert_eq!(a["duplicates"], 1, "{a}");

    // 2. The span first, then the log: the span's (computed) cost stays, the log fills gaps.
    //    Both copies in one NDJSON body: the second fills the first within the same commit.
    let body = ndjson(&[
        otel_span("chatcmpl-XS-2", "c7ad6b7169203332"),
        litellm_log("chatcmpl-XS-2", "call-xs-2"),
    ]);
    let (_, a) = srv.ingest_raw("application/x-ndjson", None, body, "").await;
    assert_eq!(
        (a["accepted"].as_u64(), a["duplicates"].as_u64()),
        (Some(1), Some(1)),
        "{a}"
    );

    let total = srv.get_ok("/api/v1/costs").await["total"].clone();
    assert_eq!(total["requests"], 2);
    assert_eq!(dec_of(&total["cost"]), dec!(0.000861) + computed);
    assert_eq!(total["input_tokens"], 2 * 2048);

    let dir = srv.stop().await;
    let cols = [
        "request_id",
        "source_format",
        "user_id",
        "team_id",
        "customer_id",
        "api_key_id",
        "feature",
        "task_id",
        "run_id",
        "agent",
        "session_id",
        "trace_id",
        "span_id",
        "tags",
        "project",
        "cost_source",
    ];
    let rows = stored(dir.path(), &cols);
    assert_eq!(rows.len(), 2, "{rows:?}");
    let get = |row: &Vec<Option<String>>, c: &str| {
        row[cols.iter().position(|x| *x == c).unwrap()].clone()
    };
    let first = rows
        .iter()
        .find(|r| get(r, "request_id").as_deref() == Some("chatcmpl-XS-1"))
        .unwrap();
    for (col, want) in [
        ("source_format", "litellm.slp"),
        ("user_id", "u_17"), // the stored value wins over the span's u_other
        ("team_id", "team_support"),
        ("customer_id", "cust_42"),
        ("api_key_id", "88dc28d0"),
        ("feature", "checkout"),
        ("task_id", "task-xs"),
        ("run_id", "run-xs"),
        ("agent", "helper"),
        ("session_id", "sess-xs"),
        ("trace_id", "litellm-trace-1"),
        ("span_id", "b7ad6b7169203331"),
        ("tags", "support"),
        ("project", "default"), // the writing key's project; service.name is not a tenant
        ("cost_source", "reported"),
    ] {
        assert_eq!(get(first, col).as_deref(), Some(want), "first call, {col}");
    }
    let second = rows
        .iter()
        .find(|r| get(r, "request_id").as_deref() == Some("chatcmpl-XS-2"))
        .unwrap();
    for (col, want) in [
        ("source_format", "otlp"),
        ("user_id", "u_other"),
        ("team_id", "team_support"),
        ("customer_id", "cust_42"),
        ("api_key_id", "88dc28d0"),
        ("tags", "support"),
        ("trace_id", "0af7651916cd43dd8448eb211c80319c"),
        ("cost_source", "computed"),
    ] {
        assert_eq!(
            get(second, col).as_deref(),
            Some(want),
            "second call, {col}"
        );
    }
}

#[tokio::test]
async fn x_tally_headers_fill_what_records_leave_empty() {
    let srv = start().await;
    let fixture = |p: &str| std::fs::read(format!("{}/tests/fixtures/{p}", ".")).unwrap();
    let headers = [
        ("X-Tally-User", "u_header"),
        ("X-Tally-Feature", "hdr-feature"),
        ("X-Tally-Customer", "hdr-cust"),
        ("X-Tally-Task", "hdr-task"),
        ("X-Tally-Run", "hdr-run"),
        ("X-Tally-Tags", "team-a, prod"),
        ("X-Tally-Route", "Corp-Proxy"),
    ];
    for (path, ct) in [
        ("openai/chat_cached.json", "application/json"),
        ("openai/responses_reasoning_pair.json", "application/json"),
    ] {
        let mut rb = srv
            .client
            .post(srv.url("/v1/ingest"))
            .header("content-type", ct)
            .body(fixture(path));
        for (k, v) in headers {
            rb = rb.header(k, v);
        }
        let a: Value = rb.send().await.unwrap().json().await.unwrap();
        assert_eq!(a["accepted"], 1, "{a}");
    }
    // A native record that names its own route and tags keeps them, and gains the header's tags.
    let mut rb = srv.client.post(srv.url("/v1/ingest")).json(&json!({
        "model": "gpt-4o", "request_id": "native-hdr", "route": "litellm", "tags": ["eu"], "user_id": "u_native"}));
    for (k, v) in headers {
        rb = rb.header(k, v);
    }
    let a: Value = rb.send().await.unwrap().json().await.unwrap();
    assert_eq!(a["accepted"], 1, "{a}");
    // A header over the length limit is a 400 naming it.
    let long = "x".repeat(300);
    let r = srv
        .client
        .post(srv.url("/v1/ingest"))
        .header("X-Tally-User", long)
        .json(&json!({"model": "m"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("x-tally-user"),
        "{body}"
    );

    let dir = srv.stop().await;
    let cols = [
        "request_id",
        "user_id",
        "feature",
        "customer_id",
        "task_id",
        "run_id",
        "tags",
        "route",
    ];
    let rows = stored(dir.path(), &cols);
    let by_id = |id: &str| {
        rows.iter()
            .find(|r| r[0].as_deref() == Some(id))
            .unwrap()
            .clone()
    };
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        by_id("chatcmpl-7Qd2LmZ0a1")[1..],
        [
            s("u_header"),
            s("hdr-feature"),
            s("hdr-cust"),
            s("hdr-task"),
            s("hdr-run"),
            s("team-a,prod"),
            s("corp-proxy")
        ]
    );
    assert_eq!(
        by_id("resp_0a9f31c2")[1..],
        [
            s("u_7f3a19"),
            s("ticket-summary"),
            s("acme"),
            s("ticket-9912"),
            s("run_7f3a"),
            s("team-a,prod"),
            s("corp-proxy")
        ]
    );
    assert_eq!(
        by_id("native-hdr")[1..],
        [
            s("u_native"),
            s("hdr-feature"),
            s("hdr-cust"),
            s("hdr-task"),
            s("hdr-run"),
            s("eu,team-a,prod"),
            s("litellm")
        ]
    );
}

#[tokio::test]
async fn unknown_ambiguous_and_mismatched_records_are_rejected_with_what_was_expected() {
    let srv = start().await;
    let body = json!([
        {"foo": 1, "bar": 2},
        {"specversion": "1.0", "resourceSpans": []},
        {"model": "gpt-4o", "usage": {"input_tokens": 10, "output_tokens": 2}},
    ]);
    let (status, a) = srv.ingest_json(&body).await;
    assert_eq!(status, 200);
    assert_eq!(a["accepted"], 1, "{a}");
    let rejected = a["rejected"].as_array().unwrap();
    assert_eq!(rejected[0]["index"], 0);
    assert_eq!(rejected[0]["format"], "unknown");
    let reason = rejected[0]["error"].as_str().unwrap();
    for word in [
        "unrecognized record shape",
        "foo",
        "openai",
        "litellm",
        "resourceSpans",
        "?format=",
    ] {
        assert!(reason.contains(word), "{reason:?} should mention {word}");
    }
    assert_eq!(rejected[1]["index"], 1);
    let reason = rejected[1]["error"].as_str().unwrap();
    assert!(
        reason.contains("ambiguous") && reason.contains("cloudevents") && reason.contains("otlp"),
        "{reason}"
    );

    // A forced format reads the record as that format and names what is missing.
    let openai = std::fs::read(format!("{}/tests/fixtures/openai/chat_cached.json", ".")).unwrap();
    let (_, a) = srv
        .ingest_raw(
            "application/json",
            None,
            openai.clone(),
            "?format=anthropic",
        )
        .await;
    assert_eq!(a["rejected"][0]["format"], "anthropic.messages", "{a}");
    assert_eq!(a["rejected"][0]["field"], "usage.input_tokens", "{a}");
    // ?format=auto is the default; an unknown format is a 400 listing the known ones.
    let (_, a) = srv
        .ingest_raw("application/json", None, openai, "?format=auto")
        .await;
    assert_eq!(a["accepted"], 1, "{a}");
    let (status, a) = srv
        .ingest_raw("application/json", None, b"{}".to_vec(), "?format=langfuse")
        .await;
    assert_eq!(status, 400);
    let message = a["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("langfuse") && message.contains("cloudflare") && message.contains("otlp"),
        "{message}"
    );

    // Rejected records keep their format in the dead-letter table.
    let dead = srv
        .get_ok("/api/v1/rejects?source_format=anthropic.messages")
        .await;
    assert_eq!(dead["total"], 1, "{dead}");
    srv.stop().await;
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
    }
}

fn text(key: &str, v: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.into()))
}

fn int(key: &str, v: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(v))
}

/// An export as an OpenTelemetry SDK builds it: one resource, a GenAI span with its usage and
/// an OpenLIT-style cost, an HTTP span, and optionally a span whose parts exceed its total.
fn export(trace: [u8; 16], first_span: u8, with_bad_span: bool) -> ExportTraceServiceRequest {
    let chat = Span {
        trace_id: trace.to_vec(),
        span_id: vec![first_span; 8],
        parent_span_id: vec![0xaa; 8],
        name: "chat gpt-4o-mini".into(),
        kind: span::SpanKind::Client as i32,
        start_time_unix_nano: 1_767_225_600_000_000_000,
        end_time_unix_nano: 1_767_225_600_450_000_000,
        attributes: vec![
            text("gen_ai.operation.name", "chat"),
            text("gen_ai.provider.name", "openai"),
            text("gen_ai.request.model", "gpt-4o-mini"),
            text(
                "gen_ai.response.id",
                &format!("chatcmpl-proto-{first_span}"),
            ),
            int("gen_ai.usage.input_tokens", 1000),
            int("gen_ai.usage.cache_read.input_tokens", 200),
            int("gen_ai.usage.output_tokens", 100),
            kv("gen_ai.usage.cost", any_value::Value::DoubleValue(0.00013)),
            kv("gen_ai.request.stream", any_value::Value::BoolValue(true)),
            kv(
                "gen_ai.response.time_to_first_chunk",
                any_value::Value::DoubleValue(0.125),
            ),
            text("tally.customer_id", "proto-customer"),
        ],
        status: Some(Status {
            code: status::StatusCode::Ok as i32,
            message: String::new(),
        }),
        ..Span::default()
    };
    let http = Span {
        trace_id: trace.to_vec(),
        span_id: vec![0xaa; 8],
        name: "GET /".into(),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: 1_767_225_599_900_000_000,
        end_time_unix_nano: 1_767_225_600_500_000_000,
        attributes: vec![text("http.request.method", "GET")],
        ..Span::default()
    };
    let mut spans = vec![chat, http];
    if with_bad_span {
        spans.push(Span {
            trace_id: trace.to_vec(),
            span_id: vec![0xbb; 8],
            name: "chat gpt-4o-mini".into(),
            kind: span::SpanKind::Client as i32,
            start_time_unix_nano: 1_767_225_601_000_000_000,
            end_time_unix_nano: 1_767_225_601_100_000_000,
            attributes: vec![
                text("gen_ai.operation.name", "chat"),
                text("gen_ai.request.model", "gpt-4o-mini"),
                int("gen_ai.usage.input_tokens", 10),
                int("gen_ai.usage.cache_read.input_tokens", 500),
                int("gen_ai.usage.output_tokens", 1),
            ],
            ..Span::default()
        });
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![text("service.name", "proto-svc")],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "opentelemetry.instrumentation.openai".into(),
                    version: "0.40.0".into(),
                    ..InstrumentationScope::default()
                }),
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

async fn post_traces(
    srv: &common::TestServer,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut rb = srv
        .client
        .post(srv.url("/v1/traces"))
        .header("content-type", content_type)
        .body(body);
    if let Some(e) = encoding {
        rb = rb.header("content-encoding", e);
    }
    rb.send().await.unwrap()
}

#[tokio::test]
async fn otlp_protobuf_export_from_the_sdk_types_is_accepted_plain_and_gzip() {
    let srv = start().await;
    let trace = [
        0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47,
        0x36,
    ];

    let resp = post_traces(
        &srv,
        "application/x-protobuf",
        None,
        export(trace, 1, false).encode_to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-protobuf");
    assert_eq!(resp.headers()["x-tally-accepted"], "1");
    assert_eq!(resp.headers()["x-tally-skipped"], "1");
    let answer = ExportTraceServiceResponse::decode(resp.bytes().await.unwrap()).unwrap();
    assert_eq!(
        answer.partial_success, None,
        "every span accepted or skipped"
    );

    // gzip, with a span whose cache read exceeds its input: partial success names it.
    let resp = post_traces(
        &srv,
        "application/x-protobuf",
        Some("gzip"),
        gzip(&export(trace, 2, true).encode_to_vec()),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let answer = ExportTraceServiceResponse::decode(resp.bytes().await.unwrap()).unwrap();
    let partial = answer.partial_success.expect("partial success");
    assert_eq!(partial.rejected_spans, 1);
    assert!(
        partial
            .error_message
            .contains("spans[2].attributes[gen_ai.usage.input_tokens]"),
        "{}",
        partial.error_message
    );

    // The same export as OTLP/JSON: the answer is JSON, with Tally's numbers beside OTLP's.
    let json_export = json!({"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "json-svc"}}]},
        "scopeSpans": [{"spans": [{
            "traceId": "4BF92F3577B34DA6A3CE929D0E0E4736", "spanId": "0303030303030303",
            "name": "chat", "kind": 3,
            "startTimeUnixNano": "1767225602000000000", "endTimeUnixNano": "1767225602200000000",
            "attributes": [
                {"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}},
                {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}},
                {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "1000"}},
                {"key": "gen_ai.usage.output_tokens", "value": {"intValue": 100}}]}]}]}]});
    let resp = post_traces(
        &srv,
        "application/json",
        None,
        json_export.to_string().into_bytes(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert!(answer.get("partialSuccess").is_none(), "{answer}");
    assert_eq!(answer["tally"]["accepted"], 1, "{answer}");
    assert_eq!(answer["tally"]["spans"], 1, "{answer}");

    // Not an OTLP encoding, or not OTLP at all.
    let resp = post_traces(&srv, "text/plain", None, b"x".to_vec()).await;
    assert_eq!(resp.status(), 415);
    let resp = post_traces(
        &srv,
        "application/x-protobuf",
        None,
        b"\xff\xff\xff".to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 400);

    let dir = srv.stop().await;
    let cols = [
        "request_id",
        "input_uncached",
        "cache_read",
        "output",
        "reported_cost",
        "computed_cost",
        "trace_id",
        "span_id",
        "parent_span_id",
        "project",
        "customer_id",
        "latency_ms",
        "ttft_ms",
    ];
    let rows = stored(dir.path(), &cols);
    assert_eq!(rows.len(), 3, "{rows:?}");
    let r = rows
        .iter()
        .find(|r| r[0].as_deref() == Some("chatcmpl-proto-1"))
        .unwrap();
    let s = |v: &str| Some(v.to_string());
    assert_eq!(r[1..4], [s("800"), s("200"), s("100")]);
    // The double 0.00013 is read through its shortest decimal text, exactly.
    assert_eq!(
        r[4].as_deref().map(|v| v.parse::<Decimal>().unwrap()),
        Some(dec!(0.00013))
    );
    // gpt-4o-mini: input 0.15, cache read 0.075, output 0.6 per million.
    let computed = (Decimal::from(800) * dec!(0.15)
        + Decimal::from(200) * dec!(0.075)
        + Decimal::from(100) * dec!(0.6))
        / Decimal::from(1_000_000);
    assert_eq!(
        r[5].as_deref().map(|v| v.parse::<Decimal>().unwrap()),
        Some(computed)
    );
    assert_eq!(
        r[6..],
        [
            s("4bf92f3577b34da6a3ce929d0e0e4736"),
            s("0101010101010101"),
            s("aaaaaaaaaaaaaaaa"),
            s("default"), // service.name is kept in metadata, not as the project
            s("proto-customer"),
            s("450"),
            s("125"),
        ]
    );
    let j = rows
        .iter()
        .find(|r| r[7].as_deref() == Some("0303030303030303"))
        .unwrap();
    assert_eq!(
        j[6].as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736"),
        "hex ids are lower-cased"
    );
}

#[tokio::test]
async fn traces_need_the_same_key_as_ingest() {
    let key = "test-admin-key-0123456789abcdef";
    let srv = start_with(|c| c.admin_key = Some(key.into())).await;
    let body = export([7; 16], 9, false).encode_to_vec();
    let r = srv
        .client
        .post(srv.url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = srv
        .client
        .post(srv.url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .bearer_auth(key)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    srv.stop().await;
}
