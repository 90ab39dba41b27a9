//! Key lookups read by a reader of their own. A lookup by `customer_id` or `order_id` opens dozens
//! of files for a few rows each (a customer of the 50M archive: 640 rows in 64 monthly files),
//! and DataFusion's Parquet opener sets every file up as if it were to be scanned: the Arrow
//! schema from the footer, a pruning predicate built and evaluated over the row groups'
//! statistics, the page index (a third of the lookup's time went to opening files, measured in
//! docs/benchmarks.md). [`ArchiveLookupExec`] replaces such a scan. For each file it keeps the
//! Arrow reader's set-up in the session's metadata cache across queries; picks the row groups
//! and pages whose statistics (and bloom filters, where the scan asks for them) admit one of the
//! keys by comparing bytes; decodes the key columns of those pages, then the other columns of
//! the rows holding a key; and reads several files at once. The whole predicate is applied to
//! the rows read, so the answer is the scan's.
//!
//! Only scans the archive scan set up as key lookups are replaced, whose predicate holds a
//! literal key lookup (`=`, `IN`, `OR`s of those): keys arriving from a join at run time keep
//! DataFusion's scan, which [`crate::join_keys`] narrows. The node is local: the cluster's
//! planning leaves the rule out.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TreeNode as _, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileScanConfig, FileSource as _, ParquetSource};
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{
    BinaryExpr, CastExpr, Column, DynamicFilterPhysicalExpr, InListExpr, Literal,
};
use datafusion::physical_expr::utils::{collect_columns, reassign_expr_columns};
use datafusion::physical_expr::{PhysicalExpr, split_conjunction};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::metrics::{
    BaselineMetrics, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use futures::{StreamExt as _, TryStreamExt as _};
use orderlake_archive::key_index::KeyColumn;

use crate::lookup_reader::cached_readers;
use crate::reads::{file_scan, key_join_scan};
use crate::scan::is_key_lookup_scan;

mod read;
use read::{Counts, ReadPlan, Reading};

/// The rule's name, by which the cluster's planning leaves it out (executors do not know the
/// node).
pub(crate) const RULE_NAME: &str = "archive_lookups";

/// Files one partition of a lookup reads at once: enough to overlap one file's reads with
/// another's decoding on a local disk, and an object store's latency with other requests.
const FILES_AT_ONCE: usize = 8;

/// Replaces the archive scans set up as key lookups with [`ArchiveLookupExec`].
#[derive(Debug)]
pub struct ArchiveLookups;

impl PhysicalOptimizerRule for ArchiveLookups {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            Ok(match ArchiveLookupExec::replacing(node.as_ref())? {
                Some(lookup) => Transformed::yes(Arc::new(lookup) as Arc<dyn ExecutionPlan>),
                None => Transformed::no(node),
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        RULE_NAME
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The keys a predicate looks up: a row can pass only if one of its key columns holds one of
/// that column's keys.
#[derive(Debug, Clone)]
struct KeyLookup {
    /// Each key column with its keys, as the bytes Parquet orders and hashes.
    keys: Vec<(String, Vec<Vec<u8>>)>,
    /// The conjunct of the predicate that says so, over the table's columns.
    expr: Arc<dyn PhysicalExpr>,
}

impl KeyLookup {
    /// The lookup `expr` makes: `k = 'v'`, `'v' = k`, `k IN ('v', …)` and `OR`s of those, over the
    /// key columns (through casts between string types), else `None`.
    fn of(expr: &Arc<dyn PhysicalExpr>) -> Option<Self> {
        let mut keys: Vec<(String, Vec<Vec<u8>>)> = Vec::new();
        for (column, key) in key_disjuncts(expr)? {
            match keys.iter_mut().find(|(c, _)| *c == column) {
                Some((_, gathered)) => gathered.push(key),
                None => keys.push((column, vec![key])),
            }
        }
        Some(Self {
            keys,
            expr: Arc::clone(expr),
        })
    }
}

/// The `(column, key)` pairs of which a row passing `expr` matches one, if `expr` is a key
/// lookup.
fn key_disjuncts(expr: &Arc<dyn PhysicalExpr>) -> Option<Vec<(String, Vec<u8>)>> {
    fn is_text(t: &DataType) -> bool {
        matches!(t, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8)
    }
    fn key_column(e: &Arc<dyn PhysicalExpr>) -> Option<String> {
        if let Some(c) = e.downcast_ref::<Column>() {
            return KeyColumn::from_name(c.name()).map(|_| c.name().to_owned());
        }
        let cast = e.downcast_ref::<CastExpr>()?;
        is_text(cast.cast_type()).then(|| key_column(cast.expr()))?
    }
    fn key(e: &Arc<dyn PhysicalExpr>) -> Option<Vec<u8>> {
        match e.downcast_ref::<Literal>()?.value() {
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)) => Some(s.as_bytes().to_vec()),
            _ => None,
        }
    }
    if let Some(b) = expr.downcast_ref::<BinaryExpr>() {
        return match b.op() {
            Operator::Eq => match (key_column(b.left()), key(b.right())) {
                (Some(c), Some(k)) => Some(vec![(c, k)]),
                _ => Some(vec![(key_column(b.right())?, key(b.left())?)]),
            },
            Operator::Or => {
                let mut both = key_disjuncts(b.left())?;
                both.extend(key_disjuncts(b.right())?);
                Some(both)
            }
            _ => None,
        };
    }
    let list = expr.downcast_ref::<InListExpr>()?;
    if list.negated() {
        return None;
    }
    let column = key_column(list.expr())?;
    list.list()
        .iter()
        .map(|v| Some((column.clone(), key(v)?)))
        .collect()
}

/// A key lookup's scan of archive files, read by page with the readers' set-up kept across
/// queries (see the module's documentation).
#[derive(Debug)]
pub struct ArchiveLookupExec {
    /// The scan this replaces: its files, columns, options and store.
    scan: FileScanConfig,
    /// The conjunct of the scan's predicate that looks keys up, applied while decoding.
    lookup: KeyLookup,
    /// The predicate's other conjuncts, applied to the rows read, less the dynamic filters
    /// pushed into the scan (an optimisation: the operators above remove those rows anyway).
    rest: Option<Arc<dyn PhysicalExpr>>,
    /// Whether the scan asked for bloom filters (lookups by order id, files out of order).
    bloom_filters: bool,
    /// The files each output partition reads.
    partitions: Vec<Vec<PartitionedFile>>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl ArchiveLookupExec {
    /// The lookup replacing `node`, if `node` is an archive scan set up as a literal key lookup.
    fn replacing(node: &dyn ExecutionPlan) -> Result<Option<Self>> {
        let Some(scan) = file_scan(node).filter(|c| is_key_lookup_scan(c)) else {
            return Ok(None);
        };
        if key_join_scan(node).is_some_and(|k| k.gets_join_keys())
            || node.properties().output_ordering().is_some()
        {
            return Ok(None);
        }
        let Some(source) = scan.file_source().downcast_ref::<ParquetSource>() else {
            return Ok(None);
        };
        let Some(predicate) = source.filter() else {
            return Ok(None);
        };
        let mut conjuncts: Vec<_> = split_conjunction(&predicate)
            .into_iter()
            .filter(|c| c.downcast_ref::<DynamicFilterPhysicalExpr>().is_none())
            .cloned()
            .collect();
        if conjuncts.iter().any(holds_dynamic_filter) {
            return Ok(None);
        }
        let Some((at, lookup)) = conjuncts
            .iter()
            .enumerate()
            .find_map(|(at, c)| Some((at, KeyLookup::of(c)?)))
        else {
            return Ok(None);
        };
        conjuncts.remove(at);
        let rest = conjuncts
            .into_iter()
            .reduce(|a, b| Arc::new(BinaryExpr::new(a, Operator::And, b)) as _);
        // As many partitions as the scan, with its properties: the predicate's constants
        // (`order_id = …` makes `order_id` one value, which spares a window's sort) hold alike.
        let partitions = spread(
            scan.file_groups.iter().flat_map(|g| g.files()),
            node.properties().output_partitioning().partition_count(),
        );
        // What planning pruned, for EXPLAIN ANALYZE: by the log's statistics, by the key index.
        let metrics = ExecutionPlanMetricsSet::new();
        if let Some(planned) = node.metrics() {
            for name in ["files_pruned_by_statistics", "files_pruned_by_index"] {
                let pruned = planned.sum_by_name(name).map_or(0, |n| n.as_usize());
                MetricBuilder::new(&metrics)
                    .global_counter(name)
                    .add(pruned);
            }
        }
        Ok(Some(Self {
            bloom_filters: source.table_parquet_options().global.bloom_filter_on_read,
            scan: scan.clone(),
            lookup,
            rest,
            partitions,
            properties: Arc::clone(node.properties()),
            metrics,
        }))
    }
}

fn holds_dynamic_filter(expr: &Arc<dyn PhysicalExpr>) -> bool {
    expr.exists(|e| Ok(e.downcast_ref::<DynamicFilterPhysicalExpr>().is_some()))
        .unwrap_or(true)
}

/// The distinct files of `files` (a file split into byte ranges is read whole, once) spread over
/// `partitions` lists.
fn spread<'a>(
    files: impl Iterator<Item = &'a PartitionedFile>,
    partitions: usize,
) -> Vec<Vec<PartitionedFile>> {
    let mut seen = std::collections::HashSet::new();
    let mut lists = vec![Vec::new(); partitions.max(1)];
    let partitions = lists.len();
    for (i, file) in files
        .filter(|f| seen.insert(f.object_meta.location.clone()))
        .enumerate()
    {
        let mut file = file.clone();
        file.range = None;
        lists[i % partitions].push(file);
    }
    lists
}

impl DisplayAs for ArchiveLookupExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let keys: Vec<String> = self
            .lookup
            .keys
            .iter()
            .map(|(c, k)| format!("{c} ({} keys)", k.len()))
            .collect();
        write!(
            f,
            "ArchiveLookupExec: files={}, lookup={} [{}]",
            self.partitions.iter().map(Vec::len).sum::<usize>(),
            self.lookup.expr,
            keys.join(", "),
        )?;
        if let Some(rest) = &self.rest {
            write!(f, ", filter={rest}")?;
        }
        write!(f, ", bloom_filters={}", self.bloom_filters)
    }
}

impl ExecutionPlan for ArchiveLookupExec {
    fn name(&self) -> &str {
        "ArchiveLookupExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        f(&self.lookup.expr)?;
        match &self.rest {
            Some(rest) => f(rest),
            None => Ok(TreeNodeRecursion::Continue),
        }
    }

    fn with_new_children(
        self: Arc<Self>,
        _: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let runtime = context.runtime_env();
        let url = &self.scan.object_store_url;
        let reading = Arc::new(Reading {
            plan: self.read_plan()?,
            readers: cached_readers(&runtime, url, true)?,
            store: runtime.object_store(url)?,
            cache: runtime.cache_manager.get_file_metadata_cache(),
            batch_size: context.session_config().batch_size(),
            bloom_filters: self.bloom_filters,
            partition,
            counts: Counts::new(&self.metrics, partition),
            metrics: self.metrics.clone(),
        });
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let files = self.partitions.get(partition).cloned().unwrap_or_default();
        let mut left = self.scan.limit.unwrap_or(usize::MAX);
        let batches = futures::stream::iter(files)
            .map(move |file| Arc::clone(&reading).read(file))
            .buffer_unordered(FILES_AT_ONCE)
            .map_ok(|batches| futures::stream::iter(batches.into_iter().map(Ok)))
            .try_flatten()
            .try_take_while(move |batch| {
                let more = left > 0;
                left = left.saturating_sub(batch.num_rows());
                std::future::ready(Ok(more))
            })
            .inspect_ok(move |batch| baseline.record_output(batch.num_rows()));
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(self.properties.eq_properties.schema()),
            batches,
        )))
    }
}

impl ArchiveLookupExec {
    /// What reading each of a partition's files needs, worked out from the scan when the
    /// partition starts.
    fn read_plan(&self) -> Result<Arc<ReadPlan>> {
        let table = self.scan.file_source().table_schema();
        let file_fields = table.file_schema().fields().len();
        let full = table.table_schema();
        let projection: Vec<(Arc<dyn PhysicalExpr>, String)> =
            match self.scan.file_source().projection() {
                Some(p) => p
                    .iter()
                    .map(|e| (Arc::clone(&e.expr), e.alias.clone()))
                    .collect(),
                None => full
                    .fields()
                    .iter()
                    .enumerate()
                    .map(|(i, f)| {
                        let c: Arc<dyn PhysicalExpr> = Arc::new(Column::new(f.name(), i));
                        (c, f.name().clone())
                    })
                    .collect(),
            };
        // The table's columns the projection and the predicate's rest use, in the table's order
        // (the key columns are read for the lookup, and again only if they are shown).
        let mut used: Vec<usize> = projection
            .iter()
            .flat_map(|(e, _)| collect_columns(e))
            .chain(self.rest.iter().flat_map(collect_columns))
            .map(|c| c.index())
            .collect();
        used.sort_unstable();
        used.dedup();
        let columns = Arc::new(full.project(&used)?);
        let partition_columns = used
            .iter()
            .filter(|&&i| i >= file_fields)
            .map(|&i| (full.field(i).name().clone(), i - file_fields))
            .collect();
        let key_schema = Arc::new(Schema::new(
            self.lookup
                .keys
                .iter()
                .map(|(c, _)| full.field_with_name(c).cloned())
                .collect::<std::result::Result<Vec<Field>, _>>()?,
        ));
        Ok(Arc::new(ReadPlan {
            key_expr: reassign_expr_columns(Arc::clone(&self.lookup.expr), &key_schema)?,
            key_schema,
            keys: self.lookup.keys.clone(),
            rest: self
                .rest
                .as_ref()
                .map(|rest| reassign_expr_columns(Arc::clone(rest), &columns))
                .transpose()?,
            projection: projection
                .into_iter()
                .map(|(e, name)| Ok((reassign_expr_columns(e, &columns)?, name)))
                .collect::<Result<_>>()?,
            output: self.schema(),
            partition_columns,
            columns,
        }))
    }
}
