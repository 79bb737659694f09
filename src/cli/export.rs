//! `spotlight export ...`: hand a recipe to another trainer.

use std::path::PathBuf;

use anyhow::Context;
use spotlight::train::recipe::TrainRecipe;
use spotlight::train::verl;

use super::Outcome;

#[derive(clap::Subcommand)]
pub enum ExportCommand {
    /// Write a launch script and config for the authors' EasyR1-based trainer (VPPO-RL)
    /// carrying every hyper-parameter of a recipe, for runs on a GPU cluster.
    Verl {
        /// The recipe to export (e.g. recipes/vppo.toml).
        #[arg(long)]
        recipe: PathBuf,
        /// Folder to write config.yaml, launch.sh and README.md into (created if needed).
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(cmd: ExportCommand) -> anyhow::Result<Outcome> {
    match cmd {
        ExportCommand::Verl { recipe, out } => {
            let loaded = TrainRecipe::load(&recipe)?;
            let export = verl::export(&loaded);
            let written = verl::write_export(&export, &out)
                .with_context(|| format!("exporting {} to {}", recipe.display(), out.display()))?;
            for note in &export.notes {
                eprintln!("note: {note}");
            }
            for path in written {
                println!("{}", path.display());
            }
            Ok(Outcome::Ok)
        }
    }
}
