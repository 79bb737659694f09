//! What evaluation, training and perception need of a verifier: anything that turns
//! (response, ground truth, options) into a verdict. The benchmark's reward rule set
//! ([`crate::verify::RuleSet`]) is the one used in practice; the trait keeps the runner and
//! the trainer testable with hand-written graders. It lives with the verifiers because every
//! command that grades uses it, not only `eval` (which re-exports it).

/// A verdict with the reward and its components.
#[derive(Debug, Clone, PartialEq)]
pub struct GradeOutcome {
    pub extracted: Option<String>,
    pub correct: bool,
    pub reward: f64,
    pub components: Vec<(String, f64)>,
}

pub trait Grader: Send + Sync {
    fn grade(&self, response: &str, truth: &str, options: Option<&[String]>) -> GradeOutcome;
}

/// The benchmark's reward rule set is the grader used in practice.
impl Grader for crate::verify::RuleSet {
    fn grade(&self, response: &str, truth: &str, options: Option<&[String]>) -> GradeOutcome {
        let grade = crate::verify::RuleSet::grade(self, response, truth, options);
        GradeOutcome {
            extracted: grade.extracted,
            correct: grade.correct,
            reward: grade.reward,
            components: grade.components,
        }
    }
}
