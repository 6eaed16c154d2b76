//! The client port over TLS, against the real binary: MVTec's Python client, unmodified and
//! at its own default URL (`https://localhost:22022/licenses`), trusts our CA through
//! `REQUESTS_CA_BUNDLE`; a certificate replaced on disk is served without a restart;
//! HTTP/2 is offered; `--tls-client-ca` turns away clients without a certificate.
//! Certificates come from `licensectl certs`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{make_cert, repo_path, SAMPLE_POOL};
use licensed_testkit::{licensed_binary, NodeProcess, NodeSpec};

/// The seed client's hard-wired port.
const SEED_PORT: u16 = 22022;

/// Starts a node whose client port serves `cert` on `api_port` (0: any).
async fn tls_node(dir: &Path, api_port: u16, extra: &[&str]) -> NodeProcess {
    let pool = dir.join("pool.json");
    std::fs::write(&pool, SAMPLE_POOL).expect("pool");
    let binary = licensed_binary().unwrap_or_else(|e| panic!("{e}"));
    let raft_port = licensed_testkit::free_port().expect("port");
    let spec = NodeSpec::with_ports(1, binary, dir.join("data"), api_port, raft_port)
        .arg("--pool")
        .arg(pool.display().to_string())
        .arg("--tls-cert")
        .arg(dir.join("server.pem").display().to_string())
        .arg("--tls-key")
        .arg(dir.join("server-key.pem").display().to_string())
        .args(extra.iter().copied())
        .env("RUST_LOG", "info")
        .ready_timeout(Duration::from_secs(60));
    let mut node = NodeProcess::new(spec).unwrap_or_else(|e| panic!("{e}"));
    node.start()
        .await
        .unwrap_or_else(|e| panic!("licensed did not start: {e}"));
    node
}

fn https_client(ca: &Path, identity: Option<(&Path, &Path)>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).expect("ca")).expect("ca pem");
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(10));
    if let Some((cert, key)) = identity {
        let mut pem = std::fs::read(cert).expect("cert");
        pem.extend(std::fs::read(key).expect("key"));
        builder = builder.identity(reqwest::Identity::from_pem(&pem).expect("identity"));
    }
    builder.build().expect("client")
}

fn served_certificate(port: u16) -> String {
    // Python's own TLS stack fetches what the port serves now (no verification).
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import ssl; print(ssl.get_server_certificate(('127.0.0.1', {port})))"
        ))
        .output()
        .expect("python3");
    assert!(output.status.success(), "{output:?}");
    normalize_pem(&String::from_utf8_lossy(&output.stdout))
}

fn normalize_pem(text: &str) -> String {
    text.lines()
        .filter(|line| !line.starts_with("-----") && !line.trim().is_empty())
        .collect()
}

fn run_seed_client(ca: &Path) -> String {
    let output = std::process::Command::new("python3")
        .arg(repo_path("tests/mvtec_client.py"))
        .env_remove("LICENSED_URL")
        .env("REQUESTS_CA_BUNDLE", ca)
        .env_remove("CURL_CA_BUNDLE")
        .env("NO_PROXY", "*")
        .output()
        .expect("run python3 (the client needs python3 with `requests`)");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "MVTec client over TLS failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.trim_end().ends_with("OK"), "{stdout}");
    stdout
}

/// A verified `ListLicensesV1` through Python's `requests`, trusting `ca` like the seed
/// client does (for the runs after the first: the seed client expects a fresh server).
fn python_list(ca: &Path) {
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(concat!(
            "import requests; r = requests.post('https://localhost:22022/licenses', ",
            "json={'jsonrpc': '2.0', 'method': 'ListLicensesV1', 'id': 1}); ",
            "r.raise_for_status(); assert isinstance(r.json()['result'], list); print('OK')"
        ))
        .env("REQUESTS_CA_BUNDLE", ca)
        .env_remove("CURL_CA_BUNDLE")
        .env("NO_PROXY", "*")
        .output()
        .expect("python3");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_client_passes_over_https_and_a_renewed_certificate_is_served_without_a_restart() {
    let temp = tempfile::tempdir().expect("temp");
    let certs = temp.path();
    make_cert(certs, "server", &["localhost", "127.0.0.1", "::1"]);
    let mut node = tls_node(certs, SEED_PORT, &[]).await;
    let pid = node.pid();

    let first = served_certificate(SEED_PORT);
    assert_eq!(
        first,
        normalize_pem(&std::fs::read_to_string(certs.join("server.pem")).expect("pem"))
    );
    run_seed_client(&certs.join("ca.pem"));

    // Renewal: a new key and certificate renamed into place, as cert-manager or certbot do.
    make_cert(certs, "renewed", &["localhost", "127.0.0.1"]);
    std::fs::rename(certs.join("renewed-key.pem"), certs.join("server-key.pem")).expect("mv");
    std::fs::rename(certs.join("renewed.pem"), certs.join("server.pem")).expect("mv");
    let renewed = normalize_pem(&std::fs::read_to_string(certs.join("server.pem")).expect("pem"));
    assert_ne!(first, renewed);
    let mut served = first.clone();
    for _ in 0..100 {
        served = served_certificate(SEED_PORT);
        if served == renewed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(served, renewed, "the renewed certificate is not served");
    assert_eq!(node.pid(), pid, "the node restarted");
    python_list(&certs.join("ca.pem"));

    // A broken pair on disk is not served: the node keeps the last good one.
    std::fs::write(certs.join("server-key.pem"), "not a key").expect("write");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(served_certificate(SEED_PORT), renewed);
    python_list(&certs.join("ca.pem"));
    node.sigterm_and_wait(Duration::from_secs(10))
        .await
        .expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_speaks_http2_and_http1_and_plain_http_is_refused() {
    let temp = tempfile::tempdir().expect("temp");
    let certs = temp.path();
    make_cert(certs, "server", &["localhost", "127.0.0.1"]);
    let mut node = tls_node(certs, 0, &[]).await;
    let url = format!("https://localhost:{}/licenses", node.spec().api_port);
    let body = serde_json::json!({"jsonrpc": "2.0", "method": "ListLicensesV1", "id": 1});

    let client = https_client(&certs.join("ca.pem"), None);
    let response = client.post(&url).json(&body).send().await.expect("https");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let answer: serde_json::Value = response.json().await.expect("json");
    assert!(answer["result"].is_array(), "{answer}");

    let http1 = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(certs.join("ca.pem")).unwrap()).unwrap(),
        )
        .http1_only()
        .build()
        .unwrap();
    let response = http1
        .post(&url)
        .json(&body)
        .send()
        .await
        .expect("https/1.1");
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert!(response.status().is_success());

    // Plain HTTP on the TLS port gets no answer.
    let plain = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let refused = plain
        .post(url.replace("https://", "http://"))
        .json(&body)
        .send()
        .await;
    assert!(refused.is_err(), "{refused:?}");

    // An untrusted CA is refused by the client: the server is who its certificate says.
    make_cert(&certs.join("other"), "server", &["localhost"]);
    let stranger = https_client(&certs.join("other/ca.pem"), None);
    assert!(stranger.post(&url).json(&body).send().await.is_err());
    node.sigterm_and_wait(Duration::from_secs(10))
        .await
        .expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_client_ca_only_clients_with_a_certificate_get_in() {
    let temp = tempfile::tempdir().expect("temp");
    let certs = temp.path();
    make_cert(certs, "server", &["localhost", "127.0.0.1"]);
    make_cert(certs, "client", &["build-server.example"]);
    make_cert(&certs.join("other"), "client", &["intruder.example"]);
    let ca = certs.join("ca.pem");
    let mut node = tls_node(certs, 0, &["--tls-client-ca", &ca.display().to_string()]).await;
    let url = format!("https://localhost:{}/licenses", node.spec().api_port);
    let body = serde_json::json!({"jsonrpc": "2.0", "method": "ListLicensesV1", "id": 1});

    let without = https_client(&ca, None);
    assert!(without.post(&url).json(&body).send().await.is_err());
    let foreign = https_client(
        &ca,
        Some((
            &certs.join("other/client.pem"),
            &certs.join("other/client-key.pem"),
        )),
    );
    assert!(foreign.post(&url).json(&body).send().await.is_err());
    let with = https_client(
        &ca,
        Some((&certs.join("client.pem"), &certs.join("client-key.pem"))),
    );
    let answer: serde_json::Value = with
        .post(&url)
        .json(&body)
        .send()
        .await
        .expect("a client with a certificate gets in")
        .json()
        .await
        .expect("json");
    assert!(answer["result"].is_array(), "{answer}");
    node.sigterm_and_wait(Duration::from_secs(10))
        .await
        .expect("stop");
}
