//! The archive row buffer: Arrow builders filled straight from borrowed Kafka messages (the raw
//! bytes are copied once, into the builders) and finished into one record batch per flush.

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, Date32Builder, Decimal128Builder, Int32Builder,
    Int64Builder, ListBuilder, StringBuilder, StructBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, FieldRef, SchemaRef};
use arrow::record_batch::RecordBatch;
use orderlake_archive::schema::{self, MONEY_PRECISION, MONEY_SCALE};

use crate::decode::DecodedOrder;

/// The envelope of one record, borrowed from the Kafka message or the import reader.
#[derive(Debug, Clone, Copy, Default)]
pub struct Envelope<'a> {
    pub topic: Option<&'a str>,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    /// Kafka timestamp, milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub import_source: Option<&'a str>,
}

/// Column builders for one flush window of archive rows.
#[derive(Debug)]
pub struct ArchiveRowBuffer {
    schema: SchemaRef,
    topic: StringBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
    kafka_timestamp: TimestampMicrosecondBuilder,
    key: BinaryBuilder,
    value: BinaryBuilder,
    headers: ListBuilder<StructBuilder>,
    archived_at: TimestampMicrosecondBuilder,
    import_source: StringBuilder,
    event_id: StringBuilder,
    event_type: StringBuilder,
    order_id: StringBuilder,
    customer_id: StringBuilder,
    facility_id: StringBuilder,
    status: StringBuilder,
    previous_status: StringBuilder,
    total_amount: Decimal128Builder,
    currency: StringBuilder,
    event_time: TimestampMicrosecondBuilder,
    items: ListBuilder<StructBuilder>,
    decode_error: StringBuilder,
    event_date: Date32Builder,
    cdc_op: StringBuilder,
    cdc_source_ts: TimestampMicrosecondBuilder,
    cdc_position: StringBuilder,
    cdc_tx_id: StringBuilder,
    bytes: usize,
}

fn list_item_field(schema: &SchemaRef, column: &str) -> FieldRef {
    match schema
        .field_with_name(column)
        .expect("archive column")
        .data_type()
    {
        DataType::List(item) => Arc::clone(item),
        other => unreachable!("{column} is a list in the archive schema, not {other}"),
    }
}

fn struct_list_builder(schema: &SchemaRef, column: &str) -> ListBuilder<StructBuilder> {
    let item = list_item_field(schema, column);
    let DataType::Struct(fields) = item.data_type() else {
        unreachable!("{column} holds structs in the archive schema")
    };
    ListBuilder::new(StructBuilder::from_fields(fields.clone(), 0)).with_field(item)
}

fn utc_micros() -> TimestampMicrosecondBuilder {
    TimestampMicrosecondBuilder::new().with_timezone("UTC")
}

fn money_builder() -> Decimal128Builder {
    Decimal128Builder::new()
        .with_precision_and_scale(MONEY_PRECISION, MONEY_SCALE as i8)
        .expect("valid decimal type")
}

impl Default for ArchiveRowBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl ArchiveRowBuffer {
    pub fn new() -> Self {
        let schema = schema::arrow_schema();
        Self {
            headers: struct_list_builder(&schema, schema::KAFKA_HEADERS),
            items: struct_list_builder(&schema, schema::ITEMS),
            schema,
            topic: StringBuilder::new(),
            partition: Int32Builder::new(),
            offset: Int64Builder::new(),
            kafka_timestamp: utc_micros(),
            key: BinaryBuilder::new(),
            value: BinaryBuilder::new(),
            archived_at: utc_micros(),
            import_source: StringBuilder::new(),
            event_id: StringBuilder::new(),
            event_type: StringBuilder::new(),
            order_id: StringBuilder::new(),
            customer_id: StringBuilder::new(),
            facility_id: StringBuilder::new(),
            status: StringBuilder::new(),
            previous_status: StringBuilder::new(),
            total_amount: money_builder(),
            currency: StringBuilder::new(),
            event_time: utc_micros(),
            decode_error: StringBuilder::new(),
            event_date: Date32Builder::new(),
            cdc_op: StringBuilder::new(),
            cdc_source_ts: utc_micros(),
            cdc_position: StringBuilder::new(),
            cdc_tx_id: StringBuilder::new(),
            bytes: 0,
        }
    }

    /// Rows buffered.
    pub fn len(&self) -> usize {
        self.archived_at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate memory the buffered rows hold.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Appends one archive row. `archived_at` is microseconds since the epoch.
    pub fn append<'h>(
        &mut self,
        env: &Envelope<'_>,
        headers: impl IntoIterator<Item = (&'h str, Option<&'h [u8]>)>,
        order: &DecodedOrder,
        archived_at: i64,
    ) {
        let kafka_ts = env.timestamp_ms.and_then(|ms| ms.checked_mul(1000));
        self.topic.append_option(env.topic);
        self.partition.append_option(env.partition);
        self.offset.append_option(env.offset);
        self.kafka_timestamp.append_option(kafka_ts);
        self.key.append_option(env.key);
        self.value.append_option(env.value);
        let mut header_bytes = 0;
        {
            let entries = self.headers.values();
            for (k, v) in headers {
                header_bytes += k.len() + v.map_or(0, <[u8]>::len) + 16;
                entries
                    .field_builder::<StringBuilder>(0)
                    .expect("header key builder")
                    .append_value(k);
                entries
                    .field_builder::<BinaryBuilder>(1)
                    .expect("header value builder")
                    .append_option(v);
                entries.append(true);
            }
        }
        self.headers.append(true);
        self.archived_at.append_value(archived_at);
        self.import_source.append_option(env.import_source);
        let mut text_bytes = 0;
        for (b, v) in [
            (&mut self.event_id, &order.event_id),
            (&mut self.event_type, &order.event_type),
            (&mut self.order_id, &order.order_id),
            (&mut self.customer_id, &order.customer_id),
            (&mut self.facility_id, &order.facility_id),
            (&mut self.status, &order.status),
            (&mut self.previous_status, &order.previous_status),
            (&mut self.currency, &order.currency),
            (&mut self.decode_error, &order.error),
        ] {
            text_bytes += v.as_ref().map_or(0, String::len);
            b.append_option(v.as_deref());
        }
        self.total_amount.append_option(order.total_amount);
        self.event_time.append_option(order.event_time);
        let mut item_count = 0;
        match &order.items {
            Some(items) => {
                let entries = self.items.values();
                for it in items {
                    item_count += 1;
                    text_bytes += it.sku.as_ref().map_or(0, String::len);
                    entries
                        .field_builder::<StringBuilder>(0)
                        .expect("sku builder")
                        .append_option(it.sku.as_deref());
                    entries
                        .field_builder::<Int64Builder>(1)
                        .expect("quantity builder")
                        .append_option(it.quantity);
                    entries
                        .field_builder::<Decimal128Builder>(2)
                        .expect("unit price builder")
                        .append_option(it.unit_price);
                    entries
                        .field_builder::<Decimal128Builder>(3)
                        .expect("sale price builder")
                        .append_option(it.sale_price);
                    entries.append(true);
                }
                self.items.append(true);
            }
            None => self.items.append(false),
        }
        // Partition by event time, else Kafka time, else arrival.
        let instant = order.event_time.or(kafka_ts).unwrap_or(archived_at);
        self.event_date
            .append_value(orderlake_archive::time::day_of(instant));
        let change = order.change.as_ref();
        let mut op = [0; 4];
        self.cdc_op
            .append_option(change.map(|c| &*c.op.encode_utf8(&mut op)));
        self.cdc_source_ts.append_option(
            change
                .and_then(|c| c.source_ts_ms)
                .and_then(|ms| ms.checked_mul(1000)),
        );
        for (b, v) in [
            (
                &mut self.cdc_position,
                change.and_then(|c| c.position.as_ref()),
            ),
            (&mut self.cdc_tx_id, change.and_then(|c| c.tx_id.as_ref())),
        ] {
            text_bytes += v.map_or(0, String::len);
            b.append_option(v);
        }
        self.bytes += 160
            + env.key.map_or(0, <[u8]>::len)
            + env.value.map_or(0, <[u8]>::len)
            + env.topic.map_or(0, str::len)
            + header_bytes
            + text_bytes
            + item_count * 48;
    }

    /// Finishes the buffered rows into one batch and leaves the buffer empty.
    pub fn finish(&mut self) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.topic.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(self.kafka_timestamp.finish()),
            Arc::new(self.key.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.headers.finish()),
            Arc::new(self.archived_at.finish()),
            Arc::new(self.import_source.finish()),
            Arc::new(self.event_id.finish()),
            Arc::new(self.event_type.finish()),
            Arc::new(self.order_id.finish()),
            Arc::new(self.customer_id.finish()),
            Arc::new(self.facility_id.finish()),
            Arc::new(self.status.finish()),
            Arc::new(self.previous_status.finish()),
            Arc::new(self.total_amount.finish()),
            Arc::new(self.currency.finish()),
            Arc::new(self.event_time.finish()),
            Arc::new(self.items.finish()),
            Arc::new(self.decode_error.finish()),
            Arc::new(self.event_date.finish()),
            Arc::new(self.cdc_op.finish()),
            Arc::new(self.cdc_source_ts.finish()),
            Arc::new(self.cdc_position.finish()),
            Arc::new(self.cdc_tx_id.finish()),
        ];
        self.bytes = 0;
        RecordBatch::try_new(Arc::clone(&self.schema), columns)
            .expect("row buffer columns follow the archive schema")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{DEFAULT_MAX_DECODE_BYTES, decode};
    use crate::mapping::SourceMapping;

    #[test]
    fn finished_batch_matches_the_archive_schema_and_keeps_bytes() {
        let mut buf = ArchiveRowBuffer::new();
        let m = SourceMapping::seed_snake_case_orders();
        let value = br#"{"order_id":"O1","items":[{"sku":"S","quantity":1}]}"#;
        let order = decode(Some(value), Some(&m), DEFAULT_MAX_DECODE_BYTES);
        let env = Envelope {
            topic: Some("oms.orders"),
            partition: Some(3),
            offset: Some(42),
            timestamp_ms: Some(1_704_103_200_000),
            key: Some(b"O1"),
            value: Some(value),
            import_source: None,
        };
        buf.append(&env, [("trace", Some(&b"\x00\x01"[..]))], &order, 7);
        let tomb = decode(None, Some(&m), DEFAULT_MAX_DECODE_BYTES);
        buf.append(&Envelope { value: None, ..env }, [], &tomb, 8);
        assert_eq!(buf.len(), 2);
        let batch = buf.finish();
        assert_eq!(batch.schema(), schema::arrow_schema());
        assert_eq!(batch.num_rows(), 2);
        assert!(buf.is_empty() && buf.bytes() == 0);
        let pretty = arrow::util::pretty::pretty_format_batches(&[batch])
            .unwrap()
            .to_string();
        assert!(pretty.contains("2024-01-01"), "{pretty}");
        assert!(pretty.contains("tombstone"), "{pretty}");
    }
}
