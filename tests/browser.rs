//! The dashboard in a real headless Chromium against a server loaded with the demo data: every
//! page loads without console errors, the numbers on the pages equal the JSON API's, filters
//! live in the URL, the CSV is the table, and sign-in works. Screenshots of each page are
//! written under `target/screenshots/`.

#[macro_use]
mod common;

use common::browser::Browser;
use rust_decimal::Decimal;
use serde_json::Value;

/// A server with 30 days of demo traffic ending now.
async fn demo_server(admin_key: Option<&str>) -> common::TestServer {
    let key = admin_key.map(str::to_string);
    let srv = common::start_with(|c| c.admin_key = key).await;
    let pricer = tally::pricing::Pricer::builtin(&Default::default()).unwrap();
    let cfg = tally::demo::DemoConfig {
        days: 30,
        ..Default::default()
    };
    let loaded = tally::demo::load::load(srv.server.as_ref().unwrap().store(), &pricer, &cfg)
        .await
        .unwrap();
    assert!(
        loaded.accepted > 50_000 && loaded.rejected == 0,
        "{loaded:?}"
    );
    srv
}

fn dec(s: &str) -> Decimal {
    s.trim_start_matches('$')
        .parse()
        .unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

#[tokio::test]
async fn overview_and_explore_show_the_api_numbers() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let srv = demo_server(None).await;

    // Overview: no console errors, and the total is the API's total for the same range.
    browser.goto(&srv.url("/?range=30d")).await;
    assert!(
        browser.console_errors().await.is_empty(),
        "console errors on the overview"
    );
    let shown = browser.attr("#total-cost", "data-exact").await.unwrap();
    let api_link = browser.attr("p.note a", "href").await.unwrap();
    let api = srv.get_ok(&api_link).await;
    assert_eq!(
        dec(&shown),
        dec(api["total"]["cost"].as_str().unwrap()),
        "overview total vs {api_link}"
    );
    assert_eq!(
        browser.text("#total-requests").await,
        api["total"]["requests"].to_string()
    );
    assert!(
        browser.find_all("svg.chart rect").await.len() >= 20,
        "daily bars are drawn"
    );
    browser.screenshot("overview").await;

    // A top-features row links into Explore with the filter in the address.
    browser
        .click("section[aria-labelledby=top-feature] tbody tr:first-child a")
        .await;
    let url = browser.url().await;
    assert!(
        url.contains("/explore?") && url.contains("feature="),
        "{url}"
    );
    assert!(browser.console_errors().await.is_empty());

    // Explore: change the grouping through the form; the address and the table follow.
    browser
        .goto(&srv.url("/explore?range=30d&group_by=feature"))
        .await;
    browser.execute("document.querySelector('#group1').value = 'model'; document.querySelector('form.controls').submit();").await;
    browser.wait_url("group_by=model").await;
    let header = browser.text("#explore-table thead th:first-child").await;
    assert_eq!(header.trim(), "model");
    browser.screenshot("explore").await;

    // The CSV is exactly the table: same keys, same exact costs, same order.
    let csv_href = browser.attr("#csv-link", "href").await.unwrap();
    let csv_text = srv.get_text(&csv_href).await;
    let mut lines = csv_text.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    let cost_col = head.iter().position(|h| *h == "cost").unwrap();
    let table_rows: Value = browser
        .execute(
            "return [...document.querySelectorAll('#explore-table tbody tr')].map(r => \
             [r.cells[0].innerText, r.cells[1].getAttribute('title')]);",
        )
        .await;
    let table_rows = table_rows.as_array().unwrap();
    let csv_rows: Vec<Vec<String>> = lines
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    assert_eq!(csv_rows.len(), table_rows.len());
    for (csv, shown) in csv_rows.iter().zip(table_rows) {
        let key = if csv[0].is_empty() {
            "(none)"
        } else {
            csv[0].as_str()
        };
        assert_eq!(shown[0].as_str().unwrap(), key);
        assert_eq!(
            dec(shown[1].as_str().unwrap()),
            dec(&csv[cost_col]),
            "{key}"
        );
    }
    // And the table is the API's answer for the same query.
    let api_href = browser.attr("#api-link", "href").await.unwrap();
    let api = srv.get_ok(&api_href).await;
    let api_rows = api["rows"].as_array().unwrap();
    assert_eq!(api_rows.len(), csv_rows.len());
    for (row, csv) in api_rows.iter().zip(&csv_rows) {
        assert_eq!(dec(row["cost"].as_str().unwrap()), dec(&csv[cost_col]));
    }

    // Adding a filter through the form keeps it in the address as an API parameter.
    browser.execute("document.querySelector('select[name=fdim]').value = 'feature'; document.querySelector('input[name=fval]').value = 'doc-qa'; document.querySelector('form.controls').submit();").await;
    let url = browser.wait_url("feature=doc-qa").await;
    assert!(!url.contains("fdim"), "{url}");
    browser.wait_for(".chips").await;
    assert!(browser.text(".chips").await.contains("feature = doc-qa"));
    assert!(browser.console_errors().await.is_empty());

    // A phone-sized window still shows the page without console errors.
    browser.resize(390, 844).await;
    browser.goto(&srv.url("/?range=7d")).await;
    browser.screenshot("overview-phone").await;
    assert!(browser.console_errors().await.is_empty());
    browser.quit().await;
    srv.stop().await;
}

#[tokio::test]
async fn signing_in_with_a_key_opens_the_dashboard() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let admin = "browser-admin-key-0123456789";
    let srv = demo_server(Some(admin)).await;
    browser.goto(&srv.url("/explore?group_by=model")).await;
    assert!(
        browser.url().await.contains("/signin?next="),
        "unauthenticated pages ask to sign in"
    );
    browser.screenshot("signin").await;
    browser.type_into("#key", "not-a-key").await;
    browser.click("form.stack button").await;
    browser.wait_for("p.error").await;
    assert!(browser.text("p.error").await.contains("not valid"));
    // The refused attempt answers 401, which the console reports as a failed load; that one
    // is expected, anything else is not.
    let errors = browser.console_errors().await;
    assert!(errors.iter().all(|e| e.contains("401")), "{errors:?}");
    browser.type_into("#key", admin).await;
    browser.click("form.stack button").await;
    // Waits for the redirect: on a loaded machine the address may still be /signin right
    // after the click.
    let url = browser.wait_url("/explore").await;
    assert!(
        url.ends_with("/explore?group_by=model"),
        "back where the user was going: {url}"
    );
    // The session cookie is HttpOnly: scripts cannot read it.
    assert_eq!(
        browser.execute("return document.cookie;").await,
        Value::String(String::new())
    );
    browser.click("form.inline button").await;
    browser.wait_for("#key").await;
    assert!(browser.url().await.contains("/signin"), "signed out");
    browser.goto(&srv.url("/")).await;
    assert!(
        browser.url().await.contains("/signin"),
        "the session is gone"
    );
    assert!(browser.console_errors().await.is_empty());
    browser.quit().await;
    srv.stop().await;
}
