//! Records framed for a Confluent-compatible Schema Registry: where their schema id is (the
//! 5-byte prefix of the value, or a `__value_schema_id` header with an id or a GUID), and Avro
//! data turned into a JSON document, so that the per-topic source mappings read Avro records
//! with the same paths as JSON ones.
//!
//! Logical types become what the mappings already read exactly: decimals are decimal strings
//! (never floats), millisecond timestamps epoch milliseconds and finer ones RFC 3339 text at
//! their own precision, dates `YYYY-MM-DD`, UUIDs text; unions are their branch's value, enums
//! their symbol.

mod compile;
mod datum;
mod tree;

use std::collections::HashMap;
use std::sync::Arc;

use apache_avro::Schema;
use apache_avro::schema::Name;
use base64::Engine as _;
use chrono::DateTime;
use serde_json::Value;

use datum::DatumReader;
pub use tree::{Datum, Node};

#[cfg(test)]
pub(crate) use datum::types::every_type;

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

/// A writer schema from the registry, with the named types of the schemas it references, and
/// the reader of its datums compiled from it.
#[derive(Debug, Clone)]
pub struct AvroSchema {
    pub schema: Schema,
    pub references: Vec<Schema>,
    reader: Arc<DatumReader>,
}

impl AvroSchema {
    /// Parses `text` with the referenced schemas' texts (dependencies first).
    pub fn parse(text: &str, references: &[String]) -> Result<Self, String> {
        let mut connect_times = HashMap::new();
        for text in references.iter().map(String::as_str).chain([text]) {
            if let Ok(json) = serde_json::from_str::<Value>(text) {
                compile::connect_time_fields(&json, None, &mut connect_times);
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
        let names = named_types(&schema, &references)?;
        let reader = DatumReader::compile(&schema, &names, &connect_times)?;
        Ok(Self {
            schema,
            references,
            reader: Arc::new(reader),
        })
    }

    /// Reads one datum written with this schema, in place.
    pub fn read<'a>(&'a self, payload: &'a [u8]) -> Result<Datum<'a>, String> {
        let mut rest = payload;
        let datum = self
            .reader
            .read(&mut rest)
            .map_err(|e| format!("not valid for its schema: {e}"))?;
        if !rest.is_empty() {
            return Err(format!(
                "not valid for its schema: {} bytes left over after the record",
                rest.len()
            ));
        }
        Ok(datum)
    }

    /// Decodes one datum written with this schema into a JSON document.
    pub fn decode(&self, payload: &[u8]) -> Result<Value, String> {
        self.read(payload).map(|datum| datum.to_json())
    }

    /// Whether this schema's datums may be Debezium change envelopes, which are read as JSON
    /// documents; the datums of any other record schema are mapped in place.
    pub fn may_be_change_event(&self) -> bool {
        self.reader.may_be_change_event()
    }
}

/// The named types of `schema` and of the schemas it references, by full name.
fn named_types(schema: &Schema, references: &[Schema]) -> Result<HashMap<Name, Schema>, String> {
    let mut all = vec![schema];
    all.extend(references.iter());
    Ok(apache_avro::schema::ResolvedSchema::try_from(all)
        .map_err(|e| e.to_string())?
        .get_names()
        .iter()
        .map(|(name, schema)| (name.clone(), (*schema).clone()))
        .collect())
}

/// Bytes that are not UTF-8, as the text the mappings read: base64.
fn base64_text(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
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
    let v = decimal_unscaled(unscaled)?;
    let negative = v < 0;
    let mut v = v.unsigned_abs();
    // The digits, least significant first, at least one more than the scale (a leading 0).
    let mut digits = Vec::with_capacity(40.max(scale + 1));
    while v > 0 || digits.len() <= scale {
        digits.push(b'0' + (v % 10) as u8);
        v /= 10;
    }
    let mut text = String::with_capacity(digits.len() + 2);
    if negative {
        text.push('-');
    }
    for (i, d) in digits.iter().enumerate().rev() {
        text.push(char::from(*d));
        if i == scale && scale > 0 {
            text.push('.');
        }
    }
    Ok(text)
}

/// A decimal's big-endian two's-complement unscaled value; more than 16 bytes are refused.
pub fn decimal_unscaled(unscaled: &[u8]) -> Result<i128, String> {
    if unscaled.len() > 16 {
        return Err(format!(
            "a decimal of {} bytes is beyond 38 digits",
            unscaled.len()
        ));
    }
    let negative = unscaled.first().is_some_and(|b| b & 0x80 != 0);
    let mut buf = [if negative { 0xff } else { 0 }; 16];
    buf[16 - unscaled.len()..].copy_from_slice(unscaled);
    Ok(i128::from_be_bytes(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
