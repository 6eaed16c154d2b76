//! `licensectl` against real `licensed` processes: offline verification of a borrowed
//! license, and the cluster admin commands with and without the admin token.

use std::process::Command;

use chrono::{DateTime, SubsecRound, Utc};
use licensed_testkit::{free_port, Cluster, Server, SAMPLE_POOL};
use serde_json::{json, Value};

/// The Borrow API's example license (in `SAMPLE_POOL`) and its host.
const SEED_UUID: &str = "118cf2e7b3d20001";
const SEED_MAC: &str = "MAC:2C549188C9E3";
const OTHER_MAC: &str = "MAC:0A1B2C3D4E5F";
const HOUR: i64 = 3600;

/// A pool for the cluster test.
const POOL: &str = r#"[
  {"feature":"MVTec_HALCON","uuid":"five","version":"26.05","edition":"Steady","modules":"fc","count":5}
]"#;
/// Requests wait for the cluster at most this long before a clear -32603.
const TIMEOUT_MS: &str = "2000";

/// `t + secs` in the one output form.
fn z(t: DateTime<Utc>, secs: i64) -> String {
    (t + chrono::Duration::seconds(secs))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Borrows with `params`; returns the license string and the borrow id.
async fn borrow(server: &Server, params: Value) -> (String, String) {
    let result = server.result("BorrowLicenseV1", params).await;
    let text = |key: &str| result[key].as_str().unwrap_or_default().to_string();
    let (license, borrow_id) = (text("license"), text("borrowId"));
    assert!(!license.is_empty(), "no license string: {result}");
    (license, borrow_id)
}

/// Runs `licensectl verify` offline (with the key file) and returns its exit status and
/// JSON output.
async fn verify_offline(
    license: &str,
    key_file: &std::path::Path,
    host: &str,
    at: &str,
) -> (bool, Value) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_licensectl"))
        .args([
            "verify",
            "--json",
            "--license",
            license,
            "--host-id",
            host,
            "--at",
            at,
        ])
        .arg("--public-key")
        .arg(key_file)
        .output()
        .await
        .expect("run licensectl");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let report = serde_json::from_str(&text).unwrap_or(Value::Null);
    (output.status.success(), report)
}

#[tokio::test]
async fn the_license_string_verifies_offline_and_any_changed_character_breaks_it() {
    let t = Utc::now().trunc_subsecs(0);
    let mut server = Server::start(SAMPLE_POOL).await;
    let p = json!({
        "feature": "MVTec_HDevelop", "uuid": SEED_UUID, "hostId": "MAC:2c549188c9e3",
        "validFrom": z(t, HOUR), "validUntil": z(t, 13 * HOUR), "userInfo": "Jane Doe",
    });
    let (license, borrow_id) = borrow(&server, p).await;
    let key: Value = serde_json::from_str(&server.get("/public-key").await.1).expect("key JSON");
    let dir = tempfile::tempdir().expect("temp dir");
    let key_file = dir.path().join("pool.pem");
    std::fs::write(&key_file, key["pem"].as_str().expect("pem")).expect("write key");
    // Offline: the server is gone.
    server.kill9().await;

    let (ok, report) = verify_offline(&license, &key_file, SEED_MAC, &z(t, 2 * HOUR)).await;
    assert!(ok, "{report}");
    let document = &report["license"];
    for (field, value) in [
        ("feature", json!("MVTec_HDevelop")),
        ("uuid", json!(SEED_UUID)),
        ("version", json!("26.05")),
        ("edition", json!("Progress")),
        ("modules", json!("fc123bdomit")),
        ("hostId", json!(SEED_MAC)),
        ("validFrom", json!(z(t, HOUR))),
        ("validUntil", json!(z(t, 13 * HOUR))),
        ("borrowId", json!(borrow_id)),
        ("userInfo", json!("Jane Doe")),
        ("keyId", key["keyId"].clone()),
    ] {
        assert_eq!(document[field], value, "{field} in {document}");
    }
    assert!(document["issuedAt"].is_string(), "{document}");
    // Another host, or a time outside the interval, is refused.
    assert!(
        !verify_offline(&license, &key_file, OTHER_MAC, &z(t, 2 * HOUR))
            .await
            .0
    );
    assert!(
        !verify_offline(&license, &key_file, SEED_MAC, &z(t, 14 * HOUR))
            .await
            .0
    );
    // Every single changed character breaks the signature (including base64 padding bits).
    let chars: Vec<char> = license.chars().collect();
    let mut accepted = Vec::new();
    for i in 0..chars.len() {
        let mut changed = chars.clone();
        changed[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        let changed: String = changed.into_iter().collect();
        if verify_offline(&changed, &key_file, SEED_MAC, &z(t, 2 * HOUR))
            .await
            .0
        {
            accepted.push(i);
        }
    }
    assert!(
        accepted.is_empty(),
        "accepted with a changed character at {accepted:?} of {}",
        chars.len()
    );
}

/// Runs `licensectl cluster --node RAFT ARGS...`; returns (exit code, stdout + stderr).
fn licensectl_cluster(raft_addr: &str, token: Option<&str>, args: &[&str]) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_licensectl"));
    command
        .args(["cluster", "--node", raft_addr])
        .env_remove("LICENSED_ADMIN_TOKEN");
    if let Some(token) = token {
        command.args(["--admin-token", token]);
    }
    let output = command.args(args).output().expect("run licensectl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn licensectl_cluster_shows_status_and_changes_need_the_admin_token() {
    let cluster = Cluster::start(
        3,
        POOL,
        &[
            "--request-timeout-ms",
            TIMEOUT_MS,
            "--admin-token",
            "s3cret",
        ],
    )
    .await;
    let leader = cluster.leader().await;
    let other = (leader + 1) % 3;
    let via = &cluster.nodes[other].raft_addr().to_string();

    let (code, status) = licensectl_cluster(via, None, &["status"]);
    assert_eq!(code, 0, "{status}");
    assert!(
        status.contains(&format!("leader {}", cluster.nodes[leader].id())),
        "{status}"
    );
    assert_eq!(status.matches("voter").count(), 3, "{status}");

    let target = cluster.nodes[other].id().to_string();
    let (code, refused) = licensectl_cluster(via, None, &["transfer-leader", &target]);
    assert_eq!(code, 1, "{refused}");
    assert!(refused.contains("admin token"), "{refused}");
    let (code, refused) = licensectl_cluster(via, Some("wrong"), &["transfer-leader", &target]);
    assert_eq!(code, 1, "{refused}");

    let (code, moved) = licensectl_cluster(via, Some("s3cret"), &["transfer-leader", &target]);
    assert_eq!(code, 0, "{moved}");
    assert_eq!(cluster.leader().await, other);

    // An unreachable node is a different failure (exit 2) from a refusal.
    let dead = format!("127.0.0.1:{}", free_port().expect("free port"));
    let (code, unreachable) = licensectl_cluster(&dead, None, &["status"]);
    assert_eq!(code, 2, "{unreachable}");
}

/// Runs `licensectl --server URL ARGS...` with `env` (and no `LICENSED_*` from the test's
/// own environment); returns (exit code, stdout, stderr).
async fn licensectl_at(url: &str, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_licensectl"));
    command.arg("--server").arg(url).args(args);
    for (key, _) in std::env::vars().filter(|(key, _)| key.starts_with("LICENSED_")) {
        command.env_remove(key);
    }
    command.envs(env.iter().copied());
    let output = command.output().await.expect("run licensectl");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

#[tokio::test]
async fn licensectl_manages_keys_and_calls_with_one() {
    const ADMIN: &str = "cli-admin-token";
    let server =
        Server::start_with(SAMPLE_POOL, &["--admin-token", ADMIN, "--require-api-keys"]).await;
    let url = server.url.as_str();

    // Without a key the server refuses: exit 1 with the code.
    let (code, _, stderr) = licensectl_at(url, &[], &["list"]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.starts_with("error 38: Unauthorized ("), "{stderr}");
    // Key management needs the admin token.
    let create = [
        "--json", "keys", "create", "--name", "ci", "--scope", "borrow",
    ];
    let (code, _, stderr) = licensectl_at(url, &[], &create).await;
    assert_eq!(code, 1, "{stderr}");

    let (code, stdout, stderr) =
        licensectl_at(url, &[("LICENSED_ADMIN_TOKEN", ADMIN)], &create).await;
    assert_eq!(code, 0, "{stderr}");
    let created: Value = serde_json::from_str(&stdout).expect("JSON");
    let key = created["key"].as_str().expect("key").to_string();
    let key_id = created["keyId"].as_str().expect("keyId").to_string();

    // The key as --api-key and as LICENSED_API_KEY.
    let (code, stdout, stderr) = licensectl_at(url, &[], &["--api-key", &key, "list"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("MVTec_HDevelop"), "{stdout}");
    let (code, _, stderr) = licensectl_at(url, &[("LICENSED_API_KEY", &key)], &["list"]).await;
    assert_eq!(code, 0, "{stderr}");

    // The table lists it without its secret; a revoked key is refused.
    let admin = [("LICENSED_ADMIN_TOKEN", ADMIN)];
    let (code, stdout, stderr) = licensectl_at(url, &admin, &["keys", "list"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&key_id) && stdout.contains("ci"),
        "{stdout}"
    );
    assert!(!stdout.contains(&key[20..]), "{stdout}");
    let (code, stdout, stderr) = licensectl_at(url, &admin, &["keys", "revoke", &key_id]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(&key_id), "{stdout}");
    let (code, _, stderr) = licensectl_at(url, &[], &["--api-key", &key, "list"]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("error 38") && stderr.contains("revoked"),
        "{stderr}"
    );
}
