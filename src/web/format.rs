//! `format=json|csv|parquet` on every query endpoint.
//!
//! A handler takes `format` out of its query parameters with [`split`] (so its own strict
//! "unknown parameter" check never sees it), computes its JSON answer as always, and hands that
//! answer to [`respond`] with the key of the answer's row list. CSV and Parquet are made *from
//! the JSON answer itself*, which is what makes the three formats carry the same numbers by
//! construction: every cell is the JSON value's own text (money is already exact decimal text,
//! and `arbitrary_precision` keeps numbers' digits), nested values become compact JSON text and
//! `null` is an empty CSV field or a Parquet NULL.
//!
//! Parquet columns are typed, so that a notebook reading the file gets numbers rather than
//! text: a column whose values are all integers is `BIGINT`, one whose values are all decimal
//! text is `DECIMAL(38, s)` with `s` the largest scale present (an exact cast from the text,
//! never through a float), booleans are `BOOLEAN`, and everything else — and every column named
//! like a group key or an id, whose values only look numeric by accident — is `VARCHAR`.
//!
//! CSV cells of text columns that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab,
//! carriage return first) get a leading `'`, the OWASP advice: attribution values come from
//! ingest bodies, and the people opening exports are not the people who wrote them. Numeric
//! columns are never touched, so a negative difference stays a number.

use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;
use serde_json::{Map, Value};

use super::Error;
use crate::analytics::params::pairs;
use crate::domain::dimension::Dimension;

/// What the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Parquet,
}

/// Parses the raw query string into its pairs without `format`, and the format (JSON when
/// absent). `format` given twice, or an unknown one, is a 400 that names it.
pub fn split(raw_query: Option<&str>) -> Result<(Format, Vec<(String, String)>), Error> {
    let mut format = None;
    let mut rest = Vec::new();
    for (k, v) in pairs(raw_query) {
        if k != "format" {
            rest.push((k, v));
            continue;
        }
        if format.is_some() {
            return Err(Error::BadRequest("format: give it once".into()));
        }
        format = Some(match v.as_str() {
            "json" => Format::Json,
            "csv" => Format::Csv,
            "parquet" => Format::Parquet,
            other => {
                return Err(Error::BadRequest(format!(
                    "format: {other:?}; expected json, csv or parquet"
                )))
            }
        });
    }
    Ok((format.unwrap_or(Format::Json), rest))
}

/// The answer in the asked format. `rows_key` names the answer's array of row objects, `name`
/// the download's file name (`tally-<name>.csv`), and `columns` the preferred column order
/// (columns the rows have beyond it follow in the order JSON gives them, alphabetical).
pub async fn respond(
    format: Format,
    answer: Value,
    rows_key: &str,
    name: &'static str,
    columns: &[String],
) -> Result<Response, Error> {
    if format == Format::Json {
        return Ok(axum::Json(answer).into_response());
    }
    let table = Cells::from_answer(&answer, rows_key, columns)?;
    let (bytes, content_type, ext) = match format {
        Format::Csv => (table.csv()?, "text/csv; charset=utf-8", "csv"),
        Format::Parquet => (
            tokio::task::spawn_blocking(move || table.parquet())
                .await
                .map_err(|e| Error::Internal(anyhow::anyhow!("parquet task: {e}")))??,
            "application/vnd.apache.parquet",
            "parquet",
        ),
        Format::Json => unreachable!("answered above"),
    };
    let mut out = Response::new(Body::from(bytes));
    let headers = out.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // `name` is a constant of the handler, never request text, so the header cannot be forged.
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"tally-{name}.{ext}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(out)
}

/// A preferred column order from names.
pub fn columns(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// The answer's `group_by` names (grouped answers list their keys first).
pub fn group_keys(answer: &Value) -> Vec<String> {
    answer
        .get("group_by")
        .and_then(Value::as_array)
        .map(|keys| {
            keys.iter()
                .filter_map(|k| k.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `{outer: [{…, inner: [r…]}]}` as `{"rows": [{prefix+field…, r…}]}`: one row per inner row
/// with its parent's scalar fields beside it (prefixed), and one row of the parent's fields
/// alone when it has no inner rows, so that no parent disappears from a file.
pub fn flatten(answer: &Value, outer: &str, inner: &str, prefix: &str) -> Value {
    let mut rows = Vec::new();
    for parent in answer
        .get(outer)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(fields) = parent.as_object() else {
            continue;
        };
        let mut head = Map::new();
        for (k, v) in fields {
            if k != inner {
                head.insert(format!("{prefix}{k}"), v.clone());
            }
        }
        let children = fields.get(inner).and_then(Value::as_array);
        if children.is_none_or(|c| c.is_empty()) {
            rows.push(Value::Object(head));
            continue;
        }
        for child in children.into_iter().flatten() {
            let mut row = head.clone();
            if let Some(c) = child.as_object() {
                row.extend(c.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            rows.push(Value::Object(row));
        }
    }
    serde_json::json!({ "rows": rows })
}

/// How a column is written to Parquet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Integer,
    /// Exact decimal with this many places.
    Decimal(u32),
    Boolean,
}

/// An answer's rows as columns of text cells (`None` for null), with each column's kind.
struct Cells {
    columns: Vec<String>,
    kinds: Vec<Kind>,
    rows: Vec<Vec<Option<String>>>,
}

impl Cells {
    fn from_answer(answer: &Value, rows_key: &str, preferred: &[String]) -> Result<Cells, Error> {
        let rows = answer
            .get(rows_key)
            .and_then(Value::as_array)
            .ok_or_else(|| {
                Error::Internal(anyhow::anyhow!("the answer has no {rows_key:?} array"))
            })?;
        let empty = Map::new();
        let objects: Vec<&Map<String, Value>> = rows
            .iter()
            .map(|r| r.as_object().unwrap_or(&empty))
            .collect();
        let mut columns: Vec<String> = preferred.to_vec();
        for o in &objects {
            for k in o.keys() {
                if !columns.contains(k) {
                    columns.push(k.clone());
                }
            }
        }
        let kinds = columns
            .iter()
            .map(|c| kind_of(c, objects.iter().filter_map(|o| o.get(c))))
            .collect();
        let rows = objects
            .iter()
            .map(|o| columns.iter().map(|c| o.get(c).and_then(cell)).collect())
            .collect();
        Ok(Cells {
            columns,
            kinds,
            rows,
        })
    }

    fn csv(&self) -> Result<Vec<u8>, Error> {
        let fail = |e: csv::Error| Error::Internal(anyhow::anyhow!("writing CSV: {e}"));
        let mut w = csv::Writer::from_writer(Vec::new());
        if !self.columns.is_empty() {
            w.write_record(&self.columns).map_err(fail)?;
        }
        for row in &self.rows {
            let cells = row.iter().zip(&self.kinds).map(|(c, kind)| match c {
                None => String::new(),
                Some(s) if *kind == Kind::Text && formula_like(s) => format!("'{s}"),
                Some(s) => s.clone(),
            });
            w.write_record(cells).map_err(fail)?;
        }
        w.into_inner()
            .map_err(|e| Error::Internal(anyhow::anyhow!("writing CSV: {e}")))
    }

    /// Writes the table through a private in-memory DuckDB (the store is not touched) into a
    /// temporary Parquet file and returns its bytes.
    fn parquet(&self) -> Result<Vec<u8>, Error> {
        let fail = |e: duckdb::Error| Error::Internal(anyhow::anyhow!("writing Parquet: {e}"));
        let conn = duckdb::Connection::open_in_memory().map_err(fail)?;
        // Parquet cannot have zero columns; an answer without rows or known columns has one.
        let placeholder = ["no_rows".to_string()];
        let columns = if self.columns.is_empty() {
            &placeholder[..]
        } else {
            &self.columns[..]
        };
        // Column names come from the answer's keys; quoted as identifiers, `"` doubled.
        let quoted: Vec<String> = columns
            .iter()
            .map(|c| format!("\"{}\"", c.replace('"', "\"\"")))
            .collect();
        let defs: Vec<String> = quoted.iter().map(|q| format!("{q} VARCHAR")).collect();
        conn.execute_batch(&format!("CREATE TABLE cells ({})", defs.join(", ")))
            .map_err(fail)?;
        {
            let mut app = conn.appender("cells").map_err(fail)?;
            for row in &self.rows {
                let params: Vec<&dyn duckdb::ToSql> =
                    row.iter().map(|c| c as &dyn duckdb::ToSql).collect();
                app.append_row(params.as_slice()).map_err(fail)?;
            }
            app.flush().map_err(fail)?;
        }
        let select: Vec<String> = quoted
            .iter()
            .zip(self.kinds.iter().chain(std::iter::repeat(&Kind::Text)))
            .map(|(q, kind)| match kind {
                Kind::Text => q.clone(),
                Kind::Integer => format!("CAST({q} AS BIGINT) AS {q}"),
                Kind::Boolean => format!("CAST({q} AS BOOLEAN) AS {q}"),
                Kind::Decimal(s) => format!("CAST({q} AS DECIMAL(38, {s})) AS {q}"),
            })
            .collect();
        let path = std::env::temp_dir().join(format!(
            "tally-export-{}.parquet",
            uuid::Uuid::new_v4().simple()
        ));
        let literal = path.to_string_lossy().replace('\'', "''");
        let written = conn
            .execute_batch(&format!(
                "COPY (SELECT {} FROM cells) TO '{literal}' (FORMAT PARQUET)",
                select.join(", ")
            ))
            .map_err(fail)
            .and_then(|()| {
                std::fs::read(&path)
                    .map_err(|e| Error::Internal(anyhow::anyhow!("reading the Parquet file: {e}")))
            });
        let _ = std::fs::remove_file(&path);
        written
    }
}

/// One JSON value as the text a file carries: the value's own digits, never re-formatted.
fn cell(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(_) | Value::Object(_) => Some(v.to_string()),
    }
}

/// The kind a column's values allow. Group keys and ids are text whatever they look like: a
/// customer id `1001` is a name, not a quantity.
fn kind_of<'a>(column: &str, values: impl Iterator<Item = &'a Value>) -> Kind {
    if column.parse::<Dimension>().is_ok()
        || column == "id"
        || column.ends_with("_id")
        || column == "bucket"
    {
        return Kind::Text;
    }
    let mut kind: Option<Kind> = None;
    for v in values {
        let this = match v {
            Value::Null => continue,
            Value::Bool(_) => Kind::Boolean,
            Value::Number(n) if n.is_i64() => Kind::Integer,
            Value::String(s) => match decimal_scale(s) {
                Some(scale) => Kind::Decimal(scale),
                None => return Kind::Text,
            },
            // Floats (none of the answers have money as one) and nested values stay text.
            _ => return Kind::Text,
        };
        kind = Some(match (kind, this) {
            (None, k) => k,
            (Some(Kind::Decimal(a)), Kind::Decimal(b)) => Kind::Decimal(a.max(b)),
            (Some(a), b) if a == b => a,
            _ => return Kind::Text,
        });
    }
    // A column of nothing but nulls carries no type; text is the honest choice.
    kind.unwrap_or(Kind::Text)
}

/// The scale of plain decimal text (`-12.340` → 3), or `None` when the text is not one: no
/// exponents, no spaces, digits that fit `DECIMAL(38, s)`.
fn decimal_scale(s: &str) -> Option<u32> {
    let body = s.strip_prefix('-').unwrap_or(s);
    if body.is_empty() || !body.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let d: Decimal = s.parse().ok()?;
    let scale = d.scale();
    let int_digits = body
        .split('.')
        .next()
        .map_or(0, |i| i.trim_start_matches('0').len());
    (int_digits as u32 + scale <= 38).then_some(scale)
}

/// Text a spreadsheet would evaluate.
fn formula_like(s: &str) -> bool {
    s.starts_with(['=', '+', '-', '@', '\t', '\r'])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn format_is_taken_out_and_checked() {
        let (f, rest) = split(Some("group_by=model&format=csv&limit=5")).unwrap();
        assert_eq!(f, Format::Csv);
        assert_eq!(
            rest,
            vec![
                ("group_by".to_string(), "model".to_string()),
                ("limit".to_string(), "5".to_string())
            ]
        );
        assert_eq!(split(None).unwrap().0, Format::Json);
        assert_eq!(split(Some("format=parquet")).unwrap().0, Format::Parquet);
        assert!(split(Some("format=xml")).is_err());
        assert!(split(Some("format=csv&format=json")).is_err());
    }

    #[test]
    fn kinds_follow_values_but_ids_and_keys_stay_text() {
        let k = |c: &str, vs: Vec<Value>| kind_of(c, vs.iter());
        assert_eq!(
            k("cost", vec![json!("1.5"), json!("-0.001"), json!(null)]),
            Kind::Decimal(3)
        );
        assert_eq!(k("requests", vec![json!(3), json!(0)]), Kind::Integer);
        assert_eq!(k("ok", vec![json!(true)]), Kind::Boolean);
        assert_eq!(k("customer_id", vec![json!("1001")]), Kind::Text);
        assert_eq!(k("feature", vec![json!("2024")]), Kind::Text);
        assert_eq!(k("run_id", vec![json!("7")]), Kind::Text);
        assert_eq!(k("note", vec![json!("1.5"), json!("n/a")]), Kind::Text);
        assert_eq!(k("mixed", vec![json!(1), json!("1.5")]), Kind::Text);
        assert_eq!(k("empty", vec![json!(null)]), Kind::Text);
        assert_eq!(k("exp", vec![json!("1e5")]), Kind::Text);
        assert_eq!(k("nested", vec![json!([1, 2])]), Kind::Text);
    }

    #[test]
    fn csv_guards_formulas_in_text_but_not_numbers() {
        let answer = json!({"rows": [
            {"feature": "=HYPERLINK(\"x\")", "difference": "-1.25"},
            {"feature": "search", "difference": "2"},
        ]});
        let cells = Cells::from_answer(&answer, "rows", &["feature".into()]).unwrap();
        let text = String::from_utf8(cells.csv().unwrap()).unwrap();
        assert_eq!(
            text,
            "feature,difference\n\"'=HYPERLINK(\"\"x\"\")\",-1.25\nsearch,2\n"
        );
    }
}
