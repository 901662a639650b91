//! The benchmark as a smoke test: `tally bench` on a small volume runs every measurement end to
//! end (generation, DuckDB's loader, HTTP ingest, rollups vs raw events with equal answers,
//! webhooks, budget-check) and reports each row with its ratio. Timings are not judged here —
//! these machines are shared and noisy — only that the run completes and its numbers are real.

use std::path::Path;

use serde_json::Value;

/// Runs `tally bench` with `args`, its work directory `work` and its JSON written next to it,
/// and returns the JSON report once the run has succeeded.
fn bench(args: &[&str], work: &Path) -> Value {
    let out = work.with_extension("json");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_tally"))
        .arg("bench")
        .args(args)
        .arg("--work-dir")
        .arg(work)
        .arg("--json-out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "tally bench failed: {status}");
    serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap()
}

#[test]
fn a_small_benchmark_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let report = bench(
        &[
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
        ],
        &work,
    );

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

/// `--no-baselines` (how 100M events are run: no NDJSON file, no loader, no raw-events
/// queries) still measures every row, says which baselines it skipped, and leaves no files.
#[test]
fn a_benchmark_without_baselines_measures_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let report = bench(
        &[
            "--events",
            "30000",
            "--no-baselines",
            "--query-runs",
            "2",
            "--webhooks",
            "3",
            "--check-rate",
            "200",
            "--check-secs",
            "1",
        ],
        &work,
    );
    let events = report["events"].as_u64().unwrap();
    assert!((20_000..40_000).contains(&events), "{events} events");
    assert_eq!(report["args"]["baselines"], false);
    assert!(report["ingest"]["tally_events_per_s"].as_f64().unwrap() > 0.0);
    assert!(report["ingest"]["duckdb_read_json_rows_per_s"].is_null());
    assert!(report["disk"]["duckdb_loader_bytes"].is_null());
    let queries = report["queries"].as_array().unwrap();
    assert_eq!(queries.len(), 6);
    for q in queries {
        assert_eq!(q["served"]["samples"], 2, "{q}");
        assert!(q["raw_events"].is_null() && q["ratio_p50"].is_null(), "{q}");
    }
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1 + 6 + 4, "{rows:?}");
    // The ingest row and the query rows have no baseline, and at this volume their targets
    // need one, so none of them can be met; the others are judged as usual.
    for r in &rows[..7] {
        assert_eq!(r["baseline"], "not measured (--no-baselines)", "{r}");
        assert!(r["ratio"].is_null() && r["meets"] == false, "{r}");
    }
    // Only the server's database stays in the work directory.
    let mut left: Vec<String> = std::fs::read_dir(&work)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["tally"]);
}

/// `--scale-to` (how the 100M query row is measured): the ingested traffic is replicated in
/// SQL to about the asked size, rollups and units are rebuilt, and a normal server answers the
/// overview queries there; the bench itself fails unless the scaled totals are exactly the
/// copies times the ingested ones.
#[test]
fn a_scaled_benchmark_answers_at_the_replicated_size() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let report = bench(
        &[
            "--events",
            "20000",
            "--scale-to",
            "60000",
            "--no-baselines",
            "--query-runs",
            "2",
            "--webhooks",
            "2",
            "--check-rate",
            "200",
            "--check-secs",
            "1",
        ],
        &work,
    );
    let events = report["events"].as_u64().unwrap();
    let scaled = &report["scaled"];
    assert_eq!(scaled["copies"], 3, "{scaled}");
    assert_eq!(scaled["events"].as_u64(), Some(3 * events), "{scaled}");
    let outcomes = scaled["outcomes"].as_u64().unwrap();
    assert!(
        outcomes > 0 && outcomes.is_multiple_of(3),
        "{outcomes} outcomes"
    );
    let used = scaled["disk"]["used_bytes"].as_u64().unwrap();
    let file = scaled["disk"]["file_bytes"].as_u64().unwrap();
    assert!(0 < used && used <= file, "{used} of {file} bytes");
    let queries = scaled["queries"].as_array().unwrap();
    assert_eq!(queries.len(), 6);
    for q in queries {
        assert_eq!(q["served"]["samples"], 2, "{q}");
        assert!(q["served"]["p50_ms"].as_f64().unwrap() > 0.0, "{q}");
    }
    // Six query rows and a disk row at the scaled size follow the usual eleven.
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1 + 6 + 4 + 7, "{rows:?}");
    for r in &rows[11..] {
        let measure = r["measure"].as_str().unwrap();
        assert!(
            measure.contains(&format!("{} events (×3", 3 * events)),
            "{r}"
        );
        assert!(r["meets"].is_boolean(), "{r}");
    }
}
