//! Compaction: the files of each closed partition (all of whose dates are older than a few days,
//! so live dates are left to the archiver) rewritten into few files sorted by
//! [`schema::COMPACTION_SORT`]: a customer's rows of the partition lie together, and an order's
//! within them. Row-group and page statistics then give a customer lookup one row group and one
//! key page of each month it has events in, and bloom filters give an order lookup one row group
//! (docs/benchmarks.md compares this with a z-order and with a sort by order id).
//!
//! Each commit removes exactly the files it read (those of the version it started from) and adds
//! their rows back, with `dataChange = false`: a concurrent archiver commit adding files to the
//! same partition does not conflict, and readers see either the old files or the new ones, never
//! both. The sort runs in DataFusion under a bounded memory pool, spilling to disk past it, so a
//! partition larger than memory compacts too.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use datafusion::catalog::TableProvider;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext, col, lit};
use datafusion::scalar::ScalarValue;
use deltalake::kernel::Action;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::protocol::DeltaOperation;
use deltalake::writer::{DeltaWriter as _, RecordBatchWriter};
use futures::{StreamExt as _, TryStreamExt as _};
use object_store::ObjectStore;
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;

use crate::error::{ArchiveError, Result};
use crate::files::{ArchiveFile, ArchiveFiles, days_since_epoch};
use crate::layout::{parse_partition_value, partition_value};
use crate::maintenance::{CompactReport, MaintenanceSettings};
use crate::parquet_io::StoreFileReader;
use crate::schema;
use crate::table::ArchiveTable;

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
        for chunk in partitions.chunks(settings.partitions_per_commit.max(1)) {
            self.rewrite_sorted(chunk, settings).await?;
            report.commits += 1;
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

    /// Rewrites the files `partitions` hold at the current version, sorted, and commits the new
    /// files in place of exactly those (one commit).
    async fn rewrite_sorted(
        &mut self,
        partitions: &[i32],
        settings: &MaintenanceSettings,
    ) -> Result<()> {
        let uri = self.location().to_string();
        let ctx =
            sort_session(settings.sort_memory_bytes).map_err(ArchiveError::datafusion(&uri))?;
        let provider = self.provider(&ctx.state(), None).await?;
        let (column, codec) = (self.partitioning().column(), self.codec());
        // Partitions are sorted and encoded at the same time, a task per core, each with its own
        // pool (the encoding is most of the work, and one partition's writer uses one core; two
        // sorts sharing one pool ran out of it on a 50M-event month).
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        // Built before they are run: futures that borrow nothing (the stream's type must not
        // name this function's borrows to be sent between threads).
        let tasks: Vec<_> = partitions
            .iter()
            .map(|&partition| {
                let writer = RecordBatchWriter::for_table(self.delta()).map(|w| {
                    w.with_writer_properties(schema::compacted_parquet_properties(
                        codec,
                        settings.zstd_level,
                        settings.row_group_rows,
                    ))
                    .with_target_file_size(settings.target_file_bytes)
                });
                let (provider, uri) = (Arc::clone(&provider), uri.clone());
                let memory = settings.sort_memory_bytes;
                async move {
                    let writer = writer.map_err(ArchiveError::delta(&uri))?;
                    let task =
                        write_sorted(provider, writer, column, partition, memory, uri.clone());
                    tokio::spawn(task).await.map_err(|e| ArchiveError::Delta {
                        uri,
                        source: Box::new(deltalake::DeltaTableError::Generic(format!(
                            "compaction task failed: {e}"
                        ))),
                    })?
                }
            })
            .collect();
        let written: Vec<Vec<Action>> = futures::stream::iter(tasks)
            .buffer_unordered(cores)
            .try_collect()
            .await?;
        let mut actions: Vec<Action> = written.into_iter().flatten().collect();
        let snapshot = self.delta().snapshot().map_err(ArchiveError::delta(&uri))?;
        for view in snapshot.log_data().iter() {
            let partition = view
                .partition_values_map()
                .get(column)
                .and_then(|v| v.as_deref())
                .and_then(parse_partition_value);
            if partition.is_some_and(|p| partitions.contains(&p)) {
                actions.push(Action::Remove(view.remove_action(false)));
            }
        }
        let values: Vec<String> = partitions.iter().map(|p| partition_value(*p)).collect();
        let operation = DeltaOperation::Optimize {
            predicate: Some(format!("{column} IN ('{}')", values.join("', '"))),
            target_size: i64::try_from(settings.target_file_bytes).unwrap_or(i64::MAX),
        };
        let committed = CommitBuilder::from(CommitProperties::default())
            .with_actions(actions)
            .build(Some(snapshot), self.delta().log_store(), operation)
            .await
            .map_err(ArchiveError::delta(&uri))?;
        tracing::debug!(
            version = committed.version(),
            partitions = partitions.len(),
            "compacted"
        );
        self.refresh().await
    }
}

/// A DataFusion session for one partition's sort: `memory_bytes` of pool, past which the sort
/// spills to disk. One target partition: a sort per core merged afterwards could not spill its
/// merge of wide rows (raw values) and ran out of the pool on a month of 400k events, and was no
/// faster (the writer is the bottleneck). Plain strings, as the table's files and its writer have
/// them (not views to cast back).
fn sort_session(memory_bytes: usize) -> datafusion::error::Result<SessionContext> {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(memory_bytes)))
        .build_arc()?;
    let mut config = SessionConfig::new().with_target_partitions(1);
    config
        .options_mut()
        .execution
        .parquet
        .schema_force_view_types = false;
    Ok(SessionContext::new_with_config_rt(config, runtime))
}

/// Writes the rows `partition` holds in `provider`'s version as new files in compaction's order
/// (uncommitted), sorting in a session of its own with `memory_bytes` of pool; their `add`
/// actions.
async fn write_sorted(
    provider: Arc<dyn TableProvider>,
    mut writer: RecordBatchWriter,
    column: &'static str,
    partition: i32,
    memory_bytes: usize,
    uri: String,
) -> Result<Vec<Action>> {
    let df_err = ArchiveError::datafusion(&uri);
    let ctx = sort_session(memory_bytes).map_err(df_err)?;
    let order: Vec<_> = schema::COMPACTION_SORT
        .iter()
        .map(|c| col(*c).sort(true, false))
        .collect();
    let mut rows = ctx
        .read_table(provider)
        .and_then(|df| df.filter(col(column).eq(lit(ScalarValue::Date32(Some(partition))))))
        .and_then(|df| df.sort(order))
        .map_err(df_err)?
        .execute_stream()
        .await
        .map_err(df_err)?;
    while let Some(batch) = rows.next().await {
        writer
            .write(batch.map_err(df_err)?)
            .await
            .map_err(ArchiveError::delta(&uri))?;
    }
    let adds = writer.flush().await.map_err(ArchiveError::delta(&uri))?;
    Ok(adds
        .into_iter()
        .map(|mut add| {
            add.data_change = false;
            Action::Add(add)
        })
        .collect())
}
