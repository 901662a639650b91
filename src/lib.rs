//! Tally: self-hosted LLM cost attribution and budget analytics.
//!
//! Read in this order: `domain` (the nouns), `ingest` (bodies → events), `pricing` (events →
//! costs), `store` (DuckDB: writer, readers, SQL), `analytics` (questions → answers), `budgets`
//! (budgets, alerts and their delivery), `web` (HTTP), `app` (the server's life). `main.rs` only
//! parses the command line and dispatches.

#![forbid(unsafe_code)]

/// `dec!(1.25)` in unit tests: a decimal literal read from its source text, never via a float.
/// (A local macro instead of `rust_decimal_macros`, whose proc-macro build would change the
/// host dependency graph of test builds and force a second 35-minute DuckDB compile.)
#[cfg(test)]
macro_rules! dec {
    ($($t:tt)+) => {
        <rust_decimal::Decimal as std::str::FromStr>::from_str(
            &stringify!($($t)+).replace(['_', ' '], ""),
        )
        .expect("decimal literal")
    };
}

pub mod analytics;
pub mod app;
pub mod bench;
pub mod billing;
pub mod budgets;
pub mod cli;
pub mod commands;
pub mod config;
pub mod demo;
pub mod domain;
pub mod harness;
pub mod ingest;
pub mod keys;
pub mod load;
pub mod metrics;
pub mod pricing;
pub mod store;
pub mod telemetry;
pub mod web;

/// The package root, for unit tests that read repository files. Read from the environment at
/// run time (cargo sets `CARGO_MANIFEST_DIR` when it runs tests) rather than baked in with
/// `env!`, which goes stale when a shared target directory reuses a binary built in another
/// checkout, and rather than the working directory, which figment's `Jail` moves while the
/// configuration tests run.
#[cfg(test)]
pub(crate) fn test_root() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .expect("cargo sets CARGO_MANIFEST_DIR for tests")
}
