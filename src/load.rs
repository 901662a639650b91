//! `tally load`: a bounded load test on loopback.
//!
//! Starts its own `tally serve` (this same binary) on a loopback port with a fresh data
//! directory, drives it for a fixed time with concurrent gzip NDJSON ingest clients and
//! dashboard/API query clients, and reports throughput, latency percentiles per kind of
//! request, errors (503 backpressure counted apart) and the server's peak resident memory
//! (`VmHWM`). It never targets another host: it exists to measure this machine, and a load
//! generator pointed at a production server by mistake would be an outage. Results are
//! printed as a table and optionally written as JSON. Latencies are durations, not money, so
//! they are floats here.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::cli::LoadArgs;
use crate::harness::{percentile, sorted, LoopbackServer};

/// Query mix of the dashboard clients: what the overview and explore pages ask.
const QUERIES: &[(&str, &str)] = &[
    ("costs total", "/api/v1/costs"),
    ("costs by day", "/api/v1/costs?interval=day"),
    ("top features", "/api/v1/costs?group_by=feature&limit=10"),
    (
        "top models",
        "/api/v1/costs?group_by=provider,model&limit=10",
    ),
    ("overview page", "/"),
];

const MODELS: &[(&str, &str)] = &[
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-sonnet-4-5"),
    ("anthropic", "claude-haiku-4-5"),
    ("google", "gemini-2.5-flash"),
];
const FEATURES: &[&str] = &[
    "search",
    "chat",
    "summarize",
    "code-review",
    "doc-qa",
    "triage",
];

#[derive(Default)]
struct Kind {
    latencies_ms: Vec<f64>,
    ok: u64,
    backpressure: u64,
    errors: u64,
}

#[derive(Default)]
struct Results {
    kinds: std::collections::BTreeMap<String, Kind>,
}

impl Results {
    fn record(&mut self, kind: &str, elapsed: Duration, status: Option<u16>) {
        let k = self.kinds.entry(kind.to_string()).or_default();
        match status {
            Some(200) => {
                k.ok += 1;
                k.latencies_ms.push(elapsed.as_secs_f64() * 1000.0);
            }
            Some(503) => k.backpressure += 1,
            _ => k.errors += 1,
        }
    }
}

/// One gzip NDJSON body of `n` events with ids from `first`, timestamps spread over 30 days.
fn body(rng: &mut StdRng, first: u64, n: usize, now: chrono::DateTime<chrono::Utc>) -> Vec<u8> {
    let mut text = Vec::with_capacity(n * 260);
    for i in 0..n as u64 {
        let (provider, model) = MODELS[rng.random_range(0..MODELS.len())];
        let at = now - chrono::Duration::seconds(rng.random_range(0..30 * 86_400));
        let input: u32 = rng.random_range(100..8000);
        let record = json!({
            "id": format!("load-{}", first + i),
            "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "provider": provider,
            "model": model,
            "feature": FEATURES[rng.random_range(0..FEATURES.len())],
            "user_id": format!("u{}", rng.random_range(0..2000)),
            "customer_id": format!("c{}", rng.random_range(0..200)),
            "usage": {
                "input_tokens": input,
                "cache_read_tokens": input / 4,
                "output_tokens": rng.random_range(10..1500),
            },
            "latency_ms": rng.random_range(200..9000),
            "status": if rng.random_bool(0.03) { "error" } else { "success" },
        });
        serde_json::to_writer(&mut text, &record).expect("serializing to memory");
        text.push(b'\n');
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&text).expect("compressing to memory");
    gz.finish().expect("compressing to memory")
}

pub fn run(args: LoadArgs) -> anyhow::Result<()> {
    if args.duration_secs == 0 || args.duration_secs > 3600 {
        bail!("--duration-secs must be between 1 and 3600");
    }
    // A fresh directory each run: numbers from a half-full database are not comparable.
    let (data_dir, scratch): (PathBuf, bool) = match &args.data_dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("tally-load-{}", uuid::Uuid::new_v4().simple())),
            true,
        ),
    };
    let key = format!("load-{}", uuid::Uuid::new_v4().simple());
    let server = LoopbackServer::start(&data_dir, &key, &[])?;
    eprintln!(
        "load: {} ingest clients × {} events/batch, {} query clients, {} s against {}",
        args.ingest_clients, args.batch, args.query_clients, args.duration_secs, server.url
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let results = Arc::new(Mutex::new(Results::default()));
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()?;
        let mut tasks = Vec::new();
        for c in 0..args.ingest_clients {
            let (client, url, key) = (client.clone(), server.url.clone(), key.clone());
            let (results, acked, stop) = (results.clone(), acked.clone(), stop.clone());
            let batch = args.batch;
            let seed = args.seed ^ (c as u64 + 1);
            tasks.push(tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed);
                let now = chrono::Utc::now();
                let mut next = (c as u64) << 40;
                while !stop.load(Ordering::Relaxed) {
                    let gz = body(&mut rng, next, batch, now);
                    let t = Instant::now();
                    let resp = client
                        .post(format!("{url}/v1/ingest"))
                        .bearer_auth(&key)
                        .header("content-type", "application/x-ndjson")
                        .header("content-encoding", "gzip")
                        .body(gz)
                        .send()
                        .await;
                    let status = resp.as_ref().ok().map(|r| r.status().as_u16());
                    if let (Ok(resp), Some(200)) = (resp, status) {
                        if let Ok(answer) = resp.json::<serde_json::Value>().await {
                            acked.fetch_add(
                                answer["accepted"].as_u64().unwrap_or(0),
                                Ordering::Relaxed,
                            );
                        }
                        next += batch as u64;
                    } else if status == Some(503) {
                        // Backpressure: wait as told, then send the same ids again.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    results
                        .lock()
                        .unwrap()
                        .record("ingest", t.elapsed(), status);
                }
            }));
        }
        for c in 0..args.query_clients {
            let (client, url, key) = (client.clone(), server.url.clone(), key.clone());
            let (results, stop) = (results.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    let (name, path) = QUERIES[i % QUERIES.len()];
                    i += 1;
                    let t = Instant::now();
                    let resp = client
                        .get(format!("{url}{path}"))
                        .bearer_auth(&key)
                        .send()
                        .await;
                    let status = match resp {
                        Ok(r) => {
                            let s = r.status().as_u16();
                            let _ = r.bytes().await;
                            Some(s)
                        }
                        Err(_) => None,
                    };
                    results.lock().unwrap().record(name, t.elapsed(), status);
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs(args.duration_secs)).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
        anyhow::Ok(())
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let peak_rss = server.peak_rss_bytes();
    // A clean stop: drain, checkpoint, so the size on disk is the settled size.
    server.stop()?;
    let db_bytes = std::fs::metadata(data_dir.join("tally.duckdb"))
        .map(|m| m.len())
        .unwrap_or(0);

    let acked = acked.load(Ordering::Relaxed);
    let mut report = json!({
        "duration_s": elapsed,
        "ingest_clients": args.ingest_clients,
        "query_clients": args.query_clients,
        "batch": args.batch,
        "events_acknowledged": acked,
        "events_per_s": acked as f64 / elapsed,
        "server_peak_rss_bytes": peak_rss,
        "db_bytes_after_checkpoint": db_bytes,
        "bytes_per_event": if acked > 0 { db_bytes as f64 / acked as f64 } else { 0.0 },
        "requests": {},
    });
    println!(
        "{:<14} {:>8} {:>6} {:>6} {:>9} {:>9} {:>9} {:>9}",
        "request", "ok", "503", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms"
    );
    let results = results.lock().unwrap();
    for (name, k) in &results.kinds {
        let sorted = sorted(k.latencies_ms.clone());
        let (p50, p95, p99) = (
            percentile(&sorted, 50.0),
            percentile(&sorted, 95.0),
            percentile(&sorted, 99.0),
        );
        println!(
            "{name:<14} {:>8} {:>6} {:>6} {:>9.1} {p50:>9.1} {p95:>9.1} {p99:>9.1}",
            k.ok,
            k.backpressure,
            k.errors,
            k.ok as f64 / elapsed
        );
        report["requests"][name] = json!({
            "ok": k.ok, "backpressure_503": k.backpressure, "errors": k.errors,
            "p50_ms": p50, "p95_ms": p95, "p99_ms": p99,
        });
    }
    println!(
        "ingest: {acked} events acknowledged in {elapsed:.1} s = {:.0} events/s; server peak RSS {}; \
         database {:.1} MB after checkpoint ({:.0} bytes/event)",
        acked as f64 / elapsed,
        peak_rss.map_or("unknown".into(), |b| format!("{:.0} MiB", b as f64 / 1048576.0)),
        db_bytes as f64 / 1e6,
        report["bytes_per_event"].as_f64().unwrap_or(0.0),
    );
    if scratch {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    if let Some(path) = &args.json_out {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
