//! Every recipe in recipes/ loads and validates; the published recipes carry the spec's
//! hyper-parameters; the synth-* recipes differ from each other only in algorithm switches
//! and from their published counterparts only in scale (batch sizes, lengths, image size,
//! learning rate).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use spotlight::train::perturb::Perturbation;
use spotlight::train::recipe::{Algorithm, TrainRecipe};

fn recipes_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes")
}

fn load(name: &str) -> TrainRecipe {
    TrainRecipe::load(&recipes_dir().join(name)).unwrap_or_else(|e| panic!("{e}"))
}

/// The recipe file as dotted keys -> TOML values, for field-by-field comparison.
fn flat(name: &str) -> BTreeMap<String, toml::Value> {
    fn walk(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, toml::Value>) {
        match value {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), other.clone());
            }
        }
    }
    let text = std::fs::read_to_string(recipes_dir().join(name)).expect("recipe readable");
    let value: toml::Value = toml::from_str(&text).expect("recipe is TOML");
    let mut out = BTreeMap::new();
    walk("", &value, &mut out);
    out
}

fn differing_keys(a: &str, b: &str) -> BTreeSet<String> {
    let (fa, fb) = (flat(a), flat(b));
    fa.keys()
        .chain(fb.keys())
        .filter(|k| fa.get(*k) != fb.get(*k))
        .cloned()
        .collect()
}

#[test]
fn every_recipe_in_the_folder_loads_and_validates() {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(recipes_dir()).expect("recipes/ exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let recipe = TrainRecipe::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                path.file_stem().and_then(|s| s.to_str()),
                Some(recipe.name.as_str()),
                "a recipe's name is its file name"
            );
            names.push(recipe.name);
        }
    }
    names.sort();
    for required in [
        "dapo",
        "grpo",
        "synth-dapo",
        "synth-grpo",
        "synth-vppo",
        "vppo",
        "vppo-tas-only",
        "vppo-tgf-only",
    ] {
        assert!(
            names.iter().any(|n| n == required),
            "recipes/{required}.toml missing"
        );
    }
}

#[test]
fn published_recipes_carry_the_spec_hyper_parameters() {
    for name in [
        "grpo.toml",
        "dapo.toml",
        "vppo.toml",
        "vppo-tas-only.toml",
        "vppo-tgf-only.toml",
    ] {
        let r = load(name);
        // Published hyper-parameters (7B run), spec table.
        assert_eq!(r.optim.epochs, 2, "{name}");
        assert_eq!(r.batch.prompts_per_step, 384, "{name}");
        assert_eq!(r.batch.mini_batch_prompts, 128, "{name}");
        assert_eq!(r.rollout.responses_per_prompt, 8, "{name}");
        assert_eq!(r.rollout.max_prompt_tokens, 4096, "{name}");
        assert_eq!(r.rollout.max_response_tokens, 2048, "{name}");
        assert_eq!(r.image.min_pixels, 256 * 28 * 28, "{name}");
        assert_eq!(r.image.max_pixels, 1280 * 28 * 28, "{name}");
        assert_eq!((r.optim.lr, r.optim.weight_decay), (1e-6, 1e-2), "{name}");
        assert_eq!(r.optim.warmup_steps, 0, "{name}");
        assert_eq!(r.optim.max_grad_norm, 1.0, "{name}");
        assert_eq!(r.optim.ppo_epochs, 1, "{name}");
        assert_eq!(
            (r.rollout.temperature, r.rollout.top_p),
            (1.0, 0.99),
            "{name}"
        );
        assert_eq!(r.objective.clip_low, 0.2, "{name}");
        assert_eq!(r.objective.clip_dual, 3.0, "{name}");
        assert_eq!(
            (r.objective.rho, r.objective.beta_min),
            (0.4, 0.9),
            "{name}"
        );
        assert_eq!(r.objective.kl_coef, 0.0, "{name}: no reference model");
        assert_eq!(r.perturbation, Perturbation::PUBLISHED, "{name}");
        assert_eq!(r.reward.format_weight, 0.0, "{name}: accuracy reward only");
        assert_eq!(
            (r.filtering.accuracy_low, r.filtering.accuracy_high),
            (0.01, 0.99),
            "{name}"
        );
        assert_eq!(r.validation.samples_per_item, 8, "{name}: avg@8");
    }
    // GRPO: symmetric clip, no filtering, no entropy term, no TAS/TGF.
    let grpo = load("grpo.toml");
    assert_eq!(grpo.algorithm, Algorithm::Grpo);
    assert_eq!(grpo.objective.clip_high, 0.2);
    assert!(!grpo.filtering.enabled);
    assert_eq!(grpo.objective.entropy_coef, 0.0);
    assert!(!grpo.objective.tas && !grpo.objective.tgf);
    // DAPO: clip-higher, filtering, entropy 0.06, no TAS/TGF.
    let dapo = load("dapo.toml");
    assert_eq!(dapo.algorithm, Algorithm::Dapo);
    assert_eq!(dapo.objective.clip_high, 0.28);
    assert!(dapo.filtering.enabled);
    assert_eq!(dapo.objective.entropy_coef, 0.06);
    assert!(!dapo.objective.tas && !dapo.objective.tgf);
    // VPPO = DAPO + TAS + TGF, and the two ablations.
    for (name, tas, tgf) in [
        ("vppo.toml", true, true),
        ("vppo-tas-only.toml", true, false),
        ("vppo-tgf-only.toml", false, true),
    ] {
        let r = load(name);
        assert_eq!(r.algorithm, Algorithm::Vppo, "{name}");
        assert_eq!((r.objective.tas, r.objective.tgf), (tas, tgf), "{name}");
        assert_eq!(r.objective.clip_high, 0.28, "{name}");
        assert_eq!(r.objective.entropy_coef, 0.06, "{name}");
        assert!(r.filtering.enabled, "{name}");
    }
}

/// What distinguishes the algorithms (besides name and description).
const ALGORITHM_SWITCHES: [&str; 6] = [
    "algorithm",
    "objective.clip_high",
    "objective.entropy_coef",
    "objective.tas",
    "objective.tgf",
    "filtering.enabled",
];

/// What a tiny model on the synthetic task may change relative to the published run.
const SCALE_FIELDS: [&str; 8] = [
    "batch.prompts_per_step",
    "batch.mini_batch_prompts",
    "batch.micro_batch_responses",
    "rollout.max_prompt_tokens",
    "rollout.max_response_tokens",
    "image.min_pixels",
    "image.max_pixels",
    "optim.lr",
];

fn allowed(extra: &[&str]) -> BTreeSet<String> {
    ["name", "description"]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
}

#[test]
fn synth_recipes_differ_from_each_other_only_in_algorithm_switches() {
    let switches = allowed(&ALGORITHM_SWITCHES);
    for (a, b) in [
        ("synth-grpo.toml", "synth-dapo.toml"),
        ("synth-dapo.toml", "synth-vppo.toml"),
        ("synth-grpo.toml", "synth-vppo.toml"),
    ] {
        let diff = differing_keys(a, b);
        assert!(diff.is_subset(&switches), "{a} vs {b}: {diff:?}");
        // ... and the published recipes differ in exactly the same keys.
        let published = differing_keys(&a["synth-".len()..], &b["synth-".len()..]);
        assert_eq!(diff, published, "{a} vs {b}");
    }
}

#[test]
fn synth_recipes_override_only_scale_and_identically() {
    let scale = allowed(&SCALE_FIELDS);
    let mut overrides = Vec::new();
    for algo in ["grpo", "dapo", "vppo"] {
        let synth = format!("synth-{algo}.toml");
        let published = format!("{algo}.toml");
        let diff = differing_keys(&synth, &published);
        assert!(diff.is_subset(&scale), "{synth} vs {published}: {diff:?}");
        let values = flat(&synth);
        let chosen: Vec<(String, toml::Value)> = SCALE_FIELDS
            .iter()
            .map(|k| (k.to_string(), values[*k].clone()))
            .collect();
        overrides.push(chosen);
    }
    assert_eq!(
        overrides[0], overrides[1],
        "synth-grpo and synth-dapo override differently"
    );
    assert_eq!(
        overrides[1], overrides[2],
        "synth-dapo and synth-vppo override differently"
    );
    // Scaled down for real: a rollout that fits a laptop and a learning rate that moves a
    // tiny model (1e-6 moves nothing at this scale).
    let vppo = load("synth-vppo.toml");
    assert!(vppo.batch.prompts_per_step * vppo.rollout.responses_per_prompt <= 256);
    assert!(vppo.optim.lr > 1e-6);
}
