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

    /// The archive's storage failed under the query or stopped answering; the same query can
    /// succeed once storage is back.
    #[error("{message}")]
    Unavailable { message: String },

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

impl QueryError {
    /// The engine panicked on this query (a bug in it, or in DataFusion): the query fails with
    /// what the panic said, and the server goes on.
    pub fn panicked(payload: &(dyn std::any::Any + Send)) -> Self {
        let said = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_owned());
        tracing::error!(panic = %said, "the engine panicked on a query");
        Self::Engine {
            message: format!("the engine failed on this query: {said}"),
        }
    }
}

impl From<DataFusionError> for QueryError {
    fn from(e: DataFusionError) -> Self {
        classify(&e)
            .or_else(|| storage_failure(&e))
            .unwrap_or_else(|| Self::Engine {
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
        // The analyzer fitting the query's types together: whatever it cannot fit (a function
        // given arguments it takes no signature for) is the query's error, even where DataFusion
        // files it as internal.
        DataFusionError::Context(rule, inner) if rule == "type_coercion" => {
            return Some(classify(inner).unwrap_or_else(|| QueryError::Invalid {
                message: format!("type error: {}", without_bug_report_hint(inner)),
            }));
        }
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
                    inner.downcast_ref::<QueryError>().map(|q| match q {
                        // An access rule refusing a table as the planner resolved it.
                        QueryError::Forbidden { message } => QueryError::Forbidden {
                            message: message.clone(),
                        },
                        other => QueryError::Engine {
                            message: other.to_string(),
                        },
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
        // What the engine cannot compute for this query's values and types (a function given
        // arguments it takes no signature for, an aggregate over NULL): the query's error.
        // DataFusion files its own defects as `Internal`, storage and I/O failures apart.
        DataFusionError::Execution(m) => QueryError::Invalid {
            message: message(m),
        },
        DataFusionError::ArrowError(a, _)
            if matches!(
                **a,
                arrow::error::ArrowError::CastError(_)
                    | arrow::error::ArrowError::ParseError(_)
                    | arrow::error::ArrowError::DivideByZero
                    | arrow::error::ArrowError::ArithmeticOverflow(_)
                    | arrow::error::ArrowError::InvalidArgumentError(_)
                    | arrow::error::ArrowError::ComputeError(_)
            ) =>
        {
            QueryError::Invalid {
                message: a.to_string(),
            }
        }
        _ => return None,
    })
}

/// A read of the archive's storage that failed (after the store's own retries), anywhere in
/// the error's causes.
fn storage_failure(e: &DataFusionError) -> Option<QueryError> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(store) = c.downcast_ref::<object_store::Error>() {
            return Some(QueryError::Unavailable {
                message: format!("the archive's storage failed: {store}"),
            });
        }
        cause = c.source();
    }
    None
}

/// The error's text without DataFusion's request to report internal errors as its bugs.
fn without_bug_report_hint(e: &DataFusionError) -> String {
    let text = e.strip_backtrace();
    match text.find("\nThis issue was likely caused by a bug") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
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

    #[test]
    fn what_type_coercion_cannot_fit_is_the_query_s_error() {
        let internal = DataFusionError::Context(
            "type_coercion".into(),
            Box::new(DataFusionError::Internal(
                "Function 'substr' failed to match any signature".into(),
            )),
        );
        match QueryError::from(internal) {
            QueryError::Invalid { message } => {
                assert!(message.contains("substr"), "{message}");
                assert!(!message.contains("bug in DataFusion"), "{message}");
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn a_failed_storage_read_under_any_wrapper_is_unavailable() {
        let store = object_store::Error::Generic {
            store: "S3",
            source: "error sending request: connection refused".into(),
        };
        let parquet = parquet::errors::ParquetError::External(Box::new(store));
        let wrapped = DataFusionError::Context(
            "reading part-0.parquet".into(),
            Box::new(DataFusionError::External(Box::new(parquet))),
        );
        match QueryError::from(wrapped) {
            QueryError::Unavailable { message } => {
                assert!(message.contains("connection refused"), "{message}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        let engine = DataFusionError::Internal("oops".into());
        assert!(matches!(
            QueryError::from(engine),
            QueryError::Engine { .. }
        ));
    }
}
