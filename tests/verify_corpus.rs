//! Agreement with the paper's grader on the third-party verifier corpus, read in place
//! from `../shared/verifier-corpus/cases.jsonl` (skipped where it is absent).

use spotlight::verify::RuleSet;

const CORPUS: &str = "verifier-corpus/cases.jsonl";

struct Case {
    id: String,
    response: String,
    ground_truth: String,
    papo: Option<bool>,
    mathruler: Option<bool>,
}

fn load() -> Option<Vec<Case>> {
    let path = spotlight::testing::shared_path(CORPUS)?;
    let text = std::fs::read_to_string(&path).expect("the verifier corpus is readable");
    let cases = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("corpus line is JSON");
            Case {
                id: v["id"].as_str().unwrap_or_default().to_string(),
                response: v["response"].as_str().unwrap_or_default().to_string(),
                ground_truth: v["ground_truth"].as_str().unwrap_or_default().to_string(),
                papo: v["papo_eval_correct"].as_bool(),
                mathruler: v["mathruler_correct"].as_bool(),
            }
        })
        .collect();
    Some(cases)
}

#[test]
fn mathruler_rules_agree_with_papo_eval_on_the_corpus() {
    let Some(cases) = load() else { return };
    let rules = RuleSet::builtin("mathruler").expect("builtin mathruler");
    let (mut agree, mut total) = (0, 0);
    for c in &cases {
        let Some(expected) = c.papo else { continue }; // "timeout" rows are left out
        total += 1;
        let g = rules.grade(&c.response, &c.ground_truth, None);
        if g.correct == expected {
            agree += 1;
        } else {
            eprintln!(
                "DISAGREE {} expected={} got={} extracted={:?} gt={:?} reason={}",
                c.id,
                expected,
                g.correct,
                g.extracted
                    .as_deref()
                    .map(|s| s.chars().take(80).collect::<String>()),
                c.ground_truth,
                g.reason
            );
        }
    }
    let rate = agree as f64 / total as f64;
    eprintln!(
        "papo_eval_correct agreement: {agree}/{total} = {:.2}%",
        rate * 100.0
    );
    assert!(rate >= 0.995, "agreement {agree}/{total} below 99.5%");
}

#[test]
fn raw_mathruler_agrees_with_mathruler_correct_on_the_corpus() {
    let Some(cases) = load() else { return };
    let rules = RuleSet::builtin("mathruler_raw").expect("builtin mathruler_raw");
    let (mut agree, mut total) = (0, 0);
    for c in &cases {
        let Some(expected) = c.mathruler else {
            continue;
        };
        total += 1;
        let g = rules.grade(&c.response, &c.ground_truth, None);
        if g.correct == expected {
            agree += 1;
        } else {
            eprintln!(
                "DISAGREE(raw) {} expected={} got={} reason={}",
                c.id, expected, g.correct, g.reason
            );
        }
    }
    let rate = agree as f64 / total as f64;
    eprintln!(
        "mathruler_correct agreement: {agree}/{total} = {:.2}%",
        rate * 100.0
    );
    assert!(rate >= 0.995, "agreement {agree}/{total} below 99.5%");
}

/// Cases written for Spotlight by `tools/mathruler/gen_heldout.py` (templates over
/// integers, fractions, roots, pi, intervals, tuples, degrees, units, percents, text,
/// polynomials, sets, mixed numbers, matrices in six response wrappers), labelled by
/// the real mathruler 0.1.0 + PAPO strip. Not derived from the shared corpus.
#[test]
fn mathruler_rules_agree_with_papo_eval_on_spotlight_heldout_cases() {
    let text = include_str!("fixtures/verify_heldout.jsonl");
    let rules = RuleSet::builtin("mathruler").expect("builtin mathruler");
    let (mut agree, mut total) = (0, 0);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).expect("fixture line is JSON");
        let expected = v["papo_eval_correct"].as_bool().expect("verdict");
        let g = rules.grade(
            v["response"].as_str().unwrap_or_default(),
            v["ground_truth"].as_str().unwrap_or_default(),
            None,
        );
        total += 1;
        if g.correct == expected {
            agree += 1;
        } else {
            eprintln!(
                "DISAGREE(heldout) {} expected={} got={} gt={:?} resp={:?} reason={}",
                v["id"], expected, g.correct, v["ground_truth"], v["response"], g.reason
            );
        }
    }
    eprintln!(
        "held-out agreement: {agree}/{total} = {:.2}%",
        agree as f64 * 100.0 / total as f64
    );
    assert!(
        agree as f64 / total as f64 >= 0.995,
        "agreement {agree}/{total} below 99.5%"
    );
}
