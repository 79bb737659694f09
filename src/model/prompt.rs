//! Chat prompts exactly as transformers' `Qwen2_5_VLProcessor` builds them.
//!
//! `processor.apply_chat_template(messages, add_generation_prompt=True)` renders the checkpoint's
//! Jinja template (compiled with `trim_blocks` and `lstrip_blocks`, as transformers does) over
//! `[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": ...}]}]`; the Qwen
//! template itself adds the system turn "You are a helpful assistant." when none is given. Then
//! `processor(text, images)` replaces each `<|image_pad|>` with as many copies as the image has
//! merged patches, and tokenizes with the tokenizer's defaults (Qwen adds no BOS). Responses are
//! tokenized on their own, without special tokens.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tokenizers::Tokenizer;

use super::processor::GridThw;
use super::ModelError;

/// The placeholder the template emits for an image, expanded before tokenizing.
pub const IMAGE_PAD: &str = "<|image_pad|>";

/// A checkpoint's chat template and the file it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatTemplate {
    pub source: String,
    pub origin: PathBuf,
}

impl ChatTemplate {
    /// Looks for the template where transformers' processor does: `chat_template.jinja`, then
    /// `chat_template.json`, then the tokenizer's `tokenizer_config.json`. `Ok(None)` if none.
    pub fn find(dir: &Path) -> Result<Option<Self>, ModelError> {
        let jinja = dir.join("chat_template.jinja");
        if jinja.is_file() {
            let source = std::fs::read_to_string(&jinja).map_err(|source| ModelError::Io {
                path: jinja.clone(),
                source,
            })?;
            return Ok(Some(ChatTemplate {
                source,
                origin: jinja,
            }));
        }
        for name in ["chat_template.json", "tokenizer_config.json"] {
            let path = dir.join(name);
            if !path.is_file() {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|source| ModelError::Io {
                path: path.clone(),
                source,
            })?;
            let v: Value = serde_json::from_str(&text).map_err(|source| ModelError::Json {
                path: path.clone(),
                source,
            })?;
            match v.get("chat_template") {
                Some(Value::String(s)) => {
                    return Ok(Some(ChatTemplate {
                        source: s.clone(),
                        origin: path,
                    }))
                }
                // a list of named templates: take "default"
                Some(Value::Array(list)) => {
                    let default = list
                        .iter()
                        .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                        .and_then(|t| t.get("template"))
                        .and_then(Value::as_str);
                    if let Some(s) = default {
                        return Ok(Some(ChatTemplate {
                            source: s.to_string(),
                            origin: path,
                        }));
                    }
                }
                _ => {}
            }
        }
        Ok(None)
    }

    /// Renders the template over `messages` (the transformers message format).
    pub fn render(
        &self,
        messages: &Value,
        add_generation_prompt: bool,
    ) -> Result<String, ModelError> {
        let err = |e: minijinja::Error| ModelError::Template {
            path: self.origin.clone(),
            message: format!("{e:#}"),
        };
        let mut env = minijinja::Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_function(
            "raise_exception",
            |msg: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        let tmpl = env.template_from_str(&self.source).map_err(err)?;
        tmpl.render(minijinja::context! {
            messages => minijinja::Value::from_serialize(messages),
            add_generation_prompt => add_generation_prompt,
        })
        .map_err(err)
    }
}

/// Builds prompt and response token ids for a checkpoint.
pub struct PromptBuilder<'a> {
    pub tokenizer: &'a Tokenizer,
    pub tokenizer_path: &'a Path,
    pub template: &'a ChatTemplate,
    /// The vision merger's side (2): an image of grid (t, h, w) takes t*h*w/merge^2 tokens.
    pub merge_size: usize,
}

impl PromptBuilder<'_> {
    /// The messages of one user turn holding the images (first) then the text.
    pub fn messages(system: Option<&str>, text: &str, n_images: usize) -> Value {
        let mut content: Vec<Value> = (0..n_images).map(|_| json!({"type": "image"})).collect();
        content.push(json!({"type": "text", "text": text}));
        let mut messages = Vec::new();
        if let Some(s) = system {
            messages.push(json!({"role": "system", "content": s}));
        }
        messages.push(json!({"role": "user", "content": content}));
        Value::Array(messages)
    }

    /// The rendered prompt text with each image placeholder expanded to its token count.
    pub fn prompt_text(
        &self,
        system: Option<&str>,
        text: &str,
        images: &[GridThw],
    ) -> Result<String, ModelError> {
        let rendered = self
            .template
            .render(&Self::messages(system, text, images.len()), true)?;
        let pieces: Vec<&str> = rendered.split(IMAGE_PAD).collect();
        if pieces.len() != images.len() + 1 {
            return Err(ModelError::Template {
                path: self.template.origin.clone(),
                message: format!(
                    "rendered {} image placeholder(s) for {} image(s)",
                    pieces.len() - 1,
                    images.len()
                ),
            });
        }
        let mut out = String::with_capacity(rendered.len());
        for (i, piece) in pieces.iter().enumerate() {
            out.push_str(piece);
            if let Some(g) = images.get(i) {
                out.push_str(&IMAGE_PAD.repeat(g.num_tokens(self.merge_size)));
            }
        }
        Ok(out)
    }

    /// Token ids of the chat prompt (system, user turn with the images then the text,
    /// generation prompt).
    pub fn prompt_ids(
        &self,
        system: Option<&str>,
        text: &str,
        images: &[GridThw],
    ) -> Result<Vec<u32>, ModelError> {
        let prompt = self.prompt_text(system, text, images)?;
        self.encode(&prompt, true)
    }

    /// Token ids of a response, tokenized alone and without special tokens.
    pub fn response_ids(&self, response: &str) -> Result<Vec<u32>, ModelError> {
        self.encode(response, false)
    }

    fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, ModelError> {
        let enc = self
            .tokenizer
            .encode(text, add_special_tokens)
            .map_err(|e| ModelError::Tokenizer {
                path: self.tokenizer_path.to_path_buf(),
                message: e.to_string(),
            })?;
        Ok(enc.get_ids().to_vec())
    }

    /// Each token decoded on its own (for showing which text a log-prob belongs to).
    pub fn decode_each(&self, ids: &[u32]) -> Result<Vec<String>, ModelError> {
        ids.iter()
            .map(|&id| {
                self.tokenizer
                    .decode(&[id], false)
                    .map_err(|e| ModelError::Tokenizer {
                        path: self.tokenizer_path.to_path_buf(),
                        message: e.to_string(),
                    })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_put_images_before_text() {
        let m = PromptBuilder::messages(None, "hi", 1);
        assert_eq!(m[0]["content"][0]["type"], "image");
        assert_eq!(m[0]["content"][1]["text"], "hi");
    }

    #[test]
    fn template_errors_name_the_file() {
        let t = ChatTemplate {
            source: "{% for %}".to_string(),
            origin: PathBuf::from("dir/chat_template.jinja"),
        };
        let msg = t.render(&json!([]), true).unwrap_err().to_string();
        assert!(msg.contains("dir/chat_template.jinja"), "{msg}");
    }
}
