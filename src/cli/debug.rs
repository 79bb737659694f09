//! `spotlight debug ...` (issue 9: being built).

use super::Outcome;

#[derive(clap::Subcommand)]
pub enum DebugCommand {
    /// Compute the VPPO objective for each line of a worked-examples JSONL file.
    VppoObjective {
        /// JSONL in the format of the spec's `vppo-objective-examples.jsonl`.
        #[arg(long)]
        input: std::path::PathBuf,
    },
}

pub fn run(_cmd: DebugCommand) -> anyhow::Result<Outcome> {
    anyhow::bail!("`spotlight debug` is not built yet (issue 9)")
}
