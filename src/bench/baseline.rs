//! The baselines Tally is measured against, computed by DuckDB itself in the same run.
//!
//! Ingest: DuckDB's own NDJSON reader loading the benchmark file into Tally's `events` table
//! (`INSERT … SELECT … FROM read_json(…)`) in a fresh database opened with Tally's settings.
//! It maps the native fields to the token buckets with plain arithmetic and stores the
//! reported cost as is — no pricing, no de-duplication, no rollups, no HTTP — so it is the
//! floor of what loading these records into this table costs, not a competitor doing the
//! same work.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::config::StorageConfig;
use crate::store::{migrations, open_connection};

/// What DuckDB's loader did.
pub struct LoaderRun {
    pub rows: u64,
    pub elapsed: Duration,
    /// Database file size after a checkpoint.
    pub file_bytes: u64,
}

impl LoaderRun {
    pub fn rows_per_s(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64()
    }

    pub fn bytes_per_row(&self) -> f64 {
        self.file_bytes as f64 / self.rows as f64
    }
}

/// The native fields as `read_json` columns, so DuckDB does not sample the file for a schema.
const COLUMNS: &str = "{
    id: 'VARCHAR', \"timestamp\": 'TIMESTAMPTZ', provider: 'VARCHAR', model: 'VARCHAR',
    model_requested: 'VARCHAR', operation: 'VARCHAR', route: 'VARCHAR', service_tier: 'VARCHAR',
    request_id: 'VARCHAR',
    usage: 'STRUCT(input_tokens BIGINT, cache_read_tokens BIGINT, cache_write_tokens BIGINT,
        cache_write_1h_tokens BIGINT, output_tokens BIGINT, reasoning_tokens BIGINT,
        audio_input_tokens BIGINT, audio_output_tokens BIGINT, image_input_tokens BIGINT,
        image_output_tokens BIGINT, web_search_requests BIGINT)',
    cost: 'DECIMAL(18, 12)', currency: 'VARCHAR', status: 'VARCHAR', error_type: 'VARCHAR',
    http_status: 'SMALLINT', latency_ms: 'INTEGER', ttft_ms: 'INTEGER', user_id: 'VARCHAR',
    team_id: 'VARCHAR', project: 'VARCHAR', api_key_id: 'VARCHAR', customer_id: 'VARCHAR',
    feature: 'VARCHAR', tags: 'VARCHAR[]', task_id: 'VARCHAR', run_id: 'VARCHAR',
    agent: 'VARCHAR', session_id: 'VARCHAR', trace_id: 'VARCHAR', span_id: 'VARCHAR',
    parent_span_id: 'VARCHAR', attempt: 'INTEGER', retry_of: 'VARCHAR',
    fallback_from: 'VARCHAR', metadata: 'JSON'
}";

/// `INSERT INTO events … SELECT … FROM read_json(?)`: the inclusive native counts split into
/// the exclusive buckets the way Tally's mapper does.
fn insert_sql(file: &str) -> String {
    let u = |f: &str| format!("coalesce(usage.{f}, 0)");
    format!(
        "INSERT INTO events SELECT
            \"timestamp\", now(), id, request_id, 'native', provider, model, model_requested,
            coalesce(operation, 'chat'), coalesce(route, 'direct'),
            coalesce(service_tier, 'standard'), coalesce(status, 'success'), error_type,
            http_status, latency_ms, ttft_ms, user_id, team_id, coalesce(project, 'default'),
            api_key_id, customer_id, feature, coalesce(tags, []), task_id, run_id, agent,
            session_id, trace_id, span_id, parent_span_id, attempt, retry_of, fallback_from,
            {input} - {read} - {write} - {audio_in} - {image_in}, {read}, {write} - {write_1h},
            {write_1h}, {output} - {audio_out} - {image_out}, {reasoning}, {audio_in},
            {audio_out}, {image_in}, {image_out}, {searches}, '{{}}',
            cost, currency, NULL, NULL, cost,
            CASE WHEN cost IS NULL THEN 'unpriced' ELSE 'reported' END, NULL, NULL, NULL,
            metadata::VARCHAR, NULL, NULL, NULL
         FROM read_json('{file}', format = 'newline_delimited', columns = {COLUMNS})",
        input = u("input_tokens"),
        read = u("cache_read_tokens"),
        write = u("cache_write_tokens"),
        write_1h = u("cache_write_1h_tokens"),
        output = u("output_tokens"),
        reasoning = u("reasoning_tokens"),
        audio_in = u("audio_input_tokens"),
        audio_out = u("audio_output_tokens"),
        image_in = u("image_input_tokens"),
        image_out = u("image_output_tokens"),
        searches = u("web_search_requests"),
    )
}

/// Loads `ndjson` into a fresh database in `dir` with DuckDB's reader and times it.
pub fn duckdb_loader(ndjson: &Path, dir: &Path, cfg: &StorageConfig) -> anyhow::Result<LoaderRun> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("baseline.duckdb");
    let conn = open_connection(&path, cfg)?;
    migrations::apply(&conn).context("migrating the baseline database")?;
    let file = ndjson.to_str().context("the NDJSON path is not UTF-8")?;
    anyhow::ensure!(!file.contains('\''), "the NDJSON path contains a quote");
    let sql = insert_sql(file);
    let started = Instant::now();
    // Autocommit: the statement is durable when it returns, as Tally's acknowledged events are.
    let rows = conn
        .execute(&sql, [])
        .context("DuckDB's read_json load failed")? as u64;
    let elapsed = started.elapsed();
    conn.execute_batch("CHECKPOINT")?;
    drop(conn);
    let file_bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    Ok(LoaderRun {
        rows,
        elapsed,
        file_bytes,
    })
}
