//! AdamW as PyTorch computes it, with state that can be saved and restored exactly (candle-nn's
//! `AdamW` keeps its moments private, so a resumed run could not continue bit for bit), and
//! gradient accumulation and clipping over named parameters.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Tensor, Var};

use super::TrainError;

/// PyTorch's default.
pub const ADAM_EPS: f64 = 1e-8;

/// AdamW state: step count and first/second moments per parameter name.
pub struct AdamW {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub weight_decay: f64,
    step: u64,
    moments: BTreeMap<String, (Tensor, Tensor)>,
}

impl AdamW {
    pub fn new(lr: f64, betas: [f64; 2], weight_decay: f64) -> Self {
        AdamW {
            lr,
            beta1: betas[0],
            beta2: betas[1],
            weight_decay,
            step: 0,
            moments: BTreeMap::new(),
        }
    }

    /// Optimiser steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// One update of every parameter that has a gradient, at learning rate `lr`:
    /// `p -= lr * wd * p; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
    /// p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`.
    pub fn step(
        &mut self,
        params: &BTreeMap<String, Var>,
        grads: &BTreeMap<String, Tensor>,
        lr: f64,
    ) -> Result<(), TrainError> {
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = (self.beta1, self.beta2);
        let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        let update = |var: &Var,
                      g: &Tensor,
                      m: &Tensor,
                      v: &Tensor|
         -> candle_core::Result<(Tensor, Tensor, Tensor)> {
            let p = var.as_tensor();
            let m = ((m * b1)? + (g * (1.0 - b1))?)?;
            let v = ((v * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let decayed = (p * (1.0 - lr * self.weight_decay))?;
            let denom = ((&v / c2)?.sqrt()? + ADAM_EPS)?;
            let new = (decayed - ((&m / c1)? / denom)?.affine(lr, 0.0)?)?;
            Ok((new, m, v))
        };
        for (name, var) in params {
            let Some(g) = grads.get(name) else { continue };
            let (m, v) = match self.moments.get(name) {
                Some(mv) => mv.clone(),
                None => {
                    let z = var
                        .as_tensor()
                        .zeros_like()
                        .map_err(TrainError::tensor("AdamW state"))?;
                    (z.clone(), z)
                }
            };
            let (new, m, v) = update(var, g, &m, &v).map_err(TrainError::tensor("AdamW update"))?;
            var.set(&new).map_err(TrainError::tensor("AdamW update"))?;
            self.moments.insert(name.clone(), (m.detach(), v.detach()));
        }
        Ok(())
    }

    /// Writes the moments (`<name>.exp_avg`, `<name>.exp_avg_sq`) to a safetensors file.
    pub fn save(&self, path: &Path) -> Result<(), TrainError> {
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for (name, (m, v)) in &self.moments {
            tensors.insert(format!("{name}.exp_avg"), m.clone());
            tensors.insert(format!("{name}.exp_avg_sq"), v.clone());
        }
        candle_core::safetensors::save(&tensors, path).map_err(|e| TrainError::State {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Restores the moments saved by [`Self::save`] and the step count (kept in the trainer
    /// state file).
    pub fn load(
        &mut self,
        path: &Path,
        steps: u64,
        params: &BTreeMap<String, Var>,
    ) -> Result<(), TrainError> {
        let bad = |message: String| TrainError::State {
            path: path.to_path_buf(),
            message,
        };
        let device = params
            .values()
            .next()
            .map(|v| v.device().clone())
            .unwrap_or(candle_core::Device::Cpu);
        let tensors =
            candle_core::safetensors::load(path, &device).map_err(|e| bad(e.to_string()))?;
        self.moments.clear();
        for name in params.keys() {
            let m = tensors.get(&format!("{name}.exp_avg"));
            let v = tensors.get(&format!("{name}.exp_avg_sq"));
            match (m, v) {
                (Some(m), Some(v)) => {
                    self.moments.insert(name.clone(), (m.clone(), v.clone()));
                }
                (None, None) if steps == 0 => {}
                _ => return Err(bad(format!("no moments for parameter `{name}`"))),
            }
        }
        self.step = steps;
        Ok(())
    }
}

/// Gradients summed over micro-batches, per parameter name.
#[derive(Default)]
pub struct GradAccumulator {
    pub grads: BTreeMap<String, Tensor>,
}

impl GradAccumulator {
    /// Adds the gradients of `loss` (one micro-batch's weighted loss).
    pub fn backward(
        &mut self,
        loss: &Tensor,
        params: &BTreeMap<String, Var>,
    ) -> Result<(), TrainError> {
        let store = loss.backward().map_err(TrainError::tensor("backward"))?;
        for (name, var) in params {
            if let Some(g) = store.get(var.as_tensor()) {
                let g = g.detach();
                let sum = match self.grads.remove(name) {
                    Some(prev) => {
                        (prev + g).map_err(TrainError::tensor("gradient accumulation"))?
                    }
                    None => g,
                };
                self.grads.insert(name.clone(), sum);
            }
        }
        Ok(())
    }

    /// The global L2 norm of the gradients, in f64.
    pub fn norm(&self) -> Result<f64, TrainError> {
        let mut total = 0.0f64;
        for g in self.grads.values() {
            total += g
                .to_dtype(DType::F64)
                .and_then(|g| g.sqr()?.sum_all()?.to_scalar::<f64>())
                .map_err(TrainError::tensor("gradient norm"))?;
        }
        Ok(total.sqrt())
    }

    /// Scales every gradient so the global norm is at most `max_norm` (PyTorch's
    /// `clip_grad_norm_`: factor `max_norm / (norm + 1e-6)`, applied only when below 1).
    pub fn clip(&mut self, norm: f64, max_norm: f64) -> Result<(), TrainError> {
        let factor = max_norm / (norm + 1e-6);
        if factor < 1.0 {
            for g in self.grads.values_mut() {
                *g = g
                    .affine(factor, 0.0)
                    .map_err(TrainError::tensor("gradient clipping"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn adamw_matches_the_pytorch_formula_on_a_scalar() {
        // hand-computed: p = 1, g = 0.5, lr 0.1, wd 0.01, betas (0.9, 0.999), one step:
        // m = 0.05, v = 0.00025, m_hat = 0.5, v_hat = 0.25, p = 1*(1-0.001) - 0.1*0.5/(0.5+1e-8)
        let var = Var::from_tensor(&Tensor::new(&[1.0f64], &Device::Cpu).unwrap()).unwrap();
        let params: BTreeMap<String, Var> = [("w".to_string(), var.clone())].into();
        let grads: BTreeMap<String, Tensor> = [(
            "w".to_string(),
            Tensor::new(&[0.5f64], &Device::Cpu).unwrap(),
        )]
        .into();
        let mut opt = AdamW::new(0.1, [0.9, 0.999], 0.01);
        opt.step(&params, &grads, 0.1).unwrap();
        let p: Vec<f64> = var.as_tensor().to_vec1().unwrap();
        let expected = 0.999 - 0.1 * 0.5 / (0.5 + 1e-8);
        assert!((p[0] - expected).abs() < 1e-12, "{} vs {expected}", p[0]);
    }

    #[test]
    fn saved_state_restores_the_same_next_step() {
        let dir = tempfile::tempdir().unwrap();
        let make =
            || Var::from_tensor(&Tensor::new(&[1.0f32, -2.0], &Device::Cpu).unwrap()).unwrap();
        let g = Tensor::new(&[0.3f32, -0.1], &Device::Cpu).unwrap();
        let grads: BTreeMap<String, Tensor> = [("w".to_string(), g)].into();
        let (a, b) = (make(), make());
        let pa: BTreeMap<String, Var> = [("w".to_string(), a.clone())].into();
        let pb: BTreeMap<String, Var> = [("w".to_string(), b.clone())].into();
        let mut oa = AdamW::new(0.01, [0.9, 0.999], 0.0);
        oa.step(&pa, &grads, 0.01).unwrap();
        b.set(a.as_tensor()).unwrap();
        oa.save(&dir.path().join("o.safetensors")).unwrap();
        let mut ob = AdamW::new(0.01, [0.9, 0.999], 0.0);
        ob.load(&dir.path().join("o.safetensors"), oa.steps(), &pb)
            .unwrap();
        oa.step(&pa, &grads, 0.01).unwrap();
        ob.step(&pb, &grads, 0.01).unwrap();
        let (x, y): (Vec<f32>, Vec<f32>) = (
            a.as_tensor().to_vec1().unwrap(),
            b.as_tensor().to_vec1().unwrap(),
        );
        assert_eq!(x, y);
    }

    #[test]
    fn clipping_scales_to_the_max_norm() {
        let mut acc = GradAccumulator::default();
        acc.grads.insert(
            "a".into(),
            Tensor::new(&[3.0f64, 4.0], &Device::Cpu).unwrap(),
        );
        let n = acc.norm().unwrap();
        assert!((n - 5.0).abs() < 1e-12);
        acc.clip(n, 1.0).unwrap();
        assert!((acc.norm().unwrap() - 5.0 / (5.0 + 1e-6)).abs() < 1e-9);
    }
}
