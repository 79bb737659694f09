//! `spotlight bench list | inspect | validate`.

use spotlight::bench::{self, DataSource, Item, PromptRenderer, Registry};

use super::Outcome;

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// The eight benchmarks: source, rows, images, answer types of the files in use.
    List {
        /// Where the files are: `bundled` (default), `hf` / `hf:DIR` (HF cache, offline), or
        /// a file / folder / root folder with one sub-folder per benchmark.
        #[arg(long, default_value = "bundled")]
        data: DataSource,
        /// Machine-readable output on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Show items exactly as the prompt a model receives, with image sizes.
    Inspect {
        /// Benchmark slug or alias (e.g. `mathverse`, `geometry3k`).
        name: String,
        /// How many items to show.
        #[arg(long, default_value_t = 3)]
        rows: usize,
        /// Where the files are (see `bench list --help`).
        #[arg(long, default_value = "bundled")]
        data: DataSource,
        #[arg(long)]
        json: bool,
    },
    /// Check that every row parses, answers are non-empty and images decode. Exit 1 if any
    /// row is bad, 2 if a file cannot be read at all.
    Validate {
        /// Benchmark slug(s) (`a,b`) or `all`; `--all` is the same as `all`.
        name: Option<String>,
        #[arg(long, conflicts_with = "name")]
        all: bool,
        /// Where the files are (see `bench list --help`).
        #[arg(long, default_value = "bundled")]
        data: DataSource,
        #[arg(long)]
        json: bool,
        /// Print every bad row (default: the first 20 per benchmark).
        #[arg(long)]
        verbose: bool,
    },
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<Outcome> {
    let registry = Registry::discover()?;
    match cmd {
        BenchCommand::List { data, json } => list(&registry, &data, json),
        BenchCommand::Inspect {
            name,
            rows,
            data,
            json,
        } => inspect(&registry, &name, rows, &data, json),
        BenchCommand::Validate {
            name,
            all,
            data,
            json,
            verbose,
        } => {
            let spec = match (name, all) {
                (Some(n), _) => n,
                (None, _) => "all".to_string(),
            };
            validate(&registry, &spec, &data, json, verbose)
        }
    }
}

fn list(registry: &Registry, data: &DataSource, json: bool) -> anyhow::Result<Outcome> {
    let mut rows = Vec::new();
    for manifest in registry.all() {
        let v = bench::validate(registry, manifest, data, false);
        rows.push(serde_json::json!({
            "benchmark": manifest.name,
            "slug": manifest.slug,
            "aliases": manifest.aliases,
            "hf_dataset": manifest.source.hf_dataset,
            "split": manifest.source.split,
            "published_rows": manifest.source.published_rows,
            "files": v.files,
            "rows": v.rows,
            "items": v.ok,
            "filtered_out": v.filtered_out,
            "images": v.images,
            "answer_kinds": v.answer_kinds,
            "rules": manifest.grading.rules,
            "approximate": manifest.approximate.then_some(&manifest.approximate_reason),
            "error": v.fatal,
        }));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(Outcome::Ok);
    }
    println!("Data: {data}\n");
    println!(
        "| Benchmark | slug | HF dataset (split) | rows | items | images | answer types | rules |"
    );
    println!("|---|---|---|---:|---:|---:|---|---|");
    for r in &rows {
        let kinds = r["answer_kinds"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let (rows_cell, items, images) = match r["error"].as_str() {
            Some(_) => ("unreadable".to_string(), "-".to_string(), "-".to_string()),
            None => (
                r["rows"].to_string(),
                r["items"].to_string(),
                r["images"].to_string(),
            ),
        };
        println!(
            "| {} | {} | {} ({}) | {} | {} | {} | {} | {} |",
            r["benchmark"].as_str().unwrap_or_default(),
            r["slug"].as_str().unwrap_or_default(),
            r["hf_dataset"].as_str().unwrap_or_default(),
            r["split"].as_str().unwrap_or_default(),
            rows_cell,
            items,
            images,
            kinds,
            r["rules"].as_str().unwrap_or_default(),
        );
    }
    for r in &rows {
        if let Some(e) = r["error"].as_str() {
            println!("\n{}: {e}", r["benchmark"].as_str().unwrap_or_default());
        }
    }
    Ok(Outcome::Ok)
}

fn image_summary(item: &Item) -> Vec<String> {
    item.images
        .iter()
        .map(|img| match img.size() {
            Ok(Some(size)) => format!("{}x{}", size.width, size.height),
            Ok(None) => format!(
                "missing bytes ({})",
                img.path.as_deref().unwrap_or("no path")
            ),
            Err(e) => format!("undecodable: {e}"),
        })
        .collect()
}

fn inspect(
    registry: &Registry,
    name: &str,
    rows: usize,
    data: &DataSource,
    json: bool,
) -> anyhow::Result<Outcome> {
    let manifest = registry.get(name)?;
    let loaded = registry.load_benchmark(manifest, data)?;
    let renderer = PromptRenderer::new(manifest)?;
    let mut shown = Vec::new();
    for item in loaded.items.iter().take(rows) {
        let prompt = renderer.render(item)?;
        shown.push(serde_json::json!({
            "id": item.id,
            "file": item.source_file.display().to_string(),
            "row": item.row,
            "images": image_summary(item),
            "answer": item.answer,
            "question_type": item.question_type,
            "fields": item.fields,
            "system": DEFAULT_SYSTEM,
            "prompt": prompt,
        }));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&shown)?);
        return Ok(Outcome::Ok);
    }
    println!(
        "{} ({} items, rules: {})",
        manifest.name,
        loaded.items.len(),
        manifest.grading.rules
    );
    if manifest.approximate {
        println!("approximate: {}", manifest.approximate_reason);
    }
    for s in &shown {
        println!(
            "\n── {} id {} ({} row {}) ──",
            manifest.slug,
            s["id"].as_str().unwrap_or_default(),
            s["file"].as_str().unwrap_or_default(),
            s["row"]
        );
        let images: Vec<String> = s["images"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "images: {}",
            if images.is_empty() {
                "none (text only)".to_string()
            } else {
                images.join(", ")
            }
        );
        println!("answer: {}", s["answer"].as_str().unwrap_or_default());
        println!("[system] {DEFAULT_SYSTEM}");
        let placeholders = "<image> ".repeat(images.len());
        println!(
            "[user] {placeholders}{}",
            s["prompt"].as_str().unwrap_or_default()
        );
    }
    Ok(Outcome::Ok)
}

use spotlight::bench::prompt::DEFAULT_SYSTEM;

fn validate(
    registry: &Registry,
    spec: &str,
    data: &DataSource,
    json: bool,
    verbose: bool,
) -> anyhow::Result<Outcome> {
    let chosen = registry.select(spec)?;
    let results: Vec<bench::Validation> = chosen
        .iter()
        .map(|m| bench::validate(registry, m, data, true))
        .collect();
    let fatal = results.iter().any(|v| v.fatal.is_some());
    let bad = results.iter().any(|v| !v.errors.is_empty());
    if json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        println!("Data: {data}\n");
        println!("| Benchmark | rows | ok | bad | filtered | images | text-only | warnings |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
        for v in &results {
            match &v.fatal {
                Some(_) => println!("| {} | unreadable | | | | | | |", v.name),
                None => println!(
                    "| {} | {} | {} | {} | {} | {} | {} | {} |",
                    v.name,
                    v.rows,
                    v.ok,
                    v.errors.len(),
                    v.filtered_out,
                    v.images,
                    v.text_only,
                    v.warnings.len()
                ),
            }
        }
        for v in &results {
            if let Some(e) = &v.fatal {
                println!("\n{}: error: {e}", v.name);
            }
            let limit = if verbose { usize::MAX } else { 20 };
            for e in v.errors.iter().take(limit) {
                println!("{}: bad row: {e}", v.name);
            }
            if v.errors.len() > limit {
                println!(
                    "{}: ... and {} more bad rows (--verbose shows all)",
                    v.name,
                    v.errors.len() - limit
                );
            }
            for w in v.warnings.iter().take(if verbose { usize::MAX } else { 5 }) {
                println!("{}: warning: {w}", v.name);
            }
        }
    }
    Ok(if fatal {
        Outcome::BadInput
    } else if bad {
        Outcome::CheckFailed
    } else {
        Outcome::Ok
    })
}
