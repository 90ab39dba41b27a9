//! One index segment: an immutable Parquet file under `_orderlake_index/` holding distinct
//! `(key column, key, event date)` entries sorted in that order, in small row groups whose
//! statistics let a lookup read one of them, and in its footer the data files whose keys it
//! holds (its coverage). Segments are written before the commit that adds their files, so
//! coverage may name files that never became live: harmless, they are never scanned.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray as _, Date32Array, RecordBatch, StringArray, UInt8Array};
use arrow::datatypes::{DataType, Date32Type, Field, Schema, SchemaRef, UInt8Type};
use futures::TryStreamExt as _;
use object_store::ObjectStore;
use object_store::path::Path;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, RowSelection, RowSelector,
};
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{KeyValue, PageIndexPolicy};
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::statistics::Statistics;

use super::{IndexEntry, KeyColumn};
use crate::parquet_io::StoreFileReader;

/// The folder under the table root that holds the segments (Delta's vacuum leaves `_` folders be).
pub const INDEX_DIR: &str = "_orderlake_index";
/// Footer key naming the data files a segment covers (a JSON array of table-relative paths).
const COVERS_KEY: &str = "orderlake.index.covers";
/// Footer key naming the segment format.
const FORMAT_KEY: &str = "orderlake.index.format";
const FORMAT: &str = "1";
/// Rows per row group: a lookup decodes one group of this many entries.
pub const ROW_GROUP_ROWS: usize = 8 * 1024;
/// Entries per data page. A probe decodes the pages whose key range holds one of its keys (their
/// bounds are in the page index), not whole row groups: a customer's order ids are spread over
/// the key space, so each costs a group otherwise (87 keys: 712k entries decoded).
const PAGE_ROWS: usize = 512;

fn entry_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("key_column", DataType::UInt8, false),
        Field::new("key", DataType::Utf8, false),
        Field::new("event_date", DataType::Date32, false),
    ]))
}

fn batch_of(entries: &[IndexEntry]) -> RecordBatch {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            entries
                .iter()
                .map(|e| e.column as u8)
                .collect::<UInt8Array>(),
        ),
        Arc::new(
            entries
                .iter()
                .map(|e| Some(e.key.as_str()))
                .collect::<StringArray>(),
        ),
        Arc::new(
            entries
                .iter()
                .map(|e| Some(e.date))
                .collect::<Date32Array>(),
        ),
    ];
    RecordBatch::try_new(entry_schema(), columns).expect("entry columns match their schema")
}

/// Appends the entries of a segment batch to `out`.
pub(super) fn entries_of(batch: &RecordBatch, out: &mut Vec<IndexEntry>) {
    let columns = batch.column(0).as_primitive::<UInt8Type>();
    let keys = batch.column(1).as_string::<i32>();
    let dates = batch.column(2).as_primitive::<Date32Type>();
    for i in 0..batch.num_rows() {
        if let Some(column) = KeyColumn::from_tag(columns.value(i)) {
            out.push(IndexEntry {
                column,
                key: keys.value(i).to_owned(),
                date: dates.value(i),
            });
        }
    }
}

/// Encodes sorted, distinct entries into a segment, a row group at a time: memory holds one row
/// group and the compressed output.
#[expect(
    missing_debug_implementations,
    reason = "holds a Parquet writer, which has no Debug"
)]
pub struct SegmentWriter {
    writer: ArrowWriter<Vec<u8>>,
    pending: Vec<IndexEntry>,
    rows: u64,
}

impl SegmentWriter {
    pub fn new(covers: &[String]) -> parquet::errors::Result<Self> {
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_data_page_row_count_limit(PAGE_ROWS)
            .set_write_batch_size(PAGE_ROWS)
            .set_key_value_metadata(Some(vec![
                KeyValue::new(FORMAT_KEY.to_owned(), FORMAT.to_owned()),
                KeyValue::new(
                    COVERS_KEY.to_owned(),
                    serde_json::to_string(covers).expect("paths serialize"),
                ),
            ]))
            .build();
        Ok(Self {
            writer: ArrowWriter::try_new(Vec::new(), entry_schema(), Some(props))?,
            pending: Vec::with_capacity(ROW_GROUP_ROWS),
            rows: 0,
        })
    }

    /// Adds the next entry; entries must come sorted and distinct.
    pub fn push(&mut self, entry: IndexEntry) -> parquet::errors::Result<()> {
        debug_assert!(self.pending.last().is_none_or(|last| *last < entry));
        self.pending.push(entry);
        if self.pending.len() == ROW_GROUP_ROWS {
            self.write_pending()?;
        }
        Ok(())
    }

    fn write_pending(&mut self) -> parquet::errors::Result<()> {
        if !self.pending.is_empty() {
            self.writer.write(&batch_of(&self.pending))?;
            self.rows += self.pending.len() as u64;
            self.pending.clear();
        }
        Ok(())
    }

    /// The segment's bytes and its entry count.
    pub fn finish(mut self) -> parquet::errors::Result<(Vec<u8>, u64)> {
        self.write_pending()?;
        Ok((self.writer.into_inner()?, self.rows))
    }
}

/// A segment's footer, read once: its coverage and its row groups' key ranges.
#[derive(Debug, Clone)]
pub struct Segment {
    pub path: Path,
    pub size: u64,
    pub covers: Vec<String>,
    pub entries: u64,
    metadata: ArrowReaderMetadata,
    /// Per row group: the bounds of its key columns and keys, from its statistics.
    ranges: Vec<Option<GroupBounds>>,
}

#[derive(Debug, Clone)]
struct GroupBounds {
    columns: (u8, u8),
    keys: (Vec<u8>, Vec<u8>),
}

impl Segment {
    /// Reads a segment's footer.
    pub async fn open(
        store: &Arc<dyn ObjectStore>,
        path: Path,
        size: u64,
    ) -> parquet::errors::Result<Self> {
        let mut reader = StoreFileReader::new(store, path.clone(), size);
        // Page indexes too, where the segment has them (segments written before they had pages
        // are read by row group).
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
        let metadata = ArrowReaderMetadata::load_async(&mut reader, options).await?;
        let file = metadata.metadata().file_metadata();
        let value = |key: &str| {
            file.key_value_metadata()
                .and_then(|kv| kv.iter().find(|e| e.key == key))
                .and_then(|e| e.value.clone())
        };
        if value(FORMAT_KEY).as_deref() != Some(FORMAT) {
            return Err(parquet::errors::ParquetError::General(format!(
                "{path} is not an orderlake index segment of format {FORMAT}"
            )));
        }
        let covers: Vec<String> = value(COVERS_KEY)
            .and_then(|v| serde_json::from_str(&v).ok())
            .ok_or_else(|| {
                parquet::errors::ParquetError::General(format!("{path} names no covered files"))
            })?;
        let ranges = metadata
            .metadata()
            .row_groups()
            .iter()
            .map(|rg| {
                let column = match rg.column(0).statistics()? {
                    Statistics::Int32(s) => (*s.min_opt()?, *s.max_opt()?),
                    _ => return None,
                };
                let key = match rg.column(1).statistics()? {
                    Statistics::ByteArray(s) => {
                        (s.min_opt()?.data().to_vec(), s.max_opt()?.data().to_vec())
                    }
                    _ => return None,
                };
                Some(GroupBounds {
                    columns: (u8::try_from(column.0).ok()?, u8::try_from(column.1).ok()?),
                    keys: key,
                })
            })
            .collect();
        Ok(Self {
            path,
            size,
            covers,
            entries: u64::try_from(file.num_rows()).unwrap_or_default(),
            metadata,
            ranges,
        })
    }

    /// Row groups that may hold `(column, key)`: the column and the key each within the group's
    /// bounds. Statistics bounds are conservative (a truncated maximum is rounded up), so no
    /// holder is ever left out.
    fn groups_for<'a>(
        &'a self,
        column: KeyColumn,
        key: &'a str,
    ) -> impl Iterator<Item = usize> + 'a {
        let tag = column as u8;
        self.ranges
            .iter()
            .enumerate()
            .filter(move |(_, range)| match range {
                None => true,
                Some(b) => {
                    b.columns.0 <= tag
                        && tag <= b.columns.1
                        && b.keys.0.as_slice() <= key.as_bytes()
                        && key.as_bytes() <= b.keys.1.as_slice()
                }
            })
            .map(|(i, _)| i)
    }

    /// The rows of `groups` (ascending) on pages whose key bounds hold one of `keys` (sorted), by
    /// the page index; `None` when the segment has none. Page bounds are conservative (a
    /// truncated maximum is rounded up), so no holder is left out.
    fn pages_for(&self, groups: &[usize], keys: &[&[u8]]) -> Option<RowSelection> {
        let metadata = self.metadata.metadata();
        let (bounds, offsets) = (metadata.column_index()?, metadata.offset_index()?);
        let mut selectors = Vec::new();
        for &group in groups {
            let rows = usize::try_from(metadata.row_group(group).num_rows()).ok()?;
            let pages = offsets.get(group)?.get(1)?.page_locations();
            let ColumnIndexMetaData::BYTE_ARRAY(bounds) = bounds.get(group)?.get(1)? else {
                selectors.push(RowSelector::select(rows));
                continue;
            };
            for (page, location) in pages.iter().enumerate() {
                let first = usize::try_from(location.first_row_index).ok()?;
                let next = match pages.get(page + 1) {
                    Some(next) => usize::try_from(next.first_row_index).ok()?,
                    None => rows,
                };
                let holds = match (bounds.min_value(page), bounds.max_value(page)) {
                    (Some(min), Some(max)) => {
                        let at = keys.partition_point(|k| *k < min);
                        keys.get(at).is_some_and(|k| *k <= max)
                    }
                    _ => true,
                };
                selectors.push(if holds {
                    RowSelector::select(next - first)
                } else {
                    RowSelector::skip(next - first)
                });
            }
        }
        Some(RowSelection::from(selectors))
    }

    /// Reads the given row groups (all when `None`) as entries.
    async fn read(
        &self,
        store: &Arc<dyn ObjectStore>,
        row_groups: Option<Vec<usize>>,
        rows: Option<RowSelection>,
    ) -> parquet::errors::Result<Vec<IndexEntry>> {
        let reader = StoreFileReader::new(store, self.path.clone(), self.size);
        let mut builder =
            ParquetRecordBatchStreamBuilder::new_with_metadata(reader, self.metadata.clone());
        if let Some(groups) = row_groups {
            if groups.is_empty() {
                return Ok(Vec::new());
            }
            builder = builder.with_row_groups(groups);
        }
        if let Some(rows) = rows {
            builder = builder.with_row_selection(rows);
        }
        let stream = builder
            .with_projection(ProjectionMask::all())
            .with_batch_size(ROW_GROUP_ROWS)
            .build()?;
        let batches: Vec<RecordBatch> = stream.try_collect().await?;
        let mut out = Vec::new();
        for batch in &batches {
            entries_of(batch, &mut out);
        }
        Ok(out)
    }

    /// Every entry of the segment, in order.
    pub async fn read_all(
        &self,
        store: &Arc<dyn ObjectStore>,
    ) -> parquet::errors::Result<Vec<IndexEntry>> {
        self.read(store, None, None).await
    }

    /// The dates the segment records for each of `keys` in `column`.
    pub async fn lookup(
        &self,
        store: &Arc<dyn ObjectStore>,
        column: KeyColumn,
        keys: &[String],
    ) -> parquet::errors::Result<Vec<IndexEntry>> {
        let mut groups: Vec<usize> = keys
            .iter()
            .flat_map(|k| self.groups_for(column, k).collect::<Vec<_>>())
            .collect();
        groups.sort_unstable();
        groups.dedup();
        let mut sorted: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        sorted.sort_unstable();
        let rows = self.pages_for(&groups, &sorted);
        let mut found = self.read(store, Some(groups), rows).await?;
        let keys: HashSet<&str> = keys.iter().map(String::as_str).collect();
        found.retain(|e| e.column == column && keys.contains(e.key.as_str()));
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt as _, PutPayload};

    use super::*;

    /// A probe through the page index finds exactly what reading every entry finds, for keys on
    /// every page, between pages, before the first and after the last, of both key columns.
    #[tokio::test]
    async fn a_probe_by_page_finds_what_a_full_read_finds() {
        let mut entries: Vec<IndexEntry> = (0..20_000u32)
            .flat_map(|i| {
                let (column, key) = if i % 3 == 0 {
                    (KeyColumn::CustomerId, format!("C-{:06}", i / 3))
                } else {
                    (KeyColumn::OrderId, format!("O-{:07}", i * 7))
                };
                let dates = 1 + (i % 2);
                (0..dates).map(move |d| IndexEntry {
                    column,
                    key: key.clone(),
                    date: 19_000 + i32::try_from(i % 50 + d).unwrap(),
                })
            })
            .collect();
        entries.sort();
        entries.dedup();
        let mut writer = SegmentWriter::new(&["part-0.parquet".to_owned()]).unwrap();
        for entry in &entries {
            writer.push(entry.clone()).unwrap();
        }
        let (bytes, _) = writer.finish().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = Path::from("segment.parquet");
        let size = bytes.len() as u64;
        store.put(&path, PutPayload::from(bytes)).await.unwrap();
        let segment = Segment::open(&store, path, size).await.unwrap();
        assert!(
            segment.metadata.metadata().offset_index().is_some(),
            "segments carry a page index"
        );
        let all = segment.read_all(&store).await.unwrap();
        assert_eq!(all.len(), entries.len());
        let strings = |keys: &[&str]| keys.iter().map(|k| (*k).to_owned()).collect::<Vec<_>>();
        for (column, keys) in [
            (
                KeyColumn::OrderId,
                strings(&["O-0000007", "O-0069993", "O-0139993", "O-0000000"]),
            ),
            (
                KeyColumn::OrderId,
                strings(&["O-0000001", "O-9999999", "A", "O-0070001"]),
            ),
            (
                KeyColumn::CustomerId,
                strings(&["C-000000", "C-003333", "C-006666", "C-999999"]),
            ),
            (
                KeyColumn::CustomerId,
                (0..6_667)
                    .step_by(97)
                    .map(|i| format!("C-{i:06}"))
                    .collect(),
            ),
        ] {
            let mut probed = segment.lookup(&store, column, &keys).await.unwrap();
            let mut expected: Vec<IndexEntry> = all
                .iter()
                .filter(|e| e.column == column && keys.contains(&e.key))
                .cloned()
                .collect();
            probed.sort();
            expected.sort();
            assert_eq!(probed, expected, "{column:?} {keys:?}");
        }
    }
}
