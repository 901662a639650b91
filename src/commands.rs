//! What each subcommand does. Background work and CLI plumbing use `anyhow` with context at
//! each step; everything below them returns typed errors.

use std::path::Path;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};

use crate::cli::{Cli, Command, DemoArgs, KeysArgs, KeysCommand, PricesCommand, ServeArgs};
use crate::config::{CliOverrides, Config};
use crate::domain::tokens::TokenBuckets;
use crate::keys::{self, KeyRing, Role};
use crate::pricing::{self, PriceRequest, Pricer};
use crate::store::Store;
use crate::{app, demo, telemetry};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(cli.config.as_deref(), args),
        Command::Demo(args) => run_demo(cli.config.as_deref(), args),
        Command::Prices(cmd) => prices(cli.config.as_deref(), cmd),
        Command::Keys(args) => keys_command(cli.config.as_deref(), args),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn serve(config_file: Option<&Path>, args: ServeArgs) -> anyhow::Result<()> {
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
        eprintln!("Tally listening on {}", server.url());
        server.run_until(app::shutdown_signal()).await
    })
}

fn run_demo(config_file: Option<&Path>, args: DemoArgs) -> anyhow::Result<()> {
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
            let loaded = demo::load::load(server.store(), &pricer, &cfg).await?;
            eprintln!(
                "Loaded {} events ({} rejected) in {:.1}s",
                loaded.accepted,
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
        server.run_until(app::shutdown_signal()).await
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
