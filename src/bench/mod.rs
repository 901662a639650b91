//! `tally bench`: Tally against its targets, each next to a baseline measured in the same run.
//!
//! One run generates N realistic events with a fixed seed and writes them as NDJSON, loads
//! that file with DuckDB's own reader (the ingest baseline), sends the same records to a real
//! `tally serve` over HTTP as gzip NDJSON from concurrent clients, then measures — on the
//! loaded server — the dashboard's overview queries from the rollups and from the raw events
//! (the query baseline; the answers must agree), disk per event after a checkpoint, peak
//! memory, threshold crossing → webhook latency, and `/v1/budget-check` at a fixed request
//! rate. With `--scale-to N` it then grows a copy of the database to about N events in SQL and
//! measures the queries, disk and a day more of ingest at that size (`scale`). It prints a
//! table and writes the numbers as JSON. Targets are in the table, never in
//! tests: these machines are shared and noisy, so a timing is a measurement, not a verdict.

mod baseline;
mod data;
mod probes;
pub(crate) mod scale;

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use crate::cli::BenchArgs;
use crate::config::StorageConfig;
use crate::harness::LoopbackServer;
use probes::{Api, Latency, RateRun};

/// DuckDB's memory limit for the raw-events baseline server.
const RAW_MEMORY_LIMIT: &str = "8GB";

/// One line of the result table.
#[derive(Debug, Serialize)]
struct Row {
    measure: String,
    target: String,
    tally: String,
    baseline: String,
    /// Tally ÷ baseline where the target is a ratio.
    ratio: Option<f64>,
    meets: bool,
}

/// The overview page's questions, as the dashboard asks them of the JSON API.
fn overview_queries(from: DateTime<Utc>) -> Vec<(&'static str, String)> {
    let f = from.to_rfc3339_opts(SecondsFormat::Secs, true);
    let f = f.replace('+', "%2B");
    vec![
        ("total", format!("/api/v1/costs?from={f}")),
        (
            "daily series",
            format!("/api/v1/costs?interval=day&from={f}"),
        ),
        (
            "top 10 features",
            format!("/api/v1/costs?group_by=feature&order=cost&limit=10&from={f}"),
        ),
        (
            "top 10 users",
            format!("/api/v1/costs?group_by=user_id&order=cost&limit=10&from={f}"),
        ),
        (
            "top 10 models",
            format!("/api/v1/costs?group_by=provider,model&order=cost&limit=10&from={f}"),
        ),
        (
            "cost per successful task",
            format!("/api/v1/tasks?from={f}"),
        ),
    ]
}

/// Ingest throughput and what it cost.
struct IngestRun {
    events: u64,
    elapsed: Duration,
    request_latency: Latency,
    queries_served: u64,
    outcomes: u64,
    outcomes_elapsed: Duration,
}

impl IngestRun {
    fn events_per_s(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }

    /// The report's fields for this ingest (the main run's and step 9's alike).
    fn json(&self) -> Value {
        json!({
            "tally_events_per_s": self.events_per_s(),
            "tally_seconds": self.elapsed.as_secs_f64(),
            "request_latency": self.request_latency,
            "queries_served_meanwhile": self.queries_served,
            "outcomes": self.outcomes,
            "outcomes_per_s": self.outcomes as f64 / self.outcomes_elapsed.as_secs_f64(),
        })
    }
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.events == 0
        || !(1..=64).contains(&args.clients)
        || args.batch == 0
        || args.query_runs == 0
        || args.raw_runs == 0
    {
        bail!("--events, --batch and the run counts must be positive; --clients 1 to 64");
    }
    if args.scale_to.is_some_and(|n| n <= args.events)
        || args.scale_to.is_some() && args.ingest_only
    {
        bail!("--scale-to must exceed --events, and needs the query phase (not --ingest-only)");
    }
    let (work, scratch) = match &args.work_dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("tally-bench-{}", uuid::Uuid::new_v4().simple())),
            true,
        ),
    };
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let result = measure(&args, &work);
    if scratch && !args.keep {
        let _ = std::fs::remove_dir_all(&work);
    }
    write_report(&args, &result?)
}

fn measure(args: &BenchArgs, work: &Path) -> anyhow::Result<Value> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // Whole minutes, like the demo: the generator's clock for "now".
    let end = args.end.unwrap_or_else(Utc::now).timestamp();
    let end = DateTime::from_timestamp(end - end.rem_euclid(60), 0).context("--end")?;
    let from = end - chrono::Duration::days(i64::from(data::DAYS));
    let queries = overview_queries(from);
    let key = format!("bench-{}", uuid::Uuid::new_v4().simple());
    if args.reuse_scaled {
        return measure_reused(args, &rt, work, end, &key, &queries);
    }

    eprintln!(
        "bench: generating ~{} events (seed {}, end {})",
        args.events,
        args.seed,
        end.to_rfc3339()
    );
    let t = Instant::now();
    let ndjson = work.join("events.ndjson");
    let baselines = !args.no_baselines;
    let spec = data::Spec {
        events: args.events,
        seed: args.seed,
        days: data::DAYS,
        end,
    };
    let traffic = data::generate(
        spec,
        args.batch,
        work,
        baselines.then_some(ndjson.as_path()),
    )?;
    eprintln!(
        "bench: {} events ({:.0} MB NDJSON, {} gzip bodies) and {} outcomes in {:.1} s",
        traffic.events,
        traffic.ndjson_bytes as f64 / 1e6,
        traffic.bodies.len(),
        traffic.outcomes,
        t.elapsed().as_secs_f64()
    );

    let loader = if baselines {
        eprintln!("bench: DuckDB read_json → events (baseline)");
        let loader =
            baseline::duckdb_loader(&ndjson, &work.join("baseline"), &StorageConfig::default())?;
        anyhow::ensure!(
            loader.rows == traffic.events,
            "DuckDB loaded {} rows of {}",
            loader.rows,
            traffic.events
        );
        std::fs::remove_dir_all(work.join("baseline")).ok();
        if !args.keep {
            std::fs::remove_file(&ndjson).ok();
        }
        Some(loader)
    } else {
        None
    };

    let data_dir = work.join("tally");
    eprintln!("bench: HTTP ingest, {} clients", args.clients);
    let log = [("RUST_LOG", args.server_log.as_str())];
    let server = LoopbackServer::start(&data_dir, &key, &log)?;
    let api = Api::new(&server.url, &key)?;
    let ingest = rt.block_on(ingest(&api, traffic, args.clients))?;
    if !args.keep {
        for bodies in ["events.bodies", "outcomes.bodies"] {
            std::fs::remove_file(work.join(bodies)).ok();
        }
    }
    let loader_rate = loader.as_ref().map(baseline::LoaderRun::rows_per_s);
    eprintln!(
        "bench: {} events in {:.1} s = {:.0} events/s (DuckDB read_json: {})",
        ingest.events,
        ingest.elapsed.as_secs_f64(),
        ingest.events_per_s(),
        loader_rate.map_or("not measured".into(), |r| format!("{r:.0} rows/s"))
    );
    let ingest_rss = server.peak_rss_bytes();
    server.stop()?;
    let db_bytes = std::fs::metadata(data_dir.join("tally.duckdb"))?.len();
    // The database as ingested (the later phases add budgets and their crossings), for
    // `--scale-to`; the stop checkpointed it, so the file is all of it.
    let scaled_dir = work.join("scaled");
    if args.scale_to.is_some() {
        std::fs::create_dir_all(&scaled_dir)?;
        std::fs::copy(
            data_dir.join("tally.duckdb"),
            scaled_dir.join("tally.duckdb"),
        )
        .context("copying the database for --scale-to")?;
    }
    if args.ingest_only {
        eprintln!(
            "bench: {:.1} bytes/event after checkpoint; peak RSS {:.0} MiB",
            db_bytes as f64 / ingest.events as f64,
            ingest_rss.unwrap_or(0) as f64 / 1048576.0
        );
        return Ok(json!({"events": ingest.events,
            "tally_events_per_s": ingest.events_per_s(),
            "duckdb_read_json_rows_per_s": loader_rate,
            "tally_bytes_per_event": db_bytes as f64 / ingest.events as f64,
            "duckdb_loader_bytes_per_event": loader.as_ref().map(baseline::LoaderRun::bytes_per_row),
            "peak_rss_bytes": ingest_rss}));
    }

    let raw = if baselines {
        eprintln!("bench: overview queries from the raw events (baseline)");
        // The baseline gets room to answer: at 10M events the raw cost-per-task aggregation
        // (one group per task) does not fit DuckDB's default 1 GB and fails rather than spill.
        // More memory only makes the baseline faster, so the ratio stays on the conservative
        // side; its RSS is reported apart from Tally's.
        let raw_server = LoopbackServer::start(
            &data_dir,
            &key,
            &[
                log[0],
                ("TALLY_STORAGE__USE_ROLLUPS", "false"),
                ("TALLY_STORAGE__MEMORY_LIMIT", RAW_MEMORY_LIMIT),
            ],
        )?;
        let raw_api = Api::new(&raw_server.url, &key)?;
        let raw = rt.block_on(probes::time_queries(&raw_api, &queries, 1, args.raw_runs))?;
        let raw_rss = raw_server.peak_rss_bytes();
        raw_server.stop()?;
        Some((raw, raw_rss))
    } else {
        None
    };

    eprintln!("bench: overview queries as served");
    let server = LoopbackServer::start(&data_dir, &key, &log)?;
    let api = Api::new(&server.url, &key)?;
    let served = rt.block_on(probes::time_queries(&api, &queries, 2, args.query_runs))?;
    for (i, (name, _)) in queries.iter().enumerate() {
        let Some((raw, _)) = &raw else { break };
        let (a, b) = (settled(&served[i].1), settled(&raw[i].1));
        anyhow::ensure!(
            a == b,
            "{name}: the served answer differs from the raw events' answer:\n{a}\n{b}"
        );
    }
    eprintln!("bench: threshold crossings → webhooks ({})", args.webhooks);
    let webhooks = rt.block_on(probes::webhook_latency(&api, args.webhooks))?;
    eprintln!(
        "bench: /healthz, then /v1/budget-check, at {}/s",
        args.check_rate
    );
    let floor = rt.block_on(probes::open_loop(
        &api,
        "/healthz",
        args.check_rate as f64,
        args.check_secs,
    ))?;
    let check = rt.block_on(probes::open_loop(
        &api,
        "/v1/budget-check?project=bench&feature=bench-alert-0",
        args.check_rate as f64,
        args.check_secs,
    ))?;
    let served_rss = server.peak_rss_bytes();
    server.stop()?;
    let (raw, raw_rss) = match raw {
        Some((raw, rss)) => (Some(raw), rss),
        None => (None, None),
    };
    let mut rows = table(
        args,
        &ingest,
        loader.as_ref(),
        db_bytes,
        &queries,
        &served,
        raw.as_deref(),
        &webhooks,
        [&floor, &check],
        [ingest_rss, raw_rss, served_rss],
    );
    let raw_latency = |i: usize| raw.as_ref().map(|r| &r[i].0);
    let mut ingest_json = ingest.json();
    ingest_json["duckdb_read_json_rows_per_s"] = json!(loader_rate);
    ingest_json["duckdb_read_json_seconds"] =
        json!(loader.as_ref().map(|l| l.elapsed.as_secs_f64()));
    let mut report = json!({
        "machine": machine(),
        "args": args_json(args, end),
        "events": ingest.events,
        "ingest": ingest_json,
        "disk": {"tally_bytes": db_bytes, "tally_bytes_per_event": db_bytes as f64 / ingest.events as f64,
                 "duckdb_loader_bytes": loader.as_ref().map(|l| l.file_bytes),
                 "duckdb_loader_bytes_per_event": loader.as_ref().map(baseline::LoaderRun::bytes_per_row)},
        "peak_rss_bytes": {"ingest": ingest_rss, "raw_queries": raw_rss, "served": served_rss},
        "queries": queries.iter().zip(&served).enumerate().map(|(i, ((name, path), (s, _)))| json!({
            "name": name, "path": path, "served": s, "raw_events": raw_latency(i),
            "ratio_p50": raw_latency(i).map(|r| s.p50_ms / r.p50_ms),
        })).collect::<Vec<_>>(),
        "webhook": webhooks,
        "budget_check": check,
        "budget_check_floor_healthz": floor,
        "scaled": null,
        "rows": rows,
    });
    if let Some(target) = args.scale_to {
        // Printed and written before the scale-up, which takes an hour and most of a disk: a
        // scale-up that fails (a full disk) no longer takes the base size's results with it.
        print_table(&rows);
        write_report(args, &report)?;
        let copies = scale::copies_for(ingest.events, target);
        eprintln!("bench: --scale-to: replicating the ingested traffic ×{copies}");
        let build = scale::build(&rt, &scaled_dir, copies)?;
        let base = Base {
            served: &served,
            events_per_s: ingest.events_per_s(),
        };
        let at = AtScale {
            rt: &rt,
            work,
            dir: &scaled_dir,
            key: &key,
            end,
        };
        let scaled = at.measure(args, build, &queries, Some(base))?;
        rows.extend(scaled.rows(args, &queries));
        report["scaled"] = scaled.json(&queries);
        report["rows"] = json!(rows);
    }
    print_table(&rows);
    Ok(report)
}

/// Writes the report to `--json-out`, when given.
fn write_report(args: &BenchArgs, report: &Value) -> anyhow::Result<()> {
    if let Some(path) = &args.json_out {
        std::fs::write(path, serde_json::to_vec_pretty(report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("bench: results written to {}", path.display());
    }
    Ok(())
}

/// The run's parameters, for the JSON report.
fn args_json(args: &BenchArgs, end: DateTime<Utc>) -> Value {
    json!({"events": args.events, "seed": args.seed, "end": end.to_rfc3339(),
           "clients": args.clients, "batch": args.batch, "query_runs": args.query_runs,
           "raw_runs": args.raw_runs, "baselines": !args.no_baselines,
           "scale_to": args.scale_to, "reuse_scaled": args.reuse_scaled})
}

/// `--reuse-scaled`: only the measurements at the scaled size, on the database an earlier
/// `--scale-to` run built in `work` (an explicit --work-dir is kept).
fn measure_reused(
    args: &BenchArgs,
    rt: &tokio::runtime::Runtime,
    work: &Path,
    end: DateTime<Utc>,
    key: &str,
    queries: &[(&'static str, String)],
) -> anyhow::Result<Value> {
    let target = args.scale_to.context("--reuse-scaled needs --scale-to")?;
    let dir = work.join("scaled");
    let build = scale::existing(rt, &dir, scale::copies_for(args.events, target), end)?;
    let at = AtScale {
        rt,
        work,
        dir: &dir,
        key,
        end,
    };
    let scaled = at.measure(args, build, queries, None)?;
    let rows = scaled.rows(args, queries);
    print_table(&rows);
    Ok(json!({
        "machine": machine(),
        "args": args_json(args, end),
        "scaled": scaled.json(queries),
        "rows": rows,
    }))
}

/// An answer without what moves with the clock alone: a task without an outcome turns from
/// `open` into `unknown` when its last call ages past the timeout, between two runs too.
fn settled(answer: &Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for k in ["open", "unknown", "cost_open", "cost_unknown"] {
                    m.remove(k);
                }
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v = answer.clone();
    strip(&mut v);
    v
}

/// Sends every body from `clients` concurrent clients while one dashboard client asks a
/// question every half second, and times the whole load. It takes the traffic, whose bodies
/// the clients share.
async fn ingest(api: &Api, traffic: data::Traffic, clients: usize) -> anyhow::Result<IngestRun> {
    let bodies = Arc::new(traffic.bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (api, bodies, next, acked) = (api.clone(), bodies.clone(), next.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                // A read from the body file: about 1 MB, from the page cache in practice, so
                // a blocking read here costs the client less than a hop to another thread.
                let Some(body) = bodies.get(i)? else { break };
                let t = Instant::now();
                let answer = api.post_gzip("/v1/ingest", &body).await?;
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                let rejected = answer["rejected"].as_array().map_or(0, Vec::len);
                anyhow::ensure!(rejected == 0, "body {i}: rejected records: {answer}");
                let n = answer["accepted"].as_u64().unwrap_or(0)
                    + answer["duplicates"].as_u64().unwrap_or(0);
                acked.fetch_add(n, Ordering::Relaxed);
            }
            anyhow::Ok(latencies)
        }));
    }
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let dashboard = {
        let (api, done) = (api.clone(), done.clone());
        tokio::spawn(async move {
            let mut served = 0u64;
            while !done.load(Ordering::Relaxed) {
                if api
                    .get("/api/v1/costs?group_by=feature&limit=10")
                    .await
                    .is_ok()
                {
                    served += 1;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            served
        })
    };
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let elapsed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let queries_served = dashboard.await?;
    let events = acked.load(Ordering::Relaxed);
    anyhow::ensure!(
        events == traffic.events,
        "{events} of {} events acknowledged",
        traffic.events
    );

    let t = Instant::now();
    for i in 0..traffic.outcome_bodies.len() {
        let Some(body) = traffic.outcome_bodies.get(i)? else {
            break;
        };
        let answer = api.post_gzip("/v1/outcomes", &body).await?;
        let rejected = answer["rejected"].as_array().map_or(0, Vec::len);
        anyhow::ensure!(rejected == 0, "rejected outcomes: {answer}");
    }
    Ok(IngestRun {
        events,
        elapsed,
        request_latency: Latency::of(latencies),
        queries_served,
        outcomes: traffic.outcomes,
        outcomes_elapsed: t.elapsed(),
    })
}

/// What a row shows where its baseline was skipped (`--no-baselines`).
const NOT_MEASURED: &str = "not measured (--no-baselines)";

#[allow(clippy::too_many_arguments)]
fn table(
    args: &BenchArgs,
    ingest: &IngestRun,
    loader: Option<&baseline::LoaderRun>,
    db_bytes: u64,
    queries: &[(&'static str, String)],
    served: &[(Latency, Value)],
    raw: Option<&[(Latency, Value)]>,
    webhooks: &Latency,
    [floor, check]: [&RateRun; 2],
    rss: [Option<u64>; 3],
) -> Vec<Row> {
    let tally_eps = ingest.events_per_s();
    let duck_eps = loader.map(baseline::LoaderRun::rows_per_s);
    let mut rows = vec![Row {
        measure: format!(
            "HTTP ingest, gzip NDJSON, {} clients, durable acks",
            args.clients
        ),
        target: "≥ 1.0× DuckDB read_json and ≥ 200k events/s".into(),
        tally: format!("{tally_eps:.0} events/s"),
        baseline: duck_eps.map_or(NOT_MEASURED.into(), |d| format!("{d:.0} rows/s")),
        ratio: duck_eps.map(|d| tally_eps / d),
        meets: duck_eps.is_some_and(|d| tally_eps >= d) && tally_eps >= 200_000.0,
    }];
    let (limit_ms, with_ratio) = query_target(ingest.events);
    for (i, ((name, _), (s, _))) in queries.iter().zip(served).enumerate() {
        let r = raw.map(|raw| &raw[i].0);
        let ratio = r.map(|r| s.p50_ms / r.p50_ms);
        rows.push(Row {
            measure: format!("{name}, p50 at {} events", ingest.events),
            target: if with_ratio {
                format!("≤ {limit_ms:.0} ms and ≤ 0.2× raw events")
            } else {
                format!("≤ {limit_ms:.0} ms")
            },
            tally: format!("{:.1} ms", s.p50_ms),
            baseline: r.map_or(NOT_MEASURED.into(), |r| format!("{:.1} ms", r.p50_ms)),
            ratio,
            meets: s.p50_ms <= limit_ms && (!with_ratio || ratio.is_some_and(|x| x <= 0.2)),
        });
    }
    let per_event = db_bytes as f64 / ingest.events as f64;
    let loader_per_event = loader.map(baseline::LoaderRun::bytes_per_row);
    rows.push(Row {
        measure: "disk per event after checkpoint".into(),
        target: "≤ 50 bytes".into(),
        tally: format!("{per_event:.1} B"),
        baseline: loader_per_event.map_or(NOT_MEASURED.into(), |b| {
            format!("{b:.1} B (DuckDB loader, events only)")
        }),
        ratio: loader_per_event.map(|b| per_event / b),
        meets: per_event <= 50.0,
    });
    // Tally's own servers: the one that ingested (answering a dashboard meanwhile) and the one
    // that served the queries, webhooks and checks. The baseline server ran with more memory.
    let [ingest_rss, raw_rss, served_rss] = rss;
    let peak = [ingest_rss, served_rss]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0);
    rows.push(Row {
        measure: "peak RSS, ingest with queries".into(),
        target: "≤ 1 GiB".into(),
        tally: format!("{:.0} MiB", peak as f64 / 1048576.0),
        baseline: raw_rss.map_or(String::new(), |b| {
            format!(
                "{:.0} MiB (raw-events server, {RAW_MEMORY_LIMIT} limit)",
                b as f64 / 1048576.0
            )
        }),
        ratio: None,
        meets: peak > 0 && peak <= 1 << 30,
    });
    rows.push(Row {
        measure: format!("threshold crossing → webhook, p99 of {}", webhooks.samples),
        target: "p99 ≤ 500 ms".into(),
        tally: format!("{:.1} ms (p50 {:.1})", webhooks.p99_ms, webhooks.p50_ms),
        baseline: String::new(),
        ratio: None,
        meets: webhooks.p99_ms <= 500.0,
    });
    rows.push(Row {
        measure: format!("/v1/budget-check at {:.0}/s", check.target_per_s),
        target: "p50 ≤ 1 ms at 5,000/s".into(),
        tally: format!(
            "{:.2} ms p50 ({:.2} p99) at {:.0}/s, {} errors",
            check.latency.p50_ms, check.latency.p99_ms, check.achieved_per_s, check.errors
        ),
        baseline: format!("{:.2} ms p50 (/healthz, same rate)", floor.latency.p50_ms),
        ratio: Some(check.latency.p50_ms / floor.latency.p50_ms),
        meets: check.latency.p50_ms <= 1.0
            && check.errors == 0
            && check.achieved_per_s >= 0.95 * check.target_per_s
            && check.target_per_s >= 5000.0,
    });
    rows
}

/// The overview queries' p50 target at `events` and whether it includes the ratio to the raw
/// events: the 10M-event target (a time and a ratio) up to the middle of the way to 100M, the
/// 100M one (a time only) beyond.
fn query_target(events: u64) -> (f64, bool) {
    if events <= 50_000_000 {
        (50.0, true)
    } else {
        (250.0, false)
    }
}

/// What the traffic at `--events` gave, for the checks and ratios at the scaled size.
struct Base<'a> {
    /// The overview answers, which the scaled ones must multiply exactly.
    served: &'a [(Latency, Value)],
    events_per_s: f64,
}

impl Base<'_> {
    /// Replication multiplies every cost and count and changes no key, so the totals and the
    /// top features answered at the scaled size must be exactly `copies` times these.
    fn check(
        &self,
        answers: &[(Latency, Value)],
        queries: &[(&'static str, String)],
        copies: u64,
    ) -> anyhow::Result<()> {
        for i in [0, 2] {
            let (base, big) = (&self.served[i].1, &answers[i].1);
            let rows = |v: &Value| v["rows"].as_array().cloned().unwrap_or_default();
            let (base_rows, big_rows) = (rows(base), rows(big));
            anyhow::ensure!(
                base_rows.len() == big_rows.len(),
                "{}: {} rows at ×{copies}, {} before",
                queries[i].0,
                big_rows.len(),
                base_rows.len()
            );
            let totals = [(&base["total"], &big["total"])];
            for (a, b) in totals.into_iter().chain(base_rows.iter().zip(&big_rows)) {
                scale::check_multiplied(a, b, copies)
                    .with_context(|| format!("{} at ×{copies}", queries[i].0))?;
            }
        }
        Ok(())
    }
}

/// Where the measurements at the scaled size run: the built database in `dir`, the traffic's
/// `end`, and the run's admin key.
struct AtScale<'a> {
    rt: &'a tokio::runtime::Runtime,
    work: &'a Path,
    dir: &'a Path,
    key: &'a str,
    end: DateTime<Utc>,
}

impl AtScale<'_> {
    /// Steps 8 and 9 on the built database: disk per event, the overview queries (checked
    /// against `base` when there is one: totals and top features exactly `copies` times
    /// theirs), then a day more of traffic at the scaled density over HTTP.
    fn measure(
        &self,
        args: &BenchArgs,
        build: scale::Scaled,
        queries: &[(&'static str, String)],
        base: Option<Base<'_>>,
    ) -> anyhow::Result<ScaledRun> {
        let disk = scale::disk(self.dir)?;
        let built = build.elapsed.map_or("built before".into(), |t| {
            format!("in {:.1} s", t.as_secs_f64())
        });
        eprintln!(
            "bench: {} events, {} outcomes {built}; overview queries at that size",
            build.events, build.outcomes,
        );
        let (server, api) = self.serve(args)?;
        let answers = self
            .rt
            .block_on(probes::time_queries(&api, queries, 2, args.query_runs))?;
        let rss = server.peak_rss_bytes();
        server.stop()?;
        if let Some(base) = &base {
            base.check(&answers, queries, build.copies)?;
        }
        let day_after = self.ingest_a_day(args, build.events)?;
        Ok(ScaledRun {
            build,
            disk,
            answers,
            rss,
            day_after,
            base_events_per_s: base.map(|b| b.events_per_s),
        })
    }

    /// Step 9: the day after `end` at the scaled size's density (its events over the bench's
    /// days, per day; the next seed), sent to the scaled database as in step 3 while a
    /// dashboard client asks its question. Ingest at that size: folds against the full unit
    /// tables, the de-duplication index holding two days at that density (the day before,
    /// loaded at start, and this one).
    fn ingest_a_day(&self, args: &BenchArgs, events: u64) -> anyhow::Result<DayAfter> {
        let spec = data::Spec {
            events: events / u64::from(data::DAYS),
            seed: args.seed + 1,
            days: 1,
            end: self.end + chrono::Duration::days(1),
        };
        eprintln!(
            "bench: a day more at that density: generating ~{} events",
            spec.events
        );
        let dir = self.work.join("day-after");
        std::fs::create_dir_all(&dir)?;
        let traffic = data::generate(spec, args.batch, &dir, None)?;
        let (server, api) = self.serve(args)?;
        let run = self.rt.block_on(ingest(&api, traffic, args.clients))?;
        let rss = server.peak_rss_bytes();
        server.stop()?;
        if !args.keep {
            std::fs::remove_dir_all(&dir).ok();
        }
        eprintln!(
            "bench: {} events into the scaled database in {:.1} s = {:.0} events/s; peak RSS {:.0} MiB",
            run.events,
            run.elapsed.as_secs_f64(),
            run.events_per_s(),
            rss.unwrap_or(0) as f64 / 1048576.0
        );
        Ok(DayAfter { run, rss })
    }

    /// A normally configured server on the scaled database, and a client of it.
    fn serve(&self, args: &BenchArgs) -> anyhow::Result<(LoopbackServer, Api)> {
        let log = [("RUST_LOG", args.server_log.as_str())];
        let server = LoopbackServer::start(self.dir, self.key, &log)?;
        let api = Api::new(&server.url, self.key)?;
        Ok((server, api))
    }
}

/// Step 9's ingest and the server's peak RSS meanwhile.
struct DayAfter {
    run: IngestRun,
    rss: Option<u64>,
}

/// The `--scale-to` measurements.
struct ScaledRun {
    build: scale::Scaled,
    disk: scale::Disk,
    answers: Vec<(Latency, Value)>,
    rss: Option<u64>,
    day_after: DayAfter,
    /// The ingest rate at `--events` in the same run (not with `--reuse-scaled`).
    base_events_per_s: Option<f64>,
}

impl ScaledRun {
    fn rows(&self, args: &BenchArgs, queries: &[(&'static str, String)]) -> Vec<Row> {
        let (events, copies) = (self.build.events, self.build.copies);
        // Up to 50M events the target includes a ratio to the raw events, which are not
        // queried at the scaled size: such a row cannot be met.
        let (limit_ms, with_ratio) = query_target(events);
        let mut rows: Vec<Row> = queries
            .iter()
            .zip(&self.answers)
            .map(|((name, _), (s, _))| Row {
                measure: format!("{name}, p50 at {events} events (×{copies} in SQL)"),
                target: if with_ratio {
                    format!("≤ {limit_ms:.0} ms and ≤ 0.2× raw events")
                } else {
                    format!("≤ {limit_ms:.0} ms")
                },
                tally: format!("{:.1} ms", s.p50_ms),
                baseline: if with_ratio {
                    "raw events not queried at this size".into()
                } else {
                    String::new()
                },
                ratio: None,
                meets: !with_ratio && s.p50_ms <= limit_ms,
            })
            .collect();
        let per_event = self.disk.used_bytes as f64 / events as f64;
        rows.push(Row {
            measure: format!("disk per event at {events} events (×{copies} in SQL)"),
            target: "≤ 50 bytes".into(),
            tally: format!("{per_event:.1} B in used blocks"),
            baseline: format!("{:.1} B file", self.disk.file_bytes as f64 / events as f64),
            ratio: None,
            meets: per_event <= 50.0,
        });
        let day = &self.day_after;
        let rate = day.run.events_per_s();
        rows.push(Row {
            measure: format!(
                "HTTP ingest into {events} events: {} more (a day), {} clients",
                day.run.events, args.clients
            ),
            target: "≥ 200k events/s (the ratio to DuckDB: at --events)".into(),
            tally: format!("{rate:.0} events/s"),
            baseline: self
                .base_events_per_s
                .map_or("not measured (--reuse-scaled)".into(), |b| {
                    format!("{b:.0} events/s at --events, this run")
                }),
            ratio: self.base_events_per_s.map(|b| rate / b),
            meets: rate >= 200_000.0,
        });
        let peak = day.rss.unwrap_or(0);
        rows.push(Row {
            measure: format!("peak RSS, ingest with queries at {events} events"),
            target: "≤ 1 GiB".into(),
            tally: format!("{:.0} MiB", peak as f64 / 1048576.0),
            baseline: String::new(),
            ratio: None,
            meets: peak > 0 && peak <= 1 << 30,
        });
        rows
    }

    fn json(&self, queries: &[(&'static str, String)]) -> Value {
        let mut day_after = self.day_after.run.json();
        day_after["events"] = json!(self.day_after.run.events);
        day_after["base_events_per_s"] = json!(self.base_events_per_s);
        day_after["peak_rss_bytes"] = json!(self.day_after.rss);
        json!({
            "copies": self.build.copies,
            "events": self.build.events,
            "outcomes": self.build.outcomes,
            "build_seconds": self.build.elapsed.map(|t| t.as_secs_f64()),
            "disk": {"file_bytes": self.disk.file_bytes, "used_bytes": self.disk.used_bytes,
                     "used_bytes_per_event": self.disk.used_bytes as f64 / self.build.events as f64},
            "peak_rss_bytes_serving": self.rss,
            "day_after": day_after,
            "queries": queries.iter().zip(&self.answers).map(|((name, path), (s, _))| json!({
                "name": name, "path": path, "served": s,
            })).collect::<Vec<_>>(),
        })
    }
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<52} {:<42} {:>30} {:>24} {:>7} meets",
        "measure", "target", "tally", "baseline", "ratio"
    );
    for r in rows {
        println!(
            "{:<52} {:<42} {:>30} {:>24} {:>7} {}",
            r.measure,
            r.target,
            r.tally,
            r.baseline,
            r.ratio.map_or(String::new(), |x| format!("{x:.3}")),
            if r.meets { "yes" } else { "NO" }
        );
    }
}

/// What the numbers were measured on.
fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|m| m.trim().to_string())
    });
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().next().map(str::to_string));
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "memory": mem,
        "loadavg": std::fs::read_to_string("/proc/loadavg").ok().map(|s| s.trim().to_string()),
        "tally_version": env!("CARGO_PKG_VERSION"),
        "at": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
    })
}
