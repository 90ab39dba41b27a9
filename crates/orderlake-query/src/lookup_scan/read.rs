//! Reading one file of a key lookup: its reader set-up from the metadata cache, the row groups
//! and pages that can hold the keys, the key columns decoded first, the rows holding a key
//! conformed to the table's columns, filtered and projected.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, AsArray as _, BooleanArray, RecordBatch, RecordBatchOptions, new_null_array,
};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::SchemaRef;
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::ParquetFileReaderFactory;
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::error::Result;
use datafusion::execution::cache::cache_manager::FileMetadataCache;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::metrics::{Count, ExecutionPlanMetricsSet, MetricBuilder};
use futures::TryStreamExt as _;
use object_store::ObjectStore;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowPredicateFn, ArrowReaderMetadata, ArrowReaderOptions, RowFilter, RowSelection, RowSelector,
};
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::statistics::Statistics as ParquetStatistics;

use crate::lookup_reader::{cached_part, keep_part};

/// What reading a file of the lookup takes, shared by its files.
#[derive(Debug)]
pub(super) struct ReadPlan {
    pub(super) keys: Vec<(String, Vec<Vec<u8>>)>,
    /// The key columns, as the table types them, and the lookup over them.
    pub(super) key_schema: SchemaRef,
    pub(super) key_expr: Arc<dyn PhysicalExpr>,
    /// The table's columns the projection and the predicate's rest use, and those two over
    /// them.
    pub(super) columns: SchemaRef,
    pub(super) rest: Option<Arc<dyn PhysicalExpr>>,
    pub(super) projection: Vec<(Arc<dyn PhysicalExpr>, String)>,
    pub(super) output: SchemaRef,
    /// The partition columns among `columns`, with their place in a file's partition values.
    pub(super) partition_columns: HashMap<String, usize>,
}

/// The lookup's counters, shown by EXPLAIN ANALYZE.
pub(super) struct Counts {
    files_opened: Count,
    row_groups_read: Count,
    rows_selected: Count,
}

impl Counts {
    pub(super) fn new(metrics: &ExecutionPlanMetricsSet, partition: usize) -> Self {
        let count = |name| MetricBuilder::new(metrics).counter(name, partition);
        Self {
            files_opened: count("files_opened"),
            row_groups_read: count("row_groups_read"),
            rows_selected: count("rows_selected_by_page_index"),
        }
    }
}

pub(super) struct Reading {
    pub(super) plan: Arc<ReadPlan>,
    pub(super) readers: Arc<dyn ParquetFileReaderFactory>,
    pub(super) store: Arc<dyn ObjectStore>,
    pub(super) cache: Arc<FileMetadataCache>,
    pub(super) batch_size: usize,
    pub(super) bloom_filters: bool,
    pub(super) partition: usize,
    pub(super) counts: Counts,
    pub(super) metrics: ExecutionPlanMetricsSet,
}

impl Reading {
    /// The rows of `file` that pass the predicate, projected.
    pub(super) async fn read(self: Arc<Self>, file: PartitionedFile) -> Result<Vec<RecordBatch>> {
        let metadata = self.reader_metadata(&file).await?;
        let reader: Box<dyn AsyncFileReader> =
            self.readers
                .create_reader(self.partition, file.clone(), None, &self.metrics)?;
        let mut builder = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, metadata);
        let parquet = Arc::clone(builder.metadata());
        let descr = parquet.file_metadata().schema_descr_ptr();
        let leaves: Vec<(usize, &[Vec<u8>])> = self
            .plan
            .keys
            .iter()
            .filter_map(|(c, keys)| {
                let leaf = descr
                    .columns()
                    .iter()
                    .position(|l| l.path().string() == *c)?;
                Some((leaf, keys.as_slice()))
            })
            .collect();
        self.counts.files_opened.add(1);
        let mut groups = Vec::new();
        for group in 0..parquet.num_row_groups() {
            if self.admits(&mut builder, &parquet, group, &leaves).await? {
                groups.push(group);
            }
        }
        let (groups, selection) = page_selection(&parquet, &groups, &leaves);
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        self.counts.row_groups_read.add(groups.len());
        self.counts.rows_selected.add(selection.row_count());

        let file_schema = Arc::clone(builder.schema());
        let roots = |names: &mut dyn Iterator<Item = &String>| {
            let indices: Vec<usize> = names.filter_map(|n| file_schema.index_of(n).ok()).collect();
            ProjectionMask::roots(&descr, indices)
        };
        let plan = Arc::clone(&self.plan);
        let key_filter = ArrowPredicateFn::new(
            roots(&mut plan.key_schema.fields().iter().map(|f| f.name())),
            move |batch| {
                let holds_key = || -> Result<BooleanArray> {
                    let keys = conform(&batch, &plan.key_schema, &[], &HashMap::new())?;
                    let holds = plan.key_expr.evaluate(&keys)?;
                    Ok(holds.into_array(keys.num_rows())?.as_boolean().clone())
                };
                holds_key().map_err(|e| arrow::error::ArrowError::ExternalError(Box::new(e)))
            },
        );
        let stream = builder
            .with_row_groups(groups)
            .with_row_selection(selection)
            .with_projection(roots(
                &mut self.plan.columns.fields().iter().map(|f| f.name()),
            ))
            .with_row_filter(RowFilter::new(vec![Box::new(key_filter)]))
            .with_batch_size(self.batch_size)
            .build()?;
        let batches: Vec<RecordBatch> = stream.try_collect().await?;
        batches
            .iter()
            .map(|batch| self.finish(batch, &file))
            .filter(|b| b.as_ref().map_or(true, |b| b.num_rows() > 0))
            .collect()
    }

    /// Whether row group `group` of `parquet` can hold one of the keys, by its statistics and,
    /// when the scan asks for them, its bloom filters.
    async fn admits(
        &self,
        builder: &mut ParquetRecordBatchStreamBuilder<Box<dyn AsyncFileReader>>,
        parquet: &ParquetMetaData,
        group: usize,
        leaves: &[(usize, &[Vec<u8>])],
    ) -> Result<bool> {
        let chunks = parquet.row_group(group).columns();
        for &(leaf, keys) in leaves {
            let bounds = match chunks[leaf].statistics() {
                Some(ParquetStatistics::ByteArray(s)) => s.min_bytes_opt().zip(s.max_bytes_opt()),
                _ => None,
            };
            let admitted = |k: &&Vec<u8>| bounds.is_none_or(|(lo, hi)| between(k, lo, hi));
            if !keys.iter().any(|k| admitted(&k)) {
                continue;
            }
            if !self.bloom_filters {
                return Ok(true);
            }
            match builder
                .get_row_group_column_bloom_filter(group, leaf)
                .await?
            {
                Some(filter) => {
                    if keys
                        .iter()
                        .filter(admitted)
                        .any(|k| filter.check(k.as_slice()))
                    {
                        return Ok(true);
                    }
                }
                None => return Ok(true),
            }
        }
        Ok(false)
    }

    /// A batch read from `file` as the table types its columns, filtered by the predicate and
    /// projected.
    fn finish(&self, batch: &RecordBatch, file: &PartitionedFile) -> Result<RecordBatch> {
        let plan = &self.plan;
        let mut rows = conform(
            batch,
            &plan.columns,
            &file.partition_values,
            &plan.partition_columns,
        )?;
        if let Some(rest) = &plan.rest {
            let keep = rest.evaluate(&rows)?.into_array(rows.num_rows())?;
            rows = filter_record_batch(&rows, keep.as_boolean())?;
        }
        let columns = plan
            .projection
            .iter()
            .map(|(e, _)| e.evaluate(&rows)?.into_array(rows.num_rows()))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let counted = RecordBatchOptions::new().with_row_count(Some(rows.num_rows()));
        Ok(RecordBatch::try_new_with_options(
            Arc::clone(&plan.output),
            columns,
            &counted,
        )?)
    }

    /// `file`'s Arrow reader set-up (footer, page index, Arrow schema), from the session's
    /// metadata cache when an earlier query made it.
    async fn reader_metadata(&self, file: &PartitionedFile) -> Result<ArrowReaderMetadata> {
        const PART: &str = "arrow-reader-metadata";
        let object = &file.object_meta;
        if let Some(metadata) = cached_part::<ArrowReaderMetadata>(&*self.cache, object, PART) {
            return Ok(metadata);
        }
        let parquet: Arc<ParquetMetaData> = DFParquetMetadata::new(self.store.as_ref(), object)
            .with_file_metadata_cache(Some(Arc::clone(&self.cache)))
            .with_page_index_policy(Some(PageIndexPolicy::Optional))
            .fetch_metadata()
            .await?;
        let metadata = ArrowReaderMetadata::try_new(parquet, ArrowReaderOptions::new())?;
        // The footer's size (shared with the footer's own entry, counted twice to stay within
        // the cache's limit), and the Arrow schema's.
        let bytes = metadata.metadata().memory_size() + 64 * metadata.schema().fields().len();
        let kind = "arrow reader metadata";
        keep_part(&*self.cache, object, PART, kind, metadata.clone(), bytes);
        Ok(metadata)
    }
}

/// The row groups of `groups` with a page whose statistics admit one of the keys of one of
/// `leaves`, and the rows of those pages (a row group without a page index is selected whole).
fn page_selection(
    parquet: &ParquetMetaData,
    groups: &[usize],
    leaves: &[(usize, &[Vec<u8>])],
) -> (Vec<usize>, RowSelection) {
    let mut kept = Vec::new();
    let mut selectors = Vec::new();
    for &group in groups {
        let rows = parquet.row_group(group).num_rows() as usize;
        let mut chosen: Option<RowSelection> = None;
        for &(leaf, keys) in leaves {
            let pages = page_rows(parquet, group, leaf, keys)
                .unwrap_or_else(|| vec![RowSelector::select(rows)]);
            let pages = RowSelection::from(pages);
            chosen = Some(match chosen {
                Some(c) => c.union(&pages),
                None => pages,
            });
        }
        let chosen = chosen.unwrap_or_else(|| RowSelection::from(vec![RowSelector::select(rows)]));
        if chosen.selects_any() {
            kept.push(group);
            selectors.extend(Vec::<RowSelector>::from(chosen));
        }
    }
    (kept, RowSelection::from(selectors))
}

/// The selectors of row group `group`'s pages of column `leaf` that can hold one of `keys`, or
/// `None` when the file has no page index for it.
fn page_rows(
    parquet: &ParquetMetaData,
    group: usize,
    leaf: usize,
    keys: &[Vec<u8>],
) -> Option<Vec<RowSelector>> {
    let index = parquet.column_index()?.get(group)?.get(leaf)?;
    let locations = parquet
        .offset_index()?
        .get(group)?
        .get(leaf)?
        .page_locations();
    let ColumnIndexMetaData::BYTE_ARRAY(index) = index else {
        return None;
    };
    let rows = parquet.row_group(group).num_rows();
    let mut selectors = Vec::with_capacity(locations.len());
    for (page, location) in locations.iter().enumerate() {
        let end = locations.get(page + 1).map_or(rows, |l| l.first_row_index);
        let count = (end - location.first_row_index) as usize;
        let holds = match (index.min_value(page), index.max_value(page)) {
            (Some(lo), Some(hi)) => keys.iter().any(|k| between(k, lo, hi)),
            // A page of nulls holds no key.
            _ => !index.is_null_page(page),
        };
        selectors.push(if holds {
            RowSelector::select(count)
        } else {
            RowSelector::skip(count)
        });
    }
    Some(selectors)
}

/// Whether `key` lies within statistics' bounds `lo..=hi` (bytes, as Parquet orders strings).
fn between(key: &[u8], lo: &[u8], hi: &[u8]) -> bool {
    lo <= key && key <= hi
}

/// `batch` (columns read from a file, by name) as the columns of `schema`: each cast to the
/// table's type where the file's differs, a column the file lacks (added to the archive later)
/// as nulls, a partition column from `values`.
fn conform(
    batch: &RecordBatch,
    schema: &SchemaRef,
    values: &[ScalarValue],
    partition_columns: &HashMap<String, usize>,
) -> Result<RecordBatch> {
    let rows = batch.num_rows();
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            let column = match partition_columns.get(field.name()) {
                Some(&at) => {
                    let value = values.get(at).ok_or_else(|| {
                        DataFusionError::Internal(format!("no value for {}", field.name()))
                    })?;
                    value.to_array_of_size(rows)?
                }
                None => match batch.column_by_name(field.name()) {
                    Some(column) => Arc::clone(column),
                    None => return Ok(new_null_array(field.data_type(), rows)),
                },
            };
            if column.data_type() == field.data_type() {
                Ok(column)
            } else {
                Ok(cast(&column, field.data_type())?)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Date32Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn a_files_columns_are_conformed_to_the_tables() {
        // A file written before `cdc_op` existed, with its ids as plain strings.
        let file = RecordBatch::try_from_iter([
            (
                "order_id",
                Arc::new(StringArray::from(vec!["A", "B"])) as ArrayRef,
            ),
            ("kafka_offset", Arc::new(Int64Array::from(vec![7, 8]))),
        ])
        .unwrap();
        let table = Arc::new(Schema::new(vec![
            Field::new("kafka_offset", DataType::Int64, true),
            Field::new("order_id", DataType::Utf8View, true),
            Field::new("cdc_op", DataType::Utf8, true),
            Field::new("event_date", DataType::Date32, false),
        ]));
        let partition = HashMap::from([("event_date".to_owned(), 0)]);
        let rows = conform(
            &file,
            &table,
            &[ScalarValue::Date32(Some(20_000))],
            &partition,
        )
        .unwrap();
        assert_eq!(rows.schema(), table);
        assert_eq!(
            rows.column(1).as_string_view().iter().collect::<Vec<_>>(),
            [Some("A"), Some("B")]
        );
        assert_eq!(rows.column(2).null_count(), 2);
        assert_eq!(
            rows.column(3)
                .as_primitive::<arrow::datatypes::Date32Type>(),
            &Date32Array::from(vec![20_000, 20_000])
        );
        // No column asked for: the rows are still counted.
        let none = conform(&file, &Arc::new(Schema::empty()), &[], &HashMap::new()).unwrap();
        assert_eq!(none.num_rows(), 2);
    }
}
