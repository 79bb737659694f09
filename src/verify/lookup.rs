//! The one way every command (grade, eval, train, sft) finds a rule set, so that they
//! cannot disagree after a user edits a rule file: an existing TOML path as given, else
//! the project's `reward_rules/<name>.toml`, else the copy compiled into the binary.
//!
//! The result carries where it came from and the SHA-256 of the exact TOML text, which
//! run plans store so that a resume after a rule edit is refused instead of mixing two
//! graders in one run.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::rules::{RuleSet, BUILTIN};
use super::VerifyError;

/// A rule set a run grades with, by name, origin and the hash of the exact TOML it used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RulesRecord {
    pub name: String,
    /// The file it was read from, or `builtin`.
    pub origin: String,
    pub sha256: String,
}

/// A rule set and the record of where it came from.
#[derive(Debug)]
pub struct ResolvedRules {
    pub rules: RuleSet,
    pub record: RulesRecord,
}

/// Finds `name_or_path`: a TOML file at that path, else `<project_root>/reward_rules/
/// <name>.toml`, else the builtin of that name. `project_root` is `None` outside a
/// project (then only paths and builtins are found).
pub fn resolve(
    project_root: Option<&Path>,
    name_or_path: &str,
) -> Result<ResolvedRules, VerifyError> {
    let given = Path::new(name_or_path);
    let project_file = project_root.map(|r| project_file(r, name_or_path));
    let file = if given.is_file() {
        Some(given.to_path_buf())
    } else {
        project_file.filter(|p| p.is_file())
    };
    let (text, origin) = match file {
        Some(path) => {
            let text = std::fs::read_to_string(&path).map_err(|source| VerifyError::Read {
                path: path.clone(),
                source,
            })?;
            (text, path.display().to_string())
        }
        None => {
            let text = BUILTIN
                .iter()
                .find(|(n, _)| *n == name_or_path)
                .map(|(_, t)| t.to_string())
                .ok_or_else(|| VerifyError::UnknownRuleSet {
                    name: name_or_path.to_string(),
                    available: available().join(", "),
                })?;
            (text, "builtin".to_string())
        }
    };
    let shown = if origin == "builtin" {
        format!("builtin rule set `{name_or_path}`")
    } else {
        origin.clone()
    };
    let rules = RuleSet::from_toml(&text, &shown)?;
    let sha256 = Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(ResolvedRules {
        record: RulesRecord {
            name: rules.name().to_string(),
            origin,
            sha256,
        },
        rules,
    })
}

/// Where the project keeps the rule set `name`.
pub fn project_file(project_root: &Path, name: &str) -> PathBuf {
    project_root
        .join("reward_rules")
        .join(format!("{name}.toml"))
}

/// The builtin rule set names.
pub fn available() -> Vec<&'static str> {
    BUILTIN.iter().map(|(n, _)| *n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: &str = r#"
name = "mathruler"
[[components]]
name = "accuracy"
weight = 1.0
type = "answer"
extract = [{ type = "whole_response" }]
compare = { type = "exact" }
"#;

    #[test]
    fn a_project_file_wins_over_the_builtin_and_outside_a_project_the_builtin_is_used() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("reward_rules")).unwrap();
        std::fs::write(project_file(dir.path(), "mathruler"), TINY).unwrap();
        let local = resolve(Some(dir.path()), "mathruler").unwrap();
        assert!(local.record.origin.ends_with("mathruler.toml"));
        assert_eq!(local.rules.component_names(), vec!["accuracy"]);
        let builtin = resolve(None, "mathruler").unwrap();
        assert_eq!(builtin.record.origin, "builtin");
        assert_ne!(builtin.record.sha256, local.record.sha256);
        // The whole-response rule marks the raw text correct; the builtin wants \boxed{}.
        assert!(local.rules.grade("5", "5", None).correct);
        let by_path = resolve(
            None,
            &project_file(dir.path(), "mathruler").display().to_string(),
        );
        assert_eq!(by_path.unwrap().record.sha256, local.record.sha256);
    }

    #[test]
    fn an_unknown_name_lists_the_builtins() {
        let err = resolve(None, "no_such_rules").unwrap_err().to_string();
        assert!(
            err.contains("no_such_rules") && err.contains("mathruler"),
            "{err}"
        );
    }
}
