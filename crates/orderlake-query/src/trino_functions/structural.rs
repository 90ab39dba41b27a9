//! Trino's `element_at(array, index)` (1-based, negative from the end, NULL out of range) and
//! `element_at(map, key)`, and `if(condition, then[, else])`.

use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::ScalarUDF;
use datafusion::logical_expr::type_coercion::binary::comparison_coercion;

use super::{RowWise, integer};

pub(super) fn functions() -> Vec<ScalarUDF> {
    vec![
        RowWise::udf("element_at", &[], &[2], element_type, element_at),
        RowWise::udf("if", &[], &[2, 3], if_type, if_),
    ]
}

fn element_type(types: &[DataType]) -> Result<DataType> {
    match &types[0] {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            Ok(f.data_type().clone())
        }
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => Ok(kv[1].data_type().clone()),
            other => exec_err!("element_at: unexpected map entries {other}"),
        },
        other => exec_err!("element_at: expected an array or a map, got {other}"),
    }
}

fn element_at(args: &[ScalarValue]) -> Result<ScalarValue> {
    let values = match &args[0] {
        ScalarValue::List(a) if !a.is_null(0) => a.value(0),
        ScalarValue::LargeList(a) if !a.is_null(0) => a.value(0),
        ScalarValue::FixedSizeList(a) if !a.is_null(0) => a.value(0),
        ScalarValue::Map(m) if !m.is_null(0) => {
            let entries = m.value(0);
            for i in 0..entries.len() {
                let key = ScalarValue::try_from_array(entries.column(0), i)?;
                if !args[1].is_null() && key == args[1].cast_to(&key.data_type())? {
                    return ScalarValue::try_from_array(entries.column(1), i);
                }
            }
            return ScalarValue::try_from(element_type(&[args[0].data_type()])?);
        }
        other if other.is_null() => {
            return ScalarValue::try_from(element_type(&[other.data_type()])?);
        }
        other => {
            return exec_err!(
                "element_at: expected an array or a map, got {}",
                other.data_type()
            );
        }
    };
    let null = || ScalarValue::try_from(values.data_type());
    let Some(index) = integer(&args[1], "element_at")? else {
        return null();
    };
    let len = values.len() as i64;
    let at = match index {
        0 => return exec_err!("element_at: SQL array indices start at 1"),
        i if i > 0 => i - 1,
        i => len + i,
    };
    if at < 0 || at >= len {
        return null();
    }
    ScalarValue::try_from_array(&values, at as usize)
}

fn if_type(types: &[DataType]) -> Result<DataType> {
    match types {
        [_, then] => Ok(then.clone()),
        [_, then, otherwise] if then == otherwise => Ok(then.clone()),
        [_, DataType::Null, otherwise] => Ok(otherwise.clone()),
        [_, then, DataType::Null] => Ok(then.clone()),
        [_, then, otherwise] => comparison_coercion(then, otherwise).map_or_else(
            || exec_err!("if: {then} and {otherwise} have no common type"),
            Ok,
        ),
        _ => exec_err!("if takes two or three arguments"),
    }
}

fn if_(args: &[ScalarValue]) -> Result<ScalarValue> {
    let condition = match &args[0] {
        ScalarValue::Boolean(b) => *b,
        other if other.is_null() => None,
        other => {
            return exec_err!(
                "if: the condition must be boolean, got {}",
                other.data_type()
            );
        }
    };
    Ok(match (condition, args.get(2)) {
        (Some(true), _) => args[1].clone(),
        (_, Some(otherwise)) => otherwise.clone(),
        (_, None) => ScalarValue::Null,
    })
}
