//! Rollup rows computed from the data files of some dates: what maintenance stores for closed
//! dates and what the server computes for the dates the stored rollup does not hold.
//!
//! Each measure is defined once here, in terms a user can check with SQL over `order_events`
//! (the rollup test does exactly that):
//! - `events`: `count(*)`
//! - `orders`: `count(*) FILTER (WHERE total_amount IS NOT NULL)` (placement events)
//! - `revenue`: `sum(total_amount)`
//! - `cancellations`: `count(*) FILTER (WHERE upper(status) = 'CANCELLED')`
//! - `items`: `coalesce(sum(cardinality(items)), 0)` (line items placed)
//! - `customers_sketch`: a [`DistinctSketch`] of `customer_id`

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{Array, AsArray as _, Date32Array, RecordBatch};
use arrow::datatypes::{DataType, Decimal128Type};
use futures::{StreamExt as _, TryStreamExt as _};
use object_store::ObjectStore;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};

use super::sketch::DistinctSketch;
use super::{DailyRows, RollupKey};
use crate::error::{ArchiveError, Result};
use crate::files::{ArchiveFile, ArchiveFiles};
use crate::parquet_io::StoreFileReader;
use crate::schema::{CUSTOMER_ID, EVENT_DATE, FACILITY_ID, ITEMS, STATUS, TOTAL_AMOUNT};

/// Files read at once.
const CONCURRENT_FILES: usize = 8;

/// The measures of one (date, facility) rollup row.
#[derive(Debug, Clone, Default)]
pub struct Measures {
    pub events: i64,
    pub orders: i64,
    pub revenue: Option<i128>,
    pub cancellations: i64,
    pub items: i64,
    pub customers: DistinctSketch,
}

impl Measures {
    fn merge(&mut self, other: &Measures) {
        self.events += other.events;
        self.orders += other.orders;
        self.revenue = match (self.revenue, other.revenue) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        self.cancellations += other.cancellations;
        self.items += other.items;
        self.customers.merge(&other.customers);
    }
}

/// The rollup rows of `dates`, from the live files of those dates in `files`, by date and
/// facility. A date with no live file has no row.
pub async fn compute(files: &ArchiveFiles, dates: &BTreeSet<i32>) -> Result<DailyRows> {
    let wanted: Vec<ArchiveFile> = files
        .files
        .iter()
        .filter(|f| f.may_hold_any(dates.iter()))
        .cloned()
        .collect();
    let dates = Arc::new(dates.clone());
    let mut groups: BTreeMap<RollupKey, Measures> = BTreeMap::new();
    let mut partials = futures::stream::iter(wanted)
        .map(|file| file_measures(Arc::clone(&files.store), file, Arc::clone(&dates)))
        .buffer_unordered(CONCURRENT_FILES);
    while let Some(partial) = partials.try_next().await? {
        for (key, measures) in partial {
            groups.entry(key).or_default().merge(&measures);
        }
    }
    Ok(groups)
}

fn read_err(file: &ArchiveFile) -> impl Fn(String) -> ArchiveError + '_ {
    move |message| ArchiveError::Rollup {
        path: file.path.to_string(),
        message,
    }
}

/// One file's measures per date (of `dates`) and facility.
async fn file_measures(
    store: Arc<dyn ObjectStore>,
    file: ArchiveFile,
    dates: Arc<BTreeSet<i32>>,
) -> Result<BTreeMap<RollupKey, Measures>> {
    let err = read_err(&file);
    let reader = StoreFileReader::new(&store, file.path.clone(), file.size);
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| err(e.to_string()))?;
    let schema = builder.parquet_schema();
    // The measures' columns; of `items` only its first leaf, enough for each list's length.
    let mut items_leaf = false;
    let leaves: Vec<usize> = (0..schema.num_columns())
        .filter(|&i| {
            let column = schema.column(i);
            match column.path().parts().first().map(String::as_str) {
                Some(FACILITY_ID | TOTAL_AMOUNT | STATUS | CUSTOMER_ID | EVENT_DATE) => true,
                Some(ITEMS) if !items_leaf => {
                    items_leaf = true;
                    true
                }
                _ => false,
            }
        })
        .collect();
    let mask = ProjectionMask::leaves(schema, leaves);
    let mut stream = builder
        .with_projection(mask)
        .build()
        .map_err(|e| err(e.to_string()))?;
    let mut groups: BTreeMap<RollupKey, Measures> = BTreeMap::new();
    while let Some(batch) = stream.try_next().await.map_err(|e| err(e.to_string()))? {
        let row_dates = file
            .row_dates(&batch)
            .ok_or_else(|| err("the rows' event dates are unknown".to_owned()))?;
        accumulate(&row_dates, &dates, &batch, &mut groups).map_err(&err)?;
    }
    Ok(groups)
}

fn string_column(batch: &RecordBatch, name: &str) -> Result<Arc<dyn Array>, String> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| format!("no column `{name}`"))?;
    arrow::compute::cast(column, &DataType::Utf8).map_err(|e| format!("column `{name}`: {e}"))
}

fn accumulate(
    row_dates: &Date32Array,
    dates: &BTreeSet<i32>,
    batch: &RecordBatch,
    groups: &mut BTreeMap<RollupKey, Measures>,
) -> Result<(), String> {
    let facility = string_column(batch, FACILITY_ID)?;
    let facility = facility.as_string::<i32>();
    let status = string_column(batch, STATUS)?;
    let status = status.as_string::<i32>();
    let customer = string_column(batch, CUSTOMER_ID)?;
    let customer = customer.as_string::<i32>();
    let amount = batch
        .column_by_name(TOTAL_AMOUNT)
        .and_then(|c| c.as_primitive_opt::<Decimal128Type>())
        .ok_or_else(|| format!("no decimal column `{TOTAL_AMOUNT}`"))?;
    let items = batch
        .column_by_name(ITEMS)
        .and_then(|c| c.as_list_opt::<i32>())
        .ok_or_else(|| format!("no list column `{ITEMS}`"))?;
    let mut local: HashMap<(i32, Option<&str>), Measures> = HashMap::new();
    for row in 0..batch.num_rows() {
        let date = row_dates.value(row);
        if !dates.contains(&date) {
            continue;
        }
        let f = facility.is_valid(row).then(|| facility.value(row));
        let m = local.entry((date, f)).or_default();
        m.events += 1;
        if amount.is_valid(row) {
            m.orders += 1;
            m.revenue = Some(m.revenue.unwrap_or(0) + amount.value(row));
        }
        if status.is_valid(row) && is_cancelled(status.value(row)) {
            m.cancellations += 1;
        }
        if items.is_valid(row) {
            m.items += items.value_length(row) as i64;
        }
        if customer.is_valid(row) {
            m.customers.add(customer.value(row));
        }
    }
    for ((date, f), m) in local {
        groups
            .entry((date, f.map(str::to_owned)))
            .or_default()
            .merge(&m);
    }
    Ok(())
}

/// `upper(status) = 'CANCELLED'`, as SQL's `upper` (full Unicode case mapping) decides it.
fn is_cancelled(status: &str) -> bool {
    if status.is_ascii() {
        status.eq_ignore_ascii_case("CANCELLED")
    } else {
        status.to_uppercase() == "CANCELLED"
    }
}
