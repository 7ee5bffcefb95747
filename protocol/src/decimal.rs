//! Exact decimal numbers for prices and quantities.
//!
//! The server keeps every price and quantity as an integer count of
//! 10^-scale units (an instrument's `price_decimals` / `qty_decimals`) and
//! writes it with exactly that many decimals, so `187.23` is never sent as
//! `187.23000000000002`. [`Decimal`] is the same thing on the client side:
//! parsed from the JSON number's text, never through a float.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use crate::digits;

/// Most decimals a [`Decimal`] carries (as many as fit an `i64` comfortably).
pub const MAX_SCALE: u8 = 18;

/// `units × 10^-scale`, exactly.
///
/// Equality and order are by value: `187.2` equals `187.20`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Decimal {
    units: i64,
    scale: u8,
}

impl Decimal {
    /// `units × 10^-scale`; `scale` is capped at [`MAX_SCALE`].
    pub const fn new(units: i64, scale: u8) -> Decimal {
        let scale = if scale > MAX_SCALE { MAX_SCALE } else { scale };
        Decimal { units, scale }
    }

    /// The integer count of 10^-scale units.
    pub const fn units(self) -> i64 {
        self.units
    }

    /// Digits after the decimal point.
    pub const fn scale(self) -> u8 {
        self.scale
    }

    /// The nearest `f64`, for arithmetic where exactness does not matter.
    pub fn to_f64(self) -> f64 {
        self.units as f64 / 10f64.powi(self.scale as i32)
    }

    /// The same value with `scale` decimals, if it is exact and fits.
    pub fn rescale(self, scale: u8) -> Option<Decimal> {
        if scale >= self.scale {
            let f = 10i64.checked_pow((scale - self.scale) as u32)?;
            Some(Decimal::new(self.units.checked_mul(f)?, scale))
        } else {
            let f = 10i64.pow((self.scale - scale) as u32);
            (self.units % f == 0).then(|| Decimal::new(self.units / f, scale))
        }
    }

    /// Parses a JSON number written as plain decimal text (`-12.340`, `7`):
    /// no exponent, at most [`MAX_SCALE`] decimals, fits an `i64` of units.
    pub fn parse(text: &[u8]) -> Option<Decimal> {
        let (neg, digits) = match text.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, text),
        };
        let (int, frac) = match memchr::memchr(b'.', digits) {
            Some(i) => (&digits[..i], &digits[i + 1..]),
            None => (digits, &b""[..]),
        };
        if int.is_empty() || (frac.is_empty() && digits.len() != int.len()) {
            return None;
        }
        if frac.len() > MAX_SCALE as usize {
            return None;
        }
        let mut units: i64 = 0;
        for &b in int.iter().chain(frac) {
            if !b.is_ascii_digit() {
                return None;
            }
            units = units.checked_mul(10)?.checked_add((b - b'0') as i64)?;
        }
        Some(Decimal::new(
            if neg { -units } else { units },
            frac.len() as u8,
        ))
    }

    /// Appends the value's text with exactly `scale` decimals.
    pub fn write(self, out: &mut Vec<u8>) {
        write_fixed(out, self.units, self.scale as u32);
    }

    fn cmp_value(&self, other: &Decimal) -> Ordering {
        let scale = self.scale.max(other.scale);
        let widen = |d: &Decimal| d.units as i128 * 10i128.pow((scale - d.scale) as u32);
        widen(self).cmp(&widen(other))
    }
}

impl PartialEq for Decimal {
    fn eq(&self, other: &Decimal) -> bool {
        self.cmp_value(other) == Ordering::Equal
    }
}

impl Eq for Decimal {}

impl std::hash::Hash for Decimal {
    /// Hashes the value, not the spelling: trailing zeros are dropped first,
    /// so equal decimals hash alike.
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        let (mut units, mut scale) = (self.units, self.scale);
        while scale > 0 && units % 10 == 0 {
            units /= 10;
            scale -= 1;
        }
        (units, scale).hash(h);
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Decimal) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Decimal) -> Ordering {
        self.cmp_value(other)
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = Vec::with_capacity(24);
        self.write(&mut s);
        f.write_str(std::str::from_utf8(&s).expect("ascii"))
    }
}

/// Why a text is not a [`Decimal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadDecimal;

impl fmt::Display for BadDecimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not a plain decimal number of at most {MAX_SCALE} decimals"
        )
    }
}

impl std::error::Error for BadDecimal {}

impl FromStr for Decimal {
    type Err = BadDecimal;

    fn from_str(s: &str) -> Result<Decimal, BadDecimal> {
        Decimal::parse(s.as_bytes()).ok_or(BadDecimal)
    }
}

/// Appends `units` scaled by 10^-decimals as an exact decimal number
/// (decimals beyond [`MAX_SCALE`] are capped, as in [`Decimal::new`]).
///
/// No allocation, no float: the digits are written in place
/// (the crate's private `digits::put_fixed`).
#[inline]
pub fn write_fixed(out: &mut Vec<u8>, units: i64, decimals: u32) {
    let mut buf = [0u8; digits::FIXED_LEN];
    let end = digits::put_fixed(&mut buf, 0, units, decimals);
    out.extend_from_slice(&buf[..end]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(units: i64, d: u32) -> String {
        let mut v = Vec::new();
        write_fixed(&mut v, units, d);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn fixed_point_is_exact() {
        assert_eq!(fixed(18723, 2), "187.23");
        assert_eq!(fixed(18720, 2), "187.20");
        assert_eq!(fixed(5, 2), "0.05");
        assert_eq!(fixed(-5, 2), "-0.05");
        assert_eq!(fixed(100, 0), "100");
        assert_eq!(fixed(123456789, 5), "1234.56789");
    }

    #[test]
    fn decimals_parse_exactly_and_round_trip() {
        for text in [
            "187.23",
            "187.20",
            "0.05",
            "-0.05",
            "100",
            "1234.56789",
            "0.000000001",
        ] {
            let d: Decimal = text.parse().unwrap();
            assert_eq!(d.to_string(), text);
        }
        let d = Decimal::parse(b"12345678.12345678").unwrap();
        assert_eq!((d.units(), d.scale()), (1234567812345678, 8));
        assert_eq!(Decimal::parse(b"187.2"), Decimal::parse(b"187.20"));
        assert!(Decimal::parse(b"187.2").unwrap() < Decimal::parse(b"187.21").unwrap());
        for bad in [
            "",
            "-",
            ".5",
            "5.",
            "1e5",
            "1.2.3",
            "abc",
            "99999999999999999999",
        ] {
            assert!(Decimal::parse(bad.as_bytes()).is_none(), "{bad}");
        }
        assert_eq!(
            Decimal::new(1872, 1).rescale(2),
            Some(Decimal::new(18720, 2))
        );
        assert_eq!(Decimal::new(18723, 2).rescale(1), None);
    }
}
