//! Trino's `contains(array, element)`, which in DataFusion is a string function: Trino's array
//! membership for an array, DataFusion's substring test for text. (Trino's lambda functions,
//! `transform` and `filter`, are not here: DataFusion 55 has them as `array_transform` and
//! `array_filter`, but its generic SQL dialect, which the server parses with, reads `x -> …` as
//! the JSON arrow operator.)

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, plan_err};
use datafusion::functions_nested::array_has::array_has_udf;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

pub(super) fn contains() -> ScalarUDF {
    ScalarUDF::new_from_impl(Contains {
        signature: Signature::user_defined(Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Contains {
    signature: Signature,
}

fn is_list(t: &DataType) -> bool {
    matches!(
        t,
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..)
    )
}

impl ScalarUDFImpl for Contains {
    fn name(&self) -> &str {
        "contains"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            // The element as the array's element type, as Trino coerces it.
            [
                DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _),
                _,
            ] => Ok(vec![arg_types[0].clone(), f.data_type().clone()]),
            [a, b] if !is_list(a) && !is_list(b) => Ok(vec![DataType::Utf8, DataType::Utf8]),
            _ => plan_err!("contains: expected an array and an element, or two strings"),
        }
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        let Some(first) = args.first() else {
            return Ok(ExprSimplifyResult::Original(args));
        };
        match info.get_data_type(first) {
            Ok(t) if is_list(&t) => Ok(ExprSimplifyResult::Simplified(array_has_udf().call(args))),
            Ok(_) => Ok(ExprSimplifyResult::Simplified(
                datafusion::functions::string::contains().call(args),
            )),
            Err(_) => Ok(ExprSimplifyResult::Original(args)),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        // Where the optimizer did not simplify the call: the same choice, made on the values.
        if is_list(&args.args[0].data_type()) {
            array_has_udf().invoke_with_args(args)
        } else {
            datafusion::functions::string::contains().invoke_with_args(args)
        }
    }
}
