//! Trino's `try(expression)`: the expression's value, or NULL for the rows where computing it
//! fails with a data error (division by zero, a value that does not cast, a number out of
//! range, a function given an argument it cannot take). Errors that are not about the row
//! (memory, storage, internal) still fail the query, as in Trino.
//!
//! A function's arguments are computed before it is called, so `try` cannot catch their errors
//! as a plain function. When the optimizer simplifies `try(e)` (it knows `e`'s input schema
//! then), it becomes a function of the columns `e` reads that holds `e` compiled: it computes
//! `e` over the whole batch and, only if that fails, row by row, turning the failing rows into
//! NULL. Being an ordinary function of columns, it works wherever an expression can stand
//! (select lists, filters, aggregate arguments, sort keys, join conditions).

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, RecordBatchOptions, new_empty_array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::common::tree_node::{Transformed, TreeNode as _, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, DataFusionError, Result, ScalarValue, plan_err};
use datafusion::logical_expr::execution_props::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::physical_expr::{PhysicalExpr, create_physical_expr};

const NAME: &str = "try";

pub(super) fn function() -> ScalarUDF {
    ScalarUDF::new_from_impl(Try {
        signature: Signature::any(1, Volatility::Immutable),
    })
}

/// `try(e)` as written; the optimizer turns it into a [`TryEval`].
#[derive(Debug, PartialEq, Eq, Hash)]
struct Try {
    signature: Signature,
}

impl ScalarUDFImpl for Try {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types[0].clone())
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        // Only reached when the expression could not be compiled (a subquery in it, say):
        // computing the already computed argument would not catch anything.
        plan_err!("try() cannot be computed here: its argument holds a subquery or an aggregate")
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        let [inner] = args.as_slice() else {
            return Ok(ExprSimplifyResult::Original(args));
        };
        match TryEval::compile(inner, info) {
            Ok(Some((eval, columns))) => Ok(ExprSimplifyResult::Simplified(
                ScalarUDF::new_from_impl(eval).call(columns),
            )),
            // Not compilable against this schema (yet): keep it for a later pass.
            Ok(None) | Err(_) => Ok(ExprSimplifyResult::Original(args)),
        }
    }
}

/// `try(e)` compiled: `e` over its own columns, passed in as arguments.
#[derive(Debug)]
struct TryEval {
    /// `e` with its columns renamed to `__try_<i>`, the i-th argument.
    expr: Expr,
    schema: SchemaRef,
    physical: Arc<dyn PhysicalExpr>,
    return_type: DataType,
    signature: Signature,
}

impl PartialEq for TryEval {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr && self.schema == other.schema
    }
}

impl Eq for TryEval {}

impl std::hash::Hash for TryEval {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.expr.hash(state);
        for f in self.schema.fields() {
            f.data_type().hash(state);
        }
    }
}

impl TryEval {
    /// `inner` compiled against `info`'s schema, and the columns to call it with; `None` when
    /// it reads more than columns (subqueries, aggregates, windows, placeholders).
    fn compile(inner: &Expr, info: &SimplifyContext) -> Result<Option<(Self, Vec<Expr>)>> {
        let mut plain = true;
        inner.apply(|e| {
            if matches!(
                e,
                Expr::ScalarSubquery(_)
                    | Expr::Exists(_)
                    | Expr::InSubquery(_)
                    | Expr::OuterReferenceColumn(..)
                    | Expr::AggregateFunction(_)
                    | Expr::WindowFunction(_)
                    | Expr::Placeholder(_)
            ) {
                plain = false;
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        if !plain {
            return Ok(None);
        }
        let mut columns: Vec<Column> = inner.column_refs().into_iter().cloned().collect();
        columns.sort_by_key(|c| c.flat_name());
        let mut fields = Vec::with_capacity(columns.len());
        for (i, c) in columns.iter().enumerate() {
            let data_type = info.get_data_type(&Expr::Column(c.clone()))?;
            fields.push(Field::new(format!("__try_{i}"), data_type, true));
        }
        let renamed = inner
            .clone()
            .transform(|e| match &e {
                Expr::Column(c) => match columns.iter().position(|k| k == c) {
                    Some(i) => Ok(Transformed::yes(Expr::Column(Column::from_name(format!(
                        "__try_{i}"
                    ))))),
                    None => Ok(Transformed::no(e)),
                },
                _ => Ok(Transformed::no(e)),
            })?
            .data;
        let schema = Arc::new(Schema::new(fields));
        let df_schema = DFSchema::try_from(Schema::clone(&schema))?;
        let physical = create_physical_expr(
            &renamed,
            &df_schema,
            &ExecutionProps::new(),
            &PhysicalPlanningContext::default(),
        )?;
        let return_type = physical.data_type(&schema)?;
        let volatility = if inner.is_volatile() {
            Volatility::Volatile
        } else {
            Volatility::Immutable
        };
        let signature = if columns.is_empty() {
            Signature::nullary(volatility)
        } else {
            Signature::new(TypeSignature::Any(columns.len()), volatility)
        };
        let eval = Self {
            expr: renamed,
            schema,
            physical,
            return_type,
            signature,
        };
        Ok(Some((
            eval,
            columns.into_iter().map(Expr::Column).collect(),
        )))
    }

    /// `e` row by row, NULL where a row fails with a data error.
    fn row_by_row(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        if batch.num_rows() == 0 {
            return Ok(ColumnarValue::Array(new_empty_array(&self.return_type)));
        }
        let mut values = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            let value = match self.physical.evaluate(&batch.slice(row, 1)) {
                Ok(v) => ScalarValue::try_from_array(&v.to_array(1)?, 0)?,
                Err(e) if is_data_error(&e) => ScalarValue::try_from(&self.return_type)?,
                Err(e) => return Err(e),
            };
            values.push(value);
        }
        Ok(ColumnarValue::Array(ScalarValue::iter_to_array(values)?))
    }
}

/// Whether an error is about the row's values (what Trino's `try` catches), not the query.
fn is_data_error(e: &DataFusionError) -> bool {
    match e.find_root() {
        DataFusionError::Execution(_) => true,
        DataFusionError::ArrowError(inner, _) => matches!(
            inner.as_ref(),
            ArrowError::DivideByZero
                | ArrowError::CastError(_)
                | ArrowError::ParseError(_)
                | ArrowError::ComputeError(_)
                | ArrowError::ArithmeticOverflow(_)
                | ArrowError::InvalidArgumentError(_)
        ),
        _ => false,
    }
}

impl ScalarUDFImpl for TryEval {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(self.return_type.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let options = RecordBatchOptions::new().with_row_count(Some(args.number_rows));
        let batch = RecordBatch::try_new_with_options(Arc::clone(&self.schema), arrays, &options)?;
        match self.physical.evaluate(&batch) {
            Err(e) if is_data_error(&e) => self.row_by_row(&batch),
            other => other,
        }
    }
}
