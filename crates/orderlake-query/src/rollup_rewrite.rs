//! KPI queries over `order_events` answered from the daily rollup. A dashboard's
//!
//! ```sql
//! SELECT date_trunc('month', event_date), facility_id,
//!        count(*) FILTER (WHERE total_amount IS NOT NULL), sum(total_amount),
//!        count(*) FILTER (WHERE upper(status) = 'CANCELLED')
//! FROM order_events WHERE event_date >= DATE '2020-01-01' GROUP BY 1, 2
//! ```
//!
//! asks only for measures the rollup keeps, grouped and filtered by the rollup's own key. Such an
//! aggregate is rewritten to re-aggregate `daily_activity` (which is exact for every date: closed
//! dates from the rollup, the others from their rows):
//!
//! ```text
//! Aggregate: groupBy=[g(event_date, facility_id)]     Projection: (the original names and types)
//!   aggr=[count(*) FILTER (…), sum(total_amount)] =>    Aggregate: groupBy=[g(…)]
//!   Filter: p(event_date, facility_id)                     aggr=[coalesce(sum(orders), 0), sum(revenue)]
//!     TableScan: order_events                              Filter: p(…)
//!                                                            TableScan: daily_activity
//! ```
//!
//! Measures it recognises: `count(*)` (events), `count(*) FILTER (WHERE total_amount IS NOT NULL)`
//! and `count(total_amount)` (orders), `sum(total_amount)` (revenue), and `count(*) FILTER (WHERE
//! upper(status) = 'CANCELLED')` (cancellations). Anything else (another aggregate, a
//! `DISTINCT`, a filter or group key on another column, a join) leaves the plan alone.

use std::sync::Arc;

use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, ScalarValue};
use datafusion::datasource::{TableProvider, provider_as_source, source_as_provider};
use datafusion::error::Result;
use datafusion::functions::expr_fn::coalesce;
use datafusion::functions_aggregate::expr_fn::sum;
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{
    Aggregate, BinaryExpr, Expr, LogicalPlan, LogicalPlanBuilder, Operator, Projection, TableScan,
    cast, lit,
};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use orderlake_archive::schema::{EVENT_DATE, FACILITY_ID, STATUS, TOTAL_AMOUNT};

/// The rollup's measures a query's aggregate can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Measure {
    Events,
    Orders,
    Revenue,
    Cancellations,
}

impl Measure {
    fn column(self) -> &'static str {
        match self {
            Self::Events => "events",
            Self::Orders => "orders",
            Self::Revenue => "revenue",
            Self::Cancellations => "cancellations",
        }
    }

    /// Counts re-aggregate to 0 over no rows, as `count` does; revenue to null, as `sum` does.
    fn reaggregate(self, column: Expr) -> Expr {
        match self {
            Self::Revenue => sum(column),
            _ => coalesce(vec![sum(column), lit(0i64)]),
        }
    }
}

/// The rule, for one snapshot: its archive table and its `daily_activity`.
#[derive(Debug)]
pub(crate) struct KpisFromRollup {
    archive: Arc<dyn TableProvider>,
    rollup: Arc<dyn TableProvider>,
}

impl KpisFromRollup {
    pub(crate) fn new(archive: Arc<dyn TableProvider>, rollup: Arc<dyn TableProvider>) -> Self {
        Self { archive, rollup }
    }

    fn is_archive(&self, scan: &TableScan) -> bool {
        source_as_provider(&scan.source)
            .is_ok_and(|p| std::ptr::addr_eq(Arc::as_ptr(&p), Arc::as_ptr(&self.archive)))
    }

    fn rewritten(&self, aggregate: &Aggregate) -> Result<Option<LogicalPlan>> {
        let Some((scan, mut predicates)) = self.archive_input(&aggregate.input) else {
            return Ok(None);
        };
        predicates.extend(scan.filters.iter().cloned());
        let on_key = |e: &Expr| {
            e.column_refs()
                .iter()
                .all(|c| c.name == EVENT_DATE || c.name == FACILITY_ID)
        };
        if !aggregate.group_expr.iter().all(on_key) || !predicates.iter().all(on_key) {
            return Ok(None);
        }
        let Some(measures) = aggregate
            .aggr_expr
            .iter()
            .map(measure)
            .collect::<Option<Vec<Measure>>>()
        else {
            return Ok(None);
        };
        // The rollup's table under the archive's name, so the query's qualified columns resolve.
        let mut plan = LogicalPlanBuilder::scan(
            scan.table_name.clone(),
            provider_as_source(Arc::clone(&self.rollup)),
            None,
        )?;
        if let Some(predicate) = conjunction(predicates) {
            plan = plan.filter(predicate)?;
        }
        let aggregates: Vec<Expr> = measures
            .iter()
            .map(|m| {
                let column = Column::new(Some(scan.table_name.clone()), m.column());
                m.reaggregate(Expr::Column(column))
            })
            .collect();
        let plan = plan
            .aggregate(aggregate.group_expr.clone(), aggregates)?
            .build()?;
        // The original output names and types, so nothing above notices.
        let new_schema = Arc::clone(plan.schema());
        let exprs = aggregate
            .schema
            .iter()
            .enumerate()
            .map(|(i, (qualifier, field))| {
                let (q, f) = new_schema.qualified_field(i);
                let mut e = Expr::Column(Column::from((q, f)));
                if f.data_type() != field.data_type() {
                    e = cast(e, field.data_type().clone());
                }
                e.alias_qualified(qualifier.cloned(), field.name())
            })
            .collect();
        Ok(Some(LogicalPlan::Projection(Projection::try_new(
            exprs,
            Arc::new(plan),
        )?)))
    }

    /// The archive scan under `plan` through filters and column-only projections, with the
    /// filters' predicates.
    fn archive_input<'a>(&self, plan: &'a LogicalPlan) -> Option<(&'a TableScan, Vec<Expr>)> {
        match plan {
            LogicalPlan::TableScan(scan) if self.is_archive(scan) => Some((scan, Vec::new())),
            LogicalPlan::Filter(f) => {
                let (scan, mut predicates) = self.archive_input(&f.input)?;
                predicates.extend(split_conjunction(&f.predicate).into_iter().cloned());
                Some((scan, predicates))
            }
            LogicalPlan::Projection(p) if p.expr.iter().all(|e| matches!(e, Expr::Column(_))) => {
                self.archive_input(&p.input)
            }
            _ => None,
        }
    }
}

impl OptimizerRule for KpisFromRollup {
    fn name(&self) -> &str {
        "orderlake_kpis_from_rollup"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Aggregate(aggregate) = &plan else {
            return Ok(Transformed::no(plan));
        };
        match self.rewritten(aggregate)? {
            Some(rewritten) => Ok(Transformed::yes(rewritten)),
            None => Ok(Transformed::no(plan)),
        }
    }
}

/// Which rollup measure an aggregate expression is, if any.
fn measure(expr: &Expr) -> Option<Measure> {
    let expr = match expr {
        Expr::Alias(a) => a.expr.as_ref(),
        e => e,
    };
    let Expr::AggregateFunction(f) = expr else {
        return None;
    };
    let p = &f.params;
    if p.distinct || !p.order_by.is_empty() {
        return None;
    }
    let filter = p.filter.as_deref();
    match (f.func.name(), p.args.as_slice(), filter) {
        ("count", [] | [Expr::Literal(_, _)], None) if counts_rows(&p.args) => {
            Some(Measure::Events)
        }
        ("count", [] | [Expr::Literal(_, _)], Some(Expr::IsNotNull(c)))
            if counts_rows(&p.args) && is_column(c, TOTAL_AMOUNT) =>
        {
            Some(Measure::Orders)
        }
        ("count", [c], None) if is_column(c, TOTAL_AMOUNT) => Some(Measure::Orders),
        ("count", [] | [Expr::Literal(_, _)], Some(f))
            if counts_rows(&p.args) && is_cancelled(f) =>
        {
            Some(Measure::Cancellations)
        }
        ("sum", [c], None) if is_column(c, TOTAL_AMOUNT) => Some(Measure::Revenue),
        _ => None,
    }
}

/// `count(*)` or `count(<non-null literal>)`.
fn counts_rows(args: &[Expr]) -> bool {
    args.iter()
        .all(|a| matches!(a, Expr::Literal(v, _) if !v.is_null()))
}

fn is_column(expr: &Expr, name: &str) -> bool {
    matches!(expr, Expr::Column(c) if c.name == name)
}

/// `upper(status) = 'CANCELLED'`, either way round.
fn is_cancelled(expr: &Expr) -> bool {
    let Expr::BinaryExpr(BinaryExpr {
        left,
        op: Operator::Eq,
        right,
    }) = expr
    else {
        return false;
    };
    let upper_status = |e: &Expr| {
        matches!(e, Expr::ScalarFunction(f)
            if f.func.name() == "upper" && matches!(f.args.as_slice(), [c] if is_column(c, STATUS)))
    };
    let cancelled = |e: &Expr| {
        matches!(e, Expr::Literal(ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)), _) if s == "CANCELLED")
    };
    (upper_status(left) && cancelled(right)) || (cancelled(left) && upper_status(right))
}
