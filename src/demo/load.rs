//! Loads generated demo traffic through the real ingest pipeline (mapping, pricing, writer),
//! so the demo exercises exactly the code that serves real traffic: events as `/v1/ingest`
//! takes them, then task outcomes as `/v1/outcomes` takes them.

use serde_json::Value;

use chrono::Utc;

use super::generate::{generate_into, DemoConfig, Record};
use crate::ingest::{self, Format, Limits, Reject, RequestDefaults};
use crate::keys::Principal;
use crate::pricing::Pricer;
use crate::store::queries::outcomes as outcome_sql;
use crate::store::{Store, WriteBatch};

/// What loading produced.
#[derive(Debug, Default, Clone, Copy)]
pub struct Loaded {
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: usize,
    /// Task outcomes stored.
    pub outcomes: usize,
}

/// Events (or outcomes) per write batch.
const CHUNK: usize = 20_000;

/// Generates the demo traffic and writes it. Any reject is a bug in the generator, so rejects
/// are logged loudly (and still kept in the dead-letter table like any other).
pub async fn load(store: &Store, pricer: &Pricer, cfg: &DemoConfig) -> anyhow::Result<Loaded> {
    let mut texts: Vec<String> = Vec::new();
    let mut outcomes: Vec<(&'static str, Value)> = Vec::new();
    generate_into(cfg, &mut |record| match record {
        Record::Event(event) => texts.push(event.to_string()),
        Record::Outcome { project, outcome } => outcomes.push((project, outcome)),
    });
    let mut loaded = Loaded::default();
    let limits = Limits::default();
    let principal = Principal::superuser();
    let defaults = RequestDefaults::default();
    for chunk in texts.chunks(CHUNK) {
        let now = Utc::now();
        let ctx = ingest::Context {
            pricer,
            limits: &limits,
            max_records: usize::MAX,
            now,
            principal: &principal,
            defaults: &defaults,
        };
        let mut batch = WriteBatch {
            received_at: now,
            ..WriteBatch::default()
        };
        for (i, text) in chunk.iter().enumerate() {
            let outcome = ingest::map_record(i, text, Some(Format::Native), &ctx);
            for r in &outcome.rejects {
                tracing::error!(field = %r.field, reason = %r.reason, "demo record rejected");
            }
            batch.events.extend(outcome.events);
            batch.rejects.extend(outcome.rejects);
        }
        loaded.rejected += batch.rejects.len();
        let outcome = store.writer().write(batch).await?;
        loaded.accepted += outcome.accepted;
        loaded.duplicates += outcome.duplicates;
    }
    drop(texts);

    for chunk in outcomes.chunks(CHUNK) {
        let now = Utc::now();
        let ctx = ingest::outcome::Context {
            limits: &limits,
            max_records: usize::MAX,
            now,
            principal: &principal,
        };
        let mut records = Vec::with_capacity(chunk.len());
        let mut rejects = Vec::new();
        for (i, (project, value)) in chunk.iter().enumerate() {
            // Outcomes name only their task; they belong to the project of its calls.
            let mut value = value.clone();
            value["project"] = (*project).into();
            let text = value.to_string();
            match ingest::outcome::parse_record(&text, &ctx) {
                Ok(o) => records.push(o),
                Err(e) => {
                    tracing::error!(field = %e.field, reason = %e.reason, "demo outcome rejected");
                    rejects.push(Reject {
                        index: i,
                        source_format: ingest::outcome::SOURCE_FORMAT.into(),
                        field: e.field,
                        reason: e.reason,
                        raw: text,
                    });
                }
            }
        }
        loaded.rejected += rejects.len();
        let written = store
            .writer()
            .exec(move |conn| outcome_sql::insert(conn, now, &records, &rejects, None, None))
            .await?;
        loaded.outcomes += written.accepted;
        loaded.duplicates += written.duplicates;
    }
    Ok(loaded)
}

/// A fresh store in a temporary directory with 20 days of demo traffic loaded: the data the
/// rollup, unit and budget tests compare their pre-computed answers against the events on.
#[cfg(test)]
pub(crate) async fn demo_store() -> (tempfile::TempDir, Store, DemoConfig) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &Default::default()).unwrap();
    let pricer = Pricer::builtin(&Default::default()).unwrap();
    let cfg = DemoConfig {
        days: 20,
        ..DemoConfig::default()
    };
    load(&store, &pricer, &cfg).await.unwrap();
    (dir, store, cfg)
}
