//! Rotary embedding in the "rotate half" convention, `x * cos + rotate_half(x) * sin`, with
//! per-row `cos`/`sin` tables broadcast against `x`.
//!
//! The tables carry all position information, so one kernel serves 1-D RoPE, the vision
//! tower's 2-D RoPE and the text model's M-RoPE. Gradients flow to `x` only: the tables are
//! functions of the (integer) positions, never trained.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

use super::{contiguous_slice, map_rows, with_real, Real};

/// `(x, cos, sin) -> y`; with `transposed`, the adjoint map (the backward with respect to `x`).
struct Rotary {
    transposed: bool,
}

/// Offset of each row (every dimension but the last) of a strided table, and the stride of its
/// last dimension.
fn row_offsets(table: &Layout, rows: usize) -> (Vec<usize>, usize) {
    let dims = table.dims();
    let strides = table.stride();
    let k = dims.len().saturating_sub(1);
    let mut offsets = Vec::with_capacity(rows);
    let mut index = vec![0usize; k];
    for _ in 0..rows {
        let off: usize = index.iter().zip(strides).map(|(i, s)| i * s).sum();
        offsets.push(table.start_offset() + off);
        // advance the multi-index over dims[..k], last varying fastest
        for d in (0..k).rev() {
            index[d] += 1;
            if index[d] < dims[d] {
                break;
            }
            index[d] = 0;
        }
    }
    (offsets, strides.get(k).copied().unwrap_or(1))
}

fn kernel<T: Real>(
    transposed: bool,
    x: &[T],
    n: usize,
    cos: (&[T], &Layout),
    sin: (&[T], &Layout),
) -> Vec<T> {
    let rows = x.len().checked_div(n).unwrap_or(0);
    let (c_off, c_st) = row_offsets(cos.1, rows);
    let (s_off, s_st) = row_offsets(sin.1, rows);
    let h = n / 2;
    map_rows(rows, n, |r, out| {
        let xr = &x[r * n..(r + 1) * n];
        let c = |j: usize| cos.0[c_off[r] + j * c_st];
        let s = |j: usize| sin.0[s_off[r] + j * s_st];
        for j in 0..h {
            let (a, b) = (xr[j], xr[j + h]);
            if transposed {
                // adjoint of the forward below
                out[j] = a * c(j) + b * s(j + h);
                out[j + h] = b * c(j + h) - a * s(j);
            } else {
                // [y1; y2] = [x1 * c1 - x2 * s1; x2 * c2 + x1 * s2]
                out[j] = a * c(j) - b * s(j);
                out[j + h] = b * c(j + h) + a * s(j + h);
            }
        }
    })
}

impl CustomOp3 for Rotary {
    fn name(&self) -> &'static str {
        if self.transposed {
            "fused-rotary-backward"
        } else {
            "fused-rotary"
        }
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
        if l1.dims() != l2.dims() || l1.dims() != l3.dims() {
            candle_core::bail!(
                "{name}: cos {:?} and sin {:?} must be broadcast to x {:?}",
                l2.dims(),
                l3.dims(),
                l1.dims()
            );
        }
        let n = l1.dims().last().copied().unwrap_or(0);
        if n % 2 != 0 {
            candle_core::bail!("{name}: last dimension {n} must be even");
        }
        let t = self.transposed;
        let out = with_real!(name, s1, |T| kernel(
            t,
            contiguous_slice::<T>(name, s1, l1)?,
            n,
            (s2.as_slice::<T>()?, l2),
            (s3.as_slice::<T>()?, l3)
        ));
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dx = dy
            .contiguous()?
            .apply_op3_no_bwd(cos, sin, &Rotary { transposed: true })?;
        Ok((Some(dx), None, None))
    }
}

/// Whether [`apply_rotary`] handles these shapes: tables broadcastable to `x` (without
/// broadcasting `x` itself) and an even last dimension.
pub fn handles(x: &Tensor, cos: &Tensor, sin: &Tensor) -> bool {
    x.dim(candle_core::D::Minus1).is_ok_and(|d| d % 2 == 0)
        && cos.broadcast_as(x.shape()).is_ok()
        && sin.broadcast_as(x.shape()).is_ok()
}

/// `x * cos + rotate_half(x) * sin` (f32/f64 on the CPU), differentiable in `x`; `cos`/`sin`
/// are broadcast to `x`'s shape without copying and treated as constants (detached: no
/// gradient flows into them, even if they were computed from variables).
pub fn apply_rotary(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let cos = cos.detach().broadcast_as(x.shape())?;
    let sin = sin.detach().broadcast_as(x.shape())?;
    x.contiguous()?
        .apply_op3(&cos, &sin, Rotary { transposed: false })
}
