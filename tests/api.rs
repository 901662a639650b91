//! End-to-end tests of the foundation through a real server: ingest, duplicates, rejects,
//! body handling, backpressure, auth and the costs API. Expected numbers are computed here,
//! independently of Tally's code, from what the tests send.

#[macro_use]
mod common;

use std::collections::BTreeMap;

use common::{gzip, ndjson, start, start_with};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use serde_json::{json, Value};

fn dec_of(v: &Value) -> Decimal {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a decimal string, got {v}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn health_and_readiness() {
    let srv = start().await;
    assert_eq!(srv.get_ok("/healthz").await["status"], "ok");
    let ready = srv.get_ok("/readyz").await;
    assert_eq!(ready["status"], "ready");
    let (status, body) = srv.get("/no/such/thing").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    srv.stop().await;
}

/// Random events with reported costs; the test keeps its own books.
fn random_events(rng: &mut StdRng, n: usize, start_id: usize) -> Vec<Value> {
    let features = ["search", "chat", "summary", "extract"];
    let models = ["gpt-4o", "claude-haiku-4-5", "mystery-model"];
    (0..n)
        .map(|i| {
            // Up to 12 decimal places, the stored scale: exact in and out.
            let micros: u64 = rng.random_range(0..50_000_000_000u64);
            let cost = Decimal::from_i128_with_scale(micros as i128, 12);
            let mut ev = json!({
                "id": format!("evt-{}", start_id + i),
                "timestamp": format!("2026-11-{:02}T{:02}:{:02}:00Z", 1 + rng.random_range(0..20), rng.random_range(0..24), rng.random_range(0..60)),
                "model": models[rng.random_range(0..models.len())],
                "feature": features[rng.random_range(0..features.len())],
                "usage": {"input_tokens": rng.random_range(0..5000), "output_tokens": rng.random_range(0..800)},
                "cost": cost.to_string(),
            });
            if rng.random_bool(0.1) {
                ev["status"] = json!("error");
                ev["error_type"] = json!("rate_limit");
            }
            ev
        })
        .collect()
}

#[tokio::test]
async fn ingest_in_every_body_form_and_costs_sum_exactly() {
    let srv = start().await;
    let mut rng = StdRng::seed_from_u64(7);
    let events = random_events(&mut rng, 3_000, 0);

    // One object, a JSON array, gzip NDJSON and zstd NDJSON.
    let (status, answer) = srv.ingest_json(&events[0]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 1);
    let (status, answer) = srv
        .ingest_json(&Value::Array(events[1..1000].to_vec()))
        .await;
    assert_eq!(
        (status, answer["accepted"].as_u64()),
        (200, Some(999)),
        "{answer}"
    );
    let (status, answer) = srv
        .ingest_raw(
            "application/x-ndjson",
            Some("gzip"),
            gzip(&ndjson(&events[1000..2000])),
            "",
        )
        .await;
    assert_eq!(
        (status, answer["accepted"].as_u64()),
        (200, Some(1000)),
        "{answer}"
    );
    let zstd_body = zstd::encode_all(&ndjson(&events[2000..])[..], 3).unwrap();
    let (status, answer) = srv
        .ingest_raw(
            "application/x-ndjson",
            Some("zstd"),
            zstd_body,
            "?format=native",
        )
        .await;
    assert_eq!(
        (status, answer["accepted"].as_u64()),
        (200, Some(1000)),
        "{answer}"
    );

    // The books: per feature and in total.
    let mut by_feature: BTreeMap<String, (Decimal, i64, i64)> = BTreeMap::new();
    let mut total = Decimal::ZERO;
    for ev in &events {
        let cost = dec_of(&ev["cost"]);
        total += cost;
        let entry = by_feature
            .entry(ev["feature"].as_str().unwrap().to_string())
            .or_default();
        entry.0 += cost;
        entry.1 += 1;
        entry.2 += i64::from(ev["status"] == "error");
    }
    let answer = srv
        .get_ok("/api/v1/costs?group_by=feature&order=feature")
        .await;
    assert_eq!(dec_of(&answer["total"]["cost"]), total);
    assert_eq!(dec_of(&answer["total"]["reported_cost"]), total);
    assert_eq!(answer["total"]["requests"], 3000);
    let rows = answer["rows"].as_array().unwrap();
    assert_eq!(rows.len(), by_feature.len());
    for (row, (feature, (cost, requests, errors))) in rows.iter().zip(&by_feature) {
        assert_eq!(row["feature"], json!(feature));
        assert_eq!(dec_of(&row["cost"]), *cost, "feature {feature}");
        assert_eq!(row["requests"], json!(requests));
        assert_eq!(row["errors"], json!(errors));
    }
    // Tokens: input and output totals.
    let input: i64 = events
        .iter()
        .map(|e| e["usage"]["input_tokens"].as_i64().unwrap())
        .sum();
    let output: i64 = events
        .iter()
        .map(|e| e["usage"]["output_tokens"].as_i64().unwrap())
        .sum();
    assert_eq!(answer["total"]["input_tokens"], json!(input));
    assert_eq!(answer["total"]["output_tokens"], json!(output));

    // The numbers survive a restart of the server on the same data directory.
    let dir = srv.stop().await;
    let config = common::test_config(&dir);
    let server = tally::app::start(config).await.unwrap();
    let body: Value = reqwest::get(format!("{}/api/v1/costs", server.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(dec_of(&body["total"]["cost"]), total);
    server.shutdown().await.unwrap();

    // And the stored rows, read straight from the database file, say the same.
    let conn = duckdb::Connection::open(dir.path().join("tally.duckdb")).unwrap();
    let stored: String = conn
        .query_row("SELECT sum(cost)::VARCHAR FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored.parse::<Decimal>().unwrap(), total);
}

#[tokio::test]
async fn computed_costs_follow_the_catalog_and_unknown_models_are_unpriced() {
    let srv = start().await;
    let events = json!([
        // gpt-4o: input 2.5, cached 1.25, output 10 per million.
        {"id": "a", "timestamp": "2026-11-01T10:00:00Z", "model": "gpt-4o", "provider": "openai",
         "usage": {"input_tokens": 12000, "cache_read_tokens": 2000, "output_tokens": 900, "reasoning_tokens": 0}},
        // claude-haiku-4-5: input 1, cache write 1.25 (5m) / 2 (1h), cache read 0.1, output 5.
        {"id": "b", "timestamp": "2026-11-01T11:00:00Z", "model": "claude-haiku-4-5-20251001",
         "usage": {"input_tokens": 50000, "cache_read_tokens": 30000, "cache_write_tokens": 10000,
                   "cache_write_1h_tokens": 4000, "output_tokens": 2000}},
        // Reported cost wins; the list price is still computed beside it.
        {"id": "c", "timestamp": "2026-11-01T12:00:00Z", "model": "gpt-4o-mini", "route": "openrouter",
         "usage": {"input_tokens": 1000, "output_tokens": 100}, "cost": "0.000999"},
        // Nobody knows this model: unpriced, never $0.
        {"id": "d", "timestamp": "2026-11-01T13:00:00Z", "model": "acme-llm-9000", "provider": "vllm",
         "usage": {"input_tokens": 5000, "output_tokens": 500}},
    ]);
    let (status, answer) = srv.ingest_json(&events).await;
    assert_eq!(
        (status, answer["accepted"].as_u64()),
        (200, Some(4)),
        "{answer}"
    );

    let million = dec!(1_000_000);
    let a = (dec!(10000) * dec!(2.5) + dec!(2000) * dec!(1.25) + dec!(900) * dec!(10)) / million;
    let b = (dec!(10000) * dec!(1)
        + dec!(30000) * dec!(0.1)
        + dec!(6000) * dec!(1.25)
        + dec!(4000) * dec!(2)
        + dec!(2000) * dec!(5))
        / million;
    // Event c sends 1000 input tokens, none cached: 1000 × 0.15 + 100 × 0.6 per million.
    let c_list = (dec!(1000) * dec!(0.15) + dec!(100) * dec!(0.6)) / million;
    let c_reported = dec!(0.000999);

    let rows = srv.get_ok("/api/v1/costs?group_by=model&order=model").await;
    let by_model: BTreeMap<String, &Value> = rows["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["model"].as_str().unwrap().to_string(), r))
        .collect();
    assert_eq!(dec_of(&by_model["gpt-4o"]["cost"]), a);
    assert_eq!(dec_of(&by_model["claude-haiku-4-5-20251001"]["cost"]), b);
    assert_eq!(dec_of(&by_model["gpt-4o-mini"]["cost"]), c_reported);
    assert_eq!(dec_of(&by_model["gpt-4o-mini"]["computed_cost"]), c_list);
    assert_eq!(
        dec_of(&by_model["gpt-4o-mini"]["reported_cost"]),
        c_reported
    );
    assert_eq!(dec_of(&by_model["acme-llm-9000"]["cost"]), Decimal::ZERO);
    assert_eq!(by_model["acme-llm-9000"]["unpriced_requests"], 1);
    assert_eq!(rows["total"]["unpriced_requests"], 1);
    assert_eq!(dec_of(&rows["total"]["cost"]), a + b + c_reported);

    let sources = srv
        .get_ok("/api/v1/costs?group_by=cost_source&order=cost_source")
        .await;
    let names: Vec<&str> = sources["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["cost_source"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["computed", "reported", "unpriced"]);
    // The provider was inferred from the model name where it was missing.
    let providers = srv
        .get_ok("/api/v1/costs?group_by=provider&order=provider")
        .await;
    let names: Vec<&str> = providers["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["provider"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["anthropic", "openai", "vllm"]);
    srv.stop().await;
}

#[tokio::test]
async fn rejected_records_are_named_kept_and_do_not_block_the_valid_ones() {
    let srv = start().await;
    let body = json!([
        {"model": "gpt-4o", "usage": {"input_tokens": 10, "output_tokens": 5}},
        {"model": "gpt-4o", "usage": {"output_tokens": -5}},
        {"model": "gpt-4o", "usage": {"input_tokens": 100, "cache_read_tokens": 500}},
        {"model": "gpt-4o", "timestamp": "last tuesday"},
        {"model": "gpt-4o", "status": "fine"},
        {"usage": {"input_tokens": 1}},
        {"model": "gpt-4o", "cost": "-0.5"},
        {"model": "gpt-4o", "colour": "blue"},
        "not an object",
        {"model": "gpt-4o", "feature": "ok"},
    ]);
    let (status, answer) = srv.ingest_json(&body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 2);
    let rejected = answer["rejected"].as_array().unwrap();
    let expect = [
        (1, "usage.output_tokens", "negative"),
        (2, "usage.input_tokens", "usage.cache_read_tokens (500)"),
        (3, "timestamp", "RFC 3339"),
        (4, "status", "unknown status"),
        (5, "model", "required"),
        (6, "cost", "negative"),
        (7, "colour", "unknown field"),
        (8, "(record)", "expected a JSON object"),
    ];
    assert_eq!(rejected.len(), expect.len(), "{answer}");
    for (r, (index, field, words)) in rejected.iter().zip(expect) {
        assert_eq!(r["index"], index);
        assert_eq!(r["field"], field);
        let error = r["error"].as_str().unwrap();
        assert!(
            error.contains(words),
            "index {index}: {error:?} should mention {words:?}"
        );
    }
    // NDJSON with a broken line: the line is a reject of its own.
    let body = b"{\"model\":\"gpt-4o\"}\n{\"model\": oops}\n{\"model\":\"gpt-4o\"}\n".to_vec();
    let (status, answer) = srv.ingest_raw("application/x-ndjson", None, body, "").await;
    assert_eq!(status, 200);
    assert_eq!(answer["accepted"], 2);
    assert_eq!(answer["rejected"][0]["index"], 1);

    // The dead-letter table keeps the raw records with their reasons.
    let dead = srv.get_ok("/api/v1/rejects?limit=100").await;
    assert_eq!(dead["total"], 9);
    let raws: Vec<&str> = dead["rejects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["raw"].as_str().unwrap())
        .collect();
    assert!(raws.contains(&"{\"model\": oops}"), "{raws:?}");
    assert!(raws.iter().any(|r| r.contains("last tuesday")));
    assert!(dead["rejects"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["http_request"].is_string()));
    let (status, _) = srv.get("/api/v1/rejects?colour=red").await;
    assert_eq!(status, 400);
    // Only the accepted events count.
    assert_eq!(srv.get_ok("/api/v1/costs").await["total"]["requests"], 4);
    srv.stop().await;
}

#[tokio::test]
async fn duplicates_are_counted_and_stored_once() {
    let srv = start().await;
    let ev = |id: &str, cost: &str| json!({"id": id, "timestamp": "2026-11-10T08:00:00Z", "model": "gpt-4o", "cost": cost});
    let (_, answer) = srv
        .ingest_json(&json!([ev("x1", "1"), ev("x2", "2"), ev("x1", "1")]))
        .await;
    assert_eq!(
        (answer["accepted"].as_u64(), answer["duplicates"].as_u64()),
        (Some(2), Some(1)),
        "{answer}"
    );
    // A retry of the whole request changes nothing.
    let (_, answer) = srv
        .ingest_json(&json!([ev("x1", "1"), ev("x2", "2")]))
        .await;
    assert_eq!(
        (answer["accepted"].as_u64(), answer["duplicates"].as_u64()),
        (Some(0), Some(2)),
        "{answer}"
    );
    // Without an id, the provider's request id de-duplicates.
    let req = |model: &str| json!({"timestamp": "2026-11-10T09:00:00Z", "model": model, "provider": "openai", "request_id": "chatcmpl-123", "cost": "5"});
    let (_, answer) = srv.ingest_json(&req("gpt-4o")).await;
    assert_eq!(answer["accepted"], 1);
    let (_, answer) = srv.ingest_json(&req("gpt-4o")).await;
    assert_eq!(answer["duplicates"], 1);
    // Concurrent copies of one new event: exactly one lands.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let client = srv.client.clone();
        let url = srv.url("/v1/ingest");
        tasks.push(tokio::spawn(async move {
            let r = client.post(url).json(&json!({"id": "race", "timestamp": "2026-11-10T10:00:00Z", "model": "gpt-4o", "cost": "7"})).send().await.unwrap();
            r.json::<Value>().await.unwrap()["accepted"].as_u64().unwrap()
        }));
    }
    let mut landed = 0;
    for t in tasks {
        landed += t.await.unwrap();
    }
    assert_eq!(landed, 1);
    let total = srv.get_ok("/api/v1/costs").await["total"].clone();
    assert_eq!(total["requests"], 4);
    assert_eq!(dec_of(&total["cost"]), dec!(15));
    srv.stop().await;
}

#[tokio::test]
async fn unreadable_oversized_and_unsupported_bodies() {
    let srv = start_with(|c| {
        c.ingest.max_body_bytes = 64 * 1024;
        c.ingest.max_decompressed_bytes = 256 * 1024;
        c.ingest.max_records = 1000;
    })
    .await;
    let check = |status: u16, body: &Value, want: u16, code: &str| {
        assert_eq!(status, want, "{body}");
        assert_eq!(body["error"]["code"], code, "{body}");
    };
    let (s, b) = srv
        .ingest_raw(
            "application/json",
            None,
            b"[{\"model\": \"a\"},".to_vec(),
            "",
        )
        .await;
    check(s, &b, 400, "bad_request");
    let (s, b) = srv
        .ingest_raw("application/json", None, Vec::new(), "")
        .await;
    check(s, &b, 400, "bad_request");
    let (s, b) = srv
        .ingest_raw("application/json", Some("gzip"), b"not gzip".to_vec(), "")
        .await;
    check(s, &b, 400, "bad_request");
    let (s, b) = srv
        .ingest_raw("application/json", None, vec![b' '; 100 * 1024], "")
        .await;
    check(s, &b, 413, "payload_too_large");
    // A gzip bomb: small on the wire, huge inflated.
    let bomb = gzip(&vec![b' '; 8 * 1024 * 1024]);
    assert!(bomb.len() < 64 * 1024);
    let (s, b) = srv
        .ingest_raw("application/json", Some("gzip"), bomb, "")
        .await;
    check(s, &b, 413, "payload_too_large");
    let many: Vec<Value> = (0..1001).map(|_| json!({"model": "m"})).collect();
    let (s, b) = srv
        .ingest_raw(
            "application/x-ndjson",
            Some("gzip"),
            gzip(&ndjson(&many)),
            "",
        )
        .await;
    check(s, &b, 413, "payload_too_large");
    let (s, b) = srv
        .ingest_raw("text/csv", None, b"a,b\n1,2".to_vec(), "")
        .await;
    check(s, &b, 415, "unsupported_media_type");
    let (s, b) = srv
        .ingest_raw("application/json", Some("br"), b"{}".to_vec(), "")
        .await;
    check(s, &b, 415, "unsupported_media_type");
    let (s, b) = srv
        .ingest_raw(
            "application/json",
            None,
            b"{\"model\":\"m\"}".to_vec(),
            "?format=excel",
        )
        .await;
    check(s, &b, 400, "bad_request");
    assert!(b["error"]["message"].as_str().unwrap().contains("excel"));
    let (s, b) = srv
        .ingest_raw(
            "application/json",
            None,
            b"{\"model\":\"m\"}".to_vec(),
            "?fromat=native",
        )
        .await;
    check(s, &b, 400, "bad_request");
    // Nothing of the refused bodies landed, not even as rejects.
    assert_eq!(srv.get_ok("/api/v1/costs").await["total"]["requests"], 0);
    assert_eq!(srv.get_ok("/api/v1/rejects").await["total"], 0);
    srv.stop().await;
}

#[tokio::test]
async fn a_full_write_queue_answers_503_with_retry_after_and_loses_no_acknowledged_event() {
    let srv = start_with(|c| {
        c.storage.queue_capacity = 1;
        c.storage.enqueue_wait_ms = 0;
        // Every request reaches the queue: the slots in front of it are the next test's.
        c.ingest.max_concurrent_requests = 24;
    })
    .await;
    let mut tasks = Vec::new();
    for t in 0..24 {
        let client = srv.client.clone();
        let url = srv.url("/v1/ingest");
        let body: Vec<Value> = (0..5000)
            .map(|i| json!({"id": format!("q{t}-{i}"), "model": "gpt-4o", "cost": "0.001"}))
            .collect();
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .header("content-type", "application/x-ndjson")
                .body(ndjson(&body))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let retry_after = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let body: Value = r.json().await.unwrap();
            (status, retry_after, body)
        }));
    }
    let (mut acked, mut refused) = (0u64, 0);
    for t in tasks {
        let (status, retry_after, body) = t.await.unwrap();
        match status {
            200 => acked += body["accepted"].as_u64().unwrap(),
            503 => {
                refused += 1;
                assert_eq!(retry_after.as_deref(), Some("1"));
                assert_eq!(body["error"]["code"], "unavailable");
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(
        refused > 0,
        "24 concurrent 5000-event requests never filled a one-slot queue"
    );
    let total = srv.get_ok("/api/v1/costs").await["total"].clone();
    assert_eq!(total["requests"].as_u64(), Some(acked));
    srv.stop().await;
}

/// One sample of `/metrics` (0 when the series has none yet).
#[tokio::test]
async fn write_requests_past_the_slots_wait_unread_and_get_503_after_the_wait() {
    let srv = start_with(|c| {
        c.ingest.max_concurrent_requests = 1;
        c.ingest.max_wait_ms = 3000;
    })
    .await;
    const IN_FLIGHT: &str = "tally_ingest_requests_in_flight";
    const WAITING: &str = "tally_ingest_requests_waiting";
    const BUSY: &str = "tally_ingest_backpressure_total{reason=\"busy\"}";
    // A client that sent its headers and half its body holds the only slot.
    let held = srv
        .hold_write_slot(&ndjson(&[
            json!({"id": "held", "model": "gpt-4o", "cost": "1.25"}),
        ]))
        .await;

    // The next one waits its 3 s for the slot and is told to come back.
    let busy_before = srv.metric(BUSY).await;
    let (status, body) = srv
        .ingest_json(&json!([{"id": "refused", "model": "gpt-4o", "cost": "2"}]))
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ingest.max_concurrent_requests"),
        "{body}"
    );
    assert_eq!(srv.metric(BUSY).await - busy_before, 1.0);

    // One that is still waiting when the slot comes free is served.
    let waiter = {
        let (client, url) = (srv.client.clone(), srv.url("/v1/ingest"));
        tokio::spawn(async move {
            let r = client
                .post(url)
                .header("content-type", "application/json")
                .body(json!([{"id": "waited", "model": "gpt-4o", "cost": "0.5"}]).to_string())
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        })
    };
    srv.metric_until(WAITING, 1.0).await;
    assert_eq!(srv.metric(IN_FLIGHT).await, 1.0, "the waiter holds no slot");
    let answer = held.finish().await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (status, body) = waiter.await.unwrap();
    assert_eq!(
        (status, body["accepted"].as_u64()),
        (200, Some(1)),
        "{body}"
    );
    srv.metric_until(IN_FLIGHT, 0.0).await;
    assert_eq!(srv.metric(WAITING).await, 0.0);

    // The two that got a slot landed; the refused one did not.
    let total = srv.get_ok("/api/v1/costs").await["total"].clone();
    assert_eq!(total["requests"], 2);
    assert_eq!(dec_of(&total["cost"]), Decimal::new(175, 2));
    srv.stop().await;
}

#[tokio::test]
async fn costs_group_filter_bucket_order_and_limit() {
    let srv = start().await;
    let ev = |ts: &str, feature: &str, tags: Value, cost: &str| json!({"timestamp": ts, "model": "gpt-4o", "feature": feature, "tags": tags, "cost": cost, "user_id": "u1"});
    let events = json!([
        // 2026-11-01 is the day US clocks fall back: the Los Angeles day runs 07:00Z–08:00Z next day.
        ev("2026-11-01T06:59:59Z", "search", json!(["a", "b"]), "1.5"),
        ev("2026-11-01T07:00:00Z", "search", json!(["a"]), "2.25"),
        ev("2026-11-02T07:59:59Z", "chat", json!([]), "3"),
        ev("2026-11-02T08:00:00Z", "chat", json!(["b"]), "4.125"),
    ]);
    let (status, _) = srv.ingest_json(&events).await;
    assert_eq!(status, 200);

    let days = srv
        .get_ok("/api/v1/costs?interval=day&tz=America/Los_Angeles&from=2026-10-31&to=2026-11-02")
        .await;
    let got: Vec<(String, Decimal, i64)> = days["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["bucket"].as_str().unwrap().to_string(),
                dec_of(&r["cost"]),
                r["requests"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("2026-10-31T00:00:00-07:00".to_string(), dec!(1.5), 1),
            ("2026-11-01T00:00:00-07:00".to_string(), dec!(5.25), 2),
            ("2026-11-02T00:00:00-08:00".to_string(), dec!(4.125), 1),
        ]
    );
    assert_eq!(dec_of(&days["total"]["cost"]), dec!(10.875));

    // Tags: an event counts in each of its tags; the total counts it once.
    let tags = srv.get_ok("/api/v1/costs?group_by=tag&order=tag").await;
    let got: Vec<(Value, Decimal)> = tags["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["tag"].clone(), dec_of(&r["cost"])))
        .collect();
    assert_eq!(
        got,
        vec![
            (json!("a"), dec!(3.75)),
            (json!("b"), dec!(5.625)),
            (Value::Null, dec!(3))
        ]
    );
    assert_eq!(dec_of(&tags["total"]["cost"]), dec!(10.875));

    let filtered = srv.get_ok("/api/v1/costs?feature=chat&tag=b").await;
    assert_eq!(dec_of(&filtered["total"]["cost"]), dec!(4.125));
    let either = srv.get_ok("/api/v1/costs?feature=chat,search&tag=").await;
    assert_eq!(dec_of(&either["total"]["cost"]), dec!(3));
    let ranged = srv
        .get_ok("/api/v1/costs?from=2026-11-01T07:00:00Z&to=2026-11-02T08:00:00Z")
        .await;
    assert_eq!(dec_of(&ranged["total"]["cost"]), dec!(5.25));

    let top = srv
        .get_ok("/api/v1/costs?group_by=feature,tag&order=cost&limit=2")
        .await;
    let rows = top["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(top["truncated"], true);
    assert_eq!(
        (rows[0]["feature"].as_str(), dec_of(&rows[0]["cost"])),
        (Some("chat"), dec!(4.125))
    );
    assert_eq!(
        (rows[1]["feature"].as_str(), dec_of(&rows[1]["cost"])),
        (Some("search"), dec!(3.75))
    );

    for (query, words) in [
        ("group_by=color", "color"),
        ("colour=red", "colour"),
        ("interval=fortnight", "fortnight"),
        ("tz=Moon/Base", "Moon/Base"),
        ("order=bucket", "bucket"),
        ("from=yesterday", "yesterday"),
    ] {
        let (status, body) = srv.get(&format!("/api/v1/costs?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(words),
            "{query}: {body}"
        );
    }
    // Values that look like SQL are only ever values.
    let (status, body) = srv.get("/api/v1/costs?feature=x%27%20OR%201%3D1--").await;
    assert_eq!(status, 200);
    assert_eq!(body["total"]["requests"], 0);
    srv.stop().await;
}

#[tokio::test]
async fn with_an_admin_key_every_endpoint_but_health_needs_it() {
    let key = "test-admin-key-0123456789abcdef";
    let srv = start_with(|c| c.admin_key = Some(key.into())).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in ["/api/v1/costs", "/api/v1/rejects", "/"] {
        let page = path == "/";
        let r = client.get(srv.url(path)).send().await.unwrap();
        if page {
            // People get the sign-in form, with the way back.
            assert_eq!(r.status(), 303, "{path}");
            assert_eq!(r.headers()["location"], "/signin?next=%2F");
        } else {
            assert_eq!(r.status(), 401, "{path}");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], "unauthorized");
        }
        let r = client
            .get(srv.url(path))
            .bearer_auth("wrong-key-wrong-key")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), if page { 303 } else { 401 }, "{path}");
        let r = client
            .get(srv.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let r = client
        .post(srv.url("/v1/ingest"))
        .json(&json!({"model": "m"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .post(srv.url("/v1/ingest"))
        .bearer_auth(key)
        .json(&json!({"model": "m"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        client
            .get(srv.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    srv.stop().await;
}

#[tokio::test]
async fn refuses_a_public_address_without_a_key() {
    common::init_logs();
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::test_config(&dir);
    config.listen = "0.0.0.0:0".into();
    let err = match tally::app::start(config).await {
        Ok(_) => panic!("started on 0.0.0.0 without a key"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("TALLY_ADMIN_KEY"), "{err}");
}

#[tokio::test]
async fn the_overview_page_shows_the_api_total() {
    let srv = start().await;
    let now = chrono::Utc::now();
    let events: Vec<Value> = (0..5)
        .map(|i| json!({"timestamp": (now - chrono::Duration::hours(i)).to_rfc3339(), "model": "gpt-4o", "feature": "search", "cost": "1234.5"}))
        .collect();
    srv.ingest_json(&Value::Array(events)).await;
    let html = srv.get_text("/").await;
    assert!(html.contains("$6,172.50"), "{html}");
    assert!(html.contains("search"));
    srv.stop().await;
}

#[tokio::test]
async fn one_million_tiny_costs_sum_exactly() {
    let srv = start().await;
    // The smallest stored unit (one picodollar) a million times, and a list price of
    // $0.15 per million input tokens for one token a million times: floats drift on both.
    let per_batch = 100_000;
    let mut body = Vec::with_capacity(per_batch * 80);
    for batch in 0..10 {
        body.clear();
        for i in 0..per_batch {
            let n = batch * per_batch + i;
            body.extend_from_slice(
                format!("{{\"id\":\"t{n}\",\"timestamp\":\"2026-11-05T00:00:00Z\",\"model\":\"gpt-4o-mini\",\"usage\":{{\"input_tokens\":1}},\"cost\":\"0.000000000001\"}}\n")
                    .as_bytes(),
            );
        }
        let (status, answer) = srv
            .ingest_raw("application/x-ndjson", Some("gzip"), gzip(&body), "")
            .await;
        assert_eq!(
            (status, answer["accepted"].as_u64()),
            (200, Some(per_batch as u64)),
            "{answer}"
        );
    }
    let total = srv.get_ok("/api/v1/costs").await["total"].clone();
    assert_eq!(total["requests"], 1_000_000);
    assert_eq!(dec_of(&total["cost"]), dec!(0.000001));
    assert_eq!(dec_of(&total["computed_cost"]), dec!(0.15));
    srv.stop().await;
}
