//! Avro's binary encoding read straight into the JSON document the mappings read.
//!
//! apache-avro parses the writer schema and resolves its names; its datum decoder is not used on
//! the drain's path: it builds a tree of its own values first (a `String` for every field name of
//! every record, a `Vec` per record, the schema's names resolved again per datum), which then had
//! to be turned into JSON, and was half of the decode cost (docs/benchmarks.md). A writer schema
//! is compiled here once into a table of nodes (named types resolved to indexes, Kafka Connect's
//! semantic types found by field), and each datum is read from its bytes into the document in one
//! pass. The rare types with an encoding of their own (`big-decimal`, `uuid`, `duration`) are
//! still read by apache-avro, one value at a time.
//!
//! Hostile bytes: every length is checked against the bytes left before anything is allocated,
//! and nesting is bounded, so a datum that lies about its sizes fails with a reason.

use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::schema::{Name, RecordSchema};
use apache_avro::types::Value as Avro;
use chrono::DateTime;
use serde_json::{Map, Value};

use super::{bytes_text, date, decimal_text, number, timestamp};

/// Debezium's variable-scale decimal record, read as the decimal it holds.
const VARIABLE_SCALE_DECIMAL: &str = "io.debezium.data.VariableScaleDecimal";

/// Deeper nesting than this is refused (a recursive schema lets a datum nest without bound).
const MAX_DEPTH: usize = 256;

/// Array items that take no bytes (nulls, empty records) one datum may hold.
const MAX_EMPTY_ITEMS: u64 = 1 << 16;

/// A writer schema compiled for reading its datums.
#[derive(Debug, Clone)]
pub(super) struct DatumReader {
    nodes: Vec<Node>,
    /// The node of the schema itself.
    root: usize,
}

#[derive(Debug, Clone)]
enum Node {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Fixed(usize),
    Enum(Vec<String>),
    Union(Vec<usize>),
    Array(usize),
    Map(usize),
    Record(RecordNode),
    /// A decimal over `bytes` or a `fixed` (the node at `inner`): exact decimal text.
    Decimal {
        scale: usize,
        inner: usize,
    },
    Date,
    /// `time-millis`, as the number it is.
    TimeMillis,
    /// `time-micros`, as the number it is.
    TimeMicros,
    /// `timestamp-millis`: epoch milliseconds, which the mappings read as such.
    TimestampMillis,
    /// The other timestamps: RFC 3339 text at their precision; local ones without a zone.
    Timestamp {
        unit: Unit,
        utc: bool,
    },
    /// Read by apache-avro: `big-decimal`, `uuid`, `duration`.
    Leaf(Schema),
    /// A named type being compiled (replaced before compiling ends).
    Pending,
}

#[derive(Debug, Clone, Copy)]
enum Unit {
    Millis,
    Micros,
    Nanos,
}

#[derive(Debug, Clone)]
struct RecordNode {
    fields: Vec<FieldNode>,
    /// The fields' positions in the order of their names.
    by_name: Vec<usize>,
    /// Debezium's `VariableScaleDecimal`: read as decimal text when it holds `scale` and `value`.
    variable_scale_decimal: bool,
}

#[derive(Debug, Clone)]
struct FieldNode {
    name: String,
    node: usize,
    /// The Kafka Connect time type (`io.debezium.time.*`) of an integer field.
    connect_time: Option<String>,
}

/// What compiling needs: the named types and the Connect time fields by record full name.
struct Compiler<'a> {
    names: &'a HashMap<Name, Schema>,
    connect_times: &'a HashMap<String, HashMap<String, String>>,
    nodes: Vec<Node>,
    named: HashMap<Name, usize>,
}

impl DatumReader {
    /// Compiles `schema`, whose named types (its own and its references') are `names`.
    pub(super) fn compile(
        schema: &Schema,
        names: &HashMap<Name, Schema>,
        connect_times: &HashMap<String, HashMap<String, String>>,
    ) -> Result<Self, String> {
        let mut compiler = Compiler {
            names,
            connect_times,
            nodes: Vec::new(),
            named: HashMap::new(),
        };
        let root = compiler.node(schema)?;
        Ok(Self {
            nodes: compiler.nodes,
            root,
        })
    }

    /// Reads one datum from the front of `buf`, leaving the bytes after it.
    pub(super) fn read(&self, buf: &mut &[u8]) -> Result<Value, String> {
        self.value(self.root, buf, 0)
    }

    fn value(&self, node: usize, buf: &mut &[u8], depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        Ok(match &self.nodes[node] {
            Node::Null => Value::Null,
            Node::Boolean => match take(buf, 1, "boolean")? {
                [0] => Value::Bool(false),
                [1] => Value::Bool(true),
                [b] => return Err(format!("boolean byte {b} is neither 0 nor 1")),
                _ => unreachable!("one byte taken"),
            },
            Node::Int | Node::TimeMillis => Value::from(int(buf)?),
            Node::Long | Node::TimeMicros | Node::TimestampMillis => Value::from(long(buf)?),
            Node::Float => {
                let f = f32::from_le_bytes(take(buf, 4, "float")?.try_into().expect("4 bytes"));
                // The float's shortest decimal form, not its binary expansion: 9.99f32 stays 9.99.
                number(f.to_string().parse().unwrap_or(f64::NAN))
            }
            Node::Double => number(f64::from_le_bytes(
                take(buf, 8, "double")?.try_into().expect("8 bytes"),
            )),
            Node::Bytes => Value::String(bytes_text(bytes(buf)?)),
            Node::String => Value::String(string(buf)?.to_owned()),
            Node::Fixed(size) => Value::String(bytes_text(take(buf, *size, "fixed")?)),
            Node::Enum(symbols) => {
                let i = long(buf)?;
                let symbol = usize::try_from(i).ok().and_then(|i| symbols.get(i));
                Value::String(
                    symbol
                        .ok_or_else(|| format!("enum index {i} out of range"))?
                        .clone(),
                )
            }
            Node::Union(variants) => {
                let i = long(buf)?;
                let variant = usize::try_from(i).ok().and_then(|i| variants.get(i));
                let variant = *variant.ok_or_else(|| format!("union branch {i} out of range"))?;
                self.value(variant, buf, depth + 1)?
            }
            Node::Array(item) => {
                let mut out = Vec::new();
                let mut empty_items = 0;
                while let Some(count) = self.block(buf, Some(*item), &mut empty_items, depth)? {
                    out.reserve(count);
                    for _ in 0..count {
                        out.push(self.value(*item, buf, depth + 1)?);
                    }
                }
                Value::Array(out)
            }
            Node::Map(values) => {
                let mut out = Map::new();
                while let Some(count) = self.block(buf, None, &mut 0, depth)? {
                    for _ in 0..count {
                        let key = string(buf)?.to_owned();
                        out.insert(key, self.value(*values, buf, depth + 1)?);
                    }
                }
                Value::Object(out)
            }
            Node::Record(record) => self.record(record, buf, depth)?,
            Node::Decimal { scale, inner } => {
                let unscaled = match &self.nodes[*inner] {
                    Node::Fixed(size) => take(buf, *size, "decimal")?,
                    _ => bytes(buf)?,
                };
                Value::String(decimal_text(unscaled, *scale)?)
            }
            Node::Date => date(int(buf)?)?,
            Node::Timestamp { unit, utc } => {
                let v = long(buf)?;
                let t = match unit {
                    Unit::Millis => DateTime::from_timestamp_millis(v),
                    Unit::Micros => DateTime::from_timestamp_micros(v),
                    Unit::Nanos => Some(DateTime::from_timestamp_nanos(v)),
                };
                timestamp(t, *utc)?
            }
            Node::Leaf(schema) => {
                match apache_avro::from_avro_datum(schema, buf, None).map_err(|e| e.to_string())? {
                    Avro::BigDecimal(d) => Value::String(d.to_string()),
                    Avro::Uuid(u) => Value::String(u.to_string()),
                    Avro::Duration(d) => Value::String(format!("{d:?}")),
                    other => return Err(format!("unexpected {other:?} for {schema:?}")),
                }
            }
            Node::Pending => unreachable!("compiling replaces every pending node"),
        })
    }

    fn record(&self, record: &RecordNode, buf: &mut &[u8], depth: usize) -> Result<Value, String> {
        let mut values = Vec::with_capacity(record.fields.len());
        let (mut scale, mut unscaled) = (None, None);
        for field in &record.fields {
            let node = &self.nodes[field.node];
            let value = if record.variable_scale_decimal {
                match (field.name.as_str(), node) {
                    ("scale", Node::Int) => {
                        let s = int(buf)?;
                        scale = usize::try_from(s).ok();
                        Value::from(s)
                    }
                    ("value", Node::Bytes) => {
                        let b = bytes(buf)?;
                        unscaled = Some(b);
                        Value::String(bytes_text(b))
                    }
                    _ => self.value(field.node, buf, depth + 1)?,
                }
            } else {
                self.value(field.node, buf, depth + 1)?
            };
            let value = match &field.connect_time {
                Some(logical) => {
                    crate::debezium::connect_value(&value, logical, || None).unwrap_or(value)
                }
                None => value,
            };
            values.push(Some(value));
        }
        if let (Some(scale), Some(unscaled)) = (scale, unscaled)
            && let Ok(text) = decimal_text(unscaled, scale)
        {
            return Ok(Value::String(text));
        }
        // In name order, the map is built without comparing keys to place them.
        let out: Map<String, Value> = record
            .by_name
            .iter()
            .map(|&i| {
                let value = values[i].take().expect("each field read once");
                (record.fields[i].name.clone(), value)
            })
            .collect();
        Ok(Value::Object(out))
    }

    /// The item count of the next block of an array of `item`s (`None`: of a map, whose entries
    /// take at least a byte, their key's length), `None` at the end. Items that take bytes
    /// cannot outnumber the bytes left; ones that take none are counted in `empty_items` against
    /// a bound.
    fn block(
        &self,
        buf: &mut &[u8],
        item: Option<usize>,
        empty_items: &mut u64,
        depth: usize,
    ) -> Result<Option<usize>, String> {
        let count = match long(buf)? {
            0 => return Ok(None),
            n if n < 0 => {
                long(buf)?; // the block's size in bytes, which a reader may use to skip it
                n.unsigned_abs()
            }
            n => n.unsigned_abs(),
        };
        if count > buf.len() as u64 {
            let empty = item.is_some_and(|item| self.may_take_no_bytes(item, depth));
            *empty_items = empty_items.saturating_add(count);
            if !empty || *empty_items > MAX_EMPTY_ITEMS {
                return Err(format!(
                    "a block of {count} items with {} bytes left",
                    buf.len()
                ));
            }
        }
        usize::try_from(count)
            .map(Some)
            .map_err(|_| format!("a block of {count} items"))
    }

    /// Whether a value of `node` can be encoded in no bytes (null, an empty fixed, a record of
    /// such fields).
    fn may_take_no_bytes(&self, node: usize, depth: usize) -> bool {
        depth <= MAX_DEPTH
            && match &self.nodes[node] {
                Node::Null => true,
                Node::Fixed(size) => *size == 0,
                Node::Record(r) => r
                    .fields
                    .iter()
                    .all(|f| self.may_take_no_bytes(f.node, depth + 1)),
                _ => false,
            }
    }
}

impl Compiler<'_> {
    fn push(&mut self, node: Node) -> usize {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// The node index of `schema`, compiled on first sight of a named type.
    fn node(&mut self, schema: &Schema) -> Result<usize, String> {
        let node = match schema {
            Schema::Ref { name } => {
                if let Some(i) = self.named.get(name) {
                    return Ok(*i);
                }
                let named = self
                    .names
                    .get(name)
                    .ok_or_else(|| format!("the schema names an unknown type {name}"))?;
                return self.node(named);
            }
            Schema::Record(record) => return self.record(record),
            Schema::Enum(e) => {
                let i = self.push(Node::Enum(e.symbols.clone()));
                self.named.insert(e.name.clone(), i);
                return Ok(i);
            }
            Schema::Fixed(f) => {
                let i = self.push(Node::Fixed(f.size));
                self.named.insert(f.name.clone(), i);
                return Ok(i);
            }
            Schema::Union(union) => {
                let variants = union
                    .variants()
                    .iter()
                    .map(|v| self.node(v))
                    .collect::<Result<_, _>>()?;
                Node::Union(variants)
            }
            Schema::Array(a) => Node::Array(self.node(&a.items)?),
            Schema::Map(m) => Node::Map(self.node(&m.types)?),
            Schema::Decimal(d) => Node::Decimal {
                scale: d.scale,
                inner: self.node(&d.inner)?,
            },
            Schema::Null => Node::Null,
            Schema::Boolean => Node::Boolean,
            Schema::Int => Node::Int,
            Schema::Long => Node::Long,
            Schema::Float => Node::Float,
            Schema::Double => Node::Double,
            Schema::Bytes => Node::Bytes,
            Schema::String => Node::String,
            Schema::Date => Node::Date,
            Schema::TimeMillis => Node::TimeMillis,
            Schema::TimeMicros => Node::TimeMicros,
            Schema::TimestampMillis => Node::TimestampMillis,
            Schema::TimestampMicros => timestamp_node(Unit::Micros, true),
            Schema::TimestampNanos => timestamp_node(Unit::Nanos, true),
            Schema::LocalTimestampMillis => timestamp_node(Unit::Millis, false),
            Schema::LocalTimestampMicros => timestamp_node(Unit::Micros, false),
            Schema::LocalTimestampNanos => timestamp_node(Unit::Nanos, false),
            Schema::BigDecimal | Schema::Uuid | Schema::Duration => Node::Leaf(schema.clone()),
        };
        Ok(self.push(node))
    }

    fn record(&mut self, record: &RecordSchema) -> Result<usize, String> {
        // Registered before its fields, which may name it.
        let i = self.push(Node::Pending);
        self.named.insert(record.name.clone(), i);
        let times = self.connect_times.get(&record.name.fullname(None));
        let fields = record
            .fields
            .iter()
            .map(|f| {
                Ok(FieldNode {
                    name: f.name.clone(),
                    node: self.node(&f.schema)?,
                    connect_time: times.and_then(|t| t.get(&f.name)).cloned(),
                })
            })
            .collect::<Result<_, String>>()?;
        let connect_name = record.attributes.get("connect.name");
        let mut by_name: Vec<usize> = (0..record.fields.len()).collect();
        by_name.sort_by(|a, b| record.fields[*a].name.cmp(&record.fields[*b].name));
        self.nodes[i] = Node::Record(RecordNode {
            fields,
            by_name,
            variable_scale_decimal: connect_name.and_then(Value::as_str)
                == Some(VARIABLE_SCALE_DECIMAL),
        });
        Ok(i)
    }
}

fn timestamp_node(unit: Unit, utc: bool) -> Node {
    Node::Timestamp { unit, utc }
}

/// The next `n` bytes, for a value of `what`.
fn take<'a>(buf: &mut &'a [u8], n: usize, what: &str) -> Result<&'a [u8], String> {
    if buf.len() < n {
        return Err(format!(
            "the datum ends inside a {what} ({n} bytes, {} left)",
            buf.len()
        ));
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

/// A zigzag varint `long`.
fn long(buf: &mut &[u8]) -> Result<i64, String> {
    let mut v = 0u64;
    for (i, b) in buf.iter().take(10).enumerate() {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *buf = &buf[i + 1..];
            return Ok((v >> 1) as i64 ^ -((v & 1) as i64));
        }
    }
    Err(if buf.len() < 10 {
        "the datum ends inside a number".into()
    } else {
        "a number longer than 10 bytes".into()
    })
}

/// A zigzag varint `int`.
fn int(buf: &mut &[u8]) -> Result<i32, String> {
    let v = long(buf)?;
    i32::try_from(v).map_err(|_| format!("int {v} is out of range"))
}

/// Length-prefixed bytes.
fn bytes<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let len = long(buf)?;
    let len = usize::try_from(len).map_err(|_| format!("a negative length {len}"))?;
    take(buf, len, "string or bytes")
}

/// A length-prefixed UTF-8 string.
fn string<'a>(buf: &mut &'a [u8]) -> Result<&'a str, String> {
    std::str::from_utf8(bytes(buf)?).map_err(|e| format!("a string that is not UTF-8: {e}"))
}

/// Collects into `out` the integer fields of the records in the schema JSON `node` whose type
/// carries a `connect.name` the Debezium converter decodes, by record full name. `namespace` is
/// the enclosing one. (apache-avro drops the properties of primitive types, so the schema text
/// is walked for them.)
pub(super) fn connect_time_fields(
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

#[cfg(test)]
mod tests {
    use super::super::AvroSchema;
    use super::*;
    use apache_avro::types::Record;

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
        let names = super::super::named_types(&schema.schema, &schema.references).unwrap();
        let named = |name: &str| &names[&Name::new(name).unwrap()];
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

#[cfg(test)]
mod types {
    use super::super::AvroSchema;
    use super::*;
    use apache_avro::types::Record;

    const EVERY_TYPE: &str = r#"{"type":"record","name":"All","fields":[
        {"name":"b","type":"boolean"},
        {"name":"i","type":"int"},
        {"name":"l","type":"long"},
        {"name":"f","type":"float"},
        {"name":"d","type":"double"},
        {"name":"text_bytes","type":"bytes"},
        {"name":"binary_bytes","type":"bytes"},
        {"name":"s","type":"string"},
        {"name":"fx","type":{"type":"fixed","name":"Two","size":2}},
        {"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]}},
        {"name":"u","type":["null","long","string"]},
        {"name":"m","type":{"type":"map","values":"int"}},
        {"name":"nulls","type":{"type":"array","items":"null"}},
        {"name":"fixed_decimal","type":{"type":"fixed","name":"Money","size":4,
            "logicalType":"decimal","precision":9,"scale":3}},
        {"name":"date","type":{"type":"int","logicalType":"date"}},
        {"name":"tm","type":{"type":"int","logicalType":"time-millis"}},
        {"name":"tu","type":{"type":"long","logicalType":"time-micros"}},
        {"name":"ts_ms","type":{"type":"long","logicalType":"timestamp-millis"}},
        {"name":"ts_us","type":{"type":"long","logicalType":"timestamp-micros"}},
        {"name":"ts_ns","type":{"type":"long","logicalType":"timestamp-nanos"}},
        {"name":"local_ms","type":{"type":"long","logicalType":"local-timestamp-millis"}},
        {"name":"local_us","type":{"type":"long","logicalType":"local-timestamp-micros"}},
        {"name":"local_ns","type":{"type":"long","logicalType":"local-timestamp-nanos"}},
        {"name":"id","type":{"type":"string","logicalType":"uuid"}},
        {"name":"big","type":{"type":"bytes","logicalType":"big-decimal"}},
        {"name":"again","type":"Two"}
    ]}"#;

    fn every_type() -> (AvroSchema, Vec<u8>) {
        let schema = AvroSchema::parse(EVERY_TYPE, &[]).unwrap();
        let mut r = Record::new(&schema.schema).unwrap();
        r.put("b", true);
        r.put("i", -7);
        r.put("l", 1i64 << 40);
        r.put("f", 9.99f32);
        r.put("d", -0.5f64);
        r.put("text_bytes", Avro::Bytes(b"plain".to_vec()));
        r.put("binary_bytes", Avro::Bytes(vec![0xff, 0x00]));
        r.put("s", "ünïcode");
        r.put("fx", Avro::Fixed(2, b"ok".to_vec()));
        r.put("e", Avro::Enum(1, "B".into()));
        r.put("u", Avro::Union(2, Box::new(Avro::String("two".into()))));
        r.put(
            "m",
            Avro::Map([("k".to_owned(), Avro::Int(3))].into_iter().collect()),
        );
        r.put("nulls", Avro::Array(vec![Avro::Null; 3]));
        let money = apache_avro::Decimal::from(vec![0xff, 0xff, 0xfe, 0x0c]);
        r.put("fixed_decimal", Avro::Decimal(money));
        r.put("date", Avro::Date(-1));
        r.put("tm", Avro::TimeMillis(1_000));
        r.put("tu", Avro::TimeMicros(2_000));
        r.put("ts_ms", Avro::TimestampMillis(1_709_287_200_123));
        r.put("ts_us", Avro::TimestampMicros(1_709_287_200_123_456));
        r.put("ts_ns", Avro::TimestampNanos(1_709_287_200_123_456_789));
        r.put("local_ms", Avro::LocalTimestampMillis(1_709_287_200_120));
        r.put("local_us", Avro::LocalTimestampMicros(1));
        r.put("local_ns", Avro::LocalTimestampNanos(0));
        let id = uuid::Uuid::parse_str("89791762-2336-4186-9674-299b90a802e2").unwrap();
        r.put("id", Avro::Uuid(id));
        r.put(
            "big",
            Avro::BigDecimal(
                "-12345678901234567890123456789012345678901.5"
                    .parse()
                    .unwrap(),
            ),
        );
        r.put("again", Avro::Fixed(2, b"no".to_vec()));
        let bytes = apache_avro::to_avro_datum(&schema.schema, r).unwrap();
        (schema, bytes)
    }

    #[test]
    fn every_type_reads_as_the_mappings_expect() {
        let (schema, bytes) = every_type();
        assert_eq!(
            schema.decode(&bytes).unwrap(),
            serde_json::json!({
                "b": true, "i": -7, "l": 1_099_511_627_776_i64, "f": 9.99, "d": -0.5,
                "text_bytes": "plain", "binary_bytes": "/wA=", "s": "ünïcode", "fx": "ok",
                "e": "B", "u": "two", "m": {"k": 3}, "nulls": [null, null, null],
                "fixed_decimal": "-0.500", "date": "1969-12-31", "tm": 1000, "tu": 2000,
                "ts_ms": 1_709_287_200_123_i64,
                "ts_us": "2024-03-01T10:00:00.123456Z",
                "ts_ns": "2024-03-01T10:00:00.123456789Z",
                "local_ms": "2024-03-01T10:00:00.120",
                "local_us": "1970-01-01T00:00:00.000001",
                "local_ns": "1970-01-01T00:00:00",
                "id": "89791762-2336-4186-9674-299b90a802e2",
                "big": "-12345678901234567890123456789012345678901.5",
                "again": "no",
            })
        );
    }

    #[test]
    fn a_cut_datum_fails_at_every_length() {
        let (schema, bytes) = every_type();
        for len in 0..bytes.len() {
            assert!(
                schema.decode(&bytes[..len]).is_err(),
                "{len} of {} bytes decoded",
                bytes.len()
            );
        }
    }

    fn reader(text: &str) -> AvroSchema {
        AvroSchema::parse(text, &[]).unwrap()
    }

    /// Zigzag varint of `v`.
    fn varint(v: i64) -> Vec<u8> {
        apache_avro::to_avro_datum(&Schema::Long, Avro::Long(v)).unwrap()
    }

    #[test]
    fn lying_sizes_fail_without_allocating_them() {
        let strings = reader(r#"{"type":"array","items":"string"}"#);
        let err = strings.decode(&varint(i64::MAX)).unwrap_err();
        assert!(err.contains("a block of"), "{err}");
        let err = strings
            .decode(&[varint(1), varint(1 << 40)].concat())
            .unwrap_err();
        assert!(err.contains("ends inside a string"), "{err}");
        let err = strings
            .decode(&[varint(1), varint(-3)].concat())
            .unwrap_err();
        assert!(err.contains("negative length"), "{err}");
        // Nulls take no bytes: a few are fine, a flood is refused.
        let nulls = reader(r#"{"type":"array","items":"null"}"#);
        assert_eq!(
            nulls.decode(&[varint(2), varint(0)].concat()).unwrap(),
            serde_json::json!([null, null])
        );
        let err = nulls
            .decode(&[varint(1 << 50), varint(0)].concat())
            .unwrap_err();
        assert!(err.contains("a block of"), "{err}");
        let map = reader(r#"{"type":"map","values":"null"}"#);
        assert!(map.decode(&varint(1 << 30)).is_err());
        assert!(reader(r#""long""#).decode(&[0xff; 11]).is_err());
        assert!(reader(r#""int""#).decode(&varint(1 << 40)).is_err());
        assert!(reader(r#""boolean""#).decode(&[2]).is_err());
        let union = reader(r#"["null","string"]"#);
        assert!(union.decode(&varint(2)).unwrap_err().contains("branch 2"));
        assert!(union.decode(&varint(-1)).is_err());
        let en = reader(r#"{"type":"enum","name":"E","symbols":["A"]}"#);
        assert!(en.decode(&varint(1)).unwrap_err().contains("enum index 1"));
        assert!(
            reader(r#""string""#)
                .decode(&[varint(2), vec![0xc3, 0x28]].concat())
                .unwrap_err()
                .contains("UTF-8")
        );
    }

    #[test]
    fn recursion_is_bounded() {
        let list = reader(
            r#"{"type":"record","name":"Node","fields":[
                {"name":"next","type":["null","Node"]}]}"#,
        );
        // Three links, then the end.
        let three = [varint(1), varint(1), varint(1), varint(0)].concat();
        assert_eq!(
            list.decode(&three).unwrap(),
            serde_json::json!({"next": {"next": {"next": {"next": null}}}})
        );
        let deep = [vec![2u8; 100_000], vec![0]].concat();
        assert!(list.decode(&deep).unwrap_err().contains("nested deeper"));
    }
}
