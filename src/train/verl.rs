//! Export of a recipe for the authors' EasyR1-based trainer (`huaixuheqing/VPPO-RL`), for
//! users who need a GPU cluster: a `config.yaml` carrying every hyper-parameter of the recipe
//! under the reference's own keys, a `launch.sh` that runs it, and a README on bringing the
//! merged checkpoints back to `spotlight eval`.
//!
//! The YAML is written by a small emitter below rather than a YAML library: the document is a
//! fixed tree of mappings and scalars, and keeping the crate free of a YAML dependency costs
//! ~60 lines. Strings are double-quoted with JSON escapes (valid YAML double-quoted scalars)
//! and floats never use exponent notation, because PyYAML (YAML 1.1, which the reference's
//! OmegaConf loader uses) reads `1e-6` as a string.

use std::path::{Path, PathBuf};

use super::perturb::Perturbation;
use super::recipe::TrainRecipe;
use super::TrainError;

/// A YAML value of the exported config.
#[derive(Debug, Clone, PartialEq)]
pub enum Yaml {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// A list of scalars, written in flow style (`[0.9, 0.999]`).
    List(Vec<Yaml>),
    /// An ordered mapping; each entry may carry a comment written after it.
    Map(Vec<(String, Yaml, Option<String>)>),
}

impl Yaml {
    fn scalar(&self) -> String {
        match self {
            // JSON's string escapes are a subset of YAML's double-quoted escapes.
            Yaml::Str(s) => serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string()),
            Yaml::Int(i) => i.to_string(),
            Yaml::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{f:.1}"),
            // Display of f64 is the shortest round-trip form, never in exponent notation.
            Yaml::Float(f) => format!("{f}"),
            Yaml::Bool(b) => b.to_string(),
            Yaml::List(items) => {
                let inner: Vec<String> = items.iter().map(Yaml::scalar).collect();
                format!("[{}]", inner.join(", "))
            }
            Yaml::Map(_) => "{}".to_string(),
        }
    }

    /// Block-style YAML text of a mapping.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.write(0, &mut out);
        out
    }

    fn write(&self, indent: usize, out: &mut String) {
        let Yaml::Map(entries) = self else {
            out.push_str(&self.scalar());
            out.push('\n');
            return;
        };
        for (key, value, comment) in entries {
            out.push_str(&" ".repeat(indent));
            out.push_str(key);
            out.push(':');
            match value {
                Yaml::Map(inner) if !inner.is_empty() => {
                    if let Some(c) = comment {
                        out.push_str(&format!("  # {c}"));
                    }
                    out.push('\n');
                    value.write(indent + 2, out);
                }
                _ => {
                    out.push(' ');
                    out.push_str(&value.scalar());
                    if let Some(c) = comment {
                        out.push_str(&format!("  # {c}"));
                    }
                    out.push('\n');
                }
            }
        }
    }
}

/// Builds a mapping from `(key, value)` or `(key, value, comment)` entries.
fn map(entries: Vec<(&str, Yaml, Option<&str>)>) -> Yaml {
    Yaml::Map(
        entries
            .into_iter()
            .map(|(k, v, c)| (k.to_string(), v, c.map(str::to_string)))
            .collect(),
    )
}

fn s(v: &str) -> Yaml {
    Yaml::Str(v.to_string())
}

fn i(v: usize) -> Yaml {
    Yaml::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

/// The export: file contents, plus notes on what the reference cannot express.
#[derive(Debug, Clone)]
pub struct VerlExport {
    /// `config.yaml` for `python3 -m verl.trainer.main config=config.yaml`.
    pub config: Yaml,
    /// `launch.sh`.
    pub launch_script: String,
    /// `README.md` of the export folder.
    pub readme: String,
    /// Things the user must know (e.g. a perturbation the reference hard-codes).
    pub notes: Vec<String>,
}

/// The reference's data sets for the published run (Hugging Face ids).
const TRAIN_FILES: &str = "chamber111/VPPO_ViRL39K_train";
const VAL_FILES: &str = "chamber111/VPPO_MMK12_validation";
const BASE_MODEL: &str = "Qwen/Qwen2.5-VL-7B-Instruct";

/// Translates `recipe` into the reference trainer's configuration.
pub fn export(recipe: &TrainRecipe) -> VerlExport {
    let notes = export_notes(recipe);
    let config = map(vec![
        ("data", data_section(recipe), None),
        ("algorithm", algorithm_section(recipe), None),
        ("worker", worker_section(recipe), None),
        ("trainer", trainer_section(recipe), None),
    ]);
    VerlExport {
        config,
        launch_script: launch_script(recipe),
        readme: export_readme(recipe, &notes),
        notes,
    }
}

/// What the reference cannot express of this recipe (also listed in the README).
fn export_notes(recipe: &TrainRecipe) -> Vec<String> {
    let o = &recipe.objective;
    let mut notes = Vec::new();
    if recipe.perturbation != Perturbation::PUBLISHED && o.needs_perception() {
        notes.push(format!(
            "the reference hard-codes its perturbation (verl/workers/perc_utils.py: \
             `augment_image = random_patch_blackening`, 14 px, p = 0.5); this recipe uses \
             {:?}: edit that line to match",
            recipe.perturbation
        ));
    }
    if recipe.image.processor != crate::model::ProcessorKind::Fast {
        notes.push(
            "the reference loads the fast (torchvision) image processor (`use_fast=True` in \
             verl/trainer/main.py and fsdp_workers.py); this recipe asks for the slow one, which \
             it cannot express"
                .to_string(),
        );
    }
    if !recipe.batch.balance {
        notes.push(
            "the reference always length-balances rows across GPUs (ray_trainer.py \
             `_balance_batch`); this recipe turns balancing off, which it cannot express"
                .to_string(),
        );
    }
    notes
}

/// `data:`: files, prompt keys, lengths, the rollout batch and the first resize's bounds.
fn data_section(recipe: &TrainRecipe) -> Yaml {
    map(vec![
        ("train_files", s(TRAIN_FILES), None),
        ("val_files", s(VAL_FILES), None),
        ("prompt_key", s("problem"), None),
        ("answer_key", s("answer"), None),
        ("image_key", s("images"), None),
        (
            "max_prompt_length",
            i(recipe.rollout.max_prompt_tokens),
            None,
        ),
        (
            "max_response_length",
            i(recipe.rollout.max_response_tokens),
            None,
        ),
        (
            "rollout_batch_size",
            i(recipe.batch.prompts_per_step),
            Some("prompts per step"),
        ),
        (
            "format_prompt",
            s("./examples/format_prompt/math_format_perception.jinja"),
            None,
        ),
        ("min_pixels", i(recipe.image.min_pixels), None),
        ("max_pixels", i(recipe.image.max_pixels), None),
        ("filter_overlong_prompts", Yaml::Bool(true), None),
    ])
}

/// `algorithm:`: advantages, KL, online filtering and VPPO's switches.
fn algorithm_section(recipe: &TrainRecipe) -> Yaml {
    let o = &recipe.objective;
    // In the reference, TAS is computed inside the perception branch, which always applies
    // the top-p token mask: "TAS only" is perception on with a top-p of 1.0 (all tokens kept).
    let top_p_perception = if o.tgf { o.rho } else { 1.0 };
    map(vec![
        (
            "adv_estimator",
            s("grpo"),
            Some(&format!(
                "GRPO advantages; the algorithm is {} (set by the switches below)",
                recipe.algorithm.name().to_uppercase()
            )),
        ),
        ("disable_kl", Yaml::Bool(o.kl_coef == 0.0), None),
        ("use_kl_loss", Yaml::Bool(o.kl_coef > 0.0), None),
        ("kl_penalty", s("low_var_kl"), None),
        ("kl_coef", Yaml::Float(o.kl_coef), None),
        (
            "online_filtering",
            Yaml::Bool(recipe.filtering.enabled),
            None,
        ),
        ("filter_key", s("accuracy"), None),
        (
            "filter_low",
            Yaml::Float(recipe.filtering.accuracy_low),
            None,
        ),
        (
            "filter_high",
            Yaml::Float(recipe.filtering.accuracy_high),
            None,
        ),
        (
            "use_vppo_on_perception",
            Yaml::Bool(o.needs_perception()),
            Some("TGF mask (and the S needed by TAS)"),
        ),
        (
            "top_p_perception_tokens",
            Yaml::Float(top_p_perception),
            Some("rho; 1.0 keeps every token (TAS only)"),
        ),
        ("use_advantage_shaping", Yaml::Bool(o.tas), Some("TAS")),
        (
            "advantage_scaling_min",
            Yaml::Float(o.beta_min),
            Some("beta_min"),
        ),
        (
            "use_entropy_penalty",
            Yaml::Bool(o.entropy_coef != 0.0),
            None,
        ),
        ("entropy_penalty_coef", Yaml::Float(o.entropy_coef), None),
    ])
}

/// `worker:`: the actor (clipping, batches, model, optimizer), the rollout and the reward.
fn worker_section(recipe: &TrainRecipe) -> Yaml {
    let (reward_function, reward_kwargs) = if recipe.reward.format_weight == 0.0 {
        (
            "./examples/reward_function/math.py:compute_score_wo_format",
            None,
        )
    } else {
        (
            "./examples/reward_function/math.py:compute_score",
            Some(map(vec![(
                "format_weight",
                Yaml::Float(recipe.reward.format_weight),
                None,
            )])),
        )
    };
    let mut reward = vec![
        ("reward_type", s("batch"), None),
        (
            "reward_function",
            s(reward_function),
            Some("accuracy of the last \\boxed{} (mathruler)"),
        ),
    ];
    if let Some(kwargs) = reward_kwargs {
        reward.push(("reward_function_kwargs", kwargs, None));
    }

    map(vec![
        ("actor", actor_section(recipe), None),
        (
            "rollout",
            map(vec![
                ("n", i(recipe.rollout.responses_per_prompt), None),
                ("temperature", Yaml::Float(recipe.rollout.temperature), None),
                ("top_p", Yaml::Float(recipe.rollout.top_p), None),
                ("tensor_parallel_size", i(1), None),
                (
                    "val_override_config",
                    map(vec![
                        (
                            "temperature",
                            Yaml::Float(recipe.validation.temperature),
                            None,
                        ),
                        ("n", i(recipe.validation.samples_per_item), Some("avg@n")),
                    ]),
                    None,
                ),
            ]),
            None,
        ),
        ("reward", map(reward), None),
    ])
}

/// `worker.actor:`: clipping, batch sizes, the model, the optimizer.
fn actor_section(recipe: &TrainRecipe) -> Yaml {
    let o = &recipe.objective;
    map(vec![
        ("clip_ratio_low", Yaml::Float(o.clip_low), None),
        ("clip_ratio_high", Yaml::Float(o.clip_high), None),
        ("clip_ratio_dual", Yaml::Float(o.clip_dual), None),
        ("loss_avg_mode", s("token"), None),
        ("ppo_epochs", i(recipe.optim.ppo_epochs), None),
        (
            "global_batch_size",
            i(recipe.batch.mini_batch_prompts),
            Some("mini-batch, in prompts (x n responses)"),
        ),
        (
            "micro_batch_size_per_device_for_update",
            i(recipe.batch.micro_batch_responses),
            Some("TAS averages over this micro-batch"),
        ),
        ("micro_batch_size_per_device_for_experience", i(16), None),
        (
            "dynamic_batching",
            Yaml::Bool(false),
            Some("fixed micro-batches, as TAS assumes"),
        ),
        (
            "max_grad_norm",
            Yaml::Float(recipe.optim.max_grad_norm),
            None,
        ),
        ("padding_free", Yaml::Bool(true), None),
        (
            "model",
            map(vec![
                (
                    "model_path",
                    s(BASE_MODEL),
                    Some("overridden by launch.sh's MODEL_PATH"),
                ),
                ("enable_gradient_checkpointing", Yaml::Bool(true), None),
                ("trust_remote_code", Yaml::Bool(true), None),
                ("freeze_vision_tower", Yaml::Bool(false), None),
            ]),
            None,
        ),
        (
            "optim",
            map(vec![
                ("lr", Yaml::Float(recipe.optim.lr), None),
                ("weight_decay", Yaml::Float(recipe.optim.weight_decay), None),
                (
                    "betas",
                    Yaml::List(recipe.optim.betas.iter().map(|b| Yaml::Float(*b)).collect()),
                    None,
                ),
                ("strategy", s("adamw_bf16"), None),
                ("lr_warmup_ratio", Yaml::Float(0.0), None),
                ("lr_warmup_steps", i(recipe.optim.warmup_steps), None),
            ]),
            None,
        ),
        ("fsdp", map(vec![("torch_dtype", s("bf16"), None)]), None),
    ])
}

/// `trainer:`: epochs, sampling rounds, GPUs, validation and saving.
fn trainer_section(recipe: &TrainRecipe) -> Yaml {
    map(vec![
        ("total_epochs", i(recipe.optim.epochs), None),
        (
            "max_try_make_batch",
            i(recipe.filtering.max_sampling_rounds),
            Some("online-filtering rounds per batch"),
        ),
        ("project_name", s("spotlight"), None),
        ("experiment_name", s(&recipe.name), None),
        (
            "n_gpus_per_node",
            i(recipe.batch.world_size),
            Some("the recipe's world_size; TAS ranges are per GPU, so N_GPUS changes them"),
        ),
        ("nnodes", i(1), None),
        (
            "val_freq",
            Yaml::Int(if recipe.validation.every_steps == 0 {
                -1
            } else {
                i64::try_from(recipe.validation.every_steps).unwrap_or(-1)
            }),
            None,
        ),
        ("val_before_train", Yaml::Bool(true), None),
        ("save_freq", i(5), None),
    ])
}

/// `launch.sh`: runs the reference trainer on `config.yaml`.
fn launch_script(recipe: &TrainRecipe) -> String {
    format!(
        r#"#!/usr/bin/env bash
# Runs Spotlight recipe `{name}` ({algorithm}) with the authors' EasyR1-based trainer.
# Run from a checkout of https://github.com/huaixuheqing/VPPO-RL (pip install -e .).
# Every hyper-parameter is in config.yaml next to this script; the variables below only
# choose hardware, model and data.
set -euo pipefail

HERE="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
MODEL_PATH="${{MODEL_PATH:-{model}}}"
N_GPUS="${{N_GPUS:-{world_size}}}"
TRAIN_FILES="${{TRAIN_FILES:-{train}}}"
VAL_FILES="${{VAL_FILES:-{val}}}"

export PYTHONUNBUFFERED=1
python3 -m verl.trainer.main \
    config="$HERE/config.yaml" \
    worker.actor.model.model_path="$MODEL_PATH" \
    trainer.n_gpus_per_node="$N_GPUS" \
    data.train_files="$TRAIN_FILES" \
    data.val_files="$VAL_FILES" \
    "$@"
"#,
        name = recipe.name,
        world_size = recipe.batch.world_size,
        algorithm = recipe.algorithm.name(),
        model = BASE_MODEL,
        train = TRAIN_FILES,
        val = VAL_FILES,
    )
}

/// `README.md`: how to run the export, with `notes`.
fn export_readme(recipe: &TrainRecipe, notes: &[String]) -> String {
    format!(
        "# `{name}` for the reference trainer\n\n\
         Exported by `spotlight export verl` from recipe `{name}` ({desc}).\n\n\
         1. Clone https://github.com/huaixuheqing/VPPO-RL and `pip install -e .` in it.\n\
         2. From that checkout: `bash /path/to/this/folder/launch.sh` \
         (set `MODEL_PATH`, `N_GPUS`, `TRAIN_FILES`, `VAL_FILES` to change hardware or data; \
         extra `key=value` arguments override config.yaml).\n\
         3. Checkpoints are FSDP shards under `checkpoints/spotlight/{name}/global_step_N/actor`. \
         Merge one into a Hugging Face folder with the trainer's \
         `python3 scripts/model_merger.py --local_dir checkpoints/spotlight/{name}/global_step_N/actor`, \
         which writes `.../actor/huggingface` (config.json, safetensors, tokenizer files).\n\
         4. Evaluate it with Spotlight like any checkpoint: \
         `spotlight eval --model checkpoints/spotlight/{name}/global_step_N/actor/huggingface ...`.\n\n\
         Notes:\n\
         - `algorithm.adv_estimator: grpo` is correct for GRPO, DAPO and VPPO alike (all use \
         GRPO advantages); the algorithm is set by the `use_*` switches.\n\
         - The reference computes TAS's min/max over each device's share of the mini-batch \
         (its all-reduce is commented out), so results depend on the number of GPUs.\n{extra}",
        name = recipe.name,
        desc = recipe.description,
        extra = notes.iter().map(|n| format!("- {n}\n")).collect::<String>(),
    )
}

/// Writes `config.yaml`, `launch.sh` (executable) and `README.md` into `dir` (created if
/// needed) and returns their paths.
pub fn write_export(export: &VerlExport, dir: &Path) -> Result<Vec<PathBuf>, TrainError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TrainError::ExportIo { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let files = [
        ("config.yaml", export.config.to_text()),
        ("launch.sh", export.launch_script.clone()),
        ("README.md", export.readme.clone()),
    ];
    let mut written = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(io(&path))?;
        written.push(path);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let script = dir.join("launch.sh");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .map_err(io(&script))?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_are_yaml_1_1_safe() {
        assert_eq!(Yaml::Float(1e-6).scalar(), "0.000001");
        assert_eq!(Yaml::Float(1.0).scalar(), "1.0");
        assert_eq!(Yaml::Float(0.28).scalar(), "0.28");
        assert_eq!(Yaml::Str("a \"b\"\n".into()).scalar(), r#""a \"b\"\n""#);
        assert_eq!(
            Yaml::List(vec![Yaml::Float(0.9), Yaml::Float(0.999)]).scalar(),
            "[0.9, 0.999]"
        );
    }

    #[test]
    fn nested_maps_indent_by_two_and_keep_comments() {
        let doc = map(vec![
            ("a", map(vec![("b", Yaml::Int(1), Some("one"))]), None),
            ("c", Yaml::Bool(true), None),
        ]);
        assert_eq!(doc.to_text(), "a:\n  b: 1  # one\nc: true\n");
    }
}
