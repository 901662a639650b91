//! The benchmark's traffic: the demo generator at a larger scale, written once as an NDJSON
//! file (what DuckDB's own loader reads) and cut into gzip request bodies (what the HTTP
//! clients send), so both sides load exactly the same records.
//!
//! The demo generator is the realistic part: eight features, agent runs with retries and
//! fallbacks, prompt caching, gateway-reported costs, unpriced models, events in timestamp
//! order as gateways send them, and the task outcomes that arrive after the calls. Bodies are
//! compressed before the clock starts, so the clients spend no CPU the server needs. Nothing
//! here grows with the volume in memory: records stream from the generator into the NDJSON
//! file and into body files (about 1.6 GB of gzip per 10M events with their outcomes), which the clients read back.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Utc};

use crate::demo::generate::{generate_into, DemoConfig, Record};

/// Calls per day at demo scale 1.0 (`demo::generate`'s tuning figure).
const DEMO_CALLS_PER_DAY: f64 = 4_000.0;
/// Days of traffic the benchmark spreads its events over.
pub const DAYS: u32 = 30;

/// The generated traffic, ready to send.
pub struct Traffic {
    pub events: u64,
    pub ndjson_bytes: u64,
    /// gzip NDJSON bodies of up to `batch` events each, in timestamp order.
    pub bodies: Bodies,
    pub outcome_bodies: Bodies,
    pub outcomes: u64,
}

/// Request bodies stored one after another in a file, read back by index.
pub struct Bodies {
    file: File,
    /// Offset and length of each body.
    spans: Vec<(u64, usize)>,
}

impl Bodies {
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Body `i`, `None` past the last. A read of about 1 MB, from the page cache in practice.
    pub fn get(&self, i: usize) -> std::io::Result<Option<Vec<u8>>> {
        let Some(&(offset, len)) = self.spans.get(i) else {
            return Ok(None);
        };
        let mut body = vec![0; len];
        self.file.read_exact_at(&mut body, offset)?;
        Ok(Some(body))
    }
}

/// Gathers records into NDJSON chunks of `batch` lines and appends each, gzip-compressed, to a
/// body file.
struct BodyWriter {
    path: PathBuf,
    out: BufWriter<File>,
    spans: Vec<(u64, usize)>,
    written: u64,
    chunk: Vec<u8>,
    in_chunk: usize,
    batch: usize,
}

impl BodyWriter {
    fn create(path: PathBuf, batch: usize) -> anyhow::Result<BodyWriter> {
        let file =
            File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(BodyWriter {
            path,
            out: BufWriter::with_capacity(1 << 20, file),
            spans: Vec::new(),
            written: 0,
            chunk: Vec::with_capacity(batch * 600),
            in_chunk: 0,
            batch,
        })
    }

    /// Adds one record; returns its NDJSON line (with the newline).
    fn push(&mut self, record: &serde_json::Value) -> anyhow::Result<&[u8]> {
        if self.in_chunk == self.batch {
            self.seal()?;
        }
        let start = self.chunk.len();
        serde_json::to_writer(&mut self.chunk, record).expect("serializing to memory");
        self.chunk.push(b'\n');
        self.in_chunk += 1;
        Ok(&self.chunk[start..])
    }

    fn seal(&mut self) -> anyhow::Result<()> {
        if self.in_chunk == 0 {
            return Ok(());
        }
        let body = gzip(&self.chunk);
        self.out
            .write_all(&body)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        self.spans.push((self.written, body.len()));
        self.written += body.len() as u64;
        self.chunk.clear();
        self.in_chunk = 0;
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<Bodies> {
        self.seal()?;
        self.out.flush()?;
        Ok(Bodies {
            file: File::open(&self.path)
                .with_context(|| format!("cannot read {}", self.path.display()))?,
            spans: self.spans,
        })
    }
}

/// What to generate: about `events` events over the `days` before `end`, from `seed`.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub events: u64,
    pub seed: u64,
    pub days: u32,
    pub end: DateTime<Utc>,
}

/// Generates `spec`'s traffic into gzip bodies of `batch` records under `dir`, and writes the
/// events to `ndjson` (one per line) when given.
pub fn generate(
    spec: Spec,
    batch: usize,
    dir: &Path,
    ndjson: Option<&Path>,
) -> anyhow::Result<Traffic> {
    let cfg = DemoConfig {
        seed: spec.seed,
        days: spec.days,
        end: spec.end,
        scale: spec.events as f64 / (DEMO_CALLS_PER_DAY * f64::from(spec.days)),
    };
    let mut file = match ndjson {
        Some(path) => Some(BufWriter::with_capacity(
            1 << 20,
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => None,
    };
    let mut event_bodies = BodyWriter::create(dir.join("events.bodies"), batch)?;
    let mut outcome_bodies = BodyWriter::create(dir.join("outcomes.bodies"), batch)?;
    let (mut n_events, mut n_outcomes, mut ndjson_bytes) = (0u64, 0u64, 0u64);
    let mut failed: Option<anyhow::Error> = None;
    generate_into(&cfg, &mut |record| {
        if failed.is_some() {
            return;
        }
        let result = match record {
            Record::Event(event) => event_bodies.push(&event).and_then(|line| {
                n_events += 1;
                ndjson_bytes += line.len() as u64;
                match file.as_mut() {
                    Some(f) => Ok(f.write_all(line)?),
                    None => Ok(()),
                }
            }),
            Record::Outcome {
                project,
                mut outcome,
            } => {
                // Outcomes name only their task; the sender says the project of its calls
                // (as `tally demo` does).
                outcome["project"] = project.into();
                n_outcomes += 1;
                outcome_bodies.push(&outcome).map(|_| ())
            }
        };
        if let Err(e) = result {
            failed = Some(e);
        }
    });
    if let Some(e) = failed {
        return Err(e.context("cannot write the generated traffic"));
    }
    if let Some(mut f) = file {
        f.flush()?;
    }
    Ok(Traffic {
        events: n_events,
        ndjson_bytes,
        bodies: event_bodies.finish()?,
        outcome_bodies: outcome_bodies.finish()?,
        outcomes: n_outcomes,
    })
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 6),
        flate2::Compression::fast(),
    );
    gz.write_all(bytes).expect("compressing to memory");
    gz.finish().expect("compressing to memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ndjson_of(seed: u64, end: DateTime<Utc>) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.ndjson");
        let spec = Spec {
            events: 3_000,
            seed,
            days: DAYS,
            end,
        };
        let traffic = generate(spec, 500, dir.path(), Some(&path)).unwrap();
        assert!(traffic.events > 1_000 && traffic.outcomes > 0);
        std::fs::read(&path).unwrap()
    }

    /// `--seed` with `--end` repeats a run's events exactly (the generator's timestamps and
    /// identifiers derive from both, so the seed alone does not).
    #[test]
    fn the_same_seed_and_end_give_the_same_events() {
        let end = DateTime::parse_from_rfc3339("2026-11-20T18:37:00Z")
            .unwrap()
            .to_utc();
        let first = ndjson_of(7, end);
        assert_eq!(ndjson_of(7, end), first);
        assert_ne!(ndjson_of(8, end), first);
    }
}
