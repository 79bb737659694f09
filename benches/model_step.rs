//! One VPPO-shaped training step on a small checkpoint (e.g. 4 layers, hidden 256, a 64x64
//! image per row, batch 32, sequence 96): the forward (scoring) pass, forward + backward of the
//! PPO loss, and a whole step with the perturbed pass and AdamW — each with the fused kernels
//! and with the differentiable compositions they replaced (`ops::set_fused_kernels(false)`),
//! plus each fused op against its composition on the model's shapes (forward + backward).
//! The peer: `tools/bench_step/run.sh --model DIR` times the same phases in PyTorch.
//!
//! `SPOTLIGHT_BENCH_MODEL=DIR cargo bench --bench model_step` (DIR: e.g. the output of
//! `spotlight synth model --preset bench --out DIR`);
//! without it only the per-op group runs. `SPOTLIGHT_BENCH_BATCH` overrides the batch (32).

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor, Var};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use spotlight::model::ops::{self, reference};
use spotlight::model::{fused, Checkpoint};
use spotlight::train::bench_step::{BenchStepConfig, StepRunner};

/// Seeded standard-normal values (candle's CPU device cannot be seeded).
fn random(dims: &[usize], seed: u64) -> Tensor {
    use rand::SeedableRng;
    use rand_distr::Distribution;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n: usize = dims.iter().product();
    let normal = rand_distr::StandardNormal;
    let v: Vec<f32> = (0..n).map(|_| normal.sample(&mut rng)).collect();
    Tensor::from_vec(v, dims, &Device::Cpu).expect("tensor")
}

/// Forward + backward of `sum(op(x) * r)`.
fn fwd_bwd(op: &dyn Fn(&Tensor) -> Tensor, x: &Var, r: &Tensor) {
    let y = op(x.as_tensor());
    let g = (y * r).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(g.get(x.as_tensor()).is_some());
}

/// Each fused op against its composition, forward + backward, on batch 32 x seq 96 shapes
/// (hidden 256, four heads of 64, two key/value heads, MLP width 1024).
fn bench_ops(c: &mut Criterion) {
    spotlight::model::prepare_process();
    let (b, s, h, heads, hd) = (32, 96, 256, 4, 64);
    let mut group = c.benchmark_group("op_fwd_bwd");
    group.sample_size(10);

    let scores = Var::from_tensor(&random(&[b, heads, s, s], 1)).unwrap();
    let r = random(&[b, heads, s, s], 2);
    group.bench_function("softmax/fused", |bn| {
        bn.iter(|| {
            fwd_bwd(
                &|x| fused::softmax::softmax_last_dim(x).unwrap(),
                &scores,
                &r,
            )
        })
    });
    group.bench_function("softmax/reference", |bn| {
        bn.iter(|| fwd_bwd(&|x| reference::softmax_last_dim(x).unwrap(), &scores, &r))
    });

    let x = Var::from_tensor(&random(&[b, s, h], 3)).unwrap();
    let w = random(&[h], 4);
    let r = random(&[b, s, h], 5);
    group.bench_function("rms_norm/fused", |bn| {
        bn.iter(|| fwd_bwd(&|x| fused::rms_norm::rms_norm(x, &w, 1e-6).unwrap(), &x, &r))
    });
    group.bench_function("rms_norm/reference", |bn| {
        bn.iter(|| fwd_bwd(&|x| reference::rms_norm(x, &w, 1e-6).unwrap(), &x, &r))
    });

    // q as the model has it: (b, s, heads, hd), tables broadcast over the heads
    let q = Var::from_tensor(&random(&[b, s, heads, hd], 6)).unwrap();
    let cos = random(&[b, s, 1, hd], 7).cos().unwrap();
    let sin = random(&[b, s, 1, hd], 8).sin().unwrap();
    let r = random(&[b, s, heads, hd], 9);
    group.bench_function("rope/fused", |bn| {
        bn.iter(|| {
            fwd_bwd(
                &|x| fused::rope::apply_rotary(x, &cos, &sin).unwrap(),
                &q,
                &r,
            )
        })
    });
    group.bench_function("rope/reference", |bn| {
        bn.iter(|| fwd_bwd(&|x| reference::apply_rotary(x, &cos, &sin).unwrap(), &q, &r))
    });

    // causal attention with two key/value heads for four query heads, rows of 60..96 tokens
    let k = random(&[b, s, heads / 2, hd], 10);
    let v = random(&[b, s, heads / 2, hd], 11);
    let mask = ops::AttentionMask::Causal {
        key_lengths: (0..b).map(|i| 60 + i % 37).collect(),
    };
    let scale = 1.0 / (hd as f64).sqrt();
    group.bench_function("attention/fused", |bn| {
        bn.iter(|| {
            fwd_bwd(
                &|q| fused::attention::attention(q, &k, &v, scale, &mask).unwrap(),
                &q,
                &r,
            )
        })
    });
    group.bench_function("attention/reference", |bn| {
        bn.iter(|| {
            fwd_bwd(
                &|q| reference::attention_heads(q, &k, &v, scale, &mask).unwrap(),
                &q,
                &r,
            )
        })
    });

    // the MLP's up projection and activation: (b, s, 256) -> (b, s, 1024)
    let inter = 4 * h;
    let w = random(&[inter, h], 12);
    let bias = random(&[inter], 13);
    let r = random(&[b, s, inter], 14);
    group.bench_function("linear_bias/fused", |bn| {
        bn.iter(|| {
            fwd_bwd(
                &|x| fused::linear::linear(x, &w, Some(&bias)).unwrap(),
                &x,
                &r,
            )
        })
    });
    group.bench_function("linear_bias/reference", |bn| {
        bn.iter(|| fwd_bwd(&|x| reference::linear(x, &w, Some(&bias)).unwrap(), &x, &r))
    });
    let gate = Var::from_tensor(&random(&[b, s, inter], 15)).unwrap();
    let up = random(&[b, s, inter], 16);
    group.bench_function("silu_mul/fused", |bn| {
        bn.iter(|| fwd_bwd(&|g| fused::swiglu::silu_mul(g, &up).unwrap(), &gate, &r))
    });
    group.bench_function("silu_mul/reference", |bn| {
        bn.iter(|| fwd_bwd(&|g| reference::silu_mul(g, &up).unwrap(), &gate, &r))
    });
    group.finish();
}

fn bench_step(c: &mut Criterion) {
    spotlight::model::prepare_process();
    let Some(dir) = std::env::var_os("SPOTLIGHT_BENCH_MODEL").map(PathBuf::from) else {
        eprintln!("set SPOTLIGHT_BENCH_MODEL to a checkpoint folder for the model_step group");
        return;
    };
    let batch = std::env::var("SPOTLIGHT_BENCH_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let ckpt = Checkpoint::load(&dir).expect("loading the bench checkpoint");
    assert_eq!(ckpt.dtype, DType::F32);
    let cfg = BenchStepConfig {
        batch,
        ..BenchStepConfig::default()
    };
    let mut runner = StepRunner::new(&ckpt, &cfg).expect("bench inputs");
    // the perturbed log-probs of one step, reused by the forward + backward benchmark
    let aug = runner.score_perturbed().expect("perturbed pass");

    let mut group = c.benchmark_group("model_step");
    group.sample_size(10);
    for fused_kernels in [true, false] {
        ops::set_fused_kernels(fused_kernels);
        let name = if fused_kernels { "fused" } else { "reference" };
        group.bench_function(BenchmarkId::new("forward", name), |bn| {
            bn.iter(|| runner.score_image().expect("forward"))
        });
        group.bench_function(BenchmarkId::new("forward_backward", name), |bn| {
            bn.iter(|| {
                let scored = runner.score_image().expect("forward");
                runner.loss_backward(&scored, &aug).expect("backward")
            })
        });
        group.bench_function(BenchmarkId::new("step_adamw", name), |bn| {
            bn.iter(|| runner.step().expect("step"))
        });
    }
    ops::set_fused_kernels(true);
    group.finish();
}

criterion_group!(benches, bench_ops, bench_step);
criterion_main!(benches);
