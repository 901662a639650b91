//! The benchmark as a smoke test: `tally bench` on a small volume runs every measurement end to
//! end (generation, DuckDB's loader, HTTP ingest, rollups vs raw events with equal answers,
//! webhooks, budget-check) and reports each row with its ratio. Timings are not judged here —
//! these machines are shared and noisy — only that the run completes and its numbers are real.

use serde_json::Value;

#[test]
fn a_small_benchmark_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench.json");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_tally"))
        .args([
            "bench",
            "--events",
            "200000",
            "--query-runs",
            "3",
            "--raw-runs",
            "2",
            "--webhooks",
            "10",
            "--check-rate",
            "500",
            "--check-secs",
            "2",
            "--work-dir",
        ])
        .arg(dir.path().join("work"))
        .arg("--json-out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "tally bench failed: {status}");
    let report: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();

    // Every event generated was acknowledged and loaded by DuckDB alike (the bench checks the
    // counts; here they must be near the requested volume).
    let events = report["events"].as_u64().unwrap();
    assert!((150_000..250_000).contains(&events), "{events} events");
    let positive = |v: &Value, what: &str| {
        let x = v.as_f64().unwrap_or_else(|| panic!("{what}: {v}"));
        assert!(x.is_finite() && x > 0.0, "{what}: {x}");
        x
    };
    positive(&report["ingest"]["tally_events_per_s"], "tally ingest rate");
    positive(
        &report["ingest"]["duckdb_read_json_rows_per_s"],
        "DuckDB loader rate",
    );
    positive(&report["disk"]["tally_bytes_per_event"], "bytes per event");
    positive(&report["peak_rss_bytes"]["ingest"], "peak RSS");
    let queries = report["queries"].as_array().unwrap();
    assert_eq!(queries.len(), 6, "{queries:?}");
    for q in queries {
        positive(&q["ratio_p50"], q["name"].as_str().unwrap());
        assert_eq!(q["served"]["samples"], 3);
        assert_eq!(q["raw_events"]["samples"], 2);
    }
    assert_eq!(report["webhook"]["samples"], 10);
    positive(&report["webhook"]["p99_ms"], "webhook p99");
    positive(
        &report["budget_check"]["achieved_per_s"],
        "budget-check rate",
    );
    assert_eq!(report["budget_check"]["errors"], 0);
    positive(
        &report["budget_check_floor_healthz"]["latency"]["p50_ms"],
        "the /healthz floor",
    );

    // One table row per target, each with its verdict.
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1 + 6 + 4, "{rows:?}");
    for r in rows {
        assert!(r["meets"].is_boolean(), "{r}");
        assert!(!r["tally"].as_str().unwrap().is_empty(), "{r}");
    }
}
