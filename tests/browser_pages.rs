//! The overview's budget bars and cost per successful task, and the ingest health page, in a
//! real headless Chromium on the demo data (with the demo budgets and one seeded reject): the
//! budget closest to its limit is the one `/api/v1/budgets/status` says, the cost per
//! successful task is `/api/v1/tasks`' figure for the linked query, the ingest page shows the
//! seeded reject's reason and raw text and the same counts as `/api/v1/rejects` and
//! `/api/v1/unpriced`; no console errors. Screenshots go under `target/screenshots/`.

#[macro_use]
mod common;

use common::browser::Browser;
use rust_decimal::Decimal;
use serde_json::Value;

fn dec(s: &str) -> Decimal {
    s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

/// An API value as the page's `data-exact` shows it ("" for null).
fn exact(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[tokio::test]
async fn overview_and_ingest_pages_answer_like_the_api() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let srv = common::start_with(|c| c.admin_key = None).await;
    let server = srv.server.as_ref().unwrap();
    let pricer = tally::pricing::Pricer::builtin(&Default::default()).unwrap();
    let cfg = tally::demo::DemoConfig {
        days: 30,
        ..Default::default()
    };
    let loaded = tally::demo::load::load(server.store(), &pricer, &cfg)
        .await
        .unwrap();
    assert!(loaded.rejected == 0 && loaded.outcomes > 0, "{loaded:?}");
    tally::demo::budgets::install(server.store(), server.budgets(), None)
        .await
        .unwrap();

    // One good record and one the parser must reject, with a raw text we can look for.
    let now = chrono::Utc::now().to_rfc3339();
    let bad = r#"{"timestamp": "yesterday-ish", "model": "gpt-4o", "feature": "seeded-reject-7"}"#;
    let body = format!(
        "{}\n{bad}\n",
        serde_json::json!({"timestamp": now, "model": "gpt-4o", "cost": "0.5"})
    );
    let (status, answer) = srv
        .ingest_raw("application/x-ndjson", None, body.into_bytes(), "")
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 1, "{answer}");
    assert_eq!(
        answer["rejected"].as_array().map(Vec::len),
        Some(1),
        "{answer}"
    );

    // Overview: the first budget bar is the row with the highest percent in the status API.
    browser.goto(&srv.url("/?range=30d")).await;
    assert!(
        browser.console_errors().await.is_empty(),
        "console errors on /"
    );
    // Rolling budgets move with the clock: ask the API for the instant the page's numbers are
    // for, not for a later "now".
    let at = browser.attr("#budget-bars", "data-at").await.unwrap();
    let status = srv
        .get_ok(&format!(
            "/api/v1/budgets/status?at={}",
            at.replace('+', "%2B")
        ))
        .await;
    assert_eq!(status["at"].as_str(), Some(at.as_str()));
    let mut rows: Vec<(Decimal, String, String, String)> = Vec::new();
    for b in status["budgets"].as_array().unwrap() {
        for r in b["rows"].as_array().unwrap() {
            if let Some(p) = r["percent"].as_str() {
                rows.push((
                    dec(p),
                    b["id"].as_str().unwrap().to_string(),
                    exact(&r["split_value"]),
                    exact(&r["spent"]),
                ));
            }
        }
    }
    assert!(!rows.is_empty(), "the demo budgets have spend rows");
    let top = rows.iter().map(|r| r.0).max().unwrap();
    let first_budget = browser
        .attr("#budget-bars tr.budget-row", "data-budget")
        .await
        .unwrap();
    let first_split = browser
        .attr("#budget-bars tr.budget-row", "data-split")
        .await
        .unwrap();
    let first_pct = browser
        .attr("#budget-bars tr.budget-row .percent", "data-exact")
        .await
        .unwrap();
    assert_eq!(dec(&first_pct), top);
    let expected = rows
        .iter()
        .find(|r| r.1 == first_budget && r.2 == first_split)
        .unwrap_or_else(|| panic!("{first_budget}/{first_split} is in the status API"));
    assert_eq!(expected.0, top);
    let shown_spent = browser
        .attr("#budget-bars tr.budget-row .spent", "data-exact")
        .await
        .unwrap();
    assert_eq!(dec(&shown_spent), dec(&expected.3));

    // Cost per successful task: the linked /api/v1/tasks query's total, and its feature with the
    // highest cost per successful task first.
    let tasks_href = browser.attr("#tasks-api", "href").await.unwrap();
    let tasks = srv.get_ok(&tasks_href).await;
    assert_eq!(
        browser
            .attr("#cost-per-success", "data-exact")
            .await
            .unwrap(),
        exact(&tasks["total"]["cost_per_successful_task"])
    );
    assert_eq!(
        browser.attr("#success-rate", "data-exact").await.unwrap(),
        exact(&tasks["total"]["success_rate"])
    );
    let most = tasks["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !r["cost_per_successful_task"].is_null())
        .max_by_key(|r| dec(r["cost_per_successful_task"].as_str().unwrap()))
        .expect("demo features have successful tasks");
    assert_eq!(
        browser
            .attr("#task-features tr.task-row", "data-feature")
            .await
            .unwrap(),
        most["feature"].as_str().unwrap()
    );
    assert_eq!(
        dec(&browser
            .attr("#task-features tr.task-row .per-success", "data-exact")
            .await
            .unwrap()),
        dec(most["cost_per_successful_task"].as_str().unwrap())
    );
    browser.screenshot("overview-budgets-tasks").await;

    // Ingest health: the seeded reject with its reason and raw text; the API's counts.
    browser.goto(&srv.url("/ingest?range=30d")).await;
    assert!(
        browser.console_errors().await.is_empty(),
        "console errors on /ingest"
    );
    let rejects = srv.get_ok("/api/v1/rejects").await;
    let seeded = rejects["rejects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["raw"].as_str().unwrap().contains("seeded-reject-7"))
        .expect("the API lists the seeded reject");
    let table = browser.text("#rejects-table").await;
    assert!(table.contains("seeded-reject-7"), "{table}");
    assert!(
        table.contains(seeded["reason"].as_str().unwrap()),
        "{table}"
    );
    assert_eq!(
        browser.attr("#rejects-total", "data-exact").await.unwrap(),
        rejects["total"].to_string()
    );
    let unpriced_href = browser.attr("#unpriced-api", "href").await.unwrap();
    let unpriced = srv.get_ok(&unpriced_href).await;
    assert_eq!(
        browser
            .attr("#unpriced-requests", "data-exact")
            .await
            .unwrap(),
        unpriced["total"]["requests"].to_string()
    );
    // Every demo event and the good seeded record arrived just now, inside the range.
    assert_eq!(
        browser
            .attr("#events-received", "data-exact")
            .await
            .unwrap(),
        (loaded.accepted + 1).to_string()
    );
    browser.screenshot("ingest").await;
    assert!(browser.console_errors().await.is_empty());
    browser.quit().await;
    srv.stop().await;
}
