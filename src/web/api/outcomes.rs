//! `POST /v1/outcomes`: task outcomes in, one answer per request after the commit.
//!
//! Same body forms, encodings and limits as `/v1/ingest` (`ingest.max_body_bytes`,
//! `max_decompressed_bytes`, `max_records`), the same answer shape, and the same dead-letter
//! path: each rejected record is named in the answer and kept in the rejects table with its raw
//! text, while the valid ones are committed before the answer is sent. Outcomes are written
//! through the one writer (`WriterHandle::exec`: one transaction per request; outcomes are about
//! one per task, far rarer than calls, so they do not need the event path's group commit).

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap};
use axum::{Extension, Json};
use chrono::Utc;
use serde::Serialize;

use crate::ingest::outcome::{self, OutcomeBatch};
use crate::ingest::{body, Limits};
use crate::keys::Principal;
use crate::store::queries::outcomes as sql;
use crate::web::{request_id, AppState, Error};

/// The answer (the shape of `/v1/ingest`'s).
#[derive(Debug, Serialize)]
pub struct OutcomesAnswer {
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: Vec<RejectedOutcome>,
}

/// One rejected record.
#[derive(Debug, Serialize)]
pub struct RejectedOutcome {
    pub index: usize,
    pub field: String,
    pub error: String,
}

pub async fn outcomes(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    req_body: Body,
) -> Result<Json<OutcomesAnswer>, Error> {
    if let Some((k, _)) = crate::analytics::params::pairs(query.as_deref()).first() {
        return Err(Error::BadRequest(format!(
            "unknown parameter {k:?}; /v1/outcomes takes none"
        )));
    }
    let header_str = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let kind = body::body_kind(header_str(header::CONTENT_TYPE).as_deref())?;
    let encoding = header_str(header::CONTENT_ENCODING);
    let cfg = state.config.ingest.clone();
    let bytes = axum::body::to_bytes(req_body, cfg.max_body_bytes)
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
    let writer = principal.clone();
    let batch: OutcomeBatch = tokio::task::spawn_blocking(move || {
        let decoded = body::decode(&bytes, encoding.as_deref(), cfg.max_decompressed_bytes)?;
        let limits = Limits {
            max_metadata_bytes: cfg.max_metadata_bytes,
            ..Limits::default()
        };
        let ctx = outcome::Context {
            limits: &limits,
            max_records: cfg.max_records,
            now: received_at,
            principal: &writer,
        };
        outcome::parse_body(&decoded, kind, &ctx)
    })
    .await
    .map_err(|e| Error::Internal(anyhow::anyhow!("outcome parsing failed: {e}")))??;

    let rejected: Vec<RejectedOutcome> = batch
        .rejects
        .iter()
        .map(|r| RejectedOutcome {
            index: r.index,
            field: r.field.clone(),
            error: r.message(),
        })
        .collect();
    if !rejected.is_empty() {
        tracing::info!(rejected = rejected.len(), first = %rejected[0].error, "outcome records rejected");
    }
    let http_request = request_id(&headers);
    let project = principal.project.clone();
    let written = state
        .store
        .writer()
        .exec(move |conn| {
            sql::insert(
                conn,
                received_at,
                &batch.outcomes,
                &batch.rejects,
                http_request.as_deref(),
                project.as_deref(),
            )
        })
        .await?;
    Ok(Json(OutcomesAnswer {
        accepted: written.accepted,
        duplicates: written.duplicates,
        rejected,
    }))
}
