//! What each subcommand does. Background work and CLI plumbing use `anyhow` with context at
//! each step; everything below them returns typed errors.

use std::path::Path;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};

use crate::cli::{
    Cli, Command, DemoArgs, ImportArgs, KeysArgs, KeysCommand, PricesCommand, ServeArgs,
};
use crate::config::{CliOverrides, Config};
use crate::domain::tokens::TokenBuckets;
use crate::keys::{self, KeyRing, Role};
use crate::pricing::{self, PriceRequest, Pricer};
use crate::store::Store;
use crate::{app, billing, demo, telemetry};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(cli.config.as_deref(), args),
        Command::Demo(args) => run_demo(cli.config.as_deref(), args),
        Command::Prices(cmd) => prices(cli.config.as_deref(), cmd),
        Command::Keys(args) => keys_command(cli.config.as_deref(), args),
        Command::Load(args) => crate::load::run(args),
        Command::Bench(args) => crate::bench::run(args),
        Command::Import(args) => import_command(cli.config.as_deref(), args),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// glibc malloc settings the server runs with, unless the operator set them: they are read
/// when the process starts, and `mallopt` would need unsafe FFI, so the server re-executes
/// itself once with them (same process id, so supervisors see no difference).
///
/// - `MALLOC_ARENA_MAX=2`: glibc gives threads that allocate concurrently their own arenas (up
///   to eight per core), and memory freed in one stays reserved there; with DuckDB's and
///   tokio's thread pools a 30-second `tally load` run peaked at 1.3 GiB resident against
///   0.55 GiB with two arenas, at the same throughput (docs/operations.md).
/// - `MALLOC_MMAP_THRESHOLD_=131072`: glibc maps allocations of 128 KiB and more on their own
///   and unmaps them when freed, but raises that threshold (up to 32 MiB) every time such a
///   mapping is freed; after the first few, DuckDB's 256 KiB buffers come from the heap, whose
///   freed blocks stay resident. Naming the threshold turns the raising off, so memory DuckDB
///   gives back leaves the process: ingesting 1M events peaked at 751–771 MiB against
///   907–1,007 without it (docs/benchmarks.md).
const MALLOC_ENV: [(&str, &str); 2] = [
    ("MALLOC_ARENA_MAX", "2"),
    ("MALLOC_MMAP_THRESHOLD_", "131072"),
];

/// Re-executes the server with [`MALLOC_ENV`] before it starts its threads; an operator's own
/// value of either variable, whatever it is, is left alone.
fn tune_malloc() {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let missing: Vec<(&str, &str)> = MALLOC_ENV
            .into_iter()
            .filter(|(name, _)| std::env::var_os(name).is_none())
            .collect();
        if missing.is_empty() {
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        // `exec` only returns on failure; the server then runs with glibc's defaults.
        let err = std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .envs(missing)
            .exec();
        eprintln!("warning: could not set the malloc tuning ({err}); continuing");
    }
}

fn serve(config_file: Option<&Path>, args: ServeArgs) -> anyhow::Result<()> {
    tune_malloc();
    let mut config = Config::load(
        config_file,
        &CliOverrides {
            listen: args.listen,
            data_dir: args.data_dir,
        },
    )?;
    config.storage.discard_damaged_wal = args.discard_damaged_wal;
    telemetry::init(config.log_format);
    runtime()?.block_on(async {
        let server = app::start(config).await?;
        let shutdown = app::shutdown_signal();
        eprintln!("Tally listening on {}", server.url());
        server.run_until(shutdown).await
    })
}

fn run_demo(config_file: Option<&Path>, args: DemoArgs) -> anyhow::Result<()> {
    tune_malloc();
    let config = Config::load(
        config_file,
        &CliOverrides {
            listen: args.listen,
            data_dir: Some(args.data_dir.clone()),
        },
    )?;
    telemetry::init(config.log_format);
    if args.reset && args.data_dir.exists() {
        for name in ["tally.duckdb", "tally.duckdb.wal"] {
            let path = args.data_dir.join(name);
            if path.exists() {
                std::fs::remove_file(&path)
                    .with_context(|| format!("cannot remove {}", path.display()))?;
            }
        }
    }
    runtime()?.block_on(async {
        let pricer = Pricer::builtin(&config.pricing)?;
        let server = app::start(config).await?;
        let existing: i64 = server
            .store()
            .read(|conn| Ok(conn.query_row("SELECT count(*) FROM events", [], |r| r.get(0))?))
            .await?;
        // Before the traffic, so its stories set the budgets off as it lands.
        let secrets = demo::budgets::install(
            server.store(),
            server.budgets(),
            args.webhook_url.as_deref(),
        )
        .await?;
        for (name, secret) in &secrets {
            eprintln!("Demo alerts go to channel {name:?}, signed with {secret} (shown once)");
        }
        // Ctrl-C (or SIGTERM) stops the demo cleanly from here on, loading included: without
        // handlers the signal's default action killed the process mid-load, skipping the
        // drain and checkpoint that a stop while serving gets.
        let shutdown = app::shutdown_signal();
        tokio::pin!(shutdown);
        if existing == 0 {
            let cfg = demo::generate::DemoConfig {
                seed: args.seed,
                days: args.days,
                scale: args.scale,
                ..demo::generate::DemoConfig::default()
            };
            eprintln!(
                "Generating {} days of demo traffic into {} …",
                args.days,
                args.data_dir.display()
            );
            let started = std::time::Instant::now();
            let load = async {
                let loaded = demo::load::load(server.store(), &pricer, &cfg).await?;
                // Fold the task and run units now, so the first page opened is not the one
                // that waits for it (about 2 s on the demo's 80,000 tasks).
                server.store().units_current().await?;
                anyhow::Ok(loaded)
            };
            let loaded = tokio::select! {
                loaded = load => Some(loaded?),
                () = &mut shutdown => None,
            };
            let Some(loaded) = loaded else {
                eprintln!("Stopped while loading; what was loaded is kept (--reset starts over)");
                return server.shutdown().await;
            };
            eprintln!(
                "Loaded {} events and {} task outcomes ({} rejected) in {:.1}s",
                loaded.accepted,
                loaded.outcomes,
                loaded.rejected,
                started.elapsed().as_secs_f64()
            );
        } else {
            eprintln!(
                "Using the {existing} events already in {} (--reset to regenerate)",
                args.data_dir.display()
            );
        }
        let alerts: i64 = server
            .store()
            .read(crate::store::queries::budgets::open_alert_count)
            .await?;
        eprintln!("{alerts} budget alerts so far: see /api/v1/alerts and /api/v1/budgets/status");
        if args.no_serve {
            return server.shutdown().await;
        }
        eprintln!(
            "\nTally demo is running: open {}/\n(Ctrl-C to stop)",
            server.url()
        );
        server.run_until(shutdown).await
    })
}

fn prices(config_file: Option<&Path>, cmd: PricesCommand) -> anyhow::Result<()> {
    match cmd {
        PricesCommand::Generate { from, out } => {
            let catalog = pricing::generate_from_dir(&from)?;
            let text = pricing::catalog_to_json(&catalog)?;
            std::fs::write(&out, text)
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!("wrote {}", out.display());
            Ok(())
        }
        PricesCommand::Explain {
            model,
            provider,
            at,
            service_tier,
            input_tokens,
            cache_read_tokens,
            cache_write_tokens,
            output_tokens,
            reasoning_tokens,
        } => {
            let config = Config::load(config_file, &CliOverrides::default())?;
            let pricer = Pricer::builtin(&config.pricing)?;
            let at: DateTime<Utc> = match at {
                Some(raw) => DateTime::parse_from_rfc3339(&raw)
                    .context("--at must be RFC 3339")?
                    .with_timezone(&Utc),
                None => Utc::now(),
            };
            let parts = cache_read_tokens + cache_write_tokens;
            if parts > input_tokens || reasoning_tokens > output_tokens {
                bail!("cache tokens must be part of --input-tokens and reasoning part of --output-tokens");
            }
            let tokens = TokenBuckets {
                input_uncached: input_tokens - parts,
                cache_read: cache_read_tokens,
                cache_write_5m: cache_write_tokens,
                output: output_tokens,
                reasoning: reasoning_tokens,
                ..TokenBuckets::default()
            };
            let explanation = pricer.explain(&PriceRequest {
                provider: provider.as_deref(),
                model: &model,
                at,
                service_tier: Some(&service_tier),
                tokens: &tokens,
                web_search_requests: 0,
                requests: 1,
                project: None,
                api_key_id: None,
            });
            println!("{}", serde_json::to_string_pretty(&explanation)?);
            Ok(())
        }
    }
}

fn keys_command(config_file: Option<&Path>, args: KeysArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match &args.url {
            Some(url) => keys_over_http(url, &args).await,
            None => {
                let config = Config::load(config_file, &CliOverrides { listen: None, data_dir: args.data_dir.clone() })?;
                let store = Store::open(&config.data_dir, &config.storage).map_err(|e| {
                    anyhow::anyhow!(
                        "{e:#}\n(is a server running on {}? only one process can open it: stop it, or pass --url)",
                        config.data_dir.display()
                    )
                })?;
                let result = keys_on_store(&store, &args.command).await;
                store.shutdown(std::time::Duration::from_secs(30)).await?;
                result
            }
        }
    })
}

async fn keys_on_store(store: &Store, command: &KeysCommand) -> anyhow::Result<()> {
    let ring = KeyRing::default();
    match command {
        KeysCommand::Create {
            name,
            role,
            project,
        } => {
            let role: Role = role.parse().map_err(anyhow::Error::msg)?;
            let created = keys::create(store, &ring, name, role, project.as_deref()).await?;
            print_created(&serde_json::to_value(&created)?);
        }
        KeysCommand::List => print_keys(&serde_json::to_value(keys::list(store).await?)?),
        KeysCommand::Revoke { id } => {
            if !keys::revoke(store, &ring, id).await? {
                bail!("no active key {id:?}");
            }
            println!("revoked {id}");
        }
    }
    Ok(())
}

async fn keys_over_http(url: &str, args: &KeysArgs) -> anyhow::Result<()> {
    let key = args
        .key
        .clone()
        .or_else(|| std::env::var("TALLY_ADMIN_KEY").ok())
        .context("--url needs an admin key: pass --key or set TALLY_ADMIN_KEY")?;
    let client = reqwest::Client::new();
    let base = url.trim_end_matches('/');
    let response = match &args.command {
        KeysCommand::Create {
            name,
            role,
            project,
        } => client
            .post(format!("{base}/api/v1/keys"))
            .json(&serde_json::json!({"name": name, "role": role, "project": project})),
        KeysCommand::List => client.get(format!("{base}/api/v1/keys")),
        KeysCommand::Revoke { id } => client.delete(format!("{base}/api/v1/keys/{id}")),
    }
    .bearer_auth(key)
    .send()
    .await
    .with_context(|| format!("cannot reach {base}"))?;
    let status = response.status();
    let body: serde_json::Value = response
        .json()
        .await
        .context("the server's answer is not JSON")?;
    if !status.is_success() {
        bail!(
            "{status}: {}",
            body["error"]["message"].as_str().unwrap_or("unknown error")
        );
    }
    match &args.command {
        KeysCommand::Create { .. } => print_created(&body),
        KeysCommand::List => print_keys(&body["keys"]),
        KeysCommand::Revoke { id } => println!("revoked {id}"),
    }
    Ok(())
}

fn print_created(key: &serde_json::Value) {
    println!("id:      {}", key["id"].as_str().unwrap_or(""));
    println!("role:    {}", key["role"].as_str().unwrap_or(""));
    println!("project: {}", key["project"].as_str().unwrap_or("(all)"));
    println!("secret:  {}", key["secret"].as_str().unwrap_or(""));
    println!("\nThe secret is shown only now; Tally stores only its SHA-256 digest.");
}

fn print_keys(keys: &serde_json::Value) {
    println!(
        "{:<18} {:<7} {:<16} {:<12} {:<24} {:<25} last used",
        "id", "role", "project", "prefix", "name", "revoked"
    );
    for k in keys.as_array().into_iter().flatten() {
        let s = |f: &str| k[f].as_str().unwrap_or("").to_string();
        println!(
            "{:<18} {:<7} {:<16} {:<12} {:<24} {:<25} {}",
            s("id"),
            s("role"),
            k["project"].as_str().unwrap_or("(all)"),
            s("prefix"),
            s("name"),
            k["revoked_at"].as_str().unwrap_or("-"),
            k["last_used_at"].as_str().unwrap_or("never")
        );
    }
}

/// Files larger than this get a progress bar while they are read and parsed.
const PROGRESS_FROM_BYTES: u64 = 4 * 1024 * 1024;

/// `tally import FILE --format …`: straight into the data directory, or through a running
/// server with `--url`.
fn import_command(config_file: Option<&Path>, args: ImportArgs) -> anyhow::Result<()> {
    let name = args
        .file
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let gzipped = name.ends_with(".gz");
    let inner_name = name.trim_end_matches(".gz");
    let kind = if inner_name.ends_with(".parquet") {
        billing::Body::Parquet
    } else if inner_name.ends_with(".csv") {
        billing::Body::Csv
    } else if [".json", ".jsonl", ".ndjson"]
        .iter()
        .any(|e| inner_name.ends_with(e))
    {
        billing::Body::Json
    } else {
        billing::Body::Sniff
    };
    let mut pairs = vec![
        ("format".to_string(), args.format.clone()),
        ("file_name".to_string(), name.clone()),
    ];
    if let Some(p) = &args.project {
        pairs.push(("project".into(), p.clone()));
    }
    for option in &args.options {
        let (k, v) = option
            .split_once('=')
            .with_context(|| format!("--option {option:?} must be KEY=VALUE"))?;
        pairs.push((k.trim().to_string(), v.to_string()));
    }
    let outcome = match &args.url {
        Some(url) => {
            runtime()?.block_on(import_over_http(url, &args, &pairs, bytes, kind, gzipped))?
        }
        None => import_on_store(config_file, &args, &pairs, bytes, kind, gzipped)?,
    };
    print_import(&outcome);
    Ok(())
}

fn progress_bar(len: u64, message: &'static str) -> indicatif::ProgressBar {
    if len < PROGRESS_FROM_BYTES {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg:>10} [{bar:40.cyan/blue}] {percent:>3}% {elapsed_precise}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message);
    bar
}

fn import_on_store(
    config_file: Option<&Path>,
    args: &ImportArgs,
    pairs: &[(String, String)],
    bytes: Vec<u8>,
    kind: billing::Body,
    gzipped: bool,
) -> anyhow::Result<serde_json::Value> {
    let config = Config::load(
        config_file,
        &CliOverrides {
            listen: None,
            data_dir: args.data_dir.clone(),
        },
    )?;
    let options = billing::Options::parse(pairs)?;
    let pricer = Pricer::builtin(&config.pricing)?;
    let bytes = if gzipped {
        crate::ingest::body::decode(&bytes, Some("gzip"), config.ingest.max_decompressed_bytes)?
    } else {
        bytes
    };
    // Open the store first: a server holding the file is the likeliest failure, and should be
    // reported before a long parse.
    let store = Store::open(&config.data_dir, &config.storage).map_err(|e| {
        anyhow::anyhow!(
            "{e:#}\n(is a server running on {}? DuckDB lets only one process open the database: \
             stop it, or send the file to it with --url and an ingest key)",
            config.data_dir.display()
        )
    })?;
    let bar = progress_bar(bytes.len() as u64, "reading");
    let report = |done: u64, total: u64| {
        bar.set_length(total.max(1));
        bar.set_position(done);
    };
    let principal = keys::Principal::superuser();
    let ctx = billing::Ctx {
        pricer: &pricer,
        now: Utc::now(),
        max_records: config.ingest.max_records,
        progress: Some(&report),
    };
    let source = billing::import::Source {
        principal: &principal,
        http_request: None,
    };
    let prepared = billing::import::prepare(&bytes, kind, &options, &source, &ctx);
    bar.finish_and_clear();
    let result = runtime()?.block_on(async {
        let prepared = prepared?;
        let spinner = progress_bar(bytes.len() as u64, "writing");
        let outcome = billing::import::commit(&store, prepared).await;
        spinner.finish_and_clear();
        let shutdown = store.shutdown(std::time::Duration::from_secs(60)).await;
        let outcome = outcome?;
        shutdown?;
        anyhow::Ok(serde_json::to_value(outcome)?)
    });
    result
}

/// How many times `import --url` sends its file while the server answers that it is busy.
const IMPORT_ATTEMPTS: u32 = 10;

/// How long to wait before sending again: the server's `Retry-After` seconds (1 s when it gives
/// none or an HTTP date), at most a minute.
fn retry_wait(headers: &reqwest::header::HeaderMap) -> std::time::Duration {
    let seconds = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(1);
    std::time::Duration::from_secs(seconds.clamp(1, 60))
}

async fn import_over_http(
    url: &str,
    args: &ImportArgs,
    pairs: &[(String, String)],
    bytes: Vec<u8>,
    kind: billing::Body,
    gzipped: bool,
) -> anyhow::Result<serde_json::Value> {
    let key = args
        .key
        .clone()
        .or_else(|| std::env::var("TALLY_API_KEY").ok())
        .or_else(|| std::env::var("TALLY_ADMIN_KEY").ok())
        .context(
            "--url needs a key: pass --key or set TALLY_API_KEY (an ingest key) or TALLY_ADMIN_KEY",
        )?;
    let base = url.trim_end_matches('/');
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .finish();
    let content_type = match kind {
        billing::Body::Parquet => "application/vnd.apache.parquet",
        billing::Body::Csv => "text/csv",
        billing::Body::Json => "application/json",
        billing::Body::Sniff => "application/octet-stream",
    };
    // Text exports compress well; large ones are gzipped so they fit the server's body limit.
    let (body, encoding) = if gzipped {
        (bytes, Some("gzip"))
    } else if bytes.len() as u64 > 1024 * 1024 && kind != billing::Body::Parquet {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, &bytes)?;
        (enc.finish()?, Some("gzip"))
    } else {
        (bytes, None)
    };
    let spinner = progress_bar(body.len() as u64, "uploading");
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    // `Bytes` so that a retry sends the same buffer again without copying it.
    let body = axum::body::Bytes::from(body);
    let client = reqwest::Client::new();
    let mut attempt = 1;
    let (status, answer) = loop {
        let mut request = client
            .post(format!("{base}/v1/billing?{query}"))
            .bearer_auth(&key)
            .header("content-type", content_type)
            .body(body.clone());
        if let Some(e) = encoding {
            request = request.header("content-encoding", e);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {base}"));
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                spinner.finish_and_clear();
                return Err(e);
            }
        };
        let status = response.status();
        let wait = retry_wait(response.headers());
        let answer: Result<serde_json::Value, _> = response.json().await;
        // A busy server (every write slot taken, or its writer queue full) answers 503 and
        // says when to come back; an import is idempotent, so sending it again is safe.
        let busy = status == reqwest::StatusCode::SERVICE_UNAVAILABLE
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
        if busy && attempt < IMPORT_ATTEMPTS {
            let message = answer
                .as_ref()
                .ok()
                .and_then(|a| a["error"]["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| "the server is busy".into());
            spinner.suspend(|| {
                eprintln!(
                    "{status}: {message}\n  attempt {attempt} of {IMPORT_ATTEMPTS}; retrying in {} s",
                    wait.as_secs()
                )
            });
            tokio::time::sleep(wait).await;
            attempt += 1;
            continue;
        }
        break (status, answer.context("the server's answer is not JSON"));
    };
    spinner.finish_and_clear();
    let answer = answer?;
    if !status.is_success() {
        bail!(
            "{status}: {}",
            answer["error"]["message"]
                .as_str()
                .unwrap_or("unknown error")
        );
    }
    Ok(answer)
}

fn print_import(o: &serde_json::Value) {
    let s = |k: &str| o[k].as_str().unwrap_or("").to_string();
    let n = |k: &str| o[k].as_u64().unwrap_or(0);
    println!(
        "import {} ({} {} lines) into project {}",
        s("import_id"),
        s("format"),
        s("kind"),
        s("project")
    );
    if let (Some(from), Some(to)) = (o["period_start"].as_str(), o["period_end"].as_str()) {
        println!("  covers   {from} – {to}");
    }
    let rejected = o["rejected"].as_array().map_or(0, Vec::len);
    println!(
        "  accepted {}, replaced {}, unchanged {}, skipped {}, rejected {rejected}",
        n("accepted"),
        n("replaced"),
        n("unchanged"),
        n("skipped")
    );
    for r in o["rejected"].as_array().into_iter().flatten().take(50) {
        eprintln!(
            "  line {}: {}",
            r["line"],
            r["error"].as_str().unwrap_or("")
        );
    }
    if rejected > 50 {
        eprintln!(
            "  … {} more (GET /api/v1/rejects lists them all)",
            rejected - 50
        );
    }
    for w in o["warnings"].as_array().into_iter().flatten() {
        eprintln!("warning: {}", w.as_str().unwrap_or(""));
    }
}
