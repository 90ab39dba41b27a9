//! orderlake-archiver: parse, start telemetry, run the chosen command until it finishes or is
//! stopped.

use anyhow::Context as _;
use clap::Parser as _;
use orderlake_archiver::cli::{Cli, Command};
use orderlake_archiver::commands;
use orderlake_ingest::StopSignal;

/// jemalloc rather than glibc malloc, whose per-thread arenas kept the memory of freed record
/// buffers: under a burst of large records the archiver grew to 30 times its memory budget.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// First SIGINT/SIGTERM: stop polling, flush, commit, exit 0. Second: exit at once (what was not
/// committed is re-read on the next start).
fn install_signal_handlers(stop: StopSignal) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot install SIGTERM handler");
                    return;
                }
            };
        let mut signals = 0;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            signals += 1;
            if signals == 1 {
                tracing::info!(
                    "stop requested: flushing and committing (signal again to exit at once)"
                );
                stop.stop();
            } else {
                tracing::warn!(
                    "second signal: exiting without flushing; uncommitted records will be re-read"
                );
                std::process::exit(130);
            }
        }
    });
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    orderlake_archive::exit_code(run(Cli::parse()).await)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    orderlake_telemetry::init_logs(
        cli.log_format,
        "warn,orderlake_archiver=info,orderlake_ingest=info,orderlake_archive=info",
    );
    match cli.command {
        Command::Run(args) => {
            let config = args.resolve()?;
            if args.print_config {
                print!("{}", config.redacted());
                return Ok(());
            }
            let stop = StopSignal::default();
            install_signal_handlers(stop.clone());
            let report = commands::run::run(config, args.until_caught_up, stop)
                .await
                .context("archiver stopped with an error")?;
            println!(
                "archived {} records in {} commits ({} undecodable, kept raw); {} flushes fenced, {} rebalances",
                report.rows_committed,
                report.flushes_committed,
                report.undecoded_rows,
                report.flushes_fenced,
                report.rebalances
            );
        }
        Command::Status(args) => {
            let config = args.common.load()?;
            let status = commands::status::status(&config).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", commands::status::render(&status));
            }
        }
        Command::Maintain(args) => {
            let config = args.common.load()?;
            print!("{}", commands::maintain::maintain(&config, &args).await?);
        }
        Command::Verify(args) => {
            let config = args.common.load()?;
            let report = commands::status::verify(&config, args.brokers.as_deref()).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", commands::status::render_verify(&report));
            }
            if !report.is_clean() {
                std::process::exit(1);
            }
        }
        Command::Import(args) => {
            let config = args.common.load()?;
            print!("{}", commands::import::import(&config, &args).await?);
        }
        Command::Replay(args) => {
            let stop = StopSignal::default();
            install_signal_handlers(stop.clone());
            if let Err(e) = commands::replay::run(&args, stop.flag()).await {
                if e.is_interruption() {
                    eprintln!("{e}");
                    std::process::exit(130);
                }
                return Err(e.into());
            }
        }
        Command::Generate(args) => {
            let s = commands::generate::generate(&args).await?;
            let per_topic: Vec<String> = s
                .per_topic
                .iter()
                .map(|(t, n)| format!("{t}={n}"))
                .collect();
            let total = s.per_topic.values().sum::<u64>();
            let rate = total as f64 / s.seconds.max(1e-9);
            let (verb, result) = if args.into_table.is_some() {
                (
                    "imported",
                    format!(
                        "{} added, {} already in the table",
                        s.acked, s.already_archived
                    ),
                )
            } else {
                (
                    "produced",
                    format!("{} acknowledged, {} failed", s.acked, s.failed),
                )
            };
            println!(
                "{verb} {total} events in {:.1}s ({rate:.0}/s): {}; {} malformed, {} tombstones; {result}",
                s.seconds,
                per_topic.join(" "),
                s.malformed,
                s.tombstones,
            );
            if s.failed > 0 {
                anyhow::bail!("{} events were not acknowledged by the broker", s.failed);
            }
        }
    }
    Ok(())
}
