//! Dashboard sessions: a signed cookie that stands for an API key, and CSRF tokens for forms.
//!
//! Signing in exchanges a key for a cookie `v1.<subject>.<expiry>.<signature>` (HMAC-SHA256 with
//! a server secret kept in the database, so sessions survive restarts). The cookie holds no
//! secret: its subject is the key's id, or a fingerprint of the bootstrap admin key, and is
//! resolved against the live key ring on every request — so revoking a key, or changing the
//! admin key, ends its sessions at once. Forms that change something carry a CSRF token derived
//! from the session; the cookie is also `SameSite=Strict` and `HttpOnly`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::keys::{digest_hex, KeyRing, Principal};

/// Name of the session cookie.
pub const COOKIE: &str = "tally_session";

type HmacSha256 = Hmac<Sha256>;

/// Issues and checks session cookies and CSRF tokens.
#[derive(Clone)]
pub struct Sessions {
    secret: Vec<u8>,
    ttl: Duration,
    /// First 16 hex digits of the bootstrap admin key's digest, if one is configured.
    admin_fingerprint: Option<String>,
}

impl Sessions {
    pub fn new(secret: Vec<u8>, ttl: Duration, admin_key: Option<&str>) -> Self {
        Sessions {
            secret,
            ttl,
            admin_fingerprint: admin_key.map(|k| digest_hex(k)[..16].to_string()),
        }
    }

    fn sign(&self, payload: &str) -> Vec<u8> {
        let mut mac =
            HmacSha256::new_from_slice(&self.secret).expect("HMAC accepts any key length");
        mac.update(payload.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    fn verify_sig(&self, payload: &str, sig: &[u8]) -> bool {
        let mut mac =
            HmacSha256::new_from_slice(&self.secret).expect("HMAC accepts any key length");
        mac.update(payload.as_bytes());
        mac.verify_slice(sig).is_ok()
    }

    /// A cookie value for the principal, or `None` when it cannot hold a session (open mode).
    pub fn issue(&self, principal: &Principal, now: DateTime<Utc>) -> Option<String> {
        let subject = match (&principal.key_id, &self.admin_fingerprint) {
            (Some(id), _) => format!("key:{id}"),
            (None, Some(fp)) => format!("admin:{fp}"),
            (None, None) => return None,
        };
        let payload = format!(
            "v1.{}.{}",
            URL_SAFE_NO_PAD.encode(subject),
            (now + self.ttl).timestamp()
        );
        let sig = URL_SAFE_NO_PAD.encode(self.sign(&payload));
        Some(format!("{payload}.{sig}"))
    }

    /// The principal a cookie stands for, if it is authentic, unexpired and its key still works.
    pub fn principal(&self, cookie: &str, keys: &KeyRing, now: DateTime<Utc>) -> Option<Principal> {
        let (payload, sig) = cookie.rsplit_once('.')?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        if !self.verify_sig(payload, &sig) {
            return None;
        }
        let mut parts = payload.split('.');
        let (Some("v1"), Some(subject), Some(expires), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        if expires.parse::<i64>().ok()? <= now.timestamp() {
            return None;
        }
        let subject = String::from_utf8(URL_SAFE_NO_PAD.decode(subject).ok()?).ok()?;
        if let Some(id) = subject.strip_prefix("key:") {
            keys.principal_of(id)
        } else if let Some(fp) = subject.strip_prefix("admin:") {
            (self.admin_fingerprint.as_deref() == Some(fp)).then(Principal::superuser)
        } else {
            None
        }
    }

    /// The CSRF token forms of this session must carry.
    pub fn csrf_token(&self, cookie: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.sign(&format!("csrf.{cookie}")))
    }

    /// Checks a form's CSRF token against the session cookie.
    pub fn check_csrf(&self, cookie: &str, token: &str) -> bool {
        URL_SAFE_NO_PAD
            .decode(token)
            .is_ok_and(|sig| self.verify_sig(&format!("csrf.{cookie}"), &sig))
    }

    /// Seconds a session lasts.
    pub fn ttl_seconds(&self) -> i64 {
        self.ttl.num_seconds()
    }
}

/// Reads one cookie from a `Cookie` header.
pub fn cookie_value<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{new_key, Role};

    #[test]
    fn cookies_are_signed_expire_and_follow_their_key() {
        let now = Utc::now();
        let sessions = Sessions::new(
            vec![7; 32],
            Duration::hours(1),
            Some("admin-key-0123456789"),
        );
        let ring = KeyRing::default();
        let (created, digest) = new_key("ui", Role::Read, Some("p"), now).unwrap();
        ring.load(vec![(digest, created.key.clone())]);
        let principal = ring.authenticate(&created.secret, now).unwrap();
        let cookie = sessions.issue(&principal, now).unwrap();
        assert!(!cookie.contains(&created.secret));
        assert_eq!(
            sessions.principal(&cookie, &ring, now),
            Some(principal.clone())
        );
        assert_eq!(
            sessions.principal(&cookie, &ring, now + Duration::hours(2)),
            None,
            "expired"
        );
        // Tampering with any part breaks the signature.
        let forged = cookie.replacen("v1.", "v1.x", 1);
        assert_eq!(sessions.principal(&forged, &ring, now), None);
        // A revoked key ends its sessions.
        ring.load(Vec::new());
        assert_eq!(sessions.principal(&cookie, &ring, now), None);
        // Another server secret does not accept it.
        let other = Sessions::new(vec![8; 32], Duration::hours(1), None);
        assert_eq!(other.principal(&cookie, &ring, now), None);

        let admin = sessions.issue(&Principal::superuser(), now).unwrap();
        assert_eq!(
            sessions.principal(&admin, &ring, now),
            Some(Principal::superuser())
        );
        let rotated = Sessions::new(
            vec![7; 32],
            Duration::hours(1),
            Some("another-admin-key-xyz"),
        );
        assert_eq!(
            rotated.principal(&admin, &ring, now),
            None,
            "a new admin key ends old sessions"
        );

        let token = sessions.csrf_token(&cookie);
        assert!(sessions.check_csrf(&cookie, &token));
        assert!(!sessions.check_csrf(&admin, &token));
        assert!(!sessions.check_csrf(&cookie, "bogus"));
    }
}
