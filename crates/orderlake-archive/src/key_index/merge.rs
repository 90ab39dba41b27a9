//! Keeping the index small and complete: indexing data files no segment covers (files of
//! compaction, files committed without a segment) and merging segments into one. A merge streams
//! the sorted segments through a k-way merge, so its memory is one row group per segment plus
//! the encoded output; the segments it replaces are deleted only after the merged one is written,
//! and segments written meanwhile are left alone.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::Arc;

use arrow::array::RecordBatch;
use futures::{StreamExt as _, TryStreamExt as _};
use object_store::ObjectStore;
use object_store::path::Path;
use parquet::arrow::ProjectionMask;
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;

use super::{
    IndexEntry, IndexResult, KeyColumn, Segment, SegmentWriter, delete_segments, entries_of_rows,
    list_segments, put_segment, segment_err, segment_name_fields, write_segment,
};
use crate::error::ArchiveError;
use crate::files::ArchiveFile;
use crate::parquet_io::StoreFileReader;
use crate::schema::EVENT_DATE;

/// Rows of data files read into one segment at most (bounds memory while indexing).
const ROWS_PER_SEGMENT: u64 = 2_000_000;

/// Reads the key columns of `files` (from `data_store`, where [`ArchiveFile::path`] points) and
/// writes segments covering them into the table-rooted `index_store`. Returns the segments
/// written and the entries they hold.
pub async fn index_files(
    data_store: &Arc<dyn ObjectStore>,
    index_store: &Arc<dyn ObjectStore>,
    files: &[ArchiveFile],
) -> IndexResult<(Vec<Path>, u64)> {
    let mut written = Vec::new();
    let mut entries_written = 0;
    let mut start = 0;
    while start < files.len() {
        let mut rows = 0;
        let mut end = start;
        while end < files.len() && (end == start || rows < ROWS_PER_SEGMENT) {
            rows += files[end].rows.unwrap_or(ROWS_PER_SEGMENT / 8);
            end += 1;
        }
        let chunk = &files[start..end];
        // Collected first: a lazily mapped iterator inside the stream makes the future's
        // `Send` unprovable for callers that spawn it (the scheduled maintenance task).
        let reads: Vec<_> = chunk.iter().map(|f| key_rows(data_store, f)).collect();
        let batches: Vec<Vec<RecordBatch>> = futures::stream::iter(reads)
            .buffer_unordered(4)
            .try_collect()
            .await?;
        let batches: Vec<RecordBatch> = batches.into_iter().flatten().collect();
        let entries = entries_of_rows(&batches)?;
        entries_written += entries.len() as u64;
        let covers: Vec<String> = chunk.iter().map(|f| f.relative_path.clone()).collect();
        written.push(write_segment(index_store, entries, &covers).await?);

        start = end;
    }
    Ok((written, entries_written))
}

/// A data file's key columns with each row's event date as a column.
pub(super) async fn key_rows(
    store: &Arc<dyn ObjectStore>,
    file: &ArchiveFile,
) -> IndexResult<Vec<RecordBatch>> {
    let reader = StoreFileReader::new(store, file.path.clone(), file.size);
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(segment_err(&file.path))?;
    let schema = builder.parquet_schema();
    let wanted: Vec<usize> = (0..schema.num_columns())
        .filter(|&i| {
            let column = schema.column(i);
            KeyColumn::from_name(column.name()).is_some() || column.name() == EVENT_DATE
        })
        .collect();
    let mask = ProjectionMask::leaves(schema, wanted);
    let stream = builder
        .with_projection(mask)
        .build()
        .map_err(segment_err(&file.path))?;
    let batches: Vec<RecordBatch> = stream
        .try_collect()
        .await
        .map_err(segment_err(&file.path))?;
    batches
        .into_iter()
        .map(|batch| {
            if batch.column_by_name(EVENT_DATE).is_some() {
                return Ok(batch);
            }
            let Some(dates) = file.row_dates(&batch) else {
                return Err(ArchiveError::IndexColumn(EVENT_DATE));
            };
            let mut columns = batch.columns().to_vec();
            let mut fields: Vec<_> = batch.schema().fields().iter().cloned().collect();
            columns.push(Arc::new(dates));
            fields.push(Arc::new(arrow::datatypes::Field::new(
                EVENT_DATE,
                arrow::datatypes::DataType::Date32,
                false,
            )));
            RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), columns)
                .map_err(|e| segment_err(&file.path)(e.into()))
        })
        .collect()
}

/// A sorted segment read a row group at a time.
struct Cursor {
    stream: parquet::arrow::async_reader::ParquetRecordBatchStream<StoreFileReader>,
    buffered: std::vec::IntoIter<IndexEntry>,
    path: Path,
}

impl Cursor {
    async fn next(&mut self) -> IndexResult<Option<IndexEntry>> {
        loop {
            if let Some(e) = self.buffered.next() {
                return Ok(Some(e));
            }
            match self.stream.next().await {
                None => return Ok(None),
                Some(batch) => {
                    let batch = batch.map_err(segment_err(&self.path))?;
                    let mut out = Vec::with_capacity(batch.num_rows());
                    super::segment::entries_of(&batch, &mut out);
                    self.buffered = out.into_iter();
                }
            }
        }
    }
}

/// What a merge did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MergeReport {
    pub segments_before: usize,
    pub entries: u64,
    pub bytes: u64,
    pub covered_files: usize,
}

/// Merges every segment now in the index into one that covers those of their files that are in
/// `live` (table-relative paths), then deletes the merged segments. Segments that cover no live
/// file are dropped with their entries, unless younger than `keep_young_ms` (their flush may
/// still be committing).
pub async fn merge_all(
    index_store: &Arc<dyn ObjectStore>,
    live: &HashSet<String>,
    keep_young_ms: i64,
) -> IndexResult<MergeReport> {
    let listed = list_segments(index_store).await?;
    let now = chrono::Utc::now().timestamp_millis();
    let mut inputs = Vec::new();
    let mut covers = Vec::new();
    for (path, size) in &listed {
        let segment = match Segment::open(index_store, path.clone(), *size).await {
            Ok(segment) => segment,
            // Merged away by a writer since the listing: its entries are in a newer segment.
            Err(e) if crate::parquet_io::is_not_found(&e) => continue,
            Err(e) => return Err(segment_err(path)(e)),
        };
        let live_covers: Vec<String> = segment
            .covers
            .iter()
            .filter(|f| live.contains(*f))
            .cloned()
            .collect();
        let written = segment_name_fields(path).map_or(now, |(written, _)| written);
        if live_covers.is_empty() && now - written < keep_young_ms {
            // Left as it is: neither merged nor deleted.
            continue;
        }
        covers.extend(live_covers);
        inputs.push(segment);
    }
    let drops_coverage = inputs.iter().map(|s| s.covers.len()).sum::<usize>() != covers.len();
    if inputs.len() <= 1 && !drops_coverage {
        return Ok(MergeReport {
            segments_before: listed.len(),
            entries: inputs.iter().map(|s| s.entries).sum(),
            bytes: inputs.iter().map(|s| s.size).sum(),
            covered_files: covers.len(),
        });
    }
    let mut report = merge_segments(index_store, inputs, covers).await?;
    report.segments_before = listed.len();
    Ok(report)
}

/// Segments below these entry counts form the tiers the writer merges on its own: eight
/// segments of a tier become one of the next, so a streaming archiver leaves a few segments per
/// tier between maintenance runs instead of one per flush. Larger segments wait for `maintain`.
const WRITER_TIERS: [u64; 2] = [64 * 1024, 512 * 1024];
const SEGMENTS_PER_TIER: usize = 8;

/// Merges the small segments the writer's flushes leave, tier by tier (see [`WRITER_TIERS`]),
/// keeping all their coverage. Cheap: it merges at most eight segments of under 512k entries.
/// Returns how many segments it merged.
pub async fn merge_small_segments(index_store: &Arc<dyn ObjectStore>) -> IndexResult<usize> {
    let listed = list_segments(index_store).await?;
    let mut merged = 0;
    for (tier, limit) in WRITER_TIERS.iter().enumerate() {
        let floor = if tier == 0 { 0 } else { WRITER_TIERS[tier - 1] };
        let members: Vec<&(Path, u64)> = listed
            .iter()
            .filter(|(path, _)| {
                segment_name_fields(path)
                    .and_then(|(_, entries)| entries)
                    .is_some_and(|n| floor <= n && n < *limit)
            })
            .take(SEGMENTS_PER_TIER)
            .collect();
        if members.len() < SEGMENTS_PER_TIER {
            continue;
        }
        let mut inputs = Vec::new();
        for (path, size) in members {
            match Segment::open(index_store, path.clone(), *size).await {
                Ok(segment) => inputs.push(segment),
                Err(e) if crate::parquet_io::is_not_found(&e) => {}
                Err(e) => return Err(segment_err(path)(e)),
            }
        }
        let mut covers: Vec<String> = inputs.iter().flat_map(|s| s.covers.clone()).collect();
        covers.sort();
        covers.dedup();
        merged += inputs.len();
        merge_segments(index_store, inputs, covers).await?;
    }
    Ok(merged)
}

/// Streams `inputs` (each sorted) through a k-way merge into one segment covering `covers`, then
/// deletes them.
async fn merge_segments(
    index_store: &Arc<dyn ObjectStore>,
    inputs: Vec<Segment>,
    mut covers: Vec<String>,
) -> IndexResult<MergeReport> {
    covers.sort();
    covers.dedup();
    let mut cursors = Vec::new();
    for segment in &inputs {
        let reader = StoreFileReader::new(index_store, segment.path.clone(), segment.size);
        let stream = ParquetRecordBatchStreamBuilder::new(reader)
            .await
            .and_then(|b| b.with_batch_size(super::segment::ROW_GROUP_ROWS).build())
            .map_err(segment_err(&segment.path))?;
        cursors.push(Cursor {
            stream,
            buffered: Vec::new().into_iter(),
            path: segment.path.clone(),
        });
    }
    let mut heap = BinaryHeap::new();
    for (i, cursor) in cursors.iter_mut().enumerate() {
        if let Some(e) = cursor.next().await? {
            heap.push(Reverse((e, i)));
        }
    }
    let dir = Path::from(super::INDEX_DIR);
    let mut writer = SegmentWriter::new(&covers).map_err(segment_err(&dir))?;
    let mut last: Option<IndexEntry> = None;
    while let Some(Reverse((entry, i))) = heap.pop() {
        if let Some(next) = cursors[i].next().await? {
            heap.push(Reverse((next, i)));
        }
        if last.as_ref() != Some(&entry) {
            last = Some(entry.clone());
            writer.push(entry).map_err(segment_err(&dir))?;
        }
    }
    let (_, bytes, entries) = put_segment(index_store, writer).await?;
    let merged: Vec<Path> = inputs.into_iter().map(|s| s.path).collect();
    delete_segments(index_store, &merged).await?;
    Ok(MergeReport {
        segments_before: merged.len(),
        entries,
        bytes,
        covered_files: covers.len(),
    })
}
