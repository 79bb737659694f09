//! Shared by the `model_*` integration tests: the golden fixtures written by tools/golden.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde_json::Value;

/// Every fixture checkpoint; tests loop over all of them (nothing is tuned to one shape).
pub const FIXTURES: &[&str] = &["tiny", "tied", "sharded", "odd"];

pub fn fixtures_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen25vl")
}

pub fn fixture_dir(name: &str) -> PathBuf {
    fixtures_root().join(name)
}

/// cases.json and references.safetensors of one fixture.
pub struct Golden {
    pub meta: Value,
    pub tensors: HashMap<String, Tensor>,
}

impl Golden {
    pub fn load(name: &str) -> Golden {
        let dir = fixture_dir(name);
        let meta: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap())
                .unwrap();
        let tensors =
            candle_core::safetensors::load(dir.join("references.safetensors"), &Device::Cpu)
                .unwrap();
        Golden { meta, tensors }
    }
    pub fn cases(&self) -> &Vec<Value> {
        self.meta["cases"].as_array().unwrap()
    }
    pub fn images(&self) -> &Vec<Value> {
        self.meta["images"].as_array().unwrap()
    }
    pub fn tensor(&self, key: &Value) -> &Tensor {
        &self.tensors[key.as_str().unwrap()]
    }
}

pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// max |a - b| over all elements (shapes must match).
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shape mismatch");
    let a = a.to_dtype(candle_core::DType::F32).unwrap();
    let b = b.to_dtype(candle_core::DType::F32).unwrap();
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}
