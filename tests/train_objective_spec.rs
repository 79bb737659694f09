//! The objective reproduces every field of every worked example of the spec
//! (`../shared/spec/vppo-objective-examples.jsonl`, read in place) to 1e-6 relative to
//! max(1, |value|), through the library and through `spotlight debug vppo-objective`.

use candle_core::DType;
use spotlight::train::cases::{
    compare_with_expected, evaluate_case, ObjectiveCase, ObjectiveResult, RESULT_FIELDS,
};

const EXAMPLES: &str = "spec/vppo-objective-examples.jsonl";
const TOLERANCE: f64 = 1e-6;

fn load_cases() -> Option<Vec<ObjectiveCase>> {
    let path = spotlight::testing::shared_path(EXAMPLES)?;
    let text = std::fs::read_to_string(&path).expect("the worked examples are readable");
    let cases: Vec<ObjectiveCase> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("worked example parses"))
        .collect();
    assert!(!cases.is_empty(), "{} has no cases", path.display());
    Some(cases)
}

#[test]
fn every_field_of_every_worked_example_matches_in_f64() {
    let Some(cases) = load_cases() else { return };
    let mut worst = vec![0.0f64; RESULT_FIELDS.len()];
    for case in &cases {
        let expected = case
            .expected
            .as_ref()
            .expect("worked examples carry `expected`");
        let result = evaluate_case(case, DType::F64).expect("case evaluates");
        for (k, agreement) in compare_with_expected(&result, expected).iter().enumerate() {
            let err = agreement.max_error.unwrap_or_else(|| {
                panic!("{}: field {} missing or reshaped", case.id, agreement.field)
            });
            assert!(
                err <= TOLERANCE,
                "{}: field {} differs by {err:e} (relative)",
                case.id,
                agreement.field
            );
            worst[k] = worst[k].max(err);
        }
    }
    for (field, err) in RESULT_FIELDS.iter().zip(&worst) {
        eprintln!(
            "{field:<22} max rel error over {} cases: {err:.3e}",
            cases.len()
        );
    }
}

#[test]
fn the_training_dtype_f32_stays_close_to_the_examples() {
    // The same code in float32 (the training dtype): the loss and gradient agree to float32
    // precision, and the discrete decisions (TGF masks) are identical.
    let Some(cases) = load_cases() else { return };
    let mut worst = vec![0.0f64; RESULT_FIELDS.len()];
    for case in &cases {
        let expected = case
            .expected
            .as_ref()
            .expect("worked examples carry `expected`");
        let result = evaluate_case(case, DType::F32).expect("case evaluates in f32");
        for (k, agreement) in compare_with_expected(&result, expected).iter().enumerate() {
            let err = agreement.max_error.expect("field present");
            worst[k] = worst[k].max(err);
            assert!(
                err <= 1e-4,
                "{}: f32 field {} differs by {err:e}",
                case.id,
                agreement.field
            );
            if agreement.field == "token_mask" {
                assert_eq!(err, 0.0, "{}: TGF mask differs in f32", case.id);
            }
        }
    }
    for (field, err) in RESULT_FIELDS.iter().zip(&worst) {
        eprintln!(
            "f32 {field:<22} max rel error over {} cases: {err:.3e}",
            cases.len()
        );
    }
}

#[test]
fn the_debug_command_prints_one_matching_line_per_case() {
    let Some(cases) = load_cases() else { return };
    let path = spotlight::testing::shared_path(EXAMPLES).expect("load_cases found it");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_spotlight"))
        .args(["debug", "vppo-objective", "--check", "--input"])
        .arg(&path)
        .output()
        .expect("spotlight runs");
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8 output");
    let lines: Vec<ObjectiveResult> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each output line is a result"))
        .collect();
    assert_eq!(lines.len(), cases.len());
    for (case, result) in cases.iter().zip(&lines) {
        assert_eq!(result.id, case.id);
        let expected = case.expected.as_ref().expect("expected");
        for agreement in compare_with_expected(result, expected) {
            assert!(
                agreement.max_error.is_some_and(|e| e <= TOLERANCE),
                "{agreement:?}"
            );
        }
    }
}

#[test]
fn the_debug_command_rejects_a_malformed_line_with_exit_2_naming_the_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("bad.jsonl");
    std::fs::write(&file, "{\"id\": \"x\"}\n").expect("write");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_spotlight"))
        .args(["debug", "vppo-objective", "--input"])
        .arg(&file)
        .output()
        .expect("spotlight runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.jsonl:1"), "{stderr}");
}
