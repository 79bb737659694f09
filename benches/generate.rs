//! Batched sampling throughput (`Qwen25Vl::generate`): tokens/s at batch 1, 8 and 32 on a small
//! checkpoint (4 layers, hidden 256, a 64x64 image), `new_tokens` tokens per sample, EOS off.
//! The peer: `tools/bench_generate/run.sh --model DIR` times transformers' `generate` on the
//! same folder, prompt, image and settings.
//!
//! `SPOTLIGHT_BENCH_MODEL=DIR cargo bench --bench generate` (DIR: e.g. the output of
//! `spotlight synth model --preset bench`).

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use image::{DynamicImage, Rgb, RgbImage};
use imageproc::drawing::{draw_filled_ellipse_mut, draw_filled_rect_mut};
use imageproc::rect::Rect;
use spotlight::model::{Checkpoint, GenerationPrompt, SampleRequest, SamplingParams};

const NEW_TOKENS: usize = 32;

/// The drawing tools/bench_generate/bench_generate.py makes.
fn image64() -> DynamicImage {
    let mut im = RgbImage::from_pixel(64, 64, Rgb([240, 240, 240]));
    draw_filled_rect_mut(&mut im, Rect::at(8, 8).of_size(23, 33), Rgb([200, 30, 30]));
    draw_filled_ellipse_mut(&mut im, (47, 35), 13, 15, Rgb([30, 30, 200]));
    DynamicImage::ImageRgb8(im)
}

fn bench(c: &mut Criterion) {
    spotlight::model::prepare_process();
    let Some(dir) = std::env::var_os("SPOTLIGHT_BENCH_MODEL").map(PathBuf::from) else {
        eprintln!("set SPOTLIGHT_BENCH_MODEL to a checkpoint folder (spotlight synth model --preset bench --out DIR)");
        return;
    };
    let ckpt = Checkpoint::load(&dir).expect("loading the bench checkpoint");
    let image = ckpt.image_processor.preprocess(&image64()).expect("image");
    let builder = ckpt.prompt_builder().expect("chat template");
    let prompt_ids = builder
        .prompt_ids(None, "Describe the image.", &[image.grid_thw])
        .expect("prompt");
    let prompts = [GenerationPrompt {
        prompt_ids: &prompt_ids,
        images: vec![&image],
    }];
    let params = SamplingParams {
        temperature: 1.0,
        top_p: 1.0,
        top_k: 0,
        max_new_tokens: NEW_TOKENS,
        stop_token_ids: vec![],
    };
    let mut group = c.benchmark_group("generate");
    group.sample_size(10);
    for batch in [1usize, 8, 32] {
        let samples: Vec<SampleRequest> = (0..batch)
            .map(|i| SampleRequest {
                prompt: 0,
                seed: i as u64,
            })
            .collect();
        group.throughput(Throughput::Elements((batch * NEW_TOKENS) as u64));
        group.bench_with_input(BenchmarkId::new("tokens", batch), &samples, |b, s| {
            b.iter(|| ckpt.model.generate(&prompts, s, &params).expect("generate"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
