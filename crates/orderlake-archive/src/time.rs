//! The archive's time convention: instants are UTC microseconds; text without a zone is UTC.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// Parses ISO-8601 (with a zone, without one meaning UTC, or a bare date meaning midnight UTC) or
/// epoch milliseconds written as digits, into microseconds since the epoch.
pub fn parse_timestamp(s: &str) -> Result<i64, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<i64>()
            .ok()
            .and_then(|ms| ms.checked_mul(1000))
            .ok_or_else(|| format!("\"{s}\" is not epoch milliseconds"));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc).timestamp_micros());
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(t.and_utc().timestamp_micros());
        }
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%#z"] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Ok(t.with_timezone(&Utc).timestamp_micros());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc()
            .timestamp_micros());
    }
    Err(format!(
        "\"{s}\" is not an ISO-8601 timestamp or epoch milliseconds"
    ))
}

/// Days since the epoch of a UTC instant in microseconds (the `event_date` partition value).
pub fn day_of(micros: i64) -> i32 {
    i32::try_from(micros.div_euclid(86_400_000_000)).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_with_and_without_zone() {
        let utc = parse_timestamp("2024-01-01T10:00:00Z").unwrap();
        assert_eq!(parse_timestamp("2024-01-01T11:00:00+01:00").unwrap(), utc);
        assert_eq!(parse_timestamp("2024-01-01T10:00:00").unwrap(), utc);
        assert_eq!(parse_timestamp("2024-01-01 10:00:00.000").unwrap(), utc);
        assert_eq!(parse_timestamp("1704103200000").unwrap(), utc);
        assert_eq!(day_of(parse_timestamp("2024-01-01").unwrap()), 19_723);
        assert!(parse_timestamp("yesterday").is_err());
    }
}
