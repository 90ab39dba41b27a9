//! Flight SQL client sessions: the current catalog and schema, set through SetSessionOptions (the
//! JDBC `catalog` property, ADBC's current catalog/schema) and read through GetSessionOptions.
//! A session belongs to the bearer token the client presents. arrow-flight has no types for these
//! messages, so they are declared here from the Flight protocol definition.

use std::collections::HashMap;
use std::sync::Mutex;

use orderlake_query::QueryScope;

use crate::trino::session_properties;

/// `arrow.flight.protocol.SessionOptionValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionOptionValue {
    #[prost(oneof = "OptionValue", tags = "1, 2, 3, 4, 5")]
    pub option_value: Option<OptionValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StringListValue {
    #[prost(string, repeated, tag = "1")]
    pub values: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum OptionValue {
    #[prost(string, tag = "1")]
    StringValue(String),
    #[prost(bool, tag = "2")]
    BoolValue(bool),
    #[prost(sfixed64, tag = "3")]
    Int64Value(i64),
    #[prost(double, tag = "4")]
    DoubleValue(f64),
    #[prost(message, tag = "5")]
    StringListValue(StringListValue),
}

impl SessionOptionValue {
    pub fn string(s: impl Into<String>) -> Self {
        Self {
            option_value: Some(OptionValue::StringValue(s.into())),
        }
    }

    fn as_str(&self) -> Option<&str> {
        match &self.option_value {
            Some(OptionValue::StringValue(s)) => Some(s),
            _ => None,
        }
    }
}

/// `arrow.flight.protocol.SetSessionOptionsRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SetSessionOptionsRequest {
    #[prost(map = "string, message", tag = "1")]
    pub session_options: HashMap<String, SessionOptionValue>,
}

/// `arrow.flight.protocol.SetSessionOptionsResult`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SetSessionOptionsResult {
    #[prost(map = "string, message", tag = "1")]
    pub errors: HashMap<String, SetSessionOptionError>,
}

#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct SetSessionOptionError {
    #[prost(enumeration = "SetSessionOptionErrorValue", tag = "1")]
    pub value: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum SetSessionOptionErrorValue {
    Unspecified = 0,
    InvalidName = 1,
    InvalidValue = 2,
    Error = 3,
}

/// `arrow.flight.protocol.GetSessionOptionsRequest`.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct GetSessionOptionsRequest {}

/// `arrow.flight.protocol.GetSessionOptionsResult`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetSessionOptionsResult {
    #[prost(map = "string, message", tag = "1")]
    pub session_options: HashMap<String, SessionOptionValue>,
}

/// `arrow.flight.protocol.CloseSessionRequest`.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct CloseSessionRequest {}

/// `arrow.flight.protocol.CloseSessionResult`.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct CloseSessionResult {
    #[prost(enumeration = "CloseSessionStatus", tag = "1")]
    pub status: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum CloseSessionStatus {
    Unspecified = 0,
    Closed = 1,
    Closing = 2,
    NotClosable = 3,
}

pub const SET_SESSION_OPTIONS: &str = "SetSessionOptions";
pub const GET_SESSION_OPTIONS: &str = "GetSessionOptions";
pub const CLOSE_SESSION: &str = "CloseSession";
pub const CANCEL_FLIGHT_INFO: &str = "CancelFlightInfo";

/// Session option names clients send (and Trino's session properties, by their names).
pub const CATALOG: &str = "catalog";
pub const SCHEMA: &str = "schema";
/// The session's time zone (an IANA name or an offset, as Trino's `X-Trino-Time-Zone`).
pub const TIME_ZONE: &str = "time_zone";

/// Every session's current catalog and schema, by session key.
#[derive(Debug)]
pub struct Sessions {
    default: QueryScope,
    scopes: Mutex<HashMap<String, QueryScope>>,
}

impl Sessions {
    pub fn new(default: QueryScope) -> Self {
        Self {
            default,
            scopes: Mutex::new(HashMap::new()),
        }
    }

    pub fn scope(&self, key: &str) -> QueryScope {
        self.scopes
            .lock()
            .expect("sessions lock")
            .get(key)
            .cloned()
            .unwrap_or_else(|| self.default.clone())
    }

    /// Applies the options it understands; `check` says whether a catalog/schema exists.
    /// Returns the per-option errors the protocol reports.
    pub fn set(
        &self,
        key: &str,
        request: &SetSessionOptionsRequest,
        check: impl Fn(&str, Option<&str>) -> bool,
    ) -> SetSessionOptionsResult {
        let mut scope = self.scope(key);
        let mut errors = HashMap::new();
        let error = |value: SetSessionOptionErrorValue| SetSessionOptionError {
            value: value as i32,
        };
        for (name, value) in &request.session_options {
            let Some(text) = value.as_str() else {
                errors.insert(
                    name.clone(),
                    error(SetSessionOptionErrorValue::InvalidValue),
                );
                continue;
            };
            match name.as_str() {
                CATALOG if check(text, None) => scope.catalog = text.to_owned(),
                SCHEMA if check(&scope.catalog, Some(text)) => scope.schema = text.to_owned(),
                TIME_ZONE if QueryScope::is_time_zone(text) => {
                    scope.time_zone = Some(text.to_owned());
                }
                CATALOG | SCHEMA | TIME_ZONE => {
                    errors.insert(
                        name.clone(),
                        error(SetSessionOptionErrorValue::InvalidValue),
                    );
                }
                // Trino's session properties, which only lower the server's limits.
                limit if session_properties::check_name(limit).is_ok() => {
                    if session_properties::set(limit, text, &mut scope).is_err() {
                        errors.insert(
                            name.clone(),
                            error(SetSessionOptionErrorValue::InvalidValue),
                        );
                    }
                }
                _ => {
                    errors.insert(name.clone(), error(SetSessionOptionErrorValue::InvalidName));
                }
            }
        }
        self.scopes
            .lock()
            .expect("sessions lock")
            .insert(key.to_owned(), scope);
        SetSessionOptionsResult { errors }
    }

    pub fn get(&self, key: &str) -> GetSessionOptionsResult {
        let scope = self.scope(key);
        let mut session_options = HashMap::from([
            (
                CATALOG.to_owned(),
                SessionOptionValue::string(scope.catalog),
            ),
            (SCHEMA.to_owned(), SessionOptionValue::string(scope.schema)),
            (
                TIME_ZONE.to_owned(),
                SessionOptionValue::string(scope.time_zone.unwrap_or_else(|| "UTC".into())),
            ),
        ]);
        if let Some(t) = scope.max_run_time {
            session_options.insert(
                "query_max_run_time".to_owned(),
                SessionOptionValue::string(session_properties::show_duration(t)),
            );
        }
        if let Some(bytes) = scope.max_memory_bytes {
            session_options.insert(
                "query_max_memory".to_owned(),
                SessionOptionValue::string(session_properties::show_size(bytes)),
            );
        }
        GetSessionOptionsResult { session_options }
    }

    pub fn close(&self, key: &str) {
        self.scopes.lock().expect("sessions lock").remove(key);
    }
}

/// What a Flight client calls itself: its `user-agent` (grpc-go for ADBC, grpc-java for JDBC,
/// with the driver's name where it adds one), for the running-query list.
pub fn client_name(metadata: &tonic::metadata::MetadataMap) -> Option<String> {
    metadata
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(200).collect::<String>())
        .filter(|v| !v.trim().is_empty())
}
