//! Subcommand implementations. Each module has a clap `Args`/`Subcommand` type (its doc
//! comments are the help text) and a `run` that returns an [`Outcome`]; errors become
//! exit code 2 in `main`.

pub mod bench;
pub mod compare;
pub mod debug;
pub mod eval;
pub mod export;
pub mod grade;
pub mod image_path;
pub mod model;
pub mod perception;
pub mod report;
pub mod serve;
pub mod sft;
pub mod synth;
pub mod train;

use std::process::ExitCode;

/// How a command ended, mapped onto Spotlight's exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Ok,
    /// Exit 1: a check found a problem (bad rows, a regression).
    CheckFailed,
    /// Exit 2: bad usage or unreadable input.
    BadInput,
}

impl Outcome {
    pub fn exit_code(self) -> ExitCode {
        match self {
            Outcome::Ok => ExitCode::SUCCESS,
            Outcome::CheckFailed => ExitCode::from(1),
            Outcome::BadInput => ExitCode::from(2),
        }
    }
}
