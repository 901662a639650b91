//! Standard Webhooks signing (<https://www.standardwebhooks.com>): each request carries
//! `webhook-id`, `webhook-timestamp` (unix seconds) and
//! `webhook-signature: v1,<base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))>`, where the
//! channel secret is `whsec_<base64 of the key bytes>` and the HMAC key is the decoded bytes.
//!
//! The timestamp is the time of each attempt, not of the alert, so a retry days later still
//! passes a receiver's freshness check; the id stays the alert's id so receivers can drop
//! repeats. Secrets never leave this module except at channel creation.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// Prefix of every channel secret.
pub const PREFIX: &str = "whsec_";

/// Key bytes of a new secret (the spec asks for 24 to 64).
const KEY_BYTES: usize = 32;

/// A fresh random secret.
pub fn new_secret() -> String {
    let mut key = [0u8; KEY_BYTES];
    rand::rng().fill_bytes(&mut key);
    format!("{PREFIX}{}", STANDARD.encode(key))
}

/// The HMAC key of a secret, or why it is not a usable one.
pub fn key_bytes(secret: &str) -> Result<Vec<u8>, String> {
    let b64 = secret
        .trim()
        .strip_prefix(PREFIX)
        .ok_or_else(|| format!("a webhook secret starts with {PREFIX}"))?;
    let key = STANDARD
        .decode(b64)
        .map_err(|_| format!("the part after {PREFIX} must be base64"))?;
    if !(24..=64).contains(&key.len()) {
        return Err(format!(
            "the key must be 24 to 64 bytes (got {}); generate one with `echo {PREFIX}$(openssl rand -base64 32)`",
            key.len()
        ));
    }
    Ok(key)
}

/// `v1,<signature>` of one request.
pub fn sign(key: &[u8], msg_id: &str, timestamp: i64, body: &str) -> String {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks specification's published test vector.
    #[test]
    fn the_specification_vector() {
        let key = key_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            sign(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                r#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secrets() {
        let s = new_secret();
        assert!(s.starts_with(PREFIX));
        assert_eq!(key_bytes(&s).unwrap().len(), KEY_BYTES);
        assert_ne!(s, new_secret());
        assert!(key_bytes("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(key_bytes("whsec_not base64!").is_err());
        assert!(key_bytes("whsec_c2hvcnQ=").is_err(), "too short");
    }
}
