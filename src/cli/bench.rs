use super::Outcome;

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// The eight benchmarks.
    List,
}

pub fn run(_cmd: BenchCommand) -> anyhow::Result<Outcome> {
    anyhow::bail!("not built yet")
}
