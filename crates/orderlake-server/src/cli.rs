//! Command line: `orderlake-server [serve] [--config FILE] [--listen ADDR] [--table-uri URI] …`,
//! plus the two helpers an operator needs to fill `[auth]`: `hash-password` and `new-token`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::ServerConfig;
use crate::error::ServerError;

#[derive(Debug, Parser)]
#[command(
    name = "orderlake-server",
    version,
    about = "Trino-like SQL over the orderlake archive through Arrow Flight SQL",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Log format: `text` or `json`.
    #[arg(
        long,
        global = true,
        env = "ORDERLAKE_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: orderlake_telemetry::LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve Flight SQL (the default).
    Serve(ServeArgs),
    /// Read a password on standard input and print its argon2 hash for `[[auth.users]]`.
    HashPassword,
    /// Run SQL against a server and print the results (a small Flight SQL client).
    Query(QueryArgs),
    /// Run a Ballista scheduler for `[distributed]` queries.
    Scheduler(SchedulerArgs),
    /// Run a Ballista executor for `[distributed]` queries; it reads the archive with the
    /// `[archive]` settings of `--config`.
    Executor(ExecutorArgs),
    /// Print a new service token and the `[[auth.service_tokens]]` entry that accepts it.
    NewToken {
        /// Name of the service the token is for.
        #[arg(long, default_value = "api-service")]
        name: String,
    },
}

/// Where configuration comes from: defaults < file < environment < flags.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML configuration file (see config/server.toml).
    #[arg(long, env = "ORDERLAKE_SERVER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on (overrides server.listen).
    #[arg(long, env = "ORDERLAKE_SERVER_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Archive table URI (overrides archive.table_uri).
    #[arg(long, env = "ORDERLAKE_TABLE_URI")]
    pub table_uri: Option<String>,
    /// Directory of business views (overrides sql.views_dir).
    #[arg(long, env = "ORDERLAKE_VIEWS_DIR")]
    pub views_dir: Option<PathBuf>,
    /// TLS certificate (PEM; overrides server.tls_cert).
    #[arg(long, env = "ORDERLAKE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM; overrides server.tls_key).
    #[arg(long, env = "ORDERLAKE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Serve /metrics, /health and /ready on this address (overrides metrics.listen).
    #[arg(long, env = "ORDERLAKE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Serve Trino's client protocol on this address (overrides trino.listen).
    #[arg(long, env = "ORDERLAKE_TRINO_LISTEN")]
    pub trino_listen: Option<SocketAddr>,
    /// Run big queries on the Ballista scheduler at this address, `http://host:port` (overrides
    /// distributed.scheduler; empty: none).
    #[arg(long, env = "ORDERLAKE_SCHEDULER")]
    pub scheduler: Option<String>,
    /// Print the effective configuration (secrets redacted) and exit.
    #[arg(long)]
    pub print_config: bool,
}

impl ServeArgs {
    /// The effective configuration.
    pub fn resolve(&self) -> Result<ServerConfig, ServerError> {
        let mut c = match &self.config {
            Some(path) => ServerConfig::from_file(path)?,
            None => ServerConfig::default(),
        };
        if let Some(v) = self.listen {
            c.server.listen = v;
        }
        if let Some(v) = &self.table_uri {
            c.archive.table_uri.clone_from(v);
        }
        if let Some(v) = &self.views_dir {
            c.sql.views_dir.clone_from(v);
        }
        if let Some(v) = &self.tls_cert {
            c.server.tls_cert = Some(v.clone());
        }
        if let Some(v) = &self.tls_key {
            c.server.tls_key = Some(v.clone());
        }
        if let Some(v) = self.metrics_listen {
            c.metrics.listen = Some(v);
        }
        if let Some(v) = self.trino_listen {
            c.trino.listen = Some(v);
        }
        if let Some(v) = &self.scheduler {
            c.distributed.scheduler = (!v.is_empty()).then(|| v.clone());
        }
        let source = self
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from("<flags and environment>"));
        c.validate(&source)?;
        Ok(c)
    }
}

/// The archive a cluster process reads: the server's configuration file (its `[archive]` block)
/// and the table URI flag that overrides it.
#[derive(Debug, Clone, Args)]
pub struct ArchiveArgs {
    /// The server's TOML configuration, for its `[archive]` block (see config/server.toml).
    #[arg(long, env = "ORDERLAKE_SERVER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Archive table URI (overrides archive.table_uri).
    #[arg(long, env = "ORDERLAKE_TABLE_URI")]
    pub table_uri: Option<String>,
}

impl ArchiveArgs {
    /// Where the archive is, with its storage options.
    pub fn location(&self) -> Result<orderlake_archive::TableLocation, ServerError> {
        let mut archive = match &self.config {
            Some(path) => ServerConfig::from_file(path)?.archive,
            None => ServerConfig::default().archive,
        };
        if let Some(uri) = &self.table_uri {
            archive.table_uri.clone_from(uri);
        }
        Ok(archive.location()?)
    }
}

/// `orderlake-server scheduler`: where it listens and the archive its plans read.
#[derive(Debug, Clone, Args)]
pub struct SchedulerArgs {
    /// Address for the server and the executors (gRPC).
    #[arg(
        long,
        env = "ORDERLAKE_SCHEDULER_LISTEN",
        default_value = "127.0.0.1:50050"
    )]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub tls: ClusterTlsArgs,
    #[command(flatten)]
    pub archive: ArchiveArgs,
}

/// TLS inside the cluster: the certificate a scheduler or an executor presents, and the CA it
/// checks the others' certificates against. All three, or none.
#[derive(Debug, Clone, Default, Args)]
pub struct ClusterTlsArgs {
    /// Serve TLS with this certificate (PEM); clients then dial `https://`.
    #[arg(long, env = "ORDERLAKE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "ORDERLAKE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// The CA (PEM) that signed the scheduler's and the executors' certificates.
    #[arg(long, env = "ORDERLAKE_CLUSTER_CA")]
    pub ca_cert: Option<PathBuf>,
}

impl ClusterTlsArgs {
    /// The TLS this process serves and dials with, if any.
    pub fn resolve(&self) -> Result<Option<crate::cluster::ServingTls>, ServerError> {
        match (&self.tls_cert, &self.tls_key, &self.ca_cert) {
            (None, None, None) => Ok(None),
            (Some(cert), Some(key), Some(ca)) => Ok(Some(crate::cluster::ServingTls {
                identity: crate::tls::identity(cert, key)?,
                trust: orderlake_query::cluster::ClusterTls::from_pem_file(ca)
                    .map_err(|reason| ServerError::Cluster(format!("--ca-cert: {reason}")))?,
            })),
            _ => Err(ServerError::Cluster(
                "TLS in the cluster needs --tls-cert, --tls-key and --ca-cert together".into(),
            )),
        }
    }
}

/// `orderlake-server executor`: its scheduler, its addresses, and the archive it reads.
#[derive(Debug, Clone, Args)]
pub struct ExecutorArgs {
    /// The scheduler's address, `http://host:port` (`https://` with TLS).
    #[arg(
        long,
        env = "ORDERLAKE_SCHEDULER",
        default_value = "http://127.0.0.1:50050"
    )]
    pub scheduler: String,
    /// Address results are fetched from (Arrow Flight); the host is the one announced.
    #[arg(long, default_value = "127.0.0.1:50060")]
    pub listen: SocketAddr,
    /// The host name the scheduler and the server reach this executor at (default: the
    /// `--listen` address's host).
    #[arg(long)]
    pub external_host: Option<String>,
    /// The executor's gRPC port, on the same host.
    #[arg(long, default_value_t = 50061)]
    pub grpc_port: u16,
    /// Tasks run at once (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub tasks: usize,
    /// Directory for shuffle files (a temporary one when unset).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    #[command(flatten)]
    pub tls: ClusterTlsArgs,
    #[command(flatten)]
    pub archive: ArchiveArgs,
}

impl ExecutorArgs {
    /// The executor's settings.
    pub fn resolve(&self) -> Result<crate::cluster::ExecutorSettings, ServerError> {
        let tls = self.tls.resolve()?;
        if tls.is_some() != orderlake_query::cluster::speaks_tls(&self.scheduler) {
            return Err(ServerError::Cluster(
                "an executor serves TLS (--tls-cert, --tls-key, --ca-cert) exactly when its \
                 scheduler is https://: TLS in a cluster is all or nothing"
                    .into(),
            ));
        }
        Ok(crate::cluster::ExecutorSettings {
            scheduler: self.scheduler.clone(),
            listen: self.listen,
            external_host: self
                .external_host
                .clone()
                .unwrap_or_else(|| self.listen.ip().to_string()),
            grpc_port: self.grpc_port,
            tasks: self.tasks,
            work_dir: self.work_dir.clone(),
            tls,
            table: self.archive.location()?,
        })
    }
}

/// `orderlake-server query`: where to connect, as whom, and what to run.
#[derive(Debug, Clone, Args)]
pub struct QueryArgs {
    /// Server address, `http://host:port` (`https://` with TLS).
    #[arg(
        long,
        env = "ORDERLAKE_SERVER_URI",
        default_value = "http://127.0.0.1:50051"
    )]
    pub uri: String,
    /// User to sign in as.
    #[arg(long, env = "ORDERLAKE_SERVER_USER")]
    pub user: Option<String>,
    /// Password (prefer the environment variable to keep it out of the process list).
    #[arg(long, env = "ORDERLAKE_SERVER_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// A service token instead of a user and password.
    #[arg(long, env = "ORDERLAKE_SERVER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Statements to run, in order.
    #[arg(required = true)]
    pub sql: Vec<String>,
}
