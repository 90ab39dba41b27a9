//! The `system` catalog Trino's clients know: `system.runtime.queries`, the queries of every front
//! door, running and recently ended, with Trino's columns. Read when a query scans it, so it is
//! current to the moment.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

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

use crate::activity::Activity;

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
        Field::new("query", DataType::Utf8, false),
        Field::new("rows", DataType::Int64, false),
        Field::new("elapsed_time_ms", DataType::Int64, false),
        Field::new("created", time(), false),
        Field::new("end", time(), true),
        Field::new("error_type", DataType::Utf8, true),
        Field::new("error_code", DataType::Utf8, true),
    ]))
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
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let mut id = Vec::new();
        let mut state = Vec::new();
        let mut user = Vec::new();
        let mut query = Vec::new();
        let mut rows = Vec::new();
        let mut elapsed = Vec::new();
        let mut created = Vec::new();
        let mut end = Vec::new();
        let mut error_type = Vec::new();
        let mut error_code = Vec::new();
        for q in self
            .activity
            .running()
            .into_iter()
            .filter(|q| shown(&q.user))
        {
            let ms = q.elapsed.as_millis() as i64;
            id.push(q.id);
            state.push("RUNNING");
            user.push(q.user);
            query.push(q.sql);
            rows.push(0);
            elapsed.push(ms);
            created.push(now_ms - ms);
            end.push(None);
            error_type.push(None);
            error_code.push(None);
        }
        for q in self
            .activity
            .recent()
            .into_iter()
            .filter(|q| shown(&q.user))
        {
            let ms = q.elapsed.as_millis() as i64;
            let (s, kind, code) = ending(&q.outcome);
            id.push(q.id);
            state.push(s);
            user.push(q.user);
            query.push(q.sql);
            rows.push(q.rows as i64);
            elapsed.push(ms);
            created.push(q.ended_at_ms as i64 - ms);
            end.push(Some(q.ended_at_ms as i64));
            error_type.push(kind);
            error_code.push(code);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(id)),
            Arc::new(StringArray::from(state)),
            Arc::new(StringArray::from(user)),
            Arc::new(StringArray::from(query)),
            Arc::new(Int64Array::from(rows)),
            Arc::new(Int64Array::from(elapsed)),
            Arc::new(TimestampMillisecondArray::from(created).with_timezone("UTC")),
            Arc::new(TimestampMillisecondArray::from(end).with_timezone("UTC")),
            Arc::new(StringArray::from(error_type)),
            Arc::new(StringArray::from(error_code)),
        ];
        Ok(RecordBatch::try_new(schema(), columns)?)
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
