//! The benchmark as a smoke test: `tally bench` on a small volume runs every measurement end to
//! end (generation, DuckDB's loader, HTTP ingest, rollups vs raw events with equal answers,
//! webhooks, budget-check) and reports each row with its ratio. Timings are not judged here —
//! these machines are shared and noisy — only that the run completes and its numbers are real.

use std::path::Path;

use serde_json::Value;

/// Runs `tally bench` with `args`, its work directory `work` and its JSON written next to it;
/// returns the report, or the standard error of a failed run.
fn try_bench(args: &[&str], work: &Path) -> Result<Value, String> {
    let out = work.with_extension("json");
    let _ = std::fs::remove_file(&out);
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_tally"))
        .arg("bench")
        .args(args)
        .arg("--work-dir")
        .arg(work)
        .arg("--json-out")
        .arg(&out)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    eprint!("{stderr}");
    if !run.status.success() {
        return Err(stderr);
    }
    Ok(serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap())
}

/// [`try_bench`] for a run that must succeed.
fn bench(args: &[&str], work: &Path) -> Value {
    try_bench(args, work).unwrap_or_else(|e| panic!("tally bench failed:\n{e}"))
}

/// An RFC 3339 instant `days` before now, for `--end`.
fn days_ago(days: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::days(days)).to_rfc3339()
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
/// SQL to about the asked size, rollups and units are rebuilt, a normal server answers the
/// overview queries there — the bench itself fails unless the scaled totals are exactly the
/// copies times the ingested ones — and a day more at that density is ingested over HTTP.
/// `--reuse-scaled` measures at that size again without the build, once per later `--end`.
#[test]
fn a_scaled_benchmark_answers_and_ingests_at_the_replicated_size() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    // Two days back, so the day after the traffic and the day after that (the reuse below)
    // are not in the future, which ingest refuses beyond a day.
    let report = bench(
        &[
            "--events",
            "20000",
            "--scale-to",
            "60000",
            "--end",
            &days_ago(2),
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
    assert!(scaled["build_seconds"].as_f64().unwrap() > 0.0, "{scaled}");
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
    // The day after: a thirtieth of the scaled events on average (weekends take less than
    // weekdays, and the generator works in whole tasks), all acknowledged (the bench fails
    // otherwise), at a rate next to this run's.
    let day = &scaled["day_after"];
    let day_events = day["events"].as_u64().unwrap();
    assert!(
        (3 * events / 120..3 * events / 10).contains(&day_events),
        "{day_events} events a day after {} in 30 days",
        3 * events
    );
    assert!(day["outcomes"].as_u64().unwrap() > 0, "{day}");
    assert!(day["tally_events_per_s"].as_f64().unwrap() > 0.0, "{day}");
    assert!(day["base_events_per_s"].as_f64().unwrap() > 0.0, "{day}");
    assert!(day["peak_rss_bytes"].as_u64().unwrap() > 0, "{day}");
    // Six query rows, a disk row, an ingest row and a memory row at the scaled size follow
    // the usual eleven.
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1 + 6 + 4 + 9, "{rows:?}");
    let at_scale = |rows: &[Value]| {
        for r in rows {
            let measure = r["measure"].as_str().unwrap();
            assert!(measure.contains(&format!("{} events", 3 * events)), "{r}");
            assert!(r["meets"].is_boolean(), "{r}");
        }
    };
    at_scale(&rows[11..]);
    assert!(
        rows[18]["measure"].as_str().unwrap().contains("ingest"),
        "{}",
        rows[18]
    );
    assert!(rows[18]["ratio"].as_f64().unwrap() > 0.0, "{}", rows[18]);

    // Again on the database left there, the day after a day later: no build, no traffic at
    // --events (so no ratio), the same rows at the scaled size.
    let again = [
        "--events",
        "20000",
        "--scale-to",
        "60000",
        "--reuse-scaled",
        "--query-runs",
        "2",
        "--end",
    ];
    let end = days_ago(1);
    let reused = bench(&[&again[..], &[end.as_str()]].concat(), &work);
    let scaled = &reused["scaled"];
    assert!(scaled["build_seconds"].is_null(), "{scaled}");
    assert_eq!(scaled["events"].as_u64(), Some(3 * events + day_events));
    assert!(
        scaled["day_after"]["events"].as_u64().unwrap() > 0,
        "{scaled}"
    );
    assert!(
        scaled["day_after"]["base_events_per_s"].is_null(),
        "{scaled}"
    );
    let rows = reused["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 6 + 1 + 2, "{rows:?}");
    assert!(rows[7]["ratio"].is_null(), "{}", rows[7]);

    // A run stopped while rebuilding left the units unbuilt: the reuse builds them first.
    let db = work.join("scaled").join("tally.duckdb");
    let conn = duckdb::Connection::open(&db).unwrap();
    conn.execute_batch("UPDATE units_state SET built = false")
        .unwrap();
    drop(conn);
    let end = days_ago(0);
    let rebuilt = bench(&[&again[..], &[end.as_str()]].concat(), &work);
    assert!(
        rebuilt["scaled"]["build_seconds"].as_f64().unwrap() > 0.0,
        "{}",
        rebuilt["scaled"]
    );
    let conn = duckdb::Connection::open(&db).unwrap();
    let built: bool = conn
        .query_row("SELECT bool_and(built) FROM units_state", [], |r| r.get(0))
        .unwrap();
    assert!(built);
    drop(conn);
    // The same --end again would put a second day where the last went: refused.
    let refused = try_bench(&[&again[..], &[end.as_str()]].concat(), &work).unwrap_err();
    assert!(
        refused.contains("already has events after --end"),
        "{refused}"
    );
}
