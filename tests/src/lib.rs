//! Shared helpers of the cross-crate tests: paths to the repository's models,
//! examples and conformance data, and the conformance runners' machinery.

use std::path::PathBuf;

pub mod conformance;
pub mod models;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}
