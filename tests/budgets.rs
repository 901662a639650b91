//! Budgets and alerts through a real server and a real webhook receiver on loopback: each
//! threshold alerts once, restarts do not re-alert, outages are retried and delivered once in
//! order, 410 disables, every signature verifies against an independent HMAC, split budgets
//! alert only for the value that crossed, run caps catch a looping run, Los Angeles period
//! boundaries (DST days included) are right, the check endpoint answers from memory, projects
//! stay apart, and the demo's budgets alert. Expected numbers are worked out here by hand.

#[macro_use]
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use hmac::{Hmac, Mac};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sha2::Sha256;
use tally::config::Config;
use tempfile::TempDir;

use common::TestServer;

const ADMIN: &str = "bootstrap-admin-key-0123456789";

// ---------------------------------------------------------------------------------------------
// A webhook receiver that records everything and answers as told
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Ok,
    Fail,
    /// Sleep past the sender's timeout.
    Hang,
    Gone,
}

#[derive(Debug, Clone)]
struct Got {
    id: String,
    timestamp: String,
    signature: String,
    body: String,
    /// What the receiver answered (0: it hung and the sender gave up first).
    answered: u16,
}

struct Inner {
    mode: Mutex<Mode>,
    got: Mutex<Vec<Got>>,
}

struct Receiver {
    url: String,
    inner: Arc<Inner>,
}

impl Receiver {
    async fn start() -> Receiver {
        let inner = Arc::new(Inner {
            mode: Mutex::new(Mode::Ok),
            got: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            url: format!("http://{addr}/hook"),
            inner,
        }
    }

    fn set(&self, mode: Mode) {
        *self.inner.mode.lock().unwrap() = mode;
    }

    fn got(&self) -> Vec<Got> {
        self.inner.got.lock().unwrap().clone()
    }

    /// Requests the receiver acknowledged, in arrival order.
    fn acked(&self) -> Vec<Got> {
        self.got()
            .into_iter()
            .filter(|g| (200..300).contains(&g.answered))
            .collect()
    }
}

async fn receive(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: String) -> StatusCode {
    let mode = *inner.mode.lock().unwrap();
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let answered = match mode {
        Mode::Ok => 200,
        Mode::Fail => 500,
        Mode::Hang => 0,
        Mode::Gone => 410,
    };
    inner.got.lock().unwrap().push(Got {
        id: h("webhook-id"),
        timestamp: h("webhook-timestamp"),
        signature: h("webhook-signature"),
        body,
        answered,
    });
    match mode {
        Mode::Ok => StatusCode::OK,
        Mode::Fail => StatusCode::INTERNAL_SERVER_ERROR,
        Mode::Gone => StatusCode::GONE,
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

/// Standard Webhooks verification, written here from the specification (not Tally's code):
/// HMAC-SHA256 over "{id}.{timestamp}.{body}" keyed with the base64-decoded part of the secret
/// after `whsec_`, base64-encoded, as one of the space-separated `v1,` signatures.
fn verifies(secret: &str, id: &str, timestamp: &str, body: &str, header: &str) -> bool {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
        .expect("base64 secret");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    header.split(' ').any(|s| s == expected)
}

#[test]
fn the_independent_verifier_passes_the_specification_vector() {
    assert!(verifies(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "1614265330",
        r#"{"test": 2432232314}"#,
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    ));
    assert!(!verifies(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "1614265331",
        r#"{"test": 2432232314}"#,
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    ));
}

/// Every request the receiver got verifies with the channel's secret and a timestamp within
/// five minutes of now (the spec's tolerance; retries sign with the time of the attempt).
fn assert_all_signed(rx: &Receiver, secret: &str) {
    let got = rx.got();
    assert!(!got.is_empty());
    for g in got {
        assert!(
            verifies(secret, &g.id, &g.timestamp, &g.body, &g.signature),
            "signature of {} does not verify",
            g.id
        );
        let ts: i64 = g.timestamp.parse().unwrap();
        assert!((Utc::now().timestamp() - ts).abs() < 300, "stale timestamp");
    }
}

// ---------------------------------------------------------------------------------------------
// Server helpers
// ---------------------------------------------------------------------------------------------

fn config(dir: &TempDir) -> Config {
    let mut c = common::test_config(dir);
    c.admin_key = Some(ADMIN.into());
    c.public_url = Some("https://tally.example.com".into());
    // Retries every 200 ms (sixty of them), a short timeout: outages play out in seconds.
    c.alerts.retry_schedule = std::iter::once("0s".to_string())
        .chain(std::iter::repeat_n("200ms".to_string(), 60))
        .collect();
    c.alerts.timeout = "500ms".into();
    c
}

async fn start_in(dir: TempDir, adjust: impl FnOnce(&mut Config)) -> TestServer {
    common::init_logs();
    let mut c = config(&dir);
    adjust(&mut c);
    let server = tally::app::start(c).await.expect("server starts");
    TestServer {
        url: server.url(),
        server: Some(server),
        dir,
        client: reqwest::Client::new(),
        key: Some(ADMIN.into()),
    }
}

async fn start() -> TestServer {
    start_in(tempfile::tempdir().unwrap(), |_| {}).await
}

async fn call(
    srv: &TestServer,
    method: &str,
    path: &str,
    body: Option<Value>,
    key: &str,
) -> (u16, Value) {
    let url = srv.url(path);
    let rb = match method {
        "GET" => srv.client.get(url),
        "POST" => srv.client.post(url),
        "PUT" => srv.client.put(url),
        "PATCH" => srv.client.patch(url),
        "DELETE" => srv.client.delete(url),
        m => panic!("{m}"),
    };
    let rb = match body {
        Some(b) => rb.json(&b),
        None => rb,
    };
    let resp = rb.bearer_auth(key).send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn admin(srv: &TestServer, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    call(srv, method, path, body, ADMIN).await
}

async fn ok(srv: &TestServer, method: &str, path: &str, body: Option<Value>) -> Value {
    let (status, v) = admin(srv, method, path, body).await;
    assert!(
        (200..300).contains(&status),
        "{method} {path} → {status}: {v}"
    );
    v
}

/// A channel to `rx`: (id, secret).
async fn channel(srv: &TestServer, rx: &Receiver, name: &str, project: &str) -> (String, String) {
    let v = ok(
        srv,
        "POST",
        "/api/v1/channels",
        Some(json!({"name": name, "project": project, "url": rx.url})),
    )
    .await;
    (
        v["id"].as_str().unwrap().to_string(),
        v["secret"].as_str().unwrap().to_string(),
    )
}

async fn budget(srv: &TestServer, spec: Value) -> String {
    let v = ok(srv, "POST", "/api/v1/budgets", Some(spec)).await;
    v["id"].as_str().unwrap().to_string()
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One call of `cost` USD at `at`, with extra attributes.
fn ev(at: DateTime<Utc>, cost: &str, extra: Value) -> Value {
    let mut e = json!({"timestamp": ts(at), "model": "gpt-4o", "cost": cost, "feature": "search"});
    if let (Value::Object(m), Value::Object(x)) = (&mut e, extra) {
        m.extend(x);
    }
    e
}

async fn ingest(srv: &TestServer, events: Vec<Value>, key: &str) {
    let (status, v) = call(
        srv,
        "POST",
        "/v1/ingest",
        Some(Value::Array(events.clone())),
        key,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["accepted"].as_u64(), Some(events.len() as u64), "{v}");
}

async fn alerts(srv: &TestServer, query: &str) -> Vec<Value> {
    let v = ok(srv, "GET", &format!("/api/v1/alerts{query}"), None).await;
    let mut list = v["alerts"].as_array().unwrap().clone();
    list.sort_by_key(|a| a["seq"].as_i64().unwrap());
    list
}

fn dec(v: &Value) -> Decimal {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a decimal string, got {v}"))
        .parse()
        .unwrap()
}

/// Waits (up to a minute; not a timing assertion) for a condition on the server's state.
async fn until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// (threshold, state, spent) of each alert of a budget.
fn summary(list: &[Value]) -> Vec<(String, String, Decimal)> {
    list.iter()
        .map(|a| {
            (
                a["threshold"].as_str().unwrap().to_string(),
                a["state"].as_str().unwrap().to_string(),
                dec(&a["spent"]),
            )
        })
        .collect()
}

fn s(v: &str) -> String {
    v.to_string()
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn thresholds_cross_once_each_and_every_delivery_verifies() {
    let srv = start().await;
    let rx = Receiver::start().await;
    let (ch, secret) = channel(&srv, &rx, "oncall", "default").await;
    let id = budget(
        &srv,
        json!({"name": "search monthly", "scope": {"feature": "search"}, "period": "month",
               "amount": "10", "channels": [ch]}),
    )
    .await;
    let now = Utc::now();
    let search = |cost: &str| ev(now, cost, json!({}));
    // 4 → 40 %: nothing. 5 → 50 %. 6 → 60 %: nothing new. 7.5 → 75 %. 8.5 → 85 %: the 80 %
    // alert. 11.5 → 115 %: the 100 % alert. 16.5: nothing more. Chat spend is out of scope.
    for (batch, expected) in [
        (
            vec![search("4"), ev(now, "50", json!({"feature": "chat"}))],
            0,
        ),
        (vec![search("1")], 1),
        (vec![search("1")], 1),
        (vec![search("0.5"), search("1")], 1),
        (vec![search("1")], 2),
        (vec![search("3")], 3),
        (vec![search("5")], 3),
    ] {
        ingest(&srv, batch, ADMIN).await;
        // The alert row is written in the commit that crossed: visible as soon as the ingest
        // answered.
        assert_eq!(alerts(&srv, &format!("?budget={id}")).await.len(), expected);
    }
    let list = alerts(&srv, &format!("?budget={id}")).await;
    assert_eq!(
        summary(&list),
        vec![
            (s("50"), s("open"), dec!(5)),
            (s("80"), s("open"), dec!(8.5)),
            (s("100"), s("open"), dec!(11.5)),
        ]
    );
    let p = &list[1]["payload"];
    assert_eq!(p["type"], "budget.threshold_crossed");
    let d = &p["data"];
    assert_eq!(d["budget"]["id"], id.as_str());
    assert_eq!(d["budget"]["scope"], json!({"feature": "search"}));
    assert_eq!(
        (dec(&d["amount"]), dec(&d["spent"]), dec(&d["percent"])),
        (dec!(10), dec!(8.5), dec!(85))
    );
    assert_eq!(d["threshold"], "80");
    assert_eq!(d["thresholds_reached"], json!(["50", "80"]));
    assert_eq!(d["split_value"], Value::Null);
    assert_eq!(
        d["top_contributors"]["feature"],
        json!([{"value": "search", "cost": "8.5"}])
    );
    assert_eq!(d["top_contributors"]["model"][0]["value"], "gpt-4o");
    assert_eq!(
        d["dashboard_url"],
        format!("https://tally.example.com/budgets#{id}")
    );
    let month_start = Utc
        .with_ymd_and_hms(
            now.format("%Y").to_string().parse().unwrap(),
            now.format("%m").to_string().parse().unwrap(),
            1,
            0,
            0,
            0,
        )
        .unwrap();
    assert_eq!(
        d["period"]["start"],
        month_start.to_rfc3339_opts(SecondsFormat::Secs, true)
    );

    // Each alert delivered exactly once, in creation order, every request signed.
    until("three deliveries", || async { rx.acked().len() == 3 }).await;
    let ids: Vec<String> = rx.acked().iter().map(|g| g.id.clone()).collect();
    let expected_ids: Vec<String> = list
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, expected_ids);
    assert_all_signed(&rx, &secret);
    for (g, a) in rx.acked().iter().zip(&list) {
        // The body is the stored payload, byte for byte.
        let body: Value = serde_json::from_str(&g.body).unwrap();
        assert_eq!(body, a["payload"]);
    }
    until("deliveries recorded", || async {
        alerts(&srv, &format!("?budget={id}"))
            .await
            .iter()
            .all(|a| a["deliveries"][0]["state"] == "delivered")
    })
    .await;
    let list = alerts(&srv, &format!("?budget={id}")).await;
    for a in &list {
        let d = &a["deliveries"][0];
        assert_eq!(
            (d["channel_id"].as_str(), d["attempts"].as_i64()),
            (Some(ch.as_str()), Some(1))
        );
        assert_eq!(d["attempt_log"][0]["status"], 200);
    }

    // The budget's spend agrees with /api/v1/costs over the same period.
    let status = ok(
        &srv,
        "GET",
        &format!("/api/v1/budgets/status?budget={id}"),
        None,
    )
    .await;
    let row = &status["budgets"][0]["rows"][0];
    assert_eq!(dec(&row["spent"]), dec!(16.5));
    assert_eq!(row["state"], "exceeded");
    let from = row["period"]["start"].as_str().unwrap();
    let to = row["period"]["end"].as_str().unwrap();
    let costs = ok(
        &srv,
        "GET",
        &format!(
            "/api/v1/costs?feature=search&from={}&to={}",
            urlenc(from),
            urlenc(to)
        ),
        None,
    )
    .await;
    assert_eq!(dec(&costs["total"]["cost"]), dec!(16.5));

    // A jump past every threshold in one batch is one message (the 100 %); the lower
    // thresholds are recorded as superseded so they never fire later.
    let jump = budget(
        &srv,
        json!({"name": "chat", "scope": {"feature": "chat"}, "period": "month", "amount": "100",
               "channels": ["oncall"]}),
    )
    .await;
    // Created at 50 % already (the whole period counts): it alerts at once.
    let list = alerts(&srv, &format!("?budget={jump}")).await;
    assert_eq!(summary(&list), vec![(s("50"), s("open"), dec!(50))]);
    ingest(&srv, vec![ev(now, "70", json!({"feature": "chat"}))], ADMIN).await;
    let list = alerts(&srv, &format!("?budget={jump}")).await;
    assert_eq!(
        summary(&list),
        vec![
            (s("50"), s("open"), dec!(50)),
            (s("80"), s("superseded"), dec!(120)),
            (s("100"), s("open"), dec!(120)),
        ]
    );
    assert_eq!(list[1]["superseded_by"], list[2]["id"]);
    assert_eq!(list[1]["deliveries"], json!([]));
    until("the jump's deliveries", || async { rx.acked().len() == 5 }).await;
    let last: Vec<String> = rx.acked()[3..].iter().map(|g| g.id.clone()).collect();
    assert_eq!(
        last,
        vec![
            list[0]["id"].as_str().unwrap().to_string(),
            list[2]["id"].as_str().unwrap().to_string()
        ]
    );
    srv.stop().await;
}

fn urlenc(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn a_restart_in_the_middle_of_a_period_does_not_re_alert() {
    let rx = Receiver::start().await;
    let srv = start().await;
    let (ch, secret) = channel(&srv, &rx, "oncall", "default").await;
    let id = budget(
        &srv,
        json!({"name": "month", "period": "month", "amount": "10", "channels": [ch], "forecast": false}),
    )
    .await;
    let now = Utc::now();
    ingest(&srv, vec![ev(now, "6", json!({}))], ADMIN).await;
    until("the 50 % alert delivered", || async {
        rx.acked().len() == 1
    })
    .await;
    let dir = srv.stop().await;

    // Same data directory, a new process: nothing is re-sent, nothing re-fires.
    let srv = start_in(dir, |_| {}).await;
    ingest(&srv, vec![ev(now, "1", json!({}))], ADMIN).await;
    assert_eq!(alerts(&srv, &format!("?budget={id}")).await.len(), 1);
    ingest(&srv, vec![ev(now, "1.5", json!({}))], ADMIN).await;
    let list = alerts(&srv, &format!("?budget={id}")).await;
    assert_eq!(
        summary(&list),
        vec![
            (s("50"), s("open"), dec!(6)),
            (s("80"), s("open"), dec!(8.5))
        ]
    );
    until("the 80 % alert delivered", || async {
        rx.acked().len() == 2
    })
    .await;
    let dir = srv.stop().await;

    let srv = start_in(dir, |_| {}).await;
    // The dispatcher of the new process finds nothing pending: still exactly two.
    ingest(&srv, vec![ev(now, "0.1", json!({}))], ADMIN).await;
    let list = alerts(&srv, &format!("?budget={id}")).await;
    assert_eq!(list.len(), 2);
    assert!(list
        .iter()
        .all(|a| a["deliveries"][0]["state"] == "delivered"));
    let got: Vec<String> = rx.got().iter().map(|g| g.id.clone()).collect();
    assert_eq!(
        got,
        list.iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    );
    assert_all_signed(&rx, &secret);
    srv.stop().await;
}

#[tokio::test]
async fn a_receiver_down_for_retries_then_up_gets_each_alert_once_in_order() {
    let srv = start().await;
    let rx = Receiver::start().await;
    rx.set(Mode::Fail);
    let (ch, secret) = channel(&srv, &rx, "flaky", "default").await;
    let id = budget(
        &srv,
        json!({"name": "steps", "period": "month", "amount": "10",
               "thresholds": [10, 20, 30, 40], "channels": [ch]}),
    )
    .await;
    let now = Utc::now();
    // Four crossings in four commits while the receiver fails.
    for _ in 0..4 {
        ingest(&srv, vec![ev(now, "1", json!({}))], ADMIN).await;
    }
    let created = alerts(&srv, &format!("?budget={id}")).await;
    assert_eq!(created.len(), 4);
    let order: Vec<String> = created
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    until("three failed attempts", || async { rx.got().len() >= 3 }).await;
    rx.set(Mode::Hang);
    let seen = rx.got().len();
    until("two timed-out attempts", || async {
        rx.got().len() >= seen + 2
    })
    .await;
    rx.set(Mode::Ok);
    until("all four delivered", || async { rx.acked().len() == 4 }).await;

    let acked: Vec<String> = rx.acked().iter().map(|g| g.id.clone()).collect();
    assert_eq!(acked, order, "each alert once, in creation order");
    // Nothing newer was ever sent before an older one was acknowledged.
    let pos = |id: &str| order.iter().position(|o| o == id).unwrap();
    let seq: Vec<usize> = rx.got().iter().map(|g| pos(&g.id)).collect();
    assert!(seq.windows(2).all(|w| w[0] <= w[1]), "{seq:?}");
    assert_all_signed(&rx, &secret);

    // The first alert's log holds every attempt: 500s, timeouts, then the 200.
    until("attempts recorded", || async {
        alerts(&srv, &format!("?budget={id}"))
            .await
            .iter()
            .all(|a| a["deliveries"][0]["state"] == "delivered")
    })
    .await;
    let first = &alerts(&srv, &format!("?budget={id}")).await[0];
    let log = first["deliveries"][0]["attempt_log"].as_array().unwrap();
    let sent_first = rx.got().iter().filter(|g| g.id == order[0]).count();
    assert_eq!(log.len(), sent_first);
    assert_eq!(
        first["deliveries"][0]["attempts"].as_u64(),
        Some(sent_first as u64)
    );
    assert!(
        log.iter().filter(|a| a["status"] == 500).count() >= 3,
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|a| a["status"].is_null() && a["error"].as_str().unwrap().contains("timed out")),
        "{log:?}"
    );
    assert_eq!(log.last().unwrap()["status"], 200);
    for a in log {
        assert!(a["duration_ms"].as_i64().is_some());
    }
    srv.stop().await;
}

#[tokio::test]
async fn a_410_disables_the_channel_until_it_is_enabled_again() {
    let srv = start().await;
    let gone = Receiver::start().await;
    gone.set(Mode::Gone);
    let fine = Receiver::start().await;
    let (ch_gone, secret) = channel(&srv, &gone, "gone", "default").await;
    let (ch_fine, _) = channel(&srv, &fine, "fine", "default").await;
    let id = budget(
        &srv,
        json!({"name": "b", "period": "month", "amount": "10", "channels": [ch_gone, ch_fine]}),
    )
    .await;
    let now = Utc::now();
    ingest(&srv, vec![ev(now, "5", json!({}))], ADMIN).await;
    until("the 410", || async { gone.got().len() == 1 }).await;
    until("the channel disabled", || async {
        ok(&srv, "GET", &format!("/api/v1/channels/{ch_gone}"), None).await["enabled"] == false
    })
    .await;
    let c = ok(&srv, "GET", &format!("/api/v1/channels/{ch_gone}"), None).await;
    assert!(c["disabled_reason"].as_str().unwrap().contains("410"));
    ingest(&srv, vec![ev(now, "3", json!({}))], ADMIN).await;
    until("the other channel gets both", || async {
        fine.acked().len() == 2
    })
    .await;
    let list = alerts(&srv, &format!("?budget={id}")).await;
    let to_gone = |a: &Value| {
        a["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["channel_id"] == ch_gone.as_str())
            .unwrap()
            .clone()
    };
    assert_eq!(to_gone(&list[0])["attempt_log"][0]["status"], 410);
    assert_eq!(to_gone(&list[0])["state"], "pending");
    assert_eq!(to_gone(&list[1])["attempts"], 0);
    assert_eq!(gone.got().len(), 1, "a disabled channel gets nothing");

    // Fixed and enabled again: the pending alerts go out, oldest first.
    gone.set(Mode::Ok);
    let v = ok(
        &srv,
        "PATCH",
        &format!("/api/v1/channels/{ch_gone}"),
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(
        (v["enabled"].clone(), v["disabled_reason"].clone()),
        (json!(true), Value::Null)
    );
    until("both delivered after enabling", || async {
        gone.acked().len() == 2
    })
    .await;
    let ids: Vec<String> = gone.acked().iter().map(|g| g.id.clone()).collect();
    assert_eq!(
        ids,
        list.iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    );
    assert_all_signed(&gone, &secret);

    // A redelivery sends the same alert (same webhook-id) again on request.
    let (status, v) = admin(
        &srv,
        "POST",
        &format!("/api/v1/alerts/{}/redeliver?channel={ch_gone}", ids[0]),
        None,
    )
    .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["queued"], json!([ch_gone]));
    until("redelivered", || async { gone.acked().len() == 3 }).await;
    assert_eq!(gone.acked()[2].id, ids[0]);
    srv.stop().await;
}

#[tokio::test]
async fn a_split_budget_alerts_only_for_the_value_that_crossed() {
    let srv = start().await;
    let rx = Receiver::start().await;
    let (ch, secret) = channel(&srv, &rx, "oncall", "default").await;
    let id = budget(
        &srv,
        json!({"name": "per customer", "split_by": "customer_id", "period": "month",
               "amount": "10", "channels": [ch]}),
    )
    .await;
    let now = Utc::now();
    let c = |who: &str, cost: &str| ev(now, cost, json!({"customer_id": who}));
    ingest(
        &srv,
        vec![
            c("acme", "7"),
            c("globex", "3"),
            c("acme", "5"),
            ev(now, "40", json!({})),
        ],
        ADMIN,
    )
    .await;
    let list = alerts(&srv, &format!("?budget={id}")).await;
    // acme: 12 of 10 → 50 and 80 superseded by 100; globex (30 %) and the calls without a
    // customer ($40) alert nobody.
    assert_eq!(
        summary(&list),
        vec![
            (s("50"), s("superseded"), dec!(12)),
            (s("80"), s("superseded"), dec!(12)),
            (s("100"), s("open"), dec!(12))
        ]
    );
    assert!(list.iter().all(|a| a["split_value"] == "acme"));
    assert_eq!(list[2]["payload"]["data"]["split_value"], "acme");
    ingest(&srv, vec![c("globex", "2.5")], ADMIN).await;
    let list = alerts(&srv, &format!("?budget={id}")).await;
    assert_eq!(list.len(), 4);
    assert_eq!(
        (
            list[3]["split_value"].as_str(),
            list[3]["threshold"].as_str()
        ),
        (Some("globex"), Some("50"))
    );
    until("two deliveries", || async { rx.acked().len() == 2 }).await;
    assert_all_signed(&rx, &secret);

    // Status per customer agrees with /api/v1/costs grouped by customer.
    let status = ok(
        &srv,
        "GET",
        &format!("/api/v1/budgets/status?budget={id}"),
        None,
    )
    .await;
    let b = &status["budgets"][0];
    assert_eq!(b["state"], "exceeded");
    let rows: Vec<(String, Decimal, String)> = b["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["split_value"].as_str().unwrap().to_string(),
                dec(&r["spent"]),
                r["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (s("acme"), dec!(12), s("exceeded")),
            (s("globex"), dec!(5.5), s("warning"))
        ]
    );
    let costs = ok(
        &srv,
        "GET",
        "/api/v1/costs?group_by=customer_id&order=customer_id",
        None,
    )
    .await;
    let by: Vec<(Value, Decimal)> = costs["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["customer_id"].clone(), dec(&r["cost"])))
        .collect();
    assert_eq!(
        by,
        vec![
            (json!("acme"), dec!(12)),
            (json!("globex"), dec!(5.5)),
            (Value::Null, dec!(40))
        ]
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_run_cap_fires_for_a_looping_run_in_the_commit_that_crosses_it() {
    let srv = start().await;
    let rx = Receiver::start().await;
    let (ch, secret) = channel(&srv, &rx, "oncall", "default").await;
    let id = budget(
        &srv,
        json!({"name": "agent loop", "scope": {"agent": "code-*"},
               "run_cap": {"max_cost": "5", "max_calls": 20}, "channels": [ch]}),
    )
    .await;
    let now = Utc::now();
    let call = |run: &str, i: i64| {
        ev(
            now - chrono::Duration::seconds(100 - i),
            "0.3",
            json!({"agent": "code-review", "run_id": run}),
        )
    };
    // A normal run: 3 calls. The looping run: batches of 5 calls at $0.30 — the cost cap
    // ($5) is reached at the 17th call ($5.10), the call cap at the 20th.
    ingest(&srv, (0..3).map(|i| call("run-ok", i)).collect(), ADMIN).await;
    let mut seen = Vec::new();
    for batch in 0..6 {
        ingest(
            &srv,
            (0..5).map(|i| call("run-loop", batch * 5 + i)).collect(),
            ADMIN,
        )
        .await;
        let kinds: Vec<String> = alerts(&srv, &format!("?budget={id}"))
            .await
            .iter()
            .map(|a| a["kind"].as_str().unwrap().to_string())
            .collect();
        seen.push(kinds);
    }
    // After 5, 10, 15 calls nothing; after 20 both caps (17th and 20th call); then nothing new.
    assert_eq!(seen[2], Vec::<String>::new());
    assert_eq!(seen[3], vec![s("run_cap_cost"), s("run_cap_calls")]);
    assert_eq!(seen[5], seen[3]);
    let list = alerts(&srv, &format!("?budget={id}")).await;
    for a in &list {
        assert_eq!(a["split_value"], "run-loop");
        assert_eq!(a["type"], "budget.run_cap_exceeded");
        let run = &a["payload"]["data"]["run"];
        assert_eq!(
            (
                run["dimension"].as_str(),
                run["id"].as_str(),
                run["calls"].as_i64()
            ),
            (Some("run_id"), Some("run-loop"), Some(20))
        );
        assert_eq!(dec(&run["cost"]), dec!(6));
    }
    assert_eq!(list[0]["payload"]["data"]["limit"], "cost");
    assert_eq!(list[1]["payload"]["data"]["limit"], "calls");
    until("two deliveries", || async { rx.acked().len() == 2 }).await;
    assert_all_signed(&rx, &secret);

    // The check endpoint answers for the run: over its caps.
    let check = ok(
        &srv,
        "GET",
        "/v1/budget-check?agent=code-review&run_id=run-loop",
        None,
    )
    .await;
    assert_eq!(check["state"], "exceeded");
    assert_eq!(check["budgets"][0]["calls"], 30);
    assert_eq!(check["budgets"][0]["remaining_calls"], 0);
    let fine = ok(
        &srv,
        "GET",
        "/v1/budget-check?agent=code-review&run_id=run-ok",
        None,
    )
    .await;
    assert_eq!(
        (fine["state"].as_str(), fine["budgets"][0]["calls"].as_i64()),
        (Some("ok"), Some(3))
    );
    srv.stop().await;
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

#[tokio::test]
async fn period_boundaries_in_los_angeles_including_dst_days() {
    let srv = start().await;
    let id = budget(
        &srv,
        json!({"name": "la day", "period": "day", "tz": "America/Los_Angeles", "amount": "10"}),
    )
    .await;
    // Fall back, 1 November 2026: the day runs 07:00Z to 08:00Z the next day (25 hours).
    // Spring forward, 8 March 2026: 08:00Z to 07:00Z the next day (23 hours).
    ingest(
        &srv,
        vec![
            ev(utc("2026-11-01T06:59:59Z"), "1", json!({})), // 31 Oct, 23:59:59 PDT
            ev(utc("2026-11-01T07:00:00Z"), "2", json!({})), // 1 Nov, midnight PDT
            ev(utc("2026-11-02T07:30:00Z"), "4", json!({})), // 1 Nov, 23:30 PST (the 25th hour)
            ev(utc("2026-11-02T08:00:00Z"), "8", json!({})), // 2 Nov, midnight PST
            ev(utc("2026-03-08T07:59:59Z"), "16", json!({})), // 7 Mar, 23:59:59 PST
            ev(utc("2026-03-08T08:00:00Z"), "32", json!({})), // 8 Mar, midnight PST
            ev(utc("2026-03-09T06:59:59Z"), "64", json!({})), // 8 Mar, 23:59:59 PDT
            ev(utc("2026-03-09T07:00:00Z"), "128", json!({})), // 9 Mar, midnight PDT
        ],
        ADMIN,
    )
    .await;
    let at = |t: &str| {
        let path = format!("/api/v1/budgets/status?budget={id}&at={}", urlenc(t));
        let srv = &srv;
        async move { ok(srv, "GET", &path, None).await["budgets"][0]["rows"][0].clone() }
    };
    let fall = at("2026-11-01T12:00:00Z").await;
    assert_eq!(
        fall["period"],
        json!({"start": "2026-11-01T00:00:00-07:00", "end": "2026-11-02T00:00:00-08:00"})
    );
    assert_eq!(dec(&fall["spent"]), dec!(6));
    let late = at("2026-11-02T07:59:59Z").await;
    assert_eq!(
        dec(&late["spent"]),
        dec!(6),
        "still 1 November in Los Angeles"
    );
    let spring = at("2026-03-08T20:00:00Z").await;
    assert_eq!(
        spring["period"],
        json!({"start": "2026-03-08T00:00:00-08:00", "end": "2026-03-09T00:00:00-07:00"})
    );
    assert_eq!(dec(&spring["spent"]), dec!(96));
    // The same days through the costs API in the same zone.
    for (day, expected) in [("2026-11-01", dec!(6)), ("2026-03-08", dec!(96))] {
        let costs = ok(
            &srv,
            "GET",
            &format!("/api/v1/costs?tz=America/Los_Angeles&from={day}&to={day}"),
            None,
        )
        .await;
        assert_eq!(dec(&costs["total"]["cost"]), expected);
    }
    // These days are over: nothing alerted for them (late data updates a past period's
    // numbers but pages nobody).
    assert!(alerts(&srv, &format!("?budget={id}")).await.is_empty());

    // Today's midnight in Los Angeles: a call one second before it belongs to yesterday and
    // does not alert today's budget; one at midnight counts.
    let tz: chrono_tz::Tz = "America/Los_Angeles".parse().unwrap();
    let local_today = Utc::now().with_timezone(&tz).date_naive();
    let midnight = tz
        .from_local_datetime(&local_today.and_hms_opt(0, 0, 0).unwrap())
        .earliest()
        .unwrap()
        .with_timezone(&Utc);
    ingest(
        &srv,
        vec![ev(
            midnight - chrono::Duration::seconds(1),
            "100",
            json!({}),
        )],
        ADMIN,
    )
    .await;
    assert!(alerts(&srv, &format!("?budget={id}")).await.is_empty());
    ingest(&srv, vec![ev(midnight, "6", json!({}))], ADMIN).await;
    let list = alerts(&srv, &format!("?budget={id}")).await;
    assert_eq!(summary(&list), vec![(s("50"), s("open"), dec!(6))]);
    assert_eq!(
        list[0]["period_start"],
        midnight.to_rfc3339_opts(SecondsFormat::Secs, true)
    );
    srv.stop().await;
}

#[tokio::test]
async fn the_budget_check_answers_from_memory_for_ingest_and_read_keys() {
    let srv = start().await;
    let key = |role: &str, project: &str| {
        let srv = &srv;
        let body = json!({"name": format!("{role}-{project}"), "role": role, "project": project});
        async move {
            ok(srv, "POST", "/api/v1/keys", Some(body)).await["secret"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let ingest_a = key("ingest", "a").await;
    let read_a = key("read", "a").await;
    budget(
        &srv,
        json!({"name": "search", "project": "a", "scope": {"feature": "search", "model": "gpt-*"},
                        "period": "month", "amount": "10"}),
    )
    .await;
    budget(
        &srv,
        json!({"name": "per user", "project": "a", "split_by": "user_id",
                        "period": "month", "amount": "4", "thresholds": [75]}),
    )
    .await;
    budget(
        &srv,
        json!({"name": "other project", "project": "b", "period": "month", "amount": "1"}),
    )
    .await;
    let now = Utc::now();
    ingest(
        &srv,
        vec![
            ev(now, "3", json!({"user_id": "u1"})),
            ev(now, "0.5", json!({"user_id": "u2"})),
        ],
        &ingest_a,
    )
    .await;

    // Right after the commit, without waiting for a refresh.
    let (status, v) = call(
        &srv,
        "GET",
        "/v1/budget-check?feature=search&model=gpt-4o&user_id=u1",
        None,
        &ingest_a,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["project"], "a");
    assert_eq!(v["state"], "warning");
    let got: Vec<(String, Value, Decimal, Decimal, String)> = v["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap().to_string(),
                b["split_value"].clone(),
                dec(&b["spent"]),
                dec(&b["remaining"]),
                b["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (s("per user"), json!("u1"), dec!(3), dec!(1), s("warning")),
            (s("search"), Value::Null, dec!(3.5), dec!(6.5), s("ok")),
        ]
    );
    assert!(v["note"]
        .as_str()
        .unwrap()
        .contains("eventually consistent"));
    // A read key may ask too; a call outside the scope matches only the per-user budget.
    let (status, v) = call(
        &srv,
        "GET",
        "/v1/budget-check?feature=chat&model=gpt-4o&user_id=u2",
        None,
        &read_a,
    )
    .await;
    assert_eq!(status, 200);
    let names: Vec<&str> = v["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["per user"]);
    assert_eq!(v["state"], "ok");
    // Errors: an unknown parameter is named; another project is forbidden.
    let (status, v) = call(&srv, "GET", "/v1/budget-check?colour=red", None, &ingest_a).await;
    assert_eq!(status, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("colour"));
    let (status, _) = call(
        &srv,
        "GET",
        "/v1/budget-check?feature=x&feature=y",
        None,
        &ingest_a,
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = call(&srv, "GET", "/v1/budget-check?project=b", None, &ingest_a).await;
    assert_eq!(status, 403);
    // An admin names the project.
    let v = ok(&srv, "GET", "/v1/budget-check?project=b", None).await;
    assert_eq!(v["budgets"][0]["name"], "other project");
    srv.stop().await;
}

#[tokio::test]
async fn projects_see_only_their_own_budgets_channels_and_alerts() {
    let srv = start().await;
    let rx = Receiver::start().await;
    let key = |role: &str, project: &str| {
        let srv = &srv;
        let body = json!({"name": format!("{role}-{project}"), "role": role, "project": project});
        async move {
            ok(srv, "POST", "/api/v1/keys", Some(body)).await["secret"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let read_a = key("read", "a").await;
    let ingest_a = key("ingest", "a").await;
    let ingest_b = key("ingest", "b").await;
    let (ch_a, _) = channel(&srv, &rx, "a-oncall", "a").await;
    let (ch_b, _) = channel(&srv, &rx, "b-oncall", "b").await;
    let a = budget(
        &srv,
        json!({"name": "a", "project": "a", "period": "month", "amount": "1", "channels": [ch_a]}),
    )
    .await;
    let b = budget(
        &srv,
        json!({"name": "b", "project": "b", "period": "month", "amount": "1", "channels": [ch_b]}),
    )
    .await;
    // A budget may not use another project's channel.
    let (status, v) = admin(&srv, "POST", "/api/v1/budgets", Some(json!({"name": "x", "project": "a", "period": "month", "amount": "1", "channels": [ch_b]}))).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("channels"));

    let now = Utc::now();
    ingest(&srv, vec![ev(now, "2", json!({}))], &ingest_a).await;
    ingest(&srv, vec![ev(now, "3", json!({}))], &ingest_b).await;

    let (_, status_a) = call(&srv, "GET", "/api/v1/budgets/status", None, &read_a).await;
    let ids: Vec<&str> = status_a["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![a.as_str()]);
    assert_eq!(
        dec(&status_a["budgets"][0]["rows"][0]["spent"]),
        dec!(2),
        "only project a's spend"
    );
    let (status, _) = call(
        &srv,
        "GET",
        "/api/v1/budgets/status?project=b",
        None,
        &read_a,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(
        &srv,
        "GET",
        &format!("/api/v1/budgets/status?budget={b}"),
        None,
        &read_a,
    )
    .await;
    assert_eq!(status, 404);
    let (_, alerts_a) = call(&srv, "GET", "/api/v1/alerts", None, &read_a).await;
    let list = alerts_a["alerts"].as_array().unwrap();
    assert!(
        !list.is_empty()
            && list
                .iter()
                .all(|x| x["project"] == "a" && x["budget_id"] == a.as_str())
    );
    let (status, _) = call(&srv, "GET", "/api/v1/alerts?project=b", None, &read_a).await;
    assert_eq!(status, 403);
    // Admin-only endpoints stay closed to project keys.
    for (m, p) in [
        ("GET", "/api/v1/budgets"),
        ("GET", "/api/v1/channels"),
        ("DELETE", &*format!("/api/v1/budgets/{b}")),
    ] {
        let (status, _) = call(&srv, m, p, None, &read_a).await;
        assert_eq!(status, 403, "{m} {p}");
    }
    // The budgets page (where alert payloads link) shows project a's budget and alerts only.
    let (status, page) = call(&srv, "GET", "/budgets", None, &read_a).await;
    assert_eq!(status, 200);
    let page = page.as_str().unwrap().to_string();
    assert!(
        page.contains(&format!("id=\"{a}\"")) && page.contains("exceeded"),
        "{page}"
    );
    assert!(
        page.contains("a-oncall: delivered") || page.contains("a-oncall: pending"),
        "{page}"
    );
    assert!(!page.contains(&b) && !page.contains("b-oncall"), "{page}");
    // The admin sees both, and can filter. Each budget went past all three thresholds at
    // once: 50 and 80 superseded, 100 sent.
    assert_eq!(
        ok(&srv, "GET", "/api/v1/alerts", None).await["alerts"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    assert_eq!(
        ok(&srv, "GET", "/api/v1/budgets?project=b", None).await["budgets"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    srv.stop().await;
}

#[tokio::test]
async fn documented_errors_and_secrets_that_never_leak() {
    let srv = start().await;
    let rx = Receiver::start().await;
    let (ch, secret) = channel(&srv, &rx, "oncall", "default").await;
    for (body, field) in [
        (
            json!({"name": "x", "period": "fortnight", "amount": "1"}),
            "period",
        ),
        (
            json!({"name": "x", "period": "day", "amount": "-1"}),
            "amount",
        ),
        (
            json!({"name": "x", "period": "day", "amount": "1", "scope": {"colour": "red"}}),
            "scope.colour",
        ),
        (
            json!({"name": "x", "period": "day", "amount": "1", "channels": ["nope"]}),
            "channels",
        ),
        (
            json!({"name": "x", "period": "day", "amount": "1", "tz": "Mars/Olympus"}),
            "tz",
        ),
        (json!({"name": "x", "run_cap": {}}), "run_cap"),
        (
            json!({"name": "x", "period": "day", "amount": "1", "colour": "red"}),
            "colour",
        ),
    ] {
        let (status, v) = admin(&srv, "POST", "/api/v1/budgets", Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(field),
            "{body}: {v}"
        );
    }
    for (path, param) in [
        ("/api/v1/budgets/status?at=yesterday", "at"),
        ("/api/v1/budgets/status?colour=red", "colour"),
        ("/api/v1/alerts?kind=sometimes", "kind"),
        ("/api/v1/alerts?limit=0", "limit"),
        ("/api/v1/budgets?x=1", "x"),
    ] {
        let (status, v) = admin(&srv, "GET", path, None).await;
        assert_eq!(status, 400, "{path}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(param),
            "{path}: {v}"
        );
    }
    for (m, p) in [
        ("GET", "/api/v1/budgets/bud_nope"),
        ("DELETE", "/api/v1/budgets/bud_nope"),
        ("GET", "/api/v1/channels/ch_nope"),
        ("DELETE", "/api/v1/channels/ch_nope"),
        ("POST", "/api/v1/channels/ch_nope/test"),
        ("POST", "/api/v1/alerts/alrt_nope/redeliver"),
        ("GET", "/api/v1/budgets/status?budget=bud_nope"),
    ] {
        let (status, v) = admin(&srv, m, p, None).await;
        assert_eq!(status, 404, "{m} {p}: {v}");
        assert_eq!(v["error"]["code"], "not_found");
    }
    let (status, _) = admin(
        &srv,
        "PUT",
        "/api/v1/budgets/bud_nope",
        Some(json!({"name": "x", "period": "day", "amount": "1"})),
    )
    .await;
    assert_eq!(status, 404);
    let id = budget(
        &srv,
        json!({"name": "b", "period": "month", "amount": "5", "channels": ["oncall"]}),
    )
    .await;
    let (status, v) = admin(
        &srv,
        "POST",
        "/api/v1/budgets",
        Some(json!({"name": "b", "period": "day", "amount": "1"})),
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("conflict"))
    );
    let (status, _) = admin(&srv, "DELETE", &format!("/api/v1/channels/{ch}"), None).await;
    assert_eq!(status, 409, "a channel in use is not deleted");

    // The secret appears only in the creation answer.
    ingest(&srv, vec![ev(Utc::now(), "5", json!({}))], ADMIN).await;
    for path in [
        "/api/v1/channels",
        &*format!("/api/v1/channels/{ch}"),
        "/api/v1/alerts",
        "/api/v1/budgets",
        "/api/v1/budgets/status",
    ] {
        let text = ok(&srv, "GET", path, None).await.to_string();
        assert!(!text.contains(&secret), "{path} leaked the secret");
        assert!(!text.contains(&rx.url), "{path} leaked the full URL");
    }
    // The test message is signed like an alert.
    let v = ok(&srv, "POST", &format!("/api/v1/channels/{ch}/test"), None).await;
    assert_eq!(
        (v["delivered"].clone(), v["status"].clone()),
        (json!(true), json!(200))
    );
    let test = rx
        .got()
        .into_iter()
        .find(|g| g.id == v["webhook_id"].as_str().unwrap())
        .unwrap();
    assert!(verifies(
        &secret,
        &test.id,
        &test.timestamp,
        &test.body,
        &test.signature
    ));
    assert_eq!(
        serde_json::from_str::<Value>(&test.body).unwrap()["type"],
        "budget.test"
    );

    // Edits: a change of amount is a new revision, which re-arms the thresholds.
    let v = ok(
        &srv,
        "PUT",
        &format!("/api/v1/budgets/{id}"),
        Some(json!({"name": "b", "period": "month", "amount": "8", "channels": ["oncall"]})),
    )
    .await;
    assert_eq!(v["revision"], 2);
    let list = alerts(&srv, &format!("?budget={id}")).await;
    assert_eq!(
        list.iter()
            .map(|a| (
                a["budget_revision"].as_i64().unwrap(),
                a["threshold"].as_str().unwrap().to_string(),
                a["state"].as_str().unwrap().to_string()
            ))
            .collect::<Vec<_>>(),
        vec![
            (1, s("50"), s("superseded")),
            (1, s("80"), s("superseded")),
            (1, s("100"), s("open")),
            (2, s("50"), s("open"))
        ]
    );
    // Renaming alone keeps the revision.
    let v = ok(
        &srv,
        "PUT",
        &format!("/api/v1/budgets/{id}"),
        Some(json!({"name": "renamed", "period": "month", "amount": "8", "channels": ["oncall"]})),
    )
    .await;
    assert_eq!(v["revision"], 2);
    ok(&srv, "DELETE", &format!("/api/v1/budgets/{id}"), None).await;
    assert_eq!(
        alerts(&srv, &format!("?budget={id}")).await.len(),
        4,
        "history stays"
    );
    srv.stop().await;
}

#[tokio::test]
async fn budgets_declared_in_the_config_file_are_applied_idempotently() {
    let rx = Receiver::start().await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let url = rx.url.clone();
    let declare = move |c: &mut Config, with_second: bool| {
        c.channels = vec![serde_json::from_value(
            json!({"name": "oncall", "project": "p", "url": url, "secret": secret}),
        )
        .unwrap()];
        c.budgets = vec![serde_json::from_value(json!({"name": "monthly", "project": "p", "period": "month", "amount": "10", "channels": ["oncall"]})).unwrap()];
        if with_second {
            c.budgets.push(
                serde_json::from_value(
                    json!({"name": "daily", "project": "p", "period": "day", "amount": "1"}),
                )
                .unwrap(),
            );
        }
    };
    let d = declare.clone();
    let srv = start_in(tempfile::tempdir().unwrap(), move |c| d(c, true)).await;
    let listed = ok(&srv, "GET", "/api/v1/budgets", None).await;
    let ids: Vec<(String, String, i64)> = listed["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap().to_string(),
                b["source"].as_str().unwrap().to_string(),
                b["revision"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ids,
        vec![(s("daily"), s("config"), 1), (s("monthly"), s("config"), 1)]
    );
    let monthly = listed["budgets"][1]["id"].as_str().unwrap().to_string();
    let (status, _) = admin(&srv, "DELETE", &format!("/api/v1/budgets/{monthly}"), None).await;
    assert_eq!(status, 409, "config budgets are managed by the file");
    ingest(
        &srv,
        vec![ev(Utc::now(), "6", json!({"project": "p"}))],
        ADMIN,
    )
    .await;
    until("delivered", || async { rx.acked().len() == 1 }).await;
    assert_all_signed(&rx, secret);
    let dir = srv.stop().await;

    // Same file: same budget, same revision, no re-alert. Without "daily": it is removed.
    let d = declare.clone();
    let srv = start_in(dir, move |c| d(c, false)).await;
    let listed = ok(&srv, "GET", "/api/v1/budgets", None).await;
    let got: Vec<(String, i64)> = listed["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["id"].as_str().unwrap().to_string(),
                b["revision"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, vec![(monthly.clone(), 1)]);
    ingest(
        &srv,
        vec![ev(Utc::now(), "0.5", json!({"project": "p"}))],
        ADMIN,
    )
    .await;
    let list = alerts(&srv, &format!("?budget={monthly}")).await;
    assert_eq!(summary(&list), vec![(s("50"), s("open"), dec!(6))]);
    srv.stop().await;
}

#[tokio::test]
async fn the_demo_budgets_produce_alerts() {
    let srv = start().await;
    let rx = Receiver::start().await;
    let server = srv.server.as_ref().unwrap();
    let secrets = tally::demo::budgets::install(server.store(), server.budgets(), Some(&rx.url))
        .await
        .unwrap();
    let secret = secrets[0].1.clone();
    let pricer = tally::pricing::Pricer::builtin(&Default::default()).unwrap();
    // 28 days of the usual traffic: five runaway code-review runs, all inside every rolling
    // 30-day window.
    let cfg = tally::demo::DemoConfig {
        days: 28,
        ..tally::demo::DemoConfig::default()
    };
    tally::demo::load::load(server.store(), &pricer, &cfg)
        .await
        .unwrap();
    let list = alerts(&srv, "?limit=1000").await;
    let budgets = ok(&srv, "GET", "/api/v1/budgets", None).await;
    let id_of = |name: &str| {
        budgets["budgets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == name)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };

    // The run cap: exactly the runs with 100 calls or more, by the costs API's count.
    let runs = ok(&srv, "GET", "/api/v1/costs?project=dev-tools&feature=code-review&group_by=run_id&order=requests&limit=20", None).await;
    let mut looping: Vec<String> = runs["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["requests"].as_i64().unwrap() >= 100)
        .map(|r| r["run_id"].as_str().unwrap().to_string())
        .collect();
    looping.sort();
    assert_eq!(looping.len(), 5, "{runs}");
    let cap = id_of(tally::demo::budgets::RUN_CAP);
    let mut capped: Vec<String> = list
        .iter()
        .filter(|a| a["budget_id"] == cap.as_str() && a["kind"] == "run_cap_calls")
        .map(|a| a["split_value"].as_str().unwrap().to_string())
        .collect();
    capped.sort();
    assert_eq!(capped, looping);

    // The per-customer budget: as many alert rows per customer as thresholds its spend
    // reached (by the costs API), and nothing for the others.
    let per_customer = id_of(tally::demo::budgets::PER_CUSTOMER);
    let spec = &budgets["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == per_customer.as_str())
        .unwrap()
        .clone();
    let amount = dec(&spec["amount"]);
    let by_customer = ok(
        &srv,
        "GET",
        "/api/v1/costs?project=dev-tools&feature=code-review&group_by=customer_id&limit=100",
        None,
    )
    .await;
    let mut expected: Vec<(String, usize)> = Vec::new();
    for r in by_customer["rows"].as_array().unwrap() {
        let Some(c) = r["customer_id"].as_str() else {
            continue;
        };
        let spent = dec(&r["cost"]);
        let n = [50, 80, 100]
            .iter()
            .filter(|t| spent * Decimal::from(100) >= amount * Decimal::from(**t))
            .count();
        if n > 0 {
            expected.push((c.to_string(), n));
        }
    }
    expected.sort();
    let mut got: Vec<(String, usize)> = Vec::new();
    for a in list
        .iter()
        .filter(|a| a["budget_id"] == per_customer.as_str())
    {
        let c = a["split_value"].as_str().unwrap().to_string();
        match got.iter_mut().find(|(x, _)| *x == c) {
            Some((_, n)) => *n += 1,
            None => got.push((c, 1)),
        }
    }
    got.sort();
    assert!(!expected.is_empty());
    assert_eq!(got, expected);

    // The project total crossed at least its first threshold.
    let total = id_of(tally::demo::budgets::PROJECT_TOTAL);
    assert!(list.iter().any(|a| a["budget_id"] == total.as_str()));

    // Every alert that was to be delivered reaches the receiver once, signed.
    let open: Vec<String> = list
        .iter()
        .filter(|a| a["state"] == "open")
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    until("every demo alert delivered", || async {
        rx.acked().len() >= open.len()
    })
    .await;
    let mut acked: Vec<String> = rx.acked().iter().map(|g| g.id.clone()).collect();
    acked.sort();
    let mut want = open.clone();
    want.sort();
    assert_eq!(acked, want);
    assert_all_signed(&rx, &secret);
    srv.stop().await;
}
