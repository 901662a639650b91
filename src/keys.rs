//! API keys, roles and projects: who may do what, to which project's data.
//!
//! A key is a random secret shown once at creation and stored only as its SHA-256 digest. It
//! carries a [`Role`] — `ingest` (write events, outcomes, billing), `read` (queries, dashboard)
//! or `admin` (everything, including keys, budgets, channels, prices) — and a project, or all
//! projects for admin keys. [`KeyRing`] keeps the active keys in memory so authentication never
//! touches the database; it is reloaded after every change. This module does no HTTP; `web::auth`
//! turns a request into a [`Principal`] with it.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, RwLock};

use chrono::{DateTime, Utc};
use rand::distr::{Alphanumeric, SampleString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Write events, outcomes and billing lines.
    Ingest,
    /// Read queries and the dashboard.
    Read,
    /// Everything, including keys, budgets, channels, prices and projects.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Read => "read",
            Role::Admin => "admin",
        }
    }

    /// True when a holder of `self` may do what `needed` allows.
    pub fn allows(self, needed: Role) -> bool {
        self == Role::Admin || self == needed
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ingest" => Ok(Role::Ingest),
            "read" => Ok(Role::Read),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?}; expected ingest, read or admin"
            )),
        }
    }
}

/// The project of data written without one.
pub const DEFAULT_PROJECT: &str = "default";

/// Who is calling, after authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub role: Role,
    /// `None`: every project.
    pub project: Option<String>,
    /// The API key used, if any (the bootstrap admin key and open mode have none).
    pub key_id: Option<String>,
}

impl Principal {
    /// The bootstrap admin key, or a server without keys on loopback.
    pub fn superuser() -> Self {
        Principal {
            role: Role::Admin,
            project: None,
            key_id: None,
        }
    }

    /// The only project this principal may see, if it is limited to one.
    pub fn project_scope(&self) -> Option<&str> {
        self.project.as_deref()
    }

    /// The project a record written by this principal lands in: the principal's own, else the
    /// record's, else `default`. `Err` names the conflict.
    pub fn project_for_write(&self, record_project: Option<&str>) -> Result<String, String> {
        match (self.project.as_deref(), record_project) {
            (Some(own), Some(other)) if own != other => Err(format!(
                "this key writes only to project {own:?}, not {other:?}"
            )),
            (Some(own), _) => Ok(own.to_string()),
            (None, Some(p)) => Ok(p.to_string()),
            (None, None) => Ok(DEFAULT_PROJECT.to_string()),
        }
    }
}

/// A key as listed (never with its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub project: Option<String>,
    /// The first characters of the secret, to recognise it.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A freshly created key: the only time its secret exists outside the caller.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub key: ApiKey,
    pub secret: String,
}

/// Why a key cannot be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

/// Checks a new key's attributes and makes its secret. Admin keys span every project; other
/// roles need exactly one.
pub fn new_key(
    name: &str,
    role: Role,
    project: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(CreatedKey, String), KeyError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 128 {
        return Err(KeyError("name must be 1–128 characters".into()));
    }
    let project = project.map(str::trim).filter(|p| !p.is_empty());
    match (role, project) {
        (Role::Admin, Some(_)) => {
            return Err(KeyError(
                "admin keys span every project; leave project out".into(),
            ));
        }
        (Role::Ingest | Role::Read, None) => {
            return Err(KeyError(format!("a {role} key needs a project")));
        }
        (_, Some(p)) if p.len() > 256 => {
            return Err(KeyError("project must be at most 256 characters".into()))
        }
        _ => {}
    }
    let mut rng = rand::rng();
    // 40 alphanumeric characters ≈ 238 bits: unguessable, and easy to copy.
    let secret = format!("tk_{}", Alphanumeric.sample_string(&mut rng, 40));
    let id = format!(
        "key_{}",
        Alphanumeric
            .sample_string(&mut rng, 12)
            .to_ascii_lowercase()
    );
    let key = ApiKey {
        id,
        name: name.to_string(),
        role,
        project: project.map(str::to_string),
        prefix: secret[..11].to_string(),
        created_at: now,
        revoked_at: None,
        last_used_at: None,
    };
    let digest = digest_hex(&secret);
    Ok((CreatedKey { key, secret }, digest))
}

/// Hex SHA-256 of a secret: what is stored and looked up.
pub fn digest_hex(secret: &str) -> String {
    let digest = Sha256::digest(secret.trim().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The active keys, by digest, plus the last-use times not yet written back.
#[derive(Default)]
pub struct KeyRing {
    active: RwLock<HashMap<String, ApiKey>>,
    used: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl KeyRing {
    /// Replaces the active set (after loading from the database or a change).
    pub fn load(&self, keys: Vec<(String, ApiKey)>) {
        let map = keys
            .into_iter()
            .filter(|(_, k)| k.revoked_at.is_none())
            .collect();
        *self.active.write().unwrap_or_else(|p| p.into_inner()) = map;
    }

    /// The principal of a presented secret, recording the use.
    pub fn authenticate(&self, secret: &str, now: DateTime<Utc>) -> Option<Principal> {
        let digest = digest_hex(secret);
        let active = self.active.read().unwrap_or_else(|p| p.into_inner());
        let key = active.get(&digest)?;
        self.used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.id.clone(), now);
        Some(Principal {
            role: key.role,
            project: key.project.clone(),
            key_id: Some(key.id.clone()),
        })
    }

    /// The principal of an active key by id (sessions refer to keys by id).
    pub fn principal_of(&self, key_id: &str) -> Option<Principal> {
        let active = self.active.read().unwrap_or_else(|p| p.into_inner());
        active.values().find(|k| k.id == key_id).map(|k| Principal {
            role: k.role,
            project: k.project.clone(),
            key_id: Some(k.id.clone()),
        })
    }

    /// Last-use times recorded since the previous call.
    pub fn take_used(&self) -> Vec<(String, DateTime<Utc>)> {
        std::mem::take(&mut *self.used.lock().unwrap_or_else(|p| p.into_inner()))
            .into_iter()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_projects() {
        assert!(Role::Admin.allows(Role::Read) && Role::Admin.allows(Role::Ingest));
        assert!(!Role::Read.allows(Role::Ingest) && !Role::Ingest.allows(Role::Read));
        assert!(!Role::Read.allows(Role::Admin));
        let a = Principal {
            role: Role::Ingest,
            project: Some("a".into()),
            key_id: None,
        };
        assert_eq!(a.project_for_write(None).unwrap(), "a");
        assert_eq!(a.project_for_write(Some("a")).unwrap(), "a");
        assert!(a.project_for_write(Some("b")).is_err());
        assert_eq!(
            Principal::superuser().project_for_write(None).unwrap(),
            DEFAULT_PROJECT
        );
    }

    #[test]
    fn keys_are_random_hashed_and_checked() {
        let now = Utc::now();
        assert!(new_key("x", Role::Admin, Some("p"), now).is_err());
        assert!(new_key("x", Role::Read, None, now).is_err());
        assert!(new_key(" ", Role::Read, Some("p"), now).is_err());
        let (a, digest) = new_key("ci", Role::Ingest, Some("p"), now).unwrap();
        let (b, _) = new_key("ci", Role::Ingest, Some("p"), now).unwrap();
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with("tk_") && a.secret.len() == 43);
        assert_eq!(digest, digest_hex(&a.secret));
        assert!(!digest.contains(&a.secret[3..]));

        let ring = KeyRing::default();
        ring.load(vec![(digest, a.key.clone())]);
        let p = ring.authenticate(&a.secret, now).unwrap();
        assert_eq!((p.role, p.project.as_deref()), (Role::Ingest, Some("p")));
        assert!(ring.authenticate(&b.secret, now).is_none());
        assert_eq!(ring.take_used(), vec![(a.key.id.clone(), now)]);
        assert!(ring.take_used().is_empty());
    }
}

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Invalid(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

use crate::store::queries::keys as sql;
use crate::store::{Store, StoreError};

/// Creates a key and makes it usable at once.
pub async fn create(
    store: &Store,
    ring: &KeyRing,
    name: &str,
    role: Role,
    project: Option<&str>,
) -> Result<CreatedKey, ServiceError> {
    let (created, digest) = new_key(name, role, project, Utc::now())?;
    let key = created.key.clone();
    store
        .writer()
        .exec(move |conn| sql::insert(conn, &key, &digest))
        .await?;
    reload(store, ring).await?;
    Ok(created)
}

/// Every key, newest first, without secrets.
pub async fn list(store: &Store) -> Result<Vec<ApiKey>, StoreError> {
    Ok(store
        .read(sql::all)
        .await?
        .into_iter()
        .map(|(_, k)| k)
        .collect())
}

/// Revokes a key; it stops working at once. False when there is no such active key.
pub async fn revoke(store: &Store, ring: &KeyRing, id: &str) -> Result<bool, StoreError> {
    let id = id.to_string();
    let revoked = store
        .writer()
        .exec(move |conn| sql::revoke(conn, &id, Utc::now()))
        .await?;
    reload(store, ring).await?;
    Ok(revoked)
}

/// Loads the active keys into the ring.
pub async fn reload(store: &Store, ring: &KeyRing) -> Result<(), StoreError> {
    ring.load(store.read(sql::all).await?);
    Ok(())
}

/// Writes recorded last-use times back (called periodically).
pub async fn flush_last_used(store: &Store, ring: &KeyRing) -> Result<(), StoreError> {
    let used = ring.take_used();
    if used.is_empty() {
        return Ok(());
    }
    store
        .writer()
        .exec(move |conn| sql::touch(conn, &used))
        .await
}
