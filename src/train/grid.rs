//! A dense `[rows][cols]` grid of `f64` per-token values (log-probs, masks, dependencies).
//!
//! The objective's bookkeeping (advantages, S, TAS scales, TGF masks) does not depend on the
//! current policy, so it is computed once, in `f64`, on these grids; only the loss itself
//! runs on candle tensors. Keeping one row-major layout with checked shapes means every
//! formula sees the same `[response][token]` indexing as the reference's `(bs, response_len)`.

use candle_core::{DType, Device, Tensor};

use super::TrainError;

/// Row-major `[rows][cols]` values; row `i` is response `i`, column `t` its token `t`.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenGrid {
    rows: usize,
    cols: usize,
    values: Vec<f64>,
}

impl TokenGrid {
    /// A grid of zeros.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        TokenGrid {
            rows,
            cols,
            values: vec![0.0; rows * cols],
        }
    }

    /// Builds a grid from rows, which must all have the same length; `what` names the input
    /// in the error (e.g. "old_logprobs").
    pub fn from_rows(what: &str, rows: &[Vec<f64>]) -> Result<Self, TrainError> {
        let cols = rows.first().map_or(0, Vec::len);
        let mut values = Vec::with_capacity(rows.len() * cols);
        for (i, row) in rows.iter().enumerate() {
            if row.len() != cols {
                return Err(TrainError::Shape {
                    what: what.to_string(),
                    detail: format!("row {i} has {} values but row 0 has {cols}", row.len()),
                });
            }
            values.extend_from_slice(row);
        }
        Ok(TokenGrid {
            rows: rows.len(),
            cols,
            values,
        })
    }

    /// Builds a grid from a rank-2 tensor of any float dtype.
    pub fn from_tensor(what: &str, tensor: &Tensor) -> Result<Self, TrainError> {
        let (rows, cols) = tensor.dims2().map_err(|e| TrainError::Shape {
            what: what.to_string(),
            detail: e.to_string(),
        })?;
        let values = tensor
            .to_dtype(DType::F64)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f64>())
            .map_err(TrainError::tensor("grid from tensor"))?;
        Ok(TokenGrid { rows, cols, values })
    }

    /// Number of rows (responses).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (token positions, padding included).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row `i` as a slice. Panics if `i >= rows()`, like slice indexing.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.values[i * self.cols..(i + 1) * self.cols]
    }

    /// Mutable row `i`.
    pub fn row_mut(&mut self, i: usize) -> &mut [f64] {
        &mut self.values[i * self.cols..(i + 1) * self.cols]
    }

    /// All values, row-major.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// The rows as nested vectors (for JSON output).
    pub fn to_rows(&self) -> Vec<Vec<f64>> {
        (0..self.rows).map(|i| self.row(i).to_vec()).collect()
    }

    /// A copy of rows `range` (a micro-batch of a mini-batch).
    pub fn slice_rows(&self, range: std::ops::Range<usize>) -> Result<Self, TrainError> {
        if range.start > range.end || range.end > self.rows {
            return Err(TrainError::Shape {
                what: "row range".to_string(),
                detail: format!("{range:?} is not within 0..{}", self.rows),
            });
        }
        Ok(TokenGrid {
            rows: range.len(),
            cols: self.cols,
            values: self.values[range.start * self.cols..range.end * self.cols].to_vec(),
        })
    }

    /// A copy of rows `indices`, in that order (one worker's rows of a step).
    pub fn select_rows(&self, indices: &[usize]) -> Result<Self, TrainError> {
        let mut values = Vec::with_capacity(indices.len() * self.cols);
        for &i in indices {
            if i >= self.rows {
                return Err(TrainError::Shape {
                    what: "row index".to_string(),
                    detail: format!("{i} is not within 0..{}", self.rows),
                });
            }
            values.extend_from_slice(self.row(i));
        }
        Ok(TokenGrid {
            rows: indices.len(),
            cols: self.cols,
            values,
        })
    }

    /// Fails unless the grid is `rows x cols`; `what` names the input in the error.
    pub fn expect_shape(&self, what: &str, rows: usize, cols: usize) -> Result<(), TrainError> {
        if self.rows != rows || self.cols != cols {
            return Err(TrainError::Shape {
                what: what.to_string(),
                detail: format!(
                    "expected [{rows}][{cols}] (the response mask's shape), got [{}][{}]",
                    self.rows, self.cols
                ),
            });
        }
        Ok(())
    }

    /// The sum of each row (for a mask: the number of response tokens of each response).
    pub fn row_sums(&self) -> Vec<f64> {
        (0..self.rows).map(|i| self.row(i).iter().sum()).collect()
    }

    /// The grid as a `[rows, cols]` tensor of `dtype` on `device`.
    pub fn to_tensor(&self, dtype: DType, device: &Device) -> Result<Tensor, TrainError> {
        Tensor::from_slice(&self.values, (self.rows, self.cols), device)
            .and_then(|t| t.to_dtype(dtype))
            .map_err(TrainError::tensor("grid to tensor"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ragged_rows_are_rejected_with_the_row_named() {
        let err = TokenGrid::from_rows("old_logprobs", &[vec![1.0, 2.0], vec![1.0]]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("old_logprobs") && msg.contains("row 1"),
            "{msg}"
        );
    }

    #[test]
    fn tensor_round_trip_and_row_slicing() {
        let g =
            TokenGrid::from_rows("g", &[vec![1.0, 2.0], vec![3.0, 4.0], vec![5.0, 6.0]]).unwrap();
        let t = g.to_tensor(DType::F32, &Device::Cpu).unwrap();
        assert_eq!(TokenGrid::from_tensor("g", &t).unwrap(), g);
        let mid = g.slice_rows(1..3).unwrap();
        assert_eq!(mid.to_rows(), vec![vec![3.0, 4.0], vec![5.0, 6.0]]);
        assert_eq!(g.row_sums(), vec![3.0, 7.0, 11.0]);
        assert!(g.slice_rows(2..4).is_err());
        assert!(g.expect_shape("g", 3, 3).is_err());
    }
}
