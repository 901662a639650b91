//! Materialised tasks and runs through a real server: `/api/v1/tasks` and `/api/v1/runs` (which
//! read the unit tables the writer maintains) stay exact when a unit's calls arrive over several
//! requests, out of order and days apart, when its outcome comes before its calls or is replaced,
//! when a retry arrives before the call it retries, when gap-fill changes a call's attribution,
//! and when re-pricing changes its cost. Expected numbers are computed here from the events and
//! outcomes sent, never with Tally's own code.

#[macro_use]
mod common;

use chrono::{DateTime, Utc};
use common::{start, start_with, TestServer};
use rust_decimal::Decimal;
use serde_json::{json, Value};

fn dec_of(v: &Value) -> Decimal {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a decimal string, got {v}"))
        .parse()
        .unwrap()
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

async fn ingest(srv: &TestServer, events: &[Value]) -> Value {
    let (status, answer) = srv.ingest_json(&Value::Array(events.to_vec())).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

async fn post_outcome(srv: &TestServer, outcome: Value) {
    let resp = srv
        .client
        .post(srv.url("/v1/outcomes"))
        .json(&outcome)
        .bearer_auth(srv.key.as_deref().unwrap_or_default())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
}

/// What the events sent say about one unit: the sum of their costs, their number, and the
/// earliest call (the unit's first).
struct Expected<'a> {
    cost: Decimal,
    calls: i64,
    first: &'a Value,
}

fn expected<'a>(calls: &[&'a Value]) -> Expected<'a> {
    let first = calls
        .iter()
        .min_by_key(|e| time(&e["timestamp"]))
        .expect("a unit has calls");
    Expected {
        cost: calls.iter().map(|e| dec_of(&e["cost"])).sum(),
        calls: calls.len() as i64,
        first,
    }
}

/// The row of `/api/v1/tasks?{query}` whose `key` is `value` (JSON, so `null` works too).
async fn task_row(srv: &TestServer, query: &str, key: &str, value: Value) -> Value {
    let answer = srv.get_ok(&format!("/api/v1/tasks?{query}")).await;
    let rows = answer["rows"].as_array().unwrap();
    rows.iter()
        .find(|r| r[key] == value)
        .unwrap_or_else(|| panic!("no row with {key}={value} in {answer}"))
        .clone()
}

/// The run `id` of the run list, if listed.
async fn run(srv: &TestServer, id: &str) -> Option<Value> {
    let list = srv.get_ok("/api/v1/runs?limit=1000").await;
    list["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["run_id"] == id)
        .cloned()
}

#[tokio::test]
async fn a_task_whose_calls_arrive_over_several_requests_out_of_order_and_days_later() {
    let srv = start().await;
    let a = json!({"id": "s-a", "timestamp": "2025-03-10T10:00:00Z", "model": "m-first", "task_id": "S",
                   "feature": "search", "cost": "0.10", "latency_ms": 400});
    let b = json!({"id": "s-b", "timestamp": "2025-03-10T10:05:00Z", "model": "m-second", "task_id": "S",
                   "feature": "chat", "cost": "0.20", "latency_ms": 1500});
    let c = json!({"id": "s-c", "timestamp": "2025-03-13T08:00:00Z", "model": "m-second", "task_id": "S",
                   "feature": "chat", "cost": "0.30", "latency_ms": 2000});
    // Another task in the same requests, so the recomputation must keep them apart.
    let other = json!({"id": "o-a", "timestamp": "2025-03-10T10:02:00Z", "model": "m-first",
                       "task_id": "OTHER", "feature": "chat", "cost": "7"});

    // The middle call first: for now it is the task's first call.
    ingest(&srv, &[b.clone(), other.clone()]).await;
    let e = expected(&[&b]);
    let row = task_row(
        &srv,
        "group_by=feature",
        "feature",
        e.first["feature"].clone(),
    )
    .await;
    assert_eq!(row["tasks"], 2, "S and OTHER are both chat for now: {row}");
    assert_eq!(dec_of(&row["cost"]), e.cost + dec_of(&other["cost"]));
    let s = run(&srv, "S").await.expect("run S");
    assert_eq!(time(&s["started"]), time(&b["timestamp"]));
    assert_eq!(s["model"], b["model"]);

    // An earlier call arrives: it becomes the first, and the task moves to its feature.
    ingest(&srv, std::slice::from_ref(&a)).await;
    let e = expected(&[&a, &b]);
    let row = task_row(
        &srv,
        "group_by=feature",
        "feature",
        e.first["feature"].clone(),
    )
    .await;
    assert_eq!((&row["tasks"], &row["calls"]), (&json!(1), &json!(e.calls)));
    assert_eq!(dec_of(&row["cost"]), e.cost);
    let chat = task_row(&srv, "group_by=feature", "feature", json!("chat")).await;
    assert_eq!(chat["tasks"], 1, "only OTHER is left in chat: {chat}");
    let s = run(&srv, "S").await.unwrap();
    assert_eq!(time(&s["started"]), time(&a["timestamp"]));
    assert_eq!(s["model"], a["model"]);

    // A call three days later still belongs to the task, and to its first call's day.
    ingest(&srv, std::slice::from_ref(&c)).await;
    let e = expected(&[&a, &b, &c]);
    let day = "from=2025-03-10&to=2025-03-11&task_id=S";
    let total = srv.get_ok(&format!("/api/v1/tasks?{day}")).await["total"].clone();
    assert_eq!(
        (&total["tasks"], &total["calls"]),
        (&json!(1), &json!(e.calls))
    );
    assert_eq!(dec_of(&total["cost"]), e.cost);
    assert_eq!(total["unknown"], 1, "no outcome, long ago: {total}");
    let later = srv
        .get_ok("/api/v1/tasks?from=2025-03-13&to=2025-03-14&task_id=S")
        .await;
    assert_eq!(
        later["total"]["tasks"], 0,
        "its first call is not in that day"
    );
    let s = run(&srv, "S").await.unwrap();
    assert_eq!(
        (&s["calls"], &s["id_kind"]),
        (&json!(e.calls), &json!("task_id"))
    );
    assert_eq!(dec_of(&s["cost"]), e.cost);
    // From the first call's start to the end of the last one to finish.
    let end = time(&c["timestamp"]) + chrono::Duration::milliseconds(2000);
    assert_eq!(
        s["duration_ms"],
        (end - time(&a["timestamp"])).num_milliseconds()
    );
    let o = run(&srv, "OTHER").await.unwrap();
    assert_eq!(dec_of(&o["cost"]), dec_of(&other["cost"]));
    srv.stop().await;
}

#[tokio::test]
async fn outcomes_before_the_calls_and_outcomes_replaced_by_later_ones() {
    let srv = start().await;
    // O: its outcome comes first.
    let value = dec!(5);
    post_outcome(
        &srv,
        json!({"task_id": "O", "outcome": "success", "value": value.to_string(),
               "timestamp": "2025-04-01T10:30:00Z"}),
    )
    .await;
    let o_calls = [
        json!({"id": "o-1", "timestamp": "2025-04-01T10:00:00Z", "model": "m", "task_id": "O",
               "run_id": "O-r1", "cost": "0.40"}),
        json!({"id": "o-2", "timestamp": "2025-04-01T10:01:00Z", "model": "m", "task_id": "O",
               "run_id": "O-r1", "cost": "0.60"}),
    ];
    ingest(&srv, &o_calls).await;
    let e = expected(&o_calls.iter().collect::<Vec<_>>());
    let o = srv.get_ok("/api/v1/tasks?task_id=O").await["total"].clone();
    assert_eq!((&o["tasks"], &o["successful"]), (&json!(1), &json!(1)));
    assert_eq!(dec_of(&o["value"]), value);
    assert_eq!(dec_of(&o["cost_per_successful_task"]), e.cost);
    assert_eq!(run(&srv, "O-r1").await.unwrap()["outcome"], "success");

    // P: calls without a feature; outcomes name one, and the latest outcome (by its own
    // time, not by arrival) wins — for the task and for every run of it.
    let p1 = [
        json!({"id": "p-1", "timestamp": "2025-04-02T09:00:00Z", "model": "m", "task_id": "P",
               "run_id": "P-r1", "cost": "0.25"}),
        json!({"id": "p-2", "timestamp": "2025-04-02T09:00:30Z", "model": "m", "task_id": "P",
               "run_id": "P-r1", "cost": "0.50"}),
    ];
    ingest(&srv, &p1).await;
    let calls_cost = expected(&p1.iter().collect::<Vec<_>>()).cost;
    let rework = dec!(0.5);
    post_outcome(
        &srv,
        json!({"task_id": "P", "outcome": "failure", "feature": "first-guess",
               "rework_cost": rework.to_string(), "timestamp": "2025-04-02T10:00:00Z"}),
    )
    .await;
    let x = task_row(&srv, "group_by=feature", "feature", json!("first-guess")).await;
    assert_eq!((&x["tasks"], &x["failed"]), (&json!(1), &json!(1)));
    assert_eq!(dec_of(&x["cost"]), calls_cost + rework);
    assert_eq!(run(&srv, "P-r1").await.unwrap()["state"], "failure");

    let (value, rework) = (dec!(2), dec!(0.1));
    post_outcome(
        &srv,
        json!({"task_id": "P", "outcome": "success", "feature": "final", "value": value.to_string(),
               "rework_cost": rework.to_string(), "timestamp": "2025-04-02T12:00:00Z"}),
    )
    .await;
    // Folded before the next one arrives, so that one is folded in a pass of its own.
    let f = task_row(&srv, "group_by=feature", "feature", json!("final")).await;
    assert_eq!(&f["successful"], &json!(1));
    // Stamped before the success, though it arrives after it: it does not win.
    post_outcome(
        &srv,
        json!({"task_id": "P", "outcome": "abandoned", "feature": "stale",
               "timestamp": "2025-04-02T11:00:00Z"}),
    )
    .await;
    // A second run of P after the outcomes: it takes the task's winning outcome too.
    let p2 = [
        json!({"id": "p-3", "timestamp": "2025-04-02T11:30:00Z", "model": "m", "task_id": "P",
               "run_id": "P-r2", "cost": "0.125"}),
    ];
    ingest(&srv, &p2).await;
    let calls_cost = calls_cost + expected(&p2.iter().collect::<Vec<_>>()).cost;
    let answer = srv.get_ok("/api/v1/tasks?group_by=feature").await;
    let features: Vec<&Value> = answer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["feature"])
        .collect();
    assert!(
        !features.contains(&&json!("first-guess")) && !features.contains(&&json!("stale")),
        "{answer}"
    );
    let f = task_row(&srv, "group_by=feature", "feature", json!("final")).await;
    assert_eq!(
        (&f["tasks"], &f["successful"], &f["failed"], &f["abandoned"]),
        (&json!(1), &json!(1), &json!(0), &json!(0))
    );
    assert_eq!(dec_of(&f["cost"]), calls_cost + rework);
    assert_eq!(dec_of(&f["rework_cost"]), rework);
    assert_eq!(dec_of(&f["value"]), value);
    for id in ["P-r1", "P-r2"] {
        let r = run(&srv, id).await.unwrap();
        assert_eq!(
            (&r["outcome"], &r["feature"]),
            (&json!("success"), &json!("final"))
        );
    }
    srv.stop().await;
}

#[tokio::test]
async fn a_retry_that_arrives_before_the_call_it_retries() {
    let srv = start().await;
    let retry = json!({"id": "q-b", "timestamp": "2025-05-01T10:00:05Z", "model": "m", "task_id": "Q",
                       "retry_of": "q-a", "cost": "0.25"});
    let original = json!({"id": "q-a", "timestamp": "2025-05-01T10:00:00Z", "model": "m",
                          "task_id": "Q", "cost": "0.10"});
    ingest(&srv, std::slice::from_ref(&retry)).await;
    let t = srv.get_ok("/api/v1/tasks?task_id=Q").await["total"].clone();
    assert_eq!((&t["calls"], &t["retried_calls"]), (&json!(1), &json!(0)));
    assert_eq!(dec_of(&t["retry_cost"]), Decimal::ZERO);

    // The retried call arrives: it is wasted now, though nothing new names it.
    ingest(&srv, std::slice::from_ref(&original)).await;
    let t = srv.get_ok("/api/v1/tasks?task_id=Q").await["total"].clone();
    assert_eq!((&t["calls"], &t["retried_calls"]), (&json!(2), &json!(1)));
    assert_eq!(dec_of(&t["retry_cost"]), dec_of(&original["cost"]));
    assert_eq!(
        dec_of(&t["cost"]),
        dec_of(&original["cost"]) + dec_of(&retry["cost"])
    );
    let q = run(&srv, "Q").await.unwrap();
    assert_eq!((&q["calls"], &q["retries"]), (&json!(2), &json!(1)));
    assert_eq!(dec_of(&q["retry_cost"]), dec_of(&original["cost"]));
    assert_eq!(time(&q["started"]), time(&original["timestamp"]));
    srv.stop().await;
}

#[tokio::test]
async fn gap_fill_changes_a_units_first_call_and_moves_a_call_to_another_unit() {
    let srv = start().await;
    let g_a = json!({"id": "g-a", "timestamp": "2025-06-01T10:00:00Z", "model": "m", "task_id": "G",
                     "cost": "0.10"});
    let g_b = json!({"id": "g-b", "timestamp": "2025-06-01T10:01:00Z", "model": "m", "task_id": "G",
                     "feature": "other", "cost": "0.20"});
    let m_1 = json!({"id": "m-1", "timestamp": "2025-06-01T11:00:00Z", "model": "m",
                     "trace_id": "tr-m", "feature": "mail", "cost": "0.50"});
    ingest(&srv, &[g_a.clone(), g_b.clone(), m_1.clone()]).await;
    let g = expected(&[&g_a, &g_b]);
    // G's first call has no feature (and G no outcome): it is in the "no feature" group.
    let none = task_row(&srv, "group_by=feature", "feature", Value::Null).await;
    assert_eq!(
        (&none["tasks"], &none["calls"]),
        (&json!(1), &json!(g.calls))
    );
    assert_eq!(run(&srv, "tr-m").await.unwrap()["id_kind"], "trace_id");

    // The first call again from another source, now with its feature.
    let mut copy = g_a.clone();
    copy["feature"] = json!("search");
    let answer = ingest(&srv, &[copy.clone()]).await;
    assert_eq!(answer["duplicates"], 1, "{answer}");
    let search = task_row(&srv, "group_by=feature", "feature", copy["feature"].clone()).await;
    assert_eq!(
        (&search["tasks"], &search["calls"]),
        (&json!(1), &json!(g.calls))
    );
    assert_eq!(
        dec_of(&search["cost"]),
        g.cost,
        "the copy is not counted twice"
    );
    let answer = srv.get_ok("/api/v1/tasks?group_by=feature").await;
    assert!(
        answer["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| !r["feature"].is_null()),
        "{answer}"
    );
    assert_eq!(run(&srv, "G").await.unwrap()["feature"], copy["feature"]);

    // The trace-only call again, now naming its task: it leaves unit tr-m for unit M.
    let mut copy = m_1.clone();
    copy["task_id"] = json!("M");
    let answer = ingest(&srv, &[copy]).await;
    assert_eq!(answer["duplicates"], 1, "{answer}");
    assert!(run(&srv, "tr-m").await.is_none(), "tr-m has no call left");
    let m = run(&srv, "M").await.expect("run M");
    assert_eq!((&m["id_kind"], &m["calls"]), (&json!("task_id"), &json!(1)));
    assert_eq!(dec_of(&m["cost"]), dec_of(&m_1["cost"]));
    let t = srv.get_ok("/api/v1/tasks?task_id=M").await["total"].clone();
    assert_eq!(t["tasks"], 1);
    assert_eq!(dec_of(&t["cost"]), dec_of(&m_1["cost"]));
    assert_eq!(
        srv.get_ok("/api/v1/tasks").await["total"]["tasks"],
        2,
        "G and M"
    );
    srv.stop().await;
}

#[tokio::test]
async fn repricing_changes_the_cost_of_tasks_and_runs() {
    const ADMIN: &str = "bootstrap-admin-key-0123456789";
    let mut srv = start_with(|c| c.admin_key = Some(ADMIN.into())).await;
    // Two calls of one task, priced from the catalog (no reported cost): 1M input and 100k
    // output tokens of gpt-4o at the list price of 2.50 / 10 per million.
    let (input, output) = (Decimal::from(1_000_000), Decimal::from(100_000));
    let usage = json!({"input_tokens": 1_000_000, "output_tokens": 100_000});
    let calls = [
        json!({"id": "rp-1", "timestamp": "2025-07-01T10:00:00Z", "model": "gpt-4o", "provider": "openai",
               "task_id": "RP", "run_id": "RP-run", "usage": usage}),
        json!({"id": "rp-2", "timestamp": "2025-07-01T10:00:10Z", "model": "gpt-4o", "provider": "openai",
               "task_id": "RP", "run_id": "RP-run", "usage": usage}),
    ];
    ingest(&srv, &calls).await;
    let mtok = Decimal::from(1_000_000);
    let per_call =
        |in_price: Decimal, out_price: Decimal| (input * in_price + output * out_price) / mtok;
    let list = per_call(dec!(2.5), dec!(10)) * Decimal::from(calls.len() as i64);
    let t = srv.get_ok("/api/v1/tasks?task_id=RP").await["total"].clone();
    assert_eq!(dec_of(&t["cost"]), list);

    // The operator now has their own price for gpt-4o (2 / 8), restarts and re-prices.
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
    // The units survived the restart unchanged.
    let t = srv.get_ok("/api/v1/tasks?task_id=RP").await["total"].clone();
    assert_eq!(dec_of(&t["cost"]), list);

    let resp = srv
        .client
        .post(srv.url("/api/v1/reprice?apply=true"))
        .bearer_auth(ADMIN)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let custom = per_call(dec!(2), dec!(8)) * Decimal::from(calls.len() as i64);
    let t = srv.get_ok("/api/v1/tasks?task_id=RP").await["total"].clone();
    assert_eq!(dec_of(&t["cost"]), custom);
    assert_eq!(t["calls"], calls.len());
    let r = run(&srv, "RP-run").await.unwrap();
    assert_eq!(dec_of(&r["cost"]), custom);
    srv.stop().await;
}
