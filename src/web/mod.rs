//! HTTP: the router, shared state, authentication and error mapping.
//!
//! Handlers stay thin: extract, parse into domain types, call one function of `ingest`,
//! `analytics` or the store, and map the result to JSON or a page. No SQL lives here.

pub mod api;
pub mod auth;
pub mod error;
pub mod health;
pub mod pages;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderName, Request};
use axum::routing::{get, post};
use axum::{middleware, Router};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::config::Config;
use crate::pricing::Pricer;
use crate::store::Store;

pub use error::Error;

/// State every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub pricer: Arc<Pricer>,
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Builds the whole router.
pub fn router(state: AppState) -> Router {
    let auth = Arc::new(auth::Auth::new(state.config.admin_key.as_deref()));
    let protected = Router::new()
        .route("/", get(pages::home::page))
        .route("/v1/ingest", post(api::ingest::ingest))
        .route("/v1/traces", post(api::traces::traces))
        .route("/api/v1/costs", get(api::costs::costs))
        .route("/api/v1/rejects", get(api::rejects::rejects))
        .route_layer(middleware::from_fn_with_state(auth, auth::require_key));
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/static/tally.css", get(pages::stylesheet))
        .merge(protected)
        .fallback(|| async { Error::NotFound("no such endpoint".into()) })
        .with_state(state)
        .layer(
            tower::ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                    let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
                    tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
                }))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(tower_http::timeout::TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, Duration::from_secs(300))),
        )
}

/// The request id of the current request, as set by the middleware.
pub fn request_id(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}
