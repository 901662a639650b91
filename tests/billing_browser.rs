//! The reconciliation page in a real headless Chromium: billed, metered and the gap per
//! provider and day, equal to `/api/v1/reconciliation` for the same range (and to hand-computed
//! numbers), the range in the URL, the over-billed days highlighted. Its own file, so it merges
//! beside `tests/browser.rs` without conflicts.

#[macro_use]
mod common;

use common::browser::Browser;
use rust_decimal::Decimal;
use serde_json::{json, Value};

fn dec(s: &str) -> Decimal {
    s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

fn api_dec(v: &Value) -> Decimal {
    dec(v.as_str().unwrap_or_else(|| panic!("not a decimal: {v}")))
}

#[tokio::test]
async fn the_reconciliation_page_shows_the_api_numbers_and_highlights_the_gap() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let srv = common::start().await;
    let gpt = "gpt-4.1-mini-2025-04-14";
    let event = |ts: &str, cost: &str| json!({"timestamp": ts, "provider": "openai", "model": gpt, "cost": cost});
    // Metered: Jan 1 = 0.9 + 1.2 + 0.5 = 2.6; Jan 2 = 2.0 + 1.35 = 3.35.
    let (status, answer) = srv
        .ingest_json(&json!([
            event("2026-01-01T10:00:00Z", "0.9"),
            event("2026-01-01T12:00:00Z", "1.2"),
            event("2026-01-01T23:59:59Z", "0.5"),
            event("2026-01-02T09:00:00Z", "2.0"),
            event("2026-01-02T18:00:00Z", "1.35"),
        ]))
        .await;
    assert_eq!(status, 200, "{answer}");
    // Billed (the OpenAI Costs API fixture): Jan 1 = 1.734 + 0.96 = 2.694; Jan 2 = 2.10 + 1.25.
    let costs = std::fs::read("tests/fixtures/billing/openai-costs/costs-2026-01-01_03.json")
        .expect("fixture, relative to the package root");
    let resp = srv
        .client
        .post(srv.url("/v1/billing?format=openai-costs"))
        .header("content-type", "application/json")
        .body(costs)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    browser
        .goto(&srv.url("/reconciliation?range=custom&from=2026-01-01&to=2026-01-02&tz=UTC"))
        .await;
    assert!(
        browser.console_errors().await.is_empty(),
        "console errors on the reconciliation page"
    );
    let exact = |css: &'static str| {
        let b = &browser;
        async move { dec(&b.attr(css, "data-exact").await.unwrap()) }
    };
    // Hand-computed: billed 2.694 + 3.35, metered 2.6 + 3.35, gap 0.094.
    assert_eq!(exact("#total-billed").await, Decimal::new(6044, 3));
    assert_eq!(exact("#total-metered").await, Decimal::new(595, 2));
    assert_eq!(exact("#total-gap").await, Decimal::new(94, 3));
    assert_eq!(exact("#total-unattributed").await, Decimal::new(94, 3));

    // The same numbers as the API the page links to.
    let api_link = browser.attr("main > p.note a", "href").await.unwrap();
    assert!(
        api_link.starts_with("/api/v1/reconciliation?"),
        "{api_link}"
    );
    let api = srv.get_ok(&api_link).await;
    assert_eq!(
        exact("#total-billed").await,
        api_dec(&api["total"]["billed"])
    );
    assert_eq!(
        exact("#total-metered").await,
        api_dec(&api["total"]["metered"])
    );
    assert_eq!(exact("#total-gap").await, api_dec(&api["total"]["gap"]));
    let rows = browser.find_all("#recon tbody tr").await;
    assert_eq!(rows.len(), 2, "one row per provider and day");
    assert_eq!(api["rows"].as_array().unwrap().len(), 2, "{api}");
    for (i, expected) in api["rows"].as_array().unwrap().iter().enumerate() {
        let cell = |col: usize| format!("#recon tbody tr:nth-child({}) td:nth-child({col})", i + 1);
        assert_eq!(
            browser.text(&cell(1)).await,
            expected["provider"].as_str().unwrap()
        );
        assert_eq!(
            browser.text(&cell(2)).await,
            expected["day"].as_str().unwrap()
        );
        for (col, key) in [
            (3, "billed"),
            (4, "metered"),
            (5, "gap"),
            (8, "unattributed"),
        ] {
            let shown = browser.attr(&cell(col), "data-exact").await.unwrap();
            assert_eq!(dec(&shown), api_dec(&expected[key]), "row {i} {key}");
        }
    }
    // Jan 1 is billed above what was metered: highlighted; Jan 2 is even.
    assert_eq!(
        browser.find_all("#recon tbody tr.gap-over").await.len(),
        1,
        "the over-billed day is highlighted"
    );
    assert_eq!(
        browser
            .text("#recon tbody tr.gap-over td:nth-child(2)")
            .await,
        "2026-01-01"
    );
    // Metered equals the costs API for the same range.
    let costs = srv
        .get_ok("/api/v1/costs?from=2026-01-01&to=2026-01-02")
        .await;
    assert_eq!(
        exact("#total-metered").await,
        api_dec(&costs["total"]["cost"])
    );
    browser.screenshot("reconciliation").await;

    // The range lives in the URL: narrowing it through the form (no script needed) narrows
    // the table.
    browser
        .goto(&srv.url("/reconciliation?range=custom&from=2026-01-02&to=2026-01-02&tz=UTC"))
        .await;
    assert_eq!(browser.find_all("#recon tbody tr").await.len(), 1);
    assert_eq!(exact("#total-gap").await, Decimal::ZERO);
    browser.quit().await;
    srv.stop().await;
}
