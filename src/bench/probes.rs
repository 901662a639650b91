//! Measurements of a running server from the outside: timed query runs, threshold crossings
//! timed until their webhook arrives at a real loopback receiver, and an open-loop request
//! rate against `/v1/budget-check` next to the same rate against `/healthz` (the floor: loopback
//! HTTP, the client and the server's middleware, with nothing to compute).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use axum::handler::HandlerWithoutStateExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::harness::{percentile, sorted};

/// Latency percentiles of one kind of request, in milliseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Latency {
    pub samples: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

impl Latency {
    pub fn of(samples: Vec<f64>) -> Self {
        let s = sorted(samples);
        Latency {
            samples: s.len(),
            p50_ms: percentile(&s, 50.0),
            p95_ms: percentile(&s, 95.0),
            p99_ms: percentile(&s, 99.0),
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A client for one server: its URL and admin key.
#[derive(Clone)]
pub struct Api {
    pub client: reqwest::Client,
    pub url: String,
    pub key: String,
}

impl Api {
    pub fn new(url: &str, key: &str) -> anyhow::Result<Self> {
        Ok(Api {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(600))
                .build()?,
            url: url.to_string(),
            key: key.to_string(),
        })
    }

    /// GETs `path`; the answer as JSON (non-2xx is an error).
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let resp = self
            .client
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.key)
            .send()
            .await?;
        json_answer(resp, "GET", path).await
    }

    /// POSTs a JSON body; the answer as JSON (non-2xx is an error).
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let resp = self
            .client
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await?;
        json_answer(resp, "POST", path).await
    }

    /// POSTs a gzip NDJSON body to `path` until it is taken (503 means: wait and resend the
    /// same body; ingest is idempotent). Returns the answer.
    pub async fn post_gzip(&self, path: &str, body: &[u8]) -> anyhow::Result<Value> {
        loop {
            let resp = self
                .client
                .post(format!("{}{path}", self.url))
                .bearer_auth(&self.key)
                .header("content-type", "application/x-ndjson")
                .header("content-encoding", "gzip")
                .body(body.to_vec())
                .send()
                .await?;
            let status = resp.status();
            if status.as_u16() == 503 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            return json_answer(resp, "POST", path).await;
        }
    }
}

/// A response's body as JSON; a non-2xx status is an error carrying the body.
async fn json_answer(resp: reqwest::Response, method: &str, path: &str) -> anyhow::Result<Value> {
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        bail!("{method} {path}: {status}: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("{method} {path}: not JSON"))
}

/// Runs each query `warmup + runs` times in turn and keeps the last `runs` timings and the
/// last answer of each.
pub async fn time_queries(
    api: &Api,
    queries: &[(&'static str, String)],
    warmup: usize,
    runs: usize,
) -> anyhow::Result<Vec<(Latency, Value)>> {
    let mut out = Vec::new();
    for (_, path) in queries {
        let mut samples = Vec::with_capacity(runs);
        let mut answer = Value::Null;
        for i in 0..warmup + runs {
            let t = Instant::now();
            answer = api.get(path).await?;
            if i >= warmup {
                samples.push(ms(t.elapsed()));
            }
        }
        out.push((Latency::of(samples), answer));
    }
    Ok(out)
}

/// A webhook receiver on a loopback port: each delivery's budget name and arrival time.
pub struct Receiver {
    pub url: String,
    arrivals: mpsc::UnboundedReceiver<(String, Instant)>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> anyhow::Result<Self> {
        let (tx, arrivals) = mpsc::unbounded_channel();
        let tx = Arc::new(tx);
        // Every request is a delivery: a bare handler, not a router, because the service's
        // routes all live in `web::router` (the OpenAPI test holds them there).
        let hook = move |body: axum::body::Bytes| {
            let tx = tx.clone();
            async move {
                let at = Instant::now();
                let payload: Value = serde_json::from_slice(&body).unwrap_or_default();
                let name = payload["data"]["budget"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let _ = tx.send((name, at));
                "ok"
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, hook.into_make_service()).await;
        });
        Ok(Receiver {
            url,
            arrivals,
            task,
        })
    }

    /// Waits for the delivery of budget `name`; others that arrive meanwhile are dropped.
    async fn wait_for(&mut self, name: &str, timeout: Duration) -> anyhow::Result<Instant> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.arrivals.recv()).await {
                Ok(Some((n, at))) if n == name => return Ok(at),
                Ok(Some(_)) => continue,
                Ok(None) => bail!("the webhook receiver stopped"),
                Err(_) => bail!("no webhook for {name} within {timeout:?}"),
            }
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Creates `n` daily budgets of $1 alerting at 50 % in project `bench`, each over its own
/// feature, then crosses them one at a time with one $0.75 call and times each crossing from
/// the ingest request's start to the webhook's arrival.
pub async fn webhook_latency(api: &Api, n: usize) -> anyhow::Result<Latency> {
    let mut receiver = Receiver::start().await?;
    api.post(
        "/api/v1/channels",
        &json!({"name": "bench", "project": "bench", "url": receiver.url}),
    )
    .await?;
    for i in 0..n {
        api.post(
            "/api/v1/budgets",
            &json!({"name": format!("bench-alert-{i}"), "project": "bench",
                    "scope": {"feature": format!("bench-alert-{i}")}, "period": "day",
                    "amount": "1", "thresholds": [50], "channels": ["bench"]}),
        )
        .await?;
    }
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("bench-alert-{i}");
        let event = json!({
            "id": format!("bench-alert-call-{i}-{}", uuid::Uuid::new_v4().simple()),
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "project": "bench", "provider": "openai", "model": "gpt-4o-mini",
            "cost": "0.75", "currency": "USD", "feature": name,
            "usage": {"input_tokens": 1000, "output_tokens": 100},
        });
        let started = Instant::now();
        let answer = api.post("/v1/ingest", &event).await?;
        anyhow::ensure!(
            answer["accepted"] == 1,
            "crossing call not accepted: {answer}"
        );
        let arrived = receiver.wait_for(&name, Duration::from_secs(30)).await?;
        samples.push(ms(arrived.duration_since(started)));
    }
    Ok(Latency::of(samples))
}

/// What an open-loop run achieved.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct RateRun {
    pub target_per_s: f64,
    pub achieved_per_s: f64,
    pub errors: u64,
    pub latency: Latency,
}

/// Sends `GET path` at `rate` requests per second for `secs` seconds, open loop. Latency runs
/// from each request's *scheduled* time, so a server that falls behind is charged for the wait
/// it causes (no coordinated omission).
///
/// The pacing is done by an OS thread, not a tokio timer: tokio's timers fire on whole
/// milliseconds, so a request paced by `sleep_until` starts up to a millisecond late and that
/// lateness would be charged to the server — at a 1 ms target, the whole budget. The thread
/// sleeps to each scheduled instant (µs precision) and spawns the request onto the runtime.
pub async fn open_loop(api: &Api, path: &str, rate: f64, secs: u64) -> anyhow::Result<RateRun> {
    let url = format!("{}{path}", api.url);
    let runtime = tokio::runtime::Handle::current();
    let (tx, mut rx) = mpsc::unbounded_channel::<Option<f64>>();
    let period = Duration::from_secs_f64(1.0 / rate);
    let (client, key) = (api.client.clone(), api.key.clone());
    let pacer = std::thread::spawn(move || {
        let started = Instant::now();
        let end = started + Duration::from_secs(secs);
        let mut scheduled = started;
        while scheduled < end {
            if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let (client, url, key, tx) = (client.clone(), url.clone(), key.clone(), tx.clone());
            runtime.spawn(async move {
                let ok = client
                    .get(&url)
                    .bearer_auth(&key)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                let _ = tx.send(ok.then(|| ms(scheduled.elapsed())));
            });
            scheduled += period;
        }
        started
    });
    let mut samples = Vec::new();
    let mut errors = 0u64;
    // Every spawned request holds a sender; the channel closes when the pacer and the last
    // request are done.
    while let Some(sample) = rx.recv().await {
        match sample {
            Some(ms) => samples.push(ms),
            None => errors += 1,
        }
    }
    let started = pacer
        .join()
        .map_err(|_| anyhow::anyhow!("the pacer thread panicked"))?;
    let elapsed = started.elapsed().as_secs_f64();
    Ok(RateRun {
        target_per_s: rate,
        achieved_per_s: samples.len() as f64 / elapsed,
        errors,
        latency: Latency::of(samples),
    })
}
