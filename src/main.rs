//! The `spotlight` binary: parses arguments and hands each subcommand to `cli::*`.
//!
//! Exit codes: 0 ok, 1 a check found a problem (bad rows, a regression), 2 bad usage or
//! unreadable input.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

/// Evaluate and train vision-language models with verifiable rewards.
#[derive(Parser)]
#[command(name = "spotlight", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Benchmarks: list them, inspect items as prompts, validate files.
    #[command(subcommand)]
    Bench(cli::bench::BenchCommand),
    /// Generate the data the project bundles (benchmark-shaped parquet files).
    #[command(subcommand)]
    Synth(cli::synth::SynthCommand),
    /// Evaluate on benchmarks: avg@k, resumable runs, a report in the paper's layout.
    Eval(Box<cli::eval::EvalArgs>),
    /// Grade responses against ground truths with a reward rule set.
    Grade(cli::grade::GradeArgs),
    /// Supervised warm start on reference solutions.
    Sft(Box<cli::sft::SftArgs>),
    /// Train a checkpoint with GRPO, DAPO or VPPO from a recipe.
    Train(Box<cli::train::TrainArgs>),
    /// Serve a checkpoint on an OpenAI-compatible API (/v1/chat/completions).
    Serve(cli::serve::ServeArgs),
    /// Qwen2.5-VL checkpoints: info, log-probs, sampling.
    #[command(subcommand)]
    Model(cli::model::ModelCommand),
    /// Developer tools: check Spotlight's internals against other implementations.
    #[command(subcommand)]
    Debug(cli::debug::DebugCommand),
    /// Export a training recipe for another trainer (the authors' EasyR1-based VPPO-RL).
    #[command(subcommand)]
    Export(cli::export::ExportCommand),
    /// Compare runs against a baseline per benchmark; exit 1 on a significant regression.
    Compare(cli::compare::CompareArgs),
    /// Tables in the paper's layout with measured runs inserted (Table 1, ablations), and
    /// the history of a training run's checkpoints.
    #[command(subcommand)]
    Report(cli::report::ReportCommand),
    /// How much each token of a response depends on the image (token perception, measured
    /// as the trainer measures it).
    Perception(Box<cli::perception::PerceptionArgs>),
}

fn main() -> ExitCode {
    spotlight::model::prepare_process();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(cmd) => cli::bench::run(cmd),
        Command::Synth(cmd) => cli::synth::run(cmd),
        Command::Eval(args) => cli::eval::run(*args),
        Command::Grade(args) => cli::grade::run(args),
        Command::Model(cmd) => cli::model::run(cmd),
        Command::Serve(args) => cli::serve::run(args),
        Command::Train(args) => cli::train::run(*args),
        Command::Sft(args) => cli::sft::run(*args),
        Command::Debug(cmd) => cli::debug::run(cmd),
        Command::Export(cmd) => cli::export::run(cmd),
        Command::Compare(args) => cli::compare::run(args),
        Command::Report(cmd) => cli::report::run(cmd),
        Command::Perception(args) => cli::perception::run(*args),
    };
    match result {
        Ok(outcome) => outcome.exit_code(),
        Err(err) => {
            eprintln!("error: {err:#}");
            cli::Outcome::BadInput.exit_code()
        }
    }
}
