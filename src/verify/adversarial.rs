//! Adversarial inputs for the verifier: what a model (or an attacker) can write that
//! hangs, overflows or explodes naive graders. Used by the property tests and by the
//! worst-case benchmark (`cargo bench --bench verify`), so both measure the same set.

/// One adversarial case: a name, the response, the ground truth, and mathruler's verdict
/// where it has one (`None` where mathruler hangs or has no meaningful verdict).
pub struct AdversarialCase {
    pub name: &'static str,
    pub response: String,
    pub ground_truth: &'static str,
    pub expected: Option<bool>,
}

fn boxed(s: &str) -> String {
    format!("The answer is \\boxed{{{s}}}.")
}

/// The adversarial set (about 40 inputs, up to 1 MB each).
pub fn cases() -> Vec<AdversarialCase> {
    let c = |name, response: String, ground_truth, expected| AdversarialCase {
        name,
        response,
        ground_truth,
        expected,
    };
    let nested = |open: &str, close: &str, n: usize, inner: &str| {
        format!("{}{inner}{}", open.repeat(n), close.repeat(n))
    };
    vec![
        c(
            "1 MB response, box at end",
            format!("{}{}", "a".repeat(1_000_000), boxed("12")),
            "12",
            Some(true),
        ),
        c(
            "1 MB of backslashes",
            "\\".repeat(1_000_000),
            "1",
            Some(false),
        ),
        c(
            "1 MB of `\\boxed{` openings",
            "\\boxed{".repeat(150_000),
            "1",
            Some(false),
        ),
        c(
            "1 MB box content",
            boxed(&"9".repeat(1_000_000)),
            "1",
            Some(false),
        ),
        c(
            "1 MB of digits with thousands commas",
            boxed(&"1,000".repeat(200_000)),
            "1",
            Some(false),
        ),
        c(
            "20000-deep braces in box",
            boxed(&nested("{", "}", 20_000, "12")),
            "12",
            Some(true),
        ),
        c(
            "20000-deep braces with latex",
            boxed(&nested("{", "}", 20_000, "\\frac{1}{2}")),
            "\\frac{1}{2}",
            None,
        ),
        c(
            "20000-deep parentheses",
            boxed(&nested("(", ")", 20_000, "1")),
            "1",
            None,
        ),
        c(
            "20000 nested fracs",
            boxed(&nested("\\frac{1}{", "}", 20_000, "2")),
            "1",
            Some(false),
        ),
        c(
            "20000 nested sqrt",
            boxed(&nested("\\sqrt{", "}", 20_000, "2")),
            "1",
            Some(false),
        ),
        c(
            "20000 unary minus",
            boxed(&format!("{}1", "-".repeat(20_000))),
            "1",
            None,
        ),
        c(
            "10^{10^{10}}",
            boxed("10^{10^{10}}"),
            "10^{10^{10}}",
            Some(true),
        ),
        c("10^{10^{10}} vs 1", boxed("10^{10^{10}}"), "1", Some(false)),
        c("9**9**9", boxed("9**9**9"), "1", None),
        c("9**9**9 vs x", boxed("9**9**9"), "x", None),
        c("2**2**2**2**2", boxed("2**2**2**2**2"), "2", Some(false)),
        c("(10**1000000)", boxed("(10**1000000)"), "1", Some(false)),
        c("2^{100000}", boxed("2^{100000}"), "1", Some(false)),
        c("1e1000000", boxed("1e1000000"), "1", Some(false)),
        c("99999999999!", boxed("99999999999!"), "1", Some(false)),
        c("100000!", boxed("100000!"), "x", None),
        c("(x+1)**100000", boxed("(x+1)**100000"), "x", None),
        c(
            "((x+1)**2)**2 ten times",
            boxed(&format!("{}x+1{}", "(".repeat(10), ")**2".repeat(10))),
            "x",
            None,
        ),
        c(
            "(x+y+1)**256",
            boxed("(x+y+1)**256"),
            "(x+y+1)**256",
            Some(true),
        ),
        c("(x+y+1)**255 vs expanded", boxed("(x+y+1)**255"), "x", None),
        c(
            "5000-digit integer",
            boxed(&"7".repeat(5000)),
            "1",
            Some(false),
        ),
        c(
            "5000-digit fraction",
            boxed(&format!("{}/{}", "9".repeat(5000), "7".repeat(5000))),
            "1",
            Some(false),
        ),
        c(
            "5000-digit decimal",
            boxed(&format!("0.{}", "3".repeat(5000))),
            "\\frac{1}{3}",
            None,
        ),
        c(
            "huge binomial",
            boxed("\\binom{100000}{50000}"),
            "1",
            Some(false),
        ),
        c(
            "3000-term sum",
            boxed(&vec!["x"; 3000].join("+")),
            "3000x",
            None,
        ),
        c(
            "2000-term polynomial product",
            boxed(&vec!["(x+1)"; 2000].join("")),
            "1",
            None,
        ),
        c(
            "30x30 matrix",
            boxed(&format!(
                "\\begin{{pmatrix}}{}\\end{{pmatrix}}",
                vec![vec!["1"; 30].join("&"); 30].join("\\\\")
            )),
            "1",
            Some(false),
        ),
        c(
            "100k spaces in box",
            boxed(&format!("2{}", " ".repeat(100_000))),
            "2",
            Some(true),
        ),
        c(
            "100k spaces around slashes",
            format!("{}/{}", " ".repeat(100_000), boxed("1")),
            "1",
            Some(true),
        ),
        c(
            "20000 inline maths",
            "$x$ ".repeat(20_000),
            "1",
            Some(false),
        ),
        c(
            "10000 dollar signs then box",
            format!("{}{}", "$".repeat(10_000), boxed("1")),
            "1",
            Some(true),
        ),
        c(
            "unbalanced braces",
            "\\boxed{{{{{{12".to_string(),
            "12",
            Some(false),
        ),
        c(
            "NUL and zero-width",
            boxed("1\u{0}2\u{200b}"),
            "12",
            Some(false),
        ),
        c("fullwidth digits", boxed("１２"), "12", Some(true)),
        c("lambda injection", boxed("(lambda: 1)()"), "1", Some(false)),
        c(
            "import injection",
            boxed("__import__('os').system('true')"),
            "1",
            Some(false),
        ),
        c("memory bomb list", boxed("[1]*10**9"), "1", Some(false)),
        c("e tower", boxed("e^{e^{e^{e^{e}}}}"), "1", Some(false)),
        c(
            "symbolic power tower",
            boxed("x^{2^{2^{2^{2^{2}}}}}"),
            "x^{2}",
            Some(false),
        ),
        c("float overflow", boxed("1.5e308*10"), "1", None),
        c(
            "huge sqrt",
            boxed(&format!("\\sqrt{{{}}}", "9".repeat(60))),
            "1",
            Some(false),
        ),
        c(
            "sqrt of big prime-ish",
            boxed("\\sqrt{9999999967}"),
            "1",
            Some(false),
        ),
        c(
            "many thousands separators",
            boxed(&format!("1{}", ",000".repeat(5_000))),
            "1",
            Some(false),
        ),
    ]
}
