//! Trino's `date_format(timestamp, format)` and `date_parse(string, format)`, with MySQL's format
//! codes as Trino reads them (`%Y-%m-%d %H:%i:%s`), translated to chrono's.

use chrono::{NaiveDate, NaiveDateTime};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::ScalarUDF;

use super::datetime::local_time;
use super::{RowWise, text, varchar};

pub(super) fn functions() -> Vec<ScalarUDF> {
    vec![
        RowWise::udf("date_format", &[], &[2], varchar, date_format),
        RowWise::udf(
            "date_parse",
            &[],
            &[2],
            |_| Ok(DataType::Timestamp(TimeUnit::Millisecond, None)),
            date_parse,
        ),
    ]
}

/// Translates MySQL format codes to chrono's; codes Trino does not support are an error.
fn chrono_format(mysql: &str, function: &str) -> Result<String> {
    let mut out = String::with_capacity(mysql.len() + 8);
    let mut chars = mysql.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(code) = chars.next() else {
            return exec_err!("{function}: the format ends with a lone %");
        };
        out.push_str(match code {
            'a' => "%a",
            'b' => "%b",
            'c' => "%-m",
            'd' => "%d",
            'e' => "%-d",
            'f' => "%6f",
            'H' => "%H",
            'h' | 'I' => "%I",
            'i' => "%M",
            'j' => "%j",
            'k' => "%-H",
            'l' => "%-I",
            'M' => "%B",
            'm' => "%m",
            'p' => "%p",
            'r' => "%I:%M:%S %p",
            'S' | 's' => "%S",
            'T' => "%H:%M:%S",
            'v' => "%V",
            'W' => "%A",
            'x' => "%G",
            'Y' => "%Y",
            'y' => "%y",
            '%' => "%%",
            other => {
                return exec_err!("{function}: %{other} is not a supported format code");
            }
        });
    }
    Ok(out)
}

fn date_format(args: &[ScalarValue]) -> Result<ScalarValue> {
    let (Some(at), Some(format)) = (
        local_time(&args[0], "date_format")?,
        text(&args[1], "date_format")?,
    ) else {
        return Ok(ScalarValue::Utf8(None));
    };
    let format = chrono_format(format, "date_format")?;
    Ok(ScalarValue::Utf8(Some(at.format(&format).to_string())))
}

fn date_parse(args: &[ScalarValue]) -> Result<ScalarValue> {
    let (Some(s), Some(format)) = (text(&args[0], "date_parse")?, text(&args[1], "date_parse")?)
    else {
        return Ok(ScalarValue::TimestampMillisecond(None, None));
    };
    let pattern = chrono_format(format, "date_parse")?;
    let parsed = NaiveDateTime::parse_from_str(s, &pattern).or_else(|_| {
        NaiveDate::parse_from_str(s, &pattern).map(|d| d.and_time(Default::default()))
    });
    match parsed {
        Ok(t) => Ok(ScalarValue::TimestampMillisecond(
            Some(t.and_utc().timestamp_millis()),
            None,
        )),
        Err(e) => exec_err!("date_parse: '{s}' does not match the format '{format}': {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_codes_format_and_parse() {
        let t = NaiveDateTime::parse_from_str("2024-03-01 21:05:07.123456", "%Y-%m-%d %H:%M:%S%.f")
            .unwrap();
        let ts = ScalarValue::TimestampMicrosecond(Some(t.and_utc().timestamp_micros()), None);
        let f = |fmt: &str| date_format(&[ts.clone(), ScalarValue::Utf8(Some(fmt.into()))]);
        assert_eq!(
            f("%Y-%m-%d %H:%i:%s").unwrap(),
            ScalarValue::Utf8(Some("2024-03-01 21:05:07".into()))
        );
        assert_eq!(
            f("%W %e %M %Y, %l:%i %p").unwrap(),
            ScalarValue::Utf8(Some("Friday 1 March 2024, 9:05 PM".into()))
        );
        assert_eq!(f("%f").unwrap(), ScalarValue::Utf8(Some("123456".into())));
        assert!(f("%D").is_err());
    }
}
