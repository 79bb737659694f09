//! The fused kernels (`spotlight::model::fused`) against the differentiable compositions they
//! replace (`spotlight::model::ops::reference`): forward values and gradients within 1e-5 (f32)
//! on seeded random shapes, contiguous and not; plus batch and thread-count invariance.

use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use spotlight::model::fused;
use spotlight::model::ops::{self, reference};

fn random(rng: &mut ChaCha8Rng, dims: &[usize], scale: f64, dtype: DType) -> Tensor {
    let n: usize = dims.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|_| rng.random_range(-1.0..1.0) * scale)
        .collect();
    Tensor::from_vec(v, dims, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

fn tolerance(dtype: DType) -> f64 {
    if dtype == DType::F64 {
        1e-12
    } else {
        1e-5
    }
}

/// A random leading shape and last dimension for case `i`.
fn shape(rng: &mut ChaCha8Rng) -> Vec<usize> {
    let rank = rng.random_range(2..=4);
    let mut d: Vec<usize> = (0..rank - 1).map(|_| rng.random_range(1..6)).collect();
    d.push(2 * rng.random_range(1..40));
    d
}

/// `x` itself, or (when `transposed`) a non-contiguous view with the same shape: the
/// transpose of a contiguous tensor with the first two dims swapped.
fn maybe_strided(x: &Tensor, transposed: bool) -> Tensor {
    if !transposed || x.rank() < 3 {
        return x.clone();
    }
    let t = x.transpose(0, 1).unwrap().contiguous().unwrap();
    let v = t.transpose(0, 1).unwrap();
    assert!(!v.is_contiguous() || x.dim(0).unwrap() == 1 || x.dim(1).unwrap() == 1);
    v
}

/// Value and gradient of `sum(f(x) * r)` with respect to `x` (and optionally `w`).
fn value_and_grads(
    f: &dyn Fn(&Tensor, &Tensor) -> Tensor,
    x: &Tensor,
    w: &Tensor,
    r: &Tensor,
    transposed: bool,
) -> (Tensor, Tensor, Tensor) {
    let xv = Var::from_tensor(x).unwrap();
    let wv = Var::from_tensor(w).unwrap();
    let xin = maybe_strided(xv.as_tensor(), transposed);
    let y = f(&xin, wv.as_tensor());
    let loss = (&y * r).unwrap().sum_all().unwrap();
    let g = loss.backward().unwrap();
    let gx = g.get(xv.as_tensor()).expect("gradient of x").clone();
    let gw = g
        .get(wv.as_tensor())
        .cloned()
        .unwrap_or_else(|| w.zeros_like().unwrap());
    (y, gx, gw)
}

fn check_pair(
    name: &str,
    fused_fn: &dyn Fn(&Tensor, &Tensor) -> Tensor,
    reference_fn: &dyn Fn(&Tensor, &Tensor) -> Tensor,
    make_w: &dyn Fn(&mut ChaCha8Rng, &[usize], DType) -> Tensor,
    compare_grad_w: bool,
    seed: u64,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for dtype in [DType::F32, DType::F64] {
        for case in 0..12 {
            let dims = shape(&mut rng);
            let x = random(&mut rng, &dims, 3.0, dtype);
            let w = make_w(&mut rng, &dims, dtype);
            let r = random(&mut rng, &dims, 1.0, dtype);
            let transposed = case % 2 == 1;
            let (yf, gxf, gwf) = value_and_grads(fused_fn, &x, &w, &r, transposed);
            let (yr, gxr, gwr) = value_and_grads(reference_fn, &x, &w, &r, transposed);
            let tol = tolerance(dtype);
            let mut pairs = vec![("value", &yf, &yr), ("grad x", &gxf, &gxr)];
            if compare_grad_w {
                pairs.push(("grad w", &gwf, &gwr));
            }
            for (what, a, b) in pairs {
                let d = max_abs_diff(a, b);
                assert!(
                    d <= tol,
                    "{name} {dtype:?} case {case} {dims:?} strided={transposed}: {what} differs by {d:e}"
                );
            }
        }
    }
}

fn no_weight(_: &mut ChaCha8Rng, _: &[usize], dtype: DType) -> Tensor {
    Tensor::zeros(1, dtype, &Device::Cpu).unwrap()
}

#[test]
fn softmax_matches_composition() {
    check_pair(
        "softmax",
        &|x, _| fused::softmax::softmax_last_dim(x).unwrap(),
        &|x, _| reference::softmax_last_dim(x).unwrap(),
        &no_weight,
        false,
        1,
    );
}

#[test]
fn log_softmax_matches_composition() {
    check_pair(
        "log_softmax",
        &|x, _| fused::softmax::log_softmax_last_dim(x).unwrap(),
        &|x, _| reference::log_softmax_last_dim(x).unwrap(),
        &no_weight,
        false,
        2,
    );
}

#[test]
fn rms_norm_matches_composition_in_x_and_weight() {
    check_pair(
        "rms_norm",
        &|x, w| fused::rms_norm::rms_norm(x, w, 1e-6).unwrap(),
        &|x, w| reference::rms_norm(x, w, 1e-6).unwrap(),
        &|rng, dims, dtype| random(rng, &dims[dims.len() - 1..], 2.0, dtype),
        true,
        3,
    );
}

/// Tables shaped like the model's: per (leading row, position) angles, broadcast over a heads
/// dimension of size 1, halves repeated as in `rotary_tables` (or independent when `paired`
/// is false, which exercises the general adjoint).
fn tables(rng: &mut ChaCha8Rng, dims: &[usize], dtype: DType, paired: bool) -> Tensor {
    let mut tdims = dims.to_vec();
    let rank = tdims.len();
    if rank >= 3 {
        tdims[rank - 3] = 1;
    }
    let d = tdims[rank - 1];
    let rows: usize = tdims[..rank - 1].iter().product();
    let mut v = Vec::with_capacity(rows * d);
    for _ in 0..rows {
        let half: Vec<f64> = (0..d / 2).map(|_| rng.random_range(-4.0..4.0)).collect();
        v.extend(half.iter().map(|a: &f64| a.cos()));
        if paired {
            v.extend(half.iter().map(|a| a.cos()));
        } else {
            v.extend((0..d / 2).map(|_| rng.random_range(-1.0..1.0)));
        }
    }
    Tensor::from_vec(v, tdims, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

#[test]
fn rotary_matches_composition_with_broadcast_tables() {
    for paired in [true, false] {
        // w carries [cos; sin] stacked on a new leading axis so the harness can pass both
        check_pair(
            "rotary",
            &|x, cs| {
                fused::rope::apply_rotary(x, &cs.get(0).unwrap(), &cs.get(1).unwrap()).unwrap()
            },
            &|x, cs| reference::apply_rotary(x, &cs.get(0).unwrap(), &cs.get(1).unwrap()).unwrap(),
            &|rng, dims, dtype| {
                let c = tables(rng, dims, dtype, paired);
                let s = tables(rng, dims, dtype, paired);
                Tensor::stack(&[c, s], 0).unwrap()
            },
            // the tables are constants of the fused op (positions are never trained)
            false,
            4 + paired as u64,
        );
    }
}

#[test]
fn silu_mul_matches_composition_in_both_inputs() {
    // `x` plays the gate (strided in odd cases), `w` the up projection of the same shape
    check_pair(
        "silu_mul",
        &|g, u| fused::swiglu::silu_mul(g, u).unwrap(),
        &|g, u| reference::silu_mul(g, u).unwrap(),
        &|rng, dims, dtype| random(rng, dims, 2.0, dtype),
        true,
        9,
    );
    // the forward is written as candle's `silu`, so it gives the composition's bits
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    let g = random(&mut rng, &[7, 130], 6.0, DType::F32);
    let u = random(&mut rng, &[7, 130], 1.0, DType::F32);
    assert_eq!(
        max_abs_diff(
            &fused::swiglu::silu_mul(&g, &u).unwrap(),
            &reference::silu_mul(&g, &u).unwrap()
        ),
        0.0
    );
}

/// Value and gradients (q, k, v) of `sum(attention(q, k, v) * r)`.
fn attention_grads(
    f: &dyn Fn(&Tensor, &Tensor, &Tensor) -> Tensor,
    inputs: [&Tensor; 3],
    r: &Tensor,
    strided: bool,
) -> Vec<Tensor> {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    // strided: each input a non-contiguous view (batch and sequence stored swapped)
    let views: Vec<Tensor> = vars
        .iter()
        .map(|v| {
            if strided {
                v.as_tensor()
                    .transpose(0, 1)
                    .unwrap()
                    .contiguous()
                    .unwrap()
                    .transpose(0, 1)
                    .unwrap()
            } else {
                v.as_tensor().clone()
            }
        })
        .collect();
    let y = f(&views[0], &views[1], &views[2]);
    let g = (&y * r).unwrap().sum_all().unwrap().backward().unwrap();
    let mut out = vec![y];
    for v in &vars {
        out.push(g.get(v.as_tensor()).expect("gradient").clone());
    }
    out
}

#[test]
fn attention_matches_composition_with_grouped_heads_and_both_masks() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for dtype in [DType::F32, DType::F64] {
        for case in 0..8 {
            let b = rng.random_range(1..4);
            let s = rng.random_range(1..20);
            let kv = rng.random_range(1..3);
            let heads = kv * rng.random_range(1..4);
            let hd = 2 * rng.random_range(1..9);
            let mask = if case % 2 == 0 {
                // real lengths, some rows padded (a row of length 0 included once)
                let key_lengths = (0..b)
                    .map(|r| {
                        if case == 4 && r == 0 {
                            0
                        } else {
                            rng.random_range(1..=s)
                        }
                    })
                    .collect();
                ops::AttentionMask::Causal { key_lengths }
            } else {
                let mut bounds = vec![0];
                while *bounds.last().unwrap() < s {
                    let next = (bounds.last().unwrap() + rng.random_range(1..6)).min(s);
                    bounds.push(next);
                }
                ops::AttentionMask::Blocks { bounds }
            };
            let q = random(&mut rng, &[b, s, heads, hd], 2.0, dtype);
            let k = random(&mut rng, &[b, s, kv, hd], 2.0, dtype);
            let v = random(&mut rng, &[b, s, kv, hd], 1.0, dtype);
            let r = random(&mut rng, &[b, s, heads, hd], 1.0, dtype);
            let scale = 1.0 / (hd as f64).sqrt();
            let strided = case % 4 >= 2;
            let fused_out = attention_grads(
                &|q, k, v| fused::attention::attention(q, k, v, scale, &mask).unwrap(),
                [&q, &k, &v],
                &r,
                strided,
            );
            let reference_out = attention_grads(
                &|q, k, v| reference::attention_heads(q, k, v, scale, &mask).unwrap(),
                [&q, &k, &v],
                &r,
                strided,
            );
            for (what, (a, b)) in ["value", "grad q", "grad k", "grad v"]
                .iter()
                .zip(fused_out.iter().zip(&reference_out))
            {
                let d = max_abs_diff(a, b);
                assert!(
                    d <= tolerance(dtype),
                    "attention {dtype:?} case {case} {mask:?} strided={strided}: {what} differs by {d:e}"
                );
            }
        }
    }
}

#[test]
fn attention_rows_do_not_depend_on_padding_or_threads() {
    // a row scored alone (its own length) and padded inside a batch gives the same bits
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let (s, heads, kv, hd) = (13, 4, 2, 8);
    let q = random(&mut rng, &[3, s, heads, hd], 2.0, DType::F32);
    let k = random(&mut rng, &[3, s, kv, hd], 2.0, DType::F32);
    let v = random(&mut rng, &[3, s, kv, hd], 1.0, DType::F32);
    let mask = ops::AttentionMask::Causal {
        key_lengths: vec![13, 7, 10],
    };
    let batch = fused::attention::attention(&q, &k, &v, 0.3, &mask).unwrap();
    let alone_mask = ops::AttentionMask::Causal {
        key_lengths: vec![7],
    };
    let row = |t: &Tensor| t.narrow(0, 1, 1).unwrap().narrow(1, 0, 7).unwrap();
    let alone =
        fused::attention::attention(&row(&q), &row(&k), &row(&v), 0.3, &alone_mask).unwrap();
    assert_eq!(max_abs_diff(&row(&batch), &alone), 0.0);
    let one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| fused::attention::attention(&q, &k, &v, 0.3, &mask).unwrap());
    assert_eq!(max_abs_diff(&batch, &one_thread), 0.0);
}

#[test]
fn linear_matches_composition_in_input_weight_and_bias() {
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    for dtype in [DType::F32, DType::F64] {
        for case in 0..8 {
            let dims = shape(&mut rng);
            let inp = *dims.last().unwrap();
            let out = rng.random_range(1..70);
            let x = random(&mut rng, &dims, 2.0, dtype);
            let w = random(&mut rng, &[out, inp], 0.5, dtype);
            let b = random(&mut rng, &[out], 1.0, dtype);
            let mut out_dims = dims.clone();
            *out_dims.last_mut().unwrap() = out;
            let r = random(&mut rng, &out_dims, 1.0, dtype);
            let with_bias = case % 2 == 0;
            let strided = case % 4 >= 2;
            let run = |f: &dyn Fn(&Tensor, &Tensor, Option<&Tensor>) -> Tensor| -> Vec<Tensor> {
                let (xv, wv, bv) = (
                    Var::from_tensor(&x).unwrap(),
                    Var::from_tensor(&w).unwrap(),
                    Var::from_tensor(&b).unwrap(),
                );
                let xin = maybe_strided(xv.as_tensor(), strided);
                let y = f(&xin, wv.as_tensor(), with_bias.then_some(bv.as_tensor()));
                let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
                let mut res = vec![y];
                res.push(g.get(xv.as_tensor()).unwrap().clone());
                res.push(g.get(wv.as_tensor()).unwrap().clone());
                if with_bias {
                    res.push(g.get(bv.as_tensor()).unwrap().clone());
                }
                res
            };
            let fused_out = run(&|x, w, b| fused::linear::linear(x, w, b).unwrap());
            let reference_out = run(&|x, w, b| reference::linear(x, w, b).unwrap());
            for (what, (a, b)) in ["value", "grad x", "grad w", "grad b"]
                .iter()
                .zip(fused_out.iter().zip(&reference_out))
            {
                // sums over up to ~80 products of magnitude ~1: relative, not absolute, 1e-5
                let scale = b
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_dtype(DType::F64)
                    .unwrap();
                let scale = scale.to_scalar::<f64>().unwrap().max(1.0);
                let d = max_abs_diff(a, b) / scale;
                assert!(
                    d <= tolerance(dtype),
                    "linear {dtype:?} case {case} {dims:?} -> {out} bias={with_bias} strided={strided}: {what} differs by {d:e}"
                );
            }
        }
    }
}

#[test]
fn public_ops_take_the_fused_path_and_agree() {
    // with the fused kernels on, ops:: dispatches f32 on the CPU to them; the values must equal
    // them exactly (on is the default; set it anyway, whatever the order tests run in)
    ops::set_fused_kernels(true);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let x = random(&mut rng, &[3, 5, 16], 2.0, DType::F32);
    let w = random(&mut rng, &[16], 1.0, DType::F32);
    assert_eq!(
        max_abs_diff(
            &ops::rms_norm(&x, &w, 1e-6).unwrap(),
            &fused::rms_norm::rms_norm(&x, &w, 1e-6).unwrap()
        ),
        0.0
    );
    assert_eq!(
        max_abs_diff(
            &ops::softmax_last_dim(&x).unwrap(),
            &fused::softmax::softmax_last_dim(&x).unwrap()
        ),
        0.0
    );
    // bf16 falls back to the composition (same values as the reference, bit for bit)
    let xb = x.to_dtype(DType::BF16).unwrap();
    let wb = w.to_dtype(DType::BF16).unwrap();
    assert_eq!(
        max_abs_diff(
            &ops::rms_norm(&xb, &wb, 1e-6).unwrap(),
            &reference::rms_norm(&xb, &wb, 1e-6).unwrap()
        ),
        0.0
    );
}

/// Batch invariance: a row's result (forward and backward) is bit-identical whether it is
/// processed alone or among many rows, and whatever the number of threads.
#[test]
fn rows_give_identical_bits_alone_in_a_batch_and_on_any_thread_count() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let n = 96;
    let batch = random(&mut rng, &[37, n], 4.0, DType::F32);
    let w = random(&mut rng, &[n], 1.0, DType::F32);
    let cs = tables(&mut rng, &[37, n], DType::F32, true);
    let sn = cs.sin().unwrap();
    let r = random(&mut rng, &[37, n], 1.0, DType::F32);
    let run = |x: &Tensor, c: &Tensor, s: &Tensor, r: &Tensor| -> Vec<Vec<f32>> {
        let xv = Var::from_tensor(x).unwrap();
        let h = fused::rms_norm::rms_norm(xv.as_tensor(), &w, 1e-6).unwrap();
        let h = fused::rope::apply_rotary(&h, c, s).unwrap();
        let y = fused::softmax::softmax_last_dim(&h).unwrap();
        let y = fused::softmax::log_softmax_last_dim(&y).unwrap();
        let g = (&y * r).unwrap().sum_all().unwrap().backward().unwrap();
        let gx = g.get(xv.as_tensor()).unwrap();
        let mut rows: Vec<Vec<f32>> = y.to_vec2().unwrap();
        rows.extend(gx.to_vec2::<f32>().unwrap());
        rows
    };
    let whole = run(&batch, &cs, &sn, &r);
    let row = 23;
    let one = |t: &Tensor| t.narrow(0, row, 1).unwrap();
    let alone = run(&one(&batch), &one(&cs), &one(&sn), &one(&r));
    assert_eq!(alone[0], whole[row], "forward of row {row}");
    assert_eq!(alone[1], whole[37 + row], "gradient of row {row}");
    for threads in [1, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let again = pool.install(|| run(&batch, &cs, &sn, &r));
        assert_eq!(again, whole, "{threads} threads");
    }
}

#[test]
fn rms_norm_weight_gradient_ignores_thread_count() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let x = random(&mut rng, &[70, 48], 3.0, DType::F32);
    let w = Var::from_tensor(&random(&mut rng, &[48], 1.0, DType::F32)).unwrap();
    let grad_w = || -> Vec<f32> {
        let y = fused::rms_norm::rms_norm(&x, w.as_tensor(), 1e-6).unwrap();
        let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        g.get(w.as_tensor()).unwrap().to_vec1().unwrap()
    };
    let base = grad_w();
    for threads in [1, 2, 5] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        assert_eq!(pool.install(grad_w), base, "{threads} threads");
    }
}

#[test]
fn fused_kernels_refuse_what_they_do_not_cover() {
    let x = Tensor::ones((2, 4), DType::BF16, &Device::Cpu).unwrap();
    assert!(fused::softmax::softmax_last_dim(&x).is_err());
    let odd = Tensor::ones((2, 3), DType::F32, &Device::Cpu).unwrap();
    assert!(!fused::rope::handles(&odd, &odd, &odd));
    let w = Tensor::ones(5, DType::F32, &Device::Cpu).unwrap();
    let err = fused::rms_norm::rms_norm(&odd, &w, 1e-6).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    let q = Tensor::ones((1, 4, 3, 2), DType::F32, &Device::Cpu).unwrap();
    let kv = Tensor::ones((1, 4, 2, 2), DType::F32, &Device::Cpu).unwrap();
    let causal = ops::AttentionMask::Causal {
        key_lengths: vec![4],
    };
    let err = fused::attention::attention(&q, &kv, &kv, 1.0, &causal).unwrap_err();
    assert!(err.to_string().contains("multiple"), "{err}");
    let cut = ops::AttentionMask::Blocks { bounds: vec![0, 5] };
    let err = fused::attention::attention(&kv, &kv, &kv, 1.0, &cut).unwrap_err();
    assert!(err.to_string().contains("do not cut"), "{err}");
    let w = Tensor::ones((3, 5), DType::F32, &Device::Cpu).unwrap();
    let err = fused::linear::linear(&odd, &w, None).unwrap_err();
    assert!(err.to_string().contains("does not take"), "{err}");
    let err = fused::swiglu::silu_mul(&odd, &x.to_dtype(DType::F32).unwrap()).unwrap_err();
    assert!(err.to_string().contains("differ"), "{err}");
}
