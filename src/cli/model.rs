//! `spotlight model ...` (issue 4: being built).

use super::Outcome;

#[derive(clap::Subcommand)]
pub enum ModelCommand {
    /// Architecture, sizes, parameter count, tokenizer and chat template of a checkpoint.
    Info {
        /// Checkpoint folder.
        dir: std::path::PathBuf,
    },
}

pub fn run(_cmd: ModelCommand) -> anyhow::Result<Outcome> {
    anyhow::bail!("`spotlight model` is not built yet (issue 4)")
}
