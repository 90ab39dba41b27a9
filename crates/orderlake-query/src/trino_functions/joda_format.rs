//! Trino's `format_datetime(timestamp, format)` and `parse_datetime(string, format)`, with
//! Joda-Time's patterns (`yyyy-MM-dd'T'HH:mm:ss.SSSZZ`), as Trino reads them: a letter repeated
//! gives the field and its width (`M` 3, `MMM` Mar, `MMMM` March; `yy` two digits), text in
//! single quotes is literal, `''` is a quote. Fractions of a second have Trino's millisecond
//! precision. `parse_datetime` answers the parsed instant in UTC: a column has one zone, while
//! each row's text may name another.

use chrono::{
    DateTime, Datelike as _, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Offset as _,
    TimeZone as _, Timelike as _, Utc,
};
use chrono_tz::OffsetName as _;
use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::ScalarUDF;

use super::datetime::utc_and_zone;
use super::{RowWise, text, varchar};

pub(super) fn functions() -> Vec<ScalarUDF> {
    vec![
        RowWise::udf("format_datetime", &[], &[2], varchar, format_datetime),
        RowWise::udf(
            "parse_datetime",
            &[],
            &[2],
            |_| {
                Ok(DataType::Timestamp(
                    TimeUnit::Millisecond,
                    Some("UTC".into()),
                ))
            },
            parse_datetime,
        ),
    ]
}

/// One piece of a pattern: literal text, or a field letter and how often it was repeated.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Text(String),
    Field(char, usize),
}

/// Joda's pattern letters this implementation knows (all of Joda's but `zzzz`'s long names).
const LETTERS: &str = "GCYxweEyDMdaKhHkmsSzZ";

fn tokens(pattern: &str, function: &str) -> Result<Vec<Token>> {
    let mut out = Vec::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            if chars.peek() == Some(&'\'') {
                chars.next();
                out.push(Token::Text("'".into()));
                continue;
            }
            let mut quoted = String::new();
            loop {
                match chars.next() {
                    Some('\'') if chars.peek() == Some(&'\'') => {
                        chars.next();
                        quoted.push('\'');
                    }
                    Some('\'') => break,
                    Some(q) => quoted.push(q),
                    None => return exec_err!("{function}: unterminated quote in '{pattern}'"),
                }
            }
            out.push(Token::Text(quoted));
        } else if c.is_ascii_alphabetic() {
            if !LETTERS.contains(c) {
                return exec_err!("{function}: illegal pattern component: {c}");
            }
            let mut n = 1;
            while chars.peek() == Some(&c) {
                chars.next();
                n += 1;
            }
            out.push(Token::Field(c, n));
        } else {
            out.push(Token::Text(c.to_string()));
        }
    }
    Ok(out)
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// A number zero-padded to `width` digits (a sign before the padding).
fn padded(out: &mut String, value: i64, width: usize) {
    if value < 0 {
        out.push('-');
    }
    let digits = value.unsigned_abs().to_string();
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(&digits);
}

/// A year field: `yy` is the last two digits, any other width pads.
fn year(out: &mut String, year: i64, width: usize) {
    if width == 2 {
        padded(out, year.rem_euclid(100), 2);
    } else {
        padded(out, year, width);
    }
}

/// An offset as `+hhmm` (`colon` false) or `+hh:mm`.
fn offset_text(seconds: i32, colon: bool) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let minutes = seconds.unsigned_abs() / 60;
    let (h, m) = (minutes / 60, minutes % 60);
    if colon {
        format!("{sign}{h:02}:{m:02}")
    } else {
        format!("{sign}{h:02}{m:02}")
    }
}

/// The zone's short name at `utc` (`CET`, `UTC`), or its offset where it has none.
fn zone_abbreviation(zone: Option<&str>, utc: DateTime<Utc>) -> String {
    let Some(name) = zone else {
        return "UTC".into();
    };
    match name.parse::<chrono_tz::Tz>() {
        Ok(tz) => {
            let offset = tz.offset_from_utc_datetime(&utc.naive_utc());
            offset
                .abbreviation()
                .map(str::to_owned)
                .unwrap_or_else(|| offset_text(offset.fix().local_minus_utc(), true))
        }
        Err(_) => name.to_owned(),
    }
}

fn format_datetime(args: &[ScalarValue]) -> Result<ScalarValue> {
    const F: &str = "format_datetime";
    let (Some((utc, zone)), Some(pattern)) = (utc_and_zone(&args[0], F)?, text(&args[1], F)?)
    else {
        return Ok(ScalarValue::Utf8(None));
    };
    let tz: Option<Tz> = zone.as_deref().map(str::parse).transpose()?;
    let (local, offset) = match tz {
        Some(tz) => {
            let t = utc.with_timezone(&tz);
            (t.naive_local(), t.offset().fix().local_minus_utc())
        }
        None => (utc.naive_utc(), 0),
    };
    let mut out = String::with_capacity(pattern.len() + 8);
    for token in tokens(pattern, F)? {
        let (letter, n) = match token {
            Token::Text(t) => {
                out.push_str(&t);
                continue;
            }
            Token::Field(letter, n) => (letter, n),
        };
        let date = local.date();
        match letter {
            'G' => out.push_str(if date.year() > 0 { "AD" } else { "BC" }),
            'C' => padded(&mut out, i64::from(date.year().abs() / 100), n),
            'Y' => year(&mut out, i64::from(date.year().abs().max(1)), n),
            'y' => year(&mut out, i64::from(date.year()), n),
            'x' => year(&mut out, i64::from(date.iso_week().year()), n),
            'w' => padded(&mut out, i64::from(date.iso_week().week()), n),
            'e' => padded(&mut out, i64::from(date.weekday().number_from_monday()), n),
            'E' => {
                let name = DAYS[date.weekday().num_days_from_monday() as usize];
                out.push_str(if n >= 4 { name } else { &name[..3] });
            }
            'D' => padded(&mut out, i64::from(date.ordinal()), n),
            'M' => {
                let name = MONTHS[date.month0() as usize];
                match n {
                    1 | 2 => padded(&mut out, i64::from(date.month()), n),
                    3 => out.push_str(&name[..3]),
                    _ => out.push_str(name),
                }
            }
            'd' => padded(&mut out, i64::from(date.day()), n),
            'a' => out.push_str(if local.hour() < 12 { "AM" } else { "PM" }),
            'K' => padded(&mut out, i64::from(local.hour() % 12), n),
            'h' => padded(&mut out, i64::from((local.hour() + 11) % 12 + 1), n),
            'H' => padded(&mut out, i64::from(local.hour()), n),
            'k' => padded(&mut out, i64::from((local.hour() + 23) % 24 + 1), n),
            'm' => padded(&mut out, i64::from(local.minute()), n),
            's' => padded(&mut out, i64::from(local.second()), n),
            'S' => {
                // Milliseconds, then zeros: Trino formats through Joda's millisecond instants.
                let millis = format!("{:03}", local.nanosecond() / 1_000_000 % 1000);
                for i in 0..n {
                    out.push(millis.as_bytes().get(i).map_or('0', |b| char::from(*b)));
                }
            }
            'z' => {
                if n >= 4 {
                    out.push_str(zone.as_deref().unwrap_or("UTC"));
                } else {
                    out.push_str(&zone_abbreviation(zone.as_deref(), utc));
                }
            }
            'Z' => match n {
                1 => out.push_str(&offset_text(offset, false)),
                2 => out.push_str(&offset_text(offset, true)),
                _ => out.push_str(zone.as_deref().unwrap_or("UTC")),
            },
            other => return exec_err!("{F}: illegal pattern component: {other}"),
        }
    }
    Ok(ScalarValue::Utf8(Some(out)))
}

/// What a parse has read so far.
#[derive(Debug, Default)]
struct Parsed {
    year: Option<i32>,
    two_digit_year: bool,
    month: Option<u32>,
    day: Option<u32>,
    day_of_year: Option<u32>,
    hour: u32,
    pm: Option<bool>,
    twelve_hour: bool,
    minute: u32,
    second: u32,
    millis: u32,
    offset: Option<i32>,
    zone: Option<chrono_tz::Tz>,
}

/// Reads the input as a Joda pattern does: numbers greedily (at most the pattern's width when
/// another number follows at once, as Joda reads `yyyyMMdd`), names whole-word and in any case.
struct Reader<'a> {
    input: &'a str,
    at: usize,
}

impl Reader<'_> {
    fn rest(&self) -> &str {
        &self.input[self.at..]
    }

    fn number(&mut self, max_digits: usize) -> Option<i64> {
        let rest = self.rest();
        let (negative, digits_from) = match rest.as_bytes().first() {
            Some(b'-') => (true, 1),
            Some(b'+') => (false, 1),
            _ => (false, 0),
        };
        let digits = rest[digits_from..]
            .bytes()
            .take(max_digits)
            .take_while(u8::is_ascii_digit)
            .count();
        if digits == 0 {
            return None;
        }
        let value: i64 = rest[digits_from..digits_from + digits].parse().ok()?;
        self.at += digits_from + digits;
        Some(if negative { -value } else { value })
    }

    /// The index of the first of `names` the input starts with (case-insensitively).
    fn name(&mut self, names: &[&str]) -> Option<usize> {
        let rest = self.rest();
        let (i, len) = names.iter().enumerate().find_map(|(i, name)| {
            let head = rest.get(..name.len())?;
            head.eq_ignore_ascii_case(name).then_some((i, name.len()))
        })?;
        self.at += len;
        Some(i)
    }

    fn literal(&mut self, text: &str) -> bool {
        if self.rest().starts_with(text) {
            self.at += text.len();
            true
        } else {
            false
        }
    }

    /// `Z`, `+hh`, `+hhmm` or `+hh:mm`, as seconds east of UTC.
    fn offset(&mut self) -> Option<i32> {
        if self.literal("Z") {
            return Some(0);
        }
        let rest = self.rest();
        let sign = match rest.as_bytes().first()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let body = &rest[1..];
        let digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
        let (h, m, used) = if body.len() >= 5 && body.as_bytes()[2] == b':' && digits(&body[3..5]) {
            (&body[..2], &body[3..5], 6)
        } else if body.len() >= 4 && digits(&body[..2]) && digits(&body[2..4]) {
            (&body[..2], &body[2..4], 5)
        } else {
            (body.get(..2)?, "00", 3)
        };
        if !digits(h) {
            return None;
        }
        let seconds = h.parse::<i32>().ok()? * 3600 + m.parse::<i32>().ok()? * 60;
        self.at += used;
        Some(sign * seconds)
    }

    /// A zone id: letters, digits, `/`, `_`, `+`, `-`.
    fn zone_id(&mut self) -> Option<chrono_tz::Tz> {
        let len = self
            .rest()
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || b"/_+-".contains(b))
            .count();
        let zone = self.rest()[..len].parse().ok()?;
        self.at += len;
        Some(zone)
    }
}

fn parse_datetime(args: &[ScalarValue]) -> Result<ScalarValue> {
    const F: &str = "parse_datetime";
    let (Some(input), Some(pattern)) = (text(&args[0], F)?, text(&args[1], F)?) else {
        return Ok(ScalarValue::TimestampMillisecond(None, Some("UTC".into())));
    };
    let invalid = |at: usize| {
        exec_err!(
            "{F}: invalid format: \"{input}\" is malformed at \"{}\"",
            &input[at..]
        )
    };
    let tokens = tokens(pattern, F)?;
    let numeric = |t: Option<&Token>| matches!(t, Some(Token::Field(c, n)) if "CYxwyDdKhHkmsSe".contains(*c) || (*c == 'M' && *n <= 2));
    let mut r = Reader { input, at: 0 };
    let mut p = Parsed::default();
    for (i, token) in tokens.iter().enumerate() {
        let start = r.at;
        let (letter, n) = match token {
            Token::Text(t) => {
                if !r.literal(t) {
                    return invalid(start);
                }
                continue;
            }
            Token::Field(letter, n) => (*letter, *n),
        };
        let width = if numeric(tokens.get(i + 1)) {
            n.max(1)
        } else {
            9
        };
        let read = read_field(&mut r, &mut p, letter, n, width);
        if read.is_none() {
            return invalid(start);
        }
    }
    if r.at != input.len() {
        return invalid(r.at);
    }
    match resolve(&p) {
        Some(utc) => Ok(ScalarValue::TimestampMillisecond(
            Some(utc.timestamp_millis()),
            Some("UTC".into()),
        )),
        None => exec_err!("{F}: \"{input}\" is not a valid date and time for '{pattern}'"),
    }
}

/// Reads one field of the pattern into `p`; `None` when the input does not hold it.
fn read_field(r: &mut Reader, p: &mut Parsed, letter: char, n: usize, width: usize) -> Option<()> {
    let number = |r: &mut Reader| r.number(width).and_then(|v| u32::try_from(v).ok());
    match letter {
        'y' | 'Y' | 'x' => {
            p.year = Some(i32::try_from(r.number(width)?).ok()?);
            p.two_digit_year = n == 2;
        }
        'M' if n <= 2 => p.month = Some(number(r)?),
        'M' => {
            let i = match r.name(&MONTHS) {
                Some(i) => i,
                None => r.name(&MONTHS.map(|m| &m[..3]))?,
            };
            p.month = Some(i as u32 + 1);
        }
        'd' => p.day = Some(number(r)?),
        'D' => p.day_of_year = Some(number(r)?),
        'H' | 'k' => p.hour = number(r)? % 24,
        'h' | 'K' => {
            p.hour = number(r)? % 12;
            p.twelve_hour = true;
        }
        'a' => p.pm = Some(r.name(&["AM", "PM"])? == 1),
        'm' => p.minute = number(r)?,
        's' => p.second = number(r)?,
        'S' => {
            let start = r.at;
            number(r)?;
            let digits = &r.input[start..r.at];
            let millis: String = digits.chars().chain("000".chars()).take(3).collect();
            p.millis = millis.parse().ok()?;
        }
        'E' => {
            if r.name(&DAYS).is_none() {
                r.name(&DAYS.map(|d| &d[..3]))?;
            }
        }
        'e' | 'w' | 'C' => {
            number(r)?;
        }
        'G' => {
            r.name(&["AD", "BC"])?;
        }
        'Z' if n <= 2 => p.offset = Some(r.offset()?),
        'Z' | 'z' => p.zone = Some(r.zone_id()?),
        _ => return None,
    }
    Some(())
}

/// The instant the parsed fields name (fields not in the pattern as Joda defaults them: 1970,
/// January, the first, midnight, UTC).
fn resolve(p: &Parsed) -> Option<DateTime<Utc>> {
    let mut year = p.year.unwrap_or(1970);
    if p.two_digit_year {
        // Joda's pivot: the two digits name the year within 50 of 2000.
        year += if year < 50 { 2000 } else { 1900 };
    }
    let date = match p.day_of_year {
        Some(doy) => NaiveDate::from_yo_opt(year, doy)?,
        None => NaiveDate::from_ymd_opt(year, p.month.unwrap_or(1), p.day.unwrap_or(1))?,
    };
    let mut hour = p.hour;
    if p.twelve_hour || p.pm.is_some() {
        hour = hour % 12 + if p.pm == Some(true) { 12 } else { 0 };
    }
    let time = NaiveTime::from_hms_milli_opt(hour, p.minute, p.second, p.millis)?;
    let local = NaiveDateTime::new(date, time);
    if let Some(zone) = p.zone {
        return zone
            .from_local_datetime(&local)
            .earliest()
            .map(|t| t.with_timezone(&Utc));
    }
    let offset = FixedOffset::east_opt(p.offset.unwrap_or(0))?;
    offset
        .from_local_datetime(&local)
        .single()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str, zone: Option<&str>) -> ScalarValue {
        let t = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap();
        ScalarValue::TimestampMicrosecond(
            Some(t.and_utc().timestamp_micros()),
            zone.map(Into::into),
        )
    }

    fn format(t: &ScalarValue, pattern: &str) -> String {
        match format_datetime(&[t.clone(), ScalarValue::Utf8(Some(pattern.into()))]).unwrap() {
            ScalarValue::Utf8(Some(s)) => s,
            other => panic!("{other:?}"),
        }
    }

    fn parse(s: &str, pattern: &str) -> Result<i64> {
        match parse_datetime(&[
            ScalarValue::Utf8(Some(s.into())),
            ScalarValue::Utf8(Some(pattern.into())),
        ])? {
            ScalarValue::TimestampMillisecond(Some(ms), _) => Ok(ms),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fields_widths_and_quotes_format_as_joda() {
        let t = at("2024-03-01 21:05:07.123456", None);
        assert_eq!(
            format(&t, "yyyy-MM-dd HH:mm:ss.SSS"),
            "2024-03-01 21:05:07.123"
        );
        assert_eq!(format(&t, "yy/M/d h:m a"), "24/3/1 9:5 PM");
        assert_eq!(format(&t, "EEEE, MMMM d, yyyy"), "Friday, March 1, 2024");
        assert_eq!(format(&t, "EEE MMM dd"), "Fri Mar 01");
        assert_eq!(
            format(&t, "'week' w 'of' xxxx, 'day' D"),
            "week 9 of 2024, day 61"
        );
        assert_eq!(format(&t, "''yyyy''"), "'2024'");
        assert_eq!(
            format(&t, "SSSSSS Z ZZ ZZZ z"),
            "123000 +0000 +00:00 UTC UTC"
        );
        assert_eq!(format(&t, "k K"), "21 9");
        let berlin = at("2024-07-01 10:00:00", Some("Europe/Berlin"));
        assert_eq!(
            format(&berlin, "HH:mm Z ZZ ZZZ z"),
            "12:00 +0200 +02:00 Europe/Berlin CEST"
        );
        assert!(format_datetime(&[t, ScalarValue::Utf8(Some("yyyy-QQ".into()))]).is_err());
    }

    #[test]
    fn parses_what_it_formats_and_names_where_input_goes_wrong() {
        let ms = |s: &str| at(s, None);
        let want = |s: &str| match ms(s) {
            ScalarValue::TimestampMicrosecond(Some(us), _) => us / 1000,
            _ => unreachable!(),
        };
        assert_eq!(
            parse("2024-03-01 21:05:07.123", "yyyy-MM-dd HH:mm:ss.SSS").unwrap(),
            want("2024-03-01 21:05:07.123")
        );
        assert_eq!(
            parse("20240301", "yyyyMMdd").unwrap(),
            want("2024-03-01 00:00:00")
        );
        assert_eq!(
            parse("1 Mar 2024 9:05 pm", "d MMM yyyy h:mm a").unwrap(),
            want("2024-03-01 21:05:00")
        );
        assert_eq!(
            parse("2024-03-01T12:00:00+02:00", "yyyy-MM-dd'T'HH:mm:ssZZ").unwrap(),
            want("2024-03-01 10:00:00")
        );
        assert_eq!(
            parse("2024-07-01 12:00 Europe/Berlin", "yyyy-MM-dd HH:mm ZZZ").unwrap(),
            want("2024-07-01 10:00:00")
        );
        assert_eq!(
            parse("99-12-31", "yy-MM-dd").unwrap(),
            want("1999-12-31 00:00:00")
        );
        let err = parse("2024-13-01", "yyyy-MM-dd").unwrap_err().to_string();
        assert!(err.contains("not a valid date"), "{err}");
        let err = parse("2024/03/01", "yyyy-MM-dd").unwrap_err().to_string();
        assert!(err.contains("malformed at \"/03/01\""), "{err}");
        let err = parse("2024-03-01 extra", "yyyy-MM-dd")
            .unwrap_err()
            .to_string();
        assert!(err.contains("malformed at \" extra\""), "{err}");
    }
}
