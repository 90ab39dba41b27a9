//! What a key lookup's scan reads more than once, kept in the session's metadata cache.
//!
//! DataFusion 55's Parquet opener asks for footers without page indexes and, when a scan prunes
//! by pages, reads them from the file afterwards without caching them: every lookup read them
//! again (53 MB and 90 ms of opening for a customer's 70 monthly files). It also reads the bloom
//! filter of every row group it asks about from the file, on every query (about 30 row groups
//! for one order on the 50M archive). A reader of this factory asks for footers *with* page
//! indexes, so the cache loads them once per file, and serves a bloom filter from the cache once
//! it has been read. Both are immutable parts of immutable files; the cache's byte limit and LRU
//! order bound them together with the footers.

use std::any::Any;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::common::HashMap;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::{
    CachedParquetFileReaderFactory, ParquetFileReaderFactory,
};
use datafusion::execution::cache::cache_manager::{
    CachedFileMetadataEntry, FileMetadata, FileMetadataCache,
};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use object_store::ObjectMeta;
use object_store::path::Path;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};

/// Readers for key lookups: footers with page indexes, and bloom filters, through the session's
/// metadata cache.
#[derive(Debug)]
pub struct LookupReaderFactory {
    readers: CachedParquetFileReaderFactory,
    cache: Arc<FileMetadataCache>,
}

impl LookupReaderFactory {
    /// `readers` must read footers through `cache`.
    pub fn new(readers: CachedParquetFileReaderFactory, cache: Arc<FileMetadataCache>) -> Self {
        Self { readers, cache }
    }
}

/// The readers of a scan of files in the store at `url`, through the session's metadata cache,
/// which outlives queries and versions (a file's footer never changes): footers from it always
/// (DataFusion's own default factory reads every footer again: 0.4 s of a scan over 2,900
/// files), page indexes and bloom filters too when `lookup` (a key lookup's scan).
pub(crate) fn cached_readers(
    runtime: &RuntimeEnv,
    url: &ObjectStoreUrl,
    lookup: bool,
) -> datafusion::error::Result<Arc<dyn ParquetFileReaderFactory>> {
    let store = runtime.object_store(url)?;
    let cache = runtime.cache_manager.get_file_metadata_cache();
    let cached = CachedParquetFileReaderFactory::new(store, Arc::clone(&cache));
    Ok(if lookup {
        Arc::new(LookupReaderFactory::new(cached, cache))
    } else {
        Arc::new(cached)
    })
}

impl ParquetFileReaderFactory for LookupReaderFactory {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> datafusion::error::Result<Box<dyn AsyncFileReader + Send>> {
        let object = file.object_meta.clone();
        let inner =
            self.readers
                .create_reader(partition_index, file, metadata_size_hint, metrics)?;
        Ok(Box::new(LookupReader {
            inner,
            object,
            cache: Arc::clone(&self.cache),
            metadata: None,
        }))
    }
}

struct LookupReader {
    inner: Box<dyn AsyncFileReader + Send>,
    object: ObjectMeta,
    cache: Arc<FileMetadataCache>,
    /// The footer this reader handed out: it tells which ranges are bloom filters.
    metadata: Option<Arc<ParquetMetaData>>,
}

impl LookupReader {
    /// The cache part naming the bloom filter at `range`, if `range` is exactly one column
    /// chunk's bloom filter as the footer records it (parquet-rs reads a filter in one such range
    /// when the writer recorded its length, as every writer of the archive does).
    fn bloom_filter_part(&self, range: &Range<u64>) -> Option<String> {
        let metadata = self.metadata.as_ref()?;
        let is_filter = metadata
            .row_groups()
            .iter()
            .flat_map(|group| group.columns())
            .any(|chunk| {
                chunk.bloom_filter_offset() == i64::try_from(range.start).ok()
                    && chunk
                        .bloom_filter_length()
                        .is_some_and(|length| range.end - range.start == length as u64)
            });
        is_filter.then(|| format!("bloom-filter@{}+{}", range.start, range.end - range.start))
    }
}

/// An immutable part of a file made from its bytes (a bloom filter, a reader's set-up), kept in
/// the session's metadata cache beside the file's footer.
struct CachedPart<T> {
    value: T,
    bytes: usize,
    kind: &'static str,
}

impl<T: Send + Sync + 'static> FileMetadata for CachedPart<T> {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn memory_size(&self) -> usize {
        self.bytes
    }

    fn extra_info(&self) -> HashMap<String, String> {
        HashMap::from([("kind".to_owned(), self.kind.to_owned())])
    }
}

/// The cache key of `object`'s part `part`: a file is an object, never a prefix, so no object
/// can have this key's path.
fn part_key(object: &ObjectMeta, part: &str) -> Path {
    object.location.clone().join(part)
}

/// `object`'s part `part` of type `T`, if an earlier query kept it in `cache` (for this very
/// object: same size and modification time).
pub(crate) fn cached_part<T: Clone + Send + Sync + 'static>(
    cache: &FileMetadataCache,
    object: &ObjectMeta,
    part: &str,
) -> Option<T> {
    let entry = cache.get(&part_key(object, part))?;
    if !entry.is_valid_for(object) {
        return None;
    }
    let part = entry
        .file_metadata
        .as_any()
        .downcast_ref::<CachedPart<T>>()?;
    Some(part.value.clone())
}

/// Keeps `object`'s part `part` in `cache`, counted as `bytes` against the cache's limit.
pub(crate) fn keep_part<T: Send + Sync + 'static>(
    cache: &FileMetadataCache,
    object: &ObjectMeta,
    part: &str,
    kind: &'static str,
    value: T,
    bytes: usize,
) {
    let entry = CachedPart { value, bytes, kind };
    cache.put(
        &part_key(object, part),
        CachedFileMetadataEntry::new(object.clone(), Arc::new(entry)),
    );
}

impl AsyncFileReader for LookupReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        let Some(part) = self.bloom_filter_part(&range) else {
            return self.inner.get_bytes(range);
        };
        if let Some(bytes) = cached_part::<Bytes>(&*self.cache, &self.object, &part) {
            return async move { Ok(bytes) }.boxed();
        }
        async move {
            let bytes = self.inner.get_bytes(range).await?;
            let size = bytes.len();
            keep_part(
                &*self.cache,
                &self.object,
                &part,
                "bloom filter",
                bytes.clone(),
                size,
            );
            Ok(bytes)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        self.inner.get_byte_ranges(ranges)
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        let options = options
            .cloned()
            .unwrap_or_default()
            .with_page_index_policy(PageIndexPolicy::Optional);
        async move {
            let metadata = self.inner.get_metadata(Some(&options)).await?;
            self.metadata = Some(Arc::clone(&metadata));
            Ok(metadata)
        }
        .boxed()
    }
}
