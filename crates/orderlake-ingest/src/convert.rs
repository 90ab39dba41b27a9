//! A document's values as canonical column values: text, whole numbers, money in units of
//! 10^-MONEY_SCALE (exact, never through floats) and event times in microseconds. JSON values
//! and Avro values read in place convert alike ([`View`]).

use orderlake_archive::schema::MONEY_SCALE;
use orderlake_archive::time::parse_timestamp;

use crate::avro::{decimal_text, decimal_unscaled};
use crate::document::View;

/// A value's text: strings as they are, numbers in their shortest form, decimals with all their
/// digits; `None` for anything else.
fn as_text(v: View<'_>) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        View::Str(s) => Some(s.into()),
        View::Number(n) => Some(n.to_string().into()),
        View::Decimal { unscaled, scale } => decimal_text(unscaled, scale).ok().map(Into::into),
        _ => None,
    }
}

/// Text fields accept strings and numbers (seed 004 sends numeric ids).
pub(crate) fn text(v: View<'_>) -> Result<String, String> {
    as_text(v)
        .map(std::borrow::Cow::into_owned)
        .ok_or_else(|| format!("expected text, got {}", v.kind()))
}

pub(crate) fn integer(v: View<'_>) -> Result<i64, String> {
    match v {
        View::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("expected a whole number, got {n}")),
        View::Str(_) | View::Decimal { .. } => {
            let s = as_text(v).unwrap_or_default();
            s.trim()
                .parse()
                .map_err(|_| format!("expected a whole number, got \"{s}\""))
        }
        other => Err(format!("expected a whole number, got {}", other.kind())),
    }
}

/// Money from a number, a numeric string or an Avro decimal, exactly: numbers are read back from
/// their shortest decimal form, never through float arithmetic.
pub(crate) fn money(v: View<'_>) -> Result<i128, String> {
    if let View::Decimal { unscaled, scale } = v
        && let Some(units) = decimal_money(unscaled, scale)
    {
        return Ok(units);
    }
    match as_text(v) {
        Some(s) => parse_decimal(s.trim(), u32::from(MONEY_SCALE)),
        None => Err(format!("expected a decimal amount, got {}", v.kind())),
    }
}

/// An Avro decimal in money units without its text, when that is exact and in range (what
/// [`parse_decimal`] accepts); `None` leaves it to its text, which also gives the reason.
fn decimal_money(unscaled: &[u8], scale: usize) -> Option<i128> {
    let v = decimal_unscaled(unscaled).ok()?;
    if v.unsigned_abs() >= 10u128.pow(38) {
        return None;
    }
    let money = usize::from(MONEY_SCALE);
    let units = if scale <= money {
        v.checked_mul(10i128.checked_pow(u32::try_from(money - scale).ok()?)?)?
    } else {
        let divisor = 10i128.checked_pow(u32::try_from(scale - money).ok()?)?;
        if v % divisor != 0 {
            return None;
        }
        v / divisor
    };
    (units.unsigned_abs() < 10u128.pow(18)).then_some(units)
}

/// Parses a decimal literal (optional sign, fraction and exponent) into units of 10^-scale.
/// Refuses more fractional digits than `scale` and values beyond 18 digits of precision.
pub fn parse_decimal(s: &str, scale: u32) -> Result<i128, String> {
    let bad = || format!("\"{s}\" is not a decimal amount");
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], s[i + 1..].parse::<i32>().map_err(|_| bad())?),
        None => (s, 0),
    };
    let (neg, digits) = match mantissa.as_bytes().first() {
        Some(b'-') => (true, &mantissa[1..]),
        Some(b'+') => (false, &mantissa[1..]),
        _ => (false, mantissa),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let frac_digits = i64::try_from(frac.len()).map_err(|_| bad())? - i64::from(exp);
    let shift = i64::from(scale) - frac_digits;
    // The digits without leading zeros, at most 38 of them (they fit an i128).
    let (mut value, mut significant) = (0i128, 0);
    for b in int.bytes().chain(frac.bytes()) {
        if significant == 0 && b == b'0' {
            continue;
        }
        significant += 1;
        if significant > 38 {
            return Err(format!("\"{s}\" is too large for an amount"));
        }
        value = value * 10 + i128::from(b - b'0');
    }
    if shift < 0 {
        let divisor = 10i128
            .checked_pow(u32::try_from(-shift).map_err(|_| bad())?)
            .ok_or_else(bad)?;
        if value % divisor != 0 {
            return Err(format!("\"{s}\" has more than {scale} decimal places"));
        }
        value /= divisor;
    } else {
        let factor = 10i128
            .checked_pow(u32::try_from(shift).map_err(|_| bad())?)
            .ok_or_else(|| format!("\"{s}\" is too large for an amount"))?;
        value = value
            .checked_mul(factor)
            .ok_or_else(|| format!("\"{s}\" is too large for an amount"))?;
    }
    if value >= 10i128.pow(18) {
        return Err(format!("\"{s}\" is too large for an amount"));
    }
    Ok(if neg { -value } else { value })
}

/// Event times: ISO-8601 with a zone, without one (taken as UTC), a bare date, or epoch
/// milliseconds as a number or a digit string.
pub(crate) fn timestamp(v: View<'_>) -> Result<i64, String> {
    match v {
        View::Number(n) => n
            .as_i64()
            .and_then(|ms| ms.checked_mul(1000))
            .ok_or_else(|| format!("{n} is not epoch milliseconds")),
        View::Str(_) | View::Decimal { .. } => {
            parse_timestamp(as_text(v).unwrap_or_default().trim())
        }
        other => Err(format!("expected a timestamp, got {}", other.kind())),
    }
}
