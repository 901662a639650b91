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

/// The legend's series labels, in order (the chart ranks them by their total).
async fn legend(browser: &Browser) -> Vec<String> {
    let v: Value = browser
        .execute("return [...document.querySelectorAll('figcaption .key')].map(k => k.innerText.trim());")
        .await;
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn explore_answers_cost_per_successful_task_like_the_tasks_api() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let srv = demo_server().await;
    // The Tasks page opens the same question in Explore.
    browser
        .goto(&srv.url("/tasks?range=30d&group_by=feature"))
        .await;
    browser.click("#tasks-explore").await;
    let url = browser.wait_url("/explore?").await;
    assert!(
        url.contains("of=tasks") && url.contains("group_by=feature") && url.contains("range=30d"),
        "{url}"
    );
    assert!(
        browser.console_errors().await.is_empty(),
        "console errors on /explore?of=tasks"
    );
    let api_href = browser.attr("#api-link", "href").await.unwrap();
    assert!(api_href.starts_with("/api/v1/tasks?"), "{api_href}");
    let api = srv.get_ok(&api_href).await;
    let api_rows = api["rows"].as_array().unwrap();
    let shown = table(&browser, "explore-table").await;
    assert!(shown.len() >= 3, "demo features: {shown:?}");
    assert_eq!(shown.len(), api_rows.len());
    let measures = [
        "cost_per_successful_task",
        "success_rate",
        "tasks",
        "successful",
        "failed",
        "cost",
        "retry_cost",
        "calls",
    ];
    for (row, api_row) in shown.iter().zip(api_rows) {
        assert_eq!(
            row["feature"],
            api_row["feature"].as_str().unwrap_or("(none)")
        );
        for key in measures {
            assert_eq!(row[key], exact(&api_row[key]), "{key} of {row:?}");
        }
    }
    // The footer is the API's total, which the rows add up to (every feature is shown).
    let footer: Value = browser
        .execute("return [...document.querySelectorAll('#explore-table tfoot td')].map(c => c.dataset.exact ?? '');")
        .await;
    let keys: Vec<String> = browser
        .execute("return [...document.querySelectorAll('#explore-table thead th')].map(h => h.dataset.key);")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    let foot = |key: &str| {
        let i = keys.iter().position(|k| k == key).unwrap();
        footer[i].as_str().unwrap().to_string()
    };
    for key in measures {
        assert_eq!(foot(key), exact(&api["total"][key]), "total {key}");
    }
    let dec = |s: &str| s.parse::<rust_decimal::Decimal>().unwrap();
    let summed: rust_decimal::Decimal = shown.iter().map(|r| dec(&r["cost"])).sum();
    assert_eq!(summed, dec(&foot("cost")));
    let tasks: i64 = shown
        .iter()
        .map(|r| r["tasks"].parse::<i64>().unwrap())
        .sum();
    assert_eq!(tasks.to_string(), foot("tasks"));

    // The chart stacks the same tasks' cost: its series are the table's features, ranked the
    // same way (the table is sorted by cost, the legend by each series' total).
    assert!(browser.find_all("svg.chart rect").await.len() >= 20);
    let features: Vec<String> = shown.iter().map(|r| r["feature"].clone()).collect();
    let labels = legend(&browser).await;
    assert_eq!(
        labels[..features.len().min(8)],
        features[..features.len().min(8)]
    );
    browser.screenshot("explore-tasks").await;

    // The CSV is the table, every digit.
    let csv_href = browser.attr("#csv-link", "href").await.unwrap();
    let body = srv.get_text(&csv_href).await;
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let head: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), shown.len());
    for (record, row) in records.iter().zip(&shown) {
        for key in ["feature"].iter().chain(&measures) {
            let i = head.iter().position(|h| h == key).unwrap();
            assert_eq!(&record[i], row[*key].as_str(), "{key} in the CSV");
        }
    }

    // Sorting by a column header: the address carries it, the rows follow it.
    browser
        .click("#explore-table thead th[data-key=success_rate] a")
        .await;
    browser.wait_url("order=success_rate").await;
    let rates: Vec<rust_decimal::Decimal> = table(&browser, "explore-table")
        .await
        .iter()
        .map(|r| dec(&r["success_rate"]))
        .collect();
    assert!(
        rates.windows(2).all(|w| w[0] >= w[1]),
        "descending: {rates:?}"
    );
    assert_eq!(
        browser
            .attr(
                "#explore-table thead th[data-key=success_rate]",
                "aria-sort"
            )
            .await
            .as_deref(),
        Some("descending")
    );

    // Switching to spend keeps the grouping; the tasks-only order falls back to spend's.
    browser
        .execute("document.querySelector('#dataset').value = 'costs'; document.querySelector('form.controls').submit();")
        .await;
    browser.wait_url("of=costs").await;
    assert!(browser.console_errors().await.is_empty());
    let api_href = browser.attr("#api-link", "href").await.unwrap();
    assert!(api_href.starts_with("/api/v1/costs?"), "{api_href}");
    let api = srv.get_ok(&api_href).await;
    let shown = table(&browser, "explore-table").await;
    assert_eq!(shown.len(), api["rows"].as_array().unwrap().len());
    for (row, api_row) in shown.iter().zip(api["rows"].as_array().unwrap()) {
        assert_eq!(
            row["feature"],
            api_row["feature"].as_str().unwrap_or("(none)")
        );
        assert_eq!(row["cost"], exact(&api_row["cost"]));
    }
    browser.quit().await;
    srv.stop().await;
}
