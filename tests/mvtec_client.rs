//! MVTec's Python client of the Borrow API (`tests/mvtec_client.py`, its functions copied
//! letter for letter) runs unmodified against the real binary. Needs `python3` with the
//! `requests` package.

mod common;

use common::{repo_path, Server, SAMPLE_POOL};

#[tokio::test]
async fn mvtecs_python_client_lists_borrows_and_gets_back_the_same_license() {
    let server = Server::start(SAMPLE_POOL).await;
    let output = tokio::process::Command::new("python3")
        .arg(repo_path("tests/mvtec_client.py"))
        .arg(server.endpoint())
        .env_remove("LICENSED_URL")
        .output()
        .await
        .expect("run python3 (the client needs python3 with `requests`)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "MVTec client failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    assert!(stdout.contains("Borrowed license: "), "{stdout}");
    assert!(stdout.trim_end().ends_with("OK"), "{stdout}");
}
