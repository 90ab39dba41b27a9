//! Trino's aggregates DataFusion names otherwise: `count_if(condition)` (rows where it is true),
//! `arbitrary(x)` (any non-null value: DataFusion's `any_value`) and `approx_percentile(x,
//! percentage)` / `approx_percentile(x, ARRAY[percentages])` (a t-digest, as DataFusion's
//! `approx_percentile_cont`, answered in the type of `x` as Trino does).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray as _};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::functions_aggregate::any_value::any_value_udaf;
use datafusion::logical_expr::{Accumulator, AggregateUDF, Volatility, create_udaf};

pub(super) fn functions() -> Vec<AggregateUDF> {
    let count_if = create_udaf(
        "count_if",
        vec![DataType::Boolean],
        Arc::new(DataType::Int64),
        Volatility::Immutable,
        Arc::new(|_| Ok(Box::new(CountIf(0)))),
        Arc::new(vec![DataType::Int64]),
    );
    let arbitrary = any_value_udaf()
        .as_ref()
        .clone()
        .with_aliases(["arbitrary"]);
    vec![
        count_if,
        arbitrary,
        AggregateUDF::new_from_impl(super::percentile::ApproxPercentile::new()),
    ]
}

#[derive(Debug)]
struct CountIf(i64);

impl Accumulator for CountIf {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.0 += values[0].as_boolean().true_count() as i64;
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Int64(Some(self.0)))
    }

    fn size(&self) -> usize {
        size_of_val(self)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let partial = states[0].as_primitive::<Int64Type>();
        self.0 += partial.iter().flatten().sum::<i64>();
        Ok(())
    }
}
