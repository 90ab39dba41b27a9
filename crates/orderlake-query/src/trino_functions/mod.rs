//! Functions Trino users write that DataFusion lacks or defines differently, with Trino's
//! semantics (Trino's documentation is the reference; `sql/tests/functions/*.test` holds the
//! cases). Registered in every snapshot, so both front doors have them.
//!
//! Most are computed value by value over `ScalarValue`s ([`RowWise`]): simple and exact, at the
//! cost of speed on very large inputs.

mod aggregate;
mod arrays;
mod at_timezone;
mod datetime;
mod joda_format;
mod json;
mod mysql_format;
mod percentile;
mod structural;
mod text;
mod try_function;

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::execution::{FunctionRegistry as _, SessionState};
use datafusion::logical_expr::{
    AggregateUDF, ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};

/// DataFusion functions removed because one of their names is a Trino function's: `to_char`
/// answers to `date_format` too (chrono's format codes instead of MySQL's), `map_extract` to
/// `element_at` (a list of values instead of the value), `contains` is a string function
/// (ours answers both: Trino's array membership and DataFusion's substring test).
const REPLACED: [&str; 3] = ["to_char", "map_extract", "contains"];

/// Registers the functions in `state`. A DataFusion function sharing any name with one of them is
/// removed first: every query's session is rebuilt from the list of functions, in no fixed order,
/// so two functions claiming one name would each win sometimes.
pub(crate) fn register(state: &mut SessionState) -> Result<()> {
    for name in REPLACED {
        state.deregister_udf(name)?;
    }
    for f in scalar_functions() {
        state.register_udf(Arc::new(f))?;
    }
    for f in aggregate_functions() {
        state.register_udaf(Arc::new(f))?;
    }
    Ok(())
}

/// The scalar functions, each replacing any DataFusion function of the same name.
fn scalar_functions() -> Vec<ScalarUDF> {
    let mut all = datetime::functions();
    all.push(at_timezone::function());
    all.push(try_function::function());
    all.push(arrays::contains());
    all.extend(joda_format::functions());
    all.extend(json::functions());
    all.extend(mysql_format::functions());
    all.extend(structural::functions());
    all.extend(text::functions());
    all
}

/// The aggregate functions.
fn aggregate_functions() -> Vec<AggregateUDF> {
    aggregate::functions()
}

/// How a [`RowWise`] function computes one row, and its result type from its argument types.
type RowFn = fn(&[ScalarValue]) -> Result<ScalarValue>;
type ReturnFn = fn(&[DataType]) -> Result<DataType>;

/// A scalar function computed row by row.
#[derive(Debug)]
pub(crate) struct RowWise {
    name: &'static str,
    aliases: Vec<String>,
    signature: Signature,
    returns: ReturnFn,
    row: RowFn,
}

impl PartialEq for RowWise {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for RowWise {}

impl std::hash::Hash for RowWise {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl RowWise {
    /// A function of any of `arities` arguments (of any type: `row` checks them).
    pub(crate) fn udf(
        name: &'static str,
        aliases: &[&str],
        arities: &[usize],
        returns: ReturnFn,
        row: RowFn,
    ) -> ScalarUDF {
        let signature = Signature::one_of(
            arities.iter().map(|n| TypeSignature::Any(*n)).collect(),
            Volatility::Immutable,
        );
        ScalarUDF::new_from_impl(Self {
            name,
            aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
            signature,
            returns,
            row,
        })
    }
}

impl ScalarUDFImpl for RowWise {
    fn name(&self) -> &str {
        self.name
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        (self.returns)(arg_types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        if all_scalar {
            let values: Vec<ScalarValue> = args
                .args
                .iter()
                .map(|a| match a {
                    ColumnarValue::Scalar(s) => s.clone(),
                    ColumnarValue::Array(_) => unreachable!("all arguments are scalars"),
                })
                .collect();
            let out = (self.row)(&values)?;
            return Ok(ColumnarValue::Scalar(cast_result(
                out,
                args.return_field.data_type(),
            )?));
        }
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let mut out = Vec::with_capacity(rows);
        let mut values = Vec::with_capacity(arrays.len());
        for i in 0..rows {
            values.clear();
            for a in &arrays {
                values.push(ScalarValue::try_from_array(a, i)?);
            }
            out.push(cast_result(
                (self.row)(&values)?,
                args.return_field.data_type(),
            )?);
        }
        let array = ScalarValue::iter_to_array(out)?;
        Ok(ColumnarValue::Array(Arc::new(array)))
    }
}

/// A row's value as the declared result type (a NULL of any type becomes a typed NULL).
fn cast_result(value: ScalarValue, to: &DataType) -> Result<ScalarValue> {
    if value.data_type() == *to {
        Ok(value)
    } else if value.is_null() {
        ScalarValue::try_from(to)
    } else {
        value.cast_to(to)
    }
}

/// The return type of a function that answers varchar whatever its arguments.
pub(crate) fn varchar(_: &[DataType]) -> Result<DataType> {
    Ok(DataType::Utf8)
}

/// A text argument, or `None` for NULL; any other type is an error naming the function.
pub(crate) fn text<'a>(value: &'a ScalarValue, function: &str) -> Result<Option<&'a str>> {
    match value {
        ScalarValue::Utf8(v) | ScalarValue::Utf8View(v) | ScalarValue::LargeUtf8(v) => {
            Ok(v.as_deref())
        }
        ScalarValue::Null => Ok(None),
        other => exec_err!("{function}: expected varchar, got {}", other.data_type()),
    }
}

/// An integer argument, or `None` for NULL.
pub(crate) fn integer(value: &ScalarValue, function: &str) -> Result<Option<i64>> {
    if value.is_null() {
        return Ok(None);
    }
    match value.cast_to(&DataType::Int64)? {
        ScalarValue::Int64(v) => Ok(v),
        other => exec_err!("{function}: expected an integer, got {}", other.data_type()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use datafusion::execution::SessionStateBuilder;

    use super::*;

    #[test]
    fn no_two_functions_claim_one_name() {
        let mut state = SessionStateBuilder::new().with_default_features().build();
        register(&mut state).unwrap();
        let mut claims: HashMap<String, Vec<String>> = HashMap::new();
        let mut seen = std::collections::HashSet::new();
        for udf in state.scalar_functions().values() {
            if !seen.insert(Arc::as_ptr(udf)) {
                continue;
            }
            for name in std::iter::once(udf.name().to_owned()).chain(udf.aliases().iter().cloned())
            {
                claims.entry(name).or_default().push(udf.name().to_owned());
            }
        }
        let conflicts: Vec<_> = claims.iter().filter(|(_, c)| c.len() > 1).collect();
        assert!(conflicts.is_empty(), "{conflicts:?}");
        assert_eq!(
            state.scalar_functions()["date_format"].name(),
            "date_format"
        );
    }
}
