//! `x @ w^T + b` over the last dimension of `x` (any rank), as one op with one backward.
//!
//! Why fused: the composition (`reshape`, `w.t()`, `matmul`, `broadcast_add`, `reshape`) is
//! five graph nodes, and candle's backward gives every node's input a zero-filled gradient
//! buffer plus an addition; the bias gradient goes through candle's row reduction (about 10 ms
//! for a 3072 x 1024 gradient on two cores) and the weight's through a strided transpose. Here
//! the forward is one GEMM that starts from the bias, and the backward two GEMMs (`dx = dy w`,
//! `dw = dy^T x`) and a column sum.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous_slice, with_real, Real};

/// Forward op on `(x, w)` or `(x, w, b)`.
struct Linear;

/// `dy (rows, out) -> db (out)`: the bias gradient, summed over rows.
struct ColumnSum;

/// Columns per parallel task of [`ColumnSum`]: fixed, so the sums never depend on the thread
/// count (each column is summed over rows in order).
const COLUMNS_PER_TASK: usize = 64;

fn shapes(x: &Layout, w: &Layout) -> Result<(usize, usize, usize)> {
    let (xd, wd) = (x.dims(), w.dims());
    match (xd.last(), wd) {
        (Some(&inp), &[out, w_in]) if inp == w_in => {
            Ok((x.shape().elem_count() / inp.max(1), inp, out))
        }
        _ => candle_core::bail!(
            "linear: weight of shape {wd:?} does not take inputs of shape {xd:?}"
        ),
    }
}

fn out_shape(x: &Layout, out: usize) -> Shape {
    let mut dims = x.dims().to_vec();
    if let Some(last) = dims.last_mut() {
        *last = out;
    }
    Shape::from(dims)
}

/// `y (rows, out) = x (rows, in) w^T [+ b]`, with the process's GEMM threads.
fn forward<T: Real>(
    x: &[T],
    w: &[T],
    b: Option<&[T]>,
    (rows, inp, out): (usize, usize, usize),
) -> Vec<T> {
    let mut y = match b {
        Some(b) => {
            let mut y = Vec::with_capacity(rows * out);
            for _ in 0..rows {
                y.extend_from_slice(b);
            }
            y
        }
        None => vec![T::ZERO; rows * out],
    };
    if rows == 0 || out == 0 || inp == 0 {
        return y;
    }
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: x is rows x in, w is out x in (read as its transpose) and y is rows x out, all
    // dense and exactly that long (checked by the callers' layouts).
    unsafe {
        gemm::gemm(
            rows,
            out,
            inp,
            y.as_mut_ptr(),
            1,
            out as isize,
            b.is_some(),
            x.as_ptr(),
            1,
            inp as isize,
            w.as_ptr(),
            inp as isize,
            1,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            parallelism,
        )
    }
    y
}

fn column_sum<T: Real>(dy: &[T], cols: usize) -> Vec<T> {
    let rows = dy.len().checked_div(cols).unwrap_or(0);
    let mut out = vec![T::ZERO; cols];
    out.par_chunks_mut(COLUMNS_PER_TASK)
        .enumerate()
        .for_each(|(task, acc)| {
            let c0 = task * COLUMNS_PER_TASK;
            for r in 0..rows {
                let row = &dy[r * cols + c0..r * cols + c0 + acc.len()];
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a += v;
                }
            }
        });
    out
}

fn run_forward(
    name: &str,
    x: (&CpuStorage, &Layout),
    w: (&CpuStorage, &Layout),
    b: Option<(&CpuStorage, &Layout)>,
) -> Result<(CpuStorage, Shape)> {
    let dims = shapes(x.1, w.1)?;
    if let Some((_, bl)) = b {
        if bl.dims() != [dims.2] {
            candle_core::bail!(
                "linear: bias of shape {:?} for {} outputs",
                bl.dims(),
                dims.2
            );
        }
    }
    let y = with_real!(name, x.0, |T| forward::<T>(
        contiguous_slice(name, x.0, x.1)?,
        contiguous_slice(name, w.0, w.1)?,
        b.map(|(s, l)| contiguous_slice(name, s, l)).transpose()?,
        dims
    ));
    Ok((y, out_shape(x.1, dims.2)))
}

/// `dx` and `dw` of `y = x w^T` from `dy`, by candle's GEMM on detached tensors.
fn input_and_weight_grads(x: &Tensor, w: &Tensor, dy: &Tensor) -> Result<(Tensor, Tensor)> {
    let (out, inp) = w.dims2()?;
    let rows = x.elem_count() / inp.max(1);
    let dy = dy.detach().contiguous()?.reshape((rows, out))?;
    let x2 = x.detach().reshape((rows, inp))?;
    let dx = dy.matmul(&w.detach())?.reshape(x.shape())?;
    let dw = dy.t()?.matmul(&x2)?;
    Ok((dx, dw))
}

impl CustomOp2 for Linear {
    fn name(&self) -> &'static str {
        "fused-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        run_forward("fused-linear", (s1, l1), (s2, l2), None)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw) = input_and_weight_grads(x, w, dy)?;
        Ok((Some(dx), Some(dw)))
    }
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "fused-linear-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        run_forward("fused-linear-bias", (s1, l1), (s2, l2), Some((s3, l3)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw) = input_and_weight_grads(x, w, dy)?;
        let db = dy.detach().contiguous()?.apply_op1_no_bwd(&ColumnSum)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

impl CustomOp1 for ColumnSum {
    fn name(&self) -> &'static str {
        "fused-linear-bias-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let cols = l.dims().last().copied().unwrap_or(1);
        let out = with_real!(self.name(), s, |T| column_sum::<T>(
            contiguous_slice(self.name(), s, l)?,
            cols
        ));
        Ok((out, Shape::from(cols)))
    }
}

/// `x @ w^T (+ b)` for `x` of any rank >= 1 (the last dimension is the input features), `w`
/// `(out, in)` as PyTorch stores it, `b` `(out,)` (f32/f64 on the CPU, one dtype),
/// differentiable in all three.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let x = x.contiguous()?;
    let w = w.contiguous()?;
    match b {
        Some(b) => x.apply_op3(&w, &b.contiguous()?, Linear),
        None => x.apply_op2(&w, Linear),
    }
}
