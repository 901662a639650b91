//! One import, from a decoded body to committed billing lines: resolve the project, parse,
//! fingerprint, and hand everything to the one writer, which decides in a single transaction
//! what is new, what is unchanged and what a restatement replaces
//! (`store::queries::billing::apply`).
//!
//! Shared by `POST /v1/billing` and `tally import`, so a file gives the same lines whichever
//! way it arrives. Idempotency has two levels: a body already imported into the project (same
//! format, options and bytes) changes nothing at all; a new body covering a period that was
//! imported from the same source (format + provider + provider sub-account) replaces the lines
//! it overlaps, and lines identical to the ones they replace count as unchanged.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::model::Ctx;
use super::{Body, Format, ImportError, LineKind, Options, ParsedImport};
use crate::keys::Principal;
use crate::store::queries::billing as queries;
use crate::store::Store;

/// A parsed import, ready for the writer.
#[derive(Debug)]
pub struct Prepared {
    pub import_id: String,
    pub project: String,
    pub format: Format,
    pub content_sha256: String,
    pub file_name: Option<String>,
    pub key_id: Option<String>,
    pub http_request: Option<String>,
    pub imported_at: DateTime<Utc>,
    pub parsed: ParsedImport,
}

/// The answer to an import, shaped like `/v1/ingest`'s.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The import the lines belong to; for a body imported before, that earlier import.
    pub import_id: String,
    pub format: String,
    /// `cost` (money lines) or `usage` (volume lines).
    pub kind: String,
    pub project: String,
    /// Lines written by this import.
    pub accepted: usize,
    /// Earlier lines of the same source inside the covered period that this import replaced.
    pub replaced: usize,
    /// Lines already stored exactly as they are in this import.
    pub unchanged: usize,
    /// FOCUS rows of non-AI services left out (see `all_services`).
    pub skipped: usize,
    pub rejected: Vec<RejectedLine>,
    /// The period this import speaks for, `[start, end)`.
    pub period_start: Option<String>,
    pub period_end: Option<String>,
    pub warnings: Vec<String>,
}

/// One bad line in the answer.
#[derive(Debug, Clone, Serialize)]
pub struct RejectedLine {
    pub line: usize,
    pub field: String,
    pub error: String,
}

/// Who imports, and from where.
pub struct Source<'a> {
    pub principal: &'a Principal,
    pub http_request: Option<String>,
}

/// Parses a decoded body (blocking: call it off the async runtime).
pub fn prepare(
    bytes: &[u8],
    body: Body,
    options: &Options,
    source: &Source<'_>,
    ctx: &Ctx<'_>,
) -> Result<Prepared, ImportError> {
    let project = source
        .principal
        .project_for_write(options.project.as_deref())
        .map_err(ImportError::Forbidden)?;
    let parsed = super::parse(bytes, body, options, ctx)?;
    let mut hash = Sha256::new();
    hash.update(options.canonical().as_bytes());
    hash.update([0u8]);
    hash.update(bytes);
    let content_sha256 = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(Prepared {
        import_id: format!("imp_{}", uuid::Uuid::now_v7().simple()),
        project,
        format: options.format,
        content_sha256,
        file_name: options.file_name.clone(),
        key_id: source.principal.key_id.clone(),
        http_request: source.http_request.clone(),
        imported_at: ctx.now,
        parsed,
    })
}

/// Commits a prepared import through the writer and shapes the answer.
pub async fn commit(store: &Store, prepared: Prepared) -> Result<Outcome, ImportError> {
    let rejected: Vec<RejectedLine> = prepared
        .parsed
        .rejects
        .iter()
        .map(|r| RejectedLine {
            line: r.line,
            field: r.field.clone(),
            error: format!("{}: {}", r.field, r.reason),
        })
        .collect();
    let mut warnings = prepared.parsed.warnings.clone();
    let format = prepared.format;
    let project = prepared.project.clone();
    let skipped = prepared.parsed.skipped;
    let covered = prepared.parsed.covered;
    let applied = store
        .writer()
        .exec(move |conn| queries::apply(conn, &prepared))
        .await?;
    if applied.same_file {
        warnings.push(format!(
            "this file was imported before (import {}); nothing changed",
            applied.import_id
        ));
    }
    warnings.extend(applied.warnings);
    Ok(Outcome {
        import_id: applied.import_id,
        format: format.name().into(),
        kind: format.kind().as_str().into(),
        project,
        accepted: applied.accepted,
        replaced: applied.replaced,
        unchanged: applied.unchanged,
        skipped,
        rejected,
        period_start: covered.map(|(s, _)| s.to_rfc3339()),
        period_end: covered.map(|(_, e)| e.to_rfc3339()),
        warnings,
    })
}

impl Prepared {
    /// Good lines of the import, whichever kind.
    pub fn good_lines(&self) -> usize {
        match self.format.kind() {
            LineKind::Cost => self.parsed.cost_lines.len(),
            LineKind::Usage => self.parsed.usage_lines.len(),
        }
    }
}
