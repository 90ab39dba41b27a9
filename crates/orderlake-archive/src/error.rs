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

    /// A key-index segment cannot be written or read.
    #[error("key index segment `{path}`: {source}")]
    IndexSegment {
        path: String,
        #[source]
        source: parquet::errors::ParquetError,
    },

    /// The key-index folder cannot be listed or written.
    #[error("key index `{path}`: {source}")]
    IndexStore {
        path: String,
        #[source]
        source: object_store::Error,
    },

    /// Rows handed to the key index lack a column it needs.
    #[error("archive rows have no column `{0}` to index")]
    IndexColumn(&'static str),

    /// The daily rollup cannot be computed, read or written.
    #[error("rollup `{path}`: {message}")]
    Rollup { path: String, message: String },

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

    /// A query over the table (DataFusion, through delta-rs' provider) failed.
    pub(crate) fn datafusion(
        uri: &str,
    ) -> impl Fn(datafusion::error::DataFusionError) -> Self + Copy + '_ {
        move |source| Self::Delta {
            uri: uri.to_owned(),
            source: Box::new(source.into()),
        }
    }
}

/// An error and its causes on one line, each cause once: our messages often already quote their
/// source, and repeating it would read as two failures.
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}

/// How a command-line program ends: success, or its error on one line (never a backtrace) and a
/// failure status.
pub fn exit_code<E: AsRef<dyn std::error::Error + 'static>>(
    result: std::result::Result<(), E>,
) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod one_line_tests {
    #[test]
    fn causes_already_quoted_are_not_repeated() {
        let io = std::io::Error::other("disk on fire");
        let quoted = crate::ConfigError::Read {
            file: "a.toml".into(),
            source: io,
        };
        assert_eq!(
            super::one_line(&quoted),
            "cannot read config file a.toml: disk on fire"
        );
        let wrapped = anyhow::Error::new(std::io::Error::other("refused")).context("connecting");
        assert_eq!(super::one_line(wrapped.as_ref()), "connecting: refused");
    }
}
