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

/// The longest status message sent, in bytes. gRPC sends it in a trailer, which clients bound
/// (16 KiB by default in hyper-based ones, which reset the whole stream past it); an error that
/// quotes a long literal of the query would otherwise reach the client as a protocol error.
pub const MAX_STATUS_MESSAGE_BYTES: usize = 4096;

/// The status a client sees for a query error: each class has exactly one code.
pub fn status(e: &QueryError) -> Status {
    let message = bounded(e.to_string());
    match e {
        QueryError::Syntax { .. } | QueryError::Invalid { .. } => Status::invalid_argument(message),
        QueryError::NotFound { .. } => Status::not_found(message),
        QueryError::Forbidden { .. } => Status::permission_denied(message),
        QueryError::ResourcesExhausted { .. } => Status::resource_exhausted(message),
        QueryError::Timeout { .. } => Status::deadline_exceeded(message),
        QueryError::Cancelled { .. } => Status::cancelled(message),
        QueryError::Archive(_) | QueryError::Unavailable { .. } => Status::unavailable(message),
        QueryError::View { .. } | QueryError::Engine { .. } => Status::internal(message),
    }
}

/// `message` cut at [`MAX_STATUS_MESSAGE_BYTES`] (on a character boundary), saying how much was
/// left out.
fn bounded(message: String) -> String {
    if message.len() <= MAX_STATUS_MESSAGE_BYTES {
        return message;
    }
    let mut end = MAX_STATUS_MESSAGE_BYTES - 64;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… ({} more bytes left out)",
        &message[..end],
        message.len() - end
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_to_fit_a_trailer() {
        let long = QueryError::invalid(format!("Cannot cast '{}' to Date32", "日".repeat(100_000)));
        let s = status(&long);
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert!(
            s.message().len() <= MAX_STATUS_MESSAGE_BYTES,
            "{}",
            s.message().len()
        );
        assert!(s.message().starts_with("Cannot cast '日"));
        assert!(s.message().ends_with("more bytes left out)"));
        let short = QueryError::invalid("short");
        assert_eq!(status(&short).message(), "short");
    }
}
