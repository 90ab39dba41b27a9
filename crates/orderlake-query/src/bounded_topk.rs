//! Keeps DataFusion's top-k aggregation to the small `LIMIT`s it is made for. Its stream sets
//! aside room for `limit` groups before it reads a row (a heap of `limit + 1` slots and a hash
//! table of `10 × limit`), outside the query's memory pool: `GROUP BY … ORDER BY max(…) LIMIT
//! 1000000000` would take tens of gigabytes at once, and a larger limit aborts the process (the
//! random-SQL test found it as an overflow panic in a debug build). Above
//! [`MAX_TOPK_AGGREGATE_LIMIT`] the aggregate runs without the hint; the sort above it still
//! applies the limit, so the answer is the same.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode as _};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::AggregateExec;

/// The largest `LIMIT` an aggregate may use to keep only its top groups.
pub const MAX_TOPK_AGGREGATE_LIMIT: usize = 100_000;

#[derive(Debug)]
pub struct BoundedTopKAggregates;

impl PhysicalOptimizerRule for BoundedTopKAggregates {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if let Some(aggregate) = node.downcast_ref::<AggregateExec>()
                && aggregate
                    .limit_options()
                    .is_some_and(|l| l.limit() > MAX_TOPK_AGGREGATE_LIMIT)
            {
                let unbounded = aggregate.with_new_limit_options(None);
                return Ok(Transformed::yes(
                    Arc::new(unbounded) as Arc<dyn ExecutionPlan>
                ));
            }
            Ok(Transformed::no(node))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "bounded_topk_aggregates"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::physical_plan::displayable;
    use datafusion::prelude::SessionContext;

    async fn aggregate_limits(sql: &str) -> Vec<String> {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE t (k VARCHAR, v BIGINT) AS VALUES ('a', 1), ('b', 2), ('c', 3)")
            .await
            .unwrap();
        let plan = ctx
            .sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let plan = BoundedTopKAggregates
            .optimize(plan, &ConfigOptions::default())
            .unwrap();
        displayable(plan.as_ref())
            .indent(false)
            .to_string()
            .lines()
            .filter(|l| l.contains("AggregateExec") && l.contains("lim="))
            .map(str::to_owned)
            .collect()
    }

    #[tokio::test]
    async fn only_small_limits_keep_the_top_k_aggregation() {
        let top = |n: u64| {
            format!("SELECT k, max(v) FROM t GROUP BY k ORDER BY 2 DESC NULLS LAST LIMIT {n}")
        };
        assert!(
            !aggregate_limits(&top(10)).await.is_empty(),
            "a small limit keeps the top-k aggregation"
        );
        assert_eq!(
            aggregate_limits(&top(1_000_000_000_000)).await,
            Vec::<String>::new()
        );
    }
}
