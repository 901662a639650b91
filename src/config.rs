//! Settings: one typed [`Config`], loaded from defaults, then `tally.toml`, then `TALLY_*`
//! environment variables, then command-line flags (each later source wins).
//!
//! Every setting is documented in the README's configuration table; a test checks that the table
//! and this struct name the same keys. Nested keys map to environment variables with a double
//! underscore: `[ingest] max_body_bytes` is `TALLY_INGEST__MAX_BODY_BYTES`. This module only
//! reads and validates settings; it starts nothing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::analytics::AnalyticsConfig;
use crate::budgets::channel::ChannelSpec;
use crate::budgets::model::BudgetSpec;
use crate::budgets::AlertsConfig;
use crate::pricing::PricingConfig;

/// Everything the server can be told.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: String,
    /// Directory of the DuckDB file (`tally.duckdb`) and its WAL.
    pub data_dir: PathBuf,
    /// Bootstrap admin key, accepted as `Authorization: Bearer <key>` on every endpoint.
    /// Without one the server only runs on a loopback address.
    pub admin_key: Option<String>,
    /// A bearer token that may read `/metrics` and nothing else, for Prometheus; without one
    /// only admin keys may scrape.
    pub metrics_token: Option<String>,
    /// The URL users reach Tally at (used in links the server sends out).
    pub public_url: Option<String>,
    /// How long a dashboard sign-in lasts, in hours.
    pub session_hours: u64,
    /// `text` (default) or `json` log lines.
    pub log_format: LogFormat,
    /// Ingest limits and queueing.
    pub ingest: IngestConfig,
    /// DuckDB and writer settings.
    pub storage: StorageConfig,
    /// Custom prices and discounts that win over the built-in catalog.
    pub pricing: PricingConfig,
    /// Outcome analytics (tasks, runs).
    pub analytics: AnalyticsConfig,
    /// Alert delivery: retry schedule, timeout, snapshot refresh.
    pub alerts: AlertsConfig,
    /// `[[budgets]]`: budgets declared here, applied on start (idempotent by project + name).
    pub budgets: Vec<BudgetSpec>,
    /// `[[channels]]`: alert channels declared here, applied on start before the budgets.
    pub channels: Vec<ChannelSpec>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Limits on what one ingest request may carry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Largest request body as sent (compressed), in bytes.
    pub max_body_bytes: usize,
    /// Largest body after gzip/zstd decompression, in bytes.
    pub max_decompressed_bytes: usize,
    /// Most records one request may carry.
    pub max_records: usize,
    /// Largest `metadata` object of one record, as JSON text, in bytes.
    pub max_metadata_bytes: usize,
    /// Most write requests (`/v1/ingest`, `/v1/outcomes`, `/v1/traces`, `/v1/billing`) read,
    /// parsed and waiting for their commit at once; the rest wait before their body is read.
    pub max_concurrent_requests: usize,
    /// How long a write request waits for one of those slots before it gets 503.
    pub max_wait_ms: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 32 * 1024 * 1024,
            max_decompressed_bytes: 256 * 1024 * 1024,
            max_records: 500_000,
            max_metadata_bytes: 16 * 1024,
            // Two bodies parsed on two cores while two more wait for the writer keeps its
            // group commits full; more only adds memory (docs/benchmarks.md measures it).
            max_concurrent_requests: 4,
            max_wait_ms: 30_000,
        }
    }
}

/// DuckDB and the single writer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// DuckDB memory limit (DuckDB syntax, e.g. `1GB`). DuckDB's own default is 80 % of RAM,
    /// too much for a service sharing its machine. 512 MB keeps the whole process near 1 GiB
    /// while ingesting 10M events (1.64 GiB at 1 GB; queries were as fast either way); the
    /// cost is the unit fold's speed, about 12 % of ingest rate at 10M events
    /// (`docs/benchmarks.md`).
    pub memory_limit: String,
    /// DuckDB worker threads; 0 means one per core.
    pub threads: usize,
    /// Ingest batches that may wait for the writer before requests get 503 + Retry-After.
    pub queue_capacity: usize,
    /// How long a request waits for room in a full queue before it gets 503, in milliseconds.
    pub enqueue_wait_ms: u64,
    /// Most events folded into one group commit.
    pub max_commit_rows: usize,
    /// Checkpoint once the WAL grows past this many bytes (DuckDB skips its own automatic
    /// checkpoints while readers hold transactions, so the writer does it explicitly).
    pub checkpoint_wal_bytes: u64,
    /// Read connections kept open for queries.
    pub read_connections: usize,
    /// Most idempotency keys the writer keeps in memory to de-duplicate without reading the
    /// table (9 bytes a slot of a hash set, about 150 MB at 14M; see `store::dedup`). An event
    /// has two keys and two days of them are kept: 14M holds 100M events a month. Past it the
    /// oldest hours go, and events within a day of them are checked against the table instead:
    /// slower, never wrong.
    pub dedup_index_keys: usize,
    /// Answer from the pre-computed tables — the hourly rollups, the task and run units — when
    /// they can. `false` answers every query from the raw events: slower, for checking them or
    /// measuring against them (`tally bench` does).
    pub use_rollups: bool,
    /// Set by `tally serve --discard-damaged-wal` for one start only, never from a file: a
    /// standing setting would discard the next damaged WAL without anyone deciding to.
    #[serde(skip)]
    pub discard_damaged_wal: bool,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            memory_limit: "512MB".into(),
            threads: 0,
            queue_capacity: 64,
            enqueue_wait_ms: 2000,
            max_commit_rows: 200_000,
            checkpoint_wal_bytes: 64 * 1024 * 1024,
            read_connections: 4,
            dedup_index_keys: 14_000_000,
            use_rollups: true,
            discard_damaged_wal: false,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./data"),
            admin_key: None,
            metrics_token: None,
            public_url: None,
            session_hours: 12,
            log_format: LogFormat::Text,
            ingest: IngestConfig::default(),
            storage: StorageConfig::default(),
            pricing: PricingConfig::default(),
            analytics: AnalyticsConfig::default(),
            alerts: AlertsConfig::default(),
            budgets: Vec::new(),
            channels: Vec::new(),
        }
    }
}

/// Values given on the command line; they win over the file and the environment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CliOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
}

impl Config {
    /// Loads the configuration. `file` is the `--config` path; without it `./tally.toml` is read
    /// when it exists.
    pub fn load(file: Option<&Path>, cli: &CliOverrides) -> anyhow::Result<Config> {
        let top_level: Vec<String> = match serde_json::to_value(Config::default()) {
            Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
            _ => Vec::new(),
        };
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) => {
                if !path.exists() {
                    bail!("config file {} does not exist", path.display());
                }
                figment = figment.merge(Toml::file(path));
            }
            None => {
                let default_path = Path::new("tally.toml");
                if default_path.exists() {
                    figment = figment.merge(Toml::file(default_path));
                }
            }
        }
        let config: Config = figment
            // TALLY_CONFIG names the file itself and TALLY_API_KEY is the key `tally import
            // --url` sends; both are read by the CLI, not settings.
            // Only names whose first part is a setting or section are read (and then strictly,
            // so a misspelt `TALLY_INGEST__MAX_RECORDZ` fails): Kubernetes injects
            // `TALLY_PORT`, `TALLY_SERVICE_HOST`… for a Service named tally, and those must
            // not stop the server.
            .merge(
                Env::prefixed("TALLY_")
                    .split("__")
                    .ignore(&["config", "api_key"])
                    .filter(move |key| {
                        let top = key.as_str().split('.').next().unwrap_or_default();
                        top_level.iter().any(|k| k.eq_ignore_ascii_case(top))
                    }),
            )
            .merge(Serialized::defaults(cli))
            .extract()
            .context("invalid configuration")?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: ranges and relations between settings.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.ingest.max_body_bytes == 0 || self.ingest.max_decompressed_bytes == 0 {
            bail!("ingest.max_body_bytes and ingest.max_decompressed_bytes must be positive");
        }
        if self.ingest.max_records == 0 {
            bail!("ingest.max_records must be positive");
        }
        if self.ingest.max_concurrent_requests == 0 {
            bail!("ingest.max_concurrent_requests must be at least 1");
        }
        if self.storage.queue_capacity == 0 || self.storage.max_commit_rows == 0 {
            bail!("storage.queue_capacity and storage.max_commit_rows must be positive");
        }
        if self.session_hours == 0 || self.session_hours > 24 * 90 {
            bail!("session_hours must be between 1 and 2160 (90 days)");
        }
        if self.storage.read_connections == 0 {
            bail!("storage.read_connections must be at least 1");
        }
        self.alerts.parse().map_err(anyhow::Error::msg)?;
        for (i, b) in self.budgets.iter().enumerate() {
            b.check()
                .map_err(|e| anyhow::anyhow!("budgets[{i}] ({}): {e}", b.name))?;
        }
        for (i, c) in self.channels.iter().enumerate() {
            c.check()
                .map_err(|e| anyhow::anyhow!("channels[{i}] ({}): {e}", c.name))?;
        }
        if self
            .metrics_token
            .as_ref()
            .is_some_and(|t| t.trim().len() < 16)
        {
            bail!("metrics_token must be at least 16 characters");
        }
        if let Some(key) = &self.admin_key {
            if key.trim().len() < 16 {
                bail!("admin_key must be at least 16 characters (generate one with `openssl rand -hex 32`)");
            }
        }
        Ok(())
    }

    /// Path of the DuckDB database file.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("tally.duckdb")
    }
}

/// Resolves the listen address and decides whether the server may run without a key: only on
/// loopback, where nobody else can reach it.
pub async fn resolve_listen(listen: &str) -> anyhow::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(listen)
        .await
        .with_context(|| format!("cannot resolve listen address {listen:?}"))?
        .collect();
    if addrs.is_empty() {
        bail!("listen address {listen:?} resolves to nothing");
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dotted keys of every setting (objects are walked, everything else is a leaf).
    fn keys(prefix: &str, value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    keys(&key, v, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }

    #[test]
    fn the_readme_documents_every_setting() {
        let readme = include_str!("../README.md");
        let mut all = Vec::new();
        keys(
            "",
            &serde_json::to_value(Config::default()).unwrap(),
            &mut all,
        );
        assert!(all.len() > 10);
        for key in all {
            assert!(
                readme.contains(&format!("| `{key}` |")),
                "README's configuration table lacks `{key}`"
            );
        }
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own large error
    fn file_then_environment_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tally.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\n[ingest]\nmax_records = 10\n[storage]\nthreads = 3\n",
        )
        .unwrap();
        figment::Jail::expect_with(|jail| {
            // The machine's own TALLY_* variables must not change the answer.
            jail.clear_env();
            jail.set_env("TALLY_STORAGE__THREADS", "5");
            let config = Config::load(Some(&file), &CliOverrides::default()).unwrap();
            assert_eq!(config.listen, "127.0.0.1:9000");
            assert_eq!(config.ingest.max_records, 10);
            assert_eq!(config.storage.threads, 5);
            let cli = CliOverrides {
                listen: Some("127.0.0.1:9100".into()),
                data_dir: None,
            };
            assert_eq!(
                Config::load(Some(&file), &cli).unwrap().listen,
                "127.0.0.1:9100"
            );
            // Kubernetes service links are not settings and must not fail the load.
            jail.set_env("TALLY_SERVICE_HOST", "10.0.0.1");
            jail.set_env("TALLY_PORT", "tcp://10.0.0.1:8080");
            assert!(Config::load(Some(&file), &CliOverrides::default()).is_ok());
            jail.set_env("TALLY_INGEST__MAX_RECORDZ", "5");
            assert!(
                Config::load(Some(&file), &CliOverrides::default()).is_err(),
                "a misspelt key must fail"
            );
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own large error
    fn the_example_file_is_a_valid_configuration() {
        // Inside a Jail: it serializes tests that touch the process environment and the
        // working directory (it moves into a temp dir, so the example is copied there; reading
        // it by path would race with other Jails).
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file("tally.example.toml", include_str!("../tally.example.toml"))?;
            let path = jail.directory().join("tally.example.toml");
            let config = Config::load(Some(&path), &CliOverrides::default()).unwrap();
            assert_eq!(config.storage.memory_limit, "512MB");
            Ok(())
        });
    }

    #[test]
    fn short_admin_keys_are_refused() {
        let config = Config {
            admin_key: Some("secret".into()),
            ..Config::default()
        };
        assert!(config.validate().is_err());
    }
}
