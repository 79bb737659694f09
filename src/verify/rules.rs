//! Rule sets: an ordered, tagged list of steps per reward component, read from TOML
//! (`reward_rules/*.toml`, embedded in the binary, or a user file) so users can change
//! how answers are extracted, normalised and compared without recompiling.
//!
//! ```toml
//! name = "mathruler"
//! [[components]]
//! name = "accuracy"
//! weight = 1.0
//! type = "answer"
//! preprocess = [{ type = "strip_space_around", chars = "<>/" }]
//! extract = [{ type = "last_boxed" }]
//! compare = { type = "mathruler" }
//! ```
//! The reward is `sum(weight * component score)`; `correct` and `extracted` come from
//! the component marked `verdict = true` (else the first `answer` component).

use regex::Regex;
use serde::Deserialize;

use super::choice;
use super::latex2text::latex_to_text;
use super::mathruler::{self, Tracer};
use super::{Grade, TracedGrade, VerifyError};

/// The rule sets shipped in `reward_rules/`, embedded so the binary works anywhere.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "mathruler",
        include_str!("../../reward_rules/mathruler.toml"),
    ),
    (
        "mathruler_raw",
        include_str!("../../reward_rules/mathruler_raw.toml"),
    ),
    (
        "mathruler_format",
        include_str!("../../reward_rules/mathruler_format.toml"),
    ),
    (
        "multiple_choice",
        include_str!("../../reward_rules/multiple_choice.toml"),
    ),
    ("format", include_str!("../../reward_rules/format.toml")),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSetFile {
    name: String,
    #[serde(default)]
    description: String,
    components: Vec<ComponentFile>,
}

#[derive(Debug, Deserialize)]
struct ComponentFile {
    name: String,
    weight: f64,
    #[serde(default)]
    verdict: bool,
    #[serde(flatten)]
    scorer: ScorerFile,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ScorerFile {
    /// Extract an answer from the response and compare it with the ground truth.
    Answer {
        #[serde(default)]
        preprocess: Vec<Preprocess>,
        extract: Vec<Extract>,
        #[serde(default)]
        missing_answer: MissingAnswer,
        #[serde(default)]
        normalize: Vec<Normalize>,
        compare: Compare,
    },
    /// 1 when the whole response matches a regex (e.g. `<think>..</think>..\boxed{..}`).
    Format { pattern: String },
}

/// Steps applied to the whole response before extraction.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Preprocess {
    /// Remove whitespace around each of `chars` (PAPO-Eval's `\s*(<|>|/)\s*`).
    StripSpaceAround { chars: String },
    /// Drop a leading `<think>...</think>` block.
    StripThink,
}

/// Ways to find the answer; tried in order, the first that finds one wins.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Extract {
    /// Content of the last `\boxed{..}` with balanced braces (mathruler's rule).
    LastBoxed,
    /// Content of the last `\fbox{..}`.
    LastFbox,
    /// Text after the last "the answer is" / "final answer:" up to the end of the line.
    AnswerIs,
    /// A multiple-choice letter (or letters) named in free text.
    ChoiceLetter,
    /// The whole (trimmed) response.
    WholeResponse,
}

/// What to grade when no answer was found.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum MissingAnswer {
    /// Score 0 (the sensible behaviour).
    #[default]
    Zero,
    /// Grade the literal string "None", as mathruler's `extract_boxed_content` returns it
    /// (a label "None" then counts as correct: kept for verdict compatibility).
    NoneString,
}

/// Normalisation steps applied to both the answer and the ground truth, in order.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Normalize {
    /// Trim surrounding whitespace.
    Trim,
    /// Lowercase.
    Lowercase,
    /// Remove all whitespace.
    RemoveSpaces,
    /// Unwrap an enclosing `\text{..}`.
    UnwrapText,
    /// Remove `$` signs.
    StripDollars,
    /// Remove `d,ddd` thousands separators.
    StripThousandsCommas,
    /// LaTeX to plain text (pylatexenc-compatible).
    LatexToText,
    /// The MATH dataset's `_strip_string` (first half of mathruler).
    Mathd,
    /// mathruler's `_normalize`.
    MathrulerNormalize,
}

/// How a normalised answer is judged against the ground truth.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Compare {
    /// mathruler's `grade_answer` (both normalisations, tuples, fractions, algebra).
    Mathruler,
    /// Strings equal.
    Exact,
    /// Multiple-choice letters (or option text when the row has `options`); multi-answer
    /// letters must match as a set.
    Choice,
}

/// The fields a component may have, by its `type`. serde cannot reject unknown fields of
/// a struct that flattens a tagged enum, so a typo (`normalise`, `verdit`) would be
/// ignored silently; this check names it with its line instead.
fn check_component_fields(text: &str, origin: &str) -> Result<(), VerifyError> {
    const COMMON: &[&str] = &["name", "weight", "verdict", "type"];
    const ANSWER: &[&str] = &[
        "preprocess",
        "extract",
        "missing_answer",
        "normalize",
        "compare",
    ];
    const FORMAT: &[&str] = &["pattern"];
    let doc: toml::Table = toml::from_str(text).map_err(|e| VerifyError::Toml {
        origin: origin.to_string(),
        message: e.to_string(),
    })?;
    let Some(components) = doc.get("components").and_then(|c| c.as_array()) else {
        return Ok(());
    };
    for (i, c) in components.iter().enumerate() {
        let Some(table) = c.as_table() else { continue };
        let specific: &[&str] = match table.get("type").and_then(|t| t.as_str()) {
            Some("answer") => ANSWER,
            Some("format") => FORMAT,
            _ => continue, // serde has already named a missing or unknown type
        };
        if let Some(field) = table
            .keys()
            .find(|k| !COMMON.contains(&k.as_str()) && !specific.contains(&k.as_str()))
        {
            let name = table.get("name").and_then(|n| n.as_str()).unwrap_or("?");
            let mut allowed: Vec<&str> = COMMON.iter().chain(specific).copied().collect();
            allowed.sort_unstable();
            return Err(VerifyError::Invalid {
                origin: origin.to_string(),
                message: format!(
                    "{}component {} (`{name}`): unknown field `{field}` (allowed: {})",
                    line_of(text, i, field).map_or(String::new(), |l| format!("line {l}: ")),
                    i + 1,
                    allowed.join(", ")
                ),
            });
        }
    }
    Ok(())
}

/// The 1-based line where `field = ` is written inside the `index`-th `[[components]]`
/// block (`None` for inline-table layouts, where the message still names the field).
fn line_of(text: &str, index: usize, field: &str) -> Option<usize> {
    let mut block: Option<usize> = None;
    let mut inside = false;
    for (n, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with("[[components]]") {
            block = Some(block.map_or(0, |b| b + 1));
            inside = true;
        } else if t.starts_with('[') {
            inside = false;
        } else if inside && block == Some(index) {
            let key = t.split('=').next().unwrap_or("").trim().trim_matches('"');
            if key == field {
                return Some(n + 1);
            }
        }
    }
    None
}

#[derive(Debug)]
enum Scorer {
    Answer {
        preprocess: Vec<Preprocess>,
        extract: Vec<Extract>,
        missing_answer: MissingAnswer,
        normalize: Vec<Normalize>,
        compare: Compare,
    },
    Format(Regex),
}

#[derive(Debug)]
struct Component {
    name: String,
    weight: f64,
    scorer: Scorer,
}

/// A loaded, validated rule set. Regexes are compiled once; `grade` takes `&self` and
/// the type is `Send + Sync`, so one instance serves many threads.
#[derive(Debug)]
pub struct RuleSet {
    name: String,
    description: String,
    components: Vec<Component>,
    verdict_index: usize,
}

impl RuleSet {
    /// One of the embedded `reward_rules/*.toml` by name.
    pub fn builtin(name: &str) -> Result<RuleSet, VerifyError> {
        let (_, text) = BUILTIN.iter().find(|(n, _)| *n == name).ok_or_else(|| {
            VerifyError::UnknownRuleSet {
                name: name.to_string(),
                available: BUILTIN
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", "),
            }
        })?;
        RuleSet::from_toml(text, &format!("builtin rule set `{name}`"))
    }

    /// Parse and validate TOML text; `origin` names the source in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<RuleSet, VerifyError> {
        let file: RuleSetFile = toml::from_str(text).map_err(|e| VerifyError::Toml {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        check_component_fields(text, origin)?;
        let invalid = |message: String| VerifyError::Invalid {
            origin: origin.to_string(),
            message,
        };
        if file.components.is_empty() {
            return Err(invalid("no [[components]]".into()));
        }
        let verdicts: Vec<&str> = file
            .components
            .iter()
            .filter(|c| c.verdict)
            .map(|c| c.name.as_str())
            .collect();
        if verdicts.len() > 1 {
            return Err(invalid(format!(
                "more than one component has `verdict = true` ({}): mark exactly one",
                verdicts.join(", ")
            )));
        }
        let mut components = Vec::new();
        let mut verdict_index = None;
        for (i, c) in file.components.into_iter().enumerate() {
            if !c.weight.is_finite() {
                return Err(invalid(format!(
                    "component `{}`: weight must be finite",
                    c.name
                )));
            }
            let scorer = match c.scorer {
                ScorerFile::Answer {
                    preprocess,
                    extract,
                    missing_answer,
                    normalize,
                    compare,
                } => {
                    if extract.is_empty() {
                        return Err(invalid(format!(
                            "component `{}`: `extract` needs at least one step",
                            c.name
                        )));
                    }
                    if c.verdict || verdict_index.is_none() {
                        verdict_index = Some(i);
                    }
                    Scorer::Answer {
                        preprocess,
                        extract,
                        missing_answer,
                        normalize,
                        compare,
                    }
                }
                ScorerFile::Format { pattern } => {
                    Scorer::Format(Regex::new(&pattern).map_err(|e| {
                        invalid(format!("component `{}`: bad pattern: {e}", c.name))
                    })?)
                }
            };
            if c.verdict && !matches!(scorer, Scorer::Answer { .. }) {
                verdict_index = Some(i);
            }
            components.push(Component {
                name: c.name,
                weight: c.weight,
                scorer,
            });
        }
        Ok(RuleSet {
            name: file.name,
            description: file.description,
            components,
            verdict_index: verdict_index.unwrap_or(0),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    /// Names of the components, in order (the columns `spotlight grade` writes).
    pub fn component_names(&self) -> Vec<&str> {
        self.components.iter().map(|c| c.name.as_str()).collect()
    }

    /// Grade one response.
    pub fn grade(&self, response: &str, ground_truth: &str, options: Option<&[String]>) -> Grade {
        self.run(response, ground_truth, options, None)
    }

    /// Grade one response, recording every step's output (for `spotlight grade`).
    pub fn grade_traced(
        &self,
        response: &str,
        ground_truth: &str,
        options: Option<&[String]>,
    ) -> TracedGrade {
        let mut steps = Vec::new();
        let grade = self.run(response, ground_truth, options, Some(&mut steps));
        TracedGrade { grade, steps }
    }

    fn run(
        &self,
        response: &str,
        gt: &str,
        options: Option<&[String]>,
        mut trace: Option<&mut Vec<(String, String)>>,
    ) -> Grade {
        let mut components = Vec::with_capacity(self.components.len());
        let mut reward = 0.0;
        let mut out = Grade {
            extracted: None,
            correct: false,
            reward: 0.0,
            components: Vec::new(),
            reason: String::new(),
        };
        for (i, c) in self.components.iter().enumerate() {
            let mut tr = Tracer(trace.as_deref_mut());
            let (score, extracted, reason) = c.score(response, gt, options, &mut tr);
            tr.step(
                &format!("[{}] score", c.name),
                &format!("{score} ({reason})"),
            );
            if i == self.verdict_index {
                out.extracted = extracted;
                out.correct = score >= 1.0;
                out.reason = reason;
            }
            reward += c.weight * score;
            components.push((c.name.clone(), score));
        }
        out.reward = reward;
        out.components = components;
        out
    }
}

impl Component {
    fn score(
        &self,
        response: &str,
        gt: &str,
        options: Option<&[String]>,
        tr: &mut Tracer,
    ) -> (f64, Option<String>, String) {
        match &self.scorer {
            Scorer::Format(re) => {
                let ok = re.is_match(response);
                (
                    if ok { 1.0 } else { 0.0 },
                    None,
                    if ok {
                        "format matches"
                    } else {
                        "format does not match"
                    }
                    .into(),
                )
            }
            Scorer::Answer {
                preprocess,
                extract,
                missing_answer,
                normalize,
                compare,
            } => {
                let mut text = std::borrow::Cow::Borrowed(response);
                for p in preprocess {
                    text = match p {
                        Preprocess::StripSpaceAround { chars } => {
                            let set: Vec<char> = chars.chars().collect();
                            mathruler::strip_space_around(&text, &set).into()
                        }
                        Preprocess::StripThink => match text.find("</think>") {
                            Some(i) if text.trim_start().starts_with("<think>") => {
                                text[i + "</think>".len()..].to_string().into()
                            }
                            _ => text,
                        },
                    };
                }
                let found = extract.iter().find_map(|e| extract_one(e, &text));
                tr.step("extracted", found.as_deref().unwrap_or("(no answer)"));
                let answer = match (&found, missing_answer) {
                    (Some(a), _) => a.clone(),
                    (None, MissingAnswer::NoneString) => "None".to_string(),
                    (None, MissingAnswer::Zero) => return (0.0, None, "no answer found".into()),
                };
                let mut a = answer;
                let mut g = gt.to_string();
                for n in normalize {
                    a = normalize_one(n, &a);
                    g = normalize_one(n, &g);
                    tr.step(&format!("{n:?}"), &a);
                }
                let (ok, reason) = match compare {
                    Compare::Mathruler => {
                        let v = mathruler::grade_answer(&a, &g, tr);
                        (v.correct, v.reason)
                    }
                    Compare::Exact => (
                        a == g,
                        if a == g {
                            "strings equal"
                        } else {
                            "strings differ"
                        }
                        .into(),
                    ),
                    Compare::Choice => {
                        let want = choice::resolve(&g, options);
                        let got = choice::resolve(&a, options);
                        match (want, got) {
                            (Some(w), Some(x)) if w == x => (true, "same choice".into()),
                            (Some(w), Some(x)) => (false, format!("chose {x:?}, expected {w:?}")),
                            (None, _) => (
                                a.trim() == g.trim(),
                                "ground truth is not a choice; compared as text".into(),
                            ),
                            (Some(_), None) => (false, "answer names no choice".into()),
                        }
                    }
                };
                (if ok { 1.0 } else { 0.0 }, found, reason)
            }
        }
    }
}

fn extract_one(e: &Extract, text: &str) -> Option<String> {
    match e {
        Extract::LastBoxed => mathruler::extract_last_boxed(text).map(str::to_string),
        Extract::LastFbox => mathruler::extract_last_macro(text, "\\fbox{").map(str::to_string),
        Extract::AnswerIs => {
            let lower = text.to_lowercase();
            // Byte offsets of to_lowercase may differ for non-ASCII text; only use ASCII-safe positions.
            let idx = [
                "the final answer is",
                "the answer is",
                "final answer:",
                "answer:",
            ]
            .iter()
            .filter_map(|k| lower.rfind(k).map(|i| i + k.len()))
            .max()?;
            if lower.len() != text.len() || !text.is_char_boundary(idx) {
                return None;
            }
            let rest = text[idx..].lines().next().unwrap_or("").trim();
            let rest = rest.trim_end_matches('.').trim_matches('$').trim();
            (!rest.is_empty()).then(|| rest.to_string())
        }
        Extract::ChoiceLetter => choice::extract_from_text(text),
        Extract::WholeResponse => Some(text.trim().to_string()),
    }
}

fn normalize_one(n: &Normalize, s: &str) -> String {
    match n {
        Normalize::Trim => s.trim().to_string(),
        Normalize::Lowercase => s.to_lowercase(),
        Normalize::RemoveSpaces => s.chars().filter(|c| !c.is_whitespace()).collect(),
        Normalize::UnwrapText => mathruler::unwrap_text(s).unwrap_or(s).to_string(),
        Normalize::StripDollars => s.replace('$', ""),
        Normalize::StripThousandsCommas => mathruler::strip_thousands_commas(s),
        Normalize::LatexToText => latex_to_text(s).unwrap_or_else(|_| s.to_string()),
        Normalize::Mathd => mathruler::mathd_normalize(s, &mut Tracer(None)),
        Normalize::MathrulerNormalize => mathruler::mathruler_normalize(s, &mut Tracer(None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_sets_can_be_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<RuleSet>();
        let r = RuleSet::builtin("mathruler").unwrap();
        let verdicts: Vec<bool> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|i| {
                    let r = &r;
                    s.spawn(move || r.grade(&format!("\\boxed{{{i}}}"), "2", None).correct)
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(verdicts, vec![false, false, true, false]);
    }

    #[test]
    fn every_builtin_rule_set_loads() {
        for (name, _) in BUILTIN {
            let r = RuleSet::builtin(name).unwrap();
            assert_eq!(r.name(), *name);
        }
    }

    #[test]
    fn unknown_builtin_names_the_available_ones() {
        let e = RuleSet::builtin("nope").unwrap_err().to_string();
        assert!(e.contains("mathruler"), "{e}");
    }

    #[test]
    fn unknown_step_types_are_rejected_with_the_origin() {
        let t = "name = \"x\"\n[[components]]\nname = \"a\"\nweight = 1.0\ntype = \"answer\"\nextract = [{type = \"telepathy\"}]\ncompare = {type = \"exact\"}\n";
        let e = RuleSet::from_toml(t, "my.toml").unwrap_err().to_string();
        assert!(e.contains("my.toml"), "{e}");
    }

    #[test]
    fn mathruler_set_strips_spaces_around_slash_before_grading() {
        let r = RuleSet::builtin("mathruler").unwrap();
        assert!(r.grade(r"\boxed{3 / 4}", "3/4", None).correct);
    }

    #[test]
    fn mathruler_set_grades_a_missing_box_as_the_string_none() {
        let r = RuleSet::builtin("mathruler").unwrap();
        let g = r.grade("no box here", "None", None);
        assert!(g.correct);
        assert_eq!(g.extracted, None);
        assert!(!r.grade("no box here", "12", None).correct);
    }

    #[test]
    fn composed_reward_is_the_weighted_sum() {
        let r = RuleSet::builtin("mathruler_format").unwrap();
        let g = r.grade("<think>x</think> so \\boxed{2}", "2", None);
        assert!((g.reward - 1.0).abs() < 1e-12);
        let g = r.grade("so \\boxed{2}", "2", None);
        assert!((g.reward - 0.9).abs() < 1e-12, "{g:?}");
        assert_eq!(g.components.len(), 2);
    }

    #[test]
    fn multiple_choice_matches_letters_and_option_text() {
        let r = RuleSet::builtin("multiple_choice").unwrap();
        let opts = vec!["3".to_string(), "12 cm".to_string()];
        assert!(r.grade("The answer is (B).", "B", None).correct);
        assert!(r.grade("\\boxed{12 cm}", "B", Some(&opts)).correct);
        assert!(r.grade("Answer: D, B", "B, D", None).correct);
        assert!(!r.grade("Answer: B", "B, D", None).correct);
    }

    #[test]
    fn format_set_scores_the_think_then_box_shape() {
        let r = RuleSet::builtin("format").unwrap();
        assert_eq!(r.grade("<think>a</think>\\boxed{1}", "", None).reward, 1.0);
        assert_eq!(r.grade("\\boxed{1}", "", None).reward, 0.0);
    }

    #[test]
    fn traced_grading_records_the_normalisation_steps() {
        let r = RuleSet::builtin("mathruler").unwrap();
        let t = r.grade_traced(r"\boxed{\dfrac{1}{2}}", "0.5", None);
        assert!(t.grade.correct);
        assert!(t.steps.iter().any(|(n, _)| n.contains("mathd")));
    }
}

#[cfg(test)]
mod strict_tests {
    use super::*;

    const GOOD: &str = "name = \"x\"\n[[components]]\nname = \"acc\"\nweight = 1.0\ntype = \"answer\"\nextract = [{ type = \"last_boxed\" }]\ncompare = { type = \"exact\" }\n";

    #[test]
    fn a_typo_in_a_component_is_an_error_naming_field_and_line() {
        assert!(RuleSet::from_toml(GOOD, "x.toml").is_ok());
        let typo = GOOD.replace(
            "weight = 1.0\n",
            "weight = 1.0\nnormalise = [{ type = \"trim\" }]\n",
        );
        let err = RuleSet::from_toml(&typo, "x.toml").unwrap_err().to_string();
        assert!(
            err.contains("x.toml") && err.contains("`normalise`") && err.contains("line 5"),
            "{err}"
        );
        let verdit = GOOD.replace("weight = 1.0\n", "weight = 1.0\nverdit = true\n");
        let err = RuleSet::from_toml(&verdit, "x.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`verdit`"), "{err}");
    }

    #[test]
    fn two_verdict_components_are_refused() {
        let one = GOOD.replace("weight = 1.0\n", "weight = 1.0\nverdict = true\n");
        assert!(RuleSet::from_toml(&one, "x.toml").is_ok());
        let second = one[one.find("[[components]]").unwrap()..].replace("\"acc\"", "\"acc2\"");
        let two = format!("{one}{second}");
        let err = RuleSet::from_toml(&two, "x.toml").unwrap_err().to_string();
        assert!(
            err.contains("more than one") && err.contains("acc2"),
            "{err}"
        );
    }
}
