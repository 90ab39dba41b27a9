//! Trino's `regexp_extract(string, pattern[, group])`: the first match (or its group), NULL when
//! nothing matches; and Trino's `split_part(string, delimiter, index)` over DataFusion's (which
//! answers '' past the last field and counts negative indexes from the end).

use std::sync::Mutex;

use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::ScalarUDF;
use regex::Regex;

use super::{RowWise, integer, text, varchar};

pub(super) fn functions() -> Vec<ScalarUDF> {
    vec![
        RowWise::udf("regexp_extract", &[], &[2, 3], varchar, regexp_extract),
        RowWise::udf("split_part", &[], &[3], varchar, split_part),
    ]
}

/// Field `index` (from 1) of `string` split at `delimiter`; NULL past the last field. An empty
/// delimiter makes each character a field. An index below 1 is an error, as in Trino.
fn split_part(args: &[ScalarValue]) -> Result<ScalarValue> {
    let (Some(string), Some(delimiter), Some(index)) = (
        text(&args[0], "split_part")?,
        text(&args[1], "split_part")?,
        integer(&args[2], "split_part")?,
    ) else {
        return Ok(ScalarValue::Utf8(None));
    };
    if index < 1 {
        return exec_err!("split_part: Index must be greater than zero, got {index}");
    }
    let n = (index - 1) as usize;
    let field = if delimiter.is_empty() {
        string.chars().nth(n).map(String::from)
    } else {
        string.split(delimiter).nth(n).map(str::to_owned)
    };
    Ok(ScalarValue::Utf8(field))
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
