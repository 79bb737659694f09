//! Property tests: the verifier terminates on anything and gives the verdicts the
//! rules imply (reflexivity, exact arithmetic, integer distinctness), plus the
//! adversarial set with its expected verdicts. These assert verdicts, never time.

use proptest::prelude::*;
use spotlight::verify::adversarial;
use spotlight::verify::RuleSet;

fn raw() -> RuleSet {
    RuleSet::builtin("mathruler_raw").unwrap()
}

/// Strings built from the pieces answers (and attacks) are made of.
fn latexish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just("\\frac".to_string()),
        Just("\\sqrt".to_string()),
        Just("\\boxed{".to_string()),
        Just("\\text{ ".to_string()),
        Just("^".to_string()),
        Just("**".to_string()),
        Just("!".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just("[".to_string()),
        Just(",".to_string()),
        Just("/".to_string()),
        Just(" ".to_string()),
        Just("\\pi".to_string()),
        Just("\\left(".to_string()),
        Just("\\begin{pmatrix}".to_string()),
        Just("\\end{pmatrix}".to_string()),
        Just("$".to_string()),
        Just("%".to_string()),
        Just("=".to_string()),
        Just(".".to_string()),
        Just("-".to_string()),
        Just("x".to_string()),
        Just("e".to_string()),
        "[0-9]{1,30}",
        "\\PC{0,3}",
    ];
    prop::collection::vec(piece, 0..60).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, rng_seed: proptest::test_runner::RngSeed::Fixed(7), ..ProptestConfig::default() })]

    #[test]
    fn any_input_terminates_with_a_verdict(resp in latexish(), gt in latexish()) {
        for name in ["mathruler", "multiple_choice", "mathruler_format"] {
            let g = RuleSet::builtin(name).unwrap().grade(&resp, &gt, None);
            prop_assert!(g.reward.is_finite());
            prop_assert!(g.correct == (g.components.iter().any(|(n, s)| n == "accuracy" && *s >= 1.0)));
        }
    }

    #[test]
    fn boxed_answer_equals_itself(ans in latexish()) {
        // mathruler extracts up to the balancing brace: keep answers brace-free and
        // box-free so extraction returns them unchanged.
        let ans = ans.replace("\\boxed{", "").replace(['{', '}'], "");
        let ans = ans.trim().to_string();
        prop_assume!(!ans.is_empty());
        let ok1 = raw().grade(&format!("\\boxed{{{ans}}}"), &ans, None).correct;
        prop_assert!(ok1);
    }

    #[test]
    fn distinct_integers_differ(a in -1_000_000i64..1_000_000, b in -1_000_000i64..1_000_000) {
        prop_assume!(a != b);
        let ok2 = !raw().grade(&format!("\\boxed{{{a}}}"), &b.to_string(), None).correct;
        prop_assert!(ok2);
    }

    #[test]
    fn reduced_fraction_equals_its_exact_decimal(n in 1u32..1000, k in 0u32..4, j in 0u32..4) {
        // n / (2^k 5^j) has a finite decimal expansion.
        let d = 2u64.pow(k) * 5u64.pow(j);
        let g = gcd(n as u64, d);
        let (n, d) = (n as u64 / g, d / g);
        prop_assume!(d > 1);
        let dec = format!("{}", n as f64 / d as f64);
        prop_assume!(dec.len() <= 15);
        let ok3 = raw().grade(&format!("\\boxed{{{dec}}}"), &format!("\\frac{{{n}}}{{{d}}}"), None).correct;
        prop_assert!(ok3);
    }

    #[test]
    fn expanded_square_equals_factored(a in 1i64..50, b in 1i64..50) {
        let expanded = format!("{}x^2+{}x+{}", a * a, 2 * a * b, b * b);
        let factored = format!("({a}x+{b})^2");
        let ok4 = raw().grade(&format!("\\boxed{{{factored}}}"), &expanded, None).correct;
        prop_assert!(ok4);
        let wrong = format!("{}x^2+{}x+{}", a * a, 2 * a * b, b * b + 1);
        let ok5 = !raw().grade(&format!("\\boxed{{{factored}}}"), &wrong, None).correct;
        prop_assert!(ok5);
    }

    #[test]
    fn simplified_radical_equals_unsimplified(a in 2u32..30, c in prop::sample::select(vec![2u32, 3, 5, 6, 7, 10])) {
        let got = format!("\\boxed{{\\sqrt{{{}}}}}", a * a * c);
        let ok6 = raw().grade(&got, &format!("{a}\\sqrt{{{c}}}"), None).correct;
        prop_assert!(ok6);
        let ok7 = !raw().grade(&got, &format!("{}\\sqrt{{{c}}}", a + 1), None).correct;
        prop_assert!(ok7);
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[test]
fn adversarial_set_terminates_with_expected_verdicts() {
    let rules = RuleSet::builtin("mathruler").unwrap();
    let cases = adversarial::cases();
    for c in &cases {
        let g = rules.grade(&c.response, c.ground_truth, None);
        if let Some(expected) = c.expected {
            assert_eq!(g.correct, expected, "{}: {}", c.name, g.reason);
        }
    }
    eprintln!("{} adversarial cases graded", cases.len());
}
