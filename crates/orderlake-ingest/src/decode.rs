//! Decoding one record's value into the canonical order columns. Decoding never fails a record:
//! whatever cannot be read becomes a short reason in `decode_error`, the fields that did decode are
//! kept, and the raw bytes are archived untouched either way.

pub use orderlake_archive::time::parse_timestamp;
use serde_json::Value;

use std::collections::HashMap;
use std::sync::Arc;

use crate::avro::{AvroSchema, SchemaKey};
pub use crate::convert::parse_decimal;
use crate::convert::{integer, money, text, timestamp};
use crate::debezium::{Change, ChangeSource};
use crate::document::{Document, View};
use crate::registry::{Lookup, RegisteredSchema, SchemaRegistry};

use crate::mapping::{CanonicalField, MappingSet, Paths, SourceMapping};

/// One line item, typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineItem {
    pub sku: Option<String>,
    pub quantity: Option<i64>,
    /// Money in units of 10^-MONEY_SCALE.
    pub unit_price: Option<i128>,
    pub sale_price: Option<i128>,
}

/// The canonical order columns of one record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodedOrder {
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    pub order_id: Option<String>,
    pub customer_id: Option<String>,
    pub facility_id: Option<String>,
    pub status: Option<String>,
    pub previous_status: Option<String>,
    /// Money in units of 10^-MONEY_SCALE.
    pub total_amount: Option<i128>,
    pub currency: Option<String>,
    /// Microseconds since the epoch, UTC.
    pub event_time: Option<i64>,
    pub items: Option<Vec<LineItem>>,
    /// `None` when the record decoded cleanly.
    pub error: Option<String>,
    /// What kind of failure `error` describes (a bounded label for metrics).
    pub failure: Option<DecodeFailure>,
    /// A Debezium change event's operation and source position (the `cdc_*` columns).
    pub change: Option<ChangeSource>,
}

/// Why a record has no (or incomplete) typed columns, in a few fixed words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeFailure {
    Tombstone,
    Empty,
    TooLarge,
    NoMapping,
    NotUtf8,
    InvalidJson,
    NotAnObject,
    /// The document parsed, but fields are missing or of the wrong type.
    Fields,
    /// Starts like registry framing (magic byte 0, or a schema id header) but the framing is
    /// broken.
    Framing,
    /// Framed for a schema registry, and the archiver has none configured.
    NoRegistry,
    /// The registry does not know the schema (or holds one that cannot be used).
    UnknownSchema,
    /// The registry did not serve the schema in time: `maintain --redecode` decodes it later.
    SchemaUnavailable,
    /// The bytes are not a datum of their Avro schema.
    InvalidAvro,
    /// A registry format the archiver does not decode (Protobuf).
    UnsupportedFormat,
    /// A Debezium change event without a row (a truncate).
    NoRow,
}

impl DecodeFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tombstone => "tombstone",
            Self::Empty => "empty",
            Self::TooLarge => "too_large",
            Self::NoMapping => "no_mapping",
            Self::NotUtf8 => "not_utf8",
            Self::InvalidJson => "invalid_json",
            Self::NotAnObject => "not_an_object",
            Self::Fields => "fields",
            Self::Framing => "framing",
            Self::NoRegistry => "no_registry",
            Self::UnknownSchema => "unknown_schema",
            Self::SchemaUnavailable => "schema_unavailable",
            Self::InvalidAvro => "invalid_avro",
            Self::UnsupportedFormat => "unsupported_format",
            Self::NoRow => "no_row",
        }
    }
}

impl DecodedOrder {
    fn failed(kind: DecodeFailure, reason: impl Into<String>) -> Self {
        Self {
            error: Some(reason.into()),
            failure: Some(kind),
            ..Self::default()
        }
    }
}

/// Decodes record values with the mapping of their topic (looked up once per topic), and the
/// writer schemas of the registry for framed ones.
#[derive(Debug)]
pub struct TopicDecoder {
    mappings: MappingSet,
    by_topic: HashMap<String, Option<usize>>,
    max_decode_bytes: usize,
    registry: Option<Arc<SchemaRegistry>>,
}

/// What decoding one record gave (moved once per record; boxing the order would cost an
/// allocation per record instead).
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "returned by value once per record"
)]
pub enum Decoded {
    Order(DecodedOrder),
    /// The record needs this writer schema, which the registry has not served yet.
    NeedsSchema(SchemaKey),
}

impl TopicDecoder {
    pub fn new(mappings: MappingSet, max_decode_bytes: usize) -> Self {
        Self {
            mappings,
            by_topic: HashMap::new(),
            max_decode_bytes,
            registry: None,
        }
    }

    /// Decodes framed records with the writer schemas of `registry`.
    pub fn with_registry(mut self, registry: Option<Arc<SchemaRegistry>>) -> Self {
        self.registry = registry;
        self
    }

    /// Waits up to `wait` for the registry's first answer about `key`
    /// ([`SchemaRegistry::await_first_answer`]); `false` without a registry.
    pub fn await_first_answer(&self, key: SchemaKey, wait: std::time::Duration) -> bool {
        self.registry
            .as_ref()
            .is_some_and(|r| r.await_first_answer(key, wait))
    }

    /// Decodes a record without a schema header; a record whose schema is still being fetched
    /// is archived raw with the reason (paths that cannot wait for the registry).
    pub fn decode(&mut self, topic: &str, value: Option<&[u8]>) -> DecodedOrder {
        match self.decode_record(topic, value, None) {
            Decoded::Order(order) => order,
            Decoded::NeedsSchema(key) => DecodedOrder::failed(
                DecodeFailure::SchemaUnavailable,
                format!("{SCHEMA_UNAVAILABLE}: {key} not fetched yet"),
            ),
        }
    }

    /// Decodes a record whose value schema header (`__value_schema_id`) is `schema_header`.
    pub fn decode_record(
        &mut self,
        topic: &str,
        value: Option<&[u8]>,
        schema_header: Option<&[u8]>,
    ) -> Decoded {
        let idx = match self.by_topic.get(topic) {
            Some(idx) => *idx,
            None => {
                let found = self.mappings.for_topic(topic);
                tracing::info!(topic, mapping = ?found.map(|m| &m.name), "source mapping for topic");
                let idx = found.map(|m| self.mappings.index_of(&m.name));
                self.by_topic.insert(topic.to_owned(), idx);
                idx
            }
        };
        let mapping = idx.map(|i| self.mappings.get(i));
        let (bytes, mapping) = match checked(value, mapping, self.max_decode_bytes) {
            Ok(checked) => checked,
            Err((kind, reason)) => return Decoded::Order(DecodedOrder::failed(kind, reason)),
        };
        let framed = match crate::avro::framing(bytes, schema_header) {
            Ok(None) => return Decoded::Order(decode_json(bytes, mapping)),
            Ok(Some(framed)) => framed,
            Err(reason) => {
                return Decoded::Order(DecodedOrder::failed(
                    DecodeFailure::Framing,
                    format!("schema registry framing: {reason}"),
                ));
            }
        };
        let key = framed.key;
        let Some(registry) = &self.registry else {
            return Decoded::Order(DecodedOrder::failed(
                DecodeFailure::NoRegistry,
                format!(
                    "framed for a schema registry ({key}), and no [schema_registry] is configured"
                ),
            ));
        };
        Decoded::Order(match registry.lookup(key) {
            Lookup::Pending => return Decoded::NeedsSchema(key),
            Lookup::Failed(reason) => {
                DecodedOrder::failed(DecodeFailure::UnknownSchema, format!("{key}: {reason}"))
            }
            Lookup::Unavailable(reason) => DecodedOrder::failed(
                DecodeFailure::SchemaUnavailable,
                format!(
                    "{SCHEMA_UNAVAILABLE}: {key} not served within {} s ({reason}); \
                     `orderlake-archiver maintain --redecode` decodes it later",
                    registry.config().unavailable_wait_secs
                ),
            ),
            Lookup::Ready(schema) => match &*schema {
                RegisteredSchema::Avro(avro) => decode_avro(avro, framed.payload, key, mapping),
                RegisteredSchema::Json => decode_json(framed.payload, mapping),
                RegisteredSchema::Other(format) => DecodedOrder::failed(
                    DecodeFailure::UnsupportedFormat,
                    format!("{format} ({key}) is archived raw: the archiver decodes Avro and JSON"),
                ),
            },
        })
    }
}

/// How the decode reason of a record archived raw because its schema was not served begins:
/// `maintain --redecode` selects rows by it.
pub const SCHEMA_UNAVAILABLE: &str = "schema registry unavailable";

/// Values larger than this are archived raw without an attempt to parse them.
pub const DEFAULT_MAX_DECODE_BYTES: usize = 8 * 1024 * 1024;

/// Decodes `value` (None for a tombstone) with `mapping` (None when no mapping matches the topic).
pub fn decode(
    value: Option<&[u8]>,
    mapping: Option<&SourceMapping>,
    max_bytes: usize,
) -> DecodedOrder {
    match checked(value, mapping, max_bytes) {
        Ok((bytes, mapping)) => decode_json(bytes, mapping),
        Err((kind, reason)) => DecodedOrder::failed(kind, reason),
    }
}

/// The value's bytes and its mapping, or why there is nothing to decode.
fn checked<'a, 'm>(
    value: Option<&'a [u8]>,
    mapping: Option<&'m SourceMapping>,
    max_bytes: usize,
) -> Result<(&'a [u8], &'m SourceMapping), (DecodeFailure, String)> {
    let Some(bytes) = value else {
        return Err((
            DecodeFailure::Tombstone,
            "tombstone: the record has no value".into(),
        ));
    };
    if bytes.is_empty() {
        return Err((DecodeFailure::Empty, "empty value".into()));
    }
    if bytes.len() > max_bytes {
        return Err((
            DecodeFailure::TooLarge,
            format!(
                "value of {} bytes is over the {max_bytes}-byte decode limit; archived raw",
                bytes.len()
            ),
        ));
    }
    let Some(mapping) = mapping else {
        return Err((
            DecodeFailure::NoMapping,
            "no source mapping matches this topic".into(),
        ));
    };
    Ok((bytes, mapping))
}

/// Decodes a JSON document with `mapping`.
fn decode_json(bytes: &[u8], mapping: &SourceMapping) -> DecodedOrder {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            return DecodedOrder::failed(
                DecodeFailure::NotUtf8,
                format!("not UTF-8: invalid byte at position {}", e.valid_up_to()),
            );
        }
    };
    let doc: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return DecodedOrder::failed(DecodeFailure::InvalidJson, format!("invalid JSON: {e}"));
        }
    };
    if !doc.is_object() {
        return DecodedOrder::failed(
            DecodeFailure::NotAnObject,
            format!("expected a JSON object, got {}", doc.view().kind()),
        );
    }
    decode_document(&doc, mapping)
}

/// The canonical columns of an Avro datum: read in place and mapped as it is, or, for a schema
/// that may be a Debezium envelope, as the JSON document it reads as.
fn decode_avro(
    avro: &AvroSchema,
    payload: &[u8],
    key: SchemaKey,
    mapping: &SourceMapping,
) -> DecodedOrder {
    let datum = match avro.read(payload) {
        Ok(datum) => datum,
        Err(e) => {
            return DecodedOrder::failed(DecodeFailure::InvalidAvro, format!("Avro ({key}): {e}"));
        }
    };
    match datum.root().view() {
        View::Object if avro.may_be_change_event() => decode_document(&datum.to_json(), mapping),
        View::Object => decode_fields(datum.root(), mapping),
        other => DecodedOrder::failed(
            DecodeFailure::NotAnObject,
            format!("Avro ({key}): expected a record, got {}", other.kind()),
        ),
    }
}

/// The canonical columns of a document: of a Debezium change event's row (`after`, `before` for a
/// delete), or of the document itself.
fn decode_document(doc: &Value, m: &SourceMapping) -> DecodedOrder {
    let Some(Change { row, source }) = crate::debezium::change(doc) else {
        return decode_fields(doc, m);
    };
    let mut order = match row {
        Some(row) => decode_fields(&row, m),
        None => DecodedOrder::failed(
            DecodeFailure::NoRow,
            format!("Debezium change event `{}` carries no row", source.op),
        ),
    };
    order.change = Some(source);
    order
}

fn decode_fields<'v>(doc: impl Document<'v>, m: &SourceMapping) -> DecodedOrder {
    let mut problems = Vec::new();
    let f = &m.fields;
    let mut field = |name: &str, paths: &Paths, conv: fn(View<'_>) -> Result<String, String>| {
        paths.find(doc).and_then(|v| {
            conv(v.view())
                .map_err(|e| problems.push(format!("{name}: {e}")))
                .ok()
        })
    };
    let mut out = DecodedOrder {
        event_id: field("event_id", &f.event_id, text),
        event_type: field("event_type", &f.event_type, text),
        order_id: field("order_id", &f.order_id, text),
        customer_id: field("customer_id", &f.customer_id, text),
        facility_id: field("facility_id", &f.facility_id, text),
        status: field("status", &f.status, text),
        previous_status: field("previous_status", &f.previous_status, text),
        currency: field("currency", &f.currency, text),
        ..DecodedOrder::default()
    };
    if out.event_type.is_none() {
        out.event_type.clone_from(&m.event_type_default);
    }
    out.total_amount = f.total_amount.find(doc).and_then(|v| {
        money(v.view())
            .map_err(|e| problems.push(format!("total_amount: {e}")))
            .ok()
    });
    out.event_time = f.event_time.find(doc).and_then(|v| {
        timestamp(v.view())
            .map_err(|e| problems.push(format!("event_time: {e}")))
            .ok()
    });
    out.items = items(doc, m, &mut problems);
    for req in &m.required {
        if is_missing(&out, *req) && !problems.iter().any(|p| p.starts_with(req.name())) {
            problems.push(format!("{}: missing", req.name()));
        }
    }
    if !problems.is_empty() {
        out.error = Some(format!("mapping {}: {}", m.name, problems.join("; ")));
        out.failure = Some(DecodeFailure::Fields);
    }
    out
}

/// The line items: the record itself as the one item (`row_is_item`), else the array at the
/// mapping's `items` paths, each item read with its `item_fields`.
fn items<'v>(
    doc: impl Document<'v>,
    m: &SourceMapping,
    problems: &mut Vec<String>,
) -> Option<Vec<LineItem>> {
    if m.row_is_item {
        return Some(vec![line_item(doc, m, 0, problems)]);
    }
    let items = m.fields.items.find(doc)?;
    match items.view() {
        View::Array => Some(
            (0..items.item_count())
                .filter_map(|i| items.item(i))
                .enumerate()
                .map(|(i, item)| line_item(item, m, i, problems))
                .collect(),
        ),
        other => {
            problems.push(format!("items: expected an array, got {}", other.kind()));
            None
        }
    }
}

fn is_missing(o: &DecodedOrder, f: CanonicalField) -> bool {
    match f {
        CanonicalField::EventId => o.event_id.is_none(),
        CanonicalField::EventType => o.event_type.is_none(),
        CanonicalField::OrderId => o.order_id.is_none(),
        CanonicalField::CustomerId => o.customer_id.is_none(),
        CanonicalField::FacilityId => o.facility_id.is_none(),
        CanonicalField::Status => o.status.is_none(),
        CanonicalField::PreviousStatus => o.previous_status.is_none(),
        CanonicalField::TotalAmount => o.total_amount.is_none(),
        CanonicalField::Currency => o.currency.is_none(),
        CanonicalField::EventTime => o.event_time.is_none(),
        CanonicalField::Items => o.items.is_none(),
    }
}

fn line_item<'v>(
    v: impl Document<'v>,
    m: &SourceMapping,
    i: usize,
    problems: &mut Vec<String>,
) -> LineItem {
    let p = &m.item_fields;
    let mut report = |name: &str, e: String| problems.push(format!("items[{i}].{name}: {e}"));
    let mut item = LineItem::default();
    if !matches!(v.view(), View::Object) {
        report("", format!("expected an object, got {}", v.view().kind()));
        return item;
    }
    item.sku = p
        .sku
        .find(v)
        .and_then(|x| text(x.view()).map_err(|e| report("sku", e)).ok());
    item.quantity = p
        .quantity
        .find(v)
        .and_then(|x| integer(x.view()).map_err(|e| report("quantity", e)).ok());
    item.unit_price = p
        .unit_price
        .find(v)
        .and_then(|x| money(x.view()).map_err(|e| report("unit_price", e)).ok());
    item.sale_price = p
        .sale_price
        .find(v)
        .and_then(|x| money(x.view()).map_err(|e| report("sale_price", e)).ok());
    item
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::Pointer;

    fn snake() -> SourceMapping {
        SourceMapping::seed_snake_case_orders()
    }

    /// Every path of a JSON document, its root included.
    fn paths(doc: &Value, at: String, out: &mut Vec<String>) {
        match doc {
            Value::Object(m) => m
                .iter()
                .for_each(|(k, v)| paths(v, format!("{at}/{k}"), out)),
            Value::Array(a) => a
                .iter()
                .enumerate()
                .for_each(|(i, v)| paths(v, format!("{at}/{i}"), out)),
            _ => {}
        }
        out.push(at);
    }

    type Read = (
        &'static str,
        Result<String, String>,
        Result<i64, String>,
        Result<i128, String>,
        Result<i64, String>,
    );

    fn read_as_each_column(v: View<'_>) -> Read {
        (v.kind(), text(v), integer(v), money(v), timestamp(v))
    }

    /// Avro read in place maps exactly as the JSON document it reads as: every value of every
    /// type, through every conversion (results and reasons), and whole records through mappings.
    #[test]
    fn avro_in_place_reads_as_its_json_document() {
        let decimals = r#"{"type":"record","name":"D","fields":[
            {"name":"s0","type":{"type":"bytes","logicalType":"decimal","precision":20,"scale":0}},
            {"name":"s2","type":{"type":"bytes","logicalType":"decimal","precision":20,"scale":2}},
            {"name":"s6","type":{"type":"bytes","logicalType":"decimal","precision":38,"scale":6}},
            {"name":"s40","type":{"type":"bytes","logicalType":"decimal","precision":40,"scale":40}}
        ]}"#;
        let decimals = AvroSchema::parse(decimals, &[]).unwrap();
        let mut samples = vec![crate::avro::every_type()];
        for (s0, s2, s6, s40) in [
            (42i128, 12_345i128, 1_500_000i128, 0i128),
            (-7, -5, 1_234_567, 10i128.pow(30)),
            (10i128.pow(18), 10i128.pow(20), -10i128.pow(24), -1),
            (i128::MAX, i128::MIN, 120_000_000, 5),
        ] {
            let mut r = apache_avro::types::Record::new(&decimals.schema).unwrap();
            for (name, v) in [("s0", s0), ("s2", s2), ("s6", s6), ("s40", s40)] {
                let bytes = v.to_be_bytes();
                // The shortest two's complement: one sign byte before the first other byte.
                let sign = if v < 0 { 0xff } else { 0 };
                let trimmed = bytes.iter().position(|b| *b != sign).unwrap_or(15);
                r.put(
                    name,
                    apache_avro::types::Value::Decimal(apache_avro::Decimal::from(
                        bytes[trimmed.saturating_sub(1)..].to_vec(),
                    )),
                );
            }
            let bytes = apache_avro::to_avro_datum(&decimals.schema, r).unwrap();
            samples.push((decimals.clone(), bytes));
        }
        for (schema, bytes) in &samples {
            let datum = schema.read(bytes).unwrap();
            let json = datum.to_json();
            let mut all = Vec::new();
            paths(&json, String::new(), &mut all);
            assert!(all.len() > 4);
            for p in all
                .iter()
                .chain(&["/missing".to_owned(), "/nulls/9".to_owned()])
            {
                let pointer = Pointer::parse(p).unwrap();
                let in_place = pointer
                    .find(datum.root())
                    .map(|v| read_as_each_column(v.view()));
                let as_json = pointer.find(&json).map(|v| read_as_each_column(v.view()));
                assert_eq!(in_place, as_json, "{p}");
            }
            for mapping in SourceMapping::defaults() {
                assert_eq!(
                    decode_fields(datum.root(), &mapping),
                    decode_fields(&json, &mapping)
                );
            }
        }
    }

    #[test]
    fn a_debezium_change_event_is_mapped_from_its_row() {
        let mut legacy = snake();
        legacy.fields.order_id = Paths::new(vec!["/id".into()]);
        legacy.fields.customer_id = Paths::new(vec!["/customer_ref".into()]);
        legacy.fields.total_amount = Paths::new(vec!["/total".into()]);
        legacy.fields.event_time = Paths::new(vec!["/created_at".into()]);
        let event = br#"{"schema":{"type":"struct","fields":[
            {"type":"struct","field":"after","fields":[
              {"type":"int32","field":"id"},
              {"type":"bytes","field":"total","name":"org.apache.kafka.connect.data.Decimal",
               "parameters":{"scale":"2"}},
              {"type":"int64","field":"created_at","name":"io.debezium.time.Timestamp"}]}]},
            "payload":{"before":null,"after":{"id":1004,"customer_ref":"C-17","total":"AZo=",
            "created_at":1559033904863,"status":"PAID"},
            "source":{"connector":"postgresql","lsn":24023128,"ts_ms":1559033904863},"op":"u"}}"#;
        let o = decode(Some(event), Some(&legacy), DEFAULT_MAX_DECODE_BYTES);
        assert_eq!(o.error, None);
        assert_eq!(o.order_id.as_deref(), Some("1004"));
        assert_eq!(o.customer_id.as_deref(), Some("C-17"));
        assert_eq!(o.total_amount, Some(41_000));
        assert_eq!(o.event_time, Some(1_559_033_904_863_000));
        assert_eq!(o.status.as_deref(), Some("PAID"));
        let change = o.change.unwrap();
        assert_eq!(change.op, 'u');
        assert_eq!(change.position.as_deref(), Some("00000000000024023128"));
        let truncate = br#"{"op":"t","source":{"lsn":5},"ts_ms":2}"#;
        let o = decode(Some(truncate), Some(&legacy), DEFAULT_MAX_DECODE_BYTES);
        assert_eq!(o.failure, Some(DecodeFailure::NoRow));
        assert_eq!(o.change.map(|c| c.op), Some('t'));
        // An order event is no change event.
        let o = decode(
            Some(br#"{"order_id":"A-1"}"#),
            Some(&legacy),
            DEFAULT_MAX_DECODE_BYTES,
        );
        assert_eq!(o.change, None);
    }

    #[test]
    fn seed_003_order_with_items_decodes_exactly() {
        let v = br#"{"event_id":"e1","event_type":"order_created","order_id":"ORD-001",
            "customer_id":"CUST-001","facility_id":"FAC-001","status":"pending",
            "total_amount":99.99,"currency":"INR","order_datetime":"2024-01-01T10:00:00",
            "items":[{"sku":"ITEM-001","quantity":2,"unit_price":45.00,"sale_price":"49.99"}]}"#;
        let d = decode(Some(v), Some(&snake()), DEFAULT_MAX_DECODE_BYTES);
        assert_eq!(d.error, None);
        assert_eq!(d.order_id.as_deref(), Some("ORD-001"));
        assert_eq!(d.total_amount, Some(999_900));
        assert_eq!(d.event_time, Some(1_704_103_200_000_000));
        let items = d.items.unwrap();
        assert_eq!(items[0].quantity, Some(2));
        assert_eq!(items[0].unit_price, Some(450_000));
        assert_eq!(items[0].sale_price, Some(499_900));
    }

    #[test]
    fn seed_004_numeric_ids_and_epoch_millis() {
        let v =
            br#"{"orderId":1,"oldStatus":"CREATED","newStatus":"PAID","timestamp":1704103500000}"#;
        let d = decode(
            Some(v),
            Some(&SourceMapping::seed_camel_case_status()),
            DEFAULT_MAX_DECODE_BYTES,
        );
        assert_eq!(d.error, None);
        assert_eq!(d.order_id.as_deref(), Some("1"));
        assert_eq!(d.status.as_deref(), Some("PAID"));
        assert_eq!(d.previous_status.as_deref(), Some("CREATED"));
        assert_eq!(d.event_time, Some(1_704_103_500_000_000));
    }

    #[test]
    fn bad_input_gets_a_reason_and_keeps_what_decoded() {
        let m = snake();
        let cases: [(Option<&[u8]>, &str, DecodeFailure); 6] = [
            (None, "tombstone", DecodeFailure::Tombstone),
            (Some(b""), "empty value", DecodeFailure::Empty),
            (
                Some(b"{not json"),
                "invalid JSON",
                DecodeFailure::InvalidJson,
            ),
            (Some(b"\xff\xfe{}"), "not UTF-8", DecodeFailure::NotUtf8),
            (
                Some(b"[1,2]"),
                "expected a JSON object, got an array",
                DecodeFailure::NotAnObject,
            ),
            (
                Some(br#"{"status":"paid"}"#),
                "order_id: missing",
                DecodeFailure::Fields,
            ),
        ];
        for (value, want, kind) in cases {
            let d = decode(value, Some(&m), DEFAULT_MAX_DECODE_BYTES);
            assert_eq!(d.failure, Some(kind), "{value:?}");
            let err = d.error.unwrap_or_default();
            assert!(err.contains(want), "{value:?}: {err}");
        }
        assert_eq!(
            decode(Some(b"{}"), None, DEFAULT_MAX_DECODE_BYTES).failure,
            Some(DecodeFailure::NoMapping)
        );
        let d = decode(
            Some(br#"{"order_id":"A","total_amount":true,"order_datetime":"yesterday"}"#),
            Some(&m),
            DEFAULT_MAX_DECODE_BYTES,
        );
        assert_eq!(d.order_id.as_deref(), Some("A"));
        let err = d.error.unwrap();
        assert!(
            err.contains("total_amount: expected a decimal amount, got a boolean"),
            "{err}"
        );
        assert!(err.contains("event_time: \"yesterday\""), "{err}");
        let big = vec![b'x'; 100];
        let d = decode(Some(&big), Some(&m), 10);
        assert_eq!(d.failure, Some(DecodeFailure::TooLarge));
        assert!(d.error.unwrap().contains("decode limit"));
    }

    #[test]
    fn decimals_are_exact_and_refuse_extra_precision() {
        assert_eq!(parse_decimal("12.5", 4), Ok(125_000));
        assert_eq!(parse_decimal("-0.0001", 4), Ok(-1));
        assert_eq!(parse_decimal("1e3", 4), Ok(10_000_000));
        assert_eq!(parse_decimal("1.5E-2", 4), Ok(150));
        assert!(
            parse_decimal("0.00001", 4)
                .unwrap_err()
                .contains("more than 4 decimal")
        );
        assert!(parse_decimal("1e30", 4).unwrap_err().contains("too large"));
        assert!(parse_decimal("abc", 4).is_err());
        assert!(parse_decimal(".", 4).is_err());
        assert_eq!(parse_decimal("000123.4500", 4), Ok(1_234_500));
        assert_eq!(parse_decimal("0.0", 4), Ok(0));
        assert_eq!(
            parse_decimal(&format!("0.{}1", "0".repeat(40)), 45),
            Ok(10_000)
        );
        // 38 digits are read (then refused as an amount over 18 digits), 39 are too many.
        let digits = |n| "9".repeat(n);
        assert!(
            parse_decimal(&digits(38), 0)
                .unwrap_err()
                .contains("too large")
        );
        assert!(
            parse_decimal(&digits(39), 0)
                .unwrap_err()
                .contains("too large")
        );
        assert_eq!(parse_decimal(&digits(18), 0), Ok(10i128.pow(18) - 1));
    }
}
