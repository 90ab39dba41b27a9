//! The JSON documents of Trino's client protocol (`QueryResults` and what it holds), and how the
//! engine's errors become Trino's: `errorName`, `errorCode`, `errorType` and `errorLocation`.

use orderlake_query::QueryError;
use serde::Serialize;

/// What a query is doing, as `stats.state` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    Queued,
    Running,
    Finished,
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "QUEUED",
            State::Running => "RUNNING",
            State::Finished => "FINISHED",
            State::Failed => "FAILED",
        }
    }
}

/// One response to `POST /v1/statement` or a `GET` of its `nextUri`, without its `data`: the
/// rows are already JSON and are appended to the serialized object as they are.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryResults<'a> {
    pub id: &'a str,
    pub info_uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub columns: Option<&'a [Column]>,
    pub stats: Stats,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a TrinoError>,
    pub warnings: [(); 0],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_type: Option<&'a str>,
}

/// A result column: its name, Trino type name and type signature.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub type_signature: serde_json::Value,
}

/// `stats`: the fields every client reads (the JDBC driver maps them to its `QueryStats`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub state: State,
    pub queued: bool,
    pub scheduled: bool,
    pub nodes: u32,
    pub total_splits: u32,
    pub queued_splits: u32,
    pub running_splits: u32,
    pub completed_splits: u32,
    pub cpu_time_millis: u64,
    pub wall_time_millis: u64,
    pub queued_time_millis: u64,
    pub elapsed_time_millis: u64,
    pub processed_rows: u64,
    pub processed_bytes: u64,
    pub physical_input_bytes: u64,
    pub peak_memory_bytes: u64,
    pub spilled_bytes: u64,
}

impl Stats {
    pub fn new(state: State, queued_ms: u64, elapsed_ms: u64, rows: u64, bytes: u64) -> Self {
        let running = state != State::Queued;
        Self {
            state,
            queued: !running,
            scheduled: running,
            nodes: u32::from(running),
            total_splits: 0,
            queued_splits: 0,
            running_splits: 0,
            completed_splits: 0,
            cpu_time_millis: 0,
            wall_time_millis: elapsed_ms,
            queued_time_millis: queued_ms,
            elapsed_time_millis: elapsed_ms,
            processed_rows: rows,
            processed_bytes: bytes,
            physical_input_bytes: 0,
            peak_memory_bytes: 0,
            spilled_bytes: 0,
        }
    }
}

/// `errorType`: whose fault it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorType {
    UserError,
    InternalError,
    InsufficientResources,
    External,
}

/// Where in the statement an error is (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorLocation {
    pub line_number: u32,
    pub column_number: u32,
}

/// The `error` object of a failed query.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrinoError {
    pub message: String,
    pub error_code: u32,
    pub error_name: &'static str,
    pub error_type: ErrorType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_location: Option<ErrorLocation>,
    pub failure_info: FailureInfo,
}

/// `failureInfo`, which the JDBC driver turns into the exception's cause.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureInfo {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub message: String,
    pub suppressed: [(); 0],
    pub stack: [(); 0],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_location: Option<ErrorLocation>,
}

/// Trino's standard error codes this server reports (`io.trino.spi.StandardErrorCode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    GenericUserError,
    SyntaxError,
    UserCanceled,
    PermissionDenied,
    NotFound,
    FunctionNotFound,
    DivisionByZero,
    InvalidCastArgument,
    NotSupported,
    InvalidSessionProperty,
    TypeMismatch,
    CatalogNotFound,
    SchemaNotFound,
    TableNotFound,
    ColumnNotFound,
    InvalidParameterUsage,
    ProcedureNotFound,
    InvalidProcedureArgument,
    GenericInternalError,
    QueryQueueFull,
    ExceededTimeLimit,
    ExceededLocalMemoryLimit,
    GenericInsufficientResources,
    StorageUnavailable,
}

impl Code {
    pub fn name(self) -> &'static str {
        match self {
            Code::GenericUserError => "GENERIC_USER_ERROR",
            Code::SyntaxError => "SYNTAX_ERROR",
            Code::UserCanceled => "USER_CANCELED",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::NotFound => "NOT_FOUND",
            Code::FunctionNotFound => "FUNCTION_NOT_FOUND",
            Code::DivisionByZero => "DIVISION_BY_ZERO",
            Code::InvalidCastArgument => "INVALID_CAST_ARGUMENT",
            Code::NotSupported => "NOT_SUPPORTED",
            Code::InvalidSessionProperty => "INVALID_SESSION_PROPERTY",
            Code::TypeMismatch => "TYPE_MISMATCH",
            Code::CatalogNotFound => "CATALOG_NOT_FOUND",
            Code::SchemaNotFound => "SCHEMA_NOT_FOUND",
            Code::TableNotFound => "TABLE_NOT_FOUND",
            Code::ColumnNotFound => "COLUMN_NOT_FOUND",
            Code::InvalidParameterUsage => "INVALID_PARAMETER_USAGE",
            Code::ProcedureNotFound => "PROCEDURE_NOT_FOUND",
            Code::InvalidProcedureArgument => "INVALID_PROCEDURE_ARGUMENT",
            Code::GenericInternalError => "GENERIC_INTERNAL_ERROR",
            Code::QueryQueueFull => "QUERY_QUEUE_FULL",
            Code::ExceededTimeLimit => "EXCEEDED_TIME_LIMIT",
            Code::ExceededLocalMemoryLimit => "EXCEEDED_LOCAL_MEMORY_LIMIT",
            Code::GenericInsufficientResources => "GENERIC_INSUFFICIENT_RESOURCES",
            Code::StorageUnavailable => "ARCHIVE_STORAGE_UNAVAILABLE",
        }
    }

    pub fn number(self) -> u32 {
        match self {
            Code::GenericUserError => 0,
            Code::SyntaxError => 1,
            Code::UserCanceled => 3,
            Code::PermissionDenied => 4,
            Code::NotFound => 5,
            Code::FunctionNotFound => 6,
            Code::DivisionByZero => 8,
            Code::InvalidCastArgument => 9,
            Code::NotSupported => 13,
            Code::InvalidSessionProperty => 14,
            Code::TypeMismatch => 58,
            Code::CatalogNotFound => 44,
            Code::SchemaNotFound => 45,
            Code::TableNotFound => 46,
            Code::ColumnNotFound => 47,
            Code::InvalidParameterUsage => 80,
            Code::ProcedureNotFound => 29,
            Code::InvalidProcedureArgument => 30,
            Code::GenericInternalError => 65536,
            Code::QueryQueueFull => 131_074,
            Code::ExceededTimeLimit => 131_075,
            Code::ExceededLocalMemoryLimit => 131_079,
            Code::GenericInsufficientResources => 131_072,
            // The first code of the EXTERNAL range, where Trino's connectors put their own
            // storage errors.
            Code::StorageUnavailable => 16_777_216,
        }
    }

    pub fn error_type(self) -> ErrorType {
        match self.number() {
            0..65536 => ErrorType::UserError,
            65536..131_072 => ErrorType::InternalError,
            131_072..16_777_216 => ErrorType::InsufficientResources,
            _ => ErrorType::External,
        }
    }
}

impl TrinoError {
    pub fn new(code: Code, message: impl Into<String>, location: Option<ErrorLocation>) -> Self {
        let message = message.into();
        Self {
            failure_info: FailureInfo {
                kind: match code.error_type() {
                    ErrorType::UserError => "io.trino.spi.TrinoException",
                    ErrorType::InternalError => "java.lang.RuntimeException",
                    ErrorType::InsufficientResources => "io.trino.ExceededLimitException",
                    ErrorType::External => "io.trino.spi.TrinoException",
                },
                message: message.clone(),
                suppressed: [],
                stack: [],
                error_location: location,
            },
            message,
            error_code: code.number(),
            error_name: code.name(),
            error_type: code.error_type(),
            error_location: location,
        }
    }

    /// The Trino error for an engine error.
    pub fn from_query(e: &QueryError) -> Self {
        let message = e.to_string();
        let lower = message.to_ascii_lowercase();
        let code = match e {
            QueryError::Syntax { .. } => Code::SyntaxError,
            QueryError::NotFound { .. } => not_found_code(&lower),
            QueryError::Forbidden { .. } => Code::PermissionDenied,
            QueryError::Invalid { .. } if lower.contains("divide by zero") => Code::DivisionByZero,
            QueryError::Invalid { .. } if lower.contains("cast") => Code::InvalidCastArgument,
            QueryError::Invalid { .. } if lower.contains("parameter") => {
                Code::InvalidParameterUsage
            }
            QueryError::Invalid { .. }
                if lower.contains("not supported") || lower.contains("unsupported") =>
            {
                Code::NotSupported
            }
            QueryError::Invalid { .. } if lower.contains("type") => Code::TypeMismatch,
            QueryError::Invalid { .. } => Code::GenericUserError,
            QueryError::ResourcesExhausted { .. } if lower.contains("queue") => {
                Code::QueryQueueFull
            }
            QueryError::ResourcesExhausted { .. } if lower.contains("memory") => {
                Code::ExceededLocalMemoryLimit
            }
            QueryError::ResourcesExhausted { .. } => Code::GenericInsufficientResources,
            QueryError::Timeout { .. } => Code::ExceededTimeLimit,
            QueryError::Cancelled { .. } => Code::UserCanceled,
            QueryError::Unavailable { .. } => Code::StorageUnavailable,
            QueryError::Archive(_) | QueryError::View { .. } | QueryError::Engine { .. } => {
                Code::GenericInternalError
            }
        };
        let location = location_in(&message);
        Self::new(code, message, location)
    }
}

fn not_found_code(lower: &str) -> Code {
    if lower.contains("no field named") || lower.contains("column") {
        Code::ColumnNotFound
    } else if lower.contains("invalid function") || lower.contains("function") {
        Code::FunctionNotFound
    } else if lower.contains("catalog") {
        Code::CatalogNotFound
    } else if lower.contains("schema") {
        Code::SchemaNotFound
    } else if lower.contains("table") || lower.contains("view") {
        Code::TableNotFound
    } else {
        Code::NotFound
    }
}

/// The `Line: L, Column: C` sqlparser puts in its messages.
fn location_in(message: &str) -> Option<ErrorLocation> {
    let at = message.find("Line: ")?;
    let rest = &message[at + "Line: ".len()..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let column: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some(ErrorLocation {
        line_number: line.trim().parse().ok()?,
        column_number: column.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_get_trino_names_and_locations() {
        let syntax = QueryError::Syntax {
            message: "Expected: an SQL statement, found: SELEC at Line: 2, Column: 5".into(),
        };
        let e = TrinoError::from_query(&syntax);
        assert_eq!(e.error_name, "SYNTAX_ERROR");
        assert_eq!(e.error_code, 1);
        assert_eq!(e.error_type, ErrorType::UserError);
        assert_eq!(
            e.error_location,
            Some(ErrorLocation {
                line_number: 2,
                column_number: 5
            })
        );
        let table = QueryError::not_found("table 'archive.oms.nope' not found");
        assert_eq!(TrinoError::from_query(&table).error_name, "TABLE_NOT_FOUND");
        let column =
            QueryError::not_found("Schema error: No field named nope. Valid fields are a, b.");
        assert_eq!(
            TrinoError::from_query(&column).error_name,
            "COLUMN_NOT_FOUND"
        );
        let memory = QueryError::ResourcesExhausted {
            message: "query exceeded its memory limit: Failed to allocate".into(),
        };
        let e = TrinoError::from_query(&memory);
        assert_eq!(e.error_name, "EXCEEDED_LOCAL_MEMORY_LIMIT");
        assert_eq!(e.error_code, 131_079);
        assert_eq!(e.error_type, ErrorType::InsufficientResources);
        let timeout = QueryError::Timeout {
            timeout: std::time::Duration::from_secs(1),
        };
        assert_eq!(
            TrinoError::from_query(&timeout).error_name,
            "EXCEEDED_TIME_LIMIT"
        );
        let cancelled = QueryError::Cancelled {
            query_id: "q".into(),
        };
        assert_eq!(
            TrinoError::from_query(&cancelled).error_name,
            "USER_CANCELED"
        );
        let storage = QueryError::Unavailable {
            message: "the archive's storage has not answered for 5.0 s".into(),
        };
        let e = TrinoError::from_query(&storage);
        assert_eq!(e.error_name, "ARCHIVE_STORAGE_UNAVAILABLE");
        assert_eq!(e.error_type, ErrorType::External);
        let refused = QueryError::forbidden("the archive is read-only: DML not supported");
        assert_eq!(
            TrinoError::from_query(&refused).error_name,
            "PERMISSION_DENIED"
        );
    }
}
