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
/// use), for `hosts`, with `deploy/tls/make-certs.sh` (needs `openssl`).
pub fn make_cert(dir: &Path, name: &str, hosts: &[&str]) {
    let status = std::process::Command::new("bash")
        .arg(repo_path("deploy/tls/make-certs.sh"))
        .arg(dir)
        .arg(name)
        .args(hosts)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run deploy/tls/make-certs.sh (needs openssl)");
    assert!(status.success(), "make-certs.sh {name} failed");
}

pub mod borrow_api;
