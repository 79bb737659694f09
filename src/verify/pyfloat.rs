//! Python's `float()` / `int()` / `round()` semantics, re-implemented for the few places
//! mathruler relies on them (`_is_float`, `_str_is_int`, `str(int(round(x)))`).
//!
//! Why not `str::parse::<f64>`: Python accepts Unicode decimal digits (fullwidth `１２`,
//! Arabic-Indic `١٢`), underscores between digits, surrounding Unicode whitespace and
//! `inf`/`nan` spellings, and mathruler's verdicts depend on all of these.

/// The code points of `0` in the Unicode decimal-digit (Nd) blocks Python's `float()`
/// understands; each block holds the ten digits in order.
const DIGIT_ZEROS: &[u32] = &[
    0x0030, 0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6,
    0x0D66, 0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80,
    0x1A90, 0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0,
    0xFF10, 0x104A0, 0x11066, 0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6,
];

/// The value of a Unicode decimal digit, if `c` is one.
pub fn decimal_digit(c: char) -> Option<u8> {
    if c.is_ascii() {
        return c.is_ascii_digit().then(|| c as u8 - b'0');
    }
    let cp = c as u32;
    DIGIT_ZEROS
        .iter()
        .find(|&&z| cp >= z && cp < z + 10)
        .map(|&z| (cp - z) as u8)
}

/// Python's `str.isspace` (close enough: Unicode White_Space plus the ASCII separators).
pub fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()` with no argument.
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// ASCII bytes that can occur in a Python float spelling (digits, sign, point,
/// underscore, exponent, inf/infinity/nan letters, whitespace).
static FLOAT_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let ok = b"0123456789+-._eEiInNfFaAtTyY \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f";
    let mut i = 0;
    while i < ok.len() {
        t[ok[i] as usize] = true;
        i += 1;
    }
    t
};

/// Python's `float(s)`: `None` where Python raises `ValueError`.
pub fn py_float(s: &str) -> Option<f64> {
    let t = py_strip(s);
    // Cheap rejection: an ASCII character no float spelling uses ends it at once.
    if t.bytes().any(|b| b.is_ascii() && !FLOAT_BYTES[b as usize]) {
        return None;
    }
    if t.is_empty() || t.len() > 100_000 {
        // Python accepts longer numerals, but they only ever produce inf/0; the cap keeps
        // the work bounded. Long strings here are never integers anyway (see callers).
        return long_float(t);
    }
    let mut ascii = String::with_capacity(t.len());
    for c in t.chars() {
        if let Some(d) = decimal_digit(c) {
            ascii.push((b'0' + d) as char);
        } else if c.is_ascii() {
            ascii.push(c);
        } else {
            return None;
        }
    }
    parse_ascii_float(&ascii)
}

/// Numerals over the length cap: only a plain digit string is accepted (value inf).
fn long_float(t: &str) -> Option<f64> {
    if t.is_empty() {
        return None;
    }
    let body = t.strip_prefix(['-', '+']).unwrap_or(t);
    if !body.is_empty() && body.chars().all(|c| decimal_digit(c).is_some()) {
        let neg = t.starts_with('-');
        let all_zero = body.chars().all(|c| decimal_digit(c) == Some(0));
        let v = if all_zero { 0.0 } else { f64::INFINITY };
        Some(if neg { -v } else { v })
    } else {
        None
    }
}

fn parse_ascii_float(s: &str) -> Option<f64> {
    let lower = s.to_ascii_lowercase();
    let (sign, body) = match lower.as_bytes().first() {
        Some(b'-') => (-1.0, &lower[1..]),
        Some(b'+') => (1.0, &lower[1..]),
        _ => (1.0, &lower[..]),
    };
    match body {
        "inf" | "infinity" => return Some(sign * f64::INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    // Grammar: digitpart ["." [digitpart]] | "." digitpart, then [e [sign] digitpart];
    // digitpart = digit (["_"] digit)*.
    let b = body.as_bytes();
    let mut i = 0;
    let mut clean = String::with_capacity(b.len());
    let int_digits = digitpart(b, &mut i, &mut clean)?;
    let mut frac_digits = 0;
    if i < b.len() && b[i] == b'.' {
        clean.push('.');
        i += 1;
        frac_digits = digitpart(b, &mut i, &mut clean)?;
    }
    if int_digits == 0 && frac_digits == 0 {
        return None;
    }
    if i < b.len() && b[i] == b'e' {
        clean.push('e');
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            clean.push(b[i] as char);
            i += 1;
        }
        if digitpart(b, &mut i, &mut clean)? == 0 {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    let v: f64 = clean.parse().ok()?;
    Some(sign * v)
}

/// Reads digits with single underscores between them; `None` on a misplaced underscore.
fn digitpart(b: &[u8], i: &mut usize, out: &mut String) -> Option<usize> {
    let mut n = 0;
    while *i < b.len() {
        let c = b[*i];
        if c.is_ascii_digit() {
            out.push(c as char);
            n += 1;
            *i += 1;
        } else if c == b'_' {
            if n == 0 || *i + 1 >= b.len() || !b[*i + 1].is_ascii_digit() {
                return None;
            }
            *i += 1;
        } else {
            break;
        }
    }
    Some(n)
}

/// mathruler's `_is_int(x)`: within 1e-7 of an integer (false for inf/nan, where Python's
/// `round` raises and the bare `except` returns False).
pub fn is_int(x: f64) -> bool {
    x.is_finite() && (x - x.round_ties_even()).abs() <= 1e-7
}

/// `str(int(round(x)))` for a finite float (banker's rounding, exact digits of big doubles).
pub fn round_to_int_string(x: f64) -> String {
    integer_string(x.round_ties_even())
}

/// `str(int(x))` for a finite float: truncation toward zero.
pub fn trunc_to_int_string(x: f64) -> String {
    integer_string(x.trunc())
}

/// Exact decimal digits of an integral finite double.
fn integer_string(r: f64) -> String {
    if r.abs() < 9.0e15 {
        return format!("{}", r as i64);
    }
    let bits = r.to_bits();
    let neg = (bits >> 63) != 0;
    let exp = ((bits >> 52) & 0x7ff) as i32 - 1075;
    let mant = (bits & ((1u64 << 52) - 1)) | (1u64 << 52);
    // value = mant * 2^exp with exp >= 0 here (|r| >= 2^53). Base-1e9 limbs, little-endian.
    let mut limbs: Vec<u64> = vec![mant % 1_000_000_000, mant / 1_000_000_000 % 1_000_000_000];
    limbs.push(mant / 1_000_000_000_000_000_000);
    for _ in 0..exp.max(0) {
        let mut carry = 0u64;
        for l in limbs.iter_mut() {
            let v = *l * 2 + carry;
            *l = v % 1_000_000_000;
            carry = v / 1_000_000_000;
        }
        if carry > 0 {
            limbs.push(carry);
        }
    }
    while limbs.len() > 1 && limbs.last() == Some(&0) {
        limbs.pop();
    }
    let mut s = String::new();
    if neg {
        s.push('-');
    }
    let mut it = limbs.iter().rev();
    if let Some(first) = it.next() {
        s.push_str(&first.to_string());
    }
    for l in it {
        s.push_str(&format!("{l:09}"));
    }
    s
}

/// Python's `int(s)` followed by `str()`: the canonical decimal form, or `None`.
pub fn py_int_canonical(s: &str) -> Option<String> {
    let t = py_strip(s);
    let (neg, body) = match t.chars().next() {
        Some('-') => (true, &t[1..]),
        Some('+') => (false, &t[1..]),
        _ => (false, t),
    };
    if body.is_empty() || body.starts_with('_') || body.ends_with('_') || body.contains("__") {
        return None;
    }
    let mut digits = String::new();
    for c in body.chars() {
        if c == '_' {
            continue;
        }
        digits.push((b'0' + decimal_digit(c)?) as char);
    }
    let trimmed = digits.trim_start_matches('0');
    if trimmed.is_empty() {
        return Some("0".to_string());
    }
    // Python rejects non-zero literals with leading zeros only in source code, not in int().
    Some(if neg {
        format!("-{trimmed}")
    } else {
        trimmed.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_accepts_unicode_digits_like_python() {
        assert_eq!(py_float("１２"), Some(12.0));
        assert_eq!(py_float("١٢"), Some(12.0));
    }

    #[test]
    fn float_accepts_underscores_between_digits_only() {
        assert_eq!(py_float("1_000"), Some(1000.0));
        assert_eq!(py_float("1__000"), None);
        assert_eq!(py_float("_1"), None);
    }

    #[test]
    fn float_accepts_inf_nan_and_exponents() {
        assert_eq!(py_float(" -Infinity "), Some(f64::NEG_INFINITY));
        assert!(py_float("nan").is_some_and(f64::is_nan));
        assert_eq!(py_float("1e3"), Some(1000.0));
        assert_eq!(py_float(".5"), Some(0.5));
        assert_eq!(py_float("5."), Some(5.0));
        assert_eq!(py_float("."), None);
        assert_eq!(py_float("1e"), None);
        assert_eq!(py_float("1,000"), None);
    }

    #[test]
    fn is_int_uses_the_1e_minus_7_tolerance() {
        assert!(is_int(2.99999999));
        assert!(!is_int(2.9999));
        assert!(!is_int(f64::INFINITY));
        assert!(!is_int(f64::NAN));
    }

    #[test]
    fn big_doubles_print_their_exact_integer_digits() {
        assert_eq!(round_to_int_string(1e20), "100000000000000000000");
        assert_eq!(round_to_int_string(2.5), "2");
        assert_eq!(round_to_int_string(-3.5), "-4");
        assert_eq!(trunc_to_int_string(2.99999999), "2");
        assert_eq!(round_to_int_string(2f64.powi(70)), "1180591620717411303424");
    }

    #[test]
    fn int_canonical_matches_python_int_str() {
        assert_eq!(py_int_canonical("-3"), Some("-3".into()));
        assert_eq!(py_int_canonical("007"), Some("7".into()));
        assert_eq!(py_int_canonical("-0"), Some("0".into()));
        assert_eq!(py_int_canonical("3.0"), None);
    }
}
