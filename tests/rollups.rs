//! Rollups through a real server: the costs API (which answers from the hourly rollups when it
//! can) stays exact when a duplicate fills a stored event's gaps, when an event arrives late
//! for an old hour, and when re-pricing changes stored costs. Expected numbers come from the
//! events sent here.

#[macro_use]
mod common;

use common::{start, TestServer};
use serde_json::{json, Value};

async fn by_feature(srv: &TestServer, query: &str) -> Vec<(Value, String)> {
    let resp = srv
        .client
        .get(srv.url(&format!("/api/v1/costs?group_by=feature{query}")))
        .bearer_auth(srv.key.as_deref().unwrap_or_default())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    let mut rows: Vec<(Value, String)> = answer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["feature"].clone(),
                r["cost"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    rows.sort_by_key(|r| r.0.to_string());
    rows
}

#[tokio::test]
async fn gap_fill_and_late_events_move_rollup_sums() {
    let srv = start().await;
    let (status, answer) = srv
        .ingest_json(&json!([
            {"id": "g-1", "timestamp": "2026-11-10T10:15:00Z", "model": "gpt-4o", "cost": "0.5"},
            {"id": "g-2", "timestamp": "2026-11-10T10:20:00Z", "model": "gpt-4o", "cost": "0.25",
             "feature": "search"},
        ]))
        .await;
    assert_eq!(answer["accepted"], 2, "{status} {answer}");
    assert_eq!(
        by_feature(&srv, "").await,
        vec![
            (json!("search"), "0.25".to_string()),
            (Value::Null, "0.5".to_string())
        ]
    );
    // The same call again from another source, now with its feature: not counted twice, and
    // its cost moves from "no feature" to "search".
    let (_, answer) = srv
        .ingest_json(
            &json!([{"id": "g-1", "timestamp": "2026-11-10T10:15:00Z", "model": "gpt-4o",
                               "cost": "0.5", "feature": "search"}]),
        )
        .await;
    assert_eq!(answer["duplicates"], 1, "{answer}");
    assert_eq!(
        by_feature(&srv, "").await,
        vec![(json!("search"), "0.75".to_string())]
    );
    // A late event for an hour long past.
    let (_, answer) = srv
        .ingest_json(
            &json!([{"id": "late-1", "timestamp": "2025-03-02T23:59:59Z", "model": "gpt-4o",
                               "cost": "0.000000000001", "feature": "search"}]),
        )
        .await;
    assert_eq!(answer["accepted"], 1, "{answer}");
    assert_eq!(
        by_feature(&srv, "&from=2025-03-02&to=2025-03-03").await,
        vec![(json!("search"), "0.000000000001".to_string())]
    );
    assert_eq!(
        by_feature(&srv, "").await,
        vec![(json!("search"), "0.750000000001".to_string())]
    );
    srv.stop().await;
}
