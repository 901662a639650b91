//! Sign-in and sign-out: a read or admin key in exchange for a session cookie.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::Utc;
use serde::Deserialize;

use super::{error_page, Layout};
use crate::keys::Role;
use crate::web::session::{cookie_value, COOKIE};
use crate::web::AppState;

#[derive(Template)]
#[template(path = "signin.html")]
pub struct SigninPage {
    layout: Layout,
    next: String,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct NextParam {
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct SigninForm {
    key: String,
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

/// Only local paths: an open redirect would let a link send a signed-in user anywhere.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/".to_string(),
    }
}

fn page(status: StatusCode, next: String, error: Option<String>) -> Response {
    let page = SigninPage {
        layout: Layout::bare("Sign in"),
        next,
        error,
    };
    match page.render() {
        Ok(html) => (status, axum::response::Html(html)).into_response(),
        Err(e) => error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("template failed: {e}"),
        ),
    }
}

pub async fn form(Query(q): Query<NextParam>) -> Response {
    page(StatusCode::OK, safe_next(q.next.as_deref()), None)
}

pub async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<SigninForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    let principal = match state.auth.principal(Some(form.key.trim())) {
        Ok(p) => p,
        Err(_) => {
            return page(
                StatusCode::UNAUTHORIZED,
                next,
                Some("That key is not valid or was revoked.".into()),
            )
        }
    };
    if principal.role == Role::Ingest {
        return page(
            StatusCode::FORBIDDEN,
            next,
            Some("Ingest keys can only send data; sign in with a read or admin key.".into()),
        );
    }
    let Some(cookie) = state.auth.sessions().issue(&principal, Utc::now()) else {
        // A server without keys needs no sign-in.
        return Redirect::to(&next).into_response();
    };
    tracing::info!(
        key_id = principal.key_id.as_deref().unwrap_or("admin"),
        "signed in"
    );
    let mut response = Redirect::to(&next).into_response();
    set_cookie(
        &mut response,
        &state,
        &headers,
        &cookie,
        state.auth.sessions().ttl_seconds(),
    );
    response
}

pub async fn signout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let Some(cookie) = cookie_value(&headers, COOKIE) else {
        return Redirect::to("/signin").into_response();
    };
    if !state.auth.sessions().check_csrf(cookie, &form.csrf) {
        return error_page(
            StatusCode::FORBIDDEN,
            "The form expired or came from another site; go back and try again.",
        );
    }
    let mut response = Redirect::to("/signin").into_response();
    set_cookie(&mut response, &state, &headers, "", 0);
    response
}

/// `HttpOnly` (no script reads it), `SameSite=Strict` (no other site sends it), `Secure` when
/// Tally is reached over HTTPS.
fn set_cookie(
    response: &mut Response,
    state: &AppState,
    headers: &HeaderMap,
    value: &str,
    max_age: i64,
) {
    let https = state
        .config
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"))
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            == Some("https");
    let cookie = format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if https { "; Secure" } else { "" }
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}
