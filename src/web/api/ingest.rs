//! `POST /v1/ingest`: records in, one answer per request after the commit.
//!
//! The answer is 200 whenever the body could be read, listing each rejected record's index and
//! reason; the valid records of the same body are committed before the answer is sent, so a 200
//! means they are durable. Bodies that cannot be read at all get 400/413/415, and a full writer
//! queue gets 503 with Retry-After.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap};
use axum::Extension;
use axum::Json;
use chrono::Utc;
use serde::Serialize;

use crate::analytics::params::pairs;
use crate::ingest::{self, Format, Limits};
use crate::keys::Principal;
use crate::store::WriteBatch;
use crate::web::{request_id, AppState, Error};

/// The ingest answer.
#[derive(Debug, Serialize)]
pub struct IngestAnswer {
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: Vec<RejectedRecord>,
}

/// One rejected record in the answer.
#[derive(Debug, Serialize)]
pub struct RejectedRecord {
    pub index: usize,
    pub field: String,
    pub error: String,
}

pub async fn ingest(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<IngestAnswer>, Error> {
    let mut format = Format::Native;
    for (key, value) in pairs(query.as_deref()) {
        match key.as_str() {
            "format" => format = value.parse()?,
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

    let cfg = &state.config.ingest;
    let bytes = axum::body::to_bytes(body, cfg.max_body_bytes)
        .await
        .map_err(|e| {
            if std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            {
                Error::PayloadTooLarge(format!(
                "request body exceeds {} bytes (ingest.max_body_bytes); split it or compress it",
                cfg.max_body_bytes
            ))
            } else {
                Error::BadRequest(format!("could not read the request body: {e}"))
            }
        })?;

    let received_at = Utc::now();
    let pricer = state.pricer.clone();
    let cfg = cfg.clone();
    let writer = principal.clone();
    let batch = tokio::task::spawn_blocking(move || {
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
        };
        ingest::parse_body(&decoded, kind, format, &ctx)
    })
    .await
    .map_err(|e| Error::Internal(anyhow::anyhow!("ingest task failed: {e}")))??;

    let rejected: Vec<RejectedRecord> = batch
        .rejects
        .iter()
        .map(|r| RejectedRecord {
            index: r.index,
            field: r.field.clone(),
            error: r.message(),
        })
        .collect();
    if !rejected.is_empty() {
        tracing::info!(rejected = rejected.len(), first = %rejected[0].error, "records rejected");
    }
    let outcome = state
        .store
        .writer()
        .write(WriteBatch {
            events: batch.events,
            rejects: batch.rejects,
            received_at,
            http_request: request_id(&headers),
            project: principal.project.clone(),
        })
        .await?;
    Ok(Json(IngestAnswer {
        accepted: outcome.accepted,
        duplicates: outcome.duplicates,
        rejected,
    }))
}
