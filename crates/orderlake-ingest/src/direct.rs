//! Kafka records that do not arrive through a live consumer (fixtures with known coordinates, for
//! tests and examples) go through the same decoding, row layout and exactly-once writer as the
//! drain: one call is one Delta commit carrying the ledger advance of every source partition it
//! touches. Records without Kafka coordinates are imports (see [`crate::import`]).

use std::collections::BTreeMap;

use orderlake_archive::{OffsetLedger, SourcePartition};

use crate::decode::{DEFAULT_MAX_DECODE_BYTES, TopicDecoder};
use crate::error::Result;
use crate::mapping::MappingSet;
use crate::rowbuf::{ArchiveRowBuffer, Envelope};
use crate::writer::{ArchiveWriter, Flush, FlushOutcome, LedgerAdvance};

/// One record with its Kafka coordinates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Archives `records` in one commit. Records at or below a partition's archived offset are
/// skipped, so writing the same records twice archives them once.
pub async fn archive_records(
    writer: &mut ArchiveWriter,
    mappings: &MappingSet,
    records: &[SourceRecord],
) -> Result<FlushOutcome> {
    let partitions: Vec<SourcePartition> = records
        .iter()
        .map(|r| SourcePartition::new(&r.topic, r.partition))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    // The ledger as of the latest version: this writer's own last commit included.
    writer.table_mut().refresh().await?;
    let ledger = OffsetLedger::read(writer.table(), partitions.iter().cloned()).await?;
    let mut decoder = TopicDecoder::new(mappings.clone(), DEFAULT_MAX_DECODE_BYTES);
    let mut buffer = ArchiveRowBuffer::new();
    let mut through: BTreeMap<SourcePartition, i64> = BTreeMap::new();
    let archived_at = chrono::Utc::now().timestamp_micros();
    for r in records {
        let sp = SourcePartition::new(&r.topic, r.partition);
        let last = through.get(&sp).copied().or(ledger.archived(&sp));
        if last.is_some_and(|l| r.offset <= l) {
            continue;
        }
        let order = decoder.decode(&r.topic, r.value.as_deref());
        let env = Envelope {
            topic: Some(&r.topic),
            partition: Some(r.partition),
            offset: Some(r.offset),
            timestamp_ms: r.timestamp_ms,
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            import_source: None,
        };
        let headers = r
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), Some(v.as_slice())));
        buffer.append(&env, headers, &order, archived_at);
        through.insert(sp, r.offset);
    }
    if buffer.is_empty() {
        return Ok(FlushOutcome::AlreadyCommitted);
    }
    let advances = through
        .into_iter()
        .map(|(sp, through)| LedgerAdvance {
            after: ledger.archived(&sp),
            partition: sp,
            through,
        })
        .collect();
    let flush = Flush {
        batch: buffer.finish(),
        advances,
        import: None,
    };
    writer.commit(&flush).await
}

impl SourceRecord {
    /// Reads a record written as one JSON object: `topic`, `partition`, `offset`, optional
    /// `timestamp` (ISO-8601 or epoch milliseconds), `key` (text), `headers` (text values) and
    /// either `value` (any JSON, archived as its compact text) or `raw` (the exact value text,
    /// for records that are not valid JSON).
    pub fn from_json_line(line: &str) -> std::result::Result<Self, String> {
        let doc: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("not a JSON object: {e}"))?;
        let text = |name: &str| doc.get(name).and_then(serde_json::Value::as_str);
        let int = |name: &str| {
            doc.get(name)
                .and_then(serde_json::Value::as_i64)
                .ok_or_else(|| format!("`{name}` must be an integer"))
        };
        let timestamp_ms = match doc.get("timestamp") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Number(n)) => n.as_i64(),
            Some(serde_json::Value::String(s)) => {
                Some(crate::decode::parse_timestamp(s).map(|us| us / 1000)?)
            }
            Some(other) => return Err(format!("`timestamp` cannot be {other}")),
        };
        let value = match (doc.get("value"), text("raw")) {
            (Some(serde_json::Value::Null), _) | (None, None) => None,
            (Some(v), _) => Some(v.to_string().into_bytes()),
            (None, Some(raw)) => Some(raw.as_bytes().to_vec()),
        };
        let headers = doc
            .get("headers")
            .and_then(serde_json::Value::as_object)
            .map(|h| {
                h.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str().unwrap_or_default().as_bytes().to_vec(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            topic: text("topic").ok_or("`topic` is missing")?.to_owned(),
            partition: i32::try_from(int("partition")?).map_err(|e| e.to_string())?,
            offset: int("offset")?,
            timestamp_ms,
            key: text("key").map(|k| k.as_bytes().to_vec()),
            value,
            headers,
        })
    }
}

/// Reads a file of records, one JSON object per line (see [`SourceRecord::from_json_line`]);
/// blank lines are skipped. Errors name the line.
pub fn read_json_lines(path: &std::path::Path) -> std::result::Result<Vec<SourceRecord>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            SourceRecord::from_json_line(l)
                .map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}
