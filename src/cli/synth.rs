//! `spotlight synth benchmarks | large`: generate the data the project bundles.

use std::path::PathBuf;

use anyhow::Context;
use spotlight::bench::Registry;
use spotlight::synth::{self, SynthConfig};

use super::Outcome;

#[derive(clap::Subcommand)]
pub enum SynthCommand {
    /// Benchmark-shaped parquet files for the eight benchmarks (what `benchmarks/data/`
    /// bundles), in each benchmark's real schema, from figures the project draws itself.
    Benchmarks {
        /// Output folder; each file goes where its manifest's `source.bundled` says, relative
        /// to `benchmarks/data/`.
        #[arg(long, default_value = "benchmarks/data")]
        out: PathBuf,
        /// Items per benchmark.
        #[arg(long, default_value_t = 24)]
        rows: usize,
        /// Image side in pixels.
        #[arg(long, default_value_t = 112)]
        image_size: u32,
        /// Rows per parquet row group.
        #[arg(long, default_value_t = 1024)]
        row_group_rows: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// The synthetic perception benchmark for the trainer: `train.parquet` and
    /// `test.parquet` with reference solutions in the VPPO format.
    Perception {
        /// Output folder.
        #[arg(long, default_value = "benchmarks/data/synth-perception")]
        out: PathBuf,
        /// Training items.
        #[arg(long, default_value_t = 2000)]
        train: usize,
        /// Held-out test items.
        #[arg(long, default_value_t = 64)]
        test: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// A small Qwen2.5-VL-architecture checkpoint with random weights and a byte-level BPE
    /// tokenizer trained on the synthetic task's text (Qwen's special tokens and chat
    /// template), in the Hugging Face layout. Presets: recipes/models/<NAME>.toml.
    Model {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// A preset name (`tiny`, `bench`) or the path of a preset TOML file.
        #[arg(long, default_value = "tiny")]
        preset: String,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// A large MathVision-schema file with incompressible images, for ingest benchmarks.
    Large {
        /// Output file.
        #[arg(long)]
        output: PathBuf,
        /// Approximate size in megabytes.
        #[arg(long, default_value_t = 200)]
        mb: u64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

pub fn run(cmd: SynthCommand) -> anyhow::Result<Outcome> {
    match cmd {
        SynthCommand::Benchmarks {
            out,
            rows,
            image_size,
            row_group_rows,
            seed,
        } => {
            let registry = Registry::discover()?;
            let config = SynthConfig {
                seed,
                rows,
                image_size,
                row_group_rows,
            };
            for manifest in registry.all() {
                let relative = manifest
                    .source
                    .bundled
                    .strip_prefix("benchmarks/data/")
                    .unwrap_or(&manifest.source.bundled);
                let path = out.join(relative);
                synth::write_benchmark(&manifest.slug, &path, &config)
                    .with_context(|| format!("generating {}", manifest.name))?;
                eprintln!("wrote {} ({} items)", path.display(), rows);
            }
            Ok(Outcome::Ok)
        }
        SynthCommand::Perception {
            out,
            train,
            test,
            seed,
        } => {
            synth::perception::write_perception(&out, train, test, seed)
                .with_context(|| format!("writing {}", out.display()))?;
            eprintln!("wrote {} ({train} train, {test} test items)", out.display());
            Ok(Outcome::Ok)
        }
        SynthCommand::Model { out, preset, seed } => {
            let root = spotlight::bench::project_root()?;
            let models = root.join("recipes/models");
            let path = if preset.ends_with(".toml") {
                PathBuf::from(&preset)
            } else {
                models.join(format!("{preset}.toml"))
            };
            let config = synth::model::ModelPreset::load(&path)?;
            let template_path = models.join("chat_template.jinja");
            let template = std::fs::read_to_string(&template_path)
                .with_context(|| format!("reading {}", template_path.display()))?;
            let params = synth::model::write_model(&config, &template, &out, seed)
                .with_context(|| format!("writing {}", out.display()))?;
            eprintln!(
                "wrote {} ({}; {params} parameters, seed {seed})",
                out.display(),
                config.description
            );
            Ok(Outcome::Ok)
        }
        SynthCommand::Large { output, mb, seed } => {
            let rows = synth::write_large(&output, mb, seed)
                .with_context(|| format!("writing {}", output.display()))?;
            eprintln!("wrote {} ({rows} rows)", output.display());
            Ok(Outcome::Ok)
        }
    }
}
