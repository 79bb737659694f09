//! Softmax and log-softmax over the last dimension, with their backward kernels.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};

use super::{contiguous_slice, map_rows, with_real, Real};

/// Which of the two normalisations an op computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Softmax,
    LogSoftmax,
}

/// Forward op: `softmax(x)` or `log_softmax(x)` over the last dimension.
struct Normalize(Kind);

/// Backward op: `(y, dy) -> dx` where `y` is the forward result.
struct NormalizeBackward(Kind);

fn row_len(layout: &Layout) -> usize {
    layout.dims().last().copied().unwrap_or(1)
}

fn forward<T: Real>(kind: Kind, x: &[T], n: usize) -> Vec<T> {
    let rows = x.len().checked_div(n).unwrap_or(0);
    map_rows(rows, n, |r, out| {
        let xr = &x[r * n..(r + 1) * n];
        let mut max = T::NEG_INFINITY;
        for &v in xr {
            if v > max {
                max = v;
            }
        }
        let mut sum = T::ZERO;
        for (o, &v) in out.iter_mut().zip(xr) {
            let e = (v - max).exp();
            *o = e;
            sum += e;
        }
        match kind {
            Kind::Softmax => {
                let inv = T::ONE / sum;
                for o in out.iter_mut() {
                    *o *= inv;
                }
            }
            Kind::LogSoftmax => {
                let lse = max + sum.ln();
                for (o, &v) in out.iter_mut().zip(xr) {
                    *o = v - lse;
                }
            }
        }
    })
}

fn backward<T: Real>(kind: Kind, y: &[T], dy: &[T], n: usize) -> Vec<T> {
    let rows = y.len().checked_div(n).unwrap_or(0);
    map_rows(rows, n, |r, out| {
        let (yr, gr) = (&y[r * n..(r + 1) * n], &dy[r * n..(r + 1) * n]);
        match kind {
            // dx = y * (dy - sum(dy * y))
            Kind::Softmax => {
                let mut dot = T::ZERO;
                for (&a, &g) in yr.iter().zip(gr) {
                    dot += a * g;
                }
                for ((o, &a), &g) in out.iter_mut().zip(yr).zip(gr) {
                    *o = a * (g - dot);
                }
            }
            // dx = dy - exp(y) * sum(dy)
            Kind::LogSoftmax => {
                let mut sum = T::ZERO;
                for &g in gr {
                    sum += g;
                }
                for ((o, &a), &g) in out.iter_mut().zip(yr).zip(gr) {
                    *o = g - a.exp() * sum;
                }
            }
        }
    })
}

impl CustomOp1 for Normalize {
    fn name(&self) -> &'static str {
        match self.0 {
            Kind::Softmax => "fused-softmax-last-dim",
            Kind::LogSoftmax => "fused-log-softmax-last-dim",
        }
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let n = row_len(l);
        let out = with_real!(self.name(), s, |T| forward(
            self.0,
            contiguous_slice::<T>(self.name(), s, l)?,
            n
        ));
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let dy = dy.contiguous()?;
        Ok(Some(y.apply_op2_no_bwd(&dy, &NormalizeBackward(self.0))?))
    }
}

impl CustomOp2 for NormalizeBackward {
    fn name(&self) -> &'static str {
        match self.0 {
            Kind::Softmax => "fused-softmax-last-dim-backward",
            Kind::LogSoftmax => "fused-log-softmax-last-dim-backward",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = row_len(l1);
        let name = self.name();
        let out = with_real!(name, s1, |T| backward(
            self.0,
            contiguous_slice::<T>(name, s1, l1)?,
            contiguous_slice::<T>(name, s2, l2)?,
            n
        ));
        Ok((out, l1.shape().clone()))
    }
}

/// Softmax over the last dimension (f32/f64 on the CPU), differentiable.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Normalize(Kind::Softmax))
}

/// Log-softmax over the last dimension (f32/f64 on the CPU), differentiable.
pub fn log_softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Normalize(Kind::LogSoftmax))
}
