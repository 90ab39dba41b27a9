//! Errors the archiver's commands report to the operator.

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] orderlake_archive::ConfigError),

    #[error(transparent)]
    Ingest(#[from] orderlake_ingest::IngestError),

    #[error(transparent)]
    Archive(#[from] orderlake_archive::ArchiveError),

    #[error(transparent)]
    Telemetry(#[from] orderlake_telemetry::TelemetryError),

    #[error(transparent)]
    Replay(#[from] orderlake_replay::ReplayError),

    /// Flags that cannot be used together, or a value the command cannot use.
    #[error("{0}")]
    Usage(String),

    #[error("Kafka: {context}: {source}")]
    Kafka {
        context: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
}

impl CliError {
    /// An interrupted replay (Ctrl-C): not a failure, but not finished either.
    pub fn is_interruption(&self) -> bool {
        matches!(
            self,
            Self::Replay(orderlake_replay::ReplayError::Interrupted { .. })
        )
    }
}
