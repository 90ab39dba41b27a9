//! `date_trunc` over UTC timestamps by arithmetic.
//!
//! The archive's times are `timestamp with time zone` in UTC, and its monthly and daily reports
//! group by `date_trunc('month', event_time)`. DataFusion 55 truncates a zoned timestamp to an hour
//! or coarser through chrono-tz for every row, and formats an error message for every row it
//! converts (`ok_or(exec_datafusion_err!(..))`): in the profile of "distinct customers per month"
//! over 10M events that was about 40% of the query's CPU. In UTC (or without a zone) every day
//! has 24 hours, so truncation is integer arithmetic on the day number and the civil date.
//!
//! This function replaces `date_trunc` by name. It computes hour, day, week, month, quarter and
//! year of UTC or zone-less timestamp arrays itself, and hands everything else (other zones,
//! finer units, scalars, times) to DataFusion's own, so the answers are the same everywhere.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, PrimitiveArray};
use datafusion::arrow::datatypes::{
    ArrowTimestampType, DataType, FieldRef, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};

/// Units this module truncates itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Hour,
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl Unit {
    fn parse(granularity: &str) -> Option<Self> {
        Some(match granularity.to_ascii_lowercase().as_str() {
            "hour" => Self::Hour,
            "day" => Self::Day,
            "week" => Self::Week,
            "month" => Self::Month,
            "quarter" => Self::Quarter,
            "year" => Self::Year,
            _ => return None,
        })
    }
}

/// `date_trunc` with a fast path for UTC (see the module).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct UtcDateTrunc {
    inner: Arc<ScalarUDF>,
}

impl UtcDateTrunc {
    /// Wraps DataFusion's `date_trunc`, which answers what this one does not compute itself.
    pub fn new() -> Self {
        Self {
            inner: datafusion::functions::datetime::date_trunc(),
        }
    }

    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(Self::new())
    }
}

impl Default for UtcDateTrunc {
    fn default() -> Self {
        Self::new()
    }
}

/// Zone names that mean UTC to Arrow and chrono-tz alike (any other spelling goes to
/// DataFusion's function, which accepts or refuses it as before).
fn is_utc(zone: Option<&str>) -> bool {
    match zone {
        None => true,
        Some(z) => matches!(z, "UTC" | "+00:00" | "Etc/UTC" | "GMT"),
    }
}

/// Days since 1970-01-01 → (year, month 1–12, day 1–31), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month 1–12, day 1–31) → days since 1970-01-01, proleptic Gregorian.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let shifted_month = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The first day (days since the epoch) of the `unit` holding `days`.
fn first_day(days: i64, unit: Unit) -> i64 {
    match unit {
        Unit::Hour | Unit::Day => days,
        // ISO weeks start on Monday; 1970-01-01 was a Thursday.
        Unit::Week => days - (days + 3).rem_euclid(7),
        Unit::Month | Unit::Quarter | Unit::Year => {
            let (year, month, _) = civil_from_days(days);
            let month = match unit {
                Unit::Month => month,
                Unit::Quarter => (month - 1) / 3 * 3 + 1,
                _ => 1,
            };
            days_from_civil(year, month, 1)
        }
    }
}

/// Truncates one timestamp of `per_second` ticks a second.
fn truncate(value: i64, per_second: i64, unit: Unit) -> Option<i64> {
    let per_hour = per_second * 3600;
    if unit == Unit::Hour {
        return value.div_euclid(per_hour).checked_mul(per_hour);
    }
    let per_day = per_hour * 24;
    first_day(value.div_euclid(per_day), unit).checked_mul(per_day)
}

fn truncate_array<T: ArrowTimestampType>(
    array: &dyn Array,
    per_second: i64,
    unit: Unit,
) -> Result<ArrayRef> {
    let array = array
        .as_any()
        .downcast_ref::<PrimitiveArray<T>>()
        .ok_or_else(|| DataFusionError::Internal("date_trunc: not a timestamp array".into()))?;
    let zone = match array.data_type() {
        DataType::Timestamp(_, zone) => zone.clone(),
        _ => None,
    };
    let truncated: PrimitiveArray<T> = array.try_unary(|value| {
        truncate(value, per_second, unit)
            .ok_or_else(|| DataFusionError::Execution(format!("Timestamp {value} out of range")))
    })?;
    Ok(Arc::new(truncated.with_timezone_opt(zone)))
}

impl ScalarUDFImpl for UtcDateTrunc {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let unit = match &args.args[0] {
            ColumnarValue::Scalar(
                ScalarValue::Utf8(Some(g))
                | ScalarValue::Utf8View(Some(g))
                | ScalarValue::LargeUtf8(Some(g)),
            ) => Unit::parse(g),
            _ => None,
        };
        let (Some(unit), ColumnarValue::Array(array)) = (unit, &args.args[1]) else {
            return self.inner.invoke_with_args(args);
        };
        let truncated = match array.data_type() {
            DataType::Timestamp(tick, zone) if is_utc(zone.as_deref()) => match tick {
                TimeUnit::Second => truncate_array::<TimestampSecondType>(array, 1, unit)?,
                TimeUnit::Millisecond => {
                    truncate_array::<TimestampMillisecondType>(array, 1_000, unit)?
                }
                TimeUnit::Microsecond => {
                    truncate_array::<TimestampMicrosecondType>(array, 1_000_000, unit)?
                }
                TimeUnit::Nanosecond => {
                    truncate_array::<TimestampNanosecondType>(array, 1_000_000_000, unit)?
                }
            },
            _ => return self.inner.invoke_with_args(args),
        };
        Ok(ColumnarValue::Array(truncated))
    }

    fn output_ordering(&self, input: &[ExprProperties]) -> Result<SortProperties> {
        self.inner.output_ordering(input)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::TimestampMicrosecondArray;
    use datafusion::arrow::datatypes::Field;
    use datafusion::config::ConfigOptions;

    use super::*;

    fn run(f: &ScalarUDF, unit: &str, values: &ArrayRef) -> ArrayRef {
        let args = ScalarFunctionArgs {
            args: vec![
                ColumnarValue::Scalar(ScalarValue::Utf8(Some(unit.into()))),
                ColumnarValue::Array(Arc::clone(values)),
            ],
            arg_fields: vec![
                Arc::new(Field::new("unit", DataType::Utf8, false)),
                Arc::new(Field::new("t", values.data_type().clone(), true)),
            ],
            number_rows: values.len(),
            return_field: Arc::new(Field::new("out", values.data_type().clone(), true)),
            config_options: Arc::new(ConfigOptions::default()),
        };
        match f.invoke_with_args(args).unwrap() {
            ColumnarValue::Array(a) => a,
            ColumnarValue::Scalar(s) => s.to_array().unwrap(),
        }
    }

    /// Every unit over times spread across four centuries (both sides of the epoch, leap days,
    /// the turn of years and quarters), with nulls, agrees with DataFusion's own `date_trunc`.
    #[test]
    fn agrees_with_datafusion_for_every_unit_and_zone() {
        let step = 7_919_999_999_i64; // µs: about 2.2 hours, not a multiple of any unit
        let mut values: Vec<Option<i64>> = (-8_000..8_000)
            .map(|i| Some(i * step * 97 + i % 13))
            .collect();
        values.extend([None, Some(0), Some(-1), Some(951_782_400_000_000)]);
        let ours = UtcDateTrunc::udf();
        let theirs = datafusion::functions::datetime::date_trunc();
        for zone in [
            None,
            Some("UTC"),
            Some("+00:00"),
            Some("Etc/UTC"),
            Some("GMT"),
            Some("Europe/Berlin"),
        ] {
            let array: ArrayRef =
                Arc::new(TimestampMicrosecondArray::from(values.clone()).with_timezone_opt(zone));
            for unit in ["hour", "day", "week", "month", "quarter", "year", "minute"] {
                assert_eq!(
                    run(&ours, unit, &array).as_ref(),
                    run(&theirs, unit, &array).as_ref(),
                    "{unit} in {zone:?}"
                );
            }
        }
    }

    #[test]
    fn civil_dates_round_trip() {
        for days in -1_000_000..1_000_000 {
            let (y, m, d) = civil_from_days(days);
            assert!((1..=12).contains(&m) && (1..=31).contains(&d));
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}
