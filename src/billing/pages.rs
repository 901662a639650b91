//! The JSON reports' common shape: pages of time buckets of results.
//!
//! OpenAI's and Anthropic's admin APIs answer `{data: [bucket], has_more, next_page}` with each
//! bucket `{<start>, <end>, results: [...]}` (OpenAI's older spec named the list `result`). A
//! body may be one page, a JSON array of pages, one page per line (what a paging script
//! appends), or a bare bucket. This module walks all of them, gives each result its line
//! number (its 1-based position among all results of the body) and its JSON path, checks the
//! bucket's period, and hands the result to the format's mapper. It knows nothing about what
//! a result holds.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::model::{self, Ctx, LineReject, ParsedImport};
use super::ImportError;
use crate::ingest::body::{self, BodyKind, Layout};
use crate::ingest::fields::FieldError;

/// The bucket keys of one report family.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// `start_time` (OpenAI, Unix seconds) or `starting_at` (Anthropic, RFC 3339).
    pub start_key: &'static str,
    pub end_key: &'static str,
}

pub const OPENAI: Spec = Spec {
    start_key: "start_time",
    end_key: "end_time",
};

pub const ANTHROPIC: Spec = Spec {
    start_key: "starting_at",
    end_key: "ending_at",
};

/// One result with where it sits.
pub struct Item<'v> {
    pub line: usize,
    /// JSON path of the result, e.g. `data[0].results[2]`.
    pub path: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub value: &'v Value,
}

impl Item<'_> {
    /// A field's text: strings as they are, numbers as their exact text, null as absent.
    pub fn text(&self, key: &str) -> Option<String> {
        scalar_text(self.value.get(key)?)
    }

    /// A nested field's text (`amount.value`).
    pub fn text_at(&self, keys: &[&str]) -> Option<String> {
        let mut v = self.value;
        for k in keys {
            v = v.get(k)?;
        }
        scalar_text(v)
    }

    /// A count; absent or null is `None`.
    pub fn count_at(&self, keys: &[&str]) -> Result<Option<u64>, FieldError> {
        match self.text_at(keys) {
            None => Ok(None),
            Some(t) => model::count(&keys.join("."), &t).map(Some),
        }
    }
}

/// Text of a JSON scalar; objects and arrays as JSON text; null as `None`.
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        // arbitrary_precision: the number's exact text, never through a float.
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => Some(other.to_string()),
    }
}

/// Walks every result of every bucket of every page, calling `map` on each. A result `map`
/// refuses becomes a reject whose field is prefixed with the result's path.
pub fn walk(
    text: &str,
    spec: Spec,
    ctx: &Ctx<'_>,
    out: &mut ParsedImport,
    mut map: impl FnMut(&Item<'_>, &mut ParsedImport) -> Result<(), FieldError>,
) -> Result<(), ImportError> {
    let (layout, records) = body::split(text, BodyKind::Sniff, ctx.max_records)?;
    let mut line = 0usize;
    let mut more_pages = false;
    let total = records.len() as u64;
    for (i, record) in records.iter().enumerate() {
        ctx.report(i as u64 + 1, total);
        let prefix = match layout {
            Layout::Object => String::new(),
            Layout::Array | Layout::Lines => format!("[{}].", record.index),
        };
        let page_field = if prefix.is_empty() {
            "(page)".to_string()
        } else {
            prefix.trim_end_matches('.').to_string()
        };
        if let Some(reason) = record.syntax_error {
            out.rejects.push(LineReject::new(
                line + 1,
                FieldError::new(page_field, reason),
                record.text,
            ));
            continue;
        }
        let page: Value = match serde_json::from_str(record.text) {
            Ok(v) => v,
            Err(e) => {
                out.rejects.push(LineReject::new(
                    line + 1,
                    FieldError::new(page_field, format!("not valid JSON: {e}")),
                    record.text,
                ));
                continue;
            }
        };
        let buckets: Vec<(String, &Value)> = match page.get("data") {
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(b, v)| (format!("{prefix}data[{b}]"), v))
                .collect(),
            _ if page.get(spec.start_key).is_some() => {
                vec![(prefix.trim_end_matches('.').to_string(), &page)]
            }
            _ => {
                out.rejects.push(LineReject::new(
                    line + 1,
                    FieldError::new(
                        page_field,
                        format!(
                            "expected a page with a \"data\" list of buckets, or a bucket with \"{}\"",
                            spec.start_key
                        ),
                    ),
                    record.text,
                ));
                continue;
            }
        };
        more_pages = page.get("has_more") == Some(&Value::Bool(true));
        for (path, bucket) in buckets {
            line = walk_bucket(&path, bucket, spec, line, ctx, out, &mut map)?;
        }
    }
    if more_pages {
        out.warnings.push(
            "the last page says has_more: true — the report continues on further pages \
             (next_page); import them too, this import covers only the buckets it holds"
                .into(),
        );
    }
    Ok(())
}

/// Walks one bucket; returns the last line number used.
fn walk_bucket(
    path: &str,
    bucket: &Value,
    spec: Spec,
    mut line: usize,
    ctx: &Ctx<'_>,
    out: &mut ParsedImport,
    map: &mut impl FnMut(&Item<'_>, &mut ParsedImport) -> Result<(), FieldError>,
) -> Result<usize, ImportError> {
    let at = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    let results: Result<Vec<&Value>, FieldError> =
        match (bucket.get("results"), bucket.get("result")) {
            (Some(Value::Array(a)), None | Some(Value::Null)) => Ok(a.iter().collect()),
            (None | Some(Value::Null), Some(Value::Array(a))) => Ok(a.iter().collect()),
            (None | Some(Value::Null), Some(obj @ Value::Object(_))) => Ok(vec![obj]),
            (Some(Value::Array(a)), Some(Value::Array(b))) if a.is_empty() || b.is_empty() => {
                Ok(a.iter().chain(b.iter()).collect())
            }
            (Some(_), Some(_)) => Err(FieldError::new(
                at("results"),
                "the bucket has both \"results\" and \"result\"; send one",
            )),
            (None | Some(Value::Null), None | Some(Value::Null)) => Ok(Vec::new()),
            _ => Err(FieldError::new(at("results"), "must be a list of results")),
        };
    let period = read_time(bucket, spec.start_key, &at).and_then(|start| {
        let end = read_time(bucket, spec.end_key, &at)?;
        model::period(start, end, &at(spec.start_key), &at(spec.end_key), ctx.now)
    });
    let raw_bucket = || bucket.to_string();
    let results = match results {
        Ok(r) => r,
        Err(e) => {
            out.rejects.push(LineReject::new(line + 1, e, raw_bucket()));
            return Ok(line);
        }
    };
    let (start, end) = match period {
        Ok(p) => p,
        Err(e) => {
            // Without a period none of its results can be placed: each is rejected.
            if results.is_empty() {
                out.rejects
                    .push(LineReject::new(line + 1, e.clone(), raw_bucket()));
            }
            for r in results {
                line += 1;
                out.records += 1;
                out.rejects
                    .push(LineReject::new(line, e.clone(), r.to_string()));
            }
            return Ok(line);
        }
    };
    // The bucket speaks for its whole period, even when it holds no results: a restated day
    // without spend replaces what was imported for that day before.
    out.cover(start, end);
    let results_key = if bucket.get("results").is_some_and(|v| !v.is_null()) {
        "results"
    } else {
        "result"
    };
    for (j, value) in results.into_iter().enumerate() {
        line += 1;
        out.records += 1;
        if out.records > ctx.max_records {
            return Err(ImportError::TooLarge(format!(
                "more than {} lines in one import (ingest.max_records); split the file",
                ctx.max_records
            )));
        }
        let item = Item {
            line,
            path: at(&format!("{results_key}[{j}]")),
            start,
            end,
            value,
        };
        if !value.is_object() {
            out.rejects.push(LineReject::new(
                line,
                FieldError::new(item.path.clone(), "must be a JSON object"),
                value.to_string(),
            ));
            continue;
        }
        if let Err(e) = map(&item, out) {
            let field = format!("{}.{}", item.path, e.field);
            out.rejects.push(LineReject::new(
                line,
                FieldError::new(field, e.reason),
                value.to_string(),
            ));
        }
    }
    Ok(line)
}

fn read_time(
    bucket: &Value,
    key: &str,
    at: &dyn Fn(&str) -> String,
) -> Result<DateTime<Utc>, FieldError> {
    match bucket.get(key).and_then(scalar_text) {
        None => Err(FieldError::new(at(key), "is required")),
        Some(t) => model::instant(&at(key), &t),
    }
}
