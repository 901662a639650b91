//! Liveness and readiness probes. They need no key: orchestrators call them without one.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::AppState;

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
