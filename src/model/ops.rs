//! The model's building blocks.
//!
//! Why two implementations: candle's own fused `rms_norm` / `softmax_last_dim` / `rope` record
//! no backward (`../shared/README.md`), so a model built on them trains silently wrong, while
//! differentiable compositions of candle primitives are exact but slow (one tensor per
//! elementary step, forward and backward). The public functions here take the fused kernels of
//! [`super::fused`] (one pass forward, one backward) for f32/f64 on the CPU and the
//! compositions in [`reference`] otherwise; the compositions stay as the definition the fused
//! kernels are tested against (`tests/model_fused_ops.rs`).

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{Result, Tensor};

use super::fused;

/// Whether the public ops take the fused kernels. On by default: on a 2-core machine the whole
/// VPPO-shaped step of `debug bench-step` (4 layers, hidden 256, batch 32 x 96 tokens) takes
/// 0.89 s with them against 1.39 s with the compositions (PyTorch: 0.85 s; README, "Training
/// speed"). `SPOTLIGHT_FUSED_KERNELS=0` and `debug bench-step --reference-ops` turn them off;
/// both paths are tested against each other.
static FUSED_KERNELS: AtomicBool = AtomicBool::new(true);

/// Reads `SPOTLIGHT_FUSED_KERNELS` (`0`/`false`/`no` turns the fused kernels off, anything
/// else leaves them on); call once at start-up.
pub fn fused_kernels_from_env() {
    if let Ok(v) = std::env::var("SPOTLIGHT_FUSED_KERNELS") {
        set_fused_kernels(!matches!(v.trim(), "0" | "false" | "no" | "off"));
    }
}

/// Turns the fused kernels on or off for the whole process (see [`FUSED_KERNELS`]).
pub fn set_fused_kernels(enabled: bool) {
    FUSED_KERNELS.store(enabled, Ordering::Relaxed);
}

/// Whether the fused kernels are on (see [`set_fused_kernels`]).
pub fn fused_kernels() -> bool {
    FUSED_KERNELS.load(Ordering::Relaxed)
}

fn fused_for(x: &Tensor) -> bool {
    fused_kernels() && fused::supported(x.device(), x.dtype())
}

/// RMSNorm as Qwen2RMSNorm: `w * x / sqrt(mean(x^2) + eps)`, statistics in f32 for half types.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    if fused_for(x) && weight.dtype() == x.dtype() {
        fused::rms_norm::rms_norm(x, weight, eps)
    } else {
        reference::rms_norm(x, weight, eps)
    }
}

/// Softmax over the last dimension.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if fused_for(x) {
        fused::softmax::softmax_last_dim(x)
    } else {
        reference::softmax_last_dim(x)
    }
}

/// Log-softmax over the last dimension.
pub fn log_softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if fused_for(x) {
        fused::softmax::log_softmax_last_dim(x)
    } else {
        reference::log_softmax_last_dim(x)
    }
}

/// Rotary embedding in the "rotate half" convention: `x * cos + rotate_half(x) * sin`, with
/// `cos`/`sin` broadcast against `x`. The fused path treats the tables as constants (they are
/// functions of positions, never trained); tables that carry a gradient take the composition.
pub fn apply_rotary(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let constant_tables = !cos.track_op() && !sin.track_op();
    let same_dtype = cos.dtype() == x.dtype() && sin.dtype() == x.dtype();
    if fused_for(x) && same_dtype && constant_tables && fused::rope::handles(x, cos, sin) {
        fused::rope::apply_rotary(x, cos, sin)
    } else {
        reference::apply_rotary(x, cos, sin)
    }
}

/// `x @ w^T + b` for `x` of any rank >= 2 (the last dimension is the input features), `w` of
/// shape `(out, in)` as stored by PyTorch.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let same_dtype = w.dtype() == x.dtype() && b.is_none_or(|b| b.dtype() == x.dtype());
    if fused_for(x) && same_dtype {
        fused::linear::linear(x, w, b)
    } else {
        reference::linear(x, w, b)
    }
}

/// The SwiGLU activation `silu(g) * u`.
pub fn silu_mul(g: &Tensor, u: &Tensor) -> Result<Tensor> {
    if fused_for(g) && u.dtype() == g.dtype() && u.dims() == g.dims() {
        fused::swiglu::silu_mul(g, u)
    } else {
        reference::silu_mul(g, u)
    }
}

/// SwiGLU MLP: `down(silu(gate(x)) * up(x))`.
pub fn swiglu_mlp(
    x: &Tensor,
    gate: (&Tensor, Option<&Tensor>),
    up: (&Tensor, Option<&Tensor>),
    down: (&Tensor, Option<&Tensor>),
) -> Result<Tensor> {
    let g = linear(x, gate.0, gate.1)?;
    let u = linear(x, up.0, up.1)?;
    linear(&silu_mul(&g, &u)?, down.0, down.1)
}

pub use super::fused::attention::AttentionMask;

/// Attention of `q` `(batch, seq, heads, head_dim)` over `k`, `v` `(batch, seq, kv_heads,
/// head_dim)` (grouped-query attention: `heads / kv_heads` consecutive query heads share each
/// key/value head) with a structured mask; returns `(batch, seq, heads, head_dim)`. The layout
/// is the one the projections produce and the output projection takes, so neither path
/// transposes on the way in or out of the fused kernel.
pub fn attention_heads(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    mask: &AttentionMask,
) -> Result<Tensor> {
    if fused_for(q) && k.dtype() == q.dtype() && v.dtype() == q.dtype() {
        fused::attention::attention(q, k, v, scale, mask)
    } else {
        reference::attention_heads(q, k, v, scale, mask)
    }
}

/// The differentiable compositions of candle primitives: the definition of each op, and the
/// path for dtypes and devices the fused kernels do not cover.
pub mod reference {
    use candle_core::{DType, Result, Tensor, D};

    /// RMSNorm as Qwen2RMSNorm: `w * x / sqrt(mean(x^2) + eps)`, statistics in f32 for half types.
    pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
        let dtype = x.dtype();
        let internal = match dtype {
            DType::F16 | DType::BF16 => DType::F32,
            d => d,
        };
        let xf = x.to_dtype(internal)?;
        let var = xf.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = xf.broadcast_div(&(var + eps)?.sqrt()?)?;
        normed.to_dtype(dtype)?.broadcast_mul(weight)
    }

    /// Softmax over the last dimension (max-subtracted, composed of exp / sum / div).
    pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::softmax(x, D::Minus1)
    }

    /// Log-softmax over the last dimension, composed (differentiable).
    pub fn log_softmax_last_dim(x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::log_softmax(x, D::Minus1)
    }

    /// Added to the scores of masked (query, key) pairs. Finite so that a row with every key
    /// masked gives a uniform softmax instead of NaN, which would leak through `0 * NaN`.
    pub const MASKED: f64 = -1e30;

    /// Scaled dot-product attention over `(.., heads, q, d)` x `(.., heads, k, d)` with an
    /// optional additive mask broadcast to the scores.
    pub fn attention(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        scale: f64,
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let scores = (q.matmul(&k.t()?)? * scale)?;
        let scores = match mask {
            Some(m) => scores.broadcast_add(m)?,
            None => scores,
        };
        softmax_last_dim(&scores)?.matmul(v)
    }

    /// [`super::attention_heads`] composed: heads moved in front of the sequence, key/value
    /// heads repeated for each query head of their group, the mask as an additive matrix
    /// (`MASKED` where a key is hidden), softmax, and back.
    pub fn attention_heads(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        scale: f64,
        mask: &super::AttentionMask,
    ) -> Result<Tensor> {
        let (b, s, nh, hd) = q.dims4()?;
        let nkv = k.dim(2)?;
        if nkv == 0 || nh % nkv != 0 {
            candle_core::bail!("attention: {nh} query heads for {nkv} key/value heads");
        }
        mask.check(b, s)?;
        let rep = nh / nkv;
        let heads_first = |t: &Tensor, heads: usize| -> Result<Tensor> {
            let t = t.transpose(1, 2)?;
            if heads == nh {
                return t.contiguous();
            }
            t.unsqueeze(2)?
                .broadcast_as((b, heads, rep, s, hd))?
                .reshape((b, nh, s, hd))
        };
        let (qh, kh, vh) = (
            heads_first(q, nh)?,
            heads_first(k, nkv)?,
            heads_first(v, nkv)?,
        );
        let mut m = vec![MASKED as f32; b * s * s];
        let mut empty_rows = vec![0f32; b * s];
        for row in 0..b {
            for i in 0..s {
                let (lo, hi) = mask.key_range(row, i);
                if lo == hi {
                    empty_rows[row * s + i] = 1.0;
                }
                m[(row * s + i) * s + lo..(row * s + i) * s + hi].fill(0.0);
            }
        }
        let m = Tensor::from_vec(m, (b, 1, s, s), q.device())?.to_dtype(q.dtype())?;
        let out = attention(&qh, &kh, &vh, scale, Some(&m))?;
        // a query that sees no key gives zeros, as the fused kernel does
        let keep = Tensor::from_vec(empty_rows, (b, 1, s, 1), q.device())?
            .to_dtype(q.dtype())?
            .affine(-1.0, 1.0)?;
        out.broadcast_mul(&keep)?.transpose(1, 2)?.contiguous()
    }

    /// `x @ w^T + b` composed: `x` flattened to rows, a matrix product with the transposed
    /// weight, the bias broadcast over rows.
    pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        let dims = x.dims();
        let in_features = dims[dims.len() - 1];
        let rows = x.elem_count() / in_features.max(1);
        let y = x.reshape((rows, in_features))?.matmul(&w.t()?)?;
        let y = match b {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let mut out_dims = dims.to_vec();
        let last = out_dims.len() - 1;
        out_dims[last] = w.dim(0)?;
        y.reshape(out_dims)
    }

    /// The SwiGLU activation `silu(g) * u`, composed.
    pub fn silu_mul(g: &Tensor, u: &Tensor) -> Result<Tensor> {
        g.silu()? * u
    }

    /// `[-x2, x1]` where `x = [x1, x2]` split in halves along the last dimension.
    pub fn rotate_half(x: &Tensor) -> Result<Tensor> {
        let d = x.dim(D::Minus1)?;
        let x1 = x.narrow(D::Minus1, 0, d / 2)?;
        let x2 = x.narrow(D::Minus1, d / 2, d - d / 2)?;
        Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)
    }

    /// Rotary embedding in the "rotate half" convention: `x * cos + rotate_half(x) * sin`, with
    /// `cos`/`sin` broadcast against `x`.
    pub fn apply_rotary(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        x.broadcast_mul(cos)?
            .add(&rotate_half(x)?.broadcast_mul(sin)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    #[test]
    fn compositions_record_a_backward() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(
            &Tensor::arange(0f32, 12., &dev)
                .unwrap()
                .reshape((3, 4))
                .unwrap(),
        )
        .unwrap();
        let w = Var::ones(4, DType::F32, &dev).unwrap();
        let y = rms_norm(x.as_tensor(), w.as_tensor(), 1e-6).unwrap();
        let y = softmax_last_dim(&y).unwrap();
        let y = apply_rotary(&y, &y.cos().unwrap(), &y.sin().unwrap()).unwrap();
        let loss = y.sqr().unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        for v in [&x, &w] {
            let g = grads.get(v.as_tensor()).expect("gradient recorded");
            let m = g
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(m > 0.0);
        }
    }

    #[test]
    fn rms_norm_matches_definition() {
        let dev = Device::Cpu;
        let x = Tensor::new(&[[3f32, 4.0]], &dev).unwrap();
        let w = Tensor::new(&[1f32, 2.0], &dev).unwrap();
        let y: Vec<Vec<f32>> = rms_norm(&x, &w, 0.0).unwrap().to_vec2().unwrap();
        // mean(x^2) = 12.5, so y = [3, 8] / sqrt(12.5)
        let r = 12.5f32.sqrt();
        assert!((y[0][0] - 3.0 / r).abs() < 1e-6 && (y[0][1] - 8.0 / r).abs() < 1e-6);
    }
}
