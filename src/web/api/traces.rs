//! `POST /v1/traces`: the OTLP/HTTP trace receiver, so an OpenTelemetry exporter can point
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` straight at Tally.
//!
//! Takes `application/x-protobuf` (the exporters' default) and `application/json`, with the
//! same size limits and decompression as `/v1/ingest`. The answer is OTLP's own
//! `ExportTraceServiceResponse` in the request's encoding: `partial_success` carries the number
//! of rejected spans and why, and is absent when every span was accepted or skipped. Non-GenAI
//! spans are skipped, not rejected, so exporters that send everything do not log warnings.
//! Tally's own numbers ride along in `X-Tally-*` response headers and, for JSON, in a `tally`
//! field (OTLP receivers' clients ignore fields they do not know). Whole-request failures use
//! Tally's JSON error body with the status codes OTLP clients act on: 400/413/415 are not
//! retried, 503 with `Retry-After` is.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use chrono::Utc;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message as _;
use serde_json::json;

use super::ingest::{read_body, request_defaults, RejectedRecord};
use crate::analytics::params::pairs;
use crate::ingest::{self, otlp, Limits};
use crate::keys::Principal;
use crate::store::WriteBatch;
use crate::web::{request_id, AppState, Error};

/// How many rejection reasons the OTLP `error_message` lists before summarising.
const MESSAGE_REASONS: usize = 3;

pub async fn traces(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    if let Some((key, _)) = pairs(query.as_deref()).into_iter().next() {
        return Err(Error::BadRequest(format!(
            "unknown parameter {key:?}; /v1/traces takes none"
        )));
    }
    let header_str = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header_str(header::CONTENT_TYPE).unwrap_or_default();
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let encoding_kind = match essence.as_str() {
        "application/x-protobuf" | "application/protobuf" => otlp::Encoding::Protobuf,
        "application/json" => otlp::Encoding::Json,
        other => {
            return Err(Error::UnsupportedMediaType(format!(
                "Content-Type {other:?} is not an OTLP/HTTP encoding; send \
                 application/x-protobuf or application/json"
            )))
        }
    };
    let content_encoding = header_str(header::CONTENT_ENCODING);
    let defaults = request_defaults(&headers)?;
    let cfg = state.config.ingest.clone();
    let bytes = read_body(body, cfg.max_body_bytes).await?;

    let received_at = Utc::now();
    let pricer = state.pricer.clone();
    let writer = principal.clone();
    let parsed = tokio::task::spawn_blocking(move || {
        let decoded = ingest::body::decode(
            &bytes,
            content_encoding.as_deref(),
            cfg.max_decompressed_bytes,
        )?;
        let limits = Limits {
            max_metadata_bytes: cfg.max_metadata_bytes,
            ..Limits::default()
        };
        let ctx = ingest::Context {
            pricer: &pricer,
            limits: &limits,
            max_records: cfg.max_records,
            now: received_at,
            principal: &writer,
            defaults: &defaults,
        };
        otlp::parse_traces(&decoded, encoding_kind, &ctx)
    })
    .await
    .map_err(|e| Error::Internal(anyhow::anyhow!("traces task failed: {e}")))??;

    let spans = parsed.spans;
    let batch = parsed.batch;
    let skipped = batch.skipped;
    let rejected: Vec<RejectedRecord> = batch
        .rejects
        .iter()
        .map(RejectedRecord::from_reject)
        .collect();
    if !rejected.is_empty() {
        tracing::info!(rejected = rejected.len(), first = %rejected[0].error, "spans rejected");
    }
    super::ingest::count_records(&batch, "otlp");
    let outcome = state
        .store
        .writer()
        .write(WriteBatch {
            events: batch.events,
            rejects: batch.rejects,
            received_at,
            http_request: request_id(&headers),
            project: principal.project.clone(),
            columns: None,
        })
        .await;
    super::ingest::count_outcome(&outcome);
    let outcome = outcome?;

    let partial = (!rejected.is_empty()).then(|| {
        let mut message: Vec<String> = rejected
            .iter()
            .take(MESSAGE_REASONS)
            .map(|r| {
                format!(
                    "{}: {}",
                    r.field,
                    r.error.splitn(3, ": ").last().unwrap_or("")
                )
            })
            .collect();
        if rejected.len() > MESSAGE_REASONS {
            message.push(format!(
                "… and {} more (GET /api/v1/rejects?source_format=otlp)",
                rejected.len() - MESSAGE_REASONS
            ));
        }
        ExportTracePartialSuccess {
            rejected_spans: i64::try_from(rejected.len()).unwrap_or(i64::MAX),
            error_message: format!(
                "{} of {spans} spans rejected: {}",
                rejected.len(),
                message.join("; ")
            ),
        }
    });

    let mut response = match encoding_kind {
        otlp::Encoding::Protobuf => {
            let answer = ExportTraceServiceResponse {
                partial_success: partial,
            };
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/x-protobuf")],
                answer.encode_to_vec(),
            )
                .into_response()
        }
        otlp::Encoding::Json => {
            let mut answer = json!({
                "tally": {
                    "spans": spans,
                    "accepted": outcome.accepted,
                    "duplicates": outcome.duplicates,
                    "skipped": skipped,
                    "rejected": rejected,
                }
            });
            if let Some(p) = partial {
                // OTLP/JSON writes int64 as a decimal string.
                answer["partialSuccess"] = json!({
                    "rejectedSpans": p.rejected_spans.to_string(),
                    "errorMessage": p.error_message,
                });
            }
            (StatusCode::OK, axum::Json(answer)).into_response()
        }
    };
    for (name, value) in [
        ("x-tally-accepted", outcome.accepted),
        ("x-tally-duplicates", outcome.duplicates),
        ("x-tally-skipped", skipped),
        ("x-tally-rejected", rejected.len()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
            response.headers_mut().insert(name, v);
        }
    }
    Ok(response)
}
