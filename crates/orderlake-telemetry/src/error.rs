//! What can go wrong starting the operations listener.

use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot listen for /metrics on {addr} ([metrics] listen): {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },

    #[error("cannot install the Prometheus recorder: {0}")]
    Recorder(String),
}
