//! The key index: from `order_id` and from `customer_id` to the event dates holding their rows, so
//! a lookup without a date opens the files of a few dates instead of every file of the archive.
//!
//! Layout: immutable segments under `<table>/_orderlake_index/` (see [`segment`]), each holding
//! sorted `(key column, key, event date)` entries and naming the data files it covers. Writers
//! add a segment for the files of each flush or import chunk *before* committing them;
//! maintenance merges segments and covers the files compaction writes.
//!
//! Why it can never hide a row: a reader takes, for a key, the live files whose date an entry
//! names **and** that some segment covers, plus every live file no segment covers (files
//! committed without a segment, or written by compaction and not yet covered). A covered file's
//! keys are all in its segment, so every file holding the key is read. Entries are per date, and
//! rows never leave their date, so compaction (which rewrites files within a date) cannot make
//! an entry wrong; it only leaves the new files uncovered until [`KeyIndex`] maintenance covers
//! them. A crash at any point leaves at worst a segment covering files that never went live, or
//! live files no segment covers: both only cost reading more.

pub mod merge;
pub mod segment;
mod upkeep;

pub use upkeep::{IndexCheck, IndexReport};

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, AsArray as _, RecordBatch};
use arrow::datatypes::{DataType, Date32Type};
use futures::TryStreamExt as _;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _};
use serde::Serialize;

pub use segment::{INDEX_DIR, Segment, SegmentWriter};

use crate::error::ArchiveError;
use crate::schema::{CUSTOMER_ID, EVENT_DATE, ORDER_ID};

/// Which column a key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[repr(u8)]
pub enum KeyColumn {
    OrderId = 0,
    CustomerId = 1,
}

impl KeyColumn {
    pub const ALL: [KeyColumn; 2] = [KeyColumn::OrderId, KeyColumn::CustomerId];

    pub fn name(self) -> &'static str {
        match self {
            Self::OrderId => ORDER_ID,
            Self::CustomerId => CUSTOMER_ID,
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    fn from_tag(tag: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|c| *c as u8 == tag)
    }
}

/// One index entry: rows with this key in this column exist on this date.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IndexEntry {
    pub column: KeyColumn,
    pub key: String,
    /// Days since 1970-01-01.
    pub date: i32,
}

type IndexResult<T> = Result<T, ArchiveError>;

fn segment_err(path: &Path) -> impl FnOnce(parquet::errors::ParquetError) -> ArchiveError + '_ {
    move |source| ArchiveError::IndexSegment {
        path: path.to_string(),
        source,
    }
}

fn store_err(path: &Path) -> impl FnOnce(object_store::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::IndexStore {
        path: path.to_string(),
        source,
    }
}

/// The sorted, distinct index entries of archive rows (`order_id`, `customer_id`, `event_date`).
pub fn entries_of_rows(batches: &[RecordBatch]) -> IndexResult<Vec<IndexEntry>> {
    let mut set = BTreeSet::new();
    for batch in batches {
        let dates = batch
            .column_by_name(EVENT_DATE)
            .ok_or(ArchiveError::IndexColumn(EVENT_DATE))?;
        let dates = arrow::compute::cast(dates, &DataType::Date32)
            .map_err(|_| ArchiveError::IndexColumn(EVENT_DATE))?;
        let dates = dates.as_primitive::<Date32Type>();
        for column in KeyColumn::ALL {
            let keys = batch
                .column_by_name(column.name())
                .ok_or(ArchiveError::IndexColumn(column.name()))?;
            let keys = arrow::compute::cast(keys, &DataType::Utf8)
                .map_err(|_| ArchiveError::IndexColumn(column.name()))?;
            let keys = keys.as_string::<i32>();
            for i in 0..batch.num_rows() {
                if keys.is_valid(i) && dates.is_valid(i) {
                    set.insert(IndexEntry {
                        column,
                        key: keys.value(i).to_owned(),
                        date: dates.value(i),
                    });
                }
            }
        }
    }
    Ok(set.into_iter().collect())
}

/// A data file's path as the index names it (as [`crate::ArchiveFile::relative_path`] does):
/// the Delta log's path, percent-decoded.
pub fn log_path(raw: &str) -> String {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned()
}

/// A new segment's path in the index folder: `seg-<unix ms>-<entries>-<random>.parquet`. The time
/// lets merges tell a young segment (its flush may still be committing) from an abandoned one;
/// the entry count lets the writer choose small segments to merge from a listing alone.
fn new_segment_path(entries: u64) -> Path {
    let name = format!(
        "seg-{:013}-{entries}-{:016x}.parquet",
        chrono::Utc::now().timestamp_millis(),
        rand::random::<u64>()
    );
    Path::from(INDEX_DIR).join(name)
}

/// When a segment was written and how many entries it holds, from its name.
fn segment_name_fields(path: &Path) -> Option<(i64, Option<u64>)> {
    let name = path
        .filename()?
        .strip_prefix("seg-")?
        .strip_suffix(".parquet")?;
    let mut fields = name.split('-');
    let written = fields.next()?.parse().ok()?;
    let entries = match (fields.next(), fields.next()) {
        (Some(entries), Some(_)) => entries.parse().ok(),
        _ => None,
    };
    Some((written, entries))
}

/// Stores a finished segment. Returns its path, size and entry count.
async fn put_segment(
    store: &Arc<dyn ObjectStore>,
    writer: SegmentWriter,
) -> IndexResult<(Path, u64, u64)> {
    let (bytes, entries) = writer
        .finish()
        .map_err(segment_err(&Path::from(INDEX_DIR)))?;
    let path = new_segment_path(entries);
    let size = bytes.len() as u64;
    store
        .put(&path, bytes.into())
        .await
        .map_err(store_err(&path))?;
    Ok((path, size, entries))
}

/// Writes a segment holding sorted, distinct `entries` and covering `covers` (table-relative
/// data file paths) into the table-rooted `store`. Returns its path.
pub async fn write_segment(
    store: &Arc<dyn ObjectStore>,
    entries: Vec<IndexEntry>,
    covers: &[String],
) -> IndexResult<Path> {
    let mut writer = SegmentWriter::new(covers).map_err(segment_err(&Path::from(INDEX_DIR)))?;
    for entry in entries {
        writer
            .push(entry)
            .map_err(segment_err(&Path::from(INDEX_DIR)))?;
    }
    Ok(put_segment(store, writer).await?.0)
}

/// Deletes segments (already gone is fine: another merge took them).
async fn delete_segments(store: &Arc<dyn ObjectStore>, paths: &[Path]) -> IndexResult<()> {
    for path in paths {
        match store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store_err(path)(e)),
        }
    }
    Ok(())
}

/// Every segment in the index folder, with its size, oldest first.
pub async fn list_segments(store: &Arc<dyn ObjectStore>) -> IndexResult<Vec<(Path, u64)>> {
    let dir = Path::from(INDEX_DIR);
    let mut found: Vec<(Path, u64)> = store
        .list(Some(&dir))
        .map_ok(|m| (m.location, m.size))
        .try_collect()
        .await
        .map_err(store_err(&dir))?;
    found.retain(|(p, _)| p.extension() == Some("parquet"));
    found.sort();
    Ok(found)
}

/// Segments this small are read whole when the index loads, so a lookup never touches them: the
/// many small segments a streaming archiver writes between merges cost memory, not requests.
const IN_MEMORY_ENTRIES: u64 = 64 * 1024;

/// The index as a reader sees it: every segment's footer, small segments' entries in memory,
/// and which data files are covered.
#[derive(Debug, Clone, Default)]
pub struct KeyIndex {
    large: Vec<Arc<Segment>>,
    small: Arc<HashMap<(KeyColumn, String), Vec<i32>>>,
    small_segments: Vec<Arc<Segment>>,
    covered: Arc<HashSet<String>>,
    bytes: u64,
}

/// What [`KeyIndex::load`] can reuse from the previous load: segments never change.
pub type SegmentCache = HashMap<Path, (Arc<Segment>, Option<Arc<Vec<IndexEntry>>>)>;

impl KeyIndex {
    /// Loads the index from the table-rooted `store`, reusing what `cache` already holds and
    /// leaving in it exactly the segments now present.
    pub async fn load(store: &Arc<dyn ObjectStore>, cache: &mut SegmentCache) -> IndexResult<Self> {
        let listed = list_segments(store).await?;
        let present: HashSet<&Path> = listed.iter().map(|(p, _)| p).collect();
        cache.retain(|p, _| present.contains(p));
        for (path, size) in &listed {
            if cache.contains_key(path) {
                continue;
            }
            // Deleted by a merge between listing and reading (its footer or, for a small one,
            // its entries): its entries live on in the merged segment, which the listing will
            // show next time. Skipped, its files count as uncovered, so lookups read them.
            let segment = match Segment::open(store, path.clone(), *size).await {
                Ok(s) => Arc::new(s),
                Err(e) if crate::parquet_io::is_not_found(&e) => continue,
                Err(e) => return Err(segment_err(path)(e)),
            };
            let entries = if segment.entries <= IN_MEMORY_ENTRIES {
                match segment.read_all(store).await {
                    Ok(entries) => Some(Arc::new(entries)),
                    Err(e) if crate::parquet_io::is_not_found(&e) => continue,
                    Err(e) => return Err(segment_err(path)(e)),
                }
            } else {
                None
            };
            cache.insert(path.clone(), (segment, entries));
        }
        let mut index = KeyIndex::default();
        let mut small = HashMap::<(KeyColumn, String), Vec<i32>>::new();
        let mut covered = HashSet::new();
        for (segment, entries) in cache.values() {
            index.bytes += segment.size;
            covered.extend(segment.covers.iter().cloned());
            match entries {
                Some(entries) => {
                    for e in entries.iter() {
                        small
                            .entry((e.column, e.key.clone()))
                            .or_default()
                            .push(e.date);
                    }
                    index.small_segments.push(Arc::clone(segment));
                }
                None => index.large.push(Arc::clone(segment)),
            }
        }
        index.small = Arc::new(small);
        index.covered = Arc::new(covered);
        Ok(index)
    }

    /// The index without the large segments that cover none of the `live` files (left behind
    /// by a compaction until a maintenance run an hour later deletes them): lookups stop
    /// probing them. Their entries speak only for files that are gone; every live file keeps the
    /// segments that cover it. Measured: four such segments beside the live one made every
    /// probe read five.
    pub fn for_live_files(mut self, live: &HashSet<&str>) -> Self {
        self.large
            .retain(|s| s.covers.iter().any(|f| live.contains(f.as_str())));
        self
    }

    /// Whether the data file at this table-relative path has its keys in the index.
    pub fn covers(&self, relative_path: &str) -> bool {
        self.covered.contains(relative_path)
    }

    /// The dates whose covered files may hold rows with any of `keys` in `column`.
    pub async fn dates_for(
        &self,
        store: &Arc<dyn ObjectStore>,
        column: KeyColumn,
        keys: &[String],
    ) -> IndexResult<HashSet<i32>> {
        let mut dates = HashSet::new();
        for key in keys {
            if let Some(found) = self.small.get(&(column, key.clone())) {
                dates.extend(found.iter().copied());
            }
        }
        let lookups = self.large.iter().map(|segment| async move {
            segment
                .lookup(store, column, keys)
                .await
                .map_err(segment_err(&segment.path))
        });
        for found in futures::future::try_join_all(lookups).await? {
            dates.extend(found.into_iter().map(|e| e.date));
        }
        Ok(dates)
    }

    pub fn summary(&self) -> IndexSummary {
        let all = self.large.iter().chain(&self.small_segments);
        IndexSummary {
            segments: self.large.len() + self.small_segments.len(),
            entries: all.clone().map(|s| s.entries).sum(),
            bytes: self.bytes,
            covered_files: self.covered.len(),
        }
    }
}

/// What the index holds, for `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IndexSummary {
    pub segments: usize,
    pub entries: u64,
    pub bytes: u64,
    /// Data files (live or not) whose keys the index holds.
    pub covered_files: usize,
}

impl crate::table::ArchiveTable {
    /// The object store rooted at the table, where the index folder lives.
    pub fn index_store(&self) -> Arc<dyn ObjectStore> {
        self.delta().log_store().object_store(None)
    }

    /// The key index as it is now.
    pub async fn key_index(&self, cache: &mut SegmentCache) -> IndexResult<KeyIndex> {
        KeyIndex::load(&self.index_store(), cache).await
    }
}
