//! What a physical plan reads, known before it runs: the bytes of the archive's files its scans
//! list, and whether anything else feeds it. Admission picks a query's lane from this
//! (`limits.rs`), and the cluster decides what is worth sending to executors (`cluster`).

use std::sync::Arc;

use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::joins::HashJoinExec;
use datafusion::physical_plan::placeholder_row::PlaceholderRowExec;

use crate::join_keys::KeyJoinScan;
use crate::lookup_scan::ArchiveLookupExec;
use crate::rollup::DailyActivityExec;
use crate::scan::is_key_lookup_scan;

/// What a plan reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PlanReads {
    /// Bytes of the files its Parquet scans list, key lookups' scans left out (see
    /// [`scanned_bytes`]: the key and page indexes make those read a few pages of each file).
    pub file_bytes: u64,
    /// Whether every leaf is a scan of the archive, a table held in memory (`system`,
    /// `information_schema`, the rollup) or a constant: a leaf that makes rows (a
    /// `generate_series`, say) can cost anything whatever the files.
    pub only_tables: bool,
}

impl PlanReads {
    pub(crate) fn of(plan: &Arc<dyn ExecutionPlan>) -> Self {
        let mut reads = Self {
            file_bytes: 0,
            only_tables: true,
        };
        reads.visit(plan, false);
        reads
    }

    /// Adds what `node` reads. `keyed`: `node` is on the probe side of a hash join whose build
    /// side lists no file bytes (a key lookup, constants); a scan there that receives the join's
    /// dynamic filter reads only the files of the build side's keys ([`KeyJoinScan`]), so its
    /// listed files are not counted either (`orders WHERE customer_id = …` is such a join).
    fn visit(&mut self, node: &Arc<dyn ExecutionPlan>, keyed: bool) {
        if let Some(join) = node.downcast_ref::<HashJoinExec>() {
            let build = Self::of(join.left());
            self.file_bytes += build.file_bytes;
            self.only_tables &= build.only_tables;
            let small_build = build.file_bytes == 0 && build.only_tables;
            self.visit(join.right(), keyed || small_build);
            return;
        }
        let narrowed =
            keyed && key_join_scan(node.as_ref()).is_some_and(KeyJoinScan::gets_join_keys);
        if let Some(config) = file_scan(node.as_ref())
            .filter(|c| !is_key_lookup_scan(c))
            .filter(|_| !narrowed)
        {
            self.file_bytes += config
                .file_groups
                .iter()
                .flat_map(|g| g.files())
                .map(|f| f.object_meta.size)
                .sum::<u64>();
        }
        if node.children().is_empty() && !is_table_leaf(node.as_ref()) {
            self.only_tables = false;
        }
        for child in node.children() {
            self.visit(child, keyed);
        }
    }

    /// Whether the plan is a lookup: it reads tables only, and files of fewer than `below` bytes.
    pub(crate) fn is_lookup(&self, below: u64) -> bool {
        self.only_tables && self.file_bytes < below
    }
}

/// A leaf that reads a table (or nothing): the archive's files (scanned, or by a key lookup's
/// reader), a table in memory, the rollup.
fn is_table_leaf(node: &dyn ExecutionPlan) -> bool {
    if node.downcast_ref::<EmptyExec>().is_some()
        || node.downcast_ref::<PlaceholderRowExec>().is_some()
        || node.downcast_ref::<DailyActivityExec>().is_some()
        || node.downcast_ref::<ArchiveLookupExec>().is_some()
    {
        return true;
    }
    node.downcast_ref::<DataSourceExec>().is_some_and(|exec| {
        let source = exec.data_source();
        source.downcast_ref::<FileScanConfig>().is_some()
            || source.downcast_ref::<KeyJoinScan>().is_some()
            || source.downcast_ref::<MemorySourceConfig>().is_some()
    })
}

/// The bytes of the files the Parquet scans in `plan` list, key lookups' scans left out: the key
/// and page indexes make those read a few pages of each file they list (measured: a customer
/// lookup listing 600 MB of files took 29 ms here and 61-74 ms on the cluster), and so are scans
/// narrowed by a lookup's keys through a join (a customer's purchase summary: 0.3 s here, 4.8 s
/// on the cluster, where executors have no index).
pub(crate) fn scanned_bytes(plan: &Arc<dyn ExecutionPlan>) -> u64 {
    PlanReads::of(plan).file_bytes
}

/// The file scan of a `DataSourceExec` node, plain or narrowed by join keys.
pub(crate) fn file_scan(node: &dyn ExecutionPlan) -> Option<&FileScanConfig> {
    match node
        .downcast_ref::<DataSourceExec>()?
        .data_source()
        .downcast_ref::<FileScanConfig>()
    {
        Some(config) => Some(config),
        None => key_join_scan(node).map(KeyJoinScan::inner),
    }
}

/// The join-key scan of a `DataSourceExec` node.
pub(crate) fn key_join_scan(node: &dyn ExecutionPlan) -> Option<&KeyJoinScan> {
    node.downcast_ref::<DataSourceExec>()?
        .data_source()
        .downcast_ref::<KeyJoinScan>()
}
