//! Read connections: a small pool of connections cloned from the database handle.
//!
//! A `duckdb::Connection` may move between threads but not be shared, and DuckDB gives each
//! connection its own snapshot, so each query borrows a whole connection for its duration.
//! Connections are created on demand and at most `max_idle` are kept.

use std::sync::Mutex;

use duckdb::Connection;

use super::StoreError;

/// Pool of read connections.
pub struct ReadPool {
    seed: Mutex<Connection>,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
}

impl ReadPool {
    pub fn new(seed: Connection, max_idle: usize) -> Self {
        Self {
            seed: Mutex::new(seed),
            idle: Mutex::new(Vec::new()),
            max_idle,
        }
    }

    /// Runs `f` with a connection of the pool.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.take()?;
        let result = f(&conn);
        self.give_back(conn);
        result
    }

    fn take(&self) -> Result<Connection, StoreError> {
        if let Some(conn) = lock(&self.idle).pop() {
            return Ok(conn);
        }
        Ok(lock(&self.seed).try_clone()?)
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = lock(&self.idle);
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
    }
}

/// A poisoned lock only means another reader panicked mid-query; the connection list itself is
/// still consistent, so keep serving.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
