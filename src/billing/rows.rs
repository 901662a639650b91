//! Tables: CSV files, and Parquet files read through DuckDB's own `read_parquet`.
//!
//! Both become one [`Table`] of text cells addressed by header name, so the tabular parsers
//! (OpenAI's cost CSV, FOCUS, mapped CSV) have one code path whatever the file type. Cells keep
//! their exact text: Parquet values are turned into JSON by DuckDB (`to_json`), whose numbers
//! carry every digit of a DECIMAL column, and are read back without a float. A row that cannot
//! be read (wrong number of cells, invalid UTF-8) is a reject of its own; the file only fails as
//! a whole when it has no header or cannot be opened at all.
//!
//! A row's line is its line in the CSV file (the header is line 1), or its 1-based row number
//! in a Parquet file.

use std::path::PathBuf;

use duckdb::Connection;
use serde_json::Value;

use super::model::{Ctx, LineReject, ParsedImport};
use super::pages::scalar_text;
use super::ImportError;
use crate::ingest::fields::FieldError;

/// A table of text cells.
#[derive(Debug, Default)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Row>,
    /// Rows that could not be read at all.
    pub rejects: Vec<LineReject>,
}

/// One row.
#[derive(Debug)]
pub struct Row {
    pub line: usize,
    pub cells: Vec<Option<String>>,
    /// The row as it was in the file (the CSV line, or the Parquet row as JSON).
    pub raw: String,
}

impl Table {
    /// Index of a column by name: exact first, then ignoring case and surrounding blanks.
    pub fn col(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name).or_else(|| {
            self.columns
                .iter()
                .position(|c| c.trim().eq_ignore_ascii_case(name.trim()))
        })
    }

    /// Indexes of columns that must exist; a 400 naming every missing one otherwise.
    pub fn require(&self, what: &str, names: &[&str]) -> Result<Vec<usize>, ImportError> {
        let missing: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| self.col(n).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(ImportError::Unreadable(format!(
                "{what}: the file has no column{} {}; its columns are: {}",
                if missing.len() > 1 { "s" } else { "" },
                missing.join(", "),
                self.columns.join(", ")
            )));
        }
        Ok(names.iter().filter_map(|n| self.col(n)).collect())
    }

    /// Maps every row with `map`, collecting good lines and rejects into a [`ParsedImport`].
    pub fn parse_rows(
        &self,
        ctx: &Ctx<'_>,
        mut map: impl FnMut(&Row, &mut ParsedImport) -> Result<(), FieldError>,
    ) -> ParsedImport {
        let mut out = ParsedImport {
            rejects: self.rejects.clone(),
            records: self.rows.len() + self.rejects.len(),
            ..ParsedImport::default()
        };
        let total = self.rows.len() as u64;
        for (i, row) in self.rows.iter().enumerate() {
            if i % 1024 == 0 {
                ctx.report(i as u64, total);
            }
            if let Err(e) = map(row, &mut out) {
                out.rejects
                    .push(LineReject::new(row.line, e, row.raw.clone()));
            }
        }
        ctx.report(total, total);
        out.rejects.sort_by_key(|r| r.line);
        out
    }
}

impl Row {
    /// A cell's trimmed text; empty cells and absent columns are `None`.
    pub fn get(&self, col: Option<usize>) -> Option<&str> {
        col.and_then(|i| self.cells.get(i))
            .and_then(|c| c.as_deref())
            .map(str::trim)
            .filter(|c| !c.is_empty())
    }
}

/// Reads a CSV body with a header row.
pub fn read_csv(bytes: &[u8], delimiter: u8, ctx: &Ctx<'_>) -> Result<Table, ImportError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .has_headers(true)
        .from_reader(bytes);
    let header = reader
        .byte_headers()
        .map_err(|e| ImportError::Unreadable(format!("CSV header cannot be read: {e}")))?
        .clone();
    let columns: Vec<String> = header
        .iter()
        .map(|h| String::from_utf8_lossy(h).trim().to_string())
        .collect();
    if columns.iter().all(String::is_empty) {
        return Err(ImportError::Unreadable(
            "CSV has no header row (the first line must name the columns)".into(),
        ));
    }
    let mut table = Table {
        columns,
        ..Table::default()
    };
    let total = bytes.len() as u64;
    let mut record = csv::ByteRecord::new();
    loop {
        let read = reader.read_byte_record(&mut record);
        let (line, start) = match record.position() {
            Some(p) => (p.line() as usize, p.byte() as usize),
            None => (0, 0),
        };
        match read {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                // The reader resumes after a bad record; keep its line as a reject.
                table.rejects.push(LineReject::new(
                    line,
                    FieldError::new("(row)", format!("unreadable CSV: {e}")),
                    String::new(),
                ));
                continue;
            }
        }
        let end = reader.position().byte() as usize;
        let raw = String::from_utf8_lossy(bytes.get(start..end).unwrap_or_default())
            .trim_end_matches(['\r', '\n'])
            .to_string();
        if table.rows.len() + table.rejects.len() >= ctx.max_records {
            return Err(ImportError::TooLarge(format!(
                "more than {} lines in one import (ingest.max_records); split the file",
                ctx.max_records
            )));
        }
        if table.rows.len().is_multiple_of(4096) {
            ctx.report(end as u64, total);
        }
        if record.iter().all(|c| c.iter().all(u8::is_ascii_whitespace)) {
            continue; // blank line
        }
        if record.len() != table.columns.len() {
            table.rejects.push(LineReject::new(
                line,
                FieldError::new(
                    "(row)",
                    format!(
                        "has {} cells; the header has {} columns",
                        record.len(),
                        table.columns.len()
                    ),
                ),
                raw,
            ));
            continue;
        }
        let mut cells = Vec::with_capacity(record.len());
        let mut bad = None;
        for (i, cell) in record.iter().enumerate() {
            match std::str::from_utf8(cell) {
                Ok(s) => cells.push(Some(s.to_string())),
                Err(_) => {
                    bad = Some(table.columns.get(i).cloned().unwrap_or_default());
                    break;
                }
            }
        }
        if let Some(column) = bad {
            table.rejects.push(LineReject::new(
                line,
                FieldError::new(column, "is not valid UTF-8"),
                raw,
            ));
            continue;
        }
        table.rows.push(Row { line, cells, raw });
    }
    Ok(table)
}

/// Removes a temporary file when dropped, however the read ends.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Reads a Parquet body with DuckDB's built-in reader, in a private in-memory database (the
/// file never touches Tally's own). Every row comes back as JSON text.
pub fn read_parquet(bytes: &[u8], ctx: &Ctx<'_>) -> Result<Table, ImportError> {
    let tmp = TempFile(std::env::temp_dir().join(format!(
        "tally-import-{}.parquet",
        uuid::Uuid::new_v4().simple()
    )));
    std::fs::write(&tmp.0, bytes)
        .map_err(|e| ImportError::Unreadable(format!("cannot stage the Parquet file: {e}")))?;
    let unreadable =
        |e: duckdb::Error| ImportError::Unreadable(format!("Parquet file cannot be read: {e}"));
    let config = duckdb::Config::default()
        .enable_autoload_extension(false)
        .and_then(|c| c.with("memory_limit", "512MB"))
        .map_err(unreadable)?;
    let conn = Connection::open_in_memory_with_flags(config).map_err(unreadable)?;
    let path = tmp.0.to_string_lossy().to_string();
    // The path is Tally's own and bound as a parameter; no file content reaches SQL text.
    let columns: Vec<String> = {
        let mut stmt = conn
            .prepare("SELECT column_name FROM (DESCRIBE SELECT * FROM read_parquet(?))")
            .map_err(unreadable)?;
        let names = stmt
            .query_map([&path], |r| r.get::<_, String>(0))
            .map_err(unreadable)?;
        names.collect::<Result<_, _>>().map_err(unreadable)?
    };
    let total: i64 = conn
        .query_row("SELECT count(*) FROM read_parquet(?)", [&path], |r| {
            r.get(0)
        })
        .map_err(unreadable)?;
    if total as usize > ctx.max_records {
        return Err(ImportError::TooLarge(format!(
            "{total} rows is more than {} lines in one import (ingest.max_records); split the file",
            ctx.max_records
        )));
    }
    let mut table = Table {
        columns: columns.clone(),
        ..Table::default()
    };
    let mut stmt = conn
        .prepare("SELECT to_json(t)::VARCHAR FROM read_parquet(?) t")
        .map_err(unreadable)?;
    let rows = stmt
        .query_map([&path], |r| r.get::<_, String>(0))
        .map_err(unreadable)?;
    for (i, row) in rows.enumerate() {
        let raw = row.map_err(unreadable)?;
        let line = i + 1;
        if i % 4096 == 0 {
            ctx.report(i as u64, total as u64);
        }
        let value: Value = match serde_json::from_str(&raw) {
            Ok(v) => v,
            Err(e) => {
                table.rejects.push(LineReject::new(
                    line,
                    FieldError::new("(row)", format!("cannot be read: {e}")),
                    raw,
                ));
                continue;
            }
        };
        let cells = columns
            .iter()
            .map(|c| value.get(c).and_then(scalar_text))
            .collect();
        table.rows.push(Row { line, cells, raw });
    }
    Ok(table)
}
