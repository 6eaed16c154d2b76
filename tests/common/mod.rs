//! Test helpers: the process harness (`licensed-testkit`: `Server`, `Cluster`, ...) and
//! the Borrow API's wire checks.
#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};

pub use licensed_testkit::{at, error_code_of, free_port, Cluster, Server, SAMPLE_POOL};

/// A path next to the test binary's crate root.
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

pub mod borrow_api;
