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
//! each text is read, in one pass, into an [`Exact`] tree whose numbers are
//! canonical decimals and whose strings are borrowed unless they hold
//! escapes (which `serde_json` decodes). One pass matters: this runs on the
//! single consumer for every duplicate whose bytes differ from the stored
//! copy (byte-identical re-sends never get here), and reading each nesting
//! level again, as parsing raw values level by level would, costs depth ×
//! size, which a large and deep payload turns into a stall of every
//! commit (`benches/same_content.rs` has such a case).

use std::borrow::Cow;
use std::collections::BTreeMap;

/// Whether `a` and `b` are the same JSON value. A text that is not JSON
/// equals nothing (not even itself, unless the bytes are identical, which
/// the caller checks first).
pub(crate) fn same_json(a: &str, b: &str) -> bool {
    match (Exact::parse(a), Exact::parse(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Deeper nesting is refused (as `serde_json` does past 128), so that no
/// text can exhaust the stack; ingest allows at most 120 levels.
const DEPTH_MAX: usize = 128;

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
    /// The value of a whole JSON text; `None` when it is not JSON.
    fn parse(text: &'a str) -> Option<Self> {
        let mut reader = Reader {
            text,
            at: 0,
            depth: 0,
        };
        let value = reader.value()?;
        reader.skip_whitespace();
        (reader.at == text.len()).then_some(value)
    }
}

/// A cursor over a JSON text.
struct Reader<'a> {
    text: &'a str,
    /// Byte offset of the next unread byte; always on a char boundary.
    at: usize,
    depth: usize,
}

impl<'a> Reader<'a> {
    fn value(&mut self) -> Option<Exact<'a>> {
        self.skip_whitespace();
        match *self.text.as_bytes().get(self.at)? {
            b'{' => self.object(),
            b'[' => self.array(),
            b'"' => self.string().map(Exact::String),
            b't' => self.literal("true", Exact::Bool(true)),
            b'f' => self.literal("false", Exact::Bool(false)),
            b'n' => self.literal("null", Exact::Null),
            _ => self.number(),
        }
    }

    fn object(&mut self) -> Option<Exact<'a>> {
        self.enter()?;
        let mut members = BTreeMap::new();
        if !self.eat(b'}') {
            loop {
                self.skip_whitespace();
                let key = self.string()?;
                if !self.eat(b':') {
                    return None;
                }
                // A repeated key keeps its last value, as in serde_json.
                members.insert(key, self.value()?);
                if self.eat(b'}') {
                    break;
                }
                if !self.eat(b',') {
                    return None;
                }
            }
        }
        self.depth -= 1;
        Some(Exact::Object(members))
    }

    fn array(&mut self) -> Option<Exact<'a>> {
        self.enter()?;
        let mut items = Vec::new();
        if !self.eat(b']') {
            loop {
                items.push(self.value()?);
                if self.eat(b']') {
                    break;
                }
                if !self.eat(b',') {
                    return None;
                }
            }
        }
        self.depth -= 1;
        Some(Exact::Array(items))
    }

    /// Steps into an object or array, past its opening bracket.
    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        self.at += 1;
        (self.depth <= DEPTH_MAX).then_some(())
    }

    /// A string, unescaped: borrowed when it has no escapes.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        let bytes = self.text.as_bytes();
        if bytes.get(self.at) != Some(&b'"') {
            return None;
        }
        let start = self.at;
        let (mut end, mut escaped) = (start + 1, false);
        // memchr skips the plain bytes a word at a time: payload strings
        // can be megabytes long.
        loop {
            end += memchr::memchr2(b'"', b'\\', bytes.get(end..)?)?;
            if bytes[end] == b'"' {
                break;
            }
            escaped = true;
            end += 2;
        }
        // `end` is on a '"', so both ends are char boundaries.
        self.at = end + 1;
        let quoted = &self.text[start..self.at];
        if escaped {
            serde_json::from_str(quoted).ok().map(Cow::Owned)
        } else {
            let inner = &quoted[1..quoted.len() - 1];
            // JSON strings hold no raw control characters. A fold rather
            // than `any`: without the early exit it vectorizes.
            let control = inner.bytes().fold(false, |found, b| found | (b < 0x20));
            (!control).then_some(Cow::Borrowed(inner))
        }
    }

    fn literal(&mut self, word: &str, value: Exact<'a>) -> Option<Exact<'a>> {
        self.text[self.at..].starts_with(word).then(|| {
            self.at += word.len();
            value
        })
    }

    fn number(&mut self) -> Option<Exact<'a>> {
        let rest = &self.text.as_bytes()[self.at..];
        let length = rest
            .iter()
            .take_while(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
            .count();
        let text = &self.text[self.at..self.at + length];
        self.at += length;
        Decimal::parse(text).map(Exact::Number)
    }

    /// Skips whitespace, then the byte `expected` if it is next.
    fn eat(&mut self, expected: u8) -> bool {
        self.skip_whitespace();
        let next = self.text.as_bytes().get(self.at) == Some(&expected);
        self.at += usize::from(next);
        next
    }

    fn skip_whitespace(&mut self) {
        let rest = &self.text.as_bytes()[self.at..];
        self.at += rest
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .count();
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
        let has_fraction = mantissa.len() > integer.len();
        if !all_digits(integer)
            || (integer.len() > 1 && integer.starts_with('0'))
            || (has_fraction && !all_digits(fraction))
        {
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
        for bad in [
            "{",
            "{} x",
            "[1,]",
            "{\"a\"}",
            "{\"a\":1,}",
            "01",
            "1.",
            "-",
            "1e",
            ".5",
            "+1",
            "tru",
            "\"\\x\"",
            "\"\u{1}\"",
            "{1:2}",
            "[1 2]",
        ] {
            assert!(Exact::parse(bad).is_none(), "{bad:?}");
            assert!(!same_json(bad, bad), "{bad:?}");
        }
        let deep = format!("{}{}", "[".repeat(DEPTH_MAX + 1), "]".repeat(DEPTH_MAX + 1));
        assert!(Exact::parse(&deep).is_none());
        let deepest = format!("{}{}", "[".repeat(DEPTH_MAX), "]".repeat(DEPTH_MAX));
        assert!(same_json(&deepest, &deepest.replace('[', " [ ")));
    }

    #[test]
    fn strings_compare_unescaped_and_borrow_when_they_can() {
        assert!(same_json(
            r#"["é\n\"", "A"]"#,
            r#"["\u00e9\u000a\u0022","\u0041"]"#
        ));
        assert!(!same_json(r#"["a\\"]"#, r#"["a"]"#));
        let parsed = Exact::parse(r#"{"k":"plain"}"#).expect("JSON");
        let Exact::Object(members) = parsed else {
            panic!("an object")
        };
        assert!(matches!(
            members[&Cow::Borrowed("k")],
            Exact::String(Cow::Borrowed("plain"))
        ));
    }
}
