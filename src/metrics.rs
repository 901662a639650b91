//! Operational metrics, rendered in the Prometheus text exposition format at `GET /metrics`.
//!
//! A process-wide registry of counters and histograms that the HTTP layer, the ingest handlers
//! and the writer thread update as they work; gauges (queue depth, resident memory) are read at
//! scrape time. Hand-written rather than a metrics crate: the series are few with small, fixed
//! label sets, updates are a short mutex hold off the hot row path (once per request or commit,
//! never per event), and it adds no dependency tree. Every series is declared in [`SERIES`] so
//! its help text and type are printed even before the first observation. Labels never carry
//! user text other than route templates and format names, so cardinality stays bounded.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

/// Upper bounds of the latency histograms, in seconds.
const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every series: name, type, help.
const SERIES: &[(&str, Kind, &str)] = &[
    (
        "tally_http_requests_total",
        Kind::Counter,
        "HTTP requests answered, by route template, method and status code.",
    ),
    (
        "tally_http_request_duration_seconds",
        Kind::Histogram,
        "Time to answer HTTP requests, by route template and method (API queries included).",
    ),
    (
        "tally_ingest_records_total",
        Kind::Counter,
        "Records read by /v1/ingest and /v1/traces, by format and result (received, rejected, skipped).",
    ),
    (
        "tally_ingest_events_total",
        Kind::Counter,
        "Received events after the commit, by result (stored, duplicate).",
    ),
    (
        "tally_ingest_backpressure_total",
        Kind::Counter,
        "Write requests answered 503, by reason: the writer queue stayed full (queue_full), or no slot of ingest.max_concurrent_requests came free in ingest.max_wait_ms (busy).",
    ),
    (
        "tally_ingest_requests_in_flight",
        Kind::Gauge,
        "Write requests holding one of the ingest.max_concurrent_requests slots (reading, parsing or waiting for their commit).",
    ),
    (
        "tally_ingest_requests_waiting",
        Kind::Gauge,
        "Write requests waiting for a slot, their bodies not yet read.",
    ),
    (
        "tally_writer_queue_depth",
        Kind::Gauge,
        "Write batches waiting for the writer.",
    ),
    (
        "tally_writer_commits_total",
        Kind::Counter,
        "Group commits of the writer, by result (ok, error).",
    ),
    (
        "tally_writer_commit_rows_total",
        Kind::Counter,
        "Events in the writer's successful commits (before de-duplication).",
    ),
    (
        "tally_writer_commit_duration_seconds",
        Kind::Histogram,
        "Duration of one group commit (de-duplication, append, hooks, commit).",
    ),
    (
        "tally_writer_phase_duration_seconds",
        Kind::Histogram,
        "Duration of each phase of a group commit (dedup, arrow, append, each commit hook, gapfill, rejects, commit).",
    ),
    (
        "tally_writer_checkpoint_duration_seconds",
        Kind::Histogram,
        "Duration of explicit checkpoints.",
    ),
    (
        "tally_store_read_duration_seconds",
        Kind::Histogram,
        "Duration of reads on the pooled connections (queries behind the API and pages).",
    ),
    (
        "tally_alerts",
        Kind::Gauge,
        "Budget alerts in the outbox, by delivery state.",
    ),
    (
        "process_resident_memory_bytes",
        Kind::Gauge,
        "Resident set size of the Tally process.",
    ),
    (
        "tally_duckdb_memory_bytes",
        Kind::Gauge,
        "Memory DuckDB holds, by what holds it (bounded by storage.memory_limit).",
    ),
    (
        "tally_duckdb_temporary_bytes",
        Kind::Gauge,
        "Bytes DuckDB spilled to temporary files, by what spilled them.",
    ),
];

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Registry {
    counters: BTreeMap<(&'static str, Labels), u64>,
    histograms: BTreeMap<(&'static str, Labels), Histogram>,
}

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(Mutex::default)
}

fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, (*v).to_string())).collect()
}

fn lock() -> std::sync::MutexGuard<'static, Registry> {
    // A panic while holding the lock cannot leave a counter half-updated; keep counting.
    registry().lock().unwrap_or_else(|p| p.into_inner())
}

/// Adds `by` to a counter.
pub fn add(name: &'static str, pairs: &[(&'static str, &str)], by: u64) {
    if by == 0 {
        return;
    }
    *lock().counters.entry((name, labels(pairs))).or_default() += by;
}

/// A counter's current value (0 when never added to), e.g. for a page that shows it.
pub fn counter(name: &'static str, pairs: &[(&'static str, &str)]) -> u64 {
    lock()
        .counters
        .get(&(name, labels(pairs)))
        .copied()
        .unwrap_or(0)
}

/// Records one duration in a histogram.
pub fn observe(name: &'static str, pairs: &[(&'static str, &str)], seconds: f64) {
    let mut reg = lock();
    let h = reg.histograms.entry((name, labels(pairs))).or_default();
    for (i, bound) in BUCKETS.iter().enumerate() {
        if seconds <= *bound {
            h.counts[i] += 1;
        }
    }
    h.count += 1;
    h.sum += seconds;
}

/// Values read at scrape time: (series, labels, value).
pub type Gauges = Vec<(&'static str, Vec<(&'static str, String)>, u64)>;

/// The exposition text: every declared series with its help and type, then its samples.
pub fn render(gauges: &Gauges) -> String {
    let reg = lock();
    let mut out = String::new();
    for (name, kind, help) in SERIES {
        let type_name = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {type_name}");
        match kind {
            Kind::Counter => {
                for ((n, l), v) in &reg.counters {
                    if n == name {
                        let _ = writeln!(out, "{name}{} {v}", fmt_labels(l, None));
                    }
                }
            }
            Kind::Gauge => {
                for (n, l, v) in gauges {
                    if n == name {
                        let _ = writeln!(out, "{name}{} {v}", fmt_labels(l, None));
                    }
                }
            }
            Kind::Histogram => {
                for ((n, l), h) in &reg.histograms {
                    if n != name {
                        continue;
                    }
                    for (bound, count) in BUCKETS.iter().zip(h.counts) {
                        let le = bound.to_string();
                        let _ = writeln!(out, "{name}_bucket{} {count}", fmt_labels(l, Some(&le)));
                    }
                    let _ = writeln!(
                        out,
                        "{name}_bucket{} {}",
                        fmt_labels(l, Some("+Inf")),
                        h.count
                    );
                    let _ = writeln!(out, "{name}_sum{} {}", fmt_labels(l, None), h.sum);
                    let _ = writeln!(out, "{name}_count{} {}", fmt_labels(l, None), h.count);
                }
            }
        }
    }
    out
}

fn fmt_labels(labels: &[(&'static str, String)], le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// Label values escape backslash, double quote and newline (exposition format rules).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Resident memory of this process from `/proc/self/statm` (Linux); `None` elsewhere.
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // 4 KiB pages on every Linux platform Tally targets (x86-64, aarch64 default kernels).
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges_in_exposition_format() {
        add(
            "tally_ingest_records_total",
            &[("format", "test\"fmt"), ("result", "received")],
            3,
        );
        // The registry is global and other tests' stores checkpoint concurrently: a label of
        // this test's own keeps its series apart from theirs.
        let own = [("test", "exposition")];
        observe("tally_writer_checkpoint_duration_seconds", &own, 0.003);
        observe("tally_writer_checkpoint_duration_seconds", &own, 20.0);
        let text = render(&vec![("tally_writer_queue_depth", vec![], 7)]);
        assert!(text.contains("# TYPE tally_ingest_records_total counter"));
        assert!(text
            .contains("tally_ingest_records_total{format=\"test\\\"fmt\",result=\"received\"} 3"));
        assert!(text.contains("tally_writer_queue_depth 7"));
        // Buckets are cumulative: 0.003 s is under every bound from 0.005 on; 20 s only +Inf.
        let series = "tally_writer_checkpoint_duration_seconds";
        for (suffix, count) in [
            ("_bucket{test=\"exposition\",le=\"0.0025\"}", 0),
            ("_bucket{test=\"exposition\",le=\"0.005\"}", 1),
            ("_bucket{test=\"exposition\",le=\"10\"}", 1),
            ("_bucket{test=\"exposition\",le=\"+Inf\"}", 2),
            ("_count{test=\"exposition\"}", 2),
        ] {
            let line = format!("{series}{suffix} {count}");
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }

    /// Operators learn the series from docs/operations.md: every declared one is in its table.
    #[test]
    fn every_series_is_documented_for_operators() {
        let doc = include_str!("../docs/operations.md");
        for (name, _, _) in SERIES {
            assert!(
                doc.contains(&format!("| `{name}")),
                "{name} is missing from the metrics table of docs/operations.md"
            );
        }
    }
}
