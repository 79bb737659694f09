//! Test support, not part of the tool's API: where the tests find `../shared` (the
//! project's read-in-place data: benchmark samples, verifier corpus, spec examples, the
//! paper's tables).
//!
//! A test whose data is absent skips with a line on stderr, so a checkout without
//! `../shared` still builds and tests. CI sets `SPOTLIGHT_REQUIRE_SHARED=1`, which turns
//! every such skip into a failure: a run without the data cannot look green.

use std::path::{Path, PathBuf};

/// The environment variable that makes absent shared data a failure.
pub const REQUIRE_SHARED: &str = "SPOTLIGHT_REQUIRE_SHARED";

/// `../shared/<rel>` beside the crate when it exists; `None` (and a "skipped" line) when
/// it does not.
///
/// # Panics
/// When it is absent and `SPOTLIGHT_REQUIRE_SHARED` is set to anything but `0` or empty:
/// the test that asked fails instead of skipping.
pub fn shared_path(rel: &str) -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    locate(&root, rel, required())
}

fn locate(root: &Path, rel: &str, required: bool) -> Option<PathBuf> {
    let path = root.join(rel);
    if path.exists() {
        return Some(path);
    }
    if required {
        panic!(
            "{} is absent and {REQUIRE_SHARED} is set: this test needs ../shared beside the clone",
            path.display()
        );
    }
    eprintln!("skipped: {} is absent", path.display());
    None
}

fn required() -> bool {
    std::env::var(REQUIRE_SHARED).is_ok_and(|v| !v.is_empty() && v != "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn present_data_is_found_and_absent_data_skips_unless_required() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        assert_eq!(
            locate(root, "Cargo.toml", true),
            Some(root.join("Cargo.toml"))
        );
        assert_eq!(locate(root, "no-such-file", false), None);
        let required = std::panic::catch_unwind(|| locate(root, "no-such-file", true));
        assert!(required.is_err(), "a required absence must fail the test");
    }
}
