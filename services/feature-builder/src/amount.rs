//! What a purchase was worth: the first of the payload's `total`, `amount`, `value` that is a
//! number or a numeric string, in exact hundredths (the `numeric(14,2)` of `total_spent`).
//!
//! Money is never a float here: a JSON number is read from its decimal text, so `99.99` is
//! 9999 cents, not 9998.999…, and sums of many orders stay exact.

use std::fmt;

use bus_core::serde_json::{Map, Value};

/// The payload keys that may carry a purchase's amount, in order of preference.
pub const AMOUNT_KEYS: [&str; 3] = ["total", "amount", "value"];

/// The largest magnitude `numeric(14,2)` holds, in cents (999 999 999 999.99).
const MAX_CENTS: i128 = 99_999_999_999_999;

/// An exact amount of money in hundredths.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cents(pub i64);

impl Cents {
    /// The sum, or `None` past the range of `i64` (far beyond any real total).
    pub fn checked_add(self, other: Cents) -> Option<Cents> {
        self.0.checked_add(other.0).map(Cents)
    }
}

/// `12.34`, `-0.50`: the text PostgreSQL casts to `numeric` without rounding.
impl fmt::Display for Cents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

/// A purchase's amount as found in its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Amount {
    /// The amount, rounded half away from zero to cents (as `numeric(14,2)` rounds).
    Found(Cents),
    /// No key holds a number or a numeric string: the order counts with nothing spent.
    Missing,
    /// A key holds a number that `total_spent` cannot store; the reason names key and value.
    OutOfRange(String),
}

/// The amount of a purchase with this payload.
///
/// Keys are tried in [`AMOUNT_KEYS`] order; a key that is absent, `null`, or not numeric
/// (`"n/a"`, `"1,000"`, an object) is skipped in favour of the next one.
pub fn purchase_amount(payload: &Map<String, Value>) -> Amount {
    for key in AMOUNT_KEYS {
        let text = match payload.get(key) {
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) => s.trim().to_owned(),
            _ => continue,
        };
        match parse_cents(&text) {
            Ok(cents) => return Amount::Found(cents),
            Err(NotAmount::NotNumeric) => continue,
            Err(NotAmount::OutOfRange) => {
                return Amount::OutOfRange(format!(
                    "purchase amount {key}={text} is outside ±999999999999.99"
                ));
            }
        }
    }
    Amount::Missing
}

#[derive(Debug, PartialEq, Eq)]
enum NotAmount {
    NotNumeric,
    OutOfRange,
}

/// Parses decimal text (`12`, `-3.456`, `+.5`, `1.5e3`) into cents, rounding half away from
/// zero.
fn parse_cents(text: &str) -> Result<Cents, NotAmount> {
    let (negative, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(at) => {
            let exp: i64 = rest[at + 1..].parse().map_err(|_| NotAmount::NotNumeric)?;
            (&rest[..at], exp)
        }
        None => (rest, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int_part.len() + frac_part.len() == 0 || !all_digits(int_part) || !all_digits(frac_part) {
        return Err(NotAmount::NotNumeric);
    }
    // value = digits × 10^(exponent − fraction length); cents = value × 100.
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    let shift = exponent
        .saturating_sub(frac_part.len() as i64)
        .saturating_add(2);
    let cents = if digits.is_empty() {
        0
    } else if shift >= 0 {
        // Anything with more than 16 significant digits before the point is out of range.
        if (digits.len() as i64).saturating_add(shift) > 16 {
            return Err(NotAmount::OutOfRange);
        }
        let base: i128 = digits.parse().map_err(|_| NotAmount::OutOfRange)?;
        base * 10i128.pow(shift as u32)
    } else {
        let drop = shift.unsigned_abs() as usize;
        if drop > digits.len() {
            0 // below half a cent
        } else {
            let (kept, dropped) = digits.split_at(digits.len() - drop);
            if kept.len() > 16 {
                return Err(NotAmount::OutOfRange);
            }
            let kept: i128 = if kept.is_empty() {
                0
            } else {
                kept.parse().map_err(|_| NotAmount::OutOfRange)?
            };
            let round_up = dropped.as_bytes().first().is_some_and(|d| *d >= b'5');
            kept + i128::from(round_up)
        }
    };
    if cents > MAX_CENTS {
        return Err(NotAmount::OutOfRange);
    }
    let cents = i64::try_from(cents).map_err(|_| NotAmount::OutOfRange)?;
    Ok(Cents(if negative { -cents } else { cents }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bus_core::serde_json::json;

    fn amount(payload: Value) -> Amount {
        match payload {
            Value::Object(map) => purchase_amount(&map),
            _ => unreachable!("tests pass objects"),
        }
    }

    #[test]
    fn decimal_text_becomes_exact_cents() {
        for (text, cents) in [
            ("99.99", 9999),
            ("12", 1200),
            ("0.5", 50),
            ("+.5", 50),
            ("7.", 700),
            ("-3.25", -325),
            ("1.005", 101),
            ("1.004", 100),
            ("-1.005", -101),
            ("0.004", 0),
            ("1.5e3", 150_000),
            ("25E-1", 250),
            ("0001.10", 110),
            ("999999999999.99", 99_999_999_999_999),
        ] {
            assert_eq!(parse_cents(text), Ok(Cents(cents)), "{text}");
        }
    }

    #[test]
    fn text_that_is_not_a_plain_number_is_not_an_amount() {
        for text in [
            "", "-", ".", "abc", "1,000", "1.2.3", "NaN", "inf", "1e", "$5", "1 000",
        ] {
            assert_eq!(parse_cents(text), Err(NotAmount::NotNumeric), "{text}");
        }
    }

    #[test]
    fn amounts_beyond_the_column_are_out_of_range() {
        // The last one's exponent is i64::MAX: the size check must not overflow.
        for text in [
            "1000000000000",
            "1e300",
            "-1e13",
            "99999999999999999999999",
            "1e9223372036854775807",
        ] {
            assert_eq!(parse_cents(text), Err(NotAmount::OutOfRange), "{text}");
        }
        assert_eq!(parse_cents("1e-300"), Ok(Cents(0)));
        assert_eq!(parse_cents("1e-9223372036854775808"), Ok(Cents(0)));
    }

    #[test]
    fn the_first_numeric_key_of_total_amount_value_wins() {
        assert_eq!(
            amount(json!({"total": 99.99, "amount": 5})),
            Amount::Found(Cents(9999))
        );
        assert_eq!(
            amount(json!({"total": "n/a", "amount": " 12.50 ", "value": 1})),
            Amount::Found(Cents(1250))
        );
        assert_eq!(
            amount(json!({"total": null, "value": 3})),
            Amount::Found(Cents(300))
        );
        assert_eq!(
            amount(json!({"total": {"gross": 5}, "price": 3})),
            Amount::Missing
        );
        assert!(matches!(
            amount(json!({"total": 1e20})),
            Amount::OutOfRange(reason) if reason.contains("total=")
        ));
    }

    #[test]
    fn cents_print_as_numeric_text() {
        assert_eq!(Cents(9999).to_string(), "99.99");
        assert_eq!(Cents(5).to_string(), "0.05");
        assert_eq!(Cents(-325).to_string(), "-3.25");
        assert_eq!(Cents(0).to_string(), "0.00");
    }
}
