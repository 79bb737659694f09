//! Rule-based verifiers: extraction, normalisation and equivalence, configured by
//! `reward_rules/*.toml`. The `mathruler` rule set is Spotlight's reward and metric:
//! it reproduces the paper's grader (PAPO-Eval's space strip, mathruler 0.1.0's last
//! `\boxed{}` and `grade_answer`) without Python, without evaluating text as code, and
//! with bounded time and memory on any input.

pub mod adversarial;
pub mod choice;
pub mod grader;
pub mod latex2text;
pub mod lookup;
pub mod mathruler;
pub mod pyfloat;
pub mod rules;
pub mod symbolic;

use std::path::PathBuf;

pub use grader::{GradeOutcome, Grader};
pub use lookup::{resolve, ResolvedRules, RulesRecord};
pub use rules::RuleSet;

/// Errors loading rule sets.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// No builtin rule set of that name (and no file at that path).
    #[error("unknown rule set `{name}` (not a file; builtin sets: {available})")]
    UnknownRuleSet { name: String, available: String },
    /// A rule file could not be read.
    #[error("cannot read rule set {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A rule file is not valid TOML for the schema.
    #[error("{origin}: {message}")]
    Toml { origin: String, message: String },
    /// A rule file parses but makes no sense (no components, bad regex...).
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// Runs one grading call so that a panic inside it (a verifier bug on some odd input)
/// becomes that call's error instead of taking down its thread and the rows after it.
///
/// The verifiers hold no state across calls, so nothing a panic interrupts is observed
/// afterwards (hence `AssertUnwindSafe`).
pub fn isolate<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a non-text panic".to_string());
        format!("the grader panicked: {message}")
    })
}

/// The verdict on one response.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Grade {
    /// The answer the verdict component extracted (`None`: no answer found).
    pub extracted: Option<String>,
    /// The verdict component scored 1.
    pub correct: bool,
    /// `sum(weight * score)` over the components.
    pub reward: f64,
    /// Each component's name and score, in rule-file order.
    pub components: Vec<(String, f64)>,
    /// Why the verdict component decided as it did.
    pub reason: String,
}

/// A grade plus the output of every extraction/normalisation step.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TracedGrade {
    pub grade: Grade,
    pub steps: Vec<(String, String)>,
}
