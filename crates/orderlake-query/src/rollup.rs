//! `daily_activity`: the archive's daily rollup as a table that is always exact. Per event date
//! and facility it has events, orders placed, revenue, cancellations, line items and distinct
//! customers (an estimate and its mergeable sketch). Dates the stored rollup holds unchanged come
//! from it; every other date (open, changed by late events since, never rolled up) is computed
//! from its rows when the query runs, by the same code maintenance uses. `EXPLAIN` shows how many
//! dates came from each.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use arrow::array::{Array as _, AsArray as _, Date32Array, RecordBatch};
use arrow::datatypes::{Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::{DFSchema, DataFusionError, Result};
use datafusion::datasource::TableProvider;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use orderlake_archive::ArchiveFiles;
use orderlake_archive::rollup::{self, DailyRollup, LiveRows, SOURCE_ROWS};
use orderlake_archive::schema::EVENT_DATE;

/// The table's name in the archive's schema.
pub const DAILY_ACTIVITY: &str = "daily_activity";

/// The table over one table version and the rollup stored when that version was loaded.
#[derive(Debug)]
pub struct DailyActivityProvider {
    files: Arc<ArchiveFiles>,
    rollup: Arc<DailyRollup>,
    live: Arc<LiveRows>,
    /// The rollup's columns without [`SOURCE_ROWS`].
    schema: SchemaRef,
}

/// Which dates a scan serves from where.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatePlan {
    pub from_rollup: BTreeSet<i32>,
    pub from_rows: BTreeSet<i32>,
}

impl DailyActivityProvider {
    pub fn new(files: Arc<ArchiveFiles>, rollup: DailyRollup) -> Self {
        let live = LiveRows::of(&files);
        let stored = rollup::schema();
        let fields: Vec<Arc<Field>> = stored
            .fields()
            .iter()
            .filter(|f| f.name() != SOURCE_ROWS)
            .cloned()
            .collect();
        Self {
            files,
            rollup: Arc::new(rollup),
            live: Arc::new(live),
            schema: Arc::new(Schema::new(fields)),
        }
    }

    /// The dates the `filters` (those on `event_date`) keep, split by where they come from.
    pub fn plan_dates(&self, state: &dyn Session, filters: &[Expr]) -> Result<DatePlan> {
        let mut dates: Vec<i32> = self.live.dates().iter().copied().collect();
        let date_schema = Arc::new(Schema::new(vec![Field::new(
            EVENT_DATE,
            arrow::datatypes::DataType::Date32,
            false,
        )]));
        let df_schema = DFSchema::try_from(Arc::clone(&date_schema))?;
        for filter in filters.iter().filter(|f| on_dates_only(f)) {
            let predicate = state.create_physical_expr(filter.clone(), &df_schema)?;
            let batch = RecordBatch::try_new(
                Arc::clone(&date_schema),
                vec![Arc::new(Date32Array::from(dates.clone()))],
            )?;
            let keep = predicate.evaluate(&batch)?.into_array(batch.num_rows())?;
            let keep = keep.as_boolean();
            dates = dates
                .into_iter()
                .enumerate()
                .filter(|(i, _)| keep.is_valid(*i) && keep.value(*i))
                .map(|(_, d)| d)
                .collect();
        }
        // A date of a partition the rollup holds exactly comes from it, or has no rows at all.
        let current = self.rollup.current_dates(&self.live);
        let partitions = self.live.partitions_of(&current);
        let partitioning = self.live.partitioning();
        let mut plan = DatePlan::default();
        for date in dates {
            if current.contains(&date) {
                plan.from_rollup.insert(date);
            } else if !partitions.contains(&partitioning.partition_of(date)) {
                plan.from_rows.insert(date);
            }
        }
        Ok(plan)
    }
}

fn on_dates_only(expr: &Expr) -> bool {
    let columns = expr.column_refs();
    !columns.is_empty() && columns.iter().all(|c| c.name == EVENT_DATE)
}

#[async_trait]
impl TableProvider for DailyActivityProvider {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Date filters choose the dates to read; the rows are filtered again above the scan.
        Ok(filters
            .iter()
            .map(|f| {
                if on_dates_only(f) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let dates = self.plan_dates(state, filters)?;
        let served = self.rollup.rows_of(&dates.from_rollup).map_err(external)?;
        let projection: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let schema = Arc::new(self.schema.project(&projection)?);
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Ok(Arc::new(DailyActivityExec {
            files: Arc::clone(&self.files),
            live: Arc::clone(&self.live),
            served,
            dates,
            projection,
            properties: Arc::new(properties),
        }))
    }
}

/// Emits the stored rows of the rollup's dates, then computes the other dates from their files.
#[derive(Debug)]
pub(crate) struct DailyActivityExec {
    files: Arc<ArchiveFiles>,
    live: Arc<LiveRows>,
    /// Stored rows of `dates.from_rollup`, in the stored schema.
    served: RecordBatch,
    dates: DatePlan,
    /// Columns of the stored schema to emit.
    projection: Vec<usize>,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for DailyActivityExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "DailyActivityExec: dates_from_rollup={}, dates_from_rows={}",
            self.dates.from_rollup.len(),
            self.dates.from_rows.len()
        )
    }
}

impl ExecutionPlan for DailyActivityExec {
    crate::leaf::leaf_plan_methods!("DailyActivityExec");

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let files = Arc::clone(&self.files);
        let live = Arc::clone(&self.live);
        let served = self.served.clone();
        let from_rows = self.dates.from_rows.clone();
        let projection = self.projection.clone();
        let batch = async move {
            let rows = rollup::compute(&files, &from_rows)
                .await
                .map_err(external)?;
            let computed = rollup::rows_to_batch(&rows, &live).map_err(external)?;
            let all = arrow::compute::concat_batches(&rollup::schema(), &vec![served, computed])?;
            Ok(all.project(&projection)?)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            futures::stream::once(batch),
        )))
    }
}

fn external(e: orderlake_archive::ArchiveError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}
