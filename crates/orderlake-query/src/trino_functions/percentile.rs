//! Trino's `approx_percentile(x, percentage)` and `approx_percentile(x, ARRAY[percentages])`:
//! the value at a quantile of `x` estimated by a t-digest (DataFusion's, which its own
//! `approx_percentile_cont` uses), answered in the type of `x` (a `bigint` column gives a
//! `bigint`, rounded; a decimal a decimal), or an array of such for an array of percentages.
//! The percentages must be constants between 0 and 1, as in Trino.

use std::sync::Arc;

use datafusion::arrow::array::{Array as _, ArrayRef, AsArray as _};
use datafusion::arrow::compute::{cast, filter, is_not_null, sort};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Literal;
use datafusion_functions_aggregate_common::tdigest::{DEFAULT_MAX_SIZE, TDigest};

const NAME: &str = "approx_percentile";

#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct ApproxPercentile {
    signature: Signature,
}

impl ApproxPercentile {
    pub(super) fn new() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for ApproxPercentile {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let [value, percentage] = arg_types else {
            return plan_err!("{NAME} takes a value and a percentage (or an array of them)");
        };
        if !value.is_numeric() {
            return plan_err!("{NAME}: expected a number to rank, got {value}");
        }
        match percentage {
            p if p.is_numeric() => Ok(value.clone()),
            DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _)
                if f.data_type().is_numeric() =>
            {
                Ok(DataType::List(Arc::new(Field::new_list_field(
                    value.clone(),
                    true,
                ))))
            }
            other => plan_err!("{NAME}: expected a percentage or an array of them, got {other}"),
        }
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let field =
            |part: &str, t: DataType| Field::new(format_state_name(args.name, part), t, false);
        Ok([
            field("max_size", DataType::UInt64),
            field("sum", DataType::Float64),
            field("count", DataType::Float64),
            field("max", DataType::Float64),
            field("min", DataType::Float64),
            Field::new_list(
                format_state_name(args.name, "centroids"),
                Field::new_list_field(DataType::Float64, true),
                false,
            ),
        ]
        .into_iter()
        .map(Arc::new)
        .collect())
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let (percentages, many) = percentages(&args.exprs[1])?;
        Ok(Box::new(PercentileAccumulator {
            digest: TDigest::new(DEFAULT_MAX_SIZE),
            percentages,
            many,
            value_type: args.expr_fields[0].data_type().clone(),
        }))
    }
}

/// The constant percentages, and whether they came as an array.
fn percentages(expr: &Arc<dyn PhysicalExpr>) -> Result<(Vec<f64>, bool)> {
    let Some(literal) = expr.downcast_ref::<Literal>() else {
        return plan_err!("{NAME}: the percentage must be a constant");
    };
    let (values, many) = match literal.value() {
        ScalarValue::List(list) => {
            let values = cast(list.values(), &DataType::Float64)?;
            let Some(values) = values
                .as_primitive_opt::<Float64Type>()
                .filter(|v| v.null_count() == 0)
            else {
                return plan_err!("{NAME}: a percentage must not be NULL");
            };
            (values.values().to_vec(), true)
        }
        scalar => match scalar.cast_to(&DataType::Float64)? {
            ScalarValue::Float64(Some(p)) => (vec![p], false),
            _ => return plan_err!("{NAME}: the percentage must not be NULL"),
        },
    };
    if let Some(p) = values.iter().find(|p| !(0.0..=1.0).contains(*p)) {
        return plan_err!("{NAME}: a percentage must be between 0 and 1, got {p}");
    }
    Ok((values, many))
}

#[derive(Debug)]
struct PercentileAccumulator {
    digest: TDigest,
    percentages: Vec<f64>,
    many: bool,
    value_type: DataType,
}

impl PercentileAccumulator {
    /// An estimate in the type of the ranked values (integers rounded, as Trino's `bigint`).
    fn in_value_type(&self, estimate: Option<f64>) -> Result<ScalarValue> {
        let Some(q) = estimate else {
            return ScalarValue::try_from(&self.value_type);
        };
        let q = if self.value_type.is_integer() {
            q.round()
        } else {
            q
        };
        ScalarValue::Float64(Some(q)).cast_to(&self.value_type)
    }
}

impl Accumulator for PercentileAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let mut values = Arc::clone(&values[0]);
        if values.null_count() > 0 {
            values = filter(&values, &is_not_null(&values)?)?;
        }
        if values.is_empty() {
            return Ok(());
        }
        let sorted = cast(&sort(&values, None)?, &DataType::Float64)?;
        let Some(sorted) = sorted.as_primitive_opt::<Float64Type>() else {
            return exec_err!("{NAME}: the values did not convert to double");
        };
        self.digest = self.digest.merge_sorted_f64(sorted.values());
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let estimate =
            |p: f64| (self.digest.count() > 0.0).then(|| self.digest.estimate_quantile(p));
        if !self.many {
            return self.in_value_type(estimate(self.percentages[0]));
        }
        if self.digest.count() == 0.0 {
            return ScalarValue::try_from(&DataType::List(Arc::new(Field::new_list_field(
                self.value_type.clone(),
                true,
            ))));
        }
        let values = self
            .percentages
            .iter()
            .map(|p| self.in_value_type(estimate(*p)))
            .collect::<Result<Vec<_>>>()?;
        Ok(ScalarValue::List(ScalarValue::new_list_nullable(
            &values,
            &self.value_type,
        )))
    }

    fn size(&self) -> usize {
        size_of_val(self) + self.digest.size() - size_of_val(&self.digest)
            + self.percentages.capacity() * size_of::<f64>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(self.digest.to_scalar_state())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let Some(first) = states.first() else {
            return Ok(());
        };
        let mut digests = Vec::with_capacity(first.len() + 1);
        for row in 0..first.len() {
            let state = states
                .iter()
                .map(|a| ScalarValue::try_from_array(a, row))
                .collect::<Result<Vec<_>>>()?;
            digests.push(TDigest::from_scalar_state(&state));
        }
        digests.push(std::mem::replace(
            &mut self.digest,
            TDigest::new(DEFAULT_MAX_SIZE),
        ));
        self.digest = TDigest::merge_digests(&digests);
        Ok(())
    }
}
