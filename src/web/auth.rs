//! Authentication and role checks for HTTP.
//!
//! [`authenticate`] turns a request into a [`Principal`]: the bootstrap admin key from the
//! configuration, an API key from the key ring, or — only on a server without an admin key,
//! which `app` allows only on loopback — an implicit superuser. It puts the principal into the
//! request's extensions; [`require`] layers then gate whole route groups by role, so a handler
//! cannot forget its check. Secrets are compared as SHA-256 digests, so the comparison time does
//! not depend on how much of a guessed key is right.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;

use super::error::Error;
use super::session::{self, Sessions};
use crate::analytics::params::Filter;
use crate::domain::dimension::Dimension;
use crate::keys::{digest_hex, KeyRing, Principal, Role};

/// What the server accepts as credentials.
#[derive(Clone)]
pub struct Auth {
    admin_key_digest: Option<String>,
    metrics_token_digest: Option<String>,
    keys: Arc<KeyRing>,
    sessions: Sessions,
}

/// The session cookie a request was authenticated with, for CSRF checks on forms.
#[derive(Debug, Clone)]
pub struct SessionCookie(pub String);

impl Auth {
    pub fn new(admin_key: Option<&str>, keys: Arc<KeyRing>, sessions: Sessions) -> Self {
        Self {
            admin_key_digest: admin_key.map(digest_hex),
            metrics_token_digest: None,
            keys,
            sessions,
        }
    }

    /// Accepts `token` as a credential for `/metrics` only.
    pub fn with_metrics_token(mut self, token: Option<&str>) -> Self {
        self.metrics_token_digest = token.map(digest_hex);
        self
    }

    /// Whether a request may read `/metrics`: the metrics token or any admin credential.
    /// Metrics are server-wide, so a project's read key may not see them.
    pub fn may_scrape(&self, presented: Option<&str>) -> Result<(), Error> {
        if let (Some(expected), Some(secret)) = (&self.metrics_token_digest, presented) {
            if *expected == digest_hex(secret) {
                return Ok(());
            }
        }
        match self.principal(presented)? {
            p if p.role == Role::Admin => Ok(()),
            _ => Err(Error::Forbidden(
                "/metrics needs the metrics token or an admin key".into(),
            )),
        }
    }

    /// Session cookies and CSRF tokens.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// True when requests without a key are let in (no admin key configured; loopback only).
    pub fn is_open(&self) -> bool {
        self.admin_key_digest.is_none()
    }

    /// The principal behind a presented secret, or behind no secret at all.
    pub fn principal(&self, presented: Option<&str>) -> Result<Principal, Error> {
        match presented {
            Some(secret) => {
                if self.admin_key_digest.as_deref() == Some(digest_hex(secret).as_str()) {
                    return Ok(Principal::superuser());
                }
                self.keys
                    .authenticate(secret, Utc::now())
                    .ok_or_else(|| Error::Unauthorized("invalid or revoked API key".into()))
            }
            None if self.is_open() => Ok(Principal::superuser()),
            None => Err(Error::Unauthorized(
                "missing API key: send Authorization: Bearer <key>".into(),
            )),
        }
    }
}

/// The bearer secret of a request, if any.
pub fn bearer(req: &Request) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// True for dashboard pages, which answer people (HTML, redirects) rather than programs.
pub fn is_page(path: &str) -> bool {
    !(path.starts_with("/api/") || path.starts_with("/v1/") || path.starts_with("/static/"))
}

/// Middleware: resolves the principal — bearer key, else session cookie, else open mode — or
/// answers 401 (pages redirect to the sign-in form instead).
pub async fn authenticate(State(auth): State<Arc<Auth>>, mut req: Request, next: Next) -> Response {
    let result = match bearer(&req) {
        Some(secret) => auth.principal(Some(secret)).map(|p| (p, None)),
        None => match session::cookie_value(req.headers(), session::COOKIE).and_then(|c| {
            auth.sessions
                .principal(c, &auth.keys, Utc::now())
                .map(|p| (p, c.to_string()))
        }) {
            Some((p, cookie)) => Ok((p, Some(cookie))),
            None => auth.principal(None).map(|p| (p, None)),
        },
    };
    match result {
        Ok((principal, cookie)) => {
            req.extensions_mut().insert(principal);
            if let Some(c) = cookie {
                req.extensions_mut().insert(SessionCookie(c));
            }
            next.run(req).await
        }
        Err(_) if is_page(req.uri().path()) => {
            let next_path = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            let target = format!(
                "/signin?next={}",
                form_urlencoded::byte_serialize(next_path.as_bytes()).collect::<String>()
            );
            Redirect::to(&target).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// Middleware: lets only principals whose role allows `needed` through (403 otherwise).
pub async fn require(State(needed): State<Role>, req: Request, next: Next) -> Response {
    let Some(principal) = req.extensions().get::<Principal>() else {
        return Error::Unauthorized("not authenticated".into()).into_response();
    };
    if principal.role.allows(needed) {
        return next.run(req).await;
    }
    let message = format!(
        "this key has the {} role; this {} needs {}",
        principal.role,
        if is_page(req.uri().path()) {
            "page"
        } else {
            "endpoint"
        },
        match needed {
            Role::Ingest => "ingest (or admin)",
            Role::Read => "read (or admin)",
            Role::Admin => "admin",
        }
    );
    if is_page(req.uri().path()) {
        super::pages::error_page(StatusCode::FORBIDDEN, &message)
    } else {
        Error::Forbidden(message).into_response()
    }
}

/// Middleware: lets through principals whose role allows any of `roles` (403 otherwise), for
/// endpoints shared by roles, such as `/v1/budget-check` which gateways call with ingest keys
/// and dashboards with read keys.
pub async fn require_any(
    State(roles): State<&'static [Role]>,
    req: Request,
    next: Next,
) -> Response {
    let Some(principal) = req.extensions().get::<Principal>() else {
        return Error::Unauthorized("not authenticated".into()).into_response();
    };
    if roles.iter().any(|r| principal.role.allows(*r)) {
        next.run(req).await
    } else {
        let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        Error::Forbidden(format!(
            "this key has the {} role; this endpoint needs {} (or admin)",
            principal.role,
            names.join(" or ")
        ))
        .into_response()
    }
}

/// The project a read is limited to: the principal's own (naming another is a 403), else the
/// one asked for, else every project (admin keys).
pub fn project_for_read(
    principal: &Principal,
    asked: Option<&str>,
) -> Result<Option<String>, Error> {
    match (principal.project_scope(), asked) {
        (Some(own), Some(other)) if own != other => Err(Error::Forbidden(format!(
            "this key reads only project {own:?}"
        ))),
        (Some(own), _) => Ok(Some(own.to_string())),
        (None, asked) => Ok(asked.map(str::to_string)),
    }
}

/// Limits a query to the principal's project: a filter naming another project is a 403, and
/// a query without one gets the principal's project added.
pub fn scope(principal: &Principal, filters: &mut Vec<Filter>) -> Result<(), Error> {
    let Some(own) = principal.project_scope() else {
        return Ok(());
    };
    if let Some(f) = filters.iter().find(|f| f.dim == Dimension::Project) {
        if f.values.iter().any(|v| v.as_deref() != Some(own)) {
            return Err(Error::Forbidden(format!(
                "this key reads only project {own:?}"
            )));
        }
    }
    filters.retain(|f| f.dim != Dimension::Project);
    filters.push(Filter {
        dim: Dimension::Project,
        values: vec![Some(own.to_string())],
    });
    Ok(())
}
