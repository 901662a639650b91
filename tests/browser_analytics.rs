//! The Tasks & runs, run and Routes pages in a real headless Chromium on the demo data: no
//! console errors, every number on the page equals the JSON API's answer for the same query
//! (the page links that query), grouping lives in the address, and a run's waterfall shows
//! its retries and fallbacks. Screenshots go under `target/screenshots/`.

#[macro_use]
mod common;

use std::collections::HashMap;

use common::browser::Browser;
use serde_json::Value;

async fn demo_server() -> common::TestServer {
    let srv = common::start().await;
    let pricer = tally::pricing::Pricer::builtin(&Default::default()).unwrap();
    let cfg = tally::demo::DemoConfig {
        days: 30,
        ..Default::default()
    };
    let loaded = tally::demo::load::load(srv.server.as_ref().unwrap().store(), &pricer, &cfg)
        .await
        .unwrap();
    assert!(loaded.rejected == 0 && loaded.outcomes > 0, "{loaded:?}");
    srv
}

/// A table's body as rows of `column key → data-exact` (text when a cell has no exact value).
async fn table(browser: &Browser, id: &str) -> Vec<HashMap<String, String>> {
    let v: Value = browser
        .execute(&format!(
            "const t = document.querySelector('#{id}'); \
             const keys = [...t.querySelectorAll('thead th')].map(h => h.dataset.key); \
             return [...t.querySelectorAll('tbody tr')].filter(r => !r.querySelector('.empty')).map(r => \
               Object.fromEntries([...r.cells].map((c, i) => [keys[i], c.dataset.exact ?? (c.classList.contains('num') ? '' : c.innerText)])));"
        ))
        .await;
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .collect()
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
async fn tasks_runs_and_routes_pages_show_the_api_numbers() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let srv = demo_server().await;

    // Tasks: cost per successful task per feature, equal to /api/v1/tasks for the same query.
    browser
        .goto(&srv.url("/tasks?range=30d&group_by=feature"))
        .await;
    assert!(
        browser.console_errors().await.is_empty(),
        "console errors on /tasks"
    );
    let api_href = browser.attr("#tasks-api", "href").await.unwrap();
    let api = srv.get_ok(&api_href).await;
    let api_rows = api["rows"].as_array().unwrap();
    let shown = table(&browser, "tasks-table").await;
    assert!(shown.len() >= 3, "demo features: {shown:?}");
    assert_eq!(shown.len(), api_rows.len());
    for (row, api_row) in shown.iter().zip(api_rows) {
        assert_eq!(
            row["feature"],
            api_row["feature"].as_str().unwrap_or("(none)")
        );
        for key in [
            "tasks",
            "successful",
            "cost",
            "cost_per_successful_task",
            "retry_cost",
            "success_rate",
        ] {
            assert_eq!(
                row[key],
                exact(&api_row[key]),
                "{key} of {}",
                row["feature"]
            );
        }
    }
    browser.screenshot("tasks").await;

    // Changing the grouping through the form puts it in the address.
    browser
        .execute("document.querySelector('#group').value = 'agent'; document.querySelector('form.controls').submit();")
        .await;
    browser.wait_url("group_by=agent").await;
    assert_eq!(
        browser
            .text("#tasks-table thead th:first-child")
            .await
            .trim(),
        "agent"
    );

    // Runs, most expensive first, as /api/v1/runs answers them.
    let runs_href = browser.attr("#runs-api", "href").await.unwrap();
    let runs = srv.get_ok(&runs_href).await;
    let shown = table(&browser, "runs-table").await;
    let api_runs = runs["runs"].as_array().unwrap();
    assert!(!shown.is_empty());
    assert_eq!(shown.len(), api_runs.len());
    for (row, api_run) in shown.iter().zip(api_runs) {
        assert_eq!(row["run_id"], api_run["run_id"].as_str().unwrap());
        assert_eq!(row["cost"], exact(&api_run["cost"]));
    }

    // The most expensive run opens as a waterfall whose totals are the API's.
    browser.click("#runs-table tbody tr:first-child a").await;
    browser.wait_for("svg.waterfall").await;
    assert!(
        browser.console_errors().await.is_empty(),
        "console errors on a run"
    );
    let run_href = browser.attr("#api-link", "href").await.unwrap();
    let run = srv.get_ok(&run_href).await;
    assert_eq!(run["run"]["id"], api_runs[0]["run_id"]);
    assert_eq!(
        browser.attr("#run-cost", "data-exact").await.unwrap(),
        exact(&run["totals"]["cost"])
    );
    let calls = run["calls"].as_array().unwrap();
    assert_eq!(
        browser.find_all("svg.waterfall g.call").await.len(),
        calls.len().min(200)
    );
    assert_eq!(table(&browser, "calls-table").await.len(), calls.len());

    // A run with retries and fallbacks shows them as such, in the chart and the table.
    let with_retries = srv.get_ok("/api/v1/runs?order=retries:desc&limit=50").await;
    let pick = with_retries["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            r["retries"].as_i64() > Some(0)
                && r["fallbacks"].as_i64() > Some(0)
                && r["calls"].as_i64() < Some(200)
        })
        .expect("the demo data has a run with retries and fallbacks")
        .clone();
    let id = pick["run_id"].as_str().unwrap();
    browser.goto(&srv.url(&format!("/runs/{id}"))).await;
    browser.wait_for("svg.waterfall").await;
    let retries = browser.find_all("svg.waterfall g.call.retry").await.len();
    let fallbacks = browser
        .find_all("svg.waterfall g.call.fallback")
        .await
        .len();
    let detail = srv.get_ok(&format!("/api/v1/runs/{id}")).await;
    assert!(
        retries > 0 && fallbacks > 0,
        "retries {retries}, fallbacks {fallbacks}"
    );
    assert_eq!(
        browser.text("#run-retries").await,
        detail["totals"]["retries"].to_string()
    );
    let links: Vec<String> = table(&browser, "calls-table")
        .await
        .into_iter()
        .map(|r| r["link"].clone())
        .collect();
    let api_links: Vec<String> = detail["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["link"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(links, api_links);
    let count = |kind: &str| api_links.iter().filter(|l| *l == kind).count();
    assert_eq!((retries, fallbacks), (count("retry"), count("fallback")));
    assert!(browser.console_errors().await.is_empty());
    browser.screenshot("run").await;

    // An unknown run is a 404 page, not a crash.
    let status = srv
        .client
        .get(srv.url("/runs/no-such-run"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404);

    // Routes: per route, provider and model, the API's numbers.
    browser.goto(&srv.url("/routes?range=30d")).await;
    assert!(
        browser.console_errors().await.is_empty(),
        "console errors on /routes"
    );
    let api_href = browser.attr("#api-link", "href").await.unwrap();
    let api = srv.get_ok(&api_href).await;
    let api_rows = api["rows"].as_array().unwrap();
    let shown = table(&browser, "routes-table").await;
    assert!(shown.len() > 1);
    assert_eq!(shown.len(), api_rows.len());
    let routes: std::collections::BTreeSet<&str> =
        shown.iter().map(|r| r["route"].as_str()).collect();
    assert!(
        routes.contains("direct") && routes.len() > 1,
        "direct and gateways: {routes:?}"
    );
    for (row, api_row) in shown.iter().zip(api_rows) {
        for key in [
            "requests",
            "error_rate",
            "latency_ms_p95",
            "effective_input_price_mtok",
            "effective_output_price_mtok",
            "markup_pct",
            "cost",
        ] {
            assert_eq!(row[key], exact(&api_row[key]), "{key} of {row:?}");
        }
    }
    browser.screenshot("routes").await;
    browser.quit().await;
    srv.stop().await;
}
