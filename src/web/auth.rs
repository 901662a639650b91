//! Bearer-key authentication.
//!
//! With an admin key configured, every endpoint but the health probes needs
//! `Authorization: Bearer <key>`. Keys are compared by their SHA-256 digests, so the comparison
//! time does not depend on how much of a guessed key is right. Without a key the server runs
//! open, which `app` allows only on a loopback address.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::error::Error;

/// What the server accepts as credentials.
#[derive(Clone)]
pub struct Auth {
    admin_key_digest: Option<[u8; 32]>,
}

impl Auth {
    pub fn new(admin_key: Option<&str>) -> Self {
        Self {
            admin_key_digest: admin_key.map(digest),
        }
    }

    /// True when no key is required.
    pub fn is_open(&self) -> bool {
        self.admin_key_digest.is_none()
    }

    fn check(&self, presented: Option<&str>) -> Result<(), Error> {
        let Some(expected) = &self.admin_key_digest else {
            return Ok(());
        };
        let Some(key) = presented else {
            return Err(Error::Unauthorized(
                "missing API key: send Authorization: Bearer <key>".into(),
            ));
        };
        if digest(key) == *expected {
            Ok(())
        } else {
            Err(Error::Unauthorized("invalid API key".into()))
        }
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.trim().as_bytes()).into()
}

/// Middleware: rejects requests without a valid key.
pub async fn require_key(State(auth): State<Arc<Auth>>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    match auth.check(presented) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}
