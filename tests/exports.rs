//! `format=json|csv|parquet` through a real server: for every query endpoint the CSV and the
//! Parquet file carry the JSON answer's row list value for value (money exact: decimal text in
//! CSV, `DECIMAL` in Parquet), with the right headers; a wrong `format` is a 400 that names it.

#[macro_use]
mod common;

use common::{start, TestServer};
use serde_json::{json, Value};

/// (method, path with the same filter for all three formats, body, the JSON key of the rows,
/// the file name part, whether fixtures make the rows non-empty).
const QUERIES: &[(&str, &str, &str, &str, &str, bool)] = &[
    (
        "GET",
        "/api/v1/costs?group_by=model",
        "",
        "rows",
        "costs",
        true,
    ),
    (
        "GET",
        "/api/v1/tasks?group_by=agent",
        "",
        "rows",
        "tasks",
        true,
    ),
    ("GET", "/api/v1/runs?order=-cost", "", "runs", "runs", true),
    ("GET", "/api/v1/runs/r1", "", "calls", "run", true),
    (
        "GET",
        "/api/v1/routes?group_by=provider,model",
        "",
        "rows",
        "routes",
        true,
    ),
    (
        "GET",
        "/api/v1/whatif?model=gpt-4o&as_model=claude-sonnet-4-5&group_by=model",
        "",
        "rows",
        "whatif",
        true,
    ),
    (
        "POST",
        "/api/v1/whatif?group_by=model",
        r#"{"map":[{"from":"*","to":"gpt-4o-mini"}]}"#,
        "rows",
        "whatif",
        true,
    ),
    (
        "GET",
        "/api/v1/reprice?group_by=model",
        "",
        "rows",
        "reprice",
        false,
    ),
    ("GET", "/api/v1/unpriced", "", "rows", "unpriced", true),
    (
        "GET",
        "/api/v1/anomalies",
        "",
        "anomalies",
        "anomalies",
        false,
    ),
    (
        "GET",
        "/api/v1/reconciliation?group_by=provider",
        "",
        "rows",
        "reconciliation",
        false,
    ),
    ("GET", "/api/v1/alerts", "", "alerts", "alerts", false),
    ("GET", "/api/v1/rejects", "", "rejects", "rejects", true),
    (
        "GET",
        "/api/v1/billing/imports",
        "",
        "imports",
        "billing-imports",
        true,
    ),
];

fn events() -> Value {
    json!([
        {"id": "r1-1", "timestamp": "2026-11-10T10:00:00Z", "model": "gpt-4o", "run_id": "r1", "task_id": "tk1",
         "agent": "a1", "span_id": "s1", "latency_ms": 1000, "cost": "0.10"},
        {"id": "r1-2", "timestamp": "2026-11-10T10:00:01Z", "model": "gpt-4o", "run_id": "r1", "task_id": "tk1",
         "span_id": "s2", "parent_span_id": "s1", "status": "error", "error_type": "invalid_json", "cost": "0.05"},
        {"id": "r1-3", "timestamp": "2026-11-10T10:00:02Z", "model": "claude-sonnet-4-5", "route": "litellm", "run_id": "r1",
         "task_id": "tk1", "span_id": "s3", "parent_span_id": "s1", "fallback_from": "s2", "cost": "0.300000000001",
         "usage": {"input_tokens": 1200, "output_tokens": 300}},
        {"id": "r2-1", "timestamp": "2026-11-10T11:00:00Z", "model": "gpt-4o", "run_id": "r2", "task_id": "tk2",
         "agent": "a2", "cost": "1.00", "usage": {"input_tokens": 1000, "output_tokens": 200}},
        {"id": "u-1", "timestamp": "2026-11-10T12:00:00Z", "model": "mystery-model-x", "usage": {"input_tokens": 10, "output_tokens": 5}},
    ])
}

/// What a file must carry for one JSON value: its own text; nested values as JSON text.
fn expected_cell(v: Option<&Value>) -> Option<String> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    }
}

/// A Parquet cell (read back as DuckDB's text of its typed value) against the JSON value: equal
/// text, or for a `DECIMAL` column equal decimals (DuckDB pads to the column's scale).
fn same_value(ty: &str, got: Option<&str>, want: Option<&Value>, what: &str) {
    let want = expected_cell(want);
    if ty.starts_with("DECIMAL") {
        let parse = |s: Option<&str>| s.map(|s| s.parse::<rust_decimal::Decimal>().unwrap());
        assert_eq!(parse(got), parse(want.as_deref()), "{what}");
    } else {
        assert_eq!(got, want.as_deref(), "{what}");
    }
}

async fn fetch(srv: &TestServer, method: &str, path: &str, body: &str) -> reqwest::Response {
    let rb = match method {
        "GET" => srv.client.get(srv.url(path)),
        _ => srv
            .client
            .post(srv.url(path))
            .header("content-type", "application/json")
            .body(body.to_string()),
    };
    auth(srv, rb).send().await.unwrap()
}

fn auth(srv: &TestServer, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    match &srv.key {
        Some(k) => rb.bearer_auth(k),
        None => rb,
    }
}

fn with_format(path: &str, format: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}format={format}")
}

/// The rows of a Parquet file, every column read as text, and its column types.
fn read_parquet(bytes: &[u8]) -> (Vec<String>, Vec<String>, Vec<Vec<Option<String>>>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.parquet");
    std::fs::write(&path, bytes).unwrap();
    let conn = duckdb::Connection::open_in_memory().unwrap();
    let lit = path.to_string_lossy().replace('\'', "''");
    let mut types = Vec::new();
    let mut names = Vec::new();
    let mut stmt = conn
        .prepare(&format!("DESCRIBE SELECT * FROM read_parquet('{lit}')"))
        .unwrap();
    let mut rows = stmt.query([]).unwrap();
    while let Some(r) = rows.next().unwrap() {
        names.push(r.get::<_, String>(0).unwrap());
        types.push(r.get::<_, String>(1).unwrap());
    }
    let cols: Vec<String> = names.iter().map(|n| format!("\"{n}\"::VARCHAR")).collect();
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {} FROM read_parquet('{lit}')",
            cols.join(", ")
        ))
        .unwrap();
    let mut out = Vec::new();
    let mut rows = stmt.query([]).unwrap();
    while let Some(r) = rows.next().unwrap() {
        out.push(
            (0..names.len())
                .map(|i| r.get::<_, Option<String>>(i).unwrap())
                .collect(),
        );
    }
    (names, types, out)
}

async fn setup() -> TestServer {
    let srv = start().await;
    let (status, answer) = srv.ingest_json(&events()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["accepted"], 5,
        "every fixture event is valid: {answer}"
    );
    // One record the parser refuses, for the dead-letter table.
    let (status, answer) = srv
        .ingest_json(&json!([{"id": "bad-1", "timestamp": "yesterday-ish", "model": "gpt-4o"}]))
        .await;
    assert_eq!(status, 200, "{answer}");
    let outcome = auth(&srv, srv.client.post(srv.url("/v1/outcomes")))
        .json(&json!({"task_id": "tk1", "outcome": "success", "timestamp": "2026-11-10T10:05:00Z"}))
        .send()
        .await
        .unwrap();
    assert_eq!(outcome.status(), 200);
    let billing =
        std::fs::read("tests/fixtures/billing/openai-costs/costs-2026-01-01_03.json").unwrap();
    let import = auth(
        &srv,
        srv.client.post(srv.url("/v1/billing?format=openai-costs")),
    )
    .header("content-type", "application/json")
    .body(billing)
    .send()
    .await
    .unwrap();
    assert_eq!(import.status(), 200);
    let budget = auth(&srv, srv.client.post(srv.url("/api/v1/budgets")))
        .json(&json!({"name": "monthly", "project": "default", "period": "month", "amount": "50"}))
        .send()
        .await
        .unwrap();
    let status = budget.status();
    assert!(status.is_success(), "{}", budget.text().await.unwrap());
    srv
}

#[tokio::test]
async fn csv_and_parquet_carry_the_json_rows_of_every_query_endpoint() {
    let srv = setup().await;
    for &(method, path, body, key, name, non_empty) in QUERIES {
        let json_answer: Value = fetch(&srv, method, &with_format(path, "json"), body)
            .await
            .json()
            .await
            .unwrap();
        let plain: Value = fetch(&srv, method, path, body).await.json().await.unwrap();
        let rows = json_answer[key]
            .as_array()
            .unwrap_or_else(|| panic!("{path}: no {key} in {json_answer}"));
        assert_eq!(
            plain[key], json_answer[key],
            "{path}: format=json is the default"
        );
        assert!(!non_empty || !rows.is_empty(), "{path}: fixtures give rows");

        // CSV.
        let resp = fetch(&srv, method, &with_format(path, "csv"), body).await;
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(
            resp.headers()["content-type"],
            "text/csv; charset=utf-8",
            "{path}"
        );
        assert_eq!(
            resp.headers()["content-disposition"],
            format!("attachment; filename=\"tally-{name}.csv\"").as_str()
        );
        let text = resp.text().await.unwrap();
        {
            let mut reader = csv::Reader::from_reader(text.as_bytes());
            let header: Vec<String> = reader
                .headers()
                .unwrap()
                .iter()
                .map(str::to_string)
                .collect();
            let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
            assert_eq!(records.len(), rows.len(), "{path}: {text}");
            for (row, rec) in rows.iter().zip(&records) {
                let obj = row.as_object().unwrap();
                for k in obj.keys() {
                    assert!(header.contains(k), "{path}: column {k} missing");
                }
                for (i, col) in header.iter().enumerate() {
                    let want = expected_cell(obj.get(col)).unwrap_or_default();
                    assert_eq!(&rec[i], want.as_str(), "{path}: {col}");
                }
            }
        }

        // Parquet.
        let resp = fetch(&srv, method, &with_format(path, "parquet"), body).await;
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(
            resp.headers()["content-type"],
            "application/vnd.apache.parquet"
        );
        assert_eq!(
            resp.headers()["content-disposition"],
            format!("attachment; filename=\"tally-{name}.parquet\"").as_str()
        );
        let bytes = resp.bytes().await.unwrap();
        assert_eq!(&bytes[..4], b"PAR1", "{path}");
        let (names, types, prows) = read_parquet(&bytes);
        assert_eq!(prows.len(), rows.len(), "{path}");
        for (row, prow) in rows.iter().zip(&prows) {
            let obj = row.as_object().unwrap();
            for k in obj.keys() {
                assert!(names.contains(k), "{path}: parquet column {k} missing");
            }
            for (i, col) in names.iter().enumerate() {
                same_value(
                    &types[i],
                    prow[i].as_deref(),
                    obj.get(col),
                    &format!("{path}: {col}"),
                );
            }
        }
        // Money is a number in the file, not text, and counts are integers.
        for (name, ty) in names.iter().zip(&types) {
            if !rows.is_empty() && ["cost", "requests"].contains(&name.as_str()) {
                let want = if name == "cost" {
                    "DECIMAL(38,"
                } else {
                    "BIGINT"
                };
                assert!(ty.starts_with(want), "{path}: {name} is {ty}");
            }
        }
    }
    srv.stop().await;
}

/// The money in the files is the sum computed here from the events, to the last digit.
#[tokio::test]
async fn money_stays_exact_in_every_format() {
    let srv = setup().await;
    let path = "/api/v1/costs?group_by=model&model=claude-sonnet-4-5,gpt-4o";
    let text = fetch(&srv, "GET", &with_format(path, "csv"), "")
        .await
        .text()
        .await
        .unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader.headers().unwrap().clone();
    let model = header
        .iter()
        .position(|h| h == "model")
        .unwrap_or_else(|| panic!("no model column: {text}"));
    let cost = header.iter().position(|h| h == "cost").unwrap();
    let mut got: Vec<(String, String)> = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[model].to_string(), r[cost].to_string())
        })
        .collect();
    got.sort();
    // gpt-4o: 0.10 + 0.05 + 1.00; claude: one call of 0.300000000001.
    assert_eq!(
        got,
        vec![
            (
                "claude-sonnet-4-5".to_string(),
                "0.300000000001".to_string()
            ),
            ("gpt-4o".to_string(), "1.15".to_string()),
        ]
    );
    let bytes = fetch(&srv, "GET", &with_format(path, "parquet"), "")
        .await
        .bytes()
        .await
        .unwrap();
    let (names, _, rows) = read_parquet(&bytes);
    let model = names.iter().position(|h| h == "model").unwrap();
    let cost = names.iter().position(|h| h == "cost").unwrap();
    let mut got: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r[model].clone().unwrap(), r[cost].clone().unwrap()))
        .collect();
    got.sort();
    let dec = |s: &str| s.parse::<rust_decimal::Decimal>().unwrap();
    assert_eq!(got[0].0, "claude-sonnet-4-5");
    assert_eq!(dec(&got[0].1), dec("0.300000000001"));
    assert_eq!(dec(&got[1].1), dec("1.15"));
    srv.stop().await;
}

#[tokio::test]
async fn a_wrong_format_is_a_bad_request_that_names_it() {
    let srv = start().await;
    for &(method, path, body, ..) in QUERIES {
        let resp = fetch(&srv, method, &with_format(path, "xml"), body).await;
        assert_eq!(resp.status(), 400, "{path}");
        let v: Value = resp.json().await.unwrap();
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains("format"), "{path}: {msg}");
    }
    // Given twice is ambiguous.
    let resp = fetch(&srv, "GET", "/api/v1/costs?format=csv&format=json", "").await;
    assert_eq!(resp.status(), 400);
    // Other parameters are still checked.
    let resp = fetch(&srv, "GET", "/api/v1/costs?format=csv&feture=x", "").await;
    assert_eq!(resp.status(), 400);
    srv.stop().await;
}

/// Budget status nests readings under budgets; a file has one row per reading with its
/// budget's fields beside it (prefixed `budget_`), computed here from the JSON answer.
#[tokio::test]
async fn budget_status_files_have_a_row_per_reading() {
    let srv = setup().await;
    let by_feature = auth(&srv, srv.client.post(srv.url("/api/v1/budgets")))
        .json(
            &json!({"name": "per feature", "project": "default", "period": "month",
                      "amount": "0.5", "split_by": "agent"}),
        )
        .send()
        .await
        .unwrap();
    let status = by_feature.status();
    assert!(status.is_success(), "{}", by_feature.text().await.unwrap());
    let path = "/api/v1/budgets/status?at=2026-11-20T00:00:00Z";
    let answer: Value = fetch(&srv, "GET", path, "").await.json().await.unwrap();
    let mut expected: Vec<serde_json::Map<String, Value>> = Vec::new();
    for b in answer["budgets"].as_array().unwrap() {
        let b = b.as_object().unwrap();
        let mut head = serde_json::Map::new();
        for (k, v) in b.iter().filter(|(k, _)| *k != "rows") {
            head.insert(format!("budget_{k}"), v.clone());
        }
        let readings = b["rows"].as_array().unwrap();
        if readings.is_empty() {
            expected.push(head.clone());
        }
        for r in readings {
            let mut row = head.clone();
            row.extend(r.as_object().unwrap().clone());
            expected.push(row);
        }
    }
    assert!(
        expected.len() >= 3,
        "two budgets, the per-agent one with two agents: {answer}"
    );
    let text = fetch(&srv, "GET", &with_format(path, "csv"), "")
        .await
        .text()
        .await
        .unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), expected.len(), "{text}");
    for (want, rec) in expected.iter().zip(&records) {
        for k in want.keys() {
            assert!(header.contains(k), "column {k} missing from {header:?}");
        }
        for (i, col) in header.iter().enumerate() {
            assert_eq!(
                &rec[i],
                expected_cell(want.get(col)).unwrap_or_default().as_str(),
                "{col}"
            );
        }
    }
    let bytes = fetch(&srv, "GET", &with_format(path, "parquet"), "")
        .await
        .bytes()
        .await
        .unwrap();
    let (names, types, rows) = read_parquet(&bytes);
    assert_eq!(rows.len(), expected.len());
    for (want, row) in expected.iter().zip(&rows) {
        for (i, col) in names.iter().enumerate() {
            same_value(&types[i], row[i].as_deref(), want.get(col), col);
        }
    }
    srv.stop().await;
}

/// Spreadsheet formulas in attribution values are defused in CSV; JSON keeps the value as sent.
#[tokio::test]
async fn csv_defuses_formulas_in_text() {
    let srv = start().await;
    let (status, answer) = srv
        .ingest_json(
            &json!([{"id": "f-1", "timestamp": "2026-11-10T10:00:00Z", "model": "gpt-4o",
                              "feature": "=HYPERLINK(\"http://x\")", "cost": "0.25"}]),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 1, "{answer}");
    let path = "/api/v1/costs?group_by=feature";
    let json_answer: Value = fetch(&srv, "GET", path, "").await.json().await.unwrap();
    assert_eq!(
        json_answer["rows"][0]["feature"],
        "=HYPERLINK(\"http://x\")"
    );
    let text = fetch(&srv, "GET", &with_format(path, "csv"), "")
        .await
        .text()
        .await
        .unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader.headers().unwrap().clone();
    let rec = reader.records().next().unwrap().unwrap();
    let at = |name: &str| header.iter().position(|h| h == name).unwrap();
    assert_eq!(&rec[at("feature")], "'=HYPERLINK(\"http://x\")");
    let cost = json_answer["rows"][0]["cost"].as_str().unwrap();
    assert_eq!(&rec[at("cost")], cost, "numbers are never prefixed");
    srv.stop().await;
}
