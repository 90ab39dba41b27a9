//! orderlake-server: parse, start telemetry, serve until SIGINT/SIGTERM.

use std::io::BufRead as _;

use anyhow::Context as _;
use clap::Parser as _;
use orderlake_server::cli::{Cli, Command};
use orderlake_server::{RunningServer, auth, client, cluster};

/// jemalloc rather than glibc malloc: a profile of a customer lookup spent 18% of its CPU in
/// glibc's malloc and free; with jemalloc every query of the benchmark suite ran 5-37% faster
/// and the server's peak RSS over it fell from 734 to 510 MiB (docs/benchmarks.md).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    orderlake_archive::exit_code(run(Cli::parse()).await)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    orderlake_telemetry::init_logs(
        cli.log_format,
        "warn,orderlake_server=info,orderlake_query=info,orderlake_archive=info,\
         ballista_scheduler=info,ballista_executor=info",
    );
    let serve = match cli.command {
        Some(Command::HashPassword) => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            let password = line.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(!password.is_empty(), "no password on standard input");
            println!("{}", auth::hash_password(password));
            return Ok(());
        }
        Some(Command::NewToken { name }) => {
            let (token, sha) = auth::new_service_token();
            println!("token (give it to the service; it is not stored): {token}");
            println!("\n[[auth.service_tokens]]\nname = \"{name}\"\ntoken_sha256 = \"{sha}\"");
            return Ok(());
        }
        Some(Command::Query(args)) => {
            let connection = client::Connection {
                uri: args.uri,
                user: args.user,
                password: args.password,
                token: args.token,
            };
            let mut flight = client::connect(&connection)
                .await
                .with_context(|| format!("cannot connect to {}", connection.uri))?;
            for sql in &args.sql {
                println!("> {sql}");
                println!("{}\n", client::run(&mut flight, sql).await?);
            }
            return Ok(());
        }
        Some(Command::Scheduler(args)) => {
            let listener = tokio::net::TcpListener::bind(args.listen)
                .await
                .with_context(|| format!("cannot listen on {}", args.listen))?;
            let tls = args.tls.resolve()?;
            return Ok(cluster::run_scheduler(listener, args.archive.location()?, tls).await?);
        }
        Some(Command::Executor(args)) => {
            return Ok(cluster::run_executor(args.resolve()?).await?);
        }
        Some(Command::Serve(args)) => args,
        None => cli.serve,
    };
    let config = serve.resolve()?;
    if serve.print_config {
        print!("{}", config.redacted());
        return Ok(());
    }
    let server = RunningServer::start(config)
        .await
        .context("orderlake-server could not start")?;
    server.run_until(stop_signal()).await?;
    Ok(())
}
