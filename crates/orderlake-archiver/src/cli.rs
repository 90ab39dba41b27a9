//! Command-line surface. Every flag has an environment variable; flags beat the environment,
//! which beats the config file, which beats the built-in defaults.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use orderlake_archive::{ColumnCodec, Partitioning};

use crate::config::ArchiverConfig;

#[derive(Debug, Parser)]
#[command(
    name = "orderlake-archiver",
    version,
    about = "Drains Kafka order events into the orderlake archive (a Delta Lake table), exactly once."
)]
pub struct Cli {
    /// Log format: `text` or `json`.
    #[arg(
        long,
        global = true,
        env = "ORDERLAKE_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: orderlake_telemetry::LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Archive Kafka records into the table until stopped (or caught up).
    Run(RunArgs),
    /// Show what the archive holds: per topic/partition the archived offset, rows and files.
    Status(StatusArgs),
    /// Check every source partition for missing and duplicated offsets and against the ledger;
    /// exits non-zero when anything is off.
    Verify(VerifyArgs),
    /// Produce realistic sample OMS order events to Kafka.
    Generate(GenerateArgs),
    /// Compact closed partitions (sorted by customer and order id), checkpoint the log and vacuum
    /// unreferenced files; each step alone with its flag, all three without one.
    Maintain(MaintainArgs),
    /// Send archived records back into Kafka, byte for byte, resumably.
    Replay(ReplayArgs),
    /// Load legacy exports (newline-delimited JSON or Parquet, local or s3://) into the archive
    /// through the source mappings; rows are marked as imported, and importing the same file
    /// twice adds nothing.
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub common: ConfigArgs,

    /// Files to import, in order: local paths, file:// or s3://bucket/key URIs.
    #[arg(required = true)]
    pub inputs: Vec<String>,

    /// The records are events of this topic: its source mapping decodes them (the rows are not
    /// archived under it: imported rows carry no Kafka coordinates).
    #[arg(long, default_value = "oms.orders")]
    pub topic: String,

    /// ndjson or parquet (default: from each file's extension).
    #[arg(long)]
    pub format: Option<orderlake_ingest::ImportFormat>,

    /// Records per commit; an interrupted import resumes after its last commit.
    #[arg(long, default_value_t = 200_000)]
    pub chunk_rows: usize,

    /// Hide the progress bars.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub common: ConfigArgs,

    /// Bootstrap brokers of the cluster to replay into (default: the config's kafka.brokers).
    #[arg(long, env = "ORDERLAKE_BROKERS")]
    pub brokers: Option<String>,

    /// Topic to send the records to.
    #[arg(long)]
    pub to_topic: String,

    /// Start of the time range (inclusive), ISO-8601; no zone means UTC.
    #[arg(long)]
    pub from: Option<String>,

    /// End of the time range (exclusive), ISO-8601.
    #[arg(long)]
    pub to: Option<String>,

    /// Which time --from/--to select on: the order event's time or the original Kafka timestamp.
    #[arg(long, value_parser = ["event", "kafka"], default_value = "event")]
    pub time_field: String,

    /// Source topics to replay (default: all).
    #[arg(long = "source-topics", value_delimiter = ',')]
    pub source_topics: Vec<String>,

    /// Source partitions to replay (default: all).
    #[arg(long, value_delimiter = ',')]
    pub partitions: Vec<i32>,

    /// Source offset range, inclusive: A..B, A.. or ..B.
    #[arg(long)]
    pub offsets: Option<String>,

    /// SQL predicate over the archive's columns, e.g. "status = 'CANCELLED' AND facility_id = 'FAC-07'".
    #[arg(long = "where")]
    pub predicate: Option<String>,

    /// Report what would be sent (records, bytes, partitions, time span) and send nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// auto (keep when the target has the source partition numbers, else key), keep, key or random.
    #[arg(long, default_value = "auto")]
    pub partitioning: orderlake_replay::Partitioning,

    /// Records per second at most.
    #[arg(long)]
    pub rate: Option<u64>,

    /// Bytes (keys + values) per second at most.
    #[arg(long)]
    pub rate_bytes: Option<u64>,

    /// Continue an interrupted replay from its checkpoint.
    #[arg(long)]
    pub resume: bool,

    /// Checkpoint file (default .orderlake-replay/<to-topic>.json).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,

    /// Allow replaying into a topic the archiver consumes.
    #[arg(long)]
    pub allow_loop: bool,

    /// Create the target topic with this many partitions when it does not exist.
    #[arg(long)]
    pub create_topic: Option<i32>,

    /// The target cluster's schema registry: records framed for a registry (Avro) are sent only
    /// once the schema they name resolves there; the replay stops before the first that does
    /// not. Credentials and TLS come from the config's `[schema_registry]` block.
    #[arg(long, value_delimiter = ',')]
    pub schema_registry_url: Option<Vec<String>>,

    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Options shared by commands that read the config file.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// TOML config file (see config/archiver.toml).
    #[arg(long, env = "ORDERLAKE_CONFIG")]
    pub config: Option<PathBuf>,

    /// Archive table: file:///…, a local path, or s3://bucket/prefix.
    #[arg(long, env = "ORDERLAKE_TABLE_URI")]
    pub table_uri: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: ConfigArgs,

    /// Bootstrap brokers, comma separated.
    #[arg(long, env = "ORDERLAKE_BROKERS")]
    pub brokers: Option<String>,

    /// Consumer group.
    #[arg(long, env = "ORDERLAKE_GROUP")]
    pub group: Option<String>,

    /// Topics to archive, comma separated.
    #[arg(long, env = "ORDERLAKE_TOPICS", value_delimiter = ',')]
    pub topics: Option<Vec<String>>,

    /// Run until every assigned partition is archived to its end, then exit 0.
    #[arg(long, env = "ORDERLAKE_UNTIL_CAUGHT_UP")]
    pub until_caught_up: bool,

    /// Flush after this many milliseconds even if no more records arrive.
    #[arg(long, env = "ORDERLAKE_FLUSH_INTERVAL_MS")]
    pub flush_interval_ms: Option<u64>,

    /// Flush after this many buffered rows.
    #[arg(long, env = "ORDERLAKE_FLUSH_MAX_ROWS")]
    pub flush_max_rows: Option<usize>,

    /// Serve /metrics, /health and /ready on this address (`[metrics] listen`).
    #[arg(long, env = "ORDERLAKE_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,

    /// Schema registry URL(s) for Avro records, comma-separated (`[schema_registry] urls`).
    #[arg(long, env = "ORDERLAKE_SCHEMA_REGISTRY_URL", value_delimiter = ',')]
    pub schema_registry_url: Option<Vec<String>>,

    /// Print the effective configuration (secrets redacted) and exit.
    #[arg(long)]
    pub print_config: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub common: ConfigArgs,

    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub common: ConfigArgs,

    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Also report how far each partition's archive is behind these brokers.
    #[arg(long)]
    pub brokers: Option<String>,
}

#[derive(Debug, Args)]
pub struct MaintainArgs {
    #[command(flatten)]
    pub common: ConfigArgs,

    /// Rewrite the files of each closed partition into few large files sorted by customer and order.
    #[arg(long)]
    pub compact: bool,

    /// Index the live files the key index does not cover yet (compacted files among them) and
    /// merge its segments into one.
    #[arg(long)]
    pub index: bool,

    /// Rebuild the key index from the live files alone, replacing every segment (repairs an
    /// index `verify` reports as damaged).
    #[arg(long)]
    pub reindex: bool,

    /// Bring the daily rollup up to date: compute the closed dates it lacks or whose rows
    /// changed since (late events), so `daily_activity` serves them without reading rows.
    #[arg(long)]
    pub rollup: bool,

    /// Recompute the daily rollup of every closed date from its rows, replacing it whole
    /// (repairs a rollup `verify` reports as wrong).
    #[arg(long)]
    pub rebuild_rollup: bool,

    /// Write a Delta checkpoint and clean log entries past the log retention.
    #[arg(long)]
    pub checkpoint: bool,

    /// Decode the rows archived raw because the schema registry did not serve their schema in
    /// time (it must serve them now), rewriting the files that hold them.
    #[arg(long)]
    pub redecode: bool,

    /// Schema registry URL(s) for --redecode, comma-separated (`[schema_registry] urls`).
    #[arg(long, env = "ORDERLAKE_SCHEMA_REGISTRY_URL", value_delimiter = ',')]
    pub schema_registry_url: Option<Vec<String>>,

    /// Delete data files no version within the retention period references (orphans included).
    #[arg(long)]
    pub vacuum: bool,

    /// Dates at least this many days old are closed and compacted.
    #[arg(long, default_value_t = 2)]
    pub closed_after_days: i64,

    /// Target size of compacted files, in MiB.
    #[arg(long, default_value_t = 128)]
    pub target_file_mib: u64,

    /// Vacuum keeps unreferenced files younger than this many hours.
    #[arg(long, default_value_t = 168)]
    pub retention_hours: u64,

    /// Allow a vacuum retention below 24 hours.
    #[arg(long)]
    pub force: bool,

    /// Vacuum lists what it would delete and deletes nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Bootstrap brokers, comma separated.
    #[arg(long, env = "ORDERLAKE_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,

    /// Number of events to produce.
    #[arg(long, default_value_t = 10_000)]
    pub events: u64,

    /// Random seed: the same seed produces the same stream.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Years of history the events span, ending now.
    #[arg(long, default_value_t = 3.0)]
    pub years: f64,

    /// Share of malformed records (0–1).
    #[arg(long, default_value_t = 0.01)]
    pub malformed_share: f64,

    /// Events per second (0 = as fast as the broker takes them).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,

    /// Topic name prefix: topics are PREFIXorders, PREFIXorder-status, PREFIXfulfillment.
    #[arg(long, default_value = "oms.")]
    pub topic_prefix: String,

    /// Partitions for topics that do not exist yet.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,

    /// Skip this many events of the stream first (to continue an earlier run with the same seed).
    #[arg(long, default_value_t = 0)]
    pub skip: u64,

    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,

    /// Write the events straight into this archive table instead of producing them to Kafka:
    /// imported like a legacy export (rows marked as imported, no Kafka coordinates), for
    /// building large benchmark and demo archives quickly. Running the same command again adds
    /// nothing; a larger `--events` continues the same stream.
    #[arg(long)]
    pub into_table: Option<String>,

    /// With --into-table: how a new table is partitioned by event time (an existing table keeps
    /// its own).
    #[arg(long, default_value_t = Partitioning::default())]
    pub partitioning: Partitioning,

    /// With --into-table: how a new table compresses its columns other than the raw record
    /// (zstd or lz4; an existing table keeps its own).
    #[arg(long, default_value_t = ColumnCodec::default())]
    pub codec: ColumnCodec,
}

impl RunArgs {
    /// Defaults < file < environment/flags (clap already ranks flags over the environment).
    pub fn resolve(&self) -> Result<ArchiverConfig, crate::error::CliError> {
        let mut c = self.common.load()?;
        if let Some(b) = &self.brokers {
            c.kafka.brokers.clone_from(b);
        }
        if let Some(g) = &self.group {
            c.kafka.group.clone_from(g);
        }
        if let Some(t) = &self.topics {
            c.kafka.topics.clone_from(t);
        }
        if let Some(ms) = self.flush_interval_ms {
            c.flush.interval_ms = ms;
        }
        if let Some(rows) = self.flush_max_rows {
            c.flush.max_rows = rows;
        }
        if let Some(listen) = self.metrics_listen {
            c.metrics.listen = Some(listen);
        }
        if let Some(urls) = &self.schema_registry_url {
            c.schema_registry.urls.clone_from(urls);
        }
        c.validate(&crate::config::source_name(self.common.config.as_ref()))?;
        Ok(c)
    }
}

impl ConfigArgs {
    pub fn load(&self) -> Result<ArchiverConfig, crate::error::CliError> {
        let mut c = match &self.config {
            Some(path) => ArchiverConfig::from_file(path)?,
            None => ArchiverConfig::default(),
        };
        if let Some(uri) = &self.table_uri {
            c.archive.table_uri.clone_from(uri);
        }
        Ok(c)
    }
}
