//! A linear layer whose result for each row does not depend on the other rows.
//!
//! Why: a sampled sequence must be a pure function of its prompt and seed, never of the batch it
//! ran in. candle's CPU GEMM does not promise that: it picks kernels by the matrix shape, and a
//! row's sum runs in another order for one row (GEMV), for small products and for some row
//! counts (measured: for a 64x64 weight, a row gives other bits with 5 or more rows than with 2;
//! for large weights it happened to agree). Here every output element is one dot product of an
//! input row with a weight row, always summed the same way — 16 interleaved partial sums over
//! the input features, then a fixed pairwise reduction — computed by exactly one thread, so
//! neither the row count nor the thread count changes a bit.
//!
//! Only for inference (generation): no autograd. The weight is read in place (no copy), so a
//! decoding step costs one pass over each weight for every few rows.

use candle_core::{DType, Device, Storage, Tensor};
use rayon::prelude::*;

/// Partial sums per dot product; a multiple of the SIMD width (8 f32 lanes on AVX2).
const LANES: usize = 16;
/// Input rows that share each pass over a weight row.
const ROW_BLOCK: usize = 4;
/// Output features per parallel task.
const COL_BLOCK: usize = 64;

/// `x @ w^T + b` for `x` of shape `(rows, in)`, `w` `(out, in)` as PyTorch stores it. Each row's
/// result is bitwise independent of the other rows (see the module documentation) on the CPU in
/// f32; other devices and dtypes compute one row at a time, which is just as independent.
pub fn rows_linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> candle_core::Result<Tensor> {
    let (rows, inp) = x.dims2()?;
    let (out, w_in) = w.dims2()?;
    if inp != w_in {
        candle_core::bail!("rows_linear: input has {inp} features, the weight {w_in}");
    }
    if matches!(x.device(), Device::Cpu) && x.dtype() == DType::F32 && w.dtype() == DType::F32 {
        let xs: Vec<f32> = x.contiguous()?.flatten_all()?.to_vec1()?;
        let w = w.contiguous()?;
        let (storage, layout) = w.storage_and_layout();
        let weight = match &*storage {
            Storage::Cpu(cpu) => cpu.as_slice::<f32>()?,
            _ => candle_core::bail!("rows_linear: weight not on the CPU"),
        };
        let start = layout.start_offset();
        let weight = &weight[start..start + out * inp];
        let values = rows_matmul_f32(&xs, weight, rows, inp, out);
        drop(storage);
        let y = Tensor::from_vec(values, (rows, out), x.device())?;
        return match b {
            Some(b) => y.broadcast_add(&b.to_dtype(DType::F32)?),
            None => Ok(y),
        };
    }
    let wt = w.t()?;
    let per_row = (0..rows)
        .map(|r| x.narrow(0, r, 1)?.matmul(&wt))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let y = Tensor::cat(&per_row, 0)?;
    match b {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

/// `(rows, out)` row-major result of `x (rows, inp) · w (out, inp)^T`.
fn rows_matmul_f32(x: &[f32], w: &[f32], rows: usize, inp: usize, out: usize) -> Vec<f32> {
    // each task: a block of output features for every row, as (feature, row) pairs
    let blocks: Vec<Vec<f32>> = (0..out.div_ceil(COL_BLOCK))
        .into_par_iter()
        .map(|blk| {
            let cols = blk * COL_BLOCK..((blk + 1) * COL_BLOCK).min(out);
            column_block(x, w, rows, inp, cols)
        })
        .collect();
    let mut y = vec![0f32; rows * out];
    for (blk, part) in blocks.iter().enumerate() {
        let c0 = blk * COL_BLOCK;
        for (i, chunk) in part.chunks(rows).enumerate() {
            for (r, &v) in chunk.iter().enumerate() {
                y[r * out + c0 + i] = v;
            }
        }
    }
    y
}

/// One task's output features for every row, compiled for AVX2 where the CPU has it. The
/// lanes are independent IEEE sums either way (no fused multiply-add, no reassociation), so both
/// builds give the same bits.
fn column_block(
    x: &[f32],
    w: &[f32],
    rows: usize,
    inp: usize,
    cols: std::ops::Range<usize>,
) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { column_block_avx2(x, w, rows, inp, cols) };
    }
    column_block_portable(x, w, rows, inp, cols)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn column_block_avx2(
    x: &[f32],
    w: &[f32],
    rows: usize,
    inp: usize,
    cols: std::ops::Range<usize>,
) -> Vec<f32> {
    column_block_portable(x, w, rows, inp, cols)
}

#[inline(always)]
fn column_block_portable(
    x: &[f32],
    w: &[f32],
    rows: usize,
    inp: usize,
    cols: std::ops::Range<usize>,
) -> Vec<f32> {
    let mut part = Vec::with_capacity(cols.len() * rows);
    for c in cols {
        let wr = &w[c * inp..(c + 1) * inp];
        let mut r = 0;
        while r + ROW_BLOCK <= rows {
            let xr: [&[f32]; ROW_BLOCK] =
                std::array::from_fn(|i| &x[(r + i) * inp..(r + i + 1) * inp]);
            part.extend_from_slice(&dot_block(xr, wr));
            r += ROW_BLOCK;
        }
        for rr in r..rows {
            part.push(dot(&x[rr * inp..(rr + 1) * inp], wr));
        }
    }
    part
}

/// The one summation order: lane `j` accumulates products `j, j + LANES, ...`; the remainder
/// continues in lanes `0..`; then the lanes are summed pairwise.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let full = a.len() / LANES * LANES;
    for (ca, cb) in a[..full]
        .chunks_exact(LANES)
        .zip(b[..full].chunks_exact(LANES))
    {
        for j in 0..LANES {
            acc[j] += ca[j] * cb[j];
        }
    }
    for (j, (&xa, &xb)) in a[full..].iter().zip(&b[full..]).enumerate() {
        acc[j] += xa * xb;
    }
    reduce(acc)
}

/// [`dot`] of several rows against one weight row in one pass (same order per row, so the same
/// bits as calling [`dot`] on each).
#[inline(always)]
fn dot_block(xs: [&[f32]; ROW_BLOCK], w: &[f32]) -> [f32; ROW_BLOCK] {
    let mut acc = [[0f32; LANES]; ROW_BLOCK];
    let n = w.len();
    let full = n / LANES * LANES;
    let mut k = 0;
    while k < full {
        let wc = &w[k..k + LANES];
        for (acc_r, x) in acc.iter_mut().zip(&xs) {
            let xc = &x[k..k + LANES];
            for j in 0..LANES {
                acc_r[j] += xc[j] * wc[j];
            }
        }
        k += LANES;
    }
    for (acc_r, x) in acc.iter_mut().zip(&xs) {
        for (j, (&xa, &xb)) in x[full..].iter().zip(&w[full..]).enumerate() {
            acc_r[j] += xa * xb;
        }
    }
    acc.map(reduce)
}

#[inline(always)]
fn reduce(mut acc: [f32; LANES]) -> f32 {
    let mut width = LANES / 2;
    while width > 0 {
        for j in 0..width {
            acc[j] += acc[j + width];
        }
        width /= 2;
    }
    acc[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(shape: (usize, usize), seed: u64) -> Tensor {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let v: Vec<f32> = (0..shape.0 * shape.1)
            .map(|_| rng.random::<f32>() * 2.0 - 1.0)
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn each_row_is_the_same_whatever_the_row_count() {
        for &(inp, out) in &[(64, 64), (48, 96), (37, 130), (256, 448), (16, 1)] {
            let w = random((out, inp), 1);
            let b = random((1, out), 2).squeeze(0).unwrap();
            let x = random((70, inp), 3);
            let all: Vec<Vec<f32>> = rows_linear(&x, &w, Some(&b)).unwrap().to_vec2().unwrap();
            for m in [1usize, 2, 3, 4, 5, 9, 33] {
                for start in [0usize, 7, 30] {
                    let part: Vec<Vec<f32>> =
                        rows_linear(&x.narrow(0, start, m).unwrap(), &w, Some(&b))
                            .unwrap()
                            .to_vec2()
                            .unwrap();
                    for (i, row) in part.iter().enumerate() {
                        let same = row
                            .iter()
                            .zip(&all[start + i])
                            .all(|(p, q)| p.to_bits() == q.to_bits());
                        assert!(
                            same,
                            "in {inp} out {out}: row {} differs with {m} rows",
                            start + i
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_portable_and_the_dispatched_kernels_give_the_same_bits() {
        let w: Vec<f32> = random((70, 45), 7)
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let x: Vec<f32> = random((6, 45), 8).flatten_all().unwrap().to_vec1().unwrap();
        let a = column_block(&x, &w, 6, 45, 0..70);
        let b = column_block_portable(&x, &w, 6, 45, 0..70);
        assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()));
    }

    #[test]
    fn agrees_with_matmul() {
        let w = random((130, 37), 4);
        let x = random((9, 37), 5);
        let ours = rows_linear(&x, &w, None).unwrap();
        let reference = x.matmul(&w.t().unwrap()).unwrap();
        let diff: f32 = (ours - reference)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(diff < 1e-5, "{diff}");
        // a transposed (non-contiguous) weight view is accepted
        let wt = random((37, 130), 6).t().unwrap();
        assert_eq!(rows_linear(&x, &wt, None).unwrap().dims(), &[9, 130]);
    }
}
