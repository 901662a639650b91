//! `POST /v1/ingest`: records in, one answer per request after the commit.
//!
//! The answer is 200 whenever the body could be read, listing each rejected record's index,
//! format and reason, and how many items were skipped (non-GenAI spans); the valid records of
//! the same body are committed before the answer is sent, so a 200 means they are durable.
//! Bodies that cannot be read at all get 400/413/415, and a full writer queue gets 503 with
//! Retry-After. `?format=` names the records' format (default `auto`: each record's shape
//! decides); `X-Tally-*` headers attribute every record of the request (see
//! `ingest::RequestDefaults` for the precedence).

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap};
use axum::Extension;
use axum::Json;
use chrono::Utc;
use serde::Serialize;

use crate::analytics::params::pairs;
use crate::ingest::{self, Limits, RequestDefaults};
use crate::keys::Principal;
use crate::metrics;
use crate::store::WriteBatch;
use crate::web::{request_id, AppState, Error};

/// Counts what a body held, by format, for `/metrics`. `skipped_as` names the format of
/// skipped items (only OTLP skips: non-GenAI spans).
pub fn count_records(batch: &ingest::ParsedBatch, skipped_as: &str) {
    let mut by: std::collections::BTreeMap<(&str, &'static str), u64> = Default::default();
    for e in &batch.events {
        *by.entry((e.event.source_format.as_str(), "received"))
            .or_default() += 1;
    }
    for r in &batch.rejects {
        *by.entry((r.source_format.as_str(), "rejected"))
            .or_default() += 1;
    }
    if batch.skipped > 0 {
        *by.entry((skipped_as, "skipped")).or_default() += batch.skipped as u64;
    }
    for ((format, result), n) in by {
        metrics::add(
            "tally_ingest_records_total",
            &[("format", format), ("result", result)],
            n,
        );
    }
}

/// Counts a commit's result for `/metrics`; a full queue is counted as backpressure.
pub fn count_outcome(outcome: &Result<crate::store::WriteOutcome, crate::store::WriteError>) {
    match outcome {
        Ok(o) => {
            metrics::add(
                "tally_ingest_events_total",
                &[("result", "stored")],
                o.accepted as u64,
            );
            metrics::add(
                "tally_ingest_events_total",
                &[("result", "duplicate")],
                o.duplicates as u64,
            );
        }
        Err(crate::store::WriteError::QueueFull) => metrics::add(
            "tally_ingest_backpressure_total",
            &[("reason", "queue_full")],
            1,
        ),
        Err(_) => {}
    }
}

/// The ingest answer.
#[derive(Debug, Serialize)]
pub struct IngestAnswer {
    pub accepted: usize,
    pub duplicates: usize,
    /// Items that describe no LLM call (non-GenAI spans), counted and not stored.
    pub skipped: usize,
    pub rejected: Vec<RejectedRecord>,
}

/// One rejected record in the answer.
#[derive(Debug, Serialize)]
pub struct RejectedRecord {
    pub index: usize,
    /// The format the record was read as (`openai.chat`, …; `unknown` when none matched).
    pub format: String,
    pub field: String,
    pub error: String,
}

impl RejectedRecord {
    pub fn from_reject(r: &ingest::Reject) -> Self {
        Self {
            index: r.index,
            format: r.source_format.clone(),
            field: r.field.clone(),
            error: r.message(),
        }
    }
}

/// Reads a request body up to `ingest.max_body_bytes`.
pub async fn read_body(body: Body, max: usize) -> Result<axum::body::Bytes, Error> {
    axum::body::to_bytes(body, max).await.map_err(|e| {
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
        {
            Error::PayloadTooLarge(format!(
                "request body exceeds {max} bytes (ingest.max_body_bytes); split it or compress it"
            ))
        } else {
            Error::BadRequest(format!("could not read the request body: {e}"))
        }
    })
}

/// The `X-Tally-*` attribution headers of a request.
pub fn request_defaults(headers: &HeaderMap) -> Result<RequestDefaults, Error> {
    let pairs = headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("x-tally-"))
        .map(|(name, value)| {
            value
                .to_str()
                .map(|v| (name.as_str(), v))
                .map_err(|_| Error::BadRequest(format!("header {name} is not valid text")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    RequestDefaults::from_headers(pairs, &Limits::default())
        .map_err(|e| Error::BadRequest(e.to_string()))
}

pub async fn ingest(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<IngestAnswer>, Error> {
    let mut format = None;
    for (key, value) in pairs(query.as_deref()) {
        match key.as_str() {
            "format" => format = ingest::parse_format_param(&value)?,
            other => {
                return Err(Error::BadRequest(format!(
                    "unknown parameter {other:?}; expected format"
                )))
            }
        }
    }
    let header_str = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let kind = ingest::body::body_kind(header_str(header::CONTENT_TYPE).as_deref())?;
    let encoding = header_str(header::CONTENT_ENCODING);
    let defaults = request_defaults(&headers)?;

    let cfg = &state.config.ingest;
    let bytes = read_body(body, cfg.max_body_bytes).await?;

    let received_at = Utc::now();
    let pricer = state.pricer.clone();
    let cfg = cfg.clone();
    let writer = principal.clone();
    let (http_request, project) = (request_id(&headers), principal.project.clone());
    let (batch, skipped) = tokio::task::spawn_blocking(move || -> Result<_, Error> {
        let decoded =
            ingest::body::decode(&bytes, encoding.as_deref(), cfg.max_decompressed_bytes)?;
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
        let parsed = ingest::parse_body(&decoded, kind, format, &ctx)?;
        // The bodies are not needed once parsed: freed before the Arrow columns are built and
        // the batch waits for the writer, not after.
        drop((decoded, bytes));
        count_records(&parsed, "unknown");
        let batch = WriteBatch {
            events: parsed.events,
            rejects: parsed.rejects,
            received_at,
            http_request,
            project,
            columns: None,
        }
        .prepare()?;
        Ok((batch, parsed.skipped))
    })
    .await
    .map_err(|e| Error::Internal(anyhow::anyhow!("ingest task failed: {e}")))??;

    let rejected: Vec<RejectedRecord> = batch
        .rejects
        .iter()
        .map(RejectedRecord::from_reject)
        .collect();
    if !rejected.is_empty() {
        tracing::info!(rejected = rejected.len(), first = %rejected[0].error, "records rejected");
    }
    let outcome = state.store.writer().write(batch).await;
    count_outcome(&outcome);
    let outcome = outcome?;
    Ok(Json(IngestAnswer {
        accepted: outcome.accepted,
        duplicates: outcome.duplicates,
        skipped,
        rejected,
    }))
}
