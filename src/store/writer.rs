//! The one writer: a named thread that owns the write connection.
//!
//! Requests hand it batches over a bounded queue and get their acknowledgement only after the
//! commit that contains them, so an acknowledged event is durable. Batches that queue up while a
//! commit runs are folded into the next one (group commit), which keeps many small concurrent
//! requests fast. De-duplication happens here, inside the same transaction as the insert, so two
//! concurrent copies of one event can never both land. A full queue is answered with
//! [`WriteError::QueueFull`] (503 + Retry-After upstream) instead of growing memory.
//! Shutdown drains the queue, commits and checkpoints.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use duckdb::{params, Connection};
use tokio::sync::{mpsc, oneshot};

use super::dedup::{DedupIndex, EventKeys, Verdict};
use super::{arrow, StoreError};
use crate::config::StorageConfig;
use crate::domain::event::PricedEvent;
use crate::ingest::Reject;

pub use super::dedup::DEDUP_WINDOW;

/// Events and rejects of one request.
#[derive(Debug, Default)]
pub struct WriteBatch {
    pub events: Vec<PricedEvent>,
    pub rejects: Vec<Reject>,
    pub received_at: DateTime<Utc>,
    /// The HTTP request id, kept with rejects so a user can find them.
    pub http_request: Option<String>,
    /// The writing key's project, kept with rejects so only that project sees them.
    pub project: Option<String>,
    /// `events` as the events table's Arrow columns, when the sender built them (see
    /// [`WriteBatch::prepare`]).
    pub columns: Option<::arrow::record_batch::RecordBatch>,
}

impl WriteBatch {
    /// Builds the events' Arrow columns now, on the caller's thread: the writer is the one
    /// thread every event passes through, so work that can happen before it should. The
    /// writer uses them when none of the events turns out to be a duplicate (else it builds
    /// the fresh events' columns itself).
    pub fn prepare(mut self) -> Result<Self, StoreError> {
        if !self.events.is_empty() {
            let events: Vec<&PricedEvent> = self.events.iter().collect();
            let received = vec![self.received_at; events.len()];
            self.columns = Some(arrow::events_batch(&events, &received)?);
        }
        Ok(self)
    }
}

/// What happened to a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    pub accepted: usize,
    pub duplicates: usize,
    /// Per event of the batch, in order: true when it was a duplicate.
    pub duplicate_flags: Vec<bool>,
}

/// Why a batch was not written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the write queue is full; retry shortly")]
    QueueFull,
    #[error("the writer has stopped")]
    Closed,
    #[error("commit failed: {0}")]
    Commit(String),
}

/// A small write run on the writer thread in its own transaction (keys, budgets, imports…):
/// everything that writes goes through the one writer, so there are no write-write conflicts.
type ExecFn =
    Box<dyn FnOnce(&Connection) -> Result<Box<dyn std::any::Any + Send>, StoreError> + Send>;

enum Command {
    Write {
        batch: WriteBatch,
        ack: oneshot::Sender<Result<WriteOutcome, WriteError>>,
    },
    Exec {
        f: ExecFn,
        ack: oneshot::Sender<Result<Box<dyn std::any::Any + Send>, StoreError>>,
    },
    Checkpoint {
        ack: oneshot::Sender<Result<(), String>>,
    },
    Shutdown {
        ack: oneshot::Sender<()>,
    },
}

/// Sending side of the writer queue.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Command>,
    /// How long a request waits for room in a full queue before it is told to retry.
    enqueue_wait: Duration,
}

impl WriterHandle {
    /// Queues a batch and waits for its commit.
    pub async fn write(&self, batch: WriteBatch) -> Result<WriteOutcome, WriteError> {
        let (ack, done) = oneshot::channel();
        let permit = match tokio::time::timeout(self.enqueue_wait, self.tx.reserve()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(WriteError::Closed),
            Err(_) => return Err(WriteError::QueueFull),
        };
        permit.send(Command::Write { batch, ack });
        done.await.map_err(|_| WriteError::Closed)?
    }

    /// Runs `f` on the writer's connection inside one transaction, after the writes queued
    /// before it; commits when it returns `Ok`, rolls back otherwise.
    pub async fn exec<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (ack, done) = oneshot::channel();
        let f: ExecFn =
            Box::new(move |conn| f(conn).map(|v| Box::new(v) as Box<dyn std::any::Any + Send>));
        self.tx
            .send(Command::Exec { f, ack })
            .await
            .map_err(|_| StoreError::Other("the writer has stopped".into()))?;
        let value = done
            .await
            .map_err(|_| StoreError::Other("the writer has stopped".into()))??;
        value
            .downcast::<T>()
            .map(|b| *b)
            .map_err(|_| StoreError::Other("writer returned another type".into()))
    }

    /// Asks for a checkpoint now.
    pub async fn checkpoint(&self) -> Result<(), String> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Command::Checkpoint { ack })
            .await
            .map_err(|_| "writer stopped".to_string())?;
        done.await.map_err(|_| "writer stopped".to_string())?
    }

    /// Batches waiting for the writer.
    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// True while the writer thread runs.
    pub fn is_alive(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Processes everything queued so far, checkpoints and stops the writer.
    pub async fn shutdown(&self, timeout: Duration) -> anyhow::Result<()> {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Command::Shutdown { ack }).await.is_err() {
            return Ok(()); // already stopped
        }
        tokio::time::timeout(timeout, done)
            .await
            .map_err(|_| anyhow::anyhow!("the writer did not finish within {timeout:?}"))?
            .ok();
        Ok(())
    }
}

/// Work that must happen in the same transaction as the events that cause it: budget
/// evaluation writing its alert rows (the outbox), rollup maintenance. Hooks run on the writer
/// thread, so they never conflict with another write.
pub trait CommitHook: Send + Sync {
    /// A short name for the writer's per-phase timings (`/metrics`, debug logs).
    fn name(&self) -> &'static str;

    /// Runs inside the group's transaction after its new (non-duplicate) events were appended;
    /// an error rolls the whole group back and fails its requests.
    fn after_append(&self, conn: &Connection, fresh: &[&PricedEvent]) -> Result<(), StoreError>;

    /// Runs after the commit, outside the transaction (e.g. to wake a dispatcher).
    fn after_commit(&self) {}

    /// Whether [`CommitHook::maintain`] has work now.
    fn needs_upkeep(&self) -> bool {
        false
    }

    /// Whether [`CommitHook::maintain`] has work after a write that appended no events (an
    /// `exec`: outcomes, budgets, re-pricing), which the hook did not see; it may ask the
    /// database. By default [`CommitHook::needs_upkeep`].
    fn needs_upkeep_after_exec(&self, _conn: &Connection) -> Result<bool, StoreError> {
        Ok(self.needs_upkeep())
    }

    /// Deferred upkeep, run after a group's commit and its acknowledgements, in a transaction
    /// of its own, when [`CommitHook::needs_upkeep`] says so: work batched over many commits
    /// (the units' refresh).
    fn maintain(&self, _conn: &Connection) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Starts the writer thread on `conn`.
pub fn spawn(
    conn: Connection,
    path: PathBuf,
    cfg: &StorageConfig,
    hooks: Vec<std::sync::Arc<dyn CommitHook>>,
) -> anyhow::Result<WriterHandle> {
    let (tx, rx) = mpsc::channel(cfg.queue_capacity);
    prepare(&conn)?;
    let started = Instant::now();
    let dedup = DedupIndex::load(&conn, cfg.dedup_index_keys)?;
    tracing::info!(
        keys = dedup.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "de-duplication index loaded"
    );
    let writer = Writer {
        hooks,
        dedup: std::cell::RefCell::new(dedup),
        conn,
        wal_path: wal_path(&path),
        max_commit_rows: cfg.max_commit_rows,
        checkpoint_wal_bytes: cfg.checkpoint_wal_bytes,
    };
    std::thread::Builder::new()
        .name("tally-writer".into())
        .spawn(move || writer.run(rx))?;
    Ok(WriterHandle {
        tx,
        enqueue_wait: Duration::from_millis(cfg.enqueue_wait_ms),
    })
}

/// DuckDB keeps the WAL next to the file as `<file>.wal`.
fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".wal");
    PathBuf::from(name)
}

/// Session-local scratch tables for de-duplication lookups.
fn prepare(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS dedup_ids (pj VARCHAR, k VARCHAR);
         CREATE TEMP TABLE IF NOT EXISTS dedup_requests (pj VARCHAR, p VARCHAR, r VARCHAR);",
    )?;
    super::gapfill::prepare(conn)?;
    Ok(())
}

/// An event's idempotency key within its project. Keys are per project: a tenant's events
/// never make another tenant's a duplicate (nor reveal, through the duplicate count, that
/// another tenant saw the same call).
type IdKey<'a> = (&'a str, &'a str);
/// Project, provider and provider request id.
type RequestKey<'a> = (&'a str, &'a str, &'a str);

fn id_key(e: &PricedEvent) -> Option<IdKey<'_>> {
    let project = e.event.dims.project.as_deref().unwrap_or_default();
    e.event.idem_key.as_deref().map(|id| (project, id))
}

fn request_key(e: &PricedEvent) -> Option<RequestKey<'_>> {
    let project = e.event.dims.project.as_deref().unwrap_or_default();
    let provider = e.event.provider.as_deref().unwrap_or_default();
    e.event
        .request_id
        .as_deref()
        .map(|r| (project, provider, r))
}

/// Wall time per phase of one group commit.
struct Phases {
    last: Instant,
    laps: Vec<(&'static str, Duration)>,
}

impl Default for Phases {
    fn default() -> Self {
        Phases {
            last: Instant::now(),
            laps: Vec::new(),
        }
    }
}

impl Phases {
    fn lap(&mut self, phase: &'static str) {
        let now = Instant::now();
        self.laps.push((phase, now - self.last));
        self.last = now;
    }

    fn report(&self, rows: usize) {
        for (phase, d) in &self.laps {
            crate::metrics::observe(
                "tally_writer_phase_duration_seconds",
                &[("phase", phase)],
                d.as_secs_f64(),
            );
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            let laps: Vec<String> = self
                .laps
                .iter()
                .map(|(p, d)| format!("{p}={:.1}ms", d.as_secs_f64() * 1000.0))
                .collect();
            tracing::debug!(rows, phases = %laps.join(" "), "commit phases");
        }
    }
}

struct Writer {
    hooks: Vec<std::sync::Arc<dyn CommitHook>>,
    /// Recent stored keys (see `store::dedup`); only this thread touches it.
    dedup: std::cell::RefCell<DedupIndex>,
    conn: Connection,
    wal_path: PathBuf,
    max_commit_rows: usize,
    checkpoint_wal_bytes: u64,
}

struct Pending {
    batch: WriteBatch,
    ack: oneshot::Sender<Result<WriteOutcome, WriteError>>,
}

impl Writer {
    fn run(self, mut rx: mpsc::Receiver<Command>) {
        let mut stash: Option<Command> = None;
        loop {
            let Some(cmd) = stash.take().or_else(|| rx.blocking_recv()) else {
                break;
            };
            match cmd {
                Command::Write { batch, ack } => {
                    let mut rows = batch.events.len() + batch.rejects.len();
                    let mut group = vec![Pending { batch, ack }];
                    // Fold whatever queued up meanwhile into the same commit.
                    while rows < self.max_commit_rows {
                        match rx.try_recv() {
                            Ok(Command::Write { batch, ack }) => {
                                rows += batch.events.len() + batch.rejects.len();
                                group.push(Pending { batch, ack });
                            }
                            Ok(other) => {
                                stash = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.commit_group(group);
                    self.maybe_checkpoint();
                }
                Command::Exec { f, ack } => {
                    let _ = ack.send(self.exec(f));
                    // Writes that are not event appends (outcomes, above all) stage work too.
                    self.maintain_where(|h| {
                        h.needs_upkeep_after_exec(&self.conn).unwrap_or_else(|e| {
                            tracing::warn!(hook = h.name(), error = %e, "cannot tell whether upkeep is due");
                            false
                        })
                    });
                }
                Command::Checkpoint { ack } => {
                    let _ = ack.send(self.checkpoint());
                }
                Command::Shutdown { ack } => {
                    // Everything sent before the shutdown is ahead of it in the queue and has
                    // been committed; what arrives after it is refused by the closed channel.
                    rx.close();
                    while let Ok(cmd) = rx.try_recv() {
                        match cmd {
                            Command::Write { batch, ack } => {
                                self.commit_group(vec![Pending { batch, ack }])
                            }
                            Command::Exec { f, ack } => {
                                let _ = ack.send(self.exec(f));
                            }
                            Command::Checkpoint { ack } => {
                                let _ = ack.send(Ok(()));
                            }
                            Command::Shutdown { ack } => {
                                let _ = ack.send(());
                            }
                        }
                    }
                    if let Err(e) = self.checkpoint() {
                        tracing::error!(error = %e, "final checkpoint failed; the WAL will be replayed on the next start");
                    }
                    tracing::info!("writer stopped");
                    let _ = ack.send(());
                    return;
                }
            }
        }
        let _ = self.checkpoint();
    }

    fn commit_group(&self, group: Vec<Pending>) {
        let started = Instant::now();
        let rows: usize = group.iter().map(|p| p.batch.events.len()).sum();
        let result = self.write_all(&group);
        crate::metrics::observe(
            "tally_writer_commit_duration_seconds",
            &[],
            started.elapsed().as_secs_f64(),
        );
        crate::metrics::add(
            "tally_writer_commits_total",
            &[("result", if result.is_ok() { "ok" } else { "error" })],
            1,
        );
        match result {
            Ok(outcomes) => {
                crate::metrics::add("tally_writer_commit_rows_total", &[], rows as u64);
                tracing::debug!(
                    batches = group.len(),
                    rows,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "committed"
                );
                for (pending, outcome) in group.into_iter().zip(outcomes) {
                    let _ = pending.ack.send(Ok(outcome));
                }
                self.maintain();
            }
            Err(e) => {
                if let Err(rollback) = self.conn.execute_batch("ROLLBACK") {
                    tracing::debug!(error = %rollback, "rollback after a failed commit");
                }
                tracing::error!(error = %e, batches = group.len(), rows, "commit failed");
                for pending in group {
                    let _ = pending.ack.send(Err(WriteError::Commit(e.to_string())));
                }
            }
        }
    }

    /// One transaction for the whole group: de-duplicate, append events and rejects, commit.
    /// Each phase is timed (`tally_writer_phase_duration_seconds`): the writer is the one
    /// thread every event passes through, so its phases are where ingest throughput goes.
    fn write_all(&self, group: &[Pending]) -> Result<Vec<WriteOutcome>, StoreError> {
        let mut phases = Phases::default();
        self.conn.execute_batch("BEGIN TRANSACTION")?;
        let all: Vec<&PricedEvent> = group.iter().flat_map(|p| p.batch.events.iter()).collect();
        let dup = self.find_duplicates(&all)?;
        phases.lap("dedup");

        let fresh: Vec<&PricedEvent> = all
            .iter()
            .zip(&dup)
            .filter(|(_, d)| !**d)
            .map(|(e, _)| *e)
            .collect();
        if !fresh.is_empty() {
            let prepared = group
                .iter()
                .all(|p| p.batch.events.is_empty() || p.batch.columns.is_some());
            let batches = if fresh.len() == all.len() && prepared {
                group
                    .iter()
                    .filter_map(|p| p.batch.columns.clone())
                    .collect()
            } else {
                let mut received = Vec::with_capacity(fresh.len());
                for pending in group {
                    received.extend(std::iter::repeat_n(
                        pending.batch.received_at,
                        pending.batch.events.len(),
                    ));
                }
                let received: Vec<DateTime<Utc>> = received
                    .into_iter()
                    .zip(&dup)
                    .filter(|(_, d)| !**d)
                    .map(|(r, _)| r)
                    .collect();
                vec![arrow::events_batch(&fresh, &received)?]
            };
            phases.lap("arrow");
            let mut appender = self.conn.appender("events")?;
            for batch in batches {
                appender.append_record_batch(batch)?;
            }
            // An error during the implicit flush on drop would be lost; flush explicitly.
            appender.flush()?;
            drop(appender);
            phases.lap("append");
            for hook in &self.hooks {
                hook.after_append(&self.conn, &fresh)?;
                phases.lap(hook.name());
            }
        }
        // A duplicate from another source fills what the stored copy left empty.
        let dups: Vec<&PricedEvent> = all
            .iter()
            .zip(&dup)
            .filter(|(_, d)| **d)
            .map(|(e, _)| *e)
            .collect();
        if !dups.is_empty() {
            super::gapfill::fill_gaps(&self.conn, &dups)?;
            phases.lap("gapfill");
        }
        let has_rejects = group.iter().any(|p| !p.batch.rejects.is_empty());
        if has_rejects {
            let mut appender = self.conn.appender("rejects")?;
            for pending in group {
                for r in &pending.batch.rejects {
                    appender.append_row(params![
                        arrow::ts_string(pending.batch.received_at),
                        pending.batch.http_request,
                        r.source_format,
                        r.index as i64,
                        r.field,
                        r.reason,
                        r.raw,
                        pending.batch.project,
                    ])?;
                }
            }
            appender.flush()?;
            phases.lap("rejects");
        }
        self.conn.execute_batch("COMMIT")?;
        phases.lap("commit");
        // Only committed events may answer later lookups.
        self.dedup.borrow_mut().insert(fresh.iter().copied());
        if !fresh.is_empty() {
            for hook in &self.hooks {
                hook.after_commit();
            }
        }
        phases.report(all.len());

        let mut outcomes = Vec::with_capacity(group.len());
        let mut offset = 0;
        for pending in group {
            let flags = dup[offset..offset + pending.batch.events.len()].to_vec();
            offset += flags.len();
            let duplicates = flags.iter().filter(|d| **d).count();
            outcomes.push(WriteOutcome {
                accepted: flags.len() - duplicates,
                duplicates,
                duplicate_flags: flags,
            });
        }
        Ok(outcomes)
    }

    /// Marks each event that repeats an earlier one: by idempotency key or by provider and
    /// provider request id (either matching is enough); within the group first, then against
    /// stored events near its time — from the index of recent keys when it can tell, else from
    /// the table.
    fn find_duplicates(&self, events: &[&PricedEvent]) -> Result<Vec<bool>, StoreError> {
        // Keys borrow from the events: this runs for every event of every commit, and an
        // allocation per key showed up in the writer's profile.
        let mut dup = vec![false; events.len()];
        let mut seen_ids: HashSet<IdKey<'_>> = HashSet::with_capacity(events.len());
        let mut seen_requests: HashSet<RequestKey<'_>> = HashSet::with_capacity(events.len());
        // Keys the table must be asked about, and the time range of their events.
        let mut ids: HashSet<IdKey<'_>> = HashSet::new();
        let mut requests: HashSet<RequestKey<'_>> = HashSet::new();
        let mut asked = Vec::new();
        let (mut min_ts, mut max_ts) = (None::<DateTime<Utc>>, None::<DateTime<Utc>>);
        let index = self.dedup.borrow();
        for (i, e) in events.iter().enumerate() {
            let (id, request) = (id_key(e), request_key(e));
            if id.is_none() && request.is_none() {
                continue;
            }
            // Either key marks a copy: the explicit id (a retry), or provider + provider
            // request id (the same call arriving through another source).
            let by_id = id.is_some_and(|k| !seen_ids.insert(k));
            let by_request = request.is_some_and(|k| !seen_requests.insert(k));
            dup[i] = by_id || by_request;
            if index.verdict(EventKeys::of(e), e.event.ts) == Verdict::New {
                continue;
            }
            ids.extend(id);
            requests.extend(request);
            asked.push(i);
            let ts = e.event.ts;
            min_ts = Some(min_ts.map_or(ts, |m| m.min(ts)));
            max_ts = Some(max_ts.map_or(ts, |m| m.max(ts)));
        }
        drop(index);
        tracing::debug!(events = events.len(), asked = asked.len(), "de-duplication");
        let (Some(min_ts), Some(max_ts)) = (min_ts, max_ts) else {
            return Ok(dup);
        };
        let lo = arrow::ts_string(min_ts - DEDUP_WINDOW);
        let hi = arrow::ts_string(max_ts + DEDUP_WINDOW);
        let mut stored_ids: HashSet<(String, String)> = HashSet::new();
        if !ids.is_empty() {
            self.conn.execute_batch("DELETE FROM dedup_ids")?;
            let mut app = self.conn.appender("dedup_ids")?;
            for (pj, k) in &ids {
                app.append_row(params![pj, k])?;
            }
            app.flush()?;
            drop(app);
            let mut stmt = self.conn.prepare_cached(
                "SELECT DISTINCT e.project, e.idem_key FROM events e
                 JOIN dedup_ids d ON e.idem_key = d.k AND e.project = d.pj
                 WHERE e.ts BETWEEN CAST(? AS TIMESTAMPTZ) AND CAST(? AS TIMESTAMPTZ)",
            )?;
            let rows = stmt.query_map(params![lo, hi], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            for row in rows {
                stored_ids.insert(row?);
            }
        }
        let mut stored_requests: HashSet<(String, String, String)> = HashSet::new();
        if !requests.is_empty() {
            self.conn.execute_batch("DELETE FROM dedup_requests")?;
            let mut app = self.conn.appender("dedup_requests")?;
            for (pj, p, r) in &requests {
                app.append_row(params![pj, p, r])?;
            }
            app.flush()?;
            drop(app);
            let mut stmt = self.conn.prepare_cached(
                "SELECT DISTINCT e.project, coalesce(e.provider, ''), e.request_id FROM events e
                 JOIN dedup_requests d
                   ON e.project = d.pj AND coalesce(e.provider, '') = d.p AND e.request_id = d.r
                 WHERE e.ts BETWEEN CAST(? AS TIMESTAMPTZ) AND CAST(? AS TIMESTAMPTZ)",
            )?;
            let rows = stmt.query_map(params![lo, hi], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?;
            for row in rows {
                stored_requests.insert(row?);
            }
        }
        if stored_ids.is_empty() && stored_requests.is_empty() {
            return Ok(dup);
        }
        for i in asked {
            let e = events[i];
            let stored = id_key(e)
                .is_some_and(|(p, k)| stored_ids.contains(&(p.to_string(), k.to_string())))
                || request_key(e).is_some_and(|(p, v, r)| {
                    stored_requests.contains(&(p.to_string(), v.to_string(), r.to_string()))
                });
            dup[i] |= stored;
        }
        Ok(dup)
    }

    /// Each hook's deferred upkeep in its own transaction; a failure is logged and rolled back
    /// (the work stays pending and is retried after the next commit).
    fn maintain(&self) {
        self.maintain_where(|h| h.needs_upkeep());
    }

    /// [`Self::maintain`] for the hooks `due` picks.
    fn maintain_where(&self, due: impl Fn(&dyn CommitHook) -> bool) {
        for hook in self.hooks.iter().filter(|h| due(h.as_ref())) {
            let started = Instant::now();
            let result = self
                .conn
                .execute_batch("BEGIN TRANSACTION")
                .map_err(StoreError::from)
                .and_then(|()| hook.maintain(&self.conn))
                .and_then(|()| Ok(self.conn.execute_batch("COMMIT")?));
            if let Err(e) = result {
                let _ = self.conn.execute_batch("ROLLBACK");
                tracing::error!(hook = hook.name(), error = %e, "deferred upkeep failed; retried later");
            }
            let elapsed = started.elapsed();
            if elapsed > Duration::from_millis(1) {
                crate::metrics::observe(
                    "tally_writer_phase_duration_seconds",
                    &[("phase", &format!("maintain:{}", hook.name()))],
                    elapsed.as_secs_f64(),
                );
                tracing::debug!(
                    hook = hook.name(),
                    elapsed_ms = elapsed.as_millis() as u64,
                    "upkeep"
                );
            }
        }
    }

    fn exec(&self, f: ExecFn) -> Result<Box<dyn std::any::Any + Send>, StoreError> {
        self.conn.execute_batch("BEGIN TRANSACTION")?;
        match f(&self.conn) {
            Ok(value) => {
                self.conn.execute_batch("COMMIT")?;
                Ok(value)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    fn maybe_checkpoint(&self) {
        let wal = std::fs::metadata(&self.wal_path)
            .map(|m| m.len())
            .unwrap_or(0);
        if wal > self.checkpoint_wal_bytes {
            if let Err(e) = self.checkpoint() {
                // Readers holding transactions can make DuckDB refuse; the next commit retries.
                tracing::warn!(error = %e, wal_bytes = wal, "checkpoint deferred");
            }
        }
    }

    fn checkpoint(&self) -> Result<(), String> {
        let started = Instant::now();
        self.conn
            .execute_batch("CHECKPOINT")
            .map_err(|e| e.to_string())?;
        crate::metrics::observe(
            "tally_writer_checkpoint_duration_seconds",
            &[],
            started.elapsed().as_secs_f64(),
        );
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "checkpoint"
        );
        Ok(())
    }
}
