//! Versioned DDL: each migration runs once, in order, in its own transaction.
//!
//! Migrations are SQL files under `schemas/migrations/`, compiled into the binary. The applied
//! versions are recorded in `schema_migrations`; a database from a newer Tally (a version this
//! binary does not know) is refused rather than guessed at.

use duckdb::Connection;

use super::StoreError;

/// Every migration, in order. Append only: never edit a released one.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "events",
        include_str!("../../schemas/migrations/0001_events.sql"),
    ),
    (
        2,
        "keys",
        include_str!("../../schemas/migrations/0002_keys.sql"),
    ),
    (
        4,
        "billing",
        include_str!("../../schemas/migrations/0004_billing.sql"),
    ),
    (
        5,
        "outcomes",
        include_str!("../../schemas/migrations/0005_outcomes.sql"),
    ),
    (
        6,
        "budgets",
        include_str!("../../schemas/migrations/0006_budgets.sql"),
    ),
    (
        7,
        "rollups",
        include_str!("../../schemas/migrations/0007_rollups.sql"),
    ),
    (
        8,
        "units",
        include_str!("../../schemas/migrations/0008_units.sql"),
    ),
    (
        9,
        "list_parts",
        include_str!("../../schemas/migrations/0009_list_parts.sql"),
    ),
    (
        10,
        "task_rollup",
        include_str!("../../schemas/migrations/0010_task_rollup.sql"),
    ),
    (
        11,
        "outcomes_pending_ts",
        include_str!("../../schemas/migrations/0011_outcomes_pending_ts.sql"),
    ),
];

/// Brings the database up to the newest schema.
pub fn apply(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )?;
    let current: i32 = conn.query_row(
        "SELECT coalesce(max(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    let newest = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
    if current > newest {
        return Err(StoreError::Other(format!(
            "the database is at schema version {current}, newer than this build knows ({newest}); use a newer tally"
        )));
    }
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        tracing::info!(version, name, "applying migration");
        conn.execute_batch("BEGIN TRANSACTION")?;
        let result = conn.execute_batch(sql).and_then(|_| {
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
                duckdb::params![version, name],
            )
        });
        match result {
            Ok(_) => conn.execute_batch("COMMIT")?,
            Err(e) => {
                conn.execute_batch("ROLLBACK")?;
                return Err(StoreError::Other(format!(
                    "migration {version} ({name}) failed: {e}"
                )));
            }
        }
    }
    Ok(())
}

/// The schema version the database is at.
pub fn version(conn: &Connection) -> Result<i32, StoreError> {
    Ok(conn.query_row(
        "SELECT coalesce(max(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?)
}
