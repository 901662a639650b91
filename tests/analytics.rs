//! Outcome analytics through a real server: outcomes, cost per successful task, runs, routes,
//! what-if, re-pricing, unpriced models and anomalies. Expected numbers are computed here by
//! hand from the fixture numbers (or, for the demo, from the raw rows and the price catalog),
//! never with Tally's own code.

#[macro_use]
mod common;

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, SecondsFormat, TimeZone, Utc};
use common::{gzip, ndjson, start, start_with, TestServer};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{json, Value};

fn dec_of(v: &Value) -> Decimal {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a decimal string, got {v}"))
        .parse()
        .unwrap()
}

/// The answer's rounding: half-even to 12 places, trailing zeros dropped.
fn q12(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(12, RoundingStrategy::MidpointNearestEven)
        .normalize()
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

async fn post(srv: &TestServer, path: &str, body: &Value) -> (u16, Value) {
    post_raw(
        srv,
        path,
        "application/json",
        None,
        body.to_string().into_bytes(),
    )
    .await
}

async fn post_raw(
    srv: &TestServer,
    path: &str,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut rb = srv
        .client
        .post(srv.url(path))
        .header("content-type", content_type)
        .body(body);
    if let Some(e) = encoding {
        rb = rb.header("content-encoding", e);
    }
    if let Some(k) = &srv.key {
        rb = rb.bearer_auth(k);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn ingest(srv: &TestServer, events: Value) {
    let (status, answer) = srv.ingest_json(&events).await;
    let n = events.as_array().map_or(1, Vec::len);
    assert_eq!(
        (status, answer["accepted"].as_u64()),
        (200, Some(n as u64)),
        "{answer}"
    );
}

async fn outcomes(srv: &TestServer, body: Value) -> Value {
    let (status, answer) = post(srv, "/v1/outcomes", &body).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

fn row<'a>(answer: &'a Value, key: &str, value: &str) -> &'a Value {
    answer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r[key] == value)
        .unwrap_or_else(|| panic!("no row with {key}={value} in {answer}"))
}

/// A 400 whose message names `param`.
async fn bad_request(srv: &TestServer, path: &str, param: &str) {
    let (status, body) = srv.get(path).await;
    assert_eq!(status, 400, "GET {path}: {body}");
    assert_eq!(body["error"]["code"], "bad_request");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(param),
        "GET {path}: {msg:?} does not name {param}"
    );
}

// -------------------------------------------------------------------------------------------
// Outcomes
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn outcomes_take_every_body_form_reject_by_record_and_are_idempotent() {
    let srv = start().await;
    let records = vec![
        json!({"id": "o-1", "task_id": "t-1", "outcome": "success", "value": "12.5",
               "timestamp": "2026-11-01T10:00:00Z", "feature": "search"}),
        json!({"id": "o-2", "task_id": "t-2", "outcome": "failure", "rework_cost": 0.25,
               "timestamp": "2026-11-01T10:00:00Z"}),
        json!({"task_id": "t-3", "outcome": "done"}),
        json!({"task_id": "t-4", "outcome": "abandoned", "value": "-1"}),
        json!({"outcome": "success"}),
    ];
    let answer = outcomes(&srv, Value::Array(records.clone())).await;
    assert_eq!(answer["accepted"], 2, "{answer}");
    assert_eq!(answer["duplicates"], 0);
    let rejected: Vec<(u64, &str)> = answer["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["field"].as_str().unwrap()))
        .collect();
    assert_eq!(rejected, vec![(2, "outcome"), (3, "value"), (4, "task_id")]);

    // The same records again, as gzip NDJSON: the two valid ones are duplicates now.
    let (status, answer) = post_raw(
        &srv,
        "/v1/outcomes",
        "application/x-ndjson",
        Some("gzip"),
        gzip(&ndjson(&records[..2])),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["accepted"].as_u64(), answer["duplicates"].as_u64()),
        (Some(0), Some(2))
    );
    // Without an id, the same task, outcome and timestamp is the same report.
    let once = json!({"task_id": "t-5", "outcome": "success", "timestamp": "2026-11-01T10:00:00Z"});
    assert_eq!(outcomes(&srv, once.clone()).await["accepted"], 1);
    assert_eq!(outcomes(&srv, once.clone()).await["duplicates"], 1);
    // Next to a new report a month later, in one batch: still the same report.
    let later =
        json!({"task_id": "t-6", "outcome": "failure", "timestamp": "2026-11-30T10:00:00Z"});
    let answer = outcomes(&srv, json!([later, once])).await;
    assert_eq!(
        (answer["accepted"].as_u64(), answer["duplicates"].as_u64()),
        (Some(1), Some(1)),
        "{answer}"
    );

    // Rejected records are in the dead-letter table with their raw text.
    let dead = srv.get_ok("/api/v1/rejects?source_format=outcome").await;
    assert_eq!(dead["total"], 3, "{dead}");
    let missing_task = dead["rejects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["field"] == "task_id")
        .expect("the record without a task is kept");
    assert_eq!(missing_task["raw"], r#"{"outcome":"success"}"#);

    // Bodies that cannot be read, and parameters that do not exist.
    let (status, body) = post_raw(&srv, "/v1/outcomes", "text/csv", None, b"a,b".to_vec()).await;
    assert_eq!(status, 415, "{body}");
    let (status, body) = post_raw(
        &srv,
        "/v1/outcomes",
        "application/json",
        None,
        b"[{".to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = post(&srv, "/v1/outcomes?format=native", &json!({})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("format"));
    srv.stop().await;
}

#[tokio::test]
async fn oversized_outcome_bodies_are_refused() {
    let srv = start_with(|c| c.ingest.max_body_bytes = 64).await;
    let big = json!({"task_id": "t".repeat(100), "outcome": "success"});
    let (status, body) = post(&srv, "/v1/outcomes", &big).await;
    assert_eq!(status, 413, "{body}");
    srv.stop().await;
}

// -------------------------------------------------------------------------------------------
// Tasks: every number by hand
// -------------------------------------------------------------------------------------------

/// Events of hand-made tasks (reported USD costs, so every cost is the number written here).
fn task_events(now: DateTime<Utc>) -> Value {
    let recent = ts(now - Duration::hours(1));
    json!([
        // T1 (search): a rate-limited call billed 0.10, its retry 0.25, another step 0.05.
        {"id": "t1-a", "timestamp": "2026-11-01T10:00:00Z", "model": "m", "task_id": "T1", "feature": "search",
         "status": "error", "error_type": "rate_limit", "cost": "0.10"},
        {"id": "t1-b", "timestamp": "2026-11-01T10:00:05Z", "model": "m", "task_id": "T1", "feature": "search",
         "retry_of": "t1-a", "cost": "0.25"},
        {"id": "t1-c", "timestamp": "2026-11-01T10:00:09Z", "model": "m", "task_id": "T1", "feature": "search", "cost": "0.05"},
        // T2 (search): a timeout billed 0.40, the fallback 0.60.
        {"id": "t2-a", "timestamp": "2026-11-02T09:00:00Z", "model": "m", "task_id": "T2", "feature": "search",
         "status": "error", "error_type": "timeout", "cost": "0.40"},
        {"id": "t2-b", "timestamp": "2026-11-02T09:01:00Z", "model": "n", "task_id": "T2", "feature": "search",
         "fallback_from": "t2-a", "cost": "0.60"},
        // T3 (search): one call; its outcome was posted before it arrived.
        {"id": "t3-a", "timestamp": "2026-11-03T09:00:00Z", "model": "m", "task_id": "T3", "feature": "search", "cost": "0.70"},
        // T4 (search): no outcome, long ago: unknown.
        {"id": "t4-a", "timestamp": "2026-11-03T10:00:00Z", "model": "m", "task_id": "T4", "feature": "search", "cost": "0.15"},
        // T6: no feature on the calls; the outcome says chat.
        {"id": "t6-a", "timestamp": "2026-11-04T08:00:00Z", "model": "m", "task_id": "T6", "cost": "1.00"},
        // T7 (chat): three calls, the last one reports the outcome itself.
        {"id": "t7-a", "timestamp": "2026-11-04T09:00:00Z", "model": "m", "task_id": "T7", "feature": "chat", "cost": "0.30"},
        {"id": "t7-b", "timestamp": "2026-11-04T09:00:10Z", "model": "m", "task_id": "T7", "feature": "chat", "cost": "0.30"},
        {"id": "t7-c", "timestamp": "2026-11-04T09:00:20Z", "model": "m", "task_id": "T7", "feature": "chat", "cost": "0.30",
         "task_outcome": "success"},
        // T8 (search): first call before the range: out, with its in-range call.
        {"id": "t8-a", "timestamp": "2026-10-31T23:00:00Z", "model": "m", "task_id": "T8", "feature": "search", "cost": "5.00"},
        {"id": "t8-b", "timestamp": "2026-11-01T01:00:00Z", "model": "m", "task_id": "T8", "feature": "search", "cost": "5.00"},
        // T9 (chat): first call in the range, second after it: both count.
        {"id": "t9-a", "timestamp": "2026-11-04T23:00:00Z", "model": "m", "task_id": "T9", "feature": "chat", "cost": "0.01"},
        {"id": "t9-b", "timestamp": "2026-11-05T01:00:00Z", "model": "m", "task_id": "T9", "feature": "chat", "cost": "0.02"},
        // T5 (search): an hour ago, no outcome yet: open.
        {"id": "t5-a", "timestamp": recent, "model": "m", "task_id": "T5", "feature": "search", "cost": "0.05"},
        // A call of no task: in /api/v1/costs, in no task.
        {"id": "loose", "timestamp": "2026-11-02T12:00:00Z", "model": "m", "feature": "search", "cost": "0.33"},
    ])
}

#[tokio::test]
async fn cost_per_successful_task_by_hand() {
    let srv = start().await;
    let now = Utc::now();
    // Outcomes first for T3: they may arrive before the calls.
    outcomes(
        &srv,
        json!({"task_id": "T3", "outcome": "failure", "timestamp": "2026-11-03T09:30:00Z"}),
    )
    .await;
    ingest(&srv, task_events(now)).await;
    outcomes(
        &srv,
        json!([
            {"task_id": "T1", "outcome": "success", "value": "2.00", "rework_cost": "0.50", "timestamp": "2026-11-01T11:00:00Z"},
            // T2: failure, then success later (wins), then a late-arriving failure stamped
            // earlier (does not win: the outcome time decides, not the arrival).
            {"task_id": "T2", "outcome": "failure", "timestamp": "2026-11-02T10:00:00Z"},
            {"task_id": "T2", "outcome": "success", "value": "1.00", "timestamp": "2026-11-02T12:00:00Z"},
            {"task_id": "T6", "outcome": "abandoned", "feature": "chat", "timestamp": "2026-11-04T08:10:00Z"},
            {"task_id": "T8", "outcome": "success", "timestamp": "2026-11-01T02:00:00Z"},
            {"task_id": "T9", "outcome": "success", "timestamp": "2026-11-05T02:00:00Z"},
        ]),
    )
    .await;
    outcomes(
        &srv,
        json!({"task_id": "T2", "outcome": "failure", "timestamp": "2026-11-02T11:00:00Z"}),
    )
    .await;

    let a = srv
        .get_ok("/api/v1/tasks?group_by=feature&from=2026-11-01&to=2026-11-05&order=feature")
        .await;
    assert_eq!(a["quotient_scale"], 12);
    let features: Vec<&str> = a["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["feature"].as_str().unwrap())
        .collect();
    assert_eq!(features, vec!["chat", "search"]);

    // search: T1 success (0.10 + 0.25 + 0.05 + rework 0.50 = 0.90), T2 success (1.00),
    // T3 failure (0.70), T4 unknown (0.15). T8 started before the range, T5 after it.
    let s = row(&a, "feature", "search");
    assert_eq!(
        [
            &s["tasks"],
            &s["successful"],
            &s["failed"],
            &s["abandoned"],
            &s["open"],
            &s["unknown"]
        ],
        [
            &json!(4),
            &json!(2),
            &json!(1),
            &json!(0),
            &json!(0),
            &json!(1)
        ]
    );
    assert_eq!(dec_of(&s["cost"]), dec!(2.75));
    assert_eq!(dec_of(&s["calls_cost"]), dec!(2.25));
    assert_eq!(dec_of(&s["rework_cost"]), dec!(0.50));
    assert_eq!(dec_of(&s["cost_per_successful_task"]), dec!(1.375));
    assert_eq!(dec_of(&s["cost_per_task"]), dec!(0.6875));
    assert_eq!(dec_of(&s["success_rate"]), dec!(0.5));
    // Retry cost: the rate-limited call and the timed-out call.
    assert_eq!(dec_of(&s["retry_cost"]), dec!(0.50));
    assert_eq!(s["retried_calls"], 2);
    // Calls per task: 3, 2, 1, 1.
    assert_eq!(s["calls"], 7);
    assert_eq!(dec_of(&s["calls_per_task_mean"]), dec!(1.75));
    assert_eq!(s["calls_per_task_p95"], 3);
    assert_eq!(dec_of(&s["value"]), dec!(3));
    // 3 / 2.75 = 1.0909…, rounded half-even at 12 places.
    assert_eq!(dec_of(&s["value_per_cost"]), dec!(1.090909090909));
    assert_eq!(dec_of(&s["cost_successful"]), dec!(1.90));
    assert_eq!(dec_of(&s["cost_failed"]), dec!(0.70));
    assert_eq!(dec_of(&s["cost_unknown"]), dec!(0.15));

    // chat: T6 (feature from its outcome) abandoned 1.00, T7 success 0.90 (its outcome came on
    // its last call), T9 success 0.03 (its second call is after `to` and still counts).
    let c = row(&a, "feature", "chat");
    assert_eq!(
        [&c["tasks"], &c["successful"], &c["abandoned"]],
        [&json!(3), &json!(2), &json!(1)]
    );
    assert_eq!(dec_of(&c["cost"]), dec!(1.93));
    assert_eq!(dec_of(&c["cost_per_successful_task"]), dec!(0.965));
    assert_eq!(c["value"], Value::Null);
    assert_eq!(c["value_per_cost"], Value::Null);

    // The total counts each task once: 7 tasks, 4 successes, 4.68.
    assert_eq!(a["total"]["tasks"], 7);
    assert_eq!(a["total"]["successful"], 4);
    assert_eq!(dec_of(&a["total"]["cost"]), dec!(4.68));
    assert_eq!(dec_of(&a["total"]["cost_per_successful_task"]), dec!(1.17));

    // The open task is the one from an hour ago.
    let recent = srv
        .get_ok(&format!(
            "/api/v1/tasks?from={}",
            (now - Duration::hours(3)).format("%Y-%m-%dT%H:%M:%SZ")
        ))
        .await;
    assert_eq!(
        (
            &recent["total"]["tasks"],
            &recent["total"]["open"],
            &recent["total"]["unknown"]
        ),
        (&json!(1), &json!(1), &json!(0))
    );
    assert_eq!(recent["total"]["cost_per_successful_task"], Value::Null);

    // Over all time, the tasks' calls are every call of /api/v1/costs except the loose one.
    let all = srv.get_ok("/api/v1/tasks").await;
    let costs = srv.get_ok("/api/v1/costs").await;
    assert_eq!(
        dec_of(&all["total"]["calls_cost"]) + dec!(0.33),
        dec_of(&costs["total"]["cost"])
    );
    assert_eq!(
        all["total"]["calls"].as_i64().unwrap() + 1,
        costs["total"]["requests"].as_i64().unwrap()
    );

    // Filters apply to the task's first call; a series buckets by it.
    let by_day = srv
        .get_ok("/api/v1/tasks?feature=search&from=2026-11-01&to=2026-11-05&interval=day")
        .await;
    let days: Vec<(&str, i64)> = by_day["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["bucket"].as_str().unwrap(), r["tasks"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        days,
        vec![
            ("2026-11-01T00:00:00Z", 1),
            ("2026-11-02T00:00:00Z", 1),
            ("2026-11-03T00:00:00Z", 2)
        ]
    );
    let sorted = srv
        .get_ok("/api/v1/tasks?group_by=task_id&from=2026-11-01&to=2026-11-05&order=cost_per_task:asc&limit=2")
        .await;
    let ids: Vec<&str> = sorted["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["task_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["T9", "T4"]);
    assert_eq!(sorted["truncated"], true);

    // A resent call that reports an outcome is a duplicate and adds no second outcome.
    let resent = &task_events(now)[10];
    assert_eq!(resent["task_outcome"], "success");
    let (_, answer) = srv.ingest_json(resent).await;
    assert_eq!(answer["duplicates"], 1, "{answer}");

    for (path, param) in [
        ("/api/v1/tasks?group_by=colour", "colour"),
        ("/api/v1/tasks?order=price", "price"),
        ("/api/v1/tasks?limit=0", "limit"),
        ("/api/v1/tasks?from=yesterday", "from"),
        ("/api/v1/tasks?feture=x", "feture"),
    ] {
        bad_request(&srv, path, param).await;
    }
    let dir = srv.stop().await;
    let conn = duckdb::Connection::open(dir.path().join("tally.duckdb")).unwrap();
    let from_events: i64 = conn
        .query_row(
            "SELECT count(*) FROM outcomes WHERE source = 'event'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(from_events, 1);
}

#[tokio::test]
async fn the_open_task_timeout_is_configurable() {
    let srv = start_with(|c| {
        c.analytics.open_task_timeout = "30m".parse().unwrap();
    })
    .await;
    let now = Utc::now();
    ingest(
        &srv,
        json!([
            {"timestamp": ts(now - Duration::hours(1)), "model": "m", "task_id": "old", "cost": "1"},
            {"timestamp": ts(now - Duration::minutes(5)), "model": "m", "task_id": "new", "cost": "1"},
        ]),
    )
    .await;
    let a = srv.get_ok("/api/v1/tasks").await;
    assert_eq!(a["open_task_timeout"], "30m");
    assert_eq!(
        (&a["total"]["open"], &a["total"]["unknown"]),
        (&json!(1), &json!(1))
    );
    srv.stop().await;
}

// -------------------------------------------------------------------------------------------
// Runs
// -------------------------------------------------------------------------------------------

fn run_events() -> Value {
    json!([
        // r1: a root span, a failing step retried and then fallen back, and another step.
        {"id": "r1-1", "timestamp": "2026-11-10T10:00:00Z", "model": "gpt-4o", "run_id": "r1", "task_id": "tk1",
         "agent": "a1", "span_id": "s1", "latency_ms": 1000, "cost": "0.10"},
        {"id": "r1-2", "timestamp": "2026-11-10T10:00:01Z", "model": "gpt-4o", "run_id": "r1", "task_id": "tk1",
         "span_id": "s2", "parent_span_id": "s1", "status": "error", "error_type": "invalid_json", "cost": "0.05"},
        {"id": "r1-3", "timestamp": "2026-11-10T10:00:02Z", "model": "gpt-4o", "run_id": "r1", "task_id": "tk1",
         "span_id": "s3", "parent_span_id": "s1", "retry_of": "r1-2", "status": "error", "error_type": "timeout", "cost": "0.07"},
        {"id": "r1-4", "timestamp": "2026-11-10T10:00:03Z", "model": "claude-sonnet-4-5", "route": "litellm", "run_id": "r1",
         "task_id": "tk1", "span_id": "s4", "parent_span_id": "s1", "fallback_from": "s3", "cost": "0.30"},
        {"id": "r1-5", "timestamp": "2026-11-10T10:00:04Z", "model": "gpt-4o", "run_id": "r1", "task_id": "tk1",
         "span_id": "s5", "parent_span_id": "s1", "latency_ms": 2500, "cost": "0.20"},
        // r2: a second run of the same task.
        {"id": "r2-1", "timestamp": "2026-11-10T11:00:00Z", "model": "gpt-4o", "run_id": "r2", "task_id": "tk1",
         "agent": "a1", "cost": "1.00"},
        // A task without a run id, and a trace without either.
        {"id": "k3-1", "timestamp": "2026-11-10T12:00:00Z", "model": "gpt-4o", "task_id": "tk3", "cost": "0.01"},
        {"id": "k3-2", "timestamp": "2026-11-10T12:00:01Z", "model": "gpt-4o", "task_id": "tk3", "cost": "0.01"},
        {"id": "tr-1", "timestamp": "2026-11-10T13:00:00Z", "model": "gpt-4o", "trace_id": "tr9", "cost": "0.02"},
    ])
}

#[tokio::test]
async fn runs_list_and_trees_by_hand() {
    let srv = start().await;
    ingest(&srv, run_events()).await;
    outcomes(
        &srv,
        json!({"task_id": "tk1", "outcome": "success", "timestamp": "2026-11-10T11:05:00Z"}),
    )
    .await;

    let list = srv.get_ok("/api/v1/runs").await;
    assert_eq!(list["total_runs"], 4);
    let order: Vec<(&str, &str)> = list["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["run_id"].as_str().unwrap(),
                r["id_kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        order,
        vec![
            ("r2", "run_id"),
            ("r1", "run_id"),
            ("tr9", "trace_id"),
            ("tk3", "task_id")
        ]
    );
    let r1 = &list["runs"][1];
    assert_eq!(dec_of(&r1["cost"]), dec!(0.72));
    assert_eq!(
        [
            &r1["calls"],
            &r1["errors"],
            &r1["retries"],
            &r1["fallbacks"]
        ],
        [&json!(5), &json!(2), &json!(1), &json!(1)]
    );
    // From the first call's start to the end of the last to finish (10:00:04 + 2.5 s).
    assert_eq!(r1["duration_ms"], 6500);
    assert_eq!(r1["agent"], "a1");
    assert_eq!(r1["outcome"], "success");
    assert_eq!(dec_of(&r1["retry_cost"]), dec!(0.12));
    let page = srv
        .get_ok("/api/v1/runs?order=calls:asc&offset=1&limit=2")
        .await;
    let ids: Vec<&str> = page["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["r2", "tk3"], "{page}");
    assert_eq!(page["total_runs"], 4);
    let only_a1 = srv.get_ok("/api/v1/runs?agent=a1").await;
    assert_eq!(only_a1["total_runs"], 2);

    // The tree of r1.
    let d = srv.get_ok("/api/v1/runs/r1").await;
    assert_eq!(d["run"]["matched_by"], "run_id");
    assert_eq!(d["run"]["state"], "success");
    let shape: Vec<(String, u64, String, Value)> = d["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["depth"].as_u64().unwrap(),
                c["link"].as_str().unwrap().to_string(),
                c["parent"].clone(),
            )
        })
        .collect();
    let expected = [
        ("r1-1", 0, "root", Value::Null),
        ("r1-2", 1, "child", json!("r1-1")),
        ("r1-3", 2, "retry", json!("r1-2")),
        ("r1-4", 3, "fallback", json!("r1-3")),
        ("r1-5", 1, "child", json!("r1-1")),
    ];
    assert_eq!(
        shape,
        expected
            .iter()
            .map(|(i, d, l, p)| (i.to_string(), *d as u64, l.to_string(), p.clone()))
            .collect::<Vec<_>>()
    );
    assert_eq!(d["calls"][3]["model"], "claude-sonnet-4-5");
    assert_eq!(d["calls"][3]["route"], "litellm");
    assert_eq!(dec_of(&d["totals"]["cost"]), dec!(0.72));
    let costs = srv.get_ok("/api/v1/costs?run_id=r1").await;
    assert_eq!(dec_of(&costs["total"]["cost"]), dec!(0.72));
    assert_eq!(costs["total"]["requests"], d["totals"]["calls"]);
    assert_eq!(d["most_expensive_call"]["id"], "r1-4");
    // The step of r1-2 with its retry and fallback: 0.05 + 0.07 + 0.30.
    assert_eq!(d["most_expensive_step"]["id"], "r1-2");
    assert_eq!(d["most_expensive_step"]["calls"], 3);
    assert_eq!(dec_of(&d["most_expensive_step"]["cost"]), dec!(0.42));

    // A task id (no run has it as run_id) shows every run of the task; a trace id, its calls.
    let task = srv.get_ok("/api/v1/runs/tk1").await;
    assert_eq!(task["run"]["matched_by"], "task_id");
    assert_eq!(task["totals"]["calls"], 6);
    let trace = srv.get_ok("/api/v1/runs/tr9").await;
    assert_eq!(trace["run"]["matched_by"], "trace_id");
    assert_eq!(trace["run"]["state"], "unknown");

    let (status, body) = srv.get("/api/v1/runs/no-such-run").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    bad_request(&srv, "/api/v1/runs?group_by=feature", "group_by").await;
    bad_request(&srv, "/api/v1/runs?order=colour", "colour").await;
    bad_request(&srv, "/api/v1/runs?offset=-1", "offset").await;
    bad_request(&srv, "/api/v1/runs/r1?feature=x", "feature").await;

    // The same run id in two projects: an all-projects key must choose.
    ingest(
        &srv,
        json!([
            {"model": "m", "run_id": "shared", "project": "a", "cost": "1"},
            {"model": "m", "run_id": "shared", "project": "b", "cost": "2"},
        ]),
    )
    .await;
    bad_request(&srv, "/api/v1/runs/shared", "project").await;
    let b = srv.get_ok("/api/v1/runs/shared?project=b").await;
    assert_eq!(dec_of(&b["totals"]["cost"]), dec!(2));
    srv.stop().await;
}

// -------------------------------------------------------------------------------------------
// Routes
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn routes_latency_errors_effective_prices_and_markup_by_hand() {
    let srv = start().await;
    let usage = json!({"input_tokens": 1000, "output_tokens": 100});
    // gpt-4o-mini lists at 0.15 / 0.6 per million: 1000 in + 100 out = 0.00021.
    // OpenRouter reports list price plus 5.5 %: 0.00022155.
    ingest(
        &srv,
        json!([
            {"model": "gpt-4o-mini", "provider": "openai", "usage": usage, "latency_ms": 100, "ttft_ms": 40},
            {"model": "gpt-4o-mini", "provider": "openai", "usage": usage, "latency_ms": 200, "ttft_ms": 50},
            {"model": "gpt-4o-mini", "provider": "openai", "usage": usage, "latency_ms": 300, "ttft_ms": 60},
            {"model": "openai/gpt-4o-mini", "provider": "openrouter", "route": "openrouter", "usage": usage,
             "cost": "0.00022155", "latency_ms": 400},
            {"model": "openai/gpt-4o-mini", "provider": "openrouter", "route": "openrouter", "usage": usage,
             "cost": "0.00022155", "latency_ms": 600},
            {"model": "openai/gpt-4o-mini", "provider": "openrouter", "route": "openrouter",
             "status": "error", "error_type": "rate_limit", "http_status": 429, "latency_ms": 50},
            {"model": "openai/gpt-4o-mini", "provider": "openrouter", "route": "openrouter",
             "status": "error", "http_status": 502, "latency_ms": 50},
        ]),
    )
    .await;
    let a = srv.get_ok("/api/v1/routes?group_by=model").await;
    assert_eq!(a["group_by"], json!(["route", "model"]));
    let direct = row(&a, "route", "direct");
    assert_eq!(direct["requests"], 3);
    assert_eq!(direct["errors"], 0);
    assert_eq!(dec_of(&direct["error_rate"]), dec!(0));
    // quantile_cont over 100, 200, 300: 200; 100 + 1.9 × 100; 100 + 1.98 × 100.
    assert_eq!(direct["latency_ms_p50"].as_f64(), Some(200.0));
    assert_eq!(direct["latency_ms_p95"].as_f64(), Some(290.0));
    assert_eq!(direct["latency_ms_p99"].as_f64(), Some(298.0));
    assert_eq!(direct["ttft_ms_p50"].as_f64(), Some(50.0));
    assert_eq!(dec_of(&direct["effective_input_price_mtok"]), dec!(0.15));
    assert_eq!(dec_of(&direct["effective_output_price_mtok"]), dec!(0.6));
    assert_eq!(direct["markup_pct"], Value::Null);

    let or = row(&a, "route", "openrouter");
    assert_eq!((&or["requests"], &or["errors"]), (&json!(4), &json!(2)));
    assert_eq!(dec_of(&or["error_rate"]), dec!(0.5));
    let types: Vec<(Value, u64)> = or["error_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["error_type"].clone(), t["errors"].as_u64().unwrap()))
        .collect();
    assert_eq!(types, vec![(json!("rate_limit"), 1), (Value::Null, 1)]);
    assert_eq!(dec_of(&or["effective_input_price_mtok"]), dec!(0.15825));
    assert_eq!(dec_of(&or["effective_output_price_mtok"]), dec!(0.633));
    assert_eq!(or["split_requests"], 2);
    assert_eq!(or["compared_requests"], 2);
    assert_eq!(dec_of(&or["reported_cost"]), dec!(0.0004431));
    assert_eq!(dec_of(&or["list_cost"]), dec!(0.00042));
    assert_eq!(dec_of(&or["markup_pct"]), dec!(5.5));

    // Requests and cost per route agree with /api/v1/costs.
    let costs = srv.get_ok("/api/v1/costs?group_by=route").await;
    for r in costs["rows"].as_array().unwrap() {
        let route = r["route"].as_str().unwrap();
        let ours: Vec<&Value> = a["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["route"] == route)
            .collect();
        let requests: i64 = ours.iter().map(|x| x["requests"].as_i64().unwrap()).sum();
        let cost: Decimal = ours.iter().map(|x| dec_of(&x["cost"])).sum();
        assert_eq!(requests, r["requests"].as_i64().unwrap(), "{route}");
        assert_eq!(cost, dec_of(&r["cost"]), "{route}");
    }
    bad_request(&srv, "/api/v1/routes?interval=day", "interval").await;
    bad_request(&srv, "/api/v1/routes?group_by=colour", "colour").await;
    srv.stop().await;
}

// -------------------------------------------------------------------------------------------
// What-if and re-pricing
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn whatif_on_another_model_and_a_custom_price_list_by_hand() {
    let srv = start().await;
    let usage = json!({"input_tokens": 10000, "cache_read_tokens": 2000, "output_tokens": 1000});
    ingest(
        &srv,
        json!([
            {"timestamp": "2026-11-02T10:00:00Z", "model": "gpt-4o", "provider": "openai", "usage": usage, "feature": "a"},
            {"timestamp": "2026-11-03T10:00:00Z", "model": "gpt-4o", "provider": "openai", "usage": usage, "feature": "b"},
            // A gateway reported this one; today's list price is still the baseline.
            {"timestamp": "2026-11-03T11:00:00Z", "model": "gpt-4o", "provider": "openai", "usage": usage, "feature": "b",
             "route": "litellm", "cost": "0.05"},
            {"timestamp": "2026-11-03T12:00:00Z", "model": "mystery-model", "provider": "vllm", "usage": usage, "feature": "b"},
        ]),
    )
    .await;
    // gpt-4o: 8000 × 2.5 + 2000 × 1.25 + 1000 × 10 per million = 0.0325 a call.
    // claude-sonnet-4-5: 8000 × 3 + 2000 × 0.3 + 1000 × 15 per million = 0.0396 a call.
    let a = srv
        .get_ok(
            "/api/v1/whatif?model=gpt-4o&as_model=claude-sonnet-4-5&group_by=feature&order=feature",
        )
        .await;
    let t = &a["total"];
    assert_eq!(t["requests"], 3);
    assert_eq!(t["remapped_requests"], 3);
    assert_eq!(dec_of(&t["cost"]), dec!(0.0325) * dec!(2) + dec!(0.05));
    assert_eq!(dec_of(&t["baseline_cost"]), dec!(0.0975));
    assert_eq!(dec_of(&t["whatif_cost"]), dec!(0.1188));
    assert_eq!(dec_of(&t["difference"]), dec!(0.0213));
    // 0.0213 × 100 / 0.0975 = 21.846153846153…
    assert_eq!(dec_of(&t["difference_pct"]), dec!(21.846153846154));
    assert_eq!(
        dec_of(&row(&a, "feature", "a")["whatif_cost"]),
        dec!(0.0396)
    );
    assert_eq!(
        dec_of(&row(&a, "feature", "b")["whatif_cost"]),
        dec!(0.0792)
    );
    // `cost` is what /api/v1/costs counts for the same filter.
    let costs = srv.get_ok("/api/v1/costs?model=gpt-4o").await;
    assert_eq!(dec_of(&t["cost"]), dec_of(&costs["total"]["cost"]));

    // Unpriced on one side: counted, and no difference is claimed.
    let all = srv
        .get_ok("/api/v1/whatif?as_model=claude-sonnet-4-5")
        .await;
    assert_eq!(all["total"]["baseline_unpriced_requests"], 1);
    assert_eq!(all["total"]["whatif_unpriced_requests"], 0);
    assert_eq!(all["total"]["difference"], Value::Null);

    // A custom price list in a POST body: sonnet at 1 in / 5 out (cache reads fall back to the
    // input rate): 10000 × 1 + 1000 × 5 per million = 0.015 a call.
    let (status, b) = post(
        &srv,
        "/api/v1/whatif?model=gpt-4o",
        &json!({
            "map": [{"from": "gpt-4o*", "to": "claude-sonnet-4-5", "provider": "anthropic"}],
            "custom": [{"model": "claude-sonnet-4-5", "input_mtok": "1", "output_mtok": "5"}],
        }),
    )
    .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(dec_of(&b["total"]["whatif_cost"]), dec!(0.045));
    // A discount alone, no mapping: the same models at 80 %.
    let (status, c) = post(
        &srv,
        "/api/v1/whatif?model=gpt-4o",
        &json!({"discounts": [{"provider": "openai", "multiplier": "0.8"}]}),
    )
    .await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(dec_of(&c["total"]["whatif_cost"]), dec!(0.078));
    assert_eq!(c["total"]["remapped_requests"], 0);

    bad_request(&srv, "/api/v1/whatif?model=gpt-4o", "as_model").await;
    bad_request(&srv, "/api/v1/whatif?as_provider=anthropic", "as_provider").await;
    bad_request(&srv, "/api/v1/whatif?as_model=x&order=colour", "colour").await;
    let (status, e) = post(&srv, "/api/v1/whatif", &json!({"mapp": []})).await;
    assert_eq!(status, 400, "{e}");
    let (status, e) = post(
        &srv,
        "/api/v1/whatif",
        &json!({"custom": [{"model": "", "input_mtok": "1"}]}),
    )
    .await;
    assert_eq!(status, 400, "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("custom"),
        "{e}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn reprice_shows_a_diff_then_writes_it_when_asked() {
    const ADMIN: &str = "bootstrap-admin-key-0123456789";
    let mut srv = start_with(|c| c.admin_key = Some(ADMIN.into())).await;
    let usage = json!({"input_tokens": 1000000, "output_tokens": 100000});
    ingest(
        &srv,
        json!([
            // gpt-4o: 2.5 + 0.1 × 10 = 3.5 at list price.
            {"id": "a", "timestamp": "2026-11-02T10:00:00Z", "model": "gpt-4o", "provider": "openai", "usage": usage},
            {"id": "b", "timestamp": "2026-11-02T11:00:00Z", "model": "gpt-4o", "provider": "openai", "usage": usage, "cost": "3"},
            {"id": "c", "timestamp": "2026-11-02T12:00:00Z", "model": "mystery-model", "provider": "vllm", "usage": usage},
        ]),
    )
    .await;
    let before = srv.get_ok("/api/v1/costs").await;
    assert_eq!(dec_of(&before["total"]["cost"]), dec!(6.5));
    let nothing = srv.get_ok("/api/v1/reprice").await;
    assert_eq!(nothing["total"]["changed"], 0, "{nothing}");

    // The operator now has prices: gpt-4o at 2 / 8, and the self-hosted model at 1 / 1.
    srv.restart_with_pricing(
        ADMIN,
        r#"
        [[custom]]
        model = "gpt-4o"
        input_mtok = "2"
        output_mtok = "8"
        [[custom]]
        model = "mystery-model"
        input_mtok = "1"
        output_mtok = "1"
        "#,
    )
    .await;

    let dry = srv
        .get_ok("/api/v1/reprice?group_by=model&order=model")
        .await;
    assert_eq!(dry["dry_run"], true);
    // a: 3.5 (computed) → 2 + 0.8 = 2.8 (custom); b: reported 3 stays, its custom cost is
    // new; c: unpriced → 1 + 0.1 = 1.1.
    assert_eq!(dry["total"]["events"], 3);
    assert_eq!(dry["total"]["changed"], 3);
    assert_eq!(dec_of(&dry["total"]["cost_before"]), dec!(6.5));
    assert_eq!(dec_of(&dry["total"]["cost_after"]), dec!(6.9));
    assert_eq!(dry["total"]["unpriced_before"], 1);
    assert_eq!(dry["total"]["unpriced_after"], 0);
    let changes: BTreeMap<&str, (&Value, &Value)> = dry["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].as_str().unwrap(), (&c["before"], &c["after"])))
        .collect();
    assert_eq!(changes["a"].1["cost_source"], "custom");
    assert_eq!(dec_of(&changes["a"].1["cost"]), dec!(2.8));
    assert_eq!(changes["b"].1["cost_source"], "reported");
    assert_eq!(dec_of(&changes["b"].1["custom_cost"]), dec!(2.8));
    assert_eq!(changes["c"].0["cost_source"], "unpriced");
    assert_eq!(dec_of(&changes["c"].1["cost"]), dec!(1.1));
    // Nothing was written by the dry run.
    let still = srv.get_ok("/api/v1/costs").await;
    assert_eq!(dec_of(&still["total"]["cost"]), dec!(6.5));

    bad_request(&srv, "/api/v1/reprice?apply=true", "apply").await;
    bad_request(&srv, "/api/v1/reprice?apply=maybe", "apply").await;
    let (status, applied) = post(&srv, "/api/v1/reprice?apply=true", &json!({})).await;
    assert_eq!(status, 200, "{applied}");
    assert_eq!(applied["applied"], true);
    assert_eq!(applied["total"]["changed"], 3);
    let after = srv
        .get_ok("/api/v1/costs?group_by=cost_source&order=cost_source")
        .await;
    assert_eq!(dec_of(&after["total"]["cost"]), dec!(6.9));
    assert_eq!(after["total"]["unpriced_requests"], 0);
    let again = srv.get_ok("/api/v1/reprice").await;
    assert_eq!(again["total"]["changed"], 0, "{again}");
    srv.stop().await;
}

/// Applying a range cut mid-hour, with events on hour boundaries, a microsecond before one and
/// an empty hour between, changes exactly the events inside it (`from` inclusive, `to` not),
/// and the hourly rollups it rebuilds answer what the events now hold.
#[tokio::test]
async fn reprice_applies_exactly_the_range_asked_for() {
    const ADMIN: &str = "bootstrap-admin-key-0123456789";
    let mut srv = start_with(|c| c.admin_key = Some(ADMIN.into())).await;
    let usage = json!({"input_tokens": 1000000, "output_tokens": 100000});
    let at = [
        "09:59:59",
        "10:30:00",
        "10:59:59.999999",
        "11:00:00",
        "13:00:00",
        "13:30:00",
    ];
    let events: Vec<Value> = at
        .iter()
        .map(|t| json!({"timestamp": format!("2026-11-02T{t}Z"), "model": "gpt-4o", "provider": "openai", "usage": usage}))
        .collect();
    ingest(&srv, Value::Array(events)).await;
    srv.restart_with_pricing(
        ADMIN,
        r#"
        [[custom]]
        model = "gpt-4o"
        input_mtok = "2"
        output_mtok = "8"
        "#,
    )
    .await;
    // 10:30, 10:59:59.999999 and 11:00 are inside; 09:59:59, 13:00 and 13:30 are not.
    let (status, applied) = post(
        &srv,
        "/api/v1/reprice?apply=true&from=2026-11-02T10:15:00Z&to=2026-11-02T13:00:00Z",
        &json!({}),
    )
    .await;
    assert_eq!(status, 200, "{applied}");
    assert_eq!(applied["total"]["events"], 3, "{applied}");
    assert_eq!(applied["total"]["changed"], 3, "{applied}");
    // Each event costs 2.5 + 1.0 = 3.5 at list price, 2 + 0.8 = 2.8 at the custom one.
    let costs = srv.get_ok("/api/v1/costs").await;
    assert_eq!(
        dec_of(&costs["total"]["cost"]),
        dec!(3.5) * dec!(3) + dec!(2.8) * dec!(3)
    );
    let by_hour = srv
        .get_ok("/api/v1/costs?interval=hour&from=2026-11-02T09:00:00Z&to=2026-11-02T14:00:00Z")
        .await;
    let hours: BTreeMap<&str, Decimal> = by_hour["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["bucket"].as_str().unwrap(), dec_of(&p["cost"])))
        .filter(|(_, c)| !c.is_zero())
        .collect();
    let expected = BTreeMap::from([
        ("2026-11-02T09:00:00Z", dec!(3.5)),
        ("2026-11-02T10:00:00Z", dec!(2.8) * dec!(2)),
        ("2026-11-02T11:00:00Z", dec!(2.8)),
        ("2026-11-02T13:00:00Z", dec!(3.5) * dec!(2)),
    ]);
    assert_eq!(hours, expected, "{by_hour}");
    // What is left to change is exactly what was outside.
    let rest = srv.get_ok("/api/v1/reprice").await;
    assert_eq!(rest["total"]["changed"], 3, "{rest}");
    srv.stop().await;
}

// -------------------------------------------------------------------------------------------
// Unpriced and anomalies
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn unpriced_models_are_listed_with_their_reasons() {
    let srv = start().await;
    let usage = json!({"input_tokens": 500, "output_tokens": 50});
    ingest(
        &srv,
        json!([
            {"timestamp": "2026-11-02T10:00:00Z", "model": "mystery-model", "provider": "vllm", "usage": usage},
            {"timestamp": "2026-11-03T10:00:00Z", "model": "mystery-model", "provider": "vllm", "usage": usage},
            {"timestamp": "2026-11-03T11:00:00Z", "model": "house-model", "provider": "vllm", "usage": usage, "cost": "0.5"},
            {"timestamp": "2026-11-03T12:00:00Z", "model": "gpt-4o-mini", "provider": "openai", "usage": usage, "service_tier": "priority"},
            {"timestamp": "2026-11-03T13:00:00Z", "model": "gpt-4o", "provider": "openai", "usage": usage},
        ]),
    )
    .await;
    let a = srv.get_ok("/api/v1/unpriced").await;
    let rows = a["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{a}");
    let m = row(&a, "model", "mystery-model");
    assert_eq!(
        (&m["requests"], &m["uncosted_requests"]),
        (&json!(2), &json!(2))
    );
    assert_eq!(
        (&m["input_tokens"], &m["output_tokens"]),
        (&json!(1000), &json!(100))
    );
    assert!(m["reason"].as_str().unwrap().contains("mystery-model"));
    assert_eq!(m["first_seen"], "2026-11-02T10:00:00Z");
    let h = row(&a, "model", "house-model");
    assert_eq!(
        (&h["requests"], &h["uncosted_requests"]),
        (&json!(1), &json!(0))
    );
    assert_eq!(dec_of(&h["reported_cost"]), dec!(0.5));
    let p = row(&a, "model", "gpt-4o-mini");
    assert!(p["reason"].as_str().unwrap().contains("priority"), "{p}");
    assert_eq!(a["total"]["uncosted_requests"], 3);
    assert_eq!(a["total"]["requests_in_scope"], 5);
    // The uncosted requests are exactly /api/v1/costs' unpriced ones.
    let costs = srv.get_ok("/api/v1/costs").await;
    assert_eq!(costs["total"]["unpriced_requests"], 3);
    let later = srv.get_ok("/api/v1/unpriced?from=2026-11-03").await;
    assert_eq!(row(&later, "model", "mystery-model")["requests"], 1);
    bad_request(&srv, "/api/v1/unpriced?group_by=model", "group_by").await;
    bad_request(&srv, "/api/v1/unpriced?order=requests", "order").await;
    srv.stop().await;
}

#[tokio::test]
async fn anomalies_find_a_planted_jump_and_nothing_else() {
    let srv = start().await;
    let day0 = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap();
    let mut events = Vec::new();
    for d in 0..20 {
        let t = day0 + Duration::days(d) + Duration::hours(12);
        // Feature a spends 10 a day, 50 on day 17; feature b spends 5 every day.
        let a = if d == 17 { "50" } else { "10" };
        events.push(
            json!({"timestamp": ts(t), "model": "m", "feature": "a", "user_id": "u1", "cost": a}),
        );
        events.push(
            json!({"timestamp": ts(t), "model": "m", "feature": "b", "user_id": "u2", "cost": "5"}),
        );
    }
    ingest(&srv, Value::Array(events)).await;
    let a = srv
        .get_ok("/api/v1/anomalies?from=2026-10-01&to=2026-10-21&dimensions=feature,user_id")
        .await;
    let found: Vec<(&str, &str, &str)> = a["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["day"].as_str().unwrap(),
                x["dimension"].as_str().unwrap(),
                x["value"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        found,
        vec![
            ("2026-10-18", "feature", "a"),
            ("2026-10-18", "user_id", "u1")
        ]
    );
    // Baseline: 14 days of 10 → median 10, MAD 0, floor 10 % of 10 = 1: threshold 15.
    let x = &a["anomalies"][0];
    assert_eq!(dec_of(&x["spend"]), dec!(50));
    assert_eq!(dec_of(&x["baseline_median"]), dec!(10));
    assert_eq!(dec_of(&x["baseline_mad"]), dec!(0));
    assert_eq!(dec_of(&x["threshold"]), dec!(15));
    assert_eq!(dec_of(&x["score"]), dec!(40));
    let day = srv
        .get_ok("/api/v1/costs?feature=a&from=2026-10-18&to=2026-10-18")
        .await;
    assert_eq!(dec_of(&x["spend"]), dec_of(&day["total"]["cost"]));
    // A looser rule: k large enough that 50 is within it.
    let none = srv
        .get_ok("/api/v1/anomalies?from=2026-10-01&to=2026-10-21&dimensions=feature&k=41")
        .await;
    assert_eq!(none["anomalies"], json!([]));
    // A spend floor above the jump hides it too.
    let none = srv
        .get_ok("/api/v1/anomalies?from=2026-10-01&to=2026-10-21&dimensions=feature&min_spend=60")
        .await;
    assert_eq!(none["anomalies"], json!([]));
    for (path, param) in [
        ("/api/v1/anomalies?window=1", "window"),
        ("/api/v1/anomalies?k=abc", "k"),
        ("/api/v1/anomalies?min_spend=-1", "min_spend"),
        ("/api/v1/anomalies?dimensions=colour", "colour"),
        ("/api/v1/anomalies?group_by=feature", "group_by"),
    ] {
        bad_request(&srv, path, param).await;
    }
    srv.stop().await;
}

// -------------------------------------------------------------------------------------------
// The demo data: the issue's "done when"
// -------------------------------------------------------------------------------------------

/// One stored call, read straight from the database file.
struct RawCall {
    project: String,
    task: Option<String>,
    ts: i64,
    feature: Option<String>,
    cost: Option<Decimal>,
}

/// Prices from `third_party/genai-prices/data.json`, read as exact text.
fn catalog_prices(provider: &str, model: &str) -> HashMap<String, (Decimal, Vec<(u64, Decimal)>)> {
    // Relative: cargo runs tests in the package root.
    let path = "third_party/genai-prices/data.json";
    let data: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let m = data
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == provider)
        .unwrap()["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == model)
        .unwrap()
        .clone();
    let num = |v: &Value| Decimal::from_str(&v.to_string()).unwrap();
    m["prices"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let (base, tiers) = if v.is_object() {
                let tiers = v["tiers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| (t["start"].as_u64().unwrap(), num(&t["price"])))
                    .collect();
                (num(&v["base"]), tiers)
            } else {
                (num(v), Vec::new())
            };
            (k.clone(), (base, tiers))
        })
        .collect()
}

#[tokio::test]
async fn on_the_demo_data() {
    let srv = start().await;
    let pricer = tally::pricing::Pricer::builtin(&Default::default()).unwrap();
    let cfg = tally::demo::DemoConfig {
        scale: 0.5,
        ..tally::demo::DemoConfig::default()
    };
    let loaded = tally::demo::load::load(srv.server.as_ref().unwrap().store(), &pricer, &cfg)
        .await
        .unwrap();
    assert_eq!(loaded.rejected, 0);
    let generated = tally::demo::generate(&cfg);
    assert_eq!(loaded.outcomes, generated.outcomes.len());

    // Cost per successful task per feature, over the middle of the month.
    let from = cfg.end - Duration::days(20);
    let to = cfg.end - Duration::days(5);
    let (from_s, to_s) = (ts(from), ts(to));
    let tasks = srv
        .get_ok(&format!(
            "/api/v1/tasks?group_by=feature&from={}&to={}",
            from_s.replace('+', "%2B"),
            to_s.replace('+', "%2B")
        ))
        .await;

    // A run's tree: a run with both retries and fallbacks.
    let runs = srv.get_ok("/api/v1/runs?limit=100&order=fallbacks").await;
    let run_id = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["retries"].as_i64() > Some(0) && r["agent"].is_string())
        .expect("an agent run with retries and fallbacks")["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let tree = srv.get_ok(&format!("/api/v1/runs/{run_id}")).await;

    // What-if: this month's gpt-4o traffic (standard tier) on Claude Sonnet 4.5.
    let month = Utc
        .with_ymd_and_hms(cfg.end.year(), cfg.end.month(), 1, 0, 0, 0)
        .unwrap();
    let whatif = srv
        .get_ok(&format!(
            "/api/v1/whatif?from={}&model=gpt-4o-2024-08-06&service_tier=standard&as_model=claude-sonnet-4-5",
            month.format("%Y-%m-%d")
        ))
        .await;
    let costs_gpt4o = srv
        .get_ok(&format!(
            "/api/v1/costs?from={}&model=gpt-4o-2024-08-06&service_tier=standard",
            month.format("%Y-%m-%d")
        ))
        .await;
    let anomalies = srv.get_ok("/api/v1/anomalies?dimensions=feature").await;

    let dir = srv.stop().await;
    let conn = duckdb::Connection::open(dir.path().join("tally.duckdb")).unwrap();

    // --- tasks, recomputed from the raw rows and the generated outcomes ---
    let mut stmt = conn
        .prepare(
            "SELECT project, coalesce(task_id, run_id, trace_id), epoch_us(ts), feature, cost::VARCHAR FROM events",
        )
        .unwrap();
    let calls: Vec<RawCall> = stmt
        .query_map([], |r| {
            Ok(RawCall {
                project: r.get(0)?,
                task: r.get(1)?,
                ts: r.get(2)?,
                feature: r.get(3)?,
                cost: r.get::<_, Option<String>>(4)?.map(|c| c.parse().unwrap()),
            })
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    // Per task: first call time, its feature, and the cost of every call.
    let mut per_task: HashMap<(String, String), (i64, Option<String>, Decimal)> = HashMap::new();
    for c in &calls {
        let Some(task) = &c.task else { continue };
        let e = per_task
            .entry((c.project.clone(), task.clone()))
            .or_insert((i64::MAX, None, Decimal::ZERO));
        if c.ts < e.0 {
            e.0 = c.ts;
            e.1 = c.feature.clone();
        }
        e.2 += c.cost.unwrap_or_default();
    }
    // The demo reports at most one outcome per task; its task ids are unique across projects.
    let outcome_of: HashMap<&str, &str> = generated
        .outcomes
        .iter()
        .map(|o| {
            (
                o["task_id"].as_str().unwrap(),
                o["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    let (lo, hi) = (from.timestamp_micros(), to.timestamp_micros());
    let mut expected: BTreeMap<String, (i64, i64, Decimal)> = BTreeMap::new();
    for ((_, task), (first, feature, cost)) in &per_task {
        if *first < lo || *first >= hi {
            continue;
        }
        let e = expected
            .entry(feature.clone().unwrap_or_default())
            .or_default();
        e.0 += 1;
        e.1 += i64::from(outcome_of.get(task.as_str()) == Some(&"success"));
        e.2 += cost;
    }
    assert_eq!(expected.len(), 8, "every demo feature has tasks");
    let rows = tasks["rows"].as_array().unwrap();
    assert_eq!(rows.len(), expected.len());
    for (feature, (n, successful, cost)) in &expected {
        let r = row(&tasks, "feature", feature);
        assert_eq!(r["tasks"].as_i64().unwrap(), *n, "{feature}: tasks");
        assert_eq!(
            r["successful"].as_i64().unwrap(),
            *successful,
            "{feature}: denominator"
        );
        assert_eq!(dec_of(&r["cost"]), *cost, "{feature}: numerator");
        assert_eq!(
            dec_of(&r["cost_per_successful_task"]),
            q12(cost / Decimal::from(*successful)),
            "{feature}: cost per successful task"
        );
        assert!(
            r["successful"].as_i64().unwrap() < *n,
            "{feature}: some tasks fail"
        );
    }

    // --- the run's tree shows its retries and fallbacks ---
    let tree_calls = tree["calls"].as_array().unwrap();
    let stored: i64 = conn
        .query_row(
            "SELECT count(*) FROM events WHERE run_id = ?",
            [&run_id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tree_calls.len() as i64, stored, "every call of {run_id}");
    assert_eq!(tree["run"]["matched_by"], "run_id");
    let links = |kind: &str| tree_calls.iter().filter(|c| c["link"] == kind).count();
    assert!(
        links("fallback") >= 1 && links("retry") >= 1 && links("child") >= 1,
        "{tree}"
    );
    for c in tree_calls {
        for (field, link) in [("retry_of", "retry"), ("fallback_from", "fallback")] {
            if let Some(target) = c[field].as_str() {
                assert_eq!(c["link"], link, "{c}");
                assert_eq!(c["parent"], target, "{c}");
            }
        }
    }
    let stored_cost: String = conn
        .query_row(
            "SELECT sum(cost)::VARCHAR FROM events WHERE run_id = ?",
            [&run_id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        dec_of(&tree["totals"]["cost"]),
        stored_cost.parse::<Decimal>().unwrap()
    );

    // --- what-if equals a recomputation from the catalog ---
    let sonnet = catalog_prices("anthropic", "claude-sonnet-4-5");
    let mut stmt = conn
        .prepare(
            "SELECT input_uncached, cache_read, cache_write_5m, cache_write_1h, output, audio_in, \
             image_in, audio_out, image_out, web_search_requests FROM events \
             WHERE model = 'gpt-4o-2024-08-06' AND service_tier = 'standard' AND ts >= ?::TIMESTAMPTZ",
        )
        .unwrap();
    let rows: Vec<[u64; 10]> = stmt
        .query_map([month.to_rfc3339()], |r| {
            let mut v = [0u64; 10];
            for (i, slot) in v.iter_mut().enumerate() {
                *slot = r.get::<_, i64>(i)? as u64;
            }
            Ok(v)
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(rows.len() > 100, "this month has gpt-4o traffic");
    let mut total = Decimal::ZERO;
    for [uncached, cr, cw5, cw1h, out, ain, iin, aout, iout, web] in rows {
        let input_total = uncached + cr + cw5 + cw1h + ain + iin;
        // The catalog's tiers are cliffs on total input tokens.
        let rate = |key: &str| {
            let (base, tiers) = &sonnet[key];
            tiers
                .iter()
                .filter(|(start, _)| input_total > *start)
                .map(|(_, p)| *p)
                .next_back()
                .unwrap_or(*base)
        };
        let tokens = Decimal::from(uncached + ain + iin) * rate("input_mtok")
            + Decimal::from(cr) * rate("cache_read_mtok")
            + Decimal::from(cw5) * rate("cache_write_mtok")
            + Decimal::from(cw1h) * rate("cache_write_1h_mtok")
            + Decimal::from(out + aout + iout) * rate("output_mtok");
        let cost = tokens / dec!(1000000)
            + Decimal::from(web) * sonnet["web_searches_kcount"].0 / dec!(1000);
        total += cost.round_dp_with_strategy(12, RoundingStrategy::MidpointNearestEven);
    }
    assert_eq!(dec_of(&whatif["total"]["whatif_cost"]), total);
    assert_eq!(whatif["total"]["whatif_unpriced_requests"], 0);
    assert_eq!(
        dec_of(&whatif["total"]["cost"]),
        dec_of(&costs_gpt4o["total"]["cost"])
    );
    assert_eq!(
        whatif["total"]["requests"],
        costs_gpt4o["total"]["requests"]
    );

    // --- the planted runaway loop is the day code-review spend jumps ---
    let runaway_start: i64 = conn
        .query_row(
            "SELECT epoch_us(min(ts)) FROM events WHERE run_id IN \
             (SELECT run_id FROM events WHERE run_id IS NOT NULL GROUP BY run_id HAVING count(*) >= 200)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let runaway_day = DateTime::from_timestamp_micros(runaway_start)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string();
    let flagged: Vec<(&str, &str)> = anomalies["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["day"].as_str().unwrap(), a["value"].as_str().unwrap()))
        .collect();
    assert!(
        flagged.contains(&(runaway_day.as_str(), "code-review")),
        "runaway day {runaway_day} not among {flagged:?}"
    );
}
