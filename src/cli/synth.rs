use super::Outcome;

#[derive(clap::Subcommand)]
pub enum SynthCommand {
    /// Benchmark-shaped parquet files.
    Benchmarks,
}

pub fn run(_cmd: SynthCommand) -> anyhow::Result<Outcome> {
    anyhow::bail!("not built yet")
}
