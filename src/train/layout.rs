//! The row layout of the update (spec section 6): which data-parallel worker, mini-batch and
//! micro-batch each response row of a step lands in, as the reference trainer (VPPO-RL, an
//! EasyR1 fork of verl) lays them out — and the TAS scales that follow from that layout.
//!
//! The layout matters only through TAS: the scales are normalised by `s_min`/`s_max` of each
//! worker's own mini-batch and averaged (`mu`) over each micro-batch, so which rows share a
//! micro-batch decides between which prompts TAS can move weight. In the reference:
//! 1. the rollout's rows (prompt-major) are partitioned into `world_size` equal-size parts by
//!    sequence length (prompt tokens including image tokens + response tokens) with verl's
//!    Karmarkar–Karp `get_seqlen_balanced_partitions(..., equal_size=True)`, each part sorted
//!    by row index ([`balanced_partitions`]); without balancing, worker `d` takes the `d`-th
//!    contiguous chunk;
//! 2. each worker splits its rows, without shuffling, into mini-batches of
//!    `mini_batch_prompts * G / world_size` rows, and each of those into micro-batches of
//!    `micro_batch_responses` rows;
//! 3. mini-batch `k` of the step is the union of every worker's `k`-th mini-batch: one
//!    optimiser step, each micro-batch's loss weighted by its share of the tokens of that union
//!    (the reference scales by `tokens * world_size / all-reduced tokens`, and FSDP averages the
//!    gradients over the workers).
//!
//! One process plays all workers in turn: gradients of every worker's micro-batches of
//! mini-batch `k` are accumulated, then one AdamW step — the same update as the reference's,
//! up to summation order.

use serde::Serialize;

use super::grid::TokenGrid;
use super::objective::{MiniBatchShaping, ObjectiveConfig};
use super::TrainError;

/// How rows are spread over workers and batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LayoutSpec {
    /// Data-parallel workers (8 in the published runs).
    pub world_size: usize,
    /// Rows of one mini-batch over all workers (`mini_batch_prompts * G`).
    pub mini_batch_rows: usize,
    /// Rows per micro-batch on one worker (`micro_batch_size_per_device_for_update`).
    pub micro_batch_rows: usize,
    /// Length-balance rows across workers (EasyR1's `balance_batch`, on in the published run).
    pub balance: bool,
}

/// One worker's share of one mini-batch: its rows, in update order, cut into micro-batches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceMiniBatch {
    pub mini_batch: usize,
    pub device: usize,
    /// Row indices (into the step's rows) of each micro-batch.
    pub micro_batches: Vec<Vec<usize>>,
}

impl DeviceMiniBatch {
    /// All rows of this worker's mini-batch, in update order.
    pub fn rows(&self) -> Vec<usize> {
        self.micro_batches.iter().flatten().copied().collect()
    }

    /// The micro-batches as ranges of positions within [`rows`](Self::rows).
    pub fn micro_ranges(&self) -> Vec<std::ops::Range<usize>> {
        let mut start = 0;
        self.micro_batches
            .iter()
            .map(|m| {
                let r = start..start + m.len();
                start = r.end;
                r
            })
            .collect()
    }
}

/// Where every row of a step goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowLayout {
    /// Worker of each row (original row order).
    pub device: Vec<usize>,
    /// Mini-batch (optimiser step within the PPO epoch) of each row.
    pub mini_batch: Vec<usize>,
    /// Micro-batch of each row, counted within its worker's mini-batch.
    pub micro_batch: Vec<usize>,
    /// The parts in update order: mini-batch major, then worker.
    pub parts: Vec<DeviceMiniBatch>,
}

impl RowLayout {
    /// The layout of rows with sequence lengths `seq_lens` (prompt + response tokens).
    pub fn new(spec: &LayoutSpec, seq_lens: &[u64]) -> Result<RowLayout, TrainError> {
        let n = seq_lens.len();
        let w = spec.world_size;
        let bad = |detail: String| TrainError::Shape {
            what: "row layout".into(),
            detail,
        };
        if w == 0 || spec.mini_batch_rows == 0 || spec.micro_batch_rows == 0 {
            return Err(bad(format!(
                "world_size {w}, mini-batch rows {} and micro-batch rows {} must be positive",
                spec.mini_batch_rows, spec.micro_batch_rows
            )));
        }
        if n % w != 0 {
            return Err(bad(format!(
                "{n} rows cannot be split equally over {w} workers"
            )));
        }
        if spec.mini_batch_rows % w != 0 {
            return Err(bad(format!(
                "a mini-batch of {} rows cannot be split equally over {w} workers",
                spec.mini_batch_rows
            )));
        }
        let per_device: Vec<Vec<usize>> = if spec.balance && n > 0 {
            balanced_partitions(seq_lens, w, true)?
        } else {
            (0..w)
                .map(|d| (d * n / w..(d + 1) * n / w).collect())
                .collect()
        };
        let per_device_mini = spec.mini_batch_rows / w;
        let minis = per_device
            .first()
            .map_or(0, |p| p.len().div_ceil(per_device_mini));
        let mut layout = RowLayout {
            device: vec![0; n],
            mini_batch: vec![0; n],
            micro_batch: vec![0; n],
            parts: Vec::new(),
        };
        for k in 0..minis {
            for (d, rows) in per_device.iter().enumerate() {
                let start = (k * per_device_mini).min(rows.len());
                let end = ((k + 1) * per_device_mini).min(rows.len());
                let micro_batches: Vec<Vec<usize>> = rows[start..end]
                    .chunks(spec.micro_batch_rows)
                    .map(<[usize]>::to_vec)
                    .collect();
                for (m, micro) in micro_batches.iter().enumerate() {
                    for &i in micro {
                        layout.device[i] = d;
                        layout.mini_batch[i] = k;
                        layout.micro_batch[i] = m;
                    }
                }
                layout.parts.push(DeviceMiniBatch {
                    mini_batch: k,
                    device: d,
                    micro_batches,
                });
            }
        }
        Ok(layout)
    }

    /// Number of mini-batches (optimiser steps per PPO epoch).
    pub fn mini_batches(&self) -> usize {
        self.parts.last().map_or(0, |p| p.mini_batch + 1)
    }

    /// The parts of mini-batch `k`, one per worker.
    pub fn parts_of(&self, k: usize) -> impl Iterator<Item = &DeviceMiniBatch> {
        self.parts.iter().filter(move |p| p.mini_batch == k)
    }
}

/// verl's `get_seqlen_balanced_partitions`: Karmarkar–Karp (largest differencing) partitioning
/// of the indices of `seq_lens` into `k` parts of balanced sums (of equal size when
/// `equal_size`), each part sorted. Ties are ordered as verl orders them (a part compares by
/// sum, then item count, then its `(index, length)` list; a state by spread, then its largest
/// part), so the parts and their order are verl's.
pub fn balanced_partitions(
    seq_lens: &[u64],
    k: usize,
    equal_size: bool,
) -> Result<Vec<Vec<usize>>, TrainError> {
    let bad = |detail: String| TrainError::Shape {
        what: "length balancing".into(),
        detail,
    };
    if k == 0 || seq_lens.len() < k {
        return Err(bad(format!(
            "{} rows cannot fill {k} partitions",
            seq_lens.len()
        )));
    }
    if equal_size && seq_lens.len() % k != 0 {
        return Err(bad(format!(
            "{} rows do not split into {k} equal partitions",
            seq_lens.len()
        )));
    }
    let mut sorted: Vec<(u64, usize)> = seq_lens.iter().copied().zip(0..).collect();
    sorted.sort();
    let mut heap = std::collections::BinaryHeap::new();
    if equal_size {
        for chunk in sorted.chunks(k) {
            heap.push(KkState::new(chunk, k));
        }
    } else {
        for item in &sorted {
            heap.push(KkState::new(std::slice::from_ref(item), k));
        }
    }
    while heap.len() > 1 {
        let (Some(mut a), Some(b)) = (heap.pop(), heap.pop()) else {
            break;
        };
        a.merge(b);
        heap.push(a);
    }
    let Some(last) = heap.pop() else {
        return Err(bad("no rows".into()));
    };
    let mut parts: Vec<Vec<usize>> = last
        .sets
        .iter()
        .map(|s| s.items.iter().map(|&(i, _)| i).collect())
        .collect();
    for (d, p) in parts.iter_mut().enumerate() {
        if p.is_empty() {
            return Err(bad(format!("partition {d} is empty")));
        }
        p.sort_unstable();
    }
    Ok(parts)
}

/// One part under construction: its sum and its `(index, length)` items in insertion order.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KkSet {
    sum: u64,
    items: Vec<(usize, u64)>,
}

impl Ord for KkSet {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.sum
            .cmp(&other.sum)
            .then(self.items.len().cmp(&other.items.len()))
            .then_with(|| self.items.cmp(&other.items))
    }
}

impl PartialOrd for KkSet {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A partial partition: `k` sets, kept in decreasing order.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KkState {
    sets: Vec<KkSet>,
}

impl KkState {
    fn new(items: &[(u64, usize)], k: usize) -> KkState {
        let mut sets = vec![
            KkSet {
                sum: 0,
                items: Vec::new()
            };
            k
        ];
        for (set, &(len, idx)) in sets.iter_mut().zip(items) {
            set.sum += len;
            set.items.push((idx, len));
        }
        let mut state = KkState { sets };
        state.sort();
        state
    }

    /// Decreasing order; stable like Python's `sorted(reverse=True)`.
    fn sort(&mut self) {
        self.sets.sort_by(|a, b| b.cmp(a));
    }

    /// Largest set of `self` takes the smallest of `other`, and so on.
    fn merge(&mut self, other: KkState) {
        let k = self.sets.len();
        for (i, theirs) in other.sets.into_iter().rev().enumerate().take(k) {
            self.sets[i].sum += theirs.sum;
            self.sets[i].items.extend(theirs.items);
        }
        self.sort();
    }

    fn spread(&self) -> u64 {
        match (self.sets.first(), self.sets.last()) {
            (Some(a), Some(b)) => a.sum - b.sum,
            _ => 0,
        }
    }
}

/// The max-heap pops the state verl's min-heap pops first: the largest spread, then the state
/// with the largest first set.
impl Ord for KkState {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.spread()
            .cmp(&other.spread())
            .then_with(|| self.sets.first().cmp(&other.sets.first()))
    }
}

impl PartialOrd for KkState {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// TAS scales of every row (original order) under `layout`: per worker mini-batch the range
/// `s_min`/`s_max`, per micro-batch `mu` — through [`MiniBatchShaping`], the code path of the
/// update itself. `dependency` is `S` per token (0 on padding), `mask` the response mask.
pub fn tas_scales(
    layout: &RowLayout,
    dependency: &TokenGrid,
    mask: &TokenGrid,
    beta_min: f64,
) -> Result<Vec<f64>, TrainError> {
    let config = ObjectiveConfig {
        tas: true,
        tgf: false,
        beta_min,
        ..ObjectiveConfig::PUBLISHED_VPPO
    };
    let mut scales = vec![1.0; mask.rows()];
    for part in &layout.parts {
        let rows = part.rows();
        let shaping = MiniBatchShaping::from_dependency(
            &config,
            &mask.select_rows(&rows)?,
            Some(dependency.select_rows(&rows)?),
        )?;
        for range in part.micro_ranges() {
            let s = shaping.advantage_scales(range.clone());
            for (&row, s) in rows[range].iter().zip(s) {
                scales[row] = s;
            }
        }
    }
    Ok(scales)
}

/// How the layout mixed prompts and how TAS weighted them, for the per-step metrics.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LayoutStats {
    /// Mean number of distinct prompts per micro-batch.
    pub prompts_per_micro_batch: f64,
    /// Min / mean / max over prompts of each prompt's mean TAS scale.
    pub prompt_scale_min: f64,
    pub prompt_scale_mean: f64,
    pub prompt_scale_max: f64,
}

/// Statistics of `layout` over rows of prompts `groups` with TAS `scales`.
pub fn layout_stats<G: Ord>(layout: &RowLayout, groups: &[G], scales: &[f64]) -> LayoutStats {
    use std::collections::{BTreeMap, BTreeSet};
    let (mut micro_n, mut prompts) = (0usize, 0usize);
    for part in &layout.parts {
        for micro in &part.micro_batches {
            micro_n += 1;
            prompts += micro
                .iter()
                .map(|&i| &groups[i])
                .collect::<BTreeSet<_>>()
                .len();
        }
    }
    let mut per_prompt: BTreeMap<&G, (f64, usize)> = BTreeMap::new();
    for (g, s) in groups.iter().zip(scales) {
        let e = per_prompt.entry(g).or_default();
        e.0 += s;
        e.1 += 1;
    }
    let means: Vec<f64> = per_prompt.values().map(|(s, n)| s / *n as f64).collect();
    let mean = |v: &[f64]| {
        if v.is_empty() {
            f64::NAN
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    LayoutStats {
        prompts_per_micro_batch: if micro_n > 0 {
            prompts as f64 / micro_n as f64
        } else {
            f64::NAN
        },
        prompt_scale_min: means.iter().copied().fold(f64::NAN, f64::min),
        prompt_scale_mean: mean(&means),
        prompt_scale_max: means.iter().copied().fold(f64::NAN, f64::max),
    }
}

/// One line of `spotlight debug tas-layout`'s input (and of `train --dump-step`'s dump).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TasLayoutCase {
    pub id: serde_json::Value,
    pub inputs: TasLayoutInputs,
    /// What the reference computes (checked by `--check`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<TasLayoutResult>,
}

/// A step's rows as the layout and TAS see them, in the step's row order.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TasLayoutInputs {
    pub world_size: usize,
    /// Prompts per mini-batch (the reference's `global_batch_size`).
    pub global_batch_size: usize,
    pub micro_batch_size_per_device: usize,
    pub beta_min: f64,
    pub balance: bool,
    /// Prompt of each row (rows of a prompt share the id; compared by their JSON text).
    pub groups: Vec<serde_json::Value>,
    /// Prompt tokens of each row, image tokens included.
    pub prompt_lengths: Vec<u64>,
    pub response_lengths: Vec<u64>,
    /// `S` of each response token (`response_lengths[i]` values per row).
    pub token_dependency: Vec<Vec<f64>>,
}

/// Where each row went and its TAS scale, in the step's row order.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, Serialize)]
pub struct TasLayoutResult {
    pub id: serde_json::Value,
    pub device: Vec<usize>,
    pub mini_batch: Vec<usize>,
    pub micro_batch: Vec<usize>,
    pub advantage_scale: Vec<f64>,
}

impl TasLayoutInputs {
    /// The layout and the TAS scales of these rows, through the trainer's own functions.
    pub fn evaluate(&self, id: &serde_json::Value) -> Result<TasLayoutResult, TrainError> {
        let n = self.groups.len();
        let ragged = |what: &str, len: usize| TrainError::Shape {
            what: what.to_string(),
            detail: format!("{len} rows, but `groups` has {n}"),
        };
        for (what, len) in [
            ("prompt_lengths", self.prompt_lengths.len()),
            ("response_lengths", self.response_lengths.len()),
            ("token_dependency", self.token_dependency.len()),
        ] {
            if len != n {
                return Err(ragged(what, len));
            }
        }
        let keys: Vec<String> = self.groups.iter().map(|g| g.to_string()).collect();
        let mut sizes = std::collections::BTreeMap::<&str, usize>::new();
        for k in &keys {
            *sizes.entry(k).or_default() += 1;
        }
        let g = sizes.values().next().copied().unwrap_or(0);
        if sizes.values().any(|&c| c != g) {
            return Err(TrainError::Shape {
                what: "groups".into(),
                detail: format!("prompts have different numbers of responses: {sizes:?}"),
            });
        }
        let width = self.response_lengths.iter().copied().max().unwrap_or(0) as usize;
        let mut mask = TokenGrid::zeros(n, width);
        let mut dependency = TokenGrid::zeros(n, width);
        for (i, (s, &len)) in self
            .token_dependency
            .iter()
            .zip(&self.response_lengths)
            .enumerate()
        {
            if s.len() != len as usize {
                return Err(TrainError::Shape {
                    what: format!("token_dependency[{i}]"),
                    detail: format!("{} values for a response of {len} tokens", s.len()),
                });
            }
            mask.row_mut(i)[..s.len()].fill(1.0);
            dependency.row_mut(i)[..s.len()].copy_from_slice(s);
        }
        let spec = LayoutSpec {
            world_size: self.world_size,
            mini_batch_rows: self.global_batch_size * g,
            micro_batch_rows: self.micro_batch_size_per_device,
            balance: self.balance,
        };
        let lengths: Vec<u64> = self
            .prompt_lengths
            .iter()
            .zip(&self.response_lengths)
            .map(|(p, r)| p + r)
            .collect();
        let layout = RowLayout::new(&spec, &lengths)?;
        let advantage_scale = tas_scales(&layout, &dependency, &mask, self.beta_min)?;
        Ok(TasLayoutResult {
            id: id.clone(),
            device: layout.device,
            mini_batch: layout.mini_batch,
            micro_batch: layout.micro_batch,
            advantage_scale,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balancing_partitions_equal_sizes_with_balanced_sums() {
        let lens: Vec<u64> = (0..32).map(|i| (i * 37 % 101) as u64 + 5).collect();
        let parts = balanced_partitions(&lens, 4, true).unwrap();
        assert_eq!(parts.len(), 4);
        let mut seen: Vec<usize> = parts.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..32).collect::<Vec<_>>());
        let sums: Vec<u64> = parts
            .iter()
            .map(|p| p.iter().map(|&i| lens[i]).sum())
            .collect();
        assert!(parts.iter().all(|p| p.len() == 8));
        let spread = sums.iter().max().unwrap() - sums.iter().min().unwrap();
        assert!(spread <= 10, "sums {sums:?}");
        assert!(parts.iter().all(|p| p.windows(2).all(|w| w[0] < w[1])));
    }

    #[test]
    fn without_balancing_workers_take_contiguous_chunks_and_mini_batches_in_order() {
        let spec = LayoutSpec {
            world_size: 2,
            mini_batch_rows: 4,
            micro_batch_rows: 1,
            balance: false,
        };
        let layout = RowLayout::new(&spec, &[1; 8]).unwrap();
        assert_eq!(layout.device, vec![0, 0, 0, 0, 1, 1, 1, 1]);
        assert_eq!(layout.mini_batch, vec![0, 0, 1, 1, 0, 0, 1, 1]);
        assert_eq!(layout.micro_batch, vec![0, 1, 0, 1, 0, 1, 0, 1]);
        assert_eq!(layout.mini_batches(), 2);
        assert_eq!(layout.parts_of(1).count(), 2);
    }

    #[test]
    fn a_layout_that_cannot_split_rows_over_workers_is_refused() {
        let spec = LayoutSpec {
            world_size: 3,
            mini_batch_rows: 3,
            micro_batch_rows: 1,
            balance: true,
        };
        assert!(RowLayout::new(&spec, &[1; 8]).is_err());
    }
}
