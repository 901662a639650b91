//! Operations through the real server: `/metrics` counts what ingest and queries did, in the
//! Prometheus text format, and only the metrics token or an admin key may read it.
//!
//! The registry is process-wide, so this file holds the only test that ingests in its binary
//! and compares before/after deltas.

#[macro_use]
mod common;

use std::collections::HashMap;

use common::start_with;

const ADMIN: &str = "bootstrap-admin-key-0123456789";
const TOKEN: &str = "metrics-token-abcdefghijklmnop";

/// Parses exposition lines `name{labels} value` into a map; comments are skipped.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("sample line has a value");
            (series.to_string(), value.parse().expect("numeric sample"))
        })
        .collect()
}

async fn scrape(client: &reqwest::Client, url: &str, key: &str) -> (u16, String) {
    let resp = client
        .get(format!("{url}/metrics"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    if status == 200 {
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    }
    (status, resp.text().await.unwrap())
}

fn delta(before: &HashMap<String, f64>, after: &HashMap<String, f64>, series: &str) -> f64 {
    after.get(series).copied().unwrap_or(0.0) - before.get(series).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_ingest_and_queries_and_need_the_token_or_an_admin_key() {
    let srv = start_with(|c| {
        c.admin_key = Some(ADMIN.into());
        c.metrics_token = Some(TOKEN.into());
    })
    .await;
    let client = reqwest::Client::new();
    let (status, text) = scrape(&client, &srv.url, TOKEN).await;
    assert_eq!(status, 200);
    let before = samples(&text);
    // Every declared series is described even before it has samples.
    for name in [
        "tally_ingest_records_total",
        "tally_writer_commit_duration_seconds",
        "tally_http_request_duration_seconds",
    ] {
        assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing");
    }

    // Three good records (one of them sent twice) and one bad one.
    let body = [
        r#"{"id":"m1","model":"gpt-4o","usage":{"input_tokens":10,"output_tokens":5}}"#,
        r#"{"id":"m2","model":"gpt-4o","usage":{"input_tokens":10,"output_tokens":5}}"#,
        r#"{"id":"m3","model":"gpt-4o","usage":{"input_tokens":"ten"}}"#,
    ]
    .join("\n");
    for _ in 0..2 {
        let resp = client
            .post(format!("{}/v1/ingest", srv.url))
            .bearer_auth(ADMIN)
            .header("content-type", "application/x-ndjson")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let resp = client
        .get(format!("{}/api/v1/costs?group_by=model", srv.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let (_, text) = scrape(&client, &srv.url, TOKEN).await;
    let after = samples(&text);
    let d = |series: &str| delta(&before, &after, series);
    assert_eq!(
        d(r#"tally_ingest_records_total{format="native",result="received"}"#),
        4.0
    );
    assert_eq!(
        d(r#"tally_ingest_records_total{format="native",result="rejected"}"#),
        2.0
    );
    assert_eq!(d(r#"tally_ingest_events_total{result="stored"}"#), 2.0);
    assert_eq!(d(r#"tally_ingest_events_total{result="duplicate"}"#), 2.0);
    assert_eq!(
        d(r#"tally_http_requests_total{route="/v1/ingest",method="POST",status="200"}"#),
        2.0
    );
    assert_eq!(
        d(r#"tally_http_request_duration_seconds_count{route="/api/v1/costs",method="GET"}"#),
        1.0
    );
    assert!(d(r#"tally_writer_commits_total{result="ok"}"#) >= 2.0);
    assert!(d("tally_store_read_duration_seconds_count") >= 1.0);
    assert!(after["process_resident_memory_bytes"] > 1e6);
    // DuckDB's share of it: the stored tables hold some of its buffer pool by now.
    let duckdb_table = after[r#"tally_duckdb_memory_bytes{tag="base_table"}"#];
    assert!(duckdb_table > 0.0, "{duckdb_table}");
    assert!(duckdb_table < after["process_resident_memory_bytes"]);
    assert!(text.contains(r#"tally_duckdb_temporary_bytes{tag="hash_table"}"#));
    assert_eq!(after["tally_writer_queue_depth"], 0.0);
    // No budget, so no alert: every delivery state is present and zero.
    for s in ["pending", "delivered", "failed", "cancelled"] {
        assert_eq!(after[&format!("tally_alerts{{state=\"{s}\"}}")], 0.0, "{s}");
    }

    // Who may scrape: the token and admin keys; not a project's read key, nobody without a key.
    assert_eq!(scrape(&client, &srv.url, ADMIN).await.0, 200);
    let created: serde_json::Value = client
        .post(format!("{}/api/v1/keys", srv.url))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"name": "r", "role": "read", "project": "a"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let read_key = created["secret"]
        .as_str()
        .expect("the new key is shown once");
    assert_eq!(scrape(&client, &srv.url, read_key).await.0, 403);
    assert_eq!(
        scrape(&client, &srv.url, "not-the-token-at-all").await.0,
        401
    );
    let anonymous = client
        .get(format!("{}/metrics", srv.url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    srv.stop().await;
}
