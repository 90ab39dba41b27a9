//! Trino's `at_timezone(timestamp, zone)`: the same instant shown in another zone. Its result
//! type names the zone (`timestamp with time zone` in Arrow carries it), so the zone must be a
//! constant, as Trino's planner also needs it; a timestamp without zone is read in the
//! session's zone (UTC).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::QueryScope;

const NAME: &str = "at_timezone";

pub(super) fn function() -> ScalarUDF {
    ScalarUDF::new_from_impl(AtTimezone {
        signature: Signature::any(2, Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct AtTimezone {
    signature: Signature,
}

/// The zone a constant names, as Arrow spells it in a type: an IANA name or an offset.
fn zone(value: Option<&ScalarValue>) -> Result<Arc<str>> {
    let name = match value {
        Some(ScalarValue::Utf8(Some(z)) | ScalarValue::Utf8View(Some(z)))
        | Some(ScalarValue::LargeUtf8(Some(z))) => z.trim(),
        Some(v) if v.is_null() => return plan_err!("{NAME}: the zone must not be NULL"),
        _ => return plan_err!("{NAME}: the zone must be a constant string"),
    };
    if !QueryScope::is_time_zone(name) {
        return plan_err!("{NAME}: '{name}' is not a time zone");
    }
    Ok(name.into())
}

impl ScalarUDFImpl for AtTimezone {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        // Never asked: the type depends on the zone's value (`return_field_from_args`).
        plan_err!("{NAME}: the result type depends on the zone")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let zone = zone(args.scalar_arguments.get(1).copied().flatten())?;
        let DataType::Timestamp(unit, _) = args.arg_fields[0].data_type() else {
            return plan_err!(
                "{NAME}: expected a timestamp, got {}",
                args.arg_fields[0].data_type()
            );
        };
        Ok(Arc::new(Field::new(
            self.name(),
            DataType::Timestamp(*unit, Some(zone)),
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let value = &args.args[0];
        let to = args.return_field.data_type();
        let value = match value.data_type() {
            // The session's zone first, so that the cast below keeps the instant.
            DataType::Timestamp(unit, None) => {
                value.cast_to(&DataType::Timestamp(unit, Some("UTC".into())), None)?
            }
            DataType::Timestamp(..) => value.clone(),
            other => return exec_err!("{NAME}: expected a timestamp, got {other}"),
        };
        value.cast_to(to, None)
    }
}
