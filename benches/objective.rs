//! Cost of the VPPO objective outside the model: the mini-batch bookkeeping (S, TAS range,
//! TGF top-k) and one micro-batch's loss + backward, at the published run's shapes (a
//! per-device mini-batch of 128 responses x 2048 tokens, micro-batches of 8). Compared with
//! DAPO (same loss, no bookkeeping) this is VPPO's overhead apart from the perturbed forward.
//!
//! `cargo bench --bench objective`

use candle_core::{DType, Device, Var};
use criterion::{criterion_group, criterion_main, Criterion};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use spotlight::train::objective::{
    micro_batch_objective, MiniBatch, MiniBatchShaping, ObjectiveConfig,
};
use spotlight::train::TokenGrid;

const ROWS: usize = 128;
const TOKENS: usize = 2048;
const MICRO: usize = 8;

fn config(vppo: bool) -> ObjectiveConfig {
    ObjectiveConfig {
        clip_low: 0.2,
        clip_high: 0.28,
        clip_dual: 3.0,
        rho: 0.4,
        beta_min: 0.9,
        entropy_coef: 0.06,
        tas: vppo,
        tgf: vppo,
        kl_coef: 0.0,
    }
}

/// Seeded rollout data: response lengths 256..2048, log-probs in (-3, 0).
fn data() -> (TokenGrid, TokenGrid, TokenGrid, Vec<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let (mut mask, mut old, mut aug) = (
        TokenGrid::zeros(ROWS, TOKENS),
        TokenGrid::zeros(ROWS, TOKENS),
        TokenGrid::zeros(ROWS, TOKENS),
    );
    for i in 0..ROWS {
        let len = rng.random_range(256..=TOKENS);
        for t in 0..len {
            mask.row_mut(i)[t] = 1.0;
            let o = -rng.random_range(0.0..3.0);
            old.row_mut(i)[t] = o;
            aug.row_mut(i)[t] = o - rng.random_range(0.0..1.0);
        }
    }
    let advantages = (0..ROWS).map(|_| rng.random_range(-2.0..2.0)).collect();
    (mask, old, aug, advantages)
}

fn bench(c: &mut Criterion) {
    let (mask, old, aug, advantages) = data();
    let vppo = config(true);
    c.bench_function("vppo mini-batch bookkeeping 128x2048", |b| {
        b.iter(|| MiniBatchShaping::new(&vppo, &mask, &old, Some(&aug)).map(|s| s.len()))
    });
    for (name, cfg, aug) in [
        ("vppo", config(true), Some(&aug)),
        ("dapo", config(false), None),
    ] {
        let shaping = MiniBatchShaping::new(&cfg, &mask, &old, aug).expect("shaping");
        let mini = MiniBatch {
            response_mask: &mask,
            old_logprobs: &old,
            advantages: &advantages,
            ref_logprobs: None,
            shaping: &shaping,
            mini_batch_tokens: shaping.response_tokens(),
        };
        let lp = old
            .slice_rows(0..MICRO)
            .and_then(|g| g.to_tensor(DType::F32, &Device::Cpu))
            .expect("logprobs");
        let var = Var::from_tensor(&lp).expect("var");
        c.bench_function(
            &format!("{name} micro-batch loss+backward 8x2048 f32"),
            |b| {
                b.iter(|| {
                    let micro = micro_batch_objective(&cfg, &mini, 0..MICRO, var.as_tensor())
                        .expect("objective");
                    micro.weighted_loss.backward().expect("backward")
                })
            },
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
