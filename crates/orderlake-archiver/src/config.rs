//! Archiver configuration as documented blocks, one struct per concern. Precedence: built-in
//! defaults < the TOML file (`--config`) < environment variables < flags. `config/archiver.toml`
//! is the commented example of every key; a test parses it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use orderlake_archive::ArchiveConfig;
use orderlake_archive::{ColumnCodec, ConfigError, Partitioning, TableLayout, config_file};
use orderlake_ingest::{SourceMapping, StartFrom, WriterSettings};
use serde::{Deserialize, Serialize};

use crate::error::CliError;

/// Kafka source: where to read and as which group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, comma separated.
    pub brokers: String,
    /// Consumer group; instances in one group share the partitions.
    pub group: String,
    /// Topics to archive.
    pub topics: Vec<String>,
    /// Where a partition the table has never seen starts: `earliest` or `latest`.
    pub start_from: StartFrom,
    /// Also commit archived offsets to the Kafka group (advisory, for lag tools).
    pub commit_to_group: bool,
    /// Extra librdkafka properties (security, timeouts, …).
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            group: "orderlake-archiver".into(),
            topics: orderlake_samples::SampleTopics::default()
                .all()
                .map(str::to_owned)
                .to_vec(),
            start_from: StartFrom::Earliest,
            commit_to_group: true,
            properties: BTreeMap::new(),
        }
    }
}

/// When buffered rows become a commit, and how much memory they may hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlushConfig {
    /// Flush after this many buffered rows.
    pub max_rows: usize,
    /// Flush after this many buffered bytes.
    pub max_bytes: usize,
    /// Flush this long after the first buffered row, even if no more records arrive.
    pub interval_ms: u64,
    /// Memory for buffered rows across all partitions and dates (the buffer being filled plus the
    /// flushes the writer holds); consumption pauses above it. At least 3 × `max_bytes`.
    pub memory_budget_bytes: usize,
}

impl Default for FlushConfig {
    fn default() -> Self {
        Self {
            max_rows: 500_000,
            max_bytes: 64 * 1024 * 1024,
            interval_ms: 10_000,
            memory_budget_bytes: 256 * 1024 * 1024,
        }
    }
}

/// Parquet file layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ParquetConfig {
    /// Roll to a new file once one reaches this size.
    pub target_file_bytes: u64,
    /// Rows per row group.
    pub row_group_rows: usize,
    /// zstd compression level (1–22).
    pub zstd_level: i32,
    /// Files (one per event date) open at once while a flush is written; each holds its own
    /// encoding and upload buffers, so this bounds memory when a flush spans many dates.
    pub max_open_files: usize,
    /// Write a key-index segment (order_id and customer_id to event dates) for each flush's files
    /// before committing them, so lookups find new rows without reading every new file.
    pub key_index: bool,
    /// How a table the archiver creates is partitioned by event time: `monthly` or `daily`. An
    /// existing table keeps its own.
    pub partitioning: Partitioning,
    /// How a table the archiver creates compresses its columns other than the raw record
    /// (always zstd): `zstd` or `lz4`. An existing table keeps its own.
    pub codec: ColumnCodec,
}

impl Default for ParquetConfig {
    fn default() -> Self {
        let w = WriterSettings::default();
        Self {
            target_file_bytes: w.target_file_bytes,
            row_group_rows: w.row_group_rows,
            zstd_level: w.zstd_level,
            max_open_files: w.max_open_files,
            key_index: w.key_index,
            partitioning: Partitioning::default(),
            codec: ColumnCodec::default(),
        }
    }
}

/// Decoding of record values into order columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecodeConfig {
    /// Values above this size are archived raw without being parsed.
    pub max_value_bytes: usize,
    /// Append the built-in mappings (seed 003, seed 004, fulfillment, generic) after `mappings`.
    pub use_default_mappings: bool,
}

impl Default for DecodeConfig {
    fn default() -> Self {
        Self {
            max_value_bytes: orderlake_ingest::decode::DEFAULT_MAX_DECODE_BYTES,
            use_default_mappings: true,
        }
    }
}

/// Stopping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// How long a graceful stop (SIGTERM/SIGINT) may take to flush and commit.
    pub grace_secs: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self { grace_secs: 30 }
    }
}

/// Table maintenance as a background task of `run` (the `maintain` command runs it once).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaintenanceConfig {
    /// Run compaction, checkpoint and vacuum in the background while archiving.
    pub enabled: bool,
    /// Time between runs; the first run starts one interval after the archiver starts.
    pub interval_secs: u64,
    /// Compact dates at least this many days old (closed: no more late records expected).
    pub closed_after_days: i64,
    /// Target size of compacted files.
    pub target_file_bytes: u64,
    /// Vacuum keeps unreferenced files younger than this (at least 24 hours).
    pub retention_hours: u64,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        let m = orderlake_archive::MaintenanceSettings::default();
        Self {
            enabled: false,
            interval_secs: 6 * 3600,
            closed_after_days: m.closed_after_days,
            target_file_bytes: m.target_file_bytes,
            retention_hours: m.retention.as_secs() / 3600,
        }
    }
}

/// The whole archiver configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArchiverConfig {
    pub kafka: KafkaConfig,
    pub archive: ArchiveConfig,
    pub flush: FlushConfig,
    pub parquet: ParquetConfig,
    pub decode: DecodeConfig,
    pub shutdown: ShutdownConfig,
    pub maintenance: MaintenanceConfig,
    /// Where the writer schemas of registry-framed records (Avro) come from.
    pub schema_registry: orderlake_ingest::registry::SchemaRegistryConfig,
    /// Prometheus metrics and health probes of `run`.
    pub metrics: orderlake_telemetry::MetricsConfig,
    /// Source mappings, tried in order before the built-in ones.
    pub mappings: Vec<SourceMapping>,
}

impl ArchiverConfig {
    /// How the archive writer lays out files (the `[parquet]` block).
    /// The layout of a table the archiver creates.
    pub fn table_layout(&self) -> TableLayout {
        TableLayout {
            partitioning: self.parquet.partitioning,
            codec: self.parquet.codec,
        }
    }

    pub fn writer_settings(&self) -> WriterSettings {
        WriterSettings {
            target_file_bytes: self.parquet.target_file_bytes,
            row_group_rows: self.parquet.row_group_rows,
            zstd_level: self.parquet.zstd_level,
            max_open_files: self.parquet.max_open_files,
            key_index: self.parquet.key_index,
            ..WriterSettings::default()
        }
    }

    /// Reads a TOML file; errors name the file and the key.
    pub fn from_file(path: &Path) -> Result<Self, CliError> {
        let config: Self = config_file::read_toml(path)?;
        config.validate(path)?;
        Ok(config)
    }

    pub fn from_toml(text: &str, path: &Path) -> Result<Self, CliError> {
        let config: Self = config_file::parse_toml(text, path)?;
        config.validate(path)?;
        Ok(config)
    }

    /// Checks values serde cannot; `file` is named in the error.
    pub fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: String| ConfigError::invalid(file, key, reason);
        if self.kafka.brokers.trim().is_empty() {
            return Err(bad("kafka.brokers", "must name at least one broker".into()));
        }
        if self.kafka.group.trim().is_empty() {
            return Err(bad("kafka.group", "must not be empty".into()));
        }
        if self.kafka.topics.iter().all(|t| t.trim().is_empty()) {
            return Err(bad("kafka.topics", "must list at least one topic".into()));
        }
        if self.flush.max_rows == 0 {
            return Err(bad("flush.max_rows", "must be at least 1".into()));
        }
        if self.flush.interval_ms == 0 {
            return Err(bad("flush.interval_ms", "must be at least 1".into()));
        }
        if self.flush.memory_budget_bytes < self.flush.max_bytes.saturating_mul(3) {
            return Err(bad(
                "flush.memory_budget_bytes",
                format!(
                    "{} is less than 3 × flush.max_bytes ({}): one buffer fills while two flushes are written",
                    self.flush.memory_budget_bytes, self.flush.max_bytes
                ),
            ));
        }
        if !(1..=22).contains(&self.parquet.zstd_level) {
            return Err(bad(
                "parquet.zstd_level",
                format!("{} is outside 1–22", self.parquet.zstd_level),
            ));
        }
        if self.parquet.max_open_files == 0 {
            return Err(bad("parquet.max_open_files", "must be at least 1".into()));
        }
        if self.parquet.row_group_rows == 0 {
            return Err(bad("parquet.row_group_rows", "must be at least 1".into()));
        }
        if self.maintenance.interval_secs == 0 {
            return Err(bad(
                "maintenance.interval_secs",
                "must be at least 1".into(),
            ));
        }
        if self.maintenance.closed_after_days < 0 {
            return Err(bad(
                "maintenance.closed_after_days",
                "must not be negative".into(),
            ));
        }
        let min = orderlake_archive::MaintenanceSettings::default().min_retention;
        if self.maintenance.retention_hours.saturating_mul(3600) < min.as_secs() {
            return Err(bad(
                "maintenance.retention_hours",
                format!(
                    "{} is below the {} hours a running writer's uncommitted files need; \
                     only `maintain --vacuum --force` goes lower",
                    self.maintenance.retention_hours,
                    min.as_secs() / 3600
                ),
            ));
        }
        if let Some((key, reason)) = self.schema_registry.problem() {
            return Err(bad(&format!("schema_registry.{key}"), reason));
        }
        orderlake_ingest::MappingSet::new(self.all_mappings())
            .map_err(|e| bad("mappings", e.to_string()))?;
        Ok(())
    }

    /// Configured mappings first, then the built-in ones unless switched off.
    pub fn all_mappings(&self) -> Vec<SourceMapping> {
        let mut all = self.mappings.clone();
        if self.decode.use_default_mappings {
            all.extend(SourceMapping::defaults());
        }
        all
    }

    pub fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.flush.interval_ms)
    }

    /// The effective configuration as TOML, with storage option values redacted.
    pub fn redacted(&self) -> String {
        let mut shown = self.clone();
        shown.archive = self.archive.redacted();
        shown.schema_registry = self.schema_registry.redacted();
        for (k, v) in &mut shown.kafka.properties {
            if ["password", "secret", "key", "token"]
                .iter()
                .any(|s| k.contains(s))
            {
                *v = "<redacted>".into();
            }
        }
        shown.mappings.clear();
        toml::to_string(&shown).unwrap_or_default()
    }
}

/// Where the config file came from, for error messages when none was given.
pub fn source_name(path: Option<&PathBuf>) -> PathBuf {
    path.cloned()
        .unwrap_or_else(|| PathBuf::from("<flags and environment>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ArchiverConfig, CliError> {
        ArchiverConfig::from_toml(text, Path::new("test.toml"))
    }

    #[test]
    fn the_shipped_example_parses_and_differs_from_nothing_unexpected() {
        let path = PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
        )
        .join("../../config/archiver.toml");
        let c = ArchiverConfig::from_file(&path).unwrap();
        assert_eq!(c.kafka.group, "orderlake-archiver");
        assert_eq!(c.archive.table_uri, "./data/lake/order_events");
        assert!(c.mappings.iter().any(|m| m.name == "legacy-export-orders"));
        assert!(c.all_mappings().len() > c.mappings.len());
        assert_eq!(c.maintenance, MaintenanceConfig::default());
    }

    #[test]
    fn bad_config_names_the_key_and_the_file() {
        let err = parse("[flush]\nmax_rows = \"many\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("test.toml") && err.contains("flush.max_rows"),
            "{err}"
        );
        let err = parse("[kafka]\nbrokerz = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("brokerz"), "{err}");
        let err = parse("[flush]\nmax_bytes = 100\nmemory_budget_bytes = 200\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("flush.memory_budget_bytes"), "{err}");
        let err = parse("[maintenance]\nenabled = true\nretention_hours = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("maintenance.retention_hours"), "{err}");
        let err = parse(
            "[[mappings]]\nname = \"m\"\ntopics = [\"t\"]\n[mappings.fields]\norder_id = \"id\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("mappings") && err.contains("JSON pointer"),
            "{err}"
        );
    }

    #[test]
    fn redaction_hides_secrets() {
        let mut c = ArchiverConfig::default();
        c.archive
            .storage_options
            .insert("aws_secret_access_key".into(), "hunter2".into());
        c.kafka
            .properties
            .insert("sasl.password".into(), "hunter3".into());
        let shown = c.redacted();
        assert!(
            !shown.contains("hunter2") && !shown.contains("hunter3"),
            "{shown}"
        );
    }
}
