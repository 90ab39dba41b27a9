//! `orderlake-archiver maintain --redecode`: typed columns for the rows archived raw because the
//! schema registry did not serve their writer schema in time.
//!
//! Each live file holding such rows is read whole and written again: the envelope of every row
//! (coordinates, key, value, headers, archive time) as it was, the typed columns of the rows
//! whose schema is served now decoded afresh (and their event date from their event time, so a
//! row may move to its own date's partition), every other row untouched. One commit per group
//! of files removes the old files and adds the new ones, with their key-index segment written
//! first; the offset ledger is not touched, so exactly once still holds. A row whose schema is
//! still not served stays as it was, for the next run.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, AsArray as _, BooleanArray, RecordBatch};
use arrow::compute::kernels::zip::zip;
use arrow::datatypes::{DataType, Date32Type, Int32Type, Int64Type, TimestampMicrosecondType};
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Remove};
use deltalake::protocol::DeltaOperation;
use futures::TryStreamExt as _;
use orderlake_archive::files::ArchiveFile;
use orderlake_archive::parquet_io::StoreFileReader;
use orderlake_archive::schema;
use orderlake_archive::{ArchiveError, ArchiveTable};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use serde::Serialize;

use crate::decode::{Decoded, DecodedOrder, SCHEMA_UNAVAILABLE, TopicDecoder};
use crate::error::{IngestError, Result};
use crate::registry::SchemaRegistry;
use crate::rowbuf::{ArchiveRowBuffer, Envelope};
use crate::writer::{ArchiveWriter, WriterSettings};

/// Files rewritten per commit.
const FILES_PER_COMMIT: usize = 16;

/// What a redecode did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RedecodeReport {
    /// Live files read for rows to redecode.
    pub files_scanned: u64,
    pub files_rewritten: u64,
    /// Rows that now have typed columns (or a final reason instead of the transient one).
    pub rows_redecoded: u64,
    /// Rows whose schema is still not served: left for the next run.
    pub rows_still_waiting: u64,
    pub commits: u64,
}

/// Redecodes the table's rows archived raw for want of a schema, with `decoder` (its mappings
/// and `registry`).
pub async fn redecode(
    table: ArchiveTable,
    mut decoder: TopicDecoder,
    registry: &SchemaRegistry,
    settings: WriterSettings,
) -> Result<RedecodeReport> {
    let mut writer = ArchiveWriter::new(table, settings);
    writer.table_mut().refresh().await?;
    let live = writer.table().files()?;
    let mut report = RedecodeReport::default();
    let mut rewritten = Vec::new();
    for file in &live.files {
        report.files_scanned += 1;
        let Some(batch) = read_if_waiting(&live.store, file).await? else {
            continue;
        };
        let (batch, redecoded, waiting) = rebuild(&batch, file, &mut decoder, registry).await?;
        report.rows_still_waiting += waiting;
        if redecoded == 0 {
            continue;
        }
        report.rows_redecoded += redecoded;
        rewritten.push((file.relative_path.clone(), batch));
        if rewritten.len() >= FILES_PER_COMMIT {
            commit(&mut writer, std::mem::take(&mut rewritten), &mut report).await?;
        }
    }
    if !rewritten.is_empty() {
        commit(&mut writer, rewritten, &mut report).await?;
    }
    Ok(report)
}

fn archive_err(table: &ArchiveTable) -> impl Fn(String) -> IngestError + '_ {
    move |reason| {
        IngestError::Archive(ArchiveError::Refused {
            uri: table.location().to_string(),
            reason,
        })
    }
}

/// The file's rows, when any of them waits for a schema (only `decode_error` is read first).
async fn read_if_waiting(
    store: &Arc<dyn object_store::ObjectStore>,
    file: &ArchiveFile,
) -> Result<Option<RecordBatch>> {
    let read_err = |e: parquet::errors::ParquetError| IngestError::ReadFile {
        path: file.path.to_string(),
        reason: e.to_string(),
    };
    let open = || async {
        ParquetRecordBatchStreamBuilder::new(StoreFileReader::new(
            store,
            file.path.clone(),
            file.size,
        ))
        .await
        .map_err(read_err)
    };
    let builder = open().await?;
    let Some(index) = builder
        .schema()
        .fields()
        .iter()
        .position(|f| f.name() == schema::DECODE_ERROR)
    else {
        return Ok(None);
    };
    let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), [index]);
    let errors: Vec<RecordBatch> = builder
        .with_projection(mask)
        .build()
        .map_err(read_err)?
        .try_collect()
        .await
        .map_err(read_err)?;
    let waiting = errors.iter().any(|b| {
        let column = arrow::compute::cast(b.column(0), &DataType::Utf8).expect("text casts");
        column
            .as_string::<i32>()
            .iter()
            .flatten()
            .any(|e| e.starts_with(SCHEMA_UNAVAILABLE))
    });
    if !waiting {
        return Ok(None);
    }
    let batches: Vec<RecordBatch> = open()
        .await?
        .build()
        .map_err(read_err)?
        .try_collect()
        .await
        .map_err(read_err)?;
    let schema = batches
        .first()
        .map(RecordBatch::schema)
        .ok_or_else(|| read_err(parquet::errors::ParquetError::General("no rows".into())))?;
    Ok(Some(
        arrow::compute::concat_batches(&schema, &batches).map_err(|e| read_err(e.into()))?,
    ))
}

/// The file's rows in the archive schema: typed columns decoded again where a row waited for a
/// schema that is served now. Returns the rows, how many were redecoded and how many still wait.
async fn rebuild(
    old: &RecordBatch,
    file: &ArchiveFile,
    decoder: &mut TopicDecoder,
    registry: &SchemaRegistry,
) -> Result<(RecordBatch, u64, u64)> {
    let target = schema::arrow_schema();
    let cast_err = |e: arrow::error::ArrowError| IngestError::ReadFile {
        path: file.path.to_string(),
        reason: e.to_string(),
    };
    let column = |name: &str| -> Result<Option<ArrayRef>> {
        let (Some(array), Ok(field)) = (old.column_by_name(name), target.field_with_name(name))
        else {
            return Ok(None);
        };
        arrow::compute::cast(array, field.data_type())
            .map(Some)
            .map_err(cast_err)
    };
    let required = |name: &str| -> Result<ArrayRef> {
        column(name)?.ok_or_else(|| cast_err(arrow::error::ArrowError::SchemaError(name.into())))
    };
    let topics = required(schema::KAFKA_TOPIC)?;
    let partitions = required(schema::KAFKA_PARTITION)?;
    let offsets = required(schema::KAFKA_OFFSET)?;
    let timestamps = required(schema::KAFKA_TIMESTAMP)?;
    let keys = required(schema::KAFKA_KEY)?;
    let values = required(schema::KAFKA_VALUE)?;
    let headers = required(schema::KAFKA_HEADERS)?;
    let archived = required(schema::ARCHIVED_AT)?;
    let imports = required(schema::IMPORT_SOURCE)?;
    let errors = required(schema::DECODE_ERROR)?;
    let (topics, errors, imports) = (
        topics.as_string::<i32>(),
        errors.as_string::<i32>(),
        imports.as_string::<i32>(),
    );
    let (keys, values) = (keys.as_binary::<i32>(), values.as_binary::<i32>());
    let partitions = partitions.as_primitive::<Int32Type>();
    let offsets = offsets.as_primitive::<Int64Type>();
    let timestamps = timestamps.as_primitive::<TimestampMicrosecondType>();
    let archived = archived.as_primitive::<TimestampMicrosecondType>();
    let headers = headers.as_list::<i32>();

    let mut rows = ArchiveRowBuffer::new();
    let mut redecode = Vec::with_capacity(old.num_rows());
    let (mut redecoded, mut waiting) = (0, 0);
    for i in 0..old.num_rows() {
        let opt = |a: &dyn Array| !a.is_null(i);
        let row_headers = schema::headers_at(headers, i);
        let env = Envelope {
            topic: opt(topics).then(|| topics.value(i)),
            partition: opt(partitions).then(|| partitions.value(i)),
            offset: opt(offsets).then(|| offsets.value(i)),
            timestamp_ms: opt(timestamps).then(|| timestamps.value(i) / 1000),
            key: opt(keys).then(|| keys.value(i)),
            value: opt(values).then(|| values.value(i)),
            import_source: opt(imports).then(|| imports.value(i)),
        };
        let waited = opt(errors) && errors.value(i).starts_with(SCHEMA_UNAVAILABLE);
        let order = if waited {
            let header = crate::avro::schema_header(&row_headers);
            let order = decode_waiting(decoder, registry, env, header).await;
            if order.failure == Some(crate::decode::DecodeFailure::SchemaUnavailable) {
                waiting += 1;
                redecode.push(false);
            } else {
                redecoded += 1;
                redecode.push(true);
            }
            order
        } else {
            redecode.push(false);
            DecodedOrder::default()
        };
        rows.append(
            &env,
            row_headers.iter().map(|(k, v)| (k.as_str(), v.as_deref())),
            &order,
            archived.value(i),
        );
    }
    let fresh = rows.finish();
    let mask = BooleanArray::from(redecode);
    let mut columns = Vec::with_capacity(fresh.num_columns());
    for (field, new) in target.fields().iter().zip(fresh.columns()) {
        let kept = match column(field.name())? {
            Some(kept) => kept,
            // A daily table keeps `event_date` in the path, not in the file.
            None if field.name() == schema::EVENT_DATE => {
                let day = file.partition.ok_or_else(|| {
                    cast_err(arrow::error::ArrowError::SchemaError(
                        "a file without event_date outside a date partition".into(),
                    ))
                })?;
                Arc::new(arrow::array::PrimitiveArray::<Date32Type>::from_value(
                    day,
                    old.num_rows(),
                ))
            }
            None => new.clone(),
        };
        columns.push(zip(&mask, new, &kept).map_err(cast_err)?);
    }
    let batch = RecordBatch::try_new(target, columns).map_err(cast_err)?;
    Ok((batch, redecoded, waiting))
}

/// Decodes a row whose schema was not served, waiting as the drain would for the registry.
async fn decode_waiting(
    decoder: &mut TopicDecoder,
    registry: &SchemaRegistry,
    env: Envelope<'_>,
    header: Option<&[u8]>,
) -> DecodedOrder {
    let started = Instant::now();
    let topic = env.topic.unwrap_or_default();
    loop {
        match decoder.decode_record(topic, env.value, header) {
            Decoded::Order(order) => return order,
            Decoded::NeedsSchema(key)
                if started.elapsed() >= registry.config().unavailable_wait() =>
            {
                registry.give_up(key);
            }
            Decoded::NeedsSchema(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Writes the rebuilt rows and commits them in place of their old files.
async fn commit(
    writer: &mut ArchiveWriter,
    files: Vec<(String, RecordBatch)>,
    report: &mut RedecodeReport,
) -> Result<()> {
    let batches: Vec<&RecordBatch> = files.iter().map(|(_, b)| b).collect();
    let all = arrow::compute::concat_batches(&schema::arrow_schema(), batches).map_err(|e| {
        IngestError::Write {
            table: writer.table().location().to_string(),
            source: Box::new(e.into()),
        }
    })?;
    let adds = writer.write_files(&all).await?;
    writer.index_files(&all, &adds).await?;
    let paths: BTreeSet<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    let table = writer.table();
    let uri = table.location().to_string();
    let delta_err = |e: deltalake::DeltaTableError| IngestError::Write {
        table: uri.clone(),
        source: Box::new(e),
    };
    let snapshot = table.delta().snapshot().map_err(delta_err)?;
    let removes: Vec<Remove> = snapshot
        .log_data()
        .iter()
        .filter(|f| paths.contains(f.path().as_ref()))
        .map(|f| f.remove_action(true))
        .collect();
    if removes.len() != paths.len() {
        return Err(archive_err(table)(format!(
            "{} of the {} files to rewrite are no longer live; run --redecode again",
            paths.len() - removes.len(),
            paths.len()
        )));
    }
    let mut actions: Vec<Action> = removes.into_iter().map(Action::Remove).collect();
    actions.extend(adds.into_iter().map(Action::Add));
    let committed = CommitBuilder::from(CommitProperties::default())
        .with_actions(actions)
        .build(
            Some(snapshot),
            table.delta().log_store(),
            DeltaOperation::Update {
                predicate: Some(format!(
                    "{} LIKE '{SCHEMA_UNAVAILABLE}%'",
                    schema::DECODE_ERROR
                )),
            },
        )
        .await
        .map_err(delta_err)?;
    tracing::info!(
        version = committed.version(),
        files = files.len(),
        "redecoded rows committed"
    );
    writer.table_mut().refresh().await?;
    report.commits += 1;
    report.files_rewritten += files.len() as u64;
    Ok(())
}
