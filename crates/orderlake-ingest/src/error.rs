//! Errors of the ingest path, carrying the identifying fields (mapping, topic, partition, table).

use orderlake_archive::ArchiveError;

pub type Result<T, E = IngestError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A source mapping in the config cannot be used.
    #[error("source mapping `{mapping}`: {reason}")]
    Mapping { mapping: String, reason: String },

    /// The archive table could not be opened, read or created.
    #[error(transparent)]
    Archive(#[from] ArchiveError),

    /// Writing Parquet files or committing to the Delta log failed.
    #[error("writing to `{table}` failed: {source}")]
    Write {
        table: String,
        #[source]
        source: Box<deltalake::DeltaTableError>,
    },

    /// Kafka refused us (bad brokers, unknown group, fatal consumer error).
    #[error("Kafka: {context}: {source}")]
    Kafka {
        context: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },

    /// A ledger entry (a Kafka partition's or an import's) moved while we held records for it:
    /// another writer archived them first.
    #[error(
        "{stream}: the table's ledger says {found:?} but this writer expected {expected:?}; \
         another writer archived these records first"
    )]
    Fenced {
        stream: String,
        expected: Option<i64>,
        found: Option<i64>,
    },

    /// An import input cannot be read: missing, unreadable, or not in the format it claims.
    #[error("import `{input}`: {reason}")]
    Import { input: String, reason: String },

    /// A graceful stop could not commit what was buffered in time; it will be re-read next run.
    #[error(
        "could not flush and commit within the {grace:?} shutdown grace period; uncommitted records will be re-read on the next start"
    )]
    ShutdownTimedOut { grace: std::time::Duration },

    /// A live data file of the archive cannot be read back (by `maintain --redecode`).
    #[error("reading archive file `{path}`: {reason}")]
    ReadFile { path: String, reason: String },

    /// A background thread stopped unexpectedly.
    #[error("{0} stopped unexpectedly")]
    TaskLost(&'static str),
}
