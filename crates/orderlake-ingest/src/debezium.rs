//! Debezium change events (the Postgres and MySQL connectors, JSON with or without the
//! `schema`/`payload` wrapper, and the same envelope decoded from Avro): the row a mapping reads
//! is `after` (`before` for a delete), with Debezium's default encodings turned into what the
//! mappings read exactly — `Decimal` (precise mode: base64 big-endian unscaled bytes, the scale
//! from the schema) and `VariableScaleDecimal` as decimal text, `io.debezium.time.*` and Kafka
//! Connect `Timestamp`/`Date` as epoch milliseconds, RFC 3339 text or `YYYY-MM-DD`. Decimals in
//! `string` or `double` mode arrive as text or numbers and pass through.

use base64::Engine as _;
use chrono::DateTime;
use serde_json::{Map, Value};

use crate::avro::{date, decimal_text, timestamp};
use crate::document::Document;

/// A change event: its row and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The row the mappings read: `after`, or `before` for a delete; none for a truncate.
    pub row: Option<Value>,
    pub source: ChangeSource,
}

/// What a change event says happened, and where in the source's log (the archive's `cdc_*`
/// columns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeSource {
    /// `c` create, `u` update, `d` delete, `r` snapshot read, `t` truncate.
    pub op: char,
    /// When the source committed the change (`source.ts_ms`), Unix milliseconds.
    pub source_ts_ms: Option<i64>,
    /// Where in the source's log: a Postgres LSN, or a MySQL binlog file and position, as text
    /// that sorts in source order.
    pub position: Option<String>,
    /// The source transaction (`transaction.id`, else `source.txId` or `source.gtid`).
    pub tx_id: Option<String>,
}

/// The change event in `doc`, when it is a Debezium envelope (`op` and `source`, with `after`
/// or `before`), with its row's Debezium encodings decoded.
pub fn change(doc: &Value) -> Option<Change> {
    let (envelope, schema) = match (doc.get("schema"), doc.get("payload")) {
        (Some(schema), Some(payload)) if payload.is_object() => (payload, Some(schema)),
        _ => (doc, None),
    };
    let op = envelope.get("op")?.as_str()?;
    let op = match op {
        "c" | "u" | "d" | "r" | "t" => op.chars().next()?,
        _ => return None,
    };
    let source = envelope.get("source")?.as_object()?;
    if !(envelope.get("after").is_some() || envelope.get("before").is_some() || op == 't') {
        return None;
    }
    let side = if op == 'd' { "before" } else { "after" };
    let row = envelope
        .get(side)
        .filter(|r| r.is_object())
        .map(|r| decoded_row(r, schema.and_then(|s| field_schema(s, side))));
    Some(Change {
        row,
        source: ChangeSource {
            op,
            source_ts_ms: source.get("ts_ms").and_then(Value::as_i64),
            position: position(source),
            tx_id: envelope
                .get("transaction")
                .and_then(|t| t.get("id"))
                .and_then(text)
                .or_else(|| source.get("txId").and_then(text))
                .or_else(|| source.get("gtid").and_then(text)),
        },
    })
}

/// A string or a number as text, as the mappings read text fields.
fn text(v: &Value) -> Option<String> {
    crate::convert::text(v.view()).ok()
}

/// Postgres: the LSN, zero-padded; MySQL: binlog file, position and row, zero-padded.
fn position(source: &Map<String, Value>) -> Option<String> {
    if let Some(lsn) = source.get("lsn").and_then(Value::as_u64) {
        return Some(format!("{lsn:020}"));
    }
    let file = source.get("file")?.as_str()?;
    let pos = source.get("pos")?.as_u64()?;
    let row = source.get("row").and_then(Value::as_u64).unwrap_or(0);
    Some(format!("{file}:{pos:020}:{row:010}"))
}

/// The Kafka Connect schema of the envelope's field `name` (`before` or `after`).
fn field_schema<'s>(schema: &'s Value, name: &str) -> Option<&'s Value> {
    schema
        .get("fields")?
        .as_array()?
        .iter()
        .find(|f| f.get("field").and_then(Value::as_str) == Some(name))
}

/// `row` with each field decoded by its Connect schema (as it is, without one).
fn decoded_row(row: &Value, schema: Option<&Value>) -> Value {
    let Some(fields) = schema
        .and_then(|s| s.get("fields"))
        .and_then(Value::as_array)
    else {
        return row.clone();
    };
    let mut out = row.as_object().cloned().unwrap_or_default();
    for field in fields {
        let Some(name) = field.get("field").and_then(Value::as_str) else {
            continue;
        };
        if let Some(value) = out.get_mut(name) {
            *value = decoded_value(value, field);
        }
    }
    Value::Object(out)
}

/// One value by its Connect schema's logical name; values it cannot decode stay as they are
/// (the mapping then reports them).
fn decoded_value(value: &Value, schema: &Value) -> Value {
    let logical = schema
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let scale = || {
        schema
            .get("parameters")?
            .get("scale")?
            .as_str()?
            .parse()
            .ok()
    };
    connect_value(value, logical, scale).unwrap_or_else(|| value.clone())
}

/// Whether values of the Connect logical type `name` are encoded as plain integers that
/// [`connect_value`] turns into what the mappings read (in Avro, Debezium's converter marks such
/// fields with `connect.name` only).
pub(crate) fn is_integer_time(name: &str) -> bool {
    matches!(
        name,
        "io.debezium.time.MicroTimestamp"
            | "io.debezium.time.NanoTimestamp"
            | "io.debezium.time.Date"
    )
}

/// `value` of the Connect logical type `logical` as the mappings read it, or `None` when it needs
/// no change or cannot be decoded. `scale` gives a `Decimal`'s scale from its schema.
pub(crate) fn connect_value(
    value: &Value,
    logical: &str,
    scale: impl FnOnce() -> Option<usize>,
) -> Option<Value> {
    match logical {
        "org.apache.kafka.connect.data.Decimal" => decimal(value.as_str()?, scale()?),
        "io.debezium.data.VariableScaleDecimal" => {
            let scale = usize::try_from(value.get("scale")?.as_u64()?).ok()?;
            decimal(value.get("value")?.as_str()?, scale)
        }
        // Milliseconds already: the mappings read epoch milliseconds.
        "io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp" => None,
        "io.debezium.time.MicroTimestamp" => value
            .as_i64()
            .and_then(|us| timestamp(DateTime::from_timestamp_micros(us), true).ok()),
        "io.debezium.time.NanoTimestamp" => value
            .as_i64()
            .and_then(|ns| timestamp(Some(DateTime::from_timestamp_nanos(ns)), true).ok()),
        "io.debezium.time.Date" | "org.apache.kafka.connect.data.Date" => value
            .as_i64()
            .and_then(|days| i32::try_from(days).ok())
            .and_then(|days| date(days).ok()),
        _ => None,
    }
}

/// Base64 big-endian two's-complement unscaled bytes with `scale` fraction digits, as text.
fn decimal(b64: &str, scale: usize) -> Option<Value> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    decimal_text(&bytes, scale).ok().map(Value::String)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The Postgres connector's create event as Debezium's documentation shows it (schema and
    /// payload), with a decimal, a micro timestamp and a date column added.
    fn postgres_create() -> Value {
        json!({
            "schema": {"type": "struct", "name": "pg.public.orders.Envelope", "fields": [
                {"type": "struct", "field": "before", "optional": true, "fields": []},
                {"type": "struct", "field": "after", "optional": true, "fields": [
                    {"type": "int32", "optional": false, "field": "id"},
                    {"type": "string", "optional": false, "field": "customer_ref"},
                    {"type": "bytes", "optional": false, "field": "total",
                     "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
                     "parameters": {"scale": "2", "connect.decimal.precision": "10"}},
                    {"type": "int64", "optional": false, "field": "created_at",
                     "name": "io.debezium.time.MicroTimestamp", "version": 1},
                    {"type": "int32", "optional": true, "field": "ship_date",
                     "name": "io.debezium.time.Date", "version": 1},
                    {"type": "int64", "optional": true, "field": "paid_at",
                     "name": "io.debezium.time.Timestamp", "version": 1}
                ]},
                {"type": "struct", "field": "source", "fields": []},
                {"type": "string", "field": "op"},
                {"type": "int64", "field": "ts_ms", "optional": true}
            ]},
            "payload": {
                "before": null,
                "after": {"id": 1004, "customer_ref": "C-17", "total": "AZo=",
                          "created_at": 1_559_033_904_863_123_i64, "ship_date": 18_050,
                          "paid_at": 1_559_033_904_863_i64},
                "source": {"version": "2.5.0.Final", "connector": "postgresql", "name": "pg",
                           "ts_ms": 1_559_033_904_863_i64, "snapshot": "false", "db": "shop",
                           "schema": "public", "table": "orders", "txId": 555,
                           "lsn": 24_023_128, "xmin": null},
                "op": "c",
                "ts_ms": 1_559_033_904_866_i64
            }
        })
    }

    #[test]
    fn a_postgres_create_with_its_schema_decodes_debezium_encodings() {
        let c = change(&postgres_create()).unwrap();
        assert_eq!(c.source.op, 'c');
        assert_eq!(c.source.source_ts_ms, Some(1_559_033_904_863));
        assert_eq!(c.source.position.as_deref(), Some("00000000000024023128"));
        assert_eq!(c.source.tx_id.as_deref(), Some("555"));
        let row = c.row.unwrap();
        assert_eq!(row["total"], "4.10");
        assert_eq!(row["created_at"], "2019-05-28T08:58:24.863123Z");
        assert_eq!(row["ship_date"], "2019-06-03");
        assert_eq!(row["paid_at"], 1_559_033_904_863_i64);
        assert_eq!(row["customer_ref"], "C-17");
    }

    #[test]
    fn a_mysql_delete_without_schema_reads_before_and_the_binlog_position() {
        let doc = json!({
            "before": {"id": 1004, "customer_ref": "C-17", "total": "4.10"},
            "after": null,
            "source": {"version": "2.5.0.Final", "connector": "mysql", "name": "mysql-server-1",
                       "ts_ms": 1_465_581_029_000_i64, "snapshot": false, "db": "inventory",
                       "table": "orders", "server_id": 223_344, "gtid": null,
                       "file": "mysql-bin.000003", "pos": 484, "row": 0, "thread": 7},
            "op": "d",
            "ts_ms": 1_465_581_902_461_i64,
            "transaction": {"id": "571:53195832", "total_order": 1, "data_collection_order": 1}
        });
        let c = change(&doc).unwrap();
        assert_eq!(c.source.op, 'd');
        assert_eq!(c.row.unwrap()["customer_ref"], "C-17");
        assert_eq!(
            c.source.position.as_deref(),
            Some("mysql-bin.000003:00000000000000000484:0000000000")
        );
        assert_eq!(c.source.tx_id.as_deref(), Some("571:53195832"));
    }

    #[test]
    fn snapshots_truncates_and_other_documents() {
        let mut read = postgres_create();
        read["payload"]["op"] = json!("r");
        assert_eq!(change(&read).unwrap().source.op, 'r');
        let truncate = json!({"op": "t", "source": {"lsn": 5, "ts_ms": 1}, "ts_ms": 2});
        let t = change(&truncate).unwrap();
        assert_eq!((t.source.op, t.row), ('t', None));
        // Positions sort in source order as text.
        assert!(
            position(json!({"lsn": 9}).as_object().unwrap())
                < position(json!({"lsn": 10}).as_object().unwrap())
        );
        // Order events are not change events.
        assert_eq!(
            change(&json!({"order_id": "A-1", "status": "placed"})),
            None
        );
        assert_eq!(change(&json!({"op": "x", "source": {}, "after": {}})), None);
        // A variable-scale decimal.
        let v = decoded_value(
            &json!({"scale": 3, "value": "AeI="}),
            &json!({"name": "io.debezium.data.VariableScaleDecimal"}),
        );
        assert_eq!(v, "0.482");
    }
}
