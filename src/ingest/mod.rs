//! Ingest: from a request body to priced events and named rejects, ready for the writer.
//!
//! The pipeline is decode → split into records → map each record with its format's mapper →
//! price. It is pure CPU work with no I/O, so it runs on a blocking thread and is shared by the
//! HTTP handlers, `tally demo` and `tally import`. A record that fails anywhere becomes a
//! [`Reject`] carrying its index, field, reason and raw text; it never takes the other records
//! of its batch down with it. Only a body that cannot be read at all is an [`IngestError`].

pub mod body;
pub mod fields;
pub mod native;
pub mod outcome;

use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::event::PricedEvent;
use crate::keys::Principal;
use crate::pricing::Pricer;

pub use body::BodyKind;
pub use fields::{FieldError, Limits};

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

/// Source formats `POST /v1/ingest` understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Native,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Native => "native",
        }
    }
}

impl FromStr for Format {
    type Err = IngestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "native" => Ok(Format::Native),
            other => Err(IngestError::BadParameter(format!(
                "unknown format {other:?}; expected one of: native"
            ))),
        }
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
    /// The message for the ingest answer: field and reason together.
    pub fn message(&self) -> String {
        format!("{}: {}", self.field, self.reason)
    }
}

/// A body after mapping and pricing.
#[derive(Debug, Default)]
pub struct ParsedBatch {
    pub events: Vec<PricedEvent>,
    /// Position of each event in the body, parallel to `events`.
    pub indexes: Vec<usize>,
    pub rejects: Vec<Reject>,
}

/// What the pipeline needs besides the body.
pub struct Context<'a> {
    pub pricer: &'a Pricer,
    pub limits: &'a Limits,
    pub max_records: usize,
    pub now: DateTime<Utc>,
    /// Who writes: decides the project each event lands in.
    pub principal: &'a Principal,
}

/// Decodes, splits, maps and prices a whole body.
pub fn parse_body(
    bytes: &[u8],
    kind: BodyKind,
    format: Format,
    ctx: &Context<'_>,
) -> Result<ParsedBatch, IngestError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        IngestError::Unreadable(format!(
            "body is not valid UTF-8 (byte {})",
            e.valid_up_to()
        ))
    })?;
    let (_layout, records) = body::split(text, kind, ctx.max_records)?;
    let mut batch = ParsedBatch::default();
    for record in records {
        let mapped = match record.syntax_error {
            Some(reason) => Err(FieldError::new("(record)", reason)),
            None => map_record(record.text, format, ctx),
        };
        match mapped {
            Ok(event) => {
                batch.events.push(event);
                batch.indexes.push(record.index);
            }
            Err(e) => batch.rejects.push(Reject {
                index: record.index,
                source_format: format.name().into(),
                field: e.field,
                reason: e.reason,
                raw: record.text.to_string(),
            }),
        }
    }
    Ok(batch)
}

/// Maps and prices one record.
pub fn map_record(
    text: &str,
    format: Format,
    ctx: &Context<'_>,
) -> Result<PricedEvent, FieldError> {
    let mut event = match format {
        Format::Native => native::parse(text, ctx.now, ctx.limits)?,
    };
    // Every event belongs to a project: the writing key's, else the record's, else `default`;
    // a key of one project never writes into another.
    let project = ctx
        .principal
        .project_for_write(event.dims.project.as_deref())
        .map_err(|reason| FieldError::new("project", reason))?;
    event.dims.project = Some(project);
    Ok(crate::pricing::apply(ctx.pricer, event))
}
