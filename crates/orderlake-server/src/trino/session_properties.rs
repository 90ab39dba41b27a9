//! The Trino session properties this server has. Each lowers one of the server's limits for the
//! session's queries and never raises it, so a client can ask for less time or memory but not
//! more. Values are written as Trino writes them: durations `90s`, `5m`, `1.5h`; sizes `512MB`,
//! `2GB`. Clients keep them (`SET SESSION` answers with `X-Trino-Set-Session`) and send them
//! back with every request in `X-Trino-Session`.

use std::time::Duration;

use orderlake_query::{QueryLimits, QueryScope};

use super::protocol::{Code, TrinoError};

/// One property: its name, what it means, and how its value is read.
#[derive(Debug)]
pub struct Property {
    pub name: &'static str,
    pub description: &'static str,
    kind: Kind,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    RunTime,
    Memory,
}

pub const PROPERTIES: [Property; 3] = [
    Property {
        name: "query_max_run_time",
        description: "Maximum run time of a query, queueing included (at most the server's \
                      limit)",
        kind: Kind::RunTime,
    },
    Property {
        name: "query_max_execution_time",
        description: "Maximum execution time of a query (at most the server's limit; here the \
                      same clock as query_max_run_time)",
        kind: Kind::RunTime,
    },
    Property {
        name: "query_max_memory",
        description: "Maximum memory a query may hold before it spills or fails (at most the \
                      server's limit)",
        kind: Kind::Memory,
    },
];

/// Checks that the server has a property of this name.
pub fn check_name(name: &str) -> Result<(), TrinoError> {
    property(name).map(|_| ())
}

fn property(name: &str) -> Result<&'static Property, TrinoError> {
    PROPERTIES.iter().find(|p| p.name == name).ok_or_else(|| {
        TrinoError::new(
            Code::InvalidSessionProperty,
            format!("Session property '{name}' does not exist"),
            None,
        )
    })
}

fn invalid(name: &str, value: &str, why: &str) -> TrinoError {
    TrinoError::new(
        Code::InvalidSessionProperty,
        format!("{name} is invalid: '{value}': {why}"),
        None,
    )
}

/// A number and a unit, as Airlift's `Duration` and `DataSize` print them (`1.5h`, `512MB`).
fn number_and_unit(value: &str) -> Option<(f64, &str)> {
    let value = value.trim();
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let number: f64 = value[..split].parse().ok()?;
    (number.is_finite() && number >= 0.0).then_some((number, value[split..].trim()))
}

/// A Trino duration: `ns`, `us`, `ms`, `s`, `m`, `h` or `d` after a number.
pub fn parse_duration(value: &str) -> Option<Duration> {
    let (n, unit) = number_and_unit(value)?;
    let seconds = match unit {
        "ns" => n / 1e9,
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

/// A Trino data size: `B`, `kB`, `MB`, `GB`, `TB` or `PB` (powers of 1024) after a number.
pub fn parse_data_size(value: &str) -> Option<usize> {
    let (n, unit) = number_and_unit(value)?;
    let power = ["B", "kB", "MB", "GB", "TB", "PB"]
        .iter()
        .position(|u| *u == unit)?;
    let bytes = n * 1024f64.powi(power as i32);
    (bytes < usize::MAX as f64).then_some(bytes as usize)
}

/// A property's value, read.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Setting {
    RunTime(Duration),
    Memory(usize),
}

/// Reads one property's value; an unknown name or an unreadable value is the client's error.
fn read(name: &str, value: &str) -> Result<Setting, TrinoError> {
    match property(name)?.kind {
        Kind::RunTime => match parse_duration(value) {
            Some(d) if !d.is_zero() => Ok(Setting::RunTime(d)),
            _ => Err(invalid(
                name,
                value,
                "expected a duration such as 90s, 5m or 1.5h",
            )),
        },
        Kind::Memory => match parse_data_size(value) {
            Some(b) if b > 0 => Ok(Setting::Memory(b)),
            _ => Err(invalid(name, value, "expected a size such as 512MB or 2GB")),
        },
    }
}

/// Checks one property's value.
pub fn check(name: &str, value: &str) -> Result<(), TrinoError> {
    read(name, value).map(|_| ())
}

/// Checks the session's properties and puts them into `scope`; the two time properties are one
/// clock, so the lower of them applies.
pub fn apply(properties: &[(String, String)], scope: &mut QueryScope) -> Result<(), TrinoError> {
    for (name, value) in properties {
        match read(name, value)? {
            Setting::RunTime(t) => {
                scope.max_run_time = Some(scope.max_run_time.map_or(t, |before| before.min(t)));
            }
            Setting::Memory(b) => scope.max_memory_bytes = Some(b),
        }
    }
    Ok(())
}

/// Sets one property in a session the server keeps (Flight SQL's): the latest setting replaces
/// the one before, of either time property.
pub fn set(name: &str, value: &str, scope: &mut QueryScope) -> Result<(), TrinoError> {
    match read(name, value)? {
        Setting::RunTime(t) => scope.max_run_time = Some(t),
        Setting::Memory(b) => scope.max_memory_bytes = Some(b),
    }
    Ok(())
}

/// A duration as the properties show it (`300.00s`).
pub fn show_duration(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

/// A size as the properties show it (`536870912B`).
pub fn show_size(bytes: usize) -> String {
    format!("{bytes}B")
}

/// `SHOW SESSION`'s rows: name, value, default (the server's limit), type, description.
pub fn rows(properties: &[(String, String)], server: &QueryLimits) -> Vec<[String; 5]> {
    PROPERTIES
        .iter()
        .map(|p| {
            let default = match p.kind {
                Kind::RunTime => show_duration(server.timeout),
                Kind::Memory => show_size(server.memory_bytes),
            };
            let value = properties
                .iter()
                .rev()
                .find(|(n, _)| n == p.name)
                .map_or_else(|| default.clone(), |(_, v)| v.clone());
            [
                p.name.to_owned(),
                value,
                default,
                "varchar".to_owned(),
                p.description.to_owned(),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_read_as_trino_writes_them() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5 m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("-5s"), None);
        assert_eq!(parse_duration("5 fortnights"), None);
        assert_eq!(parse_data_size("512MB"), Some(512 << 20));
        assert_eq!(parse_data_size("2GB"), Some(2 << 30));
        assert_eq!(parse_data_size("1.5kB"), Some(1536));
        assert_eq!(parse_data_size("2gb"), None);
    }

    #[test]
    fn properties_only_lower_the_server_limits() {
        let server = QueryLimits {
            timeout: Duration::from_secs(60),
            memory_bytes: 1 << 30,
            ..QueryLimits::default()
        };
        let mut scope = QueryScope {
            catalog: "archive".into(),
            schema: "oms".into(),
            time_zone: None,
            max_run_time: None,
            max_memory_bytes: None,
        };
        let set = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        apply(
            &set(&[
                ("query_max_run_time", "10s"),
                ("query_max_execution_time", "20s"),
                ("query_max_memory", "64MB"),
            ]),
            &mut scope,
        )
        .unwrap();
        let limits = scope.limits(&server);
        assert_eq!(limits.timeout, Duration::from_secs(10));
        assert_eq!(limits.memory_bytes, 64 << 20);
        apply(&set(&[("query_max_run_time", "1h")]), &mut scope).unwrap();
        assert_eq!(scope.limits(&server).timeout, Duration::from_secs(10));
        let mut fresh = QueryScope {
            max_run_time: None,
            ..scope.clone()
        };
        apply(&set(&[("query_max_run_time", "1h")]), &mut fresh).unwrap();
        assert_eq!(fresh.limits(&server).timeout, Duration::from_secs(60));
        let e = apply(&set(&[("query_max_memory", "lots")]), &mut scope).unwrap_err();
        assert!(
            e.message.contains("query_max_memory is invalid"),
            "{}",
            e.message
        );
        let e = apply(&set(&[("join_distribution_type", "BROADCAST")]), &mut scope).unwrap_err();
        assert!(e.message.contains("does not exist"), "{}", e.message);
    }
}
