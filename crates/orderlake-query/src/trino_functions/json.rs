//! Trino's JSON functions over JSON text: `json_extract_scalar`, `json_extract`,
//! `json_array_length`, with Trino's JSONPath subset (`$`, `.key`, `["key"]`, `[n]`), and
//! `json_parse` / `json_format` (JSON values are text here: both check it and write it compactly).

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::ScalarUDF;
use serde_json::Value;

use super::{RowWise, text, varchar};

pub(super) fn functions() -> Vec<ScalarUDF> {
    vec![
        RowWise::udf(
            "json_extract_scalar",
            &[],
            &[2],
            varchar,
            json_extract_scalar,
        ),
        RowWise::udf("json_extract", &[], &[2], varchar, json_extract),
        RowWise::udf(
            "json_array_length",
            &[],
            &[1],
            |_| Ok(DataType::Int64),
            json_array_length,
        ),
        RowWise::udf("json_parse", &[], &[1], varchar, |args| {
            compact(args, "json_parse")
        }),
        RowWise::udf("json_format", &[], &[1], varchar, |args| {
            compact(args, "json_format")
        }),
    ]
}

/// The JSON text in `args[0]` written compactly, as Trino writes a JSON value; text that is not
/// JSON is an error naming `function`.
fn compact(args: &[ScalarValue], function: &str) -> Result<ScalarValue> {
    let Some(json) = text(&args[0], function)? else {
        return Ok(ScalarValue::Utf8(None));
    };
    match serde_json::from_str::<Value>(json) {
        Ok(value) => Ok(ScalarValue::Utf8(Some(value.to_string()))),
        Err(e) => exec_err!("{function}: cannot convert '{json}' to JSON: {e}"),
    }
}

#[derive(Debug, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

/// Parses a JSONPath of the subset Trino's functions accept.
fn path(p: &str) -> Result<Vec<Step>> {
    let Some(mut rest) = p.trim().strip_prefix('$') else {
        return exec_err!("Invalid JSON path: '{p}'");
    };
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return exec_err!("Invalid JSON path: '{p}'");
            }
            steps.push(Step::Key(r[..end].to_owned()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else {
                return exec_err!("Invalid JSON path: '{p}'");
            };
            let inside = r[..end].trim();
            let quoted = inside
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .or_else(|| inside.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')));
            match (quoted, inside.parse::<usize>()) {
                (Some(key), _) => steps.push(Step::Key(key.to_owned())),
                (None, Ok(i)) => steps.push(Step::Index(i)),
                _ => return exec_err!("Invalid JSON path: '{p}'"),
            }
            rest = &r[end + 1..];
        } else {
            return exec_err!("Invalid JSON path: '{p}'");
        }
    }
    Ok(steps)
}

/// The value at `p` in the JSON text `json`; `None` if the text is not JSON or nothing is there.
fn at(json: &str, p: &str) -> Result<Option<Value>> {
    let steps = path(p)?;
    let Ok(mut value) = serde_json::from_str::<Value>(json) else {
        return Ok(None);
    };
    for step in steps {
        let next = match (step, value) {
            (Step::Key(k), Value::Object(mut o)) => o.remove(&k),
            (Step::Index(i), Value::Array(mut a)) if i < a.len() => Some(a.swap_remove(i)),
            _ => None,
        };
        match next {
            Some(v) => value = v,
            None => return Ok(None),
        }
    }
    Ok(Some(value))
}

fn pair<'a>(args: &'a [ScalarValue], function: &str) -> Result<Option<(&'a str, &'a str)>> {
    Ok(
        match (text(&args[0], function)?, text(&args[1], function)?) {
            (Some(j), Some(p)) => Some((j, p)),
            _ => None,
        },
    )
}

fn json_extract_scalar(args: &[ScalarValue]) -> Result<ScalarValue> {
    let Some((json, p)) = pair(args, "json_extract_scalar")? else {
        return Ok(ScalarValue::Utf8(None));
    };
    Ok(ScalarValue::Utf8(match at(json, p)? {
        Some(Value::String(s)) => Some(s),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => Some(v.to_string()),
        _ => None,
    }))
}

fn json_extract(args: &[ScalarValue]) -> Result<ScalarValue> {
    let Some((json, p)) = pair(args, "json_extract")? else {
        return Ok(ScalarValue::Utf8(None));
    };
    Ok(ScalarValue::Utf8(at(json, p)?.map(|v| v.to_string())))
}

fn json_array_length(args: &[ScalarValue]) -> Result<ScalarValue> {
    let Some(json) = text(&args[0], "json_array_length")? else {
        return Ok(ScalarValue::Int64(None));
    };
    Ok(ScalarValue::Int64(
        match serde_json::from_str::<Value>(json) {
            Ok(Value::Array(a)) => Some(a.len() as i64),
            _ => None,
        },
    ))
}
