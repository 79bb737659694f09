//! `spotlight grade` (issue 3: being built).

use super::Outcome;

/// Grade responses against ground truths with a reward rule set.
#[derive(clap::Args)]
pub struct GradeArgs {}

pub fn run(_args: GradeArgs) -> anyhow::Result<Outcome> {
    anyhow::bail!("`spotlight grade` is not built yet (issue 3)")
}
