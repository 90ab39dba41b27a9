//! Errors the archiver's commands report to the operator.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot read config file {}: {source}", file.display())]
    ConfigRead {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("config {}: key `{key}`: {reason}", file.display())]
    Config {
        file: PathBuf,
        key: String,
        reason: String,
    },

    #[error(transparent)]
    Ingest(#[from] orderlake_ingest::IngestError),

    #[error(transparent)]
    Archive(#[from] orderlake_archive::ArchiveError),

    #[error("Kafka: {context}: {source}")]
    Kafka {
        context: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
}
