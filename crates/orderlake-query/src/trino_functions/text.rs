//! Trino's `regexp_extract(string, pattern[, group])`: the first match (or its group), NULL when
//! nothing matches.

use std::sync::Mutex;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::ScalarUDF;
use regex::Regex;

use super::{RowWise, integer, text};

pub(super) fn functions() -> Vec<ScalarUDF> {
    vec![RowWise::udf(
        "regexp_extract",
        &[],
        &[2, 3],
        |_| Ok(DataType::Utf8),
        regexp_extract,
    )]
}

/// The last pattern compiled: a pattern is nearly always the same literal for every row.
static LAST: Mutex<Option<(String, Regex)>> = Mutex::new(None);

fn compiled(pattern: &str) -> Result<Regex> {
    let mut last = LAST.lock().expect("regex cache lock");
    if let Some((p, r)) = last.as_ref()
        && p == pattern
    {
        return Ok(r.clone());
    }
    match Regex::new(pattern) {
        Ok(r) => {
            *last = Some((pattern.to_owned(), r.clone()));
            Ok(r)
        }
        Err(e) => exec_err!("regexp_extract: invalid pattern '{pattern}': {e}"),
    }
}

fn regexp_extract(args: &[ScalarValue]) -> Result<ScalarValue> {
    let (Some(s), Some(pattern)) = (
        text(&args[0], "regexp_extract")?,
        text(&args[1], "regexp_extract")?,
    ) else {
        return Ok(ScalarValue::Utf8(None));
    };
    let group = match args.get(2) {
        Some(g) => match integer(g, "regexp_extract")? {
            Some(g) => g,
            None => return Ok(ScalarValue::Utf8(None)),
        },
        None => 0,
    };
    let re = compiled(pattern)?;
    let Ok(group) = usize::try_from(group) else {
        return exec_err!("regexp_extract: group {group} is negative");
    };
    if group >= re.captures_len() {
        return exec_err!(
            "regexp_extract: pattern has {} groups, cannot access group {group}",
            re.captures_len() - 1
        );
    }
    Ok(ScalarValue::Utf8(
        re.captures(s)
            .and_then(|c| c.get(group))
            .map(|m| m.as_str().to_owned()),
    ))
}
