//! The integration snippets in docs/integrations.md work as written: every `curl` that posts to
//! Tally is run against a real server with an admin key (its URL, headers and body taken from
//! the page), and the exporter settings on the page — the OpenTelemetry environment variables,
//! the Collector's exporter, LiteLLM's generic logger in both its config and environment forms —
//! are read from the page and used to send what those tools send.

#[allow(unused_macros)]
mod common;

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message as _;
use serde_json::Value;

const KEY: &str = "docs-test-admin-key-0123456789abcdef";
const DOC_URL: &str = "http://localhost:8080";

fn page() -> String {
    std::fs::read_to_string(format!("{}/docs/integrations.md", ".")).unwrap()
}

/// The fenced code blocks of a language, in order.
fn blocks(text: &str, lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match &mut current {
            None if line.trim_start() == format!("```{lang}") => current = Some(String::new()),
            Some(_) if line.trim_start() == "```" => out.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    out
}

/// The commands of a shell block: lines joined at `\` continuations and inside quotes.
fn commands(block: &str) -> Vec<String> {
    let joined = block.replace("\\\n", " ");
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in joined.chars() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '\n') => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter().filter(|c| !c.trim().is_empty()).collect()
}

/// Shell words of one command (single and double quotes, `$VAR`/`${VAR}` expanded to the key).
fn words(cmd: &str) -> Vec<String> {
    let expand = |s: &str| {
        s.replace("${TALLY_ADMIN_KEY}", KEY)
            .replace("$TALLY_ADMIN_KEY", KEY)
    };
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut has = false;
    let mut chars = cmd.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                has = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    cur.push(c);
                }
            }
            '"' => {
                has = true;
                let mut s = String::new();
                for c in chars.by_ref() {
                    if c == '"' {
                        break;
                    }
                    s.push(c);
                }
                cur.push_str(&expand(&s));
            }
            c if c.is_whitespace() => {
                if has {
                    out.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            c => {
                has = true;
                cur.push(c);
            }
        }
    }
    if has {
        out.push(cur);
    }
    out.into_iter().map(|w| expand(&w)).collect()
}

/// A curl command posting to Tally: (path, headers, body).
type Curl = (String, Vec<(String, String)>, String);

fn curl(cmd: &str) -> Option<Curl> {
    // Only the first command of a pipeline: `curl <source> | curl <tally> --data-binary @-`
    // posts what the first one fetched, which a test cannot reproduce.
    let w: Vec<String> = words(cmd).into_iter().take_while(|w| w != "|").collect();
    if w.first().map(String::as_str) != Some("curl") {
        return None;
    }
    let url = w.iter().find(|x| x.starts_with(DOC_URL))?;
    let mut headers = Vec::new();
    let mut body = None;
    let mut i = 0;
    while i < w.len() {
        match w[i].as_str() {
            "-H" => {
                let (k, v) = w[i + 1].split_once(':').unwrap();
                headers.push((k.trim().to_string(), v.trim().to_string()));
                i += 1;
            }
            "-d" | "--data" => {
                body = Some(w[i + 1].clone());
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    // `--data-binary @file` / `@-` snippets read the user's own files: run only inline bodies.
    Some((url.trim_start_matches(DOC_URL).to_string(), headers, body?))
}

/// `export NAME=VALUE` lines of a block, with the key expanded.
fn exports(block: &str) -> BTreeMap<String, String> {
    block
        .lines()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            Some((k.to_string(), words(v).join(" ")))
        })
        .collect()
}

/// Percent-decoding as the OpenTelemetry specification applies it to header values.
fn percent_decode(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn export_body(span_id: u8) -> Vec<u8> {
    let kv = |k: &str, v: any_value::Value| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![0x11; 16],
                    span_id: vec![span_id; 8],
                    name: "chat gpt-4o-mini".into(),
                    kind: 3,
                    start_time_unix_nano: 1_767_225_600_000_000_000,
                    end_time_unix_nano: 1_767_225_601_000_000_000,
                    attributes: vec![
                        kv(
                            "gen_ai.operation.name",
                            any_value::Value::StringValue("chat".into()),
                        ),
                        kv(
                            "gen_ai.provider.name",
                            any_value::Value::StringValue("openai".into()),
                        ),
                        kv(
                            "gen_ai.request.model",
                            any_value::Value::StringValue("gpt-4o-mini".into()),
                        ),
                        kv("gen_ai.usage.input_tokens", any_value::Value::IntValue(100)),
                        kv("gen_ai.usage.output_tokens", any_value::Value::IntValue(10)),
                    ],
                    ..Span::default()
                }],
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
    .encode_to_vec()
}

fn litellm_fixture() -> Value {
    let path = format!("{}/tests/fixtures/litellm/slp_json_array.json", ".");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[tokio::test]
async fn every_curl_snippet_of_the_integrations_page_is_accepted() {
    let srv = common::start_with(|c| c.admin_key = Some(KEY.into())).await;
    let text = page();
    let mut ran = 0;
    for block in blocks(&text, "sh") {
        for cmd in commands(&block) {
            let cmd = cmd.as_str();
            let Some((path, headers, body)) = curl(cmd) else {
                continue;
            };
            let mut rb = srv.client.post(srv.url(&path)).body(body.clone());
            for (k, v) in &headers {
                rb = rb.header(k.as_str(), v.as_str());
            }
            let resp = rb.send().await.unwrap();
            let status = resp.status().as_u16();
            let answer: Value = resp.json().await.unwrap();
            assert_eq!(status, 200, "{cmd}\n→ {answer}");
            let (accepted, rejected) = match path.as_str() {
                "/v1/traces" => (&answer["tally"]["accepted"], &answer["tally"]["rejected"]),
                _ => (&answer["accepted"], &answer["rejected"]),
            };
            assert_eq!(accepted, 1, "{cmd}\n→ {answer}");
            assert_eq!(
                rejected.as_array().map(Vec::len),
                Some(0),
                "{cmd}\n→ {answer}"
            );
            ran += 1;
        }
    }
    assert!(ran >= 6, "only {ran} curl snippets found");
    srv.stop().await;
}

#[tokio::test]
async fn the_exporter_settings_of_the_integrations_page_reach_tally() {
    let srv = common::start_with(|c| c.admin_key = Some(KEY.into())).await;
    let text = page();
    let sh = blocks(&text, "sh");
    let yaml = blocks(&text, "yaml");

    // OpenTelemetry SDK environment variables.
    let otel = sh
        .iter()
        .map(|b| exports(b))
        .find(|e| e.contains_key("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        .expect("an OTEL_EXPORTER_OTLP_TRACES_* block");
    assert_eq!(otel["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"], "http/protobuf");
    let path = otel["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        .trim_start_matches(DOC_URL)
        .to_string();
    let mut body = export_body(1);
    let mut rb = srv
        .client
        .post(srv.url(&path))
        .header("content-type", "application/x-protobuf");
    if otel
        .get("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION")
        .map(String::as_str)
        == Some("gzip")
    {
        body = common::gzip(&body);
        rb = rb.header("content-encoding", "gzip");
    }
    for pair in otel["OTEL_EXPORTER_OTLP_TRACES_HEADERS"].split(',') {
        let (k, v) = pair.split_once('=').unwrap();
        rb = rb.header(percent_decode(k.trim()), percent_decode(v.trim()));
    }
    let resp = rb.body(body).send().await.unwrap();
    assert_eq!(resp.status(), 200, "OTEL_* settings");
    assert_eq!(resp.headers()["x-tally-accepted"], "1");

    // The Collector's otlphttp exporter (it sends protobuf, gzip as configured).
    let collector = yaml
        .iter()
        .find(|b| b.contains("otlphttp/tally"))
        .expect("collector block");
    let endpoint = collector
        .lines()
        .find_map(|l| l.trim().strip_prefix("traces_endpoint:"))
        .unwrap()
        .trim();
    let auth = collector
        .lines()
        .find_map(|l| l.trim().strip_prefix("Authorization:"))
        .unwrap()
        .trim()
        .trim_matches('"')
        .replace("${env:TALLY_ADMIN_KEY}", KEY);
    let resp = srv
        .client
        .post(srv.url(endpoint.trim_start_matches(DOC_URL)))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .header("authorization", auth)
        .body(common::gzip(&export_body(2)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "collector exporter");
    assert_eq!(resp.headers()["x-tally-accepted"], "1");

    // LiteLLM's generic logger, config form: NDJSON under LiteLLM's fixed JSON content type.
    let litellm = yaml
        .iter()
        .find(|b| b.contains("callback_type: generic_api"))
        .expect("litellm block");
    let endpoint = litellm
        .lines()
        .find_map(|l| l.trim().strip_prefix("endpoint:"))
        .unwrap()
        .trim();
    let auth = litellm
        .lines()
        .find_map(|l| l.trim().strip_prefix("Authorization:"))
        .unwrap()
        .trim()
        .replace("<your TALLY_ADMIN_KEY>", KEY);
    assert!(litellm.contains("log_format: ndjson"));
    let records = litellm_fixture();
    let ndjson: String = records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{r}\n"))
        .collect();
    let resp = srv
        .client
        .post(srv.url(endpoint.trim_start_matches(DOC_URL)))
        .header("content-type", "application/json")
        .header("authorization", auth)
        .body(ndjson)
        .send()
        .await
        .unwrap();
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["accepted"], 2, "litellm config form: {answer}");

    // LiteLLM's environment form: headers as `k=v` pairs split on commas; a JSON array.
    let env = sh
        .iter()
        .map(|b| exports(b))
        .find(|e| e.contains_key("GENERIC_LOGGER_ENDPOINT"))
        .expect("a GENERIC_LOGGER_* block");
    let mut rb = srv
        .client
        .post(srv.url(env["GENERIC_LOGGER_ENDPOINT"].trim_start_matches(DOC_URL)))
        .header("content-type", "application/json");
    for item in env["GENERIC_LOGGER_HEADERS"].split(',') {
        let (k, v) = item.split_once('=').unwrap();
        rb = rb.header(k.trim(), v.trim());
    }
    let resp = rb.body(records.to_string()).send().await.unwrap();
    let answer: Value = resp.json().await.unwrap();
    // The same two calls again: stored once, counted as duplicates.
    assert_eq!(answer["duplicates"], 2, "litellm env form: {answer}");
    srv.stop().await;
}
