//! LaTeX to plain text, reproducing what mathruler gets from pylatexenc 2.11's
//! `LatexNodes2Text().latex_to_text` on answer-sized inputs: `\frac{a}{b}` -> `a/b` (no
//! parentheses), `\sqrt{x}` -> `√(x)`, symbol macros -> Unicode, text-style macros -> their
//! argument, unknown macros -> nothing (their `{}` arguments stay as plain groups).
//!
//! Why reproduce quirks: mathruler's `_normalize` compares the *strings* this produces,
//! so `\frac{a+b}{c}` must become `a+b/c` exactly as pylatexenc writes it, even though
//! that reads as a different number.
//!
//! Iterative in spirit, recursive only per nesting level with a hard depth cap:
//! pylatexenc raises (Python recursion limit) on very deep nesting and mathruler then
//! keeps the input unchanged; [`latex_to_text`] returns `Err` in the same situations.

/// Why conversion failed; mathruler swallows the exception and keeps its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatexError;

/// Nesting beyond this fails, as Python's recursion limit makes pylatexenc fail.
const MAX_DEPTH: usize = 150;

/// Convert `src` to text like pylatexenc; `Err` where pylatexenc raises.
pub fn latex_to_text(src: &str) -> Result<String, LatexError> {
    let chars: Vec<char> = src.chars().collect();
    let mut p = Parser { s: &chars, i: 0 };
    let mut out = String::with_capacity(src.len());
    p.seq(&mut out, Stop::Eof, 0)?;
    Ok(out)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    Eof,
    Brace,
    Bracket,
    InlineMath,
    DisplayMath,
    Env,
}

struct Parser<'a> {
    s: &'a [char],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }

    /// Renders nodes until `stop`; returns what ended it (for environments, the
    /// `\end{..}` has been consumed).
    fn seq(&mut self, out: &mut String, stop: Stop, depth: usize) -> Result<(), LatexError> {
        if depth > MAX_DEPTH {
            return Err(LatexError);
        }
        while let Some(c) = self.peek() {
            match c {
                '}' if stop == Stop::Brace => {
                    self.i += 1;
                    return Ok(());
                }
                ']' if stop == Stop::Bracket => {
                    self.i += 1;
                    return Ok(());
                }
                '}' => self.i += 1, // stray close brace: dropped, as pylatexenc does
                '{' => {
                    self.i += 1;
                    self.seq(out, Stop::Brace, depth + 1)?;
                }
                '%' => {
                    while let Some(c) = self.peek() {
                        self.i += 1;
                        if c == '\n' {
                            break;
                        }
                    }
                }
                '~' => {
                    self.i += 1;
                    out.push('\u{a0}');
                }
                '-' => {
                    let n = self.s[self.i..]
                        .iter()
                        .take(3)
                        .take_while(|&&c| c == '-')
                        .count();
                    self.i += n;
                    out.push_str(match n {
                        3 => "\u{2014}",
                        2 => "\u{2013}",
                        _ => "-",
                    });
                }
                '`' if self.s.get(self.i + 1) == Some(&'`') => {
                    self.i += 2;
                    out.push('\u{201c}');
                }
                '\'' if self.s.get(self.i + 1) == Some(&'\'') => {
                    self.i += 2;
                    out.push('\u{201d}');
                }
                '$' => {
                    self.i += 1;
                    if self.peek() == Some('$') {
                        self.i += 1;
                    }
                    if stop == Stop::InlineMath {
                        return Ok(());
                    }
                    let mut inner = String::new();
                    self.seq(&mut inner, Stop::InlineMath, depth + 1)?;
                    out.push_str(&inner);
                }
                '\\' => {
                    if self.backslash(out, stop, depth)? {
                        return Ok(());
                    }
                }
                _ => {
                    self.i += 1;
                    out.push(c);
                }
            }
        }
        if stop == Stop::Env {
            // `\begin{..}` without `\end`: pylatexenc raises on this.
            return Err(LatexError);
        }
        Ok(())
    }

    /// Handles a backslash sequence; returns true when it closes the current `stop`.
    fn backslash(
        &mut self,
        out: &mut String,
        stop: Stop,
        depth: usize,
    ) -> Result<bool, LatexError> {
        self.i += 1;
        let Some(c) = self.peek() else {
            return Ok(false);
        };
        if !c.is_ascii_alphabetic() {
            self.i += 1;
            match c {
                ',' | ';' | ':' | ' ' | '\n' | '\t' => out.push(' '),
                '{' | '}' | '$' | '%' | '&' | '#' | '_' => out.push(c),
                '\\' => out.push('\n'),
                '-' => out.push('\u{ad}'),
                '(' => {
                    let mut inner = String::new();
                    self.seq(&mut inner, Stop::InlineMath, depth + 1)?;
                    out.push_str(&inner);
                }
                ')' => return Ok(stop == Stop::InlineMath),
                '[' => {
                    let mut inner = String::new();
                    self.seq(&mut inner, Stop::DisplayMath, depth + 1)?;
                    out.push_str("\n    ");
                    out.push_str(inner.trim());
                    out.push('\n');
                }
                ']' => return Ok(stop == Stop::DisplayMath),
                _ => {} // `\!`, `\|`, `\/`, `\@`, accents on letters: nothing
            }
            return Ok(false);
        }
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
            self.i += 1;
        }
        let name: String = self.s[start..self.i].iter().collect();
        while self
            .peek()
            .is_some_and(|c| c == ' ' || c == '\t' || c == '\n')
        {
            self.i += 1;
        }
        self.macro_(&name, out, stop, depth)
    }

    /// One argument: a `{}` group, a macro, or a single character; `None` at the end.
    fn arg(&mut self, depth: usize) -> Result<Option<String>, LatexError> {
        while self.peek().is_some_and(char::is_whitespace) {
            self.i += 1;
        }
        let Some(c) = self.peek() else {
            return Ok(None);
        };
        let mut s = String::new();
        match c {
            '{' => {
                self.i += 1;
                self.seq(&mut s, Stop::Brace, depth + 1)?;
            }
            '\\' => {
                self.backslash(&mut s, Stop::Eof, depth + 1)?;
            }
            _ => {
                self.i += 1;
                s.push(c);
            }
        }
        Ok(Some(s))
    }

    fn optional_arg(&mut self, depth: usize) -> Result<(), LatexError> {
        let save = self.i;
        while self.peek().is_some_and(char::is_whitespace) {
            self.i += 1;
        }
        if self.peek() == Some('[') {
            self.i += 1;
            let mut sink = String::new();
            self.seq(&mut sink, Stop::Bracket, depth + 1)?;
        } else {
            self.i = save;
        }
        Ok(())
    }

    fn macro_(
        &mut self,
        name: &str,
        out: &mut String,
        stop: Stop,
        depth: usize,
    ) -> Result<bool, LatexError> {
        if let Some(sym) = symbol(name) {
            out.push_str(sym);
            return Ok(false);
        }
        match name {
            "frac" => {
                let a = self.arg(depth)?;
                let b = self.arg(depth)?;
                match (a, b) {
                    (Some(a), Some(b)) => {
                        out.push_str(&a);
                        out.push('/');
                        out.push_str(&b);
                    }
                    // pylatexenc's format string fails to substitute and is printed raw.
                    (a, _) => {
                        out.push_str("%s/%s");
                        out.push_str(&a.unwrap_or_default());
                    }
                }
            }
            "sqrt" => {
                self.optional_arg(depth)?;
                let a = self.arg(depth)?.ok_or(LatexError)?;
                out.push_str("\u{221a}(");
                out.push_str(&a);
                out.push(')');
            }
            "text" | "textbf" | "textit" | "emph" | "mathrm" | "operatorname" | "mathnormal"
            | "textrm" | "textnormal" | "boldsymbol" | "bm" | "underline" | "overline"
            | "overrightarrow" | "widehat" | "phantom" | "ensuremath" | "textsuperscript"
            | "textsubscript" | "boxed" | "pmod" | "substack" | "mathring" | "fbox" => {
                out.push_str(&self.arg(depth)?.unwrap_or_default());
            }
            "mbox" | "textsf" | "texttt" | "textup" | "hspace" | "label" | "xrightarrow" => {
                self.arg(depth)?;
            }
            "vspace" => {
                self.arg(depth)?;
                out.push('\n');
            }
            "ref" => {
                self.arg(depth)?;
                out.push_str("<ref>");
            }
            "cite" => {
                self.arg(depth)?;
                out.push_str("<cit.>");
            }
            "stackrel" | "overset" | "underset" => {
                out.push_str(&self.arg(depth)?.unwrap_or_default());
                out.push_str(&self.arg(depth)?.unwrap_or_default());
            }
            "vec" | "hat" | "bar" | "tilde" | "dot" | "ddot" | "check" | "breve" | "acute"
            | "grave" => {
                let a = self.arg(depth)?.unwrap_or_default();
                out.push_str(&a);
                out.push(match name {
                    "vec" => '\u{20d7}',
                    "hat" => '\u{302}',
                    "bar" => '\u{305}',
                    "tilde" => '\u{303}',
                    "dot" => '\u{307}',
                    "ddot" => '\u{308}',
                    "check" => '\u{30c}',
                    "breve" => '\u{306}',
                    "acute" => '\u{301}',
                    _ => '\u{300}',
                });
            }
            "mathbf" | "mathbb" | "mathit" | "mathsf" | "mathtt" => {
                let a = self.arg(depth)?.unwrap_or_default();
                out.extend(a.chars().map(|c| math_alphabet(name, c)));
            }
            "not" => {
                if self.peek() == Some('=') {
                    self.i += 1;
                    out.push('\u{2260}');
                } else if let Some(a) = self.arg(depth)? {
                    out.push_str(&a);
                    out.push('\u{338}');
                }
            }
            "begin" => {
                let env = self.arg(depth)?.unwrap_or_default();
                return self.environment(env.trim(), out, depth).map(|()| false);
            }
            "end" => {
                self.arg(depth)?;
                return Ok(stop == Stop::Env);
            }
            _ => {} // unknown or layout-only macro: nothing
        }
        Ok(false)
    }

    fn environment(&mut self, env: &str, out: &mut String, depth: usize) -> Result<(), LatexError> {
        if env == "array" || env == "tabular" {
            self.arg(depth)?; // column spec
        }
        let mut body = String::new();
        self.seq(&mut body, Stop::Env, depth + 1)?;
        let matrix = matches!(
            env,
            "pmatrix"
                | "bmatrix"
                | "matrix"
                | "vmatrix"
                | "Vmatrix"
                | "Bmatrix"
                | "smallmatrix"
                | "array"
                | "tabular"
        );
        if matrix {
            let rows: Vec<String> = body
                .split('\n')
                .map(|row| row.split('&').map(str::trim).collect::<Vec<_>>().join(" "))
                .filter(|r| !r.is_empty())
                .collect();
            if rows.is_empty() {
                return Err(LatexError);
            }
            out.push_str("[ ");
            out.push_str(&rows.join("; "));
            out.push_str(" ]");
        } else {
            out.push_str(&body.replace('&', " "));
        }
        Ok(())
    }
}

/// Argument-less macros and the text pylatexenc writes for them.
fn symbol(name: &str) -> Option<&'static str> {
    Some(match name {
        "pi" => "π",
        "infty" => "∞",
        "cup" => "∪",
        "cap" => "∩",
        "cdot" => "·",
        "times" => "×",
        "le" | "leq" => "≤",
        "ge" | "geq" => "≥",
        "neq" => "≠",
        "pm" => "±",
        "mp" => "∓",
        "in" => "∈",
        "notin" => "∉",
        "approx" => "≈",
        "to" | "rightarrow" => "→",
        "leftarrow" => "←",
        "Rightarrow" => "⇒",
        "longrightarrow" => "⟶",
        "mapsto" => "↦",
        "uparrow" => "↑",
        "angle" => "∠",
        "circ" => "∘",
        "dots" | "ldots" | "textellipsis" => "…",
        "cdots" => "⋯",
        "sum" => "∑",
        "int" => "∫",
        "emptyset" | "varnothing" => "∅",
        "setminus" => "∖",
        "sim" => "∼",
        "cong" => "≅",
        "equiv" => "≡",
        "forall" => "∀",
        "exists" => "∃",
        "subset" => "⊂",
        "subseteq" => "⊆",
        "perp" => "⊥",
        "parallel" => "∥",
        "partial" => "∂",
        "nabla" => "∇",
        "bullet" => "∙",
        "star" => "⋆",
        "ast" => "∗",
        "div" => "÷",
        "oplus" => "⊕",
        "otimes" => "⊗",
        "leqslant" => "⩽",
        "geqslant" => "⩾",
        "ll" => "≪",
        "gg" => "≫",
        "propto" => "∝",
        "aleph" => "ℵ",
        "hbar" => "ħ",
        "ell" => "ℓ",
        "wedge" => "∧",
        "vee" => "∨",
        "lnot" => "¬",
        "top" => "⊤",
        "square" => "□",
        "blacksquare" => "▪",
        "surd" => "√",
        "backslash" | "textbackslash" => "\\",
        "vert" | "mid" | "lvert" | "rvert" => "|",
        "Vert" => "‖",
        "langle" => "⟨",
        "rangle" => "⟩",
        "lfloor" => "⌊",
        "rfloor" => "⌋",
        "lceil" => "⌈",
        "rceil" => "⌉",
        "prime" => "'",
        "dagger" => "†",
        "textdegree" => "°",
        "quad" => "  ",
        "qquad" => "    ",
        "textendash" => "–",
        "textemdash" => "—",
        "textasciitilde" => "~",
        "sin" | "cos" | "tan" | "sinh" | "cosh" | "tanh" | "arcsin" | "arccos" | "arctan"
        | "log" | "ln" | "exp" | "lim" | "max" | "min" => return Some(named_operator(name)),
        "alpha" => "α",
        "beta" => "β",
        "gamma" => "γ",
        "delta" => "δ",
        "epsilon" => "ϵ",
        "varepsilon" => "ε",
        "zeta" => "ζ",
        "eta" => "η",
        "theta" => "θ",
        "vartheta" => "ϑ",
        "iota" => "ι",
        "kappa" => "κ",
        "lambda" => "λ",
        "mu" => "μ",
        "nu" => "ν",
        "xi" => "ξ",
        "rho" => "ρ",
        "sigma" => "σ",
        "tau" => "τ",
        "upsilon" => "υ",
        "phi" => "ϕ",
        "varphi" => "φ",
        "chi" => "χ",
        "psi" => "ψ",
        "omega" => "ω",
        "Gamma" => "Γ",
        "Delta" => "Δ",
        "Theta" => "Θ",
        "Lambda" => "Λ",
        "Xi" => "Ξ",
        "Pi" => "Π",
        "Sigma" => "Σ",
        "Upsilon" => "Υ",
        "Phi" => "Φ",
        "Psi" => "Ψ",
        "Omega" => "Ω",
        _ => return None,
    })
}

fn named_operator(name: &str) -> &'static str {
    match name {
        "sin" => "sin",
        "cos" => "cos",
        "tan" => "tan",
        "sinh" => "sinh",
        "cosh" => "cosh",
        "tanh" => "tanh",
        "arcsin" => "arcsin",
        "arccos" => "arccos",
        "arctan" => "arctan",
        "log" => "log",
        "ln" => "ln",
        "exp" => "exp",
        "lim" => "lim",
        "max" => "max",
        _ => "min",
    }
}

/// Letters in the Unicode mathematical alphabets pylatexenc uses for `\mathbf` and
/// friends; digits and everything else pass through.
fn math_alphabet(style: &str, c: char) -> char {
    let (upper, lower, holes): (u32, u32, &[(char, char)]) = match style {
        "mathbf" => (0x1D400, 0x1D41A, &[]),
        "mathit" => (0x1D434, 0x1D44E, &[('h', 'ℎ')]),
        "mathsf" => (0x1D5A0, 0x1D5BA, &[]),
        "mathtt" => (0x1D670, 0x1D68A, &[]),
        _ => (
            0x1D538,
            0x1D552,
            &[
                ('C', 'ℂ'),
                ('H', 'ℍ'),
                ('N', 'ℕ'),
                ('P', 'ℙ'),
                ('Q', 'ℚ'),
                ('R', 'ℝ'),
                ('Z', 'ℤ'),
            ],
        ),
    };
    if let Some(&(_, h)) = holes.iter().find(|(k, _)| *k == c) {
        return h;
    }
    let mapped = if c.is_ascii_uppercase() {
        char::from_u32(upper + (c as u32 - 'A' as u32))
    } else if c.is_ascii_lowercase() {
        char::from_u32(lower + (c as u32 - 'a' as u32))
    } else {
        None
    };
    mapped.unwrap_or(c)
}

#[cfg(test)]
mod tests {
    use super::latex_to_text as t;

    #[test]
    fn frac_becomes_slash_without_parentheses() {
        assert_eq!(t(r"\frac{a+b}{c}").unwrap(), "a+b/c");
        assert_eq!(t(r"\frac12").unwrap(), "1/2");
        assert_eq!(t(r"\frac{\sqrt{3}}{2}").unwrap(), "√(3)/2");
    }

    #[test]
    fn sqrt_drops_the_index_and_needs_an_argument() {
        assert_eq!(t(r"\sqrt[3]{2}").unwrap(), "√(2)");
        assert_eq!(t(r"\sqrt3").unwrap(), "√(3)");
        assert!(t(r"\sqrt").is_err());
    }

    #[test]
    fn symbols_become_unicode_and_unknown_macros_vanish() {
        assert_eq!(t(r"\pi r^2").unwrap(), "πr^2");
        assert_eq!(t(r"\sin x").unwrap(), "sinx");
        assert_eq!(t(r"\zzz{a}").unwrap(), "a");
        assert_eq!(t(r"\sec").unwrap(), "");
        assert_eq!(t(r"\not=").unwrap(), "≠");
    }

    #[test]
    fn text_macros_keep_their_argument_and_mbox_drops_it() {
        assert_eq!(t(r"\text{ cm}").unwrap(), " cm");
        assert_eq!(t(r"\mbox{x}").unwrap(), "");
        assert_eq!(t(r"\mathbf{v}").unwrap(), "𝐯");
        assert_eq!(t(r"\mathbf{1}").unwrap(), "1");
    }

    #[test]
    fn matrices_render_as_bracketed_rows() {
        assert_eq!(
            t(r"\begin{pmatrix}1&2\\3&4\end{pmatrix}").unwrap(),
            "[ 1 2; 3 4 ]"
        );
        assert!(t(r"\begin{pmatrix}").is_err());
    }

    #[test]
    fn special_characters_follow_pylatexenc() {
        assert_eq!(t("a~b").unwrap(), "a\u{a0}b");
        assert_eq!(t(r"\{1,2\}").unwrap(), "{1,2}");
        assert_eq!(t(r"a\\b").unwrap(), "a\nb");
        assert_eq!(t(r"\(x\)").unwrap(), "x");
    }

    #[test]
    fn very_deep_nesting_fails_instead_of_overflowing_the_stack() {
        let deep = "{".repeat(20_000) + "1" + &"}".repeat(20_000);
        assert!(t(&deep).is_err());
    }
}
