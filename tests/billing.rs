//! Provider billing through a real server: imports of every export format, restatements and
//! re-imports, bad lines, reconciliation against metered events, the FOCUS export, project
//! isolation and `tally import`.
//!
//! Expected numbers are worked out by hand from the fixture files under
//! `tests/fixtures/billing/<format>/` (the arithmetic is in the comments), never by asking the
//! code under test.

#[macro_use]
mod common;

use common::{start, start_with, TestServer};
use rust_decimal::Decimal;
use serde_json::{json, Value};

const ADMIN: &str = "bootstrap-admin-key-0123456789";

fn fixture(path: &str) -> Vec<u8> {
    // Relative: cargo runs tests in the package root (a shared target dir may hold a binary
    // built from another checkout, so no baked-in manifest path).
    let full = format!("tests/fixtures/billing/{path}");
    std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

fn d(v: &Value) -> Decimal {
    v.as_str()
        .unwrap_or_else(|| panic!("not a decimal string: {v}"))
        .parse()
        .unwrap()
}

/// POSTs a body to /v1/billing with the server's key (or `key`).
async fn post_billing(
    srv: &TestServer,
    key: Option<&str>,
    query: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut rb = srv
        .client
        .post(srv.url(&format!("/v1/billing?{query}")))
        .header("content-type", content_type)
        .body(body);
    if let Some(k) = key.or(srv.key.as_deref()) {
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

/// An import that must succeed.
async fn import(srv: &TestServer, query: &str, content_type: &str, body: Vec<u8>) -> Value {
    let (status, answer) = post_billing(srv, None, query, content_type, body).await;
    assert_eq!(status, 200, "import {query}: {answer}");
    answer
}

async fn get_as(srv: &TestServer, key: Option<&str>, path: &str) -> (u16, Value) {
    let mut rb = srv.client.get(srv.url(path));
    if let Some(k) = key.or(srv.key.as_deref()) {
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

/// The reconciliation row of a provider (and day, when grouped by day).
fn row<'a>(answer: &'a Value, provider: &str, day: Option<&str>) -> &'a Value {
    answer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["provider"] == provider && day.is_none_or(|d| r["day"] == d))
        .unwrap_or_else(|| panic!("no row {provider} {day:?} in {answer:#}"))
}

fn event(ts: &str, provider: &str, model: &str, route: &str, cost: &str) -> Value {
    json!({"timestamp": ts, "provider": provider, "model": model, "route": route, "cost": cost})
}

/// Events for 2026-01-01 and 2026-01-02: OpenAI direct, Anthropic through a LiteLLM gateway,
/// Claude on Bedrock (provider `bedrock`, which canonicalizes to `aws` like FOCUS's `AWS`).
fn scenario_events() -> Value {
    let gpt = "gpt-4.1-mini-2025-04-14";
    let claude = "claude-sonnet-4-5-20250929";
    let bedrock = "us.anthropic.claude-3-5-sonnet-20240620-v1:0";
    json!([
        // openai: Jan 1 = 0.9 + 1.2 + 0.5 = 2.6; Jan 2 = 2.0 + 1.35 = 3.35
        event("2026-01-01T10:00:00Z", "openai", gpt, "direct", "0.9"),
        event("2026-01-01T12:00:00Z", "openai", gpt, "direct", "1.2"),
        event("2026-01-01T23:59:59Z", "openai", gpt, "direct", "0.5"),
        event("2026-01-02T09:00:00Z", "openai", gpt, "direct", "2.0"),
        event("2026-01-02T18:00:00Z", "openai", gpt, "direct", "1.35"),
        // anthropic via litellm: Jan 1 = 12.5 + 7.5 = 20; Jan 2 = 13.5
        event(
            "2026-01-01T08:00:00Z",
            "anthropic",
            claude,
            "litellm",
            "12.5"
        ),
        event(
            "2026-01-01T20:00:00Z",
            "anthropic",
            claude,
            "litellm",
            "7.5"
        ),
        event(
            "2026-01-02T11:00:00Z",
            "anthropic",
            claude,
            "litellm",
            "13.5"
        ),
        // aws (bedrock): Jan 1 = 4.75; Jan 2 = 1.25
        event("2026-01-01T15:00:00Z", "bedrock", bedrock, "direct", "4.75"),
        event("2026-01-02T15:00:00Z", "bedrock", bedrock, "direct", "1.25"),
    ])
}

/// The issue's "done when": an OpenAI costs export, an Anthropic cost report and a FOCUS file
/// next to gateway logs for the same days; the answer shows billed, metered and the gap per
/// provider and day, to the cent (here: to the last stored digit).
#[tokio::test]
async fn done_when_billed_metered_and_gap_per_provider_and_day() {
    let srv = start().await;
    let (status, answer) = srv.ingest_json(&scenario_events()).await;
    assert_eq!(
        (status, answer["accepted"].as_u64()),
        (200, Some(10)),
        "{answer}"
    );

    let openai = import(
        &srv,
        "format=openai-costs",
        "application/json",
        fixture("openai-costs/costs-2026-01-01_03.json"),
    )
    .await;
    assert_eq!(openai["accepted"], 4);
    assert_eq!(openai["kind"], "cost");
    assert_eq!(openai["project"], "default");
    // The empty Jan 3 bucket still belongs to the period the export speaks for.
    assert_eq!(openai["period_start"], "2026-01-01T00:00:00+00:00");
    assert_eq!(openai["period_end"], "2026-01-04T00:00:00+00:00");
    let anthropic = import(
        &srv,
        "format=anthropic-cost",
        "application/json",
        fixture("anthropic-cost/cost-report-2026-01-01_02.json"),
    )
    .await;
    assert_eq!(anthropic["accepted"], 5);
    let focus = import(
        &srv,
        "format=focus",
        "text/csv",
        fixture("focus/aws-bedrock-1.2.csv"),
    )
    .await;
    // Four AI rows (two usage, the tax, the Jan 2 usage); the EC2 row is skipped.
    assert_eq!(
        (focus["accepted"].as_u64(), focus["skipped"].as_u64()),
        (Some(4), Some(1))
    );
    assert_eq!(focus["rejected"], json!([]));

    let r = srv
        .get_ok("/api/v1/reconciliation?from=2026-01-01&to=2026-01-02&group_by=provider,day")
        .await;
    assert_eq!(r["group_by"], json!(["provider", "day"]));
    assert_eq!(r["rows"].as_array().unwrap().len(), 6, "{r:#}");
    // (provider, day, billed, metered, gap, gap_pct, coverage_pct, unattributed)
    let expected = [
        // 1834.5210 + 250.00 cents = 18.34521 + 2.5
        (
            "anthropic",
            "2026-01-01",
            "20.84521",
            "20",
            "0.84521",
            "4.05",
            "95.95",
            "0.84521",
        ),
        // 3.0000000000 + 2.0000000000000001 usage + 0.40 tax
        (
            "aws",
            "2026-01-01",
            "5.4000000000000001",
            "4.75",
            "0.6500000000000001",
            "12.04",
            "87.96",
            "0.6500000000000001",
        ),
        // 1.734 + 0.96
        (
            "openai",
            "2026-01-01",
            "2.694",
            "2.6",
            "0.094",
            "3.49",
            "96.51",
            "0.094",
        ),
        // 1000 + 12.5 + 300 cents = 10 + 0.125 + 3: over-metered, nothing unattributed
        (
            "anthropic",
            "2026-01-02",
            "13.125",
            "13.5",
            "-0.375",
            "-2.86",
            "102.86",
            "0",
        ),
        ("aws", "2026-01-02", "1.25", "1.25", "0", "0", "100", "0"),
        // 2.10 + 1.25
        ("openai", "2026-01-02", "3.35", "3.35", "0", "0", "100", "0"),
    ];
    for (i, (provider, day, billed, metered, gap, gap_pct, coverage, unattributed)) in
        expected.iter().enumerate()
    {
        let got = &r["rows"][i];
        assert_eq!(
            (&got["provider"], &got["day"]),
            (&json!(provider), &json!(day)),
            "row {i}"
        );
        assert_eq!(
            d(&got["billed"]),
            billed.parse::<Decimal>().unwrap(),
            "{provider} {day} billed"
        );
        assert_eq!(
            d(&got["metered"]),
            metered.parse::<Decimal>().unwrap(),
            "{provider} {day} metered"
        );
        assert_eq!(
            d(&got["gap"]),
            gap.parse::<Decimal>().unwrap(),
            "{provider} {day} gap"
        );
        assert_eq!(got["gap_pct"], *gap_pct, "{provider} {day} gap_pct");
        assert_eq!(got["coverage_pct"], *coverage, "{provider} {day} coverage");
        assert_eq!(
            d(&got["unattributed"]),
            unattributed.parse::<Decimal>().unwrap(),
            "{provider} {day} unattributed"
        );
    }
    let aws1 = row(&r, "aws", Some("2026-01-01"));
    assert_eq!(d(&aws1["billed_usage"]), dec!(5.0000000000000001));
    assert_eq!(d(&aws1["billed_other"]), dec!(0.4));
    assert_eq!(aws1["billed_lines"], 3);
    assert_eq!(row(&r, "openai", Some("2026-01-01"))["requests"], 3);

    let total = &r["total"];
    assert_eq!(d(&total["billed"]), dec!(46.6642100000000001));
    assert_eq!(d(&total["metered"]), dec!(45.45));
    assert_eq!(d(&total["gap"]), dec!(1.2142100000000001));
    assert_eq!(d(&total["unattributed"]), dec!(1.5892100000000001));
    assert_eq!(total["gap_pct"], "2.6");
    assert_eq!(total["coverage_pct"], "97.4");

    // Metered equals /api/v1/costs for the same filter, group by group.
    let costs = srv
        .get_ok("/api/v1/costs?from=2026-01-01&to=2026-01-02&group_by=provider&interval=day")
        .await;
    let cost_rows = costs["rows"].as_array().unwrap();
    assert_eq!(cost_rows.len(), 6);
    for c in cost_rows {
        let day = &c["bucket"].as_str().unwrap()[..10];
        let rec = row(&r, c["provider"].as_str().unwrap(), Some(day));
        assert_eq!(d(&rec["metered"]), d(&c["cost"]), "{c}");
        assert_eq!(d(&rec["metered_reported"]), d(&c["reported_cost"]), "{c}");
        assert_eq!(d(&rec["metered_computed"]), d(&c["computed_cost"]), "{c}");
        assert_eq!(rec["requests"], c["requests"]);
    }
    assert_eq!(d(&total["metered"]), d(&costs["total"]["cost"]));
    srv.stop().await;
}

#[tokio::test]
async fn restated_periods_replace_and_the_same_file_changes_nothing() {
    let srv = start().await;
    let week = fixture("openai-costs/costs-2026-01-01_03.json");
    let first = import(
        &srv,
        "format=openai-costs",
        "application/json",
        week.clone(),
    )
    .await;
    assert_eq!(
        (&first["accepted"], &first["replaced"], &first["unchanged"]),
        (&json!(4), &json!(0), &json!(0))
    );

    // The same bytes again: nothing changes, and the answer names the first import.
    let again = import(
        &srv,
        "format=openai-costs",
        "application/json",
        week.clone(),
    )
    .await;
    assert_eq!(
        (&again["accepted"], &again["replaced"], &again["unchanged"]),
        (&json!(0), &json!(0), &json!(4))
    );
    assert_eq!(again["import_id"], first["import_id"]);
    // Gzipped, it is still the same file.
    let gz = common::gzip(&week);
    let gz_answer: Value = srv
        .client
        .post(srv.url("/v1/billing?format=openai-costs"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gz)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(gz_answer["unchanged"], 4, "{gz_answer}");

    // OpenAI restates Jan 2 (output 1.25 → 1.30) and bills Jan 3 (0.5), under the older
    // `result` key, as an array of two pages. Jan 2 input is identical: unchanged.
    let restated = import(
        &srv,
        "format=openai-costs",
        "application/json",
        fixture("openai-costs/costs-2026-01-02_03-restated.json"),
    )
    .await;
    assert_eq!(
        (
            &restated["accepted"],
            &restated["replaced"],
            &restated["unchanged"]
        ),
        (&json!(2), &json!(1), &json!(1)),
        "{restated}"
    );
    let r = srv
        .get_ok("/api/v1/reconciliation?from=2026-01-01&to=2026-01-03")
        .await;
    // Jan 1 untouched (outside the restated period); Jan 2 = 2.10 + 1.30; Jan 3 = 0.5.
    assert_eq!(
        d(&row(&r, "openai", Some("2026-01-01"))["billed"]),
        dec!(2.694)
    );
    assert_eq!(
        d(&row(&r, "openai", Some("2026-01-02"))["billed"]),
        dec!(3.40)
    );
    assert_eq!(
        d(&row(&r, "openai", Some("2026-01-03"))["billed"]),
        dec!(0.5)
    );
    assert_eq!(d(&r["total"]["billed"]), dec!(6.594));
    // Nothing metered: every billed dollar is unattributed.
    assert_eq!(d(&r["total"]["unattributed"]), dec!(6.594));
    assert_eq!(r["total"]["coverage_pct"], "0");

    // The first week's file again: still a no-op, even though part of it was restated since.
    let old = import(&srv, "format=openai-costs", "application/json", week).await;
    assert_eq!((&old["accepted"], &old["replaced"]), (&json!(0), &json!(0)));
    let r2 = srv
        .get_ok("/api/v1/reconciliation?from=2026-01-01&to=2026-01-03")
        .await;
    assert_eq!(d(&r2["total"]["billed"]), dec!(6.594));

    // Anthropic restates Jan 2: the input line is identical, the output line changed
    // (12.5 → 62.5 cents) and the web-search line is gone.
    import(
        &srv,
        "format=anthropic-cost",
        "application/json",
        fixture("anthropic-cost/cost-report-2026-01-01_02.json"),
    )
    .await;
    let a = import(
        &srv,
        "format=anthropic-cost",
        "application/json",
        fixture("anthropic-cost/cost-report-2026-01-02-restated.json"),
    )
    .await;
    assert_eq!(
        (&a["accepted"], &a["replaced"], &a["unchanged"]),
        (&json!(1), &json!(2), &json!(1)),
        "{a}"
    );
    let r = srv
        .get_ok("/api/v1/reconciliation?from=2026-01-01&to=2026-01-02&provider=anthropic")
        .await;
    assert_eq!(
        d(&row(&r, "anthropic", Some("2026-01-01"))["billed"]),
        dec!(20.84521)
    );
    assert_eq!(
        d(&row(&r, "anthropic", Some("2026-01-02"))["billed"]),
        dec!(10.625)
    );

    // The import list shows what each import did and what is left of it.
    let list = srv.get_ok("/api/v1/billing/imports").await;
    let imports = list["imports"].as_array().unwrap();
    assert_eq!(imports.len(), 4, "{list:#}");
    let first_row = imports
        .iter()
        .find(|i| i["id"] == first["import_id"])
        .unwrap();
    // 4 lines written; the Jan 2 output line was replaced since.
    assert_eq!(
        (&first_row["accepted"], &first_row["live_lines"]),
        (&json!(4), &json!(3))
    );
    assert_eq!(first_row["format"], "openai-costs");
    srv.stop().await;
}

#[tokio::test]
async fn bad_lines_are_named_kept_and_good_lines_still_land() {
    let srv = start().await;
    // openai-costs CSV: line 5 has "abc" as amount, line 6 ends before it starts, line 7 is short.
    let csv = import(
        &srv,
        "format=openai-costs",
        "text/csv",
        fixture("openai-costs/costs-export.csv"),
    )
    .await;
    assert_eq!(csv["accepted"], 3);
    let rejected = csv["rejected"].as_array().unwrap();
    let lines: Vec<(u64, &str)> = rejected
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["field"].as_str().unwrap()))
        .collect();
    assert_eq!(
        lines,
        vec![(5, "amount_value"), (6, "end_time"), (7, "(row)")],
        "{csv:#}"
    );
    assert!(rejected[0]["error"].as_str().unwrap().contains("abc"));

    // anthropic-cost: result 2 has "ninety" cents, result 3 a bad currency, the second bucket
    // has no ending_at, so its one result (line 4) cannot be placed.
    let a = import(
        &srv,
        "format=anthropic-cost",
        "application/json",
        fixture("anthropic-cost/cost-report-bad-rows.json"),
    )
    .await;
    assert_eq!(a["accepted"], 1);
    let fields: Vec<(u64, &str)> = a["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["field"].as_str().unwrap()))
        .collect();
    assert_eq!(
        fields,
        vec![
            (2, "data[0].results[1].amount"),
            (3, "data[0].results[2].currency"),
            (4, "data[1].ending_at"),
        ]
    );

    // Mapped CSV: line 4's inclusive end date is before its start, line 5's date does not
    // exist, line 6 has no amount.
    let v = import(
        &srv,
        "format=csv&date_column=day&end_date_column=end_day&amount_column=amount\
         &currency_column=currency&provider_column=vendor&model_column=model",
        "text/csv",
        fixture("csv/vendors-usd.csv"),
    )
    .await;
    assert_eq!(v["accepted"], 2);
    let fields: Vec<(u64, &str)> = v["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["field"].as_str().unwrap()))
        .collect();
    assert_eq!(fields, vec![(4, "end_day"), (5, "day"), (6, "amount")]);

    // Every bad line is kept in the dead-letter table with its text.
    let dead = srv
        .get_ok("/api/v1/rejects?source_format=openai-costs")
        .await;
    assert_eq!(dead["total"], 3);
    let raws: Vec<&str> = dead["rejects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["raw"].as_str().unwrap())
        .collect();
    assert!(raws.iter().any(|r| r.contains(",abc,")), "{raws:?}");
    let dead = srv
        .get_ok("/api/v1/rejects?source_format=anthropic-cost")
        .await;
    assert_eq!(dead["total"], 3);
    assert!(dead["rejects"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["raw"].as_str().unwrap().contains("ninety")));

    // The good lines landed: openai proj_api Jan 1 = 0.50 + 1.00, Jan 2 = 0.25 (+ vendors'
    // OpenAI 0.10 on Jan 1); anthropic 99.9 cents on Jan 1.
    let r = srv
        .get_ok("/api/v1/reconciliation?from=2026-01-01&to=2026-01-02")
        .await;
    assert_eq!(
        d(&row(&r, "openai", Some("2026-01-01"))["billed"]),
        dec!(1.60)
    );
    assert_eq!(
        d(&row(&r, "openai", Some("2026-01-02"))["billed"]),
        dec!(0.25)
    );
    assert_eq!(
        d(&row(&r, "anthropic", Some("2026-01-01"))["billed"]),
        dec!(0.999)
    );
    srv.stop().await;
}

#[tokio::test]
async fn usage_reports_are_volumes_never_money() {
    let srv = start().await;
    let o = import(
        &srv,
        "format=openai-usage",
        "application/json",
        fixture("openai-usage/completions-2026-01-01.json"),
    )
    .await;
    assert_eq!(o["kind"], "usage");
    assert_eq!(o["accepted"], 2);
    let rejected: Vec<(u64, &str)> = o["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["field"].as_str().unwrap()))
        .collect();
    assert_eq!(
        rejected,
        vec![
            (3, "data[0].results[2].input_tokens"),
            (4, "data[0].results[3].num_model_requests"),
        ]
    );
    let o2 = import(
        &srv,
        "format=openai-usage",
        "application/json",
        fixture("openai-usage/completions-2026-01-02-result-key.json"),
    )
    .await;
    assert_eq!(o2["accepted"], 1);
    let a = import(
        &srv,
        "format=anthropic-usage",
        "application/json",
        fixture("anthropic-usage/messages-2026-01-01.json"),
    )
    .await;
    assert_eq!(a["accepted"], 2);

    // Metered side: one OpenAI call on Jan 1 with 1,000 input and 100 output tokens.
    let (status, _) = srv
        .ingest_json(&json!({"timestamp": "2026-01-01T00:30:00Z", "provider": "openai",
            "model": "gpt-4.1-mini-2025-04-14", "usage": {"input_tokens": 1000, "output_tokens": 100}}))
        .await;
    assert_eq!(status, 200);

    let r = srv
        .get_ok("/api/v1/reconciliation?from=2026-01-01&to=2026-01-02")
        .await;
    let o1 = row(&r, "openai", Some("2026-01-01"));
    // No money was billed: usage reports are volumes.
    assert_eq!(d(&o1["billed"]), Decimal::ZERO);
    assert_eq!(o1["billed_lines"], 0);
    // IN: 90000 + 5000; OUT: 12000 + 2000; requests 41 + 3.
    assert_eq!(o1["billed_input_tokens"], 95000);
    assert_eq!(o1["billed_output_tokens"], 14000);
    assert_eq!(o1["billed_requests"], 44);
    assert_eq!(o1["metered_input_tokens"], 1000);
    assert_eq!(o1["metered_output_tokens"], 100);
    assert_eq!(o1["requests"], 1);
    let o2 = row(&r, "openai", Some("2026-01-02"));
    assert_eq!(
        (&o2["billed_input_tokens"], &o2["billed_requests"]),
        (&json!(1000), &json!(2))
    );
    // Anthropic: IN = 52000 + 8000 + 0 + 310000 and 1000 + 200; OUT = 41000 + 300; the report
    // has no request count, so it is unknown rather than zero.
    let a1 = row(&r, "anthropic", Some("2026-01-01"));
    assert_eq!(a1["billed_input_tokens"], 371200);
    assert_eq!(a1["billed_output_tokens"], 41300);
    assert_eq!(a1["billed_requests"], Value::Null);
    assert_eq!(r["total"]["billed_requests"], Value::Null);
    assert_eq!(r["total"]["billed_input_tokens"], 95000 + 1000 + 371200);

    // By model: the OpenAI usage line with a model meets events of that model.
    let by_model = srv
        .get_ok("/api/v1/reconciliation?from=2026-01-01&to=2026-01-01&group_by=provider,model&provider=openai")
        .await;
    let mini = by_model["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == "gpt-4.1-mini-2025-04-14")
        .unwrap();
    assert_eq!(
        (&mini["billed_input_tokens"], &mini["metered_input_tokens"]),
        (&json!(90000), &json!(1000))
    );
    srv.stop().await;
}

#[tokio::test]
async fn focus_corrections_currencies_and_parquet() {
    let srv = start().await;
    // FOCUS 1.3 (ServiceProviderName): usage 1.734, a correction of −0.034, a credit of −0.2;
    // line 5 has an unknown ChargeClass and line 6 tags that are not JSON.
    let c = import(
        &srv,
        "format=focus",
        "text/csv",
        fixture("focus/openai-corrections-1.3.csv"),
    )
    .await;
    assert_eq!(c["accepted"], 3, "{c:#}");
    let fields: Vec<(u64, &str)> = c["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["field"].as_str().unwrap()))
        .collect();
    assert_eq!(fields, vec![(5, "ChargeClass"), (6, "Tags")]);
    // FOCUS 1.0 from Azure, in euros: 4.20 + 0.35 EUR, provider Microsoft → azure.
    let e = import(
        &srv,
        "format=focus",
        "text/csv",
        fixture("focus/azure-openai-eur-1.0.csv"),
    )
    .await;
    assert_eq!(e["accepted"], 2);

    let r = srv
        .get_ok("/api/v1/reconciliation?from=2026-01-01&to=2026-01-01")
        .await;
    let o = row(&r, "openai", Some("2026-01-01"));
    assert_eq!(d(&o["billed"]), dec!(1.5)); // 1.734 − 0.034 − 0.2
    assert_eq!(d(&o["billed_usage"]), dec!(1.7)); // the correction is a usage charge
    assert_eq!(d(&o["billed_other"]), dec!(-0.2)); // the credit
    let az = row(&r, "azure", Some("2026-01-01"));
    // Euros are listed on their own and never added to the USD figures.
    assert_eq!(d(&az["billed"]), Decimal::ZERO);
    assert_eq!(d(&az["billed_other_currencies"]["EUR"]), dec!(4.55));
    assert_eq!(az["billed_lines"], 2);
    assert_eq!(az["gap_pct"], Value::Null);
    assert_eq!(d(&r["total"]["billed"]), dec!(1.5));
    assert_eq!(d(&r["total"]["billed_other_currencies"]["EUR"]), dec!(4.55));

    // The same FOCUS rows as Parquet (written by DuckDB with DECIMAL costs, TIMESTAMPTZ
    // periods and a MAP of tags) give the same billing as the CSV did, in another project.
    let dir = tempfile::tempdir().unwrap();
    let csv_path = "tests/fixtures/billing/focus/aws-bedrock-1.2.csv";
    let parquet_path = dir.path().join("aws.parquet");
    {
        let conn = duckdb::Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!(
            "COPY (SELECT * REPLACE (
                 CAST(BilledCost AS DECIMAL(38, 18)) AS BilledCost,
                 CAST(ChargePeriodStart AS TIMESTAMPTZ) AS ChargePeriodStart,
                 CAST(ChargePeriodEnd AS TIMESTAMPTZ) AS ChargePeriodEnd,
                 CAST(CASE WHEN Tags IS NULL THEN NULL ELSE json(Tags) END AS MAP(VARCHAR, VARCHAR)) AS Tags)
               FROM read_csv('{csv_path}', all_varchar = true))
             TO '{}' (FORMAT PARQUET)",
            parquet_path.display()
        ))
        .unwrap();
    }
    let parquet = std::fs::read(&parquet_path).unwrap();
    let p = import(
        &srv,
        "format=focus&project=parquet",
        "application/vnd.apache.parquet",
        parquet,
    )
    .await;
    assert_eq!(
        (&p["accepted"], &p["skipped"], &p["project"]),
        (&json!(4), &json!(1), &json!("parquet")),
        "{p:#}"
    );
    let c2 = import(
        &srv,
        "format=focus&project=csv",
        "text/csv",
        fixture("focus/aws-bedrock-1.2.csv"),
    )
    .await;
    assert_eq!(c2["accepted"], 4);
    for project in ["parquet", "csv"] {
        let r = srv
            .get_ok(&format!(
                "/api/v1/reconciliation?from=2026-01-01&to=2026-01-02&project={project}"
            ))
            .await;
        assert_eq!(
            d(&row(&r, "aws", Some("2026-01-01"))["billed"]),
            dec!(5.4000000000000001),
            "{project}"
        );
        assert_eq!(
            d(&row(&r, "aws", Some("2026-01-02"))["billed"]),
            dec!(1.25),
            "{project}"
        );
    }
    // all_services keeps the EC2 row too.
    let all = import(
        &srv,
        "format=focus&project=all&all_services=true",
        "text/csv",
        fixture("focus/aws-bedrock-1.2.csv"),
    )
    .await;
    assert_eq!((&all["accepted"], &all["skipped"]), (&json!(5), &json!(0)));
    srv.stop().await;
}

#[tokio::test]
async fn a_mapped_csv_in_euros() {
    let srv = start().await;
    let m = import(
        &srv,
        "format=csv&delimiter=%3B&date_column=Date&amount_column=Cost&currency=EUR&provider=mistral\
         &model_column=Model&quantity_column=Tokens&unit=tokens&project_column=Workspace",
        "text/csv",
        fixture("csv/mistral-invoice-eur.csv"),
    )
    .await;
    assert_eq!(m["accepted"], 3, "{m:#}");
    assert_eq!(m["rejected"], json!([]));
    let r = srv
        .get_ok("/api/v1/reconciliation?from=2026-01-01&to=2026-01-02&group_by=provider,day,model")
        .await;
    let eur = |model: &str, day: &str| {
        let row = r["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["model"] == model && x["day"] == day)
            .unwrap_or_else(|| panic!("{model} {day}: {r:#}"));
        assert_eq!(row["provider"], "mistral");
        assert_eq!(d(&row["billed"]), Decimal::ZERO);
        d(&row["billed_other_currencies"]["EUR"])
    };
    assert_eq!(eur("mistral-large-latest", "2026-01-01"), dec!(1.50));
    assert_eq!(eur("mistral-large-latest", "2026-01-02"), dec!(0.75));
    assert_eq!(eur("mistral-small-latest", "2026-01-02"), dec!(-0.10));
    assert_eq!(d(&r["total"]["billed_other_currencies"]["EUR"]), dec!(2.15));

    // A mapping naming a column the file does not have is a 400 naming the parameter.
    let (status, body) = post_billing(
        &srv,
        None,
        "format=csv&delimiter=%3B&date_column=Datum&amount_column=Cost&currency=EUR&provider=mistral",
        "text/csv",
        fixture("csv/mistral-invoice-eur.csv"),
    )
    .await;
    assert_eq!(status, 400);
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("date_column") && msg.contains("Datum"),
        "{msg}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn reconciliation_by_project_and_model_in_a_time_zone() {
    let srv = start_with(|c| c.admin_key = Some(ADMIN.into())).await;
    // Two projects' events; billing is imported into project `web` only.
    let mut events = scenario_events();
    for e in events.as_array_mut().unwrap() {
        e["project"] = json!("web");
    }
    events.as_array_mut().unwrap().push(json!({
        "timestamp": "2026-01-01T10:00:00Z", "provider": "openai",
        "model": "gpt-4.1-mini-2025-04-14", "cost": "9", "project": "api"}));
    let (status, _) = srv.ingest_json(&events).await;
    assert_eq!(status, 200);
    import(
        &srv,
        "format=openai-costs&project=web",
        "application/json",
        fixture("openai-costs/costs-2026-01-01_03.json"),
    )
    .await;

    let r = srv
        .get_ok("/api/v1/reconciliation?from=2026-01-01&to=2026-01-02&group_by=provider,day,project&provider=openai")
        .await;
    let find = |project: &str, day: &str| {
        r["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["project"] == project && x["day"] == day)
            .unwrap_or_else(|| panic!("{project} {day}: {r:#}"))
            .clone()
    };
    let web1 = find("web", "2026-01-01");
    assert_eq!(
        (d(&web1["billed"]), d(&web1["metered"])),
        (dec!(2.694), dec!(2.6))
    );
    let api1 = find("api", "2026-01-01");
    assert_eq!(
        (d(&api1["billed"]), d(&api1["metered"])),
        (dec!(0), dec!(9))
    );
    assert_eq!(api1["coverage_pct"], Value::Null);

    // By model: the cost lines name gpt-4.1-mini-2025-04-14 through their line items.
    let r = srv
        .get_ok("/api/v1/reconciliation?from=2026-01-02&to=2026-01-02&group_by=provider,model&provider=openai&project=web")
        .await;
    assert_eq!(r["group_by"], json!(["provider", "model"]));
    let rows = r["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{r:#}");
    assert_eq!(rows[0]["model"], "gpt-4.1-mini-2025-04-14");
    assert_eq!(
        (d(&rows[0]["billed"]), d(&rows[0]["metered"])),
        (dec!(3.35), dec!(3.35))
    );
    assert!(rows[0].get("day").is_none());

    // In New York, the UTC day of a billing line starts at 19:00 the day before: billing
    // lines fall into the local day of their period start, events into their own. Jan 1's
    // openai lines (00:00Z) are in local Dec 31; the events of Jan 1 10:00Z–23:59Z in Jan 1.
    let r = srv
        .get_ok("/api/v1/reconciliation?from=2025-12-31&to=2026-01-02&tz=America/New_York&provider=openai&project=web")
        .await;
    assert_eq!(r["tz"], "America/New_York");
    assert_eq!(
        d(&row(&r, "openai", Some("2025-12-31"))["billed"]),
        dec!(2.694)
    );
    assert_eq!(
        d(&row(&r, "openai", Some("2025-12-31"))["metered"]),
        dec!(0)
    );
    assert_eq!(
        d(&row(&r, "openai", Some("2026-01-01"))["billed"]),
        dec!(3.35)
    );
    // Jan 1 local: 0.9 + 1.2 (10:00Z, 12:00Z) + 0.5 (23:59:59Z = 18:59 local) + nothing else.
    assert_eq!(
        d(&row(&r, "openai", Some("2026-01-01"))["metered"]),
        dec!(2.6)
    );
    // Jan 2 local: 2.0 (09:00Z = 04:00) + 1.35 (18:00Z = 13:00).
    assert_eq!(
        d(&row(&r, "openai", Some("2026-01-02"))["metered"]),
        dec!(3.35)
    );
    let costs = srv
        .get_ok("/api/v1/costs?from=2025-12-31&to=2026-01-02&tz=America/New_York&provider=openai&project=web&interval=day&group_by=provider")
        .await;
    assert_eq!(d(&r["total"]["metered"]), d(&costs["total"]["cost"]));
    srv.stop().await;
}

#[tokio::test]
async fn gateway_markup_is_reported_cost_against_list_price() {
    let srv = start().await;
    // Claude Sonnet 4.5 lists at $3 per million input and $15 per million output tokens, so
    // 100,000 in + 10,000 out list at 0.30 + 0.15 = 0.45. The gateway charged 0.495 (+10 %)
    // and 0.5 (+0.05 over 0.45).
    let claude = "claude-sonnet-4-5-20250929";
    let usage = json!({"input_tokens": 100000, "output_tokens": 10000});
    let events = json!([
        {"timestamp": "2026-01-01T10:00:00Z", "provider": "anthropic", "model": claude,
         "route": "openrouter", "usage": usage, "cost": "0.495"},
        {"timestamp": "2026-01-01T11:00:00Z", "provider": "anthropic", "model": claude,
         "route": "openrouter", "usage": usage, "cost": "0.5"},
        // No reported cost: not compared.
        {"timestamp": "2026-01-01T12:00:00Z", "provider": "anthropic", "model": claude,
         "route": "openrouter", "usage": usage},
        // Direct traffic is not a gateway.
        {"timestamp": "2026-01-01T13:00:00Z", "provider": "anthropic", "model": claude,
         "usage": usage, "cost": "0.45"},
    ]);
    let (status, _) = srv.ingest_json(&events).await;
    assert_eq!(status, 200);
    let r = srv
        .get_ok("/api/v1/reconciliation?from=2026-01-01&to=2026-01-01")
        .await;
    let markup = r["gateway_markup"].as_array().unwrap();
    assert_eq!(markup.len(), 1, "{r:#}");
    let m = &markup[0];
    assert_eq!(
        (&m["route"], &m["provider"]),
        (&json!("openrouter"), &json!("anthropic"))
    );
    assert_eq!(
        (&m["requests"], &m["compared_requests"]),
        (&json!(3), &json!(2))
    );
    assert_eq!(d(&m["reported_cost"]), dec!(0.995));
    assert_eq!(d(&m["list_cost"]), dec!(0.90));
    assert_eq!(d(&m["markup"]), dec!(0.095));
    assert_eq!(m["markup_pct"], "10.56"); // 0.095 / 0.90
    srv.stop().await;
}

#[tokio::test]
async fn errors_name_the_parameter() {
    let srv = start().await;
    let body = fixture("openai-costs/costs-2026-01-01_03.json");
    for (query, ct, needle, want) in [
        ("", "application/json", "format", 400),
        ("format=stripe", "application/json", "stripe", 400),
        (
            "format=openai-costs&colour=red",
            "application/json",
            "colour",
            400,
        ),
        ("format=anthropic-cost", "text/csv", "anthropic-cost", 415),
        ("format=openai-costs", "image/png", "image/png", 415),
        (
            "format=focus",
            "application/vnd.apache.parquet",
            "Parquet",
            400,
        ),
    ] {
        let (status, answer) = post_billing(&srv, None, query, ct, body.clone()).await;
        assert_eq!(status, want, "{query}: {answer}");
        let msg = answer["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{query}: {msg}");
    }
    // A body that is not JSON at all, and an empty one.
    let (status, _) = post_billing(
        &srv,
        None,
        "format=openai-usage",
        "application/json",
        b"{not json".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = post_billing(&srv, None, "format=focus", "text/csv", Vec::new()).await;
    assert_eq!(status, 400);
    // A FOCUS file without the mandatory cost column.
    let (status, answer) = post_billing(
        &srv,
        None,
        "format=focus",
        "text/csv",
        b"ProviderName,ChargePeriodStart\nOpenAI,2026-01-01\n".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("BilledCost"));
    // A page saying more pages follow is imported, with a warning.
    let (status, answer) = post_billing(
        &srv,
        None,
        "format=openai-costs",
        "application/json",
        br#"{"data":[{"start_time":1767225600,"end_time":1767312000,"results":[]}],"has_more":true,"next_page":"p2"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        answer["warnings"][0].as_str().unwrap().contains("has_more"),
        "{answer}"
    );

    for (query, needle) in [
        ("group_by=feature", "feature"),
        ("group_by=provider,day,day", "twice"),
        ("from=yesterday", "from"),
        ("to=2026-01-01&from=2026-02-01", "before"),
        ("tz=Mars/Olympus", "tz"),
        ("interval=day", "interval"),
        ("customer_id=acme", "customer_id"),
    ] {
        let (status, answer) = srv.get(&format!("/api/v1/reconciliation?{query}")).await;
        assert_eq!(status, 400, "{query}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains(needle),
            "{query}: {answer}"
        );
    }
    for (query, needle) in [
        ("format=xlsx", "xlsx"),
        ("group_by=model", "group_by"),
        ("colour=1", "colour"),
    ] {
        let (status, answer) = srv.get(&format!("/api/v1/export/focus?{query}")).await;
        assert_eq!(status, 400, "{query}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains(needle),
            "{query}: {answer}"
        );
    }
    let (status, _) = srv.get("/api/v1/billing/imports?limit=0").await;
    assert_eq!(status, 400);
    let (status, _) = srv.get("/api/v1/billing/nothing").await;
    assert_eq!(status, 404);
    srv.stop().await;
}

#[tokio::test]
async fn an_oversized_body_is_413() {
    let srv = start_with(|c| c.ingest.max_body_bytes = 1024).await;
    let (status, answer) = post_billing(
        &srv,
        None,
        "format=openai-costs",
        "application/json",
        fixture("openai-costs/costs-2026-01-01_03.json"),
    )
    .await;
    assert_eq!(status, 413, "{answer}");
    srv.stop().await;
}

/// Reads an export back with DuckDB and sums its money columns exactly.
fn sums_of_export(path: &std::path::Path, parquet: bool) -> (Decimal, Decimal, i64, i64) {
    let conn = duckdb::Connection::open_in_memory().unwrap();
    let source = if parquet {
        format!("read_parquet('{}')", path.display())
    } else {
        // As text, so no float reading of the decimals sneaks in.
        format!("read_csv('{}', all_varchar = true)", path.display())
    };
    conn.query_row(
        &format!(
            "SELECT sum(CAST(BilledCost AS DECIMAL(38, 12)))::VARCHAR,
                    sum(CAST(ListCost AS DECIMAL(38, 12)))::VARCHAR,
                    sum(CAST(x_Requests AS BIGINT))::BIGINT,
                    count(*)::BIGINT
             FROM {source}"
        ),
        [],
        |r| {
            Ok((
                r.get::<_, String>(0)?.parse().unwrap(),
                r.get::<_, String>(1)?.parse().unwrap(),
                r.get(2)?,
                r.get(3)?,
            ))
        },
    )
    .unwrap()
}

#[tokio::test]
async fn the_focus_export_read_back_by_duckdb_sums_to_the_costs_api() {
    let srv = start().await;
    let claude = "claude-sonnet-4-5-20250929";
    let mut events = scenario_events();
    // Add priced calls (computed list cost), tagged and attributed, and one unpriced call.
    for (i, ts) in ["2026-01-01T06:00:00Z", "2026-01-02T06:00:00Z"]
        .iter()
        .enumerate()
    {
        events.as_array_mut().unwrap().push(json!({
            "timestamp": ts, "provider": "anthropic", "model": claude,
            "usage": {"input_tokens": 1234 + i, "output_tokens": 567},
            "team_id": "support", "feature": "bot", "user_id": "u-\"quoted\"", "tags": ["a", "b"]}));
    }
    events.as_array_mut().unwrap().push(json!({
        "timestamp": "2026-01-01T07:00:00Z", "model": "nobody-prices-this",
        "usage": {"input_tokens": 10, "output_tokens": 5}}));
    let (status, _) = srv.ingest_json(&events).await;
    assert_eq!(status, 200);
    let costs = srv
        .get_ok("/api/v1/costs?from=2026-01-01&to=2026-01-02")
        .await;
    let want_cost = d(&costs["total"]["cost"]);
    let want_list = d(&costs["total"]["computed_cost"]);
    let want_requests = costs["total"]["requests"].as_i64().unwrap();
    assert_eq!(want_requests, 13);

    let dir = tempfile::tempdir().unwrap();
    for format in ["csv", "parquet"] {
        let resp = srv
            .client
            .get(srv.url(&format!(
                "/api/v1/export/focus?from=2026-01-01&to=2026-01-02&format={format}"
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(
            ct.starts_with(if format == "csv" {
                "text/csv"
            } else {
                "application/vnd.apache.parquet"
            }),
            "{ct}"
        );
        let bytes = resp.bytes().await.unwrap();
        let path = dir.path().join(format!("export.{format}"));
        std::fs::write(&path, &bytes).unwrap();
        let (billed, list, requests, rows) = sums_of_export(&path, format == "parquet");
        assert_eq!(billed, want_cost, "{format}");
        assert_eq!(list, want_list, "{format}");
        assert_eq!(requests, want_requests, "{format}");
        assert!(rows >= 7, "{format}: {rows} rows");
    }

    // FOCUS columns, values and tags in the CSV.
    let resp = srv
        .client
        .get(srv.url("/api/v1/export/focus?from=2026-01-01&to=2026-01-01&feature=bot"))
        .send()
        .await
        .unwrap();
    let text = resp.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    for col in [
        "BilledCost",
        "BillingAccountId",
        "BillingCurrency",
        "BillingPeriodStart",
        "BillingPeriodEnd",
        "ChargeCategory",
        "ChargeClass",
        "ChargeDescription",
        "ChargePeriodStart",
        "ChargePeriodEnd",
        "ContractedCost",
        "EffectiveCost",
        "InvoiceIssuerName",
        "ListCost",
        "PricingQuantity",
        "PricingUnit",
        "ProviderName",
        "PublisherName",
        "ServiceCategory",
        "ServiceName",
        "SubAccountId",
        "Tags",
        "ConsumedQuantity",
        "ConsumedUnit",
    ] {
        assert!(header.iter().any(|h| h == col), "missing {col}: {header:?}");
    }
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 1, "{text}");
    let get = |name: &str| records[0][header.iter().position(|h| h == name).unwrap()].to_string();
    assert_eq!(get("ChargePeriodStart"), "2026-01-01T00:00:00Z");
    assert_eq!(get("ChargePeriodEnd"), "2026-01-02T00:00:00Z");
    assert_eq!(get("BillingPeriodStart"), "2026-01-01T00:00:00Z");
    assert_eq!(get("BillingPeriodEnd"), "2026-02-01T00:00:00Z");
    assert_eq!(get("SubAccountId"), "support");
    assert_eq!(get("ProviderName"), "anthropic");
    assert_eq!(get("BillingCurrency"), "USD");
    assert_eq!(get("ConsumedQuantity"), (1234 + 567).to_string());
    // 1234 × $3/M + 567 × $15/M = 0.003702 + 0.008505
    assert_eq!(get("ListCost").parse::<Decimal>().unwrap(), dec!(0.012207));
    let tags: Value = serde_json::from_str(&get("Tags")).unwrap();
    assert_eq!(tags["feature"], "bot");
    assert_eq!(tags["user_id"], "u-\"quoted\"");
    assert_eq!(tags["tags"], "a,b");
    assert_eq!(tags["tally/route"], "direct");
    assert_eq!(tags["tally/cost_source"], "computed");
    srv.stop().await;
}

async fn create_key(srv: &TestServer, role: &str, project: &str) -> String {
    let resp = srv
        .client
        .post(srv.url("/api/v1/keys"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": format!("{role}-{project}"), "role": role, "project": project}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    body["secret"].as_str().unwrap().to_string()
}

// Multi-threaded: the test blocks on the CLI process while the server it talks to runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tally_import_on_the_data_directory_and_through_a_server() {
    let bin = env!("CARGO_BIN_EXE_tally");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Absolute, because the CLI runs in the temp dir; resolved from the package root where
    // cargo runs tests.
    let fixtures = std::fs::canonicalize("tests/fixtures/billing")
        .unwrap()
        .display()
        .to_string();
    let run = |args: &[&str]| {
        std::process::Command::new(bin)
            .args(args)
            .env_remove("TALLY_ADMIN_KEY")
            .env_remove("TALLY_API_KEY")
            .env("TALLY_CONFIG", dir.path().join("none.toml"))
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    std::fs::write(dir.path().join("none.toml"), "").unwrap();
    let out = run(&[
        "import",
        &format!("{fixtures}/openai-costs/costs-2026-01-01_03.json"),
        "--format",
        "openai-costs",
        "--data-dir",
        data.to_str().unwrap(),
        "--project",
        "web",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("accepted 4"), "{stdout}");
    assert!(stdout.contains("project web"), "{stdout}");
    // A mapped CSV with options.
    let out = run(&[
        "import",
        &format!("{fixtures}/csv/mistral-invoice-eur.csv"),
        "--format",
        "csv",
        "-o",
        "delimiter=;",
        "-o",
        "date_column=Date",
        "-o",
        "amount_column=Cost",
        "-o",
        "currency=EUR",
        "-o",
        "provider=mistral",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("accepted 3"));

    // A server on the same data directory sees the lines…
    let srv = start_with(|c| {
        c.data_dir = data.clone();
        c.admin_key = Some(ADMIN.into());
    })
    .await;
    let (_, r) = get_as(&srv, Some(ADMIN), "/api/v1/reconciliation?project=web").await;
    assert_eq!(d(&r["total"]["billed"]), dec!(6.044));
    // …and holds the database, which the CLI says instead of failing obscurely.
    let out = run(&[
        "import",
        &format!("{fixtures}/focus/aws-bedrock-1.2.csv"),
        "--format",
        "focus",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--url"), "{stderr}");
    // Through the running server with a key.
    let ingest = create_key(&srv, "ingest", "web").await;
    let out = run(&[
        "import",
        &format!("{fixtures}/focus/aws-bedrock-1.2.csv"),
        "--format",
        "focus",
        "--url",
        &srv.url,
        "--key",
        &ingest,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("accepted 4, replaced 0, unchanged 0, skipped 1"),
        "{stdout}"
    );
    let (_, r) = get_as(
        &srv,
        Some(ADMIN),
        "/api/v1/reconciliation?project=web&provider=aws",
    )
    .await;
    assert_eq!(d(&r["total"]["billed"]), dec!(6.6500000000000001)); // 5.4000000000000001 + 1.25
                                                                    // A key of another project is refused by the server, and the CLI says why.
    let out = run(&[
        "import",
        &format!("{fixtures}/focus/aws-bedrock-1.2.csv"),
        "--format",
        "focus",
        "--project",
        "other",
        "--url",
        &srv.url,
        "--key",
        &ingest,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("403"));
    srv.stop().await;
}

/// `tally import --url` sends its file again while the server answers 503 (every write slot
/// taken), waiting as `Retry-After` says, and lands it once a slot is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tally_import_through_a_busy_server_retries_until_a_slot_is_free() {
    const BUSY: &str = "tally_ingest_backpressure_total{reason=\"busy\"}";
    let srv = start_with(|c| {
        c.admin_key = Some(ADMIN.into());
        c.ingest.max_concurrent_requests = 1;
        c.ingest.max_wait_ms = 200;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("none.toml"), "").unwrap();
    let file = std::fs::canonicalize("tests/fixtures/billing/focus/aws-bedrock-1.2.csv").unwrap();
    let held = srv
        .hold_write_slot(&common::ndjson(&[
            json!({"id": "held", "model": "gpt-4o", "cost": "1"}),
        ]))
        .await;
    let busy_before = srv.metric(BUSY).await;
    let import = std::process::Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["import", file.to_str().unwrap(), "--format", "focus"])
        .args(["--project", "web", "--url", &srv.url, "--key", ADMIN])
        .env_remove("TALLY_ADMIN_KEY")
        .env_remove("TALLY_API_KEY")
        .env("TALLY_CONFIG", dir.path().join("none.toml"))
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Refused twice (each after the 200 ms wait for a slot), then the slot comes free.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while srv.metric(BUSY).await < busy_before + 2.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the import was not refused twice"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(held.finish().await.starts_with("HTTP/1.1 200"));
    let out = tokio::task::spawn_blocking(move || import.wait_with_output().unwrap())
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("503"), "{stderr}");
    assert!(stderr.contains("retrying in 1 s"), "{stderr}");
    assert!(stdout.contains("accepted 4"), "{stdout}");
    let (_, r) = get_as(
        &srv,
        Some(ADMIN),
        "/api/v1/reconciliation?project=web&provider=aws",
    )
    .await;
    // The file's Bedrock lines, once: 3.0 + 2.0000000000000001 + 0.40 (tax) + 1.25.
    assert_eq!(d(&r["total"]["billed"]), dec!(6.6500000000000001));
    srv.stop().await;
}
