//! The worked-examples format of the spec (`vppo-objective-examples.jsonl`): one mini-batch
//! per line with its inputs and, optionally, the expected value of every intermediate.
//!
//! [`evaluate_case`] runs the trainer's own objective code ([`MiniBatchShaping`] and
//! [`micro_batch_objective`], the whole mini-batch as one micro-batch) in a chosen dtype and
//! takes the gradient with candle's autograd, so that anyone can compare Spotlight's
//! objective with another implementation field by field.

use candle_core::{DType, Device, Var};
use serde::{Deserialize, Serialize};

use super::advantages::grpo_advantages;
use super::grid::TokenGrid;
use super::objective::{micro_batch_objective, MiniBatch, MiniBatchShaping, ObjectiveConfig};
use super::TrainError;

/// One line of the worked-examples file.
#[derive(Debug, Clone, Deserialize)]
pub struct ObjectiveCase {
    /// Case name, echoed in the output.
    pub id: String,
    /// The objective's settings.
    pub config: ObjectiveConfig,
    /// `[B][T]`, 1 on response tokens.
    pub response_mask: Vec<Vec<f64>>,
    /// `[B][T]` rollout-policy log-probs (0 on padding).
    pub old_logprobs: Vec<Vec<f64>>,
    /// `[B][T]` log-probs with the perturbed image.
    pub aug_logprobs: Vec<Vec<f64>>,
    /// `[B][T]` current-policy log-probs: the point where the loss and gradient are taken.
    pub logprobs: Vec<Vec<f64>>,
    /// Optional `[B][T]` frozen-reference log-probs (with `config.kl_coef > 0`).
    #[serde(default)]
    pub ref_logprobs: Option<Vec<Vec<f64>>>,
    /// `[B]` rewards.
    pub rewards: Vec<f64>,
    /// `[B]` group ids (numbers or strings): responses to the same prompt share one.
    pub groups: Vec<serde_json::Value>,
    /// Expected values of the fields of [`ObjectiveResult`], when the file carries them.
    #[serde(default)]
    pub expected: Option<serde_json::Value>,
}

/// Every intermediate of the objective for one case, in the file's field names.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectiveResult {
    pub id: String,
    /// GRPO advantages, before TAS.
    pub advantages: Vec<f64>,
    /// S per token.
    pub token_dependency: Vec<Vec<f64>>,
    /// s_i per response.
    pub trajectory_dependency: Vec<f64>,
    /// TAS scale per response.
    pub advantage_scale: Vec<f64>,
    /// TGF mask (the response mask when TGF is off).
    pub token_mask: Vec<Vec<f64>>,
    pub pg_loss: f64,
    pub entropy_term: f64,
    pub loss: f64,
    /// d loss / d logprobs.
    pub grad_logprobs: Vec<Vec<f64>>,
}

/// The fields of [`ObjectiveResult`] that are compared with `expected` (all but `id`).
pub const RESULT_FIELDS: [&str; 9] = [
    "advantages",
    "token_dependency",
    "trajectory_dependency",
    "advantage_scale",
    "token_mask",
    "pg_loss",
    "entropy_term",
    "loss",
    "grad_logprobs",
];

/// Runs the objective on `case` with log-probs of `dtype` (F64 to check, F32 as in training).
pub fn evaluate_case(case: &ObjectiveCase, dtype: DType) -> Result<ObjectiveResult, TrainError> {
    let mask = TokenGrid::from_rows("response_mask", &case.response_mask)?;
    let (b, t) = (mask.rows(), mask.cols());
    let grid = |what: &str, rows: &[Vec<f64>]| -> Result<TokenGrid, TrainError> {
        let g = TokenGrid::from_rows(what, rows)?;
        g.expect_shape(what, b, t)?;
        Ok(g)
    };
    let old = grid("old_logprobs", &case.old_logprobs)?;
    let aug = grid("aug_logprobs", &case.aug_logprobs)?;
    let current = grid("logprobs", &case.logprobs)?;
    let reference = match &case.ref_logprobs {
        Some(rows) => Some(grid("ref_logprobs", rows)?),
        None => None,
    };
    if case.rewards.len() != b {
        return Err(TrainError::Shape {
            what: "rewards".to_string(),
            detail: format!("{} rewards for {b} responses", case.rewards.len()),
        });
    }
    // Group ids compare by their JSON text, so 3 and "3" are different groups.
    let groups: Vec<String> = case.groups.iter().map(|g| g.to_string()).collect();
    let advantages = grpo_advantages(&case.rewards, &groups)?;

    let shaping = MiniBatchShaping::new(&case.config, &mask, &old, Some(&aug))?;
    let mini = MiniBatch {
        response_mask: &mask,
        old_logprobs: &old,
        advantages: &advantages,
        ref_logprobs: reference.as_ref(),
        shaping: &shaping,
        mini_batch_tokens: shaping.response_tokens(),
    };
    let logprobs = Var::from_tensor(&current.to_tensor(dtype, &Device::Cpu)?)
        .map_err(TrainError::tensor("logprobs variable"))?;
    let micro = micro_batch_objective(&case.config, &mini, 0..b, logprobs.as_tensor())?;
    let grads = micro
        .weighted_loss
        .backward()
        .map_err(TrainError::tensor("backward"))?;
    let grad = match grads.get(logprobs.as_tensor()) {
        Some(g) => TokenGrid::from_tensor("grad_logprobs", g)?,
        // No path from the log-probs to the loss (e.g. B = 0): the gradient is zero.
        None => TokenGrid::zeros(b, t),
    };
    let scalar = |x: &candle_core::Tensor, what: &'static str| {
        x.to_dtype(DType::F64)
            .and_then(|x| x.to_scalar::<f64>())
            .map_err(TrainError::tensor(what))
    };
    Ok(ObjectiveResult {
        id: case.id.clone(),
        advantages,
        token_dependency: shaping
            .token_dependency
            .as_ref()
            .map(TokenGrid::to_rows)
            .unwrap_or_default(),
        trajectory_dependency: shaping.trajectory_dependency.clone(),
        advantage_scale: micro.advantage_scale.clone(),
        token_mask: shaping.token_mask.to_rows(),
        pg_loss: scalar(&micro.terms.pg_loss, "pg_loss")?,
        entropy_term: scalar(&micro.terms.entropy_term, "entropy_term")?,
        loss: scalar(&micro.weighted_loss, "loss")?,
        grad_logprobs: grad.to_rows(),
    })
}

/// The largest error of one field: `|got - expected| / max(1, |expected|)` over its values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldAgreement {
    pub field: &'static str,
    /// `None` when the field is missing from `expected` or has a different shape.
    pub max_error: Option<f64>,
}

/// Compares every field of `result` with `expected` (a JSON object with the same names).
pub fn compare_with_expected(
    result: &ObjectiveResult,
    expected: &serde_json::Value,
) -> Vec<FieldAgreement> {
    let got = serde_json::to_value(result).unwrap_or(serde_json::Value::Null);
    RESULT_FIELDS
        .iter()
        .map(|&field| FieldAgreement {
            field,
            max_error: match (got.get(field), expected.get(field)) {
                (Some(g), Some(e)) => max_relative_error(g, e),
                _ => None,
            },
        })
        .collect()
}

/// Max of `|g - e| / max(1, |e|)` over two JSON values of the same nested shape.
fn max_relative_error(got: &serde_json::Value, expected: &serde_json::Value) -> Option<f64> {
    use serde_json::Value;
    match (got, expected) {
        (Value::Number(g), Value::Number(e)) => {
            let (g, e) = (g.as_f64()?, e.as_f64()?);
            Some((g - e).abs() / e.abs().max(1.0))
        }
        (Value::Array(g), Value::Array(e)) if g.len() == e.len() => {
            g.iter().zip(e).try_fold(0.0f64, |acc, (g, e)| {
                max_relative_error(g, e).map(|err| acc.max(err))
            })
        }
        // A NaN is serialised as null: agreement only if both are NaN.
        (Value::Null, Value::Null) => Some(0.0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case_json() -> serde_json::Value {
        serde_json::json!({
            "id": "tiny",
            "config": {"clip_low": 0.2, "clip_high": 0.28, "clip_dual": 3.0, "rho": 0.4,
                       "beta_min": 0.9, "entropy_coef": 0.06, "tas": true, "tgf": true},
            "response_mask": [[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]],
            "old_logprobs": [[-1.0, -0.5, 0.0], [-2.0, 0.0, 0.0]],
            "aug_logprobs": [[-1.5, -0.5, 0.0], [-2.1, 0.0, 0.0]],
            "logprobs": [[-0.9, -0.6, 0.0], [-2.0, 0.0, 0.0]],
            "rewards": [1.0, 0.0],
            "groups": ["q", "q"]
        })
    }

    #[test]
    fn a_case_evaluates_and_agrees_with_itself() {
        let case: ObjectiveCase = serde_json::from_value(case_json()).unwrap();
        let result = evaluate_case(&case, DType::F64).unwrap();
        // Two responses: TAS maps the lower s to beta_min = 0.9 and the higher to
        // beta_max = 0.9 + 0.1 / 0.5 = 1.1 (mu = 0.5).
        let s = &result.trajectory_dependency;
        assert!(s[0] > s[1]);
        assert!((result.advantage_scale[0] - 1.1).abs() < 1e-6);
        assert!((result.advantage_scale[1] - 0.9).abs() < 1e-9);
        let expected = serde_json::to_value(&result).unwrap();
        for agreement in compare_with_expected(&result, &expected) {
            assert_eq!(agreement.max_error, Some(0.0), "{agreement:?}");
        }
    }

    #[test]
    fn mismatched_shapes_name_the_input() {
        let mut json = case_json();
        json["aug_logprobs"] = serde_json::json!([[-1.0, -0.5, 0.0]]);
        let case: ObjectiveCase = serde_json::from_value(json).unwrap();
        let err = evaluate_case(&case, DType::F64).unwrap_err().to_string();
        assert!(err.contains("aug_logprobs"), "{err}");
    }

    #[test]
    fn a_missing_or_reshaped_expected_field_is_reported_not_ignored() {
        let case: ObjectiveCase = serde_json::from_value(case_json()).unwrap();
        let result = evaluate_case(&case, DType::F64).unwrap();
        let mut expected = serde_json::to_value(&result).unwrap();
        expected["advantages"] = serde_json::json!([1.0]);
        expected.as_object_mut().unwrap().remove("loss");
        let agreement = compare_with_expected(&result, &expected);
        let get = |f: &str| agreement.iter().find(|a| a.field == f).unwrap().max_error;
        assert_eq!(get("advantages"), None);
        assert_eq!(get("loss"), None);
        assert_eq!(get("pg_loss"), Some(0.0));
    }
}
