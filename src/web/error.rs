//! The one error type of the HTTP layer and its single mapping to status codes.
//!
//! API errors answer JSON `{"error": {"code", "message"}}`. Internal errors are logged here,
//! once, with their detail, and the client gets only a generic message with the request id, so
//! nothing about the server's insides leaks.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::analytics::costs::QueryError;
use crate::analytics::params::ParamError;
use crate::ingest::IngestError;
use crate::store::{StoreError, WriteError};

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after_secs: u64,
    },
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
}

impl Error {
    /// The status code this error maps to, for JSON and HTML answers alike.
    pub fn status(&self) -> StatusCode {
        self.status_and_code().0
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Error::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Error::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Error::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Error::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Error::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Error::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Error::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self {
            Error::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "internal error");
                "internal error; the server log has the details (search for this response's x-request-id)".to_string()
            }
            other => other.to_string(),
        };
        let mut response = (
            status,
            Json(json!({"error": {"code": code, "message": message}})),
        )
            .into_response();
        if let Error::Unavailable {
            retry_after_secs, ..
        } = self
        {
            if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<IngestError> for Error {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Unreadable(m) | IngestError::BadParameter(m) => Error::BadRequest(m),
            IngestError::TooLarge(m) => Error::PayloadTooLarge(m),
            IngestError::UnsupportedMediaType(m) => Error::UnsupportedMediaType(m),
        }
    }
}

impl From<WriteError> for Error {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::QueueFull => Error::Unavailable {
                message: e.to_string(),
                retry_after_secs: 1,
            },
            WriteError::Closed => Error::Unavailable {
                message: "the server is shutting down".into(),
                retry_after_secs: 5,
            },
            WriteError::Commit(m) => Error::Internal(anyhow::anyhow!("commit failed: {m}")),
        }
    }
}

impl From<ParamError> for Error {
    fn from(e: ParamError) -> Self {
        Error::BadRequest(e.0)
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        // DuckDB stops a query that would pass `storage.memory_limit` (shared by every query and
        // the writer) instead of letting the process grow: the question is too large for it now,
        // perhaps only while other work holds memory — not a fault of the server.
        if e.is_out_of_memory() {
            tracing::warn!(error = %e, "a query ran out of the database's memory limit");
            return Error::Unavailable {
                message: "this question needs more memory than the database may use \
                          (storage.memory_limit, shared with the other queries and ingest): \
                          narrow the range, filter, or group by fewer keys with many values \
                          (task_id, run_id, session_id, user_id)"
                    .into(),
                retry_after_secs: 5,
            };
        }
        Error::Internal(e.into())
    }
}

impl From<QueryError> for Error {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Param(p) => p.into(),
            QueryError::Store(s) => s.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query DuckDB stops at its memory limit is a 503 that says what to do, not an opaque
    /// internal error; other database errors stay internal.
    #[test]
    fn a_query_past_the_memory_limit_is_unavailable_with_advice() {
        let conn = duckdb::Connection::open_in_memory().unwrap();
        conn.execute_batch("SET memory_limit = '8MB'; SET threads = 1")
            .unwrap();
        let err = conn
            .query_row(
                "SELECT count(*) FROM (SELECT i % 1000000 AS g, quantile_cont(i, 0.5) \
                 FROM range(4000000) t(i) GROUP BY g)",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap_err();
        let store = StoreError::from(err);
        assert!(store.is_out_of_memory(), "{store}");
        let e = Error::from(store);
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(e.to_string().contains("storage.memory_limit"), "{e}");

        let other = StoreError::from(conn.execute("SELECT * FROM no_such_table", []).unwrap_err());
        assert!(!other.is_out_of_memory());
        assert_eq!(
            Error::from(other).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
