//! Token perception as a tool (`spotlight perception`): how much each token of a response
//! depends on the image, for any checkpoint, measured exactly as the trainer measures it.
//!
//! Why a module of its own: the trainer computes token dependency `S` inside its update, on
//! rollout rows; users want the same number for their own model, prompt and response, and for
//! other ways of taking the image away (the paper's ablation perturbations, and the text-only
//! prompt of follow-up work). This module owns the measures and scores a response twice —
//! with the original and with the measure's image — then hands both log-prob rows to the
//! trainer's own [`crate::train::perception`] functions, so the tool and the trainer cannot
//! disagree.

use image::RgbImage;
use serde::Serialize;

use crate::model::{Checkpoint, ImageProcessor, ModelError, ProcessedImage, ScoringRequest};
use crate::train::perception::{token_dependency, trajectory_dependency};
use crate::train::perturb::{row_rng, Perturbation};
use crate::train::TokenGrid;

/// How the image is taken away.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// The published perturbation: 14 px squares blackened with probability 0.5.
    PatchBlackening,
    /// N(0, 189^2) noise per channel, the reference's alternative.
    GaussianNoise,
    /// Gaussian blur with radius 6, the reference's alternative.
    GaussianBlur,
    /// The whole image one grey level (128 as the reference's full masking; 0 for black):
    /// deterministic, so anyone can recompute it.
    FullMask { fill: u8 },
    /// The prompt without its image (the text-only prediction).
    NoImage,
}

impl Measure {
    /// The perturbation that makes the measure's image (`None` for [`Measure::NoImage`]).
    pub fn perturbation(self) -> Option<Perturbation> {
        match self {
            Measure::PatchBlackening => Some(Perturbation::PUBLISHED),
            Measure::GaussianNoise => Some(Perturbation::GaussianNoise { std: 189.0 }),
            Measure::GaussianBlur => Some(Perturbation::GaussianBlur { radius: 6.0 }),
            Measure::FullMask { fill } => Some(Perturbation::FullMask { grey: fill }),
            Measure::NoImage => None,
        }
    }

    /// The measure's version of `image` (the image as the processor receives it, before the
    /// processor's resize): the random ones draw from the stream of (`seed`, `item`, `sample`),
    /// as a training row's mask does.
    pub fn perturbed(
        self,
        image: &RgbImage,
        seed: u64,
        item: &str,
        sample: u32,
    ) -> Option<RgbImage> {
        self.perturbation()
            .map(|p| p.apply(image, &mut row_rng(seed, item, sample)))
    }
}

/// A response's log-probs with and without the image, and its dependency on it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DependencyScores {
    pub logprobs: Vec<f64>,
    pub perturbed_logprobs: Vec<f64>,
    /// `S` of each token (the trainer's k3 estimator).
    pub token_dependency: Vec<f64>,
    /// The mean of `S` over the response.
    pub trajectory_dependency: f64,
}

/// Scores `original` and `perturbed` (the same response after two contexts) at `temperature`
/// and derives `S` through the trainer's functions.
pub fn dependency(
    ckpt: &Checkpoint,
    original: ScoringRequest,
    perturbed: ScoringRequest,
    temperature: f64,
) -> Result<DependencyScores, ModelError> {
    if original.response_ids != perturbed.response_ids {
        return Err(ModelError::Input(
            "the two scorings must be of the same response".into(),
        ));
    }
    let n = original.response_ids.len();
    let rows = ckpt
        .model
        .log_probs(&[original, perturbed], temperature)?
        .to_vecs()?;
    let as_f64 = |v: &Vec<f32>| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
    let (old, aug) = (as_f64(&rows[0]), as_f64(&rows[1]));
    let grid = |what: &str, v: &[f64]| {
        TokenGrid::from_rows(what, &[v.to_vec()]).map_err(|e| ModelError::Input(e.to_string()))
    };
    let mask = grid("mask", &vec![1.0; n])?;
    let s = token_dependency(&mask, &grid("old", &old)?, &grid("aug", &aug)?);
    let trajectory = trajectory_dependency(&s, &mask)[0];
    Ok(DependencyScores {
        token_dependency: s.row(0).to_vec(),
        trajectory_dependency: trajectory,
        logprobs: old,
        perturbed_logprobs: aug,
    })
}

/// The processor's output for an image the processor receives as it is.
pub fn processed(
    processor: &ImageProcessor,
    image: &RgbImage,
) -> Result<ProcessedImage, ModelError> {
    processor.preprocess(&image::DynamicImage::ImageRgb8(image.clone()))
}

/// Settings of a benchmark measurement.
#[derive(Debug, Clone, Serialize)]
pub struct RunSettings {
    /// Responses sampled per item.
    pub k: usize,
    pub measure: Measure,
    pub seed: u64,
    pub temperature: f64,
    pub top_p: f64,
    pub max_tokens: usize,
    /// TGF's keep fraction, for the `tgf_selected` column (the paper's 0.4).
    pub rho: f64,
    /// Further measures computed on the same responses and compared with `measure`.
    pub compare: Vec<Measure>,
}

/// One response token, as `tokens.parquet` stores it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenRow {
    pub benchmark: String,
    pub item_id: String,
    pub sample: u32,
    pub position: u32,
    pub token: String,
    pub token_id: u32,
    pub logprob: f64,
    pub perturbed_logprob: f64,
    pub dependency: f64,
    pub tgf_selected: bool,
    pub correct: bool,
}

/// One response's trajectory dependency and verdict.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Trajectory {
    pub dependency: f64,
    pub correct: bool,
    pub tokens: usize,
}

/// What the page shows of an item: its question and a thumbnail of its first image.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemView {
    pub benchmark: String,
    pub item_id: String,
    pub question: String,
    /// A PNG data URL (at most 256 px a side), if the item has an image.
    pub image: Option<String>,
}

/// Another measure's dependencies on the same responses.
#[derive(Debug, Clone)]
pub struct OtherMeasure {
    pub measure: Measure,
    pub tokens: Vec<f64>,
    pub trajectories: Vec<f64>,
}

/// Spearman's rank correlation (average ranks for ties); `None` with fewer than two values or
/// a constant side.
pub fn spearman(a: &[f64], b: &[f64]) -> Option<f64> {
    fn ranks(v: &[f64]) -> Vec<f64> {
        let mut order: Vec<usize> = (0..v.len()).collect();
        order.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
        let mut r = vec![0.0; v.len()];
        let mut i = 0;
        while i < order.len() {
            let mut j = i;
            while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
                j += 1;
            }
            let avg = (i + j) as f64 / 2.0 + 1.0;
            for &k in &order[i..=j] {
                r[k] = avg;
            }
            i = j + 1;
        }
        r
    }
    if a.len() != b.len() {
        return None;
    }
    pearson(&ranks(a), &ranks(b))
}

/// What one benchmark gave.
#[derive(Debug, Clone)]
pub struct Measured {
    pub tokens: Vec<TokenRow>,
    pub trajectories: Vec<Trajectory>,
    pub items: Vec<ItemView>,
    /// The `--compare-measures` measures on the same responses: S per token (in `tokens`'
    /// order) and per trajectory (in `trajectories`' order).
    pub others: Vec<OtherMeasure>,
    /// Seconds of the measure's scoring pass (the extra cost of perception).
    pub measure_seconds: f64,
}

/// Samples `settings.k` responses per example with the embedded model, scores each with the
/// original and the measure's images through the trainer's scoring pass, and derives every
/// token's S, its TGF selection and the trajectory values with the trainer's functions.
pub fn measure_benchmark(
    ckpt: &Checkpoint,
    benchmark: &str,
    examples: &[crate::train::Example],
    grader: std::sync::Arc<dyn crate::verify::Grader>,
    settings: &RunSettings,
) -> Result<Measured, crate::train::TrainError> {
    use crate::train::perception::gradient_filter_mask;
    use crate::train::rollout::{sample_groups, validation_params, Rewarder, Stream};
    use crate::train::scoring::score_rows;
    use crate::train::update::response_mask;
    if settings.measure == Measure::NoImage {
        return Err(crate::train::TrainError::Usage(
            "--measure no-image is available in the single-case mode only (for now)".into(),
        ));
    }
    let params = validation_params(
        ckpt,
        settings.temperature,
        settings.top_p,
        settings.max_tokens,
    );
    let rewarder = Rewarder::accuracy_only(grader);
    let all: Vec<usize> = (0..examples.len()).collect();
    let mut rows = Vec::new();
    for chosen in all.chunks(8) {
        for group in sample_groups(
            ckpt,
            examples,
            chosen,
            settings.k,
            &params,
            settings.seed,
            Stream::Validation,
            &rewarder,
        )? {
            rows.extend(group);
        }
    }
    let width = rows.iter().map(|r| r.tokens.len()).max().unwrap_or(0);
    let images: Vec<Vec<&ProcessedImage>> = rows
        .iter()
        .map(|r| examples[r.example].images.iter().collect())
        .collect();
    let old = score_rows(
        ckpt,
        examples,
        &rows,
        &images,
        settings.temperature,
        8,
        width,
    )?;
    let started = std::time::Instant::now();
    let aug_of = |measure: Measure| -> Result<TokenGrid, crate::train::TrainError> {
        let perturbed: Vec<Vec<ProcessedImage>> = rows
            .iter()
            .map(|r| {
                let ex = &examples[r.example];
                ex.sources
                    .iter()
                    .map(|src| {
                        let p = measure
                            .perturbed(src, settings.seed, &ex.id, r.sample)
                            .unwrap_or_else(|| src.clone());
                        processed(&ckpt.image_processor, &p)
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<_, _>>()?;
        let refs: Vec<Vec<&ProcessedImage>> =
            perturbed.iter().map(|p| p.iter().collect()).collect();
        score_rows(ckpt, examples, &rows, &refs, settings.temperature, 8, width)
    };
    let aug = aug_of(settings.measure)?;
    let measure_seconds = started.elapsed().as_secs_f64();
    let mask = response_mask(&rows, width);
    let s = token_dependency(&mask, &old, &aug);
    // the other measures on the same responses (`--compare-measures`)
    let mut others = Vec::with_capacity(settings.compare.len());
    for &m in &settings.compare {
        if m == Measure::NoImage {
            return Err(crate::train::TrainError::Usage(
                "no-image cannot be compared in the benchmark mode (for now)".into(),
            ));
        }
        let other = token_dependency(&mask, &old, &aug_of(m)?);
        let flat: Vec<f64> = rows
            .iter()
            .enumerate()
            .flat_map(|(i, r)| other.row(i)[..r.tokens.len()].to_vec())
            .collect();
        others.push(OtherMeasure {
            measure: m,
            tokens: flat,
            trajectories: trajectory_dependency(&other, &mask),
        });
    }
    let trajectory = trajectory_dependency(&s, &mask);
    let tgf = gradient_filter_mask(&s, &mask, settings.rho);
    let builder = ckpt.prompt_builder()?;
    let mut tokens = Vec::new();
    let mut trajectories = Vec::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        let correct = r.accuracy > 0.5;
        let texts = builder.decode_each(&r.tokens)?;
        for (t, (&id, text)) in r.tokens.iter().zip(texts).enumerate() {
            tokens.push(TokenRow {
                benchmark: benchmark.to_string(),
                item_id: examples[r.example].id.clone(),
                sample: r.sample,
                position: t as u32,
                token: text,
                token_id: id,
                logprob: old.row(i)[t],
                perturbed_logprob: aug.row(i)[t],
                dependency: s.row(i)[t],
                tgf_selected: tgf.row(i)[t] > 0.5,
                correct,
            });
        }
        trajectories.push(Trajectory {
            dependency: trajectory[i],
            correct,
            tokens: r.tokens.len(),
        });
    }
    let items = examples
        .iter()
        .map(|ex| item_view(ckpt, benchmark, ex))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Measured {
        tokens,
        trajectories,
        items,
        others,
        measure_seconds,
    })
}

/// The question as the user turn holds it (decoded without special tokens, the chat roles cut
/// off) and a thumbnail of the first image.
fn item_view(
    ckpt: &Checkpoint,
    benchmark: &str,
    ex: &crate::train::Example,
) -> Result<ItemView, ModelError> {
    use base64::Engine;
    let text = ckpt
        .tokenizer
        .decode(&ex.prompt_ids, true)
        .map_err(|e| ModelError::Input(e.to_string()))?;
    let question = text
        .rsplit_once("user\n")
        .map_or(text.as_str(), |(_, q)| q)
        .trim_end()
        .trim_end_matches("assistant")
        .trim_end()
        .to_string();
    let image = match ex.sources.first() {
        Some(img) => {
            let (w, h) = img.dimensions();
            let scale = 256.0 / w.max(h).max(1) as f64;
            let thumb = if scale < 1.0 {
                let size = |v: u32| ((v as f64 * scale) as u32).max(1);
                image::imageops::thumbnail(img, size(w), size(h))
            } else {
                img.clone()
            };
            let mut png = Vec::new();
            thumb
                .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                .map_err(|e| ModelError::Input(e.to_string()))?;
            Some(format!(
                "data:image/png;base64,{}",
                base64::engine::general_purpose::STANDARD.encode(png)
            ))
        }
        None => None,
    };
    Ok(ItemView {
        benchmark: benchmark.to_string(),
        item_id: ex.id.clone(),
        question,
        image,
    })
}

/// Escapes text for HTML.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The shading of a token: alpha `min(1, sqrt(S / 0.5))`, so S = 0.5 is full red and small
/// dependencies stay visible.
pub fn shade(s: f64) -> f64 {
    (s.max(0.0) / 0.5).sqrt().min(1.0)
}

/// (benchmark, item id, sample): one response.
type ResponseKey = (String, String, u32);

/// `index.html`: every response with its tokens shaded by S, most dependent trajectories
/// first, with the question, the image thumbnail and the verdict; checkboxes filter by
/// benchmark and verdict (a few lines of inline script, no framework, no network).
pub fn index_html(tokens: &[TokenRow], items: &[ItemView], title: &str) -> String {
    use std::collections::BTreeMap;
    let mut responses: BTreeMap<(String, String, u32), Vec<&TokenRow>> = BTreeMap::new();
    for t in tokens {
        responses
            .entry((t.benchmark.clone(), t.item_id.clone(), t.sample))
            .or_default()
            .push(t);
    }
    let mut list: Vec<(ResponseKey, Vec<&TokenRow>, f64)> = responses
        .into_iter()
        .map(|(k, v)| {
            let mean = v.iter().map(|t| t.dependency).sum::<f64>() / v.len().max(1) as f64;
            (k, v, mean)
        })
        .collect();
    list.sort_by(|a, b| b.2.total_cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    let benches: std::collections::BTreeSet<&str> =
        list.iter().map(|(k, _, _)| k.0.as_str()).collect();
    let mut html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n\
         <style>body{{font:14px/1.5 system-ui,sans-serif;margin:24px;max-width:1100px}}\
         .r{{border:1px solid #ddd;border-radius:6px;padding:10px;margin:12px 0;display:flex;gap:14px}}\
         .r img{{max-width:256px;max-height:256px;border:1px solid #eee}}\
         .t{{white-space:pre-wrap;font-family:ui-monospace,monospace}}\
         .t span{{border-radius:2px}} .meta{{color:#555}} .ok{{color:#080}} .no{{color:#a00}}\
         .q{{color:#333;margin:4px 0 8px}} .hidden{{display:none}}</style></head><body>\n\
         <h1>{}</h1>\n<p>Tokens shaded by their dependency S on the image (red: alpha = \
         min(1, sqrt(S / 0.5))); hover a token for its S. Responses ordered from the most to the \
         least dependent trajectory.</p>\n<form id=\"f\">",
        escape(title),
        escape(title)
    );
    for b in &benches {
        html.push_str(&format!(
            "<label><input type=\"checkbox\" name=\"b\" value=\"{0}\" checked> {0}</label> ",
            escape(b)
        ));
    }
    html.push_str(
        "| <label><input type=\"checkbox\" name=\"v\" value=\"right\" checked> right</label> \
         <label><input type=\"checkbox\" name=\"v\" value=\"wrong\" checked> wrong</label></form>\n",
    );
    let view = |b: &str, id: &str| items.iter().find(|v| v.benchmark == b && v.item_id == id);
    for ((bench, item, sample), toks, mean) in &list {
        let correct = toks.first().is_some_and(|t| t.correct);
        let verdict = if correct { "right" } else { "wrong" };
        html.push_str(&format!(
            "<div class=\"r\" data-b=\"{}\" data-v=\"{verdict}\">",
            escape(bench)
        ));
        let v = view(bench, item);
        if let Some(src) = v.and_then(|v| v.image.as_ref()) {
            html.push_str(&format!("<img alt=\"item image\" src=\"{src}\">"));
        }
        html.push_str(&format!(
            "<div><div class=\"meta\">{} / {} / sample {sample} &middot; trajectory S {mean:.4} \
             &middot; <span class=\"{}\">{verdict}</span></div>",
            escape(bench),
            escape(item),
            if correct { "ok" } else { "no" }
        ));
        if let Some(v) = v {
            html.push_str(&format!("<div class=\"q\">{}</div>", escape(&v.question)));
        }
        html.push_str("<div class=\"t\">");
        for t in toks {
            html.push_str(&format!(
                "<span title=\"S = {:.4}\" style=\"background:rgba(220,30,30,{:.3})\">{}</span>",
                t.dependency,
                shade(t.dependency),
                escape(&t.token)
            ));
        }
        html.push_str("</div></div></div>\n");
    }
    html.push_str(
        "<script>const f=document.getElementById('f');function u(){const on=n=>[...f.querySelectorAll('input[name='+n+']:checked')].map(i=>i.value);\
         const b=on('b'),v=on('v');document.querySelectorAll('.r').forEach(r=>r.classList.toggle('hidden',!(b.includes(r.dataset.b)&&v.includes(r.dataset.v))));}\
         f.addEventListener('change',u);</script>\n</body></html>\n",
    );
    html
}

/// The paper's two observations in numbers: how sparse token dependency is, and how much
/// trajectories differ.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub responses: usize,
    pub tokens: usize,
    pub mean_dependency: f64,
    /// Share of tokens with S above 0.01, 0.1 and 1.
    pub share_above: [(f64, f64); 3],
    /// Share of the total dependency carried by the top 10% and top 40% of tokens.
    pub top_10_percent_share: f64,
    pub top_40_percent_share: f64,
    /// Gini coefficient of S over tokens (0: every token alike; 1: one token carries all).
    pub gini: f64,
    /// Trajectory dependency: min, 10th percentile, median, 90th percentile, max, and the
    /// coefficient of variation (std / mean).
    pub trajectory: [f64; 5],
    pub trajectory_cv: Option<f64>,
    /// Pearson correlation between trajectory dependency and correctness (None when either
    /// is constant).
    pub correlation_with_correct: Option<f64>,
    /// Seconds of the measure's scoring pass per 1,000 response tokens.
    pub seconds_per_1000_tokens: Option<f64>,
}

impl Summary {
    pub fn of(tokens: &[TokenRow], trajectories: &[Trajectory], measure_seconds: f64) -> Summary {
        let mut s: Vec<f64> = tokens.iter().map(|t| t.dependency).collect();
        s.sort_by(|a, b| b.total_cmp(a));
        let n = s.len();
        let total: f64 = s.iter().sum();
        let share_top = |frac: f64| {
            let k = ((frac * n as f64).ceil() as usize).min(n);
            if total > 0.0 {
                s[..k].iter().sum::<f64>() / total
            } else {
                0.0
            }
        };
        let above = |x: f64| {
            if n == 0 {
                0.0
            } else {
                s.iter().filter(|&&v| v > x).count() as f64 / n as f64
            }
        };
        // Gini over the ascending values: sum((2i - n - 1) x_i) / (n sum x)
        let gini = if n > 0 && total > 0.0 {
            s.iter()
                .rev()
                .enumerate()
                .map(|(i, v)| (2.0 * (i + 1) as f64 - n as f64 - 1.0) * v)
                .sum::<f64>()
                / (n as f64 * total)
        } else {
            0.0
        };
        let mut traj: Vec<f64> = trajectories.iter().map(|t| t.dependency).collect();
        traj.sort_by(f64::total_cmp);
        let q = |p: f64| {
            if traj.is_empty() {
                f64::NAN
            } else {
                traj[((p * (traj.len() - 1) as f64).round() as usize).min(traj.len() - 1)]
            }
        };
        let m = mean(&traj);
        let sd = std_dev(&traj);
        let correct: Vec<f64> = trajectories
            .iter()
            .map(|t| f64::from(u8::from(t.correct)))
            .collect();
        let deps: Vec<f64> = trajectories.iter().map(|t| t.dependency).collect();
        Summary {
            responses: trajectories.len(),
            tokens: n,
            mean_dependency: if n == 0 { 0.0 } else { total / n as f64 },
            share_above: [(0.01, above(0.01)), (0.1, above(0.1)), (1.0, above(1.0))],
            top_10_percent_share: share_top(0.1),
            top_40_percent_share: share_top(0.4),
            gini,
            trajectory: [q(0.0), q(0.1), q(0.5), q(0.9), q(1.0)],
            trajectory_cv: (m > 0.0).then(|| sd / m),
            correlation_with_correct: pearson(&deps, &correct),
            seconds_per_1000_tokens: (n > 0).then(|| measure_seconds * 1000.0 / n as f64),
        }
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn std_dev(v: &[f64]) -> f64 {
    let m = mean(v);
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len().max(1) as f64).sqrt()
}

fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    let (sa, sb) = (std_dev(a), std_dev(b));
    if a.len() < 2 || sa == 0.0 || sb == 0.0 {
        return None;
    }
    let (ma, mb) = (mean(a), mean(b));
    let cov = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - ma) * (y - mb))
        .sum::<f64>()
        / a.len() as f64;
    Some(cov / (sa * sb))
}

/// `tokens.parquet`: one row per response token.
pub fn tokens_parquet(rows: &[TokenRow]) -> Result<Vec<u8>, String> {
    use arrow::array::{ArrayRef, BooleanArray, Float64Array, StringArray, UInt32Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    let schema = Arc::new(Schema::new(vec![
        Field::new("benchmark", DataType::Utf8, false),
        Field::new("item_id", DataType::Utf8, false),
        Field::new("sample", DataType::UInt32, false),
        Field::new("position", DataType::UInt32, false),
        Field::new("token", DataType::Utf8, false),
        Field::new("token_id", DataType::UInt32, false),
        Field::new("logprob", DataType::Float64, false),
        Field::new("perturbed_logprob", DataType::Float64, false),
        Field::new("dependency", DataType::Float64, false),
        Field::new("tgf_selected", DataType::Boolean, false),
        Field::new("correct", DataType::Boolean, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.benchmark.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.item_id.as_str()),
        )),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.sample))),
        Arc::new(UInt32Array::from_iter_values(
            rows.iter().map(|r| r.position),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.token.as_str()),
        )),
        Arc::new(UInt32Array::from_iter_values(
            rows.iter().map(|r| r.token_id),
        )),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|r| r.logprob),
        )),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|r| r.perturbed_logprob),
        )),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|r| r.dependency),
        )),
        Arc::new(BooleanArray::from(
            rows.iter().map(|r| r.tgf_selected).collect::<Vec<_>>(),
        )),
        Arc::new(BooleanArray::from(
            rows.iter().map(|r| r.correct).collect::<Vec<_>>(),
        )),
    ];
    let batch =
        arrow::array::RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(&mut out, schema, None).map_err(|e| e.to_string())?;
    writer.write(&batch).map_err(|e| e.to_string())?;
    writer.close().map_err(|e| e.to_string())?;
    Ok(out)
}

/// Histogram counts of `values` over `edges` (ascending; values outside are left out).
pub fn histogram(values: &[f64], edges: &[f64]) -> Vec<usize> {
    let mut counts = vec![0usize; edges.len().saturating_sub(1)];
    for &v in values {
        if let Some(i) = edges.windows(2).position(|w| v >= w[0] && v < w[1]) {
            counts[i] += 1;
        }
    }
    counts
}

/// A bar chart of `counts` between `edges` as an SVG document (plotters' SVG backend). With
/// `log10_edges` the edges are exponents and the axis is labelled as powers of ten.
pub fn bars_svg(
    caption: &str,
    x_desc: &str,
    edges: &[f64],
    counts: &[usize],
    log10_edges: bool,
) -> Result<String, String> {
    use plotters::prelude::*;
    let fail = |e: &dyn std::fmt::Display| e.to_string();
    let (lo, hi) = (
        edges.first().copied().unwrap_or(0.0),
        edges
            .last()
            .copied()
            .unwrap_or(1.0)
            .max(edges.first().copied().unwrap_or(0.0) + 1e-9),
    );
    let top = counts.iter().copied().max().unwrap_or(0).max(1) as f64 * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 18))
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(lo..hi, 0.0..top)
            .map_err(|e| fail(&e))?;
        let fmt = |x: &f64| {
            if log10_edges {
                format!("1e{x:.0}")
            } else {
                format!("{x:.3}")
            }
        };
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc("count")
            .x_label_formatter(&fmt)
            .draw()
            .map_err(|e| fail(&e))?;
        chart
            .draw_series(edges.windows(2).zip(counts).map(|(w, &c)| {
                Rectangle::new(
                    [(w[0], 0.0), (w[1], c as f64)],
                    RGBColor(31, 119, 180).filled(),
                )
            }))
            .map_err(|e| fail(&e))?;
        root.present().map_err(|e| fail(&e))?;
    }
    Ok(svg)
}

/// The two figures of a measurement: token S on a log scale (zeros counted in the caption)
/// and the trajectory dependency distribution, as SVG documents.
pub fn figures(
    tokens: &[TokenRow],
    trajectories: &[Trajectory],
) -> Result<(String, String), String> {
    let positive: Vec<f64> = tokens
        .iter()
        .map(|t| t.dependency)
        .filter(|&s| s > 0.0)
        .map(f64::log10)
        .collect();
    let zeros = tokens.len() - positive.len();
    let edges: Vec<f64> = (0..=28).map(|i| -6.0 + 0.25 * i as f64).collect();
    let token_svg = bars_svg(
        &format!(
            "token dependency S ({} tokens, {zeros} with S = 0)",
            tokens.len()
        ),
        "S (log scale)",
        &edges,
        &histogram(&positive, &edges),
        true,
    )?;
    let deps: Vec<f64> = trajectories.iter().map(|t| t.dependency).collect();
    let high = deps.iter().copied().fold(0.0f64, f64::max).max(1e-6) * 1.0001;
    let edges: Vec<f64> = (0..=20).map(|i| high * i as f64 / 20.0).collect();
    let trajectory_svg = bars_svg(
        &format!("trajectory dependency ({} responses)", trajectories.len()),
        "mean S of a response",
        &edges,
        &histogram(&deps, &edges),
        false,
    )?;
    Ok((token_svg, trajectory_svg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(dependency: f64) -> TokenRow {
        TokenRow {
            benchmark: "b".into(),
            item_id: "i".into(),
            sample: 0,
            position: 0,
            token: "t".into(),
            token_id: 0,
            logprob: 0.0,
            perturbed_logprob: 0.0,
            dependency,
            tgf_selected: false,
            correct: false,
        }
    }

    #[test]
    fn summary_numbers_on_hand_made_inputs() {
        // nine tokens with S 0 and one with S 1: all dependency in the top 10%
        let mut tokens: Vec<TokenRow> = (0..9).map(|_| token(0.0)).collect();
        tokens.push(token(1.0));
        let traj = [
            Trajectory {
                dependency: 0.1,
                correct: true,
                tokens: 5,
            },
            Trajectory {
                dependency: 0.3,
                correct: false,
                tokens: 5,
            },
        ];
        let s = Summary::of(&tokens, &traj, 2.0);
        assert_eq!(s.tokens, 10);
        assert!((s.mean_dependency - 0.1).abs() < 1e-12);
        assert_eq!(s.share_above[1], (0.1, 0.1));
        assert!((s.top_10_percent_share - 1.0).abs() < 1e-12);
        // Gini of (0 x 9, 1): (2*10 - 11) * 1 / (10 * 1) = 0.9
        assert!((s.gini - 0.9).abs() < 1e-12, "{}", s.gini);
        assert_eq!(s.trajectory[0], 0.1);
        assert_eq!(s.trajectory[4], 0.3);
        // more dependent, less correct: correlation -1
        assert!((s.correlation_with_correct.unwrap() + 1.0).abs() < 1e-12);
        assert_eq!(s.seconds_per_1000_tokens, Some(200.0));
        // equal tokens: Gini 0, and a constant verdict has no correlation
        let flat: Vec<TokenRow> = (0..4).map(|_| token(0.5)).collect();
        let same = [
            traj[0],
            Trajectory {
                correct: true,
                ..traj[1]
            },
        ];
        let f = Summary::of(&flat, &same, 0.0);
        assert!(f.gini.abs() < 1e-12);
        assert_eq!(f.correlation_with_correct, None);
    }

    #[test]
    fn the_page_orders_responses_by_dependency_and_escapes_text() {
        let mut rows = Vec::new();
        for (item, s) in [("low", 0.01), ("high", 0.9)] {
            for p in 0..2 {
                rows.push(TokenRow {
                    item_id: item.into(),
                    position: p,
                    token: "<b>&".into(),
                    dependency: s,
                    ..token(s)
                });
            }
        }
        let items = [ItemView {
            benchmark: "b".into(),
            item_id: "high".into(),
            question: "Is 1 < 2?".into(),
            image: None,
        }];
        let html = index_html(&rows, &items, "t");
        assert!(html.find("b / high").unwrap() < html.find("b / low").unwrap());
        assert!(html.contains("&lt;b&gt;&amp;") && !html.contains("<b>&"));
        assert!(html.contains("Is 1 &lt; 2?"));
        assert!(html.contains("rgba(220,30,30,1.000)") && html.contains("rgba(220,30,30,0.141)"));
        assert_eq!(html.matches("class=\"r\"").count(), 2);
        assert!(html.contains("value=\"wrong\" checked"));
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no network"
        );
    }

    #[test]
    fn spearman_ranks_with_ties_and_refuses_constants() {
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 90.0]), Some(1.0));
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), Some(-1.0));
        // ties get the average rank: ranks (1.5, 1.5, 3) vs (1, 2, 3)
        let r = spearman(&[5.0, 5.0, 9.0], &[1.0, 2.0, 3.0]).unwrap();
        assert!((r - 0.8660254037844386).abs() < 1e-12, "{r}");
        assert_eq!(spearman(&[1.0, 1.0], &[1.0, 2.0]), None);
    }

    #[test]
    fn histograms_count_each_value_once_and_figures_are_svg() {
        assert_eq!(
            histogram(&[0.0, 0.5, 0.99, 1.0, 2.5, 9.0], &[0.0, 1.0, 2.0, 3.0]),
            vec![3, 1, 1]
        );
        let tokens: Vec<TokenRow> = [0.0, 1e-5, 1e-3, 0.2, 0.2]
            .iter()
            .map(|&s| token(s))
            .collect();
        let traj = [Trajectory {
            dependency: 0.1,
            correct: false,
            tokens: 5,
        }];
        let (a, b) = figures(&tokens, &traj).unwrap();
        for svg in [&a, &b] {
            assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        }
        assert!(a.contains("5 tokens, 1 with S = 0"), "{a}");
    }
}
