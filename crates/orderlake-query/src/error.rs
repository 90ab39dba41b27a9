//! Query errors, classified so that the protocol layer maps each to one precise status: a syntax
//! error is not an unknown table, and neither is a refused statement or an exhausted limit.

use std::time::Duration;

use datafusion::error::DataFusionError;

pub type Result<T, E = QueryError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The SQL does not parse; the message carries the line and column.
    #[error("SQL syntax error: {message}")]
    Syntax { message: String },

    /// A table, view, column, catalog, schema or function that does not exist.
    #[error("{message}")]
    NotFound { message: String },

    /// The statement would change something or reach outside the archive.
    #[error("{message}")]
    Forbidden { message: String },

    /// Well-formed SQL the engine cannot answer: type errors, bad or missing parameters, …
    #[error("{message}")]
    Invalid { message: String },

    /// Over the memory limit, the result-size limit, or the queue is full.
    #[error("{message}")]
    ResourcesExhausted { message: String },

    /// The query ran (or waited) longer than allowed and was stopped.
    #[error("query exceeded its {}s time limit and was stopped", timeout.as_secs_f64())]
    Timeout { timeout: Duration },

    /// A client cancelled the query.
    #[error("query {query_id} was cancelled")]
    Cancelled { query_id: String },

    /// The archive could not be opened or read.
    #[error(transparent)]
    Archive(#[from] orderlake_archive::ArchiveError),

    /// A view file in the SQL directory could not be read or does not plan.
    #[error("view {path}: {message}")]
    View { path: String, message: String },

    /// Anything else the engine reports.
    #[error("query failed: {message}")]
    Engine { message: String },
}

impl QueryError {
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden {
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid {
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound {
            message: message.into(),
        }
    }
}

impl From<DataFusionError> for QueryError {
    fn from(e: DataFusionError) -> Self {
        classify(&e).unwrap_or_else(|| Self::Engine {
            message: e.strip_backtrace(),
        })
    }
}

impl From<arrow::error::ArrowError> for QueryError {
    fn from(e: arrow::error::ArrowError) -> Self {
        DataFusionError::from(e).into()
    }
}

/// Finds the error a user should see inside DataFusion's wrappers (context, diagnostics, shared).
fn classify(e: &DataFusionError) -> Option<QueryError> {
    let message = |m: &str| m.trim().to_owned();
    Some(match e {
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            return classify(inner);
        }
        DataFusionError::Shared(inner) => return classify(inner),
        DataFusionError::Collection(all) => return all.iter().find_map(classify),
        DataFusionError::ExecutionJoin(_) => return None,
        DataFusionError::External(inner) => {
            return inner
                .downcast_ref::<DataFusionError>()
                .and_then(classify)
                .or_else(|| {
                    inner
                        .downcast_ref::<QueryError>()
                        .map(|q| QueryError::Engine {
                            message: q.to_string(),
                        })
                });
        }
        DataFusionError::SQL(parser, _) => QueryError::Syntax {
            message: parser
                .to_string()
                .trim_start_matches("sql parser error: ")
                .to_owned(),
        },
        DataFusionError::ResourcesExhausted(m) => QueryError::ResourcesExhausted {
            message: format!("query exceeded its memory limit: {}", message(m)),
        },
        DataFusionError::SchemaError(s, _) => {
            let m = s.to_string();
            if is_not_found(&m) {
                QueryError::NotFound { message: m }
            } else {
                QueryError::Invalid { message: m }
            }
        }
        DataFusionError::Plan(m) if is_not_found(m) => QueryError::NotFound {
            message: message(m),
        },
        DataFusionError::Plan(m) if is_refused(m) => QueryError::Forbidden {
            message: format!("the archive is read-only: {}", message(m)),
        },
        DataFusionError::Plan(m)
        | DataFusionError::NotImplemented(m)
        | DataFusionError::Configuration(m) => QueryError::Invalid {
            message: message(m),
        },
        DataFusionError::Execution(m) if m.contains("placeholder") || m.contains("parameter") => {
            QueryError::Invalid {
                message: message(m),
            }
        }
        DataFusionError::ArrowError(a, _)
            if matches!(
                **a,
                arrow::error::ArrowError::CastError(_)
                    | arrow::error::ArrowError::ParseError(_)
                    | arrow::error::ArrowError::DivideByZero
                    | arrow::error::ArrowError::ArithmeticOverflow(_)
                    | arrow::error::ArrowError::InvalidArgumentError(_)
            ) =>
        {
            QueryError::Invalid {
                message: a.to_string(),
            }
        }
        _ => return None,
    })
}

fn is_not_found(m: &str) -> bool {
    let m = m.to_ascii_lowercase();
    m.contains("not found")
        || m.contains("no field named")
        || m.contains("invalid function")
        || m.contains("does not exist")
}

fn is_refused(m: &str) -> bool {
    [
        "DDL not supported",
        "DML not supported",
        "Statement not supported",
    ]
    .iter()
    .any(|p| m.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_errors_keep_their_class() {
        let inner = DataFusionError::Plan("table 'archive.oms.nope' not found".into());
        let wrapped = DataFusionError::Context("planning".into(), Box::new(inner));
        assert!(matches!(
            QueryError::from(wrapped),
            QueryError::NotFound { message } if message.contains("archive.oms.nope")
        ));
        let oom = DataFusionError::Shared(std::sync::Arc::new(
            DataFusionError::ResourcesExhausted("Failed to allocate 10 MB".into()),
        ));
        assert!(matches!(
            QueryError::from(oom),
            QueryError::ResourcesExhausted { .. }
        ));
    }
}
