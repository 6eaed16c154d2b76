//! Test helpers: the process harness (`licensed-testkit`: `Server`, `Cluster`, ...) and
//! the Borrow API's wire checks.
#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};

pub use licensed_testkit::{at, error_code_of, free_port, Cluster, Server, SAMPLE_POOL};

/// A path next to the test binary's crate root.
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Makes `DIR/NAME.pem` and `DIR/NAME-key.pem`, signed by the CA in `dir` (made on first
/// use), for `hosts`, with `licensectl certs` (built beside `licensed`).
pub fn make_cert(dir: &Path, name: &str, hosts: &[&str]) {
    let licensed = licensed_testkit::licensed_binary().expect("the licensed binary");
    let licensectl = licensed.with_file_name("licensectl");
    let output = std::process::Command::new(&licensectl)
        .arg("certs")
        .arg(dir)
        .arg(name)
        .args(hosts)
        .output()
        .unwrap_or_else(|e| panic!("run {} (cargo build --bins): {e}", licensectl.display()));
    assert!(
        output.status.success(),
        "licensectl certs {name} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

pub mod borrow_api;
