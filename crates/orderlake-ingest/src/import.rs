//! Backfill imports: records that never passed through the archiver's Kafka consumer (legacy
//! exports, generated history) go through the same source mappings, row layout and exactly-once
//! writer. Imported rows carry no Kafka coordinates; their `import_source` names where they came
//! from. Each source has a ledger entry counting the records the table holds, committed with the
//! data, so importing the same source twice adds nothing and an interrupted import resumes after
//! its last commit.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use arrow::array::{Array, AsArray as _, RecordBatch};
use arrow::datatypes::DataType;
use bytes::Bytes;
use futures::{Stream, StreamExt as _, TryStreamExt as _};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt as _};
use orderlake_archive::ImportSource;
use orderlake_archive::parquet_io::StoreFileReader;
use orderlake_archive::storage::{LocalPath, resolve_url};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use sha2::{Digest as _, Sha256};

use crate::decode::TopicDecoder;
use crate::error::{IngestError, Result};
use crate::rowbuf::{ArchiveRowBuffer, Envelope};
use crate::writer::{ArchiveWriter, Flush, FlushOutcome, ImportAdvance};

/// One record to import: the bytes a producer would have sent as the Kafka value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportRecord {
    /// Topic whose source mapping decodes the value (the record is not archived under it).
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// Milliseconds since the epoch, when the source knows when the record was produced.
    pub timestamp_ms: Option<i64>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Records in source order; the order must be the same every time the source is read, since
/// resuming skips as many records as the ledger says are imported.
pub type RecordStream<'a> = Pin<Box<dyn Stream<Item = Result<ImportRecord>> + Send + 'a>>;

/// What one import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Records the source holds.
    pub records: u64,
    /// Records this run added (the rest were imported before).
    pub added: u64,
    /// Added records whose value no mapping could decode (kept raw with the reason).
    pub undecodable: u64,
    pub commits: u64,
}

/// Imports `records` of `source`, `chunk_rows` per commit, skipping the records an earlier
/// import of the same source committed. `progress` hears about every record read.
pub async fn import_records(
    writer: &mut ArchiveWriter,
    decoder: &mut TopicDecoder,
    source: &ImportSource,
    mut records: RecordStream<'_>,
    chunk_rows: usize,
    mut progress: impl FnMut(u64),
) -> Result<ImportReport> {
    writer.table_mut().refresh().await?;
    let mut done = source.imported(writer.table()).await?;
    let already = done.unwrap_or(0);
    if already > 0 {
        tracing::info!(source = %source, records = already, "skipping records imported before");
    }
    let label = source.label();
    let mut report = ImportReport::default();
    let mut buffer = ArchiveRowBuffer::new();
    let mut undecodable = 0;
    loop {
        let record = records.try_next().await?;
        if let Some(r) = &record {
            report.records += 1;
            progress(1);
            if report.records as i64 > already {
                let order = decoder.decode(&r.topic, r.value.as_deref());
                undecodable += u64::from(order.error.is_some());
                let env = Envelope {
                    topic: None,
                    partition: None,
                    offset: None,
                    timestamp_ms: r.timestamp_ms,
                    key: r.key.as_deref(),
                    value: r.value.as_deref(),
                    import_source: Some(&label),
                };
                let headers = r
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), Some(v.as_slice())));
                buffer.append(&env, headers, &order, chrono::Utc::now().timestamp_micros());
            }
        }
        let at_end = record.is_none();
        // Commit a full chunk, and at the end what is left.
        let commit_now = buffer.len() >= chunk_rows.max(1) || (at_end && !buffer.is_empty());
        if !commit_now {
            if at_end {
                break;
            }
            continue;
        }
        let rows = buffer.len() as u64;
        let through = done.unwrap_or(0) + rows as i64;
        let flush = Flush {
            batch: buffer.finish(),
            advances: Vec::new(),
            import: Some(ImportAdvance {
                source: source.clone(),
                after: done,
                through,
            }),
        };
        match writer.commit(&flush).await? {
            FlushOutcome::Committed { .. } | FlushOutcome::AlreadyCommitted => {}
            FlushOutcome::Fenced {
                stream,
                expected,
                found,
            } => {
                // Another import of the same source is running: stop rather than interleave.
                return Err(IngestError::Fenced {
                    stream,
                    expected,
                    found,
                });
            }
        }
        done = Some(through);
        report.added += rows;
        report.undecodable += std::mem::take(&mut undecodable);
        report.commits += 1;
        if at_end {
            break;
        }
    }
    if (report.records as i64) < already {
        return Err(IngestError::Import {
            input: source.name.clone(),
            reason: format!(
                "the table holds {already} records of this source but it has only {}; \
                 it was read differently before",
                report.records
            ),
        });
    }
    Ok(report)
}

/// The format of a legacy export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImportFormat {
    /// One event per line, each line the event's JSON exactly as a producer sent it.
    NdJson,
    /// Rows with a `value` column (text or bytes) holding the event, and optionally `key`; or
    /// rows that are the event's fields, each turned into one JSON object.
    Parquet,
}

impl std::str::FromStr for ImportFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "ndjson" | "jsonl" | "json" => Ok(Self::NdJson),
            "parquet" => Ok(Self::Parquet),
            other => Err(format!(
                "unknown import format `{other}` (ndjson or parquet)"
            )),
        }
    }
}

/// One legacy export file, local or on S3.
#[derive(Debug)]
pub struct ImportFile {
    pub uri: String,
    pub format: ImportFormat,
    store: Arc<dyn ObjectStore>,
    path: StorePath,
}

impl ImportFile {
    /// Opens `uri` (a local path, `file://…` or `s3://bucket/key`; S3 settings come from the
    /// standard `AWS_*` variables and `options`). The format comes from the extension unless
    /// given.
    pub fn open(
        uri: &str,
        options: &HashMap<String, String>,
        format: Option<ImportFormat>,
    ) -> Result<Self> {
        let fail = |reason: String| IngestError::Import {
            input: uri.to_owned(),
            reason,
        };
        let url = resolve_url(uri, LocalPath::File).map_err(fail)?;
        let (store, path): (Arc<dyn ObjectStore>, StorePath) = match url.scheme() {
            "file" => {
                let local = url
                    .to_file_path()
                    .map_err(|()| fail("file URI has no local path".into()))?;
                let path = StorePath::from_absolute_path(&local)
                    .map_err(|e| fail(format!("bad path: {e}")))?;
                (Arc::new(object_store::local::LocalFileSystem::new()), path)
            }
            "s3" | "s3a" => {
                let bucket = url.host_str().unwrap_or_default();
                let mut builder =
                    object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
                for (k, v) in options {
                    let key = k
                        .to_ascii_lowercase()
                        .parse()
                        .map_err(|e| fail(format!("storage option `{k}`: {e}")))?;
                    builder = builder.with_config(key, v);
                }
                let store = builder
                    .build()
                    .map_err(|e| fail(format!("S3 client: {e}")))?;
                let path = StorePath::from_url_path(url.path())
                    .map_err(|e| fail(format!("bad key: {e}")))?;
                (Arc::new(store), path)
            }
            other => {
                return Err(fail(format!(
                    "cannot import from `{other}` (use a local path, file:// or s3://)"
                )));
            }
        };
        let format = match format {
            Some(f) => f,
            None => {
                let name = path.filename().unwrap_or_default();
                let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or_default();
                ext.parse().map_err(|_| {
                    fail(format!(
                        "cannot tell the format from `{name}`: name it .ndjson, .jsonl or \
                         .parquet, or pass --format"
                    ))
                })?
            }
        };
        Ok(Self {
            uri: uri.to_owned(),
            format,
            store,
            path,
        })
    }

    fn fail(&self, reason: impl std::fmt::Display) -> IngestError {
        IngestError::Import {
            input: self.uri.clone(),
            reason: reason.to_string(),
        }
    }

    /// Size in bytes.
    pub async fn size(&self) -> Result<u64> {
        let meta = self
            .store
            .head(&self.path)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(meta.size)
    }

    async fn bytes(&self) -> Result<impl Stream<Item = Result<Bytes>> + Send + use<>> {
        let uri = self.uri.clone();
        let got = self.store.get(&self.path).await.map_err(|e| self.fail(e))?;
        Ok(got.into_stream().map_err(move |e| IngestError::Import {
            input: uri.clone(),
            reason: format!("reading failed: {e}"),
        }))
    }

    /// The file's identity for the ledger: the SHA-256 of its bytes, so that the same export
    /// under another name or location is still recognised. `progress` hears bytes read.
    pub async fn source(&self, mut progress: impl FnMut(u64)) -> Result<ImportSource> {
        let mut hasher = Sha256::new();
        let mut bytes = self.bytes().await?;
        while let Some(chunk) = bytes.try_next().await? {
            progress(chunk.len() as u64);
            hasher.update(&chunk);
        }
        let id = format!("sha256-{:x}", hasher.finalize());
        Ok(ImportSource::new(id, self.uri.clone()))
    }

    /// The file's records, in file order, each to be decoded with `topic`'s mapping.
    pub async fn records(&self, topic: &str) -> Result<RecordStream<'static>> {
        match self.format {
            ImportFormat::NdJson => Ok(ndjson_records(self.bytes().await?, topic.to_owned())),
            ImportFormat::Parquet => self.parquet_records(topic.to_owned()).await,
        }
    }

    async fn parquet_records(&self, topic: String) -> Result<RecordStream<'static>> {
        let reader = StoreFileReader::new(&self.store, self.path.clone(), self.size().await?);
        let stream = ParquetRecordBatchStreamBuilder::new(reader)
            .await
            .map_err(|e| self.fail(format!("not a readable Parquet file: {e}")))?
            .build()
            .map_err(|e| self.fail(e))?;
        let uri = self.uri.clone();
        let records = stream
            .map(move |batch| {
                let fail = |reason: String| IngestError::Import {
                    input: uri.clone(),
                    reason,
                };
                let batch = batch.map_err(|e| fail(format!("reading failed: {e}")))?;
                parquet_batch_records(&batch, &topic).map_err(fail)
            })
            .map_ok(|records| futures::stream::iter(records.into_iter().map(Ok)))
            .try_flatten();
        Ok(Box::pin(records))
    }
}

/// Lines of a newline-delimited JSON stream; blank lines are not records. A line is archived
/// exactly as it is (a line that is not JSON is archived raw with the reason).
fn ndjson_records(
    bytes: impl Stream<Item = Result<Bytes>> + Send + 'static,
    topic: String,
) -> RecordStream<'static> {
    let lines = bytes
        .map_ok(Some)
        .chain(futures::stream::once(async { Ok(None) }))
        .scan(Vec::<u8>::new(), |carry, chunk| {
            let out: Vec<Result<Vec<u8>>> = match chunk {
                Err(e) => vec![Err(e)],
                Ok(Some(b)) => {
                    carry.extend_from_slice(&b);
                    let mut lines = Vec::new();
                    let mut start = 0;
                    for (i, byte) in carry.iter().enumerate() {
                        if *byte == b'\n' {
                            lines.push(Ok(carry[start..i].to_vec()));
                            start = i + 1;
                        }
                    }
                    carry.drain(..start);
                    lines
                }
                Ok(None) => vec![Ok(std::mem::take(carry))],
            };
            futures::future::ready(Some(futures::stream::iter(out)))
        })
        .flatten()
        .try_filter_map(move |mut line| {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let record = (!line.iter().all(u8::is_ascii_whitespace)).then(|| ImportRecord {
                topic: topic.clone(),
                value: Some(line),
                ..Default::default()
            });
            futures::future::ready(Ok(record))
        });
    Box::pin(lines)
}

/// One record per row: the `value` column as the event (with `key` when present), or, without
/// a `value` column, the row itself as a JSON object.
fn parquet_batch_records(
    batch: &RecordBatch,
    topic: &str,
) -> std::result::Result<Vec<ImportRecord>, String> {
    let bytes_of = |name: &str| -> std::result::Result<Option<Vec<Option<Vec<u8>>>>, String> {
        let Some(col) = batch.column_by_name(name) else {
            return Ok(None);
        };
        let col = arrow::compute::cast(col, &DataType::Binary)
            .map_err(|e| format!("column `{name}` is neither text nor bytes: {e}"))?;
        let col = col.as_binary::<i32>();
        Ok(Some(
            (0..col.len())
                .map(|i| col.is_valid(i).then(|| col.value(i).to_vec()))
                .collect(),
        ))
    };
    let record = |key: Option<Vec<u8>>, value: Option<Vec<u8>>| ImportRecord {
        topic: topic.to_owned(),
        key,
        value,
        ..Default::default()
    };
    if let Some(values) = bytes_of("value")? {
        let keys = bytes_of("key")?.unwrap_or_else(|| vec![None; values.len()]);
        return Ok(keys
            .into_iter()
            .zip(values)
            .map(|(k, v)| record(k, v))
            .collect());
    }
    let mut writer = arrow::json::LineDelimitedWriter::new(Vec::new());
    writer
        .write(batch)
        .map_err(|e| format!("cannot turn rows into JSON: {e}"))?;
    writer.finish().map_err(|e| e.to_string())?;
    Ok(writer
        .into_inner()
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| record(None, Some(l.to_vec())))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(chunks: &[&str]) -> Vec<String> {
        let chunks: Vec<Result<Bytes>> = chunks
            .iter()
            .map(|c| Ok(Bytes::copy_from_slice(c.as_bytes())))
            .collect();
        let stream = ndjson_records(futures::stream::iter(chunks), "t".into());
        futures::executor::block_on(stream.try_collect::<Vec<_>>())
            .unwrap()
            .into_iter()
            .map(|r| String::from_utf8(r.value.unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn ndjson_lines_split_across_chunks_blank_lines_skipped_last_line_unterminated() {
        assert_eq!(
            lines_of(&["{\"a\":1}\n{\"b\"", ":2}\r\n\n  \n", "not json\n{\"c\":3}"]),
            ["{\"a\":1}", "{\"b\":2}", "not json", "{\"c\":3}"]
        );
        assert_eq!(lines_of(&["", "x\n"]), ["x"]);
        assert!(lines_of(&[]).is_empty());
    }

    #[test]
    fn parquet_rows_are_values_or_json_objects() {
        use arrow::array::{Int64Array, StringArray};
        let with_value = RecordBatch::try_from_iter([
            (
                "key",
                Arc::new(StringArray::from(vec![Some("k1"), None])) as _,
            ),
            (
                "value",
                Arc::new(StringArray::from(vec![Some("{\"x\":1}"), Some("raw")])) as _,
            ),
        ])
        .unwrap();
        let recs = parquet_batch_records(&with_value, "t").unwrap();
        assert_eq!(recs[0].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(recs[1].value.as_deref(), Some(&b"raw"[..]));
        let fields = RecordBatch::try_from_iter([
            (
                "order_id",
                Arc::new(StringArray::from(vec!["O-1", "O-2"])) as _,
            ),
            ("quantity", Arc::new(Int64Array::from(vec![3, 4])) as _),
        ])
        .unwrap();
        let recs = parquet_batch_records(&fields, "t").unwrap();
        let doc: serde_json::Value =
            serde_json::from_slice(recs[1].value.as_ref().unwrap()).unwrap();
        assert_eq!(doc, serde_json::json!({"order_id": "O-2", "quantity": 4}));
    }
}
