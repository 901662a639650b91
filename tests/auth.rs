//! Authorization through a real server: every endpoint × every kind of credential, and project
//! isolation (a key of project A never reads or writes project B).
//!
//! Adding an endpoint? Add it to `ENDPOINTS` with the role it needs; the matrix test then checks
//! it for every credential.

#[macro_use]
mod common;

use common::start_with;
use serde_json::{json, Value};

const ADMIN: &str = "bootstrap-admin-key-0123456789";

/// Who needs what: (method, path, body, role needed). `role` is "ingest", "read" or "admin",
/// or several joined by `|` (any of them will do); "public" needs nothing.
const ENDPOINTS: &[(&str, &str, &str, &str)] = &[
    ("GET", "/healthz", "", "public"),
    ("GET", "/readyz", "", "public"),
    ("GET", "/api/openapi.json", "", "public"),
    ("GET", "/metrics", "", "admin"),
    ("POST", "/v1/traces", r#"{"resourceSpans":[]}"#, "ingest"),
    ("POST", "/v1/ingest", r#"{"model":"gpt-4o"}"#, "ingest"),
    (
        "POST",
        "/v1/billing?format=openai-costs",
        r#"{"object":"page","data":[],"has_more":false}"#,
        "ingest",
    ),
    (
        "POST",
        "/v1/outcomes",
        r#"{"task_id":"t","outcome":"success"}"#,
        "ingest",
    ),
    ("GET", "/api/v1/costs", "", "read"),
    ("GET", "/api/v1/rejects", "", "read"),
    ("GET", "/api/v1/billing/imports", "", "read"),
    ("GET", "/api/v1/reconciliation", "", "read"),
    ("GET", "/api/v1/export/focus", "", "read"),
    ("GET", "/", "", "read"),
    ("GET", "/explore", "", "read"),
    ("GET", "/explore.csv", "", "read"),
    ("GET", "/reconciliation", "", "read"),
    ("GET", "/api/v1/tasks", "", "read"),
    ("GET", "/api/v1/runs", "", "read"),
    ("GET", "/api/v1/runs/run-doesnotexist", "", "read"),
    ("GET", "/api/v1/routes", "", "read"),
    ("GET", "/api/v1/whatif?as_model=gpt-4o", "", "read"),
    (
        "POST",
        "/api/v1/whatif",
        r#"{"map":[{"from":"*","to":"gpt-4o"}]}"#,
        "read",
    ),
    ("GET", "/api/v1/reprice", "", "read"),
    ("POST", "/api/v1/reprice", "", "admin"),
    ("GET", "/api/v1/unpriced", "", "read"),
    ("GET", "/api/v1/anomalies", "", "read"),
    ("GET", "/tasks", "", "read"),
    ("GET", "/runs/run-doesnotexist", "", "read"),
    ("GET", "/routes", "", "read"),
    ("GET", "/api/v1/keys", "", "admin"),
    (
        "POST",
        "/api/v1/keys",
        r#"{"name":"m","role":"read","project":"a"}"#,
        "admin",
    ),
    ("DELETE", "/api/v1/keys/key_doesnotexist", "", "admin"),
    ("GET", "/v1/budget-check?feature=search", "", "ingest|read"),
    ("GET", "/api/v1/budgets/status", "", "read"),
    ("GET", "/api/v1/alerts", "", "read"),
    ("GET", "/budgets", "", "read"),
    ("GET", "/ingest", "", "read"),
    ("GET", "/api/v1/budgets", "", "admin"),
    (
        "POST",
        "/api/v1/budgets",
        r#"{"name":"m","project":"a","period":"month","amount":"10"}"#,
        "admin",
    ),
    ("GET", "/api/v1/budgets/bud_doesnotexist", "", "admin"),
    (
        "PUT",
        "/api/v1/budgets/bud_doesnotexist",
        r#"{"name":"m","period":"month","amount":"10"}"#,
        "admin",
    ),
    ("DELETE", "/api/v1/budgets/bud_doesnotexist", "", "admin"),
    (
        "POST",
        "/api/v1/alerts/alrt_doesnotexist/redeliver",
        "",
        "admin",
    ),
    ("GET", "/api/v1/channels", "", "admin"),
    (
        "POST",
        "/api/v1/channels",
        r#"{"name":"m","project":"a","url":"http://127.0.0.1:9/hook"}"#,
        "admin",
    ),
    ("GET", "/api/v1/channels/ch_doesnotexist", "", "admin"),
    (
        "PATCH",
        "/api/v1/channels/ch_doesnotexist",
        r#"{"enabled":true}"#,
        "admin",
    ),
    ("DELETE", "/api/v1/channels/ch_doesnotexist", "", "admin"),
    ("POST", "/api/v1/channels/ch_doesnotexist/test", "", "admin"),
    // The budgets page's action forms (form-encoded; without a valid CSRF token an allowed
    // credential gets the "form expired" page, a denied one the role refusal).
    ("POST", "/budgets/save", "csrf=x", "admin"),
    (
        "POST",
        "/budgets/alerts/alrt_doesnotexist/redeliver",
        "csrf=x",
        "admin",
    ),
    (
        "POST",
        "/budgets/channels/ch_doesnotexist/test",
        "csrf=x",
        "admin",
    ),
];

/// Endpoints that are dashboard pages (HTML answers).
const ENDPOINT_PAGES: &[&str] = &[
    "/",
    "/explore",
    "/explore.csv",
    "/reconciliation",
    "/tasks",
    "/runs/run-doesnotexist",
    "/routes",
    "/budgets",
    "/ingest",
    "/budgets/save",
    "/budgets/alerts/alrt_doesnotexist/redeliver",
    "/budgets/channels/ch_doesnotexist/test",
];

async fn call(
    client: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    body: &str,
    key: Option<&str>,
) -> (u16, Value) {
    let url = format!("{base}{path}");
    let mut rb = match method {
        "GET" => client.get(url),
        "POST" => client
            .post(url)
            .header(
                "content-type",
                if body.starts_with("csrf=") {
                    "application/x-www-form-urlencoded"
                } else {
                    "application/json"
                },
            )
            .body(body.to_string()),
        "PUT" => client
            .put(url)
            .header("content-type", "application/json")
            .body(body.to_string()),
        "PATCH" => client
            .patch(url)
            .header("content-type", "application/json")
            .body(body.to_string()),
        "DELETE" => client.delete(url),
        other => panic!("method {other}"),
    };
    if let Some(k) = key {
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

async fn create_key(
    client: &reqwest::Client,
    base: &str,
    role: &str,
    project: Option<&str>,
) -> (String, String) {
    let (status, body) = call(
        client,
        base,
        "POST",
        "/api/v1/keys",
        &json!({"name": format!("{role}-{project:?}"), "role": role, "project": project})
            .to_string(),
        Some(ADMIN),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    (
        body["id"].as_str().unwrap().to_string(),
        body["secret"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn every_endpoint_for_every_credential() {
    let srv = start_with(|c| c.admin_key = Some(ADMIN.into())).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = srv.url.clone();
    let (_, ingest_a) = create_key(&client, &base, "ingest", Some("a")).await;
    let (_, read_a) = create_key(&client, &base, "read", Some("a")).await;
    let (_, admin_api) = create_key(&client, &base, "admin", None).await;
    let (revoked_id, revoked) = create_key(&client, &base, "read", Some("a")).await;
    let (status, _) = call(
        &client,
        &base,
        "DELETE",
        &format!("/api/v1/keys/{revoked_id}"),
        "",
        Some(ADMIN),
    )
    .await;
    assert_eq!(status, 200);

    let credentials: Vec<(&str, Option<&str>, &[&str])> = vec![
        ("no key", None, &[]),
        ("wrong key", Some("tk_not-a-real-key-at-all"), &[]),
        ("revoked key", Some(revoked.as_str()), &[]),
        ("ingest key", Some(ingest_a.as_str()), &["ingest"]),
        ("read key", Some(read_a.as_str()), &["read"]),
        (
            "admin API key",
            Some(admin_api.as_str()),
            &["ingest", "read", "admin"],
        ),
        (
            "bootstrap admin key",
            Some(ADMIN),
            &["ingest", "read", "admin"],
        ),
    ];
    for (who, key, roles) in &credentials {
        for (method, path, body, needed) in ENDPOINTS {
            let (status, answer) = call(&client, &base, method, path, body, *key).await;
            let expected: &[u16] = if *needed == "public" {
                &[200]
            } else if key.is_none() || *who == "wrong key" || *who == "revoked key" {
                // Pages answer people: they send them to the sign-in form.
                if path.starts_with("/api/") || path.starts_with("/v1/") || *path == "/metrics" {
                    &[401]
                } else {
                    &[303]
                }
            } else if needed.split('|').any(|n| roles.contains(&n)) {
                if body.starts_with("csrf=") {
                    // Let through, then refused for the made-up CSRF token.
                    assert_eq!(status, 403, "{who} {method} {path}");
                    assert!(
                        answer.as_str().unwrap_or("").contains("form expired"),
                        "{who} {method} {path}: {answer}"
                    );
                    &[403]
                } else {
                    // Allowed: success (202 for a queued redelivery), a 404 for a made-up id,
                    // or a 409 when a second credential creates the same named budget or
                    // channel. Never a 403: that would be a wrongly refused role.
                    &[200, 201, 202, 404, 409]
                }
            } else {
                &[403]
            };
            assert!(
                expected.contains(&status),
                "{who} {method} {path}: {status} {answer}"
            );
            if (status == 401 || status == 403) && !ENDPOINT_PAGES.contains(path) {
                let code = answer["error"]["code"].as_str().unwrap_or_default();
                assert!(
                    code == "unauthorized" || code == "forbidden",
                    "{who} {method} {path}: {answer}"
                );
            }
        }
    }
    srv.stop().await;
}

#[tokio::test]
async fn a_project_key_never_reads_or_writes_another_project() {
    let srv = start_with(|c| c.admin_key = Some(ADMIN.into())).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = srv.url.clone();
    let (_, ingest_a) = create_key(&client, &base, "ingest", Some("a")).await;
    let (_, ingest_b) = create_key(&client, &base, "ingest", Some("b")).await;
    let (_, read_a) = create_key(&client, &base, "read", Some("a")).await;
    let (_, read_b) = create_key(&client, &base, "read", Some("b")).await;

    // Writes: records land in the key's project; naming another project is a reject.
    let body = json!([
        {"model": "gpt-4o", "cost": "1"},
        {"model": "gpt-4o", "cost": "2", "project": "a"},
        {"model": "gpt-4o", "cost": "4", "project": "b"},
    ])
    .to_string();
    let (status, answer) = call(&client, &base, "POST", "/v1/ingest", &body, Some(&ingest_a)).await;
    assert_eq!(status, 200);
    assert_eq!(answer["accepted"], 2);
    assert_eq!(answer["rejected"][0]["index"], 2);
    assert_eq!(answer["rejected"][0]["field"], "project");
    let (_, answer) = call(
        &client,
        &base,
        "POST",
        "/v1/ingest",
        &json!({"model": "gpt-4o", "cost": "8"}).to_string(),
        Some(&ingest_b),
    )
    .await;
    assert_eq!(answer["accepted"], 1);
    // The bootstrap admin writes where the record says, else to `default`.
    let (_, answer) = call(
        &client,
        &base,
        "POST",
        "/v1/ingest",
        &json!([{"model": "m", "cost": "16"}, {"model": "m", "cost": "32", "project": "b"}])
            .to_string(),
        Some(ADMIN),
    )
    .await;
    assert_eq!(answer["accepted"], 2);

    // Reads: each project's key sees only its own totals; naming another project is a 403.
    let total = |v: &Value| {
        v["total"]["cost"]
            .as_str()
            .unwrap()
            .parse::<rust_decimal::Decimal>()
            .unwrap()
    };
    let (_, a) = call(&client, &base, "GET", "/api/v1/costs", "", Some(&read_a)).await;
    assert_eq!(total(&a), dec!(3));
    let (_, b) = call(
        &client,
        &base,
        "GET",
        "/api/v1/costs?group_by=project",
        "",
        Some(&read_b),
    )
    .await;
    assert_eq!(total(&b), dec!(40));
    assert_eq!(b["rows"].as_array().unwrap().len(), 1);
    let (status, _) = call(
        &client,
        &base,
        "GET",
        "/api/v1/costs?project=b",
        "",
        Some(&read_a),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(
        &client,
        &base,
        "GET",
        "/api/v1/costs?project=a",
        "",
        Some(&read_a),
    )
    .await;
    assert_eq!(status, 200);
    let (_, all) = call(
        &client,
        &base,
        "GET",
        "/api/v1/costs?group_by=project&order=project",
        "",
        Some(ADMIN),
    )
    .await;
    let projects: Vec<&str> = all["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["project"].as_str().unwrap())
        .collect();
    assert_eq!(projects, vec!["a", "b", "default"]);
    assert_eq!(total(&all), dec!(59)); // 1 + 2 (a) + 8 + 32 (b) + 16 (default); the 4 was refused

    // Idempotency keys are per project: the same id in another project is not a duplicate
    // (nor does the answer reveal that another tenant used it).
    let same = json!({"id": "shared-id", "model": "gpt-4o", "cost": "0", "request_id": "chatcmpl-shared", "provider": "openai"}).to_string();
    let (_, a1) = call(&client, &base, "POST", "/v1/ingest", &same, Some(&ingest_a)).await;
    let (_, b1) = call(&client, &base, "POST", "/v1/ingest", &same, Some(&ingest_b)).await;
    let (_, a2) = call(&client, &base, "POST", "/v1/ingest", &same, Some(&ingest_a)).await;
    assert_eq!(
        (a1["accepted"].as_u64(), b1["accepted"].as_u64()),
        (Some(1), Some(1)),
        "{a1} {b1}"
    );
    assert_eq!(a2["duplicates"], 1, "{a2}");

    // Rejects are per project too.
    let (_, ra) = call(&client, &base, "GET", "/api/v1/rejects", "", Some(&read_a)).await;
    assert_eq!(ra["total"], 1);
    let (_, rb) = call(&client, &base, "GET", "/api/v1/rejects", "", Some(&read_b)).await;
    assert_eq!(rb["total"], 0);
    srv.stop().await;
}

#[tokio::test]
async fn billing_imports_reconciliation_and_exports_stay_in_their_project() {
    let srv = start_with(|c| c.admin_key = Some(ADMIN.into())).await;
    let client = reqwest::Client::new();
    let base = srv.url.clone();
    let (_, ingest_a) = create_key(&client, &base, "ingest", Some("a")).await;
    let (_, read_a) = create_key(&client, &base, "read", Some("a")).await;
    let (_, read_b) = create_key(&client, &base, "read", Some("b")).await;
    // One OpenAI Costs API page: one day, one line of `value` dollars.
    let page = |value: &str| {
        format!(
            r#"{{"data":[{{"start_time":1767225600,"end_time":1767312000,
                "results":[{{"amount":{{"value":{value},"currency":"usd"}}}}]}}]}}"#
        )
    };
    let total = |v: &Value, key: &str| {
        v["total"][key]
            .as_str()
            .unwrap()
            .parse::<rust_decimal::Decimal>()
            .unwrap()
    };

    // An ingest key imports into its own project; naming another one is a 403.
    let url = "/v1/billing?format=openai-costs";
    let (status, answer) = call(&client, &base, "POST", url, &page("2.5"), Some(&ingest_a)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["project"], "a");
    let (status, _) = call(
        &client,
        &base,
        "POST",
        &format!("{url}&project=b"),
        &page("3"),
        Some(&ingest_a),
    )
    .await;
    assert_eq!(status, 403);
    // The admin imports into b; the same source and day in another project replaces nothing.
    let (status, answer) = call(
        &client,
        &base,
        "POST",
        &format!("{url}&project=b"),
        &page("4"),
        Some(ADMIN),
    )
    .await;
    assert_eq!((status, answer["replaced"].as_u64()), (200, Some(0)));
    // One metered event, in a.
    let (status, _) = call(
        &client,
        &base,
        "POST",
        "/v1/ingest",
        &json!({"timestamp": "2026-01-01T10:00:00Z", "provider": "openai", "model": "gpt-4o", "cost": "1"})
            .to_string(),
        Some(&ingest_a),
    )
    .await;
    assert_eq!(status, 200);

    let recon = "/api/v1/reconciliation?from=2026-01-01&to=2026-01-01";
    let (_, ra) = call(&client, &base, "GET", recon, "", Some(&read_a)).await;
    assert_eq!(
        (total(&ra, "billed"), total(&ra, "metered")),
        (dec!(2.5), dec!(1))
    );
    let (_, rb) = call(&client, &base, "GET", recon, "", Some(&read_b)).await;
    assert_eq!(
        (total(&rb, "billed"), total(&rb, "metered")),
        (dec!(4), dec!(0))
    );
    // The reconciliation page shows each key its own project's numbers.
    for (key, billed) in [(&read_a, "2.5"), (&read_b, "4")] {
        let (status, page) = call(
            &client,
            &base,
            "GET",
            "/reconciliation?range=custom&from=2026-01-01&to=2026-01-01",
            "",
            Some(key),
        )
        .await;
        let html = page.as_str().unwrap_or_default();
        assert_eq!(status, 200, "{html}");
        assert!(
            html.contains(&format!(r#"id="total-billed" data-exact="{billed}""#)),
            "{html}"
        );
    }
    for path in [
        "/api/v1/reconciliation?project=b",
        "/api/v1/export/focus?project=b",
    ] {
        let (status, _) = call(&client, &base, "GET", path, "", Some(&read_a)).await;
        assert_eq!(status, 403, "{path}");
    }
    let (_, grouped) = call(
        &client,
        &base,
        "GET",
        "/api/v1/reconciliation?group_by=project",
        "",
        Some(&read_a),
    )
    .await;
    assert_eq!(grouped["rows"].as_array().unwrap().len(), 1, "{grouped}");
    assert_eq!(grouped["rows"][0]["project"], "a");
    let (_, imports) = call(
        &client,
        &base,
        "GET",
        "/api/v1/billing/imports",
        "",
        Some(&read_b),
    )
    .await;
    let projects: Vec<&str> = imports["imports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["project"].as_str().unwrap())
        .collect();
    assert_eq!(projects, vec!["b"]);
    // The FOCUS export of b has a header and no event; a's has its one event.
    let (_, export_b) = call(
        &client,
        &base,
        "GET",
        "/api/v1/export/focus",
        "",
        Some(&read_b),
    )
    .await;
    assert_eq!(export_b.as_str().unwrap().lines().count(), 1, "{export_b}");
    let (_, export_a) = call(
        &client,
        &base,
        "GET",
        "/api/v1/export/focus",
        "",
        Some(&read_a),
    )
    .await;
    assert_eq!(export_a.as_str().unwrap().lines().count(), 2, "{export_a}");
    srv.stop().await;
}

#[tokio::test]
async fn keys_are_shown_once_listed_without_secrets_and_track_use() {
    let srv = start_with(|c| c.admin_key = Some(ADMIN.into())).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = srv.url.clone();
    let (id, secret) = create_key(&client, &base, "read", Some("a")).await;
    let (status, _) = call(&client, &base, "GET", "/api/v1/costs", "", Some(&secret)).await;
    assert_eq!(status, 200);
    let (_, listed) = call(&client, &base, "GET", "/api/v1/keys", "", Some(ADMIN)).await;
    let text = listed.to_string();
    assert!(!text.contains(&secret), "a listing leaked a secret");
    let key = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(key["role"], "read");
    assert_eq!(key["project"], "a");
    assert!(secret.starts_with(key["prefix"].as_str().unwrap()));

    for bad in [
        json!({"name": "x", "role": "admin", "project": "a"}),
        json!({"name": "x", "role": "read"}),
        json!({"name": "x", "role": "owner", "project": "a"}),
        json!({"name": "", "role": "read", "project": "a"}),
    ] {
        let (status, body) = call(
            &client,
            &base,
            "POST",
            "/api/v1/keys",
            &bad.to_string(),
            Some(ADMIN),
        )
        .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "bad_request");
    }

    // Last use is written back at shutdown; the data directory keeps it.
    let dir = srv.stop().await;
    let conn = duckdb::Connection::open(dir.path().join("tally.duckdb")).unwrap();
    let used: Option<i64> = conn
        .query_row(
            "SELECT epoch_us(last_used_at) FROM api_keys WHERE id = ?",
            [&id],
            |r| r.get(0),
        )
        .unwrap();
    assert!(used.is_some(), "last_used_at was not recorded");
}

#[tokio::test]
async fn answers_carry_security_headers_and_a_request_id() {
    let srv = common::start().await;
    for path in ["/", "/api/v1/costs", "/healthz", "/nope"] {
        let resp = srv.client.get(srv.url(path)).send().await.unwrap();
        let h = resp.headers();
        let csp = h.get("content-security-policy").unwrap().to_str().unwrap();
        assert!(
            csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
            "{path}: {csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(
            h.get("x-content-type-options").unwrap(),
            "nosniff",
            "{path}"
        );
        assert_eq!(h.get("x-frame-options").unwrap(), "DENY", "{path}");
        assert!(
            h.get("x-request-id").is_some_and(|v| v.len() >= 32),
            "{path}"
        );
    }
    srv.stop().await;
}

#[tokio::test]
async fn outcome_analytics_never_cross_projects() {
    let srv = start_with(|c| c.admin_key = Some(ADMIN.into())).await;
    let client = reqwest::Client::new();
    let base = srv.url.clone();
    let (_, ingest_a) = create_key(&client, &base, "ingest", Some("a")).await;
    let (_, ingest_b) = create_key(&client, &base, "ingest", Some("b")).await;
    let (_, read_a) = create_key(&client, &base, "read", Some("a")).await;

    // The same task and run ids in both projects, with different costs.
    for (key, cost) in [(&ingest_a, "1"), (&ingest_b, "100")] {
        let body = json!([
            {"timestamp": "2026-11-10T10:00:00Z", "model": "gpt-4o", "task_id": "t", "run_id": "r",
             "feature": "f", "usage": {"input_tokens": 1000, "output_tokens": 10}, "cost": cost},
            {"timestamp": "2026-11-10T10:00:00Z", "model": "mystery-model", "task_id": "u", "feature": "f"},
        ])
        .to_string();
        let (status, answer) = call(&client, &base, "POST", "/v1/ingest", &body, Some(key)).await;
        assert_eq!((status, &answer["accepted"]), (200, &json!(2)), "{answer}");
    }
    // Outcomes land in the writing key's project; naming another is a rejected record.
    let (_, answer) = call(
        &client,
        &base,
        "POST",
        "/v1/outcomes",
        &json!([{"task_id": "t", "outcome": "success"}, {"task_id": "t", "outcome": "failure", "project": "b"}])
            .to_string(),
        Some(&ingest_a),
    )
    .await;
    assert_eq!(answer["accepted"], 1, "{answer}");
    assert_eq!(answer["rejected"][0]["field"], "project");

    let get = |path: &'static str| {
        let (client, base, key) = (client.clone(), base.clone(), read_a.clone());
        async move { call(&client, &base, "GET", path, "", Some(&key)).await }
    };
    let (_, tasks) = get("/api/v1/tasks").await;
    assert_eq!(tasks["total"]["tasks"], 2, "{tasks}");
    assert_eq!(tasks["total"]["successful"], 1);
    assert_eq!(tasks["total"]["calls_cost"], "1");
    let (_, runs) = get("/api/v1/runs").await;
    assert_eq!(runs["total_runs"], 2, "{runs}");
    let (status, run) = get("/api/v1/runs/r").await;
    assert_eq!(status, 200);
    assert_eq!(run["totals"]["cost"], "1");
    assert_eq!(run["run"]["state"], "success");
    let (_, routes) = get("/api/v1/routes").await;
    assert_eq!(routes["rows"][0]["requests"], 2, "{routes}");
    let (_, whatif) = get("/api/v1/whatif?as_model=gpt-4o-mini").await;
    assert_eq!(whatif["total"]["requests"], 2);
    assert_eq!(whatif["total"]["cost"], "1");
    let (_, unpriced) = get("/api/v1/unpriced").await;
    assert_eq!(unpriced["total"]["requests"], 1, "{unpriced}");
    let (_, reprice) = get("/api/v1/reprice").await;
    assert_eq!(reprice["total"]["events"], 2, "{reprice}");
    let (status, _) = get("/api/v1/anomalies").await;
    assert_eq!(status, 200);
    // The pages show project a's numbers only.
    let page = |path: &'static str| {
        let (client, base, key) = (client.clone(), base.clone(), read_a.clone());
        async move {
            let r = client
                .get(format!("{base}{path}"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (status, html) = page("/runs/r").await;
    assert_eq!(status, 200);
    assert!(html.contains(r#"id="run-cost" data-exact="1""#), "{html}");
    let (status, html) = page("/tasks?from=2026-11-01&to=2026-11-30&range=custom").await;
    assert_eq!(status, 200);
    assert!(html.contains(r#"data-exact="1""#) && !html.contains(r#"data-exact="100""#));

    // Naming the other project is a 403 everywhere; its runs are not even found.
    for path in [
        "/api/v1/tasks?project=b",
        "/api/v1/runs?project=b",
        "/api/v1/runs/r?project=b",
        "/api/v1/routes?project=b",
        "/api/v1/whatif?as_model=gpt-4o&project=b",
        "/api/v1/reprice?project=b",
        "/api/v1/unpriced?project=b",
        "/api/v1/anomalies?project=b",
        "/tasks?project=b",
        "/runs/r?project=b",
        "/routes?project=b",
    ] {
        let (status, body) = call(&client, &base, "GET", path, "", Some(&read_a)).await;
        assert_eq!(status, 403, "{path}: {body}");
    }
    let (status, _) = call(
        &client,
        &base,
        "POST",
        "/api/v1/whatif?project=b",
        r#"{"map":[{"from":"*","to":"gpt-4o"}]}"#,
        Some(&read_a),
    )
    .await;
    assert_eq!(status, 403);
    let (status, body) = call(
        &client,
        &base,
        "POST",
        "/api/v1/reprice?apply=true",
        "",
        Some(&read_a),
    )
    .await;
    assert_eq!(status, 403, "{body}");

    // The admin sees both projects.
    let (_, all) = call(
        &client,
        &base,
        "GET",
        "/api/v1/tasks?group_by=project",
        "",
        Some(ADMIN),
    )
    .await;
    assert_eq!(all["total"]["tasks"], 4, "{all}");
    assert_eq!(all["total"]["calls_cost"], "101");
    srv.stop().await;
}

#[tokio::test]
async fn budgets_alerts_and_budget_checks_stay_in_their_project() {
    let srv = start_with(|c| c.admin_key = Some(ADMIN.into())).await;
    let client = reqwest::Client::new();
    let base = srv.url.clone();
    let (_, ingest_a) = create_key(&client, &base, "ingest", Some("a")).await;
    let (_, ingest_b) = create_key(&client, &base, "ingest", Some("b")).await;
    let (_, read_a) = create_key(&client, &base, "read", Some("a")).await;
    let mut ids = Vec::new();
    for project in ["a", "b"] {
        let body = json!({"name": "monthly", "project": project, "period": "month", "amount": "1"});
        let (status, v) = call(
            &client,
            &base,
            "POST",
            "/api/v1/budgets",
            &body.to_string(),
            Some(ADMIN),
        )
        .await;
        assert_eq!(status, 201, "{v}");
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    let now = chrono::Utc::now().to_rfc3339();
    for key in [&ingest_a, &ingest_b] {
        let body = json!({"timestamp": now, "model": "gpt-4o", "cost": "2"}).to_string();
        let (status, _) = call(&client, &base, "POST", "/v1/ingest", &body, Some(key)).await;
        assert_eq!(status, 200);
    }
    let (_, status) = call(
        &client,
        &base,
        "GET",
        "/api/v1/budgets/status",
        "",
        Some(&read_a),
    )
    .await;
    let seen: Vec<&str> = status["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(seen, vec![ids[0].as_str()]);
    let (_, alerts) = call(&client, &base, "GET", "/api/v1/alerts", "", Some(&read_a)).await;
    assert!(alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["budget_id"] == ids[0].as_str()));
    let (_, check) = call(
        &client,
        &base,
        "GET",
        "/v1/budget-check",
        "",
        Some(&ingest_a),
    )
    .await;
    let seen: Vec<&str> = check["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(seen, vec![ids[0].as_str()]);
    for path in [
        "/api/v1/budgets/status?project=b",
        "/api/v1/alerts?project=b",
        "/v1/budget-check?project=b",
    ] {
        let key = if path.starts_with("/v1") {
            &ingest_a
        } else {
            &read_a
        };
        let (status, _) = call(&client, &base, "GET", path, "", Some(key)).await;
        assert_eq!(status, 403, "{path}");
    }
    let (status, _) = call(
        &client,
        &base,
        "GET",
        &format!("/api/v1/budgets/status?budget={}", ids[1]),
        "",
        Some(&read_a),
    )
    .await;
    assert_eq!(
        status, 404,
        "another project's budget does not exist for this key"
    );
    srv.stop().await;
}
