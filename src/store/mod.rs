//! Storage: the embedded DuckDB file, its migrations, the one writer and the readers.
//!
//! [`Store`] is the only door to the database. Writes go to a single writer thread over a
//! bounded queue and are acknowledged after their commit (see [`writer`]); reads run on a small
//! pool of cloned connections on blocking threads (see [`reader`]). The rest of the crate never
//! touches a `duckdb::Connection` directly, so a second engine could sit behind the same seam.

mod arrow;
pub mod dedup;
mod gapfill;
pub mod migrations;
pub mod queries;
pub mod reader;
pub mod recovery;
pub mod rollup;
pub mod task_rollup;
pub mod units;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use duckdb::Connection;

use crate::config::StorageConfig;
pub use reader::ReadPool;
pub use writer::{CommitHook, WriteBatch, WriteError, WriteOutcome, WriterHandle};

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] duckdb::Error),
    #[error("{0}")]
    Other(String),
}

impl StoreError {
    /// DuckDB refused the statement because it would pass the database's memory limit.
    pub fn is_out_of_memory(&self) -> bool {
        matches!(self, StoreError::Db(e) if e.to_string().contains("Out of Memory Error"))
    }
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    writer: WriterHandle,
    readers: ReadPool,
    path: PathBuf,
    source: queries::costs::Source,
}

impl Store {
    /// Opens (creating and migrating when needed) the database in `data_dir` and starts the
    /// writer thread.
    pub fn open(data_dir: &Path, cfg: &StorageConfig) -> anyhow::Result<Store> {
        Self::open_with_hooks(data_dir, cfg, Vec::new())
    }

    /// Like [`Store::open`], with work the writer runs inside every commit that adds events.
    /// Storing the events' `task_outcome`s and maintaining the rollups and the units are always
    /// among it, so no way of opening the store can drop them.
    pub fn open_with_hooks(
        data_dir: &Path,
        cfg: &StorageConfig,
        hooks: Vec<Arc<dyn CommitHook>>,
    ) -> anyhow::Result<Store> {
        let hooks: Vec<Arc<dyn CommitHook>> = [
            Arc::new(queries::outcomes::EventOutcomes) as Arc<dyn CommitHook>,
            Arc::new(rollup::Rollups::default()),
            // After EventOutcomes: a unit recomputed here reads the outcomes its calls carried.
            Arc::new(units::Units::default()),
        ]
        .into_iter()
        .chain(hooks)
        .collect();
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
        let path = data_dir.join("tally.duckdb");
        let wal_copy = recovery::preserve_wal(&path)?;
        let conn = match open_connection(&path, cfg) {
            Ok(conn) => conn,
            Err(e) if recovery::is_wal_error(&e) && cfg.discard_damaged_wal => {
                let moved = recovery::set_aside(&path)?;
                tracing::error!(
                    error = %format!("{e:#}"),
                    moved_to = %moved.display(),
                    "the write-ahead log could not be replayed; moved aside on request \
                     (--discard-damaged-wal): writes committed after the last checkpoint are \
                     not in the database"
                );
                open_connection(&path, cfg)?
            }
            Err(e) if recovery::is_wal_error(&e) => {
                return Err(e.context(recovery::damaged_message(&path, wal_copy.as_deref())));
            }
            Err(e) => return Err(e),
        };
        migrations::apply(&conn).context("database migration failed")?;
        rollup::ensure_built(&conn).context("cannot build the hourly rollups")?;
        units::ensure_built(&conn).context("cannot build the task and run units")?;
        let writer_conn = conn
            .try_clone()
            .context("cannot open the writer connection")?;
        let writer = writer::spawn(writer_conn, path.clone(), cfg, hooks)
            .context("cannot start the writer")?;
        let readers = ReadPool::new(conn, cfg.read_connections);
        Ok(Store {
            inner: Arc::new(Inner {
                writer,
                readers,
                path,
                source: queries::costs::Source::configured(cfg.use_rollups),
            }),
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Where analytics answers come from: the rollups when they can (the default), or always
    /// the raw events (`storage.use_rollups = false`).
    pub fn source(&self) -> queries::costs::Source {
        self.inner.source
    }

    /// Folds whatever the writer recorded as pending into the task and run units, so a read
    /// that follows sees every committed call and outcome (see `store::units`). Cheap when
    /// nothing is pending.
    pub async fn units_current(&self) -> Result<(), StoreError> {
        if self.read(units::is_pending).await? {
            self.writer()
                .exec(|conn| units::refresh_pending(conn).map(|_| ()))
                .await?;
        }
        Ok(())
    }

    /// The writer's queue.
    pub fn writer(&self) -> &WriterHandle {
        &self.inner.writer
    }

    /// Runs a read on a pooled connection on a blocking thread.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let result = span.in_scope(|| store.inner.readers.with(f));
            crate::metrics::observe(
                "tally_store_read_duration_seconds",
                &[],
                started.elapsed().as_secs_f64(),
            );
            result
        })
        .await
        .map_err(|e| StoreError::Other(format!("read task failed: {e}")))?
    }

    /// Runs a read on the calling thread (for blocking contexts such as the CLI).
    pub fn read_blocking<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.inner.readers.with(f)
    }

    /// Drains the writer queue, commits, checkpoints and stops the writer thread.
    pub async fn shutdown(&self, timeout: Duration) -> anyhow::Result<()> {
        self.inner.writer.shutdown(timeout).await
    }
}

/// Runs `stmt` as a streaming query: DuckDB produces its rows a chunk at a time as they are
/// read. [`duckdb::Statement::query`] materialises the whole result before the first row, and
/// outside DuckDB's memory limit — fine for an answer of a few hundred rows, not for reading
/// millions (loading the de-duplication index from 48 hours of keys took 1.3 GB that way).
pub(crate) fn stream_rows<'s, P: duckdb::Params>(
    stmt: &'s mut duckdb::Statement<'_>,
    params: P,
) -> Result<duckdb::Rows<'s>, duckdb::Error> {
    // The iterator `stream_arrow` returns panics on a failed fetch; `Rows` returns the error.
    drop(stmt.stream_arrow(params)?);
    Ok(stmt.raw_query())
}

/// The runs of consecutive rows that share a key in a result streamed sorted by that key
/// ([`stream_rows`]), each folded into one value and handed on when the next key starts: how a
/// reader holds one group at a time however many groups there are.
pub(crate) struct Runs<K, A> {
    current: Option<(K, A)>,
}

impl<K: PartialEq, A: Default> Runs<K, A> {
    pub(crate) fn new() -> Self {
        Runs { current: None }
    }

    /// The value being folded for `key`: the current run's when `key` continues it, else a
    /// fresh one, after the finished run is handed to `each`.
    pub(crate) fn entry(&mut self, key: K, each: &mut impl FnMut(K, A)) -> &mut A {
        if self.current.as_ref().is_some_and(|(k, _)| *k != key) {
            if let Some((k, a)) = self.current.take() {
                each(k, a);
            }
        }
        &mut self.current.get_or_insert_with(|| (key, A::default())).1
    }

    /// Hands on the last run.
    pub(crate) fn finish(self, mut each: impl FnMut(K, A)) {
        if let Some((k, a)) = self.current {
            each(k, a);
        }
    }
}

/// Opens the database file with Tally's settings.
pub(crate) fn open_connection(path: &Path, cfg: &StorageConfig) -> anyhow::Result<Connection> {
    let mut config = duckdb::Config::default()
        // Tally never installs extensions at run time: the service must work offline.
        .enable_autoload_extension(false)?
        .with("autoinstall_known_extensions", "false")?
        .with("memory_limit", &cfg.memory_limit)?
        // DuckDB's own automatic checkpoint (16 MiB of WAL by default) runs inside a COMMIT and
        // rewrites every row group appended to since the last one: under steady ingest that
        // recompressed each row group several times as it filled. One threshold, Tally's, now
        // decides both DuckDB's and the writer's explicit checkpoints.
        .with(
            "checkpoint_threshold",
            format!("{}KiB", (cfg.checkpoint_wal_bytes / 1024).max(1)),
        )?
        // New files use the running release's storage format, which unlocks its compact string
        // and integer encodings (the default stays compatible with old releases).
        .with("storage_compatibility_version", "latest")?;
    if cfg.threads > 0 {
        config = config.with("threads", cfg.threads.to_string())?;
    }
    Connection::open_with_flags(path, config)
        .with_context(|| format!("cannot open database {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streamed_query_reads_every_chunk_and_returns_a_late_failure() {
        let conn = Connection::open_in_memory().unwrap();
        let mut stmt = conn.prepare("SELECT i FROM range(?) t(i)").unwrap();
        let mut rows = stream_rows(&mut stmt, [100_000i64]).unwrap();
        let (mut n, mut sum) = (0i64, 0i64);
        while let Some(r) = rows.next().unwrap() {
            n += 1;
            sum += r.get::<_, i64>(0).unwrap();
        }
        assert_eq!((n, sum), (100_000, 100_000 * 99_999 / 2));

        // A row that fails far past the first chunk fails the read, not the process.
        let mut stmt = conn
            .prepare(
                "SELECT CAST(CASE WHEN i = 90000 THEN 'x' ELSE i::VARCHAR END AS INTEGER) \
                 FROM range(100000) t(i)",
            )
            .unwrap();
        let mut read = || -> Result<i64, duckdb::Error> {
            let mut rows = stream_rows(&mut stmt, [])?;
            let mut n = 0;
            while rows.next()?.is_some() {
                n += 1;
            }
            Ok(n)
        };
        let err = read().unwrap_err();
        assert!(err.to_string().contains("x"), "{err}");
    }
}
