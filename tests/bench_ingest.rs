//! Ingestion of the eight benchmarks: bundled files, the real samples in `../shared`, the
//! Hugging Face cache layout, files written differently in the same schema, and bad input.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Fields, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use spotlight::bench::{BenchError, DataSource, Item, Manifest, PromptRenderer, Registry};

fn registry() -> Registry {
    Registry::load(Path::new(env!("CARGO_MANIFEST_DIR"))).expect("manifests load")
}

fn shared_samples() -> Option<PathBuf> {
    spotlight::testing::shared_path("benchmarks-sample")
}

/// Everything about an item that a model or grader sees, images by content.
fn fingerprint(manifest: &Manifest, item: &Item) -> String {
    let renderer = PromptRenderer::new(manifest).unwrap();
    let images: Vec<String> = item
        .images
        .iter()
        .map(|i| match &i.bytes {
            Some(b) => format!("{} bytes, first {:?}", b.len(), &b[..b.len().min(8)]),
            None => format!("no bytes, path {:?}", i.path),
        })
        .collect();
    format!(
        "id={} answer={:?} type={:?} options={:?} fields={:?} images={:?}\nprompt={}",
        item.id,
        item.answer,
        item.question_type,
        item.options,
        item.fields,
        images,
        renderer.render(item).unwrap()
    )
}

fn read_batch(path: &Path) -> RecordBatch {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    let schema = batches[0].schema();
    arrow::compute::concat_batches(&schema, &batches).unwrap()
}

fn write_batch(path: &Path, batch: &RecordBatch, row_group_rows: usize) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(row_group_rows))
        .build();
    let mut writer =
        ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), Some(props)).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
}

#[test]
fn all_eight_load_from_the_bundled_files() {
    let registry = registry();
    let all = registry.all();
    assert_eq!(all.len(), 8, "`all` is the paper's eight");
    let names: Vec<&str> = all.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "MathVerse",
            "DynaMath",
            "MMK12",
            "Geo3k",
            "MathVision",
            "We-Math",
            "LogicVista",
            "MMMU-Pro"
        ]
    );
    for manifest in all {
        let loaded = registry
            .load_benchmark(manifest, &DataSource::Bundled)
            .unwrap_or_else(|e| panic!("{}: {e}", manifest.name));
        assert!(loaded.bad_rows.is_empty(), "{:?}", loaded.bad_rows);
        assert!(loaded.items.len() >= 20, "{}", manifest.name);
        let renderer = PromptRenderer::new(manifest).unwrap();
        for item in &loaded.items {
            item.check_images().unwrap();
            let prompt = renderer.render(item).unwrap();
            assert!(prompt.ends_with("\\boxed{}."), "{prompt}");
            assert!(!prompt.contains("<image"), "placeholder left in {prompt}");
            assert!(!item.answer.is_empty());
        }
    }
}

#[test]
fn all_eight_load_from_the_real_samples() {
    let Some(dir) = shared_samples() else { return };
    let registry = registry();
    let source = DataSource::Path(dir);
    let mut total = 0;
    for manifest in registry.all() {
        let loaded = registry
            .load_benchmark(manifest, &source)
            .unwrap_or_else(|e| panic!("{}: {e}", manifest.name));
        assert!(
            loaded.bad_rows.is_empty(),
            "{}: {:?}",
            manifest.name,
            loaded.bad_rows
        );
        let renderer = PromptRenderer::new(manifest).unwrap();
        for item in &loaded.items {
            item.check_images().unwrap();
            renderer.render(item).unwrap();
        }
        if manifest.slug == "mmk12" {
            assert!(loaded.items.is_empty());
            assert!(loaded.warnings.iter().any(|w| w.contains("zero rows")));
        } else {
            assert!(!loaded.items.is_empty(), "{}", manifest.name);
        }
        total += loaded.items.len();
    }
    assert!(total > 100, "{total}");
}

#[test]
fn real_samples_keep_their_traps_intact() {
    let Some(dir) = shared_samples() else { return };
    let registry = registry();
    let source = DataSource::Path(dir);
    let load = |slug: &str| {
        registry
            .load_benchmark(registry.get(slug).unwrap(), &source)
            .unwrap()
            .items
    };
    // MMMU-Pro: Python-repr options, ten of them, image_1 with bytes.
    let mmmu = load("mmmu_pro");
    assert_eq!(mmmu[0].id, "test_Clinical_Medicine_69");
    assert_eq!(mmmu[0].options.len(), 10);
    assert_eq!(mmmu[0].options[0], "The patient has a ruptured esophagus");
    assert!(mmmu[0].images[0].has_bytes());
    // We-Math: `image_path` is the Image column; options lose their letters.
    let wemath = load("we-math");
    assert!(wemath.iter().all(|i| i.image_count() == 1));
    assert!(wemath[0]
        .options
        .last()
        .unwrap()
        .contains("No correct answer"));
    // MathVerse: text-only rows have no image and are valid; metadata struct fields read.
    let mathverse = load("mathverse");
    assert!(mathverse.iter().any(|i| i.images.is_empty()));
    assert!(mathverse.iter().all(|i| i.fields.contains_key("subject")));
    // LogicVista: multi-answer letters survive.
    let logic = load("logicvista");
    assert!(
        logic.iter().any(|i| i.answer.contains(',')),
        "multi-answer row"
    );
    // Geo3k: the `images` list column.
    let geo = load("geometry3k");
    assert!(geo.iter().all(|i| i.image_count() == 1));
}

/// Places `files` (name -> source) in an HF cache layout under `root`.
fn make_hf_cache(root: &Path, manifest: &Manifest, files: &[(&str, &Path)]) {
    let repo = root.join(format!(
        "datasets--{}",
        manifest.source.hf_dataset.replace('/', "--")
    ));
    let commit = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join("main"), commit).unwrap();
    for (name, src) in files {
        let dest = repo.join("snapshots").join(commit).join(name);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(src, dest).unwrap();
    }
}

#[test]
fn hf_cache_layout_loads_offline_and_identically() {
    let registry = registry();
    let tmp = tempfile::tempdir().unwrap();
    for manifest in registry.all() {
        let bundled = manifest.bundled_path(&registry.root);
        // The real hub layout keeps shards under data/ with names like test-00000-of-00001.
        let name = format!("data/{}-00000-of-00001.parquet", manifest.source.split);
        make_hf_cache(tmp.path(), manifest, &[(name.as_str(), bundled.as_path())]);
    }
    for manifest in registry.all() {
        let expected: Vec<String> = registry
            .load_benchmark(manifest, &DataSource::Bundled)
            .unwrap()
            .items
            .iter()
            .map(|i| fingerprint(manifest, i))
            .collect();
        for source in [
            DataSource::HfCache(Some(tmp.path().to_path_buf())),
            DataSource::Path(tmp.path().to_path_buf()),
        ] {
            let got: Vec<String> = registry
                .load_benchmark(manifest, &source)
                .unwrap_or_else(|e| panic!("{} from {source}: {e}", manifest.name))
                .items
                .iter()
                .map(|i| fingerprint(manifest, i))
                .collect();
            assert_eq!(got, expected, "{} from {source}", manifest.name);
        }
    }
}

#[test]
fn hf_cache_without_the_dataset_names_it_and_how_to_get_it() {
    let registry = registry();
    let tmp = tempfile::tempdir().unwrap();
    let manifest = registry.get("mathverse").unwrap();
    let err = registry
        .load_benchmark(manifest, &DataSource::HfCache(Some(tmp.path().into())))
        .unwrap_err()
        .to_string();
    assert!(err.contains("AI4Math/MathVerse"), "{err}");
    assert!(err.contains("huggingface-cli download"), "{err}");
}

/// The same data type with every string, binary and list widened to its large variant.
fn widen(dt: &DataType) -> DataType {
    match dt {
        DataType::Utf8 => DataType::LargeUtf8,
        DataType::Binary => DataType::LargeBinary,
        DataType::List(f) => {
            DataType::LargeList(Arc::new(Field::new(f.name(), widen(f.data_type()), true)))
        }
        DataType::Struct(fields) => DataType::Struct(Fields::from(
            fields
                .iter()
                .map(|f| Field::new(f.name(), widen(f.data_type()), true))
                .collect::<Vec<_>>(),
        )),
        other => other.clone(),
    }
}

fn rebuild(batch: &RecordBatch, columns: Vec<(String, ArrayRef)>) -> RecordBatch {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a)| Field::new(n, a.data_type().clone(), true))
        .collect();
    let schema = Schema::new_with_metadata(fields, batch.schema().metadata().clone());
    RecordBatch::try_new(
        Arc::new(schema),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap()
}

#[test]
fn same_schema_written_differently_loads_identically() {
    let registry = registry();
    let tmp = tempfile::tempdir().unwrap();
    for manifest in registry.all() {
        let bundled = manifest.bundled_path(&registry.root);
        let batch = read_batch(&bundled);
        let expected: Vec<String> = registry
            .load_benchmark(manifest, &DataSource::Bundled)
            .unwrap()
            .items
            .iter()
            .map(|i| fingerprint(manifest, i))
            .collect();
        let named: Vec<(String, ArrayRef)> = batch
            .schema()
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(f, c)| (f.name().clone(), c.clone()))
            .collect();

        // 1. Columns reversed, plus an extra column.
        let mut reordered: Vec<(String, ArrayRef)> = named.iter().rev().cloned().collect();
        let extra: StringArray = (0..batch.num_rows())
            .map(|i| Some(format!("x{i}")))
            .collect();
        reordered.push(("unrelated extra".into(), Arc::new(extra)));
        // 2. large_string / large_binary / large_list everywhere.
        let large: Vec<(String, ArrayRef)> = named
            .iter()
            .map(|(n, c)| {
                let cast = arrow::compute::cast(c, &widen(c.data_type()))
                    .unwrap_or_else(|e| panic!("cast {n}: {e}"));
                (n.clone(), cast)
            })
            .collect();
        // 3. Dictionary-encoded top-level strings.
        let dictionary: Vec<(String, ArrayRef)> = named
            .iter()
            .map(|(n, c)| match c.data_type() {
                DataType::Utf8 => {
                    let dt =
                        DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
                    (n.clone(), arrow::compute::cast(c, &dt).unwrap())
                }
                _ => (n.clone(), c.clone()),
            })
            .collect();
        let variants = [
            ("reordered", rebuild(&batch, reordered), 1024),
            ("large", rebuild(&batch, large), 1024),
            ("dictionary", rebuild(&batch, dictionary), 1024),
            ("row-groups", batch.clone(), 5),
        ];
        for (label, variant, row_group_rows) in variants {
            let path = tmp
                .path()
                .join(&manifest.slug)
                .join(label)
                .join("test.parquet");
            write_batch(&path, &variant, row_group_rows);
            let got: Vec<String> =
                spotlight::bench::load_files(manifest, std::slice::from_ref(&path))
                    .unwrap_or_else(|e| panic!("{} {label}: {e}", manifest.name))
                    .items
                    .iter()
                    .map(|i| fingerprint(manifest, i))
                    .collect();
            assert_eq!(got, expected, "{} written {label}", manifest.name);
        }
        // 4. Several shards in a folder.
        let shard_dir = tmp.path().join(&manifest.slug).join("shards");
        let half = batch.num_rows() / 2;
        for (k, part) in [
            batch.slice(0, half),
            batch.slice(half, batch.num_rows() - half),
        ]
        .iter()
        .enumerate()
        {
            let name = format!("{}-0000{k}-of-00002.parquet", manifest.source.split);
            write_batch(&shard_dir.join(name), part, 1024);
        }
        let got: Vec<String> = registry
            .load_benchmark(manifest, &DataSource::Path(shard_dir))
            .unwrap_or_else(|e| panic!("{} shards: {e}", manifest.name))
            .items
            .iter()
            .map(|i| fingerprint(manifest, i))
            .collect();
        assert_eq!(got, expected, "{} in two shards", manifest.name);
    }
}

// ---------------------------------------------------------------- bad input

/// The bundled We-Math file with one column replaced or removed.
fn wemath_variant(
    dir: &Path,
    edit: impl FnOnce(Vec<(String, ArrayRef)>) -> Vec<(String, ArrayRef)>,
) -> (Manifest, PathBuf) {
    let registry = registry();
    let manifest = registry.get("wemath").unwrap().clone();
    let batch = read_batch(&manifest.bundled_path(&registry.root));
    let named: Vec<(String, ArrayRef)> = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, c)| (f.name().clone(), c.clone()))
        .collect();
    let path = dir.join("testmini.parquet");
    write_batch(&path, &rebuild(&batch, edit(named)), 1024);
    (manifest, path)
}

#[test]
fn missing_column_names_file_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let (manifest, path) = wemath_variant(tmp.path(), |cols| {
        cols.into_iter().filter(|(n, _)| n != "answer").collect()
    });
    let err = spotlight::bench::load_files(&manifest, std::slice::from_ref(&path)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, BenchError::Column { .. }));
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(
        msg.contains("`answer`") && msg.contains("missing column"),
        "{msg}"
    );
}

#[test]
fn wrong_type_names_file_column_and_types() {
    let tmp = tempfile::tempdir().unwrap();
    let (manifest, path) = wemath_variant(tmp.path(), |cols| {
        cols.into_iter()
            .map(|(n, c)| {
                if n == "question" {
                    let ints = arrow::array::Int64Array::from(vec![1; c.len()]);
                    (n, Arc::new(ints) as ArrayRef)
                } else {
                    (n, c)
                }
            })
            .collect()
    });
    let msg = spotlight::bench::load_files(&manifest, std::slice::from_ref(&path))
        .unwrap_err()
        .to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("`question`") && msg.contains("Int64"), "{msg}");
}

#[test]
fn truncated_parquet_names_the_file() {
    let registry = registry();
    let tmp = tempfile::tempdir().unwrap();
    let manifest = registry.get("geo3k").unwrap();
    let bytes = std::fs::read(manifest.bundled_path(&registry.root)).unwrap();
    for (label, cut) in [
        ("truncated", &bytes[..bytes.len() / 2]),
        ("garbage", &b"PAR1 not really"[..]),
    ] {
        let path = tmp.path().join(format!("{label}.parquet"));
        std::fs::write(&path, cut).unwrap();
        let err = spotlight::bench::load_files(manifest, std::slice::from_ref(&path)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{label}: {msg}");
        assert!(matches!(err, BenchError::Parquet { .. }), "{label}: {msg}");
    }
}

#[test]
fn bad_rows_are_all_reported_with_file_row_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let (manifest, path) = wemath_variant(tmp.path(), |cols| {
        cols.into_iter()
            .map(|(n, c)| match n.as_str() {
                // Rows 3 and 7: empty and null answers.
                "answer" => {
                    let s = c.as_any().downcast_ref::<StringArray>().unwrap();
                    let edited: StringArray = (0..s.len())
                        .map(|i| match i {
                            3 => Some(String::new()),
                            7 => None,
                            _ => Some(s.value(i).to_string()),
                        })
                        .collect();
                    (n, Arc::new(edited) as ArrayRef)
                }
                // Row 5: bytes that are not an image.
                "image_path" => {
                    let cells: Vec<Option<spotlight::synth::table::ImageCell>> = (0..c.len())
                        .map(|i| {
                            Some(spotlight::synth::table::ImageCell {
                                bytes: Some(if i == 5 {
                                    b"definitely not a png".to_vec()
                                } else {
                                    spotlight::synth::figures::png_bytes(&image::RgbImage::new(
                                        4, 4,
                                    ))
                                    .unwrap()
                                }),
                                path: Some(format!("{i}.png")),
                            })
                        })
                        .collect();
                    (
                        n,
                        Arc::new(spotlight::synth::table::image_array(&cells)) as ArrayRef,
                    )
                }
                _ => (n, c),
            })
            .collect()
    });
    let dir = path.parent().unwrap().to_path_buf();
    let registry = registry();
    let v = spotlight::bench::validate(&registry, &manifest, &DataSource::Path(dir), true);
    assert!(!v.passed());
    let mut found: BTreeMap<usize, String> = BTreeMap::new();
    for e in &v.errors {
        assert_eq!(e.file, path);
        found.insert(e.row, format!("{}: {}", e.field, e.message));
    }
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(
        found[&3].starts_with("answer: answer is empty"),
        "{found:?}"
    );
    assert!(found[&7].starts_with("answer: answer is null"), "{found:?}");
    assert!(found[&5].starts_with("image 1"), "{found:?}");
    assert_eq!(v.ok, v.rows - 3);
}

#[test]
fn unknown_benchmark_lists_the_known_ones() {
    let msg = registry().get("mathvista").unwrap_err().to_string();
    assert!(
        msg.contains("mathvista") && msg.contains("mathverse"),
        "{msg}"
    );
    // Aliases and `all`.
    let registry = registry();
    assert_eq!(registry.get("geometry3k").unwrap().slug, "geo3k");
    assert_eq!(registry.get("we-math").unwrap().slug, "wemath");
    assert_eq!(registry.get("mmmu_pro").unwrap().slug, "mmmu-pro");
    assert_eq!(registry.select("all").unwrap().len(), 8);
    assert_eq!(registry.select("wemath,mathverse,wemath").unwrap().len(), 2);
}

#[test]
fn invalid_manifest_names_its_file() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("benchmarks")).unwrap();
    let path = tmp.path().join("benchmarks").join("broken.toml");
    std::fs::write(&path, "name = \"Broken\"\nslug = 3\n").unwrap();
    let msg = Registry::load(tmp.path()).unwrap_err().to_string();
    assert!(msg.contains("broken.toml"), "{msg}");
    assert!(msg.contains("slug"), "{msg}");
}

#[test]
fn sharegpt_conversations_load_with_prebaked_prompts() {
    let registry = registry();
    let manifest = registry.get("geo3k").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("images")).unwrap();
    let png = spotlight::synth::figures::png_bytes(&image::RgbImage::new(8, 6)).unwrap();
    std::fs::write(tmp.path().join("images/a.png"), png).unwrap();
    let data = serde_json::json!([
        {"messages": [
            {"role": "user", "content": "<image>What is x?\n\nYou first think..."},
            {"role": "assistant", "content": "12"}],
         "images": ["images/a.png"]},
        {"messages": [{"role": "user", "content": "no answer"}], "images": []}
    ]);
    let path = tmp.path().join("geo3k.json");
    std::fs::write(&path, data.to_string()).unwrap();
    let loaded = spotlight::bench::load_files(manifest, &[path]).unwrap();
    assert_eq!(loaded.items.len(), 1);
    assert_eq!(loaded.bad_rows.len(), 1);
    assert_eq!(loaded.bad_rows[0].row, 1);
    let item = &loaded.items[0];
    assert_eq!(item.answer, "12");
    assert_eq!(item.images[0].size().unwrap().unwrap().width, 8);
    let prompt = PromptRenderer::new(manifest).unwrap().render(item).unwrap();
    assert_eq!(prompt, "What is x?\n\nYou first think...");
}

#[test]
fn generation_is_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    let config = spotlight::synth::SynthConfig::default();
    let a = tmp.path().join("a.parquet");
    let b = tmp.path().join("b.parquet");
    spotlight::synth::write_benchmark("mmmu-pro", &a, &config).unwrap();
    spotlight::synth::write_benchmark("mmmu-pro", &b, &config).unwrap();
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    // And the bundled file is what the generator makes today.
    let registry = registry();
    let manifest = registry.get("mmmu-pro").unwrap();
    assert_eq!(
        std::fs::read(&a).unwrap(),
        std::fs::read(manifest.bundled_path(&registry.root)).unwrap(),
        "benchmarks/data is stale: run `just synth`"
    );
}

#[test]
fn synthetic_perception_benchmark_is_current_and_solutions_box_the_answer() {
    let registry = registry();
    let manifest = registry.get("synth").unwrap();
    assert!(
        !manifest.in_all,
        "the synthetic benchmark is never in `all`"
    );
    assert!(registry.all().iter().all(|m| m.slug != "synth-perception"));
    let table = spotlight::synth::perception::perception_table("test", 64, 0).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("test.parquet");
    spotlight::synth::table::write_parquet(&path, &table.into_batch().unwrap(), 1024).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        std::fs::read(manifest.bundled_path(&registry.root)).unwrap(),
        "benchmarks/data/synth-perception is stale: run `just synth`"
    );
    let batch = read_batch(&path);
    let answers = batch
        .column_by_name("answer")
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    let solutions = batch
        .column_by_name("solution")
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    for i in 0..batch.num_rows() {
        let solution = solutions.value(i);
        assert!(
            solution.starts_with("<think>") && solution.contains("</think>"),
            "{solution}"
        );
        assert!(
            solution.ends_with(&format!("\\boxed{{{}}}.", answers.value(i))),
            "{solution}"
        );
    }
}
