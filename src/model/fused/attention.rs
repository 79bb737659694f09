//! Scaled dot-product attention over `(batch, seq, heads, head_dim)` tensors, with grouped
//! key/value heads and a structured mask, forward and backward in one op each.
//!
//! Why fused: the composition runs attention as candle's batched matmul, which loops over the
//! `batch * heads` small products and starts a parallel GEMM for each (measured at about a
//! fifth of the GEMM throughput of the model's linear layers), and it needs the heads moved
//! in front of the sequence (`transpose` + `contiguous` copies, forward and backward), the
//! key/value heads repeated for grouped-query attention (more copies) and a full additive mask.
//! Here each (row, block of positions, head) is one task with single-threaded products read
//! straight from the strided inputs, the key/value head shared by a group is read in place, and
//! the mask is a key range per query. The backward recomputes the probabilities from `q` and
//! `k` (as flash attention does) instead of keeping them.
//!
//! Determinism: tasks are fixed by the shapes (never by the thread count) and each writes its
//! own outputs; a group's key/value gradients are summed over its query heads in order.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{with_real, Real};

/// Which keys each query sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttentionMask {
    /// Causal over right-padded rows: in row `b`, query `i` sees keys `j <= i` with
    /// `j < key_lengths[b]` (padding queries see the row's real keys; a row of length 0 gives
    /// zeros).
    Causal { key_lengths: Vec<usize> },
    /// Block-diagonal, not causal: the positions are cut at `bounds` (ascending, from 0 to the
    /// sequence length, like `cu_seqlens`), and a query sees exactly the keys of its block.
    /// Every batch row is cut the same way.
    Blocks { bounds: Vec<usize> },
}

/// A block of one row: queries `q0..q1` attend to keys `k0..k1`.
#[derive(Debug, Clone, Copy)]
struct Block {
    row: usize,
    q0: usize,
    q1: usize,
    k0: usize,
    k1: usize,
    causal: bool,
}

impl AttentionMask {
    /// Errors unless the mask fits `batch` rows of `seq` positions.
    pub fn check(&self, batch: usize, seq: usize) -> Result<()> {
        match self {
            AttentionMask::Causal { key_lengths } => {
                if key_lengths.len() != batch || key_lengths.iter().any(|&l| l > seq) {
                    candle_core::bail!(
                        "attention: key lengths {key_lengths:?} do not fit {batch} rows of {seq}"
                    );
                }
            }
            AttentionMask::Blocks { bounds } => {
                let valid = bounds.first() == Some(&0)
                    && bounds.last() == Some(&seq)
                    && bounds.windows(2).all(|w| w[0] <= w[1]);
                if !valid {
                    candle_core::bail!("attention: block bounds {bounds:?} do not cut {seq}");
                }
            }
        }
        Ok(())
    }

    /// The keys `lo..hi` query `query` of `row` sees (empty when it sees none); the mask must
    /// have passed [`Self::check`].
    pub fn key_range(&self, row: usize, query: usize) -> (usize, usize) {
        match self {
            AttentionMask::Causal { key_lengths } => (0, (query + 1).min(key_lengths[row])),
            AttentionMask::Blocks { bounds } => {
                let t = bounds.partition_point(|&x| x <= query);
                (bounds[t - 1], bounds[t])
            }
        }
    }

    /// The tasks of a checked mask: per row, the blocks of queries and the keys they attend to.
    fn blocks(&self, batch: usize, seq: usize) -> Result<Vec<Block>> {
        self.check(batch, seq)?;
        Ok(match self {
            AttentionMask::Causal { key_lengths } => key_lengths
                .iter()
                .enumerate()
                .map(|(row, &len)| Block {
                    row,
                    q0: 0,
                    q1: seq,
                    k0: 0,
                    k1: len,
                    causal: true,
                })
                .collect(),
            AttentionMask::Blocks { bounds } => (0..batch)
                .flat_map(|row| {
                    bounds
                        .windows(2)
                        .filter(|w| w[1] > w[0])
                        .map(move |w| Block {
                            row,
                            q0: w[0],
                            q1: w[1],
                            k0: w[0],
                            k1: w[1],
                            causal: false,
                        })
                })
                .collect(),
        })
    }
}

/// Forward op on `(q, k, v)`.
struct Attention {
    scale: f64,
    mask: AttentionMask,
}

/// `(q, k, v, out, d_out) -> [dq; dk; dv]` flattened into one buffer.
struct AttentionBackward {
    scale: f64,
    mask: AttentionMask,
    /// The forward output and its gradient, contiguous `(batch, seq, heads, head_dim)`.
    out: Tensor,
    d_out: Tensor,
}

/// A strided 4-D view `(batch, seq, heads, head_dim)` of a slice.
#[derive(Clone, Copy)]
struct View<'a, T> {
    data: &'a [T],
    offset: usize,
    stride: [usize; 4],
}

impl<'a, T> View<'a, T> {
    fn new(data: &'a [T], layout: &Layout) -> Result<Self> {
        let s = layout.stride();
        if s.len() != 4 {
            candle_core::bail!("attention: expected a 4-D layout, got {:?}", layout.dims());
        }
        Ok(View {
            data,
            offset: layout.start_offset(),
            stride: [s[0], s[1], s[2], s[3]],
        })
    }

    /// The `(positions, head_dim)` matrix of `head` in `row` from position `p0`:
    /// `(pointer offset, row stride, column stride)`.
    fn matrix(&self, row: usize, p0: usize, head: usize) -> Mat<'a, T> {
        Mat {
            data: self.data,
            offset: self.offset
                + row * self.stride[0]
                + p0 * self.stride[1]
                + head * self.stride[2],
            rs: self.stride[1],
            cs: self.stride[3],
        }
    }
}

/// A strided matrix inside a slice.
#[derive(Clone, Copy)]
struct Mat<'a, T> {
    data: &'a [T],
    offset: usize,
    rs: usize,
    cs: usize,
}

impl<'a, T> Mat<'a, T> {
    fn dense(data: &'a [T], cols: usize) -> Self {
        Mat {
            data,
            offset: 0,
            rs: cols,
            cs: 1,
        }
    }

    fn t(self) -> Self {
        Mat {
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    /// Panics unless every element of a `rows x cols` matrix is inside the slice (the GEMM
    /// below reads through raw pointers).
    fn check(&self, rows: usize, cols: usize) {
        if rows > 0 && cols > 0 {
            let last = self.offset + (rows - 1) * self.rs + (cols - 1) * self.cs;
            assert!(last < self.data.len(), "attention: matrix out of bounds");
        }
    }
}

/// `dst (m x n, dense) = [dst +] a (m x k) * b (k x n) * beta`, single-threaded.
fn gemm<T: Real>(
    dst: &mut [T],
    (m, n, k): (usize, usize, usize),
    a: Mat<T>,
    b: Mat<T>,
    beta: T,
    accumulate: bool,
) {
    assert!(dst.len() >= m * n, "attention: destination too small");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].iter_mut().for_each(|d| *d = T::ZERO);
        }
        return;
    }
    a.check(m, k);
    b.check(k, n);
    // SAFETY: bounds checked above for both operands and the destination; the slices outlive
    // the call, and `dst` is exclusively borrowed.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr().add(a.offset),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr().add(b.offset),
            b.cs as isize,
            b.rs as isize,
            T::ONE,
            beta,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// Shapes shared by the kernels.
#[derive(Clone, Copy)]
struct Dims {
    batch: usize,
    seq: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

/// Probabilities `P` (`rows x keys`, dense) of `head` over `block`: scaled scores, masked
/// softmax per query over its visible keys, zeros elsewhere.
fn probabilities<T: Real>(
    q: &View<T>,
    k: &View<T>,
    d: Dims,
    blk: Block,
    head: usize,
    scale: T,
    p: &mut [T],
) {
    let (rows, keys) = (blk.q1 - blk.q0, blk.k1 - blk.k0);
    let group = head / (d.heads / d.kv_heads);
    let qm = q.matrix(blk.row, blk.q0, head);
    let km = k.matrix(blk.row, blk.k0, group).t();
    gemm(p, (rows, keys, d.head_dim), qm, km, scale, false);
    for (i, pr) in p[..rows * keys].chunks_mut(keys.max(1)).enumerate() {
        let visible = if blk.causal {
            (blk.q0 + i + 1).saturating_sub(blk.k0).min(keys)
        } else {
            keys
        };
        let mut max = T::NEG_INFINITY;
        for &s in &pr[..visible] {
            if s > max {
                max = s;
            }
        }
        let mut sum = T::ZERO;
        for s in pr[..visible].iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        let inv = if visible > 0 { T::ONE / sum } else { T::ZERO };
        for s in pr[..visible].iter_mut() {
            *s *= inv;
        }
        for s in pr[visible..].iter_mut() {
            *s = T::ZERO;
        }
    }
}

fn forward<T: Real>(
    q: View<T>,
    k: View<T>,
    v: View<T>,
    d: Dims,
    blocks: &[Block],
    scale: T,
) -> Vec<T> {
    let hd = d.head_dim;
    let tasks: Vec<(usize, usize)> = (0..blocks.len())
        .flat_map(|b| (0..d.heads).map(move |h| (b, h)))
        .collect();
    let outputs: Vec<Vec<T>> = tasks
        .par_iter()
        .map(|&(bi, h)| {
            let blk = blocks[bi];
            let (rows, keys) = (blk.q1 - blk.q0, blk.k1 - blk.k0);
            let mut p = vec![T::ZERO; rows * keys];
            probabilities(&q, &k, d, blk, h, scale, &mut p);
            let mut o = vec![T::ZERO; rows * hd];
            let group = h / (d.heads / d.kv_heads);
            let vm = v.matrix(blk.row, blk.k0, group);
            gemm(
                &mut o,
                (rows, hd, keys),
                Mat::dense(&p, keys),
                vm,
                T::ONE,
                false,
            );
            o
        })
        .collect();
    let mut out = vec![T::ZERO; d.batch * d.seq * d.heads * hd];
    for (&(bi, h), o) in tasks.iter().zip(&outputs) {
        let blk = blocks[bi];
        for (i, orow) in o.chunks(hd.max(1)).enumerate() {
            let at = ((blk.row * d.seq + blk.q0 + i) * d.heads + h) * hd;
            out[at..at + hd].copy_from_slice(orow);
        }
    }
    out
}

/// Gradients of one (block, key/value head) task: `dq` of each of its query heads, `dk`, `dv`.
struct GroupGrads<T> {
    dq: Vec<Vec<T>>,
    dk: Vec<T>,
    dv: Vec<T>,
}

#[allow(clippy::too_many_arguments)]
fn backward<T: Real>(
    q: View<T>,
    k: View<T>,
    v: View<T>,
    out: View<T>,
    d_out: View<T>,
    d: Dims,
    blocks: &[Block],
    scale: T,
) -> Vec<T> {
    let hd = d.head_dim;
    let rep = d.heads / d.kv_heads;
    let tasks: Vec<(usize, usize)> = (0..blocks.len())
        .flat_map(|b| (0..d.kv_heads).map(move |g| (b, g)))
        .collect();
    let grads: Vec<GroupGrads<T>> = tasks
        .par_iter()
        .map(|&(bi, g)| {
            let blk = blocks[bi];
            let (rows, keys) = (blk.q1 - blk.q0, blk.k1 - blk.k0);
            let mut dk = vec![T::ZERO; keys * hd];
            let mut dv = vec![T::ZERO; keys * hd];
            let mut dq = Vec::with_capacity(rep);
            let mut p = vec![T::ZERO; rows * keys];
            let mut dp = vec![T::ZERO; rows * keys];
            let km = k.matrix(blk.row, blk.k0, g);
            let vm = v.matrix(blk.row, blk.k0, g);
            for h in g * rep..(g + 1) * rep {
                probabilities(&q, &k, d, blk, h, scale, &mut p);
                let dom = d_out.matrix(blk.row, blk.q0, h);
                let om = out.matrix(blk.row, blk.q0, h);
                // dV += P^T dO
                gemm(
                    &mut dv,
                    (keys, hd, rows),
                    Mat::dense(&p, keys).t(),
                    dom,
                    T::ONE,
                    true,
                );
                // dP = dO V^T
                gemm(&mut dp, (rows, keys, hd), dom, vm.t(), T::ONE, false);
                // dS = P * (dP - rowsum(dO * O)), scaled
                for i in 0..rows {
                    let mut delta = T::ZERO;
                    for c in 0..hd {
                        let at = om.offset + i * om.rs + c * om.cs;
                        let dat = dom.offset + i * dom.rs + c * dom.cs;
                        delta += om.data[at] * dom.data[dat];
                    }
                    let (pr, dpr) = (
                        &p[i * keys..(i + 1) * keys],
                        &mut dp[i * keys..(i + 1) * keys],
                    );
                    for (x, &pv) in dpr.iter_mut().zip(pr) {
                        *x = pv * (*x - delta) * scale;
                    }
                }
                // dQ = dS K ; dK += dS^T Q
                let mut dqh = vec![T::ZERO; rows * hd];
                gemm(
                    &mut dqh,
                    (rows, hd, keys),
                    Mat::dense(&dp, keys),
                    km,
                    T::ONE,
                    false,
                );
                dq.push(dqh);
                let qm = q.matrix(blk.row, blk.q0, h);
                gemm(
                    &mut dk,
                    (keys, hd, rows),
                    Mat::dense(&dp, keys).t(),
                    qm,
                    T::ONE,
                    true,
                );
            }
            GroupGrads { dq, dk, dv }
        })
        .collect();
    let q_len = d.batch * d.seq * d.heads * hd;
    let kv_len = d.batch * d.seq * d.kv_heads * hd;
    let mut all = vec![T::ZERO; q_len + 2 * kv_len];
    let (dq_all, rest) = all.split_at_mut(q_len);
    let (dk_all, dv_all) = rest.split_at_mut(kv_len);
    for (&(bi, g), gg) in tasks.iter().zip(&grads) {
        let blk = blocks[bi];
        for (r, dqh) in gg.dq.iter().enumerate() {
            let h = g * rep + r;
            for (i, row) in dqh.chunks(hd.max(1)).enumerate() {
                let at = ((blk.row * d.seq + blk.q0 + i) * d.heads + h) * hd;
                dq_all[at..at + hd].copy_from_slice(row);
            }
        }
        for (j, (dkr, dvr)) in gg
            .dk
            .chunks(hd.max(1))
            .zip(gg.dv.chunks(hd.max(1)))
            .enumerate()
        {
            let at = ((blk.row * d.seq + blk.k0 + j) * d.kv_heads + g) * hd;
            dk_all[at..at + hd].copy_from_slice(dkr);
            dv_all[at..at + hd].copy_from_slice(dvr);
        }
    }
    all
}

/// Checks the three layouts and returns the shapes.
fn dims(q: &Layout, k: &Layout, v: &Layout) -> Result<Dims> {
    let (qd, kd) = (q.dims(), k.dims());
    let ok = qd.len() == 4
        && kd.len() == 4
        && k.dims() == v.dims()
        && qd[0] == kd[0]
        && qd[1] == kd[1]
        && qd[3] == kd[3]
        && kd[2] > 0
        && qd[2] % kd[2] == 0;
    if !ok {
        candle_core::bail!(
            "attention: q {:?}, k {:?}, v {:?} are not (batch, seq, heads, head_dim) with \
             query heads a multiple of key/value heads",
            qd,
            kd,
            v.dims()
        );
    }
    Ok(Dims {
        batch: qd[0],
        seq: qd[1],
        heads: qd[2],
        kv_heads: kd[2],
        head_dim: qd[3],
    })
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "fused-attention"
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
        let d = dims(l1, l2, l3)?;
        let blocks = self.mask.blocks(d.batch, d.seq)?;
        let out = with_real!(self.name(), s1, |T| forward::<T>(
            View::new(s1.as_slice()?, l1)?,
            View::new(s2.as_slice()?, l2)?,
            View::new(s3.as_slice()?, l3)?,
            d,
            &blocks,
            T::from_f64_lossy(self.scale)
        ));
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        out: &Tensor,
        d_out: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let op = AttentionBackward {
            scale: self.scale,
            mask: self.mask.clone(),
            out: out.detach(),
            d_out: d_out.detach(),
        };
        let all = q.detach().apply_op3_no_bwd(&k.detach(), &v.detach(), &op)?;
        let (q_len, kv_len) = (q.elem_count(), k.elem_count());
        let dq = all.narrow(0, 0, q_len)?.reshape(q.shape())?;
        let dk = all.narrow(0, q_len, kv_len)?.reshape(k.shape())?;
        let dv = all.narrow(0, q_len + kv_len, kv_len)?.reshape(v.shape())?;
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}

impl CustomOp3 for AttentionBackward {
    fn name(&self) -> &'static str {
        "fused-attention-backward"
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
        let d = dims(l1, l2, l3)?;
        let blocks = self.mask.blocks(d.batch, d.seq)?;
        let (out_s, out_l) = self.out.storage_and_layout();
        let (dout_s, dout_l) = self.d_out.storage_and_layout();
        let (candle_core::Storage::Cpu(o), candle_core::Storage::Cpu(g)) = (&*out_s, &*dout_s)
        else {
            candle_core::bail!("{}: the forward output is not on the CPU", self.name());
        };
        let all = with_real!(self.name(), s1, |T| backward::<T>(
            View::new(s1.as_slice()?, l1)?,
            View::new(s2.as_slice()?, l2)?,
            View::new(s3.as_slice()?, l3)?,
            View::new(o.as_slice()?, out_l)?,
            View::new(g.as_slice()?, dout_l)?,
            d,
            &blocks,
            T::from_f64_lossy(self.scale)
        ));
        let n = l1.shape().elem_count() + 2 * l2.shape().elem_count();
        Ok((all, Shape::from(n)))
    }
}

/// Attention of `q` `(batch, seq, heads, head_dim)` over `k`, `v` `(batch, seq, kv_heads,
/// head_dim)` (any strides; `heads` a multiple of `kv_heads`, each key/value head serving
/// `heads / kv_heads` consecutive query heads), scores scaled by `scale` and masked by
/// `mask`; returns `(batch, seq, heads, head_dim)`, differentiable in `q`, `k` and `v`
/// (f32/f64 on the CPU).
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    mask: &AttentionMask,
) -> Result<Tensor> {
    q.apply_op3(
        k,
        v,
        Attention {
            scale,
            mask: mask.clone(),
        },
    )
}
