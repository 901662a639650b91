//! Errors of the pricing module: bad upstream data, a bad catalog, a bad operator config.
//!
//! Each variant carries what a person needs to fix the input (the upstream path, the catalog
//! entry, the config entry and field). Pricing an event never fails with an error: an event
//! that cannot be priced gets an `unpriced_reason` instead.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum PricingError {
    /// The upstream genai-prices data is not what the generator understands.
    #[error("genai-prices data, {path}: {message}")]
    Upstream { path: String, message: String },

    /// A catalog file is not valid JSON of the catalog shape.
    #[error("catalog JSON: {0}")]
    CatalogJson(#[source] serde_json::Error),

    /// A catalog parsed but breaks an invariant (unknown fallback provider, bad regex, …).
    #[error("catalog: {0}")]
    Catalog(String),

    /// An entry of the `[pricing]` config is invalid.
    #[error("pricing.{entry}.{field}: {message}")]
    Config {
        /// e.g. `custom[2]`, `discounts[0]`.
        entry: String,
        field: &'static str,
        message: String,
    },

    /// A file the generator needs could not be read.
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}
