//! Values as Trino's client protocol encodes them in JSON:
//! decimals as strings, `varbinary` as base64, timestamps as `YYYY-MM-DD HH:MM:SS.ffffff` (with
//! the zone after a space for `timestamp with time zone`), arrays and rows as JSON arrays, maps as
//! objects, and the doubles JSON cannot hold as `"NaN"` / `"Infinity"` / `"-Infinity"`.

use std::fmt::Write as _;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, GenericByteArray, GenericByteViewArray,
    GenericListArray, OffsetSizeTrait, PrimitiveArray,
};
use arrow::datatypes::{
    ArrowPrimitiveType, ByteArrayType, ByteViewType, DataType, Date32Type, Date64Type,
    Decimal128Type, Decimal256Type, Float16Type, Float32Type, Float64Type, Int8Type, Int16Type,
    Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use orderlake_query::trino_types::precision;

/// Writes row `row` of `array` as the protocol's JSON value.
pub fn write_value(array: &dyn Array, row: usize, out: &mut String) {
    if array.is_null(row) {
        out.push_str("null");
        return;
    }
    match array.data_type() {
        DataType::Null => out.push_str("null"),
        DataType::Boolean => {
            let a: &BooleanArray = array.as_boolean();
            out.push_str(if a.value(row) { "true" } else { "false" });
        }
        DataType::Int8 => integer::<Int8Type>(array, row, out),
        DataType::Int16 => integer::<Int16Type>(array, row, out),
        DataType::Int32 => integer::<Int32Type>(array, row, out),
        DataType::Int64 => integer::<Int64Type>(array, row, out),
        DataType::UInt8 => integer::<UInt8Type>(array, row, out),
        DataType::UInt16 => integer::<UInt16Type>(array, row, out),
        DataType::UInt32 => integer::<UInt32Type>(array, row, out),
        DataType::UInt64 => {
            let v = array.as_primitive::<UInt64Type>().value(row);
            let _ = write!(out, "\"{v}\"");
        }
        DataType::Float16 => {
            float(
                f64::from(array.as_primitive::<Float16Type>().value(row)),
                out,
            );
        }
        DataType::Float32 => float(
            f64::from(array.as_primitive::<Float32Type>().value(row)),
            out,
        ),
        DataType::Float64 => float(array.as_primitive::<Float64Type>().value(row), out),
        DataType::Decimal128(_, _) => {
            string(
                &array.as_primitive::<Decimal128Type>().value_as_string(row),
                out,
            );
        }
        DataType::Decimal256(_, _) => {
            string(
                &array.as_primitive::<Decimal256Type>().value_as_string(row),
                out,
            );
        }
        DataType::Utf8 => string(array.as_string::<i32>().value(row), out),
        DataType::LargeUtf8 => string(array.as_string::<i64>().value(row), out),
        DataType::Utf8View => string(array.as_string_view().value(row), out),
        DataType::Binary => binary(array.as_binary::<i32>(), row, out),
        DataType::LargeBinary => binary(array.as_binary::<i64>(), row, out),
        DataType::BinaryView => binary_view(array.as_binary_view(), row, out),
        DataType::FixedSizeBinary(_) => {
            base64(array.as_fixed_size_binary().value(row), out);
        }
        DataType::Date32 => {
            date(array.as_primitive::<Date32Type>().value_as_date(row), out);
        }
        DataType::Date64 => {
            date(array.as_primitive::<Date64Type>().value_as_date(row), out);
        }
        DataType::Timestamp(unit, zone) => {
            let (seconds, nanos) = match unit {
                TimeUnit::Second => split::<TimestampSecondType>(array, row, 1),
                TimeUnit::Millisecond => split::<TimestampMillisecondType>(array, row, 1_000),
                TimeUnit::Microsecond => split::<TimestampMicrosecondType>(array, row, 1_000_000),
                TimeUnit::Nanosecond => split::<TimestampNanosecondType>(array, row, 1_000_000_000),
            };
            timestamp(seconds, nanos, *unit, zone.as_deref(), out);
        }
        DataType::List(_) => list(array.as_list::<i32>(), row, out),
        DataType::LargeList(_) => list(array.as_list::<i64>(), row, out),
        DataType::FixedSizeList(_, _) => {
            let values = array.as_fixed_size_list().value(row);
            elements(&values, out);
        }
        DataType::Struct(_) => {
            let s = array.as_struct();
            out.push('[');
            for (i, column) in s.columns().iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(column.as_ref(), row, out);
            }
            out.push(']');
        }
        DataType::Map(_, _) => {
            let entries = array.as_map().value(row);
            let (keys, values) = (entries.column(0), entries.column(1));
            out.push('{');
            for i in 0..entries.len() {
                if i > 0 {
                    out.push(',');
                }
                string(&display(keys.as_ref(), i), out);
                out.push(':');
                write_value(values.as_ref(), i, out);
            }
            out.push('}');
        }
        DataType::Dictionary(_, _) => {
            let d = array.as_any_dictionary();
            let key = d.normalized_keys()[row];
            write_value(d.values().as_ref(), key, out);
        }
        _ => string(&display(array, row), out),
    }
}

fn integer<T: ArrowPrimitiveType>(array: &dyn Array, row: usize, out: &mut String)
where
    T::Native: std::fmt::Display,
{
    let a: &PrimitiveArray<T> = array.as_primitive();
    let _ = write!(out, "{}", a.value(row));
}

fn float(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("\"NaN\"");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 {
            "\"Infinity\""
        } else {
            "\"-Infinity\""
        });
    } else {
        let _ = write!(out, "{v:?}");
    }
}

fn string(s: &str, out: &mut String) {
    // serde_json escapes exactly as JSON requires; writing into a String cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

fn base64(bytes: &[u8], out: &mut String) {
    out.push('"');
    STANDARD.encode_string(bytes, out);
    out.push('"');
}

fn binary<T: ByteArrayType<Native = [u8]>>(a: &GenericByteArray<T>, row: usize, out: &mut String) {
    base64(a.value(row), out);
}

fn binary_view<T: ByteViewType<Native = [u8]> + ?Sized>(
    a: &GenericByteViewArray<T>,
    row: usize,
    out: &mut String,
) {
    base64(a.value(row), out);
}

fn date(d: Option<chrono::NaiveDate>, out: &mut String) {
    match d {
        Some(d) => {
            let _ = write!(out, "\"{}\"", d.format("%Y-%m-%d"));
        }
        None => out.push_str("null"),
    }
}

/// Whole seconds since the epoch and the nanoseconds past them (never negative).
fn split<T: ArrowPrimitiveType<Native = i64>>(
    array: &dyn Array,
    row: usize,
    per_second: i64,
) -> (i64, u32) {
    let v = array.as_primitive::<T>().value(row);
    let seconds = v.div_euclid(per_second);
    let fraction = v.rem_euclid(per_second);
    let nanos = fraction * (1_000_000_000 / per_second);
    (seconds, nanos as u32)
}

fn timestamp(seconds: i64, nanos: u32, unit: TimeUnit, zone: Option<&str>, out: &mut String) {
    let Some(utc) = chrono::DateTime::from_timestamp(seconds, nanos) else {
        out.push_str("null");
        return;
    };
    let digits = precision(unit) as usize;
    let (local, zone_text) = match zone {
        None => (utc.naive_utc(), None),
        Some(z) => match z.parse::<arrow::array::timezone::Tz>() {
            Ok(tz) => (utc.with_timezone(&tz).naive_local(), Some(zone_name(z))),
            Err(_) => (utc.naive_utc(), Some("UTC".to_owned())),
        },
    };
    out.push('"');
    let _ = write!(out, "{}", local.format("%Y-%m-%d %H:%M:%S"));
    if digits > 0 {
        let fraction = format!("{:09}", local.and_utc().timestamp_subsec_nanos());
        out.push('.');
        out.push_str(&fraction[..digits]);
    }
    if let Some(z) = zone_text {
        out.push(' ');
        out.push_str(&z);
    }
    out.push('"');
}

/// Trino prints UTC as `UTC`, offsets as `+05:30`, and region zones by their IANA name.
fn zone_name(zone: &str) -> String {
    match zone {
        "+00:00" | "Z" | "UTC" | "Etc/UTC" | "GMT" | "+0000" | "+00" => "UTC".to_owned(),
        other => other.to_owned(),
    }
}

fn list<O: OffsetSizeTrait>(a: &GenericListArray<O>, row: usize, out: &mut String) {
    elements(&a.value(row), out);
}

fn elements(values: &ArrayRef, out: &mut String) {
    out.push('[');
    for i in 0..values.len() {
        if i > 0 {
            out.push(',');
        }
        write_value(values.as_ref(), i, out);
    }
    out.push(']');
}

/// Arrow's own text form of one value (map keys, and types Trino has no counterpart for).
fn display(array: &dyn Array, row: usize) -> String {
    ArrayFormatter::try_new(array, &FormatOptions::default())
        .map(|f| f.value(row).to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        BinaryArray, Decimal128Array, Float64Array, Int64Array, ListArray, StringArray,
        StructArray, TimestampMicrosecondArray,
    };
    use arrow::datatypes::{Field, Int64Type};

    use super::*;

    fn cell(array: &dyn Array, row: usize) -> String {
        let mut out = String::new();
        write_value(array, row, &mut out);
        out
    }

    #[test]
    fn values_are_encoded_as_trino_encodes_them() {
        let money = Decimal128Array::from(vec![Some(1_234_500), None])
            .with_precision_and_scale(18, 4)
            .unwrap();
        assert_eq!(cell(&money, 0), "\"123.4500\"");
        assert_eq!(cell(&money, 1), "null");
        let ts = TimestampMicrosecondArray::from(vec![1_700_000_000_123_456]).with_timezone("UTC");
        assert_eq!(cell(&ts, 0), "\"2023-11-14 22:13:20.123456 UTC\"");
        let before_epoch = TimestampMicrosecondArray::from(vec![-1]);
        assert_eq!(cell(&before_epoch, 0), "\"1969-12-31 23:59:59.999999\"");
        let bytes = BinaryArray::from(vec![&b"\x00\xffhi"[..]]);
        assert_eq!(cell(&bytes, 0), "\"AP9oaQ==\"");
        let text = StringArray::from(vec!["a \"quoted\"\nline"]);
        assert_eq!(cell(&text, 0), r#""a \"quoted\"\nline""#);
        let doubles = Float64Array::from(vec![1.5, f64::NAN, f64::NEG_INFINITY, 3.0]);
        assert_eq!(cell(&doubles, 0), "1.5");
        assert_eq!(cell(&doubles, 1), "\"NaN\"");
        assert_eq!(cell(&doubles, 2), "\"-Infinity\"");
        assert_eq!(cell(&doubles, 3), "3.0");
        let lists = ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
            Some(vec![Some(1), None]),
            Some(vec![]),
        ]);
        assert_eq!(cell(&lists, 0), "[1,null]");
        assert_eq!(cell(&lists, 1), "[]");
        let rows = StructArray::from(vec![
            (
                Arc::new(Field::new("sku", DataType::Utf8, true)),
                Arc::new(StringArray::from(vec!["A-1"])) as ArrayRef,
            ),
            (
                Arc::new(Field::new("quantity", DataType::Int64, true)),
                Arc::new(Int64Array::from(vec![2])) as ArrayRef,
            ),
        ]);
        assert_eq!(cell(&rows, 0), "[\"A-1\",2]");
    }
}
