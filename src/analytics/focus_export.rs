//! `/api/v1/export/focus`: Tally's own events as a FinOps FOCUS 1.2 file, so FinOps tools take
//! LLM spend the way they take cloud spend.
//!
//! The question is the costs API's filter (range and dimension filters, project-scoped by the
//! caller) plus a file type. DuckDB writes the file (`COPY … TO`, see
//! `store::queries::focus_export`) into a temporary file named by Tally, which is read back
//! and removed. The rows are daily aggregates, so the file stays small next to the events.

use std::path::PathBuf;

use super::costs::QueryError;
use super::params::{self, Filter, ParamError, TimeRange};
use crate::store::queries::focus_export::{self as sql, ExportFormat};
use crate::store::{Store, StoreError};

/// A parsed export request.
#[derive(Debug, Clone)]
pub struct ExportQuery {
    pub range: TimeRange,
    pub filters: Vec<Filter>,
    pub format: ExportFormat,
}

impl ExportQuery {
    /// `from`, `to`, `tz` (for date bounds), `format=csv|parquet` (default csv) and filters by
    /// dimension, like `/api/v1/costs`.
    pub fn parse(pairs: &[(String, String)]) -> Result<ExportQuery, ParamError> {
        for (k, _) in pairs {
            if matches!(k.as_str(), "interval" | "group_by" | "order" | "limit") {
                return Err(ParamError(format!(
                    "{k}: the FOCUS export has one row per day and attribution; it takes from, \
                     to, tz, format and dimension filters"
                )));
            }
        }
        let (common, extras) = params::parse_common(pairs, &["format"], &[])?;
        let mut format = ExportFormat::Csv;
        for (_, v) in extras {
            format = match v.as_str() {
                "csv" => ExportFormat::Csv,
                "parquet" => ExportFormat::Parquet,
                other => {
                    return Err(ParamError(format!(
                        "format: {other:?} must be csv or parquet"
                    )))
                }
            };
        }
        Ok(ExportQuery {
            range: common.range,
            filters: common.filters,
            format,
        })
    }

    pub fn content_type(&self) -> &'static str {
        match self.format {
            ExportFormat::Csv => "text/csv; charset=utf-8",
            ExportFormat::Parquet => "application/vnd.apache.parquet",
        }
    }

    pub fn extension(&self) -> &'static str {
        match self.format {
            ExportFormat::Csv => "csv",
            ExportFormat::Parquet => "parquet",
        }
    }
}

/// Removes the export's temporary file however the request ends.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Writes the export and returns its bytes.
pub async fn export(store: &Store, q: ExportQuery) -> Result<Vec<u8>, QueryError> {
    let tmp = TempFile(std::env::temp_dir().join(format!(
        "tally-focus-{}.{}",
        uuid::Uuid::new_v4().simple(),
        q.extension()
    )));
    let path = tmp.0.clone();
    let bytes = store
        .read(move |conn| {
            sql::copy_to(conn, &q.range, &q.filters, q.format, &path)?;
            std::fs::read(&path)
                .map_err(|e| StoreError::Other(format!("cannot read the export back: {e}")))
        })
        .await?;
    drop(tmp);
    Ok(bytes)
}
