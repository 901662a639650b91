//! Billing over HTTP: `POST /v1/billing` (ingest role) imports a provider export;
//! `GET /api/v1/billing/imports`, `GET /api/v1/reconciliation` and
//! `GET /api/v1/export/focus` (read role) list imports, compare billed with metered, and
//! export Tally's events as FOCUS. Every read is limited to the caller's project.
//!
//! The import answer mirrors `/v1/ingest`: 200 whenever the body could be read, with the bad
//! lines listed (line, field, error) and the good ones committed before the answer is sent.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::Utc;
use serde_json::json;

use crate::analytics::focus_export::{self, ExportQuery};
use crate::analytics::params::{pairs, ParamError};
use crate::analytics::reconciliation::{self, ReconQuery};
use crate::billing::import::{self, Outcome, Source};
use crate::billing::{self, ImportError, Options};
use crate::keys::Principal;
use crate::store::queries::billing as queries;
use crate::web::{auth, format, request_id, AppState, Error};

impl From<ImportError> for Error {
    fn from(e: ImportError) -> Self {
        match e {
            ImportError::BadParameter(m) | ImportError::Unreadable(m) => Error::BadRequest(m),
            ImportError::TooLarge(m) => Error::PayloadTooLarge(m),
            ImportError::UnsupportedMediaType(m) => Error::UnsupportedMediaType(m),
            ImportError::Forbidden(m) => Error::Forbidden(m),
            ImportError::Store(e) => e.into(),
        }
    }
}

/// `POST /v1/billing?format=…`: one export per request.
pub async fn import(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Outcome>, Error> {
    let options = Options::parse(&pairs(query.as_deref()))?;
    // Refuse another project before reading a large body.
    principal
        .project_for_write(options.project.as_deref())
        .map_err(Error::Forbidden)?;
    let header_str = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let kind = billing::body_kind(header_str(header::CONTENT_TYPE).as_deref())?;
    let encoding = header_str(header::CONTENT_ENCODING);
    let cfg = state.config.ingest.clone();
    let bytes = axum::body::to_bytes(body, cfg.max_body_bytes)
        .await
        .map_err(|e| {
            if std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            {
                Error::PayloadTooLarge(format!(
                    "request body exceeds {} bytes (ingest.max_body_bytes); compress it (gzip, zstd) or split it",
                    cfg.max_body_bytes
                ))
            } else {
                Error::BadRequest(format!("could not read the request body: {e}"))
            }
        })?;
    let pricer = state.pricer.clone();
    let http_request = request_id(&headers);
    let who = principal.clone();
    let prepared = tokio::task::spawn_blocking(move || {
        let decoded =
            crate::ingest::body::decode(&bytes, encoding.as_deref(), cfg.max_decompressed_bytes)?;
        let ctx = billing::Ctx {
            pricer: &pricer,
            now: Utc::now(),
            max_records: cfg.max_records,
            progress: None,
        };
        let source = Source {
            principal: &who,
            http_request,
        };
        import::prepare(&decoded, kind, &options, &source, &ctx)
    })
    .await
    .map_err(|e| Error::Internal(anyhow::anyhow!("import task failed: {e}")))??;
    let outcome = import::commit(&state.store, prepared).await?;
    if !outcome.rejected.is_empty() {
        tracing::info!(
            import_id = %outcome.import_id,
            rejected = outcome.rejected.len(),
            first = %outcome.rejected[0].error,
            "billing lines rejected"
        );
    }
    Ok(Json(outcome))
}

/// `GET /api/v1/billing/imports?limit=`: imports, newest first.
pub async fn imports(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> Result<Response, Error> {
    let (fmt, pairs) = format::split(query.as_deref())?;
    let mut limit = 100usize;
    for (k, v) in pairs {
        match k.as_str() {
            "limit" => {
                limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=10_000).contains(n))
                    .ok_or_else(|| {
                        Error::BadRequest(format!("limit: {v:?} must be between 1 and 10000"))
                    })?
            }
            other => {
                return Err(Error::BadRequest(format!(
                    "unknown parameter {other:?}; expected limit"
                )))
            }
        }
    }
    let project = principal.project_scope().map(str::to_string);
    let rows = state
        .store
        .read(move |conn| queries::list_imports(conn, project.as_deref(), limit))
        .await?;
    let answer = json!({ "imports": rows });
    format::respond(
        fmt,
        answer,
        "imports",
        "billing-imports",
        &format::columns(&["id"]),
    )
    .await
}

/// `GET /api/v1/reconciliation`.
pub async fn reconciliation(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> Result<Response, Error> {
    let (fmt, pairs) = format::split(query.as_deref())?;
    let mut q = ReconQuery::parse(&pairs)?;
    auth::scope(&principal, &mut q.filters)?;
    let answer = reconciliation::query(&state.store, q).await?.to_json();
    let columns = format::group_keys(&answer);
    format::respond(fmt, answer, "rows", "reconciliation", &columns).await
}

/// `GET /api/v1/export/focus?format=csv|parquet`.
pub async fn focus(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> Result<Response, Error> {
    let mut q =
        ExportQuery::parse(&pairs(query.as_deref())).map_err(|e: ParamError| Error::from(e))?;
    auth::scope(&principal, &mut q.filters)?;
    let content_type = q.content_type();
    let file_name = format!("tally-focus-1.2.{}", q.extension());
    let (file, len) = focus_export::export(&state.store, q).await?;
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    let mut response = axum::body::Body::from_stream(stream).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}
