//! De-duplication through a real server with current timestamps, which the writer answers from
//! its in-memory index of recent keys (older events from the table): retries by id, the same
//! call through another source by provider request id, per-project keys, late events, a
//! whole batch sent twice, and a restart that must reload the index from the table.

#[macro_use]
mod common;

use chrono::{Duration, SecondsFormat, Utc};
use common::{start, test_config, TestServer};
use serde_json::{json, Value};

fn at(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn event(id: &str, provider: &str, request: &str, ts: &str, project: &str) -> Value {
    json!({"id": id, "timestamp": ts, "provider": provider, "request_id": request,
           "model": "gpt-4o-mini", "cost": "0.01", "project": project,
           "usage": {"input_tokens": 100, "output_tokens": 10}})
}

async fn send(srv: &TestServer, body: Value) -> (u64, u64) {
    let (status, answer) = srv.ingest_json(&body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["rejected"], json!([]), "{answer}");
    (
        answer["accepted"].as_u64().unwrap(),
        answer["duplicates"].as_u64().unwrap(),
    )
}

async fn requests(srv: &TestServer) -> i64 {
    srv.get_ok("/api/v1/costs").await["total"]["requests"]
        .as_i64()
        .unwrap()
}

async fn restart(srv: TestServer) -> TestServer {
    let dir = srv.stop().await;
    let server = tally::app::start(test_config(&dir)).await.unwrap();
    TestServer {
        url: server.url(),
        server: Some(server),
        dir,
        client: reqwest::Client::new(),
        key: None,
    }
}

#[tokio::test]
async fn recent_and_late_copies_are_found_before_and_after_a_restart() {
    let srv = start().await;
    let now = at(Utc::now() - Duration::minutes(5));
    let old = at(Utc::now() - Duration::days(3));

    assert_eq!(
        send(&srv, event("n-1", "openai", "req-1", &now, "a")).await,
        (1, 0)
    );
    // A retry: the same id.
    assert_eq!(
        send(&srv, event("n-1", "openai", "req-1", &now, "a")).await,
        (0, 1)
    );
    // The same call through another source: another id, the same provider request id.
    assert_eq!(
        send(&srv, event("span-9", "openai", "req-1", &now, "a")).await,
        (0, 1)
    );
    // The same request id from another provider, and the same keys in another project, are
    // other calls.
    assert_eq!(
        send(&srv, event("n-2", "anthropic", "req-1", &now, "a")).await,
        (1, 0)
    );
    assert_eq!(
        send(&srv, event("n-1", "openai", "req-1", &now, "b")).await,
        (1, 0)
    );
    // A late event (older than the index keeps) and its retry.
    assert_eq!(
        send(&srv, event("late-1", "openai", "req-old", &old, "a")).await,
        (1, 0)
    );
    assert_eq!(
        send(&srv, event("late-1", "openai", "req-old", &old, "a")).await,
        (0, 1)
    );

    // A batch of 3,000 sent twice: the second time every event is a duplicate, and copies
    // inside one batch count once.
    let batch: Vec<Value> = (0..3000)
        .map(|i| event(&format!("b-{i}"), "openai", &format!("breq-{i}"), &now, "a"))
        .collect();
    assert_eq!(send(&srv, Value::Array(batch.clone())).await, (3000, 0));
    assert_eq!(send(&srv, Value::Array(batch.clone())).await, (0, 3000));
    let mut twice = batch[..10].to_vec();
    twice.extend(batch[..10].iter().cloned());
    twice.push(event("b-new", "openai", "breq-new", &now, "a"));
    twice.push(event("b-new", "openai", "breq-new", &now, "a"));
    assert_eq!(send(&srv, Value::Array(twice)).await, (1, 21));
    let stored = 4 + 3000 + 1;
    assert_eq!(requests(&srv).await, stored);

    // After a restart the index is rebuilt from the table: nothing is stored twice.
    let srv = restart(srv).await;
    assert_eq!(
        send(&srv, event("n-1", "openai", "req-1", &now, "a")).await,
        (0, 1)
    );
    assert_eq!(
        send(&srv, event("other", "openai", "breq-77", &now, "a")).await,
        (0, 1)
    );
    assert_eq!(send(&srv, Value::Array(batch)).await, (0, 3000));
    assert_eq!(
        send(&srv, event("late-1", "openai", "x", &old, "a")).await,
        (0, 1)
    );
    assert_eq!(
        send(&srv, event("n-3", "openai", "req-3", &now, "a")).await,
        (1, 0)
    );
    assert_eq!(requests(&srv).await, stored + 1);
}
