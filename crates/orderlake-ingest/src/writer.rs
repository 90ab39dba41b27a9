//! The exactly-once writer. A flush becomes Parquet files plus one Delta commit that carries, for
//! every Kafka partition in the flush, the ledger entry "archived through offset N". Before every
//! commit attempt the writer re-reads the ledger at the latest table version: if another instance
//! moved it, this flush is fenced and nothing is committed; if the ledger already shows this very
//! flush (an earlier attempt landed but its answer was lost), the flush counts as committed.

use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake::kernel::{Action, Transaction};
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter as _, RecordBatchWriter};
use deltalake::{DeltaTableError, kernel::Add};
use orderlake_archive::{ArchiveTable, ImportSource, OffsetLedger, SourcePartition};

use orderlake_telemetry::catalogue::archiver as m;

use crate::error::{IngestError, Result};

/// How files are laid out and commits retried.
#[derive(Debug, Clone)]
pub struct WriterSettings {
    /// Roll a new Parquet file once one reaches this many bytes.
    pub target_file_bytes: u64,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
    /// zstd level for the Parquet pages the table's codec leaves to zstd (the raw record's at
    /// least).
    pub zstd_level: i32,
    /// Longest wait between retries of a failing write or commit.
    pub max_backoff: Duration,
    /// Files (one per partition: event date or month) open at once while a flush is written.
    pub max_open_files: usize,
    /// Write a key-index segment covering each flush's files before committing them.
    pub key_index: bool,
}

impl Default for WriterSettings {
    fn default() -> Self {
        Self {
            target_file_bytes: 128 * 1024 * 1024,
            row_group_rows: orderlake_archive::schema::ROW_GROUP_ROWS,
            zstd_level: 3,
            max_backoff: Duration::from_secs(30),
            max_open_files: 8,
            key_index: true,
        }
    }
}

impl WriterSettings {
    fn writer_properties(&self, codec: orderlake_archive::ColumnCodec) -> WriterProperties {
        orderlake_archive::schema::parquet_properties(codec, self.zstd_level, self.row_group_rows)
    }
}

/// A partition's ledger move in one flush: from "archived through `after`" to "through `through`".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerAdvance {
    pub partition: SourcePartition,
    pub after: Option<i64>,
    pub through: i64,
}

/// An import's ledger move in one flush: from `after` records of the source to `through`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportAdvance {
    pub source: ImportSource,
    pub after: Option<i64>,
    pub through: i64,
}

/// One flush: the rows and the ledger moves they make.
#[derive(Debug, Clone)]
pub struct Flush {
    pub batch: RecordBatch,
    pub advances: Vec<LedgerAdvance>,
    /// Set when the rows come from an import rather than from Kafka.
    pub import: Option<ImportAdvance>,
}

/// What became of a flush.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlushOutcome {
    Committed {
        version: u64,
        files: usize,
    },
    /// A previous attempt of this flush had already landed.
    AlreadyCommitted,
    /// Another instance archived some of these records first; nothing was committed.
    Fenced {
        /// The Kafka partition or the import source whose ledger entry moved.
        stream: String,
        expected: Option<i64>,
        found: Option<i64>,
    },
}

impl FlushOutcome {
    /// The outcome's name in metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Committed { .. } => "committed",
            Self::AlreadyCommitted => "already_committed",
            Self::Fenced { .. } => "fenced",
        }
    }
}

enum LedgerCheck {
    Ours,
    Landed,
    Moved(String, Option<i64>, Option<i64>),
}

/// Writes flushes to the archive table, exactly once per ledger range.
#[derive(Debug)]
pub struct ArchiveWriter {
    table: ArchiveTable,
    settings: WriterSettings,
    /// Flushes committed with a key-index segment since the small segments were last merged.
    segments_since_merge: u32,
}

/// Every this many committed flushes, the writer merges the small index segments they left.
const FLUSHES_PER_INDEX_MERGE: u32 = 8;

impl ArchiveWriter {
    pub fn new(table: ArchiveTable, settings: WriterSettings) -> Self {
        Self {
            table,
            settings,
            segments_since_merge: 0,
        }
    }

    pub fn table(&self) -> &ArchiveTable {
        &self.table
    }

    pub fn table_mut(&mut self) -> &mut ArchiveTable {
        &mut self.table
    }

    fn write_err(&self) -> impl FnOnce(DeltaTableError) -> IngestError + '_ {
        |source| IngestError::Write {
            table: self.table.location().to_string(),
            source: Box::new(source),
        }
    }

    async fn check_ledger(&mut self, flush: &Flush) -> Result<LedgerCheck> {
        self.table.refresh().await?;
        let partitions: Vec<SourcePartition> =
            flush.advances.iter().map(|a| a.partition.clone()).collect();
        let ledger = OffsetLedger::read(&self.table, partitions).await?;
        let import = match &flush.import {
            Some(i) => Some((i, i.source.imported(&self.table).await?)),
            None => None,
        };
        let landed = flush
            .advances
            .iter()
            .all(|a| ledger.archived(&a.partition) == Some(a.through))
            && import.is_none_or(|(i, found)| found == Some(i.through));
        if landed {
            return Ok(LedgerCheck::Landed);
        }
        for a in &flush.advances {
            let found = ledger.archived(&a.partition);
            if found != a.after {
                return Ok(LedgerCheck::Moved(a.partition.to_string(), a.after, found));
            }
        }
        if let Some((i, found)) = import
            && found != i.after
        {
            return Ok(LedgerCheck::Moved(i.source.name.clone(), i.after, found));
        }
        Ok(LedgerCheck::Ours)
    }

    /// Encodes the batch into Parquet files under the table (no commit yet). The rows are sorted
    /// by partition (event date or month) and written a few partitions at a time, each group's
    /// files finalized before the next opens: every open file holds its own encoding and upload
    /// buffers, so writing all the partitions of a flush at once (years of history in a
    /// backfill) would make memory grow with their number instead of staying within the budget.
    pub(crate) async fn write_files(&self, batch: &RecordBatch) -> Result<Vec<Add>> {
        let partitioning = self.table.partitioning();
        let arrow_err = |e: arrow::error::ArrowError| IngestError::Write {
            table: self.table.location().to_string(),
            source: Box::new(e.into()),
        };
        let by_partition = partitioning.split(batch).map_err(arrow_err)?;
        let mut adds = Vec::new();
        for group in by_partition.chunks(self.settings.max_open_files.max(1)) {
            let mut writer = RecordBatchWriter::for_table(self.table.delta())
                .map_err(self.write_err())?
                .with_writer_properties(self.settings.writer_properties(self.table.codec()))
                .with_target_file_size(self.settings.target_file_bytes);
            // Parquet encoding and zstd are CPU work: keep them off the async workers' polling path.
            let handle = tokio::runtime::Handle::current();
            for slice in group {
                tokio::task::block_in_place(|| handle.block_on(writer.write(slice.clone())))
                    .map_err(self.write_err())?;
            }
            adds.extend(writer.flush().await.map_err(self.write_err())?);
        }
        Ok(adds)
    }

    /// Writes the key-index segment for a flush's files, before they are committed: once they are
    /// live, the index covers them (see `orderlake_archive::key_index`).
    pub(crate) async fn index_files(&self, batch: &RecordBatch, adds: &[Add]) -> Result<()> {
        let entries = orderlake_archive::key_index::entries_of_rows(std::slice::from_ref(batch))?;
        let covers: Vec<String> = adds
            .iter()
            .map(|a| orderlake_archive::key_index::log_path(&a.path))
            .collect();
        orderlake_archive::key_index::write_segment(&self.table.index_store(), entries, &covers)
            .await?;
        Ok(())
    }

    /// Every few flushes, merges the small index segments flushes leave (eight of a size into
    /// one), so lookups probe a few segments rather than one per flush. A failure costs only
    /// lookup speed: it is logged, and the next merge (or `maintain`) tries again.
    async fn merge_small_segments(&mut self) {
        self.segments_since_merge += 1;
        if self.segments_since_merge < FLUSHES_PER_INDEX_MERGE {
            return;
        }
        self.segments_since_merge = 0;
        let store = self.table.index_store();
        if let Err(e) = orderlake_archive::key_index::merge::merge_small_segments(&store).await {
            tracing::warn!(
                table = %self.table.location(),
                error = %e,
                "could not merge small key-index segments; lookups probe more of them until it can"
            );
        }
    }

    /// Commits `adds` with the ledger entries, once, against the current table version.
    async fn try_commit(&self, adds: &[Add], flush: &Flush) -> Result<u64, DeltaTableError> {
        let mut txns: Vec<_> = flush
            .advances
            .iter()
            .map(|a| a.partition.ledger_entry(a.through))
            .collect();
        if let Some(i) = &flush.import {
            txns.push(Transaction::new(i.source.app_id(), i.through));
        }
        let props = CommitProperties::default()
            .with_application_transactions(txns)
            .with_max_retries(0);
        let actions = adds.iter().cloned().map(Action::Add).collect();
        let state = self.table.delta().snapshot()?;
        let committed = CommitBuilder::from(props)
            .with_actions(actions)
            .build(
                Some(state),
                self.table.delta().log_store(),
                DeltaOperation::Write {
                    mode: SaveMode::Append,
                    partition_by: None,
                    predicate: None,
                },
            )
            .await?;
        Ok(committed.version())
    }

    /// Writes and commits one flush. Transient failures (storage unreachable, timeouts) are
    /// retried with backoff until they succeed; a concurrent commit is answered by re-checking the
    /// ledger before the next attempt.
    pub async fn commit(&mut self, flush: &Flush) -> Result<FlushOutcome> {
        let started = Instant::now();
        let location = self.table.location().clone();
        let mut backoff = Duration::from_millis(200);
        let mut adds: Option<Vec<Add>> = None;
        let mut indexed = false;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match watched(&location, "reading the ledger", self.check_ledger(flush)).await {
                Ok(LedgerCheck::Ours) => {}
                Ok(LedgerCheck::Landed) => return Ok(FlushOutcome::AlreadyCommitted),
                Ok(LedgerCheck::Moved(stream, expected, found)) => {
                    return Ok(FlushOutcome::Fenced {
                        stream,
                        expected,
                        found,
                    });
                }
                Err(e) => {
                    self.wait_after(
                        &e,
                        attempt,
                        &mut backoff,
                        ("read_ledger", "reading the ledger"),
                    )
                    .await;
                    continue;
                }
            }
            let files = match &adds {
                Some(files) => files,
                None => match watched(
                    &location,
                    "writing Parquet files",
                    self.write_files(&flush.batch),
                )
                .await
                {
                    Ok(written) => adds.insert(written),
                    Err(e) => {
                        self.wait_after(
                            &e,
                            attempt,
                            &mut backoff,
                            ("write_files", "writing Parquet files"),
                        )
                        .await;
                        continue;
                    }
                },
            };
            if self.settings.key_index && !indexed {
                match watched(
                    &location,
                    "writing the key index",
                    self.index_files(&flush.batch, files),
                )
                .await
                {
                    Ok(()) => indexed = true,
                    Err(e) => {
                        self.wait_after(
                            &e,
                            attempt,
                            &mut backoff,
                            ("write_index", "writing the key index"),
                        )
                        .await;
                        continue;
                    }
                }
            }
            let committing = Instant::now();
            let committed = watched(
                &location,
                "committing to the Delta log",
                self.try_commit(files, flush),
            )
            .await;
            metrics::histogram!(m::COMMIT_DURATION).record(committing.elapsed().as_secs_f64());
            match committed {
                Ok(version) => {
                    let bytes: i64 = files.iter().map(|a| a.size).sum();
                    metrics::counter!(m::BYTES_ARCHIVED).increment(bytes.max(0) as u64);
                    metrics::gauge!(m::TABLE_VERSION).set(version as f64);
                    let files = files.len();
                    tracing::debug!(
                        version,
                        files,
                        rows = flush.batch.num_rows(),
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "committed flush"
                    );
                    if indexed {
                        self.merge_small_segments().await;
                    }
                    return Ok(FlushOutcome::Committed { version, files });
                }
                Err(
                    DeltaTableError::Transaction {
                        source:
                            TransactionError::VersionAlreadyExists(_)
                            | TransactionError::MaxCommitAttempts(_),
                    }
                    | DeltaTableError::VersionAlreadyExists(_),
                ) => {
                    // Another writer committed first: loop to re-read the ledger at the new version.
                    tracing::info!(
                        attempt,
                        "table moved during commit; re-checking offsets before retrying"
                    );
                }
                Err(e) => {
                    let e = IngestError::Write {
                        table: self.table.location().to_string(),
                        source: Box::new(e),
                    };
                    self.wait_after(
                        &e,
                        attempt,
                        &mut backoff,
                        ("commit", "committing to the Delta log"),
                    )
                    .await;
                }
            }
        }
    }

    /// Logs a failed storage step (`(metric label, what it was)`) and waits before the retry.
    async fn wait_after(
        &self,
        e: &IngestError,
        attempt: u32,
        backoff: &mut Duration,
        (operation, what): (&'static str, &str),
    ) {
        metrics::counter!(m::STORAGE_RETRIES, "operation" => operation).increment(1);
        tracing::warn!(
            table = %self.table.location(),
            attempt,
            retry_in_ms = backoff.as_millis() as u64,
            error = %e,
            "{what} failed; retrying"
        );
        tokio::time::sleep(*backoff).await;
        *backoff = (*backoff * 2).min(self.settings.max_backoff);
    }
}

/// How long a storage step may take before the operator hears about it (again every interval).
const SLOW_STORAGE: Duration = Duration::from_secs(10);

/// Awaits `step`, warning every [`SLOW_STORAGE`] while it has not finished: the object store's
/// client retries timeouts and refused connections by itself, and an operator must still see
/// that the archive is not being written.
async fn watched<T>(
    table: &orderlake_archive::TableLocation,
    what: &str,
    step: impl Future<Output = T>,
) -> T {
    let started = Instant::now();
    let mut step = std::pin::pin!(step);
    loop {
        tokio::select! {
            out = &mut step => return out,
            () = tokio::time::sleep(SLOW_STORAGE) => tracing::warn!(
                %table,
                waited_secs = started.elapsed().as_secs(),
                "{what} has not finished after {}s: the object store is slow or unreachable; \
                 its requests are retried, and consumption pauses once the buffer is full",
                started.elapsed().as_secs()
            ),
        }
    }
}
