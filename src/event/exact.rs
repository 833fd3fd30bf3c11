//! Exact equality of two JSON texts, for telling a duplicate from a
//! conflict.
//!
//! Two texts are equal when they denote the same JSON value: whitespace,
//! the order of an object's keys and the escaping of strings do not count;
//! numbers are compared by their exact decimal value, however many digits
//! they have (`1`, `1.0`, `10e-1` and `0.1E1` are equal; `-0` equals `0`;
//! `18446744073709551616` differs from `18446744073709551617`). A key that
//! appears twice in one object keeps its last value, as in `serde_json`.
//!
//! `serde_json::Value` cannot do this without its crate-wide
//! `arbitrary_precision` feature (which would change every number parsed
//! anywhere in the binary): it rounds integers beyond 64 bits to `f64`. So
//! each text is read into an [`Exact`] tree whose numbers are kept as a
//! canonical decimal, using `serde_json`'s own parser for the syntax: an
//! object or array is read as raw values, and each is read again one level
//! down. That costs one pass per level of nesting, which the ingest depth
//! limit bounds, and it only runs for a duplicate whose bytes differ from
//! the stored copy (byte-identical re-sends never get here).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::value::RawValue;

/// Whether `a` and `b` are the same JSON value. A text that is not JSON
/// equals nothing (not even itself, unless the bytes are identical, which
/// the caller checks first).
pub(crate) fn same_json(a: &str, b: &str) -> bool {
    match (Exact::parse(a), Exact::parse(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// A JSON value whose numbers keep their exact value.
#[derive(Debug, PartialEq, Eq)]
enum Exact<'a> {
    Null,
    Bool(bool),
    Number(Decimal),
    String(Cow<'a, str>),
    Array(Vec<Exact<'a>>),
    Object(BTreeMap<Cow<'a, str>, Exact<'a>>),
}

impl<'a> Exact<'a> {
    fn parse(text: &'a str) -> Option<Self> {
        let raw: &RawValue = serde_json::from_str(text).ok()?;
        Self::from_raw(raw)
    }

    fn from_raw(raw: &'a RawValue) -> Option<Self> {
        let text = raw.get();
        Some(match text.as_bytes().first()? {
            b'{' => {
                // Later duplicates of a key replace earlier ones, as the map
                // is filled in order.
                let members: BTreeMap<Cow<'a, str>, &'a RawValue> =
                    serde_json::from_str(text).ok()?;
                let mut object = BTreeMap::new();
                for (key, value) in members {
                    object.insert(key, Self::from_raw(value)?);
                }
                Self::Object(object)
            }
            b'[' => {
                let items: Vec<&'a RawValue> = serde_json::from_str(text).ok()?;
                Self::Array(
                    items
                        .into_iter()
                        .map(Self::from_raw)
                        .collect::<Option<_>>()?,
                )
            }
            b'"' => Self::String(serde_json::from_str(text).ok()?),
            b't' => Self::Bool(true),
            b'f' => Self::Bool(false),
            b'n' => Self::Null,
            _ => Self::Number(Decimal::parse(text)?),
        })
    }
}

/// A JSON number as `(-1)^negative × digits × 10^exponent`, canonical: no
/// leading or trailing zeros in `digits`, and zero is `digits` empty,
/// `negative` false, `exponent` 0. So two numbers are equal exactly when
/// their `Decimal`s are.
#[derive(Debug, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    digits: String,
    exponent: BigInt,
}

impl Decimal {
    /// Reads a JSON number (`-?int(.frac)?([eE][+-]?exp)?`); `None` for
    /// anything else.
    fn parse(text: &str) -> Option<Self> {
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
            Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
            None => (unsigned, None),
        };
        let (integer, fraction) = match mantissa.split_once('.') {
            Some((integer, fraction)) => (integer, fraction),
            None => (mantissa, ""),
        };
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(integer) || !(fraction.is_empty() || all_digits(fraction)) {
            return None;
        }
        let exponent = match exponent {
            Some(text) => BigInt::parse(text)?,
            None => BigInt::ZERO,
        };
        let digits = format!("{integer}{fraction}");
        let significant = digits.trim_start_matches('0').trim_end_matches('0');
        if significant.is_empty() {
            return Some(Self {
                negative: false,
                digits: String::new(),
                exponent: BigInt::ZERO,
            });
        }
        // value = digits × 10^(exponent − fraction.len()); dropping k trailing
        // zeros multiplies the scale by 10^k.
        let trailing = digits.trim_end_matches('0').len();
        let shift = (digits.len() - trailing) as i128 - fraction.len() as i128;
        Some(Self {
            negative,
            digits: significant.to_owned(),
            exponent: exponent.add_small(shift),
        })
    }
}

/// A signed integer of any size, as a sign and decimal digits without
/// leading zeros (zero is never negative), so derived equality is numeric
/// equality. JSON exponents have no size limit, and rounding one would make
/// two different numbers equal.
#[derive(Debug, PartialEq, Eq)]
struct BigInt {
    negative: bool,
    /// Most significant first; empty for zero.
    digits: Vec<u8>,
}

impl BigInt {
    const ZERO: Self = Self {
        negative: false,
        digits: Vec::new(),
    };

    /// `[+-]?digits`.
    fn parse(text: &str) -> Option<Self> {
        let (negative, digits) = match text.as_bytes().first()? {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let digits: Vec<u8> = digits
            .trim_start_matches('0')
            .bytes()
            .map(|b| b - b'0')
            .collect();
        Some(Self {
            negative: negative && !digits.is_empty(),
            digits,
        })
    }

    /// `self + small`. Small values (the common case) take the `i128`
    /// path; only an exponent of more than 30 digits does digit by digit.
    fn add_small(self, small: i128) -> Self {
        if self.digits.len() <= 30 {
            let magnitude = self
                .digits
                .iter()
                .fold(0i128, |acc, d| acc * 10 + i128::from(*d));
            let value = if self.negative { -magnitude } else { magnitude };
            return Self::from_i128(value + small);
        }
        // |self| ≥ 10^30 > |small|: the sign stays, the magnitude moves
        // towards or away from zero by |small|.
        let away = self.negative == (small < 0);
        let mut digits = self.digits;
        let mut carry = small.unsigned_abs();
        for digit in digits.iter_mut().rev() {
            if carry == 0 {
                break;
            }
            let (d, c) = (u128::from(*digit), carry % 10);
            carry /= 10;
            if away {
                let sum = d + c;
                *digit = (sum % 10) as u8;
                carry += sum / 10;
            } else if d >= c {
                *digit = (d - c) as u8;
            } else {
                *digit = (d + 10 - c) as u8;
                carry += 1;
            }
        }
        if carry > 0 {
            // Only when moving away from zero: prepend the carry's digits.
            let mut front: Vec<u8> = carry.to_string().bytes().map(|b| b - b'0').collect();
            front.extend(digits);
            digits = front;
        }
        let start = digits.iter().position(|d| *d != 0).unwrap_or(digits.len());
        digits.drain(..start);
        Self {
            negative: self.negative,
            digits,
        }
    }

    fn from_i128(value: i128) -> Self {
        Self {
            negative: value < 0,
            digits: if value == 0 {
                Vec::new()
            } else {
                value
                    .unsigned_abs()
                    .to_string()
                    .bytes()
                    .map(|b| b - b'0')
                    .collect()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_beyond_64_bits_are_compared_exactly() {
        // Issue 11, defect 4: these were equal as serde_json::Value.
        assert!(!same_json(
            r#"{"n":18446744073709551616}"#,
            r#"{"n":18446744073709551617}"#
        ));
        assert!(!same_json(
            r#"{"n":-123456789012345678901234567890}"#,
            r#"{"n":-123456789012345678901234567891}"#
        ));
        assert!(same_json(
            r#"{"n":123456789012345678901234567890}"#,
            r#"{ "n" : 123456789012345678901234567890 }"#
        ));
        assert!(!same_json(r#"[1.00000000000000000001]"#, r#"[1]"#));
    }

    #[test]
    fn numbers_with_the_same_value_are_equal() {
        for (a, b) in [
            ("1", "1.0"),
            ("1", "10e-1"),
            ("1", "0.1E1"),
            ("100", "1e2"),
            ("100", "1E+2"),
            ("-0", "0"),
            ("0.0e99", "0"),
            ("-1.50", "-15e-1"),
            ("1e0000000000000000000000000000000000000000001", "10"),
        ] {
            assert!(same_json(a, b), "{a} = {b}");
        }
        for (a, b) in [
            ("1", "-1"),
            ("1", "2"),
            ("1e1", "1e2"),
            ("0.5", "5"),
            (
                "1e100000000000000000000000000000000000000",
                "1e100000000000000000000000000000000000001",
            ),
            (
                "1e-100000000000000000000000000000000000000",
                "1e100000000000000000000000000000000000000",
            ),
        ] {
            assert!(!same_json(a, b), "{a} != {b}");
        }
    }

    #[test]
    fn huge_exponents_absorb_the_mantissa_exactly() {
        // 10e(10^40) = 1e(10^40 + 1); 0.1e(10^40) = 1e(10^40 − 1).
        let big = "10000000000000000000000000000000000000000";
        assert!(same_json(
            &format!("10e{big}"),
            "1e10000000000000000000000000000000000000001"
        ));
        assert!(same_json(
            &format!("0.1e{big}"),
            "1e9999999999999999999999999999999999999999"
        ));
        assert!(same_json(
            &format!("100e-{big}"),
            "1e-9999999999999999999999999999999999999998"
        ));
    }

    #[test]
    fn key_order_whitespace_and_escapes_do_not_count() {
        assert!(same_json(
            r#"{"a":1,"b":[true,null,"x"]}"#,
            "{ \"b\" : [ true , null , \"\\u0078\" ] ,\n \"a\" : 1 }"
        ));
        assert!(!same_json(r#"{"a":[1,2]}"#, r#"{"a":[2,1]}"#));
        assert!(!same_json(r#"{"a":1}"#, r#"{"a":1,"b":1}"#));
        assert!(!same_json(r#"{"a":"1"}"#, r#"{"a":1}"#));
        assert!(!same_json(r#"{"a":null}"#, r#"{"a":false}"#));
        // The last of repeated keys counts, as in serde_json.
        assert!(same_json(r#"{"a":1,"a":2}"#, r#"{"a":2}"#));
    }

    #[test]
    fn text_that_is_not_json_equals_nothing() {
        assert!(!same_json("{", "{"));
        assert!(!same_json("{}", "{} x"));
    }
}
