//! Ingest throughput: a generated MathVision-schema parquet file of about 200 MB with
//! incompressible images, read into `Item`s (images left encoded). Compare with
//! `tools/ingest_pyarrow.py` on the same file (`just bench-ingest` runs both).

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use spotlight::bench::Registry;

fn bench_file() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let path = PathBuf::from(target).join("bench-data/large.parquet");
    if !path.exists() {
        let mb = std::env::var("SPOTLIGHT_INGEST_MB")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200);
        eprintln!("generating {} ({mb} MB)...", path.display());
        spotlight::synth::write_large(&path, mb, 0).expect("generate the benchmark file");
    }
    path
}

fn ingest(c: &mut Criterion) {
    let registry = Registry::load(std::path::Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
    let manifest = registry.get("mathvision").unwrap().clone();
    let path = bench_file();
    let bytes = std::fs::metadata(&path).unwrap().len();
    let rows = spotlight::bench::load_files(&manifest, std::slice::from_ref(&path))
        .unwrap()
        .items
        .len();
    eprintln!(
        "{}: {rows} rows, {:.1} MB",
        path.display(),
        bytes as f64 / 1e6
    );
    let mut group = c.benchmark_group("ingest");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("mathvision_schema_200mb_items", |b| {
        b.iter(|| {
            let loaded =
                spotlight::bench::load_files(&manifest, std::slice::from_ref(&path)).unwrap();
            assert_eq!(loaded.items.len(), rows);
            loaded
        })
    });
    group.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
