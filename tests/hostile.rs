//! Hostile input through the real server: SQL in every kind of query parameter of every query
//! endpoint is answered 200 (matching nothing) or 400, never executed and never a 5xx; random
//! and mutated ingest bodies, in every content type and encoding, never make the server answer
//! 5xx or lose the events already stored.

#[macro_use]
mod common;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

/// Values an attacker would try in a filter, a group key, an order or a time zone.
const PAYLOADS: &[&str] = &[
    "x' OR 1=1--",
    "x\" OR \"1\"=\"1",
    "'; DROP TABLE events; --",
    "model); DELETE FROM events; --",
    "feature UNION SELECT * FROM api_keys",
    "\\' OR 1=1 /*",
    "%' OR '%'='",
    "\u{0}",
];

const QUERY_ENDPOINTS: &[&str] = &[
    "/api/v1/costs",
    "/api/v1/tasks",
    "/api/v1/runs",
    "/api/v1/routes",
    "/api/v1/unpriced",
    "/api/v1/anomalies",
    "/api/v1/reconciliation",
    "/api/v1/rejects",
    "/explore",
];

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn sql_in_query_parameters_is_never_executed() {
    let srv = common::start().await;
    let records: Vec<_> = (0..20)
        .map(|i| {
            json!({"id": format!("h{i}"), "model": "gpt-4o", "feature": "search",
                        "usage": {"input_tokens": 100, "output_tokens": 10}})
        })
        .collect();
    let (status, _) = srv.ingest_json(&json!(records)).await;
    assert_eq!(status, 200);

    for endpoint in QUERY_ENDPOINTS {
        for payload in PAYLOADS {
            let p = enc(payload);
            for query in [
                format!("feature={p}"),
                format!("group_by={p}"),
                format!("order={p}"),
                format!("tz={p}"),
                format!("from={p}"),
                format!("tag.{p}=x"),
                format!("{p}=x"),
                format!("limit={p}"),
            ] {
                let path = format!("{endpoint}?{query}");
                let (status, answer) = srv.get(&path).await;
                assert!(status == 200 || status == 400, "{path}: {status} {answer}");
            }
        }
    }
    // A quoted filter value is a value: it matches nothing rather than everything.
    for payload in PAYLOADS {
        let answer = srv
            .get_ok(&format!("/api/v1/costs?feature={}", enc(payload)))
            .await;
        assert_eq!(answer["total"]["requests"], 0, "{payload}: {answer}");
    }
    // And nothing was dropped or deleted.
    let answer = srv.get_ok("/api/v1/costs").await;
    assert_eq!(answer["total"]["requests"], 20);
    srv.stop().await;
}

#[tokio::test]
async fn random_and_mutated_ingest_bodies_never_get_a_5xx() {
    let srv = common::start().await;
    let good =
        json!({"id": "keep", "model": "gpt-4o", "usage": {"input_tokens": 5, "output_tokens": 1}});
    assert_eq!(srv.ingest_json(&good).await.0, 200);
    let seeds: Vec<Vec<u8>> = vec![
        serde_json::to_vec(&good).unwrap(),
        std::fs::read("tests/fixtures/openai/chat_cached.json").unwrap(),
        std::fs::read("tests/fixtures/litellm/slp_json_array.json").unwrap(),
        b"{\"model\":\"gpt-4o\"}\n{\"model\":\"gpt-4o\",\"usage\":{}}\n".to_vec(),
    ];
    let seed: u64 = rand::random();
    eprintln!("hostile ingest seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let content_types = [
        "application/json",
        "application/x-ndjson",
        "text/plain",
        "application/cloudevents-batch+json",
        "",
    ];
    for round in 0..200 {
        let mut body = seeds[rng.random_range(0..seeds.len())].clone();
        for _ in 0..rng.random_range(1..6) {
            if body.is_empty() {
                break;
            }
            let i = rng.random_range(0..body.len());
            match rng.random_range(0..4) {
                0 => body[i] = rng.random(),
                1 => body.truncate(i),
                2 => body.insert(i, *b"{}[]\",:9e".get(rng.random_range(0..9)).unwrap()),
                _ => {
                    body.drain(i..(i + 16).min(body.len()));
                }
            }
        }
        let (encoding, body) = match rng.random_range(0..4) {
            0 => (Some("gzip"), common::gzip(&body)),
            // Claims gzip but is not: must be a clear 400.
            1 => (Some("gzip"), body),
            _ => (None, body),
        };
        let ct = content_types[rng.random_range(0..content_types.len())];
        let (status, answer) = srv.ingest_raw(ct, encoding, body, "").await;
        assert!(
            [200, 400, 413, 415].contains(&status),
            "round {round} (seed {seed}): {status} {answer}"
        );
    }
    let (status, _) = srv.get("/readyz").await;
    assert_eq!(status, 200);
    let answer = srv.get_ok("/api/v1/costs").await;
    assert!(answer["total"]["requests"].as_u64().unwrap() >= 1);
    srv.stop().await;
}
