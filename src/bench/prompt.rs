//! The user-turn text a model receives for an item, from the manifest's template.
//!
//! Images are given to the model before the text (as the authors' evaluation tool and
//! transformers' processor do), so in-text placeholders (`<image>`, `<image1>`,
//! `<image 1>`) matched by the manifest's `prompt.image_placeholder` are removed.

use minijinja::{context, Environment};

use super::item::Item;
use super::manifest::Manifest;
use super::options::option_letter;
use super::BenchError;

/// The system message of the authors' evaluation and training (and transformers' default
/// chat template): one definition for eval, train, sft, perception and `bench show`.
pub const DEFAULT_SYSTEM: &str = "You are a helpful assistant.";

/// Compiled prompt templates of one manifest.
pub struct PromptRenderer {
    env: Environment<'static>,
    placeholder: Option<regex::Regex>,
    skip_bare_letters: bool,
    instruction: String,
}

impl PromptRenderer {
    pub fn new(manifest: &Manifest) -> Result<Self, BenchError> {
        let bad = |message: String| BenchError::Manifest {
            path: format!("benchmarks/{}.toml", manifest.slug).into(),
            message,
        };
        let mut env = Environment::new();
        env.set_keep_trailing_newline(true);
        env.add_template_owned("prompt", manifest.prompt.template.clone())
            .map_err(|e| bad(format!("`prompt.template`: {e}")))?;
        env.add_template_owned("option", manifest.options.line.clone())
            .map_err(|e| bad(format!("`options.line`: {e}")))?;
        let placeholder = manifest
            .prompt
            .image_placeholder
            .as_deref()
            .map(regex::Regex::new)
            .transpose()
            .map_err(|e| bad(format!("`prompt.image_placeholder`: {e}")))?;
        Ok(PromptRenderer {
            env,
            placeholder,
            skip_bare_letters: manifest.options.skip_bare_letters,
            instruction: manifest.prompt.instruction.clone(),
        })
    }

    /// The rendered option lines ("A. 300\nB. 400"), empty when there is nothing to show.
    pub fn options_block(&self, item: &Item) -> Result<String, BenchError> {
        let bare = item
            .options
            .iter()
            .enumerate()
            .all(|(i, o)| o.trim() == option_letter(i).to_string());
        if item.options.is_empty() || (self.skip_bare_letters && bare) {
            return Ok(String::new());
        }
        let template = self
            .env
            .get_template("option")
            .map_err(|e| self.error(item, e))?;
        let mut lines = Vec::with_capacity(item.options.len());
        for (i, text) in item.options.iter().enumerate() {
            let letter = option_letter(i).to_string();
            lines.push(
                template
                    .render(context! { letter => letter, text => text })
                    .map_err(|e| self.error(item, e))?,
            );
        }
        Ok(lines.join("\n"))
    }

    /// The user-turn text for `item`.
    pub fn render(&self, item: &Item) -> Result<String, BenchError> {
        let strip = |text: &str| match &self.placeholder {
            Some(re) => re.replace_all(text, "").trim().to_string(),
            None => text.trim().to_string(),
        };
        if item.prebaked_prompt {
            return Ok(strip(&item.question));
        }
        let options = self.options_block(item)?;
        let template = self
            .env
            .get_template("prompt")
            .map_err(|e| self.error(item, e))?;
        template
            .render(context! {
                question => strip(&item.question),
                options => options,
                instruction => self.instruction,
                question_type => item.question_type,
                fields => item.fields,
            })
            .map_err(|e| self.error(item, e))
    }

    fn error(&self, item: &Item, e: minijinja::Error) -> BenchError {
        BenchError::Prompt {
            path: item.source_file.clone(),
            row: item.row,
            message: e.to_string(),
        }
    }
}
