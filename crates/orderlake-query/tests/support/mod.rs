//! Running SQL against the engine in tests.

use std::sync::Arc;

use arrow::util::pretty::pretty_format_batches;
use datafusion::common::ScalarValue;
use futures::TryStreamExt as _;
use orderlake_query::{ColdQueryEngine, QueryRequest};

/// Runs `sql` with bound `params` and returns its result as a pretty-printed table, one line per
/// element, trailing blanks trimmed.
pub async fn run(
    engine: &Arc<ColdQueryEngine>,
    sql: &str,
    params: Vec<ScalarValue>,
) -> Vec<String> {
    let stream = engine
        .execute(QueryRequest {
            id: orderlake_query::engine::new_query_id(),
            sql: sql.to_owned(),
            params,
            scope: engine.default_scope(),
            user: "test".into(),
            source: None,
        })
        .await
        .unwrap_or_else(|e| panic!("{sql}\n{e}"));
    let batches: Vec<_> = stream
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}\n{e}"));
    pretty_format_batches(&batches)
        .unwrap()
        .to_string()
        .lines()
        .map(|l| l.trim_end().to_owned())
        .collect()
}
