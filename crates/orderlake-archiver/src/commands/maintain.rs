//! `orderlake-archiver maintain`: compaction, checkpoint and vacuum, with a progress bar and a
//! summary of what changed.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use orderlake_archive::{ArchiveTable, MaintenanceSettings};

use crate::cli::MaintainArgs;
use crate::config::ArchiverConfig;
use crate::error::CliError;

/// Runs the chosen steps and returns the summary to print.
pub async fn maintain(config: &ArchiverConfig, args: &MaintainArgs) -> Result<String, CliError> {
    let all = !(args.compact || args.checkpoint || args.vacuum);
    let settings = MaintenanceSettings {
        target_file_bytes: args.target_file_mib.saturating_mul(1024 * 1024),
        closed_after_days: args.closed_after_days,
        zstd_level: config.parquet.zstd_level,
        row_group_rows: config.parquet.row_group_rows,
        retention: Duration::from_secs(args.retention_hours.saturating_mul(3600)),
        ..MaintenanceSettings::default()
    };
    let mut table = ArchiveTable::open(super::table_location(config)?).await?;
    let mut summary = String::new();
    if all || args.compact {
        let bar = if args.quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(0)
        };
        bar.set_style(
            ProgressStyle::with_template(
                "compacting {pos}/{len} dates {per_sec} eta {eta} {wide_bar}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let started = Instant::now();
        let r = table
            .compact(&settings, |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            })
            .await?;
        bar.finish_and_clear();
        summary.push_str(&format!(
            "compact     {} dates in {} commits ({:.1}s): files {} -> {}, bytes {} -> {}\n",
            r.dates_compacted,
            r.commits,
            started.elapsed().as_secs_f64(),
            r.files_before,
            r.files_after,
            r.bytes_before,
            r.bytes_after
        ));
    }
    if all || args.checkpoint {
        let (version, removed) = table.checkpoint().await?;
        summary.push_str(&format!(
            "checkpoint  at version {version}; {removed} expired log files removed\n"
        ));
    }
    if all || args.vacuum {
        let deleted = table.vacuum(&settings, args.force, args.dry_run).await?;
        summary.push_str(&format!(
            "vacuum      {} unreferenced files older than {}h {}\n",
            deleted.len(),
            args.retention_hours,
            if args.dry_run {
                "would be deleted (dry run)"
            } else {
                "deleted"
            }
        ));
    }
    Ok(summary)
}
