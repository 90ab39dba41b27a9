//! SQL functions over distinct-count sketches, so distinct customers over any range of dates
//! come from the rollup's daily sketches:
//! - `hll_sketch(text)`: aggregate, the sketch of a column's distinct values;
//! - `hll_union(sketch)`: aggregate, the union of sketches;
//! - `hll_estimate(sketch)`: the estimated distinct count of a sketch.
//!
//! `SELECT date_trunc('month', event_date), hll_estimate(hll_union(customers_sketch))
//! FROM daily_activity GROUP BY 1` equals the same estimate sketched from the rows
//! (see `orderlake_archive::rollup::sketch`).

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray as _, BinaryArray, Int64Array};
use arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, ColumnarValue, ScalarUDF, Volatility, create_udaf, create_udf,
};
use orderlake_archive::rollup::DistinctSketch;

/// The three functions, to register with a session.
pub fn functions() -> (Vec<ScalarUDF>, Vec<AggregateUDF>) {
    let estimate = create_udf(
        "hll_estimate",
        vec![DataType::Binary],
        DataType::Int64,
        Volatility::Immutable,
        Arc::new(estimate),
    );
    let sketch = create_udaf(
        "hll_sketch",
        vec![DataType::Utf8],
        Arc::new(DataType::Binary),
        Volatility::Immutable,
        Arc::new(|_| Ok(Box::new(SketchAccumulator::values()))),
        Arc::new(vec![DataType::Binary]),
    );
    let union = create_udaf(
        "hll_union",
        vec![DataType::Binary],
        Arc::new(DataType::Binary),
        Volatility::Immutable,
        Arc::new(|_| Ok(Box::new(SketchAccumulator::sketches()))),
        Arc::new(vec![DataType::Binary]),
    );
    (vec![estimate], vec![sketch, union])
}

fn not_a_sketch(message: String) -> DataFusionError {
    DataFusionError::Execution(format!("not a distinct-count sketch: {message}"))
}

fn estimate(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let sketches = arrays[0].as_binary::<i32>();
    let out: Int64Array = sketches
        .iter()
        .map(|s| {
            s.map(|bytes| DistinctSketch::estimate_bytes(bytes).map_err(not_a_sketch))
                .transpose()
        })
        .collect::<Result<_>>()?;
    Ok(ColumnarValue::Array(Arc::new(out)))
}

/// Builds one sketch from values (`hll_sketch`) or from sketches (`hll_union`); partial states
/// are sketches either way.
#[derive(Debug)]
struct SketchAccumulator {
    sketch: DistinctSketch,
    of_sketches: bool,
}

impl SketchAccumulator {
    fn values() -> Self {
        Self {
            sketch: DistinctSketch::default(),
            of_sketches: false,
        }
    }

    fn sketches() -> Self {
        Self {
            of_sketches: true,
            ..Self::values()
        }
    }

    fn merge_sketches(&mut self, array: &ArrayRef) -> Result<()> {
        let sketches: &BinaryArray = array.as_binary::<i32>();
        for bytes in sketches.iter().flatten() {
            self.sketch.merge_bytes(bytes).map_err(not_a_sketch)?;
        }
        Ok(())
    }
}

impl Accumulator for SketchAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        if self.of_sketches {
            return self.merge_sketches(&values[0]);
        }
        let values = arrow::compute::cast(&values[0], &DataType::Utf8)?;
        for value in values.as_string::<i32>().iter().flatten() {
            self.sketch.add(value);
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Binary(Some(self.sketch.to_bytes())))
    }

    fn size(&self) -> usize {
        // A union's registers: 4,096 bytes at most, plus the value itself.
        size_of_val(self) + 4096
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.merge_sketches(&states[0])
    }
}
