//! The daily rollup: per event date and facility, the KPIs dashboards ask of years of orders
//! (events, orders placed, revenue, cancellations, line items, and distinct customers as a
//! mergeable sketch; see [`compute`] for each measure's SQL definition), kept in the archive so
//! that a KPI query over ten years reads a few thousand rows instead of every file.
//!
//! Layout: one Parquet object, `<table>/_orderlake_rollup/daily.parquet`, one row per date and
//! facility, each row carrying `source_rows`: how many archive rows its date's partition (the
//! date itself, or its month; see [`crate::layout`]) held when it was computed. Maintenance
//! computes whole partitions once all their dates are closed, and rewrites the object whole (an
//! object store put replaces it atomically).
//!
//! Why it can never serve a wrong answer: a partition's rows are only ever added (by writers,
//! late events included) or rewritten unchanged (by compaction), so its row count, summed from
//! the Delta log's per-file statistics, names its content. A reader serves a date from the
//! rollup only while its partition's live row count equals the rollup's `source_rows`; any other
//! date (open, changed since, never rolled up, or a file without statistics) is computed from
//! its rows. Two maintainers racing leave one's object or the other's, both self-checking; a
//! crash leaves the previous object or the new one; an unreadable object is ignored and rebuilt.

pub mod compute;
pub mod sketch;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayRef, AsArray as _, BinaryArray, Date32Array, Decimal128Array, Int64Array, RecordBatch,
    StringArray,
};
use arrow::datatypes::{DataType, Date32Type, Field, Int64Type, Schema, SchemaRef};
use bytes::Bytes;
use futures::TryStreamExt as _;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _};
use parquet::arrow::ArrowWriter;
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use serde::Serialize;

pub use compute::{Measures, compute};
pub use sketch::DistinctSketch;

use crate::error::{ArchiveError, Result};
use crate::files::ArchiveFiles;
use crate::layout::Partitioning;
use crate::parquet_io::StoreFileReader;
use crate::schema::{EVENT_DATE, FACILITY_ID, MONEY_SCALE};
use crate::table::ArchiveTable;

/// The rollup's folder under the table root.
pub const ROLLUP_DIR: &str = "_orderlake_rollup";
const ROLLUP_OBJECT: &str = "daily.parquet";

/// Precision of `revenue`: what SQL's `sum` of the archive's money type gives.
pub const REVENUE_PRECISION: u8 = 28;
/// The column holding, per row, its date's archive row count when computed.
pub const SOURCE_ROWS: &str = "source_rows";
pub const CUSTOMERS_SKETCH: &str = "customers_sketch";

/// A rollup row's key: its event date (days since 1970-01-01) and facility.
pub type RollupKey = (i32, Option<String>);

/// Computed rollup rows, in key order.
pub type DailyRows = BTreeMap<RollupKey, Measures>;

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new(EVENT_DATE, DataType::Date32, false),
        Field::new(FACILITY_ID, DataType::Utf8, true),
        Field::new("events", DataType::Int64, false),
        Field::new("orders", DataType::Int64, false),
        Field::new(
            "revenue",
            DataType::Decimal128(REVENUE_PRECISION, MONEY_SCALE as i8),
            true,
        ),
        Field::new("cancellations", DataType::Int64, false),
        Field::new("items", DataType::Int64, false),
        Field::new("customers", DataType::Int64, false),
        Field::new(CUSTOMERS_SKETCH, DataType::Binary, false),
        Field::new(SOURCE_ROWS, DataType::Int64, false),
    ]))
});

/// The rollup's columns as stored; readers drop [`SOURCE_ROWS`].
pub fn schema() -> SchemaRef {
    Arc::clone(&SCHEMA)
}

/// Live row counts per partition of one table version (`None` for a partition with a file the
/// log has no row count for: its dates are never served from the rollup). A partition's rows are
/// only ever added or rewritten unchanged, so its count names its content.
#[derive(Debug, Clone)]
pub struct LiveRows {
    partitioning: Partitioning,
    rows: BTreeMap<i32, Option<u64>>,
    /// Every date a live file may hold rows of.
    dates: BTreeSet<i32>,
}

impl LiveRows {
    pub fn of(files: &ArchiveFiles) -> Self {
        let mut rows: BTreeMap<i32, Option<u64>> = BTreeMap::new();
        let mut dates = BTreeSet::new();
        for file in &files.files {
            if let (Some(partition), Some((first, last))) = (file.partition, file.dates) {
                let total = rows.entry(partition).or_insert(Some(0));
                *total = total.zip(file.rows).map(|(a, b)| a + b);
                dates.extend(first..=last);
            }
        }
        Self {
            partitioning: files.partitioning,
            rows,
            dates,
        }
    }

    /// The live row count of the partition holding `date`.
    pub fn of_date(&self, date: i32) -> Option<u64> {
        self.of_partition(self.partitioning.partition_of(date))
    }

    pub fn of_partition(&self, partition: i32) -> Option<u64> {
        self.rows.get(&partition).copied().flatten()
    }

    /// The live partitions (days since 1970-01-01 of their first date) and their row counts.
    pub fn partitions(&self) -> &BTreeMap<i32, Option<u64>> {
        &self.rows
    }

    /// Every date some live file may hold rows of: with daily partitions exactly the dates that
    /// have rows; otherwise the dates within each file's statistics.
    pub fn dates(&self) -> &BTreeSet<i32> {
        &self.dates
    }

    pub fn partitioning(&self) -> Partitioning {
        self.partitioning
    }

    /// The partitions holding `dates`.
    pub fn partitions_of(&self, dates: &BTreeSet<i32>) -> BTreeSet<i32> {
        dates
            .iter()
            .map(|d| self.partitioning.partition_of(*d))
            .collect()
    }
}

/// The stored rollup: rows per date, and each date's row count when computed.
#[derive(Debug, Clone, Default)]
pub struct DailyRollup {
    /// The stored rows in one batch of [`schema`], sorted by date and facility.
    batch: Option<RecordBatch>,
    source_rows: BTreeMap<i32, u64>,
    bytes: u64,
    /// The stored object's tag; none when nothing was stored.
    tag: Option<RollupTag>,
}

/// Identifies one stored rollup object (size, time, entity tag), so a reader can tell cheaply
/// whether maintenance replaced it.
pub type RollupTag = String;

fn rollup_err(message: impl ToString) -> ArchiveError {
    ArchiveError::Rollup {
        path: format!("{ROLLUP_DIR}/{ROLLUP_OBJECT}"),
        message: message.to_string(),
    }
}

impl DailyRollup {
    fn path() -> Path {
        Path::from(ROLLUP_DIR).join(ROLLUP_OBJECT)
    }

    async fn head(store: &Arc<dyn ObjectStore>) -> Result<Option<object_store::ObjectMeta>> {
        match store.head(&Self::path()).await {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(rollup_err(e)),
        }
    }

    /// The stored object's tag, none when no rollup is stored.
    pub async fn current_tag(store: &Arc<dyn ObjectStore>) -> Result<Option<RollupTag>> {
        Ok(Self::head(store).await?.map(|m| tag_of(&m)))
    }

    /// Reads the rollup from the table-rooted `store`; none stored yet is an empty rollup.
    pub async fn load(store: &Arc<dyn ObjectStore>) -> Result<Self> {
        let path = Self::path();
        let Some(meta) = Self::head(store).await? else {
            return Ok(Self::default());
        };
        let reader = StoreFileReader::new(store, path, meta.size);
        let batches: Vec<RecordBatch> = ParquetRecordBatchStreamBuilder::new(reader)
            .await
            .map_err(rollup_err)?
            .build()
            .map_err(rollup_err)?
            .try_collect()
            .await
            .map_err(rollup_err)?;
        let batch = if batches.is_empty() {
            None
        } else {
            let batch = arrow::compute::concat_batches(&schema(), &batches).map_err(rollup_err)?;
            Some(batch)
        };
        let mut rollup = Self {
            batch,
            source_rows: BTreeMap::new(),
            bytes: meta.size,
            tag: Some(tag_of(&meta)),
        };
        rollup.source_rows = rollup.read_source_rows()?;
        Ok(rollup)
    }

    fn read_source_rows(&self) -> Result<BTreeMap<i32, u64>> {
        let mut out = BTreeMap::new();
        let Some(batch) = &self.batch else {
            return Ok(out);
        };
        let dates = batch.column(0).as_primitive::<Date32Type>();
        let rows = batch
            .column_by_name(SOURCE_ROWS)
            .and_then(|c| c.as_primitive_opt::<Int64Type>())
            .ok_or_else(|| rollup_err(format!("no column `{SOURCE_ROWS}`")))?;
        for i in 0..batch.num_rows() {
            let previous = out.insert(dates.value(i), rows.value(i) as u64);
            if previous.is_some_and(|p| p != rows.value(i) as u64) {
                return Err(rollup_err(format!(
                    "date {} has two source row counts",
                    dates.value(i)
                )));
            }
        }
        Ok(out)
    }

    /// The tag of the object this was read from.
    pub fn tag(&self) -> Option<&RollupTag> {
        self.tag.as_ref()
    }

    /// The dates whose stored rows are still exact for a version with these live row counts.
    pub fn current_dates(&self, live: &LiveRows) -> BTreeSet<i32> {
        self.source_rows
            .iter()
            .filter(|(date, rows)| live.of_date(**date) == Some(**rows))
            .map(|(date, _)| *date)
            .collect()
    }

    /// The partitions the stored rollup holds exactly: every date of such a partition that has
    /// rows has its rollup rows, and its other dates have no rows.
    pub fn current_partitions(&self, live: &LiveRows) -> BTreeSet<i32> {
        live.partitions_of(&self.current_dates(live))
    }

    /// The stored rows of `dates` (in [`schema`], with [`SOURCE_ROWS`]).
    pub fn rows_of(&self, dates: &BTreeSet<i32>) -> Result<RecordBatch> {
        let Some(batch) = &self.batch else {
            return Ok(RecordBatch::new_empty(schema()));
        };
        let keep: arrow::array::BooleanArray = batch
            .column(0)
            .as_primitive::<Date32Type>()
            .iter()
            .map(|d| Some(d.is_some_and(|d| dates.contains(&d))))
            .collect();
        arrow::compute::filter_record_batch(batch, &keep).map_err(rollup_err)
    }

    /// Dates held, and the stored object's size.
    pub fn summary(&self) -> RollupSummary {
        RollupSummary {
            dates: self.source_rows.len(),
            rows: self.batch.as_ref().map_or(0, |b| b.num_rows()),
            bytes: self.bytes,
            first_date: self.source_rows.keys().next().map(|d| date_string(*d)),
            last_date: self.source_rows.keys().next_back().map(|d| date_string(*d)),
        }
    }
}

fn tag_of(meta: &object_store::ObjectMeta) -> RollupTag {
    format!(
        "{}:{}:{}",
        meta.size,
        meta.last_modified.timestamp_micros(),
        meta.e_tag.as_deref().unwrap_or("")
    )
}

fn date_string(days: i32) -> String {
    Date32Type::to_naive_date_opt(days).map_or_else(|| days.to_string(), |d| d.to_string())
}

/// Computed rows as a batch of [`schema`]; `live` gives each date's [`SOURCE_ROWS`] (its
/// partition's row count).
pub fn rows_to_batch(rows: &DailyRows, live: &LiveRows) -> Result<RecordBatch> {
    let source = |d: i32| live.of_date(d).unwrap_or(0) as i64;
    let revenue: Decimal128Array = rows
        .values()
        .map(|r| r.revenue)
        .collect::<Decimal128Array>()
        .with_precision_and_scale(REVENUE_PRECISION, MONEY_SCALE as i8)
        .map_err(rollup_err)?;
    let int = |f: fn(&Measures) -> i64| -> ArrayRef {
        Arc::new(rows.values().map(f).collect::<Int64Array>())
    };
    let sketches: Vec<Vec<u8>> = rows.values().map(|r| r.customers.to_bytes()).collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Date32Array::from_iter_values(rows.keys().map(|k| k.0))),
        Arc::new(StringArray::from_iter(rows.keys().map(|k| k.1.as_deref()))),
        int(|r| r.events),
        int(|r| r.orders),
        Arc::new(revenue),
        int(|r| r.cancellations),
        int(|r| r.items),
        int(|r| r.customers.estimate()),
        Arc::new(BinaryArray::from_iter_values(sketches.iter())),
        Arc::new(Int64Array::from_iter_values(
            rows.keys().map(|k| source(k.0)),
        )),
    ];
    RecordBatch::try_new(schema(), columns).map_err(rollup_err)
}

/// What the stored rollup holds, for `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RollupSummary {
    pub dates: usize,
    pub rows: usize,
    pub bytes: u64,
    pub first_date: Option<String>,
    pub last_date: Option<String>,
}

/// What a rollup update did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RollupReport {
    /// Closed partitions (re)computed from their rows: new, or changed by late events.
    pub partitions_computed: usize,
    /// Dates with rows among them.
    pub dates_computed: usize,
    /// Dates kept from the stored rollup.
    pub dates_kept: usize,
    pub rows: usize,
    pub bytes: u64,
}

impl ArchiveTable {
    /// The stored rollup as it is now.
    pub async fn rollup(&self) -> Result<DailyRollup> {
        DailyRollup::load(&self.index_store()).await
    }

    /// Brings the rollup up to the current version for every partition closed before
    /// `closed_before` (days since 1970-01-01; a partition is closed when its last date is):
    /// computes the dates of the closed partitions it lacks or whose rows changed since, keeps the
    /// rest (all of them recomputed with `rebuild`), drops what no longer matches, and stores the
    /// result.
    pub async fn update_rollup(
        &mut self,
        closed_before: i32,
        rebuild: bool,
    ) -> Result<RollupReport> {
        self.refresh().await?;
        let files = self.files()?;
        let live = LiveRows::of(&files);
        let stored = match self.rollup().await {
            Ok(_) if rebuild => DailyRollup::default(),
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "the stored rollup is unreadable: rebuilding it");
                DailyRollup::default()
            }
        };
        let kept_dates = stored.current_dates(&live);
        let kept_partitions = live.partitions_of(&kept_dates);
        let partitioning = self.partitioning();
        let to_compute: Vec<i32> = live
            .partitions()
            .iter()
            .filter(|(p, rows)| {
                partitioning.dates_of(**p).1 < closed_before
                    && rows.is_some()
                    && !kept_partitions.contains(p)
            })
            .map(|(p, _)| *p)
            .collect();
        let dates: BTreeSet<i32> = to_compute
            .iter()
            .flat_map(|p| {
                let (first, last) = partitioning.dates_of(*p);
                first..=last
            })
            .collect();
        let kept = stored.rows_of(&kept_dates)?;
        let computed = compute(&files, &dates).await?;
        let dates_computed = computed.keys().map(|k| k.0).collect::<BTreeSet<_>>().len();
        let computed = rows_to_batch(&computed, &live)?;
        let mut merged =
            arrow::compute::concat_batches(&schema(), [&kept, &computed]).map_err(rollup_err)?;
        merged = sort_by_key(&merged)?;
        let bytes = write(&self.index_store(), &merged).await?;
        Ok(RollupReport {
            partitions_computed: to_compute.len(),
            dates_computed,
            dates_kept: kept_dates.len(),
            rows: merged.num_rows(),
            bytes,
        })
    }
}

/// The verdict on the stored rollup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RollupCheck {
    /// Live dates the rollup serves (its row count for them is current).
    pub current_dates: usize,
    /// Served dates whose stored rows differ from the rows recomputed from the files.
    pub wrong_dates: Vec<String>,
    /// Why the stored rollup could not be read (harmless: it is then not served).
    pub unreadable: Option<String>,
}

impl RollupCheck {
    /// No query can get a wrong answer from the rollup.
    pub fn is_clean(&self) -> bool {
        self.wrong_dates.is_empty()
    }
}

/// Each date's rows as comparable text: the measures, and each sketch's estimate (sketches of the
/// same values may differ in bytes).
fn rows_per_date(batch: &RecordBatch) -> Result<BTreeMap<i32, Vec<String>>> {
    let mut out: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let dates = batch.column(0).as_primitive::<Date32Type>();
    let sketches = batch.column(8).as_binary::<i32>();
    for row in 0..batch.num_rows() {
        let mut text = Vec::new();
        for column in batch.columns().iter().take(8) {
            let value =
                datafusion::common::ScalarValue::try_from_array(column, row).map_err(rollup_err)?;
            text.push(value.to_string());
        }
        let estimate = DistinctSketch::estimate_bytes(sketches.value(row)).map_err(rollup_err)?;
        text.push(estimate.to_string());
        out.entry(dates.value(row))
            .or_default()
            .push(text.join("|"));
    }
    Ok(out)
}

impl ArchiveTable {
    /// Recomputes every date the rollup serves from its files and compares.
    pub async fn verify_rollup(&self) -> Result<RollupCheck> {
        let files = self.files()?;
        let live = LiveRows::of(&files);
        let stored = match self.rollup().await {
            Ok(r) => r,
            Err(e) => {
                return Ok(RollupCheck {
                    unreadable: Some(e.to_string()),
                    ..RollupCheck::default()
                });
            }
        };
        let current = stored.current_dates(&live);
        let expected = rows_per_date(&rows_to_batch(&compute(&files, &current).await?, &live)?)?;
        let found = rows_per_date(&stored.rows_of(&current)?)?;
        let wrong_dates = current
            .iter()
            .filter(|d| expected.get(d) != found.get(d))
            .map(|d| date_string(*d))
            .collect();
        Ok(RollupCheck {
            current_dates: current.len(),
            wrong_dates,
            unreadable: None,
        })
    }
}

fn sort_by_key(batch: &RecordBatch) -> Result<RecordBatch> {
    let columns = [
        arrow::compute::SortColumn {
            values: Arc::clone(batch.column(0)),
            options: None,
        },
        arrow::compute::SortColumn {
            values: Arc::clone(batch.column(1)),
            options: None,
        },
    ];
    let indices = arrow::compute::lexsort_to_indices(&columns, None).map_err(rollup_err)?;
    arrow::compute::take_record_batch(batch, &indices).map_err(rollup_err)
}

async fn write(store: &Arc<dyn ObjectStore>, batch: &RecordBatch) -> Result<u64> {
    let mut buffer = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buffer, schema(), None).map_err(rollup_err)?;
    writer.write(batch).map_err(rollup_err)?;
    writer.close().map_err(rollup_err)?;
    let bytes = buffer.len() as u64;
    store
        .put(&DailyRollup::path(), Bytes::from(buffer).into())
        .await
        .map_err(rollup_err)?;
    Ok(bytes)
}
