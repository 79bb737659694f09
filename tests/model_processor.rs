//! The image processor against transformers' slow (PIL) `Qwen2VLImageProcessor`: identical grids,
//! pixel values within 1e-6 without resize, and within one 8-bit level after a resize.

mod model_common;

use model_common::*;
use spotlight::model::{Checkpoint, ImageProcessor};

#[test]
fn pixel_values_match_the_slow_processor_on_every_fixture() {
    let mut checked = 0;
    for &name in FIXTURES {
        let dir = fixture_dir(name);
        let processor = ImageProcessor::from_file(&dir.join("preprocessor_config.json")).unwrap();
        // the checkpoint loader finds the same settings
        assert_eq!(Checkpoint::load(&dir).unwrap().image_processor, processor);
        let golden = Golden::load(name);
        for img in golden.images() {
            let file = img["image"].as_str().unwrap();
            let label = format!("{name}/{file}");
            let ours = processor
                .preprocess_file(&fixtures_root().join("images").join(file))
                .unwrap();
            let g = ids(&img["grid_thw"]);
            assert_eq!(
                [ours.grid_thw.t, ours.grid_thw.h, ours.grid_thw.w],
                [g[0] as usize, g[1] as usize, g[2] as usize],
                "{label}: grid_thw"
            );
            let reference: Vec<Vec<f32>> = golden.tensor(&img["pixel_values"]).to_vec2().unwrap();
            let reference: Vec<f32> = reference.into_iter().flatten().collect();
            assert_eq!(ours.pixel_values.len(), reference.len(), "{label}: size");
            let hw = ids(&img["size_hw"]);
            let resized = (g[1] * 14, g[2] * 14) != (hw[0], hw[1]);
            let mut max = 0f32;
            let mut max_levels = 0f32;
            let mut differing = 0usize;
            let patch = ours.patch_dim;
            for (i, (a, b)) in ours.pixel_values.iter().zip(&reference).enumerate() {
                let d = (a - b).abs();
                max = max.max(d);
                // back to 8-bit levels: x = (v / 255 - mean) / std, channel = (i % patch) / (patch / 3)
                let c = (i % patch) / (patch / 3);
                let levels = d * processor.image_std[c] * 255.0;
                max_levels = max_levels.max(levels);
                if d > 1e-6 {
                    differing += 1;
                }
            }
            println!(
                "{label}: resized={resized} max |delta| = {max:.2e} ({max_levels:.3} levels), {differing}/{} values differ",
                reference.len()
            );
            if resized {
                assert!(
                    max_levels <= 1.0 + 1e-3,
                    "{label}: a pixel is off by {max_levels} levels"
                );
            } else {
                assert!(max <= 1e-6, "{label}: pixel values differ by {max}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 13);
}
