//! Rollout: sample responses with the current policy, reward them with the verifier, and
//! keep groups by online filtering until the batch is full (`../shared/spec/vppo.md`, the RL
//! loop's first stage).
//!
//! [`sample_groups`] is the one sampling function of training: the step's rollout and the
//! validation avg@k both call it, and differ only in the seed stream they draw from and in
//! what they do with the rewarded groups.

use std::sync::Arc;

use super::data::{DataCursor, Example};
use super::recipe::TrainRecipe;
use super::TrainError;
use crate::model::{Checkpoint, GenerationPrompt, SampleRequest, SamplingParams};
use crate::seed::derive_seed_tagged;
use crate::verify::Grader;

/// One sampled and rewarded response.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// Index of its example in the run's example list.
    pub example: usize,
    /// Its group's position in the step's batch: the GRPO group. The reference gives every drawn
    /// prompt its own uid, so an example drawn twice in one step (two sampling rounds across an
    /// epoch boundary) makes two groups, not one group of `2G`.
    pub group: usize,
    pub sample: u32,
    /// The sampled token ids (the stop token included when one was sampled).
    pub tokens: Vec<u32>,
    pub reward: f64,
    /// 1 when the accuracy rule set accepts the answer, else 0.
    pub accuracy: f64,
}

/// How a response is rewarded: accuracy from the recipe's rule set, blended with the format
/// reward as `(1 - w) accuracy + w format` when the recipe weights one.
#[derive(Clone)]
pub struct Rewarder {
    pub accuracy: Arc<dyn Grader>,
    /// The format grader and its weight `w` (`None`: accuracy alone).
    pub format: Option<(Arc<dyn Grader>, f64)>,
}

impl Rewarder {
    /// Accuracy alone (validation, SFT's held-out evaluation).
    pub fn accuracy_only(grader: Arc<dyn Grader>) -> Rewarder {
        Rewarder {
            accuracy: grader,
            format: None,
        }
    }

    /// `(reward, accuracy)` of `text` as the answer to `ex`. Like the reference's reward
    /// function, both graders see the response with whitespace around `<`, `>` and `/`
    /// removed (`re.sub(r"\s*(<|>|/)\s*", r"\1", response)`), so `</ think>` counts as
    /// `</think>` for the format reward.
    pub fn score(&self, text: &str, ex: &Example) -> (f64, f64) {
        let stripped = crate::verify::mathruler::strip_space_around_relations(text);
        let text = stripped.as_str();
        let options = ex.options();
        let hit = |g: &dyn Grader| {
            if g.grade(text, &ex.answer, options).correct {
                1.0
            } else {
                0.0
            }
        };
        let accuracy = hit(self.accuracy.as_ref());
        match &self.format {
            Some((format, w)) if *w > 0.0 => {
                ((1.0 - w) * accuracy + w * hit(format.as_ref()), accuracy)
            }
            _ => (accuracy, accuracy),
        }
    }
}

/// The seed stream a sampling call draws from. Sample `s` of item `id` is seeded by
/// `derive_seed_tagged(run seed, id, s, tag)`, so a response never depends on the batch it
/// was sampled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Sampling round `round` (1-based) of training step `step`.
    Rollout { step: usize, round: usize },
    /// Validation and held-out evaluation: the same seeds at every evaluation, so points on a
    /// curve differ only by the weights.
    Validation,
}

impl Stream {
    fn tag(&self) -> String {
        match self {
            Stream::Rollout { step, round } => format!("rollout/step{step}/round{round}"),
            Stream::Validation => "validation".to_string(),
        }
    }
}

/// Samples `k` responses for each example in `chosen` (indices into `examples`) and rewards
/// them: one group per chosen example, in order, sample `s` at position `s`.
#[allow(clippy::too_many_arguments)]
pub fn sample_groups(
    ckpt: &Checkpoint,
    examples: &[Example],
    chosen: &[usize],
    k: usize,
    params: &SamplingParams,
    seed: u64,
    stream: Stream,
    rewarder: &Rewarder,
) -> Result<Vec<Vec<Response>>, TrainError> {
    let prompts: Vec<GenerationPrompt> = chosen
        .iter()
        .map(|&e| GenerationPrompt {
            prompt_ids: &examples[e].prompt_ids,
            images: examples[e].images.iter().collect(),
        })
        .collect();
    let tag = stream.tag();
    let requests: Vec<SampleRequest> = chosen
        .iter()
        .enumerate()
        .flat_map(|(p, &e)| {
            let tag = &tag;
            (0..k).map(move |s| SampleRequest {
                prompt: p,
                seed: derive_seed_tagged(seed, &examples[e].id, s as u32, tag),
            })
        })
        .collect();
    let outputs = ckpt.model.generate(&prompts, &requests, params)?;
    let mut groups = Vec::with_capacity(chosen.len());
    for (p, &e) in chosen.iter().enumerate() {
        let mut group = Vec::with_capacity(k);
        for (s, out) in outputs[p * k..(p + 1) * k].iter().enumerate() {
            let text = ckpt.tokenizer.decode(&out.token_ids, true).map_err(|err| {
                crate::model::ModelError::Tokenizer {
                    path: ckpt.tokenizer_path.clone(),
                    message: err.to_string(),
                }
            })?;
            let (reward, accuracy) = rewarder.score(&text, &examples[e]);
            group.push(Response {
                example: e,
                group: p,
                sample: s as u32,
                tokens: out.token_ids.clone(),
                reward,
                accuracy,
            });
        }
        groups.push(group);
    }
    Ok(groups)
}

/// The rollout policy's sampling settings of a recipe.
pub fn rollout_params(recipe: &TrainRecipe, ckpt: &Checkpoint) -> SamplingParams {
    SamplingParams {
        temperature: recipe.rollout.temperature,
        top_p: recipe.rollout.top_p,
        top_k: 0,
        max_new_tokens: recipe.rollout.max_response_tokens,
        stop_token_ids: ckpt.stop_token_ids(),
    }
}

/// A step's kept responses, group after group, and what the sampling rounds saw.
pub struct RolloutBatch {
    pub rows: Vec<Response>,
    pub rounds: usize,
    pub sampled_groups: usize,
    /// Accuracy over every sampled response, kept or not.
    pub accuracy_all_sampled: f64,
}

/// The step's rollout, as the reference's `_make_batch_data`: each round draws a whole batch of
/// `prompts_per_step` new prompts from the data order (not only the missing ones), `G`
/// responses each, and online filtering keeps some groups; rounds go on until
/// `prompts_per_step` groups are kept (or the recipe's `max_sampling_rounds` is spent: an
/// error), and the first `prompts_per_step` kept groups, in draw order, are the step's batch.
pub fn rollout(
    ckpt: &Checkpoint,
    recipe: &TrainRecipe,
    examples: &[Example],
    cursor: &mut DataCursor,
    seed: u64,
    step: usize,
    rewarder: &Rewarder,
) -> Result<RolloutBatch, TrainError> {
    let g = recipe.rollout.responses_per_prompt;
    let wanted = recipe.batch.prompts_per_step;
    let params = rollout_params(recipe, ckpt);
    let f = &recipe.filtering;
    let mut kept: Vec<Vec<Response>> = Vec::new();
    let (mut rounds, mut sampled_groups, mut correct, mut sampled) = (0, 0, 0.0, 0usize);
    while kept.len() < wanted {
        if rounds == f.max_sampling_rounds {
            return Err(TrainError::FilteringExhausted {
                kept: kept.len(),
                wanted,
                rounds,
            });
        }
        rounds += 1;
        let chosen = cursor.next_batch(examples.len(), wanted, seed);
        let stream = Stream::Rollout {
            step,
            round: rounds,
        };
        for group in sample_groups(ckpt, examples, &chosen, g, &params, seed, stream, rewarder)? {
            let hits: f64 = group.iter().map(|r| r.accuracy).sum();
            sampled_groups += 1;
            correct += hits;
            sampled += group.len();
            let mean = hits / group.len().max(1) as f64;
            if !f.enabled || (mean > f.accuracy_low && mean < f.accuracy_high) {
                kept.push(group);
            }
        }
    }
    kept.truncate(wanted);
    let rows = kept
        .into_iter()
        .enumerate()
        .flat_map(|(g, group)| group.into_iter().map(move |r| Response { group: g, ..r }))
        .collect();
    Ok(RolloutBatch {
        rows,
        rounds,
        sampled_groups,
        accuracy_all_sampled: correct / sampled.max(1) as f64,
    })
}

/// Examples sampled together in one validation call (bounds the batch's memory; sampling is
/// batch-invariant, so the chunking changes no response).
const VALIDATION_CHUNK: usize = 8;

/// avg@k (%) of `examples` under `params`, sample `s` of item `id` from the
/// [`Stream::Validation`] stream: the in-training validation and SFT's held-out evaluation.
pub fn avg_at_k(
    ckpt: &Checkpoint,
    examples: &[Example],
    grader: &Arc<dyn Grader>,
    k: usize,
    params: &SamplingParams,
    seed: u64,
) -> Result<f64, TrainError> {
    let k = k.max(1);
    let rewarder = Rewarder::accuracy_only(grader.clone());
    let all: Vec<usize> = (0..examples.len()).collect();
    let mut correct = 0.0;
    for chosen in all.chunks(VALIDATION_CHUNK) {
        let groups = sample_groups(
            ckpt,
            examples,
            chosen,
            k,
            params,
            seed,
            Stream::Validation,
            &rewarder,
        )?;
        correct += groups.iter().flatten().map(|r| r.accuracy).sum::<f64>();
    }
    Ok(100.0 * correct / (examples.len() * k).max(1) as f64)
}

/// Validation's sampling settings: `temperature`, `top_p`, no top-k, the ckpt's stop tokens.
/// (The reference's in-training validation keeps the rollout's top-p 0.99: its
/// `val_override_config` sets only `n` and `temperature`.)
pub fn validation_params(
    ckpt: &Checkpoint,
    temperature: f64,
    top_p: f64,
    max_new_tokens: usize,
) -> SamplingParams {
    SamplingParams {
        temperature,
        top_p,
        top_k: 0,
        max_new_tokens,
        stop_token_ids: ckpt.stop_token_ids(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{DataSource, Registry};
    use crate::model::PreResize;
    use crate::verify::GradeOutcome;

    /// Accepts answers containing a `1` (some right, some wrong, from a random model).
    struct HasOne;
    impl Grader for HasOne {
        fn grade(&self, response: &str, _: &str, _: Option<&[String]>) -> GradeOutcome {
            let correct = response.contains('1');
            GradeOutcome {
                extracted: None,
                correct,
                reward: f64::from(u8::from(correct)),
                components: Vec::new(),
            }
        }
    }

    fn fixture() -> (Checkpoint, Vec<Example>) {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let ckpt = Checkpoint::load(&root.join("tests/fixtures/qwen25vl/tiny")).unwrap();
        let registry = Registry::load(root).unwrap();
        let loaded = super::super::data::load_examples(
            &registry,
            "synth-perception",
            &ckpt,
            PreResize::None,
            &DataSource::Bundled,
            usize::MAX,
            10,
        )
        .unwrap();
        (ckpt, loaded.examples)
    }

    #[test]
    fn the_step_and_validation_sample_through_one_function() {
        let (ckpt, examples) = fixture();
        let grader: Arc<dyn Grader> = Arc::new(HasOne);
        let rewarder = Rewarder::accuracy_only(grader.clone());
        let params = validation_params(&ckpt, 1.0, 1.0, 6);
        let all: Vec<usize> = (0..examples.len()).collect();
        // validation, chunked by 8, equals one call of the sampling function on every item
        let groups = sample_groups(
            &ckpt,
            &examples,
            &all,
            3,
            &params,
            7,
            Stream::Validation,
            &rewarder,
        )
        .unwrap();
        let hits: f64 = groups.iter().flatten().map(|r| r.accuracy).sum();
        let avg = avg_at_k(&ckpt, &examples, &grader, 3, &params, 7).unwrap();
        assert_eq!(avg, 100.0 * hits / (3 * examples.len()) as f64);

        // the step's rollout: the rows are the sampling function's groups for the prompts the
        // cursor chose, on the step's stream
        let mut recipe = TrainRecipe::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/synth-vppo.toml"),
        )
        .unwrap();
        recipe.filtering.enabled = false;
        recipe.batch.prompts_per_step = 3;
        recipe.rollout.responses_per_prompt = 2;
        recipe.rollout.max_response_tokens = 6;
        let mut cursor = DataCursor::default();
        let batch = rollout(&ckpt, &recipe, &examples, &mut cursor, 7, 4, &rewarder).unwrap();
        let chosen = DataCursor::default().next_batch(examples.len(), 3, 7);
        let direct = sample_groups(
            &ckpt,
            &examples,
            &chosen,
            2,
            &rollout_params(&recipe, &ckpt),
            7,
            Stream::Rollout { step: 4, round: 1 },
            &rewarder,
        )
        .unwrap();
        assert_eq!(batch.rows, direct.into_iter().flatten().collect::<Vec<_>>());
        // and the same stream with the validation tag draws other samples
        let other = sample_groups(
            &ckpt,
            &examples,
            &chosen,
            2,
            &rollout_params(&recipe, &ckpt),
            7,
            Stream::Validation,
            &rewarder,
        )
        .unwrap();
        assert_ne!(batch.rows, other.into_iter().flatten().collect::<Vec<_>>());
    }

    /// Accepts responses of an even number of bytes: about half of a random model's.
    struct EvenLength;
    impl Grader for EvenLength {
        fn grade(&self, response: &str, _: &str, _: Option<&[String]>) -> GradeOutcome {
            let correct = response.len() % 2 == 0;
            GradeOutcome {
                extracted: None,
                correct,
                reward: f64::from(u8::from(correct)),
                components: Vec::new(),
            }
        }
    }

    /// The reference's `_make_batch_data` draws a whole rollout batch every round (not only the
    /// missing prompts), keeps the first `prompts_per_step` surviving groups in draw order, and
    /// gives every drawn prompt its own uid: an example drawn again in a later round is a
    /// second group.
    #[test]
    fn each_sampling_round_draws_a_whole_batch_and_each_draw_is_its_own_group() {
        let (ckpt, examples) = fixture();
        let n = examples.len();
        let rewarder = Rewarder::accuracy_only(Arc::new(EvenLength));
        let mut recipe = TrainRecipe::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/synth-vppo.toml"),
        )
        .unwrap();
        recipe.batch.prompts_per_step = n;
        recipe.rollout.responses_per_prompt = 2;
        recipe.rollout.max_response_tokens = 6;
        let mut cursor = DataCursor::default();
        let batch = rollout(&ckpt, &recipe, &examples, &mut cursor, 7, 1, &rewarder).unwrap();
        assert!(
            batch.rounds >= 2,
            "one round kept every group; pick another seed"
        );
        // every round took one whole epoch of the data (a batch of all n examples)
        assert_eq!(
            cursor,
            DataCursor {
                epoch: batch.rounds as u64 - 1,
                position: n
            }
        );
        assert_eq!(batch.sampled_groups, batch.rounds * n);

        let mut replay = DataCursor::default();
        let mut expected: Vec<Vec<Response>> = Vec::new();
        for round in 1..=batch.rounds {
            let chosen = replay.next_batch(n, n, 7);
            let groups = sample_groups(
                &ckpt,
                &examples,
                &chosen,
                2,
                &rollout_params(&recipe, &ckpt),
                7,
                Stream::Rollout { step: 1, round },
                &rewarder,
            )
            .unwrap();
            expected.extend(
                groups
                    .into_iter()
                    .filter(|g| g[0].accuracy != g[1].accuracy),
            );
        }
        expected.truncate(n);
        let expected: Vec<Response> = expected
            .into_iter()
            .enumerate()
            .flat_map(|(g, rows)| rows.into_iter().map(move |r| Response { group: g, ..r }))
            .collect();
        assert_eq!(batch.rows, expected);

        let mut draws: Vec<(usize, usize)> =
            batch.rows.iter().map(|r| (r.example, r.group)).collect();
        draws.dedup();
        let mut examples_kept: Vec<usize> = draws.iter().map(|d| d.0).collect();
        examples_kept.sort_unstable();
        examples_kept.dedup();
        assert!(
            examples_kept.len() < n,
            "no example was kept from two rounds; pick another seed"
        );
        let advantages = crate::train::advantages::grpo_advantages(
            &batch.rows.iter().map(|r| r.reward).collect::<Vec<_>>(),
            &batch.rows.iter().map(|r| r.group).collect::<Vec<_>>(),
        )
        .unwrap();
        for pair in advantages.chunks(2) {
            assert!(
                (pair[0] + pair[1]).abs() < 1e-9,
                "a group of two sums to zero: {pair:?}"
            );
        }
    }

    #[test]
    fn the_format_reward_grades_the_stripped_response() {
        let (_, examples) = fixture();
        let format = crate::verify::resolve(None, "format").unwrap().rules;
        let rewarder = Rewarder {
            accuracy: Arc::new(HasOne),
            format: Some((Arc::new(format), 0.1)),
        };
        let text = "<think> look </ think > so \\boxed{1}";
        let (reward, accuracy) = rewarder.score(text, &examples[0]);
        assert_eq!(accuracy, 1.0);
        assert!((reward - 1.0).abs() < 1e-12, "reward {reward}");
        let (reward, _) = rewarder.score("<think> look </ thought> \\boxed{1}", &examples[0]);
        assert!((reward - 0.9).abs() < 1e-12, "reward {reward}");
    }
}
