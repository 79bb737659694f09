//! How a user names a checkpoint on the command line (`--model`, `--init`): one type for
//! every subcommand, so that what a name may be — today a local folder in the Hugging Face
//! layout — is decided in one place (hub ids `ORG/NAME[@REV]` extend [`ModelRef::resolve`]).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::ModelError;

/// A checkpoint as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    given: String,
}

impl ModelRef {
    /// The name exactly as the user wrote it (recorded and shown in messages).
    pub fn as_given(&self) -> &str {
        &self.given
    }

    /// The local checkpoint folder this names: an existing folder holding `config.json`.
    pub fn resolve(&self) -> Result<PathBuf, ModelError> {
        let dir = PathBuf::from(&self.given);
        if !dir.is_dir() {
            return Err(ModelError::NotACheckpoint(format!(
                "{}: no such checkpoint folder (a folder in the Hugging Face layout: \
                 config.json, model.safetensors, tokenizer.json)",
                self.given
            )));
        }
        if !dir.join("config.json").is_file() {
            return Err(ModelError::NotACheckpoint(format!(
                "{}: not a checkpoint folder (it has no config.json)",
                self.given
            )));
        }
        Ok(dir)
    }
}

impl FromStr for ModelRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Err("a checkpoint folder is required (got an empty name)".into());
        }
        Ok(ModelRef {
            given: s.to_string(),
        })
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.given)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_resolves_and_anything_else_is_named_in_the_error() {
        let tiny = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/qwen25vl/tiny");
        let r: ModelRef = tiny.parse().unwrap();
        assert_eq!(r.resolve().unwrap(), PathBuf::from(tiny));
        let missing: ModelRef = "no/such/folder".parse().unwrap();
        let e = missing.resolve().unwrap_err().to_string();
        assert!(
            e.contains("no/such/folder: no such checkpoint folder"),
            "{e}"
        );
        let not_ckpt: ModelRef = env!("CARGO_MANIFEST_DIR").parse().unwrap();
        assert!(not_ckpt
            .resolve()
            .unwrap_err()
            .to_string()
            .contains("no config.json"));
        assert!("".parse::<ModelRef>().is_err());
    }
}
