//! The synthetic perception benchmark for the trainer: small square images (50-150 px) with
//! questions that can only be answered by looking (counting, reading and adding shown
//! numbers, measuring marked sides, shaded fractions, comparing colours), free-form and
//! multiple choice, each with a reference solution in the VPPO format
//! (`<think>...</think> ... \boxed{...}`) in which only a few tokens read the image.
//!
//! Written as parquet in the EasyR1 style the VPPO training data uses (`problem` with an
//! `<image>` placeholder, `answer`, `images` list of Image structs), so it flows through the
//! same ingestion, prompt and grading code as the real benchmarks
//! (`benchmarks/synth-perception.toml`). Never part of `all` or the Avg column.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::benchmarks::lettered;
use super::figures::{png_bytes, problem, KINDS};
use super::table::{write_parquet, ImageCell, Table};
use super::SynthError;

/// Image sides, in pixels (inclusive range). Most sides are not multiples of 28 and the range
/// straddles the `synth-*` recipes' training bounds (56x56 to 112x112 pixels), so every image
/// goes through the first resize (scaled up below 56x56, down above 112x112) and the
/// processor's smart_resize, and the perturbation is resampled as in the reference.
pub const IMAGE_SIDES: std::ops::RangeInclusive<u32> = 50..=150;

/// The table of one split; `split` ("train" / "test") selects an independent stream.
pub fn perception_table(split: &str, rows: usize, seed: u64) -> Result<Table, SynthError> {
    let mut rng = ChaCha20Rng::seed_from_u64(crate::seed::derive_seed_tagged(
        seed,
        "synth-perception",
        0,
        split,
    ));
    let mut t = (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for i in 0..rows {
        let side = rng.random_range(IMAGE_SIDES);
        let kind = rng.random_range(0..KINDS);
        let p = problem(kind, side, &mut rng);
        let multiple_choice = rng.random_bool(1.0 / 3.0);
        let (question, answer) = if multiple_choice {
            let lines = lettered(&p.options, |letter, text| format!("{letter}. {text}"));
            (
                format!(
                    "{}\nChoices:\n{}\nAnswer with the option's letter.",
                    p.question,
                    lines.join("\n")
                ),
                p.correct_letter(),
            )
        } else {
            (p.question.clone(), p.answer.clone())
        };
        let conclusion = if multiple_choice {
            format!(" This is option {answer}.")
        } else {
            String::new()
        };
        let solution = format!(
            "<think>{}{conclusion}</think>\nThe answer is \\boxed{{{answer}}}.",
            p.reasoning
        );
        let bytes = png_bytes(&p.image).map_err(|e| SynthError::Image(e.to_string()))?;
        t.0.push(Some(format!("{split}-{i}")));
        t.1.push(Some(format!("<image>{question}")));
        t.2.push(Some(answer));
        t.3.push(vec![ImageCell {
            bytes: Some(bytes),
            path: Some(format!("{split}/{i}.png")),
        }]);
        t.4.push(Some(p.topic.to_string()));
        t.5.push(Some(
            if multiple_choice {
                "multi-choice"
            } else {
                "free-form"
            }
            .to_string(),
        ));
        t.6.push(Some(solution));
    }
    Ok(Table::new()
        .string("id", t.0)
        .string("problem", t.1)
        .string("answer", t.2)
        .image_list("images", t.3)
        .string("task", t.4)
        .string("format", t.5)
        .string("solution", t.6))
}

/// Writes `out/train.parquet` and `out/test.parquet`.
pub fn write_perception(
    out: &Path,
    train: usize,
    test: usize,
    seed: u64,
) -> Result<(), SynthError> {
    for (split, rows) in [("train", train), ("test", test)] {
        let table = perception_table(split, rows, seed)?;
        write_parquet(
            &out.join(format!("{split}.parquet")),
            &table.into_batch()?,
            1024,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_are_independent_and_deterministic() {
        let a = perception_table("train", 8, 1)
            .unwrap()
            .into_batch()
            .unwrap();
        let b = perception_table("train", 8, 1)
            .unwrap()
            .into_batch()
            .unwrap();
        let c = perception_table("test", 8, 1)
            .unwrap()
            .into_batch()
            .unwrap();
        assert_eq!(a, b);
        assert_ne!(a.column(1), c.column(1));
    }
}
