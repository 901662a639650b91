//! The budgets page (`/budgets`) through the real server: its numbers equal
//! `/api/v1/budgets/status`, its admin forms create and edit budgets exactly like the API and
//! refuse a missing CSRF token, read keys get no forms, and in headless Chromium the create
//! form, the redeliver button and the channel test button work without console errors.

#[macro_use]
mod common;

use common::browser::Browser;
use rust_decimal::Decimal;
use serde_json::{json, Value};

const ADMIN: &str = "budgets-page-admin-key-0123456789";

fn dec(s: &str) -> Decimal {
    s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

/// The CSRF token of the page's forms.
fn csrf(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("the page has an action form");
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// `data-exact` of every spent cell of the budget section `id`, in order.
fn spent_cells(html: &str, id: &str) -> Vec<Decimal> {
    let start = html.find(&format!("<section id=\"{id}\"")).expect(id);
    let section = &html[start..start + html[start..].find("</section>").unwrap()];
    section
        .split("data-exact=\"")
        .skip(1)
        .map(|s| dec(&s[..s.find('"').unwrap()]))
        .collect()
}

async fn page(srv: &common::TestServer, path: &str, key: &str) -> (u16, String) {
    let resp = srv
        .client
        .get(srv.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn post_form(
    srv: &common::TestServer,
    path: &str,
    key: &str,
    form: &[(&str, &str)],
) -> (u16, String) {
    let resp = srv
        .client
        .post(srv.url(path))
        .bearer_auth(key)
        .form(form)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn api(srv: &common::TestServer, method: &str, path: &str, body: Option<Value>) -> Value {
    let mut rb = srv
        .client
        .request(method.parse().unwrap(), srv.url(path))
        .bearer_auth(ADMIN);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status();
    let v: Value = resp.json().await.unwrap();
    assert!(status.is_success(), "{method} {path}: {status} {v}");
    v
}

#[tokio::test]
async fn the_page_forms_act_like_the_api_and_need_their_token() {
    let srv = common::start_with(|c| c.admin_key = Some(ADMIN.into())).await;
    let read = api(
        &srv,
        "POST",
        "/api/v1/keys",
        Some(json!({"role": "read", "name": "r", "project": "default"})),
    )
    .await["secret"]
        .as_str()
        .unwrap()
        .to_string();

    let (status, html) = page(&srv, "/budgets", ADMIN).await;
    assert_eq!(status, 200);
    let token = csrf(&html);
    let fields = [
        ("name", "search monthly"),
        ("project", "default"),
        ("scope", "feature=search"),
        ("period", "month"),
        ("tz", "America/Los_Angeles"),
        ("amount", "10"),
        ("thresholds", "50, 100"),
    ];

    // Without the token (another site's form): refused, nothing created.
    let (status, html) = post_form(&srv, "/budgets/save", ADMIN, &fields).await;
    assert_eq!(status, 403, "{html}");
    assert!(html.contains("form expired"));
    assert_eq!(
        api(&srv, "GET", "/api/v1/budgets", None).await["budgets"],
        json!([])
    );

    // With it: created, exactly as the JSON API describes it.
    let mut with_token = fields.to_vec();
    with_token.push(("csrf", &token));
    let (status, html) = post_form(&srv, "/budgets/save", ADMIN, &with_token).await;
    assert_eq!(status, 200, "followed the redirect back to the page");
    assert!(html.contains("created"), "{html}");
    let listed = api(&srv, "GET", "/api/v1/budgets", None).await;
    let b = &listed["budgets"][0];
    let id = b["id"].as_str().unwrap().to_string();
    assert_eq!(b["name"], "search monthly");
    assert_eq!(b["scope"], json!({"feature": "search"}));
    assert_eq!(b["tz"], "America/Los_Angeles");
    assert_eq!(dec(b["amount"].as_str().unwrap()), dec("10"));

    // A bad field is a 400 page naming it; nothing changes.
    let mut bad = with_token.clone();
    bad[5] = ("amount", "ten");
    let (status, html) = post_form(&srv, "/budgets/save", ADMIN, &bad).await;
    assert_eq!(status, 400);
    assert!(html.contains("amount"), "{html}");

    // Spend: 3 × $1.50 = $4.50 on search, $7 elsewhere (not in scope).
    let now = chrono::Utc::now().to_rfc3339();
    let mut events: Vec<Value> = (0..3)
        .map(|_| json!({"timestamp": now, "model": "gpt-4o", "feature": "search", "cost": "1.50"}))
        .collect();
    events.push(json!({"timestamp": now, "model": "gpt-4o", "feature": "chat", "cost": "7"}));
    let (status, answer) = srv.ingest_json(&json!(events)).await;
    assert_eq!(status, 200, "{answer}");

    let (_, html) = page(&srv, "/budgets", ADMIN).await;
    assert_eq!(spent_cells(&html, &id), vec![dec("4.5")]);
    let status = api(&srv, "GET", "/api/v1/budgets/status", None).await;
    assert_eq!(
        dec(status["budgets"][0]["rows"][0]["spent"].as_str().unwrap()),
        dec("4.5"),
        "the page and the API agree"
    );
    assert!(
        html.contains("fill-ok w40"),
        "45 % draws a 40 % bar: {html}"
    );

    // Edit: the form is prefilled; saving it with a new amount replaces the budget.
    let (_, html) = page(&srv, &format!("/budgets?edit={id}"), ADMIN).await;
    assert!(html.contains(&format!("name=\"id\" value=\"{id}\"")));
    assert!(html.contains("value=\"feature=search\""));
    let mut edit = with_token.clone();
    edit[5] = ("amount", "5");
    edit.push(("id", &id));
    let (status, html) = post_form(&srv, "/budgets/save", ADMIN, &edit).await;
    assert_eq!(status, 200);
    assert!(html.contains("saved"), "{html}");
    let b = api(&srv, "GET", &format!("/api/v1/budgets/{id}"), None).await;
    assert_eq!(dec(b["amount"].as_str().unwrap()), dec("5"));

    // A read key sees the numbers but no forms, and may not post them.
    let (status, html) = page(&srv, "/budgets", &read).await;
    assert_eq!(status, 200);
    assert!(html.contains(&id) && !html.contains("budget-form") && !html.contains("csrf"));
    let (status, _) = post_form(&srv, "/budgets/save", &read, &with_token).await;
    assert_eq!(status, 403);
    srv.stop().await;
}

#[tokio::test]
async fn in_a_browser_create_redeliver_and_test_a_channel() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    // Open mode (no keys, loopback): the forms are signed with the server's secret.
    let srv = common::start_with(|c| c.admin_key = None).await;
    let open = |m: &str, p: &str, b: Option<Value>| {
        let rb = srv.client.request(m.parse().unwrap(), srv.url(p));
        let rb = match b {
            Some(b) => rb.json(&b),
            None => rb,
        };
        async move {
            let resp = rb.send().await.unwrap();
            let status = resp.status();
            let v: Value = resp.json().await.unwrap();
            assert!(status.is_success(), "{v}");
            v
        }
    };
    // Nothing listens on port 9: deliveries and tests fail, which the page must say.
    let channel = open(
        "POST",
        "/api/v1/channels",
        Some(json!({"name": "oncall", "url": "http://127.0.0.1:9/hook"})),
    )
    .await;
    let channel_id = channel["id"].as_str().unwrap().to_string();

    browser.goto(&srv.url("/budgets")).await;
    assert!(browser.console_errors().await.is_empty());
    browser.type_into("#f-name", "all spend").await;
    browser
        .execute("document.querySelector('#f-period').value = 'day';")
        .await;
    browser.type_into("#f-amount", "2").await;
    browser.type_into("#f-channels", "oncall").await;
    browser.click("#f-save").await;
    browser.wait_for("#notice").await;
    assert!(browser.text("#notice").await.contains("created"));
    let listed = open("GET", "/api/v1/budgets", None).await;
    assert_eq!(listed["budgets"][0]["name"], "all spend");

    // $3 of $2: an alert, shown with its delivery; redeliver queues it again.
    let now = chrono::Utc::now().to_rfc3339();
    let (status, _) = srv
        .ingest_json(&json!({"timestamp": now, "model": "gpt-4o", "cost": "3"}))
        .await;
    assert_eq!(status, 200);
    let alerts = open("GET", "/api/v1/alerts", None).await;
    let alert_id = alerts["alerts"][0]["id"].as_str().unwrap().to_string();
    browser.goto(&srv.url("/budgets")).await;
    let shown = browser
        .attr("section.budget td.spent", "data-exact")
        .await
        .unwrap();
    assert_eq!(dec(&shown), dec("3"));
    assert!(browser
        .text(&format!("#alert-{alert_id}"))
        .await
        .contains("oncall"));
    browser
        .click(&format!("#alert-{alert_id} form button"))
        .await;
    browser.wait_for("#notice").await;
    assert!(browser.text("#notice").await.contains("queued again"));

    // The channel's test button reports the failed delivery.
    browser.click(&format!("#test-{channel_id}")).await;
    browser.wait_url("notice=Test").await;
    assert!(
        browser.text("#notice").await.contains("failed"),
        "{}",
        browser.text("#notice").await
    );
    browser.screenshot("budgets").await;
    assert!(browser.console_errors().await.is_empty());
    browser.quit().await;
    srv.stop().await;
}
