//! Arrow types as Trino names them: the display name (`decimal(18,4)`,
//! `timestamp(6) with time zone`, `array(row(sku varchar, …))`) and the type signature Trino's
//! client protocol carries, for both front doors' metadata and the Trino protocol's columns.

use arrow::datatypes::{DataType, Field, TimeUnit};
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
pub fn precision(unit: TimeUnit) -> i64 {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::Fields;

    use super::*;

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
}
