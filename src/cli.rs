//! Command-line interface: `tally serve`, `tally demo`, `tally prices`, `tally keys`,
//! `tally load`, `tally bench`, `tally import`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Self-hosted LLM cost attribution and budget analytics.
#[derive(Debug, Parser)]
#[command(name = "tally", version, about)]
pub struct Cli {
    /// Configuration file (default: ./tally.toml when it exists).
    #[arg(long, global = true, env = "TALLY_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Generate ~30 days of realistic synthetic traffic into a data directory, then serve it.
    Demo(DemoArgs),
    /// Inspect or regenerate the built-in price catalog.
    #[command(subcommand)]
    Prices(PricesCommand),
    /// Create, list and revoke API keys.
    Keys(KeysArgs),
    /// Load-test a fresh server on loopback: concurrent ingest and dashboard queries for a
    /// fixed time; reports throughput, latency percentiles, errors and peak memory.
    Load(LoadArgs),
    /// Measure Tally against its performance targets, each next to a baseline from the same
    /// run (DuckDB's own NDJSON loader, queries over the raw events); prints a table.
    Bench(BenchArgs),
    /// Import a provider billing or usage export (OpenAI, Anthropic, FOCUS, any CSV).
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// How long to drive the server, in seconds.
    #[arg(long, default_value_t = 120)]
    pub duration_secs: u64,
    /// Concurrent ingest clients (gzip NDJSON).
    #[arg(long, default_value_t = 6)]
    pub ingest_clients: usize,
    /// Events per ingest request.
    #[arg(long, default_value_t = 2000)]
    pub batch: usize,
    /// Concurrent dashboard/API query clients.
    #[arg(long, default_value_t = 2)]
    pub query_clients: usize,
    /// Random seed of the generated traffic.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// End of the generated 30 days, RFC 3339, cut to the minute [default: now]. The traffic
    /// depends on the end as well as the seed: give both to repeat a run's events exactly.
    #[arg(long)]
    pub end: Option<chrono::DateTime<chrono::Utc>>,
    /// Data directory for the server [default: a fresh temporary one, deleted afterwards].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Events to generate (the demo's traffic, scaled), spread over 30 days.
    #[arg(long, default_value_t = 10_000_000)]
    pub events: u64,
    /// Random seed of the generated traffic.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// End of the generated 30 days, RFC 3339, cut to the minute [default: now]. The traffic
    /// depends on the end as well as the seed: give both to repeat a run's events exactly.
    #[arg(long)]
    pub end: Option<chrono::DateTime<chrono::Utc>>,
    /// Concurrent ingest clients.
    #[arg(long, default_value_t = 6)]
    pub clients: usize,
    /// Events per ingest request.
    #[arg(long, default_value_t = 10_000)]
    pub batch: usize,
    /// Timed runs of each overview query (after warm-up runs).
    #[arg(long, default_value_t = 15)]
    pub query_runs: usize,
    /// Timed runs of each query against the raw events (the baseline). Fewer by default: at
    /// 10M events one raw cost-per-task answer takes minutes, and its median moves little.
    #[arg(long, default_value_t = 5)]
    pub raw_runs: usize,
    /// Budgets crossed one at a time to time threshold → webhook.
    #[arg(long, default_value_t = 200)]
    pub webhooks: usize,
    /// Requests per second sent to /v1/budget-check.
    #[arg(long, default_value_t = 5000)]
    pub check_rate: u32,
    /// Seconds of /v1/budget-check load.
    #[arg(long, default_value_t = 10)]
    pub check_secs: u64,
    /// Directory for the NDJSON file, the request bodies and the databases [default: a fresh
    /// temporary one, deleted afterwards]. Needs about 1.2 KB per event (about 400 bytes with
    /// --no-baselines).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Keep the NDJSON file and the databases.
    #[arg(long)]
    pub keep: bool,
    /// Stop after the ingest measurements (throughput, disk, memory): for profiling ingest.
    #[arg(long)]
    pub ingest_only: bool,
    /// Skip DuckDB's loader and the raw-events queries (and the NDJSON file they read): for
    /// 100M events, whose targets have no ratio, and whose NDJSON would take about 65 GB.
    #[arg(long)]
    pub no_baselines: bool,
    /// Also measure the overview queries (and disk per event) at this many events: the
    /// ingested traffic replicated in SQL, identifiers renamed per copy, rollups and units
    /// rebuilt, then served by a normal server. How the 100M query row is measured without
    /// two hours of HTTP ingest: `--events 10000000 --scale-to 100000000`. At 100M it needs
    /// about 60 GB free in --work-dir: the scaled database (11–19 GB) and DuckDB's spill while
    /// rebuilding (a run with 43 GB free at its start ran out of disk there).
    #[arg(long)]
    pub scale_to: Option<u64>,
    /// Measure only at the scaled size, on the database an earlier `--scale-to` run
    /// built in this --work-dir (same --events, --seed and --end): its queries, disk, and a
    /// day more of ingest, without the hour of building it again (finishing a build that
    /// stopped). The day after an --end stays in the database: a second run needs a later
    /// --end.
    #[arg(long, requires = "scale_to", requires = "work_dir")]
    pub reuse_scaled: bool,
    /// The servers' log filter (`RUST_LOG`); `tally::store::writer=debug` shows each commit's
    /// phases.
    #[arg(long, default_value = "warn")]
    pub server_log: String,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The export file (`.gz` files are decompressed).
    pub file: PathBuf,
    /// openai-costs, openai-usage, anthropic-cost, anthropic-usage, focus or csv.
    #[arg(long)]
    pub format: String,
    /// A format option, repeatable: the csv column mapping (date_column=Day, amount_column=Cost,
    /// currency=EUR, provider=mistral, …), delimiter=';', all_services=true (focus).
    #[arg(long = "option", short = 'o', value_name = "KEY=VALUE")]
    pub options: Vec<String>,
    /// Tally project the lines belong to [default: the key's project, else `default`].
    #[arg(long)]
    pub project: Option<String>,
    /// Send the file to a running server instead of opening the data directory, which only one
    /// process can hold. While the server answers that it is busy (503, 429) the file is sent
    /// again after its Retry-After, up to 10 attempts: an import is idempotent.
    #[arg(long)]
    pub url: Option<String>,
    /// Key for --url: an ingest or admin key [env: TALLY_API_KEY, else TALLY_ADMIN_KEY].
    #[arg(long)]
    pub key: Option<String>,
    /// Data directory to open when no --url is given [default: ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    /// Work through a running server's API (with TALLY_ADMIN_KEY or --key) instead of opening
    /// the data directory, which only one process can hold.
    #[arg(long, global = true)]
    pub url: Option<String>,
    /// Admin key for --url [env: TALLY_ADMIN_KEY].
    #[arg(long, global = true)]
    pub key: Option<String>,
    /// Data directory to open when no --url is given [default: ./data].
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; its secret is printed once.
    Create {
        #[arg(long)]
        name: String,
        /// ingest, read or admin.
        #[arg(long)]
        role: String,
        /// The key's project (required for ingest and read keys).
        #[arg(long)]
        project: Option<String>,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by id; it stops working at once.
    Revoke { id: String },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    pub listen: Option<String>,
    /// Directory of the database [default: ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Start even though the write-ahead log left by a crash cannot be replayed: it is moved
    /// into `<data-dir>/recovery/` and the database opens from its last checkpoint.
    #[arg(long)]
    pub discard_damaged_wal: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    pub listen: Option<String>,
    /// Directory for the demo database, kept apart from real data.
    #[arg(long, default_value = "./tally-demo")]
    pub data_dir: PathBuf,
    /// Days of traffic to generate, ending now.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Random seed: the same seed gives the same traffic.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Traffic volume multiplier (1.0 ≈ 4,000 calls a day).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Delete the demo database first and generate anew.
    #[arg(long)]
    pub reset: bool,
    /// Generate the data and exit without serving.
    #[arg(long)]
    pub no_serve: bool,
    /// Send the demo budgets' alerts to this webhook URL (Standard Webhooks; the signing
    /// secret is printed). Without it the alerts are recorded in /api/v1/alerts only.
    #[arg(long)]
    pub webhook_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum PricesCommand {
    /// Regenerate the catalog file from a genai-prices data directory.
    Generate {
        /// Directory holding genai-prices' data.json and SOURCE.
        #[arg(long, default_value = "third_party/genai-prices")]
        from: PathBuf,
        /// Where to write the catalog.
        #[arg(long, default_value = "src/pricing/catalog.json")]
        out: PathBuf,
    },
    /// Price one call and show the arithmetic.
    Explain {
        #[arg(long)]
        model: String,
        #[arg(long)]
        provider: Option<String>,
        /// Event time (RFC 3339) [default: now].
        #[arg(long)]
        at: Option<String>,
        #[arg(long, default_value = "standard")]
        service_tier: String,
        #[arg(long, default_value_t = 0)]
        input_tokens: u64,
        #[arg(long, default_value_t = 0)]
        cache_read_tokens: u64,
        #[arg(long, default_value_t = 0)]
        cache_write_tokens: u64,
        #[arg(long, default_value_t = 0)]
        output_tokens: u64,
        #[arg(long, default_value_t = 0)]
        reasoning_tokens: u64,
    },
}
