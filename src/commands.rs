//! What each subcommand does. Background work and CLI plumbing use `anyhow` with context at
//! each step; everything below them returns typed errors.

use std::path::Path;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};

use crate::cli::{Cli, Command, DemoArgs, PricesCommand, ServeArgs};
use crate::config::{CliOverrides, Config};
use crate::domain::tokens::TokenBuckets;
use crate::pricing::{self, PriceRequest, Pricer};
use crate::{app, demo, telemetry};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(cli.config.as_deref(), args),
        Command::Demo(args) => run_demo(cli.config.as_deref(), args),
        Command::Prices(cmd) => prices(cli.config.as_deref(), cmd),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn serve(config_file: Option<&Path>, args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(
        config_file,
        &CliOverrides {
            listen: args.listen,
            data_dir: args.data_dir,
        },
    )?;
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
