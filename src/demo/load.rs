//! Loads generated demo traffic through the real ingest pipeline (mapping, pricing, writer),
//! so the demo exercises exactly the code that serves real traffic.

use chrono::Utc;

use super::generate::{generate_events_into, DemoConfig};
use crate::ingest::{self, Format, Limits, RequestDefaults};
use crate::keys::Principal;
use crate::pricing::Pricer;
use crate::store::{Store, WriteBatch};

/// What loading produced.
#[derive(Debug, Default, Clone, Copy)]
pub struct Loaded {
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: usize,
}

/// Events per write batch.
const CHUNK: usize = 20_000;

/// Generates the demo traffic and writes it. Any reject is a bug in the generator, so rejects
/// are logged loudly (and still kept in the dead-letter table like any other).
pub async fn load(store: &Store, pricer: &Pricer, cfg: &DemoConfig) -> anyhow::Result<Loaded> {
    let mut texts: Vec<String> = Vec::new();
    generate_events_into(cfg, &mut |event| texts.push(event.to_string()));
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
    Ok(loaded)
}
