//! 3-D position ids for M-RoPE, as transformers' `Qwen2_5_VLModel.get_rope_index` computes them.
//!
//! Text tokens advance all three components (temporal, height, width) together. The
//! `<|image_pad|>` tokens of one image get (0, row, col) over the merged grid, offset by the
//! position where the image starts; the text after the image resumes at one past the largest
//! position used so far. So a sequence's positions end below its length, and generation (part 2)
//! continues from `max + 1`, not from the token count.

use super::processor::GridThw;
use super::ModelError;

/// Per-token positions of one sequence: `[temporal, height, width]` rows of equal length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MropePositions {
    pub components: [Vec<i64>; 3],
}

impl MropePositions {
    pub fn len(&self) -> usize {
        self.components[0].len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The position the next generated token takes (largest so far plus one).
    pub fn next_position(&self) -> i64 {
        self.components
            .iter()
            .flat_map(|c| c.iter().copied())
            .max()
            .map_or(0, |m| m + 1)
    }

    /// Appends `n` text tokens after the sequence, each one position past the last (what
    /// generation gives the tokens it samples).
    pub fn extend_text(&mut self, n: usize) {
        let start = self.next_position();
        for c in self.components.iter_mut() {
            c.extend((0..n as i64).map(|j| start + j));
        }
    }
}

/// Positions of one unpadded sequence whose images (in order of appearance) have `grids`.
///
/// Each image must appear as `<|vision_start|>` followed by exactly `grid.num_tokens(merge)`
/// image tokens, as the prompt builder produces.
pub fn mrope_positions(
    ids: &[u32],
    grids: &[GridThw],
    image_token_id: u32,
    vision_start_token_id: u32,
    video_token_id: u32,
    spatial_merge_size: usize,
) -> Result<MropePositions, ModelError> {
    let mut comps: [Vec<i64>; 3] = [
        Vec::with_capacity(ids.len()),
        Vec::with_capacity(ids.len()),
        Vec::with_capacity(ids.len()),
    ];
    let starts = ids
        .windows(2)
        .filter(|w| w[0] == vision_start_token_id && w[1] == video_token_id)
        .count();
    if starts > 0 {
        return Err(ModelError::Input(
            "video inputs are not supported".to_string(),
        ));
    }
    let n_images = ids
        .windows(2)
        .filter(|w| w[0] == vision_start_token_id && w[1] == image_token_id)
        .count();
    if n_images != grids.len() {
        return Err(ModelError::Input(format!(
            "the sequence holds {n_images} image(s) but {} were given",
            grids.len()
        )));
    }
    let mut next: i64 = 0; // the position the next text token takes
    let mut st = 0usize;
    for grid in grids {
        let Some(offset) = ids[st..].iter().position(|&t| t == image_token_id) else {
            return Err(ModelError::Input(
                "fewer image tokens than images".to_string(),
            ));
        };
        let ed = st + offset;
        for i in 0..(ed - st) as i64 {
            for c in comps.iter_mut() {
                c.push(next + i);
            }
        }
        let base = next + (ed - st) as i64;
        let (gt, gh, gw) = (
            grid.t,
            grid.h / spatial_merge_size,
            grid.w / spatial_merge_size,
        );
        let n = gt * gh * gw;
        if ed + n > ids.len() || ids[ed..ed + n].iter().any(|&t| t != image_token_id) {
            return Err(ModelError::Input(format!(
                "an image with grid {}x{}x{} needs {n} consecutive image tokens",
                grid.t, grid.h, grid.w
            )));
        }
        let mut max = base;
        for t in 0..gt {
            for y in 0..gh {
                for x in 0..gw {
                    // temporal positions of a still image are 0 (`second_per_grid_t = 0`)
                    let _ = t;
                    let p = [base, base + y as i64, base + x as i64];
                    for (c, v) in comps.iter_mut().zip(p) {
                        c.push(v);
                        max = max.max(v);
                    }
                }
            }
        }
        next = max + 1;
        st = ed + n;
    }
    for i in 0..(ids.len() - st) as i64 {
        for c in comps.iter_mut() {
            c.push(next + i);
        }
    }
    Ok(MropePositions { components: comps })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_only_is_arange() {
        let p = mrope_positions(&[5, 6, 7], &[], 9, 8, 10, 2).unwrap();
        for c in &p.components {
            assert_eq!(c, &vec![0, 1, 2]);
        }
        assert_eq!(p.next_position(), 3);
    }

    #[test]
    fn image_tokens_get_grid_positions_and_text_resumes_after_the_max() {
        // text, vision_start(8), 2x3 merged grid of image tokens (9), text
        let mut ids = vec![1, 8];
        ids.extend([9; 6]);
        ids.extend([2, 3]);
        let grid = GridThw { t: 1, h: 4, w: 6 };
        let p = mrope_positions(&ids, &[grid], 9, 8, 10, 2).unwrap();
        assert_eq!(p.components[0], vec![0, 1, 2, 2, 2, 2, 2, 2, 5, 6]);
        assert_eq!(p.components[1], vec![0, 1, 2, 2, 2, 3, 3, 3, 5, 6]);
        assert_eq!(p.components[2], vec![0, 1, 2, 3, 4, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn image_count_mismatch_is_an_error() {
        assert!(mrope_positions(&[1, 8, 9, 9, 9, 9], &[], 9, 8, 10, 2).is_err());
    }
}
