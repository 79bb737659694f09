//! What the evaluation tests share: a stand-in grader (exact match against the truth), the
//! grader factory `EvalRequest` takes, and the project's benchmark registry.

use std::path::Path;
use std::sync::Arc;

use spotlight::bench::Registry;
use spotlight::eval::{EvalError, GradeOutcome, Grader};

/// A stand-in grader for runner tests: correct when the response is exactly the truth.
pub struct ExactMatch;

impl Grader for ExactMatch {
    fn grade(&self, response: &str, truth: &str, _options: Option<&[String]>) -> GradeOutcome {
        let correct = response.trim() == truth;
        GradeOutcome {
            extracted: Some(response.trim().to_string()),
            correct,
            reward: correct as u8 as f64,
            components: vec![("accuracy".into(), correct as u8 as f64)],
        }
    }
}

/// `EvalRequest::grader_for` answering [`ExactMatch`] for every rule set.
pub fn exact(name: &str) -> Result<(Arc<dyn Grader>, spotlight::verify::RulesRecord), EvalError> {
    let record = spotlight::verify::RulesRecord {
        name: name.to_string(),
        origin: "test: exact match".to_string(),
        sha256: String::new(),
    };
    Ok((Arc::new(ExactMatch), record))
}

pub fn registry() -> Registry {
    Registry::load(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap()
}
