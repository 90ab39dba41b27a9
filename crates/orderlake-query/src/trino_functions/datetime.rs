//! Trino's date and time functions: `date_add`, `date_diff`, `day_of_week` / `dow`,
//! `day_of_year` / `doy`, `week` / `week_of_year`, `year_of_week` / `yow`, `to_unixtime`,
//! `from_iso8601_timestamp`, `from_iso8601_date`. A zoned timestamp is computed in its zone's
//! local time, as Trino does (the archive's times are UTC).

use std::sync::Arc;

use chrono::{
    DateTime, Datelike as _, Months, NaiveDate, NaiveDateTime, TimeDelta, TimeZone as _, Utc,
};
use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::ScalarUDF;

use super::{RowWise, integer, text};

pub(super) fn functions() -> Vec<ScalarUDF> {
    vec![
        RowWise::udf("date_add", &[], &[3], same_as_third, date_add),
        RowWise::udf("date_diff", &[], &[3], bigint, date_diff),
        RowWise::udf("day_of_week", &["dow"], &[1], bigint, |a| {
            field(a, "day_of_week", |d| {
                i64::from(d.weekday().number_from_monday())
            })
        }),
        RowWise::udf("day_of_year", &["doy"], &[1], bigint, |a| {
            field(a, "day_of_year", |d| i64::from(d.ordinal()))
        }),
        RowWise::udf("week", &["week_of_year"], &[1], bigint, |a| {
            field(a, "week", |d| i64::from(d.iso_week().week()))
        }),
        RowWise::udf("year_of_week", &["yow"], &[1], bigint, |a| {
            field(a, "year_of_week", |d| i64::from(d.iso_week().year()))
        }),
        RowWise::udf("to_unixtime", &[], &[1], double, to_unixtime),
        RowWise::udf(
            "from_unixtime",
            &[],
            &[1],
            |_| Ok(zoned_millis()),
            from_unixtime,
        ),
        RowWise::udf(
            "from_iso8601_timestamp",
            &[],
            &[1],
            |_| Ok(zoned_millis()),
            from_iso8601_timestamp,
        ),
        RowWise::udf(
            "from_iso8601_date",
            &[],
            &[1],
            |_| Ok(DataType::Date32),
            from_iso8601_date,
        ),
    ]
}

fn bigint(_: &[DataType]) -> Result<DataType> {
    Ok(DataType::Int64)
}

fn double(_: &[DataType]) -> Result<DataType> {
    Ok(DataType::Float64)
}

fn zoned_millis() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// A text argument is read as a timestamp without zone.
fn as_time_type(t: &DataType) -> DataType {
    match t {
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 | DataType::Null => {
            DataType::Timestamp(TimeUnit::Nanosecond, None)
        }
        other => other.clone(),
    }
}

fn same_as_third(types: &[DataType]) -> Result<DataType> {
    Ok(as_time_type(&types[2]))
}

/// A date or time value: its local date-time (in its zone, if it has one) and how to rebuild it.
struct Instant {
    local: NaiveDateTime,
    kind: Kind,
}

enum Kind {
    Date32,
    Date64,
    Timestamp(TimeUnit, Option<Arc<str>>),
}

fn zone(z: &Option<Arc<str>>) -> Result<Option<Tz>> {
    z.as_deref()
        .map(str::parse::<Tz>)
        .transpose()
        .map_err(Into::into)
}

/// The value's local date-time, or `None` for NULL.
fn instant(value: &ScalarValue, function: &str) -> Result<Option<Instant>> {
    let kind = match value {
        ScalarValue::Date32(_) => Kind::Date32,
        ScalarValue::Date64(_) => Kind::Date64,
        ScalarValue::TimestampSecond(_, z) => Kind::Timestamp(TimeUnit::Second, z.clone()),
        ScalarValue::TimestampMillisecond(_, z) => {
            Kind::Timestamp(TimeUnit::Millisecond, z.clone())
        }
        ScalarValue::TimestampMicrosecond(_, z) => {
            Kind::Timestamp(TimeUnit::Microsecond, z.clone())
        }
        ScalarValue::TimestampNanosecond(_, z) => Kind::Timestamp(TimeUnit::Nanosecond, z.clone()),
        _ => Kind::Timestamp(TimeUnit::Nanosecond, None),
    };
    let Some((utc, z)) = utc_and_zone(value, function)? else {
        return Ok(None);
    };
    let local = match zone(&z)? {
        Some(tz) => utc.with_timezone(&tz).naive_local(),
        None => utc.naive_utc(),
    };
    Ok(Some(Instant { local, kind }))
}

/// An instant and the zone it is shown in (`None`: no zone, read as UTC).
pub(super) type Zoned = (DateTime<Utc>, Option<Arc<str>>);

/// A date or time value as an instant and the zone it is shown in, or `None` for NULL. Text is
/// read as a timestamp without zone; dates are midnight UTC.
pub(super) fn utc_and_zone(value: &ScalarValue, function: &str) -> Result<Option<Zoned>> {
    let (ticks, unit, z) = match value {
        ScalarValue::Date32(d) => {
            return Ok(d.and_then(|d| {
                DateTime::from_timestamp(i64::from(d) * 86_400, 0).map(|t| (t, None))
            }));
        }
        ScalarValue::Date64(d) => {
            return Ok(d
                .and_then(DateTime::from_timestamp_millis)
                .map(|t| (t, None)));
        }
        ScalarValue::TimestampSecond(v, z) => (v, TimeUnit::Second, z),
        ScalarValue::TimestampMillisecond(v, z) => (v, TimeUnit::Millisecond, z),
        ScalarValue::TimestampMicrosecond(v, z) => (v, TimeUnit::Microsecond, z),
        ScalarValue::TimestampNanosecond(v, z) => (v, TimeUnit::Nanosecond, z),
        ScalarValue::Utf8(_) | ScalarValue::Utf8View(_) | ScalarValue::LargeUtf8(_) => {
            return utc_and_zone(
                &value.cast_to(&DataType::Timestamp(TimeUnit::Nanosecond, None))?,
                function,
            );
        }
        ScalarValue::Null => return Ok(None),
        other => {
            return exec_err!(
                "{function}: expected a date or timestamp, got {}",
                other.data_type()
            );
        }
    };
    let Some(ticks) = *ticks else {
        return Ok(None);
    };
    let per_second = per_second(unit);
    let utc = DateTime::from_timestamp(
        ticks.div_euclid(per_second),
        (ticks.rem_euclid(per_second) * (1_000_000_000 / per_second)) as u32,
    );
    match utc {
        Some(utc) => Ok(Some((utc, z.clone()))),
        None => exec_err!("{function}: timestamp out of range"),
    }
}

fn per_second(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    }
}

/// The local date-time back as a value of `kind`.
fn rebuild(local: NaiveDateTime, kind: &Kind) -> Result<ScalarValue> {
    Ok(match kind {
        Kind::Date32 => ScalarValue::Date32(Some(
            (local.date() - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()).num_days()
                as i32,
        )),
        Kind::Date64 => ScalarValue::Date64(Some(local.and_utc().timestamp_millis())),
        Kind::Timestamp(unit, z) => {
            let utc = match zone(z)? {
                Some(tz) => match tz.from_local_datetime(&local).earliest() {
                    Some(t) => t.naive_utc(),
                    None => local,
                },
                None => local,
            }
            .and_utc();
            let ticks = match unit {
                TimeUnit::Second => Some(utc.timestamp()),
                TimeUnit::Millisecond => Some(utc.timestamp_millis()),
                TimeUnit::Microsecond => Some(utc.timestamp_micros()),
                TimeUnit::Nanosecond => utc.timestamp_nanos_opt(),
            };
            let z = z.clone();
            match unit {
                TimeUnit::Second => ScalarValue::TimestampSecond(ticks, z),
                TimeUnit::Millisecond => ScalarValue::TimestampMillisecond(ticks, z),
                TimeUnit::Microsecond => ScalarValue::TimestampMicrosecond(ticks, z),
                TimeUnit::Nanosecond => ScalarValue::TimestampNanosecond(ticks, z),
            }
        }
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Millisecond,
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

fn unit(value: &ScalarValue, function: &str) -> Result<Option<Unit>> {
    let Some(name) = text(value, function)? else {
        return Ok(None);
    };
    Ok(Some(match name.to_ascii_lowercase().as_str() {
        "millisecond" => Unit::Millisecond,
        "second" => Unit::Second,
        "minute" => Unit::Minute,
        "hour" => Unit::Hour,
        "day" => Unit::Day,
        "week" => Unit::Week,
        "month" => Unit::Month,
        "quarter" => Unit::Quarter,
        "year" => Unit::Year,
        other => return exec_err!("{function}: '{other}' is not a valid unit"),
    }))
}

/// The fixed length of a unit, or `None` for calendar units (month, quarter, year) and its
/// length in months.
fn length(unit: Unit) -> Result<TimeDelta, u32> {
    match unit {
        Unit::Millisecond => Ok(TimeDelta::milliseconds(1)),
        Unit::Second => Ok(TimeDelta::seconds(1)),
        Unit::Minute => Ok(TimeDelta::minutes(1)),
        Unit::Hour => Ok(TimeDelta::hours(1)),
        Unit::Day => Ok(TimeDelta::days(1)),
        Unit::Week => Ok(TimeDelta::weeks(1)),
        Unit::Month => Err(1),
        Unit::Quarter => Err(3),
        Unit::Year => Err(12),
    }
}

fn add_months(t: NaiveDateTime, months: i64) -> Option<NaiveDateTime> {
    let n = Months::new(u32::try_from(months.unsigned_abs()).ok()?);
    if months >= 0 {
        t.checked_add_months(n)
    } else {
        t.checked_sub_months(n)
    }
}

fn date_add(args: &[ScalarValue]) -> Result<ScalarValue> {
    let (Some(unit), Some(value), Some(at)) = (
        unit(&args[0], "date_add")?,
        integer(&args[1], "date_add")?,
        instant(&args[2], "date_add")?,
    ) else {
        return Ok(ScalarValue::Null);
    };
    let moved = match length(unit) {
        Ok(step) => i32::try_from(value)
            .ok()
            .and_then(|v| step.checked_mul(v))
            .and_then(|d| at.local.checked_add_signed(d)),
        Err(months) => add_months(at.local, value.saturating_mul(i64::from(months))),
    };
    match moved {
        Some(t) => rebuild(t, &at.kind),
        None => exec_err!("date_add: the result is out of range"),
    }
}

fn date_diff(args: &[ScalarValue]) -> Result<ScalarValue> {
    let (Some(unit), Some(a), Some(b)) = (
        unit(&args[0], "date_diff")?,
        instant(&args[1], "date_diff")?,
        instant(&args[2], "date_diff")?,
    ) else {
        return Ok(ScalarValue::Int64(None));
    };
    let (a, b) = (a.local, b.local);
    let n = match length(unit) {
        Ok(step) => {
            let micros = |d: TimeDelta| d.num_microseconds().unwrap_or(i64::MAX);
            micros(b - a) / micros(step)
        }
        Err(per) => {
            let mut months =
                i64::from(b.year() - a.year()) * 12 + i64::from(b.month()) - i64::from(a.month());
            // Whole months only: a + months must not pass b (end-of-month days clamp, as Joda).
            if let Some(moved) = add_months(a, months) {
                if months > 0 && moved > b {
                    months -= 1;
                } else if months < 0 && moved < b {
                    months += 1;
                }
            }
            months / i64::from(per)
        }
    };
    Ok(ScalarValue::Int64(Some(n)))
}

/// The local date-time of a date or timestamp argument (in its zone), or `None` for NULL.
pub(super) fn local_time(value: &ScalarValue, function: &str) -> Result<Option<NaiveDateTime>> {
    Ok(instant(value, function)?.map(|i| i.local))
}

fn field(args: &[ScalarValue], function: &str, f: fn(NaiveDate) -> i64) -> Result<ScalarValue> {
    Ok(ScalarValue::Int64(
        instant(&args[0], function)?.map(|i| f(i.local.date())),
    ))
}

fn to_unixtime(args: &[ScalarValue]) -> Result<ScalarValue> {
    let Some(at) = instant(&args[0], "to_unixtime")? else {
        return Ok(ScalarValue::Float64(None));
    };
    // Whole seconds and the fraction apart, so that a fraction like .25 stays exact.
    let split = |ticks: i64, per: i64| {
        ticks.div_euclid(per) as f64 + ticks.rem_euclid(per) as f64 / per as f64
    };
    let utc = match rebuild(at.local, &at.kind)? {
        ScalarValue::TimestampNanosecond(Some(n), _) => split(n, 1_000_000_000),
        ScalarValue::TimestampMicrosecond(Some(n), _) => split(n, 1_000_000),
        ScalarValue::TimestampMillisecond(Some(n), _) | ScalarValue::Date64(Some(n)) => {
            split(n, 1_000)
        }
        ScalarValue::TimestampSecond(Some(n), _) => n as f64,
        ScalarValue::Date32(Some(d)) => f64::from(d) * 86_400.0,
        _ => return Ok(ScalarValue::Float64(None)),
    };
    Ok(ScalarValue::Float64(Some(utc)))
}

/// Seconds since the epoch (a fraction allowed) to a UTC timestamp of milliseconds.
fn from_unixtime(args: &[ScalarValue]) -> Result<ScalarValue> {
    if args[0].is_null() {
        return Ok(ScalarValue::TimestampMillisecond(None, Some("UTC".into())));
    }
    let ScalarValue::Float64(Some(seconds)) = args[0].cast_to(&DataType::Float64)? else {
        return exec_err!("from_unixtime: expected a number of seconds");
    };
    Ok(ScalarValue::TimestampMillisecond(
        Some((seconds * 1000.0).round() as i64),
        Some("UTC".into()),
    ))
}

fn from_iso8601_timestamp(args: &[ScalarValue]) -> Result<ScalarValue> {
    let Some(s) = text(&args[0], "from_iso8601_timestamp")? else {
        return Ok(ScalarValue::TimestampMillisecond(None, Some("UTC".into())));
    };
    let s = s.trim();
    let utc = DateTime::parse_from_rfc3339(s)
        .map(|t| t.naive_utc())
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%:z").map(|t| t.naive_utc()))
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M%:z").map(|t| t.naive_utc()))
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f"))
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M"))
        .or_else(|_| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d").map(|d| d.and_time(Default::default()))
        });
    match utc {
        Ok(t) => Ok(ScalarValue::TimestampMillisecond(
            Some(t.and_utc().timestamp_millis()),
            Some("UTC".into()),
        )),
        Err(_) => exec_err!("from_iso8601_timestamp: invalid ISO 8601 timestamp: '{s}'"),
    }
}

fn from_iso8601_date(args: &[ScalarValue]) -> Result<ScalarValue> {
    let Some(s) = text(&args[0], "from_iso8601_date")? else {
        return Ok(ScalarValue::Date32(None));
    };
    match NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d") {
        Ok(d) => rebuild(d.and_time(Default::default()), &Kind::Date32),
        Err(_) => exec_err!("from_iso8601_date: invalid ISO 8601 date: '{s}'"),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Timelike as _;

    use super::*;

    fn ts(s: &str) -> ScalarValue {
        let t = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap();
        ScalarValue::TimestampMicrosecond(Some(t.and_utc().timestamp_micros()), Some("UTC".into()))
    }

    fn unit_value(u: &str) -> ScalarValue {
        ScalarValue::Utf8(Some(u.into()))
    }

    #[test]
    fn months_clamp_and_count_whole_months_as_joda_does() {
        let added = date_add(&[
            unit_value("month"),
            ScalarValue::Int64(Some(1)),
            ts("2024-01-31 10:00:00"),
        ])
        .unwrap();
        assert_eq!(added, ts("2024-02-29 10:00:00"));
        let diff =
            |u: &str, a: &str, b: &str| match date_diff(&[unit_value(u), ts(a), ts(b)]).unwrap() {
                ScalarValue::Int64(Some(n)) => n,
                other => panic!("{other:?}"),
            };
        assert_eq!(
            diff("month", "2024-01-31 00:00:00", "2024-02-29 00:00:00"),
            1
        );
        assert_eq!(
            diff("month", "2024-01-15 12:00:00", "2024-02-15 11:59:59"),
            0
        );
        assert_eq!(
            diff("month", "2024-03-15 00:00:00", "2024-01-15 00:00:00"),
            -2
        );
        assert_eq!(
            diff("year", "2020-02-29 00:00:00", "2024-02-28 00:00:00"),
            3
        );
        assert_eq!(diff("day", "2024-01-01 12:00:00", "2024-01-03 11:00:00"), 1);
        assert_eq!(
            diff("hour", "2024-01-03 11:00:00", "2024-01-01 12:00:00"),
            -47
        );
    }

    #[test]
    fn local_fields_follow_the_zone() {
        // 2024-01-01 23:30 UTC is already Tuesday 2 January in Kolkata (+05:30).
        let utc =
            NaiveDateTime::parse_from_str("2024-01-01 23:30:00", "%Y-%m-%d %H:%M:%S").unwrap();
        let kolkata = ScalarValue::TimestampMicrosecond(
            Some(utc.and_utc().timestamp_micros()),
            Some("Asia/Kolkata".into()),
        );
        let dow = field(std::slice::from_ref(&kolkata), "dow", |d| {
            i64::from(d.weekday().number_from_monday())
        })
        .unwrap();
        assert_eq!(dow, ScalarValue::Int64(Some(2)));
        let at = instant(&kolkata, "t").unwrap().unwrap();
        assert_eq!((at.local.hour(), at.local.minute()), (5, 0));
        let back = rebuild(at.local, &at.kind).unwrap();
        assert_eq!(back, kolkata);
    }
}
