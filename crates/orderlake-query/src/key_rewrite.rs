//! Key lookups through per-order aggregates. `orders WHERE customer_id = 'C'` filters the
//! *output* of `GROUP BY order_id` (an order's customer is an aggregate of its events), so no
//! filter reaches the scan and every file is read. This rule adds what the filter implies to
//! the aggregate's input: only orders that have an event of customer `C` can have `C` as their
//! aggregated customer, so
//!
//! ```text
//! Filter: first_value(customer_id) … = 'C'          Filter: first_value(customer_id) … = 'C'
//!   Aggregate: groupBy=[order_id]             =>      Aggregate: groupBy=[order_id]
//!     … TableScan: order_events                         LeftSemi Join: order_id = __orderlake_keys.order_id
//!                                                         … TableScan: order_events
//!                                                         SubqueryAlias: __orderlake_keys
//!                                                           Projection: order_id
//!                                                             Filter: customer_id IN ('C')
//!                                                               TableScan: order_events
//! ```
//!
//! The new side is a literal key lookup (the index prunes it at planning); the join then hands
//! its order ids to the original scan, which the index narrows when it starts
//! (`join_keys.rs`). Every group whose aggregate equals a key keeps all of its rows, so the
//! aggregate's values are unchanged and the filter above still decides.
//!
//! It applies when the aggregate groups by one column (under the filter directly or through a
//! projection of its columns), the filtered output is `first_value`,
//! `last_value`, `min` or `max` of an indexed key column (each returns one of its input values),
//! and both columns come unchanged from one scan through projections, filters and aliases.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    Aggregate, Expr, Filter, JoinType, LogicalPlan, LogicalPlanBuilder, Projection, TableScan,
};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use orderlake_archive::key_index::KeyColumn;

use crate::scan::literal_disjuncts;

/// The alias of the added key lookup (and the mark that an aggregate was already narrowed).
const KEYS_ALIAS: &str = "__orderlake_keys";

/// Aggregates whose result is one of their input values.
const PICKING_AGGREGATES: [&str; 4] = ["first_value", "last_value", "min", "max"];

#[derive(Debug, Default)]
pub(crate) struct KeysThroughAggregates;

impl OptimizerRule for KeysThroughAggregates {
    fn name(&self) -> &str {
        "orderlake_keys_through_aggregates"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Filter(filter) = &plan else {
            return Ok(Transformed::no(plan));
        };
        // The optimizer may leave a projection of the aggregate's columns between the two.
        let (passing, aggregate) = match filter.input.as_ref() {
            LogicalPlan::Aggregate(aggregate) => (None, aggregate),
            LogicalPlan::Projection(p) if p.expr.iter().all(|e| matches!(e, Expr::Column(_))) => {
                match p.input.as_ref() {
                    LogicalPlan::Aggregate(aggregate) => (Some(&p.expr), aggregate),
                    _ => return Ok(Transformed::no(plan)),
                }
            }
            _ => return Ok(Transformed::no(plan)),
        };
        let Some(input) = narrowed_input(filter, aggregate)? else {
            return Ok(Transformed::no(plan));
        };
        let mut narrowed = LogicalPlan::Aggregate(Aggregate::try_new(
            Arc::new(input),
            aggregate.group_expr.clone(),
            aggregate.aggr_expr.clone(),
        )?);
        if let Some(columns) = passing {
            narrowed =
                LogicalPlan::Projection(Projection::try_new(columns.clone(), Arc::new(narrowed))?);
        }
        let filter = Filter::try_new(filter.predicate.clone(), Arc::new(narrowed))?;
        Ok(Transformed::yes(LogicalPlan::Filter(filter)))
    }
}

/// The aggregate's input semi-joined with a lookup of the keys the filter asks for, if the
/// filter and the aggregate have the shape the rule handles.
fn narrowed_input(filter: &Filter, aggregate: &Aggregate) -> Result<Option<LogicalPlan>> {
    let [Expr::Column(group)] = aggregate.group_expr.as_slice() else {
        return Ok(None);
    };
    let already = aggregate.input.exists(|p| {
        Ok(matches!(p, LogicalPlan::SubqueryAlias(a) if a.alias.table() == KEYS_ALIAS))
    })?;
    if already {
        return Ok(None);
    }
    let Some((key, values)) = split_conjunction(&filter.predicate)
        .into_iter()
        .find_map(|conjunct| picked_key_lookup(conjunct, aggregate))
    else {
        return Ok(None);
    };
    let Some(scan) = source_scan(&aggregate.input, &[&group.name, &key.name]) else {
        return Ok(None);
    };
    let keys = LogicalPlanBuilder::scan(scan.table_name.clone(), Arc::clone(&scan.source), None)?;
    let key_type = keys
        .schema()
        .field_with_unqualified_name(&key.name)?
        .data_type()
        .clone();
    let values = values
        .into_iter()
        .map(|v| Ok(Expr::Literal(v.cast_to(&key_type)?, None)))
        .collect::<Result<Vec<_>>>()?;
    let keys = keys
        .filter(Expr::Column(Column::new_unqualified(&key.name)).in_list(values, false))?
        .project(vec![Expr::Column(Column::new_unqualified(&group.name))])?
        .alias(KEYS_ALIAS)?
        .build()?;
    let input = LogicalPlanBuilder::from(aggregate.input.as_ref().clone())
        .join(
            keys,
            JoinType::LeftSemi,
            (
                vec![group.clone()],
                vec![Column::new(Some(KEYS_ALIAS), &group.name)],
            ),
            None,
        )?
        .build()?;
    Ok(Some(input))
}

/// `output = v`, `v = output`, `output IN (…)` or an OR of those on one aggregate output that
/// picks one of its input values of an indexed key column: that input column and the values.
fn picked_key_lookup(conjunct: &Expr, aggregate: &Aggregate) -> Option<(Column, Vec<ScalarValue>)> {
    let (output, values) = value_lookup(conjunct)?;
    let at = aggregate.schema.index_of_column(&output).ok()?;
    let expr = aggregate
        .aggr_expr
        .get(at.checked_sub(aggregate.group_expr.len())?)?;
    let Expr::AggregateFunction(f) = unalias(expr) else {
        return None;
    };
    if !PICKING_AGGREGATES.contains(&f.func.name()) {
        return None;
    }
    let [Expr::Column(input)] = f.params.args.as_slice() else {
        return None;
    };
    KeyColumn::from_name(&input.name)?;
    Some((input.clone(), values))
}

fn unalias(expr: &Expr) -> &Expr {
    match expr {
        Expr::Alias(a) => unalias(&a.expr),
        e => e,
    }
}

/// A column compared with non-null literals (as [`literal_disjuncts`] reads them), all on that
/// one column: the column and every value.
fn value_lookup(expr: &Expr) -> Option<(Column, Vec<ScalarValue>)> {
    let mut disjuncts = literal_disjuncts(expr)?.into_iter();
    let (column, mut values) = disjuncts.next()?;
    for (other, more) in disjuncts {
        if other != column {
            return None;
        }
        values.extend(more);
    }
    Some((column.clone(), values))
}

/// The one table scan under `plan`, reached through projections that pass `columns` on
/// unchanged, filters and aliases.
fn source_scan<'a>(plan: &'a LogicalPlan, columns: &[&str]) -> Option<&'a TableScan> {
    match plan {
        LogicalPlan::TableScan(scan) => Some(scan),
        LogicalPlan::Filter(f) => source_scan(&f.input, columns),
        LogicalPlan::SubqueryAlias(a) => source_scan(&a.input, columns),
        LogicalPlan::Projection(p) => {
            let passed = columns.iter().all(|name| {
                p.expr
                    .iter()
                    .any(|e| matches!(e, Expr::Column(c) if c.name == *name))
            });
            passed.then(|| source_scan(&p.input, columns)).flatten()
        }
        _ => None,
    }
}
