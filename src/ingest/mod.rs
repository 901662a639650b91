//! Ingest: from a request body to priced events and named rejects, ready for the writer.
//!
//! The pipeline is decode → split into records → detect each record's format (or take the one
//! `?format=` names) → map it with that format's mapper → price. It is pure CPU work with no
//! I/O, so it runs on a blocking thread and is shared by the HTTP handlers, `tally demo` and
//! `tally import`. One record yields zero or more events (an OTLP export carries many spans; a
//! non-GenAI span yields none and is counted as skipped). A record that fails anywhere becomes
//! a [`Reject`] carrying its index, format, field, reason and raw text; it never takes the
//! other records of its batch down with it. Only a body that cannot be read at all is an
//! [`IngestError`]. Each source format has its own module; `normalize` holds what they share
//! and `detect` decides which one a record is.

pub mod anthropic;
pub mod bedrock;
pub mod body;
pub mod cloudevents;
pub mod cloudflare;
pub mod detect;
pub mod fields;
pub mod fuzz;
pub mod gemini;
pub mod helicone;
#[cfg(test)]
mod invariants;
pub mod litellm;
pub mod native;
pub mod normalize;
pub mod openai;
pub mod openrouter;
pub mod otlp;
pub mod outcome;
pub mod portkey;
pub mod pyliteral;
pub mod value;

use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::event::{PricedEvent, UsageEvent};
use crate::keys::Principal;
use crate::pricing::Pricer;

pub use body::BodyKind;
pub use fields::{FieldError, Limits};
pub use normalize::RequestDefaults;

/// Why a whole request body was refused.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// 400: the body cannot be read as JSON, NDJSON or its declared encoding.
    #[error("{0}")]
    Unreadable(String),
    /// 413: over a size or count limit.
    #[error("{0}")]
    TooLarge(String),
    /// 415: a content type or encoding Tally does not take.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 400: a query parameter such as `format` is wrong.
    #[error("{0}")]
    BadParameter(String),
}

/// Source formats `POST /v1/ingest` understands; `?format=` takes their names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Native,
    OpenAi,
    Anthropic,
    Gemini,
    OpenRouter,
    LiteLlm,
    Helicone,
    Portkey,
    Cloudflare,
    Bedrock,
    CloudEvents,
    Otlp,
}

impl Format {
    /// Every format, in the order the docs list them.
    pub const ALL: [Format; 12] = [
        Format::Native,
        Format::OpenAi,
        Format::Anthropic,
        Format::Gemini,
        Format::OpenRouter,
        Format::LiteLlm,
        Format::Helicone,
        Format::Portkey,
        Format::Cloudflare,
        Format::Bedrock,
        Format::CloudEvents,
        Format::Otlp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Format::Native => "native",
            Format::OpenAi => "openai",
            Format::Anthropic => "anthropic",
            Format::Gemini => "gemini",
            Format::OpenRouter => "openrouter",
            Format::LiteLlm => "litellm",
            Format::Helicone => "helicone",
            Format::Portkey => "portkey",
            Format::Cloudflare => "cloudflare",
            Format::Bedrock => "bedrock",
            Format::CloudEvents => "cloudevents",
            Format::Otlp => "otlp",
        }
    }

    /// Comma-separated names, for messages.
    pub fn all_names() -> String {
        Self::ALL.map(Format::name).join(", ")
    }
}

impl FromStr for Format {
    type Err = IngestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        Format::ALL
            .into_iter()
            .find(|f| f.name() == wanted)
            .ok_or_else(|| {
                IngestError::BadParameter(format!(
                    "unknown format {s:?}; expected one of: auto, {}",
                    Format::all_names()
                ))
            })
    }
}

/// `?format=`: a named format, or `auto` (the default) to detect each record's shape.
pub fn parse_format_param(s: &str) -> Result<Option<Format>, IngestError> {
    if s.trim().eq_ignore_ascii_case("auto") || s.trim().is_empty() {
        Ok(None)
    } else {
        s.parse().map(Some)
    }
}

/// One rejected record: what the dead-letter table keeps and the answer reports.
#[derive(Debug, Clone, Serialize)]
pub struct Reject {
    pub index: usize,
    pub source_format: String,
    pub field: String,
    pub reason: String,
    /// The record as it arrived.
    #[serde(skip)]
    pub raw: String,
}

impl Reject {
    /// The message for the ingest answer: format, field and reason together.
    pub fn message(&self) -> String {
        format!("{}: {}: {}", self.source_format, self.field, self.reason)
    }
}

/// A body after mapping and pricing.
#[derive(Debug, Default)]
pub struct ParsedBatch {
    pub events: Vec<PricedEvent>,
    /// Position of each event's record in the body, parallel to `events` (several events may
    /// share one record).
    pub indexes: Vec<usize>,
    pub rejects: Vec<Reject>,
    /// Items that are valid but describe no LLM call (non-GenAI spans): counted, not stored.
    pub skipped: usize,
}

impl ParsedBatch {
    fn absorb(&mut self, index: usize, outcome: RecordOutcome) {
        self.indexes
            .extend(std::iter::repeat_n(index, outcome.events.len()));
        self.events.extend(outcome.events);
        self.rejects.extend(outcome.rejects);
        self.skipped += outcome.skipped;
    }
}

/// What the pipeline needs besides the body.
pub struct Context<'a> {
    pub pricer: &'a Pricer,
    pub limits: &'a Limits,
    pub max_records: usize,
    pub now: DateTime<Utc>,
    /// Who writes: decides the project each event lands in.
    pub principal: &'a Principal,
    /// Attribution from the request's `X-Tally-*` headers.
    pub defaults: &'a RequestDefaults,
}

/// What a mapper needs: the receive time, the limits and the header defaults. (No pricer:
/// mappers only read their format.)
pub struct MapCtx<'a> {
    pub now: DateTime<Utc>,
    pub limits: &'a Limits,
    pub defaults: &'a RequestDefaults,
}

/// What one record mapped to, before pricing.
#[derive(Debug, Default)]
pub struct Mapped {
    pub events: Vec<UsageEvent>,
    /// Items inside the record that describe no LLM call.
    pub skipped: usize,
    /// Items inside the record that were rejected while others were kept (OTLP spans), with
    /// their format and raw text.
    pub rejected: Vec<(&'static str, FieldError, String)>,
}

impl Mapped {
    pub fn one(event: UsageEvent) -> Self {
        Mapped {
            events: vec![event],
            ..Mapped::default()
        }
    }
}

/// What one record became after mapping and pricing.
#[derive(Debug, Default)]
pub struct RecordOutcome {
    pub events: Vec<PricedEvent>,
    pub rejects: Vec<Reject>,
    pub skipped: usize,
}

/// Decodes, splits, maps and prices a whole body. `format` `None` detects each record's.
pub fn parse_body(
    bytes: &[u8],
    kind: BodyKind,
    format: Option<Format>,
    ctx: &Context<'_>,
) -> Result<ParsedBatch, IngestError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        IngestError::Unreadable(format!(
            "body is not valid UTF-8 (byte {})",
            e.valid_up_to()
        ))
    })?;
    let (_layout, records) = body::split(text, kind, ctx.max_records)?;
    // Most records are one event: sized up front, the events (about a kilobyte each) are not
    // copied as the vector doubles, nor left with up to half of it unused while the batch
    // waits for the writer (heaptrack put the doubling at 108 MB of the server's peak with six
    // 10,000-event requests in flight).
    let mut batch = ParsedBatch {
        events: Vec::with_capacity(records.len()),
        indexes: Vec::with_capacity(records.len()),
        ..ParsedBatch::default()
    };
    for record in records {
        let outcome = match record.syntax_error {
            Some(reason) => RecordOutcome {
                rejects: vec![Reject {
                    index: record.index,
                    source_format: format.map_or("unknown", Format::name).into(),
                    field: "(record)".into(),
                    reason: reason.into(),
                    raw: record.text.to_string(),
                }],
                ..RecordOutcome::default()
            },
            None => map_record(record.index, record.text, format, ctx),
        };
        batch.absorb(record.index, outcome);
    }
    Ok(batch)
}

/// The last step for every mapped event, whatever its format: it joins a project — the writing
/// key's, else the record's, else `default`; a key of one project never writes into another —
/// and is priced. `Err` carries the event's source format and why it was refused.
pub fn finish(
    mut event: UsageEvent,
    ctx: &Context<'_>,
) -> Result<PricedEvent, (String, FieldError)> {
    match ctx
        .principal
        .project_for_write(event.dims.project.as_deref())
    {
        Ok(project) => {
            event.dims.project = Some(project);
            Ok(crate::pricing::apply(ctx.pricer, event))
        }
        Err(reason) => Err((event.source_format, FieldError::new("project", reason))),
    }
}

/// Maps and prices one record (detecting its format when `format` is `None`).
pub fn map_record(
    index: usize,
    text: &str,
    format: Option<Format>,
    ctx: &Context<'_>,
) -> RecordOutcome {
    let mcx = MapCtx {
        now: ctx.now,
        limits: ctx.limits,
        defaults: ctx.defaults,
    };
    let reject = |source_format: &str, e: FieldError, raw: String| Reject {
        index,
        source_format: source_format.into(),
        field: e.field,
        reason: e.reason,
        raw,
    };
    let (source, mapped) = detect::map_text(text, format, &mcx);
    match mapped {
        Ok(mapped) => {
            let mut out = RecordOutcome {
                rejects: mapped
                    .rejected
                    .into_iter()
                    .map(|(f, e, raw)| reject(f, e, raw))
                    .collect(),
                skipped: mapped.skipped,
                ..RecordOutcome::default()
            };
            for event in mapped.events {
                match finish(event, ctx) {
                    Ok(priced) => out.events.push(priced),
                    Err((source_format, e)) => {
                        out.rejects
                            .push(reject(&source_format, e, text.to_string()))
                    }
                }
            }
            out
        }
        Err(e) => RecordOutcome {
            rejects: vec![reject(source, e, text.to_string())],
            ..RecordOutcome::default()
        },
    }
}
