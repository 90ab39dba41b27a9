//! Opening (and on first use creating) the archive's Delta table, and summarising what it holds.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray as _};
use arrow::datatypes::{Int32Type, Int64Type};
use chrono::{DateTime, Utc};
use datafusion::catalog::TableProvider;
use datafusion::execution::SessionState;
use datafusion::prelude::SessionContext;
use deltalake::operations::create::CreateBuilder;
use deltalake::table::config::TableProperty;
use deltalake::{DeltaTable, DeltaTableBuilder};
use futures::StreamExt as _;
use serde::Serialize;

use crate::codec::{CODEC_PROPERTY, ColumnCodec};
use crate::error::{ArchiveError, Result};
use crate::layout::{Partitioning, TableLayout};
use crate::ledger::OffsetLedger;
use crate::schema;
use crate::storage::TableLocation;

/// Name given to the Delta table's metadata (readers show it; it does not affect paths).
pub const TABLE_NAME: &str = "order_events";

/// The archive table: a Delta table whose schema has been checked against the archive contract.
#[derive(Debug, Clone)]
pub struct ArchiveTable {
    location: TableLocation,
    table: DeltaTable,
    /// Read from the table's partition columns.
    partitioning: Partitioning,
    /// Read from the table's configuration.
    codec: ColumnCodec,
}

impl ArchiveTable {
    /// Opens an existing archive table; refuses a missing table or one with an incompatible schema.
    pub async fn open(location: TableLocation) -> Result<Self> {
        let uri = location.to_string();
        let mut table = DeltaTableBuilder::from_url(location.url().clone())
            .map_err(ArchiveError::delta(&uri))?
            .with_storage_options(location.options().clone())
            .build()
            .map_err(ArchiveError::delta(&uri))?;
        // Look before loading: a missing table is an expected answer, not a log-replay failure.
        if !table
            .verify_deltatable_existence()
            .await
            .map_err(ArchiveError::delta(&uri))?
        {
            return Err(ArchiveError::TableNotFound { uri });
        }
        table.load().await.map_err(ArchiveError::delta(&uri))?;
        let partitioning = Self::check_schema(&uri, &table)?;
        let codec = Self::codec_of(&uri, &table)?;
        Ok(Self {
            location,
            table,
            partitioning,
            codec,
        })
    }

    /// Opens an existing archive table to write to it: a table created by an older archiver
    /// first gains the columns added to the archive since ([`schema::added_fields`]) in a
    /// metadata-only commit, so the rows written now keep every column. No file is rewritten.
    pub async fn open_for_writing(location: TableLocation) -> Result<Self> {
        Self::open(location).await?.with_added_columns().await
    }

    /// This table with the archive's added columns, committing them when it lacks some. Two
    /// writers adding them at once: one commit wins, the other finds them on reopening.
    async fn with_added_columns(self) -> Result<Self> {
        let uri = self.location.to_string();
        let snapshot = self.table.snapshot().map_err(ArchiveError::delta(&uri))?;
        let missing = schema::missing_added_fields(&snapshot.schema());
        if missing.is_empty() {
            return Ok(self);
        }
        let names: Vec<String> = missing.iter().map(|f| f.name().clone()).collect();
        match self.table.clone().add_columns().with_fields(missing).await {
            Ok(table) => {
                tracing::info!(table = %uri, columns = ?names, version = ?table.version(),
                    "the archive table gained the columns added to the archive since it was created");
                Ok(Self { table, ..self })
            }
            Err(e) => {
                tracing::debug!(table = %uri, error = %e, "adding columns raced, reopening");
                let reopened = Self::open(self.location).await?;
                let snapshot = reopened
                    .table
                    .snapshot()
                    .map_err(ArchiveError::delta(&uri))?;
                if schema::missing_added_fields(&snapshot.schema()).is_empty() {
                    Ok(reopened)
                } else {
                    Err(ArchiveError::delta(&uri)(e))
                }
            }
        }
    }

    /// Opens the archive table, creating it with the archive schema and the default layout
    /// when nothing is there yet.
    pub async fn open_or_create(location: TableLocation) -> Result<Self> {
        Self::open_or_create_with(location, TableLayout::default()).await
    }

    /// Opens the archive table to write to it ([`Self::open_for_writing`]), creating it with the
    /// archive schema and `layout` when nothing is there yet (an existing table keeps its own
    /// layout). Two instances racing to create it both end up with the one table.
    pub async fn open_or_create_with(location: TableLocation, layout: TableLayout) -> Result<Self> {
        let TableLayout {
            partitioning,
            codec,
        } = layout;
        match Self::open_for_writing(location.clone()).await {
            Err(ArchiveError::TableNotFound { .. }) => {}
            Ok(table) => {
                if table.layout() != layout {
                    tracing::info!(
                        table = %location,
                        partitioning = %table.partitioning,
                        codec = %table.codec,
                        configured_partitioning = %partitioning,
                        configured_codec = %codec,
                        "the table exists with its own layout, which it keeps"
                    );
                }
                return Ok(table);
            }
            other => return other,
        }
        let uri = location.to_string();
        let created = CreateBuilder::new()
            .with_location(location.url().as_str())
            .with_storage_options(location.options().clone())
            .with_table_name(TABLE_NAME)
            .with_comment("orderlake archive: one row per Kafka order event, raw and typed")
            .with_columns(schema::table_delta_schema(partitioning).fields().cloned())
            .with_partition_columns([partitioning.column()])
            .with_configuration_property(
                TableProperty::DataSkippingStatsColumns,
                Some(schema::stats_columns(partitioning).join(",")),
            )
            // Our own key, outside Delta's `delta.` namespace (which delta-rs checks).
            .with_configuration([(CODEC_PROPERTY, Some(codec.name()))])
            .with_raise_if_key_not_exists(false)
            .await;
        match created {
            Ok(table) => {
                tracing::info!(table = %uri, %partitioning, %codec, "created archive table");
                Ok(Self {
                    location,
                    table,
                    partitioning,
                    codec,
                })
            }
            // Another instance created it between our open and create.
            Err(e) => {
                tracing::debug!(table = %uri, error = %e, "create raced, opening instead");
                Self::open_for_writing(location).await
            }
        }
    }

    /// The table's partitioning, once its schema is known to hold archive rows.
    fn check_schema(uri: &str, table: &DeltaTable) -> Result<Partitioning> {
        let uri = uri.to_owned();
        let state = table.snapshot().map_err(ArchiveError::delta(&uri))?;
        let partitions = state.metadata().partition_columns();
        let Some(partitioning) = Partitioning::from_partition_columns(partitions) else {
            return Err(ArchiveError::IncompatibleSchema {
                uri,
                reason: format!(
                    "partitioned by {partitions:?} but an archive is partitioned by \
                     [\"{}\"] or [\"{}\"]",
                    Partitioning::Daily.column(),
                    Partitioning::Monthly.column()
                ),
            });
        };
        if let Some(reason) = schema::incompatibility_with(&state.schema(), partitioning) {
            return Err(ArchiveError::IncompatibleSchema { uri, reason });
        }
        Ok(partitioning)
    }

    /// The codec of the table's columns, once its configuration names one this build knows.
    fn codec_of(uri: &str, table: &DeltaTable) -> Result<ColumnCodec> {
        let state = table.snapshot().map_err(ArchiveError::delta(uri))?;
        ColumnCodec::of_configuration(state.metadata().configuration()).map_err(|reason| {
            ArchiveError::IncompatibleSchema {
                uri: uri.to_owned(),
                reason,
            }
        })
    }

    /// How the table's files are partitioned by event time.
    pub fn partitioning(&self) -> Partitioning {
        self.partitioning
    }

    /// How the table's columns (all but the raw record) are compressed.
    pub fn codec(&self) -> ColumnCodec {
        self.codec
    }

    /// Everything chosen at the table's creation.
    pub fn layout(&self) -> TableLayout {
        TableLayout {
            partitioning: self.partitioning,
            codec: self.codec,
        }
    }

    /// Brings the table to its latest version.
    pub async fn refresh(&mut self) -> Result<()> {
        let uri = self.location.to_string();
        self.table
            .update_incremental(None)
            .await
            .map_err(ArchiveError::delta(&uri))
    }

    pub fn location(&self) -> &TableLocation {
        &self.location
    }

    pub fn delta(&self) -> &DeltaTable {
        &self.table
    }

    /// This table with another state of its log (an older version).
    pub(crate) fn with_delta(&self, table: DeltaTable) -> Self {
        Self {
            location: self.location.clone(),
            table,
            partitioning: self.partitioning,
            codec: self.codec,
        }
    }

    /// Takes the table state a Delta operation returned (same table, newer version).
    pub(crate) fn replace_delta(&mut self, table: DeltaTable) {
        self.table = table;
    }

    pub fn version(&self) -> Option<u64> {
        self.table.version()
    }

    /// When the current version was committed (Unix milliseconds, from its log file).
    pub fn committed_at_ms(&self) -> Option<i64> {
        let version = self.table.version()?;
        self.table.snapshot().ok()?.version_timestamp(version)
    }

    /// A DataFusion table provider over this table's current version: later commits are not seen
    /// through it, so every query planned with it reads one consistent version. `file_column`
    /// adds a column naming each row's Parquet file.
    pub async fn provider(
        &self,
        session: &SessionState,
        file_column: Option<&str>,
    ) -> Result<Arc<dyn TableProvider>> {
        let uri = self.location.to_string();
        self.table
            .update_datafusion_session(session)
            .map_err(ArchiveError::delta(&uri))?;
        let mut builder = self
            .table
            .table_provider()
            .with_session(Arc::new(session.clone()));
        if let Some(column) = file_column {
            builder = builder.with_file_column(column);
        }
        builder.await.map_err(|e| ArchiveError::Delta {
            uri,
            source: Box::new(e.into()),
        })
    }

    /// A DataFusion session with this table registered as `name` (plus a `__file` column).
    pub async fn session_with(&self, name: &str) -> Result<SessionContext> {
        let ctx = SessionContext::new();
        let provider = self.provider(&ctx.state(), Some(FILE_COLUMN)).await?;
        ctx.register_table(name, provider)
            .map_err(|e| ArchiveError::Delta {
                uri: self.location.to_string(),
                source: Box::new(e.into()),
            })?;
        Ok(ctx)
    }

    /// Summarises the table: version, last commit, and per source partition the ledger offset,
    /// rows, offset range and files.
    pub async fn status(&self) -> Result<TableStatus> {
        let uri = self.location.to_string();
        let df_err = ArchiveError::datafusion(&uri);
        let ctx = self.session_with("archive").await?;
        let batches = ctx
            .sql(&format!(
                "SELECT kafka_topic, kafka_partition, count(*), min(kafka_offset), \
                 max(kafka_offset), count(DISTINCT {FILE_COLUMN}), count(decode_error), \
                 CAST(arrow_cast(max(kafka_timestamp), 'Timestamp(Millisecond, None)') AS BIGINT), \
                 CAST(arrow_cast(max(event_time), 'Timestamp(Millisecond, None)') AS BIGINT) \
                 FROM archive GROUP BY 1, 2 ORDER BY 1, 2"
            ))
            .await
            .map_err(df_err)?
            .collect()
            .await
            .map_err(df_err)?;
        let mut partitions = Vec::new();
        let mut imported_rows = 0;
        for batch in &batches {
            let topics = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8)
                .map_err(|e| ArchiveError::Delta {
                uri: uri.clone(),
                source: Box::new(e.into()),
            })?;
            let topics = topics.as_string::<i32>();
            let parts = batch.column(1).as_primitive::<Int32Type>();
            let rows = batch.column(2).as_primitive::<Int64Type>();
            let min = batch.column(3).as_primitive::<Int64Type>();
            let max = batch.column(4).as_primitive::<Int64Type>();
            let files = batch.column(5).as_primitive::<Int64Type>();
            let bad = batch.column(6).as_primitive::<Int64Type>();
            let newest = batch.column(7).as_primitive::<Int64Type>();
            let newest_event = batch.column(8).as_primitive::<Int64Type>();
            let time = |column: &arrow::array::Int64Array, i: usize| {
                (!column.is_null(i))
                    .then(|| DateTime::<Utc>::from_timestamp_millis(column.value(i)))
                    .flatten()
            };
            for i in 0..batch.num_rows() {
                if topics.is_null(i) {
                    imported_rows += rows.value(i);
                    continue;
                }
                partitions.push(PartitionStatus {
                    topic: topics.value(i).to_owned(),
                    partition: parts.value(i),
                    archived_offset: None,
                    rows: rows.value(i),
                    first_offset: min.value(i),
                    last_offset: max.value(i),
                    files: files.value(i),
                    undecoded_rows: bad.value(i),
                    newest_timestamp: time(newest, i),
                    newest_event_time: time(newest_event, i),
                });
            }
        }
        let offsets = OffsetLedger::offsets_of(
            self,
            partitions.iter().map(|p| (p.topic.as_str(), p.partition)),
        )
        .await?;
        for (p, offset) in partitions.iter_mut().zip(offsets) {
            p.archived_offset = offset;
        }
        let mut history = self.table.history(Some(1));
        let last_commit = match history.next().await {
            Some(Ok(info)) => info
                .timestamp
                .and_then(DateTime::<Utc>::from_timestamp_millis),
            _ => None,
        };
        let live = self.files()?;
        let files = live.files.len();
        let index = self
            .key_index(&mut crate::key_index::SegmentCache::new())
            .await?;
        let index = IndexStatus {
            covered_live_files: live
                .files
                .iter()
                .filter(|f| index.covers(&f.relative_path))
                .count(),
            summary: index.summary(),
        };
        let (rollup, unreadable) = match self.rollup().await {
            Ok(r) => (r, None),
            Err(e) => (Default::default(), Some(e.to_string())),
        };
        let by_partition = PartitionSize::of(&live);
        let live_rows = crate::rollup::LiveRows::of(&live);
        let rollup = RollupStatus {
            unreadable,
            summary: rollup.summary(),
            current_partitions: rollup.current_partitions(&live_rows).len(),
            live_partitions: live_rows.partitions().len(),
        };
        Ok(TableStatus {
            table_uri: uri,
            partitioning: self.partitioning,
            codec: self.codec,
            version: self.version(),
            last_commit,
            files,
            rows: partitions.iter().map(|p| p.rows).sum::<i64>() + imported_rows,
            imported_rows,
            partitions,
            by_partition,
            index,
            rollup,
        })
    }
}

/// Name of the per-row source file column in sessions built by [`ArchiveTable::session_with`].
pub const FILE_COLUMN: &str = "__file";

/// What the archive holds, for `orderlake-archiver status`.
#[derive(Debug, Clone, Serialize)]
pub struct TableStatus {
    pub table_uri: String,
    pub partitioning: Partitioning,
    pub codec: ColumnCodec,
    pub version: Option<u64>,
    pub last_commit: Option<DateTime<Utc>>,
    pub files: usize,
    pub rows: i64,
    pub imported_rows: i64,
    pub partitions: Vec<PartitionStatus>,
    /// Live files, rows and bytes per table partition (event date or month), oldest first.
    pub by_partition: Vec<PartitionSize>,
    pub index: IndexStatus,
    pub rollup: RollupStatus,
}

/// What the daily rollup holds, for `status`.
#[derive(Debug, Clone, Serialize)]
pub struct RollupStatus {
    #[serde(flatten)]
    pub summary: crate::rollup::RollupSummary,
    /// Live partitions whose stored rollup rows are exact (closed and unchanged since computed).
    pub current_partitions: usize,
    pub live_partitions: usize,
    /// Why the stored rollup could not be read (the next maintenance rebuilds it).
    pub unreadable: Option<String>,
}

/// What the key index holds and covers, for `status`.
#[derive(Debug, Clone, Serialize)]
pub struct IndexStatus {
    #[serde(flatten)]
    pub summary: crate::key_index::IndexSummary,
    /// Live data files whose keys the index holds; lookups read the others whatever the key.
    pub covered_live_files: usize,
}

/// One source partition in [`TableStatus`].
#[derive(Debug, Clone, Serialize)]
pub struct PartitionStatus {
    pub topic: String,
    pub partition: i32,
    /// The ledger's offset: the table holds this partition through this offset.
    pub archived_offset: Option<i64>,
    pub rows: i64,
    pub first_offset: i64,
    pub last_offset: i64,
    pub files: i64,
    pub undecoded_rows: i64,
    /// The newest Kafka timestamp archived from this partition.
    pub newest_timestamp: Option<DateTime<Utc>>,
    /// The newest event time among the decoded rows of this partition (the business clock;
    /// `None` when no row decoded).
    pub newest_event_time: Option<DateTime<Utc>>,
}

/// The live files of one table partition, in [`TableStatus`].
#[derive(Debug, Clone, Serialize)]
pub struct PartitionSize {
    /// The partition value: its event date, or the first day of its month.
    pub partition: chrono::NaiveDate,
    pub files: usize,
    pub rows: u64,
    pub bytes: u64,
}

impl PartitionSize {
    fn of(live: &crate::files::ArchiveFiles) -> Vec<Self> {
        let mut by = BTreeMap::<i32, Self>::new();
        for f in &live.files {
            let Some(day) = f.partition else { continue };
            let Some(date) = crate::files::date_of_days(day) else {
                continue;
            };
            let p = by.entry(day).or_insert(Self {
                partition: date,
                files: 0,
                rows: 0,
                bytes: 0,
            });
            p.files += 1;
            p.rows += f.rows.unwrap_or(0);
            p.bytes += f.size;
        }
        by.into_values().collect()
    }
}

impl TableStatus {
    /// Per-topic totals, for the human-readable summary.
    pub fn topics(&self) -> BTreeMap<&str, (usize, i64)> {
        let mut out = BTreeMap::<&str, (usize, i64)>::new();
        for p in &self.partitions {
            let e = out.entry(p.topic.as_str()).or_default();
            e.0 += 1;
            e.1 += p.rows;
        }
        out
    }
}
