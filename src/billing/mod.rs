//! Provider billing: the providers' own billing and usage exports, read into billing lines that
//! are kept apart from events and compared with them (see `analytics::reconciliation`).
//!
//! One parser per format: [`openai_costs`] (Costs API pages and the cost CSV export),
//! [`openai_usage`] (Usage API completions buckets), [`anthropic_cost`] (`cost_report`, amounts
//! in cents), [`anthropic_usage`] (`usage_report/messages`), [`focus`] (FinOps FOCUS 1.0–1.3,
//! CSV or Parquet) and [`csv`] (any CSV with a column mapping). [`pages`] walks the JSON reports'
//! pages and buckets, [`rows`] reads tables (CSV, and Parquet through DuckDB's `read_parquet`);
//! [`model`] is what they produce, [`import`] parses and hands the result to the one writer.
//!
//! Parsing is pure CPU work: no database writes, no network. A bad line becomes a
//! [`model::LineReject`] naming its line, field and reason, and never stops the good lines;
//! only a body that cannot be read at all, or a bad parameter, is an [`ImportError`].

pub mod anthropic_cost;
pub mod anthropic_usage;
pub mod csv;
pub mod focus;
pub mod import;
pub mod model;
pub mod openai_costs;
pub mod openai_usage;
pub mod pages;
pub mod rows;

use std::fmt;
use std::str::FromStr;

use crate::store::StoreError;
pub use model::{CostLine, Ctx, LineReject, ParsedImport, UsageLine};

/// Why a whole import was refused.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// 400: a query parameter (format, mapping, …) is wrong.
    #[error("{0}")]
    BadParameter(String),
    /// 400: the body cannot be read in the format's encoding.
    #[error("{0}")]
    Unreadable(String),
    /// 413: over a size or count limit.
    #[error("{0}")]
    TooLarge(String),
    /// 415: a content type the format does not come in.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 403: the key may not write to the project asked for.
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<crate::ingest::IngestError> for ImportError {
    fn from(e: crate::ingest::IngestError) -> Self {
        use crate::ingest::IngestError as E;
        match e {
            E::Unreadable(m) => ImportError::Unreadable(m),
            E::TooLarge(m) => ImportError::TooLarge(m),
            E::UnsupportedMediaType(m) => ImportError::UnsupportedMediaType(m),
            E::BadParameter(m) => ImportError::BadParameter(m),
        }
    }
}

/// The export formats Tally reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    OpenAiCosts,
    OpenAiUsage,
    AnthropicCost,
    AnthropicUsage,
    Focus,
    Csv,
}

/// Whether a format carries money or volumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// Billing lines with amounts.
    Cost,
    /// Usage lines with token and request counts, no money.
    Usage,
}

impl LineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LineKind::Cost => "cost",
            LineKind::Usage => "usage",
        }
    }
}

impl Format {
    pub const ALL: [Format; 6] = [
        Format::OpenAiCosts,
        Format::OpenAiUsage,
        Format::AnthropicCost,
        Format::AnthropicUsage,
        Format::Focus,
        Format::Csv,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Format::OpenAiCosts => "openai-costs",
            Format::OpenAiUsage => "openai-usage",
            Format::AnthropicCost => "anthropic-cost",
            Format::AnthropicUsage => "anthropic-usage",
            Format::Focus => "focus",
            Format::Csv => "csv",
        }
    }

    pub fn kind(self) -> LineKind {
        match self {
            Format::OpenAiUsage | Format::AnthropicUsage => LineKind::Usage,
            _ => LineKind::Cost,
        }
    }

    /// The body encodings the format comes in.
    fn accepts(self, body: Body) -> bool {
        matches!(
            (self, body),
            (Format::OpenAiCosts, Body::Json | Body::Csv)
                | (
                    Format::OpenAiUsage | Format::AnthropicCost | Format::AnthropicUsage,
                    Body::Json
                )
                | (Format::Focus, Body::Csv | Body::Parquet)
                | (Format::Csv, Body::Csv)
        )
    }

    fn encodings(self) -> &'static str {
        match self {
            Format::OpenAiCosts => "JSON pages or the cost CSV export",
            Format::OpenAiUsage | Format::AnthropicCost | Format::AnthropicUsage => {
                "JSON pages (one page, an array of pages, or one page per line)"
            }
            Format::Focus => "CSV or Parquet",
            Format::Csv => "CSV",
        }
    }

    fn names() -> String {
        Format::ALL.map(Format::name).join(", ")
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = ImportError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                ImportError::BadParameter(format!(
                    "format: unknown billing format {s:?}; expected one of {}",
                    Format::names()
                ))
            })
    }
}

/// What a body is, as announced by its content type or found by looking at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    Json,
    Csv,
    Parquet,
    /// Not announced: decided from the bytes.
    Sniff,
}

/// Maps a `Content-Type` to a body kind; types no billing format comes in are 415.
pub fn body_kind(content_type: Option<&str>) -> Result<Body, ImportError> {
    let essence = content_type
        .and_then(|raw| raw.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "" | "application/octet-stream" => Ok(Body::Sniff),
        "application/json"
        | "text/json"
        | "application/x-ndjson"
        | "application/ndjson"
        | "application/jsonl"
        | "application/x-jsonlines"
        | "application/jsonlines" => Ok(Body::Json),
        "text/csv" | "application/csv" | "text/comma-separated-values" | "text/plain" => {
            Ok(Body::Csv)
        }
        "application/vnd.apache.parquet" | "application/x-parquet" | "application/parquet" => {
            Ok(Body::Parquet)
        }
        other => Err(ImportError::UnsupportedMediaType(format!(
            "Content-Type {other:?} is not accepted for billing imports; use application/json, \
             text/csv, application/vnd.apache.parquet or application/octet-stream"
        ))),
    }
}

/// Parquet files start (and end) with these four bytes.
const PARQUET_MAGIC: &[u8] = b"PAR1";

/// Decides what the body is: the announced kind, checked against the bytes.
fn resolve_body(bytes: &[u8], announced: Body) -> Result<Body, ImportError> {
    let is_parquet = bytes.starts_with(PARQUET_MAGIC);
    let first = bytes
        .iter()
        .copied()
        .find(|b| !b.is_ascii_whitespace() && *b != 0xEF && *b != 0xBB && *b != 0xBF);
    let looks_json = matches!(first, Some(b'{' | b'['));
    match announced {
        Body::Sniff if is_parquet => Ok(Body::Parquet),
        Body::Sniff if looks_json => Ok(Body::Json),
        Body::Sniff => Ok(Body::Csv),
        Body::Parquet if !is_parquet => Err(ImportError::Unreadable(
            "the body was sent as Parquet but is not a Parquet file (no PAR1 header)".into(),
        )),
        Body::Json | Body::Csv if is_parquet => Err(ImportError::Unreadable(
            "the body is a Parquet file; send it as application/vnd.apache.parquet".into(),
        )),
        other => Ok(other),
    }
}

/// How the `csv` format maps columns to billing-line fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CsvMapping {
    /// Column of the period start (a date or a timestamp). Required.
    pub date_column: String,
    /// Column of the period end; without it a line lasts one `period`.
    pub end_date_column: Option<String>,
    /// Column of the amount, in major units. Required.
    pub amount_column: String,
    /// Column of the currency code, or …
    pub currency_column: Option<String>,
    /// … the currency of every line (used when the column is absent or a cell is empty).
    pub currency: Option<String>,
    pub provider_column: Option<String>,
    /// Provider of every line (used when the column is absent or a cell is empty).
    pub provider: Option<String>,
    pub model_column: Option<String>,
    /// Column of the provider's project / sub-account (not Tally's project).
    pub project_column: Option<String>,
    pub quantity_column: Option<String>,
    pub unit_column: Option<String>,
    pub unit: Option<String>,
    pub line_item_column: Option<String>,
    /// How long a line lasts when there is no end column.
    pub period: Period,
    /// strftime format of the date columns, when they are in none of the usual encodings.
    pub date_format: Option<String>,
}

/// Length of a CSV line's period when the file has no end column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Period {
    Hour,
    #[default]
    Day,
    Month,
}

impl FromStr for Period {
    type Err = ImportError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "hour" => Ok(Period::Hour),
            "day" => Ok(Period::Day),
            "month" => Ok(Period::Month),
            other => Err(ImportError::BadParameter(format!(
                "period: {other:?} must be hour, day or month"
            ))),
        }
    }
}

/// Everything an import request says besides its body.
#[derive(Debug, Clone)]
pub struct Options {
    pub format: Format,
    /// Tally project asked for (admins only; a project key's own project otherwise).
    pub project: Option<String>,
    /// A name to remember the import by (the CLI sends the file name).
    pub file_name: Option<String>,
    /// CSV field separator (CSV bodies of every format).
    pub delimiter: u8,
    /// FOCUS: keep rows of every service, not only `AI and Machine Learning` ones.
    pub all_services: bool,
    pub csv: Option<CsvMapping>,
    /// The parameters that change how the body is read, for the content hash.
    canonical: String,
}

/// Parameters of the `csv` mapping.
const CSV_PARAMS: &[&str] = &[
    "date_column",
    "end_date_column",
    "amount_column",
    "currency_column",
    "currency",
    "provider_column",
    "provider",
    "model_column",
    "project_column",
    "quantity_column",
    "unit_column",
    "unit",
    "line_item_column",
    "period",
    "date_format",
];

impl Options {
    /// Reads the query parameters of `POST /v1/billing` (and `tally import`'s options).
    pub fn parse(pairs: &[(String, String)]) -> Result<Options, ImportError> {
        let mut format = None;
        let mut project = None;
        let mut file_name = None;
        let mut rest: Vec<(String, String)> = Vec::new();
        for (k, v) in pairs {
            match k.as_str() {
                "format" => format = Some(v.parse::<Format>()?),
                "project" => project = Some(v.trim().to_string()).filter(|p| !p.is_empty()),
                "file_name" => file_name = Some(v.trim().to_string()).filter(|p| !p.is_empty()),
                _ => {
                    if rest.iter().any(|(seen, _)| seen == k) {
                        return Err(ImportError::BadParameter(format!("{k}: given twice")));
                    }
                    rest.push((k.clone(), v.clone()))
                }
            }
        }
        let format = format.ok_or_else(|| {
            ImportError::BadParameter(format!("format: required; one of {}", Format::names()))
        })?;
        let mut allowed: Vec<&str> = vec!["format", "project", "file_name"];
        if matches!(format, Format::OpenAiCosts | Format::Focus | Format::Csv) {
            allowed.push("delimiter");
        }
        if format == Format::Focus {
            allowed.push("all_services");
        }
        if format == Format::Csv {
            allowed.extend_from_slice(CSV_PARAMS);
        }
        let unknown: Vec<&str> = rest
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !allowed.contains(k))
            .collect();
        if !unknown.is_empty() {
            return Err(ImportError::BadParameter(format!(
                "unknown parameter{} {} for format {format}; expected {}",
                if unknown.len() > 1 { "s" } else { "" },
                unknown.join(", "),
                allowed.join(", ")
            )));
        }
        let get = |name: &str| {
            rest.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let delimiter = match get("delimiter").as_deref() {
            None | Some(",") => b',',
            Some(";") => b';',
            Some("tab") | Some("\t") => b'\t',
            Some("|") => b'|',
            Some(other) => {
                return Err(ImportError::BadParameter(format!(
                    "delimiter: {other:?} must be one of , ; | tab"
                )))
            }
        };
        let all_services = match get("all_services").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(ImportError::BadParameter(format!(
                    "all_services: {other:?} must be true or false"
                )))
            }
        };
        let csv = if format == Format::Csv {
            Some(csv_mapping(&get)?)
        } else {
            None
        };
        let mut canonical: Vec<String> = rest.iter().map(|(k, v)| format!("{k}={v}")).collect();
        canonical.sort();
        Ok(Options {
            format,
            project,
            file_name,
            delimiter,
            all_services,
            csv,
            canonical: canonical.join("&"),
        })
    }

    /// The parameters that change how a body is read, as one stable string.
    pub fn canonical(&self) -> String {
        format!("{}?{}", self.format, self.canonical)
    }
}

fn csv_mapping(get: &dyn Fn(&str) -> Option<String>) -> Result<CsvMapping, ImportError> {
    let required = |name: &str| {
        get(name).ok_or_else(|| {
            ImportError::BadParameter(format!(
                "{name}: required for format csv (the header of the column that holds it)"
            ))
        })
    };
    let currency = get("currency")
        .map(|c| {
            model::currency("currency", Some(&c))
                .map_err(|e| ImportError::BadParameter(e.to_string()))
        })
        .transpose()?;
    let mapping = CsvMapping {
        date_column: required("date_column")?,
        end_date_column: get("end_date_column"),
        amount_column: required("amount_column")?,
        currency_column: get("currency_column"),
        currency,
        provider_column: get("provider_column"),
        provider: get("provider"),
        model_column: get("model_column"),
        project_column: get("project_column"),
        quantity_column: get("quantity_column"),
        unit_column: get("unit_column"),
        unit: get("unit"),
        line_item_column: get("line_item_column"),
        period: get("period")
            .map(|p| p.parse())
            .transpose()?
            .unwrap_or_default(),
        date_format: get("date_format"),
    };
    if mapping.currency_column.is_none() && mapping.currency.is_none() {
        return Err(ImportError::BadParameter(
            "currency: format csv needs currency_column=<column> or currency=<ISO code> (Tally \
             never assumes a currency)"
                .into(),
        ));
    }
    if mapping.provider_column.is_none() && mapping.provider.is_none() {
        return Err(ImportError::BadParameter(
            "provider: format csv needs provider_column=<column> or provider=<name>".into(),
        ));
    }
    Ok(mapping)
}

/// Parses a decoded body in the format `opts` names.
pub fn parse(
    bytes: &[u8],
    announced: Body,
    opts: &Options,
    ctx: &Ctx<'_>,
) -> Result<ParsedImport, ImportError> {
    let body = resolve_body(bytes, announced)?;
    if !opts.format.accepts(body) {
        return Err(ImportError::UnsupportedMediaType(format!(
            "format {} comes as {}; this body is {}",
            opts.format,
            opts.format.encodings(),
            match body {
                Body::Json => "JSON",
                Body::Csv => "CSV (or not JSON)",
                Body::Parquet => "Parquet",
                Body::Sniff => "unknown",
            }
        )));
    }
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ImportError::Unreadable("body is empty".into()));
    }
    let text = || {
        std::str::from_utf8(bytes).map_err(|e| {
            ImportError::Unreadable(format!(
                "body is not valid UTF-8 (byte {})",
                e.valid_up_to()
            ))
        })
    };
    let table = |ctx: &Ctx<'_>| match body {
        Body::Parquet => rows::read_parquet(bytes, ctx),
        _ => rows::read_csv(bytes, opts.delimiter, ctx),
    };
    match (opts.format, body) {
        (Format::OpenAiCosts, Body::Json) => openai_costs::parse_json(text()?, ctx),
        (Format::OpenAiCosts, _) => openai_costs::parse_table(&table(ctx)?, ctx),
        (Format::OpenAiUsage, _) => openai_usage::parse(text()?, ctx),
        (Format::AnthropicCost, _) => anthropic_cost::parse(text()?, ctx),
        (Format::AnthropicUsage, _) => anthropic_usage::parse(text()?, ctx),
        (Format::Focus, _) => focus::parse(&table(ctx)?, opts.all_services, ctx),
        (Format::Csv, _) => {
            let mapping = opts.csv.as_ref().ok_or_else(|| {
                ImportError::BadParameter("csv: the column mapping is missing".into())
            })?;
            csv::parse(&table(ctx)?, mapping, ctx)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        crate::analytics::params::pairs(Some(q))
    }

    #[test]
    fn options_name_what_is_wrong() {
        let err = |q: &str| Options::parse(&pairs(q)).unwrap_err().to_string();
        assert!(err("").contains("format: required"));
        assert!(err("format=stripe").contains("stripe"));
        assert!(err("format=openai-usage&delimiter=;").contains("delimiter"));
        assert!(err("format=csv&amount_column=Cost").contains("date_column"));
        assert!(
            err("format=csv&date_column=D&amount_column=C&provider=openai").contains("currency")
        );
        assert!(err("format=csv&date_column=D&amount_column=C&currency=EUR").contains("provider"));
        assert!(
            err("format=csv&date_column=D&amount_column=C&currency=euro&provider=x")
                .contains("euro")
        );
        assert!(err("format=focus&all_services=maybe").contains("all_services"));
        assert!(err("format=focus&x=1&x=2").contains("x"));
        let o = Options::parse(&pairs(
            "format=csv&date_column=Day&amount_column=Cost&currency=eur&provider=mistral&delimiter=%3B",
        ))
        .unwrap();
        assert_eq!(o.delimiter, b';');
        assert_eq!(o.csv.unwrap().currency.as_deref(), Some("EUR"));
    }

    #[test]
    fn the_hash_key_ignores_project_and_name_but_not_the_mapping() {
        let c = |q: &str| Options::parse(&pairs(q)).unwrap().canonical();
        assert_eq!(
            c("format=focus&project=a&file_name=x.csv"),
            c("format=focus&project=b")
        );
        assert_ne!(c("format=focus"), c("format=focus&all_services=true"));
    }

    #[test]
    fn bodies_are_checked_against_what_they_claim() {
        assert_eq!(
            resolve_body(b"PAR1....", Body::Sniff).unwrap(),
            Body::Parquet
        );
        assert_eq!(
            resolve_body(b"  {\"a\":1}", Body::Sniff).unwrap(),
            Body::Json
        );
        assert_eq!(resolve_body(b"a,b\n1,2", Body::Sniff).unwrap(), Body::Csv);
        assert!(resolve_body(b"a,b", Body::Parquet).is_err());
        assert!(resolve_body(b"PAR1", Body::Json).is_err());
        assert!(matches!(
            body_kind(Some("image/png")),
            Err(ImportError::UnsupportedMediaType(_))
        ));
        assert_eq!(
            body_kind(Some("text/csv; charset=utf-8")).unwrap(),
            Body::Csv
        );
    }
}
