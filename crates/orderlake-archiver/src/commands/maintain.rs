//! `orderlake-archiver maintain`: compaction, the key index, the daily rollup, checkpoint and
//! vacuum, with a progress bar and a summary of what changed; and the same steps as a scheduled
//! background task of `run`.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use orderlake_archive::{ArchiveTable, MaintenanceSettings, TableLocation};
use std::sync::Arc;

use orderlake_ingest::decode::TopicDecoder;
use orderlake_ingest::registry::SchemaRegistry;
use orderlake_ingest::{MappingSet, StopSignal};

use crate::cli::MaintainArgs;
use crate::config::ArchiverConfig;
use crate::error::CliError;

/// Which steps run, and how vacuum behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Steps {
    pub compact: bool,
    /// Cover unindexed files and merge the key index's segments.
    pub index: bool,
    /// Rebuild the key index from scratch.
    pub reindex: bool,
    /// Bring the daily rollup up to date for closed dates.
    pub rollup: bool,
    /// Recompute the daily rollup from scratch.
    pub rebuild_rollup: bool,
    pub checkpoint: bool,
    pub vacuum: bool,
    /// Allow a vacuum retention below the minimum.
    pub force: bool,
    /// Vacuum lists what it would delete and deletes nothing.
    pub dry_run: bool,
}

/// Runs the steps the flags choose (all of them without one) and returns the summary to print.
pub async fn maintain(config: &ArchiverConfig, args: &MaintainArgs) -> Result<String, CliError> {
    let mut summary = String::new();
    if args.redecode {
        summary.push_str(&redecode(config, args).await?);
    }
    let chosen = args.compact
        || args.index
        || args.reindex
        || args.rollup
        || args.rebuild_rollup
        || args.checkpoint
        || args.vacuum;
    if args.redecode && !chosen {
        return Ok(summary);
    }
    let all = !chosen;
    let settings = settings(
        config,
        args.target_file_mib.saturating_mul(1024 * 1024),
        args.closed_after_days,
        args.retention_hours,
    );
    let steps = Steps {
        compact: all || args.compact,
        index: (all || args.index) && !args.reindex,
        reindex: args.reindex,
        rollup: (all || args.rollup) && !args.rebuild_rollup,
        rebuild_rollup: args.rebuild_rollup,
        checkpoint: all || args.checkpoint,
        vacuum: all || args.vacuum,
        force: args.force,
        dry_run: args.dry_run,
    };
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    summary.push_str(&run_steps(super::table_location(config)?, &settings, steps, &bar).await?);
    Ok(summary)
}

/// `--redecode`: the rows archived raw for want of a schema, decoded with the registry's.
async fn redecode(config: &ArchiverConfig, args: &MaintainArgs) -> Result<String, CliError> {
    let mut registry_config = config.schema_registry.clone();
    if let Some(urls) = &args.schema_registry_url {
        registry_config.urls.clone_from(urls);
    }
    if !registry_config.is_configured() {
        return Err(CliError::Usage(
            "--redecode needs the schema registry: set [schema_registry] urls or \
             --schema-registry-url"
                .into(),
        ));
    }
    let registry = Arc::new(
        SchemaRegistry::new(registry_config, tokio::runtime::Handle::current())
            .map_err(CliError::Usage)?,
    );
    let decoder = TopicDecoder::new(
        MappingSet::new(config.all_mappings())?,
        config.decode.max_value_bytes,
    )
    .with_registry(Some(registry.clone()));
    let table = ArchiveTable::open_for_writing(super::table_location(config)?).await?;
    let started = Instant::now();
    let r = metered(
        "redecode",
        orderlake_ingest::redecode::redecode(table, decoder, &registry, config.writer_settings()),
    )
    .await?;
    Ok(format!(
        "redecode    {} rows decoded from {} of {} files in {} commits ({:.1}s); {} rows still wait for their schema\n",
        r.rows_redecoded,
        r.files_rewritten,
        r.files_scanned,
        r.commits,
        started.elapsed().as_secs_f64(),
        r.rows_still_waiting
    ))
}

/// Maintenance settings: file layout from the `[parquet]` block, the rest as given.
fn settings(
    config: &ArchiverConfig,
    target_file_bytes: u64,
    closed_after_days: i64,
    retention_hours: u64,
) -> MaintenanceSettings {
    MaintenanceSettings {
        target_file_bytes,
        closed_after_days,
        zstd_level: config.parquet.zstd_level,
        row_group_rows: config.parquet.row_group_rows,
        retention: Duration::from_secs(retention_hours.saturating_mul(3600)),
        ..MaintenanceSettings::default()
    }
}

/// Runs `steps` on the table; `bar` shows compaction's progress.
pub async fn run_steps(
    location: TableLocation,
    settings: &MaintenanceSettings,
    steps: Steps,
    bar: &ProgressBar,
) -> Result<String, CliError> {
    let mut table = ArchiveTable::open_for_writing(location).await?;
    let mut summary = String::new();
    if steps.compact {
        bar.set_style(
            ProgressStyle::with_template(
                "compacting {pos}/{len} partitions {per_sec} eta {eta} {wide_bar}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let started = Instant::now();
        let r = metered(
            "compact",
            table.compact(settings, |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            }),
        )
        .await?;
        bar.finish_and_clear();
        summary.push_str(&format!(
            "compact     {} {} partitions in {} commits ({:.1}s): files {} -> {}, bytes {} -> {}\n",
            r.partitions_compacted,
            table.partitioning(),
            r.commits,
            started.elapsed().as_secs_f64(),
            r.files_before,
            r.files_after,
            r.bytes_before,
            r.bytes_after
        ));
    }
    if steps.index || steps.reindex {
        let started = Instant::now();
        let r = if steps.reindex {
            metered("reindex", table.reindex()).await?
        } else {
            metered("index", table.update_index()).await?
        };
        summary.push_str(&format!(
            "{}     {} of {} live files indexed ({:.1}s); {} segments -> 1: {} entries, {} bytes, {} files covered\n",
            if steps.reindex { "reindex" } else { "index  " },
            r.files_indexed,
            r.live_files,
            started.elapsed().as_secs_f64(),
            r.merge.segments_before,
            r.merge.entries,
            r.merge.bytes,
            r.merge.covered_files
        ));
    }
    if steps.rollup || steps.rebuild_rollup {
        let started = Instant::now();
        let closed_before = orderlake_archive::files::days_since_epoch(
            chrono::Utc::now().date_naive() - chrono::Duration::days(settings.closed_after_days),
        );
        let r = metered(
            "rollup",
            table.update_rollup(closed_before, steps.rebuild_rollup),
        )
        .await?;
        summary.push_str(&format!(
            "rollup      {} closed dates computed, {} kept ({:.1}s): {} rows, {} bytes\n",
            r.dates_computed,
            r.dates_kept,
            started.elapsed().as_secs_f64(),
            r.rows,
            r.bytes
        ));
    }
    if steps.checkpoint {
        let (version, removed) = metered("checkpoint", table.checkpoint()).await?;
        summary.push_str(&format!(
            "checkpoint  at version {version}; {removed} expired log files removed\n"
        ));
    }
    if steps.vacuum {
        let deleted = metered("vacuum", table.vacuum(settings, steps.force, steps.dry_run)).await?;
        summary.push_str(&format!(
            "vacuum      {} unreferenced files older than {}h {}\n",
            deleted.len(),
            settings.retention.as_secs() / 3600,
            if steps.dry_run {
                "would be deleted (dry run)"
            } else {
                "deleted"
            }
        ));
    }
    Ok(summary)
}

/// Runs one maintenance task, recording its result and duration
/// (`orderlake_archiver_maintenance_*`).
async fn metered<T, E>(
    task: &'static str,
    step: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    use orderlake_telemetry::catalogue::archiver as m;
    let started = Instant::now();
    let result = step.await;
    let outcome = if result.is_ok() { "ok" } else { "failed" };
    metrics::counter!(m::MAINTENANCE_RUNS, "task" => task, "result" => outcome).increment(1);
    metrics::histogram!(m::MAINTENANCE_DURATION, "task" => task)
        .record(started.elapsed().as_secs_f64());
    if result.is_ok() {
        metrics::gauge!(m::MAINTENANCE_LAST_SUCCESS, "task" => task)
            .set(chrono::Utc::now().timestamp() as f64);
    }
    result
}

/// The background task of `run`: every `maintenance.interval_secs`, every step with the
/// `[maintenance]` settings, until `stop`. A failed run is logged and tried again at the next
/// interval; a stop abandons a run in progress (what it wrote and did not commit is invisible to
/// readers, and a later vacuum removes it).
pub async fn scheduled(config: ArchiverConfig, stop: StopSignal) {
    let m = &config.maintenance;
    let settings = settings(
        &config,
        m.target_file_bytes,
        m.closed_after_days,
        m.retention_hours,
    );
    let steps = Steps {
        compact: true,
        index: true,
        reindex: false,
        rollup: true,
        rebuild_rollup: false,
        checkpoint: true,
        vacuum: true,
        force: false,
        dry_run: false,
    };
    let interval = Duration::from_secs(m.interval_secs);
    tracing::info!(
        every_secs = m.interval_secs,
        "background maintenance scheduled"
    );
    loop {
        if stopped_within(interval, &stop).await {
            return;
        }
        let started = Instant::now();
        let run = async {
            run_steps(
                super::table_location(&config)?,
                &settings,
                steps,
                &ProgressBar::hidden(),
            )
            .await
        };
        let run = async {
            let summary = run.await?;
            verified(&config).await?;
            Ok::<_, CliError>(summary)
        };
        tokio::select! {
            result = run => match result {
                Ok(summary) => tracing::info!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "background maintenance done:\n{}",
                    summary.trim_end()
                ),
                Err(e) => tracing::warn!(
                    error = %orderlake_archive::one_line(&e),
                    retry_in_secs = interval.as_secs(),
                    "background maintenance failed; it runs again at the next interval"
                ),
            },
            () = wait_for_stop(&stop) => {
                tracing::info!("stop requested: background maintenance abandoned mid-run");
                return;
            }
        }
    }
}

/// The last step of a scheduled run: `verify`, whose failure an operator is alerted to
/// (`orderlake_archiver_maintenance_runs_total{task="verify",result="failed"}`).
async fn verified(config: &ArchiverConfig) -> Result<(), CliError> {
    let report = metered("verify", async {
        let report = super::status::verify(config, None).await?;
        if report.is_clean() {
            Ok(report)
        } else {
            Err(CliError::Usage(format!(
                "verify found problems:\n{}",
                super::status::render_verify(&report)
            )))
        }
    })
    .await?;
    tracing::info!(
        partitions = report.partitions.len(),
        "verify: every archived record is in the table once"
    );
    Ok(())
}

/// Sleeps `d`; true when a stop came first.
async fn stopped_within(d: Duration, stop: &StopSignal) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => stop.is_stopped(),
        () = wait_for_stop(stop) => true,
    }
}

async fn wait_for_stop(stop: &StopSignal) {
    while !stop.is_stopped() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
