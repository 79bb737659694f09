//! Fused CPU kernels with a backward pass for the model's hot operations.
//!
//! Why: candle's own fused `softmax_last_dim` / `rms_norm` / `rope` record no backward
//! (`../shared/README.md`), and the differentiable compositions in [`super::ops::reference`]
//! allocate one tensor per elementary step, forward and backward, which made a training step
//! several times slower than PyTorch's. Each op here is a `candle_core::CustomOp` whose forward
//! is one pass over the data and whose `bwd` is another fused kernel (applied without a backward
//! of its own: the model never needs second derivatives).
//!
//! Determinism: every reduction runs sequentially inside one row, and rows are processed
//! independently (in parallel, in fixed-size chunks), so a row's result depends neither on how
//! many rows the tensor has (batch invariance: a sequence scored alone and inside a batch gives
//! bit-identical values) nor on the number of threads. The one cross-row reduction (RMSNorm's
//! weight gradient) sums fixed-size chunks of rows, then the chunk sums in order.
//!
//! The ops: softmax and log-softmax, RMSNorm, rotary embedding, the SwiGLU activation, the
//! linear layer and attention (the last two call the `gemm` crate candle itself runs on).
//! Attention keeps the row guarantees above (its products run per row and head, over the
//! row's own keys); the linear layer is one multi-threaded GEMM over all rows and, like the
//! candle `matmul` it replaces, may round a row differently depending on how many rows there
//! are — which is why generation's decoding step uses [`super::rows`] instead.
//!
//! Scope: f32 and f64 on the CPU. Other dtypes and devices take the composition in
//! [`super::ops`]; these kernels return an error if called on them directly.

pub mod attention;
pub mod linear;
pub mod rms_norm;
pub mod rope;
pub mod softmax;
pub mod swiglu;

use candle_core::{CpuStorage, DType, Device, Layout, Result};
use rayon::prelude::*;

/// Rows per parallel task: fixed (never derived from the thread count) so that chunked
/// reductions give the same bits on any machine.
pub(crate) const ROWS_PER_TASK: usize = 16;

/// Whether the fused kernels handle tensors of this dtype on this device.
pub fn supported(device: &Device, dtype: DType) -> bool {
    device.is_cpu() && matches!(dtype, DType::F32 | DType::F64)
}

/// The floating-point arithmetic the kernels need, for f32 and f64.
pub(crate) trait Real:
    candle_core::WithDType
    + Copy
    + Send
    + Sync
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
    + std::ops::AddAssign
    + std::ops::MulAssign
    + PartialOrd
{
    const ZERO: Self;
    const ONE: Self;
    const NEG_INFINITY: Self;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn sqrt(self) -> Self;
    fn from_usize(n: usize) -> Self;
    fn from_f64_lossy(x: f64) -> Self;
}

macro_rules! impl_real {
    ($t:ty) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NEG_INFINITY: Self = <$t>::NEG_INFINITY;
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn from_usize(n: usize) -> Self {
                n as $t
            }
            fn from_f64_lossy(x: f64) -> Self {
                x as $t
            }
        }
    };
}
impl_real!(f32);
impl_real!(f64);

/// The contiguous data of a storage + layout, or an error naming the op.
pub(crate) fn contiguous_slice<'a, T: candle_core::WithDType>(
    op: &str,
    storage: &'a CpuStorage,
    layout: &Layout,
) -> Result<&'a [T]> {
    let data = storage.as_slice::<T>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: input must be contiguous (layout {layout:?})"),
    }
}

/// Evaluates `$body` with the type alias `$t` set to the element type of `$storage` (f32 or
/// f64) and wraps the `Vec<$t>` it returns in a `CpuStorage` of that type; any other dtype
/// returns the op's error from the enclosing function. The body reads further inputs with
/// [`contiguous_slice::<$t>`](contiguous_slice) or `as_slice::<$t>`, which refuse a second
/// input of another dtype.
macro_rules! with_real {
    ($op:expr, $storage:expr, |$t:ident| $body:expr) => {
        match $storage {
            candle_core::CpuStorage::F32(_) => {
                type $t = f32;
                candle_core::CpuStorage::F32($body)
            }
            candle_core::CpuStorage::F64(_) => {
                type $t = f64;
                candle_core::CpuStorage::F64($body)
            }
            other => return $crate::model::fused::unsupported_dtype($op, other),
        }
    };
}
pub(crate) use with_real;

/// Error for a dtype the kernels do not cover.
pub(crate) fn unsupported_dtype<R>(op: &str, storage: &CpuStorage) -> Result<R> {
    use candle_core::backend::BackendStorage;
    let dtype = storage.dtype();
    candle_core::bail!("{op}: fused kernel covers f32 and f64, not {dtype:?}")
}

/// Runs `f(row_index, out_row)` over the rows of a fresh `rows x row_len` output, in parallel.
pub(crate) fn map_rows<T: Real>(
    rows: usize,
    row_len: usize,
    f: impl Fn(usize, &mut [T]) + Send + Sync,
) -> Vec<T> {
    let mut out = vec![T::ZERO; rows * row_len];
    if row_len == 0 {
        return out;
    }
    out.par_chunks_mut(row_len * ROWS_PER_TASK)
        .enumerate()
        .for_each(|(chunk, block)| {
            for (i, row) in block.chunks_mut(row_len).enumerate() {
                f(chunk * ROWS_PER_TASK + i, row);
            }
        });
    out
}
