//! RMSNorm `w * x / sqrt(mean(x^2) + eps)` over the last dimension, with gradients for both
//! `x` and the weight `w`.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous_slice, map_rows, with_real, Real, ROWS_PER_TASK};

/// Forward op on `(x, w)`.
struct RmsNorm {
    eps: f64,
}

/// `(x, w, dy) -> dx`.
struct RmsNormBackwardX {
    eps: f64,
}

/// `(x, w, dy) -> dw` (shape of `w`), summed over rows.
struct RmsNormBackwardW {
    eps: f64,
}

/// `1 / sqrt(mean(row^2) + eps)`, summed sequentially.
fn inv_rms<T: Real>(row: &[T], eps: T) -> T {
    let mut ss = T::ZERO;
    for &v in row {
        ss += v * v;
    }
    T::ONE / (ss / T::from_usize(row.len()) + eps).sqrt()
}

fn forward<T: Real>(x: &[T], w: &[T], eps: f64) -> Vec<T> {
    let n = w.len();
    let rows = x.len().checked_div(n).unwrap_or(0);
    let eps = T::from_f64_lossy(eps);
    map_rows(rows, n, |r, out| {
        let xr = &x[r * n..(r + 1) * n];
        let inv = inv_rms(xr, eps);
        for ((o, &v), &g) in out.iter_mut().zip(xr).zip(w) {
            *o = v * inv * g;
        }
    })
}

fn backward_x<T: Real>(x: &[T], w: &[T], dy: &[T], eps: f64) -> Vec<T> {
    let n = w.len();
    let rows = x.len().checked_div(n).unwrap_or(0);
    let eps = T::from_f64_lossy(eps);
    let nf = T::from_usize(n);
    map_rows(rows, n, |r, out| {
        let (xr, gr) = (&x[r * n..(r + 1) * n], &dy[r * n..(r + 1) * n]);
        let inv = inv_rms(xr, eps);
        // with u = dy * w: dx = inv * u - x * inv^3 * sum(u * x) / n
        let mut dot = T::ZERO;
        for ((&v, &g), &wj) in xr.iter().zip(gr).zip(w) {
            dot += g * wj * v;
        }
        let coef = inv * inv * inv * dot / nf;
        for (((o, &v), &g), &wj) in out.iter_mut().zip(xr).zip(gr).zip(w) {
            *o = inv * g * wj - v * coef;
        }
    })
}

fn backward_w<T: Real>(x: &[T], dy: &[T], n: usize, eps: f64) -> Vec<T> {
    if n == 0 {
        return Vec::new();
    }
    let eps = T::from_f64_lossy(eps);
    let block = n * ROWS_PER_TASK;
    // dw = sum over rows of dy * x * inv: per fixed-size chunk of rows, then chunks in order
    let partials: Vec<Vec<T>> = x
        .par_chunks(block)
        .zip(dy.par_chunks(block))
        .map(|(xb, gb)| {
            let mut acc = vec![T::ZERO; n];
            for (xr, gr) in xb.chunks(n).zip(gb.chunks(n)) {
                let inv = inv_rms(xr, eps);
                for ((a, &v), &g) in acc.iter_mut().zip(xr).zip(gr) {
                    *a += g * v * inv;
                }
            }
            acc
        })
        .collect();
    let mut dw = vec![T::ZERO; n];
    for p in partials {
        for (d, v) in dw.iter_mut().zip(p) {
            *d += v;
        }
    }
    dw
}

fn check_width(op: &str, x: &Layout, w: &Layout) -> Result<usize> {
    let n = w.shape().elem_count();
    match x.dims().last() {
        Some(&d) if d == n && w.dims().len() == 1 => Ok(n),
        _ => candle_core::bail!(
            "{op}: weight of shape {:?} does not match the last dimension of x {:?}",
            w.dims(),
            x.dims()
        ),
    }
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "fused-rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        check_width(name, l1, l2)?;
        let out = with_real!(name, s1, |T| forward::<T>(
            contiguous_slice(name, s1, l1)?,
            contiguous_slice(name, s2, l2)?,
            self.eps
        ));
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let eps = self.eps;
        let dx = x.apply_op3_no_bwd(w, &dy, &RmsNormBackwardX { eps })?;
        let dw = x.apply_op3_no_bwd(w, &dy, &RmsNormBackwardW { eps })?;
        Ok((Some(dx), Some(dw)))
    }
}

macro_rules! backward_op {
    ($op:ty, $name:literal, $out_shape:ident, |$x:ident, $w:ident, $dy:ident, $eps:ident| $body:expr) => {
        impl CustomOp3 for $op {
            fn name(&self) -> &'static str {
                $name
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
                let name = self.name();
                check_width(name, l1, l2)?;
                let $eps = self.eps;
                let out = with_real!(name, s1, |T| {
                    let $x = contiguous_slice::<T>(name, s1, l1)?;
                    let $w = contiguous_slice::<T>(name, s2, l2)?;
                    let $dy = contiguous_slice::<T>(name, s3, l3)?;
                    $body
                });
                Ok((out, $out_shape(l1, l2)))
            }
        }
    };
}

fn shape_of_x(x: &Layout, _w: &Layout) -> Shape {
    x.shape().clone()
}
fn shape_of_w(_x: &Layout, w: &Layout) -> Shape {
    w.shape().clone()
}

backward_op!(
    RmsNormBackwardX,
    "fused-rms-norm-backward-x",
    shape_of_x,
    |x, w, dy, eps| backward_x(x, w, dy, eps)
);
backward_op!(
    RmsNormBackwardW,
    "fused-rms-norm-backward-w",
    shape_of_w,
    |x, w, dy, eps| backward_w(x, dy, w.len(), eps)
);

/// RMSNorm over the last dimension of `x` with weight `w` of shape `(last dim,)` (f32/f64 on
/// the CPU, same dtype), differentiable in both.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?.apply_op2(&w.contiguous()?, RmsNorm { eps })
}
