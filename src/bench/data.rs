//! The benchmark's traffic: the demo generator at a larger scale, written once as an NDJSON
//! file (what DuckDB's own loader reads) and cut into gzip request bodies (what the HTTP
//! clients send), so both sides load exactly the same records.
//!
//! The demo generator is the realistic part: eight features, agent runs with retries and
//! fallbacks, prompt caching, gateway-reported costs, unpriced models, events in timestamp
//! order as gateways send them, and the task outcomes that arrive after the calls. Bodies are
//! compressed before the clock starts, so the clients spend no CPU the server needs.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};

use crate::demo::generate::{generate_with_outcomes_into, DemoConfig};

/// Calls per day at demo scale 1.0 (`demo::generate`'s tuning figure).
const DEMO_CALLS_PER_DAY: f64 = 4_000.0;
/// Days of traffic the benchmark spreads its events over.
pub const DAYS: u32 = 30;

/// The generated traffic, ready to send.
pub struct Traffic {
    pub events: u64,
    pub ndjson_bytes: u64,
    /// gzip NDJSON bodies of up to `batch` events each, in timestamp order.
    pub bodies: Vec<Vec<u8>>,
    pub outcome_bodies: Vec<Vec<u8>>,
    pub outcomes: u64,
}

/// Generates about `events` events with `seed`, writes them to `ndjson` (one per line), and
/// returns them as gzip bodies of `batch` events.
pub fn generate(
    events: u64,
    seed: u64,
    batch: usize,
    end: DateTime<Utc>,
    ndjson: &Path,
) -> anyhow::Result<Traffic> {
    let cfg = DemoConfig {
        seed,
        days: DAYS,
        end,
        scale: events as f64 / (DEMO_CALLS_PER_DAY * f64::from(DAYS)),
    };
    let file = std::fs::File::create(ndjson)
        .with_context(|| format!("cannot create {}", ndjson.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut traffic = Traffic {
        events: 0,
        ndjson_bytes: 0,
        bodies: Vec::new(),
        outcome_bodies: Vec::new(),
        outcomes: 0,
    };
    let mut chunk: Vec<u8> = Vec::with_capacity(batch * 600);
    let mut in_chunk = 0;
    let mut failed: Option<std::io::Error> = None;
    // Outcomes name only their task; they belong to the project of the task's calls (as in
    // `tally demo`), which the sender says in each outcome.
    let mut project_of: HashMap<String, String> = HashMap::new();
    let outcomes = generate_with_outcomes_into(&cfg, &mut |event| {
        if failed.is_some() {
            return;
        }
        if let (Some(task), Some(project)) = (event["task_id"].as_str(), event["project"].as_str())
        {
            if !project_of.contains_key(task) {
                project_of.insert(task.to_string(), project.to_string());
            }
        }
        let start = chunk.len();
        serde_json::to_writer(&mut chunk, &event).expect("serializing to memory");
        chunk.push(b'\n');
        if let Err(e) = out.write_all(&chunk[start..]) {
            failed = Some(e);
        }
        traffic.events += 1;
        traffic.ndjson_bytes += (chunk.len() - start) as u64;
        in_chunk += 1;
        if in_chunk == batch {
            traffic.bodies.push(gzip(&chunk));
            chunk.clear();
            in_chunk = 0;
        }
    });
    if let Some(e) = failed {
        return Err(e).with_context(|| format!("cannot write {}", ndjson.display()));
    }
    if in_chunk > 0 {
        traffic.bodies.push(gzip(&chunk));
    }
    out.flush()?;
    traffic.outcomes = outcomes.len() as u64;
    for part in outcomes.chunks(batch) {
        let mut text = Vec::with_capacity(part.len() * 200);
        for o in part {
            let mut o = o.clone();
            if let Some(p) = o["task_id"].as_str().and_then(|t| project_of.get(t)) {
                o["project"] = p.clone().into();
            }
            serde_json::to_writer(&mut text, &o).expect("serializing to memory");
            text.push(b'\n');
        }
        traffic.outcome_bodies.push(gzip(&text));
    }
    Ok(traffic)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 6),
        flate2::Compression::fast(),
    );
    gz.write_all(bytes).expect("compressing to memory");
    gz.finish().expect("compressing to memory")
}
