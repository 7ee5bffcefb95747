//! Decimal digits written straight into place: the number writer of the
//! tick's hot path.
//!
//! A tick's JSON is six numbers (seq, ts, four fixed-point prices and
//! quantities). Formatting each into a scratch buffer and appending the
//! slices (what `itoa` plus `Vec::extend_from_slice` does) cost a `memcpy`
//! call and a capacity check per piece, more than the digits themselves
//! (callgrind: 11% of generate-and-encode in `memcpy` alone). Here the length
//! is computed first, then the digits are written right to left at their
//! final place in a caller's stack buffer, two at a time from a table, with
//! the decimal point put in as they go.

/// "00" "01" ... "99": two digits per table lookup.
const PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Most decimals [`put_fixed`] writes (as [`crate::decimal::MAX_SCALE`]).
pub const MAX_DECIMALS: usize = crate::decimal::MAX_SCALE as usize;

/// Longest text [`put_u64`] writes.
pub const U64_LEN: usize = 20;

/// Longest text [`put_fixed`] writes: a sign, the 19 digits of an `i64`
/// (with a leading `0` when all are decimals) and the point.
pub const FIXED_LEN: usize = 1 + 1 + 19 + 1;

/// 10^0 ... 10^19.
const POW10: [u64; 20] = {
    let mut p = [1u64; 20];
    let mut i = 1;
    while i < 20 {
        p[i] = p[i - 1] * 10;
        i += 1;
    }
    p
};

/// How many decimal digits `v` has (1 for 0): from its bit length (1233/4096
/// is just above log10(2)), corrected by one comparison. A few instructions,
/// where `u64::ilog10`'s chain of comparisons was a fifth of the writer's.
#[inline]
fn digit_count(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    let guess = (bits * 1233) >> 12;
    guess + usize::from((v | 1) >= POW10[guess])
}

#[inline]
fn put_pair(buf: &mut [u8], at: usize, two_digits: usize) {
    buf[at..at + 2].copy_from_slice(&PAIRS[2 * two_digits..2 * two_digits + 2]);
}

/// Writes the digits of `v` so that they end just before `end`; returns
/// where they start.
///
/// This and the two writers below are always inlined: left as calls, their
/// prologues and epilogues were 140 of a tick's 787 encoding instructions
/// (callgrind, `generate_and_encode`).
#[inline(always)]
fn put_digits_before(buf: &mut [u8], end: usize, mut v: u64) -> usize {
    let mut i = end;
    while v >= 10_000 {
        let r = (v % 10_000) as usize;
        v /= 10_000;
        i -= 4;
        put_pair(buf, i, r / 100);
        put_pair(buf, i + 2, r % 100);
    }
    let mut v = v as usize;
    if v >= 100 {
        i -= 2;
        put_pair(buf, i, v % 100);
        v /= 100;
    }
    if v >= 10 {
        i -= 2;
        put_pair(buf, i, v);
    } else {
        i -= 1;
        buf[i] = b'0' + v as u8;
    }
    i
}

/// Writes `v` in decimal at `buf[at..]`; returns the end. `buf` needs
/// [`U64_LEN`] bytes of room after `at`.
#[inline(always)]
pub fn put_u64(buf: &mut [u8], at: usize, v: u64) -> usize {
    let end = at + digit_count(v);
    put_digits_before(buf, end, v);
    end
}

/// Writes `units × 10^-decimals` with exactly `decimals` decimals (at most
/// [`MAX_DECIMALS`]; more are capped) at `buf[at..]`: `18723, 2` is
/// `187.23`, `5, 2` is `0.05`, `-5, 2` is `-0.05`. Returns the end. `buf`
/// needs [`FIXED_LEN`] bytes of room after `at`.
#[inline(always)]
pub fn put_fixed(buf: &mut [u8], at: usize, units: i64, decimals: u32) -> usize {
    let d = (decimals as usize).min(MAX_DECIMALS);
    let neg = units < 0;
    let mut v = units.unsigned_abs();
    let n = digit_count(v);
    let int_digits = if n > d { n - d } else { 1 };
    let end = at + usize::from(neg) + int_digits + if d > 0 { d + 1 } else { 0 };
    let mut i = end;
    if d > 0 {
        // The decimals, zero-padded on the left as the value runs out.
        let mut k = d;
        while k >= 2 {
            i -= 2;
            put_pair(buf, i, (v % 100) as usize);
            v /= 100;
            k -= 2;
        }
        if k == 1 {
            i -= 1;
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        i -= 1;
        buf[i] = b'.';
    }
    put_digits_before(buf, i, v);
    if neg {
        buf[at] = b'-';
    }
    end
}

/// Copies a literal of known length at `buf[at..]`; returns the end.
#[inline]
pub fn put_lit<const N: usize>(buf: &mut [u8], at: usize, lit: &[u8; N]) -> usize {
    buf[at..at + N].copy_from_slice(lit);
    at + N
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(units: i64, d: u32) -> String {
        let mut b = [0u8; FIXED_LEN];
        let n = put_fixed(&mut b, 0, units, d);
        String::from_utf8(b[..n].to_vec()).unwrap()
    }

    #[test]
    fn integers_match_the_standard_formatting() {
        let mut b = [0u8; U64_LEN];
        let mut v: u64 = 1;
        let mut cases = vec![0, 9, 10, 99, 100, 999, 1000, 9999, 10_000, u64::MAX];
        while v < u64::MAX / 7 {
            cases.extend([v - 1, v, v + 1]);
            v *= 7;
        }
        for v in cases {
            let n = put_u64(&mut b, 0, v);
            assert_eq!(std::str::from_utf8(&b[..n]).unwrap(), v.to_string());
        }
    }

    #[test]
    fn fixed_point_matches_a_slow_reference() {
        fn reference(units: i64, d: u32) -> String {
            let sign = if units < 0 { "-" } else { "" };
            let digits = units.unsigned_abs().to_string();
            let d = d as usize;
            if d == 0 {
                return format!("{sign}{digits}");
            }
            let padded = format!("{digits:0>w$}", w = d + 1);
            let (int, frac) = padded.split_at(padded.len() - d);
            format!("{sign}{int}.{frac}")
        }
        let mut units: Vec<i64> = vec![0, 1, 5, 9, 10, 99, 100, 18723, i64::MAX, i64::MIN];
        let mut v: i64 = 3;
        while v < i64::MAX / 11 {
            units.extend([v, -v, v + 1]);
            v *= 11;
        }
        for &u in &units {
            for d in 0..=MAX_DECIMALS as u32 {
                assert_eq!(fixed(u, d), reference(u, d), "{u} with {d} decimals");
            }
        }
        assert_eq!(fixed(18723, 2), "187.23");
        assert_eq!(fixed(-5, 2), "-0.05");
        assert_eq!(fixed(7, 40), fixed(7, MAX_DECIMALS as u32), "capped");
    }
}
