//! The scan built for the archive: a table provider over one table version's file list, read from
//! the Delta log once per version. Each query's filters prune whole files by their partition
//! value and log statistics before any file is opened; what remains is handed to DataFusion's
//! plain Parquet scan (`DataSourceExec` over listed files), which prunes row groups by footer
//! statistics from the shared metadata cache (and bloom filters, for lookups). The plan
//! holds nothing Delta-specific, so it can run anywhere the object store can be reached.
//!
//! Lookups by `order_id` or `customer_id` (`=` or `IN`, literals or bound parameters) also ask
//! the key index for the dates holding the keys: of the files the index covers, only those of
//! such dates are read; files it does not cover are always read. `EXPLAIN ANALYZE` shows both
//! counts on the scan (`files_pruned_by_statistics`, `files_pruned_by_index`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Date32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::stats::Precision;
use datafusion::common::{Column, DFSchema, ScalarValue, Statistics};
use datafusion::config::TableParquetOptions;
use datafusion::datasource::TableProvider;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{
    FileGroup, FileScanConfig, FileScanConfigBuilder, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, Operator, TableProviderFilterPushDown, TableType};
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::metrics::MetricBuilder;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};
use orderlake_archive::key_index::{KeyColumn, KeyIndex};
use orderlake_archive::schema::EVENT_DATE;
use orderlake_archive::{ArchiveFile, ArchiveFiles};

use crate::join_keys::KeyJoinScan;
use crate::lookup_reader::cached_readers;

/// `order_events` over one version of the archive.
#[derive(Debug)]
pub struct ArchiveScanProvider {
    files: Arc<ArchiveFiles>,
    /// The key index and the table-rooted store its segments live in; `None` reads every file
    /// the statistics leave.
    index: Option<(KeyIndex, Arc<dyn ObjectStore>)>,
    /// The table's columns, in the archive's order.
    schema: SchemaRef,
    /// The columns stored in the Parquet files: all but `event_date` when it is the partition
    /// column (then given as each file's partition value), all of them otherwise (a monthly
    /// table's `event_month` is not shown: it repeats `event_date`'s month).
    file_schema: SchemaRef,
    /// `event_date`, when it is the partition column.
    partition_field: Option<Arc<Field>>,
    /// Where each of the table's columns is in the file scan's output (the file columns, then
    /// the partition column): `event_date` precedes the columns added to the archive later, but
    /// a partition column comes last there.
    scan_columns: Vec<usize>,
    /// Each file's first and last event date, as statistics arrays.
    first_dates: ArrayRef,
    last_dates: ArrayRef,
    row_counts: ArrayRef,
    /// The files the index covers, with their dates.
    covered: Arc<CoveredDates>,
}

/// The dates of each data file the key index covers (its first and last), by location. A covered
/// file can hold a key only if one of its dates does; a file the index does not cover can hold
/// any key.
#[derive(Debug, Default)]
pub(crate) struct CoveredDates(HashMap<Path, (i32, i32)>);

impl CoveredDates {
    fn new(files: &ArchiveFiles, index: &KeyIndex) -> Self {
        Self(
            files
                .files
                .iter()
                .filter(|f| index.covers(&f.relative_path))
                .filter_map(|f| Some((f.path.clone(), f.dates?)))
                .collect(),
        )
    }

    /// Whether the file at `path` holds none of the keys whose rows lie on `dates`.
    pub(crate) fn rules_out(&self, path: &Path, dates: &HashSet<i32>) -> bool {
        self.0
            .get(path)
            .is_some_and(|(first, last)| !dates.iter().any(|d| first <= d && d <= last))
    }
}

impl ArchiveScanProvider {
    pub fn new(
        files: Arc<ArchiveFiles>,
        index: Option<(KeyIndex, Arc<dyn ObjectStore>)>,
    ) -> Result<Self> {
        let schema = Arc::clone(&files.schema);
        let (file_schema, partition_field) = if files.partitioning.stores_event_date() {
            (Arc::clone(&schema), None)
        } else {
            let file_schema = Schema::new(
                schema
                    .fields()
                    .iter()
                    .filter(|f| f.name() != EVENT_DATE)
                    .cloned()
                    .collect::<Vec<_>>(),
            );
            let field = schema.field_with_name(EVENT_DATE)?.clone();
            (Arc::new(file_schema), Some(Arc::new(field)))
        };
        let scan_columns = schema
            .fields()
            .iter()
            .map(|f| {
                file_schema
                    .index_of(f.name())
                    .unwrap_or(file_schema.fields().len())
            })
            .collect();
        let first_dates: Date32Array = files.files.iter().map(|f| Some(f.dates?.0)).collect();
        let last_dates: Date32Array = files.files.iter().map(|f| Some(f.dates?.1)).collect();
        let row_counts: UInt64Array = files.files.iter().map(|f| f.rows).collect();
        let covered = match &index {
            Some((index, _)) => CoveredDates::new(&files, index),
            None => CoveredDates::default(),
        };
        Ok(Self {
            covered: Arc::new(covered),
            schema,
            file_schema,
            partition_field,
            scan_columns,
            first_dates: Arc::new(first_dates),
            last_dates: Arc::new(last_dates),
            row_counts: Arc::new(row_counts),
            files,
            index,
        })
    }

    /// The table version this provider reads.
    pub fn version(&self) -> u64 {
        self.files.version
    }

    /// Which files can hold rows matching every one of `filters`, by their partition value and
    /// log statistics. A filter that cannot be judged on statistics keeps every file.
    pub fn prune(&self, session: &dyn Session, filters: &[Expr]) -> Result<Vec<bool>> {
        let all = vec![true; self.files.files.len()];
        let Some(predicate) = conjunction(filters.iter().cloned()) else {
            return Ok(all);
        };
        let df_schema = DFSchema::try_from(Arc::clone(&self.schema))?;
        let physical = session.create_physical_expr(predicate, &df_schema)?;
        // `None`: nothing in the filters can be judged on statistics (or it is always true).
        match PruningPredicateBuilder::new()
            .with_file_schema(Arc::clone(&self.schema))
            .build(physical)
        {
            Some(pruning) => pruning.prune(self),
            None => Ok(all),
        }
    }

    /// Narrows `keep` to the files that can hold the keys `filters` look up, by the key index.
    /// Returns how many files it ruled out.
    async fn prune_by_index(&self, filters: &[Expr], keep: &mut [bool]) -> Result<usize> {
        let Some((index, store)) = &self.index else {
            return Ok(0);
        };
        let mut pruned = 0;
        for lookups in filters.iter().filter_map(key_lookup) {
            // A row passes the filter only if one of the lookups finds it: the union of their
            // dates holds every such row.
            let mut dates = HashSet::new();
            for (column, keys) in lookups {
                let found = index
                    .dates_for(store, column, &keys)
                    .await
                    .map_err(|e| DataFusionError::External(Box::new(e)))?;
                dates.extend(found);
            }
            for (file, keep) in self.files.files.iter().zip(keep.iter_mut()) {
                if *keep && self.covered.rules_out(&file.path, &dates) {
                    *keep = false;
                    pruned += 1;
                }
            }
        }
        Ok(pruned)
    }

    fn partitioned_file(&self, file: &ArchiveFile) -> PartitionedFile {
        let mut partitioned: PartitionedFile = ObjectMeta {
            location: file.path.clone(),
            last_modified: chrono::DateTime::UNIX_EPOCH,
            size: file.size,
            e_tag: None,
            version: None,
        }
        .into();
        if self.partition_field.is_some() {
            partitioned.partition_values = vec![ScalarValue::Date32(file.dates.map(|d| d.0))];
        }
        partitioned
    }
}

/// The keys a filter looks up, as lookups of which a passing row matches at least one:
/// `order_id = 'k'`, `'k' = order_id`, `order_id IN ('a', 'b')` (and the same for `customer_id`),
/// and `OR`s of those (DataFusion rewrites a short `IN` list as `=`s joined by `OR`), as
/// [`literal_disjuncts`] reads them. Keys of one column are gathered into one lookup.
fn key_lookup(filter: &Expr) -> Option<Vec<(KeyColumn, Vec<String>)>> {
    let mut lookups: Vec<(KeyColumn, Vec<String>)> = Vec::new();
    for (column, values) in literal_disjuncts(filter)? {
        let column = KeyColumn::from_name(&column.name)?;
        let keys = values
            .into_iter()
            .map(|v| match v {
                ScalarValue::Utf8(Some(s))
                | ScalarValue::Utf8View(Some(s))
                | ScalarValue::LargeUtf8(Some(s)) => Some(s),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        match lookups.iter_mut().find(|(c, _)| *c == column) {
            Some((_, gathered)) => gathered.extend(keys),
            None => lookups.push((column, keys)),
        }
    }
    Some(lookups)
}

/// A filter that compares columns with non-null literals and passes a row only if one of the
/// comparisons does: `c = v`, `v = c`, `c IN (v, …)` and `OR`s of those; each comparison's column
/// and values. A cast to a string type around the column is looked through, which changes no
/// value of the string key columns this serves (the archive scan's key lookups, and the key
/// rewrite through aggregates); a cast around a literal is applied to it.
pub(crate) fn literal_disjuncts(filter: &Expr) -> Option<Vec<(&Column, Vec<ScalarValue>)>> {
    fn is_text(t: &DataType) -> bool {
        matches!(t, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8)
    }
    fn column(e: &Expr) -> Option<&Column> {
        match e {
            Expr::Column(c) => Some(c),
            Expr::Cast(c) if is_text(c.field.data_type()) => column(&c.expr),
            Expr::TryCast(c) if is_text(c.field.data_type()) => column(&c.expr),
            _ => None,
        }
    }
    fn literal(e: &Expr) -> Option<ScalarValue> {
        match e {
            Expr::Literal(v, _) if !v.is_null() => Some(v.clone()),
            Expr::Cast(c) => literal(&c.expr)?.cast_to(c.field.data_type()).ok(),
            _ => None,
        }
    }
    match filter {
        Expr::BinaryExpr(b) if b.op == Operator::Eq => {
            if let (Some(c), Some(v)) = (column(&b.left), literal(&b.right)) {
                return Some(vec![(c, vec![v])]);
            }
            Some(vec![(column(&b.right)?, vec![literal(&b.left)?])])
        }
        Expr::BinaryExpr(b) if b.op == Operator::Or => {
            let mut both = literal_disjuncts(&b.left)?;
            both.extend(literal_disjuncts(&b.right)?);
            Some(both)
        }
        Expr::InList(l) if !l.negated => {
            let c = column(&l.expr)?;
            let values = l.list.iter().map(literal).collect::<Option<Vec<_>>>()?;
            Some(vec![(c, values)])
        }
        _ => None,
    }
}

/// Sets a scan up as a key lookup's: it filters while decoding and prunes by page index (the
/// engine's defaults do neither), which [`is_key_lookup_scan`] recognises.
pub(crate) fn read_as_key_lookup(options: &mut TableParquetOptions) {
    options.global.pushdown_filters = true;
    options.global.enable_page_index = true;
}

/// Whether `config` is a key lookup's scan: one that filters while decoding and prunes by page
/// index, as [`ArchiveScanProvider::scan`] sets up a lookup by `order_id` or `customer_id` (the
/// engine's defaults do neither). It reads a few pages of the files it lists, not the files.
pub(crate) fn is_key_lookup_scan(config: &FileScanConfig) -> bool {
    config
        .file_source()
        .downcast_ref::<ParquetSource>()
        .is_some_and(|source| {
            let options = &source.table_parquet_options().global;
            options.pushdown_filters && options.enable_page_index
        })
}

/// Spreads files over `groups` groups of about equal bytes (largest first, each to the lightest
/// group), so each of the plan's partitions reads about as much.
fn balance(files: Vec<(PartitionedFile, u64)>, groups: usize) -> Vec<FileGroup> {
    let groups = groups.clamp(1, files.len().max(1));
    let mut files = files;
    files.sort_by_key(|(_, size)| std::cmp::Reverse(*size));
    let mut buckets: Vec<(u64, Vec<PartitionedFile>)> = vec![(0, Vec::new()); groups];
    for (file, size) in files {
        let lightest = buckets
            .iter_mut()
            .min_by_key(|(bytes, _)| *bytes)
            .expect("at least one group");
        lightest.0 += size;
        lightest.1.push(file);
    }
    buckets
        .into_iter()
        .filter(|(_, files)| !files.is_empty())
        .map(|(_, files)| FileGroup::new(files))
        .collect()
}

impl ArchiveScanProvider {
    /// The file scan's columns for the table's columns `projection` (all, when `None`), in the
    /// order asked for.
    fn scan_projection(&self, projection: Option<&Vec<usize>>) -> Vec<usize> {
        match projection {
            Some(columns) => columns.iter().map(|&i| self.scan_columns[i]).collect(),
            None => self.scan_columns.clone(),
        }
    }
}

#[async_trait]
impl TableProvider for ArchiveScanProvider {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Files are pruned by statistics, which can only rule files out: rows still pass the
        // filter, which the physical optimiser pushes into the Parquet scan.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut keep = self.prune(state, filters)?;
        let by_statistics = keep.iter().filter(|k| !**k).count();
        let by_index = self.prune_by_index(filters, &mut keep).await?;
        let chosen: Vec<&ArchiveFile> = self
            .files
            .files
            .iter()
            .zip(keep)
            .filter_map(|(file, keep)| keep.then_some(file))
            .collect();
        // Rows and bytes from the log, so that the planner builds joins on the smaller side
        // (which is what lets a lookup's keys narrow the other side's scan).
        let mut statistics = Statistics::new_unknown(&self.schema);
        statistics.num_rows = match chosen.iter().map(|f| f.rows).sum::<Option<u64>>() {
            Some(rows) => Precision::Exact(rows as usize),
            None => Precision::Absent,
        };
        statistics.total_byte_size =
            Precision::Inexact(chosen.iter().map(|f| f.size as usize).sum());
        let reads_uncovered = chosen.iter().any(|f| !self.covered.0.contains_key(&f.path));
        let selected: Vec<_> = chosen
            .into_iter()
            .map(|file| (self.partitioned_file(file), file.size))
            .collect();
        tracing::debug!(
            version = self.files.version,
            files = self.files.files.len(),
            selected = selected.len(),
            by_statistics,
            by_index,
            "archive scan planned"
        );
        if selected.is_empty() {
            let schema = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => self.schema(),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        let groups = balance(selected, state.config().target_partitions());
        let table_schema = TableSchema::builder(Arc::clone(&self.file_schema))
            .with_table_partition_cols(self.partition_field.iter().cloned().collect::<Vec<_>>())
            .build();
        let mut options = TableParquetOptions {
            global: state.config_options().execution.parquet.clone(),
            ..TableParquetOptions::default()
        };
        // A key lookup keeps few rows of each file it reads: filter while decoding, and read
        // only the pages whose statistics admit its keys (page indexes kept in the cache).
        // Compaction sorts by customer, so row-group statistics choose a customer's row groups
        // but not an order's: an order lookup asks the bloom filters, as does any lookup reading
        // files the index does not cover (in arrival order). The session's settings stand
        // otherwise (the engine's defaults: none of the three, measured in docs/benchmarks.md).
        let lookups: Vec<_> = filters.iter().filter_map(key_lookup).flatten().collect();
        if !lookups.is_empty() {
            read_as_key_lookup(&mut options);
            options.global.bloom_filter_on_read |=
                reads_uncovered || lookups.iter().any(|(c, _)| *c == KeyColumn::OrderId);
        }
        let factory = cached_readers(
            state.runtime_env(),
            &self.files.store_url,
            options.global.enable_page_index,
        )?;
        let source = ParquetSource::new(table_schema)
            .with_table_parquet_options(options)
            .with_parquet_file_reader_factory(factory);
        let config = FileScanConfigBuilder::new(self.files.store_url.clone(), Arc::new(source))
            .with_file_groups(groups)
            .with_projection_indices(Some(self.scan_projection(projection)))?
            .with_limit(limit)
            .with_statistics(statistics)
            .build();
        let metrics = config.file_source().metrics();
        MetricBuilder::new(metrics)
            .global_counter("files_pruned_by_statistics")
            .add(by_statistics);
        MetricBuilder::new(metrics)
            .global_counter("files_pruned_by_index")
            .add(by_index);
        match &self.index {
            Some((index, store)) if !self.covered.0.is_empty() => {
                Ok(DataSourceExec::from_data_source(KeyJoinScan::new(
                    config,
                    index.clone(),
                    Arc::clone(store),
                    Arc::clone(&self.covered),
                )))
            }
            _ => Ok(DataSourceExec::from_data_source(config)),
        }
    }
}

impl PruningStatistics for ArchiveScanProvider {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        if column.name == EVENT_DATE {
            return Some(Arc::clone(&self.first_dates));
        }
        self.files
            .statistics
            .get(&column.name)
            .map(|s| Arc::clone(&s.min))
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        if column.name == EVENT_DATE {
            return Some(Arc::clone(&self.last_dates));
        }
        self.files
            .statistics
            .get(&column.name)
            .map(|s| Arc::clone(&s.max))
    }

    fn num_containers(&self) -> usize {
        self.files.files.len()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        if column.name == EVENT_DATE {
            let zero: UInt64Array = self
                .files
                .files
                .iter()
                .map(|f| f.dates.map(|_| 0))
                .collect();
            return Some(Arc::new(zero));
        }
        self.files
            .statistics
            .get(&column.name)
            .map(|s| Arc::new(s.null_count.clone()) as ArrayRef)
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        Some(Arc::clone(&self.row_counts))
    }

    fn contained(&self, _column: &Column, _values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{cast, col, lit};

    #[test]
    fn key_lookups_are_recognised_in_equalities_in_lists_and_ors() {
        let one = |c: KeyColumn, keys: &[&str]| {
            Some(vec![(c, keys.iter().map(|k| k.to_string()).collect())])
        };
        assert_eq!(
            key_lookup(&col("order_id").eq(lit("A-1"))),
            one(KeyColumn::OrderId, &["A-1"])
        );
        assert_eq!(
            key_lookup(&lit("C-9").eq(col("customer_id"))),
            one(KeyColumn::CustomerId, &["C-9"])
        );
        assert_eq!(
            key_lookup(&col("order_id").in_list(vec![lit("a"), lit("b")], false)),
            one(KeyColumn::OrderId, &["a", "b"])
        );
        // What DataFusion makes of `customer_id IN ('a', 'b')`.
        assert_eq!(
            key_lookup(
                &col("customer_id")
                    .eq(lit("a"))
                    .or(col("customer_id").eq(lit("b")))
            ),
            one(KeyColumn::CustomerId, &["a", "b"])
        );
        assert_eq!(
            key_lookup(
                &col("order_id")
                    .eq(lit("o"))
                    .or(col("customer_id").eq(lit("c")))
                    .or(col("order_id").in_list(vec![lit("p")], false))
            ),
            Some(vec![
                (KeyColumn::OrderId, vec!["o".to_owned(), "p".to_owned()]),
                (KeyColumn::CustomerId, vec!["c".to_owned()])
            ])
        );
        // One side that is not a key lookup can pass rows of any file.
        assert_eq!(
            key_lookup(
                &col("order_id")
                    .eq(lit("o"))
                    .or(col("status").eq(lit("PAID")))
            ),
            None
        );
        assert_eq!(
            key_lookup(&col("order_id").in_list(vec![lit("a")], true)),
            None
        );
        // Through a cast between string types, not through one that changes values.
        assert_eq!(
            key_lookup(&cast(col("order_id"), DataType::Utf8View).eq(lit("A-1"))),
            one(KeyColumn::OrderId, &["A-1"])
        );
        assert_eq!(
            key_lookup(&cast(cast(col("order_id"), DataType::Int64), DataType::Utf8).eq(lit("5"))),
            None
        );
        assert_eq!(key_lookup(&col("status").eq(lit("PAID"))), None);
        assert_eq!(key_lookup(&col("order_id").gt(lit("A"))), None);
        assert_eq!(key_lookup(&col("order_id").eq(col("customer_id"))), None);
    }

    #[test]
    fn files_are_balanced_by_bytes() {
        let files = [100, 90, 50, 40, 10, 10]
            .iter()
            .enumerate()
            .map(|(i, size)| (PartitionedFile::new(format!("f{i}"), *size), *size))
            .collect();
        let groups = balance(files, 2);
        let bytes: Vec<u64> = groups
            .iter()
            .map(|g| g.iter().map(|f| f.object_meta.size).sum())
            .collect();
        assert_eq!(bytes, [150, 150]);
        assert_eq!(balance(vec![], 4).len(), 0);
        let one = balance(vec![(PartitionedFile::new("a", 1), 1)], 8);
        assert_eq!(one.len(), 1);
    }
}
