//! `/api/v1/export/focus`: Tally's own events as a FinOps FOCUS 1.2 file, so FinOps tools take
//! LLM spend the way they take cloud spend.
//!
//! The question is the costs API's filter (range and dimension filters, project-scoped by the
//! caller) plus a file type. DuckDB writes the file (`COPY … TO`, see
//! `store::queries::focus_export`) into a temporary file named by Tally, which is opened and
//! removed at once, then streamed from the open handle: the rows are daily aggregates, but one
//! per user, feature, model, … a day, and the response holds a chunk of the file at a time
//! however large it is.

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

/// Writes the export and returns it as an open file, already removed from its directory (it
/// goes when the handle closes), with its length.
pub async fn export(store: &Store, q: ExportQuery) -> Result<(std::fs::File, u64), QueryError> {
    let tmp = TempFile(std::env::temp_dir().join(format!(
        "tally-focus-{}.{}",
        uuid::Uuid::new_v4().simple(),
        q.extension()
    )));
    let path = tmp.0.clone();
    let file = store
        .read(move |conn| {
            sql::copy_to(conn, &q.range, &q.filters, q.format, &path)?;
            let cannot =
                |e: std::io::Error| StoreError::Other(format!("cannot read the export back: {e}"));
            let file = std::fs::File::open(&path).map_err(cannot)?;
            let len = file.metadata().map_err(cannot)?.len();
            Ok((file, len))
        })
        .await?;
    drop(tmp);
    Ok(file)
}
