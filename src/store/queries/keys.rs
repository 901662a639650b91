//! SQL for API keys and server settings.

use chrono::{DateTime, Utc};
use duckdb::{params, Connection, OptionalExt};

use super::from_micros;
use crate::keys::ApiKey;
use crate::store::StoreError;

/// Stores a new key by its digest.
pub fn insert(conn: &Connection, key: &ApiKey, digest: &str) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO api_keys (id, name, role, project, prefix, digest, created_at)
         VALUES (?, ?, ?, ?, ?, ?, CAST(? AS TIMESTAMPTZ))",
        params![
            key.id,
            key.name,
            key.role.as_str(),
            key.project,
            key.prefix,
            digest,
            key.created_at.to_rfc3339()
        ],
    )?;
    Ok(())
}

/// Every key with its digest, newest first.
pub fn all(conn: &Connection) -> Result<Vec<(String, ApiKey)>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT digest, id, name, role, project, prefix, epoch_us(created_at), epoch_us(revoked_at),
                epoch_us(last_used_at)
         FROM api_keys ORDER BY created_at DESC, id",
    )?;
    let rows = stmt.query_map([], |r| {
        let role: String = r.get(3)?;
        Ok((
            r.get::<_, String>(0)?,
            ApiKey {
                id: r.get(1)?,
                name: r.get(2)?,
                role: role.parse().unwrap_or(crate::keys::Role::Read),
                project: r.get(4)?,
                prefix: r.get(5)?,
                created_at: from_micros(r.get(6)?),
                revoked_at: r.get::<_, Option<i64>>(7)?.map(from_micros),
                last_used_at: r.get::<_, Option<i64>>(8)?.map(from_micros),
            },
        ))
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Revokes a key; false when there is no such active key.
pub fn revoke(conn: &Connection, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE api_keys SET revoked_at = CAST(? AS TIMESTAMPTZ) WHERE id = ? AND revoked_at IS NULL",
        params![at.to_rfc3339(), id],
    )?;
    Ok(n > 0)
}

/// Writes back last-use times.
pub fn touch(conn: &Connection, used: &[(String, DateTime<Utc>)]) -> Result<(), StoreError> {
    let mut stmt =
        conn.prepare("UPDATE api_keys SET last_used_at = CAST(? AS TIMESTAMPTZ) WHERE id = ?")?;
    for (id, at) in used {
        stmt.execute(params![at.to_rfc3339(), id])?;
    }
    Ok(())
}

/// A setting, if set.
pub fn setting(conn: &Connection, name: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT value FROM settings WHERE name = ?",
            params![name],
            |r| r.get(0),
        )
        .optional()?)
}

/// Sets a setting.
pub fn set_setting(conn: &Connection, name: &str, value: &str) -> Result<(), StoreError> {
    conn.execute(
        "INSERT OR REPLACE INTO settings (name, value) VALUES (?, ?)",
        params![name, value],
    )?;
    Ok(())
}
