//! Errors raised while opening, creating or reading the archive table.

use deltalake::DeltaTableError;

/// Result alias for archive operations.
pub type Result<T, E = ArchiveError> = std::result::Result<T, E>;

/// Everything that can go wrong with the archive table itself.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The configured table URI cannot be understood.
    #[error("table URI `{uri}` is not usable: {reason}")]
    InvalidLocation { uri: String, reason: String },

    /// No Delta table exists at the location (and we were not asked to create one).
    #[error("no archive table at `{uri}`: run `orderlake-archiver run` first or check --table-uri")]
    TableNotFound { uri: String },

    /// An existing table's schema cannot hold archive rows; we never rewrite it.
    #[error("table at `{uri}` is not an orderlake archive: {reason}. Refusing to write to it")]
    IncompatibleSchema { uri: String, reason: String },

    /// A maintenance operation that would put data at risk without an explicit override.
    #[error("table `{uri}`: refused: {reason}")]
    Refused { uri: String, reason: String },

    /// The Delta log or the object store failed.
    #[error("Delta table `{uri}`: {source}")]
    Delta {
        uri: String,
        #[source]
        source: Box<DeltaTableError>,
    },
}

impl ArchiveError {
    pub(crate) fn delta(uri: &str) -> impl FnOnce(DeltaTableError) -> Self + '_ {
        move |source| match source {
            DeltaTableError::NotATable(_) => Self::TableNotFound {
                uri: uri.to_owned(),
            },
            source => Self::Delta {
                uri: uri.to_owned(),
                source: Box::new(source),
            },
        }
    }
}
