//! `--images black|other-item`: the controls that tell a model that looks from one that
//! guesses. Two stand-in models on the bundled Geo3k items: one answers right only when it is
//! shown the item's own image (it "looks"), one always answers right from the question (it
//! has "answer priors"). The controls must take the first to zero and leave the second alone,
//! the images the backend receives must be what the control says, and a resume with another
//! control is refused.

mod eval_support;
use eval_support::{exact, registry};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use spotlight::bench::{DataSource, Registry};
use spotlight::eval::backend::{Backend, BackendError, SampleRequest, SampleResponse};
use spotlight::eval::image_control::ImageControl;
use spotlight::eval::{self, EvalRequest, Sampling};

const ITEMS: usize = 8;

/// A stand-in model: knows each item's answer by its id, and (if `looks`) gives it only
/// when the image it is shown is the item's own. Records every image it is shown.
struct StandIn {
    looks: bool,
    /// item id -> (answer, the item's own image bytes)
    items: HashMap<String, (String, Vec<u8>)>,
    shown: Mutex<Vec<(String, Vec<u8>)>>,
}

impl StandIn {
    fn new(registry: &Registry, looks: bool) -> StandIn {
        let manifest = registry.get("geo3k").unwrap();
        let loaded = registry
            .load_benchmark(manifest, &DataSource::Bundled)
            .unwrap();
        let items = loaded
            .items
            .iter()
            .take(ITEMS)
            .map(|item| {
                let image = item.images[0].bytes.as_deref().unwrap().to_vec();
                (item.id.clone(), (item.answer.clone(), image))
            })
            .collect();
        StandIn {
            looks,
            items,
            shown: Mutex::new(Vec::new()),
        }
    }
}

impl Backend for StandIn {
    fn describe(&self) -> String {
        format!("stand-in (looks: {})", self.looks)
    }

    fn sample(&self, request: &SampleRequest) -> Result<SampleResponse, BackendError> {
        let (answer, own) = &self.items[&request.item_id];
        let image = request.images[0].to_vec();
        let sees_its_own = image == *own;
        self.shown
            .lock()
            .unwrap()
            .push((request.item_id.clone(), image));
        let response = if !self.looks || sees_its_own {
            answer.clone()
        } else {
            "a guess".to_string()
        };
        Ok(SampleResponse {
            response,
            prompt_tokens: None,
            response_tokens: None,
            finish: "stop".into(),
        })
    }
}

fn request<'a>(
    registry: &'a Registry,
    out: PathBuf,
    images: ImageControl,
    resume: bool,
) -> EvalRequest<'a> {
    EvalRequest {
        registry,
        bench: "geo3k".into(),
        data: DataSource::Bundled,
        k: 2,
        seed: 5,
        sampling: Sampling {
            images,
            ..Sampling::default()
        },
        limit: Some(ITEMS),
        out,
        resume,
        concurrency: 2,
        progress: false,
        model: None,
        grader_for: &exact,
    }
}

fn accuracy(registry: &Registry, dir: &Path, looks: bool, images: ImageControl) -> f64 {
    let backend = StandIn::new(registry, looks);
    let outcome = eval::evaluate(
        &request(registry, dir.to_path_buf(), images, false),
        &backend,
    )
    .unwrap();
    let shown = backend.shown.into_inner().unwrap();
    assert_eq!(shown.len(), ITEMS * 2);
    for (item, bytes) in &shown {
        let own = backend
            .items
            .values()
            .find(|(_, img)| img == bytes)
            .map(|(a, _)| a);
        let decoded = image::load_from_memory(bytes).unwrap().to_rgb8();
        match images {
            ImageControl::AsIs => assert!(own.is_some(), "{item} shown a foreign image"),
            ImageControl::Black => {
                assert!(decoded.pixels().all(|p| p.0 == [0, 0, 0]), "{item}")
            }
            // another item's real image
            ImageControl::OtherItem => assert!(own.is_some(), "{item} shown no item's image"),
        }
    }
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(plan["sampling"]["images"], images.name());
    outcome.summary.benchmarks["geo3k"].avg_at_k.unwrap()
}

#[test]
fn controls_take_a_looking_model_to_zero_and_leave_priors_alone() {
    let registry = registry();
    let tmp = tempfile::tempdir().unwrap();
    let mut n = 0;
    let mut run = |looks, images| {
        n += 1;
        accuracy(
            &registry,
            &tmp.path().join(format!("run-{n}")),
            looks,
            images,
        )
    };
    for control in [ImageControl::Black, ImageControl::OtherItem] {
        assert_eq!(run(true, ImageControl::AsIs), 100.0);
        assert_eq!(run(true, control), 0.0, "{control:?}");
        assert_eq!(run(false, control), 100.0, "{control:?}");
    }
}

#[test]
fn a_resume_with_another_image_control_is_refused() {
    let registry = registry();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let backend = StandIn::new(&registry, true);
    eval::evaluate(
        &request(&registry, dir.clone(), ImageControl::AsIs, false),
        &backend,
    )
    .unwrap();
    let err = eval::evaluate(
        &request(&registry, dir, ImageControl::Black, true),
        &backend,
    )
    .err()
    .expect("refused");
    assert!(err.to_string().contains("images as-is vs black"), "{err}");
}
