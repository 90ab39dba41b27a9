//! Keeping the archive fast to read while the archiver keeps writing. A streaming archiver leaves
//! many small files per partition (event date or month) in arrival order; compaction rewrites the
//! files of each closed partition (all of whose dates are older than a few days, so live dates are
//! left to the archiver) into few files z-ordered by order id and customer id, so file statistics
//! and bloom filters prune lookups. Every rewrite is a Delta commit that removes exactly the files
//! it read and adds their rows back: a concurrent archiver commit adding files to the same
//! partition does not conflict, and readers see either the old files or the new ones, never both.
//! Checkpoints keep the log short; vacuum deletes files no version within the retention period
//! references, orphans of crashed writers included.

use std::collections::BTreeMap;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use deltalake::kernel::schema::partitions::{FilterOp, FilterValue};
use deltalake::operations::optimize::OptimizeType;
use deltalake::operations::vacuum::VacuumMode;
use object_store::ObjectStore;
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use serde::Serialize;

use crate::error::{ArchiveError, Result};
use crate::files::{ArchiveFile, ArchiveFiles, days_since_epoch};
use crate::layout::partition_value;
use crate::parquet_io::StoreFileReader;
use crate::schema::{self, CUSTOMER_ID, ORDER_ID};
use crate::table::ArchiveTable;

/// How compaction and vacuum behave.
#[derive(Debug, Clone)]
pub struct MaintenanceSettings {
    /// Compacted files are cut at about this size.
    pub target_file_bytes: u64,
    /// Dates at least this many days before today are closed: the archiver rarely writes there.
    /// A partition is closed when its last date is.
    pub closed_after_days: i64,
    /// Partitions compacted per commit (bounds the memory and the work lost to a conflict).
    pub partitions_per_commit: usize,
    pub zstd_level: i32,
    pub row_group_rows: usize,
    /// Vacuum deletes unreferenced files older than this.
    pub retention: Duration,
    /// Vacuum refuses a shorter retention unless forced.
    pub min_retention: Duration,
}

impl Default for MaintenanceSettings {
    fn default() -> Self {
        Self {
            target_file_bytes: 128 * 1024 * 1024,
            closed_after_days: 2,
            partitions_per_commit: 64,
            zstd_level: 3,
            row_group_rows: schema::ROW_GROUP_ROWS,
            retention: Duration::from_secs(7 * 24 * 3600),
            min_retention: Duration::from_secs(24 * 3600),
        }
    }
}

/// What compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CompactReport {
    pub partitions_compacted: u64,
    pub files_before: u64,
    pub files_after: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub commits: u64,
}

/// Files and bytes per partition value (days since 1970-01-01 of its first date).
fn files_by_partition(files: &ArchiveFiles) -> BTreeMap<i32, Vec<&ArchiveFile>> {
    let mut out: BTreeMap<i32, Vec<&ArchiveFile>> = BTreeMap::new();
    for file in &files.files {
        if let Some(partition) = file.partition {
            out.entry(partition).or_default().push(file);
        }
    }
    out
}

/// Whether compaction wrote `file` as it would now (its footer names the sort order and row
/// groups `layout`): rewriting it would change nothing. An unreadable footer counts as not
/// (rewriting it costs time, not rows).
async fn written_by_compaction(
    store: &Arc<dyn ObjectStore>,
    file: &ArchiveFile,
    layout: &str,
) -> bool {
    let reader = StoreFileReader::new(store, file.path.clone(), file.size);
    match ParquetRecordBatchStreamBuilder::new(reader).await {
        Ok(builder) => builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .is_some_and(|kv| {
                kv.iter()
                    .any(|e| e.key == schema::SORT_ORDER_KEY && e.value.as_deref() == Some(layout))
            }),
        Err(e) => {
            tracing::warn!(file = %file.path, error = %e, "could not read a footer; rewriting the file");
            false
        }
    }
}

impl ArchiveTable {
    /// Compacts every closed partition that has more than one file, or one file compaction did not
    /// write with these settings (so every closed partition ends sorted, in row groups of
    /// `settings.row_group_rows`). `progress(done, total)` is called as
    /// partitions are committed.
    pub async fn compact(
        &mut self,
        settings: &MaintenanceSettings,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<CompactReport> {
        self.refresh().await?;
        let uri = self.location().to_string();
        let closed_before = days_since_epoch(
            Utc::now().date_naive() - chrono::Duration::days(settings.closed_after_days),
        );
        let partitioning = self.partitioning();
        let live = self.files()?;
        let before = files_by_partition(&live);
        let layout = schema::compacted_layout(settings.row_group_rows);
        let mut partitions: Vec<i32> = Vec::new();
        for (partition, files) in &before {
            if partitioning.dates_of(*partition).1 >= closed_before {
                continue;
            }
            let unsorted = match files.as_slice() {
                [one] => !written_by_compaction(&live.store, one, &layout).await,
                _ => true,
            };
            if unsorted {
                partitions.push(*partition);
            }
        }
        let total = partitions.len() as u64;
        let mut report = CompactReport::default();
        progress(0, total);
        let target =
            NonZeroU64::new(settings.target_file_bytes.max(1024 * 1024)).expect("at least 1 MiB");
        for chunk in partitions.chunks(settings.partitions_per_commit.max(1)) {
            let values: Vec<String> = chunk.iter().map(|p| partition_value(*p)).collect();
            let set: Vec<&str> = values.iter().map(String::as_str).collect();
            let filters = [(partitioning.column(), FilterOp::In, FilterValue::Set(set))];
            let (table, metrics) = self
                .delta()
                .clone()
                .optimize()
                .with_type(OptimizeType::ZOrder(vec![
                    ORDER_ID.into(),
                    CUSTOMER_ID.into(),
                ]))
                .with_filters(&filters)
                .with_target_size(target)
                .with_writer_properties(schema::compacted_parquet_properties(
                    settings.zstd_level,
                    settings.row_group_rows,
                ))
                .await
                .map_err(ArchiveError::delta(&uri))?;
            self.replace_delta(table);
            report.commits += u64::from(metrics.num_files_removed > 0);
            report.partitions_compacted += chunk.len() as u64;
            progress(report.partitions_compacted, total);
        }
        let now = self.files()?;
        let after = files_by_partition(&now);
        let count = |files: Option<&Vec<&ArchiveFile>>| {
            let files = files.map(Vec::as_slice).unwrap_or_default();
            (
                files.len() as u64,
                files.iter().map(|f| f.size).sum::<u64>(),
            )
        };
        for partition in &partitions {
            let (files, bytes) = count(before.get(partition));
            report.files_before += files;
            report.bytes_before += bytes;
            let (files, bytes) = count(after.get(partition));
            report.files_after += files;
            report.bytes_after += bytes;
        }
        Ok(report)
    }

    /// Writes a checkpoint of the current version and removes log entries past the table's log
    /// retention (30 days unless configured). Returns the version and the log files removed.
    pub async fn checkpoint(&mut self) -> Result<(u64, usize)> {
        self.refresh().await?;
        let uri = self.location().to_string();
        deltalake::checkpoints::create_checkpoint(self.delta(), None)
            .await
            .map_err(ArchiveError::delta(&uri))?;
        let removed = deltalake::checkpoints::cleanup_metadata(self.delta(), None)
            .await
            .map_err(ArchiveError::delta(&uri))?;
        Ok((self.version().unwrap_or_default(), removed))
    }

    /// Deletes data files that no version within `retention` references, orphans of crashed
    /// writers included. A retention below `settings.min_retention` is refused unless `force`.
    pub async fn vacuum(
        &mut self,
        settings: &MaintenanceSettings,
        force: bool,
        dry_run: bool,
    ) -> Result<Vec<String>> {
        let uri = self.location().to_string();
        if settings.retention < settings.min_retention && !force {
            return Err(ArchiveError::Refused {
                uri,
                reason: format!(
                    "a vacuum retention of {:?} is below the minimum of {:?}: files a reader or a \
                     running writer still needs could be deleted; pass --force to insist",
                    settings.retention, settings.min_retention
                ),
            });
        }
        self.refresh().await?;
        let retention = chrono::Duration::from_std(settings.retention)
            .unwrap_or_else(|_| chrono::Duration::days(7));
        let (table, metrics) = self
            .delta()
            .clone()
            .vacuum()
            .with_mode(VacuumMode::Full)
            .with_retention_period(retention)
            .with_enforce_retention_duration(false)
            .with_dry_run(dry_run)
            .await
            .map_err(ArchiveError::delta(&uri))?;
        self.replace_delta(table);
        Ok(metrics.files_deleted)
    }
}
