//! Log set-up shared by both binaries: human-readable text, or one JSON object a line carrying
//! the fields of the spans it was logged in (a query's id and user, a flush's partitions).

use tracing_subscriber::EnvFilter;

/// How log lines are written to standard error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("unknown log format {other:?}: use text or json")),
        }
    }
}

/// Installs the global subscriber. `ORDERLAKE_LOG` (an `EnvFilter` directive) overrides
/// `default_filter`.
pub fn init_logs(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_env("ORDERLAKE_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .flatten_event(true)
            .init(),
    }
}
