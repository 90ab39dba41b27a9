//! Errors of the server, and the one mapping from query errors to gRPC statuses.

use std::net::SocketAddr;
use std::path::PathBuf;

use orderlake_query::QueryError;
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] orderlake_archive::ConfigError),

    #[error("cannot read TLS {what} {}: {source}", path.display())]
    Tls {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },

    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),

    #[error(transparent)]
    Query(#[from] QueryError),

    #[error(transparent)]
    Archive(#[from] orderlake_archive::ArchiveError),

    #[error("cluster: {0}")]
    Cluster(String),

    #[error(transparent)]
    Telemetry(#[from] orderlake_telemetry::TelemetryError),
}

/// The status a client sees for a query error: each class has exactly one code.
pub fn status(e: &QueryError) -> Status {
    let message = e.to_string();
    match e {
        QueryError::Syntax { .. } | QueryError::Invalid { .. } => Status::invalid_argument(message),
        QueryError::NotFound { .. } => Status::not_found(message),
        QueryError::Forbidden { .. } => Status::permission_denied(message),
        QueryError::ResourcesExhausted { .. } => Status::resource_exhausted(message),
        QueryError::Timeout { .. } => Status::deadline_exceeded(message),
        QueryError::Cancelled { .. } => Status::cancelled(message),
        QueryError::Archive(_) => Status::unavailable(message),
        QueryError::View { .. } | QueryError::Engine { .. } => Status::internal(message),
    }
}
