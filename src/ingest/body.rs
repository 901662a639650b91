//! Request bodies: content type, content encoding, and the split into records.
//!
//! This is the only place that looks at raw bytes. It enforces the decompressed-size limit while
//! inflating (a gzip or zstd bomb stops at the limit instead of filling memory) and splits a body
//! into records without interpreting them: one JSON object, a JSON array, or NDJSON. A malformed
//! NDJSON line becomes a rejected record of its own; only a body that cannot be read at all is
//! an error here.

use std::io::Read;

use serde_json::value::RawValue;

use super::IngestError;

/// What the `Content-Type` header announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// `application/json` (one object or an array).
    Json,
    /// Newline-delimited JSON.
    Ndjson,
    /// No content type: decided from the body.
    Sniff,
}

/// Maps a `Content-Type` header to a body kind; anything else is 415.
pub fn body_kind(content_type: Option<&str>) -> Result<BodyKind, IngestError> {
    let Some(raw) = content_type else {
        return Ok(BodyKind::Sniff);
    };
    let essence = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "" => Ok(BodyKind::Sniff),
        "application/json"
        | "text/json"
        | "application/cloudevents+json"
        | "application/cloudevents-batch+json" => Ok(BodyKind::Json),
        "application/x-ndjson"
        | "application/ndjson"
        | "application/jsonl"
        | "application/x-jsonlines"
        | "application/jsonlines"
        | "application/json-seq"
        | "text/plain" => Ok(BodyKind::Ndjson),
        "application/x-www-form-urlencoded" => Err(IngestError::UnsupportedMediaType(
            "Content-Type application/x-www-form-urlencoded is not accepted (curl -d sends it by \
             default): send JSON with -H 'Content-Type: application/json' or NDJSON with \
             -H 'Content-Type: application/x-ndjson'"
                .into(),
        )),
        other => Err(IngestError::UnsupportedMediaType(format!(
            "Content-Type {other:?} is not accepted here; use application/json (an object or an \
             array) or application/x-ndjson (one JSON object per line)"
        ))),
    }
}

/// Inflates a body according to `Content-Encoding`, refusing to produce more than `max_out`
/// bytes.
pub fn decode(body: &[u8], encoding: Option<&str>, max_out: usize) -> Result<Vec<u8>, IngestError> {
    let encoding = encoding
        .map(|e| e.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match encoding.as_str() {
        "" | "identity" => {
            if body.len() > max_out {
                return Err(too_large(max_out));
            }
            Ok(body.to_vec())
        }
        "gzip" | "x-gzip" => read_limited(flate2::read::MultiGzDecoder::new(body), max_out, "gzip"),
        "deflate" => read_limited(flate2::read::ZlibDecoder::new(body), max_out, "deflate"),
        "zstd" => {
            let decoder = zstd::stream::read::Decoder::new(body)
                .map_err(|e| IngestError::Unreadable(format!("zstd body: {e}")))?;
            read_limited(decoder, max_out, "zstd")
        }
        other => Err(IngestError::UnsupportedMediaType(format!(
            "Content-Encoding {other:?} is not supported; use gzip, zstd, deflate or none"
        ))),
    }
}

fn too_large(max_out: usize) -> IngestError {
    IngestError::TooLarge(format!(
        "decompressed body exceeds {max_out} bytes (ingest.max_decompressed_bytes); split it into smaller requests"
    ))
}

fn read_limited(reader: impl Read, max_out: usize, what: &str) -> Result<Vec<u8>, IngestError> {
    let mut out = Vec::new();
    // Read one byte past the limit so "exactly at the limit" and "over it" can be told apart
    // without ever holding more than limit + 1 bytes.
    let mut limited = reader.take(max_out as u64 + 1);
    limited.read_to_end(&mut out).map_err(|e| {
        IngestError::Unreadable(format!("{what} body could not be decompressed: {e}"))
    })?;
    if out.len() > max_out {
        return Err(too_large(max_out));
    }
    Ok(out)
}

/// One record of a body: its position and its text, not yet interpreted.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    /// 0-based position in the body (array element or non-blank NDJSON line).
    pub index: usize,
    pub text: &'a str,
    /// Why the record could not even be read as JSON (NDJSON lines only).
    pub syntax_error: Option<&'static str>,
}

/// How a body was laid out; kept so that answers can say what Tally understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Object,
    Array,
    Lines,
}

/// Splits a decoded body into records. Fails only when the body as a whole is unreadable.
pub fn split(
    text: &str,
    kind: BodyKind,
    max_records: usize,
) -> Result<(Layout, Vec<RawRecord<'_>>), IngestError> {
    let trimmed = text.trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n']);
    if trimmed.trim_end().is_empty() {
        return Err(IngestError::Unreadable("body is empty".into()));
    }
    if kind != BodyKind::Ndjson {
        // A whole-body parse first: a pretty-printed object spans lines and must not be taken
        // for NDJSON.
        match serde_json::from_str::<&RawValue>(trimmed) {
            Ok(value) => return whole_value(value, max_records),
            Err(err) if kind == BodyKind::Json && !looks_like_lines(trimmed) => {
                return Err(IngestError::Unreadable(format!(
                    "body is not valid JSON: {err}"
                )));
            }
            Err(_) => {}
        }
    }
    split_lines(trimmed, max_records)
}

fn whole_value(
    value: &RawValue,
    max_records: usize,
) -> Result<(Layout, Vec<RawRecord<'_>>), IngestError> {
    let text = value.get();
    if text.starts_with('[') {
        let items: Vec<&RawValue> = serde_json::from_str(text)
            .map_err(|e| IngestError::Unreadable(format!("body is not a valid JSON array: {e}")))?;
        check_count(items.len(), max_records)?;
        let records = items
            .into_iter()
            .enumerate()
            .map(|(index, item)| RawRecord {
                index,
                text: item.get(),
                syntax_error: None,
            })
            .collect();
        Ok((Layout::Array, records))
    } else {
        Ok((
            Layout::Object,
            vec![RawRecord {
                index: 0,
                text,
                syntax_error: None,
            }],
        ))
    }
}

/// Two or more lines that each start like a JSON value: the shape of NDJSON.
fn looks_like_lines(text: &str) -> bool {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines
        .next()
        .is_some_and(|l| l.starts_with('{') && l.ends_with('}'));
    let second = lines.next().is_some_and(|l| l.starts_with('{'));
    first && second
}

fn split_lines(
    text: &str,
    max_records: usize,
) -> Result<(Layout, Vec<RawRecord<'_>>), IngestError> {
    let mut records = Vec::new();
    let mut readable = 0usize;
    let mut first_error = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        check_count(records.len() + 1, max_records)?;
        let syntax_error = match serde_json::from_str::<&RawValue>(line) {
            Ok(_) => {
                readable += 1;
                None
            }
            Err(err) => {
                first_error.get_or_insert_with(|| err.to_string());
                Some("line is not valid JSON")
            }
        };
        records.push(RawRecord {
            index: records.len(),
            text: line,
            syntax_error,
        });
    }
    if readable == 0 {
        let detail = first_error.unwrap_or_else(|| "no records".into());
        return Err(IngestError::Unreadable(format!(
            "body is neither a JSON value nor NDJSON (first line: {detail})"
        )));
    }
    Ok((Layout::Lines, records))
}

fn check_count(count: usize, max_records: usize) -> Result<(), IngestError> {
    if count > max_records {
        return Err(IngestError::TooLarge(format!(
            "more than {max_records} records in one request (ingest.max_records); split the body"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(text: &str, kind: BodyKind) -> (Layout, Vec<(usize, String, bool)>) {
        let (layout, records) = split(text, kind, 100).unwrap();
        (
            layout,
            records
                .into_iter()
                .map(|r| (r.index, r.text.to_string(), r.syntax_error.is_some()))
                .collect(),
        )
    }

    #[test]
    fn single_object_even_when_pretty_printed() {
        let (layout, records) = texts("{\n  \"model\": \"a\"\n}\n", BodyKind::Sniff);
        assert_eq!(layout, Layout::Object);
        assert_eq!(records.len(), 1);
        assert!(records[0].1.contains("\"model\""));
    }

    #[test]
    fn array_elements_keep_their_positions() {
        let (layout, records) = texts(r#"[{"a":1}, {"b":2}, 3]"#, BodyKind::Json);
        assert_eq!(layout, Layout::Array);
        assert_eq!(
            records.iter().map(|r| r.0).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert_eq!(records[2].1, "3");
    }

    #[test]
    fn ndjson_bad_line_is_its_own_record() {
        let body = "{\"a\":1}\n\n{broken\n{\"c\":3}\n";
        let (layout, records) = texts(body, BodyKind::Sniff);
        assert_eq!(layout, Layout::Lines);
        assert_eq!(records.len(), 3);
        assert_eq!(records[1], (1, "{broken".to_string(), true));
        assert!(!records[2].2);
    }

    #[test]
    fn ndjson_under_json_content_type_is_still_read() {
        let (layout, records) = texts("{\"a\":1}\n{\"b\":2}", BodyKind::Json);
        assert_eq!(layout, Layout::Lines);
        assert_eq!(records.len(), 2);
    }

    #[test]
    fn unreadable_bodies_are_errors() {
        assert!(matches!(
            split("   ", BodyKind::Sniff, 10),
            Err(IngestError::Unreadable(_))
        ));
        assert!(matches!(
            split("[1, 2", BodyKind::Json, 10),
            Err(IngestError::Unreadable(_))
        ));
        assert!(matches!(
            split("{\"a\": ", BodyKind::Json, 10),
            Err(IngestError::Unreadable(_))
        ));
        assert!(matches!(
            split("not json\nat all", BodyKind::Sniff, 10),
            Err(IngestError::Unreadable(_))
        ));
    }

    #[test]
    fn record_limit_is_enforced() {
        assert!(matches!(
            split("[1,2,3]", BodyKind::Json, 2),
            Err(IngestError::TooLarge(_))
        ));
        assert!(matches!(
            split("{}\n{}\n{}", BodyKind::Ndjson, 2),
            Err(IngestError::TooLarge(_))
        ));
    }

    #[test]
    fn gzip_bomb_stops_at_the_limit() {
        use flate2::{write::GzEncoder, Compression};
        use std::io::Write;
        let mut enc = GzEncoder::new(Vec::new(), Compression::best());
        enc.write_all(&vec![b' '; 10 * 1024 * 1024]).unwrap();
        let compressed = enc.finish().unwrap();
        assert!(compressed.len() < 64 * 1024);
        assert!(matches!(
            decode(&compressed, Some("gzip"), 1024 * 1024),
            Err(IngestError::TooLarge(_))
        ));
        assert_eq!(
            decode(&compressed, Some("gzip"), 10 * 1024 * 1024)
                .unwrap()
                .len(),
            10 * 1024 * 1024
        );
    }

    #[test]
    fn zstd_round_trip_and_unknown_encoding() {
        let compressed = zstd::encode_all(&b"{\"a\":1}"[..], 3).unwrap();
        assert_eq!(
            decode(&compressed, Some("zstd"), 100).unwrap(),
            b"{\"a\":1}"
        );
        assert!(matches!(
            decode(b"x", Some("br"), 100),
            Err(IngestError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            decode(b"garbage", Some("gzip"), 100),
            Err(IngestError::Unreadable(_))
        ));
    }

    #[test]
    fn content_types() {
        assert_eq!(
            body_kind(Some("application/json; charset=utf-8")).unwrap(),
            BodyKind::Json
        );
        assert_eq!(
            body_kind(Some("application/x-ndjson")).unwrap(),
            BodyKind::Ndjson
        );
        assert_eq!(body_kind(None).unwrap(), BodyKind::Sniff);
        assert!(matches!(
            body_kind(Some("text/csv")),
            Err(IngestError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            body_kind(Some("application/x-www-form-urlencoded")),
            Err(IngestError::UnsupportedMediaType(_))
        ));
    }
}
