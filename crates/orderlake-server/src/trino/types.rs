//! Arrow types as Trino names them, and values as Trino's client protocol encodes them in JSON:
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
    Decimal128Type, Decimal256Type, Field, Float16Type, Float32Type, Float64Type, Int8Type,
    Int16Type, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

/// Trino's `varchar` without a length is `varchar(2147483647)` in type signatures.
const UNBOUNDED_VARCHAR: i64 = 2_147_483_647;

/// A column's Trino type: its display name (`decimal(18,4)`) and its type signature as the
/// protocol's `columns[].typeSignature` carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct TrinoType {
    pub name: String,
    pub signature: Value,
}

impl TrinoType {
    fn simple(raw: &str) -> Self {
        Self {
            name: raw.to_owned(),
            signature: json!({"rawType": raw, "arguments": []}),
        }
    }

    fn with_longs(raw: &str, name: String, args: &[i64]) -> Self {
        let arguments: Vec<Value> = args
            .iter()
            .map(|v| json!({"kind": "LONG", "value": v}))
            .collect();
        Self {
            name,
            signature: json!({"rawType": raw, "arguments": arguments}),
        }
    }
}

/// The precision Trino gives a timestamp of this unit (digits after the second).
fn precision(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => 3,
        TimeUnit::Microsecond => 6,
        TimeUnit::Nanosecond => 9,
    }
}

/// The Trino type of an Arrow type. Types Trino has no counterpart for (durations, intervals,
/// unions) are sent as `varchar` in Arrow's own text form.
pub fn trino_type(t: &DataType) -> TrinoType {
    match t {
        DataType::Null => TrinoType::simple("unknown"),
        DataType::Boolean => TrinoType::simple("boolean"),
        DataType::Int8 => TrinoType::simple("tinyint"),
        DataType::Int16 | DataType::UInt8 => TrinoType::simple("smallint"),
        DataType::Int32 | DataType::UInt16 => TrinoType::simple("integer"),
        DataType::Int64 | DataType::UInt32 => TrinoType::simple("bigint"),
        DataType::UInt64 => TrinoType::with_longs("decimal", "decimal(20,0)".into(), &[20, 0]),
        DataType::Float16 | DataType::Float32 => TrinoType::simple("real"),
        DataType::Float64 => TrinoType::simple("double"),
        DataType::Decimal32(p, s) | DataType::Decimal64(p, s) | DataType::Decimal128(p, s) => {
            decimal(i64::from(*p), i64::from(*s))
        }
        DataType::Decimal256(p, s) if *p <= 38 => decimal(i64::from(*p), i64::from(*s)),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => varchar(),
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => TrinoType::simple("varbinary"),
        DataType::Date32 | DataType::Date64 => TrinoType::simple("date"),
        DataType::Timestamp(unit, None) => {
            let p = precision(*unit);
            TrinoType::with_longs("timestamp", format!("timestamp({p})"), &[p])
        }
        DataType::Timestamp(unit, Some(_)) => {
            let p = precision(*unit);
            TrinoType::with_longs(
                "timestamp with time zone",
                format!("timestamp({p}) with time zone"),
                &[p],
            )
        }
        DataType::Time32(unit) | DataType::Time64(unit) => {
            let p = precision(*unit);
            TrinoType::with_longs("time", format!("time({p})"), &[p])
        }
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _) => {
            let element = trino_type(f.data_type());
            TrinoType {
                name: format!("array({})", element.name),
                signature: json!({"rawType": "array", "arguments": [{"kind": "TYPE", "value": element.signature}]}),
            }
        }
        DataType::Struct(fields) => {
            let members: Vec<(String, TrinoType)> = fields
                .iter()
                .map(|f| (f.name().clone(), trino_type(f.data_type())))
                .collect();
            let name = members
                .iter()
                .map(|(n, t)| format!("{} {}", quote_field(n), t.name))
                .collect::<Vec<_>>()
                .join(", ");
            let arguments: Vec<Value> = members
                .into_iter()
                .map(|(n, t)| {
                    json!({"kind": "NAMED_TYPE", "value": {"fieldName": {"name": n}, "typeSignature": t.signature}})
                })
                .collect();
            TrinoType {
                name: format!("row({name})"),
                signature: json!({"rawType": "row", "arguments": arguments}),
            }
        }
        DataType::Map(entries, _) => {
            let (k, v) = map_types(entries);
            let (k, v) = (trino_type(&k), trino_type(&v));
            TrinoType {
                name: format!("map({}, {})", k.name, v.name),
                signature: json!({"rawType": "map", "arguments": [
                    {"kind": "TYPE", "value": k.signature},
                    {"kind": "TYPE", "value": v.signature}
                ]}),
            }
        }
        DataType::Dictionary(_, value) => trino_type(value),
        DataType::RunEndEncoded(_, values) => trino_type(values.data_type()),
        _ => varchar(),
    }
}

fn varchar() -> TrinoType {
    TrinoType::with_longs("varchar", "varchar".into(), &[UNBOUNDED_VARCHAR])
}

fn decimal(p: i64, s: i64) -> TrinoType {
    TrinoType::with_longs("decimal", format!("decimal({p},{s})"), &[p, s])
}

fn map_types(entries: &Field) -> (DataType, DataType) {
    match entries.data_type() {
        DataType::Struct(kv) if kv.len() == 2 => {
            (kv[0].data_type().clone(), kv[1].data_type().clone())
        }
        _ => (DataType::Utf8, DataType::Utf8),
    }
}

/// A row field name as Trino prints it in a type: bare when it is a plain identifier.
fn quote_field(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

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
    use arrow::datatypes::{Fields, Int64Type};

    use super::*;

    fn cell(array: &dyn Array, row: usize) -> String {
        let mut out = String::new();
        write_value(array, row, &mut out);
        out
    }

    #[test]
    fn type_names_and_signatures_follow_trino() {
        let money = trino_type(&DataType::Decimal128(18, 4));
        assert_eq!(money.name, "decimal(18,4)");
        assert_eq!(
            money.signature,
            json!({"rawType": "decimal", "arguments": [{"kind": "LONG", "value": 18}, {"kind": "LONG", "value": 4}]})
        );
        let ts = trino_type(&DataType::Timestamp(
            TimeUnit::Microsecond,
            Some("UTC".into()),
        ));
        assert_eq!(ts.name, "timestamp(6) with time zone");
        assert_eq!(ts.signature["rawType"], "timestamp with time zone");
        let items = DataType::List(Arc::new(Field::new(
            "item",
            DataType::Struct(Fields::from(vec![
                Field::new("sku", DataType::Utf8, true),
                Field::new("quantity", DataType::Int64, true),
            ])),
            true,
        )));
        let t = trino_type(&items);
        assert_eq!(t.name, "array(row(sku varchar, quantity bigint))");
        assert_eq!(
            t.signature["arguments"][0]["value"]["arguments"][1]["value"]["fieldName"]["name"],
            "quantity"
        );
        assert_eq!(trino_type(&DataType::Utf8View).name, "varchar");
        assert_eq!(trino_type(&DataType::Binary).name, "varbinary");
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
