//! Every source format through a real server: each fixture in `tests/fixtures/<format>/` is
//! posted as its source would send it, and the stored rows are read back from the DuckDB file
//! and compared with expectations written here by hand: the token buckets from the fixture's own
//! numbers with the formulas of docs/formats.md, the list-price costs from the per-million prices
//! in `third_party/genai-prices/data.json` (quoted next to each computation), the reported costs
//! converted from the source's unit by hand, and the dimensions from the fixture's fields.

#[allow(unused_macros)]
mod common;

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde_json::Value;

/// A fixture file's bytes.
fn fixture(path: &str) -> Vec<u8> {
    let full = format!("{}/tests/fixtures/{path}", ".");
    std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// Σ tokens × USD-per-million-tokens / 1e6, exactly.
fn mtok(lines: &[(u64, &str)]) -> Decimal {
    let mut sum = Decimal::ZERO;
    for (n, price) in lines {
        sum += Decimal::from(*n) * price.parse::<Decimal>().unwrap();
    }
    sum / Decimal::from(1_000_000)
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// One POST of a fixture.
struct Post {
    fixture: &'static str,
    query: &'static str,
    content_type: &'static str,
    accepted: u64,
    duplicates: u64,
    skipped: u64,
    /// (format, field) of each expected reject, in order.
    rejects: Vec<(&'static str, &'static str)>,
}

fn post(fixture: &'static str, accepted: u64) -> Post {
    let content_type = if fixture.ends_with(".ndjson") || fixture.ends_with(".jsonl") {
        "application/x-ndjson"
    } else {
        "application/json"
    };
    Post {
        fixture,
        query: "",
        content_type,
        accepted,
        duplicates: 0,
        skipped: 0,
        rejects: Vec::new(),
    }
}

impl Post {
    fn query(mut self, q: &'static str) -> Self {
        self.query = q;
        self
    }
    fn content_type(mut self, ct: &'static str) -> Self {
        self.content_type = ct;
        self
    }
    fn skipped(mut self, n: u64) -> Self {
        self.skipped = n;
        self
    }
    fn reject(mut self, format: &'static str, field: &'static str) -> Self {
        self.rejects.push((format, field));
        self
    }
}

/// What one stored event must look like. Buckets, usage detail, costs and cost source are
/// always checked; other columns only when named.
struct Expect {
    key: &'static str,
    tokens: [u64; 10],
    web_search: u64,
    detail: &'static str,
    reported: Option<Decimal>,
    computed: Option<Decimal>,
    cost_source: &'static str,
    cols: Vec<(&'static str, Option<&'static str>)>,
}

/// `key` is the stored request_id, else idem_key.
fn row(key: &'static str) -> Expect {
    Expect {
        key,
        tokens: [0; 10],
        web_search: 0,
        detail: "full",
        reported: None,
        computed: Some(Decimal::ZERO),
        cost_source: "computed",
        cols: Vec::new(),
    }
}

const BUCKETS: [&str; 10] = [
    "input_uncached",
    "cache_read",
    "cache_write_5m",
    "cache_write_1h",
    "output",
    "reasoning",
    "audio_in",
    "audio_out",
    "image_in",
    "image_out",
];

impl Expect {
    /// input_uncached, cache_read, cache_write_5m, cache_write_1h, output, reasoning.
    fn tokens(mut self, iu: u64, cr: u64, cw5: u64, cw1: u64, out: u64, reasoning: u64) -> Self {
        self.tokens[..6].copy_from_slice(&[iu, cr, cw5, cw1, out, reasoning]);
        self
    }
    fn audio(mut self, input: u64, output: u64) -> Self {
        self.tokens[6] = input;
        self.tokens[7] = output;
        self
    }
    fn image(mut self, input: u64, output: u64) -> Self {
        self.tokens[8] = input;
        self.tokens[9] = output;
        self
    }
    fn web(mut self, n: u64) -> Self {
        self.web_search = n;
        self
    }
    fn detail(mut self, d: &'static str) -> Self {
        self.detail = d;
        self
    }
    fn reported(mut self, cost: Decimal) -> Self {
        self.reported = Some(cost);
        self.cost_source = "reported";
        self
    }
    fn computed(mut self, cost: Decimal) -> Self {
        self.computed = Some(cost);
        self
    }
    fn col(mut self, name: &'static str, value: &'static str) -> Self {
        self.cols.push((name, Some(value)));
        self
    }
    fn null(mut self, name: &'static str) -> Self {
        self.cols.push((name, None));
        self
    }
}

/// Columns read back, all as text.
const COLUMNS: [&str; 36] = [
    "source_format",
    "provider",
    "model",
    "model_requested",
    "operation",
    "route",
    "service_tier",
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
    "web_search_requests",
    "usage_detail",
    "reported_cost",
    "computed_cost",
    "cost",
    "cost_source",
    "metadata",
    "ts_ms",
    "idem_key",
];

type Row = BTreeMap<String, Option<String>>;

fn read_rows(dir: &std::path::Path) -> Vec<Row> {
    let conn = duckdb::Connection::open(dir.join("tally.duckdb")).unwrap();
    let select: Vec<String> = BUCKETS
        .iter()
        .map(|b| format!("CAST({b} AS VARCHAR) AS {b}"))
        .chain(COLUMNS.iter().map(|c| match *c {
            "tags" => "array_to_string(tags, ',') AS tags".to_string(),
            "ts_ms" => "CAST(epoch_us(ts) // 1000 AS VARCHAR) AS ts_ms".to_string(),
            c => format!("CAST({c} AS VARCHAR) AS {c}"),
        }))
        .chain(["request_id".to_string()])
        .collect();
    let names: Vec<&str> = BUCKETS
        .iter()
        .chain(COLUMNS.iter())
        .copied()
        .chain(["request_id"])
        .collect();
    let sql = format!("SELECT {} FROM events ORDER BY ts", select.join(", "));
    let mut stmt = conn.prepare(&sql).unwrap();
    let rows = stmt
        .query_map([], |r| {
            let mut row = Row::new();
            for (i, name) in names.iter().enumerate() {
                row.insert(name.to_string(), r.get::<_, Option<String>>(i)?);
            }
            Ok(row)
        })
        .unwrap();
    rows.map(Result::unwrap).collect()
}

fn dec_col(row: &Row, name: &str) -> Option<Decimal> {
    row[name].as_deref().map(|s| s.parse().unwrap())
}

fn check_row(row: &Row, e: &Expect) {
    let key = e.key;
    for (i, b) in BUCKETS.iter().enumerate() {
        assert_eq!(
            row[*b].as_deref(),
            Some(e.tokens[i].to_string().as_str()),
            "{key}: bucket {b}"
        );
    }
    assert_eq!(
        row["web_search_requests"].as_deref(),
        Some(e.web_search.to_string().as_str()),
        "{key}: web_search_requests"
    );
    assert_eq!(
        row["usage_detail"].as_deref(),
        Some(e.detail),
        "{key}: usage_detail"
    );
    assert_eq!(
        dec_col(row, "reported_cost"),
        e.reported,
        "{key}: reported_cost"
    );
    assert_eq!(
        dec_col(row, "computed_cost"),
        e.computed,
        "{key}: computed_cost"
    );
    assert_eq!(
        row["cost_source"].as_deref(),
        Some(e.cost_source),
        "{key}: cost_source"
    );
    let counted = match e.cost_source {
        "reported" => e.reported,
        "unpriced" => None,
        _ => e.computed,
    };
    assert_eq!(dec_col(row, "cost"), counted, "{key}: cost");
    for (name, want) in &e.cols {
        assert_eq!(
            row[*name].as_deref(),
            *want,
            "{key}: column {name} (row: {row:?})"
        );
    }
}

/// Posts every fixture to a fresh server, checks each answer, then checks the stored rows.
async fn run(posts: Vec<Post>, expects: Vec<Expect>) -> Vec<Row> {
    let srv = common::start().await;
    for p in &posts {
        let rb = srv
            .client
            .post(srv.url(&format!("/v1/ingest{}", p.query)))
            .header("content-type", p.content_type)
            .body(fixture(p.fixture));
        let resp = rb.send().await.unwrap();
        let status = resp.status().as_u16();
        let answer: Value = resp.json().await.unwrap();
        assert_eq!(status, 200, "{}: {answer}", p.fixture);
        assert_eq!(answer["accepted"], p.accepted, "{}: {answer}", p.fixture);
        assert_eq!(
            answer["duplicates"], p.duplicates,
            "{}: {answer}",
            p.fixture
        );
        assert_eq!(answer["skipped"], p.skipped, "{}: {answer}", p.fixture);
        let rejected = answer["rejected"].as_array().unwrap();
        assert_eq!(rejected.len(), p.rejects.len(), "{}: {answer}", p.fixture);
        for (r, (format, field)) in rejected.iter().zip(&p.rejects) {
            assert_eq!(r["format"], *format, "{}: {answer}", p.fixture);
            assert_eq!(r["field"], *field, "{}: {answer}", p.fixture);
            let error = r["error"].as_str().unwrap();
            assert!(
                error.starts_with(format),
                "the reason names the format: {error}"
            );
        }
    }
    let dir = srv.stop().await;
    let rows = read_rows(dir.path());
    assert_eq!(rows.len(), expects.len(), "stored rows: {rows:#?}");
    for e in &expects {
        let found: Vec<&Row> = rows.iter().filter(|r| matches_key(r, e.key)).collect();
        assert_eq!(found.len(), 1, "{}: rows {rows:#?}", e.key);
        check_row(found[0], e);
    }
    rows
}

/// A row's key: its request_id or idem_key, or `column=value` for rows without either.
fn matches_key(r: &Row, key: &str) -> bool {
    match key.split_once('=') {
        Some((col, value)) => r[col].as_deref() == Some(value),
        None => r["request_id"].as_deref() == Some(key) || r["idem_key"].as_deref() == Some(key),
    }
}

fn meta(row: &Row) -> Value {
    serde_json::from_str(row["metadata"].as_deref().unwrap_or("{}")).unwrap()
}

fn find<'r>(rows: &'r [Row], key: &str) -> &'r Row {
    rows.iter()
        .find(|r| matches_key(r, key))
        .unwrap_or_else(|| panic!("no row {key}"))
}

#[tokio::test]
async fn openai_chat_and_responses() {
    // gpt-4.1-mini: input 0.4, cache read 0.1, output 1.6 per million.
    let gpt41mini = |iu, cr, out| mtok(&[(iu, "0.4"), (cr, "0.1"), (out, "1.6")]);
    let rows = run(
        vec![
            post("openai/chat_cached.json", 1),
            post("openai/responses_reasoning_pair.json", 1),
            post("openai/chat_stream_pair.json", 1),
            post("openai/chat_final_chunk_audio.json", 1).query("?format=openai"),
            post("openai/chat_error_pair.json", 1),
            post("openai/chat_no_details.json", 1),
            post("openai/bad_cached_exceeds_prompt.json", 0)
                .reject("openai.chat", "usage.prompt_tokens"),
        ],
        vec![
            // 2048 prompt = 1536 cached + 512 uncached.
            row("chatcmpl-7Qd2LmZ0a1")
                .tokens(512, 1536, 0, 0, 310, 0)
                .computed(gpt41mini(512, 1536, 310))
                .col("source_format", "openai.chat")
                .col("provider", "openai")
                .col("model", "gpt-4.1-mini-2025-04-14")
                .col("service_tier", "standard")
                .col("route", "direct")
                .col("ts_ms", "1767225600000"),
            // o4-mini: input 1.1, cache read 0.275, output 4.4. 5120 = 4096 cached + 1024.
            row("resp_0a9f31c2")
                .tokens(1024, 4096, 0, 0, 900, 640)
                .computed(mtok(&[(1024, "1.1"), (4096, "0.275"), (900, "4.4")]))
                .col("source_format", "openai.responses")
                .col("operation", "responses")
                .col("model", "o4-mini-2025-04-16")
                .col("model_requested", "o4-mini")
                .col("user_id", "u_7f3a19")
                .col("feature", "ticket-summary")
                .col("customer_id", "acme")
                .col("task_id", "ticket-9912")
                .col("run_id", "run_7f3a")
                .col("latency_ms", "8500"),
            // gpt-4o: input 2.5, cache read 1.25, output 10. 1200 = 1024 cached + 176.
            row("chatcmpl-S1")
                .tokens(176, 1024, 0, 0, 80, 0)
                .computed(mtok(&[(176, "2.5"), (1024, "1.25"), (80, "10")]))
                .col("model", "gpt-4o-2024-08-06")
                .col("model_requested", "gpt-4o")
                .col("user_id", "u_42")
                .col("feature", "search")
                .col("tags", "beta,eu")
                .col("latency_ms", "1432")
                .col("ttft_ms", "210"),
            // 500 prompt = 300 audio + 200 text; 900 completion = 700 audio + 200 text.
            // gpt-4o-audio-preview has input 2.5 / output 10 only: audio falls back to them.
            row("chatcmpl-A1")
                .tokens(200, 0, 0, 0, 200, 0)
                .audio(300, 700)
                .computed(mtok(&[
                    (200, "2.5"),
                    (300, "2.5"),
                    (200, "10"),
                    (700, "10"),
                ])),
            row("user_id=u_9")
                .detail("missing")
                .col("status", "error")
                .col("error_type", "rate_limit_exceeded")
                .col("http_status", "429")
                .col("model", "gpt-4.1-mini")
                .col("user_id", "u_9"),
            // gpt-4o-mini: input 0.15, output 0.6; no detail objects: partial.
            row("chatcmpl-L1")
                .tokens(1000, 0, 0, 0, 200, 0)
                .detail("partial")
                .computed(mtok(&[(1000, "0.15"), (200, "0.6")])),
        ],
    )
    .await;
    assert_eq!(
        meta(find(&rows, "chatcmpl-7Qd2LmZ0a1"))["service_tier"],
        "default"
    );
}

#[tokio::test]
async fn anthropic_messages() {
    // claude-sonnet-4-5 (below the 200k tier): input 3, cache write 5m 3.75, cache read 0.3,
    // output 15, web search 10 per thousand. claude-haiku-4-5: input 1, cache write 5m 1.25,
    // 1h 2, cache read 0.1, output 5.
    let rows = run(
        vec![
            post("anthropic/message_cache_websearch.json", 1),
            post("anthropic/pair_1h_thinking.json", 1),
            post("anthropic/stream_pair.json", 1),
            post("anthropic/error_pair.json", 1),
            post("anthropic/no_ttl_split.json", 1).query("?format=anthropic"),
        ],
        vec![
            // Exclusive counts map straight across; one web search at $10 per thousand.
            row("msg_01HkT7xV9")
                .tokens(180, 6400, 1200, 0, 420, 0)
                .web(1)
                .computed(
                    mtok(&[(180, "3"), (6400, "0.3"), (1200, "3.75"), (420, "15")]) + d("0.010"),
                )
                .col("source_format", "anthropic.messages")
                .col("provider", "anthropic")
                .col("service_tier", "standard"),
            row("msg_02Thk")
                .tokens(900, 0, 1000, 4000, 1500, 1100)
                .computed(mtok(&[
                    (900, "1"),
                    (1000, "1.25"),
                    (4000, "2"),
                    (1500, "5"),
                ]))
                .col("user_id", "u_anthropic_7")
                .col("model_requested", "claude-haiku-4-5"),
            // message_delta usage is cumulative: the last (350) wins, never 1 + 200 + 350.
            row("msg_03Str")
                .tokens(2500, 3000, 0, 0, 350, 0)
                .computed(mtok(&[(2500, "3"), (3000, "0.3"), (350, "15")]))
                .col("user_id", "u_stream"),
            row("error_type=overloaded_error")
                .detail("missing")
                .col("status", "error")
                .col("http_status", "529")
                .col("model", "claude-sonnet-4-5"),
            // No TTL split: all writes at the 5-minute rate, flagged in metadata.
            row("msg_04NoTtl")
                .tokens(100, 0, 2000, 0, 50, 0)
                .computed(mtok(&[(100, "1"), (2000, "1.25"), (50, "5")])),
        ],
    )
    .await;
    assert_eq!(
        meta(find(&rows, "msg_04NoTtl"))["cache_ttl_reported"],
        false
    );
}

#[tokio::test]
async fn gemini_usage_metadata() {
    // gemini-2.5-flash: input 0.3, cache read 0.03, output 2.5 (no image price: input's).
    // gemini-2.0-flash: input 0.1, cache read 0.025, input audio 0.7, output 0.4.
    let rows = run(
        vec![
            post("gemini/cached_image.json", 1),
            post("gemini/audio_tool_cache.json", 1),
            post("gemini/stream_pair.json", 1),
            post("gemini/snake_case_sdk.json", 1),
            post("gemini/error_pair.json", 1),
        ],
        vec![
            // 3000 prompt = 2048 cached + 258 image + 694 text; output = 250 + 600 thoughts.
            row("hX2pZ3cAAbc")
                .tokens(694, 2048, 0, 0, 850, 600)
                .image(258, 0)
                .computed(mtok(&[
                    (694, "0.3"),
                    (2048, "0.03"),
                    (258, "0.3"),
                    (850, "2.5"),
                ]))
                .col("source_format", "gemini.generate_content")
                .col("provider", "google"),
            // audio_in = 1200 prompt audio − 200 cached audio = 1000;
            // uncached = 5000 + 300 tool-use − 1000 cached − 1000 audio = 3300.
            row("g-audio-1")
                .tokens(3300, 1000, 0, 0, 400, 0)
                .audio(1000, 0)
                .computed(mtok(&[
                    (3300, "0.1"),
                    (1000, "0.025"),
                    (1000, "0.7"),
                    (400, "0.4"),
                ])),
            // The last chunk's cumulative usage: 120 candidates + 64 thoughts.
            row("g-str-1")
                .tokens(800, 0, 0, 0, 184, 64)
                .computed(mtok(&[(800, "0.3"), (184, "2.5")]))
                .col("feature", "summarize")
                .col("team_id", "docs")
                .null("model_requested"),
            row("g-snake-1")
                .tokens(476, 1024, 0, 0, 200, 0)
                .computed(mtok(&[(476, "0.3"), (1024, "0.03"), (200, "2.5")])),
            row("error_type=RESOURCE_EXHAUSTED")
                .detail("missing")
                .col("status", "error")
                .col("http_status", "429")
                .col("model", "gemini-2.5-flash"),
        ],
    )
    .await;
    assert_eq!(
        meta(find(&rows, "g-audio-1"))["tool_use_prompt_tokens"],
        300
    );
}

#[tokio::test]
async fn openrouter_responses_and_generations() {
    // openrouter anthropic/claude-sonnet-4.5: input 3, cache read 0.3, cache write 3.75,
    // output 15; openrouter openai/gpt-4o-mini: input 0.15, output 0.6.
    let sonnet = |iu, cr, cw, out| mtok(&[(iu, "3"), (cr, "0.3"), (cw, "3.75"), (out, "15")]);
    let rows = run(
        vec![
            post("openrouter/response_cached.json", 1),
            post("openrouter/generation.json", 1),
            post("openrouter/byok_fallback_stream_pair.json", 1),
            post("openrouter/reasoning_final_chunk.json", 1).query("?format=openrouter"),
        ],
        vec![
            // Credits are dollars: 0.001307 credits → $0.001307.
            row("gen-1767225700-Zq8r")
                .tokens(476, 1024, 0, 0, 200, 0)
                .reported(d("0.001307"))
                .computed(sonnet(476, 1024, 0, 200))
                .col("source_format", "openrouter.chat")
                .col("provider", "openrouter")
                .col("route", "openrouter")
                .col("attempt", "1")
                .null("model_requested"),
            // Native counts, not OpenRouter's normalised ones: 1523 − 1024 cached = 499.
            row("gen-1767226000-Gx1")
                .tokens(499, 1024, 0, 0, 197, 0)
                .reported(d("0.001307"))
                .computed(sonnet(499, 1024, 0, 197))
                .col("source_format", "openrouter.generation")
                .col("user_id", "cust_42")
                .col("session_id", "sess_91")
                .col("latency_ms", "2310")
                .col("attempt", "1"),
            // BYOK: OpenRouter's fee 0.0000315 + the upstream's 0.00048 = 0.0005115.
            row("gen-1767227000-Fb2")
                .tokens(2000, 0, 0, 0, 300, 0)
                .reported(d("0.0005115"))
                .computed(mtok(&[(2000, "0.15"), (300, "0.6")]))
                .col("model", "openai/gpt-4o-mini")
                .col("model_requested", "openai/gpt-4o")
                .col("attempt", "2")
                .col("user_id", "u_or_1")
                .col("session_id", "sess_or")
                .col("trace_id", "tr-or-1")
                .col("parent_span_id", "ps-or-1")
                .col("feature", "checkout"),
            // 3000 = 2048 cached + 512 written + 440.
            row("gen-1767228000-Rs3")
                .tokens(440, 2048, 512, 0, 1200, 800)
                .reported(d("0.0218544"))
                .computed(sonnet(440, 2048, 512, 1200)),
        ],
    )
    .await;
    let byok = meta(find(&rows, "gen-1767227000-Fb2"));
    // The original text as the source wrote it (a Python client writes 0.0000315 as 3.15e-05).
    assert_eq!(byok["openrouter_fee"], "3.15e-05");
    assert_eq!(byok["upstream_inference_cost"], "0.00048");
    assert_eq!(byok["fallback_used"], true);
    assert_eq!(byok["reported_cost_unit"], "credits");
}

#[tokio::test]
async fn litellm_payloads_and_spend_logs() {
    let gpt41mini = |iu, cr, out| mtok(&[(iu, "0.4"), (cr, "0.1"), (out, "1.6")]);
    let rows = run(
        vec![
            post("litellm/slp_json_array.json", 2),
            post("litellm/slp_failure_and_cache_hit.ndjson", 2),
            post("litellm/slp_v1_legacy.json", 1),
            post("litellm/spendlogs_rows.json", 2),
        ],
        vec![
            // The usage object, OpenAI rule: 2048 − 1536 cached. No completion details: partial.
            row("chatcmpl-7Qd2LmZ0a1")
                .tokens(512, 1536, 0, 0, 310, 0)
                .detail("partial")
                .reported(d("0.000861"))
                .computed(gpt41mini(512, 1536, 310))
                .col("source_format", "litellm.slp")
                .col("route", "litellm")
                .col("model_requested", "fast-chat")
                .col("team_id", "team_support")
                .col("user_id", "u_17")
                .col("customer_id", "cust_42")
                .col("api_key_id", "88dc28d0")
                .col("run_id", "run_8812")
                .col("tags", "feature:support-bot")
                .col("trace_id", "5e2b8c31-9a40-4f2c-8c55-1d7e0b6a2f90")
                .col("latency_ms", "1750")
                .col("ts_ms", "1767225600120"),
            // Anthropic upstream: LiteLLM's prompt_tokens 7780 includes both cache counts; the
            // raw input is prompt_tokens_details.text_tokens (180).
            row("msg_01LtLAnth")
                .tokens(180, 6400, 1200, 0, 420, 0)
                .reported(d("0.01326"))
                .computed(mtok(&[
                    (180, "3"),
                    (6400, "0.3"),
                    (1200, "3.75"),
                    (420, "15"),
                ]))
                .col("feature", "deep-research")
                .col("task_id", "task-77")
                .col("team_id", "team_research")
                .col("latency_ms", "3250")
                .col("ttft_ms", "800"),
            row("litellm:c0ffee00-1111-4222-8333-444455556666")
                .detail("partial")
                .reported(d("0"))
                .col("status", "error")
                .col("error_type", "RateLimitError")
                .col("http_status", "429")
                .null("request_id"),
            // LiteLLM's own cache answered: no provider call, nothing billed.
            row("litellm:cafe0002-1111-4222-8333-444455556666")
                .detail("partial")
                .reported(d("0"))
                .null("request_id"),
            // Legacy all-strings payload; gpt-4o-mini: input 0.15, cache read 0.075, output 0.6;
            // str(0.000096) is "9.6e-05".
            row("chatcmpl-v1legacy01")
                .tokens(520, 1280, 0, 0, 120, 0)
                .reported(d("0.000096"))
                .computed(mtok(&[(520, "0.15"), (1280, "0.075"), (120, "0.6")]))
                .col("source_format", "litellm.slp_v1")
                .col("team_id", "team_legacy")
                .col("user_id", "u_v1")
                .col("api_key_id", "hash-v1")
                .col("customer_id", "cust_v1")
                .col("feature", "legacy-chat")
                .col("latency_ms", "1250"),
            row("chatcmpl-sl-0001")
                .tokens(512, 1536, 0, 0, 310, 0)
                .detail("partial")
                .reported(d("0.000861"))
                .computed(gpt41mini(512, 1536, 310))
                .col("source_format", "litellm.spendlogs")
                .col("tags", "feature:support-bot")
                .col("session_id", "sess_91")
                .col("user_id", "u_17")
                .col("api_key_id", "88dc28d0")
                .null("ttft_ms"),
            // claude-haiku-4-5: 10500 = 1000 text + 9000 read + 500 written.
            row("msg_01SpendAnth")
                .tokens(1000, 9000, 500, 0, 700, 0)
                .reported(d("0.006275"))
                .computed(mtok(&[
                    (1000, "1"),
                    (9000, "0.1"),
                    (500, "1.25"),
                    (700, "5"),
                ]))
                .col("agent", "agent-planner")
                .col("task_id", "t-42")
                .col("run_id", "r-42")
                .col("latency_ms", "3500")
                .col("ttft_ms", "600"),
        ],
    )
    .await;
    let hit = meta(find(&rows, "litellm:cafe0002-1111-4222-8333-444455556666"));
    assert_eq!(hit["gateway_cache_hit"], true);
    assert_eq!(hit["cached_response_input_tokens"], 2048);
}

#[tokio::test]
async fn helicone_rows_and_manual_logger() {
    let rows = run(
        vec![
            post("helicone/request_row.json", 1),
            post("helicone/manual_logger_anthropic.json", 1),
            post("helicone/manual_logger_openai_stream.json", 1),
            post("helicone/error_row.json", 1).query("?format=helicone"),
        ],
        vec![
            row("chatcmpl-helicone-1")
                .tokens(512, 1536, 0, 0, 310, 0)
                .reported(d("0.000861"))
                .computed(mtok(&[(512, "0.4"), (1536, "0.1"), (310, "1.6")]))
                .col("source_format", "helicone.request")
                .col("route", "helicone")
                .col("user_id", "u_17")
                .col("feature", "support-bot")
                .col("customer_id", "acme")
                .col("session_id", "sess-h1")
                .col("model_requested", "gpt-4.1-mini")
                .col("latency_ms", "1750")
                .col("ttft_ms", "420"),
            // The provider's own body, Anthropic rule; Helicone's headers attribute it.
            row("msg_01HeliM")
                .tokens(300, 2000, 0, 0, 150, 0)
                .computed(mtok(&[(300, "1"), (2000, "0.1"), (150, "5")]))
                .col("source_format", "helicone.manual")
                .col("idem_key", "helicone:hreq-0002")
                .col("user_id", "u_helicone")
                .col("feature", "triage")
                .col("session_id", "sess-h2")
                .col("latency_ms", "1750")
                .col("ttft_ms", "380")
                .col("ts_ms", "1767230000250"),
            // A stream logged as SSE text.
            row("chatcmpl-HS1")
                .tokens(400, 0, 0, 0, 50, 0)
                .computed(mtok(&[(400, "0.15"), (50, "0.6")]))
                .col("user_id", "u_hs")
                .col("feature", "greeting")
                .col("latency_ms", "900"),
            row("helicone:6c1f0f4e-aaaa-4bbb-8ccc-000000000004")
                .detail("missing")
                .reported(d("0"))
                .col("status", "error")
                .col("http_status", "500")
                .col("model", "claude-sonnet-4-5"),
        ],
    )
    .await;
    assert_eq!(
        meta(find(&rows, "chatcmpl-helicone-1"))["session_path"],
        "/triage/answer"
    );
}

#[tokio::test]
async fn portkey_export() {
    run(
        vec![post("portkey/export.jsonl", 4)],
        vec![
            // Totals only; cost 0.0861 cents = $0.000861.
            row("portkey:pk-log-0001")
                .tokens(2048, 0, 0, 0, 310, 0)
                .detail("totals_only")
                .reported(d("0.000861"))
                .computed(mtok(&[(2048, "0.4"), (310, "1.6")]))
                .col("source_format", "portkey.export")
                .col("route", "portkey")
                .col("user_id", "u_17")
                .col("feature", "support-bot")
                .col("trace_id", "tr_91")
                .col("api_key_id", "openai-prod")
                .col("attempt", "1")
                .col("latency_ms", "1750"),
            // The response body carries Anthropic's usage: full split. "1.326" cents = $0.01326.
            row("msg_pk2")
                .tokens(180, 6400, 1200, 0, 420, 0)
                .reported(d("0.01326"))
                .computed(mtok(&[
                    (180, "3"),
                    (6400, "0.3"),
                    (1200, "3.75"),
                    (420, "15"),
                ]))
                .col("idem_key", "portkey:pk-log-0002")
                .col("user_id", "u_pk")
                .col("team_id", "growth")
                .col("attempt", "2")
                .col("model_requested", "claude-sonnet-4-5"),
            row("portkey:pk-log-0003")
                .detail("totals_only")
                .reported(d("0"))
                .col("status", "error")
                .col("http_status", "429"),
            // A Portkey cache hit called no provider.
            row("portkey:pk-log-0004")
                .detail("totals_only")
                .reported(d("0"))
                .col("feature", "faq"),
        ],
    )
    .await;
}

#[tokio::test]
async fn cloudflare_logs() {
    run(
        vec![
            post("cloudflare/logs_api_response.json", 2),
            post("cloudflare/rows_error_fallback.json", 2),
        ],
        vec![
            // metadata is a JSON string; "user": 12345 becomes the id "12345".
            row("cloudflare:01JH3K9W7Q")
                .tokens(2048, 0, 0, 0, 310, 0)
                .detail("totals_only")
                .reported(d("0.000493"))
                .computed(mtok(&[(2048, "0.15"), (310, "0.6")]))
                .col("source_format", "cloudflare.logs")
                .col("route", "cloudflare")
                .col("team_id", "support")
                .col("user_id", "12345")
                .col("attempt", "1"),
            row("cloudflare:01JH3K9W7R")
                .detail("totals_only")
                .reported(d("0"))
                .col("feature", "faq"),
            // gemini-2.5-flash through google-ai-studio: input 0.3.
            row("cloudflare:01JH3K9W7S")
                .tokens(500, 0, 0, 0, 0, 0)
                .detail("totals_only")
                .reported(d("0.00015"))
                .computed(mtok(&[(500, "0.3")]))
                .col("provider", "google")
                .col("status", "error")
                .col("http_status", "503")
                .col("error_type", "http_503"),
            row("cloudflare:01JH3K9W7T")
                .tokens(500, 0, 0, 0, 60, 0)
                .detail("totals_only")
                .reported(d("0.000111"))
                .computed(mtok(&[(500, "0.15"), (60, "0.6")]))
                .col("attempt", "2")
                .col("user_id", "u_cf"),
        ],
    )
    .await;
}

#[tokio::test]
async fn bedrock_invocation_logs() {
    // aws regional claude-sonnet-4.5: input 3.3, cache write 4.125 (also for 1h: no 1h price),
    // cache read 0.33, output 16.5. aws regional claude-haiku-4.5: 1.1 / 1.375 / 0.11 / 5.5.
    let rows = run(
        vec![
            post("bedrock/converse_cache.json", 1),
            post("bedrock/invoke_1h_split.json", 1),
            post("bedrock/stream_and_error.ndjson", 2),
        ],
        vec![
            row("8f2d4c1e-6b7a-4e1f-9c3d-2a1b0c9d8e7f")
                .tokens(180, 6400, 1200, 0, 420, 0)
                .computed(mtok(&[
                    (180, "3.3"),
                    (6400, "0.33"),
                    (1200, "4.125"),
                    (420, "16.5"),
                ]))
                .col("source_format", "bedrock.invocation")
                .col("provider", "aws")
                .col("model", "us.anthropic.claude-sonnet-4-5-20250929-v1:0")
                .col("team_id", "support")
                .col("feature", "support-bot")
                .col("customer_id", "acme")
                .col(
                    "api_key_id",
                    "arn:aws:sts::111122223333:assumed-role/support-bot/i-0abc",
                ),
            // The inference-profile ARN resolves to its model; the body splits 2000 writes.
            row("1a2b3c4d-0000-4000-8000-000000000002")
                .tokens(250, 0, 500, 1500, 300, 0)
                .computed(mtok(&[
                    (250, "3.3"),
                    (500, "4.125"),
                    (1500, "4.125"),
                    (300, "16.5"),
                ]))
                .col("model", "us.anthropic.claude-sonnet-4-5-20250929-v1:0")
                .col("task_id", "mig-5"),
            row("5e6f7a8b-0000-4000-8000-000000000003")
                .tokens(100, 0, 0, 800, 60, 0)
                .computed(mtok(&[(100, "1.1"), (800, "1.375"), (60, "5.5")])),
            row("5e6f7a8b-0000-4000-8000-000000000004")
                .detail("missing")
                .col("status", "error")
                .col("error_type", "ThrottlingException"),
        ],
    )
    .await;
    assert_eq!(
        meta(find(&rows, "8f2d4c1e-6b7a-4e1f-9c3d-2a1b0c9d8e7f"))["cache_ttl_reported"],
        false
    );
}

#[tokio::test]
async fn cloudevents_single_and_batch() {
    run(
        vec![
            post("cloudevents/single.json", 1).content_type("application/cloudevents+json"),
            post("cloudevents/batch.json", 2).content_type("application/cloudevents-batch+json"),
        ],
        vec![
            row("ce:support-bot:evt-ce-1")
                .tokens(512, 1536, 0, 0, 310, 0)
                .computed(mtok(&[(512, "0.4"), (1536, "0.1"), (310, "1.6")]))
                .col("source_format", "cloudevents")
                .col("customer_id", "acme")
                .col("team_id", "support")
                .col("user_id", "u_ce")
                .col("feature", "support-bot")
                .col("ts_ms", "1767227400000"),
            // The event's own id and customer win over the envelope's.
            row("native-id-7")
                .tokens(1000, 0, 0, 0, 100, 0)
                .computed(mtok(&[(1000, "1"), (100, "5")]))
                .col("customer_id", "globex")
                .col("run_id", "run-ce"),
            row("ce:batcher:evt-ce-3")
                .tokens(100, 0, 0, 0, 10, 0)
                .reported(d("0.00002"))
                .computed(mtok(&[(100, "0.15"), (10, "0.6")])),
        ],
    )
    .await;
}

#[tokio::test]
async fn otlp_json_spans_through_ingest() {
    let rows = run(
        vec![
            post("otlp/traces_mixed.json", 4).skipped(2),
            post("otlp/traces_bad_span.json", 1).reject(
                "otlp",
                "resourceSpans[0].scopeSpans[0].spans[0].attributes[gen_ai.usage.input_tokens]",
            ),
        ],
        vec![
            row("chatcmpl-7Qd2LmZ0a1")
                .tokens(512, 1536, 0, 0, 310, 0)
                .reported(d("0.000861"))
                .computed(mtok(&[(512, "0.4"), (1536, "0.1"), (310, "1.6")]))
                .col("source_format", "otlp")
                .col("model_requested", "gpt-4.1-mini")
                .col("project", "default") // service.name → metadata, not the tenant
                .col("customer_id", "acme")
                .col("session_id", "sess_91")
                .col("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736")
                .col("span_id", "00f067aa0ba902b7")
                .col("parent_span_id", "a3ce929d0e0e4736")
                .col("latency_ms", "1750")
                .col("ts_ms", "1767225600120"),
            // Deprecated attribute names, inclusive prompt count: 7780 − 6400 − 1200 = 180.
            row("msg_otel_1")
                .tokens(180, 6400, 1200, 0, 420, 0)
                .computed(mtok(&[
                    (180, "3"),
                    (6400, "0.3"),
                    (1200, "3.75"),
                    (420, "15"),
                ]))
                .col("provider", "anthropic")
                .col("agent", "researcher")
                .col("feature", "deep-research")
                .col("task_id", "task-otel-1")
                .col("latency_ms", "7000"),
            row("span_id=4444444444444444")
                .detail("missing")
                .col("status", "error")
                .col("error_type", "rate_limit_exceeded")
                .col("http_status", "429"),
            // OpenLIT: its cost attribute is the reported cost; ttft from seconds.
            row("resp_0a9f31c2")
                .tokens(1024, 4096, 0, 0, 900, 640)
                .reported(d("0.0062128"))
                .computed(mtok(&[(1024, "1.1"), (4096, "0.275"), (900, "4.4")]))
                .col("project", "default")
                .col("user_id", "u_openlit")
                .col("ttft_ms", "350"),
            row("chatcmpl-good-1")
                .tokens(1000, 0, 0, 0, 100, 0)
                .detail("partial")
                .computed(mtok(&[(1000, "0.15"), (100, "0.6")])),
        ],
    )
    .await;
    assert_eq!(
        meta(find(&rows, "chatcmpl-7Qd2LmZ0a1"))["environment"],
        "prod"
    );
}
