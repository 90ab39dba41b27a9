//! The `system` catalog Trino's clients know: `system.runtime.queries`, the queries of every front
//! door, running and recently ended, with Trino's columns. Read when a query scans it, so it is
//! current to the moment.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider, Session,
};
use datafusion::datasource::TableProvider;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;

use crate::activity::{Activity, QueryTimes};

pub const SYSTEM_CATALOG: &str = "system";

/// Who runs a query, kept in its session: `runtime.queries` shows a user their own queries
/// unless the access rules let them see everyone's.
#[derive(Debug)]
pub(crate) struct QueryUser {
    pub name: String,
    pub sees_all_queries: bool,
}

/// The `system` catalog, with `runtime.queries` over `activity`.
pub(crate) fn catalog(activity: &Arc<Activity>) -> Result<Arc<dyn CatalogProvider>> {
    let runtime = Arc::new(MemorySchemaProvider::new());
    runtime.register_table(
        "queries".to_owned(),
        Arc::new(RuntimeQueries {
            activity: Arc::clone(activity),
        }),
    )?;
    let catalog = Arc::new(MemoryCatalogProvider::new());
    catalog.register_schema("runtime", runtime as Arc<dyn SchemaProvider>)?;
    Ok(catalog)
}

struct RuntimeQueries {
    activity: Arc<Activity>,
}

impl std::fmt::Debug for RuntimeQueries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("system.runtime.queries")
    }
}

fn schema() -> SchemaRef {
    let time = || DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("query_id", DataType::Utf8, false),
        Field::new("state", DataType::Utf8, false),
        Field::new("user", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, true),
        Field::new("query", DataType::Utf8, false),
        Field::new("queued_time_ms", DataType::Int64, true),
        Field::new("analysis_time_ms", DataType::Int64, true),
        Field::new("created", time(), false),
        Field::new("started", time(), true),
        Field::new("end", time(), true),
        Field::new("error_type", DataType::Utf8, true),
        Field::new("error_code", DataType::Utf8, true),
        // orderlake's own, after Trino's.
        Field::new("rows", DataType::Int64, false),
        Field::new("elapsed_time_ms", DataType::Int64, false),
        Field::new("lane", DataType::Utf8, true),
        Field::new("peak_memory_bytes", DataType::Int64, true),
    ]))
}

/// The rows of `runtime.queries`, a column at a time.
#[derive(Default)]
struct Rows {
    id: Vec<String>,
    state: Vec<&'static str>,
    user: Vec<String>,
    source: Vec<Option<String>>,
    query: Vec<String>,
    queued: Vec<Option<i64>>,
    analysis: Vec<Option<i64>>,
    created: Vec<i64>,
    started: Vec<Option<i64>>,
    end: Vec<Option<i64>>,
    error_type: Vec<Option<&'static str>>,
    error_code: Vec<Option<&'static str>>,
    rows: Vec<i64>,
    elapsed: Vec<i64>,
    lane: Vec<Option<&'static str>>,
    peak_memory: Vec<Option<i64>>,
}

/// What a query in flight and a query that ended have alike.
struct Common {
    id: String,
    user: String,
    source: Option<String>,
    sql: String,
    created_ms: i64,
    elapsed_ms: i64,
    times: QueryTimes,
}

impl Rows {
    fn push(
        &mut self,
        q: Common,
        state: &'static str,
        end: Option<i64>,
        ending: (Option<&'static str>, Option<&'static str>),
        rows: u64,
    ) {
        let int = |v: Option<u64>| v.map(|v| v as i64);
        self.id.push(q.id);
        self.state.push(state);
        self.user.push(q.user);
        self.source.push(q.source);
        self.query.push(q.sql);
        self.queued.push(int(q.times.queued_ms));
        self.analysis.push(int(q.times.analysis_ms));
        self.created.push(q.created_ms);
        self.started.push(int(q.times.started_at_ms));
        self.end.push(end);
        self.error_type.push(ending.0);
        self.error_code.push(ending.1);
        self.rows.push(rows as i64);
        self.elapsed.push(q.elapsed_ms);
        self.lane.push(q.times.lane);
        self.peak_memory.push(int(q.times.peak_memory_bytes));
    }

    fn batch(self) -> Result<RecordBatch> {
        let time = |v: Vec<Option<i64>>| TimestampMillisecondArray::from(v).with_timezone("UTC");
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(self.id)),
            Arc::new(StringArray::from(self.state)),
            Arc::new(StringArray::from(self.user)),
            Arc::new(StringArray::from(self.source)),
            Arc::new(StringArray::from(self.query)),
            Arc::new(Int64Array::from(self.queued)),
            Arc::new(Int64Array::from(self.analysis)),
            Arc::new(TimestampMillisecondArray::from(self.created).with_timezone("UTC")),
            Arc::new(time(self.started)),
            Arc::new(time(self.end)),
            Arc::new(StringArray::from(self.error_type)),
            Arc::new(StringArray::from(self.error_code)),
            Arc::new(Int64Array::from(self.rows)),
            Arc::new(Int64Array::from(self.elapsed)),
            Arc::new(StringArray::from(self.lane)),
            Arc::new(Int64Array::from(self.peak_memory)),
        ];
        Ok(RecordBatch::try_new(schema(), columns)?)
    }
}

/// Trino's state, error type and error code for how a query ended.
fn ending(outcome: &str) -> (&'static str, Option<&'static str>, Option<&'static str>) {
    match outcome {
        "finished" => ("FINISHED", None, None),
        "cancelled" => ("FAILED", Some("USER_ERROR"), Some("USER_CANCELED")),
        "abandoned by the client" => ("FAILED", Some("USER_ERROR"), Some("ABANDONED_QUERY")),
        "timeout" => (
            "FAILED",
            Some("INSUFFICIENT_RESOURCES"),
            Some("EXCEEDED_TIME_LIMIT"),
        ),
        "storage unavailable" => (
            "FAILED",
            Some("EXTERNAL"),
            Some("ARCHIVE_STORAGE_UNAVAILABLE"),
        ),
        "result too large" => (
            "FAILED",
            Some("INSUFFICIENT_RESOURCES"),
            Some("GENERIC_INSUFFICIENT_RESOURCES"),
        ),
        _ => ("FAILED", Some("USER_ERROR"), Some("GENERIC_USER_ERROR")),
    }
}

impl RuntimeQueries {
    /// The queries `viewer` may see (every one when `None`).
    fn batch(&self, viewer: Option<&str>) -> Result<RecordBatch> {
        let shown = |user: &str| viewer.is_none_or(|v| v == user);
        let mut rows = Rows::default();
        for q in self
            .activity
            .running()
            .into_iter()
            .filter(|q| shown(&q.user))
        {
            let common = Common {
                id: q.id,
                user: q.user,
                source: q.source,
                sql: q.sql,
                created_ms: q.created_at_ms as i64,
                elapsed_ms: q.elapsed.as_millis() as i64,
                times: q.times,
            };
            rows.push(common, q.state.as_str(), None, (None, None), 0);
        }
        for q in self
            .activity
            .recent()
            .into_iter()
            .filter(|q| shown(&q.user))
        {
            let ms = q.elapsed.as_millis() as i64;
            let (state, kind, code) = ending(&q.outcome);
            let common = Common {
                id: q.id,
                user: q.user,
                source: q.source,
                sql: q.sql,
                created_ms: q.ended_at_ms as i64 - ms,
                elapsed_ms: ms,
                times: q.times,
            };
            let end = Some(q.ended_at_ms as i64);
            rows.push(common, state, end, (kind, code), q.rows);
        }
        rows.batch()
    }
}

#[async_trait]
impl TableProvider for RuntimeQueries {
    fn schema(&self) -> SchemaRef {
        schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let user = state.config().get_extension::<QueryUser>();
        let viewer = user
            .as_ref()
            .filter(|u| !u.sees_all_queries)
            .map(|u| u.name.as_str());
        let batch = self.batch(viewer)?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            schema(),
            projection.cloned(),
        )?)
    }
}
