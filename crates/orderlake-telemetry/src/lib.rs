//! What both orderlake binaries tell their operators: the metric catalogue, an HTTP listener
//! with `/metrics` (Prometheus), `/health` and `/ready`, and log set-up (text or JSON).

pub mod catalogue;
mod error;
mod listener;
mod logs;

pub use axum::Router;
pub use error::TelemetryError;
pub use listener::{
    BeforeScrape, HttpResponse, MetricsConfig, OpsListener, Readiness, Sample, http_get,
    http_request, parse_samples, recorder,
};
pub use logs::{LogFormat, init_logs};
