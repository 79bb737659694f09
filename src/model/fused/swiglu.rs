//! The SwiGLU activation `silu(g) * u` (the product inside the MLP's `down(silu(gate(x)) *
//! up(x))`), with its backward.
//!
//! Why fused: the two inputs are the MLP's widest activations (`intermediate_size` per token),
//! and candle's composition costs one full pass per elementary step — `silu`'s recorded
//! backward alone is eight tensor operations (negate, exp, add, reciprocal, two products, two
//! sums) — plus a zero-filled buffer and an addition for every gradient it hands on. Here the
//! forward is one pass and the backward one pass producing both gradients.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous_slice, with_real, Real};

/// Elements per parallel task: fixed, so chunking never depends on the thread count (each
/// element's result depends only on its own inputs anyway).
const ELEMENTS_PER_TASK: usize = 1 << 14;

/// Forward op on `(g, u)`.
struct SiluMul;

/// `(g, u, dy) -> [dg, du]`, stacked along a new leading dimension of size 2.
struct SiluMulBackward;

fn sigmoid<T: Real>(x: T) -> T {
    T::ONE / (T::ONE + (-x).exp())
}

/// `silu(x)` written as candle's `silu` is, so the fused forward gives its bits.
fn silu<T: Real>(x: T) -> T {
    x / (T::ONE + (-x).exp())
}

fn forward<T: Real>(g: &[T], u: &[T]) -> Vec<T> {
    let mut out = vec![T::ZERO; g.len()];
    out.par_chunks_mut(ELEMENTS_PER_TASK)
        .zip(g.par_chunks(ELEMENTS_PER_TASK))
        .zip(u.par_chunks(ELEMENTS_PER_TASK))
        .for_each(|((o, g), u)| {
            for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
                *o = silu(g) * u;
            }
        });
    out
}

/// `dg = dy * u * s * (1 + g * (1 - s))` with `s = sigmoid(g)`, and `du = dy * silu(g)`; `dg`
/// fills the first half of the output, `du` the second.
fn backward<T: Real>(g: &[T], u: &[T], dy: &[T]) -> Vec<T> {
    let n = g.len();
    let mut out = vec![T::ZERO; 2 * n];
    let (dg, du) = out.split_at_mut(n);
    dg.par_chunks_mut(ELEMENTS_PER_TASK)
        .zip(du.par_chunks_mut(ELEMENTS_PER_TASK))
        .zip(g.par_chunks(ELEMENTS_PER_TASK))
        .zip(u.par_chunks(ELEMENTS_PER_TASK))
        .zip(dy.par_chunks(ELEMENTS_PER_TASK))
        .for_each(|((((dg, du), g), u), dy)| {
            for ((((dg, du), &g), &u), &d) in dg.iter_mut().zip(du).zip(g).zip(u).zip(dy) {
                let s = sigmoid(g);
                *dg = d * u * s * (T::ONE + g * (T::ONE - s));
                *du = d * silu(g);
            }
        });
    out
}

fn check_same_shape(op: &str, a: &Layout, b: &Layout) -> Result<()> {
    if a.dims() != b.dims() {
        candle_core::bail!(
            "{op}: inputs of shapes {:?} and {:?} differ",
            a.dims(),
            b.dims()
        );
    }
    Ok(())
}

impl CustomOp2 for SiluMul {
    fn name(&self) -> &'static str {
        "fused-silu-mul"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        check_same_shape(name, l1, l2)?;
        let out = with_real!(name, s1, |T| forward::<T>(
            contiguous_slice(name, s1, l1)?,
            contiguous_slice(name, s2, l2)?
        ));
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        g: &Tensor,
        u: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let both = g.apply_op3_no_bwd(u, &dy.contiguous()?, &SiluMulBackward)?;
        Ok((Some(both.get(0)?), Some(both.get(1)?)))
    }
}

impl CustomOp3 for SiluMulBackward {
    fn name(&self) -> &'static str {
        "fused-silu-mul-backward"
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
        check_same_shape(name, l1, l2)?;
        check_same_shape(name, l1, l3)?;
        let out = with_real!(name, s1, |T| backward::<T>(
            contiguous_slice(name, s1, l1)?,
            contiguous_slice(name, s2, l2)?,
            contiguous_slice(name, s3, l3)?
        ));
        let mut dims = vec![2];
        dims.extend_from_slice(l1.dims());
        Ok((out, Shape::from(dims)))
    }
}

/// `silu(g) * u` elementwise (f32/f64 on the CPU, same dtype and shape), differentiable in
/// both.
pub fn silu_mul(g: &Tensor, u: &Tensor) -> Result<Tensor> {
    g.contiguous()?.apply_op2(&u.contiguous()?, SiluMul)
}
