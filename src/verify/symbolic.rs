//! Exact equivalence of arithmetic expressions: the part of mathruler that calls
//! `sympy.simplify((a)-(b)) == 0` on text parsed with Python's grammar plus implicit
//! multiplication. Re-implemented without evaluating anything as code.
//!
//! Values live in the field of fractions of Laurent polynomials over Q in `pi`, square
//! roots of square-free integers (with `sqrt(r)^2 = r`) and single-letter symbols; in that
//! ring canonical forms are unique, so "the difference is zero" is an exact test. Decimal
//! literals are binary floats as in sympy (`0.1+0.2 != 0.3`, `3/5 == 0.6`).
//! Anything outside that domain (functions, `oo`, tuples, relations, huge numbers) is
//! "not provably equal", which is what sympy's exception path returns too.
//!
//! Bounded: nesting depth, exponent size, number size (checked i128), term counts and a
//! total work budget are all capped, so no input can hang or overflow the stack.

use std::cmp::Ordering;

/// Largest nesting of parentheses/operators the parser follows.
const MAX_DEPTH: usize = 600;
/// Most terms a polynomial may hold.
const MAX_TERMS: usize = 256;
/// Work units (term multiplications) one comparison may spend.
const WORK_BUDGET: usize = 50_000;
/// Largest integer exponent applied to a non-trivial base.
const MAX_EXPONENT: i128 = 256;
/// Largest integer whose square-free part is computed (trial division up to its root).
const MAX_RADICAND: u128 = 10_000_000_000;

/// Why an expression could not be decided; all of them mean "not equal" to mathruler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undecided {
    /// Text Python's tokenizer/parser would reject (or sympy would not turn into a number).
    Syntax,
    /// Outside the supported domain (functions, infinity, tuples...).
    Unsupported,
    /// A number, exponent, term count or work cap was hit.
    TooBig,
    /// Division by zero.
    DivisionByZero,
}

type R<T> = Result<T, Undecided>;

/// `sympy.simplify(parse(a) - parse(b)) == 0`, where `a`/`b` are mathruler's normalised
/// strings (before its `^` -> `**` replacement, which happens here).
pub fn equal_under_sympy(a: &str, b: &str) -> R<bool> {
    let src = format!("({a})-({b})").replace('^', "**");
    let v = evaluate(&src)?;
    Ok(v.num.is_zero())
}

/// Evaluate one expression string (Python syntax, implicit multiplication).
pub fn evaluate(src: &str) -> R<Val> {
    let toks = lex(src)?;
    let toks = insert_implicit_multiplication(toks);
    let mut p = Parser {
        t: &toks,
        i: 0,
        work: 0,
    };
    let v = p.expr(0)?;
    if p.i != toks.len() {
        return Err(Undecided::Syntax);
    }
    Ok(v)
}

// ---------------------------------------------------------------- numbers

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Coef {
    /// Exact rational, reduced, denominator > 0.
    Q(i128, i128),
    /// A binary float (sympy `Float` from a decimal literal, or anything touched by one).
    F(f64),
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    a = a.abs();
    b = b.abs();
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

impl Coef {
    fn q(n: i128, d: i128) -> R<Coef> {
        if d == 0 {
            return Err(Undecided::DivisionByZero);
        }
        let g = gcd(n, d).max(1);
        let (mut n, mut d) = (n / g, d / g);
        if d < 0 {
            n = n.checked_neg().ok_or(Undecided::TooBig)?;
            d = d.checked_neg().ok_or(Undecided::TooBig)?;
        }
        Ok(Coef::Q(n, d))
    }
    fn int(n: i128) -> Coef {
        Coef::Q(n, 1)
    }
    fn f(self) -> f64 {
        match self {
            Coef::Q(n, d) => n as f64 / d as f64,
            Coef::F(x) => x,
        }
    }
    fn is_zero(self) -> bool {
        match self {
            Coef::Q(n, _) => n == 0,
            Coef::F(x) => x == 0.0,
        }
    }
    fn add(self, o: Coef) -> R<Coef> {
        match (self, o) {
            (Coef::Q(a, b), Coef::Q(c, d)) => {
                let g = gcd(b, d).max(1);
                let l = (b / g).checked_mul(d).ok_or(Undecided::TooBig)?;
                let x = a.checked_mul(l / b).ok_or(Undecided::TooBig)?;
                let y = c.checked_mul(l / d).ok_or(Undecided::TooBig)?;
                Coef::q(x.checked_add(y).ok_or(Undecided::TooBig)?, l)
            }
            _ => finite(self.f() + o.f()),
        }
    }
    fn mul(self, o: Coef) -> R<Coef> {
        match (self, o) {
            (Coef::Q(a, b), Coef::Q(c, d)) => {
                let g1 = gcd(a, d).max(1);
                let g2 = gcd(c, b).max(1);
                let n = (a / g1).checked_mul(c / g2).ok_or(Undecided::TooBig)?;
                let m = (b / g2).checked_mul(d / g1).ok_or(Undecided::TooBig)?;
                Coef::q(n, m)
            }
            _ => finite(self.f() * o.f()),
        }
    }
    fn neg(self) -> R<Coef> {
        match self {
            Coef::Q(n, d) => Ok(Coef::Q(n.checked_neg().ok_or(Undecided::TooBig)?, d)),
            Coef::F(x) => Ok(Coef::F(-x)),
        }
    }
    fn inv(self) -> R<Coef> {
        match self {
            Coef::Q(n, d) => Coef::q(d, n),
            Coef::F(x) if x != 0.0 => finite(1.0 / x),
            Coef::F(_) => Err(Undecided::DivisionByZero),
        }
    }
}

fn finite(x: f64) -> R<Coef> {
    if x.is_finite() {
        Ok(Coef::F(x))
    } else {
        Err(Undecided::TooBig)
    }
}

// ---------------------------------------------------------------- monomials

/// `pi^pi_exp * sqrt(rad) * prod(sym^k)`; `rad` square-free (1 = none).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mono {
    pi_exp: i32,
    rad: u64,
    syms: Vec<(String, i32)>,
}

impl Mono {
    fn one() -> Mono {
        Mono {
            pi_exp: 0,
            rad: 1,
            syms: Vec::new(),
        }
    }
    fn is_one(&self) -> bool {
        self.pi_exp == 0 && self.rad == 1 && self.syms.is_empty()
    }
    /// Product, with the integer that `sqrt(a)*sqrt(b)` releases.
    fn mul(&self, o: &Mono) -> R<(Mono, i128)> {
        let pi_exp = self.pi_exp.checked_add(o.pi_exp).ok_or(Undecided::TooBig)?;
        let g = gcd(self.rad as i128, o.rad as i128).max(1) as u64;
        let rad = (self.rad / g)
            .checked_mul(o.rad / g)
            .ok_or(Undecided::TooBig)?;
        let mut syms = Vec::with_capacity(self.syms.len() + o.syms.len());
        let (mut i, mut j) = (0, 0);
        while i < self.syms.len() || j < o.syms.len() {
            let ord = match (self.syms.get(i), o.syms.get(j)) {
                (Some(a), Some(b)) => a.0.cmp(&b.0),
                (Some(_), None) => Ordering::Less,
                _ => Ordering::Greater,
            };
            match ord {
                Ordering::Less => {
                    syms.push(self.syms[i].clone());
                    i += 1;
                }
                Ordering::Greater => {
                    syms.push(o.syms[j].clone());
                    j += 1;
                }
                Ordering::Equal => {
                    let e = self.syms[i]
                        .1
                        .checked_add(o.syms[j].1)
                        .ok_or(Undecided::TooBig)?;
                    if e != 0 {
                        syms.push((self.syms[i].0.clone(), e));
                    }
                    i += 1;
                    j += 1;
                }
            }
        }
        Ok((Mono { pi_exp, rad, syms }, g as i128))
    }
    /// Inverse monomial and the coefficient factor it needs (`1/sqrt(r) = sqrt(r)/r`).
    fn inv(&self) -> (Mono, Coef) {
        let m = Mono {
            pi_exp: -self.pi_exp,
            rad: self.rad,
            syms: self.syms.iter().map(|(s, e)| (s.clone(), -e)).collect(),
        };
        (m, Coef::Q(1, self.rad as i128))
    }
}

// ---------------------------------------------------------------- polynomials

#[derive(Debug, Clone, PartialEq)]
pub struct Poly {
    terms: Vec<(Mono, Coef)>,
}

impl Poly {
    fn zero() -> Poly {
        Poly { terms: Vec::new() }
    }
    fn constant(c: Coef) -> Poly {
        Poly::term(Mono::one(), c)
    }
    fn term(m: Mono, c: Coef) -> Poly {
        if c.is_zero() {
            Poly::zero()
        } else {
            Poly {
                terms: vec![(m, c)],
            }
        }
    }
    /// True when every coefficient cancelled: the exact zero test.
    pub fn is_zero(&self) -> bool {
        self.terms.is_empty()
    }
    fn constant_value(&self) -> Option<Coef> {
        match self.terms.as_slice() {
            [] => Some(Coef::int(0)),
            [(m, c)] if m.is_one() => Some(*c),
            _ => None,
        }
    }
    fn is_one(&self) -> bool {
        matches!(self.constant_value(), Some(Coef::Q(1, 1)))
    }
    fn from_terms(mut terms: Vec<(Mono, Coef)>) -> R<Poly> {
        terms.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(Mono, Coef)> = Vec::with_capacity(terms.len());
        for (m, c) in terms {
            match out.last_mut() {
                Some((lm, lc)) if *lm == m => *lc = lc.add(c)?,
                _ => out.push((m, c)),
            }
        }
        out.retain(|(_, c)| !c.is_zero());
        if out.len() > MAX_TERMS {
            return Err(Undecided::TooBig);
        }
        Ok(Poly { terms: out })
    }
    fn add(&self, o: &Poly) -> R<Poly> {
        Poly::from_terms(self.terms.iter().chain(o.terms.iter()).cloned().collect())
    }
    fn neg(&self) -> R<Poly> {
        let terms = self
            .terms
            .iter()
            .map(|(m, c)| Ok((m.clone(), c.neg()?)))
            .collect::<R<Vec<_>>>()?;
        Ok(Poly { terms })
    }
    fn mul(&self, o: &Poly, work: &mut usize) -> R<Poly> {
        *work += self.terms.len() * o.terms.len() + 1;
        if *work > WORK_BUDGET || self.terms.len() * o.terms.len() > 64 * MAX_TERMS {
            return Err(Undecided::TooBig);
        }
        let mut terms = Vec::with_capacity(self.terms.len() * o.terms.len());
        for (ma, ca) in &self.terms {
            for (mb, cb) in &o.terms {
                let (m, g) = ma.mul(mb)?;
                terms.push((m, ca.mul(*cb)?.mul(Coef::int(g))?));
            }
        }
        Poly::from_terms(terms)
    }
}

// ---------------------------------------------------------------- values

/// A quotient of polynomials; the denominator is 1 unless it has several terms.
#[derive(Debug, Clone, PartialEq)]
pub struct Val {
    pub num: Poly,
    den: Poly,
}

impl Val {
    fn from_poly(p: Poly) -> Val {
        Val {
            num: p,
            den: Poly::constant(Coef::int(1)),
        }
    }
    fn constant(c: Coef) -> Val {
        Val::from_poly(Poly::constant(c))
    }
    fn monomial(m: Mono) -> Val {
        Val::from_poly(Poly::term(m, Coef::int(1)))
    }
    /// The value as a plain number, if it is one.
    fn constant_value(&self) -> Option<Coef> {
        let n = self.num.constant_value()?;
        let d = self.den.constant_value()?;
        d.inv().ok().and_then(|di| n.mul(di).ok())
    }
    /// Moves a single-term denominator into the numerator, keeping forms canonical.
    fn normalise(self, work: &mut usize) -> R<Val> {
        if self.den.is_one() {
            return Ok(self);
        }
        match self.den.terms.as_slice() {
            [] => Err(Undecided::DivisionByZero),
            [(m, c)] => {
                let (mi, factor) = m.inv();
                let inv = Poly::term(mi, c.inv()?.mul(factor)?);
                Ok(Val::from_poly(self.num.mul(&inv, work)?))
            }
            _ => Ok(self),
        }
    }
    fn add(&self, o: &Val, work: &mut usize) -> R<Val> {
        if self.den == o.den {
            return Ok(Val {
                num: self.num.add(&o.num)?,
                den: self.den.clone(),
            });
        }
        let num = self
            .num
            .mul(&o.den, work)?
            .add(&o.num.mul(&self.den, work)?)?;
        let den = self.den.mul(&o.den, work)?;
        Val { num, den }.normalise(work)
    }
    fn neg(&self) -> R<Val> {
        Ok(Val {
            num: self.num.neg()?,
            den: self.den.clone(),
        })
    }
    fn mul(&self, o: &Val, work: &mut usize) -> R<Val> {
        let num = self.num.mul(&o.num, work)?;
        let den = if o.den.is_one() {
            self.den.clone()
        } else {
            self.den.mul(&o.den, work)?
        };
        Val { num, den }.normalise(work)
    }
    fn recip(&self, work: &mut usize) -> R<Val> {
        if self.num.is_zero() {
            return Err(Undecided::DivisionByZero);
        }
        Val {
            num: self.den.clone(),
            den: self.num.clone(),
        }
        .normalise(work)
    }
    fn div(&self, o: &Val, work: &mut usize) -> R<Val> {
        self.mul(&o.recip(work)?, work)
    }
    fn powi(&self, n: i128, work: &mut usize) -> R<Val> {
        if n < 0 {
            return self.recip(work)?.powi(-n, work);
        }
        if let Some(Coef::Q(c, 1)) = self.constant_value() {
            if c == 0 || c == 1 {
                return Ok(Val::constant(Coef::int(if n == 0 { 1 } else { c })));
            }
            if c == -1 {
                return Ok(Val::constant(Coef::int(if n % 2 == 0 { 1 } else { -1 })));
            }
        }
        if n > MAX_EXPONENT {
            return Err(Undecided::TooBig);
        }
        let mut result = Val::constant(Coef::int(1));
        let mut base = self.clone();
        let mut e = n;
        while e > 0 {
            if e & 1 == 1 {
                result = result.mul(&base, work)?;
            }
            e >>= 1;
            if e > 0 {
                base = base.mul(&base, work)?;
            }
        }
        Ok(result)
    }
}

/// `sqrt(n/d)` for a non-negative rational: `(s/d) * sqrt(r)` with `r` square-free.
fn sqrt_rational(n: i128, d: i128) -> R<Val> {
    if n < 0 {
        return Err(Undecided::Unsupported); // imaginary
    }
    let prod = (n as u128)
        .checked_mul(d as u128)
        .ok_or(Undecided::TooBig)?;
    if prod > MAX_RADICAND {
        return Err(Undecided::TooBig);
    }
    let (s, r) = square_free(prod);
    let m = Mono {
        pi_exp: 0,
        rad: r as u64,
        syms: Vec::new(),
    };
    Ok(Val::from_poly(Poly::term(m, Coef::q(s as i128, d)?)))
}

/// `n = s^2 * r` with `r` square-free.
fn square_free(mut n: u128) -> (u128, u128) {
    if n == 0 {
        return (0, 1);
    }
    let (mut s, mut r) = (1u128, 1u128);
    let mut p = 2u128;
    while p * p <= n {
        let mut k = 0;
        while n % p == 0 {
            n /= p;
            k += 1;
        }
        for _ in 0..k / 2 {
            s *= p;
        }
        if k % 2 == 1 {
            r *= p;
        }
        p += if p == 2 { 1 } else { 2 };
    }
    (s, r * n)
}

fn factorial(v: &Val) -> R<Val> {
    match v.constant_value() {
        Some(Coef::Q(n, 1)) if (0..=33).contains(&n) => {
            let f = (1..=n).product::<i128>();
            Ok(Val::constant(Coef::int(f)))
        }
        Some(Coef::Q(_, 1)) => Err(Undecided::TooBig),
        _ => Err(Undecided::Unsupported),
    }
}

// ---------------------------------------------------------------- lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Int(i128),
    /// An exact rational from a long decimal literal.
    Rat(i128, i128),
    Float(f64),
    Sym(String),
    Pi,
    Sqrt,
    Plus,
    Minus,
    Star,
    Slash,
    Pow,
    LParen,
    RParen,
    Bang,
}

fn lex(src: &str) -> R<Vec<Tok>> {
    let s: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        match c {
            ' ' | '\t' | '\n' | '\r' | '\x0c' => i += 1,
            '+' => {
                out.push(Tok::Plus);
                i += 1;
            }
            '-' => {
                out.push(Tok::Minus);
                i += 1;
            }
            '*' if s.get(i + 1) == Some(&'*') => {
                out.push(Tok::Pow);
                i += 2;
            }
            '*' => {
                out.push(Tok::Star);
                i += 1;
            }
            '/' if s.get(i + 1) == Some(&'/') => return Err(Undecided::Unsupported),
            '/' => {
                out.push(Tok::Slash);
                i += 1;
            }
            '(' => {
                out.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1;
            }
            '!' if s.get(i + 1) == Some(&'=') => return Err(Undecided::Unsupported),
            '!' => {
                out.push(Tok::Bang);
                i += 1;
            }
            _ if c.is_ascii_digit()
                || (c == '.' && s.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                i = lex_number(&s, i, &mut out)?;
            }
            _ if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < s.len() && (s[i].is_alphanumeric() || s[i] == '_') {
                    i += 1;
                }
                let name: String = s[start..i].iter().collect();
                lex_name(&name, &mut out)?;
            }
            // Commas (tuples), relations, brackets, `=`: sympy fails or yields a
            // non-number; both end as "not equal".
            _ => return Err(Undecided::Syntax),
        }
    }
    Ok(out)
}

fn lex_number(s: &[char], mut i: usize, out: &mut Vec<Tok>) -> R<usize> {
    let mut text = String::new();
    let mut is_float = false;
    let digits = |i: &mut usize, text: &mut String| {
        while *i < s.len()
            && (s[*i].is_ascii_digit()
                || (s[*i] == '_'
                    && s.get(*i + 1).is_some_and(char::is_ascii_digit)
                    && !text.is_empty()))
        {
            if s[*i] != '_' {
                text.push(s[*i]);
            }
            *i += 1;
        }
    };
    digits(&mut i, &mut text);
    if i < s.len() && s[i] == '.' {
        is_float = true;
        text.push('.');
        i += 1;
        digits(&mut i, &mut text);
    }
    if i < s.len() && (s[i] == 'e' || s[i] == 'E') {
        let mut j = i + 1;
        if j < s.len() && (s[j] == '+' || s[j] == '-') {
            j += 1;
        }
        if j < s.len() && s[j].is_ascii_digit() {
            is_float = true;
            text.extend(&s[i..j]);
            i = j;
            digits(&mut i, &mut text);
        }
    }
    if text.len() > 400 {
        return Err(Undecided::TooBig);
    }
    if is_float {
        // sympy gives a decimal literal max(15, significant digits) digits of precision:
        // 15 behaves as a binary double, more makes it (for our purposes) exact, so
        // `6.083333333333333` is not 73/12 while `0.6` is 3/5.
        let mantissa = text.split(['e', 'E']).next().unwrap_or("");
        let significant = mantissa
            .trim_start_matches(['0', '.'])
            .chars()
            .filter(char::is_ascii_digit)
            .count();
        if significant > 15 {
            out.push(exact_decimal(&text)?);
        } else {
            let v: f64 = text.parse().map_err(|_| Undecided::Syntax)?;
            out.push(Tok::Float(finite(v)?.f()));
        }
    } else {
        let v: i128 = text.parse().map_err(|_| Undecided::TooBig)?;
        out.push(Tok::Int(v));
    }
    Ok(i)
}

/// The exact value of a decimal literal `d.ddd[e±n]` as a rational.
fn exact_decimal(text: &str) -> R<Tok> {
    let mut parts = text.splitn(2, ['e', 'E']);
    let mantissa = parts.next().unwrap_or("");
    let exp: i32 = match parts.next() {
        Some(e) => e.parse().map_err(|_| Undecided::TooBig)?,
        None => 0,
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{int_part}{frac_part}");
    let n: i128 = digits.parse().map_err(|_| Undecided::TooBig)?;
    let scale = exp - frac_part.len() as i32;
    if scale.abs() > 36 {
        return Err(Undecided::TooBig);
    }
    let p = 10i128.pow(scale.unsigned_abs());
    let c = if scale >= 0 {
        Coef::q(n.checked_mul(p).ok_or(Undecided::TooBig)?, 1)?
    } else {
        Coef::q(n, p)?
    };
    match c {
        Coef::Q(n, d) => Ok(Tok::Rat(n, d)),
        Coef::F(_) => Err(Undecided::TooBig),
    }
}

/// Names as sympy's `auto_symbol` + `split_symbols` see them: known names stay whole,
/// others split into one symbol per letter (`ab` -> `a*b`), digits into numbers.
fn lex_name(name: &str, out: &mut Vec<Tok>) -> R<()> {
    match name {
        "pi" => out.push(Tok::Pi),
        "sqrt" => out.push(Tok::Sqrt),
        // Other sympy names: functions, infinity, keywords: outside the exact domain.
        "oo" | "ln" | "re" | "im" | "li" | "ff" | "rf" | "if" | "in" | "is" | "or" | "as" => {
            return Err(Undecided::Unsupported)
        }
        _ if name.contains('_') => out.push(Tok::Sym(name.to_string())),
        _ if name.chars().count() > 2 => return Err(Undecided::Unsupported),
        _ => {
            let mut first = true;
            for c in name.chars() {
                if !first {
                    out.push(Tok::Star);
                }
                first = false;
                match c.to_digit(10) {
                    Some(d) if c.is_ascii_digit() => out.push(Tok::Int(d as i128)),
                    _ => out.push(Tok::Sym(c.to_string())),
                }
            }
        }
    }
    Ok(())
}

/// sympy's `implicit_multiplication`: `2x`, `2(3)`, `(a)(b)`, `x sqrt(2)` get a `*`.
fn insert_implicit_multiplication(toks: Vec<Tok>) -> Vec<Tok> {
    let mut out: Vec<Tok> = Vec::with_capacity(toks.len() * 2);
    for t in toks {
        let starts_operand = matches!(
            t,
            Tok::Int(_) | Tok::Float(_) | Tok::Sym(_) | Tok::Pi | Tok::Sqrt | Tok::LParen
        );
        let ends_operand = matches!(
            out.last(),
            Some(
                Tok::Int(_)
                    | Tok::Rat(..)
                    | Tok::Float(_)
                    | Tok::Sym(_)
                    | Tok::Pi
                    | Tok::RParen
                    | Tok::Bang
            )
        );
        if starts_operand && ends_operand {
            out.push(Tok::Star);
        }
        out.push(t);
    }
    out
}

// ---------------------------------------------------------------- parser

struct Parser<'a> {
    t: &'a [Tok],
    i: usize,
    work: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.t.get(self.i)
    }
    fn expect(&mut self, t: &Tok) -> R<()> {
        if self.peek() == Some(t) {
            self.i += 1;
            Ok(())
        } else {
            Err(Undecided::Syntax)
        }
    }
    fn expr(&mut self, depth: usize) -> R<Val> {
        if depth > MAX_DEPTH {
            return Err(Undecided::TooBig);
        }
        let mut v = self.term(depth + 1)?;
        loop {
            match self.peek() {
                Some(Tok::Plus) => {
                    self.i += 1;
                    let r = self.term(depth + 1)?;
                    v = v.add(&r, &mut self.work)?;
                }
                Some(Tok::Minus) => {
                    self.i += 1;
                    let r = self.term(depth + 1)?.neg()?;
                    v = v.add(&r, &mut self.work)?;
                }
                _ => return Ok(v),
            }
        }
    }
    fn term(&mut self, depth: usize) -> R<Val> {
        let mut v = self.factor(depth + 1)?;
        loop {
            match self.peek() {
                Some(Tok::Star) => {
                    self.i += 1;
                    let r = self.factor(depth + 1)?;
                    v = v.mul(&r, &mut self.work)?;
                }
                Some(Tok::Slash) => {
                    self.i += 1;
                    let r = self.factor(depth + 1)?;
                    v = v.div(&r, &mut self.work)?;
                }
                _ => return Ok(v),
            }
        }
    }
    fn factor(&mut self, depth: usize) -> R<Val> {
        if depth > MAX_DEPTH {
            return Err(Undecided::TooBig);
        }
        match self.peek() {
            Some(Tok::Minus) => {
                self.i += 1;
                self.factor(depth + 1)?.neg()
            }
            Some(Tok::Plus) => {
                self.i += 1;
                self.factor(depth + 1)
            }
            _ => self.power(depth + 1),
        }
    }
    fn power(&mut self, depth: usize) -> R<Val> {
        let base = self.postfix(depth + 1)?;
        if self.peek() == Some(&Tok::Pow) {
            self.i += 1;
            let exp = self.factor(depth + 1)?;
            return self.pow(&base, &exp);
        }
        Ok(base)
    }
    fn pow(&mut self, base: &Val, exp: &Val) -> R<Val> {
        match exp.constant_value() {
            Some(Coef::Q(n, 1)) => base.powi(n, &mut self.work),
            Some(Coef::Q(p, 2)) => match base.constant_value() {
                Some(Coef::Q(a, b)) => sqrt_rational(a, b)?.powi(p, &mut self.work),
                Some(Coef::F(x)) if x >= 0.0 => Ok(Val::constant(finite(x.sqrt().powi(p as i32))?)),
                _ => Err(Undecided::Unsupported),
            },
            Some(e @ Coef::F(_)) => match base.constant_value() {
                Some(b) if b.f() > 0.0 => Ok(Val::constant(finite(b.f().powf(e.f()))?)),
                _ => Err(Undecided::Unsupported),
            },
            _ => Err(Undecided::Unsupported),
        }
    }
    fn postfix(&mut self, depth: usize) -> R<Val> {
        let mut v = self.atom(depth + 1)?;
        while self.peek() == Some(&Tok::Bang) {
            self.i += 1;
            v = factorial(&v)?;
        }
        Ok(v)
    }
    fn atom(&mut self, depth: usize) -> R<Val> {
        let Some(t) = self.peek().cloned() else {
            return Err(Undecided::Syntax);
        };
        self.i += 1;
        match t {
            Tok::Int(n) => Ok(Val::constant(Coef::int(n))),
            Tok::Rat(n, d) => Ok(Val::constant(Coef::q(n, d)?)),
            Tok::Float(x) => Ok(Val::constant(Coef::F(x))),
            Tok::Sym(s) => Ok(Val::monomial(Mono {
                pi_exp: 0,
                rad: 1,
                syms: vec![(s, 1)],
            })),
            Tok::Pi => Ok(Val::monomial(Mono {
                pi_exp: 1,
                rad: 1,
                syms: Vec::new(),
            })),
            Tok::LParen => {
                let v = self.expr(depth + 1)?;
                self.expect(&Tok::RParen)?;
                Ok(v)
            }
            Tok::Sqrt => {
                self.expect(&Tok::LParen)?;
                let v = self.expr(depth + 1)?;
                self.expect(&Tok::RParen)?;
                let half = Val::constant(Coef::Q(1, 2));
                self.pow(&v, &half)
            }
            _ => Err(Undecided::Syntax),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::equal_under_sympy as eq;

    #[test]
    fn reordered_polynomials_are_equal() {
        assert_eq!(eq("x^2+2x+1", "(x+1)^2"), Ok(true));
        assert_eq!(eq("9pi-18", "9(pi-2)"), Ok(true));
        assert_eq!(eq("x^2+2x+1", "x^2+2x+2"), Ok(false));
    }

    #[test]
    fn square_roots_are_reduced_and_rationalised() {
        assert_eq!(eq("2sqrt(3)", "sqrt(12)"), Ok(true));
        assert_eq!(eq("sqrt(2)", "2/sqrt(2)"), Ok(true));
        assert_eq!(eq("1/(1+sqrt(2))", "sqrt(2)-1"), Ok(true));
        assert_eq!(eq("(1+sqrt(2))^2", "3+2sqrt(2)"), Ok(true));
    }

    #[test]
    fn implicit_multiplication_binds_like_explicit() {
        assert_eq!(eq("sqrt(3)/2", "1/2sqrt(3)"), Ok(true));
        assert_eq!(eq("pi/6", "1/6pi"), Ok(true));
        assert_eq!(eq("ab", "ba"), Ok(true));
    }

    #[test]
    fn floats_behave_like_binary_doubles() {
        assert_eq!(eq("3/5", "0.6"), Ok(true));
        assert_eq!(eq("0.3", "0.1+0.2"), Ok(false));
        assert_eq!(eq("x/2", "0.5x"), Ok(true));
        assert_eq!(eq("2sqrt(3)", "3.4641016151377544"), Ok(false));
        assert_eq!(eq("2**0.5", "sqrt(2)"), Ok(false));
        assert_eq!(eq("73/12", "6.083333333333333"), Ok(false));
        assert_eq!(eq("1/3", "0.3333333333333333"), Ok(false));
        assert_eq!(eq("x/2", "0.5000000000000000x"), Ok(true));
    }

    #[test]
    fn rational_functions_cancel() {
        assert_eq!(eq("(x^2-1)/(x-1)", "x+1"), Ok(true));
    }

    #[test]
    fn towers_and_huge_numbers_are_refused_not_computed() {
        assert!(eq("9**9**9", "1").is_err());
        assert!(eq("(10**1000000)", "1").is_err());
        assert!(eq("99999999999!", "1").is_err());
        assert!(eq(&"(".repeat(20_000), "1").is_err());
    }

    #[test]
    fn tuples_relations_and_equations_are_not_numbers() {
        assert!(eq("1,2", "1,2").is_err());
        assert!(eq("x<1", "x<1").is_err());
        assert!(eq("y=2x+3", "y=3+2x").is_err());
    }

    #[test]
    fn factorials_are_exact() {
        assert_eq!(eq("5!", "120"), Ok(true));
    }

    #[test]
    fn division_by_zero_is_undecided() {
        assert!(eq("1/0", "1").is_err());
    }
}
