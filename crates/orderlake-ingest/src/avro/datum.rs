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
use std::sync::atomic::{AtomicUsize, Ordering};

use apache_avro::Schema;
use apache_avro::schema::Name;
use apache_avro::types::Value as Avro;
use chrono::DateTime;
use serde_json::{Number, Value};

use super::compile::{self, Node, RecordNode, Unit};
use super::tree::{Datum, Item};
use super::{base64_text, date, decimal_unscaled, timestamp};

/// Deeper nesting than this is refused (a recursive schema lets a datum nest without bound).
const MAX_DEPTH: usize = 256;

/// Array items that take no bytes (nulls, empty records) one datum may hold.
const MAX_EMPTY_ITEMS: u64 = 1 << 16;

/// A writer schema compiled for reading its datums.
#[derive(Debug)]
pub(super) struct DatumReader {
    nodes: Vec<Node>,
    /// The node of the schema itself.
    root: usize,
    /// The largest datum read so far (values, members), to size the next one's vectors.
    sizes: Sizes,
}

#[derive(Debug, Default)]
struct Sizes {
    values: AtomicUsize,
    members: AtomicUsize,
}

impl DatumReader {
    /// Compiles `schema`, whose named types (its own and its references') are `names`.
    pub(super) fn compile(
        schema: &Schema,
        names: &HashMap<Name, Schema>,
        connect_times: &HashMap<String, HashMap<String, String>>,
    ) -> Result<Self, String> {
        let (nodes, root) = compile::compile(schema, names, connect_times)?;
        Ok(Self {
            nodes,
            root,
            sizes: Sizes::default(),
        })
    }

    /// Reads one datum from the front of `buf`, leaving the bytes after it.
    pub(super) fn read<'a>(&'a self, buf: &mut &'a [u8]) -> Result<Datum<'a>, String> {
        // Never more than the bytes could hold, whatever an earlier datum held.
        let cap = |seen: &AtomicUsize| seen.load(Ordering::Relaxed).min(buf.len() + 1);
        let mut datum = Datum::with_capacity(cap(&self.sizes.values), cap(&self.sizes.members));
        self.value(self.root, buf, 0, &mut datum)?;
        let (values, members) = datum.sizes();
        self.sizes.values.fetch_max(values, Ordering::Relaxed);
        self.sizes.members.fetch_max(members, Ordering::Relaxed);
        Ok(datum)
    }

    /// Whether the root may be a Debezium change envelope (a record with `op` and `source`, or
    /// with `schema` and `payload`): such datums are read as JSON documents by the envelope's
    /// reader. Any other record is mapped as it is.
    pub(super) fn may_be_change_event(&self) -> bool {
        let Node::Record(record) = &self.nodes[self.root] else {
            return true;
        };
        let has = |name: &str| record.fields.iter().any(|f| f.name == name);
        has("op") && has("source") || has("schema") && has("payload")
    }

    /// Reads a value of `node` into `out`; its index there.
    fn value<'a>(
        &'a self,
        node: usize,
        buf: &mut &'a [u8],
        depth: usize,
        out: &mut Datum<'a>,
    ) -> Result<u32, String> {
        if depth > MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        let item = match &self.nodes[node] {
            Node::Null => Item::Null,
            Node::Boolean => match take(buf, 1, "boolean")? {
                [0] => Item::Bool(false),
                [1] => Item::Bool(true),
                [b] => return Err(format!("boolean byte {b} is neither 0 nor 1")),
                _ => unreachable!("one byte taken"),
            },
            Node::Int | Node::TimeMillis => Item::Number(int(buf)?.into()),
            Node::Long | Node::TimeMicros | Node::TimestampMillis => {
                Item::Number(long(buf)?.into())
            }
            Node::Float => {
                let f = f32::from_le_bytes(take(buf, 4, "float")?.try_into().expect("4 bytes"));
                // The float's shortest decimal form, not its binary expansion: 9.99f32 stays 9.99.
                number(f.to_string().parse().unwrap_or(f64::NAN))
            }
            Node::Double => number(f64::from_le_bytes(
                take(buf, 8, "double")?.try_into().expect("8 bytes"),
            )),
            Node::Bytes => bytes_item(bytes(buf)?),
            Node::String => Item::Str(string(buf)?),
            Node::Fixed(size) => bytes_item(take(buf, *size, "fixed")?),
            Node::Enum(symbols) => {
                let i = long(buf)?;
                let symbol = usize::try_from(i).ok().and_then(|i| symbols.get(i));
                Item::Str(symbol.ok_or_else(|| format!("enum index {i} out of range"))?)
            }
            Node::Union(variants) => {
                let i = long(buf)?;
                let variant = usize::try_from(i).ok().and_then(|i| variants.get(i));
                let variant = *variant.ok_or_else(|| format!("union branch {i} out of range"))?;
                return self.value(variant, buf, depth + 1, out);
            }
            Node::Array(item) => {
                let base = out.open();
                let mut empty_items = 0;
                while let Some(count) = self.block(buf, Some(*item), &mut empty_items, depth)? {
                    for _ in 0..count {
                        let value = self.value(*item, buf, depth + 1, out)?;
                        out.member("", value);
                    }
                }
                Item::Array(out.close(base))
            }
            Node::Map(values) => {
                let base = out.open();
                while let Some(count) = self.block(buf, None, &mut 0, depth)? {
                    for _ in 0..count {
                        let key = string(buf)?;
                        let value = self.value(*values, buf, depth + 1, out)?;
                        out.member(key, value);
                    }
                }
                Item::Map(out.close(base))
            }
            Node::Record(record) => return self.record(record, buf, depth, out),
            Node::Decimal { scale, inner } => {
                let unscaled = match &self.nodes[*inner] {
                    Node::Fixed(size) => take(buf, *size, "decimal")?,
                    _ => bytes(buf)?,
                };
                decimal_unscaled(unscaled)?; // refuses more than 16 bytes
                Item::Decimal {
                    unscaled,
                    scale: *scale,
                }
            }
            Node::Date => Item::Json(date(int(buf)?)?),
            Node::Timestamp { unit, utc } => {
                let v = long(buf)?;
                let t = match unit {
                    Unit::Millis => DateTime::from_timestamp_millis(v),
                    Unit::Micros => DateTime::from_timestamp_micros(v),
                    Unit::Nanos => Some(DateTime::from_timestamp_nanos(v)),
                };
                Item::Json(timestamp(t, *utc)?)
            }
            Node::Leaf(schema) => Item::Json(
                match apache_avro::from_avro_datum(schema, buf, None).map_err(|e| e.to_string())? {
                    Avro::BigDecimal(d) => Value::String(d.to_string()),
                    Avro::Uuid(u) => Value::String(u.to_string()),
                    Avro::Duration(d) => Value::String(format!("{d:?}")),
                    other => return Err(format!("unexpected {other:?} for {schema:?}")),
                },
            ),
            Node::Pending => unreachable!("compiling replaces every pending node"),
        };
        Ok(out.push(item))
    }

    fn record<'a>(
        &'a self,
        record: &'a RecordNode,
        buf: &mut &'a [u8],
        depth: usize,
        out: &mut Datum<'a>,
    ) -> Result<u32, String> {
        let base = out.open();
        let (mut scale, mut unscaled) = (None, None);
        for field in &record.fields {
            let value = match (record.variable_scale_decimal, field.name.as_str()) {
                (true, "scale") if matches!(self.nodes[field.node], Node::Int) => {
                    let s = int(buf)?;
                    scale = usize::try_from(s).ok();
                    out.push(Item::Number(s.into()))
                }
                (true, "value") if matches!(self.nodes[field.node], Node::Bytes) => {
                    let b = bytes(buf)?;
                    unscaled = Some(b);
                    out.push(bytes_item(b))
                }
                _ => self.value(field.node, buf, depth + 1, out)?,
            };
            if let Some(logical) = &field.connect_time {
                let read = out.json(value);
                if let Some(converted) = crate::debezium::connect_value(&read, logical, || None) {
                    out.replace(value, Item::Json(converted));
                }
            }
            out.member(&field.name, value);
        }
        let run = out.close(base);
        if let (Some(scale), Some(unscaled)) = (scale, unscaled)
            && unscaled.len() <= 16
        {
            return Ok(out.push(Item::Decimal { unscaled, scale }));
        }
        Ok(out.push(Item::Record(run, record)))
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

/// Bytes as their text when they are UTF-8, else as base64 text.
fn bytes_item(b: &[u8]) -> Item<'_> {
    match std::str::from_utf8(b) {
        Ok(s) => Item::Str(s),
        Err(_) => Item::Json(Value::String(base64_text(b))),
    }
}

/// A double as a JSON number (NaN and infinities, which JSON has none of, as null).
fn number<'a>(f: f64) -> Item<'a> {
    Number::from_f64(f).map_or(Item::Null, Item::Number)
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
pub(crate) mod types {
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

    /// A record with a field of every type, and a datum of it.
    pub(crate) fn every_type() -> (AvroSchema, Vec<u8>) {
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
