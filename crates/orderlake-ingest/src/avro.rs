//! Records framed for a Confluent-compatible Schema Registry: where their schema id is (the
//! 5-byte prefix of the value, or a `__value_schema_id` header with an id or a GUID), and Avro
//! data turned into a JSON document, so that the per-topic source mappings read Avro records
//! with the same paths as JSON ones.
//!
//! Logical types become what the mappings already read exactly: decimals are decimal strings
//! (never floats), millisecond timestamps epoch milliseconds and finer ones RFC 3339 text at
//! their own precision, dates `YYYY-MM-DD`, UUIDs text; unions are their branch's value, enums
//! their symbol.

use std::collections::HashMap;
use std::sync::Arc;

use apache_avro::Schema;
use apache_avro::schema::{Name, RecordSchema};
use apache_avro::types::Value as Avro;
use base64::Engine as _;
use chrono::DateTime;
use serde_json::{Map, Number, Value};

/// The header Confluent's serializers write a value's schema id into (instead of the prefix).
pub const VALUE_SCHEMA_ID_HEADER: &str = "__value_schema_id";

/// The value of the schema id header among a record's headers, as the archive keeps them.
pub fn schema_header(headers: &[(String, Option<Vec<u8>>)]) -> Option<&[u8]> {
    headers
        .iter()
        .find(|(k, _)| k == VALUE_SCHEMA_ID_HEADER)
        .and_then(|(_, v)| v.as_deref())
}

/// How a schema is named in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SchemaKey {
    /// The 4-byte id of the classic framing and of `/schemas/ids/{id}`.
    Id(u32),
    /// The GUID of header framing and of `/schemas/guids/{guid}`.
    Guid(uuid::Uuid),
}

impl std::fmt::Display for SchemaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Id(id) => write!(f, "schema id {id}"),
            Self::Guid(guid) => write!(f, "schema GUID {guid}"),
        }
    }
}

/// A value whose bytes name their schema in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framed<'a> {
    pub key: SchemaKey,
    /// The serialized data, without the framing.
    pub payload: &'a [u8],
}

/// Finds the registry framing of `value`: the schema header when the record has one, else the
/// magic byte 0 and a 4-byte big-endian id in front of the data. `Ok(None)`: not framed (a JSON
/// document starts with other bytes). `Err`: framed, but the framing itself is broken.
pub fn framing<'a>(value: &'a [u8], header: Option<&[u8]>) -> Result<Option<Framed<'a>>, String> {
    if let Some(h) = header {
        let key = match h {
            [0, id @ ..] if id.len() == 4 => {
                SchemaKey::Id(u32::from_be_bytes(id.try_into().expect("four bytes")))
            }
            [1, guid @ ..] if guid.len() == 16 => SchemaKey::Guid(uuid::Uuid::from_bytes(
                guid.try_into().expect("sixteen bytes"),
            )),
            _ => {
                return Err(format!(
                    "header {VALUE_SCHEMA_ID_HEADER} of {} bytes is neither 0 + a 4-byte id nor \
                     1 + a 16-byte GUID",
                    h.len()
                ));
            }
        };
        return Ok(Some(Framed {
            key,
            payload: value,
        }));
    }
    match value {
        [0, rest @ ..] if rest.len() >= 4 => Ok(Some(Framed {
            key: SchemaKey::Id(u32::from_be_bytes(
                rest[..4].try_into().expect("four bytes"),
            )),
            payload: &rest[4..],
        })),
        [0, ..] => Err(format!(
            "starts with the registry's magic byte 0 but holds {} bytes, fewer than the 5 of \
             the framing",
            value.len()
        )),
        _ => Ok(None),
    }
}

/// A writer schema from the registry, with the named types of the schemas it references.
#[derive(Debug, Clone)]
pub struct AvroSchema {
    pub schema: Schema,
    pub references: Vec<Schema>,
    names: HashMap<Name, Schema>,
    /// A reader of the schema's data with its named types resolved once (apache-avro's
    /// `from_avro_datum` resolves them again for every datum, allocating a map of names),
    /// for schemas without references.
    resolved: Option<ResolvedReader>,
    /// Integer fields that Kafka Connect marks as times or dates (`connect.name`, as Debezium's
    /// Avro converter writes `io.debezium.time.*`), by record full name and field name: Avro
    /// itself sees plain `long`s and `int`s there.
    connect_times: HashMap<String, HashMap<String, String>>,
}

impl AvroSchema {
    /// Parses `text` with the referenced schemas' texts (dependencies first).
    pub fn parse(text: &str, references: &[String]) -> Result<Self, String> {
        let mut connect_times = HashMap::new();
        for text in references.iter().map(String::as_str).chain([text]) {
            if let Ok(json) = serde_json::from_str::<Value>(text) {
                connect_time_fields(&json, None, &mut connect_times);
            }
        }
        let (schema, references) = if references.is_empty() {
            (
                Schema::parse_str(text).map_err(|e| e.to_string())?,
                Vec::new(),
            )
        } else {
            Schema::parse_str_with_list(text, references).map_err(|e| e.to_string())?
        };
        let mut all = vec![&schema];
        all.extend(references.iter());
        let names = apache_avro::schema::ResolvedSchema::try_from(all)
            .map_err(|e| e.to_string())?
            .get_names()
            .iter()
            .map(|(name, schema)| (name.clone(), (*schema).clone()))
            .collect();
        // Single-object encoding with an empty header is the bare datum.
        let resolved = references
            .is_empty()
            .then(|| {
                apache_avro::GenericSingleObjectReader::new_with_header_builder(
                    schema.clone(),
                    BareDatum,
                )
            })
            .transpose()
            .map_err(|e| e.to_string())?
            .map(|reader| ResolvedReader(Arc::new(reader)));
        Ok(Self {
            schema,
            references,
            names,
            resolved,
            connect_times,
        })
    }

    /// Decodes one datum written with this schema into a JSON document.
    pub fn decode(&self, payload: &[u8]) -> Result<Value, String> {
        let mut reader = payload;
        let value = if let Some(resolved) = &self.resolved {
            resolved.0.read_value(&mut reader)
        } else {
            apache_avro::from_avro_datum_schemata(
                &self.schema,
                self.references.iter().collect(),
                &mut reader,
                None,
            )
        }
        .map_err(|e| format!("not valid for its schema: {e}"))?;
        if !reader.is_empty() {
            return Err(format!(
                "not valid for its schema: {} bytes left over after the record",
                reader.len()
            ));
        }
        self.to_json(value, &self.schema)
    }

    /// The JSON form of `value` (taken, so its strings move instead of being copied).
    fn to_json(&self, value: Avro, schema: &Schema) -> Result<Value, String> {
        if let Schema::Ref { name } = schema {
            let named = self
                .names
                .get(name)
                .ok_or_else(|| format!("the schema names an unknown type {name}"))?;
            return self.to_json(value, named);
        }
        Ok(match value {
            Avro::Null => Value::Null,
            Avro::Boolean(b) => Value::Bool(b),
            Avro::Int(i) => Value::from(i),
            Avro::Long(l) => Value::from(l),
            // The float's shortest decimal form, not its binary expansion: 9.99f32 stays 9.99.
            Avro::Float(f) => number(f.to_string().parse().unwrap_or(f64::NAN)),
            Avro::Double(d) => number(d),
            Avro::Bytes(b) | Avro::Fixed(_, b) => Value::String(bytes_text(&b)),
            Avro::String(s) => Value::String(s),
            Avro::Enum(_, symbol) => Value::String(symbol),
            Avro::Union(branch, inner) => {
                let Schema::Union(union) = schema else {
                    return Err("a union value for a schema that is not a union".into());
                };
                let variant = union
                    .variants()
                    .get(branch as usize)
                    .ok_or_else(|| format!("union branch {branch} out of range"))?;
                self.to_json(*inner, variant)?
            }
            Avro::Array(items) => {
                let Schema::Array(array) = schema else {
                    return Err("an array value for a schema that is not an array".into());
                };
                Value::Array(
                    items
                        .into_iter()
                        .map(|item| self.to_json(item, &array.items))
                        .collect::<Result<_, _>>()?,
                )
            }
            Avro::Map(entries) => {
                let Schema::Map(map) = schema else {
                    return Err("a map value for a schema that is not a map".into());
                };
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| Ok((k, self.to_json(v, &map.types)?)))
                        .collect::<Result<Map<_, _>, String>>()?,
                )
            }
            Avro::Record(fields) => {
                let Schema::Record(record) = schema else {
                    return Err("a record value for a schema that is not a record".into());
                };
                self.record(fields, record)?
            }
            Avro::Date(days) => date(days)?,
            Avro::Decimal(decimal) => {
                let Schema::Decimal(d) = schema else {
                    return Err("a decimal value for a schema that is not a decimal".into());
                };
                let bytes = Vec::<u8>::try_from(&decimal).map_err(|e| e.to_string())?;
                Value::String(decimal_text(&bytes, d.scale)?)
            }
            Avro::BigDecimal(b) => Value::String(b.to_string()),
            Avro::TimeMillis(ms) => Value::from(ms),
            Avro::TimeMicros(us) => Value::from(us),
            // Epoch milliseconds, which the mappings read as such (exact, and cheaper than text).
            Avro::TimestampMillis(ms) => Value::from(ms),
            Avro::TimestampMicros(us) => timestamp(DateTime::from_timestamp_micros(us), true)?,
            Avro::TimestampNanos(ns) => timestamp(Some(DateTime::from_timestamp_nanos(ns)), true)?,
            Avro::LocalTimestampMillis(ms) => {
                timestamp(DateTime::from_timestamp_millis(ms), false)?
            }
            Avro::LocalTimestampMicros(us) => {
                timestamp(DateTime::from_timestamp_micros(us), false)?
            }
            Avro::LocalTimestampNanos(ns) => {
                timestamp(Some(DateTime::from_timestamp_nanos(ns)), false)?
            }
            Avro::Duration(d) => Value::String(format!("{d:?}")),
            Avro::Uuid(u) => Value::String(u.to_string()),
        })
    }

    fn record(&self, fields: Vec<(String, Avro)>, schema: &RecordSchema) -> Result<Value, String> {
        let connect_name = schema
            .attributes
            .get("connect.name")
            .and_then(Value::as_str);
        if connect_name == Some(VARIABLE_SCALE_DECIMAL)
            && let Some(decimal) = variable_scale_decimal(&fields)
        {
            return Ok(decimal);
        }
        let times = if self.connect_times.is_empty() {
            None
        } else {
            self.connect_times.get(&schema.name.fullname(None))
        };
        let mut out = Map::with_capacity(fields.len());
        for (i, (name, value)) in fields.into_iter().enumerate() {
            // A decoded record holds its fields in the schema's order: look up by name only
            // where that does not hold.
            let field = match schema.fields.get(i) {
                Some(field) if field.name == name => field,
                _ => schema
                    .lookup
                    .get(&name)
                    .and_then(|i| schema.fields.get(*i))
                    .ok_or_else(|| format!("field {name} is not in record {}", schema.name))?,
            };
            let mut value = self.to_json(value, &field.schema)?;
            if let Some(logical) = times.and_then(|t| t.get(&name))
                && let Some(decoded) = crate::debezium::connect_value(&value, logical, || None)
            {
                value = decoded;
            }
            out.insert(name, value);
        }
        Ok(Value::Object(out))
    }
}

/// A reader of one schema's data, its names resolved.
#[derive(Clone)]
struct ResolvedReader(Arc<apache_avro::GenericSingleObjectReader>);

impl std::fmt::Debug for ResolvedReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResolvedReader")
    }
}

/// The header of a bare datum: none.
struct BareDatum;

impl apache_avro::headers::HeaderBuilder for BareDatum {
    fn build_header(&self) -> Vec<u8> {
        Vec::new()
    }
}

const VARIABLE_SCALE_DECIMAL: &str = "io.debezium.data.VariableScaleDecimal";

/// Debezium's variable-scale decimal record (`scale`, and `value`: the unscaled big-endian
/// bytes) as decimal text.
fn variable_scale_decimal(fields: &[(String, Avro)]) -> Option<Value> {
    let field = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let scale = match field("scale")? {
        Avro::Int(scale) => usize::try_from(*scale).ok()?,
        _ => return None,
    };
    match field("value")? {
        Avro::Bytes(bytes) => decimal_text(bytes, scale).ok().map(Value::String),
        _ => None,
    }
}

/// Collects into `out` the integer fields of the records in the schema JSON `node` whose type
/// carries a `connect.name` the Debezium converter decodes, by record full name. `namespace` is
/// the enclosing one.
fn connect_time_fields(
    node: &Value,
    namespace: Option<&str>,
    out: &mut HashMap<String, HashMap<String, String>>,
) {
    match node {
        Value::Array(branches) => {
            for branch in branches {
                connect_time_fields(branch, namespace, out);
            }
        }
        Value::Object(object) => match object.get("type") {
            Some(Value::String(kind)) if kind == "record" || kind == "error" => {
                let Some(name) = object.get("name").and_then(Value::as_str) else {
                    return;
                };
                let (full, inner) = match name.rsplit_once('.') {
                    Some((ns, _)) => (name.to_owned(), Some(ns.to_owned())),
                    None => {
                        let ns = object
                            .get("namespace")
                            .and_then(Value::as_str)
                            .or(namespace)
                            .filter(|ns| !ns.is_empty());
                        (
                            ns.map_or_else(|| name.to_owned(), |ns| format!("{ns}.{name}")),
                            ns.map(str::to_owned),
                        )
                    }
                };
                let fields = object.get("fields").and_then(Value::as_array);
                for field in fields.into_iter().flatten() {
                    let (Some(field_name), Some(kind)) =
                        (field.get("name").and_then(Value::as_str), field.get("type"))
                    else {
                        continue;
                    };
                    let branches = match kind {
                        Value::Array(b) => b.as_slice(),
                        other => std::slice::from_ref(other),
                    };
                    let logical = branches.iter().find_map(|b| {
                        b.get("connect.name")
                            .and_then(Value::as_str)
                            .filter(|n| crate::debezium::is_integer_time(n))
                    });
                    if let Some(logical) = logical {
                        out.entry(full.clone())
                            .or_default()
                            .insert(field_name.to_owned(), logical.to_owned());
                    }
                    connect_time_fields(kind, inner.as_deref(), out);
                }
            }
            Some(Value::String(kind)) if kind == "array" => {
                if let Some(items) = object.get("items") {
                    connect_time_fields(items, namespace, out);
                }
            }
            Some(Value::String(kind)) if kind == "map" => {
                if let Some(values) = object.get("values") {
                    connect_time_fields(values, namespace, out);
                }
            }
            Some(nested @ (Value::Object(_) | Value::Array(_))) => {
                connect_time_fields(nested, namespace, out);
            }
            _ => {}
        },
        _ => {}
    }
}

fn number(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// Bytes as text: UTF-8 as it is, anything else in base64.
fn bytes_text(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        Err(_) => base64::engine::general_purpose::STANDARD.encode(b),
    }
}

/// Days since 1970-01-01 as `YYYY-MM-DD` text.
pub(crate) fn date(days: i32) -> Result<Value, String> {
    orderlake_archive::files::date_of_days(days)
        .map(|d| Value::String(d.to_string()))
        .ok_or_else(|| format!("date {days} days from 1970 is out of range"))
}

/// A timestamp as RFC 3339 text with as many fraction digits as it has; `utc: false` leaves the
/// zone off (Avro's local timestamps, which the mappings read as UTC).
pub(crate) fn timestamp(t: Option<DateTime<chrono::Utc>>, utc: bool) -> Result<Value, String> {
    let t = t.ok_or("timestamp out of range")?;
    let text = t.naive_utc().format("%Y-%m-%dT%H:%M:%S%.f").to_string();
    Ok(Value::String(if utc { text + "Z" } else { text }))
}

/// A decimal's big-endian two's-complement unscaled value, written with `scale` fraction digits.
pub fn decimal_text(unscaled: &[u8], scale: usize) -> Result<String, String> {
    if unscaled.len() > 16 {
        return Err(format!(
            "a decimal of {} bytes is beyond 38 digits",
            unscaled.len()
        ));
    }
    let negative = unscaled.first().is_some_and(|b| b & 0x80 != 0);
    let mut buf = [if negative { 0xff } else { 0 }; 16];
    buf[16 - unscaled.len()..].copy_from_slice(unscaled);
    let v = i128::from_be_bytes(buf);
    let digits = v.unsigned_abs().to_string();
    let digits = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = digits.split_at(digits.len() - scale);
    let sign = if negative { "-" } else { "" };
    Ok(if scale == 0 {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{fraction}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::types::Record;

    #[test]
    fn framing_is_found_in_the_prefix_or_the_header() {
        let value = [0, 0, 0, 1, 2, 9, 9];
        assert_eq!(
            framing(&value, None).unwrap(),
            Some(Framed {
                key: SchemaKey::Id(258),
                payload: &[9, 9]
            })
        );
        assert_eq!(framing(b"{\"a\":1}", None).unwrap(), None);
        assert!(
            framing(&[0, 1], None)
                .unwrap_err()
                .contains("fewer than the 5")
        );
        let guid = uuid::Uuid::parse_str("89791762-2336-4186-9674-299b90a802e2").unwrap();
        let mut header = vec![1];
        header.extend_from_slice(guid.as_bytes());
        assert_eq!(
            framing(&[7, 7], Some(&header)).unwrap().unwrap().key,
            SchemaKey::Guid(guid)
        );
        assert_eq!(
            framing(&[7], Some(&[0, 0, 0, 0, 5])).unwrap().unwrap().key,
            SchemaKey::Id(5)
        );
        assert!(framing(&[7], Some(&[2, 1])).is_err());
    }

    #[test]
    fn decimals_keep_every_digit() {
        assert_eq!(decimal_text(&[0x30, 0x39], 2).unwrap(), "123.45");
        assert_eq!(decimal_text(&[0xcf, 0xc7], 2).unwrap(), "-123.45");
        assert_eq!(decimal_text(&[0x05], 3).unwrap(), "0.005");
        assert_eq!(decimal_text(&[0xff], 0).unwrap(), "-1");
        assert_eq!(decimal_text(&[], 2).unwrap(), "0.00");
        assert!(decimal_text(&[1; 17], 2).is_err());
    }

    #[test]
    fn an_order_record_becomes_the_document_the_mappings_read() {
        let text = r#"{"type":"record","name":"OrderEvent","namespace":"oms","fields":[
            {"name":"order_id","type":"string"},
            {"name":"status","type":{"type":"enum","name":"Status","symbols":["PLACED","SHIPPED"]}},
            {"name":"total_amount","type":{"type":"bytes","logicalType":"decimal","precision":18,"scale":2}},
            {"name":"event_time","type":{"type":"long","logicalType":"timestamp-millis"}},
            {"name":"order_date","type":{"type":"int","logicalType":"date"}},
            {"name":"note","type":["null","string"],"default":null},
            {"name":"items","type":{"type":"array","items":{"type":"record","name":"Item","fields":[
                {"name":"sku","type":"string"},
                {"name":"unit_price","type":{"type":"fixed","name":"Money","size":8,"logicalType":"decimal","precision":18,"scale":2}}]}}},
            {"name":"again","type":["null","Item"],"default":null}
        ]}"#;
        let schema = AvroSchema::parse(text, &[]).unwrap();
        let item_schema = match &schema.schema {
            Schema::Record(r) => match &r.fields[6].schema {
                Schema::Array(a) => (*a.items).clone(),
                _ => unreachable!(),
            },
            _ => unreachable!(),
        };
        let mut item = Record::new(&item_schema).unwrap();
        item.put("sku", "SKU-1");
        item.put(
            "unit_price",
            Avro::Decimal(apache_avro::Decimal::from(vec![
                0, 0, 0, 0, 0, 0, 0x03, 0xe7,
            ])),
        );
        let item: Avro = item.into();
        let mut record = Record::new(&schema.schema).unwrap();
        record.put("order_id", "A-1");
        record.put("status", Avro::Enum(1, "SHIPPED".into()));
        record.put(
            "total_amount",
            Avro::Decimal(apache_avro::Decimal::from(vec![0x30, 0x39])),
        );
        record.put("event_time", Avro::TimestampMillis(1_709_287_200_123));
        record.put("order_date", Avro::Date(19_783));
        record.put("note", Avro::Union(0, Box::new(Avro::Null)));
        record.put("items", Avro::Array(vec![item.clone()]));
        record.put("again", Avro::Union(1, Box::new(item)));
        let bytes = apache_avro::to_avro_datum(&schema.schema, record).unwrap();
        let doc = schema.decode(&bytes).unwrap();
        assert_eq!(
            doc,
            serde_json::json!({
                "order_id": "A-1",
                "status": "SHIPPED",
                "total_amount": "123.45",
                "event_time": 1_709_287_200_123_i64,
                "order_date": "2024-03-01",
                "note": null,
                "items": [{"sku": "SKU-1", "unit_price": "9.99"}],
                "again": {"sku": "SKU-1", "unit_price": "9.99"},
            })
        );
        assert!(schema.decode(&bytes[..bytes.len() - 3]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(schema.decode(&longer).unwrap_err().contains("left over"));
    }

    /// A Postgres change event as Debezium's Avro converter writes it: Connect's semantic types
    /// only in `connect.name` on plain `long`s and `int`s, a variable-scale decimal record.
    #[test]
    fn a_debezium_envelope_in_avro_decodes_its_connect_types() {
        let text = r#"{"type":"record","name":"Envelope","namespace":"legacy.public.orders","fields":[
          {"name":"before","type":["null",{"type":"record","name":"Value","fields":[
            {"name":"id","type":"int"},
            {"name":"total","type":{"type":"bytes","scale":2,"precision":10,"connect.version":1,
              "connect.parameters":{"scale":"2","connect.decimal.precision":"10"},
              "connect.name":"org.apache.kafka.connect.data.Decimal","logicalType":"decimal"}},
            {"name":"created_at","type":{"type":"long","connect.version":1,
              "connect.name":"io.debezium.time.MicroTimestamp"}},
            {"name":"ship_date","type":["null",{"type":"int","connect.version":1,
              "connect.name":"io.debezium.time.Date"}],"default":null},
            {"name":"paid_at","type":["null",{"type":"long","connect.version":1,
              "connect.name":"io.debezium.time.Timestamp"}],"default":null},
            {"name":"discount","type":["null",{"type":"record","name":"VariableScaleDecimal",
              "namespace":"io.debezium.data","fields":[{"name":"scale","type":"int"},
              {"name":"value","type":"bytes"}],"connect.version":1,
              "connect.name":"io.debezium.data.VariableScaleDecimal"}],"default":null}
          ],"connect.name":"legacy.public.orders.Value"}],"default":null},
          {"name":"after","type":["null","Value"],"default":null},
          {"name":"source","type":{"type":"record","name":"Source",
            "namespace":"io.debezium.connector.postgresql","fields":[
            {"name":"connector","type":"string"},{"name":"ts_ms","type":"long"},
            {"name":"txId","type":["null","long"],"default":null},
            {"name":"lsn","type":["null","long"],"default":null}]}},
          {"name":"op","type":"string"},
          {"name":"ts_ms","type":["null","long"],"default":null}
        ],"connect.name":"legacy.public.orders.Envelope"}"#;
        let schema = AvroSchema::parse(text, &[]).unwrap();
        let named = |name: &str| &schema.names[&Name::new(name).unwrap()];
        let mut discount = Record::new(named("io.debezium.data.VariableScaleDecimal")).unwrap();
        discount.put("scale", 3);
        discount.put("value", Avro::Bytes(vec![0x01, 0xe2]));
        let mut row = Record::new(named("legacy.public.orders.Value")).unwrap();
        row.put("id", 1004);
        row.put(
            "total",
            Avro::Decimal(apache_avro::Decimal::from(vec![0x01, 0x9a])),
        );
        row.put("created_at", Avro::Long(1_559_033_904_863_123));
        row.put("ship_date", Avro::Union(1, Box::new(Avro::Int(18_050))));
        row.put(
            "paid_at",
            Avro::Union(1, Box::new(Avro::Long(1_559_033_904_863))),
        );
        row.put("discount", Avro::Union(1, Box::new(discount.into())));
        let mut source = Record::new(named("io.debezium.connector.postgresql.Source")).unwrap();
        source.put("connector", "postgresql");
        source.put("ts_ms", Avro::Long(1_559_033_904_863));
        source.put("txId", Avro::Union(1, Box::new(Avro::Long(555))));
        source.put("lsn", Avro::Union(1, Box::new(Avro::Long(24_023_128))));
        let mut envelope = Record::new(&schema.schema).unwrap();
        envelope.put("before", Avro::Union(0, Box::new(Avro::Null)));
        envelope.put("after", Avro::Union(1, Box::new(row.into())));
        envelope.put("source", source);
        envelope.put("op", "c");
        envelope.put(
            "ts_ms",
            Avro::Union(1, Box::new(Avro::Long(1_559_033_904_866))),
        );
        let bytes = apache_avro::to_avro_datum(&schema.schema, envelope).unwrap();
        let doc = schema.decode(&bytes).unwrap();
        assert_eq!(
            doc["after"],
            serde_json::json!({
                "id": 1004,
                "total": "4.10",
                "created_at": "2019-05-28T08:58:24.863123Z",
                "ship_date": "2019-06-03",
                "paid_at": 1_559_033_904_863_i64,
                "discount": "0.482",
            })
        );
        let change = crate::debezium::change(&doc).unwrap();
        assert_eq!(change.source.op, 'c');
        assert_eq!(
            change.source.position.as_deref(),
            Some("00000000000024023128")
        );
        assert_eq!(change.source.tx_id.as_deref(), Some("555"));
    }
}
