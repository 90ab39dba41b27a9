//! Replay errors, each naming what the user has to fix.

pub type Result<T, E = ReplayError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Archive(#[from] orderlake_archive::ArchiveError),

    /// `--where` does not parse or names an unknown column.
    #[error("--where {predicate:?}: {reason}")]
    Predicate { predicate: String, reason: String },

    /// A selection argument is malformed.
    #[error("{argument}: {reason}")]
    Selection {
        argument: &'static str,
        reason: String,
    },

    #[error(
        "target topic `{topic}` does not exist; create it first or pass --create-topic PARTITIONS"
    )]
    TopicMissing { topic: String },

    #[error(
        "refusing to replay into `{topic}`: the archiver consumes that topic, so replayed records would be archived again; pass --allow-loop if that is really wanted"
    )]
    Loop { topic: String },

    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: String, reason: String },

    #[error("reading the archive: {0}")]
    Query(#[from] datafusion::error::DataFusionError),

    #[error("Kafka: {context}: {source}")]
    Kafka {
        context: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },

    #[error(
        "{failed} records were not acknowledged by the broker (first error: {first}); progress is checkpointed, rerun with --resume"
    )]
    Delivery { failed: u64, first: String },

    /// `--schema-registry-url`: a record's schema does not resolve in the target's registry.
    #[error(
        "{key} does not resolve in the target's schema registry ({reason}); nothing from this \
         record on was sent: register the schema there (or replay to a cluster that shares the \
         registry), then rerun with --resume"
    )]
    SchemaUnresolved { key: String, reason: String },

    #[error(
        "interrupted after {sent} records; progress is checkpointed in {checkpoint}: rerun with --resume"
    )]
    Interrupted { sent: u64, checkpoint: String },
}
