//! HTTP: the router, shared state, authentication and error mapping.
//!
//! Handlers stay thin: extract, parse into domain types, call one function of `ingest`,
//! `analytics` or the store, and map the result to JSON or a page. No SQL lives here.

pub mod admission;
pub mod api;
pub mod auth;
pub mod charts;
pub mod error;
pub mod extract;
pub mod format;
pub mod health;
pub mod openapi;
pub mod pages;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use crate::budgets::Engine;
use axum::http::{header, HeaderName, HeaderValue, Request};
use axum::routing::{delete, get, post};
use axum::{middleware, Router};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::config::Config;
use crate::keys::{KeyRing, Role};
use crate::pricing::Pricer;
use crate::store::Store;

pub use error::Error;

/// State every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub pricer: Arc<Pricer>,
    pub keys: Arc<KeyRing>,
    /// Budget definitions, their in-memory numbers and the alert dispatcher's wake-up.
    pub budgets: Arc<Engine>,
    pub auth: Arc<auth::Auth>,
    /// The slots of the write endpoints (`ingest.max_concurrent_requests`).
    pub admission: Arc<admission::Admission>,
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Builds the whole router.
pub fn router(state: AppState) -> Router {
    let auth = state.auth.clone();
    // Each group is gated by role as a whole, so no handler can forget its check.
    let ingest = Router::new()
        .route("/v1/ingest", post(api::ingest::ingest))
        .route("/v1/outcomes", post(api::outcomes::outcomes))
        .route("/v1/traces", post(api::traces::traces))
        .route("/v1/billing", post(api::billing::import))
        // Inside the role check (a later route_layer runs first), so only requests with a
        // valid key take a slot.
        .route_layer(middleware::from_fn_with_state(
            state.admission.clone(),
            admission::admit,
        ))
        .route_layer(middleware::from_fn_with_state(Role::Ingest, auth::require));
    // Gateways hold ingest keys, dashboards read keys: both may ask before a call.
    const INGEST_OR_READ: &[Role] = &[Role::Ingest, Role::Read];
    let ingest_or_read = Router::new()
        .route("/v1/budget-check", get(api::budgets::check))
        .route_layer(middleware::from_fn_with_state(
            INGEST_OR_READ,
            auth::require_any,
        ));
    let read = Router::new()
        .route("/", get(pages::overview::page))
        .route("/explore", get(pages::explore::page))
        .route("/explore.csv", get(pages::explore::csv))
        .route("/reconciliation", get(pages::reconciliation::page))
        .route("/api/v1/costs", get(api::costs::costs))
        .route("/api/v1/rejects", get(api::rejects::rejects))
        .route("/api/v1/billing/imports", get(api::billing::imports))
        .route("/api/v1/reconciliation", get(api::billing::reconciliation))
        .route("/api/v1/export/focus", get(api::billing::focus))
        .route("/tasks", get(pages::tasks::page))
        .route("/runs/{id}", get(pages::runs::page))
        .route("/routes", get(pages::routes::page))
        .route("/api/v1/tasks", get(api::tasks::tasks))
        .route("/api/v1/runs", get(api::runs::list))
        .route("/api/v1/runs/{id}", get(api::runs::detail))
        .route("/api/v1/routes", get(api::routes::routes))
        .route(
            "/api/v1/whatif",
            get(api::whatif::get).post(api::whatif::post),
        )
        .route("/api/v1/reprice", get(api::reprice::dry_run))
        .route("/api/v1/unpriced", get(api::unpriced::unpriced))
        .route("/api/v1/anomalies", get(api::anomalies::anomalies))
        .route("/budgets", get(pages::budgets::page))
        .route("/ingest", get(pages::ingest::page))
        .route("/api/v1/budgets/status", get(api::budgets::status))
        .route("/api/v1/alerts", get(api::alerts::list))
        .route_layer(middleware::from_fn_with_state(Role::Read, auth::require));
    let admin = Router::new()
        .route("/api/v1/keys", get(api::keys::list).post(api::keys::create))
        .route("/api/v1/keys/{id}", delete(api::keys::revoke))
        .route("/api/v1/reprice", post(api::reprice::apply))
        .route(
            "/api/v1/budgets",
            get(api::budgets::list).post(api::budgets::create),
        )
        .route(
            "/api/v1/budgets/{id}",
            get(api::budgets::get)
                .put(api::budgets::replace)
                .delete(api::budgets::delete),
        )
        .route(
            "/api/v1/alerts/{id}/redeliver",
            post(api::alerts::redeliver),
        )
        .route(
            "/api/v1/channels",
            get(api::channels::list).post(api::channels::create),
        )
        .route(
            "/api/v1/channels/{id}",
            get(api::channels::get)
                .patch(api::channels::update)
                .delete(api::channels::delete),
        )
        .route("/api/v1/channels/{id}/test", post(api::channels::test))
        .route("/budgets/save", post(pages::budgets::save))
        .route(
            "/budgets/alerts/{id}/redeliver",
            post(pages::budgets::redeliver),
        )
        .route(
            "/budgets/channels/{id}/test",
            post(pages::budgets::test_channel),
        )
        .route_layer(middleware::from_fn_with_state(Role::Admin, auth::require));
    let protected = ingest
        .merge(ingest_or_read)
        .merge(read)
        .merge(admin)
        .route_layer(middleware::from_fn_with_state(auth, auth::authenticate));
    let app = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        // Public: it describes the API, not data — the same facts the README publishes — and a
        // client needs it before it has a key. Nothing in it depends on the caller or the store.
        .route("/api/openapi.json", get(openapi::serve))
        .route("/static/tally.css", get(pages::stylesheet))
        .route("/static/tally.js", get(pages::script))
        .route("/static/favicon.svg", get(pages::favicon))
        .route("/favicon.ico", get(pages::favicon))
        .route(
            "/signin",
            get(pages::signin::form).post(pages::signin::submit),
        )
        .route("/signout", post(pages::signin::signout))
        .merge(protected)
        // Counted per route template, so ids in paths do not multiply the series.
        .route_layer(middleware::from_fn(count_request))
        .fallback(|| async { Error::NotFound("no such endpoint".into()) })
        .with_state(state);
    with_security_headers(app).layer(
            tower::ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                    let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
                    tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
                }))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                    axum::http::StatusCode::REQUEST_TIMEOUT,
                    Duration::from_secs(300),
                )),
        )
}

/// Counts and times every routed request for `/metrics`.
async fn count_request(
    req: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().clone();
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    let labels = [("route", route.as_str()), ("method", method.as_str())];
    crate::metrics::observe(
        "tally_http_request_duration_seconds",
        &labels,
        started.elapsed().as_secs_f64(),
    );
    crate::metrics::add(
        "tally_http_requests_total",
        &[
            ("route", route.as_str()),
            ("method", method.as_str()),
            ("status", response.status().as_str()),
        ],
        1,
    );
    response
}

/// Headers every answer carries: no inline scripts or framing, no MIME sniffing, no referrer.
fn with_security_headers(router: Router) -> Router {
    const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
    router
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
}

/// The request id of the current request, as set by the middleware.
pub fn request_id(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}
