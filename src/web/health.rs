//! Operations endpoints: liveness and readiness probes, which need no key (orchestrators call
//! them without one), and `/metrics` for Prometheus, which needs the metrics token or an admin
//! key because its numbers are server-wide.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::{auth, AppState, Error};
use crate::metrics;

/// The process is up.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The database answers and the writer runs.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let writer = state.store.writer().is_alive();
    let db = state
        .store
        .read(|conn| Ok(conn.query_row("SELECT 1", [], |r| r.get::<_, i32>(0))?))
        .await
        .is_ok();
    let ready = writer && db;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(
            json!({"status": if ready { "ready" } else { "not ready" }, "writer": writer, "database": db}),
        ),
    )
}

/// `GET /metrics`: the Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>, req: Request) -> Result<Response, Error> {
    state.auth.may_scrape(auth::bearer(&req))?;
    let mut gauges: metrics::Gauges = vec![(
        "tally_writer_queue_depth",
        vec![],
        state.store.writer().queue_depth() as u64,
    )];
    gauges.push((
        "tally_ingest_requests_in_flight",
        vec![],
        state.admission.in_use() as u64,
    ));
    gauges.push((
        "tally_ingest_requests_waiting",
        vec![],
        state.admission.waiting() as u64,
    ));
    // Every state is printed, at zero too, so an alert rule on `failed` has a series to watch.
    let deliveries = state
        .store
        .read(crate::store::queries::budgets::delivery_counts)
        .await
        .unwrap_or_default();
    for s in ["pending", "delivered", "failed", "cancelled"] {
        let n = deliveries
            .iter()
            .find(|(k, _)| k == s)
            .map_or(0, |(_, n)| *n);
        gauges.push(("tally_alerts", vec![("state", s.to_string())], n));
    }
    if let Some(rss) = metrics::resident_memory_bytes() {
        gauges.push(("process_resident_memory_bytes", vec![], rss));
    }
    let duckdb = state
        .store
        .read(crate::store::queries::ingest::duckdb_memory)
        .await
        .unwrap_or_default();
    for (tag, memory, temporary) in duckdb {
        gauges.push((
            "tally_duckdb_memory_bytes",
            vec![("tag", tag.clone())],
            memory,
        ));
        gauges.push((
            "tally_duckdb_temporary_bytes",
            vec![("tag", tag)],
            temporary,
        ));
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(&gauges),
    )
        .into_response())
}
