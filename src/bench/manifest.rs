//! Benchmark manifests: `benchmarks/<slug>.toml`, one per benchmark.
//!
//! A manifest says where a benchmark's files come from (Hugging Face dataset id, config,
//! split, revision, file patterns, the generated file the project bundles), how its columns
//! map onto [`Item`](super::Item), how options are encoded and rendered, the prompt
//! template, the reward rule set that grades it, which fields to break results down by,
//! and the filter selecting the verifiable subset. Everything a user may want to change
//! without recompiling lives here, in the style of lmms-eval's task files but declarative.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::BenchError;

/// The VPPO prompt (spec, section 1): the question, then the reasoning/boxed instruction.
pub const VPPO_INSTRUCTION: &str = "You first think through the reasoning process as an internal monologue, enclosed within <think> </think> tags. Then, provide your final answer enclosed within \\boxed{}.";

/// The default prompt template (minijinja): question, rendered options, VPPO instruction.
pub const DEFAULT_PROMPT_TEMPLATE: &str =
    "{{ question }}{% if options %}\n{{ options }}{% endif %}\n\n{{ instruction }}";

/// One benchmark's manifest, as parsed from TOML and validated.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The paper's name, used in every table (e.g. "MathVerse").
    pub name: String,
    /// The command-line slug (e.g. "mathverse").
    pub slug: String,
    /// Other names accepted on the command line (e.g. "geometry3k").
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Whether `all` (and the Avg column) includes this benchmark. Only the eight do.
    #[serde(default = "yes")]
    pub in_all: bool,
    /// Order in the paper's tables.
    pub order: u32,
    /// One line on what the benchmark measures.
    #[serde(default)]
    pub description: String,
    /// Where the files are.
    pub source: Source,
    /// Column mapping onto `Item`.
    pub columns: Columns,
    /// How options are encoded in the file and rendered into the prompt.
    #[serde(default)]
    pub options: OptionsSpec,
    /// The prompt.
    #[serde(default)]
    pub prompt: PromptSpec,
    /// How it is graded.
    #[serde(default)]
    pub grading: GradingSpec,
    /// Fields (names of `columns.fields` entries) to break results down by.
    #[serde(default)]
    pub breakdown: Vec<String>,
    /// Rows kept: all conditions must hold. Selects the verifiable subset.
    #[serde(default)]
    pub filter: Vec<FilterRule>,
    /// True when part of this manifest is a guess (the authors never published their
    /// filter or exact prompts); reports repeat `approximate_reason`.
    #[serde(default)]
    pub approximate: bool,
    #[serde(default)]
    pub approximate_reason: String,
}

fn yes() -> bool {
    true
}

/// Where a benchmark's files come from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Hugging Face dataset id, e.g. "AI4Math/MathVerse".
    pub hf_dataset: String,
    /// Dataset config name (informational; files are located by `files`).
    #[serde(default)]
    pub config: Option<String>,
    pub split: String,
    #[serde(default = "main_rev")]
    pub revision: String,
    /// Glob patterns of the split's parquet files inside a snapshot or folder
    /// (e.g. "testmini*.parquet", "data/test-*.parquet").
    pub files: Vec<String>,
    /// Folder names under which a root folder (e.g. `../shared/benchmarks-sample`) keeps
    /// this benchmark's files.
    #[serde(default)]
    pub folder_names: Vec<String>,
    /// The generated file the project bundles, relative to the repository root.
    pub bundled: String,
    /// Real split size, for reports (the bundled file is much smaller).
    #[serde(default)]
    pub published_rows: Option<u64>,
}

fn main_rev() -> String {
    "main".to_string()
}

/// Column mapping: names in the file for each `Item` field. Dotted names reach into
/// struct columns ("metadata.subject").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Columns {
    /// Item id column; when absent the row index is the id.
    #[serde(default)]
    pub id: Option<String>,
    pub question: String,
    /// Ground-truth column.
    pub answer: String,
    /// Image columns, in order. Each may be an Image struct, a list of Image structs, or a
    /// path string (resolved against the dataset folder).
    #[serde(default)]
    pub images: Vec<String>,
    #[serde(default)]
    pub options: Option<String>,
    #[serde(default)]
    pub question_type: Option<String>,
    /// Extra fields kept on each item (breakdown categories, metadata): name -> column.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

/// How options are stored in the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptionsEncoding {
    /// No options column (or options live inside the question text).
    #[default]
    None,
    /// A list<string> column.
    List,
    /// One string, options separated by ';' ("A. 300;B. 400;..."), letters included.
    Semicolon,
    /// One string holding a Python list literal ("['a', 'b']").
    PythonRepr,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptionsSpec {
    #[serde(default)]
    pub encoding: OptionsEncoding,
    /// Whether the stored options already carry their letters ("A. 300").
    #[serde(default)]
    pub lettered: bool,
    /// How one option line is rendered (minijinja; `letter`, `text`).
    #[serde(default = "default_option_line")]
    pub line: String,
    /// Options that are only the letters themselves (MathVision's ["A".."E"] when the real
    /// options are in the image) are not rendered.
    #[serde(default = "yes")]
    pub skip_bare_letters: bool,
}

fn default_option_line() -> String {
    "{{ letter }}. {{ text }}".to_string()
}

impl Default for OptionsSpec {
    fn default() -> Self {
        OptionsSpec {
            encoding: OptionsEncoding::None,
            lettered: false,
            line: default_option_line(),
            skip_bare_letters: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptSpec {
    /// minijinja template; variables: question, options (rendered lines), instruction,
    /// question_type and every entry of `columns.fields`.
    #[serde(default = "default_template")]
    pub template: String,
    #[serde(default = "default_instruction")]
    pub instruction: String,
    /// Regex of in-text image placeholders (`<image>`, `<image1>`, `<image 1>`). Images are
    /// given to the model before the text, as the authors' tool does, so placeholders are
    /// removed from the text.
    #[serde(default)]
    pub image_placeholder: Option<String>,
}

fn default_template() -> String {
    DEFAULT_PROMPT_TEMPLATE.to_string()
}

fn default_instruction() -> String {
    VPPO_INSTRUCTION.to_string()
}

impl Default for PromptSpec {
    fn default() -> Self {
        PromptSpec {
            template: default_template(),
            instruction: default_instruction(),
            image_placeholder: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradingSpec {
    /// Reward rule set in `reward_rules/` (all eight: "mathruler", as the authors grade).
    #[serde(default = "default_rules")]
    pub rules: String,
}

fn default_rules() -> String {
    "mathruler".to_string()
}

impl Default for GradingSpec {
    fn default() -> Self {
        GradingSpec {
            rules: default_rules(),
        }
    }
}

/// One condition on a row. Exactly one of the comparisons is given.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterRule {
    /// A name from `columns.fields`, or "question_type" / "answer".
    pub field: String,
    #[serde(default)]
    pub equals: Option<String>,
    #[serde(default)]
    pub not_equals: Option<String>,
    #[serde(default)]
    pub one_of: Option<Vec<String>>,
    #[serde(default)]
    pub none_of: Option<Vec<String>>,
    /// Regex that must match (search, not full match).
    #[serde(default)]
    pub matches: Option<String>,
    /// Why the rule is there (shown by `bench list`).
    #[serde(default)]
    pub why: String,
}

impl Manifest {
    /// Parses and validates a manifest file.
    pub fn from_path(path: &Path) -> Result<Manifest, BenchError> {
        let text = std::fs::read_to_string(path).map_err(|source| BenchError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Manifest::from_toml(&text, path)
    }

    /// Parses and validates manifest text; `path` is only used in messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Manifest, BenchError> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| BenchError::Manifest {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        manifest.validate(path)?;
        Ok(manifest)
    }

    fn validate(&self, path: &Path) -> Result<(), BenchError> {
        let bad = |message: String| BenchError::Manifest {
            path: path.to_path_buf(),
            message,
        };
        if self.slug.is_empty() || self.name.is_empty() {
            return Err(bad("`name` and `slug` must not be empty".into()));
        }
        if self.source.files.is_empty() {
            return Err(bad("`source.files` needs at least one pattern".into()));
        }
        for pattern in &self.source.files {
            glob::Pattern::new(pattern)
                .map_err(|e| bad(format!("`source.files` pattern {pattern:?}: {e}")))?;
        }
        for field in &self.breakdown {
            if !self.columns.fields.contains_key(field) && field != "question_type" {
                return Err(bad(format!(
                    "`breakdown` names {field:?}, which is not in `columns.fields`"
                )));
            }
        }
        for rule in &self.filter {
            let n = [
                rule.equals.is_some(),
                rule.not_equals.is_some(),
                rule.one_of.is_some(),
                rule.none_of.is_some(),
                rule.matches.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if n != 1 {
                return Err(bad(format!(
                    "filter on {:?} must give exactly one of equals, not_equals, one_of, none_of, matches",
                    rule.field
                )));
            }
            if !self.columns.fields.contains_key(&rule.field)
                && !matches!(rule.field.as_str(), "question_type" | "answer" | "id")
            {
                return Err(bad(format!(
                    "filter names field {:?}, which is not in `columns.fields`",
                    rule.field
                )));
            }
            if let Some(re) = &rule.matches {
                regex::Regex::new(re)
                    .map_err(|e| bad(format!("filter regex {re:?} on {:?}: {e}", rule.field)))?;
            }
        }
        if let Some(re) = &self.prompt.image_placeholder {
            regex::Regex::new(re)
                .map_err(|e| bad(format!("`prompt.image_placeholder` {re:?}: {e}")))?;
        }
        if self.approximate && self.approximate_reason.trim().is_empty() {
            return Err(bad(
                "`approximate = true` needs a one-line `approximate_reason`".into(),
            ));
        }
        let env = minijinja::Environment::new();
        env.template_from_str(&self.prompt.template)
            .map_err(|e| bad(format!("`prompt.template`: {e}")))?;
        env.template_from_str(&self.options.line)
            .map_err(|e| bad(format!("`options.line`: {e}")))?;
        Ok(())
    }

    /// Every name this benchmark answers to on the command line (slug, aliases, case- and
    /// `-`/`_`-insensitive).
    pub fn answers_to(&self, name: &str) -> bool {
        let norm = |s: &str| s.to_ascii_lowercase().replace(['_', ' '], "-");
        let wanted = norm(name);
        norm(&self.slug) == wanted
            || norm(&self.name) == wanted
            || self.aliases.iter().any(|a| norm(a) == wanted)
    }

    /// The bundled generated file, resolved against the repository root.
    pub fn bundled_path(&self, root: &Path) -> PathBuf {
        root.join(&self.source.bundled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "Toy"
slug = "toy"
order = 1
[source]
hf_dataset = "me/toy"
split = "test"
files = ["test*.parquet"]
bundled = "benchmarks/data/toy/test.parquet"
[columns]
question = "question"
answer = "answer"
"#;

    #[test]
    fn minimal_manifest_gets_the_vppo_prompt_and_mathruler() {
        let m = Manifest::from_toml(MINIMAL, Path::new("toy.toml")).unwrap();
        assert_eq!(m.grading.rules, "mathruler");
        assert!(m.prompt.instruction.contains("\\boxed{}"));
        assert!(m.in_all);
    }

    #[test]
    fn unknown_key_is_rejected_with_the_file_named() {
        let text = format!("{MINIMAL}\nbogus = 1\n");
        let err = Manifest::from_toml(&text, Path::new("benchmarks/toy.toml")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("benchmarks/toy.toml"), "{msg}");
        assert!(msg.contains("bogus"), "{msg}");
    }

    #[test]
    fn breakdown_must_name_a_mapped_field() {
        let text = format!("breakdown = [\"subject\"]\n{MINIMAL}");
        let err = Manifest::from_toml(&text, Path::new("toy.toml")).unwrap_err();
        assert!(err.to_string().contains("subject"));
    }

    #[test]
    fn approximate_needs_a_reason() {
        let text = format!("approximate = true\n{MINIMAL}");
        assert!(Manifest::from_toml(&text, Path::new("toy.toml")).is_err());
    }

    #[test]
    fn aliases_match_case_and_separator_insensitively() {
        let text = format!("aliases = [\"we-math\"]\n{MINIMAL}");
        let m = Manifest::from_toml(&text, Path::new("toy.toml")).unwrap();
        assert!(m.answers_to("WE_MATH"));
        assert!(m.answers_to("Toy"));
        assert!(!m.answers_to("other"));
    }
}
