//! Keeping the archive fast to read while the archiver keeps writing. A streaming archiver leaves
//! many small files per partition (event date or month) in arrival order; compaction
//! ([`crate::compaction`]) rewrites each closed partition into few sorted files. Checkpoints keep
//! the log short; vacuum deletes files no version within the retention period references,
//! orphans of crashed writers included.

use std::time::Duration;

use deltalake::operations::vacuum::VacuumMode;
use serde::Serialize;

use crate::error::{ArchiveError, Result};
use crate::schema;
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
    /// Memory the sort of one partition may hold before it spills to disk (one partition is
    /// sorted per core at a time).
    pub sort_memory_bytes: usize,
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
            sort_memory_bytes: 1024 * 1024 * 1024,
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

impl ArchiveTable {
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
